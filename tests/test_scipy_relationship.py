"""The README's sentences on SciPy, run: convcli's filter (through the CLI, .npy to .npy)
against scipy.signal.convolve2d / correlate2d, with even and odd kernels, valid and same."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

KERNELS = {
    "2x2": np.array([[1.0, 2.0], [3.0, 4.0]]),
    "4x2": np.arange(8.0).reshape(4, 2) - 3,  # 2 wide, 4 high: both sides even
    "3x4": np.arange(12.0).reshape(3, 4) / 7 - 0.5,  # 4 wide, 3 high: one even side
    "3x3": np.arange(9.0).reshape(3, 3) - 4,
}


@pytest.fixture
def x(tmp_path):
    array = np.random.default_rng(17).random((9, 11)).astype(np.float32)
    np.save(tmp_path / "x.npy", array)
    return array.astype(np.float64)


def run(cli, tmp_path, kernel, *args):
    np.save(tmp_path / "k.npy", kernel)
    cli.ok("filter", tmp_path / "x.npy", "-k", tmp_path / "k.npy", *args, "-o", tmp_path / "y.npy", "-q")
    return np.load(tmp_path / "y.npy").astype(np.float64)


@pytest.mark.parametrize("name", KERNELS)
def test_valid(cli, tmp_path, x, name):
    k = KERNELS[name]
    np.testing.assert_allclose(
        run(cli, tmp_path, k, "--mode", "convolution"), signal.convolve2d(x, k, "valid"), atol=1e-5
    )
    np.testing.assert_allclose(run(cli, tmp_path, k), signal.correlate2d(x, k, "valid"), atol=1e-5)


@pytest.mark.parametrize("name", KERNELS)
def test_same(cli, tmp_path, x, name):
    k = KERNELS[name]
    kh, kw = k.shape
    height, width = x.shape
    np.testing.assert_allclose(
        run(cli, tmp_path, k, "-p", "same"), signal.correlate2d(x, k, "same"), atol=1e-5
    )
    ours = run(cli, tmp_path, k, "-p", "same", "--mode", "convolution")
    full = signal.convolve2d(x, k, "full")
    np.testing.assert_allclose(ours, full[kh // 2 : kh // 2 + height, kw // 2 : kw // 2 + width], atol=1e-5)
    scipy_same = signal.convolve2d(x, k, "same")
    np.testing.assert_allclose(
        scipy_same, full[(kh - 1) // 2 : (kh - 1) // 2 + height, (kw - 1) // 2 : (kw - 1) // 2 + width]
    )
    dy, dx = 1 - kh % 2, 1 - kw % 2  # one pixel on each even side
    if dy or dx:
        assert np.abs(ours - scipy_same).max() > 1e-3  # the one-pixel difference is real
    np.testing.assert_allclose(ours[: height - dy, : width - dx], scipy_same[dy:, dx:], atol=1e-5)
    # SciPy's own 'same': a zero row on top / column on the left for each even side
    padded = np.pad(k, ((dy, 0), (dx, 0)))
    np.testing.assert_allclose(
        run(cli, tmp_path, padded, "-p", "same", "--mode", "convolution"), scipy_same, atol=1e-5
    )
