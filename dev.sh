#!/usr/bin/env bash
# Set up everything the archive needs on a fresh Debian machine, then run it.
#
#   ./dev.sh demo [ARGS]   install, then run the archive on the demo data set
#                          (vo-archive demo ARGS; serves http://127.0.0.1:8000/)
#   ./dev.sh test [ARGS]   install, check lint (ruff) and types (mypy), then run
#                          the test suite (pytest ARGS)
#   ./dev.sh setup         install only
#
# System packages come from Debian (PostgreSQL 15 with pgSphere, q3c and PgQ,
# pgqd, STILTS, Chromium); Python packages go into .venv (set VO_ARCHIVE_NO_VENV=1
# to use the current interpreter instead).
set -euo pipefail
cd "$(dirname "$0")"

APT_PACKAGES=(postgresql-15 postgresql-15-pgsphere postgresql-15-q3c postgresql-15-pgq3
              pgqd stilts chromium chromium-driver nginx-light)

install_system() {
    local missing=()
    for p in "${APT_PACKAGES[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        echo "installing Debian packages: ${missing[*]}" >&2
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
    fi
}

install_cone_extension() {
    # The archive's own PostgreSQL extension (schema/ext/vo_archive_cone): cone
    # searches get their HEALPix ranges from the server. It is built against the
    # headers of the installed server's very version: an unpinned
    # postgresql-server-dev-15 would upgrade the server with it. Without it the
    # archive makes the same ranges itself (set VO_ARCHIVE_NO_CONE_EXTENSION=1
    # to skip it).
    [ "${VO_ARCHIVE_NO_CONE_EXTENSION:-0}" = "1" ] && return 0
    local sudo="" pg_config=/usr/lib/postgresql/15/bin/pg_config version
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if ! dpkg -s postgresql-server-dev-15 >/dev/null 2>&1; then
        version=$(dpkg-query -W -f='${Version}' postgresql-15)
        echo "installing postgresql-server-dev-15=$version" >&2
        $sudo apt-get update -qq
        if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
                "postgresql-server-dev-15=$version" >&2; then
            echo "dev.sh: no postgresql-server-dev-15 of version $version; the" \
                 "vo_archive_cone extension is not built (the archive makes cone" \
                 "ranges itself)" >&2
            return 0
        fi
    fi
    local libdir ext=schema/ext/vo_archive_cone
    libdir=$("$pg_config" --pkglibdir)
    if [ ! -f "$libdir/vo_archive_cone.so" ] \
            || [ "$ext/vo_archive_cone.c" -nt "$libdir/vo_archive_cone.so" ] \
            || ! cmp -s "$ext/vo_archive_cone--1.0.sql" \
                 "$("$pg_config" --sharedir)/extension/vo_archive_cone--1.0.sql"; then
        echo "building the vo_archive_cone extension" >&2
        if ! { make -s -C "$ext" PG_CONFIG="$pg_config" >&2 \
                && $sudo make -s -C "$ext" PG_CONFIG="$pg_config" install >&2; }; then
            echo "dev.sh: building vo_archive_cone failed (above); the archive" \
                 "makes cone ranges itself" >&2
        fi
        make -s -C "$ext" PG_CONFIG="$pg_config" clean >&2
    fi
}

install_python() {
    if [ "${VO_ARCHIVE_NO_VENV:-0}" = "1" ]; then
        PY=${PYTHON:-python3}
    else
        if [ ! -x .venv/bin/python ]; then
            "${PYTHON:-python3}" -m venv .venv
        fi
        PY=.venv/bin/python
    fi
    "$PY" -m pip install -q --disable-pip-version-check -e '.[test]' >&2
}

check_code() {
    echo "ruff check ." >&2
    if ! "$PY" -m ruff check .; then
        echo "dev.sh test: ruff found lint errors (above); fix them before the tests run" >&2
        exit 1
    fi
    echo "mypy" >&2
    if ! "$PY" -m mypy; then
        echo "dev.sh test: mypy found type errors (above); fix them before the tests run" >&2
        exit 1
    fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    setup)
        install_system; install_cone_extension; install_python ;;
    demo)
        install_system; install_cone_extension; install_python
        exec "$PY" -m vo_archive demo "$@" ;;
    test)
        install_system; install_cone_extension; install_python; check_code
        exec "$PY" -m pytest "$@" ;;
    *)
        sed -n '2,12p' "$0"; exit 2 ;;
esac
