"""The compiled loops (convcli/engine/_native.c) are built, and give what the numpy paths give.

Their per-tap sums add the same products in the same order as the numpy tiled and polyphase
paths, so those agree bit for bit; the separable passes (numpy pairs symmetric taps, the
compiled loop does not) and every path agree with an explicit-loop oracle in float64 to
float32 rounding.  ``CONVCLI_NATIVE=0`` switches the numpy paths on (read on every call).
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convcli.engine import loops
from convcli.engine.filtering import filter2d
from convcli.engine.padding import pad2d
from convcli.engine.transposed import conv_transpose2d
from tests.test_fast_paths import PAD_MODES, assert_close, scale_of, tiny_tiles

SETTINGS = dict(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
NATIVE_OFF = os.environ.get("CONVCLI_NATIVE") == "0"
needs_native = pytest.mark.skipif(NATIVE_OFF, reason="CONVCLI_NATIVE=0: the numpy paths only")


def test_the_extension_is_built():
    """A failed build is optional for pip (setup.py), never silent here: CI installs with
    pip install '.[test]', so the extension must import unless CONVCLI_NATIVE=0 says why not."""
    if NATIVE_OFF:
        pytest.skip("CONVCLI_NATIVE=0")
    module = importlib.import_module("convcli.engine._native")
    assert callable(module.correlate)
    assert loops.native() is module


def test_the_environment_switches_it_off(monkeypatch):
    monkeypatch.setenv("CONVCLI_NATIVE", "0")
    assert loops.native() is None


def oracle(x, k, stride, dilation, sides, pad_mode):
    """Cross-correlation by explicit loops over output positions and taps, in float64."""
    padded = pad2d(x.astype(np.float64), sides, pad_mode)
    (sy, sx), (dy, dx) = stride, dilation
    kh, kw = k.shape
    out_h = (padded.shape[0] - dy * (kh - 1) - 1) // sy + 1
    out_w = (padded.shape[1] - dx * (kw - 1) - 1) // sx + 1
    out = np.zeros((out_h, out_w) + x.shape[2:])
    for i in range(out_h):
        for j in range(out_w):
            for m in range(kh):
                for n in range(kw):
                    out[i, j] += k[m, n] * padded[i * sy + m * dy, j * sx + n * dx]
    return out


def numpy_path(monkeypatch, func, *args, **kwargs):
    monkeypatch.setenv("CONVCLI_NATIVE", "0")
    try:
        return func(*args, **kwargs)
    finally:
        monkeypatch.delenv("CONVCLI_NATIVE")


@needs_native
@settings(max_examples=60, **SETTINGS)
@given(
    height=st.integers(1, 13),
    width=st.integers(1, 13),
    channels=st.sampled_from([None, 1, 2, 3, 4, 5]),
    kh=st.integers(1, 5),
    kw=st.integers(1, 5),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    sides=st.tuples(*[st.integers(0, 2)] * 4),
    pad_mode=st.sampled_from(PAD_MODES),
    method=st.sampled_from(["auto", "tiled", "separable"]),
    tile_rows=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_native_paths_equal_the_numpy_paths_and_the_oracle(
    monkeypatch, height, width, channels, kh, kw, stride, dilation, sides, pad_mode, method, tile_rows, seed
):
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels is None else (height, width, channels)
    x = rng.uniform(-3, 3, size=shape).astype(np.float32)
    if method == "separable":  # a rank-1 kernel, as the separable path needs
        k = np.outer(rng.normal(size=kh), rng.normal(size=kw)).astype(np.float32)
    else:
        k = rng.normal(size=(kh, kw)).astype(np.float32)
        k[rng.random((kh, kw)) < 0.2] = 0  # skipped zero taps
    span_h, span_w = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    if pad_mode == "reflect":
        sides = tuple(min(p, n - 1) for p, n in zip(sides, (height, height, width, width)))
    if pad_mode == "circular":
        sides = tuple(min(p, n) for p, n in zip(sides, (height, height, width, width)))
    if height + sides[0] + sides[1] < span_h or width + sides[2] + sides[3] < span_w:
        return  # the kernel does not fit: filter2d refuses it (tested elsewhere)
    kwargs = dict(stride=stride, dilation=dilation, padding=sides, pad_mode=pad_mode, method=method)
    with tiny_tiles(tile_rows):
        got = filter2d(x, k, **kwargs)
        plain = numpy_path(monkeypatch, filter2d, x, k, **kwargs)
    expected = oracle(
        x if x.ndim == 3 else x[:, :, None], k.astype(np.float64), stride, dilation, sides, pad_mode
    )
    expected = expected if x.ndim == 3 else expected[:, :, 0]
    assert_close(got, expected, scale_of(x, k), "native against the oracle")
    assert_close(plain, expected, scale_of(x, k), "numpy against the oracle")
    if method == "tiled":  # the same products and sums in the same order
        np.testing.assert_array_equal(got, plain)


@needs_native
@pytest.mark.parametrize(
    "make",
    [
        lambda x: x[::-1],  # negative row step
        lambda x: x[:, ::-1],  # negative column step
        lambda x: x[:, ::2],  # pixels apart
        lambda x: np.asfortranarray(x),  # channels apart
        lambda x: x.astype(np.float64),  # converted
        lambda x: x[:, 3:-2],  # a column crop: rows longer than the pixels read
    ],
)
def test_inputs_in_any_layout(monkeypatch, make):
    x = make(np.random.default_rng(1).uniform(-1, 1, (23, 31, 3)).astype(np.float32))
    k = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
    with tiny_tiles(5):
        got = filter2d(x, k, padding=(1, 2, 0, 3), method="tiled")
        plain = numpy_path(monkeypatch, filter2d, x, k, padding=(1, 2, 0, 3), method="tiled")
    np.testing.assert_array_equal(got, plain)
    expected = oracle(np.asarray(x, np.float32), k.astype(np.float64), (1, 1), (1, 1), (1, 2, 0, 3), "zeros")
    assert_close(got, expected, scale_of(x, k))


@needs_native
@settings(max_examples=40, **SETTINGS)
@given(
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    channels=st.sampled_from([None, 1, 3, 4]),
    kh=st.integers(1, 5),
    kw=st.integers(1, 5),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    seed=st.integers(0, 2**16),
)
def test_native_transposed_equals_the_numpy_path_and_the_scatter(
    monkeypatch, height, width, channels, kh, kw, stride, dilation, padding, seed
):
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels is None else (height, width, channels)
    x = rng.uniform(-3, 3, size=shape).astype(np.float32)
    k = rng.normal(size=(kh, kw)).astype(np.float32)
    full = [
        (n - 1) * s + d * (kk - 1) + 1 for n, s, d, kk in zip((height, width), stride, dilation, (kh, kw))
    ]
    if any(f - 2 * p < 1 for f, p in zip(full, padding)):
        return  # cropped away: refused (tested elsewhere)
    kwargs = dict(stride=stride, dilation=dilation, padding=padding)
    with tiny_tiles(2):
        got = conv_transpose2d(x, k, **kwargs)
        plain = numpy_path(monkeypatch, conv_transpose2d, x, k, **kwargs)
    np.testing.assert_array_equal(got, plain)
    # the oracle: every input pixel scatters the kernel, in float64
    x3 = (x if x.ndim == 3 else x[:, :, None]).astype(np.float64)
    scattered = np.zeros((full[0], full[1], x3.shape[2]))
    for i in range(height):
        for j in range(width):
            for m in range(kh):
                for n in range(kw):
                    scattered[i * stride[0] + m * dilation[0], j * stride[1] + n * dilation[1]] += (
                        x3[i, j] * k[m, n]
                    )
    expected = scattered[padding[0] : full[0] - padding[0], padding[1] : full[1] - padding[1]]
    expected = expected if x.ndim == 3 else expected[:, :, 0]
    assert_close(got, expected, scale_of(x, k))


@needs_native
def test_correlate_refuses_what_it_cannot_read():
    native = loops.native()
    block = np.zeros((4, 5, 3), np.float32)
    out = np.zeros((2, 2, 3), np.float32)
    with pytest.raises(ValueError, match="outside the block"):
        native.correlate(block, [(out, [(3, 0, 1.0)])], 1, 1)  # row 1 + 3 > 3
    with pytest.raises(ValueError, match="outside the input"):
        native.correlate(block, [(out, [(0, 0, 1.0), (0, -1, 1.0)])], 1, 1)
    with pytest.raises(ValueError, match="outside the block"):
        native.correlate(block, [(out, [(0, 0, 1.0)])], 1, 5)  # column 5 of 5
    with pytest.raises(ValueError, match="float32"):
        native.correlate(block.astype(np.float64), [(out, [])], 1, 1)
    with pytest.raises(ValueError, match="contiguous"):
        native.correlate(block[:, ::2], [(out, [])], 1, 1)
    with pytest.raises(ValueError, match="channel"):
        native.correlate(block, [(np.zeros((2, 2, 1), np.float32), [])], 1, 1)
    with pytest.raises(ValueError, match="at least 1"):
        native.correlate(block, [(out, [])], 0, 1)
    with pytest.raises(TypeError):
        native.correlate(block, [(out, [(0, 0)])], 1, 1)
    with pytest.raises((TypeError, ValueError)):
        native.correlate(block, [(np.zeros((2, 2, 3), np.int32), [])], 1, 1)
    native.correlate(block, [(out, [])], 1, 1)  # no taps: zeros
    assert not out.any()


@needs_native
def test_correlate_padded_refuses_what_it_cannot_read():
    native = loops.native()
    image = np.zeros((4, 5, 3), np.float32)
    out = np.zeros((2, 2, 3), np.float32)
    rows, cols = np.arange(-1, 5, dtype=np.int64), np.arange(-1, 6, dtype=np.int64)
    rows[0] = cols[0] = -1
    native.correlate_padded(image, [(out, [(1, 1, 1.0)])], 1, 1, rows, cols, 0)
    with pytest.raises(ValueError, match="outside the padded image"):
        native.correlate_padded(image, [(out, [(5, 0, 1.0)])], 1, 1, rows, cols, 0)  # row 1 + 5 > 5
    with pytest.raises(ValueError, match="outside the padded image"):
        native.correlate_padded(image, [(out, [(0, 0, 1.0)])], 1, 1, rows, cols, 5)
    with pytest.raises(ValueError, match="outside the input"):
        native.correlate_padded(image, [(out, [(0, -1, 1.0)])], 1, 1, rows, cols, 0)
    bad = cols.copy()
    bad[3] = 5  # column 5 of a 5-wide image
    with pytest.raises(ValueError, match="column_index"):
        native.correlate_padded(image, [(out, [(0, 2, 1.0)])], 1, 1, rows, bad, 0)
    bad = rows.copy()
    bad[1] = -2
    with pytest.raises(ValueError, match="row_index"):
        native.correlate_padded(image, [(out, [(0, 0, 1.0)])], 1, 1, bad, cols, 0)
    with pytest.raises(ValueError, match="int64"):
        native.correlate_padded(image, [(out, [(0, 0, 1.0)])], 1, 1, rows.astype(np.int32), cols, 0)


@pytest.mark.parametrize("native_on", [True, False])
@pytest.mark.parametrize(
    "preset", ["sobel-horizontal", "sobel-vertical", "prewitt-vertical", "scharr-horizontal"]
)
def test_a_flat_area_gives_exactly_zero_under_an_edge_kernel(monkeypatch, native_on, preset):
    """Mathematically 0; a tap-order sum left a few ulps of either sign, and a picture shown
    with --range 0,0.01 clipped half its flat pixels (the tutorial's duck)."""
    from convcli.engine.kernels import get_preset

    if not native_on:
        monkeypatch.setenv("CONVCLI_NATIVE", "0")
    kernel = np.array(get_preset(preset).matrix, float)
    flat = np.full((37, 45, 3), np.float32(0.2983146), np.float32)  # an odd value: no exact multiples
    for method in ("auto", "tiled"):
        assert not np.any(filter2d(flat, kernel, padding=0, method=method)), method
