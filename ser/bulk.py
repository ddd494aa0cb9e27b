"""Bulk scoring of folders: list the recordings, cut them into chunks, score a chunk to rows.

A row is ``{"FILENAME", "EMOTION", "PROBABILITY"}`` or ``{"FILENAME", "ERROR": {"CODE",
"MESSAGE"}}``: one per file, whatever happens to the others.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from ser.errors import PathError, SerError

DEFAULT_PATTERNS = ("*.wav", "*.flac", "*.ogg")
MAX_FILES = 1_000_000


def list_audio(
    folder: Path,
    *,
    recursive: bool = True,
    patterns: Sequence[str] = DEFAULT_PATTERNS,
) -> list[Path]:
    """Files under ``folder`` whose names match any pattern (case-insensitive), sorted."""
    if not folder.is_dir():
        raise PathError("FOLDER_NOT_FOUND", f"not a folder: {folder.name or folder}")
    pats = [p.lower() for p in patterns]
    walker = folder.rglob("*") if recursive else folder.iterdir()
    found = []
    for path in walker:
        name = path.name.lower()
        if any(fnmatch.fnmatchcase(name, p) for p in pats) and path.is_file():
            found.append(path)
            if len(found) > MAX_FILES:
                raise PathError("FOLDER_TOO_LARGE", f"more than {MAX_FILES} files in the folder")
    return sorted(found)


def chunk_size(n_files: int, n_workers: int, lo: int = 16, hi: int = 256) -> int:
    """Files per chunk: about 8 chunks per worker process, bounded so a chunk takes seconds."""
    if n_files <= 0:
        return lo
    return max(lo, min(hi, math.ceil(n_files / max(1, n_workers * 8))))


def chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    """Consecutive slices of ``items`` of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def score_rows(
    bundle,
    root: Path,
    relpaths: Sequence[str],
    *,
    cache=None,
    max_seconds: float | None = 600.0,
) -> list[dict]:
    """Score files named relative to ``root``; one row per file, errors included."""
    root_resolved = root.resolve()
    sources: list[Path] = []
    rows: list[dict | None] = []
    for rel in relpaths:
        path = root / rel
        try:
            inside = path.resolve().is_relative_to(root_resolved)
        except (OSError, RuntimeError):  # a symlink loop
            inside = False
        if not inside:
            err = PathError(message=f"{rel} points outside the data root")
            rows.append({"FILENAME": rel, "ERROR": err.to_dict()})
        else:
            rows.append(None)
            sources.append(path)
    results = iter(bundle.predict_many(sources, cache=cache, max_seconds=max_seconds))
    out = []
    for rel, row in zip(relpaths, rows):
        if row is None:
            res = next(results)
            if isinstance(res, SerError):
                row = {"FILENAME": rel, "ERROR": res.to_dict()}
            else:
                row = {
                    "FILENAME": rel,
                    "EMOTION": res["emotion"],
                    "PROBABILITY": round(res["probability"], 6),
                }
        out.append(row)
    return out
