"""Shared machinery of the fast paths: row/column tiles on a small thread pool, padded tiles
built on demand, and the detection of separable (low-rank) kernels.

Every tile is computed with the same float operations in the same order whatever the tile
sizes and the number of threads, so results do not depend on how the work is split (the
chunked and banded pipelines rely on that).  numpy releases the GIL inside its loops, so
tiles computed on a few threads run in parallel.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading

import numpy as np

from ..system import usable_cores
from .padding import pad_rows

# Output tile: rows x (columns * channels) elements, at least TILE_ROWS_MIN rows.
TILE_ELEMENTS = 128 * 1024
TILE_ROWS_MIN = 16
# Below this many multiply-adds a call runs on the calling thread only.
THREAD_MIN_WORK = 1 << 21

_pools: dict = {}
_pools_lock = threading.Lock()
_local = threading.local()  # .scratch: this thread's reusable temporaries during run_tiles


def scratch(name: str, shape, dtype=np.float32) -> np.ndarray:
    """A temporary array for one tile (contents undefined), reused by the next tiles of the
    same :func:`run_tiles` call on this thread; a fresh array outside ``run_tiles``.

    Tiles allocate the same temporaries again and again.  glibc gives allocations this large
    fresh pages (mmap) each time, and first touching them cost 3-8x the arithmetic itself:
    Sobel with padding on 3840x2160x3, one thread, 250-290 ms against 30 ms with reuse.
    ``name`` tells apart the temporaries one tile holds at the same time.
    """
    buffers = getattr(_local, "scratch", None)
    if buffers is None:
        return np.empty(shape, dtype=dtype)
    size = int(np.prod(shape, dtype=np.int64))
    key = (name, np.dtype(dtype))
    buffer = buffers.get(key)
    if buffer is None or buffer.size < size:
        buffer = buffers[key] = np.empty(size, dtype=dtype)
    return buffer[:size].reshape(shape)


_native_module = None  # False once the import failed


def native():
    """The compiled loops (``convcli.engine._native``, built at install from _native.c), or
    None where the build was skipped (no C compiler) or ``CONVCLI_NATIVE=0`` is set.

    Read on every call, so a test or a user can switch the numpy paths on by the environment.
    """
    global _native_module
    if os.environ.get("CONVCLI_NATIVE", "1") == "0":
        return None
    if _native_module is None:
        try:  # the engine's own compiled part (private to the engine, so by its full name)
            _native_module = importlib.import_module(".engine._native", "convcli")
        except ImportError:
            _native_module = False
    return _native_module or None


def pixels_contiguous(array) -> np.ndarray:
    """``array`` (H x W x C float32) itself when each row's pixels and channels are contiguous,
    as the compiled loops read them (any row step), else a contiguous copy."""
    channels = array.shape[2]
    if (
        array.dtype == np.float32
        and (channels == 1 or array.strides[2] == 4)
        and array.strides[1] == channels * 4
        and array.strides[0] >= 0
        and array.strides[0] % 4 == 0
    ):
        return array
    return np.ascontiguousarray(array, dtype=np.float32)


def correlate_native(block, out, taps, stride=(1, 1)) -> None:
    """``out[i, j] = sum(w * block[i*sy + dr, j*sx + dc])`` over ``taps`` ``(dr, dc, w)`` in
    their order (the first product assigned, the next ones added: as :func:`accumulate`, to
    the bit), in compiled code that releases the GIL.  ``out`` may be any H x W x C view
    whose channels are contiguous (a column phase of a larger array)."""
    native().correlate(pixels_contiguous(block), [(out, taps)], int(stride[0]), int(stride[1]))


def padding_index(length: int, before: int, count: int, mode: str) -> np.ndarray:
    """For padded positions ``0..count`` of one axis with ``before`` positions of padding in
    front: the input position of each, -1 for zeros padding (as :func:`correlate_padded`
    reads them).  The values of :func:`convcli.engine.padding.pad2d`."""
    index, zeros = pad_rows(length, -before, count - before, mode)
    return np.where(zeros, -1, index).astype(np.int64)


def correlate_padded(image, parts, stride, row_index, column_index, first_row: int) -> None:
    """:func:`correlate_native` for each ``(out, taps)`` of ``parts`` (row by row, each row of
    every part in turn) on the padded image that ``row_index`` and ``column_index``
    (:func:`padding_index`) describe, never built: output row ``i`` reads padded rows
    ``(first_row + i)*sy + dr`` and padded columns ``j*sx + dc``.  ``image`` must be
    :func:`pixels_contiguous` already (done once per call, not per tile)."""
    native().correlate_padded(
        image, parts, int(stride[0]), int(stride[1]), row_index, column_index, int(first_row)
    )


def default_workers() -> int:
    return usable_cores()


def ordered_map(func, items, workers: int | None = None):
    """``map(func, items)`` on a few threads (numpy releases the GIL), in order, holding at
    most two results per thread ahead of the consumer."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    workers = workers or usable_cores()
    items = iter(items)
    with ThreadPoolExecutor(workers) as pool:
        pending = deque(pool.submit(func, item) for _, item in zip(range(2 * workers), items))
        while pending:
            result = pending.popleft().result()
            for item in items:
                pending.append(pool.submit(func, item))
                break
            yield result


