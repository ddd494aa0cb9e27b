"""Load: N prediction jobs from C concurrent clients against the embedded stack (`ser up`).

    python bench/load.py                  # 2,000 jobs, 32 clients
    python bench/load.py --quick          # dry run: 120 jobs, 8 clients, short TTLs

Starts `ser up` on free loopback ports with its state and data in a temp dir, trains through
the API on a generated dataset, then each client submits predictions (half uploads, half
files under the data root) and follows each job with GET /jobs/<id>?wait=. Checks: every job
SUCCEEDED, every accepted id unique and run exactly once (its record's ``attempts`` is 1).
Reports p50/p99 latency (submit -> finished body received), jobs/s, and Redis INFO memory
before, after, and once SER_JOB_TTL / SER_BLOB_TTL have expired. Stops everything it started.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from common import dump, print_table

from tests import audiogen
from tests.harness import EmbeddedStack, stack_env

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


def make_data(root: Path) -> list[str]:
    """A small training set and a few clips; returns the clip paths (relative)."""
    audiogen.make_dataset(root / "ds", "folders", n_per_class=10, seconds=1.5)
    clips = []
    for i, label in enumerate(audiogen.CLASSES):
        rel = f"clips/{label}.wav"
        audiogen.write(root / rel, audiogen.voice_like(label, 3.0, seed=500 + i))
        clips.append(rel)
    return clips


def memory(client) -> dict:
    info = client.info("memory")
    return {
        "used_memory": int(info["used_memory"]),
        "used_memory_human": info["used_memory_human"],
        "keys": int(client.dbsize()),
    }


def train(base: str, dataset: str = "ds", timeout: float = 300) -> dict:
    job = requests.post(base + "/train", json={"dataset": dataset}, timeout=30).json()
    deadline = time.monotonic() + timeout
    while True:
        body = requests.get(f"{base}/jobs/{job['JOB_ID']}?wait=10", timeout=30).json()
        if body["JOB_STATUS"] in TERMINAL:
            if body["JOB_STATUS"] != "SUCCEEDED":
                raise RuntimeError(f"training failed: {body}")
            return body
        if time.monotonic() > deadline:
            raise TimeoutError("training did not finish")


def run_load(base: str, data: Path, clips: list[str], n_jobs: int, n_clients: int) -> dict:
    """Submit ``n_jobs`` predictions from ``n_clients`` threads; follow each to its end."""
    payloads = {c: (data / c).read_bytes() for c in clips}
    results: list[dict] = []
    lock = threading.Lock()
    counter = iter(range(n_jobs))
    counter_lock = threading.Lock()

    def client(_: int) -> None:
        session = requests.Session()
        while True:
            with counter_lock:
                i = next(counter, None)
            if i is None:
                return
            clip = clips[i % len(clips)]
            t0 = time.perf_counter()
            try:
                if i % 2:
                    resp = session.post(
                        base + "/predict",
                        files={"file": (Path(clip).name, payloads[clip])},
                        timeout=60,
                    )
                else:
                    resp = session.post(base + "/predict", json={"filename": clip}, timeout=60)
            except requests.RequestException as exc:
                with lock:
                    results.append({"i": i, "error": type(exc).__name__})
                continue
            if resp.status_code != 202:
                with lock:
                    results.append({"i": i, "error": f"HTTP {resp.status_code} {resp.text[:200]}"})
                continue
            job_id = resp.json()["JOB_ID"]
            deadline = time.monotonic() + 300
            body = {"JOB_STATUS": "QUEUED"}
            while body["JOB_STATUS"] not in TERMINAL and time.monotonic() < deadline:
                body = session.get(f"{base}/jobs/{job_id}?wait=10", timeout=60).json()
            latency = time.perf_counter() - t0
            with lock:
                results.append(
                    {
                        "i": i,
                        "id": job_id,
                        "status": body["JOB_STATUS"],
                        "latency": latency,
                        "expected": Path(clip).stem,
                        "emotion": body.get("EMOTION"),
                    }
                )

    t0 = time.perf_counter()
    with ThreadPoolExecutor(n_clients) as pool:
        list(pool.map(client, range(n_clients)))
    wall = time.perf_counter() - t0
    return {"results": results, "wall": wall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=0, help="prediction processes")
    ap.add_argument("--ttl", type=int, default=60, help="SER_JOB_TTL and SER_BLOB_TTL (s)")
    ap.add_argument("--quick", action="store_true", help="dry run: 120 jobs, 8 clients")
    args = ap.parse_args(argv)
    if args.quick:
        args.jobs, args.clients, args.ttl = 120, 8, 15
    with tempfile.TemporaryDirectory(prefix="ser-load-") as tmp:
        data = Path(tmp) / "data"
        env = stack_env(
            None,
            data,
            Path(tmp) / "state",
            {"SER_N_JOBS": "1"},
            SER_JOB_TTL=str(args.ttl),
            SER_BLOB_TTL=str(args.ttl),
        )
        stack = EmbeddedStack(env, Path(tmp), args.concurrency)
        clips = make_data(data)
        try:
            stack.start(timeout=180)
            train(stack.base)
            client = stack.redis()
            before = memory(client)
            run = run_load(stack.base, data, clips, args.jobs, args.clients)
            after = memory(client)
            res = run["results"]
            ok = [r for r in res if r.get("status") == "SUCCEEDED"]
            ids = [r["id"] for r in res if "id" in r]
            pipe = client.pipeline(transaction=False)
            for job_id in ids:
                pipe.hget(f"ser:job:{job_id}", "attempts")
            attempts = [int(a or 0) for a in pipe.execute()]
            ran_twice = sum(a > 1 for a in attempts)
            t_exp = time.monotonic()
            job_keys = lambda: sum(1 for _ in client.scan_iter("ser:job:*", count=1000))  # noqa: E731
            blob_keys = lambda: sum(1 for _ in client.scan_iter("ser:blob:*", count=1000))  # noqa: E731
            while (job_keys() or blob_keys()) and time.monotonic() - t_exp < args.ttl + 30:
                time.sleep(1)
            expired = memory(client)
            expired["job_keys"], expired["blob_keys"] = job_keys(), blob_keys()
            expired["index_entries"] = int(client.zcard("ser:jobs"))
        finally:
            stack.stop()
    lat = sorted(r["latency"] for r in ok)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(round(p * (len(lat) - 1))))] if lat else float("nan")

    summary = {
        "jobs": args.jobs,
        "clients": args.clients,
        "accepted": len(ids),
        "succeeded": len(ok),
        "not_succeeded": len(res) - len(ok),
        "lost": args.jobs - len(res),
        "duplicate_ids": len(ids) - len(set(ids)),
        "ran_more_than_once": ran_twice,
        "wrong_label": sum(r["emotion"] != r["expected"] for r in ok),
        "p50_s": pct(0.50),
        "p99_s": pct(0.99),
        "mean_s": statistics.fmean(lat) if lat else float("nan"),
        "jobs_per_s": len(ok) / run["wall"],
        "wall_s": run["wall"],
        "redis_before": before,
        "redis_after": after,
        "redis_after_ttl": expired,
        "ttl_s": args.ttl,
    }
    errors = [r for r in res if r.get("status") != "SUCCEEDED"][:5]
    print_table(
        [{k: v for k, v in summary.items() if not isinstance(v, dict)}],
        [
            "jobs",
            "clients",
            "succeeded",
            "lost",
            "duplicate_ids",
            "ran_more_than_once",
            "p50_s",
            "p99_s",
            "jobs_per_s",
        ],
    )
    print()
    print("| Redis | used_memory | keys |")
    print("|---|---|---|")
    for name in ("redis_before", "redis_after", "redis_after_ttl"):
        m = summary[name]
        print(f"| {name.removeprefix('redis_')} | {m['used_memory_human']} | {m['keys']} |")
    print(
        f"after TTL ({args.ttl}s): job keys {expired['job_keys']}, blob keys "
        f"{expired['blob_keys']}, index entries {expired['index_entries']}"
    )
    if errors:
        print("first failures:", errors)
    dump("load_quick" if args.quick else "load", summary)
    good = (
        summary["succeeded"] == args.jobs
        and summary["duplicate_ids"] == 0
        and summary["ran_more_than_once"] == 0
    )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
