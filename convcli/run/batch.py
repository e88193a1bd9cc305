"""Running one operation over one or many images: outputs, workers, reports.

The CLI builds an :class:`Operation` (what to compute, picklable) and a
:class:`RunOptions` (where to write, how to report) and hands both to
:func:`run`.  Everything here is shared by ``filter``, ``pool`` and ``upsample``.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConvcliError
from ..geometry.sizes import format_size

STDIN = "-"
STDOUT = "-"
# What a folder input picks up.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".npy")
# Output suffixes that keep the input's extension in default names.
KEEP_SUFFIXES = (".png", ".tif", ".tiff", ".npy", ".bmp", ".webp")
# What convcli.run.chunked reads; named here so that other images never import that module.
CHUNK_INPUTS = (".npy", ".tif", ".tiff", ".zarr")
TEMPLATE_FIELDS = ("stem", "ext", "parent", "op", "kernel", "name")
_GLOB_CHARS = set("*?[")


@dataclass
class Operation:
    """What to compute: the library call and the fields it reports."""

    name: str  # filter, pool or upsample
    tag: str  # names default outputs: sobel-vertical, maxpool2, up-bilinear
    kwargs: dict  # keyword arguments of the library function (the kernel included)
    report: dict  # parameters as they appear in the JSON report
    value_map: str = "clip"

    def output_size(self, input_hw):
        """The output ``(height, width)`` for an input size, without computing anything."""
        from ..geometry import sizes as g

        kw = self.kwargs
        if self.name == "filter":
            kernel_hw = kw["kernel"].shape
            sides = g.resolve_padding(kw["padding"], input_hw, kernel_hw, kw["stride"], kw["dilation"])
            return g.conv_output_size(input_hw, kernel_hw, kw["stride"], sides, kw["dilation"])
        if self.name == "pool":
            return g.pool_output_size(input_hw, kw["size"], kw["stride"], kw["padding"],
                                      kw["dilation"], kw["ceil_mode"])
        return g.tconv_output_size(input_hw, kw["kernel"].shape, kw["stride"], kw["padding"],
                                   kw["output_padding"], kw["dilation"])

    def apply(self, data):
        """Run the library function on an H x W x C float array; returns (result, extra report)."""
        kw = dict(self.kwargs)
        if self.name == "filter":
            from ..engine.filtering import filter2d
            from ..geometry.sizes import resolve_padding, sides_json

            kernel = kw.pop("kernel")
            sides = resolve_padding(kw.pop("padding"), data.shape[:2], kernel.shape,
                                    kw["stride"], kw["dilation"])
            return filter2d(data, kernel, padding=sides, **kw), {"padding": sides_json(sides)}
        if self.name == "pool":
            from ..engine.pooling import pool2d

            return pool2d(data, kw.pop("size"), **kw), {}
        from ..engine.transposed import conv_transpose2d

        return conv_transpose2d(data, kw.pop("kernel"), **kw), {}


    def bands(self, loaded, band_rows: int = 64):
        """A filter's result as float bands computed from the stored pixels.

        Returns ``(output (height, width), extra report, iterator of (first row,
        rows))``; each band reads only the input rows (and padding) it needs, so
        memory stays at a few bands whatever the image size.
        """
        from ..engine.filtering import filter2d
        from ..geometry.sizes import resolve_padding, sides_json
        from ..engine.padding import check_pad_sizes, pad_rows

        kw = self.kwargs
        kernel, (sy, sx), (dy, dx) = kw["kernel"], kw["stride"], kw["dilation"]
        size = loaded.size
        sides = resolve_padding(kw["padding"], size, kernel.shape, kw["stride"], kw["dilation"])
        check_pad_sizes(size, sides, kw["pad_mode"])
        out_hw = self.output_size(size)
        top, _, left, right = sides

        def band(first):
            last = min(first + band_rows, out_hw[0])
            start = first * sy - top  # in input rows; negative inside the top padding
            stop = (last - 1) * sy + dy * (kernel.shape[0] - 1) + 1 - top
            index, zeros = pad_rows(size[0], start, stop, kw["pad_mode"])
            rows = loaded.rows(index)
            rows[zeros] = 0
            # One thread per band: the bands themselves run on ordered_threads.
            return first, filter2d(rows, kernel, stride=(sy, sx), padding=(0, 0, left, right),
                                   dilation=(dy, dx), pad_mode=kw["pad_mode"], mode=kw["mode"],
                                   workers=1)

        firsts = range(0, out_hw[0], band_rows)
        return out_hw, {"padding": sides_json(sides)}, ordered_threads(band, firsts)


def ordered_threads(func, items, workers: int | None = None):
    """``map(func, items)`` on a few threads (numpy releases the GIL), in order, holding at
    most two results per thread ahead of the consumer."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    workers = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else os.cpu_count() or 1)
    items = iter(items)
    with ThreadPoolExecutor(workers) as pool:
        pending = deque(pool.submit(func, item) for _, item in zip(range(2 * workers), items))
        while pending:
            result = pending.popleft().result()
            for item in items:
                pending.append(pool.submit(func, item))
                break
            yield result


