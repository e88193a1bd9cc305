"""Dask graphs for one huge image, block by block, exact to the in-memory functions.

The graph is Dask's own: the input as a dask array (``dask.array.from_array`` of a
file-backed source, or the array given), padded with ``dask.array.pad``,
cut into chunks aligned on the output blocks, and computed by
``dask.array.map_overlap`` with the halo the operation's windows need.  Every
output block depends on one input chunk plus its halo, so the blocks of one
image spread over every thread, or every worker of a Dask cluster.

Chunks are aligned on the output blocks (:class:`AxisPlan`):

* filter and pool (windows): the input is padded explicitly first (numpy's
  ``reflect``, ``edge`` and ``wrap`` are PyTorch's ``reflect``, ``replicate``
  and ``circular``; pooling pads with -inf, +inf or 0 as ``pool2d`` does).
  Output block ``k`` of ``b`` rows reads padded rows from ``k*b*stride``: input
  chunk ``k`` is those ``b*stride`` rows, and the halo is one-sided, the next
  ``dilation*(k-1) + 1 - stride`` rows.  The block is then the in-memory
  function with no padding and floor rounding, which makes the same float
  operations in the same order as the whole-image call: identical results.
* upsample (transposed convolution): input chunk ``k`` is ``b`` input rows, output
  block ``k`` the ``b*stride`` output rows they land on; the halo is the input
  rows before (and, with padding, after) that scatter into the block too.  The
  block is the transposed convolution of the chunk and its halo, cropped.

Dask is an optional extra: only the chunked path imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np

from ..constants import DEFAULT_CHUNK
from ..engine.padding import NUMPY_MODES
from ..errors import ConvcliError
from ..geometry.sizes import as_pair


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


@dataclass(frozen=True)
class AxisPlan:
    """How one axis is cut: input chunks (padded coordinates), output blocks, and the halo
    ``(before, after)`` each block reads from its neighbours' chunks.

    Output block ``k`` is computed from input chunk ``k`` and its halo; ``padding`` is a
    transposed convolution's crop (its output block ``k`` starts at full output row
    ``start + padding``)."""

    in_chunks: tuple[int, ...]
    out_chunks: tuple[int, ...]
    halo: tuple[int, int]
    padding: int = 0

    def block(self, k: int) -> tuple[int, int, int, int, int]:
        """``(a, b, lo, hi, padding)``: output rows ``a..b`` of block ``k`` and the input rows
        ``lo..hi`` its piece holds (its chunk and the halo its neighbours have)."""
        a = sum(self.out_chunks[:k])
        start = sum(self.in_chunks[:k])
        lo = start - (self.halo[0] if k > 0 else 0)
        hi = start + self.in_chunks[k] + (self.halo[1] if k < len(self.in_chunks) - 1 else 0)
        return a, a + self.out_chunks[k], lo, hi, self.padding


def window_plan(count: int, padded_length: int, stride: int, extent: int, rows_per_block: int) -> AxisPlan:
    """A filter's or pool's axis: ``count`` outputs of windows of ``extent`` every ``stride``
    padded rows, ``rows_per_block`` outputs a block (more when the halo needs it: it must
    come from the next chunk alone)."""
    halo = max(0, extent - stride)
    rows = max(rows_per_block, -(-halo // stride), 1)
    blocks = -(-count // rows)
    step = rows * stride
    in_chunks = (step,) * (blocks - 1) + (padded_length - (blocks - 1) * step,)
    out_chunks = (rows,) * (blocks - 1) + (count - (blocks - 1) * rows,)
    return AxisPlan(in_chunks, out_chunks, (0, halo if blocks > 1 else 0))


def scatter_plan(
    count: int, length: int, stride: int, padding: int, extent: int, rows_per_block: int
) -> AxisPlan:
    """A transposed convolution's axis: ``length`` input rows, ``count`` cropped outputs;
    input row ``i`` reaches full output rows ``i*stride .. i*stride + extent - 1``, and full
    row ``r`` is cropped row ``r - padding``.  Output block ``k`` (``rows*stride`` rows from
    ``k*rows*stride``) gets from input rows ``k*rows + before .. (k+1)*rows + after``."""
    before = max(0, (extent - 1 - padding) // stride)  # earlier rows that spill into the block
    after = max(0, (padding - 1) // stride + 1)  # later rows whose outputs the crop shifts in
    rows = max(rows_per_block, before, after, 1)
    blocks = max(1, min(-(-count // (rows * stride)), -(-length // rows)))
    if blocks > 1 and length - (blocks - 1) * rows < max(before, after):
        blocks -= 1  # a last chunk too short to lend its halo joins the one before
    in_chunks = (rows,) * (blocks - 1) + (length - (blocks - 1) * rows,)
    out_chunks = (rows * stride,) * (blocks - 1) + (count - (blocks - 1) * rows * stride,)
    halo = (before, after) if blocks > 1 else (0, 0)
    return AxisPlan(in_chunks, out_chunks, halo, padding)


def windowed(x, plans, sides, mode: str, fill: float, compute, params):
    """The output of ``compute(piece, row, col, *params)`` on every block (``row`` and
    ``col``: :meth:`AxisPlan.block`), as a lazy dask array built by ``map_overlap``.

    ``x``: a region source or dask array; it is padded by ``sides`` (top, bottom, left,
    right) with ``mode`` as PyTorch names it (``zeros`` pads with ``fill``), then cut into
    the plans' chunks."""
    top, bottom, left, right = sides
    rows, cols = plans
    array = _as_array(x, (_unpadded(rows.in_chunks, top, bottom), _unpadded(cols.in_chunks, left, right)))
    tail = tuple(array.shape[2:])
    if any(sides):
        widths = [(top, bottom), (left, right)] + [(0, 0)] * len(tail)
        if mode == "zeros":
            array = da.pad(array, widths, mode="constant", constant_values=fill)
        else:
            array = da.pad(array, widths, mode=NUMPY_MODES[mode])
    array = array.rechunk((rows.in_chunks, cols.in_chunks) + tuple((n,) for n in tail))
    depth = {0: rows.halo, 1: cols.halo, **{axis: 0 for axis in range(2, array.ndim)}}
    return da.map_overlap(
        _Block(compute, rows, cols, params),
        array,
        depth=depth,
        boundary="none",
        trim=False,
        allow_rechunk=False,  # the chunks are the plan: never moved
        chunks=(rows.out_chunks, cols.out_chunks) + tuple((n,) for n in tail),
        dtype=np.float32,
        meta=np.empty((0,) * array.ndim, dtype=np.float32),
        name="convcli-" + getattr(compute, "__name__", "block").strip("_"),
    )


