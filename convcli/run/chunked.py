"""One huge image, in chunks: when the runner takes that path, and the run from file to file.

The CLI takes this path (see :func:`wants_chunked`) for an ``.npy``, TIFF or
``.zarr`` input whose in-memory working set (the operation's
``memory_estimate``) exceeds ``--max-memory`` (default: half the machine's
memory), to an ``.npy``, TIFF or ``.zarr`` output, when dask is installed; or
for any such pair when a block size is given (``RunOptions.chunk``).  Without
dask nothing changes: such an image is refused by ``--max-memory`` as before.

The blocks are the operation's own (:meth:`convcli.ops.base.Operation.chunked`),
read and written by :mod:`convcli.io.bigfiles`; each block is bit-identical to
the in-memory result.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from contextlib import contextmanager

from ..errors import ConvcliError
from ..geometry.sizes import as_pair, size_json
from ..io.bigfiles import (
    CHUNK_INPUTS,
    CHUNK_OUTPUTS,
    DEFAULT_CHUNK,
    MISSING_EXTRA,
    ThreadedBlocks,
    block_tasks,
    open_source,
    read_header,
    reader_buffer_bytes,
    suffix_of,
    write_npy,
    write_tiff,
    write_zarr,
)
from ..io.images import ClipCount, check_output_folder, check_pixels
from ..io.stores import is_url
from ..ops.base import INPUT_BYTES, Operation
from ..system import usable_cores
from .report import clip_record
from .tasks import STDIN, STDOUT, Outcome, RunOptions, Task, failed, make_output_folder

BLOCK_FLOATS = 3  # a block in flight: its padded input, its output and one temporary


def dask_installed() -> bool:
    return importlib.util.find_spec("dask") is not None


def process_huge(
    op: Operation,
    input_path,
    output_path,
    *,
    chunk=DEFAULT_CHUNK,
    gray: bool = False,
    depth: str | None = None,
    workers: int | None = None,
    client=None,
    progress: bool = False,
) -> dict:
    """Run ``op`` on a huge image, file to file, in chunks.

    Reads ``.npy``, TIFF or ``.zarr`` (see :func:`convcli.io.bigfiles.open_source`);
    writes ``.npy`` (float32, H x W for one channel, as the in-memory path), an
    uncompressed TIFF (depth 8, 16 or float, as :func:`convcli.io.images.choose_depth`
    decides, values mapped as ``op.value_map`` says) or ``.zarr`` (float32).  The output
    appears whole or not at all.  Each block is read, computed and written by the same
    task: on this machine's threads (``workers``, default the cores), or on the workers of
    a Dask cluster when ``client`` (a ``distributed.Client``) is given, every worker taking
    blocks of this one image.  ``progress``: a bar of blocks written on standard error.
    Returns the JSON record of the run.
    """
    out_suffix = suffix_of(output_path)
    if out_suffix not in CHUNK_OUTPUTS:
        raise ConvcliError(
            f"output {str(output_path)!r}: chunked processing writes .npy, .tif, .tiff or .zarr"
        )
    check_output_folder(output_path)
    # Workers may run in another folder: they get absolute paths (the record keeps the given ones).
    source = open_source(_absolute(input_path), chunk=chunk, gray=gray)
    target = _absolute(output_path)
    count = ClipCount()  # the TIFF's clipped values, counted as its blocks are encoded
    try:
        result = op.chunked(source, chunk)
        out_h, out_w, channels = (int(n) for n in result.shape)
        block_count = int(result.numblocks[0] * result.numblocks[1])
        with block_bar(progress, block_count, str(output_path)) as advance:
            if client is not None:
                blocks = ClusterBlocks(client, advance)
            else:
                blocks = ThreadedBlocks(workers, advance)
            if out_suffix == ".npy":
                written_depth, value_map = "float", None
                write_npy(target, result, blocks, keep_axis=source.channel_axis)
            elif out_suffix == ".zarr":
                written_depth, value_map = "float", None
                key = resume_key(op, input_path, chunk, gray)
                write_zarr(target, result, blocks, keep_axis=source.channel_axis, resume_key=key)
            else:
                bounds = op.display_bounds()
                written_depth, value_map = write_tiff(
                    target, result, op.value_map, depth, source.depth, blocks, bounds, count
                )
    finally:
        source.close()
    alpha = "none" if not source.alpha else "dropped"
    record = {
        "input": str(input_path),
        "output": str(output_path),
        "operation": op.name,
        "input_size": size_json(source.size),
        "output_size": size_json((out_h, out_w)),
        "channels": channels,
        **op.report(source.size),
        "map": value_map,
        "depth": written_depth,
        "alpha": alpha,
        "chunked": {
            "chunk": dict(zip(("height", "width"), as_pair(chunk, "chunk", minimum=1))),
            "blocks": block_count,
        },
    }
    if value_map is not None:
        clip_record(record, str(input_path), value_map, count, bounds)
    return record


def _absolute(path):
    """A local path made absolute (a worker may run in another folder); a URL as it is."""
    return path if is_url(str(path)) else os.path.abspath(path)


def resume_key(op: Operation, input_path, chunk, gray: bool) -> str | None:
    """Eight hex digits naming what a ``.zarr`` output holds: the input (its absolute path,
    size and modification time), the operation and its parameters, the blocks (None for an
    input named by URL: no resuming)."""
    import hashlib
    import pickle

    if is_url(str(input_path)):
        return None
    stat = os.stat(input_path)
    what = (os.path.abspath(input_path), stat.st_size, stat.st_mtime_ns, chunk, gray)
    return hashlib.sha256(pickle.dumps((what, op))).hexdigest()[:8]


@contextmanager
def block_bar(show: bool, total: int, label: str):
    """A transient Rich bar of blocks written, on standard error; yields its ``advance``
    (``None`` when not shown)."""
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("blocks"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)


def show_block_bar(opts: RunOptions) -> bool:
    """Per-block progress on a terminal: not with -q, --json or --dry-run, nor off a tty."""
    return not (opts.quiet or opts.json or opts.dry_run) and sys.stderr.isatty()


class SchedulerLost(ConvcliError):
    """The connection to the Dask scheduler was lost: one line that names it."""


def check_connected(client, wait: float = 0.0) -> None:
    """Raise :class:`SchedulerLost` when ``client`` has lost its scheduler (``wait``: seconds
    for a cancelled future's news to reach the client's status)."""
    deadline = time.monotonic() + wait
    while str(getattr(client, "status", "running")) in ("running", "newly-created"):
        if time.monotonic() >= deadline:
            return
        time.sleep(0.05)
    address = getattr(getattr(client, "scheduler", None), "address", None) or "?"
    raise SchedulerLost(f"--scheduler: lost the connection to the Dask scheduler at {address}")


class ClusterBlocks:
    """:class:`convcli.io.bigfiles.ThreadedBlocks` on a Dask cluster: every chunk of a block
    graph is a task the scheduler places on any worker, which reads, computes and writes its
    block.  On an exception (a signal, a lost scheduler) the tasks are cancelled and this
    waits, at most STOP_WAIT seconds, until no worker is still running one, so that the
    caller's removal of the temporary output is final."""

    STOP_WAIT = 10.0

    def __init__(self, client, advance=None):
        self.client, self.advance = client, advance

    def write(self, array, skip=()) -> None:
        from distributed import as_completed

        futures = self.client.compute(block_tasks(array, skip))
        try:
            for future in as_completed(futures, loop=self.client.loop):
                future.result()  # raises the block's error
                if self.advance is not None:
                    self.advance()
        except BaseException:
            self._stop(futures)
            self.check_connected()
            raise
        finally:
            del futures

    def values(self, *arrays):
        futures = self.client.compute(list(arrays))
        try:
            return [future.result() for future in futures]
        except BaseException:
            self._stop(futures)
            self.check_connected()
            raise

    def check_connected(self, wait: float = 0.0) -> None:
        """Raise :class:`SchedulerLost` if the client has lost its scheduler (``wait``: seconds
        for a cancelled future's news to reach the client's status)."""
        check_connected(self.client, wait)

    def _stop(self, futures) -> None:
        names = {_key_name(future.key) for future in futures}
        try:
            self.client.cancel(futures)
            deadline = time.monotonic() + self.STOP_WAIT
            while time.monotonic() < deadline:
                busy = self.client.run(_running_names, on_error="ignore")
                if not any(set(names) & set(running) for running in busy.values()):
                    return
                time.sleep(0.1)
        except Exception:  # noqa: BLE001  (a lost scheduler: nothing more to wait for)
            return


