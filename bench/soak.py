"""Soak: mixed predict/score traffic for --minutes, one worker node SIGKILLed and restarted
every minute; zero lost jobs; the RSS of every process sampled and reported (start/end/max).

    python bench/soak.py --minutes 10     # the soak
    python bench/soak.py --minutes 1      # dry run
    python bench/soak.py --segments-every 0   # the mix as it was before segment jobs

`ser up` stops everything when one of its parts exits, so the soak runs the same parts itself:
the bundled redis-server (AOF on, as `ser up` runs it), two `ser worker` nodes (one process
each, both queues) and `ser api` (gunicorn), on free loopback ports, state and data in a temp
dir. Clients loop over POST /predict (uploads and file names of 3 s clips) and POST /score (a
12-file folder, 1 in 10 requests), and, a small minority, emotion over time (`segments`): each
client makes 1 request in --segments-every (1000) a `POST /predict` with `"segments": true`
naming one of three generated recordings of 2, 3 and 5 minutes (70 % speech; the 3- and
5-minute ones are longer than SER_SEGMENT_CHUNK_SECONDS, so each is cut into time ranges spread
over both worker nodes), and 1 in 3 x --segments-every (3000) a `POST /score` with `"segments":
true` on their folder (the three, 10 minutes of audio), each in place of the request it would
have made; the clients' turns are staggered. Every accepted job is followed to its end. A job is
LOST if it is not terminal once traffic has stopped and the stack has had the redelivery bound
to drain.

Per kind: jobs, jobs/s over the traffic time and latency from the job record's CREATED_AT to
its FINISHED_AT (server clock; a job whose node was killed waits out the visibility timeout);
for segment jobs also the audio seconds scored per second. Segment results are checked: every
one SUCCEEDED, its DURATION the recording's, its segments ordered, disjoint and within it, their
lengths adding up to SPEECH_SECONDS (about 70 % of the recording), SUMMARY adding up to it
too, and every result of one recording the same (through one task or split over ranges, with
or without a kill); a folder score's rows are those of the recording's predictions, its totals
the sums of its rows. The exit status is 1 when a job is lost, an id duplicated or a segment
result fails a check.
"""

from __future__ import annotations

import argparse
import json
import math
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import psutil
import requests
from common import dump, print_table
from load import TERMINAL, make_data, train

from tests import audiogen
from tests.harness import ApiServer, RedisServer, Worker, health, stack_env, wait_until

VISIBILITY, TRAIN_LIMIT, PREDICT_LIMIT = 40, 35, 30
# emotion over time: a 10 s unit (as bench/segments.py's), 7 s of it speech, repeated; the
# recordings over SER_SEGMENT_CHUNK_SECONDS (120 s by default) are split by time ranges
UNIT = [("calm", 4.0), (None, 1.0), ("tense", 3.0), (None, 2.0)]
SPEECH_SHARE = 0.7
LONG = {"long/two_min.flac": 2, "long/three_min.flac": 3, "long/five_min.flac": 5}
SEGMENT_KINDS = ("predict segments", "score segments")


def make_long(data: Path) -> dict[str, float]:
    """The long recordings under ``data`` (each its own seeds); returns name -> seconds."""
    out = {}
    for i, (name, minutes) in enumerate(LONG.items()):
        unit = audiogen.recording(UNIT, seed=700 + 10 * i)
        audiogen.write_repeated(data / name, unit, minutes * 6)
        out[name] = minutes * 60.0
    return out


def seconds_between(body: dict) -> float | None:
    """CREATED_AT -> FINISHED_AT of a finished job, in seconds (None without both)."""
    a, b = body.get("CREATED_AT"), body.get("FINISHED_AT")
    if not a or not b:
        return None
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def check_segments(segs: list[dict], duration: float, where: str) -> list[str]:
    """Problems with one recording's segments (START/END/EMOTION/PROBABILITY/PROBABILITIES)."""
    problems = []
    if not segs:
        return [f"{where}: no segments"]
    prev_end = 0.0
    for k, seg in enumerate(segs):
        a, b = seg["START"], seg["END"]
        if not (prev_end <= a < b <= duration + 0.01):
            problems.append(f"{where}: segment {k} [{a}, {b}] after {prev_end} in {duration}")
            break
        prev_end = b
        probs = seg["PROBABILITIES"]
        if seg["EMOTION"] not in probs or probs[seg["EMOTION"]] < max(probs.values()) - 1e-4:
            problems.append(f"{where}: segment {k} EMOTION {seg['EMOTION']} not its top {probs}")
            break
        in_range = all(0 <= x <= 1 for x in probs.values()) and 0 < seg["PROBABILITY"] <= 1
        if abs(sum(probs.values()) - 1) > 0.01 or not in_range:
            problems.append(f"{where}: segment {k} probabilities {seg['PROBABILITY']} {probs}")
            break
    return problems


