"""Huge images on disk, read and written block by block: ``.npy``, TIFF and ``.zarr`` (PNG read too).

Readers: :func:`open_source` opens an input as a :class:`Source`, which reads
any region as float32 H x W x C with the values :func:`convcli.io.images.load_image`
gives (``.npy`` and ``.zarr`` as stored; TIFF samples mapped by
:func:`convcli.io.images.sample_scale`; NaN and infinity refused alike).  ``.npy``
is read through memory maps of the rows a block needs; TIFF through
:class:`convcli.io.tiff.TiffReader` (the in-memory path's own decoder: the tiles or
strips a block touches, with tifffile alone), or, where that would give other
values than the in-memory path (palette, inverted gray, JPEG, LZW without
imagecodecs ...), and for PNG, through :class:`DecodedReader` (the in-memory
decoder, the whole image once).

Writers: :func:`write_npy`, :func:`write_zarr` and :func:`write_tiff` store a
lazy dask result block by block; each output goes to a temporary name in the
target folder and is renamed into place, so it is whole or absent.

Dask, tifffile and zarr are optional extras: only the chunked path imports
this module.
"""

from __future__ import annotations

import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..constants import DEFAULT_CHUNK
from ..errors import ConvcliError, describe
from ..geometry.sizes import as_pair
from ..signals import committed, deferred
from ..system import usable_cores
from .images import (
    PILLOW_DECODE_BYTES,
    atomic_file,
    check_input_file,
    check_values,
    choose_depth,
    load_image,
    read_layout,
    sample_scale,
    temporary_name,
    tiff_sample_type,
    to_float,
    to_samples,
)
from .npy import read_npy_header
from .stores import atomic_store, exists, is_url
from .tiff import TiffReader, import_tifffile, quiet_tifffile_log, tiff_layout

CHUNK_INPUTS = (".npy", ".tif", ".tiff", ".zarr", ".png")
CHUNK_OUTPUTS = (".npy", ".tif", ".tiff", ".zarr")
MISSING_EXTRA = "needs the dask extra to be processed in chunks: pip install 'convcli[dask]'"


def suffix_of(path) -> str:
    """The lower-case suffix, a trailing slash ignored (a ``.zarr`` store is a folder)."""
    return Path(str(path).rstrip("/" + os.sep)).suffix.lower()


class RawReader:
    """An array on disk at a byte offset (C order), read one block at a time.

    Each read maps only the rows it needs and unmaps them before returning, so
    the pages it touched leave this process's resident memory (the page cache
    keeps them, which the kernel frees at will).  Picklable: it holds a path.
    """

    def __init__(self, path, offset: int, shape, dtype):
        self.path, self.offset, self.shape = str(path), int(offset), tuple(shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        rows = key[0] if key else slice(None)
        start, stop, step = rows.indices(self.shape[0])
        stop = max(start, stop)
        row_bytes = self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))
        shape = (stop - start,) + self.shape[1:]
        if stop == start or row_bytes == 0:
            return np.empty(shape, dtype=self.dtype)[(slice(None, None, step),) + key[1:]]
        band = np.memmap(
            self.path, dtype=self.dtype, mode="r", shape=shape, offset=self.offset + start * row_bytes
        )
        block = np.array(band[(slice(None, None, step),) + key[1:]])
        del band  # the last reference: unmapped here
        return block


class NpyWriter:
    """A block target on disk at a byte offset (C order, ``dtype``): ``target[rows, cols] =
    block`` writes through a memory map of the block's rows only.  Picklable (it holds a
    path), so the process that computed a block writes it: a Dask worker, or a thread here."""

    def __init__(self, path, offset: int, shape, dtype=np.float32):
        self.path, self.offset, self.shape = str(path), int(offset), tuple(shape)
        self.dtype = np.dtype(dtype)

    def __setitem__(self, key, value):
        rows = key[0]
        start, stop, _ = rows.indices(self.shape[0])
        if stop <= start:
            return
        row_bytes = self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))
        band = np.memmap(
            self.path,
            dtype=self.dtype,
            mode="r+",
            shape=(stop - start,) + self.shape[1:],
            offset=self.offset + start * row_bytes,
        )
        band[(slice(None),) + tuple(key[1:])] = value
        band.flush()
        del band  # the last reference: unmapped here


