"""``convcli filter`` through Typer's CliRunner, checked against independent oracles.

The value oracle is an explicit float64 loop written from PyTorch's definition of
``F.conv2d`` (cross-correlation) and ``F.pad`` (zeros / reflect / replicate /
circular); scipy.signal is a second, independent oracle.  Nothing here computes
an expected value with convcli.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
from PIL import Image

try:
    from oracles import conv2d_reference, each_channel
except ImportError:  # run from the repository root as a package
    from tests.oracles import conv2d_reference, each_channel

SOBEL_V = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64)
LUMA = np.array([0.299, 0.587, 0.114])


# ------------------------------------------------------------------ oracles


def correlate_oracle(x, k, stride=(1, 1), sides=(0, 0, 0, 0), dilation=(1, 1), pad_mode="zeros"):
    """out[i, j] = sum_{m,n} xpad[i*sy + m*dy, j*sx + n*dx] * k[m, n] on each channel (float64,
    explicit loops in tests/oracles.py); ``stride``/``dilation`` are (y, x), ``sides`` is
    (top, bottom, left, right)."""
    return each_channel(conv2d_reference, x, k, stride, sides, dilation, pad_mode)


def gaussian_explicit(size: int, sigma: float):
    centre = (size - 1) / 2
    g = np.empty((size, size))
    for i in range(size):
        for j in range(size):
            g[i, j] = math.exp(-((i - centre) ** 2 + (j - centre) ** 2) / (2 * sigma * sigma))
    return g / g.sum()


def to_uint8(values):
    return np.rint(np.asarray(values) * 255.0).astype(np.uint8)


def read_png(path):
    with Image.open(path) as image:
        return image.mode, np.asarray(image).copy()


# ----------------------------------------------------------- size and line


def test_sobel_png_reports_w_x_h_and_writes_that_size(cli, rgb_png, tmp_path):
    out = tmp_path / "e.png"
    result = cli.ok("filter", rgb_png.path, "-k", "sobel-vertical", "-o", out)
    w, h = rgb_png.width, rgb_png.height  # 13 x 10
    assert result.stdout == f"{rgb_png.path}: {w}x{h} -> {w - 2}x{h - 2}, wrote {out}\n"
    assert result.stderr == ""
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.size == (w - 2, h - 2)
        assert image.mode == "RGB"
    # The pixels: auto map is abs for the zero-sum Sobel kernel, then * 255, rounded.
    expected = to_uint8(np.minimum(np.abs(correlate_oracle(rgb_png.pixels / 255.0, SOBEL_V)), 1.0))
    np.testing.assert_array_equal(read_png(out)[1], expected)


def test_non_square_image_sizes_are_width_first(cli, tmp_path):
    pixels = np.zeros((5, 17), dtype=np.uint8)  # 17 wide, 5 high
    Image.fromarray(pixels, "L").save(tmp_path / "wide.png")
    out = tmp_path / "o.png"
    result = cli.ok("filter", tmp_path / "wide.png", "-k", "1,2,3", "-o", out)  # 1 high, 3 wide
    assert result.stdout == f"{tmp_path / 'wide.png'}: 17x5 -> 15x5, wrote {out}\n"
    assert Image.open(out).size == (15, 5)


# ------------------------------------------------- raw values via .npy


NPY_CASES = [
    # (CLI arguments, kernel, oracle keyword arguments)
    (["-k", "sobel-vertical"], SOBEL_V, {}),
    # -s 2x1: 2 across (x), 1 down (y); the oracle takes (y, x)
    (["-k", "sobel-vertical", "-s", "2x1"], SOBEL_V, {"stride": (1, 2)}),
    (["-k", "sobel-vertical", "-s", "1x3"], SOBEL_V, {"stride": (3, 1)}),
    # same with an even kernel: the extra pixel goes bottom/right
    (["-k", "1,2;3,4", "-p", "same"], [[1, 2], [3, 4]], {"sides": (0, 1, 0, 1)}),
    (["-k", "1,2,3,4", "-p", "same"], [[1, 2, 3, 4]], {"sides": (0, 0, 1, 2)}),
    (
        ["-k", "1,2;3,4;5,6", "-p", "same", "-d", "2"],
        [[1, 2], [3, 4], [5, 6]],
        {"sides": (2, 2, 1, 1), "dilation": (2, 2)},
    ),
    (["-k", "1,2,3;4,5,6", "-p", "valid"], [[1, 2, 3], [4, 5, 6]], {}),
    # -p 2x1: 2 left and right, 1 top and bottom
    (["-k", "1 2 3; 4 5 6", "-p", "2x1"], [[1, 2, 3], [4, 5, 6]], {"sides": (1, 1, 2, 2)}),
    (
        ["-k", "1 2 3; 4 5 6", "-p", "2x1", "--pad-mode", "reflect"],
        [[1, 2, 3], [4, 5, 6]],
        {"sides": (1, 1, 2, 2), "pad_mode": "reflect"},
    ),
    (
        ["-k", "1,-2;3,0.5", "-p", "3x2", "--pad-mode", "replicate"],
        [[1, -2], [3, 0.5]],
        {"sides": (2, 2, 3, 3), "pad_mode": "replicate"},
    ),
    (
        ["-k", "0,1;2,3", "-p", "1", "--pad-mode", "circular", "-s", "2"],
        [[0, 1], [2, 3]],
        {"sides": (1, 1, 1, 1), "pad_mode": "circular", "stride": (2, 2)},
    ),
    (["-k", "1,0,-1", "-p", "valid", "-d", "2"], [[1, 0, -1]], {"dilation": (2, 2)}),
    # -d 2x1: taps 2 apart across, 1 apart down
    (
        ["-k", "1,2;3,4;5,6", "-d", "2x1", "-s", "1x2", "-p", "3x2", "--pad-mode", "reflect"],
        [[1, 2], [3, 4], [5, 6]],
        {"dilation": (1, 2), "stride": (2, 1), "sides": (2, 2, 3, 3), "pad_mode": "reflect"},
    ),
    # same at stride > 1 (TensorFlow's rule, documented in geometry.same_padding): output
    # ceil(in / stride); height 9 / 3 needs no padding, width 11 / 2 needs 1 left, 1 right
    (
        ["-k", "0.5 -1 2; 1 1 1; -3 0 1", "-p", "same", "--pad-mode", "circular", "-s", "2x3"],
        [[0.5, -1, 2], [1, 1, 1], [-3, 0, 1]],
        {"sides": (0, 0, 1, 1), "pad_mode": "circular", "stride": (3, 2)},
    ),
    # convolution: the kernel rotated 180 degrees
    (
        ["-k", "1,2,3;4,5,6;7,8,10", "--mode", "convolution", "-p", "same", "--pad-mode", "replicate"],
        [[10, 8, 7], [6, 5, 4], [3, 2, 1]],
        {"sides": (1, 1, 1, 1), "pad_mode": "replicate"},
    ),
]


@pytest.mark.parametrize("args, kernel, oracle", NPY_CASES, ids=[" ".join(c[0]) for c in NPY_CASES])
def test_npy_in_npy_out_equals_loop_oracle(cli, float_npy, tmp_path, args, kernel, oracle):
    out = tmp_path / "y.npy"
    cli.ok("filter", float_npy.path, *args, "-o", out, "-q")
    y = np.load(out)
    assert y.dtype == np.float32
    expected = correlate_oracle(float_npy.pixels, kernel, **oracle)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_2d_npy_gives_2d_npy(cli, float2d_npy, tmp_path):
    out = tmp_path / "y.npy"
    cli.ok("filter", float2d_npy.path, "-k", "sobel-vertical", "-o", out, "-q")
    y = np.load(out)
    assert y.shape == (float2d_npy.height - 2, float2d_npy.width - 2)
    np.testing.assert_allclose(y, correlate_oracle(float2d_npy.pixels, SOBEL_V), atol=1e-5)


def test_scipy_agrees_correlation_and_convolution(cli, float2d_npy, tmp_path):
    kernel = np.array([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]])  # non-square, not symmetric
    spec = "1,-2,0.5;3,0.25,-1"
    cli.ok("filter", float2d_npy.path, "-k", spec, "-o", tmp_path / "c.npy", "-q")
    cli.ok("filter", float2d_npy.path, "-k", spec, "--mode", "convolution", "-o", tmp_path / "v.npy", "-q")
    x = float2d_npy.pixels.astype(np.float64)
    np.testing.assert_allclose(
        np.load(tmp_path / "c.npy"), scipy.signal.correlate2d(x, kernel, mode="valid"), atol=1e-5
    )
    np.testing.assert_allclose(
        np.load(tmp_path / "v.npy"), scipy.signal.convolve2d(x, kernel, mode="valid"), atol=1e-5
    )


# ----------------------------------------------------------- kernel sources


def _run_kernel(cli, npy, tmp_path, spec, *extra):
    out = tmp_path / "k-out.npy"
    cli.ok("filter", npy.path, "-k", spec, *extra, "-o", out, "-q")
    return np.load(out)


def test_gaussian_preset_with_params_is_an_explicit_normalised_gaussian(cli, float_npy, tmp_path):
    y = _run_kernel(cli, float_npy, tmp_path, "gaussian:size=7,sigma=1.5", "-p", "same")
    expected = correlate_oracle(float_npy.pixels, gaussian_explicit(7, 1.5), sides=(3, 3, 3, 3))
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_gaussian_default_is_size_5_sigma_1(cli, float_npy, tmp_path):
    y = _run_kernel(cli, float_npy, tmp_path, "gaussian")
    np.testing.assert_allclose(y, correlate_oracle(float_npy.pixels, gaussian_explicit(5, 1.0)), atol=1e-5)


@pytest.mark.parametrize(
    "spec, kernel",
    [
        ("sobel-vertical", SOBEL_V),
        ("sobel-horizontal", SOBEL_V.T),
        ("laplacian", [[0, 1, 0], [1, -4, 1], [0, 1, 0]]),
        ("box", np.full((3, 3), 1 / 9)),
        ("box:size=2x4", np.full((4, 2), 1 / 8)),  # WIDTHxHEIGHT: 2 wide, 4 high
        ("1,0,-1;2,0,-2;1,0,-1", SOBEL_V),
        ("1 0 -1; 2 0 -2; 1 0 -1", SOBEL_V),
        ("  1, 0, -1 ;2 ,0,-2; 1 0 -1  ", SOBEL_V),
        ("[1, 2, 3]", [[1, 2, 3]]),
        ("1;2;3", [[1], [2], [3]]),
        ("0.5,-1.5;2e-1,4", [[0.5, -1.5], [0.2, 4]]),
    ],
)
def test_kernel_specs(cli, float_npy, tmp_path, spec, kernel):
    y = _run_kernel(cli, float_npy, tmp_path, spec)
    np.testing.assert_allclose(y, correlate_oracle(float_npy.pixels, kernel), rtol=1e-5, atol=1e-5)


def test_kernel_files_npy_txt_csv(cli, float_npy, tmp_path):
    kernel = np.array([[1.0, -1.0, 0.5], [0.25, 2.0, -3.0]])  # 3 wide, 2 high
    np.save(tmp_path / "kern.npy", kernel)
    (tmp_path / "kern.txt").write_text("# a comment line\n1 -1 0.5\n\n0.25 2 -3  # trailing comment\n")
    (tmp_path / "kern.csv").write_text("1,-1,0.5\n0.25,2,-3\n")
    expected = correlate_oracle(float_npy.pixels, kernel)
    for name in ("kern.npy", "kern.txt", "kern.csv"):
        y = _run_kernel(cli, float_npy, tmp_path, tmp_path / name)
        assert y.shape == (float_npy.height - 1, float_npy.width - 2, 2), name
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5, err_msg=name)


def test_kernel_file_json_report(cli, float_npy, tmp_path):
    np.save(tmp_path / "kern.npy", np.ones((2, 4)))
    result = cli.ok("filter", float_npy.path, "-k", tmp_path / "kern.npy", "-o", tmp_path / "o.npy", "--json")
    record = json.loads(result.stdout)
    assert record["kernel"]["name"] == "kern"
    assert record["kernel"]["size"] == {"width": 4, "height": 2}


# ------------------------------------------------------------------- gray


def test_gray_is_luma_then_filtered(cli, rgb_png, tmp_path):
    out = tmp_path / "g.npy"
    cli.ok("filter", rgb_png.path, "--gray", "-k", "sobel-vertical", "-p", "same", "-o", out, "-q")
    y = np.load(out)
    luma = (rgb_png.pixels / 255.0) @ LUMA
    assert y.shape == (rgb_png.height, rgb_png.width)  # one channel: a 2-D array
    np.testing.assert_allclose(y, correlate_oracle(luma, SOBEL_V, sides=(1, 1, 1, 1)), atol=1e-4)


def test_gray_png_output_has_one_channel(cli, rgb_png, tmp_path):
    out = tmp_path / "g.png"
    result = cli.ok("filter", rgb_png.path, "--gray", "-k", "identity", "-p", "same", "-o", out, "--json")
    assert json.loads(result.stdout)["channels"] == 1
    mode, pixels = read_png(out)
    assert mode == "L"
    np.testing.assert_array_equal(pixels, to_uint8((rgb_png.pixels / 255.0) @ LUMA))


# ------------------------------------------------------------------- report


def test_json_report_fields_and_values(cli, rgb_png, tmp_path):
    out = tmp_path / "j.png"
    result = cli.ok(
        "filter",
        rgb_png.path,
        "-k",
        "sobel-vertical",
        "-s",
        "2x1",
        "-p",
        "1x2",
        "--pad-mode",
        "replicate",
        "-o",
        out,
        "--json",
    )
    assert result.stdout.count("\n") == 1 and result.stderr == ""
    record = json.loads(result.stdout)
    # 13x10 input, padding 1 left/right and 2 top/bottom, stride 2 across:
    # width (13 + 2 - 3) // 2 + 1 = 7, height (10 + 4 - 3) // 1 + 1 = 12
    expected = {
        "input": str(rgb_png.path),
        "output": str(out),
        "operation": "filter",
        "input_size": {"width": 13, "height": 10},
        "output_size": {"width": 7, "height": 12},
        "channels": 3,
        "kernel": {"name": "sobel-vertical", "source": "preset", "size": {"width": 3, "height": 3}},
        "mode": "correlation",
        "stride": {"x": 2, "y": 1},
        "dilation": {"x": 1, "y": 1},
        "pad_mode": "replicate",
        "padding": {"top": 2, "bottom": 2, "left": 1, "right": 1},
        "map": "abs",
        "depth": "8",
        "alpha": "none",
    }
    for key, value in expected.items():
        assert record.get(key) == value, (key, record.get(key), value)
    assert Image.open(out).size == (7, 12)


def test_json_same_padding_reports_sides_and_dilation(cli, float_npy, tmp_path):
    result = cli.ok(
        "filter",
        float_npy.path,
        "-k",
        "1,2;3,4",
        "-p",
        "same",
        "-d",
        "3x2",
        "--mode",
        "convolution",
        "-o",
        tmp_path / "o.npy",
        "--json",
    )
    record = json.loads(result.stdout)
    # dilation 3 across, 2 down with a 2x2 kernel: totals 3 (1 left, 2 right) and 2 (1 top, 1 bottom)
    assert record["padding"] == {"top": 1, "bottom": 1, "left": 1, "right": 2}
    assert record["dilation"] == {"x": 3, "y": 2}
    assert record["mode"] == "convolution"
    assert record["output_size"] == record["input_size"] == {"width": 11, "height": 9}
    assert record["kernel"] == {"name": "custom", "source": "inline", "size": {"width": 2, "height": 2}}
    assert record["depth"] == "float"
    assert np.load(tmp_path / "o.npy").shape == (9, 11, 2)


def test_quiet_prints_nothing(cli, rgb_png, tmp_path):
    out = tmp_path / "q.png"
    result = cli.ok("filter", rgb_png.path, "-k", "box", "-o", out, "-q")
    assert result.stdout == "" and result.stderr == ""
    assert out.is_file()


# ------------------------------------------------------------- output names


def test_default_output_next_to_input(cli, rgb_png, tmp_path, list_folder):
    result = cli.ok("filter", rgb_png.path, "-k", "sobel-vertical")
    expected = rgb_png.path.parent / "rgb-sobel-vertical.png"
    assert result.stdout == f"{rgb_png.path}: 13x10 -> 11x8, wrote {expected}\n"
    assert expected.is_file()
    assert list_folder(tmp_path) == ["rgb-sobel-vertical.png", "rgb.png"]
    with Image.open(rgb_png.path) as image:  # the input is untouched
        np.testing.assert_array_equal(np.asarray(image), rgb_png.pixels)


@pytest.mark.parametrize(
    "spec, name",
    [
        ("gaussian:size=7,sigma=1.5", "rgb-gaussian.png"),
        ("1,0;0,-1", "rgb-custom.png"),
        ("identity", "rgb-identity.png"),
    ],
)
def test_default_output_names_by_kernel(cli, rgb_png, tmp_path, spec, name):
    cli.ok("filter", rgb_png.path, "-k", spec, "-q")
    assert (tmp_path / name).is_file()


def test_default_output_name_keeps_npy_and_turns_jpeg_into_png(cli, float_npy, exif_jpeg, tmp_path):
    cli.ok("filter", float_npy.path, "-k", "box", "-q")
    cli.ok("filter", exif_jpeg.path, "-k", "box", "-q")
    assert (tmp_path / "x-box.npy").is_file()
    assert (tmp_path / "photo-box.png").is_file()


def test_default_output_relative_input_in_subfolder(cli, rgb_png, tmp_path, monkeypatch):
    sub = tmp_path / "sub"
    sub.mkdir()
    rgb_png.path.rename(sub / "a.png")
    monkeypatch.chdir(tmp_path)
    result = cli.ok("filter", "sub/a.png", "-k", "sobel-vertical")
    assert result.stdout == "sub/a.png: 13x10 -> 11x8, wrote sub/a-sobel-vertical.png\n"
    assert sorted(os.listdir(sub)) == ["a-sobel-vertical.png", "a.png"]


def test_default_output_is_never_the_input(cli, tmp_path, list_folder):
    # An input whose name already looks like a default output: the output gets another suffix.
    pixels = np.full((6, 7), 90, dtype=np.uint8)
    path = tmp_path / "a-sobel-vertical.png"
    Image.fromarray(pixels, "L").save(path)
    cli.ok("filter", path, "-k", "sobel-vertical", "-q")
    assert list_folder(tmp_path) == ["a-sobel-vertical-sobel-vertical.png", "a-sobel-vertical.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(path)), pixels)


def test_existing_default_output_is_skipped_not_overwritten(cli, rgb_png, tmp_path):
    target = tmp_path / "rgb-box.png"
    target.write_bytes(b"keep me")
    result = cli.ok("filter", rgb_png.path, "-k", "box")
    assert "skipped" in result.stdout
    assert target.read_bytes() == b"keep me"
    cli.ok("filter", rgb_png.path, "-k", "box", "--overwrite", "-q")
    assert Image.open(target).size == (11, 8)


def test_atomic_write_leaves_no_temp_file(cli, rgb_png, tmp_path, list_folder):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "e.png").write_bytes(b"old")  # replaced in one rename
    cli.ok("filter", rgb_png.path, "-k", "sobel-vertical", "-o", out_dir / "e.png", "-q")
    assert list_folder(out_dir) == ["e.png"]
    assert Image.open(out_dir / "e.png").size == (11, 8)


# --------------------------------------------------------------- depth


def test_16bit_in_16bit_png_out(cli, gray16_png, tmp_path):
    out = tmp_path / "i.png"
    cli.ok("filter", gray16_png.path, "-k", "identity", "-p", "same", "-o", out, "-q")
    mode, pixels = read_png(out)
    assert mode.startswith("I")  # 16-bit grayscale
    assert pixels.dtype != np.uint8
    np.testing.assert_array_equal(pixels.astype(np.int64), gray16_png.pixels.astype(np.int64))


def test_16bit_default_output_name_and_values(cli, gray16_png, tmp_path):
    result = cli.ok("filter", gray16_png.path, "-k", "box", "-p", "same", "--json")
    record = json.loads(result.stdout)
    assert record["depth"] == "16" and record["channels"] == 1 and record["map"] == "clip"
    out = tmp_path / "gray16-box.png"
    mode, pixels = read_png(out)
    assert mode.startswith("I")
    expected = correlate_oracle(gray16_png.pixels / 65535.0, np.full((3, 3), 1 / 9), sides=(1, 1, 1, 1))
    expected = np.rint(np.clip(expected, 0, 1) * 65535)
    assert np.abs(pixels.astype(np.int64) - expected).max() <= 1


def test_16bit_in_depth_8_out(cli, gray16_png, tmp_path):
    out = tmp_path / "e.png"
    cli.ok("filter", gray16_png.path, "-k", "identity", "-p", "same", "--depth", "8", "-o", out, "-q")
    mode, pixels = read_png(out)
    assert mode == "L"
    np.testing.assert_array_equal(pixels, to_uint8(gray16_png.pixels / 65535.0))


def test_depth_16_with_three_channels_errors(cli, rgb_png, tmp_path, list_folder):
    cli.fail("filter", rgb_png.path, "-k", "box", "--depth", "16", "-o", tmp_path / "d.png", mentions="depth")
    assert list_folder(tmp_path) == ["rgb.png"]


def test_depth_16_with_gray_is_fine(cli, rgb_png, tmp_path):
    out = tmp_path / "d.png"
    cli.ok("filter", rgb_png.path, "--gray", "-k", "identity", "-p", "same", "--depth", "16", "-o", out, "-q")
    mode, pixels = read_png(out)
    assert mode.startswith("I")
    expected = np.rint((rgb_png.pixels / 255.0) @ LUMA * 65535)
    assert np.abs(pixels.astype(np.int64) - expected).max() <= 1


def test_float_tiff_round_trip(cli, tmp_path):
    x = (np.random.default_rng(3).standard_normal((8, 9)) * 5).astype(np.float32)
    Image.fromarray(x, "F").save(tmp_path / "f.tif")
    out = tmp_path / "g.tif"
    result = cli.ok("filter", tmp_path / "f.tif", "-k", "1,-2;3,0.5", "-o", out, "--json")
    assert json.loads(result.stdout)["depth"] == "float"
    with Image.open(out) as image:
        assert image.mode == "F"
        y = np.asarray(image)
    np.testing.assert_allclose(y, correlate_oracle(x, [[1, -2], [3, 0.5]]), rtol=1e-5, atol=1e-5)


def test_npy_to_float_tiff(cli, float2d_npy, tmp_path):
    out = tmp_path / "g.tiff"
    cli.ok("filter", float2d_npy.path, "-k", "sobel-vertical", "-o", out, "-q")
    with Image.open(out) as image:
        assert image.mode == "F"
        np.testing.assert_allclose(
            np.asarray(image), correlate_oracle(float2d_npy.pixels, SOBEL_V), atol=1e-5
        )


# --------------------------------------------------------------- alpha


def test_alpha_carried_when_size_unchanged(cli, rgba_png, tmp_path):
    out = tmp_path / "a.png"
    result = cli.ok("filter", rgba_png.path, "-k", "box", "-p", "same", "-o", out, "--json")
    assert json.loads(result.stdout)["alpha"] == "carried"
    mode, pixels = read_png(out)
    assert mode == "RGBA"
    np.testing.assert_array_equal(pixels[:, :, 3], rgba_png.pixels[:, :, 3])
    rgb = correlate_oracle(rgba_png.pixels[:, :, :3] / 255.0, np.full((3, 3), 1 / 9), sides=(1, 1, 1, 1))
    np.testing.assert_array_equal(pixels[:, :, :3], to_uint8(np.clip(rgb, 0, 1)))


def test_alpha_dropped_when_size_changes(cli, rgba_png, tmp_path):
    out = tmp_path / "a.png"
    result = cli.ok("filter", rgba_png.path, "-k", "box", "-o", out)
    assert result.stdout == (
        f"{rgba_png.path}: 12x9 -> 10x7, wrote {out} (alpha dropped: the size changed)\n"
    )
    mode, _ = read_png(out)
    assert mode == "RGB"
    record = json.loads(cli.ok("filter", rgba_png.path, "-k", "box", "-o", out, "--json").stdout)
    assert record["alpha"] == "dropped"


@pytest.mark.parametrize(
    "name, holds",
    [
        ("a.jpg", False),
        ("a.bmp", False),
        ("a.npy", False),
        ("a.tif", True),
        ("a.webp", True),
        ("a.png", True),
    ],
)
def test_alpha_report_matches_the_file(cli, rgba_png, tmp_path, name, holds):
    out = tmp_path / name
    record = json.loads(
        cli.ok("filter", rgba_png.path, "-k", "box", "-p", "same", "-o", out, "--json").stdout
    )
    if name.endswith(".npy"):
        has_alpha = np.load(out).shape[2] == 4
    else:
        with Image.open(out) as image:
            has_alpha = "A" in image.getbands()
    assert has_alpha == holds
    assert record["alpha"] == ("carried" if holds else "dropped")


# ----------------------------------------------------------------- maps

# A 5x3 L image and kernels chosen so that no expected pixel sits within 0.05 of a
# rounding tie (float32 in convcli vs float64 here cannot flip a rounding).
MAP_PIXELS = np.array(
    [[213, 17, 190, 129, 101], [71, 232, 125, 163, 86], [66, 162, 16, 203, 22]], dtype=np.uint8
)


def _map_expected(raw, value_map, gain=0.0):
    if value_map == "clip":
        mapped = np.clip(raw, 0, 1)
    elif value_map == "abs":
        mapped = np.minimum(np.abs(raw), 1)
    elif value_map == "offset":
        mapped = np.clip(raw + 0.5 * (1 - gain), 0, 1)  # a flat mid-gray area stays mid-gray
    else:
        mapped = (raw - raw.min()) / (raw.max() - raw.min())
    scaled = mapped * 255
    distance_to_tie = np.abs(scaled - np.floor(scaled) - 0.5)
    assert distance_to_tie.min() > 0.05  # guard: the test input avoids rounding ties
    return np.rint(scaled).astype(np.uint8)


@pytest.fixture
def map_png(tmp_path):
    path = tmp_path / "m.png"
    Image.fromarray(MAP_PIXELS, "L").save(path)
    return path


@pytest.mark.parametrize("value_map", ["clip", "abs", "normalize", "offset"])
@pytest.mark.parametrize("weights", [(0.3, -0.3), (1.3, -0.3)])
def test_maps_give_documented_pixels(cli, map_png, tmp_path, value_map, weights):
    out = tmp_path / "o.png"
    cli.ok("filter", map_png, "-k", f"{weights[0]},{weights[1]}", "--map", value_map, "-o", out, "-q")
    x = MAP_PIXELS / 255.0
    raw = weights[0] * x[:, :-1] + weights[1] * x[:, 1:]
    mode, pixels = read_png(out)
    assert mode == "L"
    np.testing.assert_array_equal(pixels, _map_expected(raw, value_map, gain=sum(weights)))


def test_map_hand_computed_values(cli, tmp_path):
    # 4x1 image 0, 51, 255, 2 with kernel 0.3,-0.3: raw * 255 = -15.3, -61.2, 75.9
    Image.fromarray(np.array([[0, 51, 255, 2]], dtype=np.uint8), "L").save(tmp_path / "t.png")
    got = {}
    for value_map in ("clip", "abs", "normalize", "offset"):
        out = tmp_path / f"{value_map}.png"
        cli.ok("filter", tmp_path / "t.png", "-k", "0.3,-0.3", "--map", value_map, "-o", out, "-q")
        got[value_map] = read_png(out)[1].tolist()
    assert got["clip"] == [[0, 0, 76]]  # negatives to 0, 75.9 -> 76
    assert got["abs"] == [[15, 61, 76]]  # 15.3, 61.2, 75.9
    assert got["normalize"] == [[85, 0, 255]]  # (-15.3 + 61.2) / 137.1 * 255 = 85.37
    assert got["offset"] == [[112, 66, 203]]  # 127.5 + raw: 112.2, 66.3, 203.4


@pytest.mark.parametrize(
    "spec, expected_map",
    [
        ("0.3,-0.3", "abs"),
        ("sobel-vertical", "abs"),
        ("laplacian", "abs"),
        ("1.3,-0.3", "clip"),
        ("box", "clip"),
        ("sharpen", "clip"),
        ("emboss", "clip"),
    ],
)
def test_auto_map_abs_for_zero_sum_else_clip(cli, map_png, tmp_path, spec, expected_map):
    out = tmp_path / "o.png"
    result = cli.ok("filter", map_png, "-k", spec, "-p", "same", "-o", out, "--json")
    assert json.loads(result.stdout)["map"] == expected_map


@pytest.mark.parametrize("weights, expected_map", [((0.3, -0.3), "abs"), ((1.3, -0.3), "clip")])
def test_auto_map_pixels(cli, map_png, tmp_path, weights, expected_map):
    out = tmp_path / "o.png"
    cli.ok("filter", map_png, "-k", f"{weights[0]},{weights[1]}", "-o", out, "-q")
    x = MAP_PIXELS / 255.0
    raw = weights[0] * x[:, :-1] + weights[1] * x[:, 1:]
    np.testing.assert_array_equal(read_png(out)[1], _map_expected(raw, expected_map))


# ---------------------------------------------------------------- EXIF


def test_exif_orientation_is_applied_before_filtering(cli, exif_jpeg, tmp_path):
    out = tmp_path / "o.npy"
    result = cli.ok("filter", exif_jpeg.path, "-k", "identity", "-p", "same", "-o", out)
    # stored 16 wide x 8 high, orientation 6: shown 8 wide x 16 high
    assert result.stdout == f"{exif_jpeg.path}: 8x16 -> 8x16, wrote {out}\n"
    y = np.load(out)
    rotated = np.rot90(exif_jpeg.pixels, k=-1)  # 90 degrees clockwise
    np.testing.assert_allclose(y, rotated / 255.0, atol=1e-6)


# --------------------------------------------------------------- errors


@pytest.fixture
def bad_setup(tmp_path, rgb_png, float_npy):
    """Inputs in tmp_path; an empty out/ folder; extra bad files."""
    (tmp_path / "out").mkdir()
    (tmp_path / "text.png").write_text("this is not a PNG\n")
    (tmp_path / "empty_dir").mkdir()
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan], [0.0, 1.0]]))
    (tmp_path / "ragged.txt").write_text("1 2 3\n4 5\n")
    return tmp_path


def _errors():
    R, X = "{rgb}", "{npy}"
    return [
        ("unknown preset", [R, "-k", "nosuch-kernel"], ("nosuch-kernel",)),
        ("malformed matrix", [R, "-k", "1,2;x,4"], ("kernel", "'x'")),
        ("malformed matrix 2", [R, "-k", "1,,2;3 4 5 ;"], ("kernel",)),
        ("ragged rows", [R, "-k", "1,2,3;4,5"], ("kernel", "rows")),
        ("ragged rows file", [R, "-k", "{tmp}/ragged.txt"], ("ragged.txt",)),
        ("nan inline", [R, "-k", "1,nan;0,1"], ("kernel", "NaN")),
        ("inf inline", [R, "-k", "1,inf;0,1"], ("kernel",)),
        ("nan npy kernel", [R, "-k", "{tmp}/nan.npy"], ("nan.npy",)),
        ("missing kernel file", [R, "-k", "{tmp}/nokernel.npy"], ("nokernel.npy",)),
        ("kernel larger than input", [R, "-k", "gaussian:size=15"], ("kernel",)),
        ("kernel larger than input npy", [X, "-k", "box:size=12"], ("kernel",)),
        ("kernel larger with dilation", [R, "-k", "sobel-vertical", "-d", "7"], ("kernel",)),
        ("bad preset param", [R, "-k", "gaussian:sigma=-1"], ("sigma",)),
        ("unknown preset param", [R, "-k", "sobel-vertical:size=3"], ("size",)),
        ("stride 0", [R, "-s", "0"], ("--stride",)),
        ("stride 2xjunk", [R, "-s", "2xjunk"], ("--stride", "2xjunk")),
        ("stride 0x2", [R, "-s", "0x2"], ("--stride",)),
        ("dilation 0", [R, "-d", "0"], ("--dilation",)),
        ("negative padding", [R, "--padding=-1"], ("--padding",)),
        ("negative padding short", [R, "-p", "-1"], ("--padding",)),
        ("padding word", [R, "-p", "full"], ("--padding",)),
        ("unknown pad mode", [R, "--pad-mode", "mirror"], ("pad-mode", "mirror")),
        ("unknown mode", [R, "--mode", "cross"], ("mode", "cross")),
        ("unknown map", [R, "--map", "log"], ("--map", "log")),
        ("unknown depth", [R, "--depth", "12"], ("--depth",)),
        ("float depth png", [R, "--gray", "--depth", "float", "-o", "{tmp}/out/o.png"], ("depth",)),
        ("not an image", ["{tmp}/text.png", "-k", "box"], ("text.png",)),
        ("missing input", ["{tmp}/missing.png", "-k", "box"], ("missing.png",)),
        ("directory input", ["{tmp}/empty_dir", "-k", "box"], ("empty_dir",)),
        ("output folder missing", [R, "-o", "{tmp}/out/nope/o.png"], ("nope",)),
        ("output is input", [R, "-o", "{rgb}"], ("rgb.png",)),
        ("output is input other spelling", [R, "-o", "{tmp}/out/../rgb.png"], ("rgb.png",)),
        ("output is input npy", [X, "-o", "{npy}"], ("x.npy",)),
        ("unknown output extension", [R, "-o", "{tmp}/out/o.xyz"], (".xyz",)),
        ("no output extension", [R, "-o", "{tmp}/out/o"], ("'{tmp}/out/o'",)),
        (
            "reflect padding >= side",
            [R, "-k", "box", "-p", "10", "--pad-mode", "reflect", "-o", "{tmp}/out/o.png"],
            ("padding", "reflect"),
        ),
        (
            "reflect padding >= side npy",
            [X, "-k", "box", "-p", "9", "--pad-mode", "reflect", "-o", "{tmp}/out/o.npy"],
            ("padding", "reflect"),
        ),
        (
            "reflect padding 2x10",
            [R, "-k", "box", "-p", "1x10", "--pad-mode", "reflect", "-o", "{tmp}/out/o.png"],
            ("padding",),
        ),
        (
            "circular padding > side",
            [X, "-k", "box", "-p", "12", "--pad-mode", "circular", "-o", "{tmp}/out/o.npy"],
            ("padding", "circular"),
        ),
        ("unknown option", [R, "--bogus"], ("--bogus",)),
        ("matrix and input", [R, "--matrix", "1 2; 3 4"], ("--matrix",)),
    ]


ERRORS = _errors()


@pytest.mark.parametrize("args, mentions", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_bad_input_one_line_exit_2_nothing_written(
    cli, bad_setup, rgb_png, float_npy, list_folder, args, mentions
):
    tmp = bad_setup
    fill = {"rgb": str(rgb_png.path), "npy": str(float_npy.path), "tmp": str(tmp)}
    before = list_folder(tmp)
    argv = ["filter"] + [a.format(**fill) for a in args]
    if "-o" not in args:
        argv += ["-o", str(tmp / "out" / "result.png")]
    cli.fail(*argv, mentions=tuple(m.format(**fill) for m in mentions))
    assert list_folder(tmp / "out") == []
    assert list_folder(tmp) == before


@pytest.mark.parametrize(
    "args", [["-k", "nosuch"], ["-s", "0"], ["-k", "gaussian:size=15"], ["-p", "10", "--pad-mode", "reflect"]]
)
def test_bad_input_with_default_output_writes_nothing(cli, rgb_png, tmp_path, list_folder, args):
    cli.fail("filter", rgb_png.path, *args)
    assert list_folder(tmp_path) == ["rgb.png"]


def test_unreadable_input_file(cli, rgb_png, tmp_path, list_folder):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    rgb_png.path.chmod(0)
    try:
        cli.fail("filter", rgb_png.path, "-k", "box", mentions="rgb.png")
    finally:
        rgb_png.path.chmod(0o644)
    assert list_folder(tmp_path) == ["rgb.png"]


def test_truncated_png_is_one_line_error(cli, rgb_png, tmp_path, list_folder):
    data = rgb_png.path.read_bytes()
    bad = tmp_path / "cut.png"
    bad.write_bytes(data[: len(data) // 2])
    cli.fail("filter", bad, "-k", "box", mentions="cut.png")
    assert sorted(list_folder(tmp_path)) == ["cut.png", "rgb.png"]


def test_folder_without_images_is_an_error(cli, tmp_path, list_folder):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "readme.txt").write_text("hello")
    cli.fail("filter", folder, "-k", "box", mentions="docs")
    assert list_folder(folder) == ["readme.txt"]


# ------------------------------------------- the banded PNG path, many bands

# An 8- or 16-bit output (without --map normalize) is computed band by band straight from
# the stored pixels, a different path from the .npy one: tall images (150 rows, several
# 64-row bands) through the same cases as the .npy test.


@pytest.mark.parametrize("args, kernel, oracle", NPY_CASES, ids=[" ".join(c[0]) for c in NPY_CASES])
def test_banded_16bit_png_equals_loop_oracle(cli, tmp_path, args, kernel, oracle):
    # values small enough that |result| < 0.45: --range -0.5,0.5 maps it into (0, 1) with no clipping
    top = int(0.45 / np.abs(np.asarray(kernel, dtype=float)).sum() * 65535)
    pixels = np.random.default_rng(150).integers(0, top, size=(150, 9), dtype=np.uint16)
    path = tmp_path / "tall.png"
    Image.fromarray(pixels).save(path)
    out = tmp_path / "y.png"
    cli.ok("filter", path, *args, "--range", "-0.5,0.5", "-o", out, "-q")
    mode, got = read_png(out)
    assert mode.startswith("I")
    raw = correlate_oracle(pixels / 65535.0, kernel, **oracle)
    assert 0 < (raw + 0.5).min() and (raw + 0.5).max() < 1  # nothing clipped: a sharp test
    expected = np.rint((raw + 0.5) * 65535)
    assert got.shape == expected.shape
    assert np.abs(got.astype(np.int64) - expected).max() <= 1


@pytest.mark.parametrize(
    "args, sides",
    [
        (["-p", "same", "--pad-mode", "reflect"], (1, 1, 1, 1)),
        (["-p", "2", "--pad-mode", "circular", "-s", "2x3"], (2, 2, 2, 2)),
        (["-p", "3x1", "--pad-mode", "replicate", "-d", "2"], (1, 1, 3, 3)),
    ],
)
def test_banded_rgb_png_equals_loop_oracle(cli, tmp_path, args, sides):
    rgb = np.random.default_rng(2).integers(0, 256, size=(140, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / "tall.png")
    out = tmp_path / "y.png"
    cli.ok("filter", tmp_path / "tall.png", "-k", "box", *args, "-o", out, "-q")
    stride = {"-s": (3, 2)}.get(args[-2], (1, 1)) if "-s" in args else (1, 1)
    dilation = (2, 2) if "-d" in args else (1, 1)
    pad_mode = args[args.index("--pad-mode") + 1]
    raw = correlate_oracle(
        rgb / 255.0, np.full((3, 3), 1 / 9), stride=stride, sides=sides, dilation=dilation, pad_mode=pad_mode
    )
    mode, got = read_png(out)
    assert mode == "RGB"
    np.testing.assert_array_equal(got, to_uint8(np.clip(raw, 0, 1)))


# ------------------------------------------------------ real subprocesses

# The installed package, run the way users run it: ``python -m convcli`` and the console
# script, from a working folder that is not the repository.


def _console_script():
    script = Path(sys.executable).parent / "convcli"
    if script.exists():
        return str(script)
    found = shutil.which("convcli")
    if found is None:
        pytest.skip("the convcli console script is not installed")
    return found


def _commands():
    return {"module": [sys.executable, "-m", "convcli"], "script": [_console_script()]}


def _run_process(command, args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "CONVCLI_PRESETS"}
    return subprocess.run(
        command + [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("how", ["module", "script"])
def test_subprocess_success_writes_file_and_prints_line(rgb_png, tmp_path, how):
    result = _run_process(
        _commands()[how], ["filter", "rgb.png", "-k", "sobel-vertical", "-o", "e.png"], tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "rgb.png: 13x10 -> 11x8, wrote e.png\n"
    assert result.stderr == ""
    assert Image.open(tmp_path / "e.png").size == (11, 8)
    assert sorted(os.listdir(tmp_path)) == ["e.png", "rgb.png"]


@pytest.mark.parametrize("how", ["module", "script"])
def test_subprocess_bad_kernel_one_line_exit_2(rgb_png, tmp_path, how):
    result = _run_process(_commands()[how], ["filter", "rgb.png", "-k", "1,2;3"], tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("convcli: error: kernel"), result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["rgb.png"]


@pytest.mark.parametrize("how", ["module", "script"])
def test_subprocess_bad_output_folder_writes_nothing(rgb_png, tmp_path, how):
    result = _run_process(_commands()[how], ["filter", "rgb.png", "-k", "box", "-o", "nope/e.png"], tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("convcli: error: ") and "nope" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["rgb.png"]


def test_subprocess_uses_the_installed_package(tmp_path):
    result = _run_process(
        [sys.executable, "-c", "import convcli, sys; print(convcli.__file__)"], [], tmp_path
    )
    assert result.returncode == 0
    assert not result.stdout.strip().startswith(str(tmp_path))
    assert Path(result.stdout.strip()).name == "__init__.py"
