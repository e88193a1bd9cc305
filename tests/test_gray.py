"""--gray (luma, as before), --gray luma and --gray mean, against numpy on the stored pixels:
in memory, band by band, in chunks, and with --gray before an input (still an input)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

LUMA = np.array([0.299, 0.587, 0.114])
MEAN = np.array([1, 1, 1]) / 3


@pytest.fixture
def rgb(tmp_path):
    pixels = np.random.default_rng(3).integers(0, 256, size=(70, 9, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(tmp_path / "rgb.png")
    return pixels


@pytest.mark.parametrize(
    "words, weights",
    [(["--gray"], LUMA), (["--gray", "luma"], LUMA), (["--gray", "mean"], MEAN), (["--gray=mean"], MEAN)],
)
def test_gray_modes_to_npy(cli, tmp_path, rgb, words, weights):
    cli.ok("filter", tmp_path / "rgb.png", *words, "-k", "1", "-o", tmp_path / "g.npy", "-q")
    np.testing.assert_allclose(np.load(tmp_path / "g.npy"), rgb / 255.0 @ weights, atol=1e-6)


def test_gray_mean_banded_png_and_chunked_tiff(cli, tmp_path, rgb):
    expected = np.rint(rgb / 255.0 @ MEAN * 65535)
    cli.ok(
        "filter",
        tmp_path / "rgb.png",
        "--gray",
        "mean",
        "-k",
        "1",
        "--depth",
        "16",
        "-o",
        tmp_path / "g.png",
        "-q",
    )
    got = np.asarray(Image.open(tmp_path / "g.png")).astype(int)
    assert np.abs(got - expected).max() <= 1
    pytest.importorskip("dask")
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    cli.ok(
        "filter",
        tmp_path / "rgb.tif",
        "--gray",
        "mean",
        "-k",
        "1",
        "--chunk",
        "16",
        "-o",
        tmp_path / "c.npy",
        "-q",
    )
    np.testing.assert_allclose(np.load(tmp_path / "c.npy"), rgb / 255.0 @ MEAN, atol=1e-6)


def test_gray_before_an_input_is_still_luma(cli, tmp_path, rgb):
    cli.ok("filter", "--gray", tmp_path / "rgb.png", "-k", "1", "-o", tmp_path / "g.npy", "-q")
    np.testing.assert_allclose(np.load(tmp_path / "g.npy"), rgb / 255.0 @ LUMA, atol=1e-6)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "convcli",
            "filter",
            "--gray",
            "-",
            "-k",
            "1",
            "-o",
            str(tmp_path / "s.npy"),
            "-q",
        ],
        input=(tmp_path / "rgb.png").read_bytes(),
        capture_output=True,
    )
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), rgb / 255.0 @ LUMA, atol=1e-6)


def test_unknown_gray_mode_is_one_line(cli, tmp_path, rgb):
    cli.fail("filter", tmp_path / "rgb.png", "--gray", "average", "-k", "1", mentions=("--gray", "mean"))
