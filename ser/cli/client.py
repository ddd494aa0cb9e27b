"""The client commands of ``ser``: train, predict, score, jobs, models and speakers, HTTP
clients of the API at SER_API_URL."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import quote

import requests

from ser import config
from ser.cli.common import EXIT_FAILED, progress_bar
from ser.cli.evaluate import print_evaluation
from ser.contract import ADAPT_CHOICES, FEATURE_SETS, KINDS, PROTOCOLS
from ser.errors import SerError

WAIT_SLICE = 10  # seconds per ?wait request while a client waits for a job


def register(subparsers) -> None:
    """Add the client subcommands to an argparse subparsers object."""
    tr = subparsers.add_parser("train", help="queue a training through the API")
    tr.add_argument(
        "dataset",
        nargs="?",
        default=None,
        help="directory under SER_DATA_DIR (default: the server's SER_TRAIN_DATASET, or the "
        "one dataset it holds)",
    )
    tr.add_argument("--protocol", choices=PROTOCOLS, default=None)
    tr.add_argument("--features", choices=FEATURE_SETS, default=None)
    tr.add_argument(
        "--adapt",
        choices=ADAPT_CHOICES,
        default=None,
        help="speaker adaptation (server default: auto)",
    )
    tr.add_argument(
        "--repeats", type=int, default=None, help="stratified CV repetitions, 1..20 (default 3)"
    )
    tr.add_argument(
        "--no-activate",
        dest="activate",
        action="store_false",
        help="keep the new version aside (published, the current model unchanged)",
    )
    _client_flags(tr)
    tr.set_defaults(func=cmd_train)

    pr = subparsers.add_parser("predict", help="upload local audio files for prediction")
    pr.add_argument("files", nargs="+", type=Path)
    pr.add_argument("--speaker", help="the speaker of every file (adds to their statistics)")
    pr.add_argument(
        "--segments",
        action="store_true",
        help="emotion over time: one line per speech segment (start, end, emotion) after the "
        "file's dominant emotion",
    )
    _client_flags(pr)
    pr.set_defaults(func=cmd_predict)

    sc = subparsers.add_parser("score", help="score every recording of a folder on the server")
    sc.add_argument("folder", help="folder under the server's SER_DATA_DIR")
    sc.add_argument(
        "-o", "--output", type=Path, help="write the rows here (.csv, or .jsonl); implies --wait"
    )
    sc.add_argument("--no-recursive", action="store_true", help="only the folder's own files")
    sc.add_argument(
        "--pattern", action="append", help="file-name glob, repeatable (default *.wav *.flac *.ogg)"
    )
    sc.add_argument(
        "--speakers",
        metavar="SOURCE",
        help='normalise by speaker: "labels" (labels.csv), "folder" (parent directory) or a '
        "regular expression with a group (?P<speaker>...)",
    )
    sc.add_argument(
        "--segments",
        action="store_true",
        help="emotion over time: a row per speech segment (file, start, end, emotion); the "
        "summary adds up speech seconds per emotion (not with --evaluate or --speakers)",
    )
    sc.add_argument(
        "--evaluate",
        action="store_true",
        help="compare with the folder's labels (labels.csv, EMO-DB names, class folders): "
        "F1-macro, UAR, accuracy, per class, confusion matrix; implies --wait",
    )
    _client_flags(sc)
    sc.set_defaults(func=cmd_score, parser=sc)

    jb = subparsers.add_parser("jobs", help="list recent jobs, or show (and cancel) one")
    jb.add_argument("job_id", nargs="?")
    jb.add_argument("--kind", choices=KINDS)
    jb.add_argument("--status")
    jb.add_argument("--limit", type=int, default=20)
    jb.add_argument("--cancel", action="store_true", help="cancel JOB_ID")
    _client_flags(jb)
    jb.set_defaults(func=cmd_jobs)

    md = subparsers.add_parser("models", help="list model versions; show, activate or delete one")
    md.add_argument("version", nargs="?")
    md.add_argument("--activate", action="store_true", help="make VERSION current")
    md.add_argument("--delete", action="store_true", help="remove VERSION (not the current one)")
    md.add_argument("--json", action="store_true", help="print JSON")
    md.set_defaults(func=cmd_models)

    sp = subparsers.add_parser("speakers", help="show (or forget) a speaker's statistics")
    sp.add_argument("speaker")
    sp.add_argument("--delete", action="store_true", help="forget the speaker")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.set_defaults(func=cmd_speakers)


def _client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", action="store_true", help="wait for the job(s) to finish")
    p.add_argument("--timeout", type=float, default=0, help="give up waiting after seconds")
    p.add_argument("--json", action="store_true", help="print JSON")


# -- clients ----------------------------------------------------------------------------------
class Client:
    """A small HTTP client of the API (SER_API_URL, SER_API_KEY)."""

    def __init__(self, settings: config.Settings | None = None) -> None:
        self.settings = settings or config.load()
        self.session = requests.Session()
        if self.settings.api_key:
            key = self.settings.api_key.get_secret_value()
            self.session.headers["Authorization"] = f"Bearer {key}"

    def request(self, method: str, path: str, **kwargs) -> dict:
        url = self.settings.api_url + path
        kwargs.setdefault("timeout", 60)
        try:
            resp = self.session.request(method, url, **kwargs)
        except requests.ConnectionError:
            raise self.unreachable() from None
        body = self.body(resp)
        if resp.status_code >= 400 and "JOB_ID" not in body:
            raise self.refused(resp.status_code, body)
        return body

    @staticmethod
    def body(resp) -> dict:
        """A response's JSON body; one that is not JSON as an HTTP_<status> error."""
        try:
            return resp.json()
        except ValueError:
            return {"ERROR": {"CODE": f"HTTP_{resp.status_code}", "MESSAGE": resp.text[:200]}}

    def unreachable(self) -> SerError:
        """API_UNAVAILABLE, saying how to point the client at another host or port."""
        return SerError(
            "API_UNAVAILABLE",
            f"cannot reach the API at {self.settings.api_url} (is `ser up` running? for "
            "another host or port set SER_API_URL, e.g. SER_API_URL=http://127.0.0.1:8000)",
        )

    def refused(self, status: int, body: dict) -> SerError:
        """The API's error of a refused request; a 401 says what to do about the key."""
        err = body.get("ERROR") if isinstance(body, dict) else None
        err = err if isinstance(err, dict) else {}
        code, message = err.get("CODE", f"HTTP_{status}"), err.get("MESSAGE", "")
        if status == 401:
            message += (
                " (SER_API_KEY is sent: is it the service's key?)"
                if self.settings.api_key
                else " (set SER_API_KEY to the service's API key)"
            )
        return SerError(code, message)

    def wait(
        self, job_id: str, timeout: float = 0, progress=None, poll: float = 0, job=None
    ) -> dict:
        """The job once it ends (or as it is after ``timeout`` seconds): long-polling with
        ?wait, or a plain GET every ``poll`` seconds. ``job``: the body already in hand."""
        deadline = time.monotonic() + timeout if timeout else None
        while job is None or job["JOB_STATUS"] in ("QUEUED", "RUNNING"):
            if job is not None and deadline and time.monotonic() > deadline:
                break
            if poll:
                time.sleep(poll)
                job = self.request("GET", f"/jobs/{job_id}")
            else:
                job = self.request("GET", f"/jobs/{job_id}?wait={WAIT_SLICE}")
            if progress and "PROGRESS" in job:
                progress(job["PROGRESS"].get("DONE", 0), job["PROGRESS"].get("TOTAL", 0))
            elif progress and job.get("COUNT") is not None:
                progress(job["COUNT"], job["COUNT"])
        return job


