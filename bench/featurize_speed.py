"""Featurization speed on EMO-DB: cold default (parallel and serial), seed serial, cache, CV.

    python bench/featurize_speed.py

Ratios are against the seed spec's serial extraction measured in the same run.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path

import soundfile as sf
from common import corpus, dump, print_table, timer

from ser import model
from ser.datasets import load_dataset
from ser.features import get_spec
from ser.features.batch import featurize, warm_pool
from ser.features.cache import DiskCache

warnings.filterwarnings("ignore", category=FutureWarning)


def main() -> None:
    ds = load_dataset(corpus())
    paths = list(ds.paths)
    audio_seconds = sum(sf.info(str(p)).duration for p in paths)
    cores = len(os.sched_getaffinity(0))
    t: dict[str, float] = {}
    model.warm_up("default")
    model.warm_up("seed")
    with timer(t, "seed serial"):
        featurize(paths, "seed", n_jobs=1)
    with timer(t, "default serial"):
        featurize(paths, "default", n_jobs=1)
    with timer(t, f"default, {cores} processes incl. pool start"):
        featurize(paths, "default", n_jobs=cores)
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)  # the next row starts a fresh pool
    with timer(t, f"pool start + warm-up, {cores} processes"):
        warm_pool(cores, "default")
    with tempfile.TemporaryDirectory() as tmp:
        cache = DiskCache(Path(tmp))
        with timer(t, f"default cold cache, {cores} warm processes"):
            featurize(paths, "default", n_jobs=cores, cache=cache)
        with timer(t, "default from cache"):
            featurize(paths, "default", n_jobs=cores, cache=cache)
        t0 = time.perf_counter()
        model.evaluate_dataset(ds, features="default", cache_dir=Path(tmp), n_jobs=cores)
        t["stratified evaluation, cached features"] = round(time.perf_counter() - t0, 3)
    seed = t["seed serial"]
    rows = []
    for name, sec in t.items():
        procs = cores if "processes" in name else 1
        extracts = name.startswith(("seed", "default")) and "from cache" not in name
        rows.append(
            {
                "step": name,
                "seconds": sec,
                "x real time per core": round(audio_seconds / sec / procs) if extracts else "-",
                "speed-up vs seed serial": round(seed / sec, 2),
            }
        )
    print(
        f"{len(paths)} files, {audio_seconds:.0f} s of audio, {cores} cores, "
        f"default spec {get_spec('default').version}"
    )
    print_table(rows, ["step", "seconds", "x real time per core", "speed-up vs seed serial"])
    dump("featurize_speed", {"audio_seconds": audio_seconds, "cores": cores, "rows": rows})


if __name__ == "__main__":
    main()
