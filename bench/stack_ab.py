"""A/B of stack configurations: prediction throughput of each, in alternating rounds.

The machine's speed drifts by 10-30 % within minutes, so two configurations measured one
after the other compare the machine as much as the configurations. Here every round starts
each configuration's own `ser up` (in a random order), trains a small model, warms it and
runs the 16-client raw-body load of bench/service_throughput.py for --seconds; the means over
the rounds are compared.

    python bench/stack_ab.py --concurrency 2 3            # predict pool processes
    python bench/stack_ab.py --env A: --env B:SER_X=1     # environment settings
"""

from __future__ import annotations

import argparse
import random
import statistics

from common import dump
from service_latency import Stack
from service_throughput import ready, service_throughput


def parse_configs(args) -> dict[str, tuple[int, dict]]:
    """{name: (concurrency, env)} from --concurrency and --env (NAME:K=V,K=V)."""
    configs: dict[str, tuple[int, dict]] = {}
    for c in args.concurrency or []:
        configs[f"concurrency {c}"] = (c, {})
    for spec in args.env or []:
        name, _, pairs = spec.partition(":")
        env = dict(p.split("=", 1) for p in pairs.split(",") if p)
        configs[name] = (2, env)
    if len(configs) < 2:
        raise SystemExit("give at least two configurations (--concurrency and/or --env)")
    return configs


def run_one(concurrency: int, env: dict, seconds: float) -> dict:
    with Stack(concurrency=concurrency, env=env) as stack:
        _, clip, _ = ready(stack, quick=True, warm=10)
        return service_throughput(stack, clip, 10**6, seconds, raw=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--concurrency", type=int, nargs="*", help="predict pool processes to compare")
    ap.add_argument("--env", action="append", help="NAME:K=V,K=V (the stack's environment)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20, help="load per configuration and round")
    args = ap.parse_args()
    configs = parse_configs(args)
    results: dict[str, list[dict]] = {name: [] for name in configs}
    for r in range(args.rounds):
        order = list(configs)
        random.shuffle(order)
        for name in order:
            concurrency, env = configs[name]
            out = run_one(concurrency, env, args.seconds)
            results[name].append(out)
            per_job = {
                k.split(" (")[0]: round(v / out["n"] * 1000, 2)
                for k, v in out["cpu_seconds"].items()
                if v
            }
            print(
                f"round {r + 1} {name}: {out['per_s']:.1f} jobs/s, machine idle "
                f"{out['machine_idle_seconds']:.1f} s, CPU ms per job {per_job}",
                flush=True,
            )
    print("\n| configuration | jobs/s per round | mean |\n|---|---|---|")
    for name, runs in results.items():
        rates = [run["per_s"] for run in runs]
        per_round = " / ".join(f"{x:.1f}" for x in rates)
        print(f"| {name} | {per_round} | {statistics.mean(rates):.1f} |")
    dump("stack_ab", results)


if __name__ == "__main__":
    main()
