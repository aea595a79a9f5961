"""ADQL checks and translation (tap.adql): what is refused, what is rewritten."""

from __future__ import annotations

import pytest

from tap.adql.translate import MAX_QUERY_LENGTH, ADQLError, translate


@pytest.mark.parametrize(("adql", "message"), [
    ("SELECT * FROM ivoa.ObsCore; DROP TABLE archive.product", "one statement"),
    ("SELECT * FROM pg_catalog.pg_authid", "not published"),
    ("SELECT * FROM archive.product", "not published"),
    ("SELECT * FROM (SELECT * FROM archive.version) AS q", "not published"),
    ("SELECT * FROM ivoa.ObsCore WHERE obs_id IN (SELECT relname FROM pg_class)",
     "with its schema"),
    ("SELECT pg_sleep(10) FROM ivoa.ObsCore", "unknown function pg_sleep"),
    ("SELECT pg_read_file('/etc/passwd') FROM ivoa.ObsCore", "pg_read_file"),
    ("SELECT set_config('vo_archive.proprietary', 'on', true) FROM ivoa.ObsCore",
     "set_config"),
    ("SELECT lo_import('/etc/passwd') FROM ivoa.ObsCore", "lo_import"),
    ("DROP TABLE archive.product", "syntax error"),
    ("INSERT INTO pessto.runs VALUES (1)", "syntax error"),
    ("UPDATE archive.product SET release_date = now()", "syntax error"),
    ("DELETE FROM archive.product", "syntax error"),
    ("SELECT CAST(s_ra AS POINT) FROM ivoa.ObsCore", "CAST to 'POINT'"),
    ("SELECT CAST(s_ra AS INTEGER(3)) FROM ivoa.ObsCore", "takes no length"),
    ("SELECT CAST(s_ra) FROM ivoa.ObsCore", "CAST needs 'AS type'"),
    ("SELECT CAST(s_ra AS text) FROM ivoa.ObsCore", "CAST to 'text'"),
    ("WITH RECURSIVE q AS (SELECT 1 FROM ivoa.ObsCore) SELECT * FROM q",
     "RECURSIVE is not"),
    ("WITH q (a) AS (SELECT s_ra FROM ivoa.ObsCore) SELECT * FROM q",
     "column lists"),
    ("WITH q AS SELECT 1 FROM ivoa.ObsCore", "name AS \\(query\\)"),
    ("WITH q AS (SELECT * FROM archive.product) SELECT * FROM q", "not published"),
    ("WITH q AS (DELETE FROM pessto.runs) SELECT * FROM q", "syntax error"),
    ("SELECT IN_UNIT(s_ra + 1, 'rad') FROM ivoa.ObsCore", "must name one"),
    ("SELECT IN_UNIT(s_ra, 'm') FROM ivoa.ObsCore", "cannot be converted"),
    ("SELECT IN_UNIT(s_ra, 'furlong') FROM ivoa.ObsCore", "not a VOUnit"),
    ("SELECT IN_UNIT(obs_id, 'm') FROM ivoa.ObsCore", "has no unit"),
    ("SELECT IN_UNIT(s_ra) FROM ivoa.ObsCore", "a column and a unit string"),
    ("SELECT IN_UNIT(nothing, 'm') FROM ivoa.ObsCore", "not a column"),
    ("SELECT REGION('x') FROM ivoa.ObsCore", "REGION"),
    ("SELECT s_ra FROM ivoa.ObsCore EXCEPT SELECT TOP 1 s_dec FROM ivoa.ObsCore",
     "TOP in a later part"),
    ("SELECT ivo_nothing(s_ra) FROM ivoa.ObsCore", "unknown function ivo_nothing"),
    ("SELECT zqfnlower(obs_id) FROM ivoa.ObsCore", "reserved text"),
    ("SELECT name FROM pessto.runs UNION SELECT TOP 1 name FROM pessto.targets",
     "TOP in a later part"),
    # queryparser evaluates geometry arguments with Python eval(): names of
    # Python objects must not get anywhere
    ("SELECT POINT(exec, 1) FROM ivoa.ObsCore", "cannot be translated|syntax"),
    ("SELECT POINT(open('x'), 1) FROM ivoa.ObsCore",
     "unknown function open|syntax error"),
    ("SELECT * FROM TAP_UPLOAD.missing", "was not uploaded"),
    ("SELECT 'open FROM ivoa.ObsCore", "unterminated string"),
    ("SELECT s_ra FROM\n ivoa.ObsCore WHERE s_ra >>> 3", "line 2"),
    ("", "empty"),
    ("SELECT s_ra FROM ivoa.ObsCore WHERE " + " OR ".join(["s_ra > 1"] * 3000),
     "longer than"),
])
def test_refused(adql: str, message: str) -> None:
    with pytest.raises(ADQLError, match=message):
        translate(adql)


