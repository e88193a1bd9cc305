"""The operations on a huge image as lazy dask arrays: ``filter2d`` and friends, in blocks.

Each returns what the in-memory function returns, bit for bit (see
:mod:`convcli.ops.blocks`), as a lazy dask array; ``image`` is a dask or numpy
array (H x W or H x W x C) or a file-backed region source
(:func:`convcli.io.bigfiles.open_source`).  ``chunk``: input rows and columns per
block, an int or ``(height, width)`` (default: the array's own chunks).
"""

from __future__ import annotations

from .filter import Filter
from .pool import Pool
from .upsample import Upsample


def filter2d_chunked(
    image, kernel, *, stride=1, padding=0, dilation=1, pad_mode="zeros", mode="correlation", chunk=None
):
    """:func:`convcli.engine.filtering.filter2d` in blocks; a lazy dask array."""
    return Filter(
        kernel, stride=stride, padding=padding, dilation=dilation, pad_mode=pad_mode, mode=mode
    ).chunked(image, chunk)


def pool2d_chunked(
    image,
    size=2,
    *,
    stride=None,
    padding=0,
    dilation=1,
    ceil_mode=False,
    op="max",
    count_include_pad=True,
    chunk=None,
):
    """:func:`convcli.engine.pooling.pool2d` in blocks; a lazy dask array."""
    return Pool(
        size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=ceil_mode,
        op=op,
        count_include_pad=count_include_pad,
    ).chunked(image, chunk)


def conv_transpose2d_chunked(
    image, kernel, *, stride=1, padding=0, output_padding=0, dilation=1, mode="correlation", chunk=None
):
    """:func:`convcli.engine.transposed.conv_transpose2d` in blocks; a lazy dask array.

    ``chunk`` counts input rows and columns: an output block is ``chunk * stride`` long.
    """
    return Upsample(
        kernel, stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, mode=mode
    ).chunked(image, chunk)
