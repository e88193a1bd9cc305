"""The upsample operation: transposed convolution, as PyTorch's ``conv_transpose2d``."""

from __future__ import annotations

import numpy as np

from ..engine.filtering import check_mode
from ..engine.kernels import Kernel
from ..engine.transposed import conv_transpose2d
from ..geometry.sizes import (
    Pair,
    as_pair,
    check_output_padding,
    pair_json,
    scatter_rows,
    sides_json,
    tconv_output_size,
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
    tile_rows,
)

# Presets whose default padding makes the output exactly stride x the input.
EXACT_SCALE_PRESETS = ("nearest", "bilinear")


def exact_scale_padding(kernel_hw: Pair, stride: Pair, dilation: Pair) -> Pair:
    """Padding that makes the output ``stride`` times the input: ``2p = d*(k-1) + 1 - s``
    (0 on a side where that has no whole solution)."""
    padding = []
    for k, s, d in zip(kernel_hw, stride, dilation):
        excess = d * (k - 1) + 1 - s
        padding.append(excess // 2 if excess > 0 and excess % 2 == 0 else 0)
    return tuple(padding)


@register
class Upsample(Operation):
    """Transposed convolution: ``conv_transpose2d``'s parameters, checked once.

    ``padding=None``: for the ``nearest`` and ``bilinear`` presets, the padding that makes
    the output exactly ``stride`` x the input; 0 otherwise (PyTorch's default).

    >>> from convcli.engine.kernels import parse_kernel
    >>> op = Upsample(parse_kernel("bilinear", defaults={"factor": "2"}), stride=2)
    >>> op.padding, op.output_size((3, 5))
    ((1, 1), (6, 10))
    """

    name = "upsample"

    def __init__(
        self,
        kernel,
        *,
        stride=1,
        padding=None,
        output_padding=0,
        dilation=1,
        mode: str = "correlation",
        value_map: str | None = None,
    ):
        self.kernel_info, self.kernel = kernel_parts(kernel)
        self.stride = as_pair(stride, "stride", minimum=1)
        self.dilation = as_pair(dilation, "dilation", minimum=1)
        self.output_padding = as_pair(output_padding, "output-padding", minimum=0)
        check_output_padding(self.output_padding, self.stride, self.dilation, "output-padding")
        self.mode = check_mode(mode)
        info = self.kernel_info
        if (
            padding is None
            and info is not None
            and info.source == "preset"
            and info.name in EXACT_SCALE_PRESETS
        ):
            self.padding = exact_scale_padding(self.kernel.shape, self.stride, self.dilation)
        else:
            self.padding = as_pair(0 if padding is None else padding, "padding", minimum=0)
        self.tag = f"up-{info.name if info else 'kernel'}"
        self.value_map = value_map or "clip"

    def gain(self) -> float:
        if isinstance(self.kernel, PlannedKernel):
            return 1.0
        return float(self.kernel.sum(dtype=np.float64)) / (self.stride[0] * self.stride[1])

    @property
    def extent(self) -> Pair:
        return tuple(d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel.shape))

    def output_size(self, input_hw: Pair) -> Pair:
        return tconv_output_size(
            input_hw, self.kernel.shape, self.stride, self.padding, self.output_padding, self.dilation
        )

    def input_rows(self, axis: int, first: int, stop: int, input_hw: Pair) -> tuple[int, int]:
        return scatter_rows(
            first, stop, input_hw[axis], self.stride[axis], self.padding[axis], self.extent[axis]
        )

    def work_bytes(self, input_hw: Pair, channels: int) -> int:
        return self._call_bytes(self.output_size(input_hw), channels, None)

    def block_work_bytes(self, region_hw: Pair, out_hw: Pair, channels: int) -> int:
        # A block is the transposed convolution of its rows, uncropped, then placed.
        full = tuple((n - 1) * s + e for n, s, e in zip(region_hw, self.stride, self.extent))
        return self._call_bytes(full, channels, 1) + FLOAT_BYTES * channels * full[0] * full[1]

    def _call_bytes(self, out_hw: Pair, channels: int, threads: int | None) -> int:
        """What one :func:`conv_transpose2d` call allocates besides its input and result: the
        kernel's copies and its taps as Python tuples (a list per phase, and per job the taps
        of its row phase), the list of jobs, and on every thread a zero-extended input block
        and one column phase's accumulator."""
        out_h, out_w = out_hw
        (sy, sx), (ey, ex) = self.stride, self.extent
        height, width = self.kernel.shape
        if isinstance(self.kernel, PlannedKernel):
            taps = height * width
        else:
            taps = int(np.count_nonzero(self.kernel))
        phase_rows, phase_cols = -(-out_h // sy), -(-out_w // sx)
        rows = tile_rows(phase_rows, out_w, channels)
        jobs = min(sy, out_h) * (-(-phase_rows // rows))
        block = (rows + (ey - 1) // sy + 1) * (phase_cols + (ex - 1) // sx + 1)
        # the zero-extended block (and a temporary as large while it is filled), an accumulator
        per_job = FLOAT_BYTES * channels * (2 * block + rows * phase_cols) + 8 * (taps // sy + height)
        busy = busy_threads(jobs) if threads is None else min(threads, jobs)
        return 24 * height * width + TAP_BYTES * taps + 100 * jobs + busy * per_job

    def parameter_bytes(self) -> int:
        return kernel_bytes(self.kernel_info, self.kernel)

    def apply(self, data):
        return conv_transpose2d(
            data,
            self.kernel,
            stride=self.stride,
            padding=self.padding,
            output_padding=self.output_padding,
            dilation=self.dilation,
            mode=self.mode,
        )

    def chunked(self, image, chunk=None):
        """``chunk`` counts input rows and columns: an output block is ``chunk * stride`` long."""
        from . import blocks

        x = blocks.as_source(image, chunk)
        size = blocks.source_size(x)
        out_hw = self.output_size(size)
        chunk_hw = blocks.chunk_size(x, chunk)
        rows, cols = (
            blocks.scatter_plan(
                out_hw[a],
                size[a],
                self.stride[a],
                self.padding[a],
                self.extent[a],
                chunk_hw[a],
            )
            for a in (0, 1)
        )
        return blocks.windowed(
            x,
            (rows, cols),
            (0, 0, 0, 0),
            "zeros",
            0.0,
            _tconv_block,
            (self.kernel, self.stride, self.dilation, self.mode),
        )

    def report(self, input_hw: Pair) -> dict:
        info = self.kernel_info or Kernel("kernel", self.kernel)
        ph, pw = self.padding
        return {
            "kernel": info.to_json(),
            "mode": self.mode,
            "stride": pair_json(self.stride),
            "padding": sides_json((ph, ph, pw, pw)),
            "output_padding": pair_json(self.output_padding),
            "dilation": pair_json(self.dilation),
        }

    def size_formula(self, input_hw: Pair) -> list[str]:
        out = self.output_size(input_hw)
        lines = []
        for axis, side in ((1, "width"), (0, "height")):  # WIDTHxHEIGHT, as everywhere
            n, k, s = input_hw[axis], self.kernel.shape[axis], self.stride[axis]
            p, op, d = self.padding[axis], self.output_padding[axis], self.dilation[axis]
            lines.append(f"{side}: ({n} - 1)*{s} - 2*{p} + {d}*({k}-1) + {op} + 1 = {out[axis]}")
        return lines

    def as_layer(self):
        """This upsampling as a ``convcli shape`` layer (``tconv``)."""
        from ..geometry.receptive import Layer

        return Layer(
            "tconv",
            tuple(self.kernel.shape),
            self.stride,
            self.padding,
            self.dilation,
            self.output_padding,
            text=f"upsample {self.tag}",
        )

    def explain(self, matrix, at):
        return ex.explain_transposed(
            matrix.tolist(),
            self.kernel,
            stride=self.stride,
            padding=self.padding,
            output_padding=self.output_padding,
            dilation=self.dilation,
            mode=self.mode,
            at=at,
        )


def _tconv_block(piece, row, col, kernel, stride, dilation, mode):
    """The transposed convolution of input rows ``lo..hi``, placed into output rows ``a..b``.

    Blocks are ``(a, b, lo, hi, padding)``: ``a..b`` in cropped output coordinates;
    the local result starts at full coordinate ``lo * stride``, and full = cropped + padding.
    """
    local = conv_transpose2d(piece, kernel, stride=stride, dilation=dilation, mode=mode)
    out = np.zeros((row[1] - row[0], col[1] - col[0]) + piece.shape[2:], dtype=np.float32)
    source, target = [], []
    for (a, b, lo, _, pad), s, n in ((row, stride[0], local.shape[0]), (col, stride[1], local.shape[1])):
        start = a + pad - lo * s  # where output row a falls in the local result
        first, last = max(0, start), min(n, b + pad - lo * s)
        if first >= last:
            return out  # only output padding here
        source.append(slice(first, last))
        target.append(slice(first - start, last - start))
    out[target[0], target[1]] = local[source[0], source[1]]
    return out
