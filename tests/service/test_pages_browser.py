"""The astronomers' pages in a real headless browser (Debian chromium + chromedriver).

A served archive of the demo data in which one night of one transient is still
proprietary and that transient's spectra are classified. A member signs in,
searches the transient, reads its page, uses the spectrum viewer (redshift,
switching a spectrum off), downloads a spectrum and checks it; signs out and
the proprietary spectrum is gone. A reducer uploads three files through the
upload page. Run and object pages fit a 1280-pixel and a phone-wide window.
Screenshots go to ``$VO_ARCHIVE_SCREENSHOTS`` or a folder of the test run.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import text

from tests.auth_fixtures import Accounts, drop_accounts, make_accounts
from tests.browser import CHROMIUM, DRIVER, chromium
from tests.conftest import Archive, LiveServer, start_server, stop_server

webdriver = pytest.importorskip("selenium.webdriver")
pytestmark = pytest.mark.skipif(not (shutil.which(CHROMIUM) and shutil.which(DRIVER)),
                                reason="chromium and chromedriver are not installed")

#: Demo files kept out of the archive: the upload page sends one as new.
HELD_BACK = 3
#: Finds elements inside Bokeh's shadow roots.
DEEP_ALL = """
window.deepAll = function (sel, root) {
  root = root || document;
  let out = Array.from(root.querySelectorAll(sel));
  for (const el of root.querySelectorAll('*')) {
    if (el.shadowRoot) out = out.concat(deepAll(sel, el.shadowRoot));
  }
  return out;
};
"""


@dataclass(frozen=True)
class Site:
    """The served archive, its accounts and what the test knows of it."""

    server: LiveServer
    accounts: Accounts
    target: str
    alias: str
    spectra: int
    hidden_spectra: int
    hidden_product: int
    held_back: list[Path]
    eso_run: str


@pytest.fixture(scope="module")
def site(make_archive: Callable[..., Archive], demo_files: list[Path]
         ) -> Iterator[Site]:
    from classify.jobs import classify_version

    archive = make_archive()
    archive.ingest(demo_files[:-HELD_BACK])
    one_d = "('fluxcal_1d', 'telluric_corrected_1d', 'extracted_1d')"
    with archive.engine.begin() as conn:
        # the transient with most 1D spectra over at least two nights
        target_id, name, nights = conn.execute(text(
            "SELECT t.target_id, t.name, count(DISTINCT p.night) FROM archive.target t "
            "JOIN archive.product p USING (target_id) WHERE p.category = 'science' "
            f"AND p.product_type IN {one_d} AND p.release_date <= now() "
            "GROUP BY 1, 2 HAVING count(DISTINCT p.night) > 1 "
            "ORDER BY count(*) DESC, t.name LIMIT 1")).one()
        last = conn.execute(text(
            "SELECT max(night) FROM archive.product WHERE target_id = :t"),
            {"t": target_id}).scalar_one()
        conn.execute(text(
            "UPDATE archive.product SET release_date = now() + interval '300 days' "
            "WHERE target_id = :t AND night = :n"), {"t": target_id, "n": last})
        spectra = conn.execute(text(
            f"SELECT count(*) FROM archive.product WHERE target_id = :t AND "
            f"category = 'science' AND product_type IN {one_d}"),
            {"t": target_id}).scalar_one()
        # that night's products, and intermediates (never public by default)
        hidden = conn.execute(text(
            f"SELECT product_id FROM archive.product WHERE target_id = :t AND "
            f"category = 'science' AND product_type IN {one_d} AND NOT "
            "coalesce(release_date <= now(), false) ORDER BY night DESC, product_id"),
            {"t": target_id}).scalars().all()
        versions = conn.execute(text(
            "SELECT v.version_id FROM archive.version v JOIN archive.product p "
            "USING (product_id) WHERE p.target_id = :t AND archive.classifiable("
            "p.mode, p.category, p.level, p.product_type)"),
            {"t": target_id}).scalars().all()
        alias = conn.execute(text(
            "SELECT alias FROM archive.target_alias WHERE target_id = :t "
            "ORDER BY alias LIMIT 1"), {"t": target_id}).scalar_one()
        # two EFOSC runs under one ESO run id (a programme's run split in two)
        first, second = conn.execute(text(
            "SELECT run_id, eso_run FROM archive.run WHERE instrument = 'EFOSC' "
            "ORDER BY first_night LIMIT 2")).all()
        eso_run = first[1]
        conn.execute(text("UPDATE archive.run SET eso_run = :e WHERE run_id = :r"),
                     {"e": eso_run, "r": second[0]})
    assert nights > 1 and hidden and versions
    for v in versions:
        classify_version(archive.settings, v)
    made = make_accounts(archive)
    server = start_server(archive)
    yield Site(server, made, name, alias, spectra, len(hidden), hidden[0],
               list(demo_files[-HELD_BACK:]), eso_run)
    stop_server(server.process)
    drop_accounts(archive, made)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("VO_ARCHIVE_SCREENSHOTS")
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        return Path(given)
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    yield from chromium(tmp_path_factory, 1280, 800)


def wait_for(predicate: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def sign_in(driver: Any, url: str, name: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    # each sign-in starts from a clean browser: no session or form cookie left
    # by an earlier test of the module (the form's CSRF cookie is per visit)
    driver.get(url + "/login")
    driver.delete_all_cookies()
    for attempt in range(2):
        driver.get(url + "/login")
        for field, value in (("username", name), ("password", password)):
            box = driver.find_element(By.NAME, field)
            box.clear()  # whatever the browser filled in itself
            box.send_keys(value)
            if box.get_attribute("value") != value:
                # headless Chromium has been seen to drop the keys of a field
                # that had not yet taken focus: the value is set instead
                driver.execute_script("arguments[0].value = arguments[1]", box, value)
            assert box.get_attribute("value") == value, field
        # the form is submitted as its button would (requestSubmit: validation,
        # submit event), which headless Chromium never drops as it has a click
        driver.execute_script(
            "const f = document.getElementById('login-form');"
            " f.requestSubmit(f.querySelector('button'))")
        try:
            wait_for(lambda: driver.find_elements(By.ID, "signed-in-as"), 60)
            break
        except AssertionError:
            body = driver.find_element(By.TAG_NAME, "body").text
            # a refusal names itself (login-message); a page left as it was
            # (a sign-in slower than the wait on a loaded machine): once
            # more then, never past a refusal
            if attempt or driver.find_elements(By.ID, "login-message"):
                raise AssertionError(f"not signed in at {driver.current_url}: "
                                     + body[:500]) from None
    assert driver.find_element(By.ID, "signed-in-as").text == name


def full_shot(driver: Any, path: Path) -> None:
    """Save a screenshot of the whole page (the window grown to its height)."""
    w, h = driver.get_window_size()["width"], driver.get_window_size()["height"]
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(w, min(int(height) + 100, 6000))
    time.sleep(0.5)
    driver.save_screenshot(str(path))
    driver.set_window_size(w, h)


def bokeh(driver: Any, js: str) -> Any:
    """Run ``js`` with ``doc`` bound to the page's Bokeh document."""
    return driver.execute_script("const doc = Bokeh.documents[0];\n" + js)


