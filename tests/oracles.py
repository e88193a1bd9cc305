"""Independent reference implementations ("oracles") for the value tests.

Everything here is written from PyTorch's documented definitions with plain
Python loops over float64 numbers.  Nothing imports convcli, and nothing uses
``numpy.pad`` or strided views (the engine does): numpy is only the container
the results are returned in.

Conventions: pairs are ``(height, width)``; padding sides are
``(top, bottom, left, right)``; an int stands for the same value on both axes.
"""

from __future__ import annotations

import math

import numpy as np

PAD_MODES = ("zeros", "reflect", "replicate", "circular")


def pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    height, width = value
    return (int(height), int(width))


def sides(padding) -> tuple[int, int, int, int]:
    """int, (h, w) or (top, bottom, left, right) -> (top, bottom, left, right)."""
    if isinstance(padding, int):
        return (padding,) * 4
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    top, bottom, left, right = padding
    return (int(top), int(bottom), int(left), int(right))


def each_channel(reference, x, *args, **kwargs):
    """``reference`` (a one-channel oracle below) applied to each channel of an H x W x C array,
    stacked as H' x W' x C; an H x W array is passed straight through."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        return reference(x, *args, **kwargs)
    return np.stack([reference(x[:, :, c], *args, **kwargs) for c in range(x.shape[2])], axis=2)


def _rows(x2d) -> list[list[float]]:
    array = np.asarray(x2d, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {array.shape}")
    return array.tolist()


# -------------------------------------------------------------------- padding


def pad_legal(length: int, before: int, after: int, mode: str) -> bool:
    """Whether PyTorch's F.pad accepts this padding along one axis."""
    if mode == "reflect":
        return max(before, after) < length
    if mode == "circular":
        return max(before, after) <= length
    return True


def source_index(i: int, length: int, mode: str):
    """The input index that padded position ``i`` (``-before <= i < length + after``) reads.

    ``None`` for a zero.  reflect mirrors about the edge pixel without
    repeating it (-1 -> 1), replicate clamps, circular wraps modulo the side.
    """
    if 0 <= i < length:
        return i
    if mode == "zeros":
        return None
    if mode == "replicate":
        return 0 if i < 0 else length - 1
    if mode == "circular":
        return i % length
    if mode == "reflect":
        j = -i if i < 0 else 2 * (length - 1) - i
        if not 0 <= j < length:
            raise ValueError("reflect padding must be smaller than the side")
        return j
    raise ValueError(f"unknown pad mode {mode!r}")


def pad_reference(x2d, top: int, bottom: int, left: int, right: int, mode: str = "zeros"):
    """F.pad(x, (left, right, top, bottom), mode) of a 2-D array, by index arithmetic."""
    rows = _rows(x2d)
    height, width = len(rows), len(rows[0])
    if not (pad_legal(height, top, bottom, mode) and pad_legal(width, left, right, mode)):
        raise ValueError(f"{mode} padding {top, bottom, left, right} illegal for {height}x{width}")
    out = []
    for r in range(-top, height + bottom):
        sr = source_index(r, height, mode)
        line = []
        for c in range(-left, width + right):
            sc = source_index(c, width, mode)
            line.append(0.0 if sr is None or sc is None else rows[sr][sc])
        out.append(line)
    return np.array(out, dtype=np.float64).reshape(height + top + bottom, width + left + right)


# ---------------------------------------------------------------- convolution


def conv_output_length(length: int, kernel: int, stride: int, before: int, after: int, dilation: int) -> int:
    """floor((in + before + after - d*(k-1) - 1) / s) + 1, or 0 when the kernel overhangs."""
    span = length + before + after - dilation * (kernel - 1) - 1
    return span // stride + 1 if span >= 0 else 0