class Source:
    """A huge input opened for chunked reading: any array-like ``reader`` (H x W [x S]) read
    region by region and converted to float32 H x W x C as ``LoadedImage.rows`` converts.

    Pass it to :func:`filter2d_chunked` and friends in place of a dask array: each
    output block then reads exactly its own (padded) region, in its own task.
    ``array`` is the same image as a lazy dask array, for other uses.

    Picklable, so that Dask workers read their blocks themselves: a reader that cannot
    travel (an open TIFF) is left behind, and ``reopen()`` (a module-level function and
    its path) opens it again where the source lands, on its first read.
    """

    def __init__(
        self,
        reader,
        *,
        name: str,
        depth: str,
        fmt: str,
        scale: float = 1.0,
        gray: bool = False,
        alpha: bool = False,
        check_finite: bool = True,
        chunk=DEFAULT_CHUNK,
        closer=None,
        reopen=None,
        channel_axis: bool = False,
    ):
        self.reader, self.name, self.depth, self.format = reader, name, depth, fmt
        self.channel_axis = channel_axis  # an H x W x C array (even C = 1): .npy/.zarr outputs keep the axis
        self.scale, self.gray, self.alpha, self.check_finite = scale, gray, alpha, check_finite
        self.chunk = as_pair(chunk, "chunk", minimum=1)
        self._closer = closer
        self._reopen = reopen
        self._lock = threading.Lock()
        stored = tuple(reader.shape) + (1,) * (3 - len(reader.shape))
        channels = stored[2] - (1 if alpha else 0)
        self.shape = (int(stored[0]), int(stored[1]), 1 if gray and channels >= 3 else channels)

    @property
    def size(self):
        return self.shape[0], self.shape[1]

    @property
    def channels(self):
        return self.shape[2]

    @property
    def ndim(self):
        return 3

    def read(self, r0, r1, c0, c1):
        """Rows ``r0..r1``, columns ``c0..c1`` as float32 H' x W' x C."""
        block = np.asarray(self._opened()[r0:r1, c0:c1])
        if block.ndim == 2:
            block = block[:, :, None]
        if self.alpha:
            block = block[:, :, :-1]
        if self.check_finite:
            check_values(block, f"input {self.name!r}")  # the rule load_image applies
        return to_float(block, self.scale, self.gray)

    def __getitem__(self, key):  # for dask.array.from_array: slices of rows and columns
        rows, cols = (tuple(key) + (slice(None), slice(None)))[:2]
        r0, r1, _ = rows.indices(self.shape[0])
        c0, c1, _ = cols.indices(self.shape[1])
        return self.read(r0, max(r0, r1), c0, max(c0, c1))

    @property
    def dtype(self):
        return np.dtype(np.float32)

    @property
    def array(self):
        import dask.array as da

        return da.from_array(
            self, chunks=self.chunk + (self.channels,), lock=False, asarray=False, meta=_empty_meta()
        )

    def _opened(self):
        if self.reader is None:
            with self._lock:  # the threads of one worker open it once
                if self.reader is None:
                    self.reader, self._closer = self._reopen()
        return self.reader

    def __getstate__(self):
        state = {**self.__dict__, "_lock": None}
        if self._reopen is not None:
            state["reader"], state["_closer"] = None, None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state, _lock=threading.Lock())

    def close(self):
        if self._closer is not None:
            self._closer()
            self._closer = None


def _empty_meta():
    return np.empty((0, 0, 0), dtype=np.float32)


def import_dask():
    """``dask.array``, or a ConvcliError naming the extra."""
    try:
        import dask.array as da
    except ImportError:
        raise ConvcliError(f"this image {MISSING_EXTRA}") from None
    return da


