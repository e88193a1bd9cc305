"""Small matrices in, every number out: --matrix, --explain, --at (driven through CliRunner)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from convcli.cli.app import app

runner = CliRunner()

X5 = "1 2 3 0 1; 4 5 6 1 2; 7 8 9 2 3; 1 1 1 1 1; 0 1 0 1 0"
X5_ARRAY = np.array(
    [[1, 2, 3, 0, 1], [4, 5, 6, 1, 2], [7, 8, 9, 2, 3], [1, 1, 1, 1, 1], [0, 1, 0, 1, 0]], float
)
SOBEL = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], float)


def invoke(*args):
    result = runner.invoke(app, list(args))
    return result


def as_json(*args):
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def correlate_loop(x, k, stride, pad):
    """The tutorial's definition, by hand: zero padding, then dot products at stride steps."""
    xp = np.pad(x, pad)
    kh, kw = k.shape
    out_h = (xp.shape[0] - kh) // stride + 1
    out_w = (xp.shape[1] - kw) // stride + 1
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            out[i, j] = (xp[i * stride : i * stride + kh, j * stride : j * stride + kw] * k).sum()
    return out


def test_tutorial_conv_padding1_stride2_3x3_on_5x5():
    record = as_json("filter", "--matrix", X5, "-k", "1,0,-1;2,0,-2;1,0,-1", "-s", "2", "-p", "1")
    np.testing.assert_allclose(record["result"], correlate_loop(X5_ARRAY, SOBEL, 2, 1))
    assert record["output_size"] == {"width": 3, "height": 3}


def test_table_shows_every_number():
    result = invoke("filter", "--matrix", X5, "-k", "1,0,-1;2,0,-2;1,0,-1", "-s", "2", "-p", "1")
    assert result.exit_code == 0, result.output
    expected = correlate_loop(X5_ARRAY, SOBEL, 2, 1)
    numbers = [int(n) for n in re.findall(r"-?\d+", result.stdout.split("\n", 1)[1])]
    for value in expected.ravel():
        assert int(value) in numbers
    assert "output 3x3 (from 5x5)" in result.stdout


def test_explain_writes_the_dot_product_and_formula():
    result = invoke(
        "filter",
        "--matrix",
        X5,
        "-k",
        "1,0,-1;2,0,-2;1,0,-1",
        "-s",
        "2",
        "-p",
        "1",
        "--explain",
        "--at",
        "1,1",
    )
    assert result.exit_code == 0, result.output
    value = correlate_loop(X5_ARRAY, SOBEL, 2, 1)[1, 1]
    # out(1, 1) reads padded rows 2..4, cols 2..4 = input rows 1..3, cols 1..3
    window = X5_ARRAY[1:4, 1:4]
    terms = " + ".join(
        f"{int(v) if v >= 0 else f'({int(v)})'}*{int(w) if w >= 0 else f'({int(w)})'}"
        for v, w in zip(window.ravel(), SOBEL.ravel())
    )
    assert f"out(1, 1) = {terms} = {int(value)}" in result.stdout
    assert "floor((5 + 1 + 1 - 1*(3-1) - 1) / 2) + 1 = 3" in result.stdout
    assert "no flip" in result.stdout


def test_explain_convolution_flips_the_kernel():
    corr = as_json("filter", "--matrix", X5, "-k", "1,2;3,4", "--explain", "--at", "0,0")
    conv = as_json(
        "filter", "--matrix", X5, "-k", "1,2;3,4", "--mode", "convolution", "--explain", "--at", "0,0"
    )
    assert corr["explain"]["value"] == 1 * 1 + 2 * 2 + 4 * 3 + 5 * 4
    assert conv["explain"]["value"] == 1 * 4 + 2 * 3 + 4 * 2 + 5 * 1
    text = invoke("filter", "--matrix", X5, "-k", "1,2;3,4", "--mode", "convolution", "--explain").stdout
    assert "rotated 180 degrees" in text


def test_tutorial_max_pool_2x2():
    record = as_json("pool", "--matrix", "1 3 2 1; 4 6 5 0; 7 2 1 9; 3 8 4 2", "--explain", "--at", "1,1")
    assert record["result"] == [[6, 5], [8, 9]]
    assert record["explain"]["equation"] == "out(1, 1) = max(1, 9, 4, 2) = 9"


