"""conv_transpose2d's numbers against an explicit-scatter oracle of F.conv_transpose2d.

Oracle (tests/oracles.py: conv_transpose_reference): an array of size
(in-1)*s - 2p + d*(k-1) + op + 1 per axis, and out[i*s - p + m*d] += x[i]*k[m].
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convcli.engine.filtering import filter2d
from convcli.engine.transposed import conv_transpose2d
from convcli.errors import ConvcliError

try:
    from oracles import conv_transpose_reference, output_padding_accepted, rot180, tconv_output_length
except ImportError:  # tests/ became a package
    from tests.oracles import conv_transpose_reference, output_padding_accepted, rot180, tconv_output_length

TOL = dict(rtol=1e-4, atol=1e-4)

KERNELS = list(itertools.product(range(1, 5), repeat=2))  # 1..4, non-square too
INPUT_SHAPES = [(1, 1), (2, 3), (3, 2), (4, 4), (1, 5), (5, 1), (3, 5), (2, 2), (4, 3)]


def check(actual, expected, what=""):
    assert actual.dtype == np.float32, what
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, **TOL, err_msg=what)


def expected_or_none(x, k, s, p, op, d, mode):
    """The oracle's answer, or None when PyTorch refuses (bad output padding, size < 1)."""
    if not output_padding_accepted(op, s, d):
        return None
    kernel = rot180(k) if mode == "convolution" else k
    sizes = [
        tconv_output_length(n, kk, ss, pp, oo, dd)
        for n, kk, ss, pp, oo, dd in zip(
            x.shape[:2], np.shape(k), *[(v, v) if isinstance(v, int) else v for v in (s, p, op, d)]
        )
    ]
    if min(sizes) < 1:
        return None
    return conv_transpose_reference(x, kernel, s, p, op, d)


@pytest.mark.parametrize("dilation", [1, 2])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_conv_transpose2d_sweep_matches_reference(stride, dilation):
    """kernels 1..4 x 1..4, padding 0..2, output_padding 0..2, both modes; refusals raise."""
    rng = np.random.default_rng([stride, dilation])
    compared = refused = 0
    combos = itertools.product(KERNELS, range(3), range(3), ["correlation", "convolution"])
    for index, (kernel_shape, padding, output_padding, mode) in enumerate(combos):
        shape = INPUT_SHAPES[index % len(INPUT_SHAPES)]
        x = rng.normal(size=shape).astype(np.float32)
        k = rng.normal(size=kernel_shape)
        kwargs = dict(
            stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, mode=mode
        )
        expected = expected_or_none(x, k, stride, padding, output_padding, dilation, mode)
        if expected is None:
            with pytest.raises(ConvcliError):
                conv_transpose2d(x, k, **kwargs)
            refused += 1
            continue
        check(conv_transpose2d(x, k, **kwargs), expected, f"x{shape} k{kernel_shape} {kwargs}")
        compared += 1
    assert compared >= 60 and refused >= 20


pairs = st.tuples