def plot_ready(driver: Any) -> bool:
    return bool(driver.execute_script(
        "return window.Bokeh !== undefined && Bokeh.documents.length > 0 && "
        "(window.deepAll || (() => []))('canvas').length > 0"))


def spectrum_rows(driver: Any) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, "#spectra tr[data-product]"))


def test_member_object_page_viewer_download_and_sign_out(
        site: Site, browser: tuple[Any, Path], shots: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, downloads = browser
    url = site.server.url
    member = site.accounts.member
    sign_in(driver, url, member.name, member.password)
    driver.get(url + "/")
    full_shot(driver, shots / "landing.png")
    assert driver.find_elements(By.CSS_SELECTOR, "#services tr td")
    box = driver.find_element(By.CSS_SELECTOR, "#search input[name=q]")
    box.send_keys(site.alias.upper(), Keys.ENTER)
    wait_for(lambda: "/objects/" in driver.current_url)
    assert site.target in driver.find_element(By.TAG_NAME, "h2").text
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d\d [+-]\d\d:\d\d:\d\d\.\d",
                        driver.find_element(By.ID, "coords-sex").text)
    latest = driver.find_element(By.ID, "latest-type").text
    assert latest not in ("", "Not classified yet.")
    driver.execute_script(DEEP_ALL)
    wait_for(lambda: plot_ready(driver))

    # the plot: one line renderer per visible 1D spectrum, the template over them
    n = bokeh(driver, "return doc.all_roots.length && Array.from(doc.all_models)"
                      ".filter(m => (m.name || '').startsWith('spectrum-')).length")
    assert n == site.spectra == len(spectrum_rows(driver))
    assert bokeh(driver, "return doc.get_model_by_name('template') !== null")
    sizes = driver.execute_script("return deepAll('canvas').map(c => c.width)")
    assert max(sizes) > 600
    assert len([r for r in spectrum_rows(driver) if "proprietary" in r.text]) == \
        site.hidden_spectra
    full_shot(driver, shots / "object-member.png")

    # the redshift field moves the line markers: H alpha at 6562.8 (1 + z)
    zin = next(i for i in driver.execute_script("return deepAll('input')")
               if i.get_attribute("value") and driver.execute_script(
                   "return arguments[0].parentElement.textContent", i
               ).strip().startswith("Redshift"))
    zin.clear()
    zin.send_keys("0.1", Keys.ENTER)
    halpha = wait_for(lambda: (lambda x: x if abs(x - 6562.8 * 1.1) < 0.5 else None)(
        bokeh(driver, "return doc.get_model_by_name('marker:Halpha').location")))
    assert abs(halpha - 7219.08) < 0.5

    # a spectrum switched off by its check box
    assert bokeh(driver, "return doc.get_model_by_name('spectrum-0').visible")
    first = next(c for c in driver.execute_script(
        "return deepAll('input[type=checkbox]')")
                 if c.get_attribute("value") == "0" and "stack" not in
                 driver.execute_script("return arguments[0].parentElement.textContent",
                                       c))
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", first)
    first.click()
    wait_for(lambda: bokeh(driver,
                           "return !doc.get_model_by_name('spectrum-0').visible"))

    # download a spectrum's FITS file and verify it
    link = spectrum_rows(driver)[0].find_element(By.CSS_SELECTOR, "a.dl-fits")
    pid = int(link.get_attribute("href").split("/products/")[1].split("/")[0])
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", link)
    link.click()
    with site.server.archive.engine.connect() as conn:
        filename, sha = conn.execute(text(
            "SELECT filename, sha256 FROM archive.version WHERE product_id = :p "
            "AND is_current"), {"p": pid}).one()
    saved = wait_for(lambda: (downloads / filename).exists()
                     and not list(downloads.glob("*.crdownload")))
    assert saved
    assert hashlib.sha256((downloads / filename).read_bytes()).hexdigest() == sha

    # signed in, the proprietary spectrum answers; signed out it does not
    cookies = {c["name"]: c["value"] for c in driver.get_cookies()}
    hidden_url = f"{url}/products/{site.hidden_product}"
    assert requests.get(hidden_url, cookies=cookies, timeout=30).status_code == 200
    driver.find_element(By.CSS_SELECTOR, "#signout button").click()
    wait_for(lambda: driver.find_elements(By.ID, "signin-link"))
    driver.get(f"{url}/objects/{site.target}")
    driver.execute_script(DEEP_ALL)
    wait_for(lambda: plot_ready(driver))
    assert len(spectrum_rows(driver)) == site.spectra - site.hidden_spectra
    assert "proprietary" not in driver.find_element(By.TAG_NAME, "body").text
    n = bokeh(driver, "return Array.from(doc.all_models).filter(m => "
                      "(m.name || '').startsWith('spectrum-')).length")
    assert n == site.spectra - site.hidden_spectra
    stale = requests.get(hidden_url, cookies=cookies, timeout=30)
    anonymous = requests.get(hidden_url, timeout=30)
    assert stale.status_code == anonymous.status_code and \
        anonymous.status_code in (401, 404)
    assert stale.text.split(":")[0] == anonymous.text.split(":")[0]