@dataclass
class RunOptions:
    output: str | None = None  # -o: a file, a folder, or "-" for stdout
    template: str | None = None  # --output-template
    recursive: bool = False
    overwrite: bool = False
    jobs: int | None = None
    fail_fast: bool = False
    dry_run: bool = False
    stream_format: str = "png"  # --format, for -o -
    gray: bool = False
    depth: str | None = None
    max_pixels: int | None = None
    max_memory: int | None = None  # bytes; None: no limit
    compress_level: int = 6
    json: bool = False
    quiet: bool = False
    chunk: tuple[int, int] | None = None  # --chunk: (height, width) of the blocks of a huge image
    scheduler: str | None = None  # --scheduler: a Dask scheduler's address, or "local"


@dataclass
class Task:
    index: int
    input: str  # a path, or "-" for stdin
    output: str  # a path, or "-" for stdout
    replace: bool = False  # an explicitly named single output is replaced
    make_folder: bool = False  # -o FOLDER and templates create the folders they name


@dataclass
class Outcome:
    task: Task
    status: str  # done, skipped, failed, planned
    record: dict = field(default_factory=dict)
    line: str = ""


# ----------------------------------------------------------------- inputs


def expand_inputs(inputs: list[str], recursive: bool) -> tuple[list[str], bool]:
    """Files, folders and glob patterns -> input paths in a stable order.

    Returns the paths and whether this is a batch (several images, or any
    folder or pattern), in which a failed image does not stop the others.
    """
    paths: list[str] = []
    batch = len(inputs) > 1
    for item in inputs:
        if item == STDIN:
            paths.append(item)
            continue
        path = Path(item)
        if path.is_dir() and path.suffix.lower() != ".zarr":  # a Zarr array is a folder, and one image
            batch = True
            pattern = "**/*" if recursive else "*"
            found = sorted(p for p in path.glob(pattern)
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                           and not p.name.startswith("."))
            paths.extend(str(p) for p in found)
        elif not path.exists() and _GLOB_CHARS & set(item):
            batch = True
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise ConvcliError(f"input {item!r}: the pattern matches no file")
            paths.extend(m for m in matches if Path(m).is_file())
        else:
            paths.append(item)  # a missing file fails when it is loaded
    unique = {}
    for item in paths:  # the same file named twice (or matched twice) is processed once
        unique.setdefault(item if item == STDIN else _key(item), item)
    paths = list(unique.values())
    if not paths:
        raise ConvcliError(f"input: no image files found in {', '.join(map(repr, inputs))}")
    if paths.count(STDIN) > 1:
        raise ConvcliError("input '-': standard input can be read only once")
    return paths, batch or len(paths) > 1


def _input_root(item: str) -> Path | None:
    path = Path(item)
    return path if item != STDIN and path.is_dir() else None


# ---------------------------------------------------------------- outputs


def default_name(input_path: str, op: Operation, suffix: str | None = None) -> str:
    if input_path == STDIN:
        stem, in_suffix = "stdin", ".png"
    else:
        stem, in_suffix = Path(input_path).stem, Path(input_path).suffix.lower()
    if suffix is None:
        suffix = in_suffix if in_suffix in KEEP_SUFFIXES else ".png"
    return f"{stem}-{op.tag}{suffix}"


def render_template(template: str, input_path: str, op: Operation) -> str:
    path = Path("stdin.png" if input_path == STDIN else input_path)
    fields = {
        "stem": path.stem, "ext": path.suffix.lstrip("."), "parent": str(path.parent),
        "op": op.name, "kernel": op.tag, "name": path.name,
    }
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConvcliError(
            f"--output-template: {template!r} is not a valid template ({exc}); "
            f"fields: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
        ) from None


