"""Confine a path named by a client to the data root (SER_DATA_DIR)."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from ser.errors import PathError

MAX_PATH_CHARS = 4096
NAME_MAX = 255  # bytes of one path component (ext4, xfs, btrfs, tmpfs)


def check_text(name) -> str:
    """``name`` if it can name a file at all: a string without NUL, valid Unicode, at most
    MAX_PATH_CHARS characters and NAME_MAX bytes per component; raises PathError."""
    if not isinstance(name, str):
        raise PathError("INVALID_PATH", "a path must be a string")
    if "\x00" in name:
        raise PathError("INVALID_PATH", "the path contains a NUL byte")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON) is no file name
        raise PathError("INVALID_PATH", "the path is not valid Unicode text") from None
    if len(name) > MAX_PATH_CHARS:
        raise PathError("INVALID_PATH", "the path is too long")
    if any(len(part) > NAME_MAX for part in encoded.split(b"/")):  # else stat() fails
        raise PathError("INVALID_PATH", f"a path component is longer than {NAME_MAX} bytes")
    return name


def confine(root: Path | str, name: str, *, must_exist: bool = True, kind: str = "any") -> Path:
    """The resolved path of ``name`` under ``root``; raises PathError when it escapes.

    Refused: NUL bytes, absolute paths, ``..`` components, and symlinks whose target lies
    outside the root. ``kind`` is "file", "dir" or "any" (checked when ``must_exist``).
    """
    check_text(name)
    if not name.strip():
        raise PathError("INVALID_PATH", "the path is empty")
    pure = PurePosixPath(name)
    if pure.is_absolute() or name.startswith("~"):
        raise PathError(
            "INVALID_PATH", "absolute paths are refused; name a path under the data root"
        )
    if ".." in pure.parts:
        raise PathError("INVALID_PATH", "'..' is refused in paths")
    base = Path(root).resolve()
    try:
        resolved = (base / pure).resolve(strict=False)
    except (OSError, RuntimeError):  # symlink loops (the OS message names absolute paths)
        raise PathError("INVALID_PATH", f"cannot resolve {name} (a symlink loop?)") from None
    if resolved != base and not resolved.is_relative_to(base):
        raise PathError("INVALID_PATH", f"{name} points outside the data root")
    if must_exist:
        if not resolved.exists():
            raise PathError(
                "PATH_NOT_FOUND", f"no such file or directory under the data root: {name}"
            )
        if kind == "file" and not resolved.is_file():
            raise PathError("PATH_NOT_FOUND", f"not a file under the data root: {name}")
        if kind == "dir" and not resolved.is_dir():
            raise PathError("PATH_NOT_FOUND", f"not a directory under the data root: {name}")
        if kind == "file" and not os.access(resolved, os.R_OK):
            raise PathError("PATH_NOT_READABLE", f"cannot read {name} (under the data root)")
    return resolved


def relative(root: Path | str, path: Path) -> str:
    """``path`` relative to the resolved root, POSIX style ("." for the root itself)."""
    rel = Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    return rel or "."