def test_reducer_uploads_three_files(site: Site, browser: tuple[Any, Path],
                                     shots: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver, _ = browser
    url = site.server.url
    reducer = site.accounts.reducer
    sign_in(driver, url, reducer.name, reducer.password)
    driver.get(url + "/upload")
    bad = tmp_path / "not_a_product.fits"
    bad.write_bytes(b"SIMPLE  = this is no FITS file" + b" " * 2850)
    with site.server.archive.engine.connect() as conn:
        archived = conn.execute(text(
            "SELECT storage_key, filename FROM archive.version ORDER BY version_id "
            "LIMIT 1")).one()
    from vo_archive.ingest.storage import Storage

    again = tmp_path / archived[1]
    shutil.copy(Storage(site.server.archive.settings.storage_dir)
                .path_of(archived[0]), again)
    files = [site.held_back[0], again, bad]
    driver.find_element(By.ID, "picker").send_keys("\n".join(str(f) for f in files))
    assert driver.find_element(By.ID, "count").text == "3"
    driver.find_element(By.ID, "start").click()
    status = driver.find_element(By.ID, "upload-status")
    wait_for(lambda: status.get_attribute("data-done") == "3", timeout=120)
    rows = driver.find_elements(By.CSS_SELECTOR, "#files tr[data-file]")
    outcomes = {r.get_attribute("data-file"): r.get_attribute("data-outcome")
                for r in rows}
    assert outcomes == {site.held_back[0].name: "new", again.name: "unchanged",
                        bad.name: "rejected"}
    rejected = next(r for r in rows if r.get_attribute("data-file") == bad.name)
    assert len(rejected.find_element(By.CSS_SELECTOR, ".result").text) > \
        len("rejected: ")
    assert all(p.get_attribute("value") == "1"
               for p in driver.find_elements(By.CSS_SELECTOR, "#files progress"))
    full_shot(driver, shots / "upload.png")
    driver.find_element(By.CSS_SELECTOR, "#signout button").click()


@pytest.mark.parametrize("size", [(1280, 800), (390, 844)])
def test_run_and_object_pages_fit(site: Site, browser: tuple[Any, Path],
                                  shots: Path, size: tuple[int, int]) -> None:
    driver, _ = browser
    driver.set_window_size(*size)
    try:
        with site.server.archive.engine.connect() as conn:
            run = conn.execute(text(
                "SELECT r.name FROM archive.run r JOIN archive.product p USING "
                "(run_id) WHERE p.release_date <= now() GROUP BY 1 "
                "ORDER BY count(*) DESC LIMIT 1")).scalar_one()
        for kind, path in (("run", f"/runs/{run}"),
                           ("object", f"/objects/{site.target}"),
                           ("runs", "/runs"), ("objects", "/objects")):
            driver.get(site.server.url + path)
            driver.execute_script(DEEP_ALL)
            if kind == "object":
                wait_for(lambda: plot_ready(driver))
            wait = driver.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth]")
            assert wait[0] <= wait[1], (kind, size, wait)
            if kind in ("runs", "objects"):
                continue
            # previews are made on first request: wait until some show, in view
            try:
                wait_for(lambda: driver.execute_script(
                    "return Array.from(document.querySelectorAll("
                    "'#products img.preview')).filter(i => {"
                    " const r = i.getBoundingClientRect(); return r.width"
                    " > 0 && r.right <= window.innerWidth; }).length"), 120)
            except AssertionError:
                state = driver.execute_script(
                    "return Array.from(document.querySelectorAll("
                    "'#products img.preview')).slice(0, 5)"
                    ".map(i => [i.src, i.complete, i.naturalWidth,"
                    " i.dataset.tries, JSON.stringify(i.getBoundingClientRect())])")
                port = site.server.url.rsplit(":", 1)[1]
                log = site.server.archive.settings.home / f"server-{port}.log"
                raise AssertionError(
                    f"no preview in view on the {kind} page at {size}: {state}; "
                    f"server log: {log.read_text()[-3000:]}") from None
            wait = driver.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth]")
            assert wait[0] <= wait[1], (kind, size, wait)
            full_shot(driver, shots / f"{kind}-{size[0]}.png")
    finally:
        driver.set_window_size(1280, 800)


