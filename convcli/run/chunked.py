"""One huge image, in chunks: filter, pool and upsample on a ``dask.array``.

The functions here compute exactly what :func:`~convcli.engine.filtering.filter2d`,
:func:`~convcli.engine.pooling.pool2d` and :func:`~convcli.engine.transposed.conv_transpose2d`
compute in memory, bit for bit, on an H x W (x C) dask array chunked along H
and W.  The output is cut into blocks; each block is computed by the in-memory
function from exactly the input rows and columns its windows read:

* filter and pool: the input is padded explicitly first (``dask.array.pad``,
  whose ``reflect``, ``edge`` and ``wrap`` are numpy's and so PyTorch's
  ``reflect``, ``replicate`` and ``circular``; pooling pads with -inf, +inf
  or 0 as ``pool2d`` does).  Output rows ``a..b`` read padded rows
  ``a*stride .. (b-1)*stride + dilation*(k-1) + 1``: the block's own rows,
  which start on a stride boundary, plus a one-sided halo of
  ``dilation*(k-1) + 1 - stride`` rows.  The block is then the in-memory
  function with no padding and floor rounding, which makes the same float
  operations in the same order as the whole-image call: the results are
  identical, not merely close.  Mean pooling divides each block's sums by the
  slice of the whole image's divisor (``count_include_pad`` and the ceil-mode
  edge windows come out as in memory).
* upsample: output rows ``a..b`` receive from the input rows
  ``ceil((a + p - dilation*(k-1)) / s) .. floor((b + p - 1) / s)``; the block
  is the transposed convolution of those rows, placed and cropped.

A block reads ``chunk`` input rows and columns (output blocks of
``chunk // stride`` for filter and pool, ``chunk * stride`` for upsample).
Where a block's rows come from depends on the input:

* a dask (or numpy) array is padded with ``dask.array.pad`` and each block
  takes its slice of that, halo included (a halo may span several chunks);
* a file opened with :func:`open_source` is read block by block: each block's
  task reads exactly its padded region (the index arithmetic of
  :func:`convcli.engine.padding.pad_rows`, as the banded pipeline does), so blocks
  share nothing and the memory in flight is about one block per thread
  (its padded input, its output and one temporary: roughly
  ``3 * 4 * (chunk + halo)**2 * channels`` bytes), whatever the image size.

:func:`process_huge` runs one operation from a file to a file without ever
holding the image: ``.npy`` is read and written through memory maps of one
block's rows at a time (``np.lib.format.open_memmap`` makes the output),
TIFF is read through tifffile (a memory map when the file is uncompressed and
contiguous, else tile by tile through its Zarr store) and written as a tiled
TIFF, and ``.zarr`` stores are read and written when zarr is installed.  Every
output goes to a temporary name in the target folder and is renamed into
place, so it is whole or absent.

When the CLI takes this path (see :func:`wants_chunked`): an ``.npy``, TIFF or
``.zarr`` input whose in-memory working set (``runner.estimate_memory``:
about four bytes per channel for three input-sized and two output-sized
arrays) exceeds ``--max-memory`` (default: half the machine's memory), to an
``.npy``, TIFF or ``.zarr`` output, when dask is installed; or any such pair
when a block size is given explicitly (``RunOptions.chunk``).  Without dask
nothing changes: such an image is refused by ``--max-memory`` as before.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConvcliError, describe
from ..geometry.sizes import (as_pair, conv_output_size, pool_output_size, resolve_padding,
                       sides_json, tconv_output_size)
from ..io.images import atomic_file, temporary_name
from .batch import CHUNK_INPUTS  # runner checks it before importing this module

DEFAULT_CHUNK = 2048
TILE = 256  # the side of a tiled TIFF's tiles
CHUNK_OUTPUTS = (".npy", ".tif", ".tiff", ".zarr")
MISSING_EXTRA = "needs the dask extra to be processed in chunks: pip install 'convcli[dask]'"
_NUMPY_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
_LUMA = (0.299, 0.587, 0.114)


# ------------------------------------------------------------ the operations


def filter2d_chunked(image, kernel, *, stride=1, padding=0, dilation=1, pad_mode="zeros",
                     mode="correlation", chunk=None):
    """:func:`convcli.engine.filtering.filter2d` on a dask array; returns a lazy dask array.

    ``image`` is a dask (or numpy) array, H x W or H x W x C; ``chunk`` is the
    input rows and columns per block, an int or ``(height, width)`` (default:
    the image's own chunk size).  Arguments and result are those of
    ``filter2d``.
    """
    from ..engine.filtering import as_kernel, check_mode
    from ..engine.padding import check_pad_mode, check_pad_sizes

    x = _as_source(image, chunk)
    k = as_kernel(kernel)
    check_mode(mode)
    check_pad_mode(pad_mode)
    stride = as_pair(stride, "stride", minimum=1)
    dilation = as_pair(dilation, "dilation", minimum=1)
    size = x.shape[:2]
    sides = resolve_padding(padding, size, k.shape, stride, dilation)
    out_hw = conv_output_size(size, k.shape, stride, sides, dilation)
    check_pad_sizes(size, sides, pad_mode)
    padded = _pad(x, sides, pad_mode, 0.0)
    rows = _window_blocks(out_hw[0], stride[0], dilation[0] * (k.shape[0] - 1) + 1,
                          _per_block(_chunk_of(x, chunk)[0], stride[0]))
    cols = _window_blocks(out_hw[1], stride[1], dilation[1] * (k.shape[1] - 1) + 1,
                          _per_block(_chunk_of(x, chunk)[1], stride[1]))
    return _tile(padded, rows, cols, _filter_block, (k, stride, dilation, mode))


def pool2d_chunked(image, size=2, *, stride=None, padding=0, dilation=1, ceil_mode=False,
                   op="max", count_include_pad=True, chunk=None):
    """:func:`convcli.engine.pooling.pool2d` on a dask array; see :func:`filter2d_chunked`."""
    import numpy as np

    from ..engine.pooling import _divisor, pool_parameters

    size, stride, padding, dilation = pool_parameters(op, size, stride, padding, dilation)
    x = _as_source(image, chunk)
    height, width = x.shape[:2]
    out_h, out_w = pool_output_size((height, width), size, stride, padding, dilation, ceil_mode)
    (kh, kw), (sy, sx), (ph, pw), (dy, dx) = size, stride, padding, dilation
    extra_h = max(0, (out_h - 1) * sy + dy * (kh - 1) + 1 - height - ph)
    extra_w = max(0, (out_w - 1) * sx + dx * (kw - 1) + 1 - width - pw)
    fill = {"max": -np.inf, "min": np.inf, "mean": 0.0}[op]
    padded = _pad(x, (ph, extra_h, pw, extra_w), "zeros", fill)
    chunk_hw = _chunk_of(x, chunk)
    rows = _window_blocks(out_h, sy, dy * (kh - 1) + 1, _per_block(chunk_hw[0], sy))
    cols = _window_blocks(out_w, sx, dx * (kw - 1) + 1, _per_block(chunk_hw[1], sx))
    divisors = None
    if op == "mean":
        divisors = (_divisor(height, kh, sy, ph, out_h, count_include_pad),
                    _divisor(width, kw, sx, pw, out_w, count_include_pad))
    return _tile(padded, rows, cols, _pool_block, (size, stride, dilation, op, divisors))


def conv_transpose2d_chunked(image, kernel, *, stride=1, padding=0, output_padding=0,
                             dilation=1, mode="correlation", chunk=None):
    """:func:`convcli.engine.transposed.conv_transpose2d` on a dask array; see :func:`filter2d_chunked`.

    ``chunk`` counts input rows and columns: an output block is ``chunk * stride`` long.
    """
    from ..engine.filtering import as_kernel, check_mode

    x = _as_source(image, chunk)
    k = as_kernel(kernel)
    check_mode(mode)
    stride = as_pair(stride, "stride", minimum=1)
    padding = as_pair(padding, "padding", minimum=0)
    output_padding = as_pair(output_padding, "output-padding", minimum=0)
    dilation = as_pair(dilation, "dilation", minimum=1)
    out_hw = tconv_output_size(x.shape[:2], k.shape, stride, padding, output_padding, dilation)
    chunk_hw = _chunk_of(x, chunk)
    axes = [_scatter_blocks(out_hw[i], x.shape[i], stride[i], padding[i],
                            dilation[i] * (k.shape[i] - 1) + 1, chunk_hw[i] * stride[i])
            for i in (0, 1)]
    return _tile(_pad(x, (0, 0, 0, 0), "zeros", 0.0), axes[0], axes[1], _tconv_block,
                 (k, stride, dilation, mode))


def apply_chunked(op, image, chunk=None):
    """What :meth:`convcli.run.batch.Operation.apply` returns, as ``(lazy dask result, extra report)``."""
    kw = dict(op.kwargs)
    if op.name == "filter":
        kernel = kw.pop("kernel")
        sides = resolve_padding(kw.pop("padding"), image.shape[:2], kernel.shape,
                                as_pair(kw["stride"], "stride", minimum=1),
                                as_pair(kw["dilation"], "dilation", minimum=1))
        return (filter2d_chunked(image, kernel, padding=sides, chunk=chunk, **kw),
                {"padding": sides_json(sides)})
    if op.name == "pool":
        return pool2d_chunked(image, kw.pop("size"), chunk=chunk, **kw), {}
    return conv_transpose2d_chunked(image, kw.pop("kernel"), chunk=chunk, **kw), {}


# ---------------------------------------------------------- block machinery


def _as_source(image, chunk):
    """A :class:`Source` as it is; anything else as a float32 dask array (channels in one chunk)."""
    import dask.array as da
    import numpy as np

    if isinstance(image, Source):
        return image
    if not isinstance(image, da.Array):
        array = np.asarray(image)
        image = da.from_array(array, chunks=_input_chunks(array.shape, chunk))
    if image.ndim not in (2, 3):
        raise ConvcliError(f"image: must be H x W or H x W x C, got shape {image.shape}")
    if 0 in image.shape:
        raise ConvcliError(f"image: is empty (shape {image.shape})")
    if image.dtype.kind not in "biuf":
        raise ConvcliError(f"image: must hold numbers, got dtype {image.dtype}")
    if image.ndim == 3 and len(image.chunks[2]) > 1:
        image = image.rechunk({2: -1})  # channels stay together
    return image.astype(np.float32)


def _input_chunks(shape, chunk):
    ch, cw = as_pair(chunk if chunk is not None else DEFAULT_CHUNK, "chunk", minimum=1)
    return (ch, cw) + tuple(shape[2:])


def _chunk_of(x, chunk):
    if chunk is not None:
        return as_pair(chunk, "chunk", minimum=1)
    if isinstance(x, Source):
        return DEFAULT_CHUNK, DEFAULT_CHUNK
    return int(x.chunksize[0]), int(x.chunksize[1])


def _per_block(chunk: int, stride: int) -> int:
    """Output rows per block so that a block reads about ``chunk`` input rows."""
    return max(1, chunk // stride)


def _pad(x, sides, mode: str, fill: float):
    """The padded image as a provider of one-chunk pieces (``mode`` as PyTorch names it;
    ``zeros`` pads with ``fill``)."""
    if isinstance(x, Source):
        return _SourceRegions(x, sides, mode, fill)
    return _DaskRegions(x, sides, mode, fill)


class _DaskRegions:
    """Pieces of ``dask.array.pad(x)``: numpy's reflect/edge/wrap are PyTorch's reflect/replicate/circular."""

    def __init__(self, x, sides, mode, fill):
        import dask.array as da

        top, bottom, left, right = sides
        self.tail = tuple(x.shape[2:])
        if not any(sides):
            self.padded = x
            return
        widths = [(top, bottom), (left, right)] + [(0, 0)] * (x.ndim - 2)
        if mode == "zeros":
            self.padded = da.pad(x, widths, mode="constant", constant_values=fill)
        else:
            self.padded = da.pad(x, widths, mode=_NUMPY_MODE[mode])

    def piece(self, lo, hi, clo, chi):
        return _merged(self.padded[lo:hi, clo:chi])


class _SourceRegions:
    """Pieces read straight from a file-backed :class:`Source`: one task per block, no shared
    chunks, so the memory in flight is one block per thread whatever the image size."""

    def __init__(self, source, sides, mode, fill):
        self.source, self.sides, self.mode, self.fill = source, tuple(sides), mode, fill
        self.tail = (source.channels,)

    def piece(self, lo, hi, clo, chi):
        import dask.array as da
        import numpy as np
        from dask import delayed

        task = delayed(_read_region, pure=False)(self.source, lo, hi, clo, chi, self.sides,
                                                  self.mode, self.fill)
        return da.from_delayed(task, (hi - lo, chi - clo) + self.tail, dtype=np.float32)


def _read_region(source, lo, hi, clo, chi, sides, mode, fill):
    """Rows ``lo..hi`` and columns ``clo..chi`` of the padded image, read run by run."""
    import numpy as np

    from ..engine.padding import pad_rows

    height, width = source.size
    top, _, left, _ = sides
    row_index, row_mask = pad_rows(height, lo - top, hi - top, mode)
    col_index, col_mask = pad_rows(width, clo - left, chi - left, mode)
    out = np.empty((hi - lo, chi - clo, source.channels), dtype=np.float32)
    if row_mask.any() or col_mask.any():
        out.fill(fill)
    col_runs = _runs(col_index, col_mask)
    for a, b, first_row in _runs(row_index, row_mask):
        for c, d, first_col in col_runs:
            out[a:b, c:d] = source.read(first_row, first_row + b - a, first_col, first_col + d - c)
    return out


def _runs(index, mask):
    """``(start, stop, first source index)`` of each run of consecutive source indices
    (masked positions, the zeros padding, are skipped)."""
    import numpy as np

    positions = np.flatnonzero(~mask)
    if not len(positions):
        return []
    values = index[positions]
    cuts = np.flatnonzero((np.diff(positions) != 1) | (np.diff(values) != 1)) + 1
    starts, stops = np.r_[0, cuts], np.r_[cuts, len(positions)]
    return [(int(positions[s]), int(positions[e - 1]) + 1, int(values[s]))
            for s, e in zip(starts, stops)]


def _window_blocks(count: int, stride: int, extent: int, per_block: int):
    """Output blocks ``(a, b)`` and the padded input range ``(lo, hi)`` their windows read."""
    blocks = []
    for a in range(0, count, per_block):
        b = min(a + per_block, count)
        blocks.append((a, b, a * stride, (b - 1) * stride + extent))
    return blocks


def _scatter_blocks(count: int, length: int, stride: int, padding: int, extent: int, per_block: int):
    """Output blocks ``(a, b)`` of a transposed convolution, the input rows ``(lo, hi)`` that
    scatter into them (``lo == hi`` when none does: output padding only), and the padding."""
    blocks = []
    for a in range(0, count, per_block):
        b = min(a + per_block, count)
        lo = max(0, -((extent - 1 - a - padding) // stride))  # ceil((a + p - extent + 1) / s)
        hi = min(length, (b + padding - 1) // stride + 1)
        blocks.append((a, b, lo, max(lo, hi), padding))
    return blocks


def _tile(regions, rows, cols, compute, params):
    """Assemble the output from one task per block: ``compute(piece, row, col, *params)``."""
    import dask.array as da
    import numpy as np

    tail = regions.tail
    grid = []
    for row in rows:
        line = []
        for col in cols:
            shape = (row[1] - row[0], col[1] - col[0]) + tail
            if row[2] >= row[3] or col[2] >= col[3]:
                line.append(da.zeros(shape, dtype=np.float32, chunks=shape))
                continue
            piece = regions.piece(row[2], row[3], col[2], col[3])
            line.append(piece.map_blocks(compute, row, col, *params, dtype=np.float32,
                                         chunks=tuple((n,) for n in shape),
                                         meta=np.empty((0,) * len(shape), dtype=np.float32)))
        grid.append(line)
    if tail:  # np.block joins the innermost lists along the last axis: one more level for C
        grid = [[[block] for block in line] for line in grid]
    return da.block(grid)


def _merged(piece):
    """``piece`` as one chunk: a single concatenation task (``rechunk`` costs 7x more to build)."""
    if all(len(c) == 1 for c in piece.chunks):
        return piece
    import dask.array as da
    from dask.array.core import concatenate3
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    name = "convcli-merge-" + tokenize(piece.name)
    graph = {(name,) + (0,) * piece.ndim: (concatenate3, piece.__dask_keys__())}
    graph = HighLevelGraph.from_collections(name, graph, dependencies=[piece])
    return da.Array(graph, name, chunks=tuple((n,) for n in piece.shape), dtype=piece.dtype,
                    meta=piece._meta)


def _filter_block(piece, row, col, kernel, stride, dilation, mode):
    from ..engine.filtering import filter2d

    return filter2d(piece, kernel, stride=stride, padding=0, dilation=dilation, mode=mode)


def _pool_block(piece, row, col, size, stride, dilation, op, divisors):
    import numpy as np

    from ..engine.pooling import pool2d

    if op != "mean":
        return pool2d(piece, size, stride=stride, padding=0, dilation=dilation, op=op)
    # The sums as pool2d makes them (same views, same order), then the whole image's divisor.
    (kh, kw), (sy, sx) = size, stride
    out_h, out_w = row[1] - row[0], col[1] - col[0]
    out = None
    for m in range(kh):
        for n in range(kw):
            view = piece[m: m + sy * (out_h - 1) + 1: sy, n: n + sx * (out_w - 1) + 1: sx]
            if out is None:
                out = view.astype(np.float32, copy=True)
            else:
                out += view
    divisor = np.outer(divisors[0][row[0]: row[1]], divisors[1][col[0]: col[1]]).astype(np.float32)
    out /= divisor.reshape(divisor.shape + (1,) * (piece.ndim - 2))
    return out


def _tconv_block(piece, row, col, kernel, stride, dilation, mode):
    """The transposed convolution of input rows ``lo..hi``, placed into output rows ``a..b``.

    Blocks are ``(a, b, lo, hi, padding)``: ``a..b`` in cropped output coordinates;
    the local result starts at full coordinate ``lo * stride``, and full = cropped + padding.
    """
    import numpy as np

    from ..engine.transposed import conv_transpose2d

    local = conv_transpose2d(piece, kernel, stride=stride, dilation=dilation, mode=mode)
    out = np.zeros((row[1] - row[0], col[1] - col[0]) + piece.shape[2:], dtype=np.float32)
    source, target = [], []
    for (a, b, lo, _, pad), s, n in ((row, stride[0], local.shape[0]),
                                     (col, stride[1], local.shape[1])):
        start = a + pad - lo * s  # where output row a falls in the local result
        first, last = max(0, start), min(n, b + pad - lo * s)
        if first >= last:
            return out  # only output padding here
        source.append(slice(first, last))
        target.append(slice(first - start, last - start))
    out[target[0], target[1]] = local[source[0], source[1]]
    return out


# ------------------------------------------------------------------- files


class _RawReader:
    """An array on disk at a byte offset (C order), read one block at a time.

    Each read maps only the rows it needs and unmaps them before returning, so
    the pages it touched leave this process's resident memory (the page cache
    keeps them, which the kernel frees at will).  Picklable: it holds a path.
    """

    def __init__(self, path, offset: int, shape, dtype):
        import numpy as np

        self.path, self.offset, self.shape = str(path), int(offset), tuple(shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        import numpy as np

        key = key if isinstance(key, tuple) else (key,)
        rows = key[0] if key else slice(None)
        start, stop, step = rows.indices(self.shape[0])
        stop = max(start, stop)
        row_bytes = self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))
        shape = (stop - start,) + self.shape[1:]
        if stop == start or row_bytes == 0:
            return np.empty(shape, dtype=self.dtype)[(slice(None, None, step),) + key[1:]]
        band = np.memmap(self.path, dtype=self.dtype, mode="r", shape=shape,
                         offset=self.offset + start * row_bytes)
        block = np.array(band[(slice(None, None, step),) + key[1:]])
        del band  # the last reference: unmapped here
        return block


class _NpyWriter:
    """The target of ``da.store``: writes each block through a memory map of its rows only."""

    def __init__(self, path, offset: int, shape):
        import numpy as np

        self.path, self.offset, self.shape = str(path), int(offset), tuple(shape)
        self.dtype = np.dtype(np.float32)

    def __setitem__(self, key, value):
        import numpy as np

        rows = key[0]
        start, stop, _ = rows.indices(self.shape[0])
        if stop <= start:
            return
        row_bytes = 4 * int(np.prod(self.shape[1:], dtype=np.int64))
        band = np.memmap(self.path, dtype=np.float32, mode="r+", shape=(stop - start,) + self.shape[1:],
                         offset=self.offset + start * row_bytes)
        band[(slice(None),) + tuple(key[1:])] = value
        band.flush()
        del band  # the last reference: unmapped here


class Source:
    """A huge input opened for chunked reading: any array-like ``reader`` (H x W [x S]) read
    region by region and converted to float32 H x W x C as ``LoadedImage.rows`` converts.

    Pass it to :func:`filter2d_chunked` and friends in place of a dask array: each
    output block then reads exactly its own (padded) region, in its own task.
    ``array`` is the same image as a lazy dask array, for other uses.
    """

    def __init__(self, reader, *, name: str, depth: str, fmt: str, scale: float = 1.0,
                 gray: bool = False, alpha: bool = False, check_finite: bool = True,
                 chunk=DEFAULT_CHUNK, closer=None):
        self.reader, self.name, self.depth, self.format = reader, name, depth, fmt
        self.scale, self.gray, self.alpha, self.check_finite = scale, gray, alpha, check_finite
        self.chunk = as_pair(chunk, "chunk", minimum=1)
        self._closer = closer
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
        import numpy as np

        block = np.asarray(self.reader[r0:r1, c0:c1])
        if block.ndim == 2:
            block = block[:, :, None]
        if self.alpha:
            block = block[:, :, :-1]
        if self.check_finite and block.dtype.kind == "f" and not np.isfinite(block).all():
            raise ConvcliError(f"input {self.name!r}: holds NaN or infinite values")
        return _to_float(block, self.scale, self.gray)

    def __getitem__(self, key):  # for dask.array.from_array: slices of rows and columns
        rows, cols = (tuple(key) + (slice(None), slice(None)))[:2]
        r0, r1, _ = rows.indices(self.shape[0])
        c0, c1, _ = cols.indices(self.shape[1])
        return self.read(r0, max(r0, r1), c0, max(c0, c1))

    @property
    def dtype(self):
        import numpy as np

        return np.dtype(np.float32)

    @property
    def array(self):
        import dask.array as da

        return da.from_array(self, chunks=self.chunk + (self.channels,), lock=False,
                             asarray=False, meta=_empty_meta())

    def close(self):
        if self._closer is not None:
            self._closer()
            self._closer = None


def _empty_meta():
    import numpy as np

    return np.empty((0, 0, 0), dtype=np.float32)


def import_dask():
    """``dask.array``, or a ConvcliError naming the extra."""
    try:
        import dask.array as da
    except ImportError:
        raise ConvcliError(f"this image {MISSING_EXTRA}") from None
    return da


def _suffix(path) -> str:
    return Path(str(path).rstrip("/" + os.sep)).suffix.lower()


def read_header(path):
    """``(height, width, channels, dtype)`` of an ``.npy``, TIFF or ``.zarr`` input, from its header."""
    suffix, name = _suffix(path), str(path)
    if not os.path.exists(path):
        raise ConvcliError(f"input {name!r}: no such file")
    if suffix == ".npy":
        import numpy as np

        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:  # noqa: BLE001  (a malformed header can raise almost anything)
            raise ConvcliError(f"input {name!r}: not a readable .npy array ({describe(exc)})") from None
        shape, dtype = array.shape, array.dtype
        del array
    elif suffix in (".tif", ".tiff"):
        shape, dtype, _ = _tiff_layout(path)
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
    ``.zarr``) as stored, converted to float32; 8- and 16-bit TIFF divided by
    255 and 65535.  TIFF alpha (an extra sample marked as alpha) is split off
    and not processed.  ``gray`` converts three or more channels to luma.
    ``.npy`` and uncompressed TIFF are read through memory maps of the rows a
    block needs; compressed or tiled TIFF through tifffile's Zarr store.
    """
    import numpy as np

    import_dask()
    name, suffix = str(path), _suffix(path)
    if suffix not in CHUNK_INPUTS:
        raise ConvcliError(f"input {name!r}: chunked processing reads .npy, .tif, .tiff and .zarr")
    if not os.path.exists(path):
        raise ConvcliError(f"input {name!r}: no such file")
    height, width, channels, dtype = read_header(path)
    common = {"name": name, "gray": gray, "chunk": chunk}
    if suffix == ".npy":
        header = np.load(path, mmap_mode="r", allow_pickle=False)
        offset, fortran = header.offset, header.flags.f_contiguous and not header.flags.c_contiguous
        del header
        if fortran and height > 1 and width > 1:
            raise ConvcliError(f"input {name!r}: a Fortran-ordered .npy cannot be read in chunks; "
                               f"save it in C order")
        reader = _RawReader(path, offset, (height, width, channels), dtype)
        return Source(reader, depth="float", fmt="NPY", **common)
    if suffix == ".zarr":
        return Source(_open_zarr_array(path), depth="float", fmt="ZARR", **common)
    shape, dtype, layout = _tiff_layout(path)
    depth, scale = {"u1": ("8", 255.0), "u2": ("16", 65535.0)}.get(
        f"{dtype.kind}{dtype.itemsize}", ("float", 1.0))
    if depth == "float" and dtype.kind != "f":
        raise ConvcliError(f"input {name!r}: TIFF samples of type {dtype} cannot be read in "
                           f"chunks (8-bit, 16-bit or float only)")
    if layout["offset"] is not None:
        reader, closer = _RawReader(path, layout["offset"], shape, dtype), None
    else:
        store, reader = _open_tiff_zarr(path)
        closer = store.close
    return Source(reader, depth=depth, fmt="TIFF", scale=scale, alpha=layout["alpha"],
                  closer=closer, **common)


