"""Max, mean and min pooling, exact to PyTorch's ``max_pool2d`` and ``avg_pool2d``."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ..constants import POOL_OPS
from ..errors import ConvcliError
from ..geometry.sizes import as_pair, pool_output_size, pool_padding_after, window_rows
from .filtering import as_image
from .loops import padded_block, row_tiles, run_tiles, scratch, take_columns

POOL_METHODS = ("auto", "direct")


def pool_parameters(op, size, stride, padding, dilation):
    """``(size, stride, padding, dilation)`` as ``(height, width)`` pairs, checked as PyTorch
    checks them (stride defaults to the window; mean pooling has no dilation)."""
    if op not in POOL_OPS:
        raise ConvcliError(f"op: expected one of {', '.join(POOL_OPS)}, got {op!r}")
    size = as_pair(size, "size", minimum=1)
    stride = size if stride is None else as_pair(stride, "stride", minimum=1)
    padding = as_pair(padding, "padding", minimum=0)
    dilation = as_pair(dilation, "dilation", minimum=1)
    if op == "mean" and dilation != (1, 1):
        raise ConvcliError("dilation: mean pooling has no dilation (as PyTorch's avg_pool2d)")
    return size, stride, padding, dilation


def pool2d(
    image: ArrayLike,
    size: int | tuple[int, int] = 2,
    *,
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    ceil_mode: bool = False,
    op: str = "max",
    count_include_pad: bool = True,
    method: str = "auto",
    workers: int | None = None,
) -> np.ndarray:
    """Pool an H x W (x C) image over windows, each channel on its own.

    ``op``: ``max`` (PyTorch's ``F.max_pool2d``), ``mean`` (``F.avg_pool2d``) or
    ``min`` (``-F.max_pool2d(-x)``).  ``size``, ``stride``, ``padding``,
    ``dilation``: int or ``(height, width)``; ``stride`` defaults to ``size``.
    Padding counts as minus infinity for max, plus infinity for min, and as
    zeros for mean, where ``count_include_pad`` decides whether padded cells
    count in the divisor.  Padding must be at most ``size // 2`` (PyTorch's rule, which
    ignores the dilation).  Dilation is for max and min only (``avg_pool2d`` has none).

    Output size per axis::

        out = floor((in + 2*padding - dilation*(size - 1) - 1) / stride) + 1

    with ``ceil`` instead of ``floor`` under ``ceil_mode``, where a last
    window that would start in the right padding is dropped
    (``(out - 1)*stride >= in + padding`` means ``out -= 1``).

    Parameters
    ----------
    image : array_like
        H x W or H x W x C numbers (bool, integer or float), converted to float32.
    size : int or (int, int), optional
        The window, one value or ``(height, width)``, at least 1.  Default 2.
    stride : int or (int, int), optional
        At least 1.  Default: ``size`` (windows side by side).
    padding : int or (int, int), optional
        Added on both sides of each axis; at most ``size // 2``.  Default 0.
    dilation : int or (int, int), optional
        Spacing of the window's cells, at least 1; max and min only.  Default 1.
    ceil_mode : bool, optional
        Round the output size up instead of down (default False).  A window that then hangs
        past the bottom/right padding takes only its cells inside the padded image, and for
        mean only those count in the divisor, as in PyTorch.
    op : {"max", "mean", "min"}, optional
        Default ``"max"``.
    count_include_pad : bool, optional
        Mean only: whether the padded zeros count in the divisor (default True, as PyTorch).
    method : {"auto", "direct"}, optional
        ``"direct"`` is the plain reference: the whole image padded, one strided view per
        window cell.  ``"auto"`` (default) makes the same comparisons and sums in the same order
        on output row tiles that stay in cache, on ``workers`` threads, padding only the tiles
        that touch the border, and min as ``np.minimum`` with ``+inf`` padding: bit-identical
        results, without the whole padded copy.
    workers : int, optional
        Threads for ``method="auto"`` (default: the usable cores).

    Returns
    -------
    np.ndarray
        float32, H' x W' (x C): as many dimensions as ``image``.

    Raises
    ------
    ConvcliError
        For an unknown ``op`` or ``method``; a size, stride or dilation below 1 or a negative
        padding; padding over ``size // 2``; a dilation with ``op="mean"``; a window that does
        not fit the padded image; an image that is not H x W (x C) numbers.

    Examples
    --------
    >>> import numpy as np
    >>> pool2d(np.arange(16.).reshape(4, 4), 2).tolist()
    [[5.0, 7.0], [13.0, 15.0]]

    ``ceil_mode`` on a 5x5 ramp: ``floor((5 - 1*(2 - 1) - 1) / 2) + 1 = 2`` windows per axis
    without it, ``ceil(3 / 2) + 1 = 3`` with it (the third starts at 4, inside the input, so
    it stays and holds the last row or column alone):

    >>> x = np.arange(25.).reshape(5, 5)
    >>> pool2d(x, 2).tolist()
    [[6.0, 8.0], [16.0, 18.0]]
    >>> pool2d(x, 2, ceil_mode=True).tolist()
    [[6.0, 8.0, 9.0], [16.0, 18.0, 19.0], [21.0, 23.0, 24.0]]

    Mean over 2x2 windows at stride 1 with one pixel of padding, with and without the padded
    zeros in the divisor (the corner window holds 1 and three zeros):

    >>> y = np.array([[1., 2.], [3., 4.]])
    >>> pool2d(y, 2, stride=1, padding=1, op="mean").tolist()
    [[0.25, 0.75, 0.5], [1.0, 2.5, 1.5], [0.75, 1.75, 1.0]]
    >>> pool2d(y, 2, stride=1, padding=1, op="mean", count_include_pad=False).tolist()
    [[1.0, 1.5, 2.0], [2.0, 2.5, 3.0], [3.0, 3.5, 4.0]]
    """
    if method not in POOL_METHODS:
        raise ConvcliError(f"method: expected one of {', '.join(POOL_METHODS)}, got {method!r}")
    size, stride, padding, dilation = pool_parameters(op, size, stride, padding, dilation)
    x = as_image(image)
    out_h, out_w = pool_output_size(x.shape[:2], size, stride, padding, dilation, ceil_mode)
    if method == "direct":
        out = _direct(x, size, stride, padding, dilation, op, out_h, out_w)
    else:
        out = _tiled(x, size, stride, padding, dilation, op, out_h, out_w, workers)
    if op == "mean":
        (kh, kw), (sy, sx), (ph, pw) = size, stride, padding
        height, width = x.shape[:2]
        div_h = mean_divisor(height, kh, sy, ph, out_h, count_include_pad)
        div_w = mean_divisor(width, kw, sx, pw, out_w, count_include_pad)
        divisor = np.outer(div_h, div_w).astype(np.float32)
        out /= divisor.reshape(divisor.shape + (1,) * (x.ndim - 2))
    return out


def _direct(x, size, stride, padding, dilation, op, out_h, out_w):
    """The plain reference: pad the whole image, one strided view per window cell."""
    (kh, kw), (sy, sx), (ph, pw), (dy, dx) = size, stride, padding, dilation
    height, width = x.shape[:2]
    # Pad far enough on the bottom/right for the last (ceil_mode) window.
    extra_h = pool_padding_after(out_h, height, kh, sy, ph, dy)
    extra_w = pool_padding_after(out_w, width, kw, sx, pw, dx)
    widths = [(ph, extra_h), (pw, extra_w)] + [(0, 0)] * (x.ndim - 2)

    if op == "mean":
        padded = np.pad(x, widths)
    else:
        source = -x if op == "min" else x
        padded = np.pad(source, widths, constant_values=-np.inf)

    out = None
    for m in range(kh):
        for n in range(kw):
            view = padded[
                m * dy : m * dy + sy * (out_h - 1) + 1 : sy, n * dx : n * dx + sx * (out_w - 1) + 1 : sx
            ]
            if out is None:
                out = view.astype(np.float32, copy=True)
            elif op == "mean":
                out += view
            else:
                np.maximum(out, view, out=out)
    if op == "min":
        np.negative(out, out=out)
    return out


def _tiled(x, size, stride, padding, dilation, op, out_h, out_w, workers):
    """The direct path's results on output row tiles, each tile padded only where it touches
    the border.

    Max and min reduce the window's rows first (whole contiguous rows), then its columns at
    every column position (contiguous shifted slices), then keep every ``stride``-th column
    with one copy that moves whole pixels: long inner loops instead of numpy's slow
    3-float runs over strided RGB pixels.  Max and min are exact, so this equals the direct
    path bit for bit.  Mean keeps the direct path's order of additions (view by view, row
    by row), which the chunked pipeline reproduces, so it too is bit-identical.
    """
    (kh, kw), (sy, sx), (ph, pw), (dy, dx) = size, stride, padding, dilation
    x3 = x if x.ndim == 3 else x[:, :, None]
    out = np.empty((out_h, out_w, x3.shape[2]), dtype=np.float32)
    fill = {"mean": 0.0, "max": -np.inf, "min": np.inf}[op]
    combine = {"mean": np.add, "max": np.maximum, "min": np.minimum}[op]
    span_w = sx * (out_w - 1) + 1  # columns of the window starts

    def reduce(target, views):
        if len(views) == 1:
            np.copyto(target, views[0])
            return
        combine(views[0], views[1], out=target)  # the direct path's first two steps
        for view in views[2:]:
            combine(target, view, out=target)

    def tile_job(tile):
        r0, r1, _, _ = tile
        th = r1 - r0
        lo, hi = window_rows(r0, r1, sy, dy * (kh - 1) + 1)
        left, right = window_rows(0, out_w, sx, dx * (kw - 1) + 1)
        block = padded_block(x3, (lo - ph, hi - ph), (left - pw, right - pw), "zeros", fill)
        acc = out[r0:r1]
        if op == "mean":
            reduce(
                acc,
                [
                    block[m * dy : m * dy + sy * (th - 1) + 1 : sy, n * dx : n * dx + span_w : sx]
                    for m in range(kh)
                    for n in range(kw)
                ],
            )
            return
        row_views = [block[m * dy : m * dy + sy * (th - 1) + 1 : sy] for m in range(kh)]
        if kh == 1:
            vertical = row_views[0]
        else:
            vertical = scratch("vertical", row_views[0].shape)
            reduce(vertical, row_views)
        if sx == 1:
            reduce(acc, [vertical[:, n * dx : n * dx + span_w] for n in range(kw)])
            return
        if kw == 1:
            take_columns(acc, vertical[:, :span_w], sx)
            return
        both = scratch("both", (th, span_w, x3.shape[2]))
        reduce(both, [vertical[:, n * dx : n * dx + span_w] for n in range(kw)])
        take_columns(acc, both, sx)

    run_tiles(tile_job, row_tiles(out_h, out_w, x3.shape[2]), workers, out.size * kh * kw)
    return out if x.ndim == 3 else out[:, :, 0]


def window_sums(block, size, stride, out_hw):
    """The sums over each window of an already padded block, added in the order
    :func:`pool2d` adds them for mean pooling, so that dividing them by the slice of the whole
    image's :func:`mean_divisor` gives its result bit for bit (the chunked path does)."""
    size, stride = as_pair(size, "size", minimum=1), as_pair(stride, "stride", minimum=1)
    return _direct(as_image(block), size, stride, (0, 0), (1, 1), "mean", *out_hw)


def mean_divisor(length, kernel, stride, padding, count, count_include_pad):
    """Cells per window along one axis, as PyTorch's avg_pool2d counts them."""
    start = np.arange(count) * stride - padding
    end = np.minimum(start + kernel, length + padding)
    if count_include_pad:
        return end - start
    return np.minimum(end, length) - np.maximum(start, 0)
