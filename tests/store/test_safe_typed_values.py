"""Typed values keep a store safe to open: a crafted row that claims a typed format but holds a
pickle (an object array in an .npy, a pickled member in an .npz) is refused, never loaded, by
the CLI and open_results; an explicit ``pickle`` format is treated as any pickle."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from memento import open_results
from memento.store.sqlite import Store, StoredOutcome
from memento.view.cli import cli


class _Marker:
    """Unpickling this creates the file ``path``: stands for any code hidden in a store."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def _object_npy(marker: Path) -> bytes:
    """An .npy of an object array: numpy stores its items as a pickle."""
    array = np.empty(1, dtype=object)
    array[0] = _Marker(marker)
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _evil_npz(marker: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("value.json", json.dumps({"w": {"$npy": "arr_0.npy"}}))
        archive.writestr("arr_0.npy", _object_npy(marker))
    return buffer.getvalue()


def crafted(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "marker"
    path = tmp_path / "sent" / "grid.sqlite"
    rows = [
        ("a", "pickle", pickle.dumps(_Marker(marker))),
        ("b", "npy", _object_npy(marker)),
        ("c", "npz", _evil_npz(marker)),
        ("d", "json", json.dumps({"accuracy": 0.5}).encode()),
        ("e", "graph", b"whatever a user format wrote"),
    ]
    with Store(path) as store:
        store.write_outcomes(
            [
                StoredOutcome(
                    c * 32,
                    "m:f",
                    "done",
                    json.dumps({"i": i}),
                    value=data,
                    value_format=fmt,
                    value_info={"type": "object"},
                )
                for i, (c, fmt, data) in enumerate(rows)
            ]
        )
    return path, marker


@pytest.mark.parametrize(
    "args",
    [["results"], ["results", "--format", "json"], ["show", "aaaa"], ["show", "bbbb"],
     ["show", "cccc"], ["show", "eeee"], ["report", "-o", "REPORT"]],
)  # fmt: skip
def test_the_cli_never_loads_a_crafted_value(tmp_path: Path, args: list[str]) -> None:
    path, marker = crafted(tmp_path)
    args = [str(tmp_path / "r.html") if a == "REPORT" else a for a in args]
    result = CliRunner().invoke(cli, [args[0], str(path), *args[1:]], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert not marker.exists()


def test_open_results_shows_typed_values_and_refuses_crafted_ones(tmp_path: Path) -> None:
    path, marker = crafted(tmp_path)
    by_key = {r["key"][0]: r for r in open_results(path)}
    assert not marker.exists()
    assert by_key["d"]["inner"] == {"accuracy": 0.5} and by_key["d"]["note"] is None
    assert by_key["a"]["note"] is not None and "not loaded" in by_key["a"]["note"]
    for key in "bc":  # an object array is a pickle: numpy refuses it with allow_pickle=False
        assert by_key[key]["inner"] is None
        assert "could not be loaded" in by_key[key]["note"]
        assert "stored as np" in by_key[key]["note"]
    assert "stored as 'graph'" in repr(by_key["e"]["inner"])
    # Asked for, a pickle loads (the user trusts the store); a typed format stays refused.
    loaded = {r["key"][0]: r for r in open_results(path, load_values=True)}
    assert marker.exists()
    assert loaded["b"]["inner"] is None