def _executor(workers: int):
    """A process-wide thread pool of ``workers`` threads (made again after a fork)."""
    from concurrent.futures import ThreadPoolExecutor

    key = (os.getpid(), workers)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            for stale in [k for k in _pools if k[0] != os.getpid()]:
                del _pools[stale]  # inherited from the parent: its threads do not exist here
            pool = _pools[key] = ThreadPoolExecutor(workers, thread_name_prefix="convcli-engine")
        return pool


def run_tiles(func, tiles, workers: int | None = None, work: float = float("inf")) -> None:
    """Call ``func(tile)`` for every tile, on ``workers`` threads when the work is worth it.

    ``work`` is an estimate of the multiply-adds; small calls stay on this thread.
    Exceptions propagate.
    """
    tiles = list(tiles)
    workers = default_workers() if workers is None else int(workers)
    arenas: dict[int, dict] = {}  # per thread, the temporaries of this call (see scratch)

    def job(tile):
        outer = getattr(_local, "scratch", None)
        _local.scratch = arenas.setdefault(threading.get_ident(), {})
        try:
            func(tile)
        finally:
            _local.scratch = outer

    try:
        if (
            workers <= 1
            or len(tiles) <= 1
            or work < THREAD_MIN_WORK
            or threading.current_thread().name.startswith("convcli-engine")
        ):
            # small work, or already inside the pool: never wait on it from one of its threads
            for tile in tiles:
                job(tile)
            return
        for _ in _executor(workers).map(job, tiles):
            pass
    finally:
        arenas.clear()  # the temporaries go with the call


