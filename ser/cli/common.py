"""What every ``ser`` command shares: exit codes and the progress bar."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

EXIT_FAILED = 1  # a job or command that ran and failed
EXIT_USAGE = 2  # bad input: dataset, arguments
EXIT_BROKEN_PIPE = 141  # what a shell reports for a command ended by SIGPIPE


@contextmanager
def progress_bar(description: str, enabled: bool = True, unit: str = "files"):
    """A rich progress bar on stderr with rate and ETA; yields a ``progress(done, total)``."""
    if not enabled:
        yield None
        return

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.1f} {unit}/s" if speed else f"- {unit}/s", style="cyan")

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), speed_estimate_period=30) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield update
