"""A chain: several operations applied one after the other, in float32 between stages.

A chain is an operation like any other: its output size, memory estimate,
halo, report and size formula are composed from its stages', so the runner,
the chunked path and ``--matrix`` treat it as one operation.  Between stages
the values stay float32 (no value map, no clipping); the chain's value map
applies to the final output only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConvcliError
from ..geometry.sizes import Pair, size_json
from .base import Operation, register

MAX_STAGES = 64


@register
class Chain(Operation):
    """``stages`` applied in order.

    The default value map is the first stage's that is not ``clip`` (``abs`` when an edge
    detector is anywhere in the chain: its negative responses would otherwise vanish),
    else ``clip``.

    >>> from convcli.ops.catalog import Filter, Pool
    >>> chain = Chain([Filter(np.ones((3, 3), np.float32), padding="same"), Filter(np.ones((3, 3))),
    ...                Pool(2)])
    >>> chain.size_path((612, 530))
    [(612, 530), (612, 530), (610, 528), (305, 264)]
    >>> chain.input_rows(0, 0, 1, (612, 530))  # one output row reads input rows -1..5
    (-1, 5)
    """

    name = "chain"

    def __init__(self, stages: Sequence[Operation], value_map: str | None = None):
        stages = tuple(stages)
        if not stages:
            raise ConvcliError("chain: needs at least one stage")
        if len(stages) > MAX_STAGES:
            raise ConvcliError(f"chain: at most {MAX_STAGES} stages, got {len(stages)}")
        if not all(isinstance(stage, Operation) for stage in stages):
            raise ConvcliError("chain: every stage must be an operation")
        self.stages = stages
        self.tag = "+".join(stage.tag for stage in stages)
        self.value_map = value_map or next(
            (stage.value_map for stage in stages if stage.value_map != "clip"), "clip"
        )

    def gain(self) -> float:
        product = 1.0
        for stage in self.stages:
            product *= stage.gain()
        return product

    # ---------------------------------------------------------------- sizes

    def size_path(self, input_hw: Pair) -> list[Pair]:
        sizes = [tuple(input_hw)]
        for position, stage in enumerate(self.stages, start=1):
            try:
                sizes.append(tuple(stage.output_size(sizes[-1])))
            except ConvcliError as exc:
                if len(self.stages) == 1:
                    raise
                raise ConvcliError(f"stage {position} ({stage.name}): {exc}", exc.exit_code) from None
        return sizes

    def output_size(self, input_hw: Pair) -> Pair:
        return self.size_path(input_hw)[-1]

    def input_rows(self, axis: int, first: int, stop: int, input_hw: Pair) -> tuple[int, int]:
        """The input rows that output rows ``first..stop`` depend on, stage by stage from the
        last: each stage's rows are clipped to what the stage before it produces (rows
        beyond are that stage's padding, made from rows inside)."""
        sizes = self.size_path(input_hw)
        lo, hi = first, stop
        for index in range(len(self.stages) - 1, -1, -1):
            lo, hi = self.stages[index].input_rows(axis, lo, hi, sizes[index])
            if index:
                length = sizes[index][axis]
                lo, hi = max(0, min(lo, length)), max(0, min(hi, length))
        return lo, hi

    # --------------------------------------------------------------- memory

    def memory_estimate(self, input_hw: Pair, channels: int) -> int:
        """The largest stage's working memory at its own input size, plus the decoded input
        held while the stages run."""
        sizes = self.size_path(input_hw)
        decoded = 4 * channels * input_hw[0] * input_hw[1]
        return decoded + max(stage.memory_estimate(size, channels) for stage, size in zip(self.stages, sizes))

    def parameter_bytes(self) -> int:
        return sum(stage.parameter_bytes() for stage in self.stages)

    # -------------------------------------------------------------- compute

    def apply(self, data):
        for stage in self.stages:
            data = stage.apply(data)
        return data

    def chunked(self, image, chunk=None):
        """Stage after stage on lazy dask arrays: each stage's blocks read exactly the rows of
        the previous stage's result that their windows need, so the chain is bit-identical
        to :meth:`apply` and never holds a whole intermediate image."""
        result = image
        for position, stage in enumerate(self.stages):
            result = stage.chunked(result, chunk if position == 0 else None)
        return result

    # ------------------------------------------------------------ reporting

    def report(self, input_hw: Pair) -> dict:
        sizes = self.size_path(input_hw)
        stages = [
            {
                "operation": stage.name,
                "input_size": size_json(sizes[index]),
                "output_size": size_json(sizes[index + 1]),
                **stage.report(sizes[index]),
            }
            for index, stage in enumerate(self.stages)
        ]
        return {"stages": stages}

    def size_formula(self, input_hw: Pair) -> list[str]:
        sizes = self.size_path(input_hw)
        lines = []
        for index, stage in enumerate(self.stages):
            lines.append(f"stage {index + 1} ({stage.name}):")
            lines += [f"  {line}" for line in stage.size_formula(sizes[index])]
        return lines

    def stage_results(self, matrix):
        data, results = matrix[:, :, None], []
        for stage in self.stages:
            data = stage.apply(data)
            results.append((stage, data[:, :, 0]))
        return results

    def explain(self, matrix, at):
        """The last stage's computation of ``out[at]`` on the result of the stages before,
        with a note naming the input positions that value depends on through the chain."""
        data = matrix[:, :, None] if matrix.ndim == 2 else matrix
        for stage in self.stages[:-1]:
            data = stage.apply(data)
        step = self.stages[-1].explain(data[:, :, 0], at)
        if len(self.stages) > 1:
            last = len(self.stages)
            name = self.stages[-1].name
            step.title = f"stage {last} ({name}) on the result of stage {last - 1}: {step.title}"
        rows, cols = dependencies(self, matrix, at)
        step.notes.append(
            f"through the chain, output ({at[0]}, {at[1]}) depends on input rows "
            f"{_ranges(rows)} and columns {_ranges(cols)} ({len(rows)}x{len(cols)} positions)"
        )
        return step


def dependencies(op: Operation, matrix: np.ndarray, at: tuple[int, int]) -> tuple[list[int], list[int]]:
    """The input rows and columns whose values reach ``out[at]``, found by the definition:
    a NaN put at an input position reaches the output value exactly when that position
    takes part in it (a zero weight does not spread it; a window, max or mean, does)."""
    height, width = matrix.shape[:2]
    rows, cols = set(), set()
    base = matrix[:, :, None].astype(np.float32) if matrix.ndim == 2 else matrix.astype(np.float32)
    with np.errstate(invalid="ignore"):
        for i in range(height):
            probe = base.copy()
            probe[i, :] = np.nan
            if np.isnan(op.apply(probe)[at[0], at[1]]).any():
                rows.add(i)
        for j in range(width):
            probe = base.copy()
            probe[:, j] = np.nan
            if np.isnan(op.apply(probe)[at[0], at[1]]).any():
                cols.add(j)
    return sorted(rows), sorted(cols)


def _ranges(values: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    if not values:
        return "none"
    parts, start = [], values[0]
    for previous, current in zip(values, [*values[1:], None]):
        if current != previous + 1:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
            start = current
    return ", ".join(parts)


__all__ = ["Chain", "dependencies"]
