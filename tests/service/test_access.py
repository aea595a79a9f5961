"""Proof of the access rule on every path: anonymous callers cannot see, count,
preview or download a proprietary product; members can.

The site (``access_site``) holds two runs; one is proprietary as a whole (its
name, its targets and its files), and intermediates are never public.
"""

from __future__ import annotations

import io
import re
import tarfile
from typing import Any

import requests

from tests.auth_fixtures import AccessSite, access_site  # noqa: F401


def _get(site: AccessSite, path: str, who: str | None = None, **kw: Any
         ) -> requests.Response:
    headers = kw.pop("headers", {})
    if who is not None:
        headers.update(getattr(site.accounts, who).bearer)
    return requests.get(site.server.url + path, headers=headers, timeout=60, **kw)


def _json(site: AccessSite, path: str, who: str | None = None) -> Any:
    r = _get(site, path, who, params={"format": "json"})
    assert r.status_code == 200, (path, who, r.status_code, r.text[:300])
    return r.json()


def _no_secrets(site: AccessSite, text: str) -> None:
    """Fail if a hidden file, run, target or checksum is named in ``text``.

    (The headers of public files may name proprietary inputs as provenance;
    callers pass only text that should not carry those.)
    """
    h = site.hidden
    for secret in (*h.filenames, *h.run_names, *h.target_names, *h.sha256s):
        pattern = rf"(?<![A-Za-z0-9_]){re.escape(secret)}(?![A-Za-z0-9_])"
        assert not re.search(pattern, text), f"{secret!r} leaked"


def test_landing_page_counts(access_site: AccessSite) -> None:
    h = access_site.hidden
    anon = _get(access_site, "/")
    m = re.search(r"<strong>(\d+)</strong> products visible", anon.text)
    assert m and int(m.group(1)) == len(h.visible_ids)
    _no_secrets(access_site, anon.text)
    member = _get(access_site, "/", "member")
    m = re.search(r"<strong>(\d+)</strong> products visible", member.text)
    assert m and int(m.group(1)) == h.total
    assert h.hidden_run in member.text


def test_single_files(access_site: AccessSite) -> None:
    for pid in sorted(access_site.hidden.product_ids)[:: max(1, len(
            access_site.hidden.product_ids) // 6)]:
        # anonymous: 401, signing in may show it; no role: not found
        assert _get(access_site, f"/products/{pid}").status_code == 401
        assert _get(access_site, f"/products/{pid}/versions/1").status_code == 401
        assert _get(access_site, f"/products/{pid}", "outsider").status_code == 404
        assert _get(access_site, f"/products/{pid}", "member").status_code == 200
    pid = min(access_site.hidden.visible_ids)
    assert _get(access_site, f"/products/{pid}").status_code == 200


def test_run_list_and_counts(access_site: AccessSite) -> None:
    h = access_site.hidden
    anon = _json(access_site, "/runs")["runs"]
    assert not {r["name"] for r in anon} & h.run_names
    assert sum(r["products"] for r in anon) == len(h.visible_ids)
    member = _json(access_site, "/runs", "member")["runs"]
    assert h.run_names <= {r["name"] for r in member}
    assert sum(r["products"] for r in member) == h.total
    _no_secrets(access_site, _get(access_site, "/runs").text)


def test_run_pages_and_downloads(access_site: AccessSite) -> None:
    h = access_site.hidden
    for path in (f"/runs/{h.hidden_run}", f"/runs/{h.hidden_run}/download",
                 f"/runs/{h.hidden_run}/phase3", f"/runs/{h.hidden_run}/phase3/bundle"):
        r = _get(access_site, path)
        assert r.status_code == 404, (path, r.status_code, r.text[:200])
        assert r.text.startswith("NotFoundFault")
    member = _json(access_site, f"/runs/{h.hidden_run}", "member")
    assert member["count"] > 0
    # a visible run: anonymous sees its public products only
    anon = _json(access_site, f"/runs/{h.visible_run}")
    ids = {p["product_id"] for p in anon["products"]}
    assert ids and ids <= h.visible_ids
    member = _json(access_site, f"/runs/{h.visible_run}", "member")
    assert {p["product_id"] for p in member["products"]} & h.product_ids, \
        "the visible run holds intermediates only members see"
    tar = _get(access_site, f"/runs/{h.visible_run}/download", params={"format": "tar"})
    assert tar.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(tar.content)) as tf:
        names = tf.getnames()
    assert names
    _no_secrets(access_site, "\n".join(names))
    # asking for a hidden product by id reveals nothing about it
    hidden_pid = min(h.product_ids)
    r = _get(access_site, f"/runs/{h.visible_run}/download",
             params={"product": str(hidden_pid)})
    assert r.status_code in (400, 404)
    _no_secrets(access_site, r.text)


def test_objects(access_site: AccessSite) -> None:
    h = access_site.hidden
    anon = {o["name"] for o in _json(access_site, "/objects")["objects"]}
    assert anon and not anon & h.target_names
    member = {o["name"] for o in _json(access_site, "/objects", "member")["objects"]}
    assert h.target_names <= member
    target = sorted(h.target_names)[0]
    for path in (f"/objects/{target}", f"/objects/{target}/download"):
        r = _get(access_site, path)
        assert r.status_code == 404, (path, r.status_code, r.text[:200])
        _no_secrets(access_site, r.text.replace(target, ""))
    assert _json(access_site, f"/objects/{target}", "member")["count"] > 0
    # a public object's page lists no hidden product, even in a wide cone
    public = sorted(anon)[0]
    page = _get(access_site, f"/objects/{public}",
                params={"format": "json", "radius": "3600"}).json()
    assert {p["product_id"] for p in page["products"]} <= h.visible_ids


def test_product_versions(access_site: AccessSite) -> None:
    pid = min(access_site.hidden.product_ids)
    r = _get(access_site, f"/products/{pid}/versions")
    assert r.status_code == 404 and r.text.startswith("NotFoundFault")
    assert _get(access_site, f"/products/{pid}/versions", "member").status_code == 200
