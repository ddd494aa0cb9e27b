"""Worker processes run one BLAS/OpenMP thread each (the pool already has one per core)."""

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