def _to_float(block, scale, gray):
    """What ``LoadedImage.rows`` does to stored pixels, block by block."""
    import numpy as np

    part = np.asarray(block, dtype=np.float32)
    if scale != 1:
        part *= np.float32(1.0 / scale)
    if gray and part.shape[2] >= 3:
        part = (part[:, :, :3] @ np.array(_LUMA, dtype=np.float32))[:, :, None]
    return part


def _tiff_layout(path):
    """``(shape H x W [x S], dtype with byte order, {offset or None, alpha})`` of a TIFF's first image."""
    import numpy as np

    tifffile = _import_tifffile(f"input {str(path)!r}")
    name = str(path)
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
            series = tif.series[0]
            shape = tuple(series.shape)
            dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
            planar = page.planarconfig == 2 and page.samplesperpixel > 1
            extras = tuple(page.extrasamples or ())
            contiguous = (len(tif.series[0].pages) == 1 and page.is_contiguous and not planar
                          and page.is_memmappable)
            offset = int(page.dataoffsets[0]) if contiguous else None
    except ConvcliError:
        raise
    except Exception as exc:  # noqa: BLE001  (malformed files raise many kinds of errors)
        raise ConvcliError(f"input {name!r}: not a TIFF tifffile can read ({describe(exc)})") from None
    if planar or len(shape) not in (2, 3):
        raise ConvcliError(f"input {name!r}: only single-image TIFFs with interleaved samples "
                           f"can be read in chunks (shape {shape})")
    alpha = len(shape) == 3 and bool(extras) and extras[-1] in (1, 2)
    return shape, dtype, {"offset": offset, "alpha": alpha}