def test_mean_pool_explains_what_was_counted():
    included = as_json(
        "pool", "--matrix", X5, "--op", "mean", "-k", "2", "-p", "1", "--explain", "--at", "0,0"
    )
    excluded = as_json(
        "pool",
        "--matrix",
        X5,
        "--op",
        "mean",
        "-k",
        "2",
        "-p",
        "1",
        "--no-count-include-pad",
        "--explain",
        "--at",
        "0,0",
    )
    assert included["explain"]["value"] == pytest.approx(1 / 4)  # only x[0,0] = 1 is inside
    assert excluded["explain"]["value"] == pytest.approx(1.0)
    text = invoke("pool", "--matrix", X5, "--op", "mean", "-k", "2", "-p", "1", "--explain").stdout
    assert "count_include_pad" in text and "/ 4" in text


def test_tutorial_transposed_2x2_stride2():
    record = as_json(
        "upsample", "--matrix", "1 2; 3 4", "-k", "1,1;1,2", "-s", "2", "--explain", "--at", "1,3"
    )
    expected = np.zeros((4, 4))
    kernel = np.array([[1, 1], [1, 2]])
    for i in range(2):
        for j in range(2):
            expected[2 * i : 2 * i + 2, 2 * j : 2 * j + 2] += np.array([[1, 2], [3, 4]])[i, j] * kernel
    np.testing.assert_allclose(record["result"], expected)
    assert record["explain"]["value"] == expected[1, 3] == 4
    assert record["explain"]["terms"] == ["x(0, 1)*k(1, 1) = 2*2"]


def test_matrix_written_as_csv_and_npy(tmp_path):
    csv, npy = tmp_path / "r.csv", tmp_path / "r.npy"
    assert invoke("pool", "--matrix", X5, "-k", "2", "-s", "1", "-o", str(csv), "-q").exit_code == 0
    assert invoke("pool", "--matrix", X5, "-k", "2", "-s", "1", "-o", str(npy), "-q").exit_code == 0
    expected = np.array([[X5_ARRAY[i : i + 2, j : j + 2].max() for j in range(4)] for i in range(4)])
    np.testing.assert_array_equal(np.loadtxt(csv, delimiter=","), expected)
    np.testing.assert_array_equal(np.load(npy), expected)


def test_matrix_file_input(tmp_path):
    (tmp_path / "m.csv").write_text("1,2,3\n4,5,6\n")
    record = as_json("filter", "--matrix", str(tmp_path / "m.csv"), "-k", "1,1")
    assert record["result"] == [[3, 5], [9, 11]]


@pytest.mark.parametrize(
    "args, message",
    [
        (["filter", "--matrix", "1 2; 3 4", "-k", "1", "--explain", "--at", "5,0"], "--at"),
        (["filter", "--matrix", "1 2; 3 4", "-k", "1", "--at", "x"], "--at"),
        (
            [
                "filter",
                "--matrix",
                "; ".join(" ".join(["1"] * 20) for _ in range(20)),
                "-k",
                "1",
                "--explain",
            ],
            "--explain",
        ),
        (["filter", "img.png", "--matrix", "1 2; 3 4"], "--matrix"),
        (["filter", "img.png", "--explain"], "--explain"),
        (["filter", "--matrix", "1 2; 3"], "different lengths"),
        (["filter", "--matrix", "1 2; 3 4", "-k", "1", "-o", "r.png"], ".npy, .csv or .txt"),
    ],
)
def test_matrix_errors(args, message):
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_dry_run_prints_the_matrix_result_and_writes_nothing(tmp_path):
    out = tmp_path / "result.npy"
    args = ["filter", "--matrix", "1 2 3; 4 5 6; 7 8 9", "-k", "1,1;1,1", "-o", str(out), "--dry-run"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    printed = " ".join(result.output.split())  # Rich wraps a long path onto its own line
    assert f"would write {out}" in printed
    assert "wrote" not in printed
    record = json.loads(runner.invoke(app, [*args, "--json"]).output)
    assert record["dry_run"] is True
    assert record["result"] == [[12.0, 16.0], [24.0, 28.0]]  # 2x2 sums of the 3x3 matrix
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
