"""What a run is made of: its options, one task per image, one outcome per task.

Shared by the planner, the local and cluster executors and the reporter;
picklable, so that tasks and outcomes travel to worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConvcliError, describe

STDIN = "-"
STDOUT = "-"


@dataclass
class RunOptions:
    output: str | None = None  # -o: a file, a folder, or "-" for stdout
    template: str | None = None  # --output-template
    recursive: bool = False
    overwrite: bool = False
    jobs: int | None = None
    fail_fast: bool = False
    dry_run: bool = False
    stream_format: str | None = "png"  # --format, for -o -; None: npy for an .npy input, else png
    gray: bool | str = False  # --gray: False, "luma" or "mean"
    depth: str | None = None
    max_pixels: int | None = None
    max_memory: int | None = None  # bytes; None: no limit
    compress_level: int = 6
    json: bool = False
    quiet: bool = False
    chunk: tuple[int, int] | None = None  # --chunk: (height, width) of the blocks of a huge image
    scheduler: str | None = None  # --scheduler: a Dask scheduler's address, or "local"
    reads: tuple[str, ...] = ()  # files the run reads besides the images (kernel, preset): never outputs


@dataclass
class Task:
    index: int
    input: str  # a path, or "-" for stdin
    output: str  # a path, or "-" for stdout
    replace: bool = False  # an explicitly named single output is replaced
    make_folder: bool = False  # -o FOLDER and templates create the folders they name
    problem: str | None = None  # known unwritable when planned (a name too long): fails, not computed


@dataclass
class Outcome:
    task: Task
    status: str  # done, skipped, failed, planned
    record: dict = field(default_factory=dict)
    line: str = ""
    exit_code: int = 2  # of a failed single image (a usage error); 1: the output itself failed
    warning: str | None = None  # printed on stderr as ``convcli: warning: ...`` (not with -q)


def failed(task: Task, message: str, exit_code: int = 2) -> Outcome:
    """The outcome of an image that could not be processed: one line that names it."""
    if repr(task.input) not in message:  # say which image, in a batch above all
        message = f"input {task.input!r}: {message}"
    record = {"input": task.input, "output": task.output, "error": message}
    return Outcome(task, "failed", record, f"convcli: error: {message}", exit_code)


def os_reason(exc: OSError) -> str:
    """An OSError's reason without its errno and file name ("File name too long")."""
    return exc.strerror or describe(exc)


def size_record(pair) -> dict:
    """``(height, width)`` as the JSON reports write sizes."""
    return {"width": int(pair[1]), "height": int(pair[0])}


def make_output_folder(task: Task) -> None:
    """Create the folder an output template or ``-o FOLDER`` names, if it is missing."""
    if task.make_folder:
        try:
            Path(task.output).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConvcliError(f"output {task.output!r}: cannot create its folder ({exc.strerror})") from None
