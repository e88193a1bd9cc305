"""Receptive fields against an oracle built from the definition.

The oracle knows nothing of phases or recurrences: for each layer it builds, by explicit loops
over PyTorch's definition of the layer, the boolean matrix "output unit y reads input unit z"
(only real units: padding reads nothing), multiplies the matrices through the stack, and takes
per output unit the span ``last - first + 1`` of the input positions it depends on, which is
where the gradient of an all-ones network is not zero. The widest span over every unit must be
convcli's number. The input is taken long enough that every phase has a unit clear of the
borders (the field convcli reports counts the padding as positions, as if the input went on).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse as sparse
from hypothesis import given, settings
from hypothesis import strategies as st

from convcli.errors import ConvcliError
from convcli.geometry.receptive import parse_layer, run_stack


def pool_length(n, k, s, p, d, ceil_mode):
    """PyTorch's pooling output length (the docs of MaxPool2d, with the ceil_mode rule that a
    window starting in the right padding is dropped)."""
    top = n + 2 * p - d * (k - 1) - 1
    out = (-(-top // s) if ceil_mode else top // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def layer_matrix(op, n, k, s, p, d, extra):
    """(matrix of reads, output length) for one layer along one axis, from the definition.
    ``extra`` is ceil_mode for a pool and the output padding for a transposed conv."""
    rows, cols = [], []
    if op in ("conv", "pool"):
        if op == "conv":
            out = (n + 2 * p - d * (k - 1) - 1) // s + 1
        else:
            out = pool_length(n, k, s, p, d, extra)
        for y in range(out):
            for j in range(k):
                z = y * s - p + j * d  # the tap j of window y, in input coordinates
                if 0 <= z < n:
                    rows.append(y)
                    cols.append(z)
    else:  # transposed: input z scatters kernel tap j to full output z*s + j*d, cropped by p
        out = (n - 1) * s - 2 * p + d * (k - 1) + extra + 1
        for z in range(n):
            for j in range(k):
                y = z * s + j * d - p
                if 0 <= y < out:
                    rows.append(y)
                    cols.append(z)
    data = np.ones(len(rows), dtype=np.int64)
    return sparse.csr_matrix((data, (rows, cols)), shape=(out, n)), out


def oracle_widest(layers, n):
    """The widest span, over every output unit, of the input positions it depends on; layers
    are (op, k, s, p, d, extra) along one axis, on an input of length n."""
    reads = sparse.identity(n, dtype=np.int64, format="csr")
    length = n
    for op, k, s, p, d, extra in layers:
        matrix, length = layer_matrix(op, length, k, s, p, d, extra)
        assert length >= 1
        reads = (matrix @ reads).tocsr()
        reads.data[:] = 1  # keep it boolean
    widest = 0
    for y in range(reads.shape[0]):
        hit = reads.indices[reads.indptr[y] : reads.indptr[y + 1]]
        if hit.size:
            widest = max(widest, int(hit.max() - hit.min() + 1))
    return widest


def spec(op, k, s, p, d, extra):
    text = f"{op}:k={k},s={s},p={p},d={d}"
    if op == "pool" and extra:
        text += ",ceil"
    if op == "tconv":
        text += f",op={extra}"
    return text


def safe_length(layers):
    """An input long enough for every phase to have a unit clear of the borders: a crude upper
    bound of any field (each layer's window and padding times the strides before it), twice,
    plus the product of the strides."""
    bound, scale, strides = 0, 1, 1
    for op, k, s, p, d, _ in layers:
        bound += (d * (k - 1) + 2 * p + 2) * scale
        if op != "tconv":
            scale *= s
        strides *= s
    return 2 * bound + 2 * strides + 8


def convcli_widest(layers, n):
    results = run_stack((n, n), [parse_layer(spec(*layer), i) for i, layer in enumerate(layers, 1)])
    return results[-1].width


def stack_layer():
    conv = st.tuples(
        st.just("conv"),
        st.integers(1, 4),
        st.integers(1, 3),
        st.integers(0, 2),
        st.integers(1, 3),
        st.just(0),
    )
    pool = st.integers(1, 4).flatmap(
        lambda k: st.tuples(
            st.just("pool"),
            st.just(k),
            st.integers(1, 3),
            st.integers(0, k // 2),
            st.integers(1, 2),
            st.booleans(),
        )
    )
    tconv = st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(0, 2), st.integers(1, 3)).flatmap(
        lambda t: st.tuples(st.just("tconv"), *(st.just(v) for v in t), st.integers(0, max(t[1], t[3]) - 1))
    )
    return st.one_of(conv, pool, tconv)


@settings(max_examples=250, deadline=None)
@given(st.lists(stack_layer(), min_size=1, max_size=4))
def test_widest_field_matches_the_definition(layers):
    n = safe_length(layers)
    try:
        axis = convcli_widest(layers, n)
    except ConvcliError:
        return  # a stack that cannot run (a tconv's padding cropping all): nothing to compare
    assert axis.exact
    assert axis.field == oracle_widest(layers, n), [spec(*layer) for layer in layers]


UNET = [  # two levels down, two up: the small U-Net (the old recurrence said 24)
    ("conv", 3, 1, 1, 1, 0),
    ("pool", 2, 2, 0, 1, False),
    ("conv", 3, 1, 1, 1, 0),
    ("pool", 2, 2, 0, 1, False),
    ("conv", 3, 1, 1, 1, 0),
    ("tconv", 2, 2, 0, 1, 0),
    ("conv", 3, 1, 1, 1, 0),
    ("tconv", 2, 2, 0, 1, 0),
    ("conv", 3, 1, 1, 1, 0),
]
RESNET_STEM = [("conv", 7, 2, 3, 1, 0), ("pool", 3, 2, 1, 1, False)]


@pytest.mark.parametrize(
    "layers, widest, jump",
    [(UNET, 26, Fraction(1)), (RESNET_STEM, 11, Fraction(4))],
    ids=["unet", "resnet-stem"],
)
def test_known_stacks(layers, widest, jump):
    n = 64
    assert oracle_widest(layers, n) == widest  # the oracle agrees with the worked number
    axis = convcli_widest(layers, n)
    assert (axis.field, axis.jump, axis.exact) == (widest, jump, True)


def test_fields_are_whole_pixels_and_jump_a_fraction_after_a_transposed_layer():
    layers = [("conv", 3, 2, 1, 1, 0), ("tconv", 3, 2, 1, 1, 1), ("tconv", 4, 3, 1, 2, 0)]
    axis = convcli_widest(layers, 40)
    assert isinstance(axis.field, int) and axis.field == oracle_widest(layers, 200)
    assert axis.jump == Fraction(1, 3)


def test_every_units_field_is_the_definitions():
    """Not only the widest: each unit's first and last position, phase by phase."""
    layers = [("conv", 3, 1, 1, 1, 0), ("pool", 2, 2, 0, 1, False), ("tconv", 3, 2, 1, 2, 1)]
    n = 60
    reads = sparse.identity(n, dtype=np.int64, format="csr")
    length = n
    for op, k, s, p, d, extra in layers:
        matrix, length = layer_matrix(op, length, k, s, p, d, extra)
        reads = (matrix @ reads).tocsr()
    axis = convcli_widest(layers, n)
    for y in range(10, length - 10):  # clear of the borders
        hit = reads.indices[reads.indptr[y] : reads.indptr[y + 1]]
        expected = (int(hit.min()), int(hit.max())) if hit.size else None
        assert axis.field_of(y) == expected, y


def test_non_square_layers_keep_the_axes_apart():
    layers_w = [("conv", 5, 2, 1, 1, 0), ("tconv", 2, 2, 0, 1, 0)]
    layers_h = [("conv", 3, 1, 0, 2, 0), ("tconv", 3, 3, 0, 1, 0)]
    specs = ["conv:k=5x3,s=2x1,p=1x0,d=1x2", "tconv:k=2x3,s=2x3"]
    [_, last] = run_stack((80, 80), [parse_layer(text, i) for i, text in enumerate(specs, 1)])
    assert last.width.field == oracle_widest(layers_w, 80)
    assert last.height.field == oracle_widest(layers_h, 80)
    assert (last.width.jump, last.height.jump) == (Fraction(1), Fraction(1, 3))


def test_huge_strides_answer_by_phases():
    """A transposed stride of 10**9 leaves 3 non-empty phases of 10**9: computed, not visited."""
    [tconv, conv] = run_stack((2, 2), [parse_layer("tconv:k=3,s=1000000000", 1), parse_layer("conv:k=5", 2)])
    assert (tconv.width.field, tconv.width.jump) == (1, Fraction(1, 10**9))
    assert conv.width.exact and conv.width.field == 1  # 5 neighbours reach one input at most
    small = [("tconv", 3, 3, 0, 1, 0), ("conv", 5, 1, 0, 1, 0)]  # a stride of 3: three inputs
    assert convcli_widest(small, 20).field == oracle_widest(small, 20) == 3


def test_past_the_work_limit_an_upper_bound_says_so():
    layers = [parse_layer("tconv:k=2000000,s=1000000", 1), parse_layer("conv:k=1000000", 2)]
    [_, last] = run_stack((5, 5), layers)
    assert not last.width.exact
    # the bound: (k - 1)/s + 1 inputs under one tconv output, a million outputs apart
    assert last.width.field == math.floor(Fraction(1999999 + 999999, 1000000)) + 1


def unbounded_sets(layers, unit):
    """The input positions output ``unit`` reads, by explicit sets through the layers (last to
    first), the padding counted as positions: the field with no border. Layers are
    (op, k, s, p, d, extra) along one axis."""
    units = {unit}
    for op, k, s, p, d, _ in reversed(layers):
        if op == "tconv":
            units = {(y + p - j * d) // s for y in units for j in range(k) if (y + p - j * d) % s == 0}
        else:
            units = {y * s - p + j * d for y in units for j in range(k)}
    return units


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["conv", "tconv"]),
            st.integers(1, 12),
            st.integers(1, 9),
            st.integers(0, 4),
            st.integers(1, 6),
            st.just(0),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_each_units_field_with_large_kernels_strides_and_dilations(layers):
    """Larger values than the matrices afford: kernels over the phase count (the congruence path),
    strides and dilations sharing factors. Every unit over two periods of the stack's phases."""
    specs = [f"{op}:k={k},s={s},p={p},d={d}" for op, k, s, p, d, _ in layers]
    try:
        [*_, last] = run_stack((100000, 100000), [parse_layer(text, i) for i, text in enumerate(specs, 1)])
    except ConvcliError:
        return
    axis = last.width
    assert axis.exact
    period = 1
    for op, _, s, *_ in layers:
        period *= s if op == "tconv" else 1
    widest = 0
    for unit in range(-3, 2 * period + 3):
        hit = unbounded_sets(layers, unit)
        assert axis.field_of(unit) == ((min(hit), max(hit)) if hit else None), (specs, unit)
        widest = max(widest, max(hit) - min(hit) + 1 if hit else 0)
    assert axis.field == widest
