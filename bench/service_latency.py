"""Prediction latency of the embedded stack (`ser up`, one prediction process), by upload.

    python bench/service_latency.py            # 500 sequential POST /predict?wait=10
    python bench/service_latency.py --quick    # a short dry run (50 requests)

Starts `ser up` on free loopback ports with SER_STATE_DIR and SER_DATA_DIR in a temp dir,
trains through the API (on a copy of EMO-DB when present, else on a generated dataset), warms
up, then times sequential uploads of one 3-second clip. Beside it: Bundle.predict of the same
clip bytes in this process, with the same bundle fetched (signature-verified) from the registry.

Also the home of :class:`Stack`, which bench/service_throughput.py and bench/train_api.py use.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import signal
import statistics
import tempfile
import time
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import requests
import soundfile as sf
from common import dump, print_table

from ser.config import emodb_dir
from tests import audiogen
from tests.harness import EmbeddedStack, stack_env

CLIP_SECONDS = 3.0
warnings.filterwarnings("ignore", category=FutureWarning)


# -- the embedded stack -----------------------------------------------------------------------


def blas_env(threads: int) -> dict:
    """Environment capping OpenBLAS/OpenMP pools at ``threads`` per process (0: no cap)."""
    if not threads:
        return {}
    return {k: str(threads) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}


def add_blas_threads_arg(ap: argparse.ArgumentParser) -> None:
    """The --blas-threads option every service benchmark takes (read with blas_env)."""
    ap.add_argument(
        "--blas-threads",
        type=int,
        default=0,
        help="start the stack with OPENBLAS/OMP_NUM_THREADS=N (default: as shipped, no cap)",
    )


def _terminate_on_sigterm() -> None:
    """SIGTERM to the bench behaves like Ctrl-C, so the finally blocks stop the stack."""

    def handler(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


class Stack(EmbeddedStack):
    """`ser up` (tests/harness.py) in a temp dir: bundled Redis, train x1 + predict xN, gunicorn.

    ``with Stack(concurrency=1) as st:`` starts it and waits for /health; leaving the block
    (also on an exception or Ctrl-C) stops it and removes the temp dir.
    """

    def __init__(self, concurrency: int = 1, env: dict | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="ser-bench-"))
        self.data = self.tmp / "data"
        self.data.mkdir()
        # as shipped (no test defaults), but job records kept for the whole run
        stack = stack_env(None, self.data, self.tmp / "state", {"SER_JOB_TTL": "3600"})
        super().__init__({**stack, **(env or {})}, self.tmp, concurrency)

    def stop(self, timeout: float = 60) -> int | None:
        code = super().stop(timeout)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return code

    def session(self) -> requests.Session:
        return requests.Session()

    def wait_job(self, session: requests.Session, job_id: str, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            body = session.get(f"{self.base}/jobs/{job_id}?wait=30", timeout=60).json()
            if body["JOB_STATUS"] not in ("QUEUED", "RUNNING"):
                return body
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {body['JOB_STATUS']} after {timeout}s")

    def train(self, dataset: str, **extra) -> tuple[dict, float]:
        """POST /train and wait: (final job body, seconds from POST to the terminal state)."""
        with self.session() as s:
            t0 = time.perf_counter()
            resp = s.post(f"{self.base}/train", json={"dataset": dataset, **extra}, timeout=60)
            if resp.status_code != 202:
                raise RuntimeError(f"POST /train: {resp.status_code} {resp.text[:300]}")
            body = self.wait_job(s, resp.json()["JOB_ID"])
            return body, time.perf_counter() - t0

    def bundle(self):
        """The current bundle, fetched from the registry and signature-verified."""
        from ser.ml.bundle import Bundle
        from ser.service.registry import Registry

        key = (self.state / "secret_key").read_text().strip().encode()
        reg = Registry(self.redis(), "ser:")
        return reg.current(), reg.load(reg.current(), key, Bundle.from_bytes)


def copy_emodb(dst: Path) -> Path | None:
    """EMO-DB's wav files copied under ``dst`` (a temp data root), or None when absent.

    A symlink would be simpler, but ser.paths.confine refuses a dataset whose resolved path
    leaves the data root (the README's "escaping symlinks"), so the bench copies (~40 MB).
    """
    src = emodb_dir()
    if src is None:
        return None
    dst.mkdir(parents=True, exist_ok=True)
    for wav in sorted(src.glob("*.wav")):
        shutil.copyfile(wav, dst / wav.name)
    return dst


def prepare_model(stack: Stack, quick: bool) -> dict:
    """Train the stack's first model: on EMO-DB when present, else on a generated dataset."""
    if copy_emodb(stack.data / "emodb") is not None:
        dataset = "emodb"
    else:
        n = 8 if quick else 24
        audiogen.make_dataset(stack.data / "gen", "labels_csv", n_per_class=n, seconds=1.5)
        dataset = "gen"
    body, seconds = stack.train(dataset)
    if body["JOB_STATUS"] != "SUCCEEDED":
        raise RuntimeError(f"training failed: {body}")
    return {"dataset": dataset, "train_seconds": round(seconds, 2), "model": body["MODEL_VERSION"]}


def make_clip(dst: Path) -> tuple[bytes, str]:
    """A 3.0-second 16 kHz PCM-16 WAV: the EMO-DB file closest to 3 s (cut), else generated."""
    src = emodb_dir()
    if src is not None:
        wavs = sorted(src.glob("*.wav"))
        best = min(wavs, key=lambda p: (abs(sf.info(str(p)).duration - CLIP_SECONDS), p.name))
        y, sr = sf.read(str(best), dtype="float32")
        y = y[: int(CLIP_SECONDS * sr)]
        if len(y) < int(CLIP_SECONDS * sr):
            y = np.pad(y, (0, int(CLIP_SECONDS * sr) - len(y)))
        origin = f"EMO-DB {best.name}, first {CLIP_SECONDS:g} s"
    else:
        sr = 16000
        y = audiogen.voice_like("excited", CLIP_SECONDS, sr=sr, seed=7)
        origin = f"generated voice_like, {CLIP_SECONDS:g} s"
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    data = buf.getvalue()
    dst.write_bytes(data)
    return data, origin


# -- measurements -----------------------------------------------------------------------------
def percentiles(values_s: list[float]) -> dict:
    """p50/p90/p99/max/mean in milliseconds."""
    ms = np.asarray(values_s) * 1000.0
    return {
        "n": int(ms.size),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "mean_ms": round(float(ms.mean()), 2),
    }


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def upload(
    session: requests.Session, base: str, clip: bytes, wait: float = 10, raw: bool = False
) -> dict:
    """POST /predict?wait of the clip: multipart (file=@clip.wav), or ``raw`` as the body."""
    if raw:
        resp = session.post(
            f"{base}/predict?wait={wait:g}&name=clip.wav",
            data=clip,
            headers={"Content-Type": "audio/wav"},
            timeout=wait + 30,
        )
    else:
        resp = session.post(
            f"{base}/predict?wait={wait:g}",
            files={"file": ("clip.wav", clip, "audio/wav")},
            timeout=wait + 30,
        )
    body = resp.json()
    if resp.status_code != 200 or body.get("JOB_STATUS") != "SUCCEEDED":
        raise RuntimeError(f"prediction: HTTP {resp.status_code} {str(body)[:300]}")
    return body


def timed_predict(bundle, clip: bytes, out: list[float], blas_threads: int = 0) -> None:
    """One Bundle.predict of the clip bytes (what a worker runs), its seconds appended."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(blas_threads or None):
        t0 = time.perf_counter()
        bundle.predict(clip)
        out.append(time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short dry run (50 requests)")
    ap.add_argument("--requests", type=int, default=0, help="timed requests (default 500)")
    add_blas_threads_arg(ap)
    args = ap.parse_args()
    n_req = args.requests or (50 if args.quick else 500)
    n_warm = 10 if args.quick else 30
    _terminate_on_sigterm()
    load_before = os.getloadavg()

    with Stack(concurrency=1, env=blas_env(args.blas_threads)) as stack:
        setup = prepare_model(stack, args.quick)
        clip, origin = make_clip(stack.tmp / "clip.wav")
        version, bundle = stack.bundle()
        local, local1, scratch = [], [], []
        for _ in range(5):  # librosa/numba first-call costs, as a worker pays at start-up
            timed_predict(bundle, clip, scratch)
            timed_predict(bundle, clip, scratch, 1)
        with stack.session() as s:
            for _ in range(n_warm):
                upload(s, stack.base, clip)
            lat, queued, ran = [], [], []
            for _ in range(n_req):
                # Interleaved, so both sides see the same machine load; sequential, so the
                # in-process calls never overlap the worker's.
                timed_predict(bundle, clip, local)
                timed_predict(bundle, clip, local1, 1)
                t0 = time.perf_counter()
                body = upload(s, stack.base, clip)
                lat.append(time.perf_counter() - t0)
                c, st, f = (_ts(body.get(k)) for k in ("CREATED_AT", "STARTED_AT", "FINISHED_AT"))
                if c and st and f:
                    queued.append(st - c)
                    ran.append(f - st)
            emotion = body["EMOTION"]

    svc, loc, loc1 = percentiles(lat), percentiles(local), percentiles(local1)
    rows = [
        {"what": f"service: POST /predict?wait=10 (upload, {version})", **svc},
        {"what": "in-process: Bundle.predict(clip bytes), default BLAS threads", **loc},
        {"what": "in-process: Bundle.predict(clip bytes), 1 BLAS/OpenMP thread", **loc1},
    ]
    breakdown = [
        {"what": "job record: created -> started (API + queue + dispatch)", **percentiles(queued)},
        {"what": "job record: started -> finished (worker task)", **percentiles(ran)},
    ]
    cols = ["what", "n", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms"]
    print(
        f"clip: {origin} ({len(clip)} bytes); model {version} trained on {setup['dataset']} "
        f"in {setup['train_seconds']} s; stack: ser up --concurrency 1"
        f"{f' with OPENBLAS/OMP_NUM_THREADS={args.blas_threads}' if args.blas_threads else ''}; "
        f"{n_warm} warm-up requests; predicted {emotion}"
    )
    print_table(rows, cols)
    print()
    print_table(breakdown, cols)
    print()
    verdict = {
        "p50 <= 40 ms": svc["p50_ms"] <= 40,
        "p99 <= 120 ms": svc["p99_ms"] <= 120,
    }
    print(
        "targets: "
        + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in verdict.items())
        + f"; service p50 / in-process p50 (default threads) = {svc['p50_ms'] / loc['p50_ms']:.2f}x"
        + f" (+{svc['p50_ms'] - loc['p50_ms']:.1f} ms)"
    )
    dump(
        "service_latency"
        + (f"_blas{args.blas_threads}" if args.blas_threads else "")
        + ("_quick" if args.quick else ""),
        {
            "quick": args.quick,
            "blas_threads": args.blas_threads,
            "clip": origin,
            "cores": len(os.sched_getaffinity(0)),
            "loadavg_before": load_before,
            "setup": setup,
            "service": svc,
            "in_process": loc,
            "in_process_one_thread": loc1,
            "breakdown": breakdown,
            "targets_met": verdict,
            "median_overhead_ms": round(statistics.median(lat) * 1000 - loc["p50_ms"], 2),
        },
    )


if __name__ == "__main__":
    main()
