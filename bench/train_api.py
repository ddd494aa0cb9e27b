"""EMO-DB training through the API, cold then warm feature cache: seconds from POST to SUCCEEDED.

    python bench/train_api.py            # cold, 3 warm (stratified), 1 warm (speaker)
    python bench/train_api.py --quick    # cold, 1 warm (stratified), 1 warm (speaker)

`ser up` in a temp dir (see service_latency.Stack). EMO-DB is copied into the temp data root:
ser.paths.confine refuses a dataset symlink whose target is outside the data root (checked
here, first row of the log). The feature cache is the service's (Redis), empty at start.
Skips with a message when EMO-DB is absent.
"""

from __future__ import annotations

import argparse
import os
import statistics
import warnings

from common import dump, print_table, timer
from service_latency import (
    Stack,
    _terminate_on_sigterm,
    _ts,
    add_blas_threads_arg,
    blas_env,
    copy_emodb,
)

from ser.config import emodb_dir

warnings.filterwarnings("ignore", category=FutureWarning)
TARGET_WARM_S = 10.0


def symlink_check(stack: Stack) -> dict:
    """Whether a dataset symlinked from the data root to EMO-DB outside it is accepted."""
    link = stack.data / "emodb_link"
    link.symlink_to(emodb_dir(), target_is_directory=True)
    with stack.session() as s:
        resp = s.post(f"{stack.base}/train", json={"dataset": "emodb_link"}, timeout=60)
        body = resp.json()
        if resp.status_code == 202:  # accepted after all: let it finish before going on
            stack.wait_job(s, body["JOB_ID"])
    link.unlink()
    return {"status": resp.status_code, "error": (body.get("ERROR") or {}).get("CODE")}


def run(stack: Stack, label: str, protocol: str) -> dict:
    body, seconds = stack.train("emodb", protocol=protocol)
    if body["JOB_STATUS"] != "SUCCEEDED":
        raise RuntimeError(f"{label}: {body}")
    with stack.session() as s:
        meta = s.get(f"{stack.base}/models/{body['MODEL_VERSION']}", timeout=30).json()
    m = meta.get("METRICS") or {}
    c, st, f = (_ts(body.get(k)) for k in ("CREATED_AT", "STARTED_AT", "FINISHED_AT"))
    task = (f - st) if st and f else None
    inner = sum(m.get(k) or 0.0 for k in ("featurize_seconds", "fit_seconds", "final_fit_seconds"))
    return {
        "run": label,
        "protocol": protocol,
        "end_to_end_s": round(seconds, 2),
        "queued_s": round(st - c, 3) if c and st else "-",
        "task_s": round(task, 2) if task is not None else "-",
        "featurize_s": m.get("featurize_seconds", "-"),
        "cv_s": m.get("fit_seconds", "-"),
        "final_fit_s": m.get("final_fit_seconds", "-"),
        "other_s": round(task - inner, 2) if task is not None else "-",
        "f1_macro": round(body["F1_MACRO_MEAN"], 3),
        "n": body.get("N_SAMPLES"),
        "model": body["MODEL_VERSION"],
    }


COLUMNS = [
    "run",
    "protocol",
    "end_to_end_s",
    "queued_s",
    "task_s",
    "featurize_s",
    "cv_s",
    "final_fit_s",
    "other_s",
    "f1_macro",
    "n",
    "model",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short dry run (one warm run)")
    ap.add_argument("--warm", type=int, default=0, help="warm stratified runs (default 3)")
    add_blas_threads_arg(ap)
    args = ap.parse_args()
    name = "train_api" + (f"_blas{args.blas_threads}" if args.blas_threads else "")
    name += "_quick" if args.quick else ""
    if emodb_dir() is None:
        msg = "EMO-DB not found (set SER_EMODB_DIR or place it at ../shared/data/emodb): skipped"
        print(msg)
        dump(name, {"skipped": msg})
        return
    warm = args.warm or (1 if args.quick else 3)
    cores = len(os.sched_getaffinity(0))
    _terminate_on_sigterm()
    load_before = os.getloadavg()
    t: dict[str, float] = {}

    with Stack(concurrency=cores, env=blas_env(args.blas_threads)) as stack:
        link = symlink_check(stack)
        with timer(t, "copy"):
            copy_emodb(stack.data / "emodb")
        rows = [run(stack, "cold cache", "stratified")]
        rows += [run(stack, f"warm {i + 1}", "stratified") for i in range(warm)]
        rows.append(run(stack, "warm", "speaker"))

    warm_e2e = [r["end_to_end_s"] for r in rows if r["run"].startswith("warm ")]
    median_warm = statistics.median(warm_e2e)
    print(
        f"EMO-DB through POST /train, ser up --concurrency {cores}"
        f"{f' (OPENBLAS/OMP_NUM_THREADS={args.blas_threads})' if args.blas_threads else ''}; "
        f"load average before {load_before[0]:.2f}; "
        f"dataset symlinked outside the data root: HTTP {link['status']} {link['error'] or ''}; "
        f"copied into the temp data root in {t['copy']:.1f} s"
    )
    print_table(rows, COLUMNS)
    print()
    print(
        f"warm stratified end to end: median {median_warm:.2f} s over {len(warm_e2e)} "
        f"(target <= {TARGET_WARM_S:g} s: {'met' if median_warm <= TARGET_WARM_S else 'MISSED'}); "
        f"cold {rows[0]['end_to_end_s']:.2f} s"
    )
    dump(
        name,
        {
            "quick": args.quick,
            "cores": cores,
            "blas_threads": args.blas_threads,
            "loadavg_before": load_before,
            "symlink_dataset": link,
            "copy_seconds": t["copy"],
            "rows": rows,
            "median_warm_stratified_s": median_warm,
            "target_met": median_warm <= TARGET_WARM_S,
        },
    )


if __name__ == "__main__":
    main()
