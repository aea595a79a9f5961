"""Proof that an anonymous ADQL caller learns nothing about a hidden row (#13).

A caller's expression that fails on a row ("division by zero", the square root
of a negative number) tells whether that row exists and what it holds, if the
database evaluates it on a row the caller may not see. For every published
table and view, joins between them, a TAP_UPLOAD join and a subquery, the same
queries, through ``/tap/sync`` over HTTP, must answer alike for a hidden row's
value and for a value no row has; a member, who sees the hidden row, gets the
error (the oracle works).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from astropy.io.votable import parse_single_table
from astropy.table import Table
from sqlalchemy import text

from tests.auth_fixtures import AccessSite, access_site  # noqa: F401

_HIDDEN = "NOT coalesce(p.release_date <= now(), false)"
_PUBLIC = "coalesce(p.release_date <= now(), false)"
# a hidden current version whose position is far from every public one, so
# that the oracles below match it alone
_HIDDEN_VERSION = f"""
SELECT v.{{col}} FROM archive.version v JOIN archive.product p USING (product_id)
WHERE v.is_current AND v.ra IS NOT NULL AND {_HIDDEN}
  AND NOT EXISTS (SELECT 1 FROM archive.version w JOIN archive.product q
                  USING (product_id) WHERE w.is_current
                  AND coalesce(q.release_date <= now(), false)
                  AND abs(w.ra - v.ra) < 0.01)
ORDER BY v.version_id LIMIT 1
"""
_HIDDEN_TARGET = f"""
SELECT t.{{col}} FROM archive.target t WHERE t.ra IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM archive.product p
                  WHERE p.target_id = t.target_id AND {_PUBLIC})
  AND NOT EXISTS (SELECT 1 FROM archive.target u WHERE u.target_id <> t.target_id
                  AND abs(u.ra - t.ra) < 0.01)
