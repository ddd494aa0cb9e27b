"""Bulk scoring throughput: in-process batch vs end to end through the service, same run.

    python bench/bulk_throughput.py            # 5,350 files: EMO-DB ten times over
    python bench/bulk_throughput.py --quick    # a dry run on a few hundred files

The folder is built in a temporary directory (never in the repository): every EMO-DB file
ten times under new names, each copy scaled by its own gain, so no two files share content
and the feature cache cannot shortcut them. The feature cache is emptied before every
service run. The service is the real thing: a bundled redis-server, one worker node with 1 or
2 pool processes (warm before timing), the API under gunicorn; a job is timed from POST
/score to SUCCEEDED. Reported: files/s, the ratio to the in-process batch throughput with as
many processes, peak RSS per worker process (VmHWM), and the time to stream the CSV.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import requests
import soundfile as sf
from common import corpus, dump, print_table

from ser import config
from ser.datasets import load_dataset
from ser.features.batch import warm_pool
from ser.ml import training
from ser.service.registry import Registry
from tests.harness import ApiServer, RedisServer, Worker, stack_env

warnings.filterwarnings("ignore", category=FutureWarning)


def build_folder(src: Path, dest: Path, copies: int, limit: int | None) -> list[Path]:
    """``copies`` renamed, re-gained copies of the corpus (first ``limit`` files)."""
    files = sorted(src.glob("*.wav"))[:limit]
    out = []
    for k in range(copies):
        gain = 0.55 + 0.04 * k  # distinct per copy, below 1 so nothing clips
        folder = dest / f"copy{k:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            y, sr = sf.read(str(f), dtype="float32")
            path = folder / f"{f.stem}_g{k:02d}.wav"
            sf.write(str(path), np.clip(y * gain, -1, 1), sr, subtype="PCM_16")
            out.append(path)
    return out


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Stack:
    """redis-server + API for the whole run (tests/harness.py); worker nodes started per
    process count."""

    def __init__(self, tmp: Path, data: Path) -> None:
        self.tmp = tmp
        self.redis_server = RedisServer(tmp, aof=False).start()
        self.redis = self.redis_server.client()
        self.prefix = f"bench{uuid.uuid4().hex[:6]}:"
        self.secret = uuid.uuid4().hex
        self.env = stack_env(
            self.redis_server.url,
            data,
            tmp / "state",
            {"SER_N_JOBS": "1"},
            SER_SECRET_KEY=self.secret,
            SER_KEY_PREFIX=self.prefix,
        )
        self.api = ApiServer(self.env, tmp).start()  # /health is 503 until a worker runs
        self.base = self.api.base
        self.worker: Worker | None = None

    def publish(self, bundle) -> None:
        meta = {"dataset": "emodb", "metrics": {}, "classes": list(bundle.classes)}
        Registry(self.redis, self.prefix).publish(bundle.to_bytes(), meta, self.secret.encode())

    def start_worker(self, processes: int) -> None:
        self.stop_worker()
        self.worker = Worker(self.env, f"bench{processes}", self.tmp, "ser.predict", processes)
        self.worker.wait_ready(self.redis, self.prefix, timeout=180)

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop(60)
        self.worker = None

    def clear_features(self) -> None:
        keys = list(self.redis.scan_iter(match=f"{self.prefix}feat:*", count=5000))
        for i in range(0, len(keys), 5000):
            self.redis.delete(*keys[i : i + 5000])

    def score(self, folder: str, chunk: int | None) -> tuple[str, float]:
        body: dict = {"folder": folder}
        if chunk:
            body["chunk_size"] = chunk
        t0 = time.perf_counter()
        resp = requests.post(self.base + "/score", json=body, timeout=30)
        resp.raise_for_status()
        job_id = resp.json()["JOB_ID"]
        while True:
            job = requests.get(f"{self.base}/jobs/{job_id}", timeout=30).json()
            if job["JOB_STATUS"] not in ("QUEUED", "RUNNING"):
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        if job["JOB_STATUS"] != "SUCCEEDED":
            raise RuntimeError(job)
        return job_id, elapsed

    def close(self) -> None:
        self.api.stop(30)
        self.redis_server.stop(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a dry run: 1 copy of 120 files")
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--processes", default="1,2", help="worker processes to measure")
    ap.add_argument("--chunks", default="16,64,256", help="chunk sizes (0: the default)")
    args = ap.parse_args()
    copies, limit = (1, 120) if args.quick else (args.copies, None)
    chunks = [int(c) for c in args.chunks.split(",")]
    if args.quick:
        chunks = chunks[:2]
    processes = [int(p) for p in args.processes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="ser-bulk-bench-"))
    try:
        data = tmp / "data"
        t0 = time.perf_counter()
        files = build_folder(corpus(), data / "bulk", copies, limit)
        print(f"built {len(files)} files in {time.perf_counter() - t0:.1f}s under {tmp}")
        # The model is not what is measured: train it through the usual on-disk cache.
        bundle = training.train(
            load_dataset(corpus()), n_jobs=max(processes), cache_dir=config.load().cache_dir
        )
        rows: list[dict] = []
        inproc: dict[int, float] = {}
        for n in processes:
            warm_pool(n)
            t0 = time.perf_counter()
            out = bundle.predict_many(files, n_jobs=n)
            secs = time.perf_counter() - t0
            assert len(out) == len(files)
            inproc[n] = len(files) / secs
            rows.append(
                dict(mode="in-process batch", processes=n, chunk="-", files=len(files),
                     seconds=round(secs, 2), files_per_s=round(inproc[n], 1), ratio="100 %",
                     peak_rss_mb="-")
            )  # fmt: skip
        stack = Stack(tmp, data)
        csv_seconds = None
        try:
            stack.publish(bundle)
            for n in processes:
                stack.start_worker(n)
                for chunk in chunks:
                    stack.clear_features()
                    job_id, secs = stack.score("bulk", chunk or None)
                    rate = len(files) / secs
                    rss = max(peak_rss_mb(p) for p in stack.worker.pids()[1:])
                    rows.append(
                        dict(mode="service (POST /score to SUCCEEDED)", processes=n,
                             chunk=chunk or "auto", files=len(files), seconds=round(secs, 2),
                             files_per_s=round(rate, 1),
                             ratio=f"{100 * rate / inproc[n]:.0f} %",
                             peak_rss_mb=round(rss))
                    )  # fmt: skip
                    print(rows[-1], flush=True)
            t0 = time.perf_counter()
            resp = requests.get(f"{stack.base}/jobs/{job_id}/results?format=csv", timeout=60)
            csv_seconds = time.perf_counter() - t0
            n_rows = resp.text.count("\n") - 1
        finally:
            stack.stop_worker()
            stack.close()
        service = [r for r in rows if r["mode"].startswith("service")]
        best = {n: max(r["files_per_s"] for r in service if r["processes"] == n) for n in processes}
        print()
        print_table(
            rows,
            ["mode", "processes", "chunk", "files", "seconds", "files_per_s", "ratio",
             "peak_rss_mb"],
        )  # fmt: skip
        print()
        if 1 in best and 2 in best:
            print(f"scaling, best 2 processes / best 1 process: {best[2] / best[1]:.2f}x")
        print(f"CSV of {n_rows} rows streamed in {csv_seconds:.3f}s")
        if not args.quick:
            dump("bulk_throughput", {"rows": rows, "csv_seconds": csv_seconds, "files": len(files)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