def test_long_query_limit_is_stated() -> None:
    assert MAX_QUERY_LENGTH == 20_000


@pytest.mark.parametrize(("adql", "expected"), [
    ("SELECT TOP 10 s_ra FROM ivoa.ObsCore WHERE 1=CONTAINS(POINT('ICRS', s_ra, "
     "s_dec), CIRCLE('ICRS', 10, 20, 0.5))",
     "sky_point(s_ra, s_dec) @ scircle(spoint(RADIANS(10.0), "
     "RADIANS(20.0)), RADIANS(0.5)) LIMIT 10"),
    # POINT of two columns is the indexed, LEAKPROOF sky_point (#13)
    ("SELECT name FROM pessto.targets AS t WHERE 1 = CONTAINS(POINT(t.ra, "
     "t.\"dec\"), CIRCLE(1, 2, 0.5))", 'sky_point(t.ra, t."dec") @ scircle('),
    # a crossmatch: circles around column positions are sky_circle (#13)
    ("SELECT u.a FROM TAP_UPLOAD.t1 AS u JOIN ivoa.ObsCore AS o ON 1 = CONTAINS("
     "POINT(o.s_ra, o.s_dec), CIRCLE(u.ra, u.dec, 0.01))",
     "sky_point(o.s_ra, o.s_dec) @ sky_circle(sky_point(u.ra, u.dec), "
     "RADIANS(0.01))"),
    ("SELECT u.a FROM TAP_UPLOAD.t1 AS u JOIN ivoa.ObsCore AS o ON "
     "DISTANCE(POINT(o.s_ra, o.s_dec), POINT(u.ra, u.dec)) < 0.01",
     "sky_dwithin(sky_point(o.s_ra, o.s_dec), sky_point(u.ra, u.dec), "),
    # constant circles keep pgSphere's own (and its error for r > 90°)
    ("SELECT s_ra FROM ivoa.ObsCore WHERE DISTANCE(POINT(s_ra, s_dec), "
     "POINT(1, 2)) < 0.1", "spoint_dwithin(sky_point(s_ra, s_dec), spoint("),
    ("SELECT COORD1(POINT(s_ra, s_dec)) AS c FROM ivoa.ObsCore",
     "COORD1(sky_point(s_ra, s_dec))"),
    ("SELECT s_ra FROM ivoa.ObsCore WHERE DISTANCE(POINT(s_ra, s_dec), POINT(1, 2))"
     " < 0.1", "spoint_dwithin("),
    ("SELECT DISTANCE(s_ra, s_dec, 1, 2) AS d FROM ivoa.ObsCore",
     "DEGREES(sky_point(s_ra, s_dec) <-> spoint(RADIANS(1.0), "
     "RADIANS(2.0)))"),
    ("SELECT u.a FROM TAP_UPLOAD.t1 AS u JOIN ivoa.ObsCore AS o ON "
     "1 = CONTAINS(POINT(o.s_ra, o.s_dec), CIRCLE(u.ra, u.dec, 0.01))",
     "FROM pg_temp.t1 AS u"),
    ("SELECT obs_id FROM ivoa.ObsCore WHERE obs_id = 'a_ b , c . d'",
     "'a_ b , c . d'"),
    ("SELECT s_ra FROM ivoa.ObsCore WHERE s_ra > 1E-3 -- a comment\n",
     "s_ra > 1.0E-3"),
    ("SELECT TOP 3 obs_id FROM ivoa.ObsCore ORDER BY obs_id OFFSET 5",
     "OFFSET 5 LIMIT 3"),
    ('SELECT "dec", "level" FROM pessto.products', 'SELECT "dec", "level"'),
    ("SELECT AREA(s_region) AS a FROM ivoa.ObsCore", "square_degrees(area(s_region))"),
    ("SELECT * FROM ivoa.ObsCore;", "SELECT * FROM ivoa.ObsCore"),
    ("SELECT TOP 1 LOWER(obs_id), upper(obs_id), COALESCE(s_ra, 0.0) FROM "
     "ivoa.ObsCore", "SELECT LOWER(obs_id), UPPER(obs_id), COALESCE(s_ra, 0.0)"),
    ("SELECT TOP 2 name FROM pessto.runs UNION SELECT name FROM pessto.targets",
     "(SELECT name FROM pessto.runs LIMIT 2) UNION SELECT name"),
    ("SELECT CAST(s_ra AS INTEGER), CAST(obs_id AS VARCHAR(5)), CAST(s_dec AS "
     "DOUBLE PRECISION) FROM ivoa.ObsCore", "SELECT CAST(s_ra AS INTEGER), "
     "CAST(obs_id AS VARCHAR(5)), CAST(s_dec AS DOUBLE PRECISION)"),
    ("SELECT CAST(CAST(s_ra AS INTEGER) AS CHAR(3)) FROM ivoa.ObsCore",
     "CAST(CAST(s_ra AS INTEGER) AS CHAR(3))"),
    ("SELECT name FROM pessto.runs EXCEPT SELECT name FROM pessto.targets "
     "INTERSECT SELECT name FROM pessto.runs UNION ALL SELECT name FROM "
     "pessto.runs", "pessto.runs EXCEPT SELECT name FROM pessto.targets INTERSECT "
     "SELECT name FROM pessto.runs UNION ALL SELECT"),
    ("SELECT IN_UNIT(em_min, 'nm') FROM ivoa.ObsCore", "((em_min) * 1000000000.0)"),
    ("SELECT IN_UNIT(o.s_fov, 'arcsec') FROM ivoa.ObsCore AS o",
     "((o.s_fov) * 3600.0)"),
    ("WITH r AS (SELECT run_id, name FROM pessto.runs) SELECT r.name FROM r",
     "SELECT r.name FROM (SELECT run_id, name FROM pessto.runs) AS r"),
    ("WITH r AS (SELECT run_id FROM pessto.runs), s AS (SELECT run_id FROM r) "
     "SELECT x.run_id FROM s AS x JOIN r ON r.run_id = x.run_id",
     "FROM (SELECT run_id FROM (SELECT run_id FROM pessto.runs) AS r) AS x JOIN "
     "(SELECT run_id FROM pessto.runs) AS r ON"),
    ("SELECT ivo_string_agg(name, ','), ivo_hasword(name, 'efosc') FROM pessto.runs",
     "SELECT string_agg(name, ','), ivo_hasword(name, 'efosc')"),
    ("SELECT ivo_healpix_index(10, s_ra, s_dec) FROM ivoa.ObsCore",
     "ivo_healpix_index(10, s_ra, s_dec)"),
    ("SELECT CENTROID(CIRCLE('ICRS', 1, 2, 3)) FROM pessto.runs",
     "CENTROID(scircle(spoint(RADIANS(1.0), RADIANS(2.0)), RADIANS(3.0)))"),
])
def test_translated(adql: str, expected: str) -> None:
    assert expected in translate(adql, {"t1"}).sql


