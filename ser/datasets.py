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
UNREADABLE = "DATASET_UNREADABLE"
AMBIGUOUS = "DATASET_AMBIGUOUS"


def shown(root: Path | str, name: str | None, leaf: str = "") -> str:
    """How a message names ``root`` (or ``leaf`` inside it): ``name`` when the caller gives
    one (the service: the path relative to the data root, "." for the root), else ``root``
    as given (the command line: the path the user typed)."""
    base = str(root) if name is None else name
    if not leaf:
        return base
    return leaf if base in ("", ".") else f"{base.rstrip('/')}/{leaf}"


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


def load_dataset(root: Path | str, *, name: str | None = None) -> Dataset:
    """Discover the recordings and labels under ``root`` (raises DatasetError); messages
    call the folder ``name`` when given (see :func:`shown`)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(NOT_FOUND, f"dataset directory not found: {shown(root, name)}")
    try:
        if (root / "labels.csv").is_file():
            ds = _from_labels_csv(root, name)
        else:
            ds = _from_emodb_names(root, name) or _from_folders(root, name)
    except OSError as exc:  # (str(exc) names the absolute path: the message does not)
        raise _unreadable(root, name, exc) from None
    if len(ds.classes) < 2:
        raise DatasetError(
            TOO_FEW_CLASSES,
            f"{shown(root, name)}: found {len(ds.classes)} class(es); at least 2 are needed",
        )
    return ds


def _unreadable(root: Path, name: str | None, exc: OSError) -> DatasetError:
    where = Path(exc.filename).name if exc.filename else ""
    if where and Path(exc.filename) != root:
        try:
            where = shown(root, name, Path(exc.filename).relative_to(root).as_posix())
        except ValueError:
            pass
    else:
        where = shown(root, name)
    return DatasetError(UNREADABLE, f"cannot read {where}: {exc.strerror or type(exc).__name__}")


def _make(
    root: Path,
    rows: list[tuple[Path, str, str | None]],
    layout: str,
    order=None,
    name: str | None = None,
) -> Dataset:
    if not rows:
        if layout == "labels_csv":
            raise DatasetError(NO_LABELS, f"{shown(root, name, 'labels.csv')} names no recording")
        if layout == "folders" and any(is_audio(p) for p in root.iterdir()):
            # audio at the top, but no labels.csv, EMO-DB names or class folders
            raise DatasetError(NO_LABELS, f"{shown(root, name)}: {_NO_LABELS_MESSAGE}")
        raise DatasetError(
            NO_AUDIO,
            f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in {shown(root, name)}",
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
    root: Path, required: tuple[str, ...] = ("path", "label"), *, name: str | None = None
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of ``root/labels.csv``: column names lower-cased, cells stripped.

    Raises DatasetError when a ``required`` column is missing (DATASET_NO_SPEAKERS when only
    ``speaker`` is) or the file is not readable CSV text; messages call the folder ``name``
    when given (see :func:`shown`)."""
    path = root / "labels.csv"
    label_file = shown(root, name, "labels.csv")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        try:
            reader = csv.DictReader(fh)
            fields = {(f or "").strip().lower() for f in reader.fieldnames or []}
            missing = set(required) - fields
            if missing:
                code = NO_SPEAKERS if missing == {"speaker"} else BAD_LABELS
                raise DatasetError(code, f"{label_file} needs columns {','.join(required)}")
            for line, raw in enumerate(reader, start=2):
                # (cells beyond the header come as a list under the key None: ignored)
                cells = [(k, v) for k, v in raw.items() if k is not None]
                yield line, {k.strip().lower(): (v or "").strip() for k, v in cells}
        except (UnicodeDecodeError, csv.Error) as exc:
            raise DatasetError(
                BAD_LABELS, f"{label_file} is not readable CSV text: {exc}"
            ) from None


def speakers_by_path(root: Path, *, name: str | None = None) -> dict[str, str]:
    """Speaker of each recording ``root/labels.csv`` names (``path`` relative to ``root``,
    POSIX style), from its ``path`` and ``speaker`` columns. Lenient, for scoring a folder: the
    labels may be absent or anything, and rows without a path or speaker are skipped."""
    out: dict[str, str] = {}
    for _, row in labels_csv_rows(root, ("path", "speaker"), name=name):
        if row.get("path") and row.get("speaker"):
            out[_posix(row["path"])] = row["speaker"]
    return out


def _posix(path: str) -> str:
    """A labels.csv path as a key: POSIX separators, no leading ``./``."""
    return PurePosixPath(path.replace("\\", "/")).as_posix()