def _open_tiff_zarr(path):
    try:
        import zarr
    except ImportError:
        raise ConvcliError(f"input {str(path)!r}: a compressed or tiled TIFF is read in chunks through "
                           f"zarr: pip install zarr") from None
    tifffile = _import_tifffile(f"input {str(path)!r}")
    store = tifffile.imread(path, aszarr=True)
    stored = zarr.open(store, mode="r")
    if not hasattr(stored, "shape"):  # a group (pyramid): its first level
        stored = stored[next(iter(stored.array_keys()))]
    return store, stored


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


def _import_tifffile(where: str):
    try:
        import tifffile
    except ImportError:
        raise ConvcliError(f"{where}: TIFF in chunks needs tifffile: pip install 'convcli[dask]'") from None
    return tifffile


def process_huge(op, input_path, output_path, *, chunk=DEFAULT_CHUNK, gray: bool = False,
                 depth: str | None = None, workers: int | None = None) -> dict:
    """Run ``op`` (a :class:`convcli.run.batch.Operation`) on a huge image, file to file, in chunks.

    Reads ``.npy``, TIFF or ``.zarr`` (see :func:`open_source`); writes ``.npy``
    (float32, H x W for one channel, as the in-memory path), a tiled TIFF
    (depth 8, 16 or float, as :func:`convcli.io.images.choose_depth` decides,
    values mapped as ``op.value_map`` says) or ``.zarr`` (float32).  The output
    appears whole or not at all.  Computes on this machine's threads
    (``workers``, default the cores).  Returns the JSON record of the run.
    """
    from ..io.images import check_output_folder

    out_suffix = _suffix(output_path)
    if out_suffix not in CHUNK_OUTPUTS:
        raise ConvcliError(f"output {str(output_path)!r}: chunked processing writes .npy, .tif, "
                           f".tiff or .zarr")
    check_output_folder(output_path)
    source = open_source(input_path, chunk=chunk, gray=gray)
    try:
        result, extra = apply_chunked(op, source, chunk)
        out_h, out_w, channels = (int(n) for n in result.shape)
        compute = {"scheduler": "threads", "num_workers": workers}
        if out_suffix == ".npy":
            written_depth, value_map = "float", None
            _write_npy(output_path, result, compute)
        elif out_suffix == ".zarr":
            written_depth, value_map = "float", None
            _write_zarr(output_path, result, compute)
        else:
            written_depth, value_map = _write_tiff(output_path, result, op.value_map, depth,
                                                   source.depth, compute)
    finally:
        source.close()
    alpha = "none" if not source.alpha else "dropped"
    return {
        "input": str(input_path), "output": str(output_path), "operation": op.name,
        "input_size": {"width": source.size[1], "height": source.size[0]},
        "output_size": {"width": out_w, "height": out_h}, "channels": channels,
        **op.report, **extra, "map": value_map, "depth": written_depth, "alpha": alpha,
        "chunked": {"chunk": dict(zip(("height", "width"), as_pair(chunk, "chunk", minimum=1))),
                    "blocks": int(result.numblocks[0] * result.numblocks[1])},
    }