def plan_outputs(inputs: list[str], raw_inputs: list[str], batch: bool, op: Operation,
                 opts: RunOptions) -> list[Task]:
    """Decide every output path up front; refuse collisions and inputs as outputs."""
    if opts.output is not None and opts.template is not None:
        raise ConvcliError("-o and --output-template: give one or the other")
    if opts.output == STDOUT and (batch or len(inputs) != 1):
        raise ConvcliError("-o -: standard output can carry one image only")
    roots = [r for r in map(_input_root, raw_inputs) if r is not None]
    tasks = []
    for index, item in enumerate(inputs):
        replace = make_folder = False
        if opts.output == STDOUT:
            output = STDOUT
        elif opts.template is not None:
            output, make_folder = render_template(opts.template, item, op), True
        elif opts.output is not None and (batch or Path(opts.output).is_dir()
                                          or opts.output.endswith(("/", os.sep))):
            sub = _relative_folder(item, roots) if opts.recursive else Path()
            output, make_folder = str(Path(opts.output) / sub / default_name(item, op)), True
        elif opts.output is not None:
            output, replace = opts.output, True
        else:
            folder = Path(".") if item == STDIN else Path(item).parent
            output = str(folder / default_name(item, op))
        tasks.append(Task(index, item, output, replace, make_folder))

    seen: dict[str, str] = {}
    input_keys = {_key(i): i for i in inputs if i != STDIN}
    for task in tasks:
        if task.output == STDOUT:
            continue
        key = _key(task.output)
        if key in input_keys:
            raise ConvcliError(
                f"output {task.output!r}: is an input file; convcli never overwrites an input"
            )
        if key in seen:
            raise ConvcliError(
                f"output {task.output!r}: both {seen[key]!r} and {task.input!r} would be written "
                f"there; use --output-template with {{parent}} or {{stem}} to tell them apart"
            )
        seen[key] = task.input
    return tasks


def _relative_folder(item: str, roots: list[Path]) -> Path:
    path = Path(item).resolve()
    for root in roots:
        try:
            return path.parent.relative_to(root.resolve())
        except ValueError:
            continue
    return Path()


