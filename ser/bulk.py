"""Bulk scoring of folders: list the recordings, cut them into chunks, score a chunk to rows.

A row is ``{"FILENAME", "EMOTION", "PROBABILITY"}`` or ``{"FILENAME", "ERROR": {"CODE",
"MESSAGE"}}``: one per file, whatever happens to the others. A job that names its speakers
(``speakers``: ``labels``, ``folder`` or a regular expression) adds ``SPEAKER`` to every row
and ``ADAPTED`` to scored ones, and runs in two passes when its model adapts to speakers: the
first featurizes every file and gathers each speaker's statistics (:func:`speaker_stats`),
the second scores every file with the statistics of all of its speaker's files.

A job with ``evaluate`` compares its rows with the folder's labels (:func:`folder_labels`,
then ser.ml.scoring); the API refuses a folder without labels first (:func:`check_evaluate`).

Light at import (the API reads :func:`parse_speakers`, :func:`check_labels` and
:func:`check_evaluate`): features,
models and statistics are imported where they are used.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

from ser.datasets import check_labelled, labels_by_path, labels_csv_rows, speakers_by_path
from ser.errors import DatasetError, PathError, SerError
from ser.paths import confine, relative

DEFAULT_PATTERNS = ("*.wav", "*.flac", "*.ogg")
MAX_FILES = 1_000_000
SPEAKER_MODES = ("labels", "folder")  # or a regular expression with a group named speaker
MAX_SPEAKER_PATTERN = 200  # characters of a speaker regular expression


class SpeakersError(SerError):
    """A ``speakers`` value that names no usable source of speakers."""

    code = "INVALID_SPEAKERS"
    http_status = 400


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
    speakers: Sequence[str | None] | None = None,
    stats: dict | None = None,
    failed: Mapping[int, dict] | None = None,
) -> list[dict]:
    """Score files named relative to ``root``; one row per file, errors included.

    With ``speakers`` (one per file, None: unknown) rows carry ``SPEAKER`` and scored rows
    ``ADAPTED``; ``stats`` ({speaker: Stats}) are the speakers' statistics (None: from these
    files), and files in ``failed`` ({position: error}, from pass 1) are not read again."""
    sources, rows = _confined(Path(root), relpaths)
    if failed:
        kept = []
        src = iter(sources)
        for i, row in enumerate(rows):
            if row is None:
                path = next(src)
                if i in failed:
                    rows[i] = {"FILENAME": relpaths[i], "ERROR": failed[i]}
                else:
                    kept.append(path)
        sources = kept
    names = None
    if speakers is not None and stats != {}:  # (no statistics at all: nothing to adapt)
        names = [s for s, row in zip(speakers, rows) if row is None]
    results = iter(
        bundle.predict_many(
            sources, cache=cache, max_seconds=max_seconds, speakers=names, stats=stats
        )
        if names is not None
        else bundle.predict_many(sources, cache=cache, max_seconds=max_seconds)
    )
    out = []
    for i, (rel, row) in enumerate(zip(relpaths, rows)):
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
                if speakers is not None:
                    row["ADAPTED"] = bool(res.get("adapted", False))
        if speakers is not None:
            row = {"FILENAME": rel, "SPEAKER": speakers[i], **row}
        out.append(row)
    return out


# -- speakers ---------------------------------------------------------------------------------
def parse_speakers(value) -> tuple[str, re.Pattern | None]:
    """(mode, compiled pattern or None) of a request's ``speakers``: ``"labels"`` (the
    folder's labels.csv, column ``speaker``), ``"folder"`` (each file's parent directory) or a
    regular expression with a named group ``speaker``, searched in each file's path relative
    to the scored folder. Raises SpeakersError (INVALID_SPEAKERS, 400)."""
    if not isinstance(value, str) or not value:
        raise SpeakersError(
            message='\'speakers\' must be "labels", "folder" or a regular expression '
            "with a group named speaker"
        )
    if value in SPEAKER_MODES:
        return value, None
    if len(value) > MAX_SPEAKER_PATTERN:
        raise SpeakersError(
            message=f"the speaker pattern is longer than {MAX_SPEAKER_PATTERN} characters"
        )
    try:
        pattern = re.compile(value)
    except (re.error, RecursionError, OverflowError, ValueError) as exc:
        raise SpeakersError(message=f"the speaker pattern does not compile: {exc}") from None
    if "speaker" not in pattern.groupindex:
        raise SpeakersError(message="the speaker pattern needs a named group: (?P<speaker>...)")
    return "regex", pattern


def _labels_folder(data_root: Path | str, folder: Path) -> Path:
    """The folder whose labels.csv names the speakers; raises unless that file is there."""
    rel = folder.relative_to(Path(data_root).resolve()).as_posix()
    labels = confine(data_root, f"{rel}/labels.csv", must_exist=False)  # no escaping symlink
    if not labels.is_file():
        raise SpeakersError(
            "LABELS_NOT_FOUND", f'speakers "labels" needs a labels.csv in {rel or "."}'
        )
    return labels.parent


def check_labels(data_root: Path | str, folder: Path) -> None:
    """Cheap check for ``speakers: "labels"`` (the header only): the folder has a labels.csv
    with columns path and speaker; raises SpeakersError or DatasetError (400)."""
    root = _labels_folder(data_root, folder)
    try:
        for _ in labels_csv_rows(root, ("path", "speaker"), name=_name(data_root, root)):
            break
    except OSError as exc:
        raise SpeakersError("LABELS_NOT_FOUND", f"cannot read labels.csv: {exc.strerror}") from None
    except DatasetError as exc:
        raise DatasetError(exc.code, _relative_message(exc)) from None


def _name(data_root: Path | str, folder: Path) -> str:
    """How messages call ``folder`` (under the data root): its path relative to the root."""
    return relative(data_root, folder)


def _relative_message(exc: DatasetError) -> str:
    if exc.code == "DATASET_NO_SPEAKERS":
        return 'speakers "labels" needs a speaker column in labels.csv (columns path,speaker)'
    if "needs columns" in exc.message:
        return 'speakers "labels" needs columns path,speaker in labels.csv'
    return exc.message


# -- evaluation against the folder's labels -----------------------------------------------------
def _label_root(data_root: Path | str, folder: Path) -> str:
    """The folder's path relative to the data root ("" for the root), once its labels.csv, if
    any, is known not to leave the data root (raises PathError INVALID_PATH)."""
    rel = folder.relative_to(Path(data_root).resolve()).as_posix()
    rel = "" if rel == "." else rel
    confine(data_root, f"{rel}/labels.csv" if rel else "labels.csv", must_exist=False)
    return rel


def _unreadable(exc: OSError) -> DatasetError:
    return DatasetError("DATASET_BAD_LABELS", f"cannot read the labels: {exc.strerror}")


def check_evaluate(data_root: Path | str, folder: Path) -> str:
    """Cheap check for ``evaluate: true`` (labels.csv's header, one directory listing, the
    first class folder with audio): the folder has labels the dataset loader finds; returns
    their layout. Raises DatasetError (DATASET_NO_LABELS, DATASET_BAD_LABELS) or PathError."""
    _label_root(data_root, folder)
    try:
        return check_labelled(folder, name=_name(data_root, folder))
    except OSError as exc:
        raise _unreadable(exc) from None


def folder_labels(data_root: Path | str, folder: Path) -> tuple[str, dict[str, str]]:
    """(layout, {path relative to the data root: label}) of the recordings under ``folder``
    (resolved, under the data root): the keys of score rows' ``FILENAME``. Raises as
    :func:`check_evaluate` does."""
    rel = _label_root(data_root, folder)
    try:
        layout, table = labels_by_path(folder, name=_name(data_root, folder))
    except OSError as exc:
        raise _unreadable(exc) from None
    if not rel:
        return layout, table
    return layout, {f"{rel}/{path}": label for path, label in table.items()}


def assign_speakers(
    value: str, data_root: Path | str, folder: Path, files: Sequence[str]
) -> list[str | None]:
    """The speaker of each file (relative to the data root; None: no speaker) under the
    ``speakers`` value of a job scoring ``folder`` (resolved, under the data root)."""
    mode, pattern = parse_speakers(value)
    base = Path(data_root).resolve()
    if mode == "folder":  # the parent directory's name (none for a file at the data root)
        return [PurePosixPath(f).parent.name or None for f in files]
    inside = [(base / f).relative_to(folder).as_posix() for f in files]
    if mode == "labels":
        root = _labels_folder(data_root, folder)
        try:
            table = speakers_by_path(root, name=_name(data_root, root))
        except OSError as exc:
            raise SpeakersError(
                "LABELS_NOT_FOUND", f"cannot read labels.csv: {exc.strerror}"
            ) from None
        except DatasetError as exc:
            raise DatasetError(exc.code, _relative_message(exc)) from None
        return [table.get(rel) for rel in inside]
    assert pattern is not None
    out: list[str | None] = []
    for rel in inside:
        match = pattern.search(rel)
        out.append((match.group("speaker") or None) if match else None)
    return out


def speakers_summary(value: str) -> dict:
    """What a job's record says of its ``speakers``: the mode, and the pattern of a regex."""
    mode, _ = parse_speakers(value)
    return {"SPEAKERS": mode, **({"SPEAKER_PATTERN": value} if mode == "regex" else {})}


