"""--range VMIN,VMAX (the values shown black and white), the clip warning, and --map offset's
rule (a flat mid-gray area stays mid-gray), in memory, band by band and in chunks.

Expected pixels come from scipy.signal / scipy.ndimage and the formula
``rint((x - vmin) / (vmax - vmin) * 255)``, clipped; never from convcli.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy import signal

DUCK = "sample_images/duck.png"


def read_png(path):
    with Image.open(path) as image:
        return image.mode, np.asarray(image).copy()


def shown(raw, low, high, scale=255):
    """The samples a display range low..high gives, and the fraction of values clipped."""
    mapped = (np.asarray(raw, np.float64) - low) / (high - low)
    clipped = float(np.mean((mapped < 0) | (mapped > 1)))
    return np.rint(np.clip(mapped, 0, 1) * scale), clipped


@pytest.fixture
def ramp_npy(tmp_path):
    """A 70 x 9 float32 .npy, values -0.02 .. 0.05 (more rows than one 64-row band)."""
    values = np.linspace(-0.02, 0.05, 70 * 9, dtype=np.float32).reshape(70, 9)
    path = tmp_path / "ramp.npy"
    np.save(path, values)
    return path, values


def test_range_filter_banded_and_in_memory(cli, ramp_npy, tmp_path):
    path, values = ramp_npy
    kernel = np.array([[1.0, -1.0, 2.0]])
    raw = signal.correlate2d(values.astype(np.float64), kernel, mode="valid")
    expected, clipped = shown(raw, 0.0, 0.01)
    for extra in ([], ["--map", "auto"]):  # --map auto is no choice: --range still applies
        out = tmp_path / "o.png"
        record = json.loads(
            cli.ok("filter", path, "-k", "1,-1,2", "--range", "0,0.01", *extra, "-o", out, "--json").stdout
        )
        got = read_png(out)[1]
        assert np.abs(got.astype(int) - expected).max() <= 1
        assert record["map"] == "range" and record["range"] == {"black": 0.0, "white": 0.01}
        assert record["clipped"] == pytest.approx(clipped, abs=2e-3)
    # pool computes the whole array, then encodes it
    out = tmp_path / "p.png"
    cli.ok("pool", path, "--op", "mean", "-k", "2", "--range", "-0.02,0.05", "-o", out, "-q")
    pooled = values[:, :8].astype(np.float64).reshape(35, 2, 4, 2).mean(axis=(1, 3))
    expected, _ = shown(pooled, -0.02, 0.05)
    assert np.abs(read_png(out)[1].astype(int) - expected).max() <= 1


def test_range_16_bit_and_upsample_and_chain(cli, ramp_npy, tmp_path):
    path, values = ramp_npy
    out = tmp_path / "u.png"
    cli.ok("upsample", path, "-k", "1", "-s", "1", "--range", "0,0.05", "--depth", "16", "-o", out, "-q")
    mode, got = read_png(out)
    assert mode.startswith("I")
    expected, _ = shown(values, 0.0, 0.05, scale=65535)
    assert np.abs(got.astype(int) - expected).max() <= 1
    out = tmp_path / "c.png"
    cli.ok(
        "filter", path, "-k", "2", "+", "pool", "--op", "max", "-k", "1", "--range", "0,0.02", "-o", out, "-q"
    )
    expected, _ = shown(2.0 * values, 0.0, 0.02)
    assert np.abs(read_png(out)[1].astype(int) - expected).max() <= 1


def test_range_in_chunks_equals_in_memory(cli, ramp_npy, tmp_path):
    pytest.importorskip("dask")
    tifffile = pytest.importorskip("tifffile")
    path, values = ramp_npy
    args = ["filter", path, "-k", "1,1", "--range", "0,0.02", "--depth", "8", "--json", "-o"]
    memory = json.loads(cli.ok(*args, tmp_path / "m.tif").stdout)
    chunked = json.loads(cli.ok(*args, tmp_path / "c.tif", "--chunk", "16").stdout)
    assert "chunked" in chunked and "chunked" not in memory
    got = tifffile.imread(tmp_path / "c.tif")
    np.testing.assert_array_equal(got, np.asarray(Image.open(tmp_path / "m.tif")))
    raw = values[:, :-1].astype(np.float64) + values[:, 1:]
    expected, clipped = shown(raw, 0.0, 0.02)
    assert np.abs(got.astype(int) - expected).max() <= 1
    assert chunked["clipped"] == memory["clipped"] == pytest.approx(clipped, abs=2e-3)
    assert chunked["range"] == memory["range"] == {"black": 0.0, "white": 0.02}


def gaussian_unnormalised(size=7, sigma=1.0):
    """The tutorial's kernel: exp(-(x^2 + y^2) / (2 sigma^2)) without dividing by its sum."""
    axis = np.arange(size) - size // 2
    return np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * sigma**2))