def test_tables_are_reported() -> None:
    t = translate("SELECT p.product_id FROM pessto.products AS p JOIN pessto.runs "
                  "AS r ON r.run_id = p.run_id WHERE EXISTS (SELECT 1 FROM "
                  "TAP_SCHEMA.tables)")
    assert [x.name for x in t.tables] == ["pessto.products", "pessto.runs",
                                          "TAP_SCHEMA.tables"]


def test_error_position_is_in_the_original_text() -> None:
    with pytest.raises(ADQLError) as info:
        translate("SELECT 'x' AS a,\n  pg_sleep(1) FROM ivoa.ObsCore")
    assert (info.value.line, info.value.column) == (2, 3)


def _with_chain(n: int) -> str:
    ctes = ["t0 AS (SELECT obs_id FROM ivoa.ObsCore)"] + [
        f"t{i} AS (SELECT obs_id FROM t{i - 1})" for i in range(1, n)]
    return "WITH " + ", ".join(ctes) + f" SELECT obs_id FROM t{n - 1}"


def test_written_out_with_tables_are_bounded_too() -> None:
    """Each WITH table is one level deeper once written out as a derived table."""
    assert translate(_with_chain(20)).sql.startswith("SELECT")
    with pytest.raises(ADQLError, match="more than 25 deep"):
        translate(_with_chain(30))


