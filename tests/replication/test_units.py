"""Pure-function tests: snapshot visibility and configuration checks."""

from __future__ import annotations

import pytest

from replication.config import ConfigError, parse_config
from replication.install import SetupError, check_server
from replication.snapshot import Snapshot


@pytest.mark.parametrize(
    ("text", "txid", "visible"),
    [
        ("100:100:", 99, True),       # empty in-progress list (the Slony 2004 trap)
        ("100:100:", 100, False),
        ("100:100:", 101, False),
        ("100:105:", 104, True),      # committed between xmin and xmax
        ("100:105:100,103", 100, False),
        ("100:105:100,103", 103, False),
        ("100:105:100,103", 101, True),
        ("100:105:100,103", 105, False),
        ("100:105:100,103", 1, True),
        ("4294967396:4294967400:4294967397", 4294967397, False),  # epoch 1
        ("4294967396:4294967400:4294967397", 4294967398, True),
        ("4294967396:4294967400:4294967397", 4294967295, True),
    ],
)
def test_snapshot_visibility(text: str, txid: int, visible: bool) -> None:
    assert Snapshot.parse(text).visible(txid) is visible


@pytest.mark.parametrize("text", ["", "1:2", "5:4:", "10:20:5", "10:20:20", "a:b:"])
def test_snapshot_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        Snapshot.parse(text)


M = "postgresql://u@127.0.0.1:5001/marshall"
B = "postgresql://u@127.0.0.1:5002/marshall_bk"
A = "postgresql://u@127.0.0.1:5002/aux"
Q = "postgresql://u@127.0.0.1:5001/aux_copy"


def _stream(name: str, master: str, slave: str, tables: list[str]) -> dict[str, object]:
    return {"name": name, "master": master, "slave": slave, "tables": tables}


def test_config_circle_accepted() -> None:
    cfg = parse_config({"defaults": {"io_timeout": 5}, "stream": [
        _stream("marshall", M, B, ["marshall.transients"]),
        _stream("aux", A, Q, ["archive.runs"]),
    ]})
    assert cfg.names() == ["marshall", "aux"]
    assert cfg.stream("aux").io_timeout == 5.0
    assert cfg.stream("marshall").queue == "repl_marshall"


@pytest.mark.parametrize(
    ("streams", "message"),
    [
        ([_stream("a", M, B, ["s.t"]), _stream("b", B, M, ["s.t"])], "loop"),
        ([_stream("a", M, B, ["s.t"]), _stream("b", A, B, ["s.t"])], "two masters"),
        ([_stream("a", M, M, ["s.t"])], "one database"),
        ([_stream("a", M, B, ["s.t"]), _stream("a", A, Q, ["s.u"])], "unique"),
        ([_stream("a", M, B, ["t"])], "schema.table"),
        ([_stream("a", M, B, [])], "non-empty"),
        ([_stream("A b", M, B, ["s.t"])], "must match"),
        ([{**_stream("a", M, B, ["s.t"]), "bogus": 1}], "unknown"),
        ([{"name": "a", "master": M, "tables": ["s.t"]}], "lacks slave"),
        ([{**_stream("a", M, B, ["s.t"]), "io_timeout": "x"}], "number"),
    ],
)
def test_config_rejects(streams: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"stream": streams})


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (130012, "the slave runs PostgreSQL 13; replication needs 14 or later "
                 "(CREATE OR REPLACE TRIGGER)"),
        (140000, None),
        (150020, None),
    ],
)
def test_server_version_checked(version: int, message: str | None) -> None:
    if message is None:
        check_server(version, "slave")
    else:
        with pytest.raises(SetupError) as err:
            check_server(version, "slave")
        assert str(err.value) == message


def test_example_config_names_every_setting() -> None:
    """replication.example.toml shows every tunable (issue 17: maint_interval)."""
    import dataclasses
    import tomllib
    from pathlib import Path

    from replication.config import StreamConfig

    example = Path(__file__).resolve().parents[2] / "replication" / (
        "replication.example.toml")
    defaults = tomllib.loads(example.read_text())["defaults"]
    per_stream = {"name", "master", "slave", "tables", "origin"}
    builtin = {f.name: f.default for f in dataclasses.fields(StreamConfig)
               if f.name not in per_stream}
    assert set(defaults) == set(builtin)
    # The example shows the built-in values.
    assert {k: v for k, v in defaults.items() if v != builtin[k]} == {}