DECIMALS = 4  # a float's decimals in the key: value output (--json keeps every digit)


def _rounded(value):
    """``value`` with every float in it rounded to DECIMALS places."""
    if isinstance(value, float):
        return round(value, DECIMALS)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def _value(value) -> str:
    """A value of the key: value output: JSON literals (true, false, null, lists, objects)
    with floats rounded; a string as it is."""
    return value if isinstance(value, str) else json.dumps(_rounded(value))


def _print(obj, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, sort_keys=False))
    else:
        for key, value in obj.items():
            print(f"{key}: {_value(value)}")


def _exit_for(job: dict) -> int:
    return EXIT_FAILED if job.get("JOB_STATUS") in ("FAILED", "CANCELLED") else 0


def cmd_train(args: argparse.Namespace) -> int:

    client = Client()
    body = {
        k: v
        for k, v in (
            ("dataset", args.dataset),
            ("protocol", args.protocol),
            ("features", args.features),
            ("adapt", args.adapt),
            ("repeats", args.repeats),
        )
        if v is not None
    }
    if not args.activate:
        body["activate"] = False
    job = client.request("POST", "/train", json=body)
    if args.wait:
        with progress_bar("training", enabled=not args.json and sys.stderr.isatty()) as bar:
            job = client.wait(job["JOB_ID"], args.timeout, bar)
    _print(job, args.json)
    return _exit_for(job)


