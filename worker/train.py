"""Training jobs: featurize the dataset (in chunks over the predict processes, through the
shared feature cache), evaluate, fit, publish to the registry and activate."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from ser import bulk
from ser.contract import TASK_FEATURIZE_CHUNK, TRAIN_REPEATS
from ser.datasets import Dataset, default_dataset, load_dataset, with_default_hint
from ser.errors import DatasetError
from ser.features import get_spec
from ser.features.batch import featurize
from ser.features.cache import CountingCache, content_hash
from ser.ml import report, training
from ser.paths import confine, relative
from ser.service import jobs
from ser.service.jobs import train_lock_name
from worker.context import (
    PROGRESS_EVERY,
    Context,
    JobCancelled,
    Send,
    fail,
    host,
    predict_processes,
)

log = logging.getLogger(__name__)

WAIT_POLL = 0.2  # seconds between looks at the featurization chunks a training waits for


def run_train(ctx: Context, job_id: str, params: dict, worker: str = "", send=None) -> dict:
    """Train on ``params["dataset"]`` (relative to the data root), publish, and activate
    unless ``params["activate"]`` is false.

    With ``send`` (publish a task by name), recordings missing from the feature cache are
    featurized in chunks by the predict processes first (below); without it, here.
    """
    settings = ctx.settings
    rec = ctx.jobs.start(job_id, settings.train_time_limit, worker=worker or host())
    if rec is None:
        return {"job_id": job_id, "ran": False}
    dataset = params.get("dataset") or settings.train_dataset
    named = not params.get("default_dataset")  # (false: the client named no dataset)
    protocol = params.get("protocol") or "stratified"
    features = params.get("features") or "default"
    adapt = params.get("adapt") or "auto"
    repeats = int(params.get("repeats") or TRAIN_REPEATS)
    activate = params.get("activate", True) is not False
    lock = params.get("lock") or train_lock_name(dataset, protocol, adapt, features)
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < PROGRESS_EVERY:
            return
        last[0] = now
        if ctx.jobs.progress(job_id, done, total) == jobs.CANCELLED:
            raise JobCancelled(job_id)

    try:
        root = confine(settings.data_dir, dataset, kind="dir")
        if not params.get("dataset"):  # (a message from an API that chose no dataset)
            root = default_dataset(root, name=relative(settings.data_dir, root))
        # Loaded once, named relative to the data root: no message shows the server's path.
        ds = load_dataset(root, name=relative(settings.data_dir, root))
        feats = {"cached": None, "computed": 0}
        if send is not None:
            feats = featurize_training_set(ctx, job_id, ds, features, send, progress)
        counter = CountingCache(ctx.feature_cache)  # what is still missing is decoded here
        bundle = training.train(
            ds,
            protocol=protocol,
            features=features,
            adapt=adapt,
            repeats=repeats,
            cache=counter,
            n_jobs=settings.n_jobs,
            progress=progress,
        )
        if (ctx.jobs.get(job_id) or {}).get("status") != jobs.RUNNING:
            raise JobCancelled(job_id)
        metrics = bundle.metrics

        def png(version: str) -> bytes:  # drawn once the version is known, for its title
            title = report.confusion_title(version, protocol, metrics.get("f1_macro_mean"))
            return report.confusion_png(metrics["confusion_matrix"], bundle.classes, title)

        every = metrics.get("protocols") or {}
        meta = {
            "created_at": bundle.created_at,
            "dataset": relative(settings.data_dir, root),
            "protocol": protocol,
            "adapt": adapt,
            "adapt_chosen": bundle.adapt,
            "repeats": metrics.get("repeats"),
            # Both protocols' F1 (the speaker protocol's where the dataset's speakers allow it)
            "f1_macro": {
                name: {"mean": m.get("f1_macro_mean"), "std": m.get("f1_macro_std")}
                for name, m in every.items()
            },
            "feature_spec": bundle.feature_spec,
            "classes": list(bundle.classes),
            "fingerprint": bundle.fingerprint,
            "metrics": metrics,
            "versions": bundle.versions,
            "job_id": job_id,
        }
        version = ctx.registry.publish(
            bundle.to_bytes(), meta, settings.require_secret_key(), png=png, activate=activate
        )
        speaker_f1 = {}
        if "speaker" in every:  # the dataset names enough speakers for that protocol
            speaker_f1 = {
                "SPEAKER_F1_MACRO_MEAN": every["speaker"]["f1_macro_mean"],
                "SPEAKER_F1_MACRO_STD": every["speaker"]["f1_macro_std"],
            }
        result = {
            "STATUS": "FITTED",
            "F1_MACRO_MEAN": metrics["f1_macro_mean"],
            "F1_MACRO_STD": metrics["f1_macro_std"],
            **speaker_f1,
            "UAR": metrics.get("uar"),
            "ACCURACY": metrics.get("accuracy"),
            "LOG_LOSS": metrics.get("log_loss"),
            "ECE": metrics.get("ece"),
            "N_SAMPLES": metrics.get("n_samples"),
            "CLASSES": list(bundle.classes),
            "PROTOCOL": protocol,
            "REPEATS": metrics.get("repeats"),
            "ADAPT": adapt,
            "ADAPT_CHOSEN": bundle.adapt,
            "CHANCE_F1": metrics.get("chance_f1"),
            "SPEAKER_BASELINE_F1": metrics.get("speaker_baseline_f1"),
            "SPEAKER_CONFOUNDED": metrics.get("speaker_confounded"),
            "DATASET": meta["dataset"],
            "FEATURE_SPEC": bundle.feature_spec,
            "FAILED_FILES": len(metrics.get("failed_files") or {}),
            # Recordings decoded for this training, and found in the shared feature cache.
            "FEATURES_COMPUTED": feats["computed"] + counter.misses,
            "FEATURES_CACHED": counter.hits if feats["cached"] is None else feats["cached"],
            "MODEL_VERSION": version,
            "ACTIVATED": activate,  # false: kept aside, `current` unchanged
            "CONFUSION_PNG": f"/models/{version}/confusion.png",
        }
        ctx.jobs.succeed(job_id, result)
        return {"job_id": job_id, "model_version": version}
    except JobCancelled:
        log.info("training job %s cancelled", job_id)
        return {"job_id": job_id, "cancelled": True}
    except DatasetError as exc:
        fail(ctx, job_id, exc if named else with_default_hint(exc))
        return {"job_id": job_id, "failed": True}
    except Exception as exc:  # SystemExit etc. pass: the job is redelivered, not failed
        fail(ctx, job_id, exc)
        return {"job_id": job_id, "failed": True}
    finally:
        ctx.jobs.release(lock, job_id)


# -- distributed featurization of a training set ----------------------------------------------
def _claim_key(ctx: Context, job_id: str, index: int) -> str:
    return f"{ctx.jobs.key(job_id)}:feat:claim:{index}"


def _done_key(ctx: Context, job_id: str) -> str:
    return f"{ctx.jobs.key(job_id)}:feat:done"


def _claim(ctx: Context, job_id: str, index: int, who: str) -> bool:
    # The claim lapses after the task time limit, so a chunk whose process died is taken
    # over by the training instead of being waited for forever.
    ttl = ctx.settings.predict_time_limit
    return bool(ctx.redis.set(_claim_key(ctx, job_id, index), who, nx=True, ex=ttl))


def _featurize_part(ctx: Context, job_id: str, index: int, files: list[str], spec: str) -> int:
    """Featurize files (relative to the data root) into the cache; returns how many decoded."""
    counter = CountingCache(ctx.feature_cache)
    root = Path(ctx.settings.data_dir)
    featurize(
        [root / f for f in files],
        spec,
        cache=counter,
        n_jobs=1,
        max_seconds=ctx.settings.max_audio_seconds,
    )
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.hset(_done_key(ctx, job_id), str(index), str(counter.misses))
    pipe.expire(_done_key(ctx, job_id), ctx.settings.job_ttl)
    pipe.execute()
    return counter.misses


def run_featurize_chunk(ctx: Context, job_id: str, params: dict, worker: str = "") -> dict:
    """Fill the feature cache for one chunk of a training set (unless already taken)."""
    index = int(params["index"])
    if ctx.jobs.status(job_id) != jobs.RUNNING:
        return {"job_id": job_id, "skipped": True}
    if not _claim(ctx, job_id, index, worker or host()):
        return {"job_id": job_id, "index": index, "taken": True}
    try:
        n = _featurize_part(ctx, job_id, index, list(params["files"]), params["spec"])
    except Exception:  # let the training take the chunk over at once
        log.exception("featurize chunk %d of job %s failed", index, job_id)
        ctx.redis.delete(_claim_key(ctx, job_id, index))
        return {"job_id": job_id, "index": index, "failed": True}
    return {"job_id": job_id, "index": index, "computed": n}


def featurize_training_set(
    ctx: Context,
    job_id: str,
    ds: Dataset,
    spec: str,
    send: Send | None,
    progress: Callable[[int, int], None],
) -> dict:
    """Fill the shared cache for the dataset ``ds``: only files not cached are decoded,
    in chunks spread over the predict processes while this training takes chunks from the
    other end (so it never waits on a queue nobody serves). Returns {"cached", "computed"}."""
    version = get_spec(spec).version
    base = Path(ctx.settings.data_dir).resolve()
    keyed, misses = [], []
    for path in ds.paths:
        try:
            keyed.append((path, content_hash(path.read_bytes())))
        except OSError:
            misses.append(path)  # fails again in the chunk, with its error recorded there
    hits = ctx.feature_cache.contains_many(version, [k for _, k in keyed]) if keyed else []
    misses += [p for (p, _), hit in zip(keyed, hits) if not hit]
    stats = {"cached": len(ds.paths) - len(misses), "computed": 0}
    if not misses:
        return stats
    rel = [p.relative_to(base).as_posix() for p in misses]
    size = bulk.chunk_size(len(rel), predict_processes(ctx) + 1, lo=8, hi=64)
    parts = [list(c) for c in bulk.chunks(rel, size)]
    if send is not None:
        for index, files in enumerate(parts):
            send(TASK_FEATURIZE_CHUNK, [job_id, {"index": index, "files": files, "spec": spec}])
    pending = set(range(len(parts)))
    try:
        while True:
            done = {int(k) for k in ctx.redis.hkeys(_done_key(ctx, job_id))}
            pending -= done
            progress(len(rel) - sum(len(parts[i]) for i in pending), len(rel))
            if not pending:
                break
            for index in sorted(pending, reverse=True):
                if _claim(ctx, job_id, index, "train"):
                    _featurize_part(ctx, job_id, index, parts[index], spec)
                    break
            else:  # every pending chunk is in a replica's hands: wait for them
                time.sleep(WAIT_POLL)
        computed = ctx.redis.hvals(_done_key(ctx, job_id))
        stats["computed"] = sum(int(v) for v in computed)
    finally:
        keys = [_claim_key(ctx, job_id, i) for i in range(len(parts))]
        ctx.redis.delete(_done_key(ctx, job_id), *keys)
    return stats
