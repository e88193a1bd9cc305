"""Exact receptive fields along one axis, by output phases. Pure Python (no numpy).

The receptive field of an output unit is the set of input positions its value depends on:
the positions where the gradient of that unit is non-zero in a network of the same layers
with all-ones weights. Along one axis, unit ``y`` of a layer reads

- conv and pool (kernel ``k``, stride ``s``, padding ``p``, dilation ``d``): the units
  ``y*s - p + j*d`` of its input, ``j = 0 .. k-1``;
- transposed conv: the units ``z`` with ``z*s == y + p - j*d``, ``j = 0 .. k-1`` (``y`` is
  the cropped output index; the output padding only lengthens the output).

The positions count as if the input went on without end, so that the padding is part of the
field (an output unit near a border reaches into it); on an input large enough that a unit
of the widest phase sees no border, this is exactly what the gradients show.

A stack has a rational jump ``N/D``: the field of unit ``y + D`` is the field of unit ``y``
moved by ``N`` input positions. So the first and last positions of the fields of ``D``
consecutive units (the phases) describe every unit; a transposed layer multiplies ``D`` by
its stride. :class:`Phases` keeps only the phases whose field is not empty (a transposed layer
whose stride exceeds its kernel leaves outputs that no input reaches), so a stride of 10**9
costs no more than a stride of 2. A layer reads its input's fields along an arithmetic
progression; within one phase of the input, first and last positions grow with the unit, so
the extremes over the progression are those of the first and the last tap of each phase,
found by solving a linear congruence instead of visiting the taps.

The work is bounded (:data:`WORK_LIMIT`); past it the caller falls back to :class:`Hull`, an
upper bound. Plain classes, not dataclasses: ``convcli shape`` imports this module, and
generating a dataclass's methods costs more at start-up than a whole stack computes.
"""

from __future__ import annotations

import math

# Steps of the inner loops for a whole stack: far past any real network (ResNet-18: 36;
# a four-level U-Net: 324), and about a quarter of a second at most.
WORK_LIMIT = 100_000


class Phases:
    """The fields of one layer's output units along one axis.

    ``fields[r] = (first, last)``: the first and the last input position reached by unit ``r``
    (``0 <= r < period``); unit ``r + q*period`` reaches them moved by ``q*shift``. Phases
    missing from ``fields`` depend on no input.

    >>> INPUT.field_of(7)
    (7, 7)
    """

    __slots__ = ("fields", "period", "shift")

    def __init__(self, period: int, shift: int, fields: dict[int, tuple[int, int]]):
        self.period, self.shift, self.fields = period, shift, fields

    @property
    def widest(self) -> int:
        """The widest field, ``last - first + 1``, over every unit (0 when none reads the input)."""
        return max((last - first + 1 for first, last in self.fields.values()), default=0)

    def field_of(self, unit: int) -> tuple[int, int] | None:
        """``(first, last)`` input positions of output unit ``unit``; None when it reads no input."""
        q, r = divmod(unit, self.period)
        hit = self.fields.get(r)
        return None if hit is None else (hit[0] + q * self.shift, hit[1] + q * self.shift)


INPUT = Phases(1, 1, {0: (0, 0)})


class OverBudget(Exception):
    """The exact computation would take more than :data:`WORK_LIMIT` steps."""