def cmd_predict(args: argparse.Namespace) -> int:
    client = Client()
    params = {"speaker": args.speaker} if args.speaker is not None else {}
    if args.segments:
        params["segments"] = "1"
    queued = []
    for path in args.files:
        try:
            with open(path, "rb") as fh:  # the clip as the body: no multipart encoding
                job = client.request(
                    "POST",
                    "/predict",
                    params=params | {"name": path.name},
                    data=fh,
                    headers={"Content-Type": "application/octet-stream"},
                )
        except (OSError, SerError) as exc:
            err = exc if isinstance(exc, SerError) else SerError("FILE_UNREADABLE", str(exc))
            job = {"FILENAME": str(path), "JOB_STATUS": "FAILED", "ERROR": err.to_dict()}
        queued.append(job)
    results = []
    for job in queued:
        if args.wait and job.get("JOB_ID") and job["JOB_STATUS"] in ("QUEUED", "RUNNING"):
            job = client.wait(job["JOB_ID"], args.timeout)
        results.append(job)
    if args.json:
        for job in results:
            print(json.dumps(job))
    else:
        for job in results:
            if job.get("EMOTION") and job.get("SEGMENTS"):
                # emotion over time: the header's figures are not a clip's, so they are named
                speech = job.get("SPEECH_SECONDS")
                if speech is None:
                    speech = sum(seg["END"] - seg["START"] for seg in job["SEGMENTS"])
                of = f" of {job['DURATION']:.2f} s" if job.get("DURATION") is not None else ""
                print(
                    f"{job['FILENAME']}\tdominant emotion (by speech time): {job['EMOTION']}"
                    f"\tits mean probability (weighted by duration): {job['PROBABILITY']:.3f}"
                    f"\tspeech: {speech:.2f} s{of}"
                )
                for seg in job["SEGMENTS"]:
                    print(
                        f"  {seg['START']:.2f}-{seg['END']:.2f} s\t{seg['EMOTION']}"
                        f"\t{seg['PROBABILITY']:.3f}"
                    )
            elif job.get("EMOTION"):
                line = f"{job['FILENAME']}\t{job['EMOTION']}\t{job['PROBABILITY']:.3f}"
                if args.speaker is not None:  # a fourth column: was the speaker adapted to
                    line += "\tadapted" if job.get("ADAPTED") else "\tunadapted"
                print(line)
            elif job.get("SEGMENTS") == []:
                print(f"{job['FILENAME']}\tno speech found")
            elif job.get("ERROR"):
                print(
                    f"{job.get('FILENAME')}\tERROR {job['ERROR']['CODE']}: "
                    f"{job['ERROR']['MESSAGE']}"
                )
            else:
                print(f"{job.get('FILENAME')}\t{job['JOB_STATUS']}\t{job.get('JOB_ID', '')}")
    return EXIT_FAILED if any(_exit_for(j) for j in results) else 0


SCORE_POLL = 0.5  # seconds between progress polls of a score job


