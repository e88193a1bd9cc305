"""2-D cross-correlation and convolution of images, exact to PyTorch's ``conv2d``."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ..constants import MODES
from ..errors import ConvcliError
from ..geometry.sizes import as_pair, conv_output_size, resolve_padding, window_rows
from .loops import (
    accumulate,
    accumulate_symmetric,
    column_phases,
    correlate_native,
    correlate_padded,
    native,
    padded_block,
    padding_index,
    pixels_contiguous,
    row_tiles,
    run_tiles,
    scratch,
    separable_factors,
)
from .padding import check_pad_mode, check_pad_sizes, pad2d


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConvcliError(f"mode: expected correlation or convolution, got {mode!r}")
    return mode


def as_kernel(kernel, name: str = "kernel"):
    """A kernel as a finite, non-empty 2-D float32 array (raises ConvcliError otherwise)."""
    try:
        array = np.asarray(kernel, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConvcliError(f"{name}: not a numeric matrix ({exc})") from None
    if array.ndim != 2:
        raise ConvcliError(f"{name}: must be a 2-D matrix, got {array.ndim} dimension(s)")
    if array.size == 0:
        raise ConvcliError(f"{name}: is empty ({array.shape[1]}x{array.shape[0]})")
    if not np.isfinite(array).all():
        raise ConvcliError(f"{name}: holds NaN or infinite values")
    if np.abs(array).max() > np.finfo(np.float32).max:
        raise ConvcliError(f"{name}: holds values too large for float32 (over 3.4e38)")
    return array.astype(np.float32)


def as_image(image, name: str = "image"):
    """An image as a float32 H x W or H x W x C array."""
    array = np.asarray(image)
    if array.ndim not in (2, 3):
        raise ConvcliError(f"{name}: must be H x W or H x W x C, got shape {array.shape}")
    if array.size == 0:
        raise ConvcliError(f"{name}: is empty (shape {array.shape})")
    if array.dtype.kind not in "biuf":
        raise ConvcliError(f"{name}: must hold numbers, got dtype {array.dtype}")
    return array.astype(np.float32, copy=False)


METHODS = ("auto", "direct", "tiled", "separable", "fft")

# "auto" takes the FFT when a kernel that is not separable has at least this many non-zero
# taps (times the stride's area, since the FFT computes every position).  Measured on 2 cores,
# 3840x2160x3 float32: the tiled path costs about 8.5 ms per tap, the float64 FFT about
# 1.2-1.5 s whatever the kernel (9x9: tiled 0.71 s, FFT 1.6 s; 15x15: tiled 1.9 s, FFT 1.1 s).
FFT_MIN_TAPS = 160
# With the compiled loops (convcli/engine/_native.c) the FFT pays only from this many taps (times
# the stride's area).  Measured on the same image, one thread, CPU time (loaded machine): random
# 15x15 direct 0.48 s, FFT 2.0 s; 25x25 0.79 s, 1.42 s; 35x35 1.58 s, 1.71 s.
NATIVE_FFT_MIN_TAPS = 1400
# With the compiled loops, "auto" takes the separable passes only when they need under this
# share of the kernel's taps: each pass is a trip through memory, a direct tap is not (Sobel,
# 5 passes for 6 taps, runs direct; a 7x7 Gaussian, 14 for 49, separable).
NATIVE_SEPARABLE_SHARE = 0.5


def filter2d(
    image: ArrayLike,
    kernel: ArrayLike,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | tuple[int, int, int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    pad_mode: str = "zeros",
    mode: str = "correlation",
    method: str = "auto",
    workers: int | None = None,
) -> np.ndarray:
    """Filter an image with a 2-D kernel, each channel on its own.

    ``image`` is H x W or H x W x C.  By default this is cross-correlation, as
    PyTorch's ``F.conv2d``: ``out[i, j] = sum_{m,n} x_pad[i*s + m*d, j*s + n*d] * k[m, n]``.
    ``mode="convolution"`` rotates the kernel 180 degrees first (as
    ``scipy.signal.convolve2d``).

    Output size per axis::

        out = floor((in + pad_before + pad_after - dilation*(k - 1) - 1) / stride) + 1

    Parameters
    ----------
    image : array_like
        H x W or H x W x C numbers (bool, integer or float), converted to float32.
    kernel : array_like
        A non-empty 2-D matrix of finite numbers within float32's range, used as float32.
    stride, dilation : int or (int, int), optional
        One value or ``(height, width)``, each at least 1.  Default 1.
    padding : int, (int, int), (int, int, int, int) or str, optional
        An int, ``(height, width)``, ``(top, bottom, left, right)``, ``"valid"`` (0, the
        default) or ``"same"`` (output ``ceil(in / stride)``; the odd pixel of an even kernel
        goes to the bottom/right, as PyTorch's ``padding='same'``; above stride 1 this is
        TensorFlow's ``SAME``, which PyTorch refuses).  Not negative.
    pad_mode : {"zeros", "reflect", "replicate", "circular"}, optional
        How the padding is filled, as PyTorch's ``F.pad`` (see :func:`~convcli.engine.padding.pad2d`):
        reflect padding must be smaller than the image side, circular padding at most the side.
    mode : {"correlation", "convolution"}, optional
        ``"correlation"`` (default, PyTorch's ``F.conv2d``) or ``"convolution"`` (the kernel
        rotated 180 degrees first, as ``scipy.signal.convolve2d``).
    method : {"auto", "direct", "tiled", "separable", "fft"}, optional
        The algorithm; all give the same numbers to float32 rounding
        (tests/test_fast_paths.py holds them to 1e-4 of the value scale):

        - ``"direct"``: the plain reference, one strided slice of the whole padded image per
          kernel tap;
        - ``"tiled"``: the same per-tap sums, on output tiles that stay in cache, on ``workers``
          threads; in compiled code (convcli/engine/_native.c, built at install; environment
          ``CONVCLI_NATIVE=0`` turns it off) with the same products and sums in the same order;
        - ``"separable"``: the kernel as a sum of few outer products (rank 1 for Gaussian, box,
          Sobel; found by SVD, taken only when exact to 1e-6 of the kernel's L1 norm), each a
          vertical then a horizontal 1-D pass, tiled and threaded.  Raises ConvcliError when the
          kernel is not a sum of at most ``min(kh, kw) // 2`` (at least 1) outer products;
        - ``"fft"``: float64 FFT (``numpy.fft``) of each padded channel, keeping only the output
          positions;
        - ``"auto"`` (default): separable when that needs fewer passes than taps (with the
          compiled loops: under half as many) and the kernel has at least 2 rows and 2
          columns, the FFT for kernels of at least ``FFT_MIN_TAPS`` non-zero taps (with the
          compiled loops ``NATIVE_FFT_MIN_TAPS``; times the stride area), else tiled.
    workers : int, optional
        Threads for the tiled, separable and FFT paths (default: the usable cores).

    Returns
    -------
    np.ndarray
        float32, H' x W' (x C): as many dimensions as ``image``.

    Raises
    ------
    ConvcliError
        For an unknown ``method``, ``mode`` or ``pad_mode``; an image that is not H x W (x C)
        numbers or a kernel that is not a finite 2-D matrix; a stride or dilation below 1 or a
        negative padding; padding that ``pad_mode`` cannot give (PyTorch refuses it too); a
        dilated kernel larger than the padded image; ``method="separable"`` with a kernel that
        is not a sum of few enough outer products.

    Notes
    -----
    The tiled and separable paths give bit-identical results however the image is split
    into tiles, threads or blocks (convcli.run.chunked relies on it); the FFT's rounding depends
    on the image's extent, so chunked results agree with it to float64 rounding only.
    Zero weights are skipped, so a NaN or infinity of the image may spread differently
    between methods; images are expected to be finite.

    Examples
    --------
    A 2x2 kernel on a 4x4 ramp: every output is ``x[i, j] - x[i + 1, j + 1] = -5``, on
    ``floor((4 - 1*(2 - 1) - 1) / 1) + 1 = 3`` rows and columns.

    >>> import numpy as np
    >>> x = np.arange(16, dtype=np.float32).reshape(4, 4)
    >>> filter2d(x, [[1, 0], [0, -1]]).tolist()
    [[-5.0, -5.0, -5.0], [-5.0, -5.0, -5.0], [-5.0, -5.0, -5.0]]

    Sums over 3x3 neighbourhoods with one pixel of zeros padding (the corner is 1 + 2 + 4 + 5):

    >>> x = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    >>> filter2d(x, np.ones((3, 3)), padding=1).tolist()
    [[12.0, 21.0, 16.0], [27.0, 45.0, 33.0], [24.0, 39.0, 28.0]]

    Correlation takes the kernel as written, convolution rotated:

    >>> row = np.array([[1., 10., 100.]])
    >>> filter2d(row, [[1, 2]]).tolist()  # 1*x[j] + 2*x[j + 1]
    [[21.0, 210.0]]
    >>> filter2d(row, [[1, 2]], mode="convolution").tolist()  # 2*x[j] + 1*x[j + 1]
    [[12.0, 120.0]]

    Reflect padding of one column on each side (the row becomes 2 1 2 3 2):

    >>> filter2d(np.array([[1., 2., 3.]]), [[1, 1, 1]], padding=(0, 1), pad_mode="reflect").tolist()
    [[5.0, 6.0, 7.0]]

    Dilation 2 spreads the taps: ``x[i, j] + x[i + 2, j + 2]`` on a 5x5 ramp, on
    ``floor((5 - 2*(2 - 1) - 1) / 1) + 1 = 3`` rows and columns:

    >>> filter2d(np.arange(25.).reshape(5, 5), [[1, 0], [0, 1]], dilation=2).tolist()
    [[12.0, 14.0, 16.0], [22.0, 24.0, 26.0], [32.0, 34.0, 36.0]]

    Stride 2 with ``"same"`` padding on a 7x9 RGB image: ``ceil(7 / 2) x ceil(9 / 2)``, each
    channel filtered on its own:

    >>> filter2d(np.zeros((7, 9, 3)), np.ones((3, 3)), stride=2, padding="same").shape
    (4, 5, 3)
    """
    if method not in METHODS:
        raise ConvcliError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    x = as_image(image)
    k = as_kernel(kernel)
    if check_mode(mode) == "convolution":
        k = k[::-1, ::-1]
    stride = as_pair(stride, "stride", minimum=1)
    dilation = as_pair(dilation, "dilation", minimum=1)
    sides = resolve_padding(padding, x.shape[:2], k.shape, stride, dilation)
    out_h, out_w = conv_output_size(x.shape[:2], k.shape, stride, sides, dilation)
    check_pad_mode(pad_mode)
    check_pad_sizes(x.shape[:2], sides, pad_mode)
    if method == "direct":
        return _direct(x, k, stride, dilation, sides, pad_mode, out_h, out_w)

    factors = None
    taps = int(np.count_nonzero(k))
    if method in ("auto", "separable"):
        max_rank = max(1, min(k.shape) // 2)
        factors = separable_factors(k, max_rank)
        if method == "separable" and factors is None:
            raise ConvcliError(
                f"method: separable needs a kernel that is a sum of at most {max_rank} outer "
                f"product(s) of a column and a row (rank <= {max_rank}); this "
                f"{k.shape[1]}x{k.shape[0]} kernel is not (use method='auto')"
            )
        if method == "auto" and factors is not None:
            passes = sum(int(np.count_nonzero(c)) + int(np.count_nonzero(r)) for c, r in factors)
            share = NATIVE_SEPARABLE_SHARE if native() else 1
            if not passes < share * taps or min(k.shape) == 1:
                factors = None
    if method == "auto":
        fft_min = NATIVE_FFT_MIN_TAPS if native() else FFT_MIN_TAPS
        if factors is not None:
            method = "separable"
        elif taps >= fft_min * stride[0] * stride[1]:
            method = "fft"
        else:
            method = "tiled"

    x3 = x if x.ndim == 3 else x[:, :, None]
    if method == "fft":
        out = _fft(x3, k, stride, dilation, sides, pad_mode, out_h, out_w, workers)
    else:
        out = np.empty((out_h, out_w, x3.shape[2]), dtype=np.float32)
        if method == "separable":
            _separable(x3, factors, stride, dilation, sides, pad_mode, out, workers)
        else:
            _tiled(x3, k, stride, dilation, sides, pad_mode, out, workers)
    return out if x.ndim == 3 else out[:, :, 0]


def _direct(x, k, stride, dilation, sides, pad_mode, out_h, out_w):
    """The plain reference: one strided view of the whole padded image per kernel tap."""
    padded = pad2d(x, sides, pad_mode)
    (sy, sx), (dy, dx) = stride, dilation
    out = np.zeros((out_h, out_w) + x.shape[2:], dtype=np.float32)
    # One strided view per kernel tap: only output positions are ever computed.
    for m in range(k.shape[0]):
        for n in range(k.shape[1]):
            weight = k[m, n]
            if weight == 0:
                continue
            view = padded[
                m * dy : m * dy + sy * (out_h - 1) + 1 : sy, n * dx : n * dx + sx * (out_w - 1) + 1 : sx
            ]
            out += weight * view
    return out


def _block_for(x3, tile, top, left, span, stride, pad_mode):
    """The padded input block that output tile ``(r0, r1, c0, c1)`` reads, given the kernel's
    ``span`` (dilated height, width)."""
    (r0, r1, c0, c1), (sy, sx) = tile, stride
    rows = window_rows(r0, r1, sy, span[0])
    cols = window_rows(c0, c1, sx, span[1])
    return padded_block(x3, (rows[0] - top, rows[1] - top), (cols[0] - left, cols[1] - left), pad_mode)


def _tiled(x3, k, stride, dilation, sides, pad_mode, out, workers):
    """Per-tap sums on cache-sized output tiles, tiles on a thread pool (the compiled loop
    where it was built: the same products and sums in the same order, so the same bits)."""
    (sy, sx), (dy, dx) = stride, dilation
    kh, kw = k.shape
    span = (dy * (kh - 1) + 1, dx * (kw - 1) + 1)
    taps = cancelling_order([(m, n, k[m, n]) for m in range(kh) for n in range(kw) if k[m, n] != 0])
    top, left = sides[0], sides[2]

    def native_job(tile):
        r0, r1, c0, c1 = tile
        correlate_padded(image, [(out[r0:r1, c0:c1], native_taps)], stride, rows, columns[c0 * sx :], r0)

    native_taps = [(m * dy, n * dx, float(w)) for m, n, w in taps]
    if native():  # the padded image as index tables, read row by row in compiled code
        image = pixels_contiguous(x3)
        rows = padding_index(x3.shape[0], top, sy * (out.shape[0] - 1) + span[0], pad_mode)
        columns = padding_index(x3.shape[1], left, sx * (out.shape[1] - 1) + span[1], pad_mode)

    def tile_job(tile):
        r0, r1, c0, c1 = tile
        th, tw = r1 - r0, c1 - c0
        block = _block_for(x3, tile, top, left, span, stride, pad_mode)
        # rows: strided slices (each row contiguous); columns: contiguous per stride phase
        columns = column_phases(block, sx, {n * dx for _, n, _ in taps})
        views = ((columns(n * dx, tw)[m * dy : m * dy + sy * (th - 1) + 1 : sy], w) for m, n, w in taps)
        accumulate(out[r0:r1, c0:c1], views)

    work = out.size * max(1, len(taps))
    job = native_job if native() else tile_job
    run_tiles(job, row_tiles(out.shape[0], out.shape[1], out.shape[2]), workers, work)


def cancelling_order(taps):
    """``taps`` ``(row, col, weight)`` in their order, except that each tap is followed by the
    first later one of the opposite weight: summed in this order, a flat area gives exactly 0
    under a kernel made of such pairs (Sobel, Prewitt, Scharr: ``a - a`` is 0 in floating point,
    where ``a + 2a + a - a - 2a - a`` in turn rounds to a few units in the last place, and a
    ``--range 0,0.01`` picture then clips half the flat pixels).

    >>> [w for _, _, w in cancelling_order([(0, 0, 1.0), (0, 1, 2.0), (2, 0, -1.0), (2, 1, -2.0)])]
    [1.0, -1.0, 2.0, -2.0]
    """
    placed = [False] * len(taps)
    ordered = []
    for i, tap in enumerate(taps):
        if placed[i]:
            continue
        placed[i] = True
        ordered.append(tap)
        for j in range(i + 1, len(taps)):
            if not placed[j] and taps[j][2] == -tap[2]:
                placed[j] = True
                ordered.append(taps[j])
                break
    return ordered


def _separable(x3, factors, stride, dilation, sides, pad_mode, out, workers):
    """``sum_r`` (vertical pass with ``col_r``, then horizontal pass with ``row_r``) on output
    tiles.  Elementwise numpy only (no BLAS), so every output value comes from the same float
    operations whatever the tiles, threads or image blocks: the chunked and banded pipelines
    stay bit-identical to the whole image.  (A banded matrix product per tile made the
    vertical pass 2-4x faster, but its rounding depended on the row's place in the tile.)"""
    (sy, sx), (dy, dx) = stride, dilation
    if not factors:
        out.fill(0)
        return
    kh, kw = len(factors[0][0]), len(factors[0][1])
    span = (dy * (kh - 1) + 1, dx * (kw - 1) + 1)
    top, left = sides[0], sides[2]
    rank = len(factors)
    # the compiled loop's passes: plain sums of the taps in order (numpy pairs symmetric taps)
    passes = [
        (
            [(m * dy, 0, float(w)) for m, w in enumerate(col) if w != 0],
            [(0, n * dx, float(w)) for n, w in enumerate(row) if w != 0],
        )
        for col, row in factors
    ]

    def native_job(tile):
        r0, r1, c0, c1 = tile
        acc = out[r0:r1, c0:c1]
        vertical = scratch("vertical", (r1 - r0, sx * (c1 - c0 - 1) + span[1], x3.shape[2]))
        for r, (col_taps, row_taps) in enumerate(passes):
            correlate_padded(image, [(vertical, col_taps)], (sy, 1), rows, columns[c0 * sx :], r0)
            target = acc if r == 0 else scratch("part", acc.shape)
            correlate_native(vertical, target, row_taps, (1, sx))
            if r:
                np.add(acc, target, out=acc)

    if native():  # the padded image as index tables, read row by row in compiled code
        image = pixels_contiguous(x3)
        rows = padding_index(x3.shape[0], top, sy * (out.shape[0] - 1) + span[0], pad_mode)
        columns = padding_index(x3.shape[1], left, sx * (out.shape[1] - 1) + span[1], pad_mode)

    def tile_job(tile):
        r0, r1, c0, c1 = tile
        th, tw = r1 - r0, c1 - c0
        acc = out[r0:r1, c0:c1]
        block = _block_for(x3, tile, top, left, span, stride, pad_mode)
        vertical = scratch("vertical", (th,) + block.shape[1:])
        spare = scratch("spare", vertical.shape)
        part = None
        for r, (col, row) in enumerate(factors):
            accumulate_symmetric(
                vertical, [block[m * dy : m * dy + sy * (th - 1) + 1 : sy] for m in range(kh)], col, spare
            )
            target = acc if r == 0 else part
            if target is None:
                target = part = scratch("part", acc.shape)
            columns = column_phases(vertical, sx, {n * dx for n in range(kw)})
            accumulate_symmetric(target, [columns(n * dx, tw) for n in range(kw)], row, spare[:, :tw])
            if r:
                np.add(acc, part, out=acc)

    work = out.size * max(1, sum(len(c) + len(r) for c, r in factors)) * rank
    run_tiles(
        native_job if native() else tile_job,
        row_tiles(out.shape[0], out.shape[1], out.shape[2]),
        workers,
        work,
    )


def fast_length(n: int) -> int:
    """The smallest 2-3-5-smooth length >= n (fast for pocketfft)."""
    best = 1 << max(0, (n - 1).bit_length())
    f5 = 1
    while f5 < best:
        f35 = f5
        while f35 < best:
            f = f35
            while f < n:
                f *= 2
            best = min(best, f)
            f35 *= 3
        f5 *= 5
    return best


def _fft(x3, k, stride, dilation, sides, pad_mode, out_h, out_w, workers=None):
    """Float64 FFT correlation of each padded channel; only output positions are kept."""
    (sy, sx), (dy, dx) = stride, dilation
    kh, kw = k.shape
    span_h, span_w = dy * (kh - 1) + 1, dx * (kw - 1) + 1
    dilated = np.zeros((span_h, span_w))
    dilated[::dy, ::dx] = k
    padded = pad2d(x3, sides, pad_mode)
    shape = (fast_length(padded.shape[0]), fast_length(padded.shape[1]))
    # Correlation with k is convolution with k rotated; the circular wrap never reaches the
    # valid positions because the transform is at least as long as the padded image.
    spectrum = np.fft.rfft2(dilated[::-1, ::-1], s=shape)
    out = np.empty((out_h, out_w, x3.shape[2]), dtype=np.float32)
    rows = slice(span_h - 1, span_h - 1 + sy * (out_h - 1) + 1, sy)
    cols = slice(span_w - 1, span_w - 1 + sx * (out_w - 1) + 1, sx)

    def channel_job(c):  # numpy's FFT releases the GIL: channels run on the pool
        channel = padded[:, :, c].astype(np.float64)
        full = np.fft.irfft2(np.fft.rfft2(channel, s=shape) * spectrum, s=shape)
        out[:, :, c] = full[rows, cols]

    run_tiles(channel_job, range(x3.shape[2]), workers, padded.size * 100)
    return out
