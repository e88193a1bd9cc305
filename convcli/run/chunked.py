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

from ..errors import ConvcliError
from ..geometry.sizes import as_pair, size_json
from ..io.bigfiles import (
    CHUNK_INPUTS,
    CHUNK_OUTPUTS,
    DEFAULT_CHUNK,
    MISSING_EXTRA,
    TILE,
    open_source,
    read_header,
    reader_buffer_bytes,
    suffix_of,
    write_npy,
    write_tiff,
    write_zarr,
)
from ..io.images import ClipCount, check_output_folder, check_pixels
from ..ops.base import Operation
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
) -> dict:
    """Run ``op`` on a huge image, file to file, in chunks.

    Reads ``.npy``, TIFF or ``.zarr`` (see :func:`convcli.io.bigfiles.open_source`);
    writes ``.npy`` (float32, H x W for one channel, as the in-memory path), a tiled
    TIFF (depth 8, 16 or float, as :func:`convcli.io.images.choose_depth` decides, values
    mapped as ``op.value_map`` says) or ``.zarr`` (float32).  The output appears whole or
    not at all.  Computes on this machine's threads (``workers``, default the cores).
    Returns the JSON record of the run.
    """
    out_suffix = suffix_of(output_path)
    if out_suffix not in CHUNK_OUTPUTS:
        raise ConvcliError(
            f"output {str(output_path)!r}: chunked processing writes .npy, .tif, .tiff or .zarr"
        )
    check_output_folder(output_path)
    source = open_source(input_path, chunk=chunk, gray=gray)
    count = ClipCount()  # the TIFF's clipped values, counted as its blocks are encoded
    try:
        result = op.chunked(source, chunk)
        out_h, out_w, channels = (int(n) for n in result.shape)
        compute = {"scheduler": "threads", "num_workers": workers}
        if out_suffix == ".npy":
            written_depth, value_map = "float", None
            write_npy(output_path, result, compute, keep_axis=source.channel_axis)
        elif out_suffix == ".zarr":
            written_depth, value_map = "float", None
            write_zarr(output_path, result, compute, keep_axis=source.channel_axis)
        else:
            bounds = op.display_bounds()
            written_depth, value_map = write_tiff(
                output_path, result, op.value_map, depth, source.depth, compute, bounds, count
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
            "blocks": int(result.numblocks[0] * result.numblocks[1]),
        },
    }
    if value_map is not None:
        clip_record(record, str(input_path), value_map, count, bounds)
    return record


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


def auto_chunk(channels: int, max_memory: int | None) -> int:
    """The block side when none is given: DEFAULT_CHUNK, smaller when ``--max-memory`` needs it.

    A block in flight holds about ``BLOCK_FLOATS * 4 * side**2 * channels`` bytes, and
    each thread holds up to two; the side is chosen so that they all fit in half the limit.
    """
    if not max_memory:
        return DEFAULT_CHUNK
    threads = usable_cores()
    side = int((max_memory / 2 / (2 * threads * BLOCK_FLOATS * 4 * channels)) ** 0.5)
    return max(64, min(DEFAULT_CHUNK, side // 64 * 64))


def check_chunked_limits(op: Operation, task: Task, opts: RunOptions, size, channels: int):
    """The block side for this image in chunks (``--chunk``, or the largest multiple of 64 up
    to :func:`auto_chunk`'s that fits ``--max-memory``), after refusing, before a block is read,
    an image over ``--max-pixels`` (every format: a small file may declare any size) or one
    whose run would take more than ``--max-memory`` even in blocks of 64: the operation's
    blocks in flight (:meth:`Operation.chunk_memory`), the reader's tiles or strips (a TIFF's,
    decoded whole by any block that touches them; two a thread) and, for a TIFF output, a
    full-width band of result rows and its samples."""
    height, width = size
    check_pixels(height, width, opts.max_pixels, f"input {task.input!r}")
    if opts.max_memory is None:
        return opts.chunk or DEFAULT_CHUNK
    segment = reader_buffer_bytes(task.input)
    tiff_out = suffix_of(task.output) in (".tif", ".tiff")
    out_h, out_w = op.output_size((height, width))

    def need(chunk_hw) -> int:
        total = op.chunk_memory((height, width), channels, chunk_hw) + 2 * usable_cores() * segment
        if tiff_out:
            rows = max(1, min(out_h, -(-out_h * chunk_hw[0] // height)))
            total += 3 * 4 * channels * out_w * (rows + TILE)
        return total

    sides = [opts.chunk] if opts.chunk else range(auto_chunk(channels, opts.max_memory), 63, -64)
    for side in sides:
        chunk_hw = as_pair(side, "chunk", minimum=1)
        bytes_needed = need(chunk_hw)
        if bytes_needed <= opts.max_memory:
            return side
    extra = f"; one tile or strip of the TIFF is {segment / 2**20:,.0f} MiB" if segment >= 2**20 else ""
    raise ConvcliError(
        f"input {task.input!r}: {width}x{height} in chunks of {chunk_hw[1]}x{chunk_hw[0]} needs "
        f"about {bytes_needed / 2**20:,.0f} MiB, over the limit of {opts.max_memory / 2**20:,.0f} MiB "
        f"(--max-memory){extra}"
    )


def process_chunked(op: Operation, task: Task, opts: RunOptions) -> Outcome:
    """:func:`convcli.run.process.process` for one huge image: an Outcome, never raising
    for a bad image."""
    try:
        make_output_folder(task)
        height, width, channels, _ = read_header(task.input)
        chunk = check_chunked_limits(op, task, opts, (height, width), channels)
        record = process_huge(op, task.input, task.output, chunk=chunk, gray=opts.gray, depth=opts.depth)
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
