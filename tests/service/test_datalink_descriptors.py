"""Every DAL answer with dataset identifiers carries a DataLink service descriptor.

pyvo's ``iter_datalinks()`` (and TOPCAT's DataLink view) follow it: one links
document per row, whose ``#this`` link is the row's file.
"""

from __future__ import annotations

import warnings

import pytest
import pyvo

from tests.conftest import LiveServer


def _check_links(results: pyvo.dal.DALResults, rows: int) -> None:
    docs = list(results.iter_datalinks())
    assert len(docs) == rows > 0
    for doc in docs:
        this = [r for r in doc if r.semantics == "#this"]
        assert this and this[0].access_url.startswith("http://127.0.0.1")


@pytest.mark.parametrize("query", [
    "SELECT TOP 4 obs_publisher_did, access_url FROM ivoa.obscore",
    "SELECT TOP 4 p.publisher_did, r.name FROM pessto.products AS p "
    "JOIN pessto.runs AS r ON r.run_id = p.run_id",
])
def test_tap_results_link_each_row(live_server: LiveServer, query: str) -> None:
    tap = pyvo.dal.TAPService(live_server.url + "/tap")
    _check_links(tap.run_sync(query), 4)


def test_async_tap_results_link_each_row(live_server: LiveServer) -> None:
    tap = pyvo.dal.TAPService(live_server.url + "/tap")
    job = tap.submit_job("SELECT TOP 3 obs_publisher_did FROM ivoa.obscore")
    job.run().wait(timeout=120)
    job.raise_if_error()
    _check_links(job.fetch_result(), 3)
    job.delete()


def test_tap_results_without_dids_have_no_descriptor(live_server: LiveServer) -> None:
    tap = pyvo.dal.TAPService(live_server.url + "/tap")
    res = tap.run_sync("SELECT TOP 2 name FROM pessto.runs")
    assert list(res.iter_datalinks()) == []


def test_sia2_and_ssa_results_link_each_row(live_server: LiveServer) -> None:
    from sqlalchemy import text

    with live_server.archive.engine.connect() as conn:
        img = conn.execute(text(
            "SELECT s_ra, s_dec FROM ivoa.obscore WHERE dataproduct_type = 'image' "
            "AND s_ra IS NOT NULL ORDER BY obs_publisher_did LIMIT 1")).one()
        spec = conn.execute(text(
            "SELECT s_ra, s_dec FROM ivoa.obscore WHERE dataproduct_type = "
            "'spectrum' AND s_ra IS NOT NULL ORDER BY obs_publisher_did LIMIT 1")).one()
    sia2 = pyvo.dal.SIA2Service(live_server.url + "/sia2")
    with warnings.catch_warnings():  # pyvo warns of the OVERFLOW we ask for
        warnings.simplefilter("ignore", pyvo.dal.DALOverflowWarning)
        images = sia2.search(pos=(img[0], img[1], 0.05), maxrec=3)
        ssa = pyvo.dal.SSAService(live_server.url + "/ssap")
        spectra = ssa.search(pos=(spec[0], spec[1]), diameter=0.1, maxrec=3)
    _check_links(images, len(images))
    _check_links(spectra, len(spectra))
