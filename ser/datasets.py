"""Labelled datasets: a directory, its recordings, their labels and (when known) speakers.

Labels are discovered in this order: ``labels.csv`` at the root (``path,label[,speaker]``),
EMO-DB file names, one sub-folder per class.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ser.errors import DatasetError

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga"})
EMODB_LETTERS = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
EMODB_ORDER = ("anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral")
_EMODB_NAME = re.compile(r"^(\d\d)[a-z]\d\d([WLEAFTN])[a-z]\d*\.wav$", re.IGNORECASE)

# Stable error codes.
NOT_FOUND = "DATASET_NOT_FOUND"
NO_AUDIO = "DATASET_NO_AUDIO"
BAD_LABELS = "DATASET_BAD_LABELS"
MISSING_FILE = "DATASET_MISSING_FILE"
TOO_FEW_CLASSES = "DATASET_TOO_FEW_CLASSES"
CLASS_TOO_SMALL = "DATASET_CLASS_TOO_SMALL"
NO_SPEAKERS = "DATASET_NO_SPEAKERS"
NO_LABELS = "DATASET_NO_LABELS"


@dataclass(frozen=True)
class Dataset:
    """Recordings with labels; ``speakers`` is None when the layout does not say."""

    root: Path
    paths: tuple[Path, ...]
    labels: tuple[str, ...]
    speakers: tuple[str, ...] | None
    classes: tuple[str, ...]
    layout: str

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self) -> dict[str, int]:
        """Number of recordings per class, in class order."""
        counts = Counter(self.labels)
        return {c: counts[c] for c in self.classes}


def is_audio(path: Path) -> bool:
    """Whether ``path`` names a file with an audio suffix we decode."""
    return path.suffix.lower() in AUDIO_SUFFIXES and path.is_file()


def load_dataset(root: Path | str) -> Dataset:
    """Discover the recordings and labels under ``root`` (raises DatasetError)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(NOT_FOUND, f"dataset directory not found: {root}")
    if (root / "labels.csv").is_file():
        ds = _from_labels_csv(root)
    else:
        ds = _from_emodb_names(root) or _from_folders(root)
    if len(ds.classes) < 2:
        raise DatasetError(
            TOO_FEW_CLASSES, f"{root}: found {len(ds.classes)} class(es); at least 2 are needed"
        )
    return ds


def _make(root: Path, rows: list[tuple[Path, str, str | None]], layout: str, order=None) -> Dataset:
    if not rows:
        raise DatasetError(
            NO_AUDIO, f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in {root}"
        )
    rows.sort(key=lambda r: str(r[0]))
    present = {r[1] for r in rows}
    classes = tuple(c for c in order if c in present) if order else tuple(sorted(present))
    speakers = tuple(r[2] for r in rows) if all(r[2] for r in rows) else None
    return Dataset(
        root=root,
        paths=tuple(r[0] for r in rows),
        labels=tuple(r[1] for r in rows),
        speakers=speakers,  # type: ignore[arg-type]
        classes=classes,
        layout=layout,
    )


