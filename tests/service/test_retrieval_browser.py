"""The web page in a real headless browser (Debian chromium + chromedriver).

One browser session: open the landing page, go to a run, filter, select
products, download the selection, and check the file the browser saved.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.browser import CHROMIUM, DRIVER, chromium
from tests.conftest import LiveServer
from vo_archive.retrieval.bundle import parse_manifest

webdriver = pytest.importorskip("selenium.webdriver")
pytestmark = pytest.mark.skipif(not (shutil.which(CHROMIUM) and shutil.which(DRIVER)),
                                reason="chromium and chromedriver are not installed")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, Path]]:
    yield from chromium(tmp_path_factory, 1400, 1000)


def wait_for(predicate: object, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()  # type: ignore[operator]
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def test_browse_filter_select_download(live_server: LiveServer,
                                       browser: tuple[object, Path]) -> None:
    from selenium.webdriver.common.by import By

    driver, downloads = browser
    run = "nov12_d10to13_efosc"
    driver.get(live_server.url + "/")  # type: ignore[attr-defined]
    driver.find_element(By.ID, "runs-link").click()  # type: ignore[attr-defined]
    driver.find_element(By.LINK_TEXT, run).click()  # type: ignore[attr-defined]
    assert f"Run {run}" in driver.find_element(By.TAG_NAME, "h2").text  # type: ignore[attr-defined]
    for value in ("final", "science", "spectroscopy"):
        driver.find_element(  # type: ignore[attr-defined]
            By.CSS_SELECTOR, f"input[type=checkbox][value={value}]").click()
    driver.find_element(By.ID, "apply").click()  # type: ignore[attr-defined]
    wait_for(lambda: "level=final" in driver.current_url)  # type: ignore[attr-defined]
    rows = driver.find_elements(By.CSS_SELECTOR, "#products tr[data-product]")  # type: ignore[attr-defined]
    with live_server.archive.engine.connect() as conn:
        expected = set(conn.execute(text(
            "SELECT filename FROM pessto.products WHERE run_name = :r AND level = "
            "'final' AND category = 'science' AND mode = 'spectroscopy'"),
            {"r": run}).scalars())
    shown = {r.find_element(By.CSS_SELECTOR, "td.fn a").text for r in rows}
    assert shown == expected and len(expected) > 5
    picked = rows[1:6]
    for r in picked:
        box = r.find_element(By.CSS_SELECTOR, "input.pick")
        driver.execute_script(  # type: ignore[attr-defined]
            "arguments[0].scrollIntoView({block: 'center'})", box)
        box.click()
    assert driver.find_element(By.ID, "nsel").text == "5"  # type: ignore[attr-defined]
    chosen = {
        r.find_element(By.CSS_SELECTOR, "td.fn a").text: r.get_attribute(
            "data-product"
        )
        for r in picked
    }
    driver.find_element(By.ID, "download-selected").click()  # type: ignore[attr-defined]
    status = driver.find_element(By.ID, "status")  # type: ignore[attr-defined]
    wait_for(lambda: status.text.startswith(("Done", "Download failed")))
    assert status.text.startswith("Done"), status.text
    assert driver.find_element(By.ID, "progress").get_attribute("value") == "1"  # type: ignore[attr-defined]
    saved = wait_for(lambda: [p for p in downloads.glob("*.tar")])
    path = saved[0]  # type: ignore[index]
    wait_for(lambda: not list(downloads.glob("*.crdownload")))
    with tarfile.open(path) as tf:
        content = {m.name.split("/", 1)[1]: tf.extractfile(m).read()  # type: ignore[union-attr]
                   for m in tf if m.isfile()}
    manifest = parse_manifest(content.pop("MANIFEST.sha256").decode())
    assert set(manifest) == set(content)
    for name, sha in manifest.items():
        assert hashlib.sha256(content[name]).hexdigest() == sha
    assert {n for n in content if n.endswith(".fits")} == set(chosen)
