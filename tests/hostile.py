"""A corpus of malformed and odd recordings, generated (never stored): name -> file bytes.

Each entry says what a correct decoder must do with it: ``ok`` (a result) or the AudioError
code it must raise. Shared by the library tests and the service's hostile-input tests.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from tests.audiogen import chirp, noise, tone, voice_like

SR = 16000


def _encode(y: np.ndarray, sr: int = SR, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _riff(
    fmt_fields: tuple, data: bytes, data_size: int | None = None, extra: bytes = b""
) -> bytes:
    fmt = struct.pack("<HHIIHH", *fmt_fields)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
    body += b"data" + struct.pack("<I", len(data) if data_size is None else data_size) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _pcm16(y: np.ndarray) -> bytes:
    return (np.clip(y, -1, 1) * 32767).astype("<i2").tobytes()


def corpus() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, expected: 'ok' or an AUDIO_* code)."""
    speech = voice_like("excited", 1.5, SR, seed=3)
    good = _encode(speech)
    pcm = _pcm16(speech)
    nan = speech.copy()
    nan[500] = np.nan
    inf = speech.copy()
    inf[900] = np.inf
    ten_min = (0.3 * np.sin(2 * np.pi * 180 * np.arange(600 * 8000) / 8000)).astype(np.float32)
    over = np.zeros(int(600.5 * 8000), np.float32)
    over[::50] = 0.2
    c = {
        "ok_pcm16.wav": (good, "ok"),
        "ok_pcm_u8.wav": (_encode(speech, subtype="PCM_U8"), "ok"),
        "ok_pcm24.wav": (_encode(speech, subtype="PCM_24"), "ok"),
        "ok_pcm32.wav": (_encode(speech, subtype="PCM_32"), "ok"),
        "ok_float32.wav": (_encode(speech, subtype="FLOAT"), "ok"),
        "ok_float64.wav": (_encode(speech, subtype="DOUBLE"), "ok"),
        "ok_6ch.wav": (_encode(np.stack([speech] * 6, axis=1)), "ok"),
        "ok_8khz.wav": (_encode(voice_like("calm", 1.5, 8000, seed=4), 8000), "ok"),
        "ok_96khz.wav": (_encode(voice_like("calm", 1.0, 96000, seed=5), 96000), "ok"),
        "ok_flac.flac": (_encode(speech, fmt="FLAC"), "ok"),
        "ok_vorbis.ogg": (_encode(speech, fmt="OGG", subtype="VORBIS"), "ok"),
        "ok_mp3_named.wav": (_encode(speech, fmt="MP3", subtype="MPEG_LAYER_III"), "ok"),
        "ok_clipped.wav": (_encode(np.sign(tone(200, 1.0)) * 1.0), "ok"),
        "ok_dc_offset.wav": (_encode(np.full(SR, 0.5, np.float32)), "ok"),
        "ok_chirp.wav": (_encode(chirp(seconds=1.0)), "ok"),
        "ok_quiet_noise.wav": (_encode(noise(1.0, amp=3e-4)), "ok"),
        "ok_click.wav": (_encode(np.eye(1, SR, SR // 2, dtype=np.float32)[0] * 0.9), "ok"),
        "ok_pad_chunk.wav": (
            _riff((1, 1, SR, 2 * SR, 2, 16), pcm, extra=b"PAD \4\0\0\0\0\0\0\0"),
            "ok",
        ),
        "ok_size_lies_short.wav": (_riff((1, 1, SR, 2 * SR, 2, 16), pcm, len(pcm) // 2), "ok"),
        "ok_size_lies_long.wav": (_riff((1, 1, SR, 2 * SR, 2, 16), pcm, len(pcm) * 4), "ok"),
        "ok_ten_minutes.wav": (_encode(ten_min, 8000, subtype="PCM_U8"), "ok"),
        "ok_min_length.wav": (_encode(tone(300, 0.1)), "ok"),
        "too_long.wav": (_encode(over, 8000, subtype="PCM_U8"), "AUDIO_TOO_LONG"),
        "claims_gigabytes.wav": (_riff((1, 1, SR, 2 * SR, 2, 16), pcm[:3200], 0xFFFFFFF0), "ok"),
        "empty_frames.wav": (_encode(np.zeros(0, np.float32)), "AUDIO_EMPTY"),
        "one_sample.wav": (_encode(np.array([0.5], np.float32)), "AUDIO_TOO_SHORT"),
        "very_short.wav": (_encode(tone(300, 0.05)), "AUDIO_TOO_SHORT"),
        "silence.wav": (_encode(np.zeros(SR, np.float32)), "AUDIO_SILENT"),
        "silence_24bit.flac": (
            _encode(np.zeros(SR, np.float32), fmt="FLAC", subtype="PCM_24"),
            "AUDIO_SILENT",
        ),
        "nan.wav": (_encode(nan, subtype="FLOAT"), "AUDIO_NONFINITE"),
        "inf.wav": (_encode(inf, subtype="FLOAT"), "AUDIO_NONFINITE"),
        "zero_bytes.wav": (b"", "AUDIO_UNREADABLE"),
        "text.wav": (b"hello, this is not audio\n" * 40, "AUDIO_UNREADABLE"),
        "json.wav": (b'{"filename": "x.wav"}', "AUDIO_UNREADABLE"),
        "random_bytes.wav": (np.random.default_rng(1).bytes(20000), "AUDIO_UNREADABLE"),
        "truncated_header.wav": (good[:30], "AUDIO_UNREADABLE"),
        "riff_without_fmt.wav": (b"RIFF\x24\0\0\0WAVEdata\x00\x00\x00\x00", "AUDIO_UNREADABLE"),
        "zero_rate.wav": (_riff((1, 1, 0, 0, 2, 16), pcm), "AUDIO_UNREADABLE"),
        "zero_channels.wav": (_riff((1, 0, SR, 2 * SR, 2, 16), pcm), "AUDIO_UNREADABLE"),
        "truncated.flac": (_encode(speech, fmt="FLAC")[:200], "AUDIO_UNREADABLE"),
        "truncated.ogg": (_encode(speech, fmt="OGG", subtype="VORBIS")[:300], "AUDIO_UNREADABLE"),
    }
    return c


def write_corpus(root: Path) -> dict[str, str]:
    """Write every file under ``root``; return name -> expected outcome."""
    root.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (data, outcome) in corpus().items():
        (root / name).write_bytes(data)
        expected[name] = outcome
    return expected
