"""Chains: stages separated by a lone '+', float32 between stages, sizes predicted by shape.

The oracle applies PyTorch's definitions (tests/oracles.py: explicit loops) stage after
stage, in float64, to each channel; nothing here calls convcli's library to get expected
values.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

try:
    from oracles import conv_transpose_reference, each_channel, filter_reference, pool_reference
except ImportError:  # run from the repository root as a package
    from tests.oracles import conv_transpose_reference, each_channel, filter_reference, pool_reference

SOBEL_V = [[1, 0, -1], [2, 0, -2], [1, 0, -1]]
BOX = [[1 / 9] * 3] * 3
UP = [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]]


def image(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


# Each stage: (CLI words, oracle for one channel). Pairs in the oracles are (y, x); on the
# command line WxH.
def filter_stage(
    kernel, text, stride=(1, 1), padding=0, dilation=(1, 1), pad_mode="zeros", mode="correlation"
):
    padding_text = padding if isinstance(padding, str) else f"{padding[1]}x{padding[0]}"
    words = [
        "filter",
        "-k",
        text,
        "-s",
        f"{stride[1]}x{stride[0]}",
        "-p",
        padding_text,
        "-d",
        f"{dilation[1]}x{dilation[0]}",
        "--pad-mode",
        pad_mode,
        "--mode",
        mode,
    ]
    return words, lambda x: filter_reference(x, kernel, stride, padding, dilation, pad_mode, mode)


def pool_stage(op, size, stride=None, padding=(0, 0), ceil_mode=False, count_include_pad=True):
    words = ["pool", "--op", op, "-k", f"{size[1]}x{size[0]}", "-p", f"{padding[1]}x{padding[0]}"]
    if stride is not None:
        words += ["-s", f"{stride[1]}x{stride[0]}"]
    if ceil_mode:
        words.append("--ceil-mode")
    if not count_include_pad:
        words.append("--no-count-include-pad")
    return words, lambda x: pool_reference(x, size, stride, padding, 1, ceil_mode, op, count_include_pad)


def upsample_stage(kernel, text, stride=(2, 2), padding=(0, 0), output_padding=(0, 0)):
    words = [
        "upsample",
        "-k",
        text,
        "-s",
        f"{stride[1]}x{stride[0]}",
        "-p",
        f"{padding[1]}x{padding[0]}",
        "--output-padding",
        f"{output_padding[1]}x{output_padding[0]}",
    ]
    return words, lambda x: conv_transpose_reference(x, kernel, stride, padding, output_padding)


STAGES = {
    "filter-same-reflect": filter_stage(BOX, "box", padding="same", pad_mode="reflect"),
    "filter-sobel-circular": filter_stage(SOBEL_V, "sobel-vertical", padding=(1, 2), pad_mode="circular"),
    "filter-strided-dilated": filter_stage(
        SOBEL_V,
        "1,0,-1;2,0,-2;1,0,-1",
        stride=(2, 1),
        padding=(2, 1),
        dilation=(1, 2),
        pad_mode="replicate",
        mode="convolution",
    ),
    "pool-max-ceil": pool_stage("max", (3, 3), (2, 2), (1, 1), ceil_mode=True),
    "pool-mean": pool_stage("mean", (2, 3), (2, 2), (1, 1), count_include_pad=False),
    "pool-min": pool_stage("min", (2, 2)),
    "upsample": upsample_stage(UP, "0.25,0.5,0.25;0.5,1,0.5;0.25,0.5,0.25", (2, 2), (1, 1), (1, 0)),
}
ORDERS = [
    ("filter-same-reflect", "filter-sobel-circular", "pool-max-ceil"),
    ("filter-strided-dilated", "pool-mean", "upsample"),
    ("upsample", "filter-sobel-circular", "pool-min"),
    ("pool-max-ceil", "upsample", "filter-same-reflect"),
    ("pool-min", "filter-strided-dilated", "upsample", "pool-mean"),
]


def oracle(x, names):
    out = x.astype(np.float64)
    for name in names:
        out = each_channel(STAGES[name][1], out)
    return out


def chain_words(names):
    words = []
    for position, name in enumerate(names):
        words += (["+"] if position else []) + STAGES[name][0]
    return words


@pytest.mark.parametrize("names", ORDERS, ids=["-".join(o) for o in ORDERS])
def test_chain_equals_pytorch_stage_by_stage(cli, tmp_path, names):
    x = image((17, 19, 2), seed=len(names))
    np.save(tmp_path / "in.npy", x)
    words = chain_words(names)
    words[1:1] = [str(tmp_path / "in.npy")]  # the input goes to the first stage
    result = cli.ok(*words, "-o", tmp_path / "out.npy", "--json")
    got = np.load(tmp_path / "out.npy")
    expected = oracle(x, names)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4 * max(1.0, np.abs(expected).max()))
    record = json.loads(result.stdout)
    assert [s["operation"] for s in record["stages"]] == [n.split("-")[0] for n in names]
    assert record["output_size"] == {"width": expected.shape[1], "height": expected.shape[0]}


@pytest.mark.parametrize("names", ORDERS, ids=["-".join(o) for o in ORDERS])
def test_shape_predicts_what_the_chain_writes(cli, tmp_path, names):
    x = image((23, 29, 1), seed=3)
    np.save(tmp_path / "in.npy", x)
    words = chain_words(names)
    written = cli.ok(words[0], tmp_path / "in.npy", *words[1:], "-o", tmp_path / "out.npy", "--json")
    predicted = cli.ok("shape", "29x23", *words, "--json")
    stages = json.loads(written.stdout)["stages"]
    layers = json.loads(predicted.stdout)["layers"]
    assert [layer["output_size"] for layer in layers] == [stage["output_size"] for stage in stages]
    assert json.loads(predicted.stdout)["output_size"] == json.loads(written.stdout)["output_size"]


def test_the_issue_example_writes_the_right_image(cli, tmp_path):
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=(30, 26, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "duck.png")
    result = cli.ok(
        "filter",
        tmp_path / "duck.png",
        "-k",
        "gaussian:size=5,sigma=1",
        "-p",
        "same",
        "+",
        "filter",
        "-k",
        "sobel-vertical",
        "+",
        "pool",
        "--op",
        "max",
        "-k",
        "2",
        "-o",
        tmp_path / "edges.png",
    )
    assert result.stdout.strip().endswith(f"26x30 -> 26x30 -> 24x28 -> 12x14, wrote {tmp_path / 'edges.png'}")
    ax = np.arange(5) - 2.0
    g = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / 2)
    g /= g.sum()
    x = pixels.astype(np.float64) / 255
    expected = each_channel(
        lambda c: pool_reference(filter_reference(filter_reference(c, g, padding="same"), SOBEL_V), (2, 2)), x
    )
    # an edge detector in the chain: the default map is abs (then clip), as for sobel alone
    expected = np.rint(np.clip(np.abs(expected), 0, 1) * 255)
    with Image.open(tmp_path / "edges.png") as written:
        np.testing.assert_allclose(np.asarray(written), expected, atol=1)


def test_a_chain_of_one_stage_is_the_plain_command(tmp_path):
    from convcli import parse_kernel
    from convcli.ops.catalog import Chain, Filter
    from convcli.run.process import process
    from convcli.run.tasks import RunOptions, Task

    x = image((12, 11, 3), seed=8)
    np.save(tmp_path / "in.npy", x)
    Image.fromarray((x * 255).astype(np.uint8)).save(tmp_path / "in.png")
    plain = Filter(parse_kernel("sobel-horizontal"), padding="same")
    chain = Chain([Filter(parse_kernel("sobel-horizontal"), padding="same")])
    for source in ("in.npy", "in.png"):
        for suffix in (".npy", ".png", ".tif"):
            a = process(plain, Task(0, str(tmp_path / source), str(tmp_path / f"a{suffix}")), RunOptions())
            b = process(chain, Task(0, str(tmp_path / source), str(tmp_path / f"b{suffix}")), RunOptions())
            assert a.status == b.status == "done", (a.line, b.line)
            assert (tmp_path / f"a{suffix}").read_bytes() == (tmp_path / f"b{suffix}").read_bytes()
            assert a.record["output_size"] == b.record["output_size"]


def test_floats_between_stages_keep_negative_responses(cli, tmp_path):
    # A step edge: correlation with sobel-vertical is -4 along it. Through a PNG pipe that
    # would be clipped to 0 before the second stage; in a chain it stays a float.
    x = np.zeros((8, 8, 1), np.float32)
    x[:, 4:] = 1
    np.save(tmp_path / "in.npy", x)
    cli.ok(
        "filter",
        tmp_path / "in.npy",
        "-k",
        "sobel-vertical",
        "+",
        "filter",
        "-k",
        "0.5",
        "-o",
        tmp_path / "out.npy",
    )
    got = np.load(tmp_path / "out.npy")
    assert got.min() == -2.0 and got.shape == (6, 6, 1)  # H x W x 1 in, H x W x 1 out
    np.testing.assert_allclose(got[:, :, 0], 0.5 * filter_reference(x[:, :, 0], SOBEL_V), atol=1e-6)


def test_dry_run_prints_every_stage_and_touches_nothing(cli, tmp_path):
    Image.fromarray(np.zeros((612, 530), np.uint8)).save(tmp_path / "duck.png")
    result = cli.ok(
        "filter",
        tmp_path / "duck.png",
        "-k",
        "box",
        "-p",
        "same",
        "+",
        "filter",
        "-k",
        "sobel-vertical",
        "+",
        "pool",
        "-k",
        "2",
        "-o",
        tmp_path / "out.png",
        "--dry-run",
    )
    assert "530x612 -> 530x612 -> 528x610 -> 264x305, would write" in result.stdout
    assert not (tmp_path / "out.png").exists()


def test_options_on_any_stage_and_conflicts(cli, tmp_path):
    Image.fromarray(np.zeros((9, 9), np.uint8)).save(tmp_path / "a.png")
    # -o on the first stage, --json on the last
    result = cli.ok("filter", tmp_path / "a.png", "-o", tmp_path / "o.png", "+", "pool", "--json")
    assert json.loads(result.stdout)["output"] == str(tmp_path / "o.png")
    cli.fail(
        "filter",
        tmp_path / "a.png",
        "-o",
        tmp_path / "x.png",
        "+",
        "pool",
        "-o",
        tmp_path / "y.png",
        mentions=("-o", "stages 1 and 2"),
    )
    cli.fail("filter", tmp_path / "a.png", "+", "pool", tmp_path / "a.png", mentions="first stage")
    cli.fail("filter", tmp_path / "a.png", "+", "+", "pool", mentions="empty")
    cli.fail("filter", tmp_path / "a.png", "+", "shape", "3", mentions="shape")
    # a stage whose input is too small names the stage
    cli.fail(
        "filter",
        tmp_path / "a.png",
        "-k",
        "box:size=5",
        "+",
        "filter",
        "-k",
        "box:size=7",
        mentions="stage 2",
    )


def test_chunked_chain_equals_in_memory(cli, tmp_path):
    pytest.importorskip("dask.array")
    x = image((41, 37, 2), seed=11)
    np.save(tmp_path / "in.npy", x)
    words = chain_words(ORDERS[1])
    cli.ok(words[0], tmp_path / "in.npy", *words[1:], "-o", tmp_path / "mem.npy")
    result = cli.ok(
        words[0], tmp_path / "in.npy", *words[1:], "-o", tmp_path / "chunked.npy", "--chunk", "9x7", "--json"
    )
    assert json.loads(result.stdout)["chunked"]["blocks"] > 1
    np.testing.assert_array_equal(np.load(tmp_path / "chunked.npy"), np.load(tmp_path / "mem.npy"))


def test_batch_and_pipes(tmp_path):
    for index in range(3):
        Image.fromarray(np.full((10, 12, 3), 40 * index, np.uint8)).save(tmp_path / f"i{index}.png")
    base = [sys.executable, "-m", "convcli"]
    batch = subprocess.run(
        base
        + [
            "filter",
            str(tmp_path),
            "-k",
            "box",
            "+",
            "pool",
            "-k",
            "2",
            "-o",
            str(tmp_path / "out"),
            "-j",
            "2",
        ],
        capture_output=True,
        text=True,
    )
    assert batch.returncode == 0, batch.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"i{i}-box+maxpool2.png" for i in range(3)
    ]
    with open(tmp_path / "i1.png", "rb") as stdin:
        piped = subprocess.run(
            base + ["filter", "-", "-k", "box", "+", "pool", "-k", "2", "-o", "-", "--format", "npy"],
            stdin=stdin,
            capture_output=True,
        )
    assert piped.returncode == 0, piped.stderr
    import io

    got = np.load(io.BytesIO(piped.stdout))
    np.testing.assert_allclose(got, np.full((4, 5, 3), 40 / 255, np.float32), atol=1e-6)


def test_explain_a_matrix_chain(cli):
    result = cli.ok(
        "filter",
        "--matrix",
        "1 2 3 4; 5 6 7 8; 9 10 11 12; 13 14 15 16",
        "-k",
        "1,1;1,1",
        "+",
        "pool",
        "-k",
        "2",
        "-s",
        "1",
        "--explain",
        "--at",
        "0,1",
    )
    out = result.stdout
    assert "stage 1 (filter)" in out and "stage 2 (pool)" in out
    # pool of the 2x2 box sums: [[14, 18, 22], [30, 34, 38], [46, 50, 54]] -> out[0,1] = max(18,22,34,38)
    assert "38" in out
    assert "depends on input rows 0-2 and columns 1-3" in out


def test_a_chain_on_a_dask_cluster_writes_the_local_bytes(cli, tmp_path, dask_address):
    for index in range(2):
        Image.fromarray(np.full((9, 11, 3), 60 * index + 20, np.uint8)).save(tmp_path / f"i{index}.png")
    words = ["filter", tmp_path / "i0.png", tmp_path / "i1.png", "-k", "box", "+", "pool", "-k", "2"]
    cli.ok(*words, "-o", tmp_path / "local")
    cli.ok(*words, "-o", tmp_path / "cluster", "--scheduler", dask_address)
    for index in range(2):
        name = f"i{index}-box+maxpool2.png"
        assert (tmp_path / "cluster" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
