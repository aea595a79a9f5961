"""``vo-archive demo`` on a fresh home: embedded cluster, data, a serving app."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from vo_archive.db.cluster import free_port


def test_demo_brings_up_a_serving_app() -> None:
    home = Path(tempfile.mkdtemp(prefix="vo-archive-demo-"))
    home.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VO_ARCHIVE_")}
    env["VO_ARCHIVE_HOME"] = str(home)
    port = free_port()
    log = open(home / "demo.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vo_archive", "demo", "--products", "80", "--port",
         str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        answer = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.5)
        assert answer is not None, (home / "demo.log").read_text()
        assert answer.status_code == 200
        assert "products visible to you" in answer.text
        status = subprocess.run([sys.executable, "-m", "vo_archive", "db", "status"],
                                env=env, capture_output=True, text=True, check=True)
        assert "embedded" in status.stdout and "products: 80" in status.stdout.replace(
            "    ", "")
        required = os.environ.get("VO_ARCHIVE_REQUIRE_CONE_EXTENSION") == "1"
        made = "made in the server" if required else "made "
        assert f"cone ranges: {made}" in status.stdout, status.stdout
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        subprocess.run([sys.executable, "-m", "vo_archive", "db", "stop"], env=env,
                       capture_output=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)
