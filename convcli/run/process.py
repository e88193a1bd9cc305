"""One image: load, compute, write atomically, and say what happened.

:func:`process` never raises for a bad image: every failure becomes a
``failed`` outcome with one line that names the image.  An ``.npy``, TIFF or
``.zarr`` image too large for ``--max-memory`` (or any, with ``--chunk``)
goes to :mod:`convcli.run.chunked` when dask is installed.
"""

from __future__ import annotations

import os
import sys

from ..errors import ConvcliError, describe
from ..io.bigfiles import CHUNK_INPUTS, CHUNK_OUTPUTS, suffix_of
from ..io.images import (
    ClipCount,
    check_output_folder,
    choose_depth,
    encode,
    encode_bands,
    holds_alpha,
    load_image,
    output_format,
    write_atomic,
    write_stream,
)
from ..ops.base import Operation
from .chunked import dask_installed, process_chunked, wants_chunked
from .report import clip_record, drop_stream
from .tasks import STDOUT, Outcome, RunOptions, Task, failed, make_output_folder, os_reason, size_record


def process(op: Operation, task: Task, opts: RunOptions) -> Outcome:
    """Load, compute, write atomically; never raises for an image (returns 'failed').

    Whatever goes wrong with one image (a bad file, an OSError of any kind, an unexpected
    exception) becomes its ``failed`` outcome, one line, so that a batch goes on.
    """
    try:
        if suffix_of(task.input) in CHUNK_INPUTS and wants_chunked(op, task, opts):
            return process_chunked(op, task, opts)
        return _process(op, task, opts)
    except ConvcliError as exc:
        return failed(task, str(exc), exc.exit_code)
    except MemoryError:
        return failed(task, f"input {task.input!r}: not enough memory for this image")
    except OSError as exc:
        return failed(task, _os_error_message(task, exc))
    except Exception as exc:  # noqa: BLE001  (a bug must cost one image, not the batch)
        return failed(task, f"unexpected error ({type(exc).__name__}: {describe(exc)}); please report it")


def _os_error_message(task: Task, exc: OSError) -> str:
    """An OSError as one line naming the file it concerns: the output (or its temporary file
    beside it) when it is about the output's folder, else the input."""
    name = exc.filename
    if task.output != STDOUT and name is not None:
        path = os.fsdecode(name) if isinstance(name, bytes) else str(name)
        if os.path.dirname(os.path.abspath(path)) == os.path.dirname(os.path.abspath(task.output)):
            if os.path.abspath(path) != os.path.abspath(task.input):
                return f"output {task.output!r}: cannot be written ({os_reason(exc)})"
    return f"input {task.input!r}: {os_reason(exc)}"


def check_memory(op: Operation, task: Task, opts: RunOptions, height: int, width: int, channels: int) -> None:
    """Refuse, before decoding, an image whose working memory would exceed ``--max-memory``:
    the operation's :meth:`~convcli.ops.base.Operation.memory_estimate`, every allocation of
    the run counted from the header's size and the parameters."""
    if opts.max_memory is None:
        return
    need = op.memory_estimate((height, width), channels)
    if need > opts.max_memory:
        raise ConvcliError(
            f"input {task.input!r}: {width}x{height} with {channels} channel(s) needs about "
            f"{need / 2**20:,.0f} MiB of working memory, over the limit of "
            f"{opts.max_memory / 2**20:,.0f} MiB (--max-memory){_chunk_hint(task)}"
        )


