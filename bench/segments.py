"""Emotion over time of long recordings: speed through the service against the library
in-process (same run, same file), and the peak RSS of a process segmenting a long file against a
1-minute one.

Generated audio only (no corpus needed): a 10 s unit (4 s and 3 s of voice-like speech, each
followed by a pause) repeated to the length asked, written as 16-bit FLAC; a model trained on
generated 3 s clips (default features). Speed: one job at a time (`POST /predict` with
`segments`, the file named under the data root) on `ser up --concurrency 2`: the recording is
spread over both worker processes by time ranges (SER_SEGMENT_CHUNK_SECONDS), so the service's
rate per core is the audio's seconds / the job's wall seconds (from the POST to the finished
body) / 2. Against `ser.ml.segments.segment` in this process on one core (BLAS held to one
thread, as in a worker process): the library's rate per core. The runs alternate, so drift
on the (shared) machine hits both alike; the machine's load average is printed with each run.

Two controls, because the machine is shared and two processes do not always get two cores:
the CPU seconds the whole service (`ser up`'s process tree: Redis, API, worker nodes) spent on
the job against the library's own (`*_x_per_cpu`: audio seconds per CPU second, what a core
fully given to the work would do), and two library processes segmenting the file at the same
time (`pair_x_per_core` = 2 x audio / their wall seconds / 2: what two processes on this
machine could do at that moment, the fair ceiling of the service's per-core rate).

The worker processes keep their freed heap (worker/app.py, glibc's malloc thresholds), a
library process with glibc's defaults does not, and its rate then swings with its page faults
(a third between runs of one process): so the library is also timed in fresh processes with the
workers' malloc settings, alone (`library_tuned_x`, the same code under the same allocator as
a pool process) and as a pair (`pair_tuned_x_per_core`).

Memory: `segment()` in a fresh Python process per file, the model loaded and warm, then its
peak RSS (VmHWM, reset through /proc/self/clear_refs just before segmenting).

    python bench/segments.py [--minutes 60] [--long-minutes 120] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from common import dump, print_table
from threadpoolctl import threadpool_limits

from ser.ml import segments, training
from tests import audiogen
from tests.harness import ROOT, Api, EmbeddedStack, stack_env, wait_until

SR = 16000
WORKERS = 2  # worker processes of the service (`ser up --concurrency 2`)
UNIT = [("calm", 4.0), (None, 1.0), ("tense", 3.0), (None, 2.0)]

RSS_CHILD = """
import sys
from pathlib import Path
from ser.ml import segments
from ser.ml.bundle import Bundle
from tests import audiogen


def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024


bundle = Bundle.from_bytes(Path(sys.argv[1]).read_bytes())
bundle.classify(bundle.spec.from_waveform(audiogen.voice_like("calm", 3.0))[None])  # warm
Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
base = hwm()
res = segments.segment(bundle, sys.argv[2])
print(base, hwm(), len(res["SEGMENTS"]))
"""


LIBRARY_CHILD = """
import sys
from pathlib import Path
from threadpoolctl import threadpool_limits
from ser.ml import segments
from ser.ml.bundle import Bundle

bundle = Bundle.from_bytes(Path(sys.argv[1]).read_bytes())
print("ready", flush=True)
sys.stdin.readline()  # start together
with threadpool_limits(limits=1, user_api="blas"):
    segments.segment(bundle, sys.argv[2])
