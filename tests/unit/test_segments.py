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


# -- the passes cut apart: ranges, runs of windows, the recording's own statistics ------------
def test_time_ranges_lie_on_the_frame_grid_and_cover_the_recording():
    ranges = segments.time_ranges(65.37, 10.0)
    assert len(ranges) == 7 and ranges[0][0] == 0.0 and ranges[-1][1] == 65.37
    for (_, e), (s, _) in zip(ranges, ranges[1:]):
        assert e == s and abs(s / segments.FRAME_SECONDS - round(s / segments.FRAME_SECONDS)) < 1e-6
    assert segments.time_ranges(3.0, 10.0) == [(0.0, 3.0)]


@pytest.mark.parametrize("native", [16000, 44100])
def test_ranges_decoded_apart_join_into_the_whole_pass(tmp_path, native):
    """Pass 1 by time ranges (each seeking to its start) gives the whole recording's energies:
    exactly at the analysis rate, within a hair through the resampler."""
    y, _ = _recording([(None, 0.6), ("calm", 5.0), (None, 1.0), ("tense", 6.0), (None, 0.9)])
    if native != SR:
        y = audio.resample(y, SR, native)
    path = str(audiogen.write(tmp_path / "r.flac", y, sr=native))
    duration, whole, n, peak = segments.energies(path, SR)
    parts = [segments.energies(path, SR, a, b) for a, b in segments.time_ranges(duration, 4.0)]
    joined = np.concatenate([p[1] for p in parts])
    assert sum(p[2] for p in parts) == n and max(p[3] for p in parts) == pytest.approx(peak, 1e-3)
    assert joined.shape == whole.shape
    if native == SR:
        assert np.array_equal(joined, whole)
    else:
        assert np.max(np.abs(joined - whole)) < 0.1  # dB
    assert segments.plan(joined) == segments.plan(whole)


def test_runs_of_windows_featurized_apart_equal_one_pass(tmp_path, model):
    y, _ = _recording([(None, 0.5), ("calm", 20.0), (None, 1.0), ("excited", 7.0), (None, 0.5)])
    path = str(audiogen.write(tmp_path / "r.flac", y))
    _, db, _, _ = segments.energies(path, SR)
    windows = segments.plan(db)
    runs = segments.window_runs(windows, 3.0)
    assert len(runs) == 3 and [w for run in runs for w in run] == windows  # cut at groups
    X, spans = segments.featurize(model, path, windows)
    parts = [segments.featurize(model, path, run) for run in runs]
    assert np.array_equal(np.vstack([p[0] for p in parts]), X)
    assert [s for p in parts for s in p[1]] == spans


def test_tapered_runs_shrink_towards_the_end_and_keep_every_window_in_order():
    seg = segments.Segmenter()
    windows = [w for k in range(360) for w in seg.windows(10.0 * k, 10.0 * k + 7.0)]  # 1 hour
    plain = segments.window_runs(windows, 120.0)
    tapered = segments.window_runs(windows, 120.0, taper=True)
    assert [w for run in tapered for w in run] == windows
    starts = [run[0][0] for run in tapered] + [windows[-1][1]]
    lengths = np.diff(starts)
    assert len(plain) == 30 and 30 < len(tapered) <= 40
    assert lengths.max() <= 120.0 and lengths[:20].min() >= 110.0  # full runs until near the end
    assert lengths[-4:].max() <= 40.0  # the last ones short: processes finish nearly together
    assert segments.window_runs([], 120.0, taper=True) == []


@pytest.fixture(scope="module")
def adapting(tmp_path_factory):
    """A model that adapts to speakers (adaptation forced to `speaker`); the logistic
    regression, whose probabilities on these easy generated classes stay below 1 (the default
    LDA's round to 1.0 on both paths, which would hide which one gave them)."""
    root = audiogen.make_dataset(
        tmp_path_factory.mktemp("seg_ds_adapt"), "labels_csv", n_per_class=8, seconds=3.0
    )
    bundle = training.train(
        root, features="default", classifier="logreg", repeats=1, adapt="speaker"
    )
    assert bundle.adapt == "speaker"
    return bundle