def check_speech(body: dict, speech: float, where: str) -> list[str]:
    """Problems with SPEECH_SECONDS (against the segments' lengths ``speech``) and SUMMARY."""
    problems = []
    if abs(body["SPEECH_SECONDS"] - speech) > 0.015:
        problems.append(f"{where}: SPEECH_SECONDS {body['SPEECH_SECONDS']} != segments' {speech}")
    summary = body["SUMMARY"]
    total = sum(v["SECONDS"] for v in summary.values())
    if abs(total - body["SPEECH_SECONDS"]) > 0.005 * len(summary) + 0.01:
        problems.append(f"{where}: SUMMARY adds up to {total}, not {body['SPEECH_SECONDS']}")
    shares = sum(v["SHARE"] for v in summary.values())
    if body["SPEECH_SECONDS"] > 0 and abs(shares - 1) > 0.001 * len(summary) + 0.001:
        problems.append(f"{where}: SUMMARY shares add up to {shares}")
    return problems


def same_segments(got: list[dict], want: list[dict]) -> bool:
    """The same segments (bounds, emotions) with the same probabilities within 1e-3."""
    return len(got) == len(want) and all(
        (g["START"], g["END"], g["EMOTION"]) == (w["START"], w["END"], w["EMOTION"])
        and all(abs(g["PROBABILITIES"][c] - p) <= 1e-3 for c, p in w["PROBABILITIES"].items())
        for g, w in zip(got, want)
    )


def _check_prediction(body: dict, name: str, duration: float, where: str) -> list[str]:
    """Problems with one segments prediction's result of recording ``name``."""
    segs = body["SEGMENTS"]
    found = check_segments(segs, duration, where)
    speech = round(sum(s["END"] - s["START"] for s in segs), 2)
    found += check_speech(body, speech, where)
    if body["FILENAME"] != name or abs(body["DURATION"] - duration) > 0.02:
        found.append(f"{where}: FILENAME {body['FILENAME']} DURATION {body['DURATION']}")
    if abs(speech - SPEECH_SHARE * duration) > 0.03 * duration:
        found.append(f"{where}: {speech} s of speech in {duration} s, not about 70 %")
    top = max(body["SUMMARY"], key=lambda c: body["SUMMARY"][c]["SECONDS"], default=None)
    if body["EMOTION"] != top:
        found.append(f"{where}: EMOTION {body['EMOTION']}, most speech time {top}")
    return found


def succeeded(final: dict[str, dict], kind: str, problems: list[str]):
    """(job id, body, where) of the jobs of ``kind`` that succeeded; the others' statuses go
    to ``problems``."""
    for job_id, body in final.items():
        if body["kind"] != kind:
            continue
        where = f"{kind} {job_id}"
        if body["JOB_STATUS"] != "SUCCEEDED":
            problems.append(f"{where}: {body['JOB_STATUS']} {body.get('ERROR')}")
            continue
        yield job_id, body, where


def check_predictions(final: dict[str, dict], long: dict[str, float]) -> tuple[int, list, dict]:
    """(Results checked, problems, the first result of each recording) of the segments
    predictions among ``final``; every result of a recording must equal the first."""
    problems: list[str] = []
    first: dict[str, list[dict]] = {}
    checked = 0
    for _job_id, body, where in succeeded(final, "predict segments", problems):
        name = body["target"]
        where = f"{where} {name}"
        checked += 1
        try:
            found = _check_prediction(body, name, long[name], where)
            segs = body["SEGMENTS"]
            if not found and not same_segments(segs, first.setdefault(name, segs)):
                found.append(f"{where}: segments differ from the first result of {name}")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            found = [f"{where}: malformed result ({type(exc).__name__}: {exc})"]
        problems += found
    return checked, problems, first


