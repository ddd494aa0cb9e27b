"""Shared bench helpers: locate EMO-DB, time things, print a table and JSON."""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ser.config import emodb_dir  # noqa: E402


def corpus() -> Path:
    """EMO-DB, or exit with a message saying how to provide it."""
    path = emodb_dir()
    if path is None:
        sys.exit("EMO-DB not found: set SER_EMODB_DIR or place it at ../shared/data/emodb")
    return path


@contextmanager
def timer(out: dict, key: str):
    """Store the wall time of the block in ``out[key]`` (seconds)."""
    t0 = time.perf_counter()
    yield
    out[key] = round(time.perf_counter() - t0, 3)


def print_table(rows: list[dict], columns: list[str]) -> None:
    """A Markdown table on stdout."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = [f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        print("| " + " | ".join(cells) + " |")


def dump(name: str, payload) -> None:
    """Write the raw figures to bench/out/NAME.json for the record."""
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