def _process(op: Operation, task: Task, opts: RunOptions) -> Outcome:
    to_stdout = task.output == STDOUT
    out_name = f"-.{opts.stream_format or 'png'}" if to_stdout else task.output
    output_format(out_name)
    make_output_folder(task)
    if not to_stdout:
        check_output_folder(task.output)
    loaded = load_image(
        task.input,
        gray=opts.gray,
        max_pixels=opts.max_pixels,
        before_decode=lambda h, w, c: check_memory(op, task, opts, h, w, c),
        max_bytes=opts.max_memory,
        banded=True,  # a PNG is decoded as op.bands asks for its rows (else whole, by .data)
    )
    if to_stdout and opts.stream_format is None and loaded.format == "NPY":
        out_name = "-.npy"  # no --format: an array stays an array, floats and all
    depth = choose_depth(out_name, opts.depth, loaded.depth, loaded.channels)
    streaming = (
        op.streams_bands
        and depth in ("8", "16")
        and op.value_map != "normalize"
        and output_format(out_name)[0] != "NPY"
    )
    if streaming:  # band by band from the stored pixels: no float copy of the whole image
        out_shape = op.output_size(loaded.size) + (loaded.channels,)
        bands = op.bands(loaded)
    else:
        result = op.apply(loaded.data)
        out_shape = result.shape
    alpha, alpha_data, note = "none", None, ""
    if loaded.alpha is not None:
        if out_shape[:2] != loaded.size:
            alpha, note = "dropped", " (alpha dropped: the size changed)"
        elif not holds_alpha(out_name, depth):
            alpha, note = "dropped", " (alpha dropped: the output format holds none)"
        else:
            alpha, alpha_data = "carried", loaded.alpha_float()
    bounds, count = op.display_bounds(), ClipCount()  # clipped values counted as the pixels are encoded
    if not streaming and op.value_map == "normalize":
        bounds = (float(result.min()), float(result.max()))
    mapping = {"depth": depth, "value_map": op.value_map, "bounds": bounds, "count": count}
    if streaming:
        payload = encode_bands(bands, out_shape, alpha_data, out_name, **mapping)
    else:
        payload = encode(result, alpha_data, out_name, keep_axis=loaded.channel_axis, **mapping)
    if to_stdout:
        write_to_stdout(payload, output_format(out_name)[0], opts.compress_level)
    else:
        write_atomic(task.output, payload, compress_level=opts.compress_level)
    mapped = depth != "float" and output_format(out_name)[0] != "NPY"
    record = {
        "input": task.input,
        "output": task.output,
        "operation": op.name,
        "input_size": size_record(loaded.size),
        "output_size": size_record(out_shape[:2]),
        "channels": int(out_shape[2]),
        **op.report(loaded.size),
        "map": op.value_map if mapped else None,
        "depth": depth,
        "alpha": alpha,
    }
    warning = clip_record(record, task.input, op.value_map, count, bounds) if mapped else None
    target = "stdout" if to_stdout else task.output
    line = f"{task.input}: {op.size_text(loaded.size)}, wrote {target}{note}"
    return Outcome(task, "done", record, line, warning=warning)


class FullWrites:
    """A binary stream whose ``write`` writes every byte or raises.

    A raw (unbuffered) standard output writes what the pipe takes and returns the count,
    silently short when the reader has gone; this loops until all is written, so that a
    closed pipe raises BrokenPipeError instead of passing for success.
    """

    def __init__(self, stream):
        self.stream = stream

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        while view:
            try:
                count = self.stream.write(view)
            except BlockingIOError as exc:  # a non-blocking stdout: wait until it takes more
                count = exc.characters_written
                self._wait()
            if count is None:  # a raw non-blocking stream that took nothing
                self._wait()
                count = 0
            view = view[count:]
        return total

    def flush(self) -> None:
        self.stream.flush()

    def _wait(self) -> None:
        import select

        select.select([], [self.stream.fileno()], [])


def write_to_stdout(payload, fmt: str, compress_level: int | None) -> None:
    """Write one encoded image to standard output, whole, or raise a ConvcliError (exit code 1).

    A closed pipe (the reader went away) or a full disk is the output failing: the image is
    not reported as written.  Whatever stayed in Python's buffer is dropped (standard output
    then goes to the null device), so that the interpreter's exit adds no second complaint.
    """
    stream = sys.stdout.buffer
    try:
        sys.stdout.flush()
        write_stream(FullWrites(stream), payload, fmt, compress_level=compress_level)
    except OSError as exc:
        drop_stream(sys.stdout)
        if isinstance(exc, BrokenPipeError):
            reason = "standard output was closed before the image was written (the reader went away)"
        else:
            reason = f"standard output cannot be written ({os_reason(exc)})"
        raise ConvcliError(f"output '-': {reason}", exit_code=1) from None


def _chunk_hint(task: Task) -> str:
    """How an image over --max-memory could still be processed, in chunks."""
    if suffix_of(task.input) not in CHUNK_INPUTS:
        return ""
    if not dask_installed():
        return "; pip install 'convcli[dask]' to process .npy and TIFF images in chunks"
    if suffix_of(task.output) not in CHUNK_OUTPUTS:
        return "; write .npy, .tif or .zarr to process it in chunks"
    return ""