def _write_npy(path, result, compute) -> None:
    import dask.array as da
    import numpy as np

    shape = result.shape[:2] if result.shape[2] == 1 else result.shape
    with atomic_file(path) as tmp:
        target = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        offset = target.offset
        del target  # the header is written; blocks are written through maps of their own rows
        data = result[:, :, 0] if result.shape[2] == 1 else result
        da.store(data, _NpyWriter(tmp, offset, shape), lock=False, **compute)


def _write_zarr(path, result, compute) -> None:
    import shutil

    try:
        import zarr  # noqa: F401
    except ImportError:
        raise ConvcliError(f"output {str(path)!r}: .zarr needs zarr: pip install zarr") from None
    data = result[:, :, 0] if result.shape[2] == 1 else result
    tmp = temporary_name(path)
    os.unlink(tmp)  # a folder takes its name
    old = None
    try:
        data.to_zarr(tmp, compute=False).compute(**compute)
        if os.path.exists(path):  # a folder cannot be renamed over a folder: move the old one aside
            old = temporary_name(path)
            os.unlink(old)  # the name only: the old folder moves there
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException as exc:
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


def _write_tiff(path, result, value_map, requested, source_depth, compute):
    """A tiled TIFF, one row of dask blocks at a time; returns (depth, map) as reported."""
    import dask
    import numpy as np

    from ..io.images import choose_depth, map_values

    tifffile = _import_tifffile(f"output {str(path)!r}")
    height, width, channels = (int(n) for n in result.shape)
    depth = choose_depth(path, requested, source_depth, channels)
    if depth != "float" and channels > 4:
        raise ConvcliError(f"output {str(path)!r}: {channels} channels cannot be written as TIFF; use .npy")
    bounds = None
    if depth != "float" and value_map == "normalize":
        low, high = dask.compute(result.min(), result.max(), **compute)
        bounds = (float(low), float(high))
    if depth == "float":
        dtype, samples = np.float32, 1
    else:
        dtype, samples = (np.uint16, 1) if depth == "16" else (np.uint8, channels)

    def encode(rows):
        if depth == "float":
            return np.ascontiguousarray(rows[:, :, 0], dtype=np.float32)
        band = map_values(rows[:, :, :1] if depth == "16" else rows, value_map, bounds)
        band *= 65535.0 if depth == "16" else 255.0
        np.rint(band, out=band)
        band = band.astype(dtype)
        return band[:, :, 0] if samples == 1 else band

    def tiles():
        pending = None
        for index in range(result.numblocks[0]):
            rows = encode(result.blocks[index].compute(**compute))
            pending = rows if pending is None else np.concatenate([pending, rows])
            last = index == result.numblocks[0] - 1
            while pending.shape[0] >= TILE or (last and pending.shape[0]):
                band, pending = pending[:TILE], pending[TILE:]
                for left in range(0, width, TILE):
                    tile = band[:, left: left + TILE]
                    if tile.shape[:2] != (TILE, TILE):  # edge tiles are padded to full size
                        full = np.zeros((TILE, TILE) + tile.shape[2:], dtype=tile.dtype)
                        full[: tile.shape[0], : tile.shape[1]] = tile
                        tile = full
                    yield tile

    shape = (height, width) if samples == 1 else (height, width, samples)
    photometric = "rgb" if samples in (3, 4) else "minisblack"
    extras = {"extrasamples": [0]} if samples in (2, 4) else {}  # extra samples are data, not alpha
    big = height * width * samples * np.dtype(dtype).itemsize > 2**32 - 2**25
    with atomic_file(path) as tmp:
        tifffile.imwrite(tmp, tiles(), shape=shape, dtype=dtype, tile=(TILE, TILE),
                         photometric=photometric, bigtiff=big, **extras)
    return depth, None if depth == "float" else value_map


