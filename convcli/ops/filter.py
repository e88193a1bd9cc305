"""The filter operation: 2-D cross-correlation or true convolution, as PyTorch's ``conv2d``."""

from __future__ import annotations

import numpy as np

from ..engine.filtering import FFT_MIN_TAPS, check_mode, fast_length, filter2d
from ..engine.kernels import Kernel
from ..engine.loops import ordered_map
from ..engine.padding import check_pad_mode, check_pad_sizes, pad_rows
from ..errors import ConvcliError
from ..geometry.sizes import (
    Pair,
    Sides,
    as_pair,
    conv_output_size,
    pair_json,
    resolve_padding,
    sides_json,
    window_rows,
)
from . import explain as ex
from .base import (
    FLOAT_BYTES,
    TAP_BYTES,
    Operation,
    PlannedKernel,
    busy_threads,
    kernel_bytes,
    kernel_parts,
    register,
    svd_bytes,
    tile_rows,
)

BAND_ROWS = 64  # output rows per band of the streaming path, at most
# Values per band at most: 64 rows of a 4K RGB image.  Wider images get fewer rows a band: at
# 8K RGB, bands of 64 rows held about 40 MiB more in flight than bands of 32.
BAND_VALUES = 64 * 3840 * 3
FFT_CHANNEL_BYTES = 32  # per pixel of the FFT's shape: one channel's spectra and inverse in flight


