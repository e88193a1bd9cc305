"""The banded filter pipeline (stored pixels -> float bands -> 8/16-bit) must equal the
whole-image path, whose values the oracle tests check."""

import itertools

import numpy as np
import pytest

from convcli.io.images import LoadedImage
from convcli.ops.filter import Filter


def loaded_image(height, width, channels, dtype=np.uint8, gray=False, seed=0):
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    raw = rng.integers(0, top + 1, size=(height, width, channels), dtype=dtype)
    return LoadedImage(raw, float(top), None, "8" if dtype == np.uint8 else "16", "PNG", gray=gray)


def filter_op(kernel, stride, padding, dilation, pad_mode, mode):
    return Filter(
        np.asarray(kernel, np.float32),
        stride=stride,
        padding=padding,
        dilation=dilation,
        pad_mode=pad_mode,
        mode=mode,
        value_map="abs",
    )


CASES = list(
    itertools.product(
        ["zeros", "reflect", "replicate", "circular"],
        [(1, 1), (2, 1), (3, 2)],
        [(1, 1), (2, 1)],
        [(0, 0, 0, 0), (2, 1, 1, 2), "same"],
    )
)


@pytest.mark.parametrize("pad_mode, stride, dilation, padding", CASES)
def test_bands_equal_whole_image(pad_mode, stride, dilation, padding):
    loaded = loaded_image(13, 11, 3)
    kernel = np.random.default_rng(1).normal(size=(3, 2))
    op = filter_op(kernel, stride, padding, dilation, pad_mode, "convolution")
    whole = op.apply(loaded.data)
    assert op.output_size(loaded.size) == whole.shape[:2]
    bands = op.bands(loaded, band_rows=2)
    rebuilt = np.zeros_like(whole)
    seen = 0
    for first, rows in bands:
        rebuilt[first : first + rows.shape[0]] = rows
        seen += rows.shape[0]
    assert seen == whole.shape[0]
    np.testing.assert_allclose(rebuilt, whole, rtol=1e-5, atol=1e-5)


def test_bands_gray_and_16_bit():
    loaded = loaded_image(9, 7, 3, dtype=np.uint16, gray=True)
    op = filter_op([[1, 0, -1], [2, 0, -2], [1, 0, -1]], (1, 1), "same", (1, 1), "reflect", "correlation")
    whole = op.apply(loaded.data)
    assert whole.shape == (9, 7, 1)
    bands = op.bands(loaded, band_rows=4)
    rebuilt = np.concatenate([rows for _, rows in bands])
    np.testing.assert_allclose(rebuilt, whole, rtol=1e-5, atol=1e-5)
    luma = loaded.raw.astype(np.float64) / 65535 @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(loaded.data[:, :, 0], luma, rtol=1e-5, atol=1e-6)


def test_wide_images_get_thinner_bands():
    from convcli.ops.filter import band_rows_for

    assert band_rows_for(3840, 3) == 64 and band_rows_for(1920, 3) == 64
    assert band_rows_for(7680, 3) == 32  # an 8K RGB band holds what a 4K one does
    assert band_rows_for(10**6, 4) == 8
    loaded = loaded_image(90, 20000, 1)  # 36 rows a band by default
    op = filter_op(np.ones((3, 3)), (1, 1), "same", (1, 1), "reflect", "correlation")
    firsts = []
    rebuilt = []
    for first, rows in op.bands(loaded):
        firsts.append(first)
        rebuilt.append(rows)
    assert firsts == [0, 36, 72]
    np.testing.assert_allclose(np.concatenate(rebuilt), op.apply(loaded.data), rtol=1e-5, atol=1e-5)