def _key_name(key) -> str:
    return str(key[0] if isinstance(key, tuple) else key)


def _running_names(dask_worker=None):
    """On a worker: the graph names of the tasks it is running now."""
    state = getattr(dask_worker, "state", dask_worker)
    running = set(getattr(state, "executing", ())) | set(getattr(state, "long_running", ()))
    return sorted({_key_name(getattr(task, "key", task)) for task in running})


def wants_chunked(op: Operation, task: Task, opts: RunOptions) -> bool:
    """Whether :func:`convcli.run.process.process` should hand this image to
    :func:`process_chunked`.

    Yes for an ``.npy``, TIFF or ``.zarr`` input to an ``.npy``, TIFF or ``.zarr``
    output when dask is installed and either a block size was asked for
    (``opts.chunk``) or the in-memory working set exceeds ``opts.max_memory``.  A
    ``.zarr`` input always goes chunked (only this path reads it); without dask that
    is an error naming the extra.
    """
    if task.input == STDIN or task.output == STDOUT:
        return False
    in_suffix, out_suffix = suffix_of(task.input), suffix_of(task.output)
    if in_suffix not in CHUNK_INPUTS or out_suffix not in CHUNK_OUTPUTS:
        if in_suffix == ".zarr":
            raise ConvcliError(
                f"input {task.input!r}: a .zarr input is written to .npy, .tif, .tiff or .zarr"
            )
        return False
    if not dask_installed():
        if in_suffix == ".zarr":
            raise ConvcliError(f"input {task.input!r}: .zarr {MISSING_EXTRA}")
        return False
    if ".zarr" in (in_suffix, out_suffix) or opts.chunk is not None:  # only this path does .zarr
        return True
    if opts.max_memory is None:
        return False
    try:
        height, width, channels, _ = read_header(task.input)
        if opts.gray and channels >= 3:
            channels = 1
        need = op.memory_estimate((height, width), channels)
    except ConvcliError:
        return False  # the in-memory path reports what is wrong with it
    return need > opts.max_memory


