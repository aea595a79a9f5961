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
    ("SELECT CENTROID(s_region) FROM ivoa.ObsCore", "CENTROID"),
    ("SELECT CAST(s_ra AS INTEGER) FROM ivoa.ObsCore", "CAST is not supported"),
    ("WITH q AS (SELECT 1 FROM ivoa.ObsCore) SELECT * FROM q", "WITH is not"),
    ("SELECT s_ra FROM ivoa.ObsCore EXCEPT SELECT s_dec FROM ivoa.ObsCore",
     "EXCEPT is not"),
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
     "spoint(RADIANS(s_ra), RADIANS(s_dec)) @ scircle(spoint(RADIANS(10.0), "
     "RADIANS(20.0)), RADIANS(0.5)) LIMIT 10"),
    ("SELECT COORD1(POINT(s_ra, s_dec)) AS c FROM ivoa.ObsCore",
     "COORD1(spoint(RADIANS(s_ra), RADIANS(s_dec)))"),
    ("SELECT s_ra FROM ivoa.ObsCore WHERE DISTANCE(POINT(s_ra, s_dec), POINT(1, 2))"
     " < 0.1", "spoint_dwithin("),
    ("SELECT DISTANCE(s_ra, s_dec, 1, 2) AS d FROM ivoa.ObsCore",
     "DEGREES(spoint(RADIANS(s_ra), RADIANS(s_dec)) <-> spoint(RADIANS(1.0), "
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
