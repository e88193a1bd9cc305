"""Dask graphs for one huge image, block by block, exact to the in-memory functions.

The output is cut into blocks; each block is computed by the in-memory function
from exactly the input rows and columns its windows read (the halo rule of
:func:`convcli.geometry.sizes.window_rows` and :func:`~convcli.geometry.sizes.scatter_rows`):

* filter and pool: the input is padded explicitly first (``dask.array.pad``,
  whose ``reflect``, ``edge`` and ``wrap`` are numpy's and so PyTorch's
  ``reflect``, ``replicate`` and ``circular``; pooling pads with -inf, +inf
  or 0 as ``pool2d`` does).  A block of output rows reads its own rows, which
  start on a stride boundary, plus a one-sided halo of
  ``dilation*(k-1) + 1 - stride`` rows.  The block is then the in-memory
  function with no padding and floor rounding, which makes the same float
  operations in the same order as the whole-image call: the results are
  identical, not merely close.
* upsample: a block of output rows receives from the input rows that scatter
  into it; the block is the transposed convolution of those rows, placed and cropped.

Where a block's rows come from depends on the input: a dask (or numpy) array
is padded with ``dask.array.pad`` and each block takes its slice of that; a
region source (an object with ``size``, ``channels`` and ``read(r0, r1, c0,
c1)``, as :class:`convcli.io.bigfiles.Source`) is read block by block, each
task reading exactly its padded region, so blocks share nothing and the
memory in flight is about one block per thread.

Dask is an optional extra: only the chunked path imports this module.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
from dask.array.core import concatenate3
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from ..constants import DEFAULT_CHUNK
from ..engine.padding import NUMPY_MODES, pad_rows
from ..errors import ConvcliError
from ..geometry.sizes import as_pair, scatter_rows, window_rows


def is_region_source(image) -> bool:
    """Whether ``image`` is read region by region (a file-backed source) rather than an array."""
    return callable(getattr(image, "read", None)) and hasattr(image, "channels")


def as_source(image, chunk=None):
    """A region source as it is; anything else as a float32 dask array (channels in one chunk)."""
    if is_region_source(image):
        return image
    if not isinstance(image, da.Array):
        array = np.asarray(image)
        ch, cw = as_pair(chunk if chunk is not None else DEFAULT_CHUNK, "chunk", minimum=1)
        image = da.from_array(array, chunks=(ch, cw) + tuple(array.shape[2:]))
    if image.ndim not in (2, 3):
        raise ConvcliError(f"image: must be H x W or H x W x C, got shape {image.shape}")
    if 0 in image.shape:
        raise ConvcliError(f"image: is empty (shape {image.shape})")
    if image.dtype.kind not in "biuf":
        raise ConvcliError(f"image: must hold numbers, got dtype {image.dtype}")
    if image.ndim == 3 and len(image.chunks[2]) > 1:
        image = image.rechunk({2: -1})  # channels stay together
    return image.astype(np.float32)


def source_size(x) -> tuple[int, int]:
    return tuple(x.size) if is_region_source(x) else (int(x.shape[0]), int(x.shape[1]))


def chunk_size(x, chunk) -> tuple[int, int]:
    """Input rows and columns per block: ``chunk``, else the array's own chunks."""
    if chunk is not None:
        return as_pair(chunk, "chunk", minimum=1)
    if is_region_source(x):
        return DEFAULT_CHUNK, DEFAULT_CHUNK
    return int(x.chunksize[0]), int(x.chunksize[1])


