"""Soak: mixed predict/score traffic for --minutes, one worker node SIGKILLed and restarted
every minute; zero lost jobs; the RSS of every process sampled and reported (start/end/max).

    python bench/soak.py --minutes 10     # the soak
    python bench/soak.py --minutes 1      # dry run

`ser up` stops everything when one of its parts exits, so the soak runs the same parts itself:
the bundled redis-server (AOF on, as `ser up` runs it), two `ser worker` nodes (one process
each, both queues) and `ser api` (gunicorn), on free loopback ports, state and data in a temp
dir. Clients loop over POST /predict (uploads and file names) and POST /score (a 12-file
folder, 1 in 10 requests); every accepted job is followed to its end. A job is LOST if it is
not terminal once traffic has stopped and the stack has had the redelivery bound to drain.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests
from common import dump, print_table
from load import TERMINAL, make_data, train

from tests import audiogen
from tests.harness import ApiServer, RedisServer, Worker, health, stack_env, wait_until

VISIBILITY, TRAIN_LIMIT, PREDICT_LIMIT = 40, 35, 30


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
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ser-soak-") as tmp:
        parts = Parts(Path(tmp))
        clips = make_data(parts.data)
        for i in range(12):
            label = list(audiogen.CLASSES)[i % 3]
            audiogen.write(
                parts.data / "batch" / f"b{i:02d}.wav",
                audiogen.voice_like(label, 2.0, seed=900 + i),
            )
        samples: list[tuple[float, dict]] = []
        accepted: list[tuple[str, str]] = []
        refused: Counter = Counter()
        kills: list[str] = []
        try:
            parts.start()
            train(parts.base)
            stop = threading.Event()
            lock = threading.Lock()
            payloads = {c: (parts.data / c).read_bytes() for c in clips}

            def client(k: int) -> None:
                session = requests.Session()
                n = 0
                while not stop.is_set():
                    n += 1
                    clip = clips[n % len(clips)]
                    try:
                        if n % 10 == 0:
                            kind = "score"
                            resp = session.post(
                                parts.base + "/score", json={"folder": "batch"}, timeout=30
                            )
                        elif n % 2:
                            kind = "predict"
                            resp = session.post(
                                parts.base + "/predict",
                                files={"file": (Path(clip).name, payloads[clip])},
                                timeout=30,
                            )
                        else:
                            kind = "predict"
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
                            accepted.append((resp.json()["JOB_ID"], kind))
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
                for job_id, kind in pending:
                    body = session.get(f"{parts.base}/jobs/{job_id}", timeout=30).json()
                    if body.get("JOB_STATUS") in TERMINAL:
                        final[job_id] = {"kind": kind, **body}
                    else:
                        rest.append((job_id, kind))
                pending = rest
                if pending:
                    time.sleep(1)
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
        "traffic_s": traffic_s,
        "accepted": len(accepted),
        "duplicate_ids": len(ids) - len(set(ids)),
        "lost": lost,
        "republished": republished,
        "outcomes": dict(outcome),
        "refused": dict(refused),
        "kills": kills,
        "rss": table,
    }
    print(f"traffic {traffic_s:.0f}s, {len(accepted)} jobs accepted, kills: {', '.join(kills)}")
    print_table(
        [{"outcome": k, "jobs": v} for k, v in sorted(outcome.items())], ["outcome", "jobs"]
    )
    print(
        f"\nlost: {lost}   duplicate ids: {summary['duplicate_ids']}   refused: {dict(refused)}"
        f"   lost messages republished: {republished}\n"
    )
    print_table(rows, ["process", "start_MB", "end_MB", "max_MB"])
    print("(a killed node's processes restart: their 'start' is the first sample of the label)")
    dump(f"soak_{args.minutes:g}min", summary)
    return 0 if lost == 0 and summary["duplicate_ids"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
