"""Speech time per emotion: the one summary of classified speech segments, used for a
recording's emotion over time (ser.ml.segments) and for a folder scored with segments (a
score job's SUMMARY).

One rule for both: a segment counts its ``END - START`` seconds (and 1 segment) to its
``EMOTION``; a row without an emotion (a failed file, a file without speech) counts nothing.
``SHARE`` is an emotion's seconds over all the speech seconds (0 without speech), from the
unrounded sums; seconds are rounded to 0.01 and shares to 0.0001 only at the end.

:func:`emotion_time` lists every class of the model, 0 for those without a segment (a score
job's SUMMARY, ``{emotion: {SECONDS, SHARE, SEGMENTS}}``); :func:`present` keeps the
emotions that have at least one segment, as ``{SECONDS, SHARE}`` (a recording's SUMMARY).
Pure Python on purpose, and outside ser.ml: the result store (ser.service.results) imports it,
and the API imports that without the audio and learning libraries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def tally(
    segments: Iterable[Mapping], classes: Sequence[str] = ()
) -> tuple[dict[str, float], dict[str, int]]:
    """(Unrounded seconds, segments) per emotion of ``segments``: every class of ``classes``
    in order (0 when absent), then any other emotion met, in order of appearance."""
    seconds = {c: 0.0 for c in classes}
    count = {c: 0 for c in classes}
    for s in segments:
        emotion = s.get("EMOTION")
        if emotion is None or "ERROR" in s:
            continue
        seconds[emotion] = seconds.get(emotion, 0.0) + (s["END"] - s["START"])
        count[emotion] = count.get(emotion, 0) + 1
    return seconds, count


def table(seconds: Mapping[str, float], count: Mapping[str, int]) -> dict[str, dict]:
    """``{emotion: {"SECONDS", "SHARE", "SEGMENTS"}}`` of a :func:`tally`."""
    speech = sum(seconds.values())
    return {
        c: {
            "SECONDS": round(seconds[c], 2),
            "SHARE": round(seconds[c] / speech, 4) if speech > 0 else 0.0,
            "SEGMENTS": count[c],
        }
        for c in seconds
    }


def emotion_time(
    segments: Iterable[Mapping], classes: Sequence[str] = ()
) -> tuple[float, dict[str, dict]]:
    """(Speech seconds, unrounded; the :func:`table` of every class of ``classes`` and any
    other emotion met) of ``segments``."""
    seconds, count = tally(segments, classes)
    return sum(seconds.values()), table(seconds, count)


def present(summary: Mapping[str, Mapping]) -> dict[str, dict]:
    """The emotions of a :func:`table` that have a segment, as ``{emotion: {"SECONDS",
    "SHARE"}}``."""
    return {
        c: {"SECONDS": v["SECONDS"], "SHARE": v["SHARE"]}
        for c, v in summary.items()
        if v["SEGMENTS"] > 0
    }