def same_sides(input_hw, kernel_hw, stride=1, dilation=1) -> tuple[int, int, int, int]:
    """The padding that convcli documents for padding="same".

    Stride 1: PyTorch's padding='same' -- total d*(k-1), total//2 before, the
    rest after.  Stride > 1: TensorFlow's SAME -- out = ceil(in/s),
    total = max((out-1)*s + d*(k-1) + 1 - in, 0), total//2 before.
    """
    result = []
    for n, k, s, d in zip(pair(input_hw), pair(kernel_hw), pair(stride), pair(dilation)):
        if s == 1:
            total = d * (k - 1)
        else:
            out = math.ceil(n / s)
            total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
        result += [total // 2, total - total // 2]
    return tuple(result)


def conv2d_reference(x2d, k, stride=1, padding_sides=(0, 0, 0, 0), dilation=1, pad_mode: str = "zeros"):
    """F.conv2d (cross-correlation) of one channel with one kernel, after F.pad.

    out[i, j] = sum_{m, n} x_pad[i*sy + m*dy, j*sx + n*dx] * k[m, n]
    """
    sy, sx = pair(stride)
    dy, dx = pair(dilation)
    top, bottom, left, right = sides(padding_sides)
    xp = pad_reference(x2d, top, bottom, left, right, pad_mode).tolist()
    kk = _rows(k)
    kh, kw = len(kk), len(kk[0])
    hp, wp = len(xp), len(xp[0])
    out_h = conv_output_length(hp, kh, sy, 0, 0, dy)
    out_w = conv_output_length(wp, kw, sx, 0, 0, dx)
    if out_h < 1 or out_w < 1:
        raise ValueError("kernel larger than the padded input")
    out = np.zeros((out_h, out_w), dtype=np.float64)
    for i in range(out_h):
        for j in range(out_w):
            total = 0.0
            for m in range(kh):
                for n in range(kw):
                    total += xp[i * sy + m * dy][j * sx + n * dx] * kk[m][n]
            out[i, j] = total
    return out


def rot180(k):
    """The kernel turned 180 degrees (true convolution = correlation with this)."""
    rows = _rows(k)
    return np.array([list(reversed(row)) for row in reversed(rows)], dtype=np.float64)


# -------------------------------------------------------------------- pooling


def pool_output_length(
    length: int, kernel: int, stride: int, padding: int, dilation: int = 1, ceil_mode: bool = False
) -> int:
    """PyTorch's pooling_output_shape_pad_lr (div_rtn is floor division)."""
    numerator = length + 2 * padding - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = numerator // stride + 1  # Python's // rounds toward -inf, as div_rtn
    if ceil_mode and (out - 1) * stride >= length + padding:
        out -= 1  # the last window would start in the right padding
    return out


def pool_accepted(input_hw, k, s, p, d=1, ceil_mode=False) -> bool:
    """Whether PyTorch's max_pool2d/avg_pool2d accept these parameters.

    pool2d_shape_check: ``kW/2 >= padW`` (the window as given: dilation does not count; PyTorch
    2.13 refuses F.max_pool2d(x, 3, 1, padding=2, dilation=2)) and output size >= 1.
    """
    for n, kk, ss, pp, dd in zip(pair(input_hw), pair(k), pair(s), pair(p), pair(d)):
        if pp > kk // 2:
            return False
        if pool_output_length(n, kk, ss, pp, dd, ceil_mode) < 1:
            return False
    return True


def pool_reference(x2d, k, s=None, p=0, d=1, ceil_mode=False, op="max", count_include_pad=True):
    """F.max_pool2d / F.avg_pool2d / -F.max_pool2d(-x) of one channel, as PyTorch's CPU kernels.

    max/min: over the in-bounds window elements only, starting from -inf
    (+inf for min).  mean: hstart = i*s - p, hend = min(hstart + k, in + p),
    pool_size = (hend-hstart)*(wend-wstart); then the window is clamped to
    the input and the divisor is pool_size (count_include_pad) or the number
    of clamped cells.
    """
    rows = _rows(x2d)
    height, width = len(rows), len(rows[0])
    kh, kw = pair(k)
    sy, sx = pair(k if s is None else s)
    ph, pw = pair(p)
    dy, dx = pair(d)
    out_h = pool_output_length(height, kh, sy, ph, dy, ceil_mode)
    out_w = pool_output_length(width, kw, sx, pw, dx, ceil_mode)
    if out_h < 1 or out_w < 1:
        raise ValueError("output size is too small")
    out = np.zeros((out_h, out_w), dtype=np.float64)
    for i in range(out_h):
        for j in range(out_w):
            if op in ("max", "min"):
                sign = 1.0 if op == "max" else -1.0
                best = -math.inf
                for m in range(kh):
                    r = i * sy - ph + m * dy
                    if not 0 <= r < height:
                        continue
                    for n in range(kw):
                        c = j * sx - pw + n * dx
                        if 0 <= c < width:
                            best = max(best, sign * rows[r][c])
                out[i, j] = sign * best
            elif op == "mean":
                if (dy, dx) != (1, 1):
                    raise ValueError("avg_pool2d has no dilation")
                hstart, wstart = i * sy - ph, j * sx - pw
                hend, wend = min(hstart + kh, height + ph), min(wstart + kw, width + pw)
                pool_size = (hend - hstart) * (wend - wstart)
                hstart, wstart = max(hstart, 0), max(wstart, 0)
                hend, wend = min(hend, height), min(wend, width)
                if hstart >= hend or wstart >= wend:
                    out[i, j] = 0.0
                    continue
                total = 0.0
                for r in range(hstart, hend):
                    for c in range(wstart, wend):
                        total += rows[r][c]
                divisor = pool_size if count_include_pad else (hend - hstart) * (wend - wstart)
                out[i, j] = total / divisor
            else:
                raise ValueError(f"unknown op {op!r}")
    return out


# ------------------------------------------------------ transposed convolution


def tconv_output_length(
    length: int, kernel: int, stride: int = 1, padding: int = 0, output_padding: int = 0, dilation: int = 1
) -> int:
    return (length - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def output_padding_accepted(op, s, d) -> bool:
    """PyTorch: output padding must be smaller than either the stride or the dilation."""
    return all(o < ss or o < dd for o, ss, dd in zip(pair(op), pair(s), pair(d)))


def conv_transpose_reference(x2d, k, s=1, p=0, op=0, d=1):
    """F.conv_transpose2d, 1 channel in and out, by explicit scatter.

    out[i*s - p + m*d, j*s - p + n*d] += x[i, j] * k[m, n] into an array of size
    (in-1)*s - 2p + d*(k-1) + op + 1 per axis; contributions outside are dropped.
    """
    rows = _rows(x2d)
    kk = _rows(k)
    height, width = len(rows), len(rows[0])
    kh, kw = len(kk), len(kk[0])
    sy, sx = pair(s)
    py, px = pair(p)
    oy, ox = pair(op)
    dy, dx = pair(d)
    out_h = tconv_output_length(height, kh, sy, py, oy, dy)
    out_w = tconv_output_length(width, kw, sx, px, ox, dx)
    if out_h < 1 or out_w < 1:
        raise ValueError("output size below 1")
    out = [[0.0] * out_w for _ in range(out_h)]
    for i in range(height):
        for j in range(width):
            for m in range(kh):
                r = i * sy - py + m * dy
                if not 0 <= r < out_h:
                    continue
                for n in range(kw):
                    c = j * sx - px + n * dx
                    if 0 <= c < out_w:
                        out[r][c] += rows[i][j] * kk[m][n]
    return np.array(out, dtype=np.float64)


# ------------------------------------------------ convcli's filter2d contract


class Refused(Exception):
    """The parameters are ones PyTorch (and so convcli) must refuse."""


def filter_reference(x2d, k, stride=1, padding=0, dilation=1, pad_mode="zeros", mode="correlation"):
    """What convcli's filter2d must return for one channel, from the definitions above.

    Raises Refused when the padding is illegal for the mode or the (dilated)
    kernel is larger than the padded input.
    """
    x = np.asarray(x2d, dtype=np.float64)
    kernel = rot180(k) if mode == "convolution" else np.asarray(k, dtype=np.float64)
    if padding == "valid":
        padding_sides = (0, 0, 0, 0)
    elif padding == "same":
        padding_sides = same_sides(x.shape, kernel.shape, stride, dilation)
    else:
        padding_sides = sides(padding)
    top, bottom, left, right = padding_sides
    if not (pad_legal(x.shape[0], top, bottom, pad_mode) and pad_legal(x.shape[1], left, right, pad_mode)):
        raise Refused(f"{pad_mode} padding {padding_sides} on {x.shape}")
    (sy, sx), (dy, dx) = pair(stride), pair(dilation)
    if (
        conv_output_length(x.shape[0], kernel.shape[0], sy, top, bottom, dy) < 1
        or conv_output_length(x.shape[1], kernel.shape[1], sx, left, right, dx) < 1
    ):
        raise Refused("kernel larger than the padded input")
    return conv2d_reference(x, kernel, stride, padding_sides, dilation, pad_mode)
