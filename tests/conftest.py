"""Shared fixtures: small image files made with Pillow/numpy in tmp_path, and a CLI helper.

Every image fixture returns an :class:`ImageFile`: the path and the pixels exactly
as they were stored (H x W or H x W x C, numpy), so tests compute their expected
values from the stored pixels and never from convcli.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@dataclass
class ImageFile:
    path: Path
    pixels: np.ndarray  # as stored: uint8 / uint16 / float32

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def _edges_rgb(height: int = 10, width: int = 13) -> np.ndarray:
    """An RGB image with a vertical edge, a horizontal stripe and per-channel differences."""
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    rgb[:, : width // 2, 0] = 30
    rgb[:, width // 2 :, 0] = 220  # vertical edge in red
    rgb[:, :, 1] = np.linspace(0, 250, width, dtype=np.uint8)[None, :]  # ramp in green
    rgb[3:6, :, 2] = 200  # horizontal stripe in blue
    rgb[7, 2, :] = 255  # a lone bright pixel
    return rgb


@pytest.fixture
def rgb_png(tmp_path) -> ImageFile:
    """13 wide x 10 high RGB PNG with edges."""
    pixels = _edges_rgb()
    path = tmp_path / "rgb.png"
    Image.fromarray(pixels, "RGB").save(path)
    return ImageFile(path, pixels)


@pytest.fixture
def rgba_png(tmp_path) -> ImageFile:
    """12 wide x 9 high RGBA PNG whose alpha varies across and down."""
    height, width = 9, 12
    rgb = _edges_rgb(height, width)
    alpha = ((np.arange(height)[:, None] * 17 + np.arange(width)[None, :] * 11) % 256).astype(np.uint8)
    pixels = np.dstack([rgb, alpha])
    path = tmp_path / "rgba.png"
    Image.fromarray(pixels, "RGBA").save(path)
    return ImageFile(path, pixels)


@pytest.fixture
def gray16_png(tmp_path) -> ImageFile:
    """11 wide x 8 high 16-bit grayscale PNG from a uint16 array (values above 255 included)."""
    rng = np.random.default_rng(16)
    pixels = rng.integers(0, 65536, size=(8, 11), dtype=np.uint16)
    pixels[0, 0], pixels[-1, -1] = 0, 65535
    path = tmp_path / "gray16.png"
    Image.fromarray(pixels).save(path)
    with Image.open(path) as check:  # the fixture really is a 16-bit file
        assert check.mode.startswith("I")
        assert np.array_equal(np.asarray(check), pixels)
    return ImageFile(path, pixels)


@pytest.fixture
def gray_png(tmp_path) -> ImageFile:
    """10 wide x 7 high 8-bit L PNG."""
    pixels = (np.arange(70, dtype=np.int64).reshape(7, 10) * 37 % 256).astype(np.uint8)
    path = tmp_path / "gray.png"
    Image.fromarray(pixels, "L").save(path)
    return ImageFile(path, pixels)


@pytest.fixture
def exif_jpeg(tmp_path) -> ImageFile:
    """A JPEG stored 16 wide x 8 high with EXIF orientation 6 (display: rotate 90 degrees clockwise).

    ``pixels`` holds the stored pixels exactly as Pillow decodes them (no rotation applied).
    """
    stored = np.zeros((8, 16, 3), dtype=np.uint8)
    stored[:, :8] = (250, 20, 20)  # left half red
    stored[:4, 8:] = (20, 250, 20)  # top right green
    stored[4:, 8:] = (20, 20, 250)  # bottom right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    path = tmp_path / "photo.jpg"
    Image.fromarray(stored, "RGB").save(path, quality=95, exif=exif)
    with Image.open(path) as image:
        assert image.getexif().get(0x0112) == 6
        decoded = np.asarray(image.convert("RGB"))  # stored orientation
    return ImageFile(path, decoded)


@pytest.fixture
def float_npy(tmp_path) -> ImageFile:
    """A float32 .npy, 9 high x 11 wide x 2 channels, with negative and large values."""
    rng = np.random.default_rng(7)
    pixels = (rng.standard_normal((9, 11, 2)) * 3).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, pixels)
    return ImageFile(path, pixels)


@pytest.fixture
def float2d_npy(tmp_path) -> ImageFile:
    """A 2-D float32 .npy, 7 high x 10 wide."""
    rng = np.random.default_rng(11)
    pixels = rng.random((7, 10)).astype(np.float32)
    path = tmp_path / "m.npy"
    np.save(path, pixels)
    return ImageFile(path, pixels)


# ------------------------------------------------------------------ the CLI


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str
    exception: BaseException | None


class Cli:
    """Runs ``convcli.cli.app.app`` through Typer's CliRunner.

    With click 8.2+ (installed: click 8.5, Typer 0.24) ``result.stderr`` is
    always captured on its own and ``result.output`` interleaves both streams;
    these helpers expose stdout and stderr separately.
    """

    def __init__(self):
        from typer.testing import CliRunner

        self.runner = CliRunner()

    def run(self, *args, env: dict | None = None) -> CliResult:
        from convcli.cli.app import app

        environment = {"CONVCLI_PRESETS": None}  # the tests never see the caller's presets
        environment.update(env or {})
        result = self.runner.invoke(app, [str(a) for a in args], env=environment)
        return CliResult(result.exit_code, result.stdout, result.stderr, result.exception)

    def ok(self, *args, env: dict | None = None) -> CliResult:
        result = self.run(*args, env=env)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        assert "Traceback" not in result.stderr
        return result

    def fail(
        self, *args, env: dict | None = None, mentions: str | tuple = (), empty_stdout: bool = True
    ) -> CliResult:
        """Exit 2, exactly one stderr line ``convcli: error: ...`` naming ``mentions``, no traceback
        (and, unless ``empty_stdout`` is false, nothing on stdout)."""
        result = self.run(*args, env=env)
        assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr, result.exception)
        assert isinstance(result.exception, SystemExit), repr(result.exception)
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("convcli: error: "), result.stderr
        assert "Traceback" not in result.stderr
        if empty_stdout:
            assert result.stdout == "", result.stdout
        for word in (mentions,) if isinstance(mentions, str) else mentions:
            assert word in lines[0], (word, lines[0])
        return result


@pytest.fixture
def cli() -> Cli:
    return Cli()


def listing(folder) -> list[str]:
    """Every entry of a folder, hidden temporary files included."""
    return sorted(os.listdir(folder))


@pytest.fixture
def list_folder():
    return listing


@pytest.fixture(scope="module")
def dask_cluster():
    """A LocalCluster of two one-thread worker processes on 127.0.0.1, one per test module."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        yield cluster


@pytest.fixture
def dask_address(dask_cluster):
    """The address of :func:`dask_cluster`'s scheduler, as ``--scheduler`` takes it."""
    return dask_cluster.scheduler_address