def labels_by_path(root: Path | str, *, name: str | None = None) -> tuple[str, dict[str, str]]:
    """(layout, {path relative to ``root``, POSIX style: label}) of the recordings under
    ``root``, discovered as :func:`load_dataset` does (labels.csv, EMO-DB names, one sub-folder
    per class). Lenient, for evaluating a scored folder: rows of labels.csv without a path or
    label are skipped and the files it names need not exist; one class is enough.

    Raises DatasetError: DATASET_NOT_FOUND, DATASET_BAD_LABELS (labels.csv without columns
    path,label, or not CSV text), DATASET_NO_LABELS (no labelled recording); messages call the
    folder ``name`` when given."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(NOT_FOUND, f"dataset directory not found: {shown(root, name)}")
    if (root / "labels.csv").is_file():
        table = {
            _posix(row["path"]): row["label"]
            for _, row in labels_csv_rows(root, name=name)
            if row.get("path") and row.get("label")
        }
        if not table:
            raise DatasetError(NO_LABELS, "labels.csv names no recording with a label")
        return "labels_csv", table
    try:
        ds = _from_emodb_names(root, name) or _from_folders(root, name)
    except DatasetError as exc:  # (no audio in class folders)
        raise DatasetError(NO_LABELS, _NO_LABELS_MESSAGE) from exc
    return ds.layout, {p.relative_to(root).as_posix(): lab for p, lab in zip(ds.paths, ds.labels)}


_NO_LABELS_MESSAGE = (
    "no labels: put a labels.csv (columns path,label) in the folder, name the files as "
    "EMO-DB does, or put the recordings in one sub-folder per class"
)


def check_labelled(root: Path | str, *, name: str | None = None) -> str:
    """Cheap check that :func:`labels_by_path` finds labels under ``root``: labels.csv (its
    header only), EMO-DB names (every audio file at the top), or a sub-folder holding audio
    (the first one found); returns the layout. Raises DatasetError as it does; messages call
    the folder ``name`` when given."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(NOT_FOUND, f"dataset directory not found: {shown(root, name)}")
    if (root / "labels.csv").is_file():
        for _ in labels_csv_rows(root, name=name):
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
    if emodb is None:  # no recording at the top nor in any sub-folder
        raise DatasetError(
            NO_AUDIO,
            f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in {shown(root, name)}",
        )
    raise DatasetError(NO_LABELS, f"{shown(root, name)}: {_NO_LABELS_MESSAGE}")


def has_own_labels(folder: Path) -> bool:
    """Whether ``folder`` labels its recordings itself: a labels.csv, or recordings at its top
    all named as EMO-DB names them (stops at the first that is not)."""
    if (folder / "labels.csv").is_file():
        return True
    found = False
    for path in folder.iterdir():
        if is_audio(path):
            if not _EMODB_NAME.match(path.name):
                return False
            found = True
    return found


def _labels_itself(folder: Path) -> bool:
    """:func:`has_own_labels`, False for a folder the server may not read (some other
    user's, beside the datasets: it does not stop a training that names no dataset)."""
    try:
        return has_own_labels(folder)
    except OSError:
        return False


DEFAULT_HINT = (
    'name the dataset to train ({"dataset": "<folder>"}, ser train <folder>) '
    "or set SER_TRAIN_DATASET"
)


def with_default_hint(exc: DatasetError) -> DatasetError:
    """``exc`` of a training that named no dataset, its message ending in how to name one."""
    if DEFAULT_HINT in exc.message:
        return exc
    return DatasetError(exc.code, f"{exc.message}; {DEFAULT_HINT}")


def default_dataset(root: Path | str, *, name: str | None = None) -> Path:
    """The dataset a training that names none trains, given the default folder ``root``
    (SER_TRAIN_DATASET, the data root by default): ``root`` when it labels its recordings
    itself (:func:`has_own_labels`); else the one sub-folder that does; else, when ``root``
    holds a single sub-folder (one folder is never a set of classes), that one; else ``root``,
    its sub-folders being the classes. Raises DatasetError DATASET_AMBIGUOUS, naming them,
    when several sub-folders label their own recordings, and DATASET_NOT_FOUND.

    Reads one directory listing per sub-folder (their tops only): cheap enough for the API."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(NOT_FOUND, f"dataset directory not found: {shown(root, name)}")
    try:
        if has_own_labels(root):
            return root
        subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise _unreadable(root, name, exc) from None
    labelled = [p for p in subs if _labels_itself(p)]
    if len(labelled) == 1:
        return labelled[0]
    if labelled:
        names = ", ".join(shown(root, name, p.name) for p in labelled)
        raise DatasetError(
            AMBIGUOUS, f"{shown(root, name)} holds several datasets ({names}); {DEFAULT_HINT}"
        )
    return subs[0] if len(subs) == 1 else root


def _from_labels_csv(root: Path, name: str | None = None) -> Dataset:
    rows: list[tuple[Path, str, str | None]] = []
    resolved_root = root.resolve()
    label_file = shown(root, name, "labels.csv")
    for line, row in labels_csv_rows(root, name=name):
        if not row.get("path") or not row.get("label"):
            raise DatasetError(BAD_LABELS, f"{label_file} line {line}: empty path or label")
        path = root / row["path"]
        if not path.resolve().is_relative_to(resolved_root):
            raise DatasetError(
                BAD_LABELS, f"{label_file} line {line}: {row['path']} is outside the folder"
            )
        if not path.is_file():
            raise DatasetError(MISSING_FILE, f"{label_file} line {line}: no file {row['path']}")
        rows.append((path, row["label"], row.get("speaker") or None))
    return _make(root, rows, "labels_csv", name=name)


def _from_emodb_names(root: Path, name: str | None = None) -> Dataset | None:
    files = [p for p in root.iterdir() if is_audio(p)]
    matches = [_EMODB_NAME.match(p.name) for p in files]
    if not files or not all(matches):
        return None
    rows = [(p, EMODB_LETTERS[m.group(2).upper()], m.group(1)) for p, m in zip(files, matches)]
    return _make(root, rows, "emodb", order=EMODB_ORDER, name=name)


def _from_folders(root: Path, name: str | None = None) -> Dataset:
    rows: list[tuple[Path, str, str | None]] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        rows += [(p, sub.name, None) for p in sorted(sub.rglob("*")) if is_audio(p)]
    return _make(root, rows, "folders", name=name)


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
