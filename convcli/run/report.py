"""Reporting outcomes: one line (or JSON object) per image in input order, a progress bar,
a summary."""

from __future__ import annotations

import json
import sys

from .tasks import Outcome, RunOptions


class Reporter:
    """Prints outcomes in input order (text lines or JSON Lines), with an optional progress bar."""

    def __init__(self, opts: RunOptions, *, to_stderr: bool, batch: bool, total: int):
        self.opts = opts
        self.batch = batch
        self.stream = sys.stderr if to_stderr else sys.stdout
        self.total = total
        self.waiting: dict[int, Outcome] = {}
        self.next_index = 0
        self.progress = None
        self.task_id = None
        show_bar = (
            batch
            and total > 1
            and not opts.quiet
            and not opts.json
            and not opts.dry_run
            and sys.stderr.isatty()
        )
        if show_bar:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )

    def __enter__(self):
        if self.progress is not None:
            self.progress.start()
            self.task_id = self.progress.add_task("images", total=self.total)
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
        return False

    def add(self, outcome: Outcome) -> None:
        if self.progress is not None:
            self.progress.advance(self.task_id)
        self.waiting[outcome.task.index] = outcome
        while self.next_index in self.waiting:
            self._emit(self.waiting.pop(self.next_index))
            self.next_index += 1
        # Indices never filled (cancelled by --fail-fast or Ctrl-C) are skipped by flush_all.

    def flush_all(self) -> None:
        for index in sorted(self.waiting):
            self._emit(self.waiting.pop(index))

    def _emit(self, outcome: Outcome) -> None:
        if outcome.status == "failed" and not self.batch and not self.opts.json:
            return  # a single image's error is raised as a usage error, printed once by the CLI
        if self.opts.quiet:
            if outcome.status == "failed" and not self.opts.json:
                self._print(outcome.line, sys.stderr)
            return
        if self.opts.json:
            self._print(json.dumps(outcome.record), self.stream)
        elif outcome.status == "failed":
            self._print(outcome.line, sys.stderr)
        else:
            self._print(outcome.line, self.stream)

    def _print(self, text: str, stream) -> None:
        if self.progress is not None:
            self.progress.console.print(
                text, markup=False, highlight=False, soft_wrap=True
            ) if stream is sys.stderr else print(text, file=stream, flush=True)
        else:
            print(text, file=stream, flush=True)

    def summary(self, counts: dict, seconds: float, interrupted: bool, total: int) -> None:
        if self.opts.quiet or self.opts.json:
            return
        if self.opts.dry_run:
            text = (
                f"dry run: {counts['planned']} to write, {counts['skipped']} skipped, "
                f"{counts['failed']} failed"
            )
        else:
            text = (
                f"done {counts['done']}, skipped {counts['skipped']}, failed {counts['failed']} "
                f"of {total} in {seconds:.2f} s"
            )
        if interrupted:
            text = f"interrupted: {text}; run the same command again to continue"
        print(text, file=sys.stderr, flush=True)