def test_white_picture_warns_once_with_the_fraction(cli, tmp_path):
    kernel = gaussian_unnormalised(7, 2.0)  # sums to about 22
    np.save(tmp_path / "k.npy", kernel)
    image = np.zeros((20, 20), np.uint8)
    image[5:15, 5:15] = 200
    Image.fromarray(image).save(tmp_path / "x.png")
    raw = signal.correlate2d(image / 255.0, kernel, mode="same")
    fraction = float(np.mean(raw > 1))
    assert fraction > 0.5
    result = cli.ok(
        "filter", tmp_path / "x.png", "-k", tmp_path / "k.npy", "-p", "same", "-o", tmp_path / "y.png"
    )
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("convcli: warning: input ")
    assert f"{fraction:.0%} of the output values" in lines[0]
    assert "--range VMIN,VMAX" in lines[0] and "--map normalize" in lines[0]
    assert "wrote" in result.stdout
    # -q: nothing; --json: a field, not a line
    assert (
        cli.ok("filter", tmp_path / "x.png", "-k", tmp_path / "k.npy", "-o", tmp_path / "y.png", "-q").stderr
        == ""
    )
    as_json = cli.ok(
        "filter",
        tmp_path / "x.png",
        "-k",
        tmp_path / "k.npy",
        "-p",
        "same",
        "-o",
        tmp_path / "y.png",
        "--json",
    )
    assert as_json.stderr == ""
    record = json.loads(as_json.stdout)
    assert record["clipped"] == pytest.approx(fraction, abs=1e-4) and "clipped" in record["warning"]
    # normalised, the same kernel clips nothing and says nothing
    np.save(tmp_path / "k1.npy", kernel / kernel.sum())
    quiet = cli.ok(
        "filter", tmp_path / "x.png", "-k", tmp_path / "k1.npy", "-o", tmp_path / "z.png", "--json"
    )
    assert quiet.stderr == "" and "warning" not in json.loads(quiet.stdout)


def test_warning_as_a_real_process_goes_to_stderr(tmp_path):
    Image.fromarray(np.full((8, 8), 250, np.uint8)).save(tmp_path / "x.png")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "convcli",
            "filter",
            str(tmp_path / "x.png"),
            "-k",
            "2",
            "-o",
            str(tmp_path / "y.png"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0
    assert done.stderr.startswith("convcli: warning: input ") and "100% of the output values" in done.stderr
    assert np.asarray(Image.open(tmp_path / "y.png")).min() == 255


@pytest.mark.parametrize(
    "text, reason",
    [
        ("1,0", "below"),
        ("0,0", "below"),
        ("0", "two numbers"),
        ("a,b", "two numbers"),
        ("0,1,2", "two numbers"),
        ("nan,1", "two numbers"),
        ("0,inf", "two numbers"),
        ("-1e39,0", "float32"),
        ("0,1e-320", "too small"),
        ("0,1e-40", "too small"),  # 1 / 1e-40 overflows float32
    ],
)
def test_bad_range_is_one_line(cli, ramp_npy, tmp_path, text, reason):
    path, _ = ramp_npy
    cli.fail("filter", path, f"--range={text}", "-o", tmp_path / "o.png", mentions=("--range", reason))
    assert not (tmp_path / "o.png").exists()


def test_range_and_map_together_refused(cli, ramp_npy, tmp_path):
    cli.fail(
        "filter", ramp_npy[0], "--range", "0,1", "--map", "abs", "-o", tmp_path / "o.png", mentions="--range"
    )


def test_offset_keeps_flat_mid_gray_mid_gray(cli, tmp_path):
    """offset shows the width-1 range centred on half the kernel's sum: zero-sum kernels as
    before (+0.5), emboss (sum 1) as the values themselves, no longer 71% white."""
    duck = np.asarray(Image.open(DUCK).convert("RGB"), np.float64) / 255
    gray = duck @ [0.299, 0.587, 0.114]
    emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], float)
    raw = signal.correlate2d(gray, emboss, mode="valid")
    assert np.mean(raw + 0.5 > 1) > 0.7  # the old rule: the picture the issue saw
    record = json.loads(
        cli.ok(
            "filter", DUCK, "--gray", "-k", "emboss", "--map", "offset", "-o", tmp_path / "e.png", "--json"
        ).stdout
    )
    expected, clipped = shown(raw, 0.0, 1.0)
    assert clipped < 0.1 and record["clipped"] == pytest.approx(clipped, abs=1e-3)
    assert np.abs(read_png(tmp_path / "e.png")[1].astype(int) - expected).max() <= 1
    # a kernel summing to 0: zero is mid-gray
    zero_sum = np.array([[0, 0, 0], [0, 1, 0], [0, 0, -1]], float)
    cli.ok(
        "filter",
        DUCK,
        "--gray",
        "-k",
        "0,0,0;0,1,0;0,0,-1",
        "--map",
        "offset",
        "-o",
        tmp_path / "z.png",
        "-q",
    )
    expected, _ = shown(signal.correlate2d(gray, zero_sum, mode="valid"), -0.5, 0.5)
    assert np.abs(read_png(tmp_path / "z.png")[1].astype(int) - expected).max() <= 1
