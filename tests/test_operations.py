"""Adding an operation is one class: a new operation defined here, and nowhere else, runs
through the batch runner, the chunked path and the --matrix explanations; and nothing in
convcli branches on an operation's name."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convcli.geometry.sizes import window_rows
from convcli.ops.base import OPERATIONS, Operation, register
from convcli.ops.catalog import Filter, Pool, Upsample
from convcli.ops.explain import Step

PACKAGE = Path(__file__).resolve().parent.parent / "convcli"


def _scale_block(piece, row, col, factor):
    return piece * np.float32(factor)


@register
class Scale(Operation):
    """Every value times ``factor``: the smallest operation there is, with no halo."""

    name = "scale-test"

    def __init__(self, factor: float):
        self.factor = float(factor)
        self.tag = f"x{factor:g}"
        self.value_map = "clip"

    def output_size(self, input_hw):
        return tuple(input_hw)

    def input_rows(self, axis, first, stop, input_hw):
        return window_rows(first, stop, 1, 1)

    def apply(self, data):
        return data * np.float32(self.factor)

    def chunked(self, image, chunk=None):
        from convcli.ops import blocks

        x = blocks.as_source(image, chunk)
        size, chunk_hw = blocks.source_size(x), blocks.chunk_size(x, chunk)
        plans = [blocks.window_plan(size[a], size[a], 1, 1, chunk_hw[a]) for a in (0, 1)]
        return blocks.windowed(x, plans, (0, 0, 0, 0), "zeros", 0.0, _scale_block, (self.factor,))

    def report(self, input_hw):
        return {"factor": self.factor}

    def size_formula(self, input_hw):
        return [f"height: {input_hw[0]}", f"width: {input_hw[1]}"]

    def explain(self, matrix, at):
        value = float(matrix[at]) * self.factor
        return Step(
            f"input, value of output {at}",
            matrix.tolist(),
            {at},
            (0, 0),
            None,
            "",
            [f"{matrix[at]:g} * {self.factor:g}"],
            value,
            f"{matrix[at]:g} * {self.factor:g} = {value:g}",
        )


def test_registered_by_name():
    assert OPERATIONS["scale-test"] is Scale
    assert {"filter", "pool", "upsample"} <= set(OPERATIONS)
    assert [OPERATIONS[n] for n in ("filter", "pool", "upsample")] == [Filter, Pool, Upsample]


def test_a_new_operation_runs_through_the_batch_runner(tmp_path):
    from convcli.run.batch import run
    from convcli.run.tasks import RunOptions

    rng = np.random.default_rng(3)
    inputs = []
    for index in range(2):
        pixels = rng.integers(0, 128, size=(5, 7, 3), dtype=np.uint8)
        path = tmp_path / f"in{index}.png"
        Image.fromarray(pixels).save(path)
        inputs.append((path, pixels))
    code = run(
        Scale(2), [str(p) for p, _ in inputs], RunOptions(output=str(tmp_path / "out"), jobs=1, quiet=True)
    )
    assert code == 0
    for path, pixels in inputs:
        with Image.open(tmp_path / "out" / f"{path.stem}-x2.png") as written:
            # the oracle: values doubled (all stay below 255), written back as 8-bit
            np.testing.assert_array_equal(np.asarray(written), pixels.astype(np.uint16) * 2)


def test_a_new_operation_runs_in_chunks(tmp_path):
    pytest.importorskip("dask.array")
    from convcli.run.chunked import process_huge

    x = np.random.default_rng(4).normal(size=(23, 19, 2)).astype(np.float32)
    np.save(tmp_path / "in.npy", x)
    record = process_huge(Scale(-0.5), tmp_path / "in.npy", tmp_path / "out.npy", chunk=(6, 5))
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), x * np.float32(-0.5))
    assert record["operation"] == "scale-test" and record["factor"] == -0.5
    assert record["chunked"]["blocks"] == 4 * 4


def test_a_new_operation_explains_a_matrix(capsys):
    from convcli.cli.matrix import run_matrix

    run_matrix(Scale(3), "1 2; 3 4", output=None, explain=True, at="1,0", json_out=True, quiet=False)
    record = json.loads(capsys.readouterr().out)
    assert record["result"] == [[3, 6], [9, 12]]
    assert record["explain"]["value"] == 9 and record["operation"] == "scale-test"


def _name_comparisons(tree):
    """Comparisons of something with an operation's name: ``x.name == "pool"`` and the like."""
    names = set(OPERATIONS) | {"filter", "pool", "upsample"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
            texts = {p.value for p in parts if isinstance(p, ast.Constant) and isinstance(p.value, str)}
            attrs = [p for p in parts if isinstance(p, ast.Attribute) and p.attr == "name"]
            if texts & names and attrs:
                yield node.lineno


def test_nothing_dispatches_on_an_operation_name():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        found += [f"{path.relative_to(PACKAGE.parent)}:{line}" for line in _name_comparisons(tree)]
    assert found == [], "branches on an operation's name: " + ", ".join(found)


def test_the_name_check_can_fail():
    tree = ast.parse('if op.name == "filter":\n    pass\nif "pool" != self.name: pass\n')
    assert list(_name_comparisons(tree)) == [1, 3]