# ------------------------------------------------------------ the CLI's hook


def dask_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("dask") is not None


def wants_chunked(op, task, opts) -> bool:
    """Whether ``runner.process`` should hand this image to :func:`process_chunked`.

    Yes for an ``.npy``, TIFF or ``.zarr`` input to an ``.npy``, TIFF or
    ``.zarr`` output when dask is installed and either a block size was asked
    for (``opts.chunk``) or the in-memory working set
    (``runner.estimate_memory``) exceeds ``opts.max_memory``.  A ``.zarr``
    input always goes chunked (only this path reads it); without dask that is
    an error naming the extra.
    """
    from .batch import STDIN, STDOUT, estimate_memory

    if task.input == STDIN or task.output == STDOUT:
        return False
    in_suffix, out_suffix = _suffix(task.input), _suffix(task.output)
    if in_suffix not in CHUNK_INPUTS or out_suffix not in CHUNK_OUTPUTS:
        if in_suffix == ".zarr":
            raise ConvcliError(f"input {task.input!r}: a .zarr input is written to .npy, .tif, "
                               f".tiff or .zarr")
        return False
    if not dask_installed():
        if in_suffix == ".zarr":
            raise ConvcliError(f"input {task.input!r}: .zarr {MISSING_EXTRA}")
        return False
    if in_suffix == ".zarr" or getattr(opts, "chunk", None) is not None:
        return True
    if opts.max_memory is None:
        return False
    try:
        height, width, channels, _ = read_header(task.input)
        if getattr(opts, "gray", False) and channels >= 3:
            channels = 1
        need = estimate_memory((height, width), op.output_size((height, width)), channels)
    except ConvcliError:
        return False  # the in-memory path reports what is wrong with it
    return need > opts.max_memory


