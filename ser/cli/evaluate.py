"""``ser evaluate``: cross-validate the pipeline on a dataset directory, offline."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ser import config, datasets
from ser.cli.common import progress_bar
from ser.contract import ADAPT_CHOICES, CLASSIFIERS, FEATURE_SETS, PROTOCOLS, REPEATS
from ser.features import get_spec
from ser.features.cache import DiskCache


def register(subparsers) -> None:
    """Add ``evaluate`` to an argparse subparsers object."""
    ev = subparsers.add_parser(
        "evaluate", help="cross-validate the pipeline on a dataset directory"
    )
    ev.add_argument("dataset", type=Path, help="dataset directory")
    ev.add_argument("--features", choices=FEATURE_SETS, default="default")
    ev.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        help="default: both where the dataset has speakers, else stratified",
    )
    ev.add_argument(
        "--adapt",
        choices=ADAPT_CHOICES,
        default="auto",
        help="speaker adaptation (default auto: chosen by speaker-grouped validation)",
    )
    ev.add_argument(
        "--repeats",
        type=int,
        default=REPEATS,
        help="stratified CV shuffles to average (default 10; 1 = the prototype's seed 42)",
    )
    ev.add_argument(
        "--classifier", choices=CLASSIFIERS, help="default: svc for seed, lda otherwise"
    )
    ev.add_argument("--report-dir", type=Path, help="write metrics.json, confusion.png, pca.png")
    ev.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ev.add_argument("--no-cache", action="store_true", help="bypass the feature cache")
    ev.add_argument("--jobs", type=int, default=0, help="processes (default: SER_N_JOBS)")
    ev.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    # scikit-learn and scipy (1.5 s) load only here: the service commands do not pay them.
    from ser.ml import evaluation, report, training

    settings = config.load()
    cache_dir = None if args.no_cache else settings.cache_dir
    ds = datasets.load_dataset(args.dataset)  # dataset errors before any progress output
    protocols = (args.protocol,) if args.protocol else training.default_protocols(ds)
    for protocol in protocols:
        datasets.check_protocol(ds, protocol, evaluation.N_SPLITS)
    n_jobs = args.jobs or settings.n_jobs
    cache = DiskCache(cache_dir) if cache_dir else None
    with progress_bar("featurizing", enabled=not args.quiet) as progress:
        data = training.featurize_dataset(
            ds, get_spec(args.features), cache=cache, n_jobs=n_jobs, progress=progress
        )
    every: dict[str, dict] = {}
    chosen = None
    for protocol in protocols:
        every[protocol], _ = training.evaluate_features(
            data,
            protocol,
            features=args.features,
            classifier=args.classifier,
            adapt=args.adapt,
            repeats=args.repeats,
            n_jobs=n_jobs,
        )
        if chosen is None:  # the mode of the model fitted on the whole dataset
            fitted = training.fit_model(
                data, features=args.features, classifier=args.classifier, adapt=args.adapt
            )
            chosen = fitted.mode_
        every[protocol]["adapt_chosen"] = chosen
    if args.report_dir:
        for protocol, metrics in every.items():
            out = args.report_dir if len(every) == 1 else args.report_dir / protocol
            paths = report.write_report(out, metrics, data.X, data.y, metrics["classes"])
            metrics["report"] = {k: str(v) for k, v in paths.items()}
    if args.json:
        out = every[protocols[0]] if args.protocol else {"protocols": every}
        print(json.dumps(out, sort_keys=True))
    else:
        for metrics in every.values():
            print_metrics(metrics)
    return 0


def print_metrics(metrics: dict) -> None:
    """A readable summary table of evaluation metrics on stdout."""
    console = Console()
    protocol = metrics["protocol"]
    adapt = metrics.get("adapt", "off")
    if adapt == "auto":
        adapt = f"auto -> {metrics.get('adapt_chosen') or '?'}"
    title = f"{metrics['features']} · {metrics['classifier']} · {protocol} · adapt {adapt}"
    head = Table(title=f"{title} · n={metrics['n_samples']}")
    head.add_column("metric")
    head.add_column("value", justify="right")
    repeats = metrics.get("repeats", 1)
    over = f"{metrics['n_folds']} folds" + (f", {repeats} shuffles" if repeats > 1 else "")
    f1 = f"{metrics['f1_macro_mean']:.3f} ± {metrics['f1_macro_std']:.3f}"
    head.add_row(f"F1-macro (mean ± std over {over})", f1)
    for key, name in [("uar", "UAR"), ("accuracy", "accuracy"), ("log_loss", "log-loss")]:
        head.add_row(name, f"{metrics[key]:.3f}")
    head.add_row("ECE", f"{metrics['ece']:.3f}")
    head.add_row("chance F1 (stratified guessing)", f"{metrics['chance_f1']:.3f}")
    if metrics.get("speaker_baseline_f1") is not None:
        head.add_row("speaker-majority baseline F1", f"{metrics['speaker_baseline_f1']:.3f}")
    folds = metrics.get("adapt_folds") or []
    if folds and metrics.get("adapt") == "auto":
        counts = {m: folds.count(m) for m in dict.fromkeys(folds)}
        head.add_row(
            "adaptation chosen per fold", ", ".join(f"{m} ×{n}" for m, n in counts.items())
        )
    head.add_row(
        "featurize / fit seconds", f"{metrics['featurize_seconds']} / {metrics['fit_seconds']}"
    )
    console.print(head)
    if metrics.get("speaker_confounded") and protocol == "stratified":
        console.print(
            "[bold red]Warning:[/] the labels follow the speakers here (predicting each "
            f"speaker's majority label scores F1 {metrics['speaker_baseline_f1']:.3f}): this "
            "stratified score mostly measures speaker identification, not emotion. "
            "Trust the speaker protocol (--protocol speaker) instead."
        )
    title = "per class (pooled out-of-fold" + (", first shuffle)" if repeats > 1 else ")")
    console.print(_per_class_table(title, metrics["per_class"]))
    if metrics.get("failed_files"):
        console.print(f"[yellow]{len(metrics['failed_files'])} file(s) could not be used[/]")


def _per_class_table(title: str, per_class: dict) -> Table:
    """Precision, recall, F1 and support per class ({class: {precision, recall, f1, support}},
    keys in either case)."""
    per = Table(title=title)
    for col in ("class", "precision", "recall", "F1", "n"):
        per.add_column(col, justify="left" if col == "class" else "right")
    for name, row in per_class.items():
        row = {k.lower(): v for k, v in row.items()}
        per.add_row(
            name,
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
        )
    return per


def training_data_warning(ev: dict) -> str:
    """The warning line of an ``EVALUATION`` flagged ``TRAINING_DATA``."""
    overlap = ev.get("TRAINING_OVERLAP")
    files = "" if overlap is None else f"; {overlap} of the {ev['EVALUATED']} evaluated files"
    return (
        f"warning: the model was trained on {escape(str(ev.get('TRAINING_DATASET')))} "
        f"(this folder is, holds or lies in it{files}): the figures measure what it "
        "remembers, not how it does on recordings it has never heard"
    )


def print_evaluation(ev: dict, png_url: str | None = None) -> None:
    """The ``EVALUATION`` of a score job (``ser score --evaluate``) as tables on stdout:
    the figures, the rows left out, per class, the confusion matrix and where its PNG is."""
    console = Console()
    if "ERROR" in ev:
        err = ev["ERROR"]
        console.print(
            f"[bold red]evaluation failed:[/] {escape(err['CODE'])}: {escape(err['MESSAGE'])}",
            highlight=False,
            soft_wrap=True,  # one line, as every other error
        )
        return
    head = Table(
        title=f"evaluation against the folder's labels ({ev.get('LABELS', '?')}) · "
        f"n={ev['EVALUATED']}"
    )
    head.add_column("metric")
    head.add_column("value", justify="right")
    for key, name in (("F1_MACRO", "F1-macro"), ("UAR", "UAR"), ("ACCURACY", "accuracy")):
        head.add_row(name, "-" if ev[key] is None else f"{ev[key]:.3f}")
    head.add_row("failed files (not evaluated)", str(ev["FAILED"]))
    head.add_row("files without a label", str(ev["UNLABELLED"]))
    unknown = ev.get("UNKNOWN_LABELS") or {}
    head.add_row(
        "labels the model does not know",
        ", ".join(f"{label} ×{n}" for label, n in unknown.items()) or "0",
    )
    console.print(head)
    if ev.get("TRAINING_DATA"):
        console.print(training_data_warning(ev), style="bold yellow", highlight=False)
    if not ev["EVALUATED"]:
        console.print("[yellow]no scored file has a label the model knows[/]")
        return
    console.print(_per_class_table("per class", ev["PER_CLASS"]))
    cm = Table(title="confusion matrix (rows: true, columns: predicted)")
    cm.add_column("true \\ predicted")
    for name in ev["CLASSES"]:
        cm.add_column(name, justify="right")
    for name, row in zip(ev["CLASSES"], ev["CONFUSION_MATRIX"]):
        cm.add_row(name, *(str(v) for v in row))
    console.print(cm)
    if png_url or ev.get("CONFUSION_PNG"):
        # soft_wrap: a URL stays on one line whatever the width (80 columns off a terminal)
        url = png_url or ev["CONFUSION_PNG"]
        console.print(f"confusion matrix PNG: {url}", highlight=False, soft_wrap=True)
