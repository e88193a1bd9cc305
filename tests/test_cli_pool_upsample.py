"""``convcli pool`` and ``convcli upsample`` through Typer's CliRunner, against explicit-loop oracles.

The pooling oracle follows PyTorch's ``max_pool2d``/``avg_pool2d`` definitions
(ATen's ``pooling_output_shape`` and the avg-pool divisor rule); the upsampling
oracle is the scatter definition of ``conv_transpose2d``:
``out[i*s - p + m*d] += x[i] * k[m]`` along each axis.  Nothing here calls convcli's
library functions.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

try:
    from oracles import conv_transpose_reference, each_channel, pool_reference
except ImportError:  # run from the repository root as a package
    from tests.oracles import conv_transpose_reference, each_channel, pool_reference

# ------------------------------------------------------------------ oracles


def pool_oracle(
    x, op, size, stride=None, padding=(0, 0), dilation=(1, 1), ceil_mode=False, count_include_pad=True
):
    """Explicit-loop pooling of each channel (tests/oracles.py); pairs are (y, x)."""
    return each_channel(pool_reference, x, size, stride, padding, dilation, ceil_mode, op, count_include_pad)


def scatter_oracle(x, k, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1)):
    """conv_transpose2d by its definition on each channel: out[i*s - p + m*d] += x[i] * k[m]
    (tests/oracles.py); pairs are (y, x)."""
    return each_channel(conv_transpose_reference, x, k, stride, padding, output_padding, dilation)


def read_image(path):
    with Image.open(path) as image:
        return image.mode, np.asarray(image).copy()


# --------------------------------------------------------------------- pool

POOL_CASES = [
    # (CLI arguments, oracle keyword arguments); the input is 9 high x 11 wide x 2
    (["--op", "max"], {"op": "max", "size": (2, 2)}),  # stride defaults to the window
    (["--op", "max", "-k", "3"], {"op": "max", "size": (3, 3)}),
    (
        ["--op", "max", "-k", "3", "-s", "2", "-p", "1"],
        {"op": "max", "size": (3, 3), "stride": (2, 2), "padding": (1, 1)},
    ),
    (["--op", "max", "-k", "2", "--ceil-mode"], {"op": "max", "size": (2, 2), "ceil_mode": True}),
    (
        ["--op", "max", "-k", "3", "-s", "3", "-p", "1", "--ceil-mode"],
        {"op": "max", "size": (3, 3), "stride": (3, 3), "padding": (1, 1), "ceil_mode": True},
    ),
    # -k 3x2: 3 wide, 2 high; -s 2x1: 2 across, 1 down; -d 2x1: taps 2 apart across
    (
        ["--op", "max", "-k", "3x2", "-s", "2x1", "-p", "1", "-d", "2x1"],
        {"op": "max", "size": (2, 3), "stride": (1, 2), "padding": (1, 1), "dilation": (1, 2)},
    ),
    (
        ["--op", "max", "-k", "2", "-s", "1", "-d", "3"],
        {"op": "max", "size": (2, 2), "stride": (1, 1), "dilation": (3, 3)},
    ),
    (["--op", "min"], {"op": "min", "size": (2, 2)}),
    (
        ["--op", "min", "-k", "3", "-s", "1", "-p", "1"],
        {"op": "min", "size": (3, 3), "stride": (1, 1), "padding": (1, 1)},
    ),
    (["--op", "min", "-k", "2x3", "--ceil-mode"], {"op": "min", "size": (3, 2), "ceil_mode": True}),
    (["--op", "mean"], {"op": "mean", "size": (2, 2)}),
    (
        ["--op", "mean", "-k", "3", "-s", "2", "-p", "1"],
        {"op": "mean", "size": (3, 3), "stride": (2, 2), "padding": (1, 1)},
    ),
    (
        ["--op", "mean", "-k", "3", "-s", "2", "-p", "1", "--count-include-pad"],
        {"op": "mean", "size": (3, 3), "stride": (2, 2), "padding": (1, 1)},
    ),
    (
        ["--op", "mean", "-k", "3", "-s", "2", "-p", "1", "--no-count-include-pad"],
        {"op": "mean", "size": (3, 3), "stride": (2, 2), "padding": (1, 1), "count_include_pad": False},
    ),
    # ceil mode adds a last window starting on the last row, half in the padding
    (
        ["--op", "mean", "-k", "3", "-s", "3", "-p", "1", "--ceil-mode"],
        {"op": "mean", "size": (3, 3), "stride": (3, 3), "padding": (1, 1), "ceil_mode": True},
    ),
    (
        ["--op", "mean", "-k", "3", "-s", "3", "-p", "1", "--ceil-mode", "--no-count-include-pad"],
        {
            "op": "mean",
            "size": (3, 3),
            "stride": (3, 3),
            "padding": (1, 1),
            "ceil_mode": True,
            "count_include_pad": False,
        },
    ),
    (["--op", "mean", "-k", "2", "--ceil-mode"], {"op": "mean", "size": (2, 2), "ceil_mode": True}),
    (
        ["--op", "mean", "-k", "4x2", "-s", "3x1", "-p", "2x1", "--ceil-mode"],
        {"op": "mean", "size": (2, 4), "stride": (1, 3), "padding": (1, 2), "ceil_mode": True},
    ),
]


@pytest.mark.parametrize("args, oracle", POOL_CASES, ids=[" ".join(c[0]) for c in POOL_CASES])
def test_pool_npy_equals_loop_oracle(cli, float_npy, tmp_path, args, oracle):
    out = tmp_path / "p.npy"
    cli.ok("pool", float_npy.path, *args, "-o", out, "-q")
    y = np.load(out)
    expected = pool_oracle(float_npy.pixels, **oracle)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_ceil_mode_changes_the_size(cli, float_npy, tmp_path):
    floor = cli.ok(
        "pool", float_npy.path, "--op", "mean", "-k", "3", "-s", "3", "-p", "1", "-o", tmp_path / "a.npy"
    )
    ceil = cli.ok(
        "pool",
        float_npy.path,
        "--op",
        "mean",
        "-k",
        "3",
        "-s",
        "3",
        "-p",
        "1",
        "--ceil-mode",
        "-o",
        tmp_path / "b.npy",
    )
    assert floor.stdout == f"{float_npy.path}: 11x9 -> 4x3, wrote {tmp_path / 'a.npy'}\n"
    assert ceil.stdout == f"{float_npy.path}: 11x9 -> 4x4, wrote {tmp_path / 'b.npy'}\n"


def test_max_pool_png_is_exact(cli, rgb_png, tmp_path):
    out = tmp_path / "m.png"
    result = cli.ok("pool", rgb_png.path, "-o", out)
    assert result.stdout == f"{rgb_png.path}: 13x10 -> 6x5, wrote {out}\n"
    mode, got = read_image(out)
    assert mode == "RGB"
    expected = pool_oracle(rgb_png.pixels, "max", (2, 2))
    np.testing.assert_array_equal(got, expected.astype(np.uint8))


def test_pool_json(cli, float_npy, tmp_path):
    result = cli.ok(
        "pool",
        float_npy.path,
        "--op",
        "mean",
        "-k",
        "3x2",
        "-s",
        "1",
        "-p",
        "1",
        "--no-count-include-pad",
        "-o",
        tmp_path / "p.npy",
        "--json",
    )
    record = json.loads(result.stdout)
    assert record["operation"] == "pool"
    assert record["input_size"] == {"width": 11, "height": 9}
    # width (11 + 2 - 3) // 1 + 1 = 11, height (9 + 2 - 2) // 1 + 1 = 10
    assert record["output_size"] == {"width": 11, "height": 10}
    assert record["stride"] == {"x": 1, "y": 1}
    assert record["padding"] == {"top": 1, "bottom": 1, "left": 1, "right": 1}
    assert record["channels"] == 2


@pytest.mark.parametrize(
    "args, name",
    [
        ([], "x-maxpool2.npy"),
        (["--op", "mean", "-k", "3x2"], "x-meanpool3x2.npy"),
        (["--op", "min", "-k", "3", "-s", "1"], "x-minpool3.npy"),
    ],
)
def test_pool_default_output_name(cli, float_npy, tmp_path, list_folder, args, name):
    result = cli.ok("pool", float_npy.path, *args)
    assert result.stdout.endswith(f", wrote {tmp_path / name}\n")
    assert list_folder(tmp_path) == sorted(["x.npy", name])


def test_pool_default_output_name_png(cli, rgb_png, tmp_path):
    cli.ok("pool", rgb_png.path, "--op", "mean", "-k", "2", "-q")
    assert (tmp_path / "rgb-meanpool2.png").is_file()


POOL_ERRORS = [
    ("padding over half the window", ["-k", "2", "-p", "2"], ("--padding",)),
    ("padding over half, one axis", ["-k", "3", "-p", "1x2"], ("--padding",)),
    ("mean with dilation", ["--op", "mean", "-k", "2", "-d", "2"], ("--dilation",)),
    ("window larger than input", ["-k", "12"], ("12x12",)),
    ("window larger than input, one axis", ["-k", "3x10"], ("3x10",)),
    ("unknown op", ["--op", "median"], ("--op", "median")),
    ("size 0", ["-k", "0"], ("--size",)),
    ("stride 0", ["-s", "0"], ("--stride",)),
    ("stride junk", ["-s", "2xjunk"], ("--stride",)),
    ("dilation 0", ["-d", "0"], ("--dilation",)),
    ("negative padding", ["--padding=-1"], ("--padding",)),
]


@pytest.mark.parametrize("args, mentions", [e[1:] for e in POOL_ERRORS], ids=[e[0] for e in POOL_ERRORS])
def test_pool_errors(cli, float_npy, tmp_path, list_folder, args, mentions):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cli.fail("pool", float_npy.path, *args, "-o", out_dir / "p.npy", mentions=mentions)
    assert list_folder(out_dir) == []
    cli.fail("pool", float_npy.path, *args, mentions=mentions)  # the default output too
    assert list_folder(tmp_path) == ["out", "x.npy"]


# ----------------------------------------------------------------- upsample

BILINEAR_2 = np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25])


@pytest.fixture
def flat_png(tmp_path):
    path = tmp_path / "flat.png"
    Image.fromarray(np.full((5, 7), 100, dtype=np.uint8), "L").save(path)  # 7 wide, 5 high
    return path


def test_upsample_default_bilinear_is_exactly_twice(cli, flat_png, tmp_path):
    out = tmp_path / "u.png"
    result = cli.ok("upsample", flat_png, "-o", out)
    assert result.stdout == f"{flat_png}: 7x5 -> 14x10, wrote {out}\n"
    mode, got = read_image(out)
    assert mode == "L" and got.shape == (10, 14)
    interior = got[1:-1, 1:-1]
    assert (interior == 100).all(), interior  # flat stays flat: no checkerboard
    # the border rows and columns get only the 0.75 tap (as PyTorch with this kernel)
    expected = scatter_oracle(np.full((5, 7), 100 / 255), BILINEAR_2, (2, 2), (1, 1))
    np.testing.assert_array_equal(got, np.rint(np.clip(expected, 0, 1) * 255).astype(np.uint8))


def test_upsample_default_json(cli, flat_png, tmp_path):
    record = json.loads(cli.ok("upsample", flat_png, "-o", tmp_path / "u.png", "--json").stdout)
    assert record["operation"] == "upsample"
    assert record["output_size"] == {"width": 14, "height": 10}
    assert record["stride"] == {"x": 2, "y": 2}
    assert record["kernel"]["name"] == "bilinear"
    assert record["kernel"]["size"] == {"width": 4, "height": 4}
    assert record["padding"] == {"top": 1, "bottom": 1, "left": 1, "right": 1}


def test_upsample_bilinear_values_on_random_input(cli, float_npy, tmp_path):
    out = tmp_path / "u.npy"
    cli.ok("upsample", float_npy.path, "-o", out, "-q")
    y = np.load(out)
    assert y.shape == (18, 22, 2)
    np.testing.assert_allclose(y, scatter_oracle(float_npy.pixels, BILINEAR_2, (2, 2), (1, 1)), atol=1e-5)


def test_upsample_bilinear_non_square_stride(cli, tmp_path):
    x = np.ones((4, 6), dtype=np.float32)
    np.save(tmp_path / "one.npy", x)
    out = tmp_path / "u.npy"
    result = cli.ok("upsample", tmp_path / "one.npy", "-s", "3x2", "-o", out)
    assert result.stdout == f"{tmp_path / 'one.npy'}: 6x4 -> 18x8, wrote {out}\n"  # 3 across, 2 down
    y = np.load(out)
    np.testing.assert_allclose(y[1:-1, 1:-1], 1.0, atol=1e-6)
    tri3 = np.array([1, 2, 3, 2, 1]) / 3
    tri2 = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(y, scatter_oracle(x, np.outer(tri2, tri3), (2, 3), (1, 1)), atol=1e-6)


def test_upsample_nearest_stride_3_is_kron(cli, float_npy, rgb_png, tmp_path):
    out = tmp_path / "n.npy"
    cli.ok("upsample", float_npy.path, "-k", "nearest", "-s", "3", "-o", out, "-q")
    y = np.load(out)
    assert y.shape == (27, 33, 2)
    np.testing.assert_allclose(y, np.kron(float_npy.pixels, np.ones((3, 3, 1))), atol=1e-6)
    png = tmp_path / "n.png"
    result = cli.ok("upsample", rgb_png.path, "-k", "nearest", "-s", "3", "-o", png)
    assert result.stdout == f"{rgb_png.path}: 13x10 -> 39x30, wrote {png}\n"
    np.testing.assert_array_equal(
        read_image(png)[1], np.kron(rgb_png.pixels, np.ones((3, 3, 1), dtype=np.uint8))
    )


def test_upsample_nearest_non_square(cli, float2d_npy, tmp_path):
    out = tmp_path / "n.npy"
    cli.ok("upsample", float2d_npy.path, "-k", "nearest", "-s", "3x2", "-o", out, "-q")
    np.testing.assert_allclose(np.load(out), np.kron(float2d_npy.pixels, np.ones((2, 3))), atol=1e-6)


UPSAMPLE_CASES = [
    # (CLI arguments after -k KERNEL, oracle keyword arguments)
    (
        ["-s", "2", "-p", "1", "--output-padding", "1", "-d", "1"],
        {"stride": (2, 2), "padding": (1, 1), "output_padding": (1, 1)},
    ),
    (["-s", "2"], {"stride": (2, 2)}),
    (
        ["-s", "3x2", "-p", "2x1", "--output-padding", "2x1"],
        {"stride": (2, 3), "padding": (1, 2), "output_padding": (1, 2)},
    ),
    (["-s", "1", "-d", "2", "--output-padding", "1"], {"dilation": (2, 2), "output_padding": (1, 1)}),
    (["-s", "2", "-d", "3x1", "-p", "1"], {"stride": (2, 2), "dilation": (1, 3), "padding": (1, 1)}),
]


@pytest.mark.parametrize("args, oracle", UPSAMPLE_CASES, ids=[" ".join(c[0]) for c in UPSAMPLE_CASES])
def test_upsample_npy_equals_scatter_oracle(cli, float_npy, tmp_path, args, oracle):
    kernel = np.array([[1.0, -2.0, 0.5], [0.25, 3.0, -1.0]])  # 3 wide, 2 high, not symmetric
    np.save(tmp_path / "kernel.npy", kernel)
    out = tmp_path / "u.npy"
    cli.ok("upsample", float_npy.path, "-k", tmp_path / "kernel.npy", *args, "-o", out, "-q")
    y = np.load(out)
    expected = scatter_oracle(float_npy.pixels, kernel, **oracle)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_upsample_convolution_mode_rotates_the_kernel(cli, float2d_npy, tmp_path):
    out = tmp_path / "u.npy"
    cli.ok(
        "upsample", float2d_npy.path, "-k", "1,2,3;4,5,7", "-s", "2", "--mode", "convolution", "-o", out, "-q"
    )
    expected = scatter_oracle(float2d_npy.pixels, [[7, 5, 4], [3, 2, 1]], (2, 2))
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-5, atol=1e-5)


def test_upsample_checkerboard_on_flat_input(cli, tmp_path):
    np.save(tmp_path / "flat.npy", np.ones((6, 6), dtype=np.float32))
    out = tmp_path / "c.npy"
    cli.ok("upsample", tmp_path / "flat.npy", "-k", "1,1,1;1,1,1;1,1,1", "-s", "2", "-o", out, "-q")
    y = np.load(out)
    assert y.shape == (13, 13)
    np.testing.assert_allclose(y, scatter_oracle(np.ones((6, 6)), np.ones((3, 3)), (2, 2)))
    interior = y[1:-1, 1:-1]
    # overlaps alternate along each axis: 2 taps at even positions, 1 at odd ones
    # (interior[0, 0] is y[1, 1], an odd row and column)
    assert interior[0, 0] != interior[0, 1]
    assert interior[0, 0] == 1 and interior[0, 1] == 2 and interior[1, 1] == 4
    np.testing.assert_array_equal(interior[:, :-2], interior[:, 2:])  # period 2
    np.testing.assert_array_equal(interior[:-2], interior[2:])
    assert len(np.unique(interior)) == 3


def test_upsample_default_output_name(cli, float_npy, rgb_png, tmp_path):
    cli.ok("upsample", float_npy.path, "-q")
    cli.ok("upsample", rgb_png.path, "-k", "nearest", "-q")
    assert (tmp_path / "x-up-bilinear.npy").is_file()
    assert (tmp_path / "rgb-up-nearest.png").is_file()


UPSAMPLE_ERRORS = [
    ("output padding = stride", ["-s", "2", "--output-padding", "2"], ("--output-padding",)),
    ("output padding 2x1 with stride 2x1", ["-s", "2x1", "--output-padding", "1x1"], ("--output-padding",)),
    ("stride 0", ["-s", "0"], ("--stride",)),
    ("bad kernel", ["-k", "1,2;3"], ("kernel",)),
    ("unknown kernel", ["-k", "trilinear"], ("trilinear",)),
    ("padding crops everything", ["-k", "1,1;1,1", "-s", "1", "-p", "9"], ("padding",)),
    ("unknown mode", ["--mode", "deconv"], ("mode",)),
    ("negative padding", ["--padding=-2"], ("--padding",)),
]


@pytest.mark.parametrize(
    "args, mentions", [e[1:] for e in UPSAMPLE_ERRORS], ids=[e[0] for e in UPSAMPLE_ERRORS]
)
def test_upsample_errors(cli, float_npy, tmp_path, list_folder, args, mentions):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cli.fail("upsample", float_npy.path, *args, "-o", out_dir / "u.npy", mentions=mentions)
    assert list_folder(out_dir) == []
    cli.fail("upsample", float_npy.path, *args, mentions=mentions)
    assert list_folder(tmp_path) == ["out", "x.npy"]
