"""The threaded PNG writer: Pillow (an independent decoder) must read back the exact pixels."""

import io

import numpy as np
import pytest
from PIL import Image

from convcli.io import png as pngwrite


@pytest.mark.parametrize(
    "shape, dtype, mode",
    [
        ((37, 53), np.uint8, "L"),
        ((37, 53, 2), np.uint8, "LA"),
        ((64, 41, 3), np.uint8, "RGB"),
        ((9, 7, 4), np.uint8, "RGBA"),
        ((31, 17), np.uint16, "I;16"),
        ((1, 1, 3), np.uint8, "RGB"),
    ],
)
@pytest.mark.parametrize("level", [0, 1, 3, 6, 9])
def test_round_trip_through_pillow(shape, dtype, mode, level, monkeypatch):
    monkeypatch.setattr(pngwrite, "_BAND_BYTES", 100)  # many bands, so the joins are exercised
    rng = np.random.default_rng(level)
    pixels = rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)
    pixels[: shape[0] // 2] //= 7  # some runs, so that deflate finds matches
    with Image.open(io.BytesIO(pngwrite.encode_png(pixels, level))) as image:
        assert image.mode == mode
        assert image.size == (shape[1], shape[0])
        np.testing.assert_array_equal(np.asarray(image), pixels)


def test_without_isal_falls_back_to_zlib(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_isal(name, *args, **kwargs):
        if name.startswith("isal"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_isal)
    assert pngwrite._deflate_module(1)[0].__name__ == "zlib"
    pixels = np.arange(600, dtype=np.uint8).reshape(20, 30)
    with Image.open(io.BytesIO(pngwrite.encode_png(pixels, 1))) as image:
        np.testing.assert_array_equal(np.asarray(image), pixels)


@pytest.mark.parametrize(
    "shape, dtype, mode",
    [
        ((37, 53, 1), np.uint8, "L"),
        ((40, 29, 3), np.uint8, "RGB"),
        ((23, 11, 4), np.uint8, "RGBA"),
        ((31, 17, 1), np.uint16, "I;16"),
    ],
)
@pytest.mark.parametrize("level", [0, 1, 6])
@pytest.mark.parametrize("cuts", [[1], [5, 1, 13], [64]])
@pytest.mark.parametrize("joined", [1, 300, None])  # bytes a compression task joins bands up to
def test_bands_round_trip_through_pillow(shape, dtype, mode, level, cuts, joined, monkeypatch):
    if joined is not None:
        monkeypatch.setattr(pngwrite, "_STREAM_BAND_BYTES", joined)
    rng = np.random.default_rng(len(cuts) + level)
    pixels = rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)
    pixels[::3] //= 5
    starts, first = [], 0
    while first < shape[0]:  # bands of uneven heights, cycling through `cuts`
        starts.append(first)
        first += cuts[len(starts) % len(cuts)]
    bands = (pixels[a : a + cuts[(i + 1) % len(cuts)]] for i, a in enumerate(starts))
    buffer = io.BytesIO()
    pngwrite.write_png_bands(buffer, pngwrite.PixelBands(shape, np.dtype(dtype), bands), level, threads=2)
    with Image.open(io.BytesIO(buffer.getvalue())) as image:
        assert image.mode == mode and image.size == (shape[1], shape[0])
        np.testing.assert_array_equal(np.asarray(image), pixels[:, :, 0] if shape[2] == 1 else pixels)


def test_bands_that_do_not_make_the_height_are_refused():
    pixels = np.zeros((5, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="held 4 rows, not 5"):
        pngwrite.write_png_bands(
            io.BytesIO(), pngwrite.PixelBands((5, 4, 3), np.dtype(np.uint8), iter([pixels[:4]]))
        )


def test_materialize_gives_the_whole_array():
    pixels = np.arange(7 * 3 * 2, dtype=np.uint8).reshape(7, 3, 2)
    image = pngwrite.PixelBands(pixels.shape, np.dtype(np.uint8), iter([pixels[:2], pixels[2:]]))
    np.testing.assert_array_equal(image.materialize(), pixels)