def _download(client: Client, job_id: str, path: Path) -> int:
    """Stream a score job's rows into ``path`` (CSV, or JSON Lines for .jsonl); returns bytes."""
    fmt = "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv"
    url = f"{client.settings.api_url}/jobs/{job_id}/results?format={fmt}"
    try:
        resp = client.session.get(url, stream=True, timeout=60)
    except requests.ConnectionError:
        raise client.unreachable() from None
    if resp.status_code != 200:
        raise client.refused(resp.status_code, client.body(resp))
    tmp = path.with_name(path.name + ".part")
    size = 0
    with open(tmp, "wb") as fh:
        for block in resp.iter_content(65536):
            fh.write(block)
            size += len(block)
    os.replace(tmp, path)  # never a half-written results file under the final name
    return size


def cmd_score(args: argparse.Namespace) -> int:
    # what the API refuses too (400), refused before anything is sent: a usage error (exit 2)
    if args.segments and args.evaluate:
        args.parser.error(
            "--segments and --evaluate do not go together: evaluation compares one label "
            "per file, and --segments gives a row per speech segment"
        )
    if args.segments and args.speakers:
        args.parser.error(
            "--segments and --speakers do not go together: with --segments each recording "
            "is its own speaker"
        )
    client = Client()
    body: dict = {"folder": args.folder, "recursive": not args.no_recursive}
    if args.pattern:
        body["patterns"] = args.pattern
    if args.speakers:
        body["speakers"] = args.speakers
    if args.evaluate:
        body["evaluate"] = True
    if args.segments:
        body["segments"] = True
    job = client.request("POST", "/score", json=body)
    if args.wait or args.output or args.evaluate:
        enabled = not args.json and sys.stderr.isatty()
        with progress_bar(f"scoring {args.folder}", enabled=enabled) as bar:
            job = client.wait(job["JOB_ID"], args.timeout, bar, poll=SCORE_POLL, job=job)
    if args.output and job["JOB_STATUS"] == "SUCCEEDED":
        _download(client, job["JOB_ID"], args.output)
        job = dict(job, OUTPUT=str(args.output))
    if args.evaluate and not args.json and "EVALUATION" in job:
        ev = job.pop("EVALUATION")
        _print(job, False)
        png = ev.get("CONFUSION_PNG")
        print_evaluation(ev, client.settings.api_url + png if png else None)
    else:
        _print(job, args.json)
    if args.output and job["JOB_STATUS"] in ("QUEUED", "RUNNING"):
        return EXIT_FAILED  # timed out before there was anything to write
    return _exit_for(job)


def cmd_jobs(args: argparse.Namespace) -> int:
    client = Client()
    if args.job_id:
        if args.cancel:
            job = client.request("DELETE", f"/jobs/{args.job_id}")
        elif args.wait:
            job = client.wait(args.job_id, args.timeout)
        else:
            job = client.request("GET", f"/jobs/{args.job_id}")
        _print(job, args.json)
        # a failed (or cancelled) job exits 1, shown or waited for; a cancellation that
        # worked is a success
        return 0 if args.cancel else _exit_for(job)
    params = {"limit": args.limit}
    if args.kind:
        params["kind"] = args.kind
    if args.status:
        params["status"] = args.status
    listing = client.request("GET", "/jobs", params=params)
    if args.json:
        print(json.dumps(listing))
        return 0
    for job in listing["JOBS"]:
        what = {"train": job.get("DATASET"), "score": job.get("FOLDER")}.get(
            job["KIND"], job.get("FILENAME")
        )
        print(
            f"{job['JOB_ID']}  {job['KIND']:<7} {job['JOB_STATUS']:<9} "
            f"{job.get('CREATED_AT', '')}  {what}"
        )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    client = Client()
    if args.version and args.activate:
        _print(client.request("POST", f"/models/{args.version}/activate"), args.json)
        return 0
    if args.version and args.delete:
        _print(client.request("DELETE", f"/models/{args.version}"), args.json)
        return 0
    if args.version:
        model = client.request("GET", f"/models/{args.version}")
        if args.json:
            _print(model, True)
        else:
            print_model(model, client.settings.api_url)
        return 0
    listing = client.request("GET", "/models")
    if args.json:
        print(json.dumps(listing))
        return 0
    if not listing["MODELS"]:
        print("no model yet: ser train <dataset> (a directory under SER_DATA_DIR)")
    for m in listing["MODELS"]:
        mark = "*" if m["CURRENT"] else " "
        f1 = _f1(m.get("F1_MACRO_MEAN"), m.get("F1_MACRO_STD"))
        spk = _f1(m.get("SPEAKER_F1_MACRO_MEAN"), m.get("SPEAKER_F1_MACRO_STD"))
        adapt = f"{m.get('ADAPT') or '-'}->{m.get('ADAPT_CHOSEN') or '-'}"
        print(
            f"{mark} {m['MODEL_VERSION']:<6} {m['CREATED_AT']}  {m.get('PROTOCOL') or '-'} "
            f"F1 {f1}  speaker F1 {spk}  adapt {adapt}  {m['DATASET']}"
        )
    return 0


