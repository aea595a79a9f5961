"""The two sites joined (issue 19): Marshall changes at QUB rematch IA2's targets.

The Marshall's backup lives in IA2's archive database, next to the archive's
tables.  A transient added, renamed or moved at QUB reaches IA2 through the
Marshall stream, and the refresh triggers (``ENABLE REPLICA``: they fire under
the replicator's ``session_replication_role = replica``) match it with the
archive's targets in the applier's transaction, with no manual step.  Their
writes to ``archive.target`` and ``archive.marshall_match`` are the archive's
own changes, captured for the AUX stream: the cross-match reaches QUB's
read-only copy, as do the archive's own classifications.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from replication.config import load_config
from tests.replication.conftest import (
    AUX_TABLES,
    MARSHALL_SQL,
    MARSHALL_TABLES,
    ROOT,
    Env,
    Replicator,
    archive_database,
    execute,
    init,
    new_database,
    query,
    wait_for,
    write_config,
)
from tests.replication.test_aux import ingest
from vo_archive.db.cluster import EmbeddedCluster

AUX_WITH_MATCH = [*AUX_TABLES, "archive.marshall_match", "archive.classification"]
ARCSEC = 1 / 3600


@pytest.fixture
def joined(sites: dict[str, EmbeddedCluster], tmp_path: Path) -> Iterator[Env]:
    """QUB Marshall → IA2 archive database (backup) and IA2 AUX → QUB copy."""
    qub_marshall = new_database(sites["qub"], "marshall")
    execute(qub_marshall, MARSHALL_SQL.read_text().replace("%", "%%"))
    ia2 = archive_database(sites["ia2"], "pessto", tmp_path / "ia2-home")
    execute(str(ia2.dsn), MARSHALL_SQL.read_text().replace("%", "%%"))
    qub_copy = archive_database(sites["qub"], "pessto_aux", tmp_path / "qub-home")
    path = tmp_path / "replication.toml"
    write_config(path, [
        {"name": "marshall", "origin": "qub", "master": qub_marshall,
         "slave": str(ia2.dsn), "tables": MARSHALL_TABLES},
        {"name": "aux", "origin": "ia2", "master": str(ia2.dsn),
         "slave": str(qub_copy.dsn), "tables": AUX_WITH_MATCH},
    ])
    env = Env(load_config(path), path, Replicator(path, tmp_path / "replicator.log"),
              {"qub": qub_marshall, "ia2": str(ia2.dsn), "copy": str(qub_copy.dsn)},
              settings=ia2)
    yield env
    env.replicator.kill()


def marshall_ids(dsn: str) -> dict[str, int | None]:
    """Target name → marshall_id."""
    return dict(query(dsn, "SELECT name, marshall_id FROM archive.target"))


def test_marshall_changes_at_qub_match_targets_at_ia2(joined: Env,
                                                     demo_fits: list[Path]) -> None:
    env = joined
    qub, ia2, copy = env.dsns["qub"], env.dsns["ia2"], env.dsns["copy"]
    ingest(env, demo_fits[:8])      # products whose spectra the archive classifies
    execute(ia2, "INSERT INTO archive.target (name, ra, dec) VALUES "
                 "('SN2024abc', 150.0, 20.0), ('ZTF24aaaaaaa', 30.0, -10.0), "
                 "('PESSTO field 7', 0.0005, -89.9999)")
    # the operator's one-off setup: the first match (it also installs the
    # refresh triggers on the backup's marshall.transients), then replication
    home = env.settings.home if env.settings else ROOT
    out = subprocess.run(
        [sys.executable, "-m", "vo_archive", "marshall", "match"],
        env=dict(os.environ, VO_ARCHIVE_HOME=str(home), VO_ARCHIVE_DSN=ia2,
                 PYTHONPATH=str(ROOT)),
        capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "matched 0, unmatched " in out.stdout and "ambiguous 0" in out.stdout
    init(env.path)
    env.replicator.start()

    # a new transient at QUB, named as the Marshall writes it
    execute(qub, "INSERT INTO marshall.transients (name, ra_deg, dec_deg) "
                 "VALUES ('AT 2024abc', 150.0, 20.0 + 1/3600.0)")
    new_id = query(qub, "SELECT transient_id FROM marshall.transients "
                        "WHERE name = 'AT 2024abc'")[0][0]
    wait_for(lambda: marshall_ids(ia2)["SN2024abc"] == new_id,
             what="the new transient matched at IA2")

    # a transient renamed at QUB (far from the target: a match by name)
    execute(qub, "INSERT INTO marshall.transients (name, ra_deg, dec_deg) "
                 "VALUES ('ZTF24zzzzzzz', 200.0, 40.0)")
    ztf = query(qub, "SELECT transient_id FROM marshall.transients "
                     "WHERE name = 'ZTF24zzzzzzz'")[0][0]
    env.catch_up("marshall")
    assert marshall_ids(ia2)["ZTF24aaaaaaa"] is None
    execute(qub, "UPDATE marshall.transients SET name = 'ZTF24aaaaaaa' "
                 "WHERE transient_id = %s", (ztf,))
    wait_for(lambda: marshall_ids(ia2)["ZTF24aaaaaaa"] == ztf,
             what="the renamed transient matched at IA2")

    # a transient moved at QUB, onto a target next to the south pole
    execute(qub, "INSERT INTO marshall.transients (name, ra_deg, dec_deg) "
                 "VALUES ('Gaia24xyz', 10.0, 10.0)")
    env.catch_up("marshall")
    execute(qub, "UPDATE marshall.transients SET ra_deg = 180.0, dec_deg = -89.9995 "
                 "WHERE name = 'Gaia24xyz'")
    gaia = query(qub, "SELECT transient_id FROM marshall.transients "
                      "WHERE name = 'Gaia24xyz'")[0][0]
    wait_for(lambda: marshall_ids(ia2)["PESSTO field 7"] == gaia,
             what="the moved transient matched at IA2")

    # the archive classifies a spectrum: QUB reads the verdict
    execute(ia2, "INSERT INTO archive.classification (version_id, "
                 "classifier_version, library_version, sn_type, redshift, good) "
                 "SELECT min(version_id), '1', 'lib', 'Ia', 0.05, true "
                 "FROM archive.version")
    wait_for(lambda: query(copy, "SELECT sn_type, redshift FROM "
                                 "archive.classification") == [("Ia", 0.05)],
             what="the archive's classification at QUB")

    # the Marshall stream is intact, and the cross-match reached QUB's copy
    env.assert_identical("marshall")
    env.assert_identical("aux")
    matched = {k: v for k, v in marshall_ids(copy).items() if v is not None}
    assert matched == {"SN2024abc": new_id, "ZTF24aaaaaaa": ztf,
                       "PESSTO field 7": gaia}
    assert dict(query(copy, "SELECT target_id, method FROM archive.marshall_match "
                            "ORDER BY target_id")) == dict(query(
        ia2, "SELECT target_id, method FROM archive.marshall_match"))
    assert sorted(m for (m,) in query(
        copy, "SELECT method FROM archive.marshall_match WHERE method IS NOT NULL")
    ) == ["name", "name+position", "position"]
