"""The ``ser`` command: ``evaluate`` (offline, ser.cli.evaluate), the servers (up, api,
worker: ser.cli.servers) and the API's clients (train, predict, score, jobs, models, speakers:
ser.cli.client)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ser.cli import client, evaluate, servers
from ser.cli.common import EXIT_BROKEN_PIPE, EXIT_FAILED, EXIT_USAGE
from ser.errors import DatasetError, SerError, SettingError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="ser", description="Speech emotion recognition")
    sub = parser.add_subparsers(dest="command", required=True)
    evaluate.register(sub)
    servers.register(sub)
    client.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ser`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DatasetError, SettingError) as exc:
        print(f"ser: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SerError as exc:
        print(f"ser: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `ser models | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