def band_rows_for(width: int, channels: int) -> int:
    """Output rows per band of :meth:`Filter.bands`: ``BAND_ROWS``, fewer for wide images."""
    return max(8, min(BAND_ROWS, BAND_VALUES // max(1, width * channels)))


@register
class Filter(Operation):
    """Filter with a kernel: ``filter2d``'s parameters, checked once.

    ``kernel``: a :class:`~convcli.engine.kernels.Kernel` (its name and origin are
    reported) or any 2-D array.  ``padding``: int, ``(height, width)``,
    ``(top, bottom, left, right)``, ``"same"`` or ``"valid"``; ``same`` is resolved
    per input size.  ``value_map``: default ``abs`` for a kernel that sums to 0 (an
    edge detector: both signs matter), else ``clip``.

    >>> op = Filter(np.ones((3, 3), np.float32), padding="same")
    >>> op.output_size((5, 7)), op.input_rows(0, 0, 2, (5, 7))
    ((5, 7), (-1, 3))
    """

    name = "filter"
    streams_bands = True

    def __init__(
        self,
        kernel,
        *,
        stride=1,
        padding=0,
        dilation=1,
        pad_mode: str = "zeros",
        mode: str = "correlation",
        value_map: str | None = None,
    ):
        self.kernel_info, self.kernel = kernel_parts(kernel)
        self.stride = as_pair(stride, "stride", minimum=1)
        self.dilation = as_pair(dilation, "dilation", minimum=1)
        self.pad_mode = check_pad_mode(pad_mode)
        self.mode = check_mode(mode)
        self.padding = padding
        self.padding_sides((1, 1))  # refuses a malformed padding now, not at the first image
        self.tag = self.kernel_info.name if self.kernel_info else "filter"
        self.value_map = value_map or self.default_value_map()

    def default_value_map(self) -> str:
        if isinstance(self.kernel, PlannedKernel):
            return "clip"
        total = float(np.abs(self.kernel).sum())
        return "abs" if abs(float(self.kernel.sum())) <= 1e-6 * total else "clip"

    def gain(self) -> float:
        if isinstance(self.kernel, PlannedKernel):
            return 1.0
        return float(self.kernel.sum(dtype=np.float64))

    @property
    def extent(self) -> Pair:
        """The dilated kernel: ``dilation*(k - 1) + 1`` per side."""
        return tuple(d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel.shape))

    def padding_sides(self, input_hw: Pair) -> Sides:
        return resolve_padding(self.padding, input_hw, self.kernel.shape, self.stride, self.dilation)

    def output_size(self, input_hw: Pair) -> Pair:
        sides = self.padding_sides(input_hw)
        out = conv_output_size(input_hw, self.kernel.shape, self.stride, sides, self.dilation)
        check_pad_sizes(input_hw, sides, self.pad_mode)
        return out

    def input_rows(self, axis: int, first: int, stop: int, input_hw: Pair) -> tuple[int, int]:
        before = self.padding_sides(input_hw)[2 * axis]
        lo, hi = window_rows(first, stop, self.stride[axis], self.extent[axis])
        return lo - before, hi - before

    def taps(self) -> int:
        """The kernel's non-zero taps (all of them for a kernel only sized)."""
        if isinstance(self.kernel, PlannedKernel):
            return self.kernel.size
        return int(np.count_nonzero(self.kernel))

    def work_bytes(self, input_hw: Pair, channels: int) -> int:
        """The larger of the two ways an image is filtered: whole (:func:`filter2d` on the
        image) and band by band (:meth:`bands`, up to two bands a thread in flight, each a
        float copy of its input rows and filter2d's work on it)."""
        out_h, out_w = self.output_size(input_hw)
        sides = self.padding_sides(input_hw)
        whole = self.call_bytes(input_hw, (out_h, out_w), sides, channels, None)
        rows = min(out_h, band_rows_for(input_hw[1], channels))
        band_in = ((rows - 1) * self.stride[0] + self.extent[0], input_hw[1])
        band_sides = (0, 0, sides[2], sides[3])
        band = FLOAT_BYTES * channels * band_in[0] * band_in[1] + self.call_bytes(
            band_in, (rows, out_w), band_sides, channels, 1
        )
        threads = busy_threads(-(-out_h // rows))
        banded = threads * band + 2 * threads * FLOAT_BYTES * channels * rows * out_w
        return max(whole, banded)

    def block_work_bytes(self, region_hw: Pair, out_hw: Pair, channels: int) -> int:
        return self.call_bytes(region_hw, out_hw, (0, 0, 0, 0), channels, 1)

    def call_bytes(self, in_hw: Pair, out_hw: Pair, sides, channels: int, threads: int | None) -> int:
        """Bytes one :func:`filter2d` call allocates besides its input and result: the kernel's
        float64 and float32 copies and its SVD (the separable check), then the larger of the
        tiled path (on ``threads`` threads, None: every usable core, each a padded tile block,
        its stride-phase copy, two tile-sized temporaries; a tuple per tap) and, for kernels
        it may take, the FFT path (the padded copy, the dilated kernel and its spectrum, and
        per channel in flight a float64 copy and the spectra)."""
        height, width = self.kernel.shape
        (sy, sx), (ey, ex) = self.stride, self.extent
        out_h, out_w = out_hw
        kernel = 72 * height * width + svd_bytes(height, width)
        rows = tile_rows(out_h, out_w, channels)
        block = ((rows - 1) * sy + ey) * ((out_w - 1) * sx + ex)
        per_tile = FLOAT_BYTES * channels * (3 * block + 2 * rows * out_w)
        jobs = -(-out_h // rows)
        busy = busy_threads(jobs) if threads is None else min(threads, jobs)
        taps = self.taps()
        if taps < FFT_MIN_TAPS * sy * sx:  # tiled (a tuple per tap) or separable
            return kernel + busy * per_tile + TAP_BYTES * taps
        ph, pw = in_hw[0] + sides[0] + sides[1], in_hw[1] + sides[2] + sides[3]
        fh, fw = fast_length(ph), fast_length(pw)
        padded = FLOAT_BYTES * channels * ph * pw if any(sides) else 0
        at_once = min(busy_threads(channels) if threads is None else threads, channels)
        fft = (
            padded
            + 8 * ey * ex
            + 16 * fh * (fw // 2 + 1)
            + at_once * (8 * ph * pw + FFT_CHANNEL_BYTES * fh * fw)
        )
        return kernel + max(busy * per_tile, fft)  # separable, or the FFT

    def parameter_bytes(self) -> int:
        return kernel_bytes(self.kernel_info, self.kernel)

    def apply(self, data):
        return filter2d(
            data,
            self.kernel,
            stride=self.stride,
            padding=self.padding_sides(data.shape[:2]),
            dilation=self.dilation,
            pad_mode=self.pad_mode,
            mode=self.mode,
        )

    def bands(self, loaded, band_rows: int | None = None):
        """The result as float bands computed from stored pixels, band after band.

        ``loaded`` has ``size`` and ``rows(index)`` (as ``convcli.io.images.LoadedImage``).
        Returns an iterator of ``(first output row, rows)``; each band reads only the input
        rows (and padding) it needs, so memory stays at a few bands whatever the image size.
        """
        size = loaded.size
        out_h, _ = self.output_size(size)
        _, _, left, right = self.padding_sides(size)
        if band_rows is None:
            band_rows = band_rows_for(size[1], loaded.channels)

        def inputs():
            # Rows are read here, band after band on the consumer's thread, so that a source
            # decoded as it is read (a streamed PNG) is asked for its rows top to bottom.
            for first in range(0, out_h, band_rows):
                start, stop = self.input_rows(0, first, min(first + band_rows, out_h), size)
                index, zeros = pad_rows(size[0], start, stop, self.pad_mode)
                rows = loaded.rows(index)
                rows[zeros] = 0
                yield first, rows

        def band(item):
            first, rows = item
            # One thread per band: the bands themselves run on ordered_map's threads.
            return first, filter2d(
                rows,
                self.kernel,
                stride=self.stride,
                padding=(0, 0, left, right),
                dilation=self.dilation,
                pad_mode=self.pad_mode,
                mode=self.mode,
                workers=1,
            )

        return ordered_map(band, inputs())

    def chunked(self, image, chunk=None):
        from . import blocks

        x = blocks.as_source(image, chunk)
        size = blocks.source_size(x)
        sides = self.padding_sides(size)
        out_hw = self.output_size(size)
        chunk_hw = blocks.chunk_size(x, chunk)
        plans = [
            blocks.window_plan(
                out_hw[a],
                size[a] + sides[2 * a] + sides[2 * a + 1],
                self.stride[a],
                self.extent[a],
                blocks.per_block(chunk_hw[a], self.stride[a]),
            )
            for a in (0, 1)
        ]
        return blocks.windowed(
            x,
            plans,
            sides,
            self.pad_mode,
            0.0,
            _filter_block,
            (self.kernel, self.stride, self.dilation, self.mode),
        )

    def report(self, input_hw: Pair) -> dict:
        info = self.kernel_info or Kernel("filter", self.kernel)
        return {
            "kernel": info.to_json(),
            "mode": self.mode,
            "stride": pair_json(self.stride),
            "dilation": pair_json(self.dilation),
            "pad_mode": self.pad_mode,
            "padding": sides_json(self.padding_sides(input_hw)),
        }

    def size_formula(self, input_hw: Pair) -> list[str]:
        sides = self.padding_sides(input_hw)
        out = self.output_size(input_hw)
        lines = []
        for axis, side in ((1, "width"), (0, "height")):  # WIDTHxHEIGHT, as everywhere
            n, k = input_hw[axis], self.kernel.shape[axis]
            s, d = self.stride[axis], self.dilation[axis]
            before, after = sides[2 * axis], sides[2 * axis + 1]
            lines.append(
                f"{side}: floor(({n} + {before} + {after} - {d}*({k}-1) - 1) / {s}) + 1 = {out[axis]}"
            )
        return lines

    def as_layer(self):
        """This filter as a ``convcli shape`` layer (``conv``), for sizes and receptive fields."""
        from ..geometry.receptive import Layer

        padding = self.padding
        if isinstance(padding, str):
            padding = "same" if padding.strip().lower() == "same" else (0, 0)
        elif isinstance(padding, int):
            padding = (padding, padding)
        elif len(padding) == 4:
            top, bottom, left, right = padding
            if top != bottom or left != right:
                raise ConvcliError("shape: a filter with uneven padding has no conv layer")
            padding = (top, left)
        return Layer(
            "conv",
            tuple(self.kernel.shape),
            self.stride,
            padding if isinstance(padding, str) else tuple(padding),
            self.dilation,
            text=f"filter {self.tag}",
        )

    def explain(self, matrix, at):
        return ex.explain_filter(
            matrix,
            self.kernel,
            stride=self.stride,
            sides=self.padding_sides(matrix.shape[:2]),
            dilation=self.dilation,
            pad_mode=self.pad_mode,
            mode=self.mode,
            at=at,
        )


def _filter_block(piece, row, col, kernel, stride, dilation, mode):
    return filter2d(piece, kernel, stride=stride, padding=0, dilation=dilation, mode=mode)
