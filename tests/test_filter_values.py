"""filter2d's numbers against independent oracles (tests/oracles.py), scipy and hand-worked examples.

Nothing here compares convcli with itself: every expected value comes from a
plain-loop reference written from PyTorch's definitions, from scipy, or from
arithmetic done by hand in the comments.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

from convcli.engine.filtering import filter2d
from convcli.errors import ConvcliError

try:
    from oracles import (
        PAD_MODES,
        Refused,
        conv_output_length,
        filter_reference,
        pad_reference,
        same_sides,
        source_index,
    )
except ImportError:  # tests/ became a package
    from tests.oracles import (
        PAD_MODES,
        Refused,
        conv_output_length,
        filter_reference,
        pad_reference,
        same_sides,
        source_index,
    )

TOL = dict(rtol=1e-4, atol=1e-4)

KERNEL_SHAPES = [(1, 1), (2, 2), (3, 3), (2, 3), (4, 1), (5, 5)]
STRIDES = [1, 2, 3, (1, 2)]
PADDINGS = [0, 1, 2, (1, 2), (0, 1, 2, 0), (2, 0, 1, 3), "same", "valid"]
DILATIONS = [1, 2, (2, 1)]
MODES = ["correlation", "convolution"]
# Input sizes 5..12, square and not; each sweep combination takes two of them in turn.
INPUT_SHAPES = [(5, 5), (7, 9), (12, 6), (6, 11), (9, 8), (10, 12), (8, 5), (11, 7), (5, 12)]


def check(actual, expected, what=""):
    assert actual.dtype == np.float32, what
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, **TOL, err_msg=what)


# ------------------------------------------------------------ oracle sanity


def test_pad_reference_hand_examples():
    row = [[1.0, 2.0, 3.0]]
    assert pad_reference(row, 0, 0, 2, 1, "reflect").tolist() == [[3, 2, 1, 2, 3, 2]]
    assert pad_reference(row, 0, 0, 2, 1, "replicate").tolist() == [[1, 1, 1, 2, 3, 3]]
    assert pad_reference(row, 0, 0, 3, 2, "circular").tolist() == [[1, 2, 3, 1, 2, 3, 1, 2]]
    assert pad_reference(row, 1, 0, 1, 0, "zeros").tolist() == [[0, 0, 0, 0], [0, 1, 2, 3]]
    col = [[1.0], [2.0]]
    assert pad_reference(col, 1, 1, 0, 0, "reflect").tolist() == [[2], [1], [2], [1]]
    assert pad_reference(col, 2, 0, 1, 1, "circular").tolist() == [[1, 1, 1], [2, 2, 2], [1, 1, 1], [2, 2, 2]]


def test_same_sides_rule():
    # stride 1: total d*(k-1), odd pixel after
    assert same_sides((7, 7), (4, 3)) == (1, 2, 1, 1)
    assert same_sides((7, 7), (3, 3), dilation=2) == (2, 2, 2, 2)
    # stride 2, in 7: out 4, total (4-1)*2 + 3 - 7 = 2; in 8: out 4, total 1
    assert same_sides((7, 8), (3, 3), stride=2) == (1, 1, 0, 1)


# -------------------------------------------------------------- the sweep


def sweep_cases():
    combos = itertools.product(STRIDES, PADDINGS, DILATIONS, MODES)
    for index, (stride, padding, dilation, mode) in enumerate(combos):
        for shape in (
            INPUT_SHAPES[index % len(INPUT_SHAPES)],
            INPUT_SHAPES[(3 * index + 4) % len(INPUT_SHAPES)],
        ):
            yield shape, stride, padding, dilation, mode


@pytest.mark.parametrize("kernel_shape", KERNEL_SHAPES, ids=lambda s: f"k{s[0]}x{s[1]}")
@pytest.mark.parametrize("pad_mode", PAD_MODES)
def test_filter2d_sweep_matches_reference(pad_mode, kernel_shape):
    """Every stride x padding x dilation x mode, two input sizes each; refusals must raise."""
    rng = np.random.default_rng([PAD_MODES.index(pad_mode), *kernel_shape])  # stable seed
    kernel = rng.normal(size=kernel_shape)
    compared = 0
    for shape, stride, padding, dilation, mode in sweep_cases():
        x = rng.normal(size=shape).astype(np.float32)
        what = f"x{shape} k{kernel_shape} s={stride} p={padding!r} d={dilation} {pad_mode} {mode}"
        kwargs = dict(stride=stride, padding=padding, dilation=dilation, pad_mode=pad_mode, mode=mode)
        try:
            expected = filter_reference(x, kernel, **kwargs)
        except Refused:
            with pytest.raises(ConvcliError):
                filter2d(x, kernel, **kwargs)
            continue
        check(filter2d(x, kernel, **kwargs), expected, what)
        compared += 1
    assert compared >= 150  # the sweep really compares values, not just refusals


@settings(max_examples=120, deadline=None)
@given(
    data=st.data(),
    height=st.integers(5, 12),
    width=st.integers(5, 12),
    kernel_shape=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    pad_mode=st.sampled_from(PAD_MODES),
    mode=st.sampled_from(MODES),
)
def test_filter2d_random_matches_reference(
    data, height, width, kernel_shape, stride, dilation, pad_mode, mode
):
    padding = data.draw(
        st.one_of(
            st.sampled_from(["same", "valid"]),
            st.integers(0, 3),
            st.tuples(st.integers(0, 3), st.integers(0, 3)),
            st.tuples(*[st.integers(0, 4)] * 4),
        ),
        label="padding",
    )
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, size=(height, width)).astype(np.float32)
    kernel = rng.uniform(-2, 2, size=kernel_shape)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, pad_mode=pad_mode, mode=mode)
    try:
        expected = filter_reference(x, kernel, **kwargs)
    except Refused:
        with pytest.raises(ConvcliError):
            filter2d(x, kernel, **kwargs)
        return
    check(filter2d(x, kernel, **kwargs), expected)


@pytest.mark.parametrize("pad_mode", PAD_MODES)
@pytest.mark.parametrize(
    "padding,stride,dilation,mode",
    [
        ("same", 1, 1, "correlation"),
        ("same", 2, (2, 1), "convolution"),
        ((2, 0, 1, 3), (1, 2), 1, "correlation"),
        (1, 3, 2, "convolution"),
        ("valid", 1, 1, "convolution"),
    ],
)
def test_three_channels_are_filtered_independently(pad_mode, padding, stride, dilation, mode):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(9, 8, 3)).astype(np.float32)
    kernel = rng.normal(size=(2, 3))
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, pad_mode=pad_mode, mode=mode)
    out = filter2d(x, kernel, **kwargs)
    assert out.ndim == 3 and out.shape[2] == 3
    for c in range(3):
        expected = filter_reference(x[:, :, c], kernel, **kwargs)
        check(out[:, :, c], expected, f"channel {c}")
        # ...and the same as filtering that channel alone as a 2-D image
        np.testing.assert_allclose(out[:, :, c], filter2d(x[:, :, c], kernel, **kwargs), **TOL)


@pytest.mark.parametrize(
    "shape,kernel_shape,stride,padding,dilation",
    [
        ((7, 9), (3, 2), (2, 3), (1, 0, 2, 1), (1, 2)),
        ((12, 5), (5, 1), 3, 2, 2),
        ((6, 6), (2, 2), 1, "same", 1),
        ((11, 10), (4, 3), (3, 2), "same", (2, 1)),
        ((8, 8), (3, 3), 2, "valid", 1),
    ],
)
def test_output_shape_equals_formula(shape, kernel_shape, stride, padding, dilation):
    """out = floor((in + before + after - d*(k-1) - 1)/s) + 1; "same" gives ceil(in/s)."""
    x = np.ones(shape, dtype=np.float32)
    out = filter2d(x, np.ones(kernel_shape), stride=stride, padding=padding, dilation=dilation)
    (sy, sx) = (stride, stride) if isinstance(stride, int) else stride
    (dy, dx) = (dilation, dilation) if isinstance(dilation, int) else dilation
    if padding == "same":
        assert out.shape == (-(-shape[0] // sy), -(-shape[1] // sx))
        t, b, l, r = same_sides(shape, kernel_shape, stride, dilation)
    elif padding == "valid":
        t = b = l = r = 0
    elif isinstance(padding, int):
        t = b = l = r = padding
    else:
        t, b, l, r = padding
    assert out.shape == (
        conv_output_length(shape[0], kernel_shape[0], sy, t, b, dy),
        conv_output_length(shape[1], kernel_shape[1], sx, l, r, dx),
    )


# ----------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "shape,kernel_shape,kwargs",
    [
        ((4, 4), (5, 5), {}),
        ((4, 6), (5, 3), {}),  # too tall only
        ((5, 5), (3, 3), {"dilation": 3}),  # spans 7
        ((3, 3), (6, 6), {"padding": 1}),  # padded 5 < 6
        ((3, 3), (6, 6), {"padding": (0, 2, 0, 0)}),
    ],
)
def test_kernel_larger_than_padded_input_raises(shape, kernel_shape, kwargs):
    with pytest.raises(ConvcliError):
        filter2d(np.ones(shape), np.ones(kernel_shape), **kwargs)


@pytest.mark.parametrize(
    "shape,padding",
    [
        ((3, 8), 3),
        ((8, 3), 3),
        ((5, 5), (0, 5, 0, 0)),
        ((5, 5), (0, 0, 7, 0)),
        ((2, 9), (2, 1)),
    ],
)
def test_reflect_padding_not_smaller_than_side_raises(shape, padding):
    with pytest.raises(ConvcliError):
        filter2d(np.ones(shape), np.ones((1, 1)), padding=padding, pad_mode="reflect")


def test_reflect_same_with_big_kernel_raises():
    # 3x3 input, 7x7 kernel, "same": 3 on each side, not < 3
    with pytest.raises(ConvcliError):
        filter2d(np.ones((3, 3)), np.ones((7, 7)), padding="same", pad_mode="reflect")


@pytest.mark.parametrize(
    "shape,padding",
    [
        ((3, 8), 4),
        ((8, 3), (0, 4)),
        ((5, 5), (6, 0, 0, 0)),
        ((5, 5), (0, 0, 0, 6)),
    ],
)
def test_circular_padding_over_side_raises(shape, padding):
    with pytest.raises(ConvcliError):
        filter2d(np.ones(shape), np.ones((1, 1)), padding=padding, pad_mode="circular")


def test_padding_limits_are_inclusive_where_pytorch_allows():
    """reflect pad = side - 1 and circular pad = side are legal: check their values."""
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    one = np.ones((1, 1))
    check(filter2d(x, one, padding=(2, 2, 3, 3), pad_mode="reflect"), pad_reference(x, 2, 2, 3, 3, "reflect"))
    check(
        filter2d(x, one, padding=(3, 3, 4, 4), pad_mode="circular"), pad_reference(x, 3, 3, 4, 4, "circular")
    )


# ---------------------------------------------------------- scipy cross-check


@pytest.mark.parametrize("kernel_shape", KERNEL_SHAPES)
@pytest.mark.parametrize("shape", [(5, 5), (8, 11), (12, 7)])
def test_valid_matches_scipy_signal(shape, kernel_shape):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape)
    k = rng.normal(size=kernel_shape)
    check(filter2d(x, k), scipy.signal.correlate2d(x, k, mode="valid"), "correlate valid")
    check(
        filter2d(x, k, padding="valid", mode="convolution"),
        scipy.signal.convolve2d(x, k, mode="valid"),
        "convolve valid",
    )


@pytest.mark.parametrize("kernel_shape", KERNEL_SHAPES)
@pytest.mark.parametrize("shape", [(5, 5), (8, 11)])
def test_full_padding_matches_scipy_full(shape, kernel_shape):
    rng = np.random.default_rng(2)
    x = rng.normal(size=shape)
    k = rng.normal(size=kernel_shape)
    pad = (kernel_shape[0] - 1, kernel_shape[1] - 1)
    check(filter2d(x, k, padding=pad), scipy.signal.correlate2d(x, k, mode="full"))
    check(filter2d(x, k, padding=pad, mode="convolution"), scipy.signal.convolve2d(x, k, mode="full"))


# convcli pad mode -> scipy.ndimage mode.  ndimage's "reflect" repeats the edge
# (d c b a | a b c d), PyTorch's reflect does not (d c b | a b c d), which is
# ndimage's "mirror".
NDIMAGE_MODE = {"zeros": "constant", "replicate": "nearest", "circular": "wrap", "reflect": "mirror"}


@pytest.mark.parametrize("pad_mode", PAD_MODES)
@pytest.mark.parametrize("kernel_shape", [(1, 1), (3, 3), (5, 5), (3, 5), (5, 1)])
@pytest.mark.parametrize("shape", [(6, 6), (9, 7)])
def test_same_matches_scipy_ndimage_odd_kernels(shape, kernel_shape, pad_mode):
    """ndimage centres an odd kernel: out[i] = sum_j w[j] x[i + j - k//2] = "same" here."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=shape)
    k = rng.normal(size=kernel_shape)
    expected = scipy.ndimage.correlate(x, k, mode=NDIMAGE_MODE[pad_mode], cval=0.0)
    check(filter2d(x, k, padding="same", pad_mode=pad_mode), expected)
    expected = scipy.ndimage.convolve(x, k, mode=NDIMAGE_MODE[pad_mode], cval=0.0)
    check(filter2d(x, k, padding="same", pad_mode=pad_mode, mode="convolution"), expected)


@pytest.mark.parametrize("pad_mode", PAD_MODES)
@pytest.mark.parametrize("kernel_shape", [(2, 2), (4, 4), (2, 3)])
def test_same_matches_scipy_ndimage_even_kernels(kernel_shape, pad_mode):
    """Even kernel: ndimage's centre is k//2 (odd pixel before); PyTorch puts it after,
    i.e. centre (k-1)//2, which is ndimage's origin -1 on an even axis."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(8, 7))
    k = rng.normal(size=kernel_shape)
    origin = [-1 if n % 2 == 0 else 0 for n in kernel_shape]
    expected = scipy.ndimage.correlate(x, k, mode=NDIMAGE_MODE[pad_mode], origin=origin)
    check(filter2d(x, k, padding="same", pad_mode=pad_mode), expected)


# ----------------------------------------------------------- worked examples


X4 = np.arange(16, dtype=np.float32).reshape(4, 4)
#  0  1  2  3
#  4  5  6  7
#  8  9 10 11
# 12 13 14 15


def test_worked_example_padding1_stride2():
    """4x4, 3x3 kernel, padding 1, stride 2: floor((4 + 2 - 3)/2) + 1 = 2 -> 2x2.

    Output (i, j) is the 3x3 window centred on input (2i, 2j).  With the ones
    kernel that is a neighbourhood sum (zeros outside):
      (0,0): 0+1+4+5 = 10            (0,1): 1+2+3+5+6+7 = 24
      (1,0): 4+5+8+9+12+13 = 51      (1,1): 5+6+7+9+10+11+13+14+15 = 90
    """
    assert filter2d(X4, np.ones((3, 3)), padding=1, stride=2).tolist() == [[10, 24], [51, 90]]
    # An asymmetric kernel: 1 at top-left, 2 at bottom-right, so
    # out(i,j) = x[2i-1, 2j-1] + 2*x[2i+1, 2j+1]:
    #   (0,0): 0 + 2*5 = 10   (0,1): 0 + 2*7 = 14
    #   (1,0): 0 + 2*13 = 26  (1,1): 5 + 2*15 = 35
    k = [[1, 0, 0], [0, 0, 0], [0, 0, 2]]
    assert filter2d(X4, k, padding=1, stride=2).tolist() == [[10, 14], [26, 35]]
    # Convolution turns it: 2*x[2i-1, 2j-1] + x[2i+1, 2j+1] -> 5, 7, 13, 2*5+15=25
    assert filter2d(X4, k, padding=1, stride=2, mode="convolution").tolist() == [[5, 7], [13, 25]]


def test_worked_example_pad_modes():
    """Row [1 2 3], kernel [1 1 1], "same" (1 each side):
    zeros     0 1 2 3 0 -> 3 6 5
    reflect   2 1 2 3 2 -> 5 6 7
    replicate 1 1 2 3 3 -> 4 6 8
    circular  3 1 2 3 1 -> 6 6 6
    """
    row = np.array([[1.0, 2.0, 3.0]])
    k = [[1, 1, 1]]
    results = {m: filter2d(row, k, padding="same", pad_mode=m).tolist() for m in PAD_MODES}
    assert results == {
        "zeros": [[3, 6, 5]],
        "reflect": [[5, 6, 7]],
        "replicate": [[4, 6, 8]],
        "circular": [[6, 6, 6]],
    }


def test_worked_example_dilation_and_same_even_kernel():
    """Kernel [1, 10], row 1..5:
    dilation 2, valid: x[j] + 10*x[j+2] -> 31, 42, 53
    "same", stride 1: total 1, padded after: 1 2 3 4 5 0 -> 21, 32, 43, 54, 5
    """
    row = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    assert filter2d(row, [[1, 10]], dilation=2).tolist() == [[31, 42, 53]]
    assert filter2d(row, [[1, 10]], padding="same").tolist() == [[21, 32, 43, 54, 5]]
    # stride 2, TensorFlow SAME: out ceil(5/2) = 3, total (3-1)*2 + 2 - 5 = 1, after:
    # windows start 0, 2, 4 -> 21, 43, 5
    assert filter2d(row, [[1, 10]], padding="same", stride=2).tolist() == [[21, 43, 5]]


# -------------------------------------- the banded pipeline behind `convcli filter`


@pytest.mark.parametrize("mode", PAD_MODES)
def test_pad_rows_match_reference_indices(mode):
    """padding.pad_rows (which rows a band reads) against the oracle's index arithmetic."""
    from convcli.engine.padding import pad_rows

    for length in range(1, 8):
        limit = {"reflect": length - 1, "circular": length}.get(mode, length + 3)
        for start in range(-limit, length):
            for stop in range(start + 1, length + limit + 1):
                index, zeros = pad_rows(length, start, stop, mode)
                expected = [source_index(i, length, mode) for i in range(start, stop)]
                assert [None if z else int(i) for i, z in zip(index, zeros)] == expected, (
                    length,
                    start,
                    stop,
                )


class _Stored:
    """The two members of imagefile's loaded image that Operation.bands reads."""

    def __init__(self, array):
        self.array = np.asarray(array, dtype=np.float32)
        self.size = self.array.shape[:2]

    def rows(self, index):
        return self.array[index].copy()


@pytest.mark.parametrize("pad_mode", PAD_MODES)
def test_filter_bands_match_reference(pad_mode):
    """The CLI computes filters band by band (runner.Operation.bands); the bands put
    together must be the oracle's result, whatever the band height."""
    from convcli.ops.filter import Filter

    rng = np.random.default_rng(PAD_MODES.index(pad_mode))
    x = rng.normal(size=(9, 7, 2)).astype(np.float32)
    cases = itertools.product(
        [(3, 3), (2, 3), (4, 1)],
        [(1, 1), (2, 1), (3, 2)],
        [(1, 1), (2, 1)],
        [0, (2, 1), (0, 2, 1, 0), "same"],
        MODES,
    )
    compared = 0
    for kernel_shape, stride, dilation, padding, mode in cases:
        kernel = rng.normal(size=kernel_shape).astype(np.float32)
        try:
            expected = [
                filter_reference(x[:, :, c], kernel, stride, padding, dilation, pad_mode, mode)
                for c in range(2)
            ]
        except Refused:
            continue
        op = Filter(kernel, stride=stride, padding=padding, dilation=dilation, pad_mode=pad_mode, mode=mode)
        for band_rows in (1, 2, 3, 64):
            what = (
                f"k{kernel_shape} s={stride} d={dilation} p={padding!r} {pad_mode} {mode} "
                f"band_rows={band_rows}"
            )
            out_hw = op.output_size(x.shape[:2])
            bands = op.bands(_Stored(x), band_rows=band_rows)
            out = np.full(out_hw + (2,), np.nan, dtype=np.float32)
            for first, rows in bands:
                out[first : first + rows.shape[0]] = rows
            for c in range(2):
                check(out[:, :, c], expected[c], what)  # NaN left = a row no band wrote
        compared += 1
    assert compared >= 100
