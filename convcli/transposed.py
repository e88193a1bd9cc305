"""Transposed convolution (PyTorch's ``conv_transpose2d``), the adjoint of ``filter2d``."""

from __future__ import annotations

from .filtering import as_image, as_kernel, check_mode
from .geometry import as_pair, tconv_output_size


def conv_transpose2d(image, kernel, *, stride=1, padding=0, output_padding=0, dilation=1,
                     mode="correlation"):
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

    >>> import numpy as np
    >>> conv_transpose2d(np.array([[1., 2.]]), [[1, 1]], stride=2).tolist()
    [[1.0, 1.0, 2.0, 2.0]]
    """
    import numpy as np

    x = as_image(image)
    k = as_kernel(kernel)
    if check_mode(mode) == "convolution":
        k = k[::-1, ::-1]
    stride = as_pair(stride, "stride", minimum=1)
    padding = as_pair(padding, "padding", minimum=0)
    output_padding = as_pair(output_padding, "output-padding", minimum=0)
    dilation = as_pair(dilation, "dilation", minimum=1)
    out_h, out_w = tconv_output_size(x.shape[:2], k.shape, stride, padding, output_padding,
                                     dilation)
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
            full[m * dy: m * dy + sy * (height - 1) + 1: sy,
                 n * dx: n * dx + sx * (width - 1) + 1: sx] += weight * x
    return full[ph: ph + out_h, pw: pw + out_w].copy()
