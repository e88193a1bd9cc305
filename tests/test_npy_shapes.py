"""An .npy keeps its shape: H x W x 1 in gives H x W x 1 out, H x W in gives H x W out, in
memory, through standard input and output, and in chunks; values against scipy."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from scipy import signal


@pytest.fixture
def arrays(tmp_path):
    rng = np.random.default_rng(5)
    flat = rng.standard_normal((12, 10)).astype(np.float32)
    np.save(tmp_path / "flat.npy", flat)
    np.save(tmp_path / "axis.npy", flat[:, :, None])
    return flat


KERNEL = np.array([[1.0, 2.0], [0.0, -1.0]])


@pytest.mark.parametrize("chunk", [[], ["--chunk", "4"]])
@pytest.mark.parametrize("name, shape_of", [("flat", lambda h, w: (h, w)), ("axis", lambda h, w: (h, w, 1))])
def test_filter_keeps_the_channel_axis(cli, tmp_path, arrays, chunk, name, shape_of):
    if chunk:
        pytest.importorskip("dask")
    out = tmp_path / f"{name}-out.npy"
    cli.ok("filter", tmp_path / f"{name}.npy", "-k", "1,2;0,-1", *chunk, "-o", out, "-q")
    got = np.load(out)
    expected = signal.correlate2d(arrays.astype(np.float64), KERNEL, mode="valid")
    assert got.shape == shape_of(*expected.shape)
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("command", [["pool", "-k", "2"], ["upsample", "-k", "1", "-s", "2"]])
def test_pool_upsample_and_chain_keep_it(cli, tmp_path, arrays, command):
    for args in (command, ["filter", "-k", "1", "+", *command]):
        cli.ok(*args[:1], tmp_path / "axis.npy", *args[1:], "-o", tmp_path / "o.npy", "-q")
        assert np.load(tmp_path / "o.npy").ndim == 3
        cli.ok(*args[:1], tmp_path / "flat.npy", *args[1:], "-o", tmp_path / "o.npy", "-q")
        assert np.load(tmp_path / "o.npy").ndim == 2


def test_stdin_to_stdout(tmp_path, arrays):
    for array in (arrays, arrays[:, :, None]):
        buffer = io.BytesIO()
        np.save(buffer, array)
        done = subprocess.run(
            [sys.executable, "-m", "convcli", "filter", "-", "-k", "1", "-o", "-", "--format", "npy"],
            input=buffer.getvalue(),
            capture_output=True,
        )
        assert done.returncode == 0, done.stderr
        got = np.load(io.BytesIO(done.stdout))
        assert got.shape == array.shape
        np.testing.assert_array_equal(got, array)


def test_gray_of_an_rgb_array_keeps_the_axis(cli, tmp_path):
    rgb = np.random.default_rng(1).random((6, 5, 3)).astype(np.float32)
    np.save(tmp_path / "rgb.npy", rgb)
    cli.ok("filter", tmp_path / "rgb.npy", "--gray", "-k", "1", "-o", tmp_path / "g.npy", "-q")
    got = np.load(tmp_path / "g.npy")
    assert got.shape == (6, 5, 1)
    np.testing.assert_allclose(got[:, :, 0], rgb @ np.array([0.299, 0.587, 0.114]), rtol=1e-5)