def auto_chunk(channels: int, max_memory: int | None, threads: int | None = None) -> int:
    """The block side when none is given: DEFAULT_CHUNK, smaller when ``--max-memory`` needs it.

    A block in flight holds about ``BLOCK_FLOATS * 4 * side**2 * channels`` bytes, and
    each thread holds up to two; the side is chosen so that they all fit in half the limit.
    """
    if not max_memory:
        return DEFAULT_CHUNK
    threads = threads or usable_cores()
    side = int((max_memory / 2 / (2 * threads * BLOCK_FLOATS * 4 * channels)) ** 0.5)
    return max(64, min(DEFAULT_CHUNK, side // 64 * 64))


def worker_memory(client) -> tuple[int | None, int]:
    """``(the smallest memory limit of the cluster's workers or None, their most threads)``,
    asked of the scheduler."""
    workers = client.scheduler_info().get("workers", {}).values()
    limits = [int(w.get("memory_limit") or 0) for w in workers]
    threads = max((int(w.get("nthreads") or 1) for w in workers), default=1)
    limits = [limit for limit in limits if limit > 0]
    return (min(limits) if limits else None), threads


def check_chunked_limits(op: Operation, task: Task, opts: RunOptions, size, channels: int, client=None):
    """The block side for this image in chunks (``--chunk``, or the largest multiple of 64 up
    to :func:`auto_chunk`'s that fits the memory limit), after refusing, before a block is
    read, an image over ``--max-pixels`` (every format: a small file may declare any size) or
    one whose run would take more than the limit even in blocks of 64: the operation's blocks
    in flight (:meth:`Operation.chunk_memory`), the reader's tiles or strips (a TIFF's,
    decoded whole by any block that touches them; two a thread), and the two rows of input
    chunks that ``map_overlap`` holds for their neighbours' halos.

    The limit is ``--max-memory`` on this machine; on a Dask cluster (``client``), each
    worker's: the smallest memory limit the scheduler reports (and ``--max-memory`` if
    smaller), its blocks in flight counted for the worker's own threads."""
    height, width = size
    check_pixels(height, width, opts.max_pixels, f"input {task.input!r}")
    limit, threads, where = opts.max_memory, usable_cores(), "--max-memory"
    if client is not None:
        worker_limit, threads = worker_memory(client)
        if worker_limit is not None and (limit is None or worker_limit < limit):
            limit, where = worker_limit, "the Dask workers' memory limit"
    if limit is None:
        return opts.chunk or DEFAULT_CHUNK
    segment = reader_buffer_bytes(task.input)

    def need(chunk_hw) -> int:
        # map_overlap holds input chunks until their neighbours have taken their halos: about
        # two rows of chunks across the whole width, besides the blocks in flight.
        held = 2 * INPUT_BYTES * channels * chunk_hw[0] * width  # read, and as float32
        return op.chunk_memory((height, width), channels, chunk_hw, threads) + 2 * threads * segment + held

    for chunk_hw in (
        [as_pair(opts.chunk, "chunk", minimum=1)]
        if opts.chunk
        else _block_shapes(auto_chunk(channels, limit, threads), width)
    ):
        bytes_needed = need(chunk_hw)
        if bytes_needed <= limit:
            return opts.chunk or (chunk_hw[0] if chunk_hw[0] == chunk_hw[1] else chunk_hw)
    if not opts.chunk:  # the smallest block the message names
        chunk_hw = (64, 64)
        bytes_needed = need(chunk_hw)
    extra = f"; one tile or strip of the TIFF is {segment / 2**20:,.0f} MiB" if segment >= 2**20 else ""
    raise ConvcliError(
        f"input {task.input!r}: {width}x{height} in chunks of {chunk_hw[1]}x{chunk_hw[0]} needs "
        f"about {bytes_needed / 2**20:,.0f} MiB, over the limit of {limit / 2**20:,.0f} MiB "
        f"({where}){extra}"
    )


def _block_shapes(start: int, width: int):
    """Block shapes to try, largest first: squares of ``start`` down to 64 by 64, each then
    wider (2, 4, 8... times, up to the image's width), since a wide image's rows of held chunks
    want short blocks and its graph wants few of them."""
    for side in range(start, 63, -64):
        yield side, side
        wide = 2 * side
        while wide < 2 * width and wide <= 64 * side:
            yield side, min(wide, width)
            wide *= 2


def process_chunked(op: Operation, task: Task, opts: RunOptions, client=None) -> Outcome:
    """:func:`convcli.run.process.process` for one huge image: an Outcome, never raising
    for a bad image.  With ``client``, its blocks are computed on that Dask cluster."""
    try:
        make_output_folder(task)
        height, width, channels, _ = read_header(task.input)
        chunk = check_chunked_limits(op, task, opts, (height, width), channels, client)
        record = process_huge(
            op,
            task.input,
            task.output,
            chunk=chunk,
            gray=opts.gray,
            depth=opts.depth,
            client=client,
            progress=show_block_bar(opts),
        )
    except SchedulerLost:
        raise  # the batch's end, not this image's
    except ConvcliError as exc:
        return failed(task, str(exc))
    except MemoryError:
        return failed(task, f"input {task.input!r}: not enough memory for this image")
    record["input"], record["output"] = task.input, task.output
    size_in = (record["input_size"]["height"], record["input_size"]["width"])
    blocks = record["chunked"]["blocks"]
    note = " (alpha dropped)" if record["alpha"] == "dropped" else ""
    line = (
        f"{task.input}: {op.size_text(size_in)}, wrote {task.output} "
        f"in {blocks} block{'s' if blocks != 1 else ''}{note}"
    )
    return Outcome(task, "done", record, line, warning=record.get("warning"))
