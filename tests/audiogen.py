"""Generated audio for tests: tones, noise, chirps, and small labelled datasets.

Nothing here reads the corpus; every file is synthesised with numpy and written with soundfile.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf

# Class name -> (base f0 Hz, amplitude-modulation Hz, noise level): acoustically separable.
CLASSES = {
    "calm": (110.0, 2.0, 0.01),
    "excited": (260.0, 7.0, 0.05),
    "tense": (180.0, 4.0, 0.25),
}


def tone(
    freq: float = 220.0, seconds: float = 1.0, sr: int = 16000, amp: float = 0.3
) -> np.ndarray:
    """A sine tone as float32."""
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def chirp(
    f0: float = 100.0, f1: float = 4000.0, seconds: float = 1.0, sr: int = 16000
) -> np.ndarray:
    """A linear chirp as float32."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return (0.3 * np.sin(phase)).astype(np.float32)


def noise(seconds: float = 1.0, sr: int = 16000, amp: float = 0.1, seed: int = 0) -> np.ndarray:
    """White noise as float32."""
    rng = np.random.default_rng(seed)
    return (amp * rng.standard_normal(int(seconds * sr))).astype(np.float32)


def voice_like(label: str, seconds: float = 1.5, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A harmonic, amplitude-modulated 'utterance' whose character depends on ``label``."""
    f0, am, noise_level = CLASSES[label]
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = f0 * rng.uniform(0.9, 1.1)
    vibrato = 1 + 0.02 * np.sin(2 * np.pi * rng.uniform(3, 6) * t)
    phase = 2 * np.pi * np.cumsum(f0 * vibrato) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * am * rng.uniform(0.9, 1.1) * t))
    y = envelope * y + noise_level * rng.standard_normal(n)
    return (0.25 * y / np.max(np.abs(y))).astype(np.float32)


def recording(parts: list[tuple[str | None, float]], seed: int = 0) -> np.ndarray:
    """Voice-like utterances (a label) and quiet pauses (None), each ``seconds`` long, joined."""
    return np.concatenate(
        [
            noise(s, amp=1e-4, seed=i) if label is None else voice_like(label, s, seed=seed + i)
            for i, (label, s) in enumerate(parts)
        ]
    )


def write_repeated(path: Path, unit: np.ndarray, times: int, sr: int = 16000) -> Path:
    """``unit`` written ``times`` over as 16-bit audio (a long recording in little memory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(str(path), "w", sr, 1, subtype="PCM_16") as f:
        for _ in range(times):
            f.write(unit)
    return path


def write(path: Path, y: np.ndarray, sr: int = 16000, subtype: str | None = None) -> Path:
    """Write ``y`` (frames or frames x channels) with soundfile; format from the suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), y, sr, subtype=subtype)
    return path


def make_dataset(
    root: Path,
    layout: str = "labels_csv",
    n_per_class: int = 8,
    n_speakers: int = 4,
    classes: tuple[str, ...] = tuple(CLASSES),
    seconds: float = 1.2,
    confounded: bool = False,
) -> Path:
    """Write a small separable dataset in one of the layouts: labels_csv, folders, emodb.

    ``confounded``: each speaker voices one class only (two speakers per class), the way
    some public corpora are built; a stratified score there mostly identifies speakers."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    emodb_letter = {"calm": "N", "excited": "F", "tense": "W"}
    rows = []
    for ci, label in enumerate(classes):
        for i in range(n_per_class):
            speaker = f"{10 + i % n_speakers:02d}"
            if confounded:
                speaker = f"{10 + 2 * ci + i % 2:02d}"
            y = voice_like(label, seconds=seconds, seed=1000 * ci + i)
            if layout == "folders":
                rel = Path(label) / f"clip{i:03d}.wav"
            elif layout == "emodb":
                rel = Path(f"{speaker}a{i:02d}{emodb_letter[label]}a.wav")
            else:
                rel = Path("audio") / f"{label}_{i:03d}.flac"
            write(root / rel, y)
            rows.append((rel.as_posix(), label, speaker))
    if layout == "labels_csv":
        with open(root / "labels.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "label", "speaker"])
            writer.writerows(rows)
    return root
