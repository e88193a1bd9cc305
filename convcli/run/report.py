"""Reporting outcomes: one line (or JSON object) per image in input order, a progress bar,
a summary."""

from __future__ import annotations

import os
import sys

from ..errors import ConvcliError, describe
from ..strict_json import dumps
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
        failed = outcome.status == "failed"
        if failed and not self.batch and (self.opts.quiet or not self.opts.json):
            return  # a single image's error is raised as a usage error, printed once by the CLI
        if self.opts.quiet:
            if failed:  # -q silences stdout, never errors (with --json too)
                self._print(outcome.line, sys.stderr)
            return
        if self.opts.json:
            self._print(dumps(outcome.record), self.stream)
        elif outcome.status == "failed":
            self._print(outcome.line, sys.stderr)
        else:
            self._print(outcome.line, self.stream)
            if outcome.warning:
                self._print(f"convcli: warning: {outcome.warning}", sys.stderr)

    def _print(self, text: str, stream) -> None:
        try:
            if self.progress is not None and stream is sys.stderr:
                self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
            else:
                print(encodable(text, stream), file=stream, flush=True)
        except OSError as exc:  # the reader of a pipe went away, a full disk: the run stops there
            raise stream_failed(exc, stream) from None

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


def clip_record(record: dict, source: str, value_map: str, count, bounds) -> str | None:
    """Add to an 8/16-bit output's record the values it shows black and white (``range``; not
    known here for ``normalize`` in chunks), the fraction of values clipped and, when that is over
    half, the ``warning``; return the warning."""
    from ..io.images import clip_warning, shown_range

    if value_map != "normalize" or bounds is not None:
        low, high = shown_range(value_map, bounds)
        record["range"] = {"black": low, "white": high}
    record["clipped"] = round(count.fraction, 4)
    warning = clip_warning(f"input {source!r}", count, value_map, bounds)
    if warning is not None:
        record["warning"] = warning
    return warning


def encodable(text: str, stream) -> str:
    """``text`` as ``stream`` can write it: a file name whose bytes are no text in the locale's
    encoding (``\\udcff``, from the bytes ``\\xff``) is written with backslash escapes where the
    stream would otherwise raise UnicodeEncodeError."""
    encoding = getattr(stream, "encoding", None)
    if not encoding:
        return text
    try:
        text.encode(encoding, getattr(stream, "errors", None) or "strict")
    except UnicodeEncodeError:
        return text.encode(encoding, "backslashreplace").decode(encoding, "replace")
    return text


def stream_failed(exc: OSError, stream) -> ConvcliError:
    """The error (one line, exit code 1) for a standard stream that failed: a closed pipe or a
    full disk.  Nothing more goes to that stream (see :func:`drop_stream`)."""
    drop_stream(stream)
    name = "standard error" if stream is sys.stderr else "standard output"
    if isinstance(exc, BrokenPipeError):
        reason = "was closed before everything was written (the reader went away)"
    else:
        reason = f"cannot be written ({exc.strerror or describe(exc)})"
    return ConvcliError(f"{name} {reason}", exit_code=1)


def drop_stream(stream) -> None:
    """Point a failed standard stream's file descriptor (stdout's, stderr's) at the null device,
    where it has a real one: once it has failed (a closed pipe, a full disk) nothing more goes
    there, and Python's flush at exit cannot fail a second time."""
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):
        return
    try:
        os.dup2(null, fd)
    except OSError:
        pass
    finally:
        os.close(null)