def login_session(url: str, name: str, password: str) -> requests.Session:
    """Sign in through the form with a plain HTTP client (cookie and CSRF field)."""
    s = requests.Session()
    page = s.get(url + "/login", headers={"Accept": "text/html"}, timeout=30)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    r = s.post(url + "/login", data={"csrf_token": token.group(1), "username": name,
                                     "password": password, "next": "/upload"},
               timeout=30)
    assert r.status_code == 200 and name in r.text
    return s


def test_upload_without_the_page_token_is_refused(site: Site) -> None:
    url = site.server.url
    reducer = site.accounts.reducer
    s = login_session(url, reducer.name, reducer.password)
    page = s.get(url + "/upload", timeout=30).text
    token = re.search(r'const csrf = "([^"]+)"', page)
    assert token
    body = {"file": ("x.fits", b"not fits", "application/fits")}
    refused = s.post(url + "/upload", files=body, timeout=30)
    assert refused.status_code == 403
    assert refused.text.startswith("AuthorizationFault")
    wrong = s.post(url + "/upload", files=body, headers={"X-CSRF-Token": "0" * 40},
                   timeout=30)
    assert wrong.status_code == 403
    taken = s.post(url + "/upload", files=body,
                   headers={"X-CSRF-Token": token.group(1)}, timeout=30)
    assert taken.status_code == 200
    assert taken.json()["files"][0]["outcome"] == "rejected"