class _Block:
    """One block's computation, told which block it is by ``block_id`` (picklable)."""

    def __init__(self, compute, rows: AxisPlan, cols: AxisPlan, params):
        self.compute, self.rows, self.cols, self.params = compute, rows, cols, tuple(params)

    def __call__(self, piece, block_id=None):
        row, col = self.rows.block(block_id[0]), self.cols.block(block_id[1])
        out = self.compute(piece, row, col, *self.params)
        return out[: row[1] - row[0], : col[1] - col[0]]


def _unpadded(chunks, before: int, after: int) -> tuple[int, ...]:
    """Padded-coordinate chunks as chunks of the unpadded input (``before`` and ``after``
    padding rows removed), so that reading and padding leaves them nearly in place."""
    bounds = np.cumsum((0,) + tuple(chunks)) - before
    length = bounds[-1] - after
    bounds = np.unique(np.clip(bounds, 0, length))
    return tuple(int(n) for n in np.diff(bounds)) or (int(length),)


def _as_array(x, chunks):
    """``x`` as a float32 dask array in ``chunks`` (rows, columns): a region source is read
    chunk by chunk where the task runs (``dask.array.from_array`` of the source itself)."""
    if is_region_source(x):
        return da.from_array(
            x,
            chunks=tuple(chunks) + ((x.channels,),),
            lock=False,
            asarray=False,
            meta=np.empty((0, 0, 0), dtype=np.float32),
            name="convcli-read-" + _token(x),
        )
    return x.rechunk(tuple(chunks) + tuple((n,) for n in x.shape[2:]))


def _token(source) -> str:
    from dask.base import tokenize

    return tokenize(getattr(source, "name", id(source)), getattr(source, "shape", None), id(source))