def read_header(path):
    """``(height, width, channels, dtype)`` of an ``.npy``, TIFF, ``.zarr`` or PNG input, from its
    header (channels as the reader gives them, alpha apart; a PNG's dtype is float32, the values
    its decoded blocks hold)."""
    suffix, name = suffix_of(path), str(path)
    if not exists(path, "input"):
        raise ConvcliError(f"input {name!r}: no such file")
    if suffix != ".zarr":
        check_input_file(path)  # a FIFO named x.npy would block: refused unopened
    if suffix == ".npy":
        header = read_npy_header(path, name)
        return (*header.size, header.channels, header.dtype)
    if suffix == ".png":  # decoded whole by the in-memory decoder (DecodedReader)
        return (*read_layout(path), np.dtype(np.float32))
    if suffix in (".tif", ".tiff"):
        layout = tiff_layout(path, f"input {name!r}")
        shape, dtype = layout.shape[:2] + (layout.samples - layout.alpha,), np.dtype(layout.dtype)
        if not reads_in_place(path, layout):  # decoded whole: the channels as Pillow gives them
            shape, dtype = layout.shape[:2] + read_layout(path)[2:], np.dtype(np.float32)
    elif suffix == ".zarr":
        array = _open_zarr_array(path)
        shape, dtype = array.shape, array.dtype
    else:
        raise ConvcliError(f"input {name!r}: chunked processing reads .npy, .tif, .tiff and .zarr")
    if len(shape) not in (2, 3) or 0 in shape:
        raise ConvcliError(f"input {name!r}: must be H x W or H x W x C, got shape {tuple(shape)}")
    if dtype.kind not in "biuf":
        raise ConvcliError(f"input {name!r}: must hold numbers, got dtype {dtype}")
    return int(shape[0]), int(shape[1]), int(shape[2]) if len(shape) == 3 else 1, dtype


def open_source(path, *, chunk=DEFAULT_CHUNK, gray: bool = False) -> Source:
    """Open an ``.npy``, TIFF or ``.zarr`` input for chunked reading (see :class:`Source`).

    Values as :func:`convcli.io.images.load_image` gives them: ``.npy`` (and
    ``.zarr``) as stored, converted to float32; TIFF samples by
    :func:`convcli.io.images.sample_scale` (uint8 / 255, int16 / 32767, floats as
    stored, ...); NaN, infinity and floats beyond float32 refused as each block is
    read (:func:`convcli.io.images.check_values`).  TIFF alpha (an extra sample
    marked as alpha) is split off and not processed.  ``gray`` converts three or
    more channels to luma.
    ``.npy`` is read through memory maps of the rows a block needs; TIFF and PNG as
    :func:`open_tiff` and :class:`DecodedReader` say.
    """
    import_dask()
    name, suffix = str(path), suffix_of(path)
    if suffix not in CHUNK_INPUTS:
        raise ConvcliError(f"input {name!r}: chunked processing reads .npy, .tif, .tiff and .zarr")
    if not exists(path, "input"):  # a local path, or a .zarr store's URL
        raise ConvcliError(f"input {name!r}: no such file")
    if suffix != ".zarr":
        check_input_file(path)
    common = {"name": name, "gray": gray, "chunk": chunk}
    if suffix == ".npy":
        header = read_npy_header(path, name)
        if header.fortran_order and min(header.size) > 1:
            raise ConvcliError(
                f"input {name!r}: a Fortran-ordered .npy cannot be read in chunks; save it in C order"
            )
        reader = RawReader(path, header.offset, header.size + (header.channels,), header.dtype)
        return Source(reader, depth="float", fmt="NPY", channel_axis=len(header.shape) == 3, **common)
    if suffix == ".zarr":
        array = _open_zarr_array(path)
        return Source(array, depth="float", fmt="ZARR", channel_axis=len(array.shape) == 3, **common)
    if suffix == ".png":
        reader = DecodedReader(path)
        return Source(
            reader, depth=reader.depth, fmt="PNG", alpha=reader.alpha, closer=reader.close, **common
        )
    reader, depth, scale, alpha = open_tiff(path)
    return Source(reader, depth=depth, fmt="TIFF", scale=scale, alpha=alpha, closer=reader.close, **common)


