"""Transposed convolution (PyTorch's ``conv_transpose2d``), the adjoint of ``filter2d``."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ..errors import ConvcliError
from ..geometry.sizes import as_pair, tconv_output_size
from .filtering import as_image, as_kernel, check_mode
from .loops import (
    accumulate,
    correlate_padded,
    native,
    padded_block,
    padding_index,
    pixels_contiguous,
    put_columns,
    row_tiles,
    run_tiles,
    scratch,
)

TCONV_METHODS = ("auto", "direct", "polyphase")


def conv_transpose2d(
    image: ArrayLike,
    kernel: ArrayLike,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    output_padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    mode: str = "correlation",
    method: str = "auto",
    workers: int | None = None,
) -> np.ndarray:
    """Transposed convolution of an H x W (x C) image, each channel on its own.

    Every input pixel scatters the kernel, scaled by its value, into the output
    at ``stride`` steps; overlaps add up.  ``out[i*s - p + m*d] += x[i] * k[m]``
    along each axis, exactly PyTorch's ``F.conv_transpose2d`` with one input and
    one output channel.  ``mode="convolution"`` rotates the kernel 180 degrees
    first.  ``stride``, ``padding``, ``output_padding``, ``dilation``: int or
    ``(height, width)``; ``output_padding`` must be smaller than the stride or
    the dilation.

    Output size per axis::

        out = (in - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1

    Parameters
    ----------
    image : array_like
        H x W or H x W x C numbers (bool, integer or float), converted to float32.
    kernel : array_like
        A non-empty 2-D matrix of finite numbers within float32's range, used as float32.
    stride, dilation : int or (int, int), optional
        One value or ``(height, width)``, each at least 1.  Default 1.
    padding : int or (int, int), optional
        Rows and columns cropped from each side of the full scatter result (``p`` above),
        not negative.  Default 0.
    output_padding : int or (int, int), optional
        Rows and columns added at the bottom and right only; smaller than the stride or the
        dilation.  Default 0.
    mode : {"correlation", "convolution"}, optional
        ``"convolution"`` rotates the kernel 180 degrees first.  Default ``"correlation"``.
    method : {"auto", "direct", "polyphase"}, optional
        ``"direct"`` is the plain reference: scatter-add of each kernel tap over the whole
        uncropped output.  ``"polyphase"`` (what ``"auto"`` uses) computes each output phase
        ``(row % stride, column % stride)`` on its own: a small correlation of the input with the
        taps that land on that phase, only at the cropped output positions, on row tiles and
        ``workers`` threads.  It adds the same products in the same order, so the results are
        bit-identical.
    workers : int, optional
        Threads for the polyphase path (default: the usable cores).

    Returns
    -------
    np.ndarray
        float32, H' x W' (x C): as many dimensions as ``image``.

    Raises
    ------
    ConvcliError
        For an unknown ``method`` or ``mode``; an image that is not H x W (x C) numbers or a
        kernel that is not a finite 2-D matrix; a stride or dilation below 1 or a negative
        padding or output padding; an output padding not smaller than the stride or the
        dilation; a padding that crops the whole output away.

    Examples
    --------
    >>> import numpy as np
    >>> conv_transpose2d(np.array([[1., 2.]]), [[1, 1]], stride=2).tolist()
    [[1.0, 1.0, 2.0, 2.0]]

    At stride 1 the scattered copies of a 2x2 kernel of ones overlap and add up:

    >>> conv_transpose2d(np.array([[1., 2.], [3., 4.]]), np.ones((2, 2))).tolist()
    [[1.0, 3.0, 2.0], [4.0, 10.0, 6.0], [3.0, 7.0, 4.0]]

    A worked scatter along a row: ``x = 1 2 3``, ``k = 1 2 1``, stride 2, so
    ``(3 - 1)*2 + 1*(3 - 1) + 1 = 7`` outputs::

        x[0] = 1 scatters to 0..2:   1 2 1 . . . .
        x[1] = 2 scatters to 2..4:   . . 2 4 2 . .
        x[2] = 3 scatters to 4..6:   . . . . 3 6 3
        sum:                         1 2 3 4 5 6 3

    >>> x = np.array([[1., 2., 3.]])
    >>> conv_transpose2d(x, [[1, 2, 1]], stride=2).tolist()
    [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 3.0]]

    ``padding`` 1 (on the width) crops one column from each side, ``7 - 2 = 5``;
    ``output_padding`` 1 then gives one back, on the right only:

    >>> conv_transpose2d(x, [[1, 2, 1]], stride=2, padding=(0, 1)).tolist()
    [[2.0, 3.0, 4.0, 5.0, 6.0]]
    >>> conv_transpose2d(x, [[1, 2, 1]], stride=2, padding=(0, 1), output_padding=(0, 1)).tolist()
    [[2.0, 3.0, 4.0, 5.0, 6.0, 3.0]]

    Upsampling an RGB image by exactly 2 with the 4x4 bilinear kernel and padding 1:
    ``(4 - 1)*2 - 2*1 + (4 - 1) + 1 = 8`` rows and ``(5 - 1)*2 - 2 + 3 + 1 = 10`` columns:

    >>> from convcli import bilinear_kernel
    >>> conv_transpose2d(np.zeros((4, 5, 3)), bilinear_kernel(2), stride=2, padding=1).shape
    (8, 10, 3)
    """
    if method not in TCONV_METHODS:
        raise ConvcliError(f"method: expected one of {', '.join(TCONV_METHODS)}, got {method!r}")
    x = as_image(image)
    k = as_kernel(kernel)
    if check_mode(mode) == "convolution":
        k = k[::-1, ::-1]
    stride = as_pair(stride, "stride", minimum=1)
    padding = as_pair(padding, "padding", minimum=0)
    output_padding = as_pair(output_padding, "output-padding", minimum=0)
    dilation = as_pair(dilation, "dilation", minimum=1)
    out_h, out_w = tconv_output_size(x.shape[:2], k.shape, stride, padding, output_padding, dilation)
    if method == "direct":
        return _direct(x, k, stride, padding, dilation, out_h, out_w)
    return _polyphase(x, k, stride, padding, dilation, out_h, out_w, workers)


def _direct(x, k, stride, padding, dilation, out_h, out_w):
    """The plain reference: scatter-add every tap over the whole uncropped output."""
    (sy, sx), (ph, pw), (dy, dx) = stride, padding, dilation
    height, width = x.shape[:2]
    # The full, uncropped result; output padding extends it with zeros.
    full_h = max((height - 1) * sy + dy * (k.shape[0] - 1) + 1, ph + out_h)
    full_w = max((width - 1) * sx + dx * (k.shape[1] - 1) + 1, pw + out_w)
    full = np.zeros((full_h, full_w) + x.shape[2:], dtype=np.float32)
    for m in range(k.shape[0]):
        for n in range(k.shape[1]):
            weight = k[m, n]
            if weight == 0:
                continue
            full[
                m * dy : m * dy + sy * (height - 1) + 1 : sy, n * dx : n * dx + sx * (width - 1) + 1 : sx
            ] += weight * x
    return full[ph : ph + out_h, pw : pw + out_w].copy()


def _phases(out_len, kernel_len, stride, padding, dilation):
    """Per output phase ``a`` (cropped positions ``a, a + s, ...``): ``(a, count, taps)`` with
    ``taps`` the ``(m, t)`` such that output ``a + s*q`` reads input ``q - t`` through tap m."""
    phases = []
    for a in range(min(stride, out_len)):
        count = -(-(out_len - a) // stride)
        taps = [
            (m, (m * dilation - a - padding) // stride)
            for m in range(kernel_len)
            if (m * dilation - a - padding) % stride == 0
        ]
        phases.append((a, count, taps))
    return phases


def _polyphase(x, k, stride, padding, dilation, out_h, out_w, workers):
    """Each output phase as a correlation of the (zero-extended) input with its taps."""
    (sy, sx), (ph, pw), (dy, dx) = stride, padding, dilation
    x3 = x if x.ndim == 3 else x[:, :, None]
    channels = x3.shape[2]
    row_phases = _phases(out_h, k.shape[0], sy, ph, dy)
    col_phases = _phases(out_w, k.shape[1], sx, pw, dx)
    out = np.empty((out_h, out_w, channels), dtype=np.float32)
    # A job is a tile of one row phase with all its column phases, so every output row is
    # written whole, once, by one thread while its cache lines are hot.
    jobs, phase_specs = [], []
    for a, rows, row_taps in row_phases:
        phase_taps = [
            (b, cols, [(m, t, n, u, k[m, n]) for m, t in row_taps for n, u in col_taps if k[m, n] != 0])
            for b, cols, col_taps in col_phases
        ]
        phase_specs.append((a, rows, phase_taps))
        for q0, q1, _, _ in row_tiles(rows, out_w, channels):
            jobs.append((a, q0, q1, phase_taps))

    def job(spec):
        a, q0, q1, phase_taps = spec
        rows = out[a + sy * q0 : a + sy * (q1 - 1) + 1 : sy]
        every = [tap for _, _, taps in phase_taps for tap in taps]
        if every:  # one zero-extended input block serves all the column phases
            t_lo, t_hi = min(tap[1] for tap in every), max(tap[1] for tap in every)
            u_lo, u_hi = min(tap[3] for tap in every), max(tap[3] for tap in every)
            widest = max(cols for _, cols, _ in phase_taps)
            block = padded_block(x3, (q0 - t_hi, q1 - t_lo), (-u_hi, widest - u_lo), "zeros")
        for b, cols, taps in phase_taps:
            if not taps:  # no tap lands on this phase
                if sx == 1:
                    rows.fill(0)
                else:
                    rows[:, b::sx] = 0
                continue
            views = (
                (block[t_hi - t : t_hi - t + q1 - q0, u_hi - u : u_hi - u + cols], w)
                for _, t, _, u, w in taps
            )
            if sx == 1:
                accumulate(rows, views)
            else:
                phase = scratch("phase", (q1 - q0, cols, channels))
                accumulate(phase, views)
                put_columns(rows, phase, sx, b)

    def native_job(spec):
        """The same sums in compiled code, straight into each column phase's pixels, reading
        the zero-extended input through index tables (no block is copied)."""
        a, q0, q1, _ = spec
        rows = out[a + sy * q0 : a + sy * (q1 - 1) + 1 : sy]
        row_index, column_index, offsets = tables[a]
        parts = [(rows[:, b::sx][:, :cols], taps) for b, cols, taps in offsets]
        correlate_padded(image, parts, (1, 1), row_index, column_index, q0)

    if native():
        image = pixels_contiguous(x3)
        tables = {}
        for a, rows, phase_taps in phase_specs:
            every = [tap for _, _, taps in phase_taps for tap in taps] or [(0, 0, 0, 0, 0)]
            t_lo, t_hi = min(tap[1] for tap in every), max(tap[1] for tap in every)
            u_lo, u_hi = min(tap[3] for tap in every), max(tap[3] for tap in every)
            widest = max(cols for _, cols, _ in phase_taps)
            # padded row p is input row p - t_hi, padded column q input column q - u_hi
            row_index = padding_index(x3.shape[0], t_hi, rows + t_hi - t_lo, "zeros")
            column_index = padding_index(x3.shape[1], u_hi, widest + u_hi - u_lo, "zeros")
            offsets = [
                (b, cols, [(t_hi - t, u_hi - u, float(w)) for _, t, _, u, w in taps])
                for b, cols, taps in phase_taps
            ]
            tables[a] = (row_index, column_index, offsets)
    work = out.size * max(1, int(np.count_nonzero(k))) // (sy * sx)
    run_tiles(native_job if native() else job, jobs, workers, work)
    return out if x.ndim == 3 else out[:, :, 0]