def check_scores(
    final: dict[str, dict], rows_of: dict[str, list[dict]], long: dict[str, float], first: dict
) -> tuple[int, list]:
    """(Results checked, problems) of the segments folder scores: counts, rows per recording
    in name then time order, each recording's rows those of its predictions, totals the sums
    of the rows."""
    problems: list[str] = []
    checked = 0
    names = sorted(long)
    for job_id, body, where in succeeded(final, "score segments", problems):
        checked += 1
        try:
            rows = rows_of[job_id]
            found = []
            if (body["COUNT"], body["SUCCEEDED"], body["FAILED"]) != (len(names), len(names), 0):
                found.append(
                    f"{where}: COUNT/SUCCEEDED/FAILED {body['COUNT']}, "
                    f"{body['SUCCEEDED']}, {body['FAILED']}"
                )
            by_file: dict[str, list[dict]] = {}
            for row in rows:
                by_file.setdefault(row["FILENAME"], []).append(row)
            if list(by_file) != names:
                found.append(f"{where}: rows of {list(by_file)}, not {names}")
            for name in names:
                segs = by_file.get(name, [])
                found += check_segments(segs, long[name], f"{where} {name}")
                if not same_segments(segs, first.setdefault(name, segs)):
                    found.append(f"{where}: rows of {name} differ from its prediction")
            speech = round(sum(r["END"] - r["START"] for r in rows), 2)
            found += check_speech(body, speech, where)
            if body["SEGMENTS"] != len(rows):
                found.append(f"{where}: SEGMENTS {body['SEGMENTS']} for {len(rows)} rows")
            if sum(v["SEGMENTS"] for v in body["SUMMARY"].values()) != len(rows):
                found.append(f"{where}: SUMMARY's SEGMENTS do not add up to {len(rows)}")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            found = [f"{where}: malformed result ({type(exc).__name__}: {exc})"]
        problems += found
    return checked, problems


