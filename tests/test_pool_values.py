"""pool2d's numbers against an independent oracle of PyTorch's CPU pooling kernels.

The oracle (tests/oracles.py: pool_reference) follows PyTorch's output-size
formula (with the ceil_mode rule that drops a last window starting in the
right padding) and its max_pool2d / avg_pool2d loops; min is -max(-x).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convcli.engine.pooling import pool2d
from convcli.errors import ConvcliError

try:
    from oracles import pool_accepted, pool_output_length, pool_reference
except ImportError:  # tests/ became a package
    from tests.oracles import pool_accepted, pool_output_length, pool_reference

TOL = dict(rtol=1e-4, atol=1e-4)

KERNELS = list(itertools.product(range(1, 5), repeat=2))  # 1..4, non-square too
STRIDES = [None, 1, 2, 3, (1, 3)]
INPUT_SHAPES = list(itertools.product(range(1, 10), repeat=2))  # 1..9 x 1..9


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def check(actual, expected, what=""):
    assert actual.dtype == np.float32, what
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, **TOL, err_msg=what)


def pad_limit(k, d=1):
    """PyTorch's pool2d_shape_check: padding <= k // 2, the window as given, whatever ``d``."""
    return k // 2


def sweep(op, ceil_mode):
    """Every size x stride x dilation x padding (0 .. one past the limit), inputs 1..9 in turn."""
    dilations = [1] if op == "mean" else [1, 2, (2, 1)]
    index = 0
    for size, stride, dilation in itertools.product(KERNELS, STRIDES, dilations):
        d = pair(dilation)
        pads = itertools.product(range(pad_limit(size[0], d[0]) + 2), range(pad_limit(size[1], d[1]) + 2))
        for padding in pads:
            shape = INPUT_SHAPES[(37 * index) % len(INPUT_SHAPES)]
            index += 1
            yield shape, size, stride, padding, dilation


@pytest.mark.parametrize(
    "op,count_include_pad", [("max", True), ("min", True), ("mean", True), ("mean", False)]
)
@pytest.mark.parametrize("ceil_mode", [False, True], ids=["floor", "ceil"])
def test_pool2d_sweep_matches_reference(op, ceil_mode, count_include_pad):
    """size 1..4 (non-square), stride None/1..3, padding 0..limit+1, dilation 1..2 (max/min),
    inputs 1..9; combinations PyTorch refuses (padding over the limit, output < 1) must raise."""
    rng = np.random.default_rng([["max", "min", "mean"].index(op), ceil_mode, count_include_pad])
    compared = refused = 0
    for shape, size, stride, padding, dilation in sweep(op, ceil_mode):
        x = rng.normal(size=shape).astype(np.float32)
        kwargs = dict(
            stride=stride,
            padding=padding,
            dilation=dilation,
            ceil_mode=ceil_mode,
            op=op,
            count_include_pad=count_include_pad,
        )
        what = f"x{shape} size={size} {kwargs}"
        if not pool_accepted(shape, size, size if stride is None else stride, padding, dilation, ceil_mode):
            with pytest.raises(ConvcliError):
                pool2d(x, size, **kwargs)
            refused += 1
            continue
        expected = pool_reference(x, size, stride, padding, dilation, ceil_mode, op, count_include_pad)
        check(pool2d(x, size, **kwargs), expected, what)
        compared += 1
    assert compared >= 150 and refused >= 50