@settings(max_examples=150, deadline=None)
@given(
    shape=pairs(st.integers(1, 6), st.integers(1, 6)),
    kernel_shape=pairs(st.integers(1, 4), st.integers(1, 4)),
    stride=pairs(st.integers(1, 3), st.integers(1, 3)),
    padding=pairs(st.integers(0, 2), st.integers(0, 2)),
    output_padding=pairs(st.integers(0, 2), st.integers(0, 2)),
    dilation=pairs(st.integers(1, 2), st.integers(1, 2)),
    mode=st.sampled_from(["correlation", "convolution"]),
    channels=st.sampled_from([0, 3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_conv_transpose2d_random_matches_reference(
    shape, kernel_shape, stride, padding, output_padding, dilation, mode, channels, seed
):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape + ((channels,) if channels else ())).astype(np.float32)
    k = rng.normal(size=kernel_shape)
    kwargs = dict(stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, mode=mode)
    planes = [x] if not channels else [x[:, :, c] for c in range(channels)]
    expected = [
        expected_or_none(plane, k, stride, padding, output_padding, dilation, mode) for plane in planes
    ]
    if expected[0] is None:
        with pytest.raises(ConvcliError):
            conv_transpose2d(x, k, **kwargs)
        return
    out = conv_transpose2d(x, k, **kwargs)
    if not channels:
        check(out, expected[0])
        return
    assert out.shape == expected[0].shape + (channels,)
    for c in range(channels):
        check(out[:, :, c], expected[c], f"channel {c}")


def test_three_channels_are_independent():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(3, 4, 3)).astype(np.float32)
    k = rng.normal(size=(3, 2))
    kwargs = dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2), dilation=(1, 2))
    out = conv_transpose2d(x, k, **kwargs)
    # height (3-1)*2 - 2*1 + 1*(3-1) + 1 + 1 = 6; width (4-1)*3 - 0 + 2*(2-1) + 2 + 1 = 14
    assert out.shape == (6, 14, 3)
    for c in range(3):
        check(out[:, :, c], conv_transpose_reference(x[:, :, c], k, (2, 3), (1, 0), (1, 2), (1, 2)))
        np.testing.assert_allclose(out[:, :, c], conv_transpose2d(x[:, :, c], k, **kwargs), **TOL)


@pytest.mark.parametrize(
    "shape,kernel_shape,stride,padding,output_padding,dilation",
    [
        ((3, 4), (3, 2), (2, 3), (1, 0), (1, 2), (1, 2)),
        ((5, 2), (4, 4), 3, 2, 2, 1),
        ((1, 1), (1, 1), 1, 0, 0, 1),
        ((2, 6), (2, 3), 1, (0, 1), 1, 2),
    ],
)
def test_output_shape_equals_formula(shape, kernel_shape, stride, padding, output_padding, dilation):
    """out = (in - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1."""
    out = conv_transpose2d(
        np.ones(shape),
        np.ones(kernel_shape),
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
    )
    as_pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    s, p, o, d = map(as_pair, (stride, padding, output_padding, dilation))
    assert out.shape == tuple(
        (shape[i] - 1) * s[i] - 2 * p[i] + d[i] * (kernel_shape[i] - 1) + o[i] + 1 for i in (0, 1)
    )


# ----------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "stride,dilation,output_padding",
    [
        (1, 1, 1),
        (2, 1, 2),
        (1, 2, 2),
        (2, 2, 2),
        (3, 1, 3),
        ((2, 1), 1, (1, 1)),
        (1, (1, 3), (0, 3)),
    ],
)
def test_output_padding_not_below_stride_or_dilation_raises(stride, dilation, output_padding):
    assert not output_padding_accepted(output_padding, stride, dilation)
    with pytest.raises(ConvcliError):
        conv_transpose2d(
            np.ones((3, 3)), np.ones((2, 2)), stride=stride, dilation=dilation, output_padding=output_padding
        )


@pytest.mark.parametrize(
    "stride,dilation,output_padding", [(2, 1, 1), (1, 2, 1), (3, 1, 2), (1, 3, 2), (3, 2, 2)]
)
def test_output_padding_below_stride_or_dilation_is_accepted(stride, dilation, output_padding):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    k = np.array([[1.0, -2.0], [3.0, 0.5]])
    out = conv_transpose2d(x, k, stride=stride, dilation=dilation, output_padding=output_padding)
    check(out, conv_transpose_reference(x, k, stride, 0, output_padding, dilation))


@pytest.mark.parametrize(
    "shape,kernel_shape,padding",
    [
        ((1, 1), (1, 1), 1),  # 0 - 2 + 0 + 1 = -1
        ((2, 2), (1, 1), 1),  # stride 1: 1 - 2 + 1 = 0
        ((1, 4), (2, 2), (1, 0)),  # height 0 - 2 + 1 + 1 = 0
    ],
)
def test_output_below_one_raises(shape, kernel_shape, padding):
    with pytest.raises(ConvcliError):
        conv_transpose2d(np.ones(shape), np.ones(kernel_shape), padding=padding)


