"""2-D cross-correlation and convolution of images, exact to PyTorch's ``conv2d``."""

from __future__ import annotations

from .errors import ConvcliError
from .geometry import as_pair, conv_output_size, resolve_padding
from .padding import pad2d

MODES = ("correlation", "convolution")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConvcliError(f"mode: expected correlation or convolution, got {mode!r}")
    return mode


def as_kernel(kernel, name: str = "kernel"):
    """A kernel as a finite, non-empty 2-D float32 array (raises ConvcliError otherwise)."""
    import numpy as np

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
    import numpy as np

    array = np.asarray(image)
    if array.ndim not in (2, 3):
        raise ConvcliError(f"{name}: must be H x W or H x W x C, got shape {array.shape}")
    if array.size == 0:
        raise ConvcliError(f"{name}: is empty (shape {array.shape})")
    if array.dtype.kind not in "biuf":
        raise ConvcliError(f"{name}: must hold numbers, got dtype {array.dtype}")
    return array.astype(np.float32, copy=False)


def filter2d(image, kernel, *, stride=1, padding=0, dilation=1, pad_mode="zeros",
             mode="correlation"):
    """Filter an image with a 2-D kernel, each channel on its own.

    ``image`` is H x W or H x W x C.  By default this is cross-correlation, as
    PyTorch's ``F.conv2d``: ``out[i, j] = sum_{m,n} x_pad[i*s + m*d, j*s + n*d] * k[m, n]``.
    ``mode="convolution"`` rotates the kernel 180 degrees first (as
    ``scipy.signal.convolve2d``).

    ``stride``, ``dilation``: int or ``(height, width)``.  ``padding``: int,
    ``(height, width)``, ``(top, bottom, left, right)``, ``"valid"`` (0) or
    ``"same"`` (output ``ceil(in / stride)``; the odd pixel of an even kernel
    goes to the bottom/right, as PyTorch's ``padding='same'``).  ``pad_mode``:
    ``zeros``, ``reflect``, ``replicate`` or ``circular`` (PyTorch's ``F.pad``).

    Output size per axis::

        out = floor((in + pad_before + pad_after - dilation*(k - 1) - 1) / stride) + 1

    Returns float32, H' x W' (x C).

    >>> import numpy as np
    >>> x = np.arange(16, dtype=np.float32).reshape(4, 4)
    >>> filter2d(x, [[1, 0], [0, -1]]).tolist()
    [[-5.0, -5.0, -5.0], [-5.0, -5.0, -5.0], [-5.0, -5.0, -5.0]]
    """
    import numpy as np

    x = as_image(image)
    k = as_kernel(kernel)
    if check_mode(mode) == "convolution":
        k = k[::-1, ::-1]
    stride = as_pair(stride, "stride", minimum=1)
    dilation = as_pair(dilation, "dilation", minimum=1)
    sides = resolve_padding(padding, x.shape[:2], k.shape, stride, dilation)
    out_h, out_w = conv_output_size(x.shape[:2], k.shape, stride, sides, dilation)
    padded = pad2d(x, sides, pad_mode)
    (sy, sx), (dy, dx) = stride, dilation
    out = np.zeros((out_h, out_w) + x.shape[2:], dtype=np.float32)
    # One strided view per kernel tap: only output positions are ever computed.
    for m in range(k.shape[0]):
        for n in range(k.shape[1]):
            weight = k[m, n]
            if weight == 0:
                continue
            view = padded[m * dy: m * dy + sy * (out_h - 1) + 1: sy,
                          n * dx: n * dx + sx * (out_w - 1) + 1: sx]
            out += weight * view
    return out
