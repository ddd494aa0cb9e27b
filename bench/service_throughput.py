"""Prediction throughput of the embedded stack from 16 concurrent clients vs in-process.

    python bench/service_throughput.py            # 1600 uploads (16 clients x 100)
    python bench/service_throughput.py --quick    # a short dry run (16 x 10)

`ser up --concurrency <cores>` in a temp dir (see service_latency.Stack), a model trained
through the API (EMO-DB copy when present, else generated), one 3-second clip. Service:
16 threads, one keep-alive connection each (http.client: see LeanClient), POST
/predict?wait=10 by upload until the count is reached (or the time cap passes), twice: the
clip as the request body (audio/wav, what `ser predict` sends) and as a multipart form
(file=@clip.wav). In-process, in the same run
and on the same cores: a pool of <cores> processes, each calling Bundle.predict on the clip
bytes in a loop, all started together behind a barrier after warm-up, before the service runs
and again after them (the best of these is the reference). Also the CPU seconds each part of
the stack used, and the machine's busy and idle time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import threading
import time
import uuid
import warnings
from concurrent.futures import ProcessPoolExecutor
from unittest.mock import patch
from urllib.parse import urlsplit

from common import dump, print_table
from service_latency import (
    Stack,
    _terminate_on_sigterm,
    add_blas_threads_arg,
    blas_env,
    make_clip,
    percentiles,
    prepare_model,
    upload,
)

warnings.filterwarnings("ignore", category=FutureWarning)
CLIENTS = 16
TICK = os.sysconf("SC_CLK_TCK")

# -- in-process pool --------------------------------------------------------------------------
_bundle = None
_clip = b""
_barrier = None


def _init(bundle_bytes: bytes, clip: bytes, barrier) -> None:
    global _bundle, _clip, _barrier
    warnings.filterwarnings("ignore", category=FutureWarning)
    from ser.ml.bundle import Bundle

    _bundle, _clip, _barrier = Bundle.from_bytes(bundle_bytes), clip, barrier
    for _ in range(5):  # librosa/numba first-call costs, as a worker pays at start-up
        _bundle.predict(_clip)


def _loop(n: int) -> tuple[float, float, int]:
    _barrier.wait()  # every process starts together (and each takes exactly one loop)
    t0 = time.monotonic()
    for _ in range(n):
        _bundle.predict(_clip)
    return t0, time.monotonic(), n


def in_process_throughput(
    bundle_bytes: bytes, clip: bytes, procs: int, per_proc: int, env: dict
) -> dict:
    """Predictions/s of ``procs`` fresh processes (spawned with ``env`` added) in a loop."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(procs)
    # read by OpenBLAS/OpenMP when the spawned children import numpy
    with (
        patch.dict(os.environ, env),
        ProcessPoolExecutor(
            procs, mp_context=ctx, initializer=_init, initargs=(bundle_bytes, clip, barrier)
        ) as pool,
    ):
        parts = list(pool.map(_loop, [per_proc] * procs))
    wall = max(p[1] for p in parts) - min(p[0] for p in parts)
    n = sum(p[2] for p in parts)
    return {"n": n, "seconds": round(wall, 3), "per_s": round(n / wall, 2)}


# -- CPU accounting of the stack --------------------------------------------------------------
def machine_cpu() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine so far (/proc/stat): what the processes
    of the stack account for, plus kernel threads (disk writeback) and anything else."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICK, idle / TICK