_ONE = "SELECT TOP 1 {} AS x FROM ivoa.ObsCore"


@pytest.mark.parametrize(("adql", "message"), [
    (_ONE.format("(" * 300 + "1" + ")" * 300), "more than 25 deep"),
    (_ONE.format("(" * 3000 + "1" + ")" * 3000), "more than 25 deep"),
    (_ONE.format("ABS(" * 2000 + "1" + ")" * 2000), "more than 25 deep"),
    (_ONE.format("(" * 26 + "1" + ")" * 26), "more than 25 deep"),
    (_ONE.format("+".join(["1"] * 6000)), "more than 10000 tokens"),
    (_ONE.format("+".join(["1"] * 202)), "more than 200 operators"),
    ("SELECT obs_id FROM ivoa.ObsCore WHERE " + " OR ".join(["s_ra > 1"] * 202),
     "more than 200 operators"),
    (_ONE.format("(" * 20 + "+".join(["1"] * 190) + ")" * 20), "nested too deeply"),
    (_ONE.format("(" * 6 + "+".join(["1"] * 150) + ")" * 6
                 + "+" + "+".join(["1"] * 100)), "nested too deeply"),
])
def test_too_large_or_too_deep_is_refused_before_parsing(
        adql: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def never(text: str) -> None:
        raise AssertionError("the parser was reached")

    monkeypatch.setattr("tap.adql.translate._Translator", never)
    with pytest.raises(ADQLError, match=message):
        translate(adql)


def _nested_sums(levels: int, terms: int) -> str:
    inner = "1"
    for _ in range(levels):
        inner = "ABS(" + "+".join(["s_ra"] * terms) + "+" + inner + ")"
    return inner


@pytest.mark.parametrize("adql", [
    _ONE.format("(" * 25 + "1" + ")" * 25),
    _ONE.format("ABS(" * 25 + "1" + ")" * 25),
    _ONE.format("+".join(["1"] * 201)),
    "SELECT obs_id FROM ivoa.ObsCore WHERE " + " AND ".join(["s_ra > 1"] * 200),
    _ONE.format(_nested_sums(8, 20)),
    "SELECT obs_id FROM ivoa.ObsCore WHERE obs_id IN ("
    + ", ".join(f"'id{i}'" for i in range(2000)) + ")",
])
def test_largest_accepted_queries_translate_deep_in_a_stack(adql: str) -> None:
    """The bounds leave room for the web server's own frames (~150)."""

    def deep(n: int) -> str:
        return deep(n - 1) if n else translate(adql).sql

    assert deep(150).startswith("SELECT")
