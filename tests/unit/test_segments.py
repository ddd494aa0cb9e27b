"""ser.ml.segments: streamed decoding, speech regions, windows, emotion over time."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from ser import audio
from ser.errors import AudioError
from ser.ml import segments, training
from tests import audiogen

SR = 16000


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A model of the generated classes trained on 3-s clips (the windows' length)."""
    root = audiogen.make_dataset(
        tmp_path_factory.mktemp("seg_ds"), "labels_csv", n_per_class=8, seconds=3.0
    )
    return training.train(root, features="default", repeats=1)


def _silence(seconds: float) -> np.ndarray:
    return audiogen.noise(seconds, amp=1e-4, seed=7)  # a quiet room, not digital zero


def _recording(parts: list[tuple[str | None, float]], seed: int = 0):
    """Concatenated voice-like clips (label) and pauses (None); the speech spans in seconds."""
    ys, spans, t = [], [], 0.0
    for i, (label, seconds) in enumerate(parts):
        y = (
            _silence(seconds)
            if label is None
            else audiogen.voice_like(label, seconds, seed=seed + i)
        )
        if label is not None:
            spans.append((label, t, t + seconds))
        ys.append(y)
        t += seconds
    return np.concatenate(ys), spans


def test_streamed_blocks_match_the_whole_file_decode(tmp_path):
    y = audiogen.chirp(seconds=5.0, sr=44100)
    path = audiogen.write(tmp_path / "c.flac", y, sr=44100)
    duration, chunks = segments.blocks(str(path), SR, block_seconds=0.7)
    streamed = np.concatenate(list(chunks))
    whole = audio.decode(path)
    assert duration == pytest.approx(5.0)
    assert abs(streamed.size - whole.size) <= 2
    n = min(streamed.size, whole.size)
    assert np.max(np.abs(streamed[:n] - whole[:n])) < 1e-3


def test_regions_found_at_the_pauses(tmp_path):
    y, spans = _recording(
        [(None, 1.0), ("calm", 2.0), (None, 1.5), ("tense", 4.0), (None, 0.8), ("excited", 1.2)]
    )
    _, chunks = segments.blocks(audiogen.write(tmp_path / "r.wav", y), SR)
    frame_db, n, _ = segments.frame_energies(chunks, 320)
    regions = segments.Segmenter().regions(frame_db)
    assert len(regions) == len(spans)
    for (s, e), (_, s0, e0) in zip(regions, spans):
        assert s == pytest.approx(s0, abs=0.1) and e == pytest.approx(e0, abs=0.1)


def test_short_pauses_do_not_split_and_blips_are_dropped():
    seg = segments.Segmenter(min_pause=0.3, min_region=0.3)
    db = np.full(500, -90.0)
    db[50:150] = -20  # 1..3 s
    db[160:200] = -20  # after a 0.2 s pause: same region
    db[300:305] = -20  # a 0.1 s blip
    assert seg.regions(db) == [(pytest.approx(1.0), pytest.approx(4.0))]


def test_windows_tile_a_long_region_without_overlap():
    seg = segments.Segmenter(window=3.0, hop=2.0)
    assert seg.windows(1.0, 3.5) == [(1.0, 3.5, 1.0, 3.5)]
    ws = seg.windows(10.0, 20.0)
    assert len(ws) == 5  # ceil((10 - 3) / 2) + 1
    assert all(w1 - w0 == pytest.approx(3.0) for w0, w1, _, _ in ws)
    assert ws[0][2] == 10.0 and ws[-1][3] == 20.0
    for (_, _, _, e), (_, _, s, _) in zip(ws, ws[1:]):
        assert e == pytest.approx(s)
    for w0, w1, s0, s1 in ws:  # each segment lies inside its window
        assert w0 - 1e-9 <= s0 and s1 <= w1 + 1e-9