def open_tiff(path):
    """``(reader, depth, scale, alpha)`` of a TIFF read in chunks, with the values the in-memory
    path gives: the reader of :mod:`convcli.io.tiff` (the in-memory path's own decoder for the
    samples Pillow does not give as stored; the stored samples, which Pillow gives too, for
    plain gray, RGB and RGBA), or, for a TIFF that decoder would read otherwise than the
    in-memory path (palette, CMYK, YCbCr, inverted gray, JPEG, or a compression tifffile
    cannot decode here), :class:`DecodedReader`: the in-memory decoder itself, the whole page
    decoded once."""
    name = str(path)
    where = f"input {name!r}"
    layout = tiff_layout(path, where)
    if reads_in_place(path, layout):
        depth, scale = sample_scale(layout.dtype, where)  # the mapping load_image uses
        return TiffReader(path, layout), depth, scale, layout.alpha
    reader = DecodedReader(path)
    return reader, reader.depth, 1.0, reader.alpha


def reads_in_place(path, layout) -> bool:
    """Whether :class:`convcli.io.tiff.TiffReader` reads this TIFF block by block with the values
    the in-memory path gives: tifffile decodes its tiles or strips here, and the in-memory path
    reads it with the same decoder (samples Pillow does not give as stored) or with Pillow on a
    plain page (gray, RGB, RGBA: Pillow gives the stored samples)."""
    return layout.decodable and (not tiff_sample_type(path)[1] or layout.plain())


class DecodedReader:
    """An image read whole by :func:`convcli.io.images.load_image`, served region by region as
    float32 values (alpha, if any, as its last channel): for files the chunked readers cannot
    read in place with the same values.  Picklable (a path); decoded once per process, however
    many copies of the reader it holds (see :func:`decoded`)."""

    def __init__(self, path):
        self.path = str(path)
        loaded = decoded(self.path)
        height, width = loaded.size
        self.shape = (height, width, loaded.raw.shape[2] + (loaded.alpha is not None))
        self.depth, self.alpha, self.ndim = loaded.depth, loaded.alpha is not None, 3
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, key):
        loaded = decoded(self.path)
        rows, cols = (tuple(key) + (slice(None), slice(None)))[:2]
        values = to_float(loaded.raw[rows, cols], loaded.scale, False)
        if loaded.alpha is None:
            return values
        alpha = to_float(loaded.alpha[rows, cols, None], loaded.scale, False)
        return np.concatenate([values, alpha], axis=2)

    def close(self):
        forget_decoded(self.path)


_DECODED_LOCK = threading.Lock()
_DECODED: dict = {}  # {(path, mtime, size): LoadedImage}: one image at most, the last decoded


def decoded(path):
    """``load_image(path)``, decoded once per process for every :class:`DecodedReader` of it
    (a Dask worker may hold several copies of one reader); the image decoded before it is
    dropped first, so that two are never held.  Kept until the next image is decoded here or a
    reader of it is closed (:func:`forget_decoded`)."""
    info = os.stat(path)
    key = (os.path.realpath(path), info.st_mtime_ns, info.st_size)
    with _DECODED_LOCK:
        if key not in _DECODED:
            _DECODED.clear()
            _DECODED[key] = load_image(path, max_pixels=None)
        return _DECODED[key]


def forget_decoded(path) -> None:
    real = os.path.realpath(path)
    with _DECODED_LOCK:
        for key in [k for k in _DECODED if k[0] == real]:
            del _DECODED[key]


def reader_buffer_bytes(path) -> int:
    """Bytes the chunked reader of ``path`` decodes at once besides the block it reads: a
    TIFF's tile or strip, a ``.zarr`` chunk (0 for ``.npy`` and uncompressed TIFF, read
    through the rows a block needs)."""
    suffix = suffix_of(path)
    if suffix in (".tif", ".tiff"):
        layout = tiff_layout(path, f"input {str(path)!r}")
        if reads_in_place(path, layout):
            return layout.segment_bytes
        return _decoded_bytes(*layout.shape)
    if suffix == ".png":
        return _decoded_bytes(*read_layout(path))
    if suffix == ".zarr":
        array = _open_zarr_array(path)
        return int(np.prod(array.chunks, dtype=np.int64)) * np.dtype(array.dtype).itemsize
    return 0


def _decoded_bytes(height: int, width: int, samples: int) -> int:
    """What :class:`DecodedReader` holds, as :func:`reader_buffer_bytes` counts it: Pillow's
    buffers, the stored samples and their float32 copy, once for all threads (the caller
    counts a buffer twice a thread)."""
    return (PILLOW_DECODE_BYTES + 4 * samples) * height * width // (2 * usable_cores())