def labels_csv_rows(
    root: Path, required: tuple[str, ...] = ("path", "label")
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of ``root/labels.csv``: column names lower-cased, cells stripped.

    Raises DatasetError when a ``required`` column is missing (DATASET_NO_SPEAKERS when only
    ``speaker`` is) or the file is not readable CSV text."""
    path = root / "labels.csv"
    with open(path, newline="", encoding="utf-8-sig") as fh:
        try:
            reader = csv.DictReader(fh)
            fields = {(f or "").strip().lower() for f in reader.fieldnames or []}
            missing = set(required) - fields
            if missing:
                code = NO_SPEAKERS if missing == {"speaker"} else BAD_LABELS
                raise DatasetError(code, f"{path} needs columns {','.join(required)}")
            for line, raw in enumerate(reader, start=2):
                # (cells beyond the header come as a list under the key None: ignored)
                cells = [(k, v) for k, v in raw.items() if k is not None]
                yield line, {k.strip().lower(): (v or "").strip() for k, v in cells}
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DatasetError(BAD_LABELS, f"labels.csv is not readable CSV text: {exc}") from None


def speakers_by_path(root: Path) -> dict[str, str]:
    """Speaker of each recording ``root/labels.csv`` names (``path`` relative to ``root``,
    POSIX style), from its ``path`` and ``speaker`` columns. Lenient, for scoring a folder: the
    labels may be absent or anything, and rows without a path or speaker are skipped."""
    out: dict[str, str] = {}
    for _, row in labels_csv_rows(root, ("path", "speaker")):
        if row.get("path") and row.get("speaker"):
            out[_posix(row["path"])] = row["speaker"]
    return out


def _posix(path: str) -> str:
    """A labels.csv path as a key: POSIX separators, no leading ``./``."""
    return PurePosixPath(path.replace("\\", "/")).as_posix()


def labels_by_path(root: Path | str) -> tuple[str, dict[str, str]]:
    """(layout, {path relative to ``root``, POSIX style: label}) of the recordings under
    ``root``, discovered as :func:`load_dataset` does (labels.csv, EMO-DB names, one sub-folder
    per class). Lenient, for evaluating a scored folder: rows of labels.csv without a path or
    label are skipped and the files it names need not exist; one class is enough.

    Raises DatasetError: DATASET_NOT_FOUND, DATASET_BAD_LABELS (labels.csv without columns
    path,label, or not CSV text), DATASET_NO_LABELS (no labelled recording)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(NOT_FOUND, f"dataset directory not found: {root}")
    if (root / "labels.csv").is_file():
        table = {
            _posix(row["path"]): row["label"]
            for _, row in labels_csv_rows(root)
            if row.get("path") and row.get("label")
        }
        if not table:
            raise DatasetError(NO_LABELS, "labels.csv names no recording with a label")
        return "labels_csv", table
    try:
        ds = _from_emodb_names(root) or _from_folders(root)
    except DatasetError as exc:  # (no audio in class folders)
        raise DatasetError(NO_LABELS, _NO_LABELS_MESSAGE) from exc
    return ds.layout, {p.relative_to(root).as_posix(): lab for p, lab in zip(ds.paths, ds.labels)}


_NO_LABELS_MESSAGE = (
    "no labels: put a labels.csv (columns path,label) in the folder, name the files as "
    "EMO-DB does, or put the recordings in one sub-folder per class"
)


def check_labelled(root: Path | str) -> str:
    """Cheap check that :func:`labels_by_path` finds labels under ``root``: labels.csv (its
    header only), EMO-DB names (every audio file at the top), or a sub-folder holding audio
    (the first one found); returns the layout. Raises DatasetError as it does."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(NOT_FOUND, f"dataset directory not found: {root}")
    if (root / "labels.csv").is_file():
        for _ in labels_csv_rows(root):
            break
        return "labels_csv"
    emodb, folders = None, []
    for path in root.iterdir():
        if path.is_dir() and not path.name.startswith("."):
            folders.append(path)
        elif emodb is not False and is_audio(path):
            emodb = bool(_EMODB_NAME.match(path.name))
    if emodb:
        return "emodb"
    for sub in sorted(folders):
        if any(is_audio(p) for p in sub.rglob("*")):
            return "folders"
    raise DatasetError(NO_LABELS, _NO_LABELS_MESSAGE)


def _from_labels_csv(root: Path) -> Dataset:
    rows: list[tuple[Path, str, str | None]] = []
    resolved_root = root.resolve()
    for line, row in labels_csv_rows(root):
        if not row.get("path") or not row.get("label"):
            raise DatasetError(BAD_LABELS, f"labels.csv line {line}: empty path or label")
        path = root / row["path"]
        if not path.resolve().is_relative_to(resolved_root):
            raise DatasetError(BAD_LABELS, f"labels.csv line {line}: {row['path']} is outside")
        if not path.is_file():
            raise DatasetError(MISSING_FILE, f"labels.csv line {line}: no file {row['path']}")
        rows.append((path, row["label"], row.get("speaker") or None))
    return _make(root, rows, "labels_csv")


def _from_emodb_names(root: Path) -> Dataset | None:
    files = [p for p in root.iterdir() if is_audio(p)]
    matches = [_EMODB_NAME.match(p.name) for p in files]
    if not files or not all(matches):
        return None
    rows = [(p, EMODB_LETTERS[m.group(2).upper()], m.group(1)) for p, m in zip(files, matches)]
    return _make(root, rows, "emodb", order=EMODB_ORDER)


def _from_folders(root: Path) -> Dataset:
    rows: list[tuple[Path, str, str | None]] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        rows += [(p, sub.name, None) for p in sorted(sub.rglob("*")) if is_audio(p)]
    return _make(root, rows, "folders")


def check_protocol(ds: Dataset, protocol: str, n_splits: int = 4) -> None:
    """Raise DatasetError when ``ds`` cannot be evaluated with ``protocol``."""
    if protocol == "stratified":
        small = {c: n for c, n in ds.class_counts().items() if n < n_splits}
        if small:
            raise DatasetError(
                CLASS_TOO_SMALL,
                f"stratified {n_splits}-fold CV needs >= {n_splits} recordings per class; "
                f"too few in {small}",
            )
    elif protocol == "speaker":
        if ds.speakers is None:
            raise DatasetError(
                NO_SPEAKERS, "the speaker protocol needs speakers (a speaker column in labels.csv)"
            )
        per_class: dict[str, set[str]] = {c: set() for c in ds.classes}
        for label, speaker in zip(ds.labels, ds.speakers):
            per_class[label].add(speaker)
        thin = sorted(c for c, s in per_class.items() if len(s) < 2)
        if len(set(ds.speakers)) < 2 or thin:
            raise DatasetError(
                CLASS_TOO_SMALL,
                "speaker-independent CV needs every class voiced by >= 2 speakers; "
                f"not so for {thin or 'the dataset (one speaker)'}",
            )
    else:
        raise DatasetError("UNKNOWN_PROTOCOL", f"unknown protocol {protocol!r}")