class Budget:
    def __init__(self, limit: int = WORK_LIMIT):
        self.left = limit

    def spend(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise OverBudget


def _reach(source: Phases, first_unit: int, step: int, count: int, budget: Budget) -> tuple[int, int] | None:
    """``(first, last)`` over the units ``first_unit + i*step`` (``i < count``, ``step >= 1``) of
    ``source``, ignoring those that read no input; None when none reads any."""
    period, shift, fields = source.period, source.shift, source.fields
    lo = hi = None
    if count <= len(fields):  # few taps: visit them
        budget.spend(4 + count)  # 4: the call itself costs about as much as four taps
        for unit in range(first_unit, first_unit + count * step, step):  # field_of, inlined: hot
            q, r = divmod(unit, period)
            hit = fields.get(r)
            if hit is not None:
                low, high = hit[0] + q * shift, hit[1] + q * shift
                if lo is None or low < lo:
                    lo = low
                if hi is None or high > hi:
                    hi = high
        return None if lo is None else (lo, hi)
    # Per phase r of the source: the taps with unit = r (mod period) are i = i0 + t*cycle.
    budget.spend(4 + len(fields))
    g = math.gcd(step, period)
    cycle = period // g
    inverse = pow(step // g, -1, cycle) if cycle > 1 else 0
    for r, (first, last) in fields.items():
        if (r - first_unit) % g:
            continue
        i0 = (r - first_unit) // g * inverse % cycle
        if i0 >= count:
            continue
        i1 = i0 + (count - 1 - i0) // cycle * cycle
        low = first + (first_unit + i0 * step - r) // period * shift
        high = last + (first_unit + i1 * step - r) // period * shift
        lo = low if lo is None else min(lo, low)
        hi = high if hi is None else max(hi, high)
    return None if lo is None else (lo, hi)


def _candidates(period: int, residues, taps: int, offset, budget: Budget):
    """The output phases (mod ``period``) worth computing: all of them when that is fewer than
    ``offset(r, j)`` over the source's phases ``r`` and the first ``taps`` taps ``j``."""
    residues = list(residues)
    if period <= len(residues) * taps:
        budget.spend(period)
        return range(period)
    budget.spend(len(residues) * taps)
    found = set()
    for r in residues:
        for j in range(taps):
            y = offset(r, j)
            if y is not None:
                found.add(y % period)
    return sorted(found)


def conv_phases(
    source: Phases, kernel: int, stride: int, pad_before: int, dilation: int, budget: Budget
) -> Phases:
    """The fields after a convolution or a pooling (``y`` reads ``y*stride - pad_before + j*dilation``).

    >>> conv_phases(INPUT, 3, 2, 1, 1, Budget()).field_of(0)  # the window -1, 0, 1
    (-1, 1)
    """
    g = math.gcd(stride, source.period)
    period = source.period // g
    shift = source.shift * (stride // g)
    taps = min(kernel, source.period // math.gcd(dilation, source.period))
    inverse = pow(stride // g, -1, period) if period > 1 else 0

    def offset(r, j):  # y*stride = r + pad_before - j*dilation (mod source.period)
        c = r + pad_before - j * dilation
        return None if c % g else c // g * inverse

    fields = {}
    for y in _candidates(period, source.fields, taps, offset, budget):
        hit = _reach(source, y * stride - pad_before, dilation, kernel, budget)
        if hit is not None:
            fields[y] = hit
    return Phases(period, shift, fields)


def tconv_phases(
    source: Phases, kernel: int, stride: int, padding: int, dilation: int, budget: Budget
) -> Phases:
    """The fields after a transposed convolution (``y`` reads ``z`` where
    ``z*stride == y + padding - j*dilation``).

    >>> phases = tconv_phases(INPUT, 4, 2, 1, 1, Budget())  # DCGAN's upsampling
    >>> phases.period, phases.shift, phases.fields
    (2, 1, {0: (-1, 0), 1: (0, 1)})
    """
    period = source.period * stride
    g = math.gcd(dilation, stride)
    cycle = stride // g  # taps j that land on one output phase are cycle apart
    inverse = pow(dilation // g, -1, cycle) if cycle > 1 else 0
    taps = min(kernel, period // math.gcd(dilation, period))

    def offset(r, j):
        return r * stride - padding + j * dilation

    fields = {}
    for y in _candidates(period, source.fields, taps, offset, budget):
        if (y + padding) % g:
            continue
        j0 = (y + padding) // g * inverse % cycle
        if j0 >= kernel:
            continue
        count = (kernel - 1 - j0) // cycle + 1
        last_tap = j0 + (count - 1) * cycle
        hit = _reach(source, (y + padding - last_tap * dilation) // stride, dilation // g, count, budget)
        if hit is not None:
            fields[y] = hit
    return Phases(period, source.shift, fields)


class Hull:
    """Bounds valid for every unit: unit ``y``'s field lies within
    ``(y*jump + low) / scale .. (y*jump + high) / scale``, all integers (so that ``shape`` needs no
    ``fractions``, whose import costs more than the arithmetic).

    The interval form of Araujo, Norris & Sim's recurrences (Distill 2019), exact: ``start`` is
    their centre of the first unit's field, and ``bound`` an upper bound of the widest field,
    reached by every stack without a transposed layer.

    >>> stem = Hull().conv(7, 2, 3).conv(3, 2, 1)  # the ResNet stem
    >>> stem.jump_ratio, stem.start_ratio, stem.bound
    ((4, 1), (0, 1), 11)
    >>> Hull().tconv(4, 2, 1).jump_ratio  # DCGAN's upsampling
    (1, 2)
    """

    __slots__ = ("high", "jump", "low", "scale")

    def __init__(self, jump: int = 1, low: int = 0, high: int = 0, scale: int = 1):
        self.jump, self.low, self.high, self.scale = jump, low, high, scale

    def conv(self, extent: int, stride: int, pad_before: int) -> Hull:
        """After a convolution or pooling whose dilated window spans ``extent``."""
        j = self.jump
        return Hull(
            j * stride, self.low - pad_before * j, self.high + (extent - 1 - pad_before) * j, self.scale
        )

    def tconv(self, extent: int, stride: int, padding: int) -> Hull:
        """After a transposed convolution whose dilated kernel spans ``extent``."""
        j = self.jump  # the new jump is j / stride: every value is rescaled by stride
        low = self.low * stride + (padding - extent + 1) * j
        high = self.high * stride + padding * j
        g = math.gcd(j, low, high, self.scale * stride)
        return Hull(j // g, low // g, high // g, self.scale * stride // g)

    @property
    def jump_ratio(self) -> tuple[int, int]:
        """The jump as ``(numerator, denominator)``, in lowest terms."""
        return lowest_terms(self.jump, self.scale)

    @property
    def start_ratio(self) -> tuple[int, int]:
        """The start, ``(low + high) / 2``, as ``(numerator, denominator)`` in lowest terms."""
        return lowest_terms(self.low + self.high, 2 * self.scale)

    @property
    def bound(self) -> int:
        return (self.high - self.low) // self.scale + 1

    def field_of(self, unit: int) -> tuple[int, int]:
        """The whole input positions unit ``unit``'s field may reach."""
        return -(-(unit * self.jump + self.low) // self.scale), (unit * self.jump + self.high) // self.scale


def lowest_terms(numerator: int, denominator: int) -> tuple[int, int]:
    """``numerator / denominator`` reduced (the denominator stays positive when given positive)."""
    g = math.gcd(numerator, denominator)
    return numerator // g, denominator // g