def _key(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


# ---------------------------------------------------------------- one image


def process(op: Operation, task: Task, opts: RunOptions) -> Outcome:
    """Load, compute, write atomically; never raises for a bad image (returns 'failed').

    An ``.npy``/TIFF/``.zarr`` image too large for ``--max-memory`` (or any,
    with ``--chunk``) goes to :mod:`convcli.run.chunked` when dask is installed.
    """
    try:
        if Path(task.input).suffix.lower() in CHUNK_INPUTS:
            from .chunked import process_chunked, wants_chunked

            if wants_chunked(op, task, opts):
                return process_chunked(op, task, opts)
        return _process(op, task, opts)
    except ConvcliError as exc:
        return _failed(task, str(exc))
    except MemoryError:
        return _failed(task, f"input {task.input!r}: not enough memory for this image")


def _failed(task: Task, message: str) -> Outcome:
    if repr(task.input) not in message:  # say which image, in a batch above all
        message = f"input {task.input!r}: {message}"
    record = {"input": task.input, "output": task.output, "error": message}
    return Outcome(task, "failed", record, f"convcli: error: {message}")


def _process(op: Operation, task: Task, opts: RunOptions) -> Outcome:
    from ..io.images import (check_output_folder, choose_depth, encode, encode_bands, holds_alpha,
                            load_image, output_format, write_atomic, write_stream)

    to_stdout = task.output == STDOUT
    out_name = f"-.{opts.stream_format}" if to_stdout else task.output
    output_format(out_name)
    if task.make_folder:
        try:
            Path(task.output).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConvcliError(f"output {task.output!r}: cannot create its folder ({exc.strerror})") from None
    if not to_stdout:
        check_output_folder(task.output)
    def check_memory(height, width, channels):
        if opts.max_memory is None:
            return
        need = estimate_memory((height, width), op.output_size((height, width)), channels)
        if need > opts.max_memory:
            raise ConvcliError(
                f"input {task.input!r}: {width}x{height} with {channels} channel(s) needs about "
                f"{need / 2**20:,.0f} MiB of working memory, over the limit of "
                f"{opts.max_memory / 2**20:,.0f} MiB (--max-memory){_chunk_hint(task)}"
            )

    loaded = load_image(task.input, gray=opts.gray, max_pixels=opts.max_pixels,
                        before_decode=check_memory)
    depth = choose_depth(out_name, opts.depth, loaded.depth, loaded.channels)
    streaming = (op.name == "filter" and depth in ("8", "16") and op.value_map != "normalize"
                 and output_format(out_name)[0] != "NPY")
    if streaming:  # band by band from the stored pixels: no float copy of the whole image
        out_hw, extra, bands = op.bands(loaded)
        out_shape = out_hw + (loaded.channels,)
    else:
        result, extra = op.apply(loaded.data)
        out_shape = result.shape
    alpha, alpha_data, note = "none", None, ""
    if loaded.alpha is not None:
        if out_shape[:2] != loaded.size:
            alpha, note = "dropped", " (alpha dropped: the size changed)"
        elif not holds_alpha(out_name, depth):
            alpha, note = "dropped", " (alpha dropped: the output format holds none)"
        else:
            alpha, alpha_data = "carried", loaded.alpha_float()
    if streaming:
        payload = encode_bands(bands, out_shape, alpha_data, out_name, depth=depth,
                               value_map=op.value_map)
    else:
        payload = encode(result, alpha_data, out_name, depth=depth, value_map=op.value_map)
    if to_stdout:
        write_stream(sys.stdout.buffer, payload, output_format(out_name)[0],
                     compress_level=opts.compress_level)
    else:
        write_atomic(task.output, payload, compress_level=opts.compress_level)
    record = {
        "input": task.input, "output": task.output, "operation": op.name,
        "input_size": _size(loaded.size), "output_size": _size(out_shape[:2]),
        "channels": int(out_shape[2]), **op.report, **extra,
        "map": None if depth == "float" else op.value_map, "depth": depth, "alpha": alpha,
    }
    target = "stdout" if to_stdout else task.output
    line = f"{task.input}: {format_size(loaded.size)} -> {format_size(out_shape[:2])}, wrote {target}{note}"
    return Outcome(task, "done", record, line)


def _chunk_hint(task: Task) -> str:
    """How an image over --max-memory could still be processed, in chunks."""
    from .chunked import CHUNK_OUTPUTS, dask_installed

    if Path(task.input).suffix.lower() not in CHUNK_INPUTS:
        return ""
    if not dask_installed():
        return "; pip install 'convcli[dask]' to process .npy and TIFF images in chunks"
    if Path(task.output).suffix.lower() not in CHUNK_OUTPUTS:
        return "; write .npy, .tif or .zarr to process it in chunks"
    return ""


def estimate_memory(input_hw, output_hw, channels: int) -> int:
    """Bytes of working memory for one image: the float32 input, its padded copy and
    the decoded pixels (about three input-sized arrays), the result and the
    encoded output (about two output-sized arrays)."""
    return 4 * channels * (3 * input_hw[0] * input_hw[1] + 2 * output_hw[0] * output_hw[1])


def _size(pair):
    return {"width": int(pair[1]), "height": int(pair[0])}


def _skip_or_plan(op: Operation, task: Task, opts: RunOptions) -> Outcome | None:
    """Outcomes decided without computing: an existing output, or a dry run."""
    exists = task.output != STDOUT and Path(task.output).exists()
    if exists and not opts.overwrite and not task.replace:
        record = {"input": task.input, "output": task.output, "skipped": "output exists"}
        return Outcome(task, "skipped", record,
                       f"{task.input}: skipped, {task.output} exists (--overwrite replaces it)")
    if not opts.dry_run:
        return None
    from ..io.images import read_size

    try:
        if task.input == STDIN:
            raise ConvcliError("input '-': --dry-run cannot read standard input")
        in_size = read_size(task.input)
        out_size = op.output_size(in_size)
    except ConvcliError as exc:
        return _failed(task, str(exc))
    record = {"input": task.input, "output": task.output, "operation": op.name,
              "input_size": _size(in_size), "output_size": _size(out_size),
              "dry_run": True, "replaces": exists}
    verb = "would replace" if exists else "would write"
    line = f"{task.input}: {format_size(in_size)} -> {format_size(out_size)}, {verb} {task.output}"
    return Outcome(task, "planned", record, line)


# ---------------------------------------------------------------- the batch


def _ignore_sigint() -> None:
    import signal

    # Workers finish the image they hold; the parent decides when to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run(op: Operation, inputs: list[str], opts: RunOptions) -> int:
    """Process every input; report in input order; return the exit code."""
    paths, batch = expand_inputs(inputs, opts.recursive)
    tasks = plan_outputs(paths, inputs, batch, op, opts)
    report = Reporter(opts, to_stderr=opts.output == STDOUT, batch=batch, total=len(tasks))
    started = time.monotonic()
    outcomes: list[Outcome] = []
    pending: list[Task] = []
    for task in tasks:
        decided = _skip_or_plan(op, task, opts)
        if decided is None:
            pending.append(task)
        else:
            outcomes.append(decided)

    interrupted = False
    jobs = max(1, min(opts.jobs or os.cpu_count() or 1, len(pending)))
    with report:
        for outcome in sorted(outcomes, key=lambda o: o.task.index):
            report.add(outcome)
        try:
            if opts.scheduler and pending:
                from .cluster import run_on_cluster

                run_on_cluster(op, pending, opts, opts.scheduler, outcomes, report)
            elif jobs == 1 or not batch:
                for task in pending:
                    outcome = process(op, task, opts)
                    outcomes.append(outcome)
                    report.add(outcome)
                    if outcome.status == "failed" and opts.fail_fast:
                        break
            else:
                _run_pool(op, pending, opts, jobs, outcomes, report)
        except KeyboardInterrupt:
            interrupted = True
        report.flush_all()

    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed", "planned")}
    if batch or interrupted:
        report.summary(counts, time.monotonic() - started, interrupted, len(tasks))
    if interrupted:
        return 130
    if not batch and counts["failed"]:
        # A single image: its error is a usage error, as for any bad option.
        failed = next(o for o in outcomes if o.status == "failed")
        raise ConvcliError(failed.record["error"])
    return 1 if counts["failed"] else 0


def _run_pool(op, pending, opts, jobs, outcomes, report) -> None:
    import concurrent.futures as cf
    import multiprocessing

    # Not plain fork: the progress bar runs a thread, and forking a threaded
    # process can deadlock.  The fork server preloads numpy and Pillow once.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["convcli.run.batch", "numpy", "PIL.Image"])
    else:
        context = multiprocessing.get_context("spawn")
    executor = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context,
                                      initializer=_ignore_sigint)
    futures = {}
    try:
        for task in pending:
            futures[executor.submit(process, op, task, opts)] = task
        for future in cf.as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            report.add(outcome)
            if outcome.status == "failed" and opts.fail_fast:
                break
    except KeyboardInterrupt:
        _finish_running(executor, futures, outcomes, report)
        raise
    _finish_running(executor, futures, outcomes, report)


