"""Every fast path equals the plain path to 1e-4 of the value scale.

The plain paths (``method="direct"``) are held to independent oracles in
tests/test_filter_values.py, tests/test_pool_values.py and tests/test_transposed_values.py;
here the fast ones (tiles on threads, separable passes, banded matrix products, FFT,
polyphase transposed convolution, strided pooling) are held to the plain ones, on random
shapes, kernels, strides, paddings, dilations, padding modes and channel counts, with tiles
made tiny so that every image crosses many tile boundaries.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convcli.engine import filtering
from convcli.engine import loops as engine
from convcli.engine.filtering import filter2d
from convcli.engine.pooling import pool2d
from convcli.engine.transposed import conv_transpose2d
from convcli.errors import ConvcliError

PAD_MODES = ("zeros", "reflect", "replicate", "circular")
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextlib.contextmanager
def tiny_tiles(rows=3):
    """Tiles of a few rows (so small images cross many tile boundaries) and threads always."""
    saved = (engine.TILE_ELEMENTS, engine.TILE_ROWS_MIN, engine.THREAD_MIN_WORK)
    engine.TILE_ELEMENTS, engine.TILE_ROWS_MIN, engine.THREAD_MIN_WORK = 1, rows, 0
    try:
        yield
    finally:
        engine.TILE_ELEMENTS, engine.TILE_ROWS_MIN, engine.THREAD_MIN_WORK = saved


def scale_of(x, kernel):
    """The natural size of the output values: max|x| * sum|k| (at least 1)."""
    return max(1.0, float(np.abs(x).max()) * float(np.abs(np.asarray(kernel, float)).sum()))


def assert_close(got, expected, scale, what=""):
    assert got.dtype == np.float32, what
    assert got.shape == expected.shape, f"{what}: {got.shape} != {expected.shape}"
    error = float(np.abs(got.astype(np.float64) - expected).max()) if got.size else 0.0
    assert error <= 1e-4 * scale, f"{what}: max error {error} > 1e-4 * {scale}"


def gaussian(size, sigma):
    rows, cols = (size, size) if isinstance(size, int) else size
    a = np.exp(-((np.arange(rows) - (rows - 1) / 2) ** 2) / (2 * sigma**2))
    b = np.exp(-((np.arange(cols) - (cols - 1) / 2) ** 2) / (2 * sigma**2))
    k = np.outer(a, b)
    return k / k.sum()


def image(shape, seed=0):
    return np.random.default_rng(seed).uniform(-3, 3, size=shape).astype(np.float32)


# ------------------------------------------------------------------ filter2d

paddings = st.one_of(
    st.sampled_from(["same", "valid"]),
    st.integers(0, 3),
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
    st.tuples(*[st.integers(0, 4)] * 4),
)


@st.composite
def kernels(draw):
    rows, cols = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["random", "rank1", "rank2", "integer", "sparse"]))
    if kind == "random":
        return rng.uniform(-2, 2, size=(rows, cols))
    if kind == "rank1":
        return np.outer(rng.uniform(-2, 2, rows), rng.uniform(-2, 2, cols))
    if kind == "rank2":
        return sum(np.outer(rng.uniform(-2, 2, rows), rng.uniform(-2, 2, cols)) for _ in range(2))
    if kind == "integer":
        return np.outer(rng.integers(-2, 3, rows), rng.integers(-2, 3, cols)).astype(float)
    k = rng.uniform(-2, 2, size=(rows, cols))
    k[rng.random((rows, cols)) < 0.5] = 0
    return k


@settings(max_examples=150, **SETTINGS)
@given(
    data=st.data(),
    height=st.integers(1, 30),
    width=st.integers(1, 30),
    channels=st.sampled_from([None, 1, 3]),
    kernel=kernels(),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=paddings,
    pad_mode=st.sampled_from(PAD_MODES),
    mode=st.sampled_from(["correlation", "convolution"]),
)
def test_filter_fast_paths_equal_direct(
    data, height, width, channels, kernel, stride, dilation, padding, pad_mode, mode
):
    shape = (height, width) if channels is None else (height, width, channels)
    x = image(shape, data.draw(st.integers(0, 1000), label="seed"))
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, pad_mode=pad_mode, mode=mode)
    try:
        expected = filter2d(x, kernel, method="direct", **kwargs)
    except ConvcliError:
        for method in ("auto", "tiled", "fft"):
            with pytest.raises(ConvcliError):
                filter2d(x, kernel, method=method, **kwargs)
        return
    methods = ["auto", "tiled", "fft"]
    if (
        engine.separable_factors(np.asarray(kernel, np.float32), max(1, min(np.shape(kernel)) // 2))
        is not None
    ):
        methods.append("separable")
    scale = scale_of(x, kernel)
    with tiny_tiles(data.draw(st.integers(1, 5), label="tile rows")):
        for method in methods:
            assert_close(filter2d(x, kernel, method=method, **kwargs), expected, scale, f"{method} {kwargs}")


@pytest.mark.parametrize("pad_mode", PAD_MODES)
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(stride=2, padding=1),
        dict(stride=(3, 2), padding="same", dilation=(1, 2)),
        dict(padding=(3, 0, 1, 4), dilation=2, mode="convolution"),
    ],
)
def test_tiled_is_the_direct_sum_bit_for_bit(pad_mode, kwargs):
    """Tiles and threads change nothing: the same float operations in the same order."""
    x = image((41, 37, 3), seed=3)
    k = np.random.default_rng(4).normal(size=(4, 3))
    expected = filter2d(x, k, method="direct", pad_mode=pad_mode, **kwargs)
    with tiny_tiles(4):
        np.testing.assert_array_equal(filter2d(x, k, method="tiled", pad_mode=pad_mode, **kwargs), expected)
    np.testing.assert_array_equal(
        filter2d(x, k, method="tiled", pad_mode=pad_mode, workers=1, **kwargs), expected
    )


def test_fft_forced_on_a_small_kernel():
    x = image((23, 19, 2), seed=5)
    k = [[1, 2, 0], [-1, 0.5, 3], [0, 0, -2]]
    for kwargs in (
        dict(),
        dict(stride=2, padding=1),
        dict(padding="same", pad_mode="reflect"),
        dict(stride=(1, 3), dilation=(2, 1), padding=(0, 2, 3, 1), pad_mode="circular", mode="convolution"),
    ):
        assert_close(
            filter2d(x, k, method="fft", **kwargs),
            filter2d(x, k, method="direct", **kwargs),
            scale_of(x, k),
            str(kwargs),
        )


@pytest.mark.parametrize("size", [3, 7, 31, (5, 8), (1, 9), (6, 1), (2, 2)])
def test_separable_forced_on_gaussians(size):
    k = gaussian(size, 1.5)
    x = image((70, 45, 3), seed=6)
    assert len(engine.separable_factors(k.astype(np.float32))) == 1
    with tiny_tiles(5):
        for kwargs in (
            dict(),
            dict(padding="same", pad_mode="replicate"),
            dict(stride=2, dilation=2, padding="same", pad_mode="zeros"),
        ):
            expected = filter2d(x, k, method="direct", **kwargs)
            for method in ("separable", "auto"):
                assert_close(
                    filter2d(x, k, method=method, **kwargs),
                    expected,
                    scale_of(x, k),
                    f"{method} {size} {kwargs}",
                )


def test_sobel_factors_into_integers():
    sobel = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32)
    ((col, row),) = engine.separable_factors(sobel)
    np.testing.assert_array_equal(np.outer(col, row), sobel)
    assert sorted(np.abs(col).tolist()) == [1, 1, 2] and sorted(np.abs(row).tolist()) == [0, 1, 1]


def test_low_rank_kernel_is_a_sum_of_separable_passes():
    rng = np.random.default_rng(8)
    k = np.outer(rng.normal(size=7), rng.normal(size=7)) + np.outer(rng.normal(size=7), rng.normal(size=7))
    assert len(engine.separable_factors(k.astype(np.float32), 3)) == 2
    x = image((50, 40, 3), seed=9)
    with tiny_tiles(4):
        for method in ("separable", "auto"):
            assert_close(
                filter2d(x, k, method=method, padding="same", pad_mode="reflect"),
                filter2d(x, k, method="direct", padding="same", pad_mode="reflect"),
                scale_of(x, k),
                method,
            )


def test_nearly_separable_kernel_is_not_taken_for_separable():
    """A rank-1 kernel plus noise of 1e-3: factoring it would be off by ~1e-3, so neither
    "auto" nor "separable" may treat it as one outer product."""
    rng = np.random.default_rng(10)
    k = gaussian(5, 1.2) + rng.normal(scale=1e-3 * gaussian(5, 1.2).max(), size=(5, 5))
    assert engine.separable_factors(k.astype(np.float32), 1) is None
    x = image((40, 33, 3), seed=11)
    expected = filter2d(x, k, method="direct")
    with tiny_tiles(4):
        assert_close(filter2d(x, k), expected, scale_of(x, k))
        # The noise is small: a sum of two outer products may be exact, never one.
        factors = engine.separable_factors(k.astype(np.float32), 2)
        assert factors is None or len(factors) == 2
    # noise far below float32's rounding may be absorbed, and the result stays exact
    tiny = gaussian(5, 1.2) + rng.normal(scale=1e-10, size=(5, 5))
    assert_close(filter2d(x, tiny, method="separable"), filter2d(x, tiny, method="direct"), scale_of(x, tiny))


def test_separable_on_a_non_separable_kernel_raises():
    """method="separable" never approximates: a kernel of too high a rank is refused."""
    k = np.random.default_rng(12).normal(size=(5, 5))
    with pytest.raises(ConvcliError, match="separable needs a kernel"):
        filter2d(image((10, 10)), k, method="separable")
    with pytest.raises(ConvcliError, match="method: expected one of"):
        filter2d(image((10, 10)), k, method="winograd")


def test_zero_kernel_and_single_tap():
    x = image((20, 17, 3), seed=13)
    for method in filtering.METHODS:
        if method == "separable":
            continue
        np.testing.assert_array_equal(
            filter2d(x, np.zeros((3, 2)), method=method), np.zeros((18, 16, 3), np.float32)
        )
    np.testing.assert_array_equal(filter2d(x, [[0, 0], [0, 1]]), x[1:, 1:])


@pytest.mark.parametrize("stride", [(1, 1), (2, 1), (3, 2), (5, 1)])
def test_default_tiles_on_a_tall_image(stride):
    """Default tile sizes, several tiles, a stride that does not divide the tile."""
    x = image((700, 400, 3), seed=14)
    tiles = engine.row_tiles(*filter2d(x[:, :, :1], np.ones((3, 3)), stride=stride).shape[:2], 3)
    assert len(tiles) > 1
    for k in (gaussian(7, 1.5), np.random.default_rng(15).normal(size=(3, 4))):
        expected = filter2d(x, k, stride=stride, padding="same", method="direct")
        for workers in (1, 2):
            assert_close(
                filter2d(x, k, stride=stride, padding="same", workers=workers),
                expected,
                scale_of(x, k),
                f"workers={workers}",
            )


def test_result_does_not_depend_on_tiles_or_threads():
    """The chunked and banded pipelines rely on it: bit-identical whatever the split."""
    x = image((90, 61, 3), seed=16)
    for k in (gaussian(7, 1.5), gaussian(3, 1), np.random.default_rng(17).normal(size=(5, 5))):
        whole = filter2d(x, k, padding="same", pad_mode="reflect")
        with tiny_tiles(3):
            np.testing.assert_array_equal(filter2d(x, k, padding="same", pad_mode="reflect"), whole)
        top = filter2d(
            x[:47],
            k,
            padding=(k.shape[0] // 2, 0, k.shape[1] // 2, k.shape[1] - 1 - k.shape[1] // 2),
            pad_mode="reflect",
        )
        np.testing.assert_array_equal(top[:40], whole[:40])


# ------------------------------------------------------------------- pool2d


@settings(max_examples=120, **SETTINGS)
@given(
    data=st.data(),
    height=st.integers(1, 25),
    width=st.integers(1, 25),
    channels=st.sampled_from([None, 1, 3, 4]),
    size=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    ceil_mode=st.booleans(),
    count_include_pad=st.booleans(),
    op=st.sampled_from(["max", "min", "mean"]),
)
def test_pool_fast_path_equals_direct_bit_for_bit(
    data, height, width, channels, size, stride, dilation, ceil_mode, count_include_pad, op
):
    if op == "mean":
        dilation = (1, 1)
    padding = data.draw(
        st.tuples(st.integers(0, size[0] // 2), st.integers(0, size[1] // 2)), label="padding"
    )
    shape = (height, width) if channels is None else (height, width, channels)
    x = image(shape, data.draw(st.integers(0, 1000), label="seed"))
    kwargs = dict(
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=ceil_mode,
        op=op,
        count_include_pad=count_include_pad,
    )
    try:
        expected = pool2d(x, size, method="direct", **kwargs)
    except ConvcliError:
        with pytest.raises(ConvcliError):
            pool2d(x, size, **kwargs)
        return
    with tiny_tiles(data.draw(st.integers(1, 4), label="tile rows")):
        got = pool2d(x, size, **kwargs)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("op", ["max", "min", "mean"])
def test_pool_default_tiles_on_a_tall_image(op):
    x = image((801, 300, 3), seed=20)
    for size, stride, padding in ((2, 2, 0), (3, 2, 1), ((2, 3), (3, 1), (1, 1))):
        expected = pool2d(x, size, stride=stride, padding=padding, op=op, method="direct")
        assert len(engine.row_tiles(*expected.shape)) > 1
        for workers in (1, 2):
            np.testing.assert_array_equal(
                pool2d(x, size, stride=stride, padding=padding, op=op, workers=workers), expected
            )


def test_pool_method_is_checked():
    with pytest.raises(ConvcliError, match="method: expected one of"):
        pool2d(image((4, 4)), 2, method="fft")


# --------------------------------------------------------- conv_transpose2d


@settings(max_examples=120, **SETTINGS)
@given(
    data=st.data(),
    height=st.integers(1, 15),
    width=st.integers(1, 15),
    channels=st.sampled_from([None, 1, 3]),
    kernel=kernels(),
    stride=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    padding=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    mode=st.sampled_from(["correlation", "convolution"]),
)
def test_polyphase_transposed_equals_scatter(
    data, height, width, channels, kernel, stride, padding, dilation, mode
):
    output_padding = data.draw(
        st.tuples(
            st.integers(0, max(stride[0], dilation[0]) - 1), st.integers(0, max(stride[1], dilation[1]) - 1)
        ),
        label="output_padding",
    )
    shape = (height, width) if channels is None else (height, width, channels)
    x = image(shape, data.draw(st.integers(0, 1000), label="seed"))
    kwargs = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, mode=mode)
    try:
        expected = conv_transpose2d(x, kernel, method="direct", **kwargs)
    except ConvcliError:
        with pytest.raises(ConvcliError):
            conv_transpose2d(x, kernel, **kwargs)
        return
    with tiny_tiles(data.draw(st.integers(1, 4), label="tile rows")):
        for method in ("auto", "polyphase"):
            got = conv_transpose2d(x, kernel, method=method, **kwargs)
            assert_close(got, expected, scale_of(x, kernel), f"{method} {kwargs}")
            # the same products added in the same order: equal, not just close
            np.testing.assert_array_equal(got, expected)


def test_transposed_default_tiles_and_method_check():
    x = image((300, 200, 3), seed=21)
    k = np.random.default_rng(22).normal(size=(4, 4))
    for stride, padding in ((2, 1), (3, 0), ((2, 1), (0, 2))):
        expected = conv_transpose2d(x, k, stride=stride, padding=padding, method="direct")
        for workers in (1, 2):
            np.testing.assert_array_equal(
                conv_transpose2d(x, k, stride=stride, padding=padding, workers=workers), expected
            )
    with pytest.raises(ConvcliError, match="method: expected one of"):
        conv_transpose2d(x, k, method="fft")


# -------------------------------------------------------------------- scipy


def test_filter_with_a_preset_does_not_import_scipy():
    code = (
        "import sys, numpy as np; from convcli import filter2d; "
        "filter2d(np.zeros((64, 64), np.float32), np.ones((3, 3))); "
        "filter2d(np.zeros((64, 64, 3), np.float32), np.ones((31, 31)), method='fft'); "
        "from convcli import pool2d, conv_transpose2d; "
        "pool2d(np.zeros((64, 64, 3), np.float32), 2); "
        "conv_transpose2d(np.zeros((64, 64, 3), np.float32), np.ones((4, 4)), stride=2); "
        "print('scipy' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