def _confined(root: Path, relpaths: Sequence[str]) -> tuple[list[Path], list[dict | None]]:
    """(sources inside the root, per file: its error row or None)."""
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
    return sources, rows


def speaker_stats(
    bundle,
    root: Path,
    relpaths: Sequence[str],
    speakers: Sequence[str | None],
    *,
    cache=None,
    max_seconds: float | None = 600.0,
) -> tuple[dict, dict[int, dict]]:
    """Pass 1 of a speaker-normalised job over some files: their features (into ``cache``,
    for pass 2) and ({speaker: ser.ml.stats.Stats} of the files that have a speaker, {position:
    error} of the files that fail, which count in no statistics)."""
    import numpy as np  # numpy only where statistics are built: the API lists folders here

    from ser.ml.stats import by_speaker

    root = Path(root)
    sources, rows = _confined(root, relpaths)
    feats = iter(bundle.featurize(sources, cache=cache, max_seconds=max_seconds))
    failed: dict[int, dict] = {}
    vectors, names = [], []
    for i, row in enumerate(rows):
        if row is not None:
            failed[i] = row["ERROR"]
            continue
        res = next(feats)
        if isinstance(res, SerError):
            failed[i] = res.to_dict()
        elif speakers[i] is not None:
            vectors.append(res)
            names.append(speakers[i])
    stats = by_speaker(np.stack(vectors), names) if vectors else {}
    return stats, failed


