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
        "summary adds up speech seconds per emotion",
    )
    sc.add_argument(
        "--evaluate",
        action="store_true",
        help="compare with the folder's labels (labels.csv, EMO-DB names, class folders): "
        "F1-macro, UAR, accuracy, per class, confusion matrix; implies --wait",
    )
    _client_flags(sc)
    sc.set_defaults(func=cmd_score)

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
            raise SerError(
                "API_UNAVAILABLE", f"cannot reach the API at {self.settings.api_url} (ser up?)"
            ) from None
        try:
            body = resp.json()
        except ValueError:
            body = {"ERROR": {"CODE": f"HTTP_{resp.status_code}", "MESSAGE": resp.text[:200]}}
        if resp.status_code >= 400 and "JOB_ID" not in body:
            err = body.get("ERROR") or {}
            raise SerError(err.get("CODE", f"HTTP_{resp.status_code}"), err.get("MESSAGE", ""))
        return body

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


def _print(obj, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, sort_keys=False))
    else:
        for key, value in obj.items():
            if isinstance(value, dict | list):
                value = json.dumps(value)
            print(f"{key}: {value}")


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
            if job.get("EMOTION"):
                line = f"{job['FILENAME']}\t{job['EMOTION']}\t{job['PROBABILITY']:.3f}"
                if args.speaker is not None:  # a fourth column: was the speaker adapted to
                    line += "\tadapted" if job.get("ADAPTED") else "\tunadapted"
                print(line)
                for seg in job.get("SEGMENTS") or ():
                    print(
                        f"  {seg['START']:.2f}-{seg['END']:.2f}\t{seg['EMOTION']}"
                        f"\t{seg['PROBABILITY']:.3f}"
                    )
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
        where = client.settings.api_url
        raise SerError("API_UNAVAILABLE", f"cannot reach the API at {where}") from None
    if resp.status_code != 200:
        raise SerError(f"HTTP_{resp.status_code}", resp.text[:200])
    tmp = path.with_name(path.name + ".part")
    size = 0
    with open(tmp, "wb") as fh:
        for block in resp.iter_content(65536):
            fh.write(block)
            size += len(block)
    os.replace(tmp, path)  # never a half-written results file under the final name
    return size


def cmd_score(args: argparse.Namespace) -> int:

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
        return _exit_for(job) if args.wait else 0
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
        _print(client.request("GET", f"/models/{args.version}"), args.json)
        return 0
    listing = client.request("GET", "/models")
    if args.json:
        print(json.dumps(listing))
        return 0
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


def cmd_speakers(args: argparse.Namespace) -> int:
    client = Client()
    path = "/speakers/" + quote(args.speaker, safe="")
    _print(client.request("DELETE" if args.delete else "GET", path), args.json)
    return 0