def auto_chunk(channels: int, max_memory: int | None) -> int:
    """The block side when none is given: DEFAULT_CHUNK, smaller when ``--max-memory`` needs it.

    A block in flight holds about ``3 * 4 * side**2 * channels`` bytes (its
    padded input, its output and one temporary), and each thread holds up
    to two; the side is chosen so that they all fit in half the limit.
    """
    if not max_memory:
        return DEFAULT_CHUNK
    threads = os.cpu_count() or 1
    side = int((max_memory / 2 / (2 * threads * 12 * channels)) ** 0.5)
    return max(64, min(DEFAULT_CHUNK, side // 64 * 64))


def process_chunked(op, task, opts):
    """:func:`convcli.run.batch.process` for one huge image: an Outcome, never raising for a bad image."""
    from ..geometry.sizes import format_size
    from .batch import Outcome, _failed

    try:
        if task.make_folder:
            try:
                Path(task.output).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConvcliError(f"output {task.output!r}: cannot create its folder ({exc.strerror})") from None
        height, width, channels, _ = read_header(task.input)
        max_pixels = getattr(opts, "max_pixels", None)
        if _suffix(task.input) in (".tif", ".tiff") and max_pixels and height * width > max_pixels:
            # As for every decoded format: a small compressed file may declare a huge image.
            raise ConvcliError(f"input {task.input!r}: {width}x{height} is {width * height:,} pixels, "
                               f"over the limit of {max_pixels:,} (--max-pixels)")
        chunk = getattr(opts, "chunk", None) or auto_chunk(channels, opts.max_memory)
        record = process_huge(op, task.input, task.output, chunk=chunk,
                              gray=opts.gray, depth=opts.depth)
    except ConvcliError as exc:
        return _failed(task, str(exc))
    except MemoryError:
        return _failed(task, f"input {task.input!r}: not enough memory for this image")
    record["input"], record["output"] = task.input, task.output
    size_in = (record["input_size"]["height"], record["input_size"]["width"])
    size_out = (record["output_size"]["height"], record["output_size"]["width"])
    blocks = record["chunked"]["blocks"]
    note = " (alpha dropped)" if record["alpha"] == "dropped" else ""
    line = (f"{task.input}: {format_size(size_in)} -> {format_size(size_out)}, wrote {task.output} "
            f"in {blocks} block{'s' if blocks != 1 else ''}{note}")
    return Outcome(task, "done", record, line)