def encode_stats_entry(stats: Mapping, failed: Mapping[int, dict]) -> bytes:
    """One chunk's pass-1 outcome as a Redis value: its speakers' statistics and its failed
    files (by index in the job)."""
    body = {
        "stats": {s: base64.b64encode(st.to_bytes()).decode("ascii") for s, st in stats.items()},
        "failed": {str(i): err for i, err in failed.items()},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def decode_stats_entry(raw: bytes | str) -> tuple[dict, dict[int, dict]]:
    """(stats, failed) of :func:`encode_stats_entry`."""
    from ser.ml.stats import Stats

    body = json.loads(raw)
    stats = {s: Stats.from_bytes(base64.b64decode(b)) for s, b in body["stats"].items()}
    return stats, {int(i): err for i, err in body["failed"].items()}


def merge_stats(entries: Mapping[int, bytes | str]) -> dict:
    """Every speaker's statistics over all chunks' pass-1 entries ({chunk index: entry}),
    merged in chunk order: the same result whichever chunk merges them."""
    merged: dict = {}
    for index in sorted(entries):
        stats, _ = decode_stats_entry(entries[index])
        for speaker in sorted(stats):
            got = merged.get(speaker)
            merged[speaker] = stats[speaker] if got is None else got.merge(stats[speaker])
    return merged