"""


def tuned_env() -> dict:
    """This environment with the worker processes' malloc settings (worker/app.py
    ``tune_malloc``, as glibc's MALLOC_*_ variables): a library process that keeps its freed
    heap as a pool process does."""
    from worker.app import MALLOC_MMAP_BYTES, MALLOC_TRIM_BYTES

    return os.environ | {
        "MALLOC_MMAP_THRESHOLD_": str(MALLOC_MMAP_BYTES),
        "MALLOC_TRIM_THRESHOLD_": str(MALLOC_TRIM_BYTES),
    }


def library_wall(model: Path, path: Path, n: int = 2, env: dict | None = None) -> float:
    """Wall seconds of ``n`` library processes segmenting ``path`` at the same time (the model
    loaded first, then started together; ``env``: their environment)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LIBRARY_CHILD, str(model), str(path)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(n)
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    t0 = time.perf_counter()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        assert proc.wait() == 0
    return time.perf_counter() - t0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the live processes ``pids`` (0 for those gone)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def write_long(path: Path, minutes: float) -> Path:
    unit = np.concatenate(
        [
            audiogen.noise(s, amp=1e-4, seed=i)
            if label is None
            else audiogen.voice_like(label, s, seed=i)
            for i, (label, s) in enumerate(UNIT)
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(str(path), "w", SR, 1, subtype="PCM_16") as f:
        for _ in range(int(round(minutes * 6))):
            f.write(unit)
    return path


def peak_rss(model: Path, path: Path) -> tuple[float, float, int]:
    out = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, str(model), str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    base, peak, n = out.stdout.split()
    return float(base), float(peak), int(n)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="recording timed for speed")
    ap.add_argument("--long-minutes", type=float, default=120.0, help="long file for memory")
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ser-segments-") as tmp:
        root = Path(tmp)
        data = root / "data"
        ds = audiogen.make_dataset(data / "ds", "labels_csv", n_per_class=8, seconds=3.0)
        speed_file = write_long(data / "long" / "speed.flac", args.minutes)
        seconds = args.minutes * 60
        bundle = training.train(ds, features="default", repeats=1)
        model = root / "model.joblib"
        model.write_bytes(bundle.to_bytes())
        env = stack_env(None, data, root / "state", SER_SKIP_WARMUP="false")
        with EmbeddedStack(env, root / "logs", concurrency=WORKERS) as stack:
            wait_until(lambda: "ser: ready" in stack.log.read_text(), 180, "ready")
            api = Api(stack.base)
            api.train("ds", timeout=300)
            for run in range(args.runs):  # alternate, so drift on the machine hits both alike
                pids = stack.pids()
                cpu0 = cpu_seconds(pids)
                t0 = time.perf_counter()
                resp = api.post("/predict", json={"filename": "long/speed.flac", "segments": True})
                body = api.wait_job(resp.json()["JOB_ID"], timeout=3600)
                service_s = time.perf_counter() - t0
                service_cpu = cpu_seconds(pids) - cpu0
                assert body["JOB_STATUS"] == "SUCCEEDED", json.dumps(body)[:500]
                t0 = time.perf_counter()
                c0 = time.process_time()
                with threadpool_limits(limits=1, user_api="blas"):  # as a worker process
                    res = segments.segment(bundle, speed_file)
                library_s = time.perf_counter() - t0
                library_cpu = time.process_time() - c0
                pair_s = library_wall(model, speed_file)
                tuned = tuned_env()
                alone_tuned_s = library_wall(model, speed_file, 1, tuned)
                pair_tuned_s = library_wall(model, speed_file, 2, tuned)
                assert len(body["SEGMENTS"]) == len(res["SEGMENTS"]), "service and library differ"
                per_core = seconds / service_s / WORKERS
                library_x = seconds / library_s
                rows.append(
                    {
                        "run": run + 1,
                        "audio_s": seconds,
                        "segments": len(res["SEGMENTS"]),
                        "service_s": round(service_s, 2),
                        "service_x_per_core": round(per_core),
                        "library_s": round(library_s, 2),
                        "library_x": round(library_x),
                        "service_vs_library_pct": round(100 * (per_core / library_x - 1), 1),
                        "service_x_per_cpu": round(seconds / service_cpu),
                        "library_x_per_cpu": round(seconds / library_cpu),
                        "pair_x_per_core": round(seconds / pair_s),
                        "service_vs_pair_pct": round(100 * (per_core * pair_s / seconds - 1), 1),
                        "library_tuned_x": round(seconds / alone_tuned_s),
                        "service_vs_library_tuned_pct": round(
                            100 * (per_core * alone_tuned_s / seconds - 1), 1
                        ),
                        "pair_tuned_x_per_core": round(seconds / pair_tuned_s),
                        "service_vs_pair_tuned_pct": round(
                            100 * (per_core * pair_tuned_s / seconds - 1), 1
                        ),
                        "load": round(os.getloadavg()[0], 1),
                    }
                )
                print(rows[-1], flush=True)
        short = write_long(root / "mem" / "one_minute.flac", 1.0)
        base1, peak1, _ = peak_rss(model, short)
        short.unlink()
        long = write_long(root / "mem" / "long.flac", args.long_minutes)
        base2, peak2, n2 = peak_rss(model, long)
    print_table(
        rows,
        [
            "run",
            "audio_s",
            "segments",
            "service_s",
            "service_x_per_core",
            "library_s",
            "library_x",
            "service_vs_library_pct",
            "service_x_per_cpu",
            "library_x_per_cpu",
            "pair_x_per_core",
            "service_vs_pair_pct",
            "library_tuned_x",
            "service_vs_library_tuned_pct",
            "pair_tuned_x_per_core",
            "service_vs_pair_tuned_pct",
            "load",
        ],
    )
    for col in (
        "service_vs_library_pct",
        "service_vs_pair_pct",
        "service_vs_library_tuned_pct",
        "service_vs_pair_tuned_pct",
    ):
        vals = [r[col] for r in rows]
        print(f"{col}: median {statistics.median(vals)}, range {min(vals)} to {max(vals)}")
    mem = {
        "one_minute_peak_mb": round(peak1, 1),
        f"{args.long_minutes:g}_minutes_peak_mb": round(peak2, 1),
        "difference_mb": round(peak2 - peak1, 1),
        "long_segments": n2,
        "rss_model_loaded_mb": [round(base1, 1), round(base2, 1)],
    }
    print(json.dumps(mem))
    dump("segments", {"speed": rows, "memory": mem})
    return 0


if __name__ == "__main__":
    sys.exit(main())