class Parts:
    """Redis, two worker nodes and the API (tests/harness.py), each a process group this
    script owns."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.state, self.data = workdir / "state", workdir / "data"
        self.state.mkdir(parents=True)
        self.redis = RedisServer(self.state, password=secrets.token_hex(16))
        self.env = stack_env(
            self.redis.url,
            self.data,
            self.state,
            {"SER_N_JOBS": "1", "SER_JOB_TTL": "3600"},
            SER_SECRET_KEY=secrets.token_hex(32),
            SER_VISIBILITY_TIMEOUT=str(VISIBILITY),
            SER_TRAIN_TIME_LIMIT=str(TRAIN_LIMIT),
            SER_PREDICT_TIME_LIMIT=str(PREDICT_LIMIT),
        )
        self.nodes: dict[str, Worker] = {}
        self.api = ApiServer(self.env, workdir, workers=2, threads=16)
        self.base = self.api.base

    def start(self) -> None:
        self.redis.start()
        for name in ("node_a", "node_b"):
            self.nodes[name] = Worker(self.env, name, self.workdir, loglevel="WARNING")
        self.api.start()
        wait_until(self._healthy, 180, "API and workers", interval=0.2)

    def _healthy(self) -> bool:
        answer = health(self.base, 2)
        return answer is not None and answer[1].get("WORKERS", 0) >= 2

    def stop(self) -> None:
        for part in (self.api, *self.nodes.values(), self.redis):
            part.stop(30)

    def rss(self) -> dict[str, int]:
        """RSS (bytes) per process, labelled role/main or role/childN."""
        out: dict[str, int] = {}
        parts = {"api": self.api, "redis": self.redis, **self.nodes}
        for role, part in parts.items():
            for k, pid in enumerate(part.pids()):
                try:
                    rss = psutil.Process(pid).memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                out[f"{role}/main" if k == 0 else f"{role}/child{k - 1}"] = rss
        out["bench/self"] = psutil.Process().memory_info().rss
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--kill-every", type=float, default=60, help="seconds between kills")
    ap.add_argument(
        "--segments-every",
        type=int,
        default=1000,
        help="each client's requests per segments prediction (3x as many per segments "
        "folder score); 0: no segment jobs",
    )
    args = ap.parse_args(argv)
    every = max(0, args.segments_every)
    long_names = list(LONG)
    with tempfile.TemporaryDirectory(prefix="ser-soak-") as tmp:
        parts = Parts(Path(tmp))
        clips = make_data(parts.data)
        for i in range(12):
            label = list(audiogen.CLASSES)[i % 3]
            audiogen.write(
                parts.data / "batch" / f"b{i:02d}.wav",
                audiogen.voice_like(label, 2.0, seed=900 + i),
            )
        long = make_long(parts.data) if every else {}
        samples: list[tuple[float, dict]] = []
        accepted: list[tuple[str, str, str]] = []  # (job id, kind, what it names)
        refused: Counter = Counter()
        kills: list[str] = []
        rows_of: dict[str, list[dict]] = {}
        try:
            parts.start()
            train(parts.base)
            stop = threading.Event()
            lock = threading.Lock()
            payloads = {c: (parts.data / c).read_bytes() for c in clips}

            def client(k: int) -> None:
                session = requests.Session()
                # this client's turns for segment jobs, staggered across the clients
                seg_at = (1 + k * every // args.clients) % every if every else -1
                score_at = (every // 2 + 3 * k * every // args.clients) % (3 * every or 1)
                n = 0
                while not stop.is_set():
                    n += 1
                    clip = clips[n % len(clips)]
                    try:
                        if every and n % (3 * every) == score_at:
                            kind, target = "score segments", "long"
                            resp = session.post(
                                parts.base + "/score",
                                json={"folder": "long", "segments": True},
                                timeout=30,
                            )
                        elif every and n % every == seg_at:
                            kind = "predict segments"
                            target = long_names[(n // every + k) % len(long_names)]
                            resp = session.post(
                                parts.base + "/predict",
                                json={"filename": target, "segments": True},
                                timeout=30,
                            )
                        elif n % 10 == 0:
                            kind, target = "score", "batch"
                            resp = session.post(
                                parts.base + "/score", json={"folder": "batch"}, timeout=30
                            )
                        elif n % 2:
                            kind, target = "predict", clip
                            resp = session.post(
                                parts.base + "/predict",
                                files={"file": (Path(clip).name, payloads[clip])},
                                timeout=30,
                            )
                        else:
                            kind, target = "predict", clip
                            resp = session.post(
                                parts.base + "/predict", json={"filename": clip}, timeout=30
                            )
                    except requests.RequestException as exc:
                        with lock:
                            refused[type(exc).__name__] += 1
                        time.sleep(0.2)
                        continue
                    with lock:
                        if resp.status_code == 202:
                            accepted.append((resp.json()["JOB_ID"], kind, target))
                        else:
                            refused[f"HTTP {resp.status_code}"] += 1
                    time.sleep(0.05 + 0.02 * k)  # bounded rate: a soak, not a stress test

            t0 = time.monotonic()
            end = t0 + args.minutes * 60
            # at least two kills however short the run (a 1-minute dry run kills at 30 s)
            kill_every = min(args.kill_every, args.minutes * 60 / 2)
            next_kill = t0 + kill_every
            victim = 0
            with ThreadPoolExecutor(args.clients) as pool:
                futures = [pool.submit(client, k) for k in range(args.clients)]
                while time.monotonic() < end:
                    samples.append((time.monotonic() - t0, parts.rss()))
                    if time.monotonic() >= next_kill:
                        name = ("node_a", "node_b")[victim % 2]
                        victim += 1
                        parts.nodes[name].kill()
                        kills.append(f"{time.monotonic() - t0:.0f}s {name}")
                        time.sleep(2)
                        parts.nodes[name].start()
                        next_kill += kill_every
                    time.sleep(min(5.0, max(0.1, end - time.monotonic())))
                stop.set()
                for f in futures:
                    f.result()
            traffic_s = time.monotonic() - t0
            # drain: every accepted job must end; a killed node's task returns after the
            # visibility timeout (plus a sweep), a dead one past its deadline is JOB_TIMEOUT
            drain_deadline = time.monotonic() + VISIBILITY + PREDICT_LIMIT + 60
            final: dict[str, dict] = {}
            session = requests.Session()
            pending = list(accepted)
            while pending and time.monotonic() < drain_deadline:
                rest = []
                for job_id, kind, target in pending:
                    body = session.get(f"{parts.base}/jobs/{job_id}", timeout=30).json()
                    if body.get("JOB_STATUS") in TERMINAL:
                        final[job_id] = {"kind": kind, "target": target, **body}
                    else:
                        rest.append((job_id, kind, target))
                pending = rest
                if pending:
                    time.sleep(1)
            drain_s = time.monotonic() - t0 - traffic_s
            # a segments folder score's rows, while the stack is up
            for job_id, body in final.items():
                if body["kind"] == "score segments" and body["JOB_STATUS"] == "SUCCEEDED":
                    text = session.get(
                        f"{parts.base}/jobs/{job_id}/results?format=jsonl", timeout=60
                    ).text
                    rows_of[job_id] = [json.loads(line) for line in text.splitlines()]
            samples.append((time.monotonic() - t0, parts.rss()))
        finally:
            parts.stop()
            # messages the broker lost (a node killed between BRPOP and its unacked record)
            # that the outbox sweeper published again (worker/sweeper.py)
            republished = sum(n.logs().count("republishing ") for n in parts.nodes.values())
    outcome: Counter = Counter()
    for body in final.values():
        code = body.get("ERROR", {}).get("CODE", "") if body["JOB_STATUS"] == "FAILED" else ""
        outcome[f"{body['kind']} {body['JOB_STATUS']} {code}".strip()] += 1
    lost = len(accepted) - len(final)
    ids = [a[0] for a in accepted]
    # per kind: jobs/s over the traffic time, latency CREATED_AT -> FINISHED_AT (finished
    # jobs), and for segment jobs the audio seconds scored per second
    audio_s = dict(long)
    audio_s["long"] = sum(long.values())
    kinds = [k for k in ("predict", "score", *SEGMENT_KINDS) if any(a[1] == k for a in accepted)]
    per_kind = []
    for kind in kinds:
        done = [b for b in final.values() if b["kind"] == kind and b["JOB_STATUS"] == "SUCCEEDED"]
        lat = [x for x in map(seconds_between, done) if x is not None]
        row = {
            "kind": kind,
            "accepted": sum(a[1] == kind for a in accepted),
            "succeeded": len(done),
            "jobs_per_s": len(done) / traffic_s,
            "p50_s": pct(lat, 0.5) if lat else float("nan"),
            "p90_s": pct(lat, 0.9) if lat else float("nan"),
            "p99_s": pct(lat, 0.99) if lat else float("nan"),
            "max_s": max(lat) if lat else float("nan"),
            "audio_s_per_s": (
                sum(audio_s[b["target"]] for b in done) / traffic_s
                if kind in SEGMENT_KINDS
                else "-"
            ),
        }
        per_kind.append(row)
    checked_p, problems, first = check_predictions(final, long)
    checked_s, more = check_scores(final, rows_of, long, first)
    problems += more
    # RSS per process label: start (first sample it appears in), end, max
    table: dict[str, dict] = {}
    for _, snap in samples:
        for label, rss in snap.items():
            row = table.setdefault(label, {"start": rss, "end": rss, "max": rss})
            row["end"], row["max"] = rss, max(row["max"], rss)
    rows = [
        {
            "process": k,
            "start_MB": v["start"] / 2**20,
            "end_MB": v["end"] / 2**20,
            "max_MB": v["max"] / 2**20,
        }
        for k, v in sorted(table.items())
    ]
    summary = {
        "minutes": args.minutes,
        "segments_every": every,
        "long_recordings_s": long,
        "traffic_s": traffic_s,
        "drain_s": drain_s,
        "accepted": len(accepted),
        "duplicate_ids": len(ids) - len(set(ids)),
        "lost": lost,
        "republished": republished,
        "outcomes": dict(outcome),
        "refused": dict(refused),
        "kills": kills,
        "per_kind": per_kind,
        "segment_checks": {
            "predictions": checked_p,
            "folder_scores": checked_s,
            "problems": problems,
        },
        "rss": table,
    }
    print(
        f"traffic {traffic_s:.0f}s (drained in {drain_s:.0f}s), {len(accepted)} jobs accepted, "
        f"kills: {', '.join(kills)}"
    )
    print_table(
        [{"outcome": k, "jobs": v} for k, v in sorted(outcome.items())], ["outcome", "jobs"]
    )
    print("\nper kind (latency: the job record's CREATED_AT -> FINISHED_AT, succeeded jobs):")
    print_table(
        per_kind,
        [
            "kind",
            "accepted",
            "succeeded",
            "jobs_per_s",
            "p50_s",
            "p90_s",
            "p99_s",
            "max_s",
            "audio_s_per_s",
        ],
    )
    if every:
        print(
            f"\nsegment results checked: {checked_p} predictions, {checked_s} folder scores "
            f"(recordings {', '.join(f'{n} {s:.0f}s' for n, s in long.items())}); "
            f"problems: {len(problems)}"
        )
        for problem in problems[:20]:
            print("  " + problem)
    print(
        f"\nlost: {lost}   duplicate ids: {summary['duplicate_ids']}   refused: {dict(refused)}"
        f"   lost messages republished: {republished}\n"
    )
    print_table(rows, ["process", "start_MB", "end_MB", "max_MB"])
    print("(a killed node's processes restart: their 'start' is the first sample of the label)")
    dump(f"soak_{args.minutes:g}min", summary)
    return 0 if lost == 0 and summary["duplicate_ids"] == 0 and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