def _role(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().decode(errors="replace").split("\0")
    except OSError:
        return None
    line = " ".join(argv)
    if "redis-server" in line:
        return "redis-server"
    if "gunicorn" in line:
        return "API (gunicorn)"
    if "celery" in line:
        return "worker " + ("train" if "ser.train" in line.split("--queues")[-1] else "predict")
    if "ser.cli" in line:
        return "ser up"
    return None


def cpu_by_role(pids) -> dict[str, float]:
    """User+system CPU seconds so far of each live process of the stack, summed by role."""
    out: dict[str, float] = {}
    for pid in pids:
        role = _role(pid)
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if role:
            out[role] = out.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return out


# -- service ----------------------------------------------------------------------------------
class LeanClient:
    """A client as light as the standard library allows (http.client, one keep-alive
    connection): the 16 clients share the cores with the service they measure, and requests
    spent 1.2 ms of CPU per call, a tenth of the machine. Sends POST /predict?wait=10 with the
    clip as the body (``raw``) or as a multipart form with a fresh boundary per request (as
    requests and curl do)."""

    def __init__(self, base: str, clip: bytes, raw: bool) -> None:
        url = urlsplit(base)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        self.clip, self.raw = clip, raw

    def predict(self) -> dict:
        if self.raw:
            path, body, ctype = "/predict?wait=10&name=clip.wav", self.clip, "audio/wav"
        else:
            boundary = uuid.uuid4().hex
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="clip.wav"\r\nContent-Type: audio/wav\r\n\r\n'
            )
            body = head.encode() + self.clip + f"\r\n--{boundary}--\r\n".encode()
            path, ctype = "/predict?wait=10", f"multipart/form-data; boundary={boundary}"
        self.conn.request("POST", path, body=body, headers={"Content-Type": ctype})
        resp = self.conn.getresponse()
        data = resp.read()
        out = json.loads(data)
        if resp.status != 200 or out.get("JOB_STATUS") != "SUCCEEDED":
            raise RuntimeError(f"prediction: HTTP {resp.status} {data[:300]!r}")
        return out

    def close(self) -> None:
        self.conn.close()


def ready(stack: Stack, quick: bool, warm: int) -> tuple[dict, bytes, str]:
    """Train the stack's first model, make the clip and send it ``warm`` times, untimed:
    (training setup, clip bytes, where the clip came from)."""
    setup = prepare_model(stack, quick)
    clip, origin = make_clip(stack.tmp / "clip.wav")
    with stack.session() as s:
        for _ in range(warm):
            upload(s, stack.base, clip)
    return setup, clip, origin


