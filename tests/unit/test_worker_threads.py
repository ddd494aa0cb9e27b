"""Worker processes run one BLAS/OpenMP thread each (the pool already has one per core) and
keep their freed heap (glibc malloc thresholds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

CODE = """
import json, worker.app, numpy, sklearn.linear_model, threadpoolctl
print(json.dumps([i["num_threads"] for i in threadpoolctl.threadpool_info()]))
"""


def test_worker_caps_native_threads():
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    threads = json.loads(out.stdout.strip().splitlines()[-1])
    assert threads and all(n == 1 for n in threads)


MALLOC = """
import json, os, worker.app
print(json.dumps([worker.app.tune_malloc()]))
"""


def test_pool_processes_keep_their_freed_heap_unless_the_operator_set_malloc():
    """glibc: tune_malloc sets the thresholds (pool processes stop faulting their arrays' pages
    in again task after task); MALLOC_*_ variables of the operator's are left to win."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    run = [sys.executable, "-c", MALLOC]
    out = subprocess.run(run, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    if sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION"):
        assert json.loads(out.stdout.strip().splitlines()[-1]) == [True]
    env["MALLOC_TRIM_THRESHOLD_"] = str(1 << 20)
    out = subprocess.run(run, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False]