def _open_zarr_array(path):
    try:
        import zarr
    except ImportError:
        raise ConvcliError(f"input {str(path)!r}: .zarr needs zarr: pip install zarr") from None
    try:
        stored = zarr.open(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001
        raise ConvcliError(f"input {str(path)!r}: not a readable Zarr array ({describe(exc)})") from None
    if not hasattr(stored, "shape"):
        raise ConvcliError(f"input {str(path)!r}: is a Zarr group; name one of its arrays")
    return stored


# ------------------------------------------------------------------ writers


@contextmanager
def _own_threads(compute: dict):
    """``compute`` on a thread pool of its own when it names dask's threaded scheduler, shut
    down as the block ends.  After an exception (Ctrl-C, SIGTERM) the blocks already running
    finish and the queued ones are dropped before the caller removes its temporary output, so
    no thread writes into it afterwards (or makes a ``.zarr`` folder again)."""
    if compute.get("scheduler") != "threads" or compute.get("pool") is not None:
        yield compute
        return
    from concurrent.futures import ThreadPoolExecutor

    workers = compute.get("num_workers") or usable_cores()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="convcli-blocks")
    try:
        yield {**compute, "pool": pool}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class ThreadedBlocks:
    """Runs block graphs on this process's threads (dask's threaded scheduler, on a pool of
    its own, see :func:`_own_threads`); ``advance()`` is called as each written block ends.

    The writers below take any object with this interface: ``write(array, skip)`` computes
    every chunk of ``array`` (each writes its block, :func:`write_blocks`) but those whose
    block index is in ``skip``, and returns once all are written, or raises once none is
    running any more; ``values(*arrays)`` computes
    small results (a minimum, a maximum).  :class:`convcli.run.chunked.ClusterBlocks` does
    the same on a Dask cluster."""

    def __init__(self, workers: int | None = None, advance=None):
        self.compute = {"scheduler": "threads", "num_workers": workers}
        self.advance = advance

    def write(self, array, skip=()) -> None:
        import dask
        from dask.callbacks import Callback

        advance = self.advance

        class Count(Callback):
            def _posttask(self, key, result, dsk, state, worker_id):
                if advance is not None and isinstance(key, tuple) and str(key[0]).startswith(WRITE_PREFIX):
                    advance()

        with _own_threads(self.compute) as compute, Count():
            dask.compute(*block_tasks(array, skip), **compute)

    def values(self, *arrays):
        import dask

        with _own_threads(self.compute) as compute:
            return dask.compute(*arrays, **compute)


WRITE_PREFIX = "convcli-write-"
DONE_FOLDER = ".convcli-done"  # in a .zarr being written: one empty file per block written


def block_tasks(array, skip=()):
    """One delayed task per chunk of ``array`` (its graph culled to what that chunk needs),
    leaving out the block indices in ``skip``."""
    tasks = array.to_delayed().ravel()
    return [task for index, task in zip(np.ndindex(*array.numblocks), tasks) if index not in skip]


def _write_block(block, target, block_info=None):
    """Store ``block`` at its place in ``target``; a one-element array says it is done."""
    where = tuple(slice(start, stop) for start, stop in block_info[0]["array-location"])
    target[where] = block
    return np.ones((1,) * block.ndim, dtype=np.int8)


def write_blocks(data, target):
    """A lazy array of one element per block of ``data``: computing an element writes that
    block into ``target`` (``target[rows, cols] = block``) in the process that computed it,
    a Dask worker or a thread here, so no block travels and none is held once written."""
    from dask.base import tokenize

    return data.map_blocks(
        _write_block,
        target,
        dtype=np.int8,
        chunks=tuple((1,) * len(c) for c in data.chunks),
        meta=np.empty((0,) * data.ndim, dtype=np.int8),
        name=WRITE_PREFIX + tokenize(data.name, getattr(target, "path", id(target))),
    )