def service_throughput(stack: Stack, clip: bytes, total: int, cap: float, raw: bool) -> dict:
    lock = threading.Lock()
    issued = [0]
    lat: list[float] = []
    errors: list[str] = []
    start = threading.Barrier(CLIENTS + 1)
    deadline = [0.0]

    def client() -> None:
        c = LeanClient(stack.base, clip, raw)
        try:
            c.predict()  # connection + one warm request, untimed
        except Exception as exc:  # noqa: BLE001 - counted, reported
            errors.append(repr(exc)[:200])
        start.wait()
        while True:
            with lock:
                if issued[0] >= total or time.monotonic() > deadline[0]:
                    break
                issued[0] += 1
            t0 = time.perf_counter()
            try:
                c.predict()
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc)[:200])
                c.close()  # reconnects on the next request
                continue
            with lock:
                lat.append(time.perf_counter() - t0)
        c.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    deadline[0] = time.monotonic() + cap + 120  # provisional until the barrier opens
    start.wait()
    pids = stack.pids()
    cpu0, self0, machine0 = cpu_by_role(pids), os.times(), machine_cpu()
    t0 = time.monotonic()
    deadline[0] = t0 + cap
    for t in threads:
        t.join(cap + 60)
    wall = time.monotonic() - t0
    cpu1, self1, machine1 = cpu_by_role(pids), os.times(), machine_cpu()
    cpu = {k: round(cpu1.get(k, 0.0) - cpu0.get(k, 0.0), 2) for k in sorted(cpu1)}
    cpu["bench clients (16 threads)"] = round(
        (self1.user - self0.user) + (self1.system - self0.system), 2
    )
    busy = machine1[0] - machine0[0]
    return {
        "machine_busy_seconds": round(busy, 2),
        "machine_idle_seconds": round(machine1[1] - machine0[1], 2),
        "n": len(lat),
        "errors": len(errors),
        "first_errors": errors[:3],
        "seconds": round(wall, 3),
        "per_s": round(len(lat) / wall, 2),
        "latency": percentiles(lat) if lat else {},
        "cpu_seconds": cpu,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short dry run")
    ap.add_argument("--requests", type=int, default=0, help="service requests (default 1600)")
    ap.add_argument("--cap", type=float, default=0, help="time cap of the service run (s)")
    add_blas_threads_arg(ap)
    args = ap.parse_args()
    total = args.requests or (CLIENTS * 10 if args.quick else CLIENTS * 100)
    cap = args.cap or (60 if args.quick else 300)
    cores = len(os.sched_getaffinity(0))
    per_proc = 60 if args.quick else 600
    _terminate_on_sigterm()
    load_before = os.getloadavg()

    with Stack(concurrency=cores, env=blas_env(args.blas_threads)) as stack:
        setup, clip, origin = ready(stack, args.quick, warm=4 * cores)
        version, bundle = stack.bundle()
        data = bundle.to_bytes()
        local_default = in_process_throughput(data, clip, cores, per_proc, {})
        local_one = in_process_throughput(data, clip, cores, per_proc, blas_env(1))
        services = {
            mode: service_throughput(stack, clip, total, cap, raw=(mode == "raw"))
            for mode in ("raw", "multipart")
        }
        # Again after the service runs: this machine's speed drifts by 10-20 % over minutes.
        local_after = in_process_throughput(data, clip, cores, per_proc, blas_env(1))

    # The reference is the best in-process figure (the strictest ratio).
    local = max(local_default, local_one, local_after, key=lambda r: r["per_s"])
    ratios = {mode: svc["per_s"] / local["per_s"] for mode, svc in services.items()}
    stack_desc = f"predict x{cores}" + (
        f", OPENBLAS/OMP_NUM_THREADS={args.blas_threads}" if args.blas_threads else ""
    )
    how = {"raw": "clip as the body (audio/wav)", "multipart": "multipart file=@clip.wav"}
    rows = [
        {
            "what": f"service: {CLIENTS} clients, {how[mode]}, ?wait=10, {stack_desc}",
            "requests": svc["n"],
            "errors": svc["errors"],
            "seconds": svc["seconds"],
            "jobs_per_s": svc["per_s"],
            "p50_ms": svc["latency"].get("p50_ms", "-"),
            "p99_ms": svc["latency"].get("p99_ms", "-"),
        }
        for mode, svc in services.items()
    ]
    for label, res in (
        ("default BLAS threads", local_default),
        ("OPENBLAS/OMP_NUM_THREADS=1", local_one),
        ("OPENBLAS/OMP_NUM_THREADS=1, after the service runs", local_after),
    ):
        rows.append(
            {
                "what": f"in-process: {cores} processes x Bundle.predict loop, {label}",
                "requests": res["n"],
                "errors": 0,
                "seconds": res["seconds"],
                "jobs_per_s": res["per_s"],
                "p50_ms": "-",
                "p99_ms": "-",
            }
        )
    print(
        f"clip: {origin}; model {version} trained on {setup['dataset']}; {cores} cores; "
        f"load average before {load_before[0]:.2f}"
    )
    print_table(rows, ["what", "requests", "errors", "seconds", "jobs_per_s", "p50_ms", "p99_ms"])
    for mode, svc in services.items():
        print(f"\nCPU seconds during the service run, {how[mode]}:")
        cpu = svc["cpu_seconds"]
        busy = sum(cpu.values())
        print_table(
            [
                {
                    "part": k,
                    "cpu_seconds": v,
                    "ms_per_job": round(1000 * v / svc["n"], 2) if svc["n"] else "-",
                    "share": f"{100 * v / busy:.0f} %" if busy else "-",
                }
                for k, v in cpu.items()
            ],
            ["part", "cpu_seconds", "ms_per_job", "share"],
        )
        print(
            f"({busy:.1f} CPU s over {svc['seconds']:.1f} s wall on {cores} cores; the whole "
            f"machine: {svc['machine_busy_seconds']:.1f} s busy, "
            f"{svc['machine_idle_seconds']:.1f} s idle)"
        )
    print()
    for mode, ratio in ratios.items():
        print(
            f"service ({how[mode]}) / best in-process = {100 * ratio:.0f} % "
            f"(target >= 50 %: {'met' if ratio >= 0.5 else 'MISSED'})"
        )
    dump(
        "service_throughput"
        + (f"_blas{args.blas_threads}" if args.blas_threads else "")
        + ("_quick" if args.quick else ""),
        {
            "quick": args.quick,
            "clip": origin,
            "cores": cores,
            "clients": CLIENTS,
            "loadavg_before": load_before,
            "setup": setup,
            "service_raw": services["raw"],
            "service_multipart": services["multipart"],
            "blas_threads": args.blas_threads,
            "in_process_default_threads": local_default,
            "in_process_one_thread": local_one,
            "in_process_one_thread_after": local_after,
            "in_process_reference": local,
            "ratio_raw": round(ratios["raw"], 3),
            "ratio_multipart": round(ratios["multipart"], 3),
            "target_met": ratios["raw"] >= 0.5,
        },
    )


if __name__ == "__main__":
    main()
