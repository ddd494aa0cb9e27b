"""ser.speech_time: one summary of speech time per emotion, for a recording's result
(ser.ml.segments.summarize) and for a folder scored with segments (summarize_segments)."""

from __future__ import annotations

from ser import speech_time
from ser.ml import segments
from ser.service.results import summarize_segments

CLASSES = ["calm", "excited", "tense", "sad"]


def _seg(start: float, end: float, emotion: str) -> dict:
    probs = {c: (0.7 if c == emotion else 0.1) for c in CLASSES}
    return {
        "START": start,
        "END": end,
        "EMOTION": emotion,
        "PROBABILITY": 0.7,
        "PROBABILITIES": probs,
    }


# calm 3.5 s in two segments, tense 2.25 s, and a "sad" segment of 0 s (its bounds rounded to
# one instant): it is a segment of that emotion, with no time; "excited" has none
SEGMENTS = [
    _seg(1.0, 3.0, "calm"),
    _seg(3.0, 5.25, "tense"),
    _seg(5.25, 5.25, "sad"),
    _seg(6.0, 7.5, "calm"),
]


def test_a_recording_and_a_folder_count_speech_time_by_one_rule():
    recording = segments.summarize("a.wav", 8.0, SEGMENTS, CLASSES)
    rows = [{"FILENAME": "a.wav", **s, "ADAPTED": False} for s in SEGMENTS]
    failed = [{"FILENAME": "b.wav", "ERROR": {"CODE": "AUDIO_SILENT", "MESSAGE": "silent"}}]
    no_speech = [{"FILENAME": "c.wav", "EMOTION": None, "PROBABILITY": None}]
    folder = summarize_segments([rows, failed, no_speech], CLASSES)

    # the folder lists every class of the model, 0 for those without a segment
    assert list(folder["SUMMARY"]) == CLASSES
    assert folder["SUMMARY"]["excited"] == {"SECONDS": 0.0, "SHARE": 0.0, "SEGMENTS": 0}
    assert folder["SUMMARY"]["calm"] == {
        "SECONDS": 3.5,
        "SHARE": round(3.5 / 5.75, 4),
        "SEGMENTS": 2,
    }
    assert folder["SUMMARY"]["sad"] == {"SECONDS": 0.0, "SHARE": 0.0, "SEGMENTS": 1}
    assert (folder["COUNT"], folder["SUCCEEDED"], folder["FAILED"]) == (3, 2, 1)
    assert folder["SEGMENTS"] == 4 and folder["SPEECH_SECONDS"] == 5.75
    # a recording lists the same figures for exactly the emotions that have a segment
    assert recording["SUMMARY"] == {
        c: {"SECONDS": v["SECONDS"], "SHARE": v["SHARE"]}
        for c, v in folder["SUMMARY"].items()
        if v["SEGMENTS"] > 0
    }
    assert set(recording["SUMMARY"]) == {"calm", "tense", "sad"}
    assert recording["SPEECH_SECONDS"] == folder["SPEECH_SECONDS"]
    assert recording["EMOTION"] == "calm"
    assert recording["PROBABILITY"] == round((0.7 * 3.5 + 0.1 * 2.25) / 5.75, 4)


def test_no_speech_has_no_shares():
    speech, table = speech_time.emotion_time([], CLASSES)
    assert speech == 0.0 and all(
        v == {"SECONDS": 0.0, "SHARE": 0.0, "SEGMENTS": 0} for v in table.values()
    )
    assert speech_time.present(table) == {}
    assert segments.summarize("hum.wav", 3.0, [], CLASSES)["SUMMARY"] == {}