def write_npy(path, result, blocks, keep_axis: bool = False) -> None:
    """``result`` (H x W x C, float32) as an ``.npy``, block by block (``blocks``:
    :class:`ThreadedBlocks` or its like): H x W for one channel, unless ``keep_axis`` (the
    input was H x W x 1: so is the output)."""
    flat = result.shape[2] == 1 and not keep_axis
    shape = result.shape[:2] if flat else result.shape
    with atomic_file(path) as tmp:
        target = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        offset = target.offset
        del target  # the header is written; blocks are written through maps of their own rows
        data = result[:, :, 0] if flat else result
        blocks.write(write_blocks(data, NpyWriter(os.path.abspath(tmp), offset, shape)))


def regular(data):
    """``data`` with equal chunks (the last may be shorter), as a Zarr store's chunks must be,
    so that no two blocks write into one chunk."""
    if all(len(set(c[:-1])) <= 1 and c[-1] <= c[0] for c in data.chunks):
        return data
    return data.rechunk(data.chunksize)


class ZarrBlocks:
    """A block target in a ``.zarr`` array being written: each block, once stored, leaves an
    empty marker ``DONE_FOLDER/ROW.COL`` (its first row and column), so that a run killed
    midway can be resumed from the blocks it finished.  Picklable (a Zarr array and a path)."""

    def __init__(self, array, folder):
        self.array, self.folder = array, str(folder)

    def __setitem__(self, key, value):
        self.array[key] = value
        rows, cols = key[0], key[1]
        with open(os.path.join(self.folder, DONE_FOLDER, f"{rows.start}.{cols.start}"), "w"):
            pass


def resumable_name(path, key: str) -> str:
    """The temporary folder of a ``.zarr`` output, named after what is written into it
    (``key``, a hash of the input and the operation): ``.NAME.KEY.tmp`` beside ``path``."""
    path = Path(path)
    name = path.name[: max(1, 200 - len(key))]
    return str(path.parent / f".{name}.{key}.tmp")


def _finished_blocks(tmp, data) -> set:
    """Block indices of ``data`` that a killed run of the same key wrote whole into ``tmp``
    (empty when ``tmp`` is not a Zarr array of the same shape and chunks)."""
    import zarr

    try:
        stored = zarr.open_array(tmp, mode="r")
        same = tuple(stored.shape) == tuple(data.shape) and tuple(stored.chunks) == tuple(data.chunksize)
        names = os.listdir(os.path.join(tmp, DONE_FOLDER))
    except Exception:  # noqa: BLE001  (no such folder, or not a Zarr array: start afresh)
        return set()
    if not same:
        return set()
    starts = [{int(n): i for i, n in enumerate(np.cumsum((0,) + c[:-1]))} for c in data.chunks]
    done = set()
    for name in names:
        try:
            row, col = (int(part) for part in name.split("."))
            done.add((starts[0][row], starts[1][col]) + (0,) * (data.ndim - 2))
        except (KeyError, ValueError):
            continue
    return done


