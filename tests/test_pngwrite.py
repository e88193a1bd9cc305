"""The threaded PNG writer: Pillow (an independent decoder) must read back the exact pixels."""

import io

import numpy as np
import pytest
from PIL import Image

from convcli import pngwrite


@pytest.mark.parametrize("shape, dtype, mode", [
    ((37, 53), np.uint8, "L"),
    ((37, 53, 2), np.uint8, "LA"),
    ((64, 41, 3), np.uint8, "RGB"),
    ((9, 7, 4), np.uint8, "RGBA"),
    ((31, 17), np.uint16, "I;16"),
    ((1, 1, 3), np.uint8, "RGB"),
])
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