# ----------------------------------------------------------- worked examples


def test_worked_example_2x2_stride2_block_layout():
    """Stride 2 with a 2x2 kernel: each input pixel writes its own 2x2 block,
    out[2i+m, 2j+n] = x[i, j] * k[m, n], no overlaps."""
    x = [[1, 2], [3, 4]]
    k = [[1, 10], [100, 1000]]
    assert conv_transpose2d(x, k, stride=2).tolist() == [
        [1, 10, 2, 20],
        [100, 1000, 200, 2000],
        [3, 30, 4, 40],
        [300, 3000, 400, 4000],
    ]
    # padding 1 crops one row/column off every side: the middle 2x2
    assert conv_transpose2d(x, k, stride=2, padding=1).tolist() == [[1000, 200], [30, 4]]
    # output_padding 1 adds a zero row and column at the bottom/right: 5x5
    out = conv_transpose2d(x, k, stride=2, output_padding=1)
    assert out.shape == (5, 5) and out[4].tolist() == [0] * 5 and out[:, 4].tolist() == [0] * 5
    # convolution mode turns the kernel: blocks [[1000, 100], [10, 1]] * x
    assert conv_transpose2d(x, k, stride=2, mode="convolution")[:2, :2].tolist() == [[1000, 100], [10, 1]]


def test_worked_example_overlap_adds_up():
    """Row [1, 2, 3], kernel [1, 1, 1], stride 1 -> length 5:
    1 at 0..2, 2 at 1..3, 3 at 2..4 -> 1, 3, 6, 5, 3; stride 2 -> length 7:
    1 at 0..2, 2 at 2..4, 3 at 4..6 -> 1, 1, 3, 2, 5, 3, 3."""
    assert conv_transpose2d([[1, 2, 3]], [[1, 1, 1]]).tolist() == [[1, 3, 6, 5, 3]]
    assert conv_transpose2d([[1, 2, 3]], [[1, 1, 1]], stride=2).tolist() == [[1, 1, 3, 2, 5, 3, 3]]
    # dilation 2, stride 1, kernel [1, 10]: x[i] at i, 10*x[i] at i+2 -> 1, 2, 13, 20, 30
    assert conv_transpose2d([[1, 2, 3]], [[1, 10]], dilation=2).tolist() == [[1, 2, 13, 20, 30]]


@pytest.mark.parametrize(
    "stride,padding,dilation", [(1, 0, 1), (2, 1, 1), (3, 2, 2), ((2, 1), (0, 1), (1, 2))]
)
def test_adjoint_of_filter2d(stride, padding, dilation):
    """<filter2d(x, k), y> == <x, conv_transpose2d(y, k)> when the transposed output has x's
    shape (checked against the reference too, so filter2d is not the only witness)."""
    rng = np.random.default_rng(3)
    k = rng.normal(size=(3, 2))
    x = rng.normal(size=(9, 8)).astype(np.float32)
    y_shape = filter2d(x, k, stride=stride, padding=padding, dilation=dilation).shape
    y = rng.normal(size=y_shape).astype(np.float32)
    s, p, d = [(v, v) if isinstance(v, int) else v for v in (stride, padding, dilation)]
    output_padding = tuple(
        x.shape[i] - tconv_output_length(y_shape[i], k.shape[i], s[i], p[i], 0, d[i]) for i in (0, 1)
    )
    t = conv_transpose2d(
        y, k, stride=stride, padding=padding, dilation=dilation, output_padding=output_padding
    )
    check(t, conv_transpose_reference(y, k, stride, padding, output_padding, dilation))
    lhs = float(np.sum(filter2d(x, k, stride=stride, padding=padding, dilation=dilation) * y))
    rhs = float(np.sum(x.astype(np.float64) * t))
    assert lhs == pytest.approx(rhs, rel=1e-4, abs=1e-4)