@settings(max_examples=150, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    size=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))),
    data=st.data(),
    ceil_mode=st.booleans(),
    count_include_pad=st.booleans(),
    op=st.sampled_from(["max", "min", "mean"]),
    channels=st.sampled_from([0, 3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_pool2d_random_matches_reference(
    shape, size, stride, data, ceil_mode, count_include_pad, op, channels, seed
):
    dilation = (1, 1) if op == "mean" else data.draw(st.tuples(st.integers(1, 2), st.integers(1, 2)))
    padding = data.draw(
        st.tuples(
            st.integers(0, pad_limit(size[0], dilation[0]) + 1),
            st.integers(0, pad_limit(size[1], dilation[1]) + 1),
        )
    )
    rng = np.random.default_rng(seed)
    full_shape = shape + ((channels,) if channels else ())
    x = rng.integers(-50, 50, size=full_shape).astype(np.float32) / 4  # ties too
    kwargs = dict(
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=ceil_mode,
        op=op,
        count_include_pad=count_include_pad,
    )
    if not pool_accepted(shape, size, size if stride is None else stride, padding, dilation, ceil_mode):
        with pytest.raises(ConvcliError):
            pool2d(x, size, **kwargs)
        return
    out = pool2d(x, size, **kwargs)
    planes = [x] if not channels else [x[:, :, c] for c in range(channels)]
    for c, plane in enumerate(planes):
        expected = pool_reference(plane, size, stride, padding, dilation, ceil_mode, op, count_include_pad)
        check(out if not channels else out[:, :, c], expected, f"channel {c}")


@pytest.mark.parametrize("op", ["max", "min", "mean"])
def test_three_channels_are_pooled_independently(op):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(7, 8, 3)).astype(np.float32)
    kwargs = dict(stride=2, padding=(1, 0), ceil_mode=True, op=op, count_include_pad=False)
    out = pool2d(x, (3, 2), **kwargs)
    assert out.shape == (4, 4, 3)
    for c in range(3):
        check(out[:, :, c], pool_reference(x[:, :, c], (3, 2), 2, (1, 0), 1, True, op, False))
        np.testing.assert_allclose(out[:, :, c], pool2d(x[:, :, c], (3, 2), **kwargs), **TOL)


@pytest.mark.parametrize(
    "shape,size,stride,padding,dilation,ceil_mode",
    [
        ((9, 7), (3, 2), (2, 3), (1, 1), (1, 2), False),
        ((9, 7), (3, 2), (2, 3), (1, 1), (1, 2), True),
        ((5, 5), 2, 2, 1, 1, True),
        ((6, 8), (4, 1), None, (2, 0), 1, True),
    ],
)
def test_output_shape_equals_formula(shape, size, stride, padding, dilation, ceil_mode):
    out = pool2d(np.ones(shape), size, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    k, p, d = pair(size), pair(padding), pair(dilation)
    s = k if stride is None else pair(stride)
    assert out.shape == tuple(pool_output_length(shape[i], k[i], s[i], p[i], d[i], ceil_mode) for i in (0, 1))


# ----------------------------------------------------------------- refusals


@pytest.mark.parametrize("op", ["max", "min", "mean"])
@pytest.mark.parametrize("size,padding", [(2, 2), (1, 1), (3, 2), (4, 3), ((4, 2), (1, 2)), ((1, 3), (1, 0))])
def test_padding_over_half_the_window_raises(op, size, padding):
    with pytest.raises(ConvcliError):
        pool2d(np.ones((9, 9)), size, padding=padding, op=op)


@pytest.mark.parametrize("op", ["max", "min"])
@pytest.mark.parametrize(
    "size,padding,dilation",
    [
        (2, 2, 2),  # window 2: limit 1, dilated or not
        (3, 2, 2),  # window 3: limit 1, though the dilated window spans 5
        (4, 3, 2),  # window 4: limit 2, though the dilated window spans 7
        (1, 1, 2),  # window 1: limit 0
        ((3, 2), (2, 1), (2, 3)),
    ],
)
def test_padding_over_half_the_dilated_window_raises(op, size, padding, dilation):
    """PyTorch 2.13: F.max_pool2d(x, 3, 1, padding=2, dilation=2) raises "pad should be smaller
    than or equal to half of kernel size": the limit ignores the dilation."""
    assert not pool_accepted((9, 9), size, 1, padding, dilation)
    with pytest.raises(ConvcliError, match="half the window"):
        pool2d(np.ones((9, 9)), size, stride=1, padding=padding, dilation=dilation, op=op)


@pytest.mark.parametrize("op", ["max", "min", "mean"])
@pytest.mark.parametrize(
    "shape,size,stride,padding,ceil_mode",
    [
        ((2, 5), 3, 1, 0, False),  # window taller than the input
        ((5, 1), (1, 2), 1, 0, False),
        ((3, 3), 4, 1, 0, False),
        ((1, 1), 4, 1, 0, True),  # span -3 <= -stride: even ceil_mode gives 0
        ((1, 2), (4, 1), 2, 0, True),  # span 1 - 3 - 1 = -3 <= -stride
    ],
)
def test_output_below_one_raises(op, shape, size, stride, padding, ceil_mode):
    k, s, p = pair(size), pair(stride), pair(padding)
    assert min(pool_output_length(shape[i], k[i], s[i], p[i], 1, ceil_mode) for i in (0, 1)) < 1
    with pytest.raises(ConvcliError):
        pool2d(np.ones(shape), size, stride=stride, padding=padding, ceil_mode=ceil_mode, op=op)


def test_mean_with_dilation_raises():
    with pytest.raises(ConvcliError):
        pool2d(np.ones((6, 6)), 2, dilation=2, op="mean")


# ------------------------- PyTorch edge cases: ceil_mode overhang, dilated padding limit


@pytest.mark.parametrize("op", ["max", "min", "mean"])
def test_ceil_mode_window_larger_than_input(op):
    """F.max_pool2d(x_2x2, 3, stride=3, ceil_mode=True) is 1x1 in PyTorch:
    div_rtn(2 - 2 - 1 + 2, 3) + 1 = 1, and the window starts at 0 < 2 + 0.
    It pools the clipped window, i.e. the whole 2x2 input."""
    x = np.array([[1.0, 4.0], [-2.0, 3.0]], dtype=np.float32)
    assert pool_output_length(2, 3, 3, 0, 1, True) == 1
    expected = {"max": [[4.0]], "min": [[-2.0]], "mean": [[1.5]]}[op]  # mean: 6 / (2*2)
    assert pool_reference(x, 3, 3, 0, 1, True, op).tolist() == expected
    assert pool2d(x, 3, stride=3, ceil_mode=True, op=op).tolist() == expected


@pytest.mark.parametrize("op", ["max", "min"])
def test_dilated_padding_up_to_half_the_window(op):
    """F.max_pool2d(x, 3, stride=1, padding=1, dilation=2) is accepted by PyTorch (3 // 2 = 1)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 5)).astype(np.float32)
    assert pool_accepted(x.shape, 3, 1, 1, 2)
    expected = pool_reference(x, 3, 1, 1, 2, False, op)
    check(pool2d(x, 3, stride=1, padding=1, dilation=2, op=op), expected)


# ----------------------------------------------------------- worked examples


X4 = np.arange(16, dtype=np.float32).reshape(4, 4)
#  0  1  2  3
#  4  5  6  7
#  8  9 10 11
# 12 13 14 15
X5 = np.arange(25, dtype=np.float32).reshape(5, 5)
#  0  1  2  3  4
#  5  6  7  8  9
# 10 11 12 13 14
# 15 16 17 18 19
# 20 21 22 23 24


def test_worked_example_2x2_pools_of_arange():
    # windows {0,1,4,5} {2,3,6,7} {8,9,12,13} {10,11,14,15}
    assert pool2d(X4, 2).tolist() == [[5, 7], [13, 15]]
    assert pool2d(X4, 2, op="min").tolist() == [[0, 2], [8, 10]]
    assert pool2d(X4, 2, op="mean").tolist() == [[2.5, 4.5], [10.5, 12.5]]


def test_worked_example_avg_5x5_k2_s2_p1_count_include_pad():
    """5x5 arange, k=2, s=2, p=1.

    Size: floor((5 + 2 - 1 - 1)/2) + 1 = 3; ceil_mode: ceil(5/2) + 1 = 4, but
    the 4th window would start at 3*2 - 1 = 5 >= in = 5 (in the right
    padding: (4-1)*2 = 6 >= 5 + 1), so it is dropped: 3 either way.
    Windows along each axis start at -1, 1, 3: rows {pad, 0}, {1, 2}, {3, 4}.
    Sums: (0, 1+2, 3+4) = 0, 3, 7 on the top row; 5+10=15, 6+7+11+12=36,
    8+9+13+14=44; 15+20=35, 16+17+21+22=76, 18+19+23+24=84.
    count_include_pad=True divides all by 4 (hend = min(start+2, 5+1) never clips);
    False divides by the real cells: 1 at the corner, 2 on the first row/column.
    """
    incl = [[0, 0.75, 1.75], [3.75, 9, 11], [8.75, 19, 21]]
    excl = [[0, 1.5, 3.5], [7.5, 9, 11], [17.5, 19, 21]]
    for ceil_mode in (False, True):
        out = pool2d(X5, 2, stride=2, padding=1, ceil_mode=ceil_mode, op="mean")
        np.testing.assert_allclose(out, incl, **TOL)
        out = pool2d(X5, 2, stride=2, padding=1, ceil_mode=ceil_mode, op="mean", count_include_pad=False)
        np.testing.assert_allclose(out, excl, **TOL)
    # max over the same windows: largest real cell
    assert pool2d(X5, 2, stride=2, padding=1).tolist() == [[0, 2, 4], [10, 12, 14], [20, 22, 24]]


def test_worked_example_avg_ceil_mode_partial_window():
    """5x5 arange, k=2, s=2, no padding, ceil_mode: ceil(3/2) + 1 = 3 windows per axis,
    starting at 0, 2, 4; the last holds one row (hend = min(4+2, 5) = 5), so even
    count_include_pad=True divides it by 1 per axis, not 2 (the overhang is not padding).
    Sums / divisors: 0+1+5+6=12/4=3, 2+3+7+8=20/4=5, 4+9=13/2=6.5;
    10+11+15+16=52/4=13, 60/4=15, 14+19=33/2=16.5; 20+21=41/2=20.5, 45/2=22.5, 24/1.
    """
    expected = [[3, 5, 6.5], [13, 15, 16.5], [20.5, 22.5, 24]]
    for include in (True, False):
        out = pool2d(X5, 2, ceil_mode=True, op="mean", count_include_pad=include)
        np.testing.assert_allclose(out, expected, **TOL)
    assert pool2d(X5, 2, op="mean").tolist() == [[3, 5], [13, 15]]  # floor: 2x2


def test_worked_example_avg_ceil_mode_with_padding():
    """4x4 arange, k=3, s=2, p=1, ceil_mode: floor((4+2-2-1)/2)=1 -> ceil 2, +1 = 3;
    (3-1)*2 = 4 < 4+1 so the third window stays.  Windows start -1, 1, 3:
    rows {0,1} (pool 3: -1..1), {1,2,3} (pool 3), {3} (hend = min(6, 5) = 5: pool 2).
    Sums: 10 24 10 / 51 90 33 / 25 42 15.
    count_include_pad=True divisors 3x3 -> 9 9 6 / 9 9 6 / 6 6 4;
    False divisors (real cells) 2,3,1 per axis -> 4 6 2 / 6 9 3 / 2 3 1.
    """
    incl = [[10 / 9, 24 / 9, 10 / 6], [51 / 9, 10, 33 / 6], [25 / 6, 42 / 6, 15 / 4]]
    excl = [[2.5, 4, 5], [8.5, 10, 11], [12.5, 14, 15]]
    out = pool2d(X4, 3, stride=2, padding=1, ceil_mode=True, op="mean")
    np.testing.assert_allclose(out, incl, **TOL)
    out = pool2d(X4, 3, stride=2, padding=1, ceil_mode=True, op="mean", count_include_pad=False)
    np.testing.assert_allclose(out, excl, **TOL)
    # floor mode keeps only the first two windows
    out = pool2d(X4, 3, stride=2, padding=1, op="mean", count_include_pad=False)
    np.testing.assert_allclose(out, [[2.5, 4], [8.5, 10]], **TOL)


def test_worked_example_dilated_max():
    """4x4 arange, size 2, dilation 2, stride 1: window {x[i,j], x[i,j+2], x[i+2,j], x[i+2,j+2]},
    out 2x2, max = x[i+2, j+2] -> 10 11 / 14 15; min = x[i, j] -> 0 1 / 4 5."""
    assert pool2d(X4, 2, stride=1, dilation=2).tolist() == [[10, 11], [14, 15]]
    assert pool2d(X4, 2, stride=1, dilation=2, op="min").tolist() == [[0, 1], [4, 5]]