def per_block(chunk: int, stride: int) -> int:
    """Output rows per block so that a block reads about ``chunk`` input rows."""
    return max(1, chunk // stride)


def padded(x, sides, mode: str, fill: float):
    """The padded image as a provider of one-chunk pieces (``mode`` as PyTorch names it;
    ``zeros`` pads with ``fill``)."""
    if is_region_source(x):
        return _SourceRegions(x, sides, mode, fill)
    return _DaskRegions(x, sides, mode, fill)


class _DaskRegions:
    """Pieces of ``dask.array.pad(x)``: numpy's reflect/edge/wrap are PyTorch's
    reflect/replicate/circular."""

    def __init__(self, x, sides, mode, fill):
        top, bottom, left, right = sides
        self.tail = tuple(x.shape[2:])
        if not any(sides):
            self.padded = x
            return
        widths = [(top, bottom), (left, right)] + [(0, 0)] * (x.ndim - 2)
        if mode == "zeros":
            self.padded = da.pad(x, widths, mode="constant", constant_values=fill)
        else:
            self.padded = da.pad(x, widths, mode=NUMPY_MODES[mode])

    def piece(self, lo, hi, clo, chi):
        return _merged(self.padded[lo:hi, clo:chi])


class _SourceRegions:
    """Pieces read straight from a region source: one task per block, no shared chunks, so
    the memory in flight is one block per thread whatever the image size."""

    def __init__(self, source, sides, mode, fill):
        self.source, self.sides, self.mode, self.fill = source, tuple(sides), mode, fill
        self.tail = (source.channels,)

    def piece(self, lo, hi, clo, chi):
        from dask import delayed

        task = delayed(_read_region, pure=False)(
            self.source, lo, hi, clo, chi, self.sides, self.mode, self.fill
        )
        return da.from_delayed(task, (hi - lo, chi - clo) + self.tail, dtype=np.float32)


def _read_region(source, lo, hi, clo, chi, sides, mode, fill):
    """Rows ``lo..hi`` and columns ``clo..chi`` of the padded image, read run by run."""
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
    positions = np.flatnonzero(~mask)
    if not len(positions):
        return []
    values = index[positions]
    cuts = np.flatnonzero((np.diff(positions) != 1) | (np.diff(values) != 1)) + 1
    starts, stops = np.r_[0, cuts], np.r_[cuts, len(positions)]
    return [(int(positions[s]), int(positions[e - 1]) + 1, int(values[s])) for s, e in zip(starts, stops)]


def window_blocks(count: int, stride: int, extent: int, rows_per_block: int):
    """Output blocks ``(a, b, lo, hi)``: output rows ``a..b`` and the padded input rows
    ``lo..hi`` their windows read."""
    return [
        (a, min(a + rows_per_block, count), *window_rows(a, min(a + rows_per_block, count), stride, extent))
        for a in range(0, count, rows_per_block)
    ]


def scatter_blocks(count: int, length: int, stride: int, padding: int, extent: int, rows_per_block: int):
    """Output blocks ``(a, b, lo, hi, padding)`` of a transposed convolution: cropped output
    rows ``a..b`` and the input rows ``lo..hi`` that scatter into them."""
    return [
        (
            a,
            min(a + rows_per_block, count),
            *scatter_rows(a, min(a + rows_per_block, count), length, stride, padding, extent),
            padding,
        )
        for a in range(0, count, rows_per_block)
    ]


def tile(regions, rows, cols, compute, params):
    """Assemble the output from one task per block: ``compute(piece, row, col, *params)``."""
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
            line.append(
                piece.map_blocks(
                    compute,
                    row,
                    col,
                    *params,
                    dtype=np.float32,
                    chunks=tuple((n,) for n in shape),
                    meta=np.empty((0,) * len(shape), dtype=np.float32),
                )
            )
        grid.append(line)
    if tail:  # np.block joins the innermost lists along the last axis: one more level for C
        grid = [[[block] for block in line] for line in grid]
    return da.block(grid)


def _merged(piece):
    """``piece`` as one chunk: a single concatenation task (``rechunk`` costs 7x more to build)."""
    if all(len(c) == 1 for c in piece.chunks):
        return piece
    name = "convcli-merge-" + tokenize(piece.name)
    graph = {(name,) + (0,) * piece.ndim: (concatenate3, piece.__dask_keys__())}
    graph = HighLevelGraph.from_collections(name, graph, dependencies=[piece])
    return da.Array(graph, name, chunks=tuple((n,) for n in piece.shape), dtype=piece.dtype, meta=piece._meta)
