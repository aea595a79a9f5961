"""Real clients authenticate from what the capabilities declare: pyvo's AuthSession
with HTTP Basic (name + token or password) and with bearer tokens, for TAP sync and
async and for the positional services."""

from __future__ import annotations

import pyvo
import requests
from pyvo.auth import AuthSession

from tests.auth_fixtures import AccessSite, access_site  # noqa: F401

TOKEN_METHOD = "ivo://ivoa.net/sso#token"  # noqa: S105 - an IVOA identifier
COUNT = "SELECT COUNT(*) AS n FROM ivoa.obscore"


def _basic(site: AccessSite, secret: str) -> AuthSession:
    auth = AuthSession()
    auth.credentials.set_password(site.accounts.member.name, secret)
    return auth


def _bearer(site: AccessSite) -> AuthSession:
    auth = AuthSession()
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {site.accounts.member.token}"
    auth.credentials.set(TOKEN_METHOD, s)
    return auth


def test_pyvo_tap_with_each_credential(access_site: AccessSite) -> None:
    h = access_site.hidden
    url = access_site.server.url + "/tap"
    anon = pyvo.dal.TAPService(url)
    assert int(anon.run_sync(COUNT)["n"][0]) == len(h.visible_ids)
    for auth in (_basic(access_site, access_site.accounts.member.token),
                 _basic(access_site, access_site.accounts.member.password),
                 _bearer(access_site)):
        svc = pyvo.dal.TAPService(url, session=auth)
        auth.update_from_capabilities(svc.capabilities)
        assert int(svc.run_sync(COUNT)["n"][0]) == h.total
        job = svc.submit_job(COUNT)
        job.run()
        job.wait(timeout=90)
        job.raise_if_error()
        assert int(job.fetch_result()["n"][0]) == h.total
        job.delete()


def test_pyvo_positional_services_with_basic(access_site: AccessSite) -> None:
    h = access_site.hidden
    auth = _basic(access_site, access_site.accounts.member.token)
    base = access_site.server.url
    sia2 = pyvo.dal.SIA2Service(base + "/sia2", session=auth)
    auth.update_from_capabilities(sia2.capabilities)
    anon_sia2 = pyvo.dal.SIA2Service(base + "/sia2")
    member: set[str] = set()
    anon: set[str] = set()
    for ra, dec, _ in h.positions[:: max(1, len(h.positions) // 4)]:
        member |= {str(r["obs_publisher_did"]) for r in sia2.search(pos=(ra, dec, 3))}
        anon |= {str(r["obs_publisher_did"])
                 for r in anon_sia2.search(pos=(ra, dec, 3))}
    assert member & h.dids and not anon & h.dids