def test_emotions_over_time_are_recovered(tmp_path, model):
    parts = [
        (None, 0.7),
        ("calm", 6.0),
        (None, 1.0),
        ("excited", 7.5),
        (None, 2.0),
        ("tense", 5.0),
        (None, 0.5),
        ("calm", 3.0),
        (None, 1.0),
    ]
    y, spans = _recording(parts, seed=500)
    path = audiogen.write(tmp_path / "long.flac", y)
    seen = []
    res = segments.segment(
        model, path, filename="long.flac", progress=lambda d, t: seen.append((d, t))
    )
    assert res["FILENAME"] == "long.flac"
    assert res["DURATION"] == pytest.approx(y.size / SR, abs=0.01)
    speech = sum(e - s for _, s, e in spans)
    assert res["SPEECH_SECONDS"] == pytest.approx(speech, abs=0.5)
    starts = [s["START"] for s in res["SEGMENTS"]]
    assert starts == sorted(starts)
    # share of speech time whose segment emotion is the source clip's label
    agree = 0.0
    for s in res["SEGMENTS"]:
        for label, a, b in spans:
            overlap = max(0.0, min(b, s["END"]) - max(a, s["START"]))
            if label == s["EMOTION"]:
                agree += overlap
        assert set(s["PROBABILITIES"]) == set(model.classes)
        assert s["PROBABILITY"] == max(s["PROBABILITIES"].values())
    assert agree / speech > 0.9
    summary = res["SUMMARY"]
    assert sum(v["SECONDS"] for v in summary.values()) == pytest.approx(
        res["SPEECH_SECONDS"], abs=0.05
    )
    assert sum(v["SHARE"] for v in summary.values()) == pytest.approx(1.0, abs=0.01)
    assert res["EMOTION"] == max(summary, key=lambda c: summary[c]["SECONDS"])
    assert 0 < res["PROBABILITY"] <= 1
    assert seen and seen[-1][1] == pytest.approx(res["DURATION"], abs=0.01)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_bytes_and_resampled_sources(model):
    y, _ = _recording([(None, 0.5), ("tense", 4.0), (None, 0.5)], seed=9)
    y44 = audio.resample(y, SR, 44100)
    buf = io.BytesIO()
    sf.write(buf, np.stack([y44, y44], axis=1), 44100, format="WAV", subtype="PCM_16")
    res = segments.segment(model, buf.getvalue())
    assert res["EMOTION"] == "tense"
    assert res["SEGMENTS"][0]["START"] == pytest.approx(0.5, abs=0.1)


def test_silence_and_no_speech(tmp_path, model):
    path = audiogen.write(tmp_path / "zero.wav", np.zeros(SR * 3, dtype=np.float32))
    with pytest.raises(AudioError) as err:
        segments.segment(model, path)
    assert err.value.code == audio.SILENT
    # audible but steady (no pause, no rise above its own floor): no speech, a clear result
    steady = audiogen.write(tmp_path / "hum.wav", audiogen.tone(50.0, 3.0, amp=0.05))
    res = segments.segment(model, steady, filename="hum.wav")
    assert res["SEGMENTS"] == [] and res["SPEECH_SECONDS"] == 0
    assert res["EMOTION"] is None and res["PROBABILITY"] is None and res["SUMMARY"] == {}


def test_long_file_limit_keeps_its_code(tmp_path, model):
    path = audiogen.write(tmp_path / "r.wav", audiogen.voice_like("calm", 3.0))
    with pytest.raises(AudioError) as err:
        segments.segment(model, path, max_seconds=2.0)
    assert err.value.code == audio.TOO_LONG


def test_memory_stays_bounded_on_a_long_file(tmp_path, model):
    """30 minutes (115 MB decoded as float32) segmented and classified in a few MB."""
    minutes = 30
    path = tmp_path / "long.flac"
    unit, _ = _recording([("calm", 4.0), (None, 1.0), ("tense", 3.0), (None, 2.0)], seed=3)
    with sf.SoundFile(str(path), "w", SR, 1, subtype="PCM_16") as f:
        for _ in range(minutes * 6):
            f.write(unit)
    decoded = minutes * 60 * SR * 4
    tracemalloc.start()
    try:
        res = segments.segment(model, path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res["DURATION"] == minutes * 60
    assert res["SPEECH_SECONDS"] == pytest.approx(minutes * 6 * 7.0, rel=0.02)
    assert {"calm", "tense"} <= set(res["SUMMARY"])
    print(f"peak {peak / 1e6:.1f} MB")
    assert peak < decoded / 10, f"peak {peak / 1e6:.1f} MB for {decoded / 1e6:.0f} MB decoded"
