"""The pool operation: max, mean and min pooling, as PyTorch's ``max_pool2d`` and ``avg_pool2d``."""

from __future__ import annotations

import numpy as np

from ..engine.pooling import mean_divisor, pool2d, pool_parameters, window_sums
from ..geometry.sizes import (
    Pair,
    Sides,
    check_pool_padding,
    format_pair,
    pair_json,
    pool_output_length,
    pool_output_size,
    pool_padding_after,
    sides_json,
    size_json,
    window_rows,
)
from . import explain as ex
from .base import FLOAT_BYTES, VIEW_BYTES, Operation, busy_threads, register, tile_rows

POOL_FILL = {"max": -np.inf, "min": np.inf, "mean": 0.0}  # what the padding holds


@register
class Pool(Operation):
    """Pool over windows: ``pool2d``'s parameters, checked once (PyTorch's rules).

    >>> op = Pool(3, stride=2, padding=1, ceil_mode=True, op="mean")
    >>> op.output_size((5, 6)), op.tag
    ((3, 4), 'meanpool3')
    """

    name = "pool"

    def __init__(
        self,
        size=2,
        *,
        stride=None,
        padding=0,
        dilation=1,
        ceil_mode: bool = False,
        op: str = "max",
        count_include_pad: bool = True,
        value_map: str | None = None,
    ):
        self.size, self.stride, self.padding, self.dilation = pool_parameters(
            op, size, stride, padding, dilation
        )
        check_pool_padding(self.size, self.padding, "padding", self.dilation)
        self.ceil_mode, self.op, self.count_include_pad = bool(ceil_mode), op, bool(count_include_pad)
        self.tag = f"{op}pool{format_pair(self.size)}"
        self.value_map = value_map or "clip"

    @property
    def extent(self) -> Pair:
        return tuple(d * (k - 1) + 1 for d, k in zip(self.dilation, self.size))

    def padding_sides(self, input_hw: Pair) -> Sides:
        """The padding as given before the input; after it, what the last window reaches
        (less than the padding when no window uses all of it; more for a ceil-mode window)."""
        out = self.output_size(input_hw)
        after = [
            pool_padding_after(
                out[a], input_hw[a], self.size[a], self.stride[a], self.padding[a], self.dilation[a]
            )
            for a in (0, 1)
        ]
        return (self.padding[0], after[0], self.padding[1], after[1])

    def output_size(self, input_hw: Pair) -> Pair:
        return pool_output_size(input_hw, self.size, self.stride, self.padding, self.dilation, self.ceil_mode)

    def input_rows(self, axis: int, first: int, stop: int, input_hw: Pair) -> tuple[int, int]:
        lo, hi = window_rows(first, stop, self.stride[axis], self.extent[axis])
        return lo - self.padding[axis], hi - self.padding[axis]

    def work_bytes(self, input_hw: Pair, channels: int) -> int:
        """On every thread, one output tile's padded input block, its row and column
        reductions and the list of the window's views; the mean's divisors."""
        out_h, out_w = self.output_size(input_hw)
        return self._tiles_bytes((out_h, out_w), channels, None) + 12 * out_h * out_w

    def block_work_bytes(self, region_hw: Pair, out_hw: Pair, channels: int) -> int:
        return self._tiles_bytes(out_hw, channels, 1) + 12 * out_hw[0] * out_hw[1]

    def _tiles_bytes(self, out_hw: Pair, channels: int, threads: int | None) -> int:
        out_h, out_w = out_hw
        (sy, sx), (ey, ex), (kh, kw) = self.stride, self.extent, self.size
        rows = tile_rows(out_h, out_w, channels)
        span = (out_w - 1) * sx + ex
        block = ((rows - 1) * sy + ey) * span
        views = kh * kw if self.op == "mean" else kh + kw
        # the padded block, and a temporary as large while its padding is filled
        per_tile = FLOAT_BYTES * channels * (2 * block + 2 * rows * span) + VIEW_BYTES * views
        jobs = -(-out_h // rows)
        return (busy_threads(jobs) if threads is None else min(threads, jobs)) * per_tile

    def apply(self, data):
        return pool2d(
            data,
            self.size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            ceil_mode=self.ceil_mode,
            op=self.op,
            count_include_pad=self.count_include_pad,
        )

    def chunked(self, image, chunk=None):
        from . import blocks

        x = blocks.as_source(image, chunk)
        size = blocks.source_size(x)
        out_h, out_w = self.output_size(size)
        sides = self.padding_sides(size)
        chunk_hw = blocks.chunk_size(x, chunk)
        rows, cols = (
            blocks.window_plan(
                count,
                size[a] + sides[2 * a] + sides[2 * a + 1],
                self.stride[a],
                self.extent[a],
                blocks.per_block(chunk_hw[a], self.stride[a]),
            )
            for a, count in ((0, out_h), (1, out_w))
        )
        divisors = None
        if self.op == "mean":
            divisors = tuple(
                mean_divisor(
                    size[a], self.size[a], self.stride[a], self.padding[a], count, self.count_include_pad
                )
                for a, count in ((0, out_h), (1, out_w))
            )
        return blocks.windowed(
            x,
            (rows, cols),
            sides,
            "zeros",
            POOL_FILL[self.op],
            _pool_block,
            (self.size, self.stride, self.dilation, self.op, divisors),
        )

    def report(self, input_hw: Pair) -> dict:
        (ph, pw) = self.padding
        data = {
            "op": self.op,
            "window": size_json(self.size),
            "stride": pair_json(self.stride),
            "padding": sides_json((ph, ph, pw, pw)),
            "dilation": pair_json(self.dilation),
            "ceil_mode": self.ceil_mode,
        }
        if self.op == "mean":
            data["count_include_pad"] = self.count_include_pad
        return data

    def size_formula(self, input_hw: Pair) -> list[str]:
        lines = []
        for axis, side in ((1, "width"), (0, "height")):  # WIDTHxHEIGHT, as everywhere
            n, k, s = input_hw[axis], self.size[axis], self.stride[axis]
            p, d = self.padding[axis], self.dilation[axis]
            value = pool_output_length(n, k, s, p, d, self.ceil_mode)
            text = (
                f"{side}: {'ceil' if self.ceil_mode else 'floor'}(({n} + 2*{p} - {d}*({k}-1) - 1) / {s}) + 1"
            )
            raw = -(-(n + 2 * p - d * (k - 1) - 1) // s) + 1
            if self.ceil_mode and raw != value:
                text += (
                    f" = {raw}; the last window would start in the {'right' if axis else 'bottom'} padding, "
                    f"so it is dropped: {value}"
                )
            else:
                text += f" = {value}"
            lines.append(text)
        return lines

    def as_layer(self):
        """This pooling as a ``convcli shape`` layer (``pool``)."""
        from ..geometry.receptive import Layer

        return Layer(
            "pool",
            self.size,
            self.stride,
            self.padding,
            self.dilation,
            ceil_mode=self.ceil_mode,
            text=f"pool {self.tag}",
        )

    def explain(self, matrix, at):
        return ex.explain_pool(
            matrix.tolist(),
            size=self.size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            ceil_mode=self.ceil_mode,
            op=self.op,
            count_include_pad=self.count_include_pad,
            at=at,
            out_size=self.output_size(matrix.shape[:2]),
        )


def _pool_block(piece, row, col, size, stride, dilation, op, divisors):
    if op != "mean":
        return pool2d(piece, size, stride=stride, padding=0, dilation=dilation, op=op)
    # The sums as pool2d makes them (same views, same order), then the whole image's divisor.
    out = window_sums(piece, size, stride, (row[1] - row[0], col[1] - col[0]))
    divisor = np.outer(divisors[0][row[0] : row[1]], divisors[1][col[0] : col[1]]).astype(np.float32)
    out /= divisor.reshape(divisor.shape + (1,) * (piece.ndim - 2))
    return out