def _finish_running(executor, futures, outcomes, report) -> None:
    """Cancel what has not started; let running images finish whole, and record them."""
    executor.shutdown(wait=True, cancel_futures=True)
    done_tasks = {o.task.index for o in outcomes}
    for future, task in futures.items():
        if task.index in done_tasks or future.cancelled() or not future.done():
            continue
        outcome = future.result()
        outcomes.append(outcome)
        report.add(outcome)


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
        show_bar = (batch and total > 1 and not opts.quiet and not opts.json
                    and not opts.dry_run and sys.stderr.isatty())
        if show_bar:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeRemainingColumn)

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TimeRemainingColumn(),
                                     console=Console(stderr=True), transient=True)

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
            self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True) \
                if stream is sys.stderr else print(text, file=stream, flush=True)
        else:
            print(text, file=stream, flush=True)

    def summary(self, counts: dict, seconds: float, interrupted: bool, total: int) -> None:
        if self.opts.quiet or self.opts.json:
            return
        if self.opts.dry_run:
            text = f"dry run: {counts['planned']} to write, {counts['skipped']} skipped, {counts['failed']} failed"
        else:
            text = (f"done {counts['done']}, skipped {counts['skipped']}, failed {counts['failed']} "
                    f"of {total} in {seconds:.2f} s")
        if interrupted:
            text = f"interrupted: {text}; run the same command again to continue"
        print(text, file=sys.stderr, flush=True)