def _f1(mean, std) -> str:
    return f"{mean:.3f}±{std or 0:.3f}" if mean is not None else "-"


def _fig(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _columns(rows: list[list[str]]) -> None:
    """``rows`` (the first the header) as left-aligned columns two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


# GET /models/<v> keys that `ser models VERSION` leaves to --json (METRICS repeats
# EVALUATIONS; the F1 figures are in the table when EVALUATIONS is there)
_DETAIL_ONLY_IN_JSON = ("METRICS", "EVALUATIONS", "VERSIONS")
_F1_KEYS = ("F1_MACRO_MEAN", "F1_MACRO_STD", "SPEAKER_F1_MACRO_MEAN", "SPEAKER_F1_MACRO_STD")


def print_model(model: dict, api_url: str) -> None:
    """A model version (GET /models/<v>) readably: its fields, then per protocol F1-macro
    (mean ± std over the folds), UAR, accuracy, ECE and chance F1, then F1 per class."""
    evaluations = model.get("EVALUATIONS") or {}
    skip = _DETAIL_ONLY_IN_JSON + (_F1_KEYS if evaluations else ())
    head = {k: v for k, v in model.items() if k not in skip}
    if head.get("CONFUSION_PNG", "").startswith("/"):
        head["CONFUSION_PNG"] = api_url + head["CONFUSION_PNG"]
    _print(head, False)
    if evaluations:
        print()
        rows = [
            [
                "protocol",
                "F1-macro (mean±std)",
                "folds (×repeats)",
                "UAR",
                "accuracy",
                "ECE",
                "chance F1",
            ]
        ]
        for protocol, ev in evaluations.items():
            folds = ev.get("N_FOLDS")
            if folds and (ev.get("REPEATS") or 1) > 1:
                folds = f"{folds}×{ev['REPEATS']}"
            rows.append(
                [
                    protocol,
                    _f1(ev.get("F1_MACRO_MEAN"), ev.get("F1_MACRO_STD")),
                    str(folds or "-"),
                    _fig(ev.get("UAR")),
                    _fig(ev.get("ACCURACY")),
                    _fig(ev.get("ECE")),
                    _fig(ev.get("CHANCE_F1")),
                ]
            )
        _columns(rows)
        classes = model.get("CLASSES") or list(
            dict.fromkeys(c for ev in evaluations.values() for c in ev.get("PER_CLASS") or {})
        )
        if classes:
            print()
            rows = [["F1 per class", *evaluations]]
            for name in classes:
                cells = [
                    ((ev.get("PER_CLASS") or {}).get(name) or {}).get("F1")
                    for ev in evaluations.values()
                ]
                rows.append([name, *(_fig(c) for c in cells)])
            _columns(rows)
    print(f"\n(the whole document: ser models {model['MODEL_VERSION']} --json)")


def cmd_speakers(args: argparse.Namespace) -> int:
    client = Client()
    path = "/speakers/" + quote(args.speaker, safe="")
    _print(client.request("DELETE" if args.delete else "GET", path), args.json)
    return 0