def test_eso_run_id_stands_for_its_runs(site: Site, tmp_path: Path) -> None:
    url = site.server.url
    with site.server.archive.engine.connect() as conn:
        names = set(conn.execute(text(
            "SELECT r.name FROM archive.run r WHERE r.eso_run = :e AND EXISTS "
            "(SELECT 1 FROM archive.product p WHERE p.run_id = r.run_id AND "
            "p.release_date <= now())"), {"e": site.eso_run}).scalars())
        expected = conn.execute(text(
            "SELECT count(*) FROM archive.product p JOIN archive.run r USING (run_id) "
            "WHERE r.eso_run = :e AND p.release_date <= now()"),
            {"e": site.eso_run}).scalar_one()
    assert len(names) == 2
    page = requests.get(f"{url}/runs/{site.eso_run}?format=json", timeout=30)
    assert page.status_code == 200
    data = page.json()
    assert data["run"]["eso_run"] == site.eso_run and data["count"] == expected
    assert {p["run"] for p in data["products"]} == names
    html = requests.get(f"{url}/runs/{site.eso_run}", timeout=30)
    assert html.status_code == 200 and site.eso_run in html.text
    found = requests.get(f"{url}/search", params={"q": site.eso_run}, timeout=30,
                         allow_redirects=False)
    assert found.status_code == 303
    assert found.headers["Location"].endswith(f"/runs/{site.eso_run}")
    assert requests.get(f"{url}/runs/999.Z-9999(Z)", timeout=30).status_code == 404
    phase3 = requests.get(f"{url}/runs/{site.eso_run}/phase3?format=json", timeout=60)
    assert phase3.status_code == 200

    # the command line: the administrator's export of the ESO run holds both runs
    from tests.service.test_retrieval import check_bundle, cli, unpack

    out = tmp_path / "eso.tar"
    done = cli(site.server.archive, "export", "run", site.eso_run, "--category",
               "science", "--quiet", "-o", str(out))
    assert done.returncode == 0, done.stderr
    files = check_bundle(unpack(out.read_bytes()))
    with site.server.archive.engine.connect() as conn:
        rows = set(conn.execute(text(
            "SELECT v.filename FROM archive.version v JOIN archive.product p USING "
            "(product_id) JOIN archive.run r USING (run_id) WHERE r.eso_run = :e "
            "AND v.is_current AND p.category = 'science'"),
            {"e": site.eso_run}).scalars())
    assert set(files) == rows and rows


def test_spectrum_downloads_follow_the_access_rule(site: Site) -> None:
    import io

    from astropy.io.votable import parse_single_table

    url = site.server.url
    page = requests.get(f"{url}/objects/{site.target}", timeout=60).text
    csv_link = re.search(r'class="dl-csv" href="([^"]+)"', page)
    vot_link = re.search(r'class="dl-votable" href="([^"]+)"', page)
    assert csv_link and vot_link
    got = requests.get(url + csv_link.group(1), timeout=60)
    assert got.status_code == 200 and got.headers["Content-Type"].startswith("text/csv")
    lines = got.text.splitlines()
    assert lines[0].startswith("wavelength_angstrom,flux_") and len(lines) > 100
    waves = [float(x.split(",")[0]) for x in lines[1:]]
    assert waves == sorted(waves) and 2000 < waves[0] < waves[-1] < 30000
    vot = requests.get(url + vot_link.group(1).replace("&amp;", "&"), timeout=60)
    assert vot.status_code == 200
    table = parse_single_table(io.BytesIO(vot.content))
    assert len(table.array) == len(lines) - 1
    hidden = f"{url}/products/{site.hidden_product}/versions/1/spectrum.csv"
    anonymous = requests.get(hidden, timeout=60)
    member = requests.get(hidden, headers=site.accounts.member.bearer, timeout=60)
    assert anonymous.status_code in (401, 404) and member.status_code == 200
    assert f"/products/{site.hidden_product}/" not in page


def test_failed_preview_is_asked_again_then_left_out(site: Site,
                                                     browser: tuple[Any, Path]) -> None:
    """A preview refused (a busy server's 503, or missing) is asked for three more
    times, then its cell is left empty rather than showing a broken image."""
    driver, _ = browser
    driver.get(site.server.url + f"/objects/{site.target}")
    driver.execute_script("""
        window.tries = [];
        const img = document.createElement("img");
        img.className = "preview";
        img.onerror = () => previewFailed(img);
        new MutationObserver(() => window.tries.push(img.dataset.tries))
            .observe(img, {attributes: true, attributeFilter: ["data-tries"]});
        img.src = "/products/none/versions/1/preview.png";  // a 404
        img.id = "broken";
        document.body.appendChild(img);""")
    wait_for(lambda: driver.execute_script(
        "return document.getElementById('broken') === null"), timeout=30)
    assert driver.execute_script("return window.tries") == ["1", "2", "3"]