def write_zarr(path, result, blocks, keep_axis: bool = False, resume_key: str | None = None) -> None:
    """``result`` as a ``.zarr`` array (float32; H x W for one channel), one Zarr chunk per
    block, written by the process that computed the block into a temporary folder beside
    ``path``, renamed into place once whole.

    With ``resume_key`` (a hash of the input and the operation) the temporary folder is named
    after it, and a run killed outright (SIGKILL, out of memory, a lost machine) leaves it for
    the next identical run to resume: the blocks marked written are not computed again.  An
    exception, Ctrl-C or SIGTERM removes it, as every temporary."""
    try:
        import zarr
    except ImportError:
        raise ConvcliError(f"output {str(path)!r}: .zarr needs zarr: pip install zarr") from None
    data = regular(result[:, :, 0] if result.shape[2] == 1 and not keep_axis else result)
    if is_url(path):  # a store named by URL: written under a temporary name, then moved
        with atomic_store(path) as tmp:
            target = zarr.open_array(tmp, mode="w", shape=data.shape, chunks=data.chunksize, dtype=np.float32)
            blocks.write(write_blocks(data, target))
        return
    tmp = old = None
    try:
        done: set = set()
        with deferred():  # no signal between the name's making and its being kept here
            if resume_key is None:
                tmp = temporary_name(path)
                os.unlink(tmp)  # a folder takes its name
            else:
                tmp = resumable_name(path, resume_key)
        tmp = os.path.abspath(tmp)
        if resume_key is not None:
            done = _finished_blocks(tmp, data)
        if done:
            target = zarr.open_array(tmp, mode="r+")
        else:
            if os.path.isdir(tmp):
                shutil.rmtree(tmp)
            elif os.path.lexists(tmp):
                os.unlink(tmp)
            target = zarr.open_array(tmp, mode="w", shape=data.shape, chunks=data.chunksize, dtype=np.float32)
        os.makedirs(os.path.join(tmp, DONE_FOLDER), exist_ok=True)
        blocks.write(write_blocks(data, ZarrBlocks(target, tmp)), skip=done)
        shutil.rmtree(os.path.join(tmp, DONE_FOLDER))
        with deferred():  # the swap is never left halfway
            if os.path.exists(path):  # a folder cannot be renamed over a folder: move the old one aside
                old = temporary_name(path)
                os.unlink(old)  # the name only: the old folder moves there
                os.replace(path, old)
            os.replace(tmp, path)
            committed()
    except BaseException as exc:
        if tmp is None:
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not os.path.exists(path):
            os.replace(old, path)
            old = None
        if isinstance(exc, OSError):
            raise ConvcliError(f"output {str(path)!r}: cannot be written ({describe(exc)})") from None
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_tiff(path, result, value_map, requested, source_depth, blocks, bounds=None, count=None):
    """An uncompressed TIFF, its samples in one contiguous run, each block mapped to samples
    and written through a memory map of its own rows by the process that computed it (no
    band of rows is ever gathered); returns (depth, map) as reported.

    ``bounds``: the values shown black and white where the map fixes them (``range``,
    ``offset``; ``normalize`` takes the result's min and max); ``count`` (a ClipCount) adds up
    the clipped values as the blocks are encoded (in this process: on a Dask cluster each
    worker counts its own blocks, and those counts are not gathered)."""
    tifffile = import_tifffile(f"output {str(path)!r}", "a TIFF written in chunks needs tifffile")
    height, width, channels = (int(n) for n in result.shape)
    depth = choose_depth(path, requested, source_depth, channels)
    if depth != "float" and channels > 4:
        raise ConvcliError(f"output {str(path)!r}: {channels} channels cannot be written as TIFF; use .npy")
    if depth != "float" and value_map == "normalize":
        low, high = blocks.values(result.min(), result.max())
        bounds = (float(low), float(high))
    if depth == "float":
        dtype, samples = np.float32, 1
    else:
        dtype, samples = (np.uint16, 1) if depth == "16" else (np.uint8, channels)
    shape = (height, width) if samples == 1 else (height, width, samples)
    data = result.map_blocks(
        _tiff_samples,
        depth,
        value_map,
        bounds,
        samples,
        count,
        dtype=dtype,
        chunks=result.chunks[:2] + (((samples,),) if samples > 1 else ()),
        drop_axis=None if samples > 1 else 2,
        meta=np.empty((0,) * len(shape), dtype=dtype),
    )
    photometric = "rgb" if samples in (3, 4) else "minisblack"
    extras = {"extrasamples": [0]} if samples in (2, 4) else {}  # extra samples are data, not alpha
    big = height * width * samples * np.dtype(dtype).itemsize > 2**32 - 2**25
    with atomic_file(path) as tmp:
        with quiet_tifffile_log():
            target = tifffile.memmap(
                tmp, shape=shape, dtype=dtype, photometric=photometric, bigtiff=big, **extras
            )
        offset = target.offset
        del target  # the header is written; blocks are written through maps of their own rows
        blocks.write(write_blocks(data, NpyWriter(os.path.abspath(tmp), offset, shape, dtype)))
    return depth, None if depth == "float" else value_map


def _tiff_samples(rows, depth, value_map, bounds, samples, count):
    """One block's float32 values as the TIFF's samples (:func:`convcli.io.images.to_samples`)."""
    if depth == "float":
        return np.ascontiguousarray(rows[:, :, 0], dtype=np.float32)
    band = to_samples(rows, depth, value_map, bounds, count)
    return band[:, :, 0] if samples == 1 else band