def row_tiles(out_h: int, out_w: int, channels: int, rows: int | None = None):
    """Full-width output tiles ``(row0, row1, 0, out_w)``: about :data:`TILE_ELEMENTS`
    elements each (at least :data:`TILE_ROWS_MIN` rows), or ``rows`` rows when given.

    Full-width rows keep numpy's inner loops long; measured on 3840x2160x3 float32 (2 cores),
    16-row tiles beat both narrower column blocks and taller tiles.
    """
    if rows is None:
        rows = max(TILE_ROWS_MIN, TILE_ELEMENTS // max(1, out_w * channels))
    rows = max(1, int(rows))
    return [(r, min(r + rows, out_h), 0, out_w) for r in range(0, out_h, rows)]


@functools.lru_cache(maxsize=64)
def _axis(length: int, start: int, stop: int, mode: str):
    """For padded positions ``start..stop`` of one axis (0 = first input position): the
    source index of each, the zeros mask (None when there are none), and the local range
    ``lo..hi`` inside the input.  Cached: every row tile of a call pads the same columns
    (the index arithmetic cost Sobel with padding 1 on 3840x2160x3 more than its sums)."""
    if 0 <= start and stop <= length:  # inside: no padding on this axis
        return None, None, 0, stop - start
    index, zeros = pad_rows(length, start, stop, mode)
    index.flags.writeable = False  # shared by the cache
    lo = min(max(-start, 0), stop - start)
    hi = max(min(length - start, stop - start), lo)
    return index, (zeros if zeros.any() else None), lo, hi


def padded_block(x3, rows, cols, mode: str, value: float = 0.0):
    """The block of the padded image covering padded-coordinate ``rows`` and ``cols``
    (``(start, stop)`` pairs shifted so 0 is the first input row/column), with exactly the
    values :func:`convcli.engine.padding.pad2d` gives (``zeros`` pads with ``value``).  A view of
    ``x3`` when no padding is touched.
    """
    height, width = x3.shape[:2]
    (r0, r1), (c0, c1) = rows, cols
    if r0 >= 0 and r1 <= height and c0 >= 0 and c1 <= width:
        return x3[r0:r1, c0:c1]
    ridx, rzero, rlo, rhi = _axis(height, r0, r1, mode)
    cidx, czero, clo, chi = _axis(width, c0, c1, mode)
    block = scratch("padded", (r1 - r0, c1 - c0) + x3.shape[2:], x3.dtype)

    def fill(dst, src):  # src: rows of x3 (all columns) -> dst: those rows, padded columns
        if chi > clo:
            dst[:, clo:chi] = src[:, c0 + clo : c0 + chi]
        if clo > 0:
            dst[:, :clo] = src[:, cidx[:clo]]
        if chi < c1 - c0:
            dst[:, chi:] = src[:, cidx[chi:]]

    if rhi > rlo:
        fill(block[rlo:rhi], x3[r0 + rlo : r0 + rhi])
    if rlo > 0:
        fill(block[:rlo], x3[ridx[:rlo]])
    if rhi < r1 - r0:
        fill(block[rhi:], x3[ridx[rhi:]])
    if mode == "zeros":
        if rzero is not None:
            block[rzero] = value
        if czero is not None:
            block[:, czero] = value
    return block


def accumulate(acc, views_weights, tmp=None) -> None:
    """``acc = sum(w * v)`` in place, in the order given, skipping zero weights.

    Weights of 1 and -1 add and subtract without a multiply (exact: ``1*v == v``).
    ``tmp`` is a scratch array shaped like ``acc`` (made when needed).
    """
    first = True
    for view, weight in views_weights:
        if weight == 0:
            continue
        if first:
            if weight == 1:
                np.copyto(acc, view)
            else:
                np.multiply(view, weight, out=acc)
            first = False
        elif weight == 1:
            np.add(acc, view, out=acc)
        elif weight == -1:
            np.subtract(acc, view, out=acc)
        else:
            if tmp is None:
                tmp = scratch("accumulate", acc.shape, acc.dtype)
            np.multiply(view, weight, out=tmp)
            np.add(acc, tmp, out=acc)
    if first:
        acc.fill(0)


# Separable kernels: k == sum_r outer(col_r, row_r).  A rank is taken only when what it leaves
# out is below this fraction of the kernel's L1 norm, so the result stays within about
# SEPARABLE_TOLERANCE * sum|k| * max|x| of the direct sum (float32 rounding is ~6e-8).
SEPARABLE_TOLERANCE = 1e-6


def separable_factors(kernel, max_rank: int | None = None):
    """``[(col, row), ...]`` float32 vectors with ``kernel == sum(outer(col, row))`` to within
    :data:`SEPARABLE_TOLERANCE` (relative, L1), using the fewest terms; ``None`` when more than
    ``max_rank`` terms would be needed.

    The factors come from the SVD in float64; a rank-1 kernel with integer-like entries
    (Sobel, box) is rescaled so its factors are small integers when that is exact.
    """
    k = np.asarray(kernel, dtype=np.float64)
    norm = np.abs(k).sum()
    if norm == 0:
        return []
    limit = min(k.shape) if max_rank is None else min(max_rank, min(k.shape))
    u, s, vt = np.linalg.svd(k)
    approx = np.zeros_like(k)
    factors = []
    for r in range(limit):
        col, row = u[:, r] * np.sqrt(s[r]), vt[r] * np.sqrt(s[r])
        factors.append((col, row))
        approx += np.outer(col, row)
        if np.abs(k - approx).sum() <= SEPARABLE_TOLERANCE * norm:
            break
    else:
        return None
    if len(factors) == 1:
        factors = [_nice_rank1(k, *factors[0])]
    out = []
    for col, row in factors:
        col32, row32 = col.astype(np.float32), row.astype(np.float32)
        col32[np.abs(col) <= 1e-12 * np.abs(col).max()] = 0  # exact zeros stay zeros (skipped)
        row32[np.abs(row) <= 1e-12 * np.abs(row).max()] = 0
        out.append((col32, row32))
    # The float32 factors must still reproduce the kernel.
    approx = sum(np.outer(c.astype(np.float64), r.astype(np.float64)) for c, r in out)
    if np.abs(k - approx).sum() > SEPARABLE_TOLERANCE * norm:
        return None
    return out


def _nice_rank1(k, col, row):
    """Rank-1 factors taken from the kernel itself when they are at least as exact as the SVD's:
    its heaviest column, scaled so its smallest non-zero entry is 1, and the matching row.
    Integer kernels then factor into integers (Sobel: [1, 2, 1] x [1, 0, -1]), whose passes
    are exact additions."""
    j = int(np.argmax(np.abs(k).sum(axis=0)))
    c = k[:, j].copy()
    i = int(np.argmax(np.abs(c)))
    pivot = c[i]
    if pivot == 0:
        return col, row
    c_scale = np.abs(c)[np.abs(c) > 0].min()
    c = c / c_scale * np.sign(pivot)
    r = k[i] / (c[i])
    if np.abs(np.outer(c, r) - k).sum() <= np.abs(k - np.outer(col, row)).sum() + 1e-15 * np.abs(k).sum():
        return c, r
    return col, row


def accumulate_symmetric(acc, views, weights, tmp=None) -> None:
    """``acc = sum(w[i] * views[i])`` for a 1-D kernel, pairing taps ``i`` and ``K-1-i`` whose
    weights are equal or opposite: ``w * (a + b)`` or ``w * (a - b)``, three array passes per
    pair instead of four (Gaussian, box, Sobel, derivative kernels).  Agrees with the plain
    sum to float32 rounding, not bit for bit.
    """
    count = len(weights)
    terms = []  # (weight, first view, second view or None, sign of the second)
    for i in range((count + 1) // 2):
        j = count - 1 - i
        wi, wj = weights[i], weights[j]
        if i != j and wi != 0 and abs(wi) == abs(wj):
            terms.append((wi, views[i], views[j], 1 if wi == wj else -1))
        else:
            terms.append((wi, views[i], None, 0))
            if i != j:
                terms.append((wj, views[j], None, 0))
    first = True
    for weight, a, b, sign in terms:
        if weight == 0:
            continue
        target = acc if first else tmp
        if target is None:
            target = tmp = scratch("accumulate", acc.shape, acc.dtype)
        if b is None:
            if not first and weight in (1, -1):
                (np.add if weight == 1 else np.subtract)(acc, a, out=acc)
                continue
            if weight == 1:
                np.copyto(target, a)
            else:
                np.multiply(a, weight, out=target)
        else:
            (np.add if sign == 1 else np.subtract)(a, b, out=target)
            if weight == -1 and not first:
                np.subtract(acc, target, out=acc)
                continue
            if weight != 1:
                np.multiply(target, weight, out=target)
        if not first:
            np.add(acc, target, out=acc)
        first = False
    if first:
        acc.fill(0)


def take_columns(out, source, step: int, start: int = 0) -> None:
    """``out[:] = source[:, start::step]`` for H x W x C arrays, moving whole pixels.

    numpy copies a strided H x W x 3 view in runs of 3 floats (slow); seen as one
    12-byte item per pixel the same copy runs in long loops, about 2.5x faster.
    """
    channels = source.shape[2]
    stop = start + step * (out.shape[1] - 1) + 1
    if channels == 1 or not (_pixels_contiguous(out) and _pixels_contiguous(source)):
        np.copyto(out, source[:, start:stop:step])
        return
    pixel = np.dtype((np.void, channels * source.itemsize))
    np.copyto(out.view(pixel)[:, :, 0], source.view(pixel)[:, start:stop:step, 0])


def put_columns(out, source, step: int, start: int = 0) -> None:
    """``out[:, start::step] = source`` for H x W x C arrays, moving whole pixels."""
    channels = source.shape[2]
    stop = start + step * (source.shape[1] - 1) + 1
    if channels == 1 or not (_pixels_contiguous(out) and _pixels_contiguous(source)):
        np.copyto(out[:, start:stop:step], source)
        return
    pixel = np.dtype((np.void, channels * source.itemsize))
    np.copyto(out.view(pixel)[:, start:stop:step, 0], source.view(pixel)[:, :, 0])


def _pixels_contiguous(array) -> bool:
    return (
        array.strides[2] == array.itemsize
        and array.strides[1] % array.itemsize == 0
        and array.strides[1] >= array.shape[2] * array.itemsize
    )


def column_phases(block, step: int, offsets):
    """For column ``offsets`` read at ``step`` (a horizontal stride): ``view(offset, count)``
    giving ``block[:, offset : offset + step*(count-1) + 1 : step]``.

    With several channels those strided views make numpy loop over runs of C floats, which
    is slow; so each phase ``offset % step`` is first copied whole pixels at a time into a
    contiguous array, and the views become plain slices of it.  Same values, same order.
    """
    channels = block.shape[2]
    if step == 1 or channels == 1 or not _pixels_contiguous(block):
        return lambda offset, count: block[:, offset : offset + step * (count - 1) + 1 : step]
    phases = {}
    for phase in sorted({offset % step for offset in offsets}):
        width = -(-(block.shape[1] - phase) // step)
        copy = scratch(f"phase{phase}", (block.shape[0], width, channels), block.dtype)
        take_columns(copy, block, step, phase)
        phases[phase] = copy
    return lambda offset, count: phases[offset % step][:, offset // step : offset // step + count]