def test_a_recording_is_one_speaker_for_an_adapting_model(tmp_path, adapting, model):
    parts = [(None, 0.5), ("calm", 6.0), (None, 1.0), ("tense", 6.0), (None, 1.0)]
    parts += [("excited", 6.0), (None, 0.5)]
    y, spans = _recording(parts, seed=70)
    path = audiogen.write(tmp_path / "r.flac", y)
    res = segments.segment(adapting, path)
    assert res["ADAPTED"] is True and len(res["SEGMENTS"]) >= adapting.pipeline.min_clips
    # the windows' own statistics: what the adapted part gives on those very features
    X, spans_ = segments.featurize(
        adapting, str(path), segments.plan(segments.energies(str(path), SR)[1])
    )
    own = adapting.classify(X, [segments.recording_stats(adapting, X)] * len(X))
    assert [r["emotion"] for r in own] == [s["EMOTION"] for s in res["SEGMENTS"]]
    assert all(r["adapted"] for r in own)
    raw = adapting.classify(X)
    assert not any(r["adapted"] for r in raw)
    assert [s["PROBABILITY"] for s in res["SEGMENTS"]] != [round(r["probability"], 4) for r in raw]
    # a model that does not adapt: the raw features, ADAPTED false
    assert segments.segment(model, path)["ADAPTED"] is False


def test_fewer_windows_than_min_clips_use_the_raw_model(tmp_path, adapting):
    y, _ = _recording([(None, 0.5), ("tense", 2.5), (None, 1.0), ("calm", 2.5), (None, 0.5)])
    path = audiogen.write(tmp_path / "r.flac", y)
    res = segments.segment(adapting, path)
    assert len(res["SEGMENTS"]) == 2 < adapting.pipeline.min_clips
    assert res["ADAPTED"] is False
    X, _ = segments.featurize(
        adapting, str(path), segments.plan(segments.energies(str(path), SR)[1])
    )
    raw = adapting.classify(X)
    assert [s["PROBABILITY"] for s in res["SEGMENTS"]] == [round(r["probability"], 4) for r in raw]


def test_overlapping_windows_share_their_frames_within_float_rounding():
    """A group of windows on the hop grid featurized together equals each featurized alone
    (the matrix products run over other row counts: float rounding); a window off the grid is
    featurized alone."""
    from ser.features import default

    y = audiogen.recording([("tense", 6.0), ("calm", 5.5), ("excited", 6.5)], seed=3)
    hop = default.PARAMS["hop"]
    bounds = [(i * 2 * SR, i * 2 * SR + 3 * SR) for i in range(8)] + [
        (hop * 7 + 5, hop * 7 + 5 + 3 * SR)
    ]
    together = default.extract_windows(y, SR, bounds)
    for (a, b), got in zip(bounds, together):
        alone = default.extract(y[a:b], SR)
        assert np.allclose(got, alone, rtol=1e-4, atol=1e-5), np.max(np.abs(got - alone))
    assert np.array_equal(together[-1], default.extract(y[bounds[-1][0] : bounds[-1][1]], SR))


def test_window_starts_lie_on_the_hop_grid_and_groups_hold_overlapping_windows():
    seg = segments.Segmenter()
    windows = seg.windows(0.02, 40.0) + seg.windows(41.0, 44.5) + seg.windows(50.0, 51.0)
    for w0, *_ in windows:
        assert abs(w0 / segments.GRID - round(w0 / segments.GRID)) < 1e-6
    grouped = segments.groups(windows)
    assert [len(g) for g in grouped] == [8, 8, 4, 2, 1]
    assert [w for g in grouped for w in g] == windows
    for g in grouped:
        assert all(b[0] < a[1] for a, b in zip(g, g[1:]))  # each overlaps the one before


def test_segment_takes_a_stand_in_for_a_bundle(tmp_path, model):
    """What bench/segments_agreement.py relies on: ``segment(bundle, source, ...)`` needs only
    ``spec``, ``classes`` and ``classify(X, stats)``, gives one feature row per segment, in
    order, and a stand-in that says nothing of adaptation is classified unadapted."""

    class StandIn:
        def __init__(self, bundle):
            self.spec, self.classes, self.bundle, self.rows = (
                bundle.spec,
                bundle.classes,
                bundle,
                [],
            )

        def classify(self, X, stats=None):
            self.rows.append(np.atleast_2d(X))
            return self.bundle.classify(X, stats)

    y, _ = _recording([(None, 0.5), ("calm", 7.0), (None, 1.0), ("tense", 2.5), (None, 0.5)])
    path = audiogen.write(tmp_path / "r.flac", y)
    stand_in = StandIn(model)
    res = segments.segment(stand_in, path, filename="r.flac")
    assert res == segments.segment(model, path, filename="r.flac")
    assert sum(len(r) for r in stand_in.rows) == len(res["SEGMENTS"]) and res["ADAPTED"] is False