ORDER BY t.target_id LIMIT 1
"""


@dataclass(frozen=True)
class Probe:
    """A query with ``{v}`` in a test that fails for the row holding ``v``."""

    name: str
    #: ADQL after ``SELECT COUNT(*) AS n FROM``, ending in the tested column
    adql: str
    #: SQL (run as the archive) giving a hidden row's value of that column
    hidden: str
    #: A value no row holds
    absent: float
    #: Uploaded table, if the query names TAP_UPLOAD.t
    upload: bool = False


PROBES = [
    Probe("obscore product id", "ivoa.obscore WHERE {test(pessto_product_id)}",
          _HIDDEN_VERSION.format(col="product_id"), -7),
    Probe("obscore s_ra", "ivoa.obscore WHERE {test(s_ra)}",
          _HIDDEN_VERSION.format(col="ra"), 400.5),
    Probe("products product_id", "pessto.products WHERE {test(product_id)}",
          _HIDDEN_VERSION.format(col="product_id"), -7),
    Probe("products ra", 'pessto.products WHERE {test(ra)}',
          _HIDDEN_VERSION.format(col="ra"), 400.5),
    Probe("versions version_id", "pessto.versions WHERE {test(version_id)}",
          _HIDDEN_VERSION.format(col="version_id"), -7),
    Probe("provenance version_id", "pessto.provenance WHERE {test(version_id)}",
          "SELECT pv.version_id FROM archive.provenance pv JOIN archive.version v "
          f"USING (version_id) JOIN archive.product p USING (product_id) "
          f"WHERE {_HIDDEN} ORDER BY 1 LIMIT 1", -7),
    Probe("runs run_id", "pessto.runs WHERE {test(run_id)}",
          "SELECT r.run_id FROM archive.run r WHERE NOT EXISTS (SELECT 1 FROM "
          f"archive.product p WHERE p.run_id = r.run_id AND {_PUBLIC}) "
          "ORDER BY 1 LIMIT 1", -7),
    Probe("targets target_id", "pessto.targets WHERE {test(target_id)}",
          _HIDDEN_TARGET.format(col="target_id"), -7),
    Probe("targets ra", "pessto.targets WHERE {test(ra)}",
          _HIDDEN_TARGET.format(col="ra"), 400.5),
    Probe("join obscore products",
          "ivoa.obscore AS o JOIN pessto.products AS p "
          "ON p.product_id = o.pessto_product_id WHERE {test(p.ra)}",
          _HIDDEN_VERSION.format(col="ra"), 400.5),
    Probe("join products runs",
          "pessto.products AS p JOIN pessto.runs AS r ON r.run_id = p.run_id "
          "WHERE {test(r.run_id)}",
          "SELECT r.run_id FROM archive.run r WHERE NOT EXISTS (SELECT 1 FROM "
          f"archive.product p WHERE p.run_id = r.run_id AND {_PUBLIC}) "
          "ORDER BY 1 LIMIT 1", -7),
    Probe("join versions provenance",
          "pessto.versions AS v LEFT OUTER JOIN pessto.provenance AS pv "
          "ON pv.version_id = v.version_id WHERE {test(v.version_id)}",
          _HIDDEN_VERSION.format(col="version_id"), -7),
    # grouped, so that every row of the subquery is tested: a semi-join may stop
    # at a run's first row, and a member's check of the oracle would then
    # depend on the plan
    Probe("subquery", "pessto.runs AS r WHERE r.name IN (SELECT o.pessto_run FROM "
          "ivoa.obscore AS o WHERE {test(o.pessto_product_id)} GROUP BY "
          "o.pessto_run)",
          _HIDDEN_VERSION.format(col="product_id"), -7),
    Probe("upload join", "TAP_UPLOAD.t AS u JOIN ivoa.obscore AS o ON u.x = 1 "
          "WHERE {test(o.s_ra)}", _HIDDEN_VERSION.format(col="ra"), 400.5,
          upload=True),
]

#: The failing tests: zero for the hidden value only.
ORACLES = {
    "division": "1 / ({col} - {v}) > -1000000",
    "sqrt": "SQRT(ABS({col} - {v}) - 0.001) > -1",
}


def _upload() -> bytes:
    buf = io.BytesIO()
    Table({"x": [1]}).write(buf, format="votable")
    return buf.getvalue()


def _query(site: AccessSite, adql: str, upload: bool, who: str | None = None
           ) -> requests.Response:
    headers = getattr(site.accounts, who).bearer if who else {}
    data: dict[str, Any] = {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": adql}
    files = None
    if upload:
        data["UPLOAD"] = "t,param:t"
        files = {"t": ("t.xml", _upload(), "application/x-votable+xml")}
    return requests.post(site.server.url + "/tap/sync", data=data, files=files,
                         headers=headers, timeout=120)


def _answer(resp: requests.Response) -> tuple[int, object]:
    """Return what a caller learns: the status and the count (or the error)."""
    if resp.status_code != 200:
        return resp.status_code, resp.text
    table = parse_single_table(io.BytesIO(resp.content)).to_table()
    return 200, int(table["n"][0])


def _adql(probe: Probe, oracle: str, value: float) -> str:
    col = probe.adql.split("{test(", 1)[1].split(")}", 1)[0]
    test = ORACLES[oracle].format(col=col, v=repr(value))
    return "SELECT COUNT(*) AS n FROM " + probe.adql.replace(
        "{test(" + col + ")}", test)


@pytest.mark.parametrize("oracle", sorted(ORACLES))
@pytest.mark.parametrize("probe", PROBES, ids=[p.name for p in PROBES])
def test_hidden_value_answers_like_no_value(access_site: AccessSite,
                                            probe: Probe, oracle: str) -> None:
    with access_site.server.archive.engine.connect() as conn:
        hidden = conn.execute(text(probe.hidden)).scalar_one()
    hidden_q = _adql(probe, oracle, hidden)
    absent_q = _adql(probe, oracle, probe.absent)
    anon_hidden = _answer(_query(access_site, hidden_q, probe.upload))
    anon_absent = _answer(_query(access_site, absent_q, probe.upload))
    assert anon_hidden == anon_absent, (hidden_q, anon_hidden, anon_absent)
    assert anon_hidden[0] == 200, anon_hidden
    # the oracle works: a member sees the row, and the test fails on it
    member = _query(access_site, hidden_q, probe.upload, "member")
    assert member.status_code == 400, (hidden_q, member.status_code)
    assert "division by zero" in member.text or "square root" in member.text


def test_member_sees_the_hidden_rows(access_site: AccessSite) -> None:
    h = access_site.hidden
    for who, expect in ((None, len(h.visible_ids)), ("member", h.total)):
        resp = _query(access_site, "SELECT COUNT(*) AS n FROM ivoa.obscore "
                      "AS o JOIN pessto.products AS p ON p.product_id = "
                      "o.pessto_product_id", False, who)
        assert _answer(resp) == (200, expect), who


@pytest.mark.parametrize("oracle", sorted(ORACLES))
@pytest.mark.parametrize("view,col,mine", [
    ("pessto.classifications", "redshift", "classifier_version = 'oracle-test'"),
    ("pessto.classifications", "rlap", "classifier_version = 'oracle-test'"),
    ("pessto.classification_matches", "redshift", "template = 'oracle-test'"),
])
def test_hidden_classification_answers_like_none(access_site: AccessSite, view: str,
                                                 col: str, mine: str, oracle: str
                                                 ) -> None:
    """A proprietary spectrum's classification cannot be read through errors.

    The count is of the test's own row (the job workers classify meanwhile);
    whether the test is evaluated on the hidden row before that condition is up
    to the planner, which is what the policy must make harmless.
    """
    engine = access_site.server.archive.engine
    value = 0.0123456789
    with engine.begin() as conn:
        version_id = conn.execute(text(
            _HIDDEN_VERSION.format(col="version_id"))).scalar_one()
        cid = conn.execute(text(
            "INSERT INTO archive.classification (version_id, classifier_version, "
            "library_version, sn_type, redshift, rlap, good, matches) VALUES "
            "(:v, 'oracle-test', 'oracle-test', 'Ia', :z, :z, true, "
            "jsonb_build_array(jsonb_build_object('template', 'oracle-test', "
            "'z', :z))) "
            "RETURNING classification_id"), {"v": version_id, "z": value}
        ).scalar_one()
    try:
        def ask(v: float, who: str | None = None) -> requests.Response:
            test = ORACLES[oracle].format(col=col, v=repr(v))
            return _query(access_site, f"SELECT COUNT(*) AS n FROM {view} "
                          f"WHERE {mine} AND {test}", False, who)

        hidden, absent = _answer(ask(value)), _answer(ask(-7.5))
        assert hidden == absent == (200, 0), (hidden, absent)
        assert _answer(ask(-7.5, "member")) == (200, 1)
        member = ask(value, "member")
        assert member.status_code == 400, member.text[:300]
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM archive.classification "
                              "WHERE classification_id = :c"), {"c": cid})
