"""filter, pool, upsample and kernels through Typer's CliRunner: exact output lines, raw values
against the explicit-loop oracles, the value model (depth, maps, alpha, EXIF), and errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from convcli.cli.app import app

try:
    from oracles import conv_transpose_reference, filter_reference, pool_reference
except ImportError:  # run from the repository root
    from tests.oracles import conv_transpose_reference, filter_reference, pool_reference

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
SOBEL = [[1, 0, -1], [2, 0, -2], [1, 0, -1]]


def invoke(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def ok(*args, env=None):
    result = invoke(*args, env=env)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


@pytest.fixture
def x_npy(tmp_path):
    x = np.random.default_rng(5).random((9, 11, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return x


def test_duck_sobel_line_and_file(tmp_path):
    out = tmp_path / "e.png"
    result = ok("filter", ROOT / "sample_images" / "duck.png", "-k", "sobel-vertical", "-o", out)
    assert result.stdout == f"{ROOT / 'sample_images' / 'duck.png'}: 530x612 -> 528x610, wrote {out}\n"
    assert Image.open(out).size == (528, 610)


@pytest.mark.parametrize(
    "args, oracle_kwargs",
    [
        (["-k", "sobel-vertical"], {}),
        (["-k", "sobel-vertical", "-s", "2x1"], {"stride": (1, 2)}),  # 2 across, 1 down
        (["-k", "1,2;3,4", "-p", "same"], {"padding": "same"}),  # even: extra bottom/right
        (
            ["-k", "1 2 3; 4 5 6", "-p", "2x1", "--pad-mode", "reflect"],
            {"padding": (1, 1, 2, 2), "pad_mode": "reflect"},
        ),
        (["-k", "1,0,-1", "-p", "valid", "-d", "2"], {"dilation": 2}),
        (
            ["-k", "0,1;2,3", "-p", "1", "--pad-mode", "circular", "-s", "2"],
            {"padding": 1, "pad_mode": "circular", "stride": 2},
        ),
        (
            ["-k", "1,2,3;4,5,6;7,8,9", "--mode", "convolution", "-p", "same", "--pad-mode", "replicate"],
            {"mode": "convolution", "padding": "same", "pad_mode": "replicate"},
        ),
    ],
)
def test_npy_round_trip_equals_oracle(tmp_path, x_npy, args, oracle_kwargs):
    ok("filter", tmp_path / "x.npy", *args, "-o", tmp_path / "y.npy", "-q")
    y = np.load(tmp_path / "y.npy")
    spec = args[1]
    kernel = (
        SOBEL
        if spec == "sobel-vertical"
        else [[float(v) for v in row.replace(",", " ").split()] for row in spec.split(";")]
    )
    for channel in range(2):
        expected = filter_reference(x_npy[:, :, channel], np.array(kernel), **oracle_kwargs)
        np.testing.assert_allclose(y[:, :, channel], expected, rtol=1e-4, atol=1e-4)


def test_kernel_files_and_gaussian_params(tmp_path, x_npy):
    np.save(tmp_path / "k.npy", np.array([[1.0, -1.0], [0.5, 2.0]]))
    (tmp_path / "k.csv").write_text("1,-1\n0.5,2\n")
    ok("filter", tmp_path / "x.npy", "-k", tmp_path / "k.npy", "-o", tmp_path / "a.npy", "-q")
    ok("filter", tmp_path / "x.npy", "-k", tmp_path / "k.csv", "-o", tmp_path / "b.npy", "-q")
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    ok(
        "filter",
        tmp_path / "x.npy",
        "-k",
        "gaussian:size=7,sigma=1.5",
        "-p",
        "same",
        "-o",
        tmp_path / "g.npy",
        "-q",
    )
    r = np.arange(7) - 3
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    expected = filter_reference(x_npy[:, :, 0], g / g.sum(), padding="same")
    np.testing.assert_allclose(np.load(tmp_path / "g.npy")[:, :, 0], expected, rtol=1e-4, atol=1e-5)


def test_json_report_fields(tmp_path):
    path = tmp_path / "in.png"
    Image.new("RGB", (20, 10), (10, 20, 30)).save(path)
    record = json.loads(
        ok("filter", path, "-k", "box", "-s", "2x1", "-p", "same", "--json", "-o", tmp_path / "o.png").stdout
    )
    assert record["input"] == str(path) and record["output"] == str(tmp_path / "o.png")
    assert record["operation"] == "filter" and record["channels"] == 3
    assert record["input_size"] == {"width": 20, "height": 10}
    assert record["output_size"] == {"width": 10, "height": 10}
    assert record["stride"] == {"x": 2, "y": 1}
    # same at stride 2 across: out = ceil(20 / 2) = 10, total padding 1, the odd pixel right
    assert record["padding"] == {"top": 1, "bottom": 1, "left": 0, "right": 1}
    assert record["kernel"]["name"] == "box" and record["kernel"]["size"] == {"width": 3, "height": 3}
    assert record["map"] == "clip" and record["depth"] == "8" and record["alpha"] == "none"


def test_quiet_and_default_output_name(tmp_path):
    path = tmp_path / "pic.png"
    Image.new("L", (8, 8), 100).save(path)
    result = ok("filter", path, "-k", "laplacian", "-q")
    assert result.stdout == ""
    assert sorted(os.listdir(tmp_path)) == ["pic-laplacian.png", "pic.png"]


def test_gray_is_luma_first(tmp_path):
    pixels = np.random.default_rng(2).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "c.png")
    ok("filter", tmp_path / "c.png", "--gray", "-k", "identity", "-p", "same", "-o", tmp_path / "g.npy")
    luma = pixels.astype(np.float64) / 255 @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(np.load(tmp_path / "g.npy"), luma, atol=1e-5)


def test_sixteen_bit_in_sixteen_bit_out(tmp_path):
    values = np.linspace(0, 65535, 60).reshape(6, 10).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    ok("filter", tmp_path / "d.png", "-k", "identity", "-p", "same", "-o", tmp_path / "o.png")
    back = Image.open(tmp_path / "o.png")
    assert back.mode in ("I;16", "I")
    np.testing.assert_array_equal(np.asarray(back), values)
    Image.new("RGB", (5, 5)).save(tmp_path / "rgb.png")
    bad = invoke("filter", tmp_path / "rgb.png", "--depth", "16", "-o", tmp_path / "x.png")
    assert bad.exit_code == 2 and "one channel" in bad.stderr


def test_float_tiff_round_trip(tmp_path):
    values = np.random.default_rng(3).normal(size=(5, 6)).astype(np.float32)
    Image.fromarray(values).save(tmp_path / "f.tif")
    ok("filter", tmp_path / "f.tif", "-k", "1,-1", "-o", tmp_path / "o.tif")
    np.testing.assert_allclose(
        np.asarray(Image.open(tmp_path / "o.tif")), values[:, :-1] - values[:, 1:], atol=1e-6
    )


def test_alpha_carried_when_size_unchanged_else_dropped(tmp_path):
    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = np.arange(36).reshape(6, 6) * 7
    Image.fromarray(rgba).save(tmp_path / "a.png")
    same = json.loads(
        ok(
            "filter", tmp_path / "a.png", "-k", "box", "-p", "same", "--json", "-o", tmp_path / "same.png"
        ).stdout
    )
    assert same["alpha"] == "carried"
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "same.png"))[..., 3], rgba[..., 3])
    smaller = ok("filter", tmp_path / "a.png", "-k", "box", "-o", tmp_path / "small.png")
    assert "alpha dropped" in smaller.stdout
    assert Image.open(tmp_path / "small.png").mode == "RGB"


@pytest.mark.parametrize(
    "value_map, expected",
    [
        ("clip", [0, 0, 128, 255, 255]),
        ("abs", [255, 128, 128, 255, 255]),
        ("offset", [0, 0, 128, 255, 255]),  # the kernel sums to 1: 0..1 shown, as clip
        ("normalize", [0, 51, 153, 204, 255]),  # (x + 1) / 2.5
    ],
)
def test_value_maps(tmp_path, value_map, expected):
    np.save(tmp_path / "v.npy", np.array([[-1.0, -0.5, 0.5, 1.0, 1.5]], np.float32))
    # identity kernel: the raw result is the input, then mapped and rounded
    ok("filter", tmp_path / "v.npy", "-k", "1", "--map", value_map, "-o", tmp_path / "v.png")
    assert np.asarray(Image.open(tmp_path / "v.png")).ravel().tolist() == expected


def test_auto_map_abs_for_zero_sum_kernels(tmp_path):
    np.save(tmp_path / "s.npy", np.array([[0.0, 0.0, 1.0, 1.0]], np.float32))
    edges = json.loads(
        ok("filter", tmp_path / "s.npy", "-k", "1,-1", "--json", "-o", tmp_path / "e.png").stdout
    )
    blur = json.loads(
        ok("filter", tmp_path / "s.npy", "-k", "1,1", "--json", "-o", tmp_path / "b.png").stdout
    )
    assert (edges["map"], blur["map"]) == ("abs", "clip")
    assert np.asarray(Image.open(tmp_path / "e.png")).ravel().tolist() == [0, 255, 0]


def test_exif_orientation_applied(tmp_path):
    pixels = np.zeros((4, 8, 3), np.uint8)
    pixels[0, 0] = 255  # top-left marker
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(pixels).save(tmp_path / "r.jpg", exif=exif, quality=100)
    record = json.loads(
        ok("filter", tmp_path / "r.jpg", "-k", "1", "--json", "-o", tmp_path / "r.npy").stdout
    )
    assert record["input_size"] == {"width": 4, "height": 8}


def test_pool_values_and_naming(tmp_path, x_npy):
    ok(
        "pool",
        tmp_path / "x.npy",
        "--op",
        "mean",
        "-k",
        "3x2",
        "-p",
        "1",
        "--ceil-mode",
        "--no-count-include-pad",
    )
    y = np.load(tmp_path / "x-meanpool3x2.npy")
    expected = pool_reference(x_npy[:, :, 1], (2, 3), None, (1, 1), 1, True, "mean", False)
    np.testing.assert_allclose(y[:, :, 1], expected, rtol=1e-5, atol=1e-6)
    ok("pool", tmp_path / "x.npy", "--op", "min", "-k", "2", "-s", "1", "-o", tmp_path / "m.npy")
    np.testing.assert_allclose(
        np.load(tmp_path / "m.npy")[:, :, 0], pool_reference(x_npy[:, :, 0], 2, 1, 0, 1, False, "min")
    )


def test_upsample_default_is_exactly_twice_and_flat_stays_flat(tmp_path):
    Image.new("RGB", (12, 9), (90, 140, 200)).save(tmp_path / "flat.png")
    ok("upsample", tmp_path / "flat.png", "-o", tmp_path / "big.png")
    big = np.asarray(Image.open(tmp_path / "big.png")).astype(int)
    assert big.shape == (18, 24, 3)
    interior = big[1:-1, 1:-1]
    assert (interior == interior[0, 0]).all() and interior[0, 0].tolist() == [90, 140, 200]


def test_upsample_nearest_and_checkerboard(tmp_path):
    x = np.random.default_rng(4).random((3, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    ok("upsample", tmp_path / "x.npy", "-k", "nearest", "-s", "3", "-o", tmp_path / "n.npy")
    np.testing.assert_allclose(np.load(tmp_path / "n.npy"), np.kron(x, np.ones((3, 3))), atol=1e-6)
    np.save(tmp_path / "flat.npy", np.ones((6, 6), np.float32))
    ok(
        "upsample",
        tmp_path / "flat.npy",
        "-k",
        "1,1,1;1,1,1;1,1,1",
        "-s",
        "2",
        "-p",
        "1",
        "-o",
        tmp_path / "c.npy",
    )
    c = np.load(tmp_path / "c.npy")
    assert c[4, 4] != c[4, 5] and c[4, 4] == c[6, 6]  # alternating: a checkerboard


def test_upsample_raw_equals_scatter_oracle(tmp_path):
    x = np.random.default_rng(6).random((4, 5)).astype(np.float32)
    k = np.random.default_rng(7).random((3, 2))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "k.npy", k)
    ok(
        "upsample",
        tmp_path / "x.npy",
        "-k",
        tmp_path / "k.npy",
        "-s",
        "2",
        "-p",
        "1",
        "--output-padding",
        "1",
        "-o",
        tmp_path / "y.npy",
    )
    expected = conv_transpose_reference(x, k, 2, 1, 1, 1)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "args, mentions",
    [
        (["-k", "no-such"], "unknown preset"),
        (["-k", "1,2;3"], "different lengths"),
        (["-k", "1,nan"], "NaN"),
        (["-k", "gaussian:size=99"], "padded input"),
        (["-s", "0"], "--stride"),
        (["--pad-mode", "mirror"], "pad-mode"),
        (["--mode", "flip"], "mode"),
        (["-p", "same", "--pad-mode", "reflect", "-k", "box:size=41"], "reflect"),
        (["--map", "log"], "--map"),
        (["-o", "out.gif"], "extension"),
    ],
)
def test_filter_errors_one_line_nothing_written(tmp_path, args, mentions):
    Image.new("RGB", (20, 16)).save(tmp_path / "in.png")
    before = sorted(os.listdir(tmp_path))
    result = runner.invoke(app, ["filter", str(tmp_path / "in.png"), *args], catch_exceptions=False)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convcli: error: ") and mentions in lines[0]
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize(
    "args, mentions",
    [
        (["pool", "-k", "2", "-p", "2"], "half the window"),
        (["pool", "--op", "mean", "-d", "2"], "dilation"),
        (["pool", "-k", "50"], "window"),
        (["upsample", "--output-padding", "2"], "--output-padding"),
    ],
)
def test_pool_upsample_errors(tmp_path, args, mentions):
    Image.new("RGB", (20, 16)).save(tmp_path / "in.png")
    result = invoke(args[0], tmp_path / "in.png", *args[1:])
    assert result.exit_code == 2 and mentions in result.stderr
    assert os.listdir(tmp_path) == ["in.png"]


def test_kernels_list_and_show():
    listing = ok("kernels").stdout
    for preset in sorted(p.stem for p in (ROOT / "presets").glob("*.toml")):
        assert preset in listing
    shown = ok("kernels", "show", "sobel-horizontal").stdout
    assert "-1 │ -2 │ -1" in shown
    data = json.loads(ok("kernels", "show", "gaussian:size=3", "--json").stdout)
    assert data["size"] == {"width": 3, "height": 3} and abs(sum(map(sum, data["matrix"])) - 1) < 1e-6


def test_user_presets_from_option_and_environment(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "diag.toml").write_text('description = "diagonal"\nmatrix = [[1, 0], [0, -1]]\n')
    (folder / "ramp.json").write_text('{"description": "ramp", "matrix": [[1, 2, 3]]}')
    np.save(tmp_path / "x.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
    ok("filter", tmp_path / "x.npy", "-k", "diag", "--presets", folder, "-o", tmp_path / "d.npy")
    np.testing.assert_allclose(np.load(tmp_path / "d.npy"), np.full((2, 3), -5.0))
    ok(
        "filter",
        tmp_path / "x.npy",
        "-k",
        "ramp",
        "-o",
        tmp_path / "r.npy",
        env={"CONVCLI_PRESETS": str(folder)},
    )
    assert np.load(tmp_path / "r.npy")[0, 0] == 0 * 1 + 1 * 2 + 2 * 3
    (folder / "bad.toml").write_text("matrix = [[1, 2]")
    bad = invoke("filter", tmp_path / "x.npy", "-k", "bad", "--presets", folder)
    assert bad.exit_code == 2 and "bad.toml" in bad.stderr
