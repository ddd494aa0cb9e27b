"""The first prediction after start-up against a warm one: after `ser up` says ready, and (the
baseline, same run) as soon as /health answers, before the pool processes have warmed up.

Each round restarts `ser up` on a state folder holding a trained model (Redis's AOF keeps it),
then times 10 sequential uploads of a 3 s clip (POST /predict?wait=30): the first against the
tenth (one request each: the issue's "first vs tenth"; the medians over rounds are compared,
as one request's time is skewed by the machine's noise alike for both), against the median of
the 2nd-10th, and against the same warm stack's request after a pause of 1 s (median of 3).

Two series after ready: back-to-back (each upload right after the previous answer), and paced
(each of the ten, the first included, after a pause of 1 s). A request that follows a pause
meets cold CPU caches in every process it crosses, start-up or not, which a back-to-back
request does not: the first of a back-to-back series pays that and the tenth does not, while
in the paced series the first and the tenth meet the same conditions, and differ by what
start-up leaves to the first only. Generated audio only (no corpus needed); default features.

    python bench/first_prediction.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import dump, print_table

from tests import audiogen
from tests.harness import Api, EmbeddedStack, stack_env, upload, wait_until

N = 10
IDLE_SECONDS = 1.0
IDLE_ROUNDS = 3


def times(api: Api, clip: Path, n: int = N, pause: float = 0.0) -> list[float]:
    out = []
    for _ in range(n):
        time.sleep(pause)
        t0 = time.perf_counter()
        resp = upload(api, clip, wait=30)
        out.append(time.perf_counter() - t0)
        if resp.status_code != 200:
            raise RuntimeError(f"POST /predict: {resp.status_code} {resp.text[:200]}")
    return out


def round_of(env: dict, logs: Path, clip: Path, wait_ready: bool, pause: float = 0.0) -> dict:
    stack = EmbeddedStack(env, logs, concurrency=1).start(timeout=180)  # /health: 200
    try:
        t0 = time.perf_counter()
        if wait_ready:
            wait_until(lambda: "ser: ready" in stack.log.read_text(), 180, "ser up to be ready")
        waited = time.perf_counter() - t0
        api = Api(stack.base)
        # A client that waits for readiness asks /ready on its own connection, as here: the
        # first prediction is then not also the client's first TCP connection.
        assert api.get("/ready", timeout=10).status_code == 200 or not wait_ready
        t = times(api, clip, pause=pause)
        # the same warm processes after a pause (caches gone cold, not start-up)
        idle = [times(api, clip, 1, pause=IDLE_SECONDS)[0] for _ in range(IDLE_ROUNDS)]
    finally:
        stack.stop()
    rest = statistics.median(t[1:])
    after_idle = statistics.median(idle)
    return {
        "after": "ready" if wait_ready else "health",
        "series": f"paced {pause:g} s" if pause else "back-to-back",
        "waited_s": round(waited, 3),
        "first_ms": round(t[0] * 1000, 1),
        "tenth_ms": round(t[-1] * 1000, 1),
        "warm_median_ms": round(rest * 1000, 1),
        "warm_after_idle_ms": round(after_idle * 1000, 1),
        "first_over_tenth": round(t[0] / t[-1], 2),
        "first_over_warm": round(t[0] / rest, 2),
        "first_over_idle": round(t[0] / after_idle, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ser-first-") as tmp:
        root = Path(tmp)
        data = root / "data"
        audiogen.make_dataset(data / "ds", "folders", n_per_class=10, seconds=1.5)
        clip = audiogen.write(data / "clip.wav", audiogen.voice_like("calm", 3.0, seed=7))
        env = stack_env(None, data, root / "state", SER_SKIP_WARMUP="false")
        with EmbeddedStack(env, root / "logs", concurrency=1) as stack:
            wait_until(lambda: "ser: ready" in stack.log.read_text(), 180, "ready")
            Api(stack.base).train("ds", timeout=300)
        rows = []
        for _ in range(args.rounds):  # alternate, so drift on the machine hits all alike
            rows.append(round_of(env, root / "logs", clip, wait_ready=False))
            rows.append(round_of(env, root / "logs", clip, wait_ready=True))
            rows.append(round_of(env, root / "logs", clip, wait_ready=True, pause=IDLE_SECONDS))
    cols = ["after", "series", "waited_s", "first_ms", "tenth_ms", "warm_median_ms"]
    cols += ["warm_after_idle_ms", "first_over_tenth", "first_over_warm", "first_over_idle"]
    print_table(rows, cols)
    for kind, series in dict.fromkeys((r["after"], r["series"]) for r in rows):
        mine = [r for r in rows if r["after"] == kind and r["series"] == series]
        first = statistics.median(r["first_ms"] for r in mine)
        tenth = statistics.median(r["tenth_ms"] for r in mine)
        what = f"predicting after {kind}, {series}"
        print(
            f"{what}: first {first} ms, tenth {tenth} ms (medians over rounds): first / tenth "
            f"{first / tenth:.2f}"
        )
        for base in ("tenth", "warm", "idle"):
            ratio = statistics.median(r[f"first_over_{base}"] for r in mine)
            print(f"  first / {base} (median of the rounds' ratios): {ratio:.2f}")
    dump("first_prediction", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
