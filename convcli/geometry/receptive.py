"""Layer stacks: output sizes, receptive fields, jumps and starts, explained.

Pure Python (no numpy) so that ``convcli shape`` starts instantly.

The receptive field of an output unit is the set of input positions whose gradient is not
zero in a network of the same layers with all-ones weights; the field reported per axis is
the widest span ``last - first + 1`` over every output unit, in whole pixels, computed
exactly by output phases (:mod:`convcli.geometry.phases`). The positions count as if the
input went on without end: the padding is part of a field, as in Araujo, Norris & Sim,
"Computing Receptive Fields of Convolutional Neural Networks" (Distill 2019).

The jump (input positions per output unit) and the start (the centre of the first unit's
field) follow their recurrences, exact in rationals. Per axis, with the effective kernel
``k' = dilation*(k - 1) + 1``::

    conv, pool:  j_out = j * stride    c_out = c + ((k' - 1) / 2 - pad_before) * j
    transposed:  j_out = j / stride    c_out = c + (padding - (k' - 1) / 2) / stride * j

starting from ``j = 1, c = 0`` on the input (coordinate 0 is the centre of the first pixel).
After a transposed layer the jump is a fraction (1/2 after a stride of 2): units ``y`` and
``y + 2`` have fields one input pixel apart, and the phases in between may differ in width
and not be centred on ``c + y*j`` (that is the centre of the hull of the input positions
each unit's window covers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import ConvcliError
from .phases import INPUT, Budget, Hull, OverBudget, Phases, conv_phases, lowest_terms, tconv_phases
from .sizes import (
    MAX_VALUE,
    Pair,
    check_output_padding,
    check_pool_padding,
    conv_output_length,
    format_pair,
    format_size,
    parse_pair,
    pool_output_length,
    quote,
    same_padding,
    tconv_output_length,
)

OPS = ("conv", "pool", "tconv")
_KEYS = {
    "conv": ("k", "s", "p", "d"),
    "pool": ("k", "s", "p", "d", "ceil"),
    "tconv": ("k", "s", "p", "op", "d"),
}


@dataclass
class Layer:
    op: str
    kernel: Pair
    stride: Pair
    padding: Pair | str  # (height, width), or "same" (conv only)
    dilation: Pair = (1, 1)
    output_padding: Pair = (0, 0)
    ceil_mode: bool = False
    text: str = ""

    def describe(self) -> str:
        parts = [f"k={format_pair(self.kernel)}"]
        default_stride = self.kernel if self.op == "pool" else (1, 1)
        if self.stride != default_stride:
            parts.append(f"s={format_pair(self.stride)}")
        if self.padding != (0, 0):
            parts.append(f"p={self.padding if isinstance(self.padding, str) else format_pair(self.padding)}")
        if self.op == "tconv" and self.output_padding != (0, 0):
            parts.append(f"op={format_pair(self.output_padding)}")
        if self.dilation != (1, 1):
            parts.append(f"d={format_pair(self.dilation)}")
        if self.ceil_mode:
            parts.append("ceil")
        return f"{self.op}:" + ",".join(parts)


@dataclass
class Axis:
    """One axis of one layer's result.

    ``field`` is the widest receptive field in whole input pixels, exact when ``exact``
    (else an upper bound: the exact computation was over its work limit); ``phases`` gives
    every unit's field (None when not exact), ``hull`` the bounds and the start.
    """

    size: int
    field: int
    pad_before: int
    pad_after: int
    formula: str
    exact: bool = True
    phases: Phases | None = None
    hull: Hull = field(default_factory=Hull)  # dataclasses.field: the annotation `field: int` binds no name

    @property
    def jump(self):
        """Input positions between neighbouring output units, a :class:`fractions.Fraction`."""
        from fractions import Fraction  # only here: shape's table needs none (see Hull)

        return Fraction(*self.hull.jump_ratio)

    @property
    def start(self):
        """The centre of the first unit's field (its windows' span), a :class:`fractions.Fraction`."""
        from fractions import Fraction

        return Fraction(*self.hull.start_ratio)

    def field_of(self, unit: int) -> tuple[int, int] | None:
        """The first and last input positions of output unit ``unit`` along this axis (None when it
        reads no input); outside ``0 .. input - 1`` they are in the padding. When the field is
        not exact, the hull's bounds.

        >>> [result] = run_stack((9, 9), [parse_layer("conv:k=3,s=2,p=1", 1)])
        >>> result.width.field_of(0), result.width.field_of(4)
        ((-1, 1), (7, 9))
        """
        if self.phases is not None:
            return self.phases.field_of(unit)
        return self.hull.field_of(unit)


@dataclass
class LayerResult:
    layer: Layer
    height: Axis
    width: Axis
    notes: list[str] = field(default_factory=list)

    @property
    def output_size(self) -> Pair:
        return self.height.size, self.width.size

    @property
    def sides(self) -> tuple[int, int, int, int]:
        return (self.height.pad_before, self.height.pad_after, self.width.pad_before, self.width.pad_after)


def parse_layer(text: str, position: int, token: str | None = None) -> Layer:
    """``conv:k=3,s=1,p=0,d=1``, ``pool:k=2,s=2,p=0,ceil``, ``tconv:k=4,s=2,p=1,op=0,d=1``; errors
    name ``token`` (the command line's word, as ``4*conv:k=3``) when given, else ``text``."""
    token = (text if token is None else token).strip()
    where = f"layer {position} ({_short(token)})"
    op, _, rest = text.strip().partition(":")
    op = op.strip().lower()
    if op not in OPS:
        raise ConvcliError(f"{where}: unknown layer type {op!r}; use conv, pool or tconv")
    values: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if key not in _KEYS[op]:
            raise ConvcliError(f"{where}: unknown setting {key!r} for {op} (known: {', '.join(_KEYS[op])})")
        if key in values:
            raise ConvcliError(f"{where}: {key} is given twice")
        if key == "ceil":
            if sep and value.strip().lower() not in ("1", "true", "yes", "on"):
                if value.strip().lower() in ("0", "false", "no", "off"):
                    continue
                raise ConvcliError(f"{where}: ceil takes no value (or true/false), got {value!r}")
            values["ceil"] = "1"
            continue
        if not sep or not value.strip():
            raise ConvcliError(f"{where}: {key} needs a value, as {key}=3 or {key}=3x2")
        values[key] = value.strip()
    if "k" not in values:
        raise ConvcliError(f"{where}: the kernel size k= is required")

    def pair(key: str, minimum: int, default: Pair) -> Pair:
        if key not in values:
            return default
        try:
            return parse_pair(values[key], key, minimum=minimum)
        except ConvcliError as exc:
            raise ConvcliError(f"{where}: {exc}") from None

    kernel = pair("k", 1, (1, 1))
    stride = pair("s", 1, kernel if op == "pool" else (1, 1))
    padding: Pair | str
    if op == "conv" and values.get("p", "").lower() in ("same", "valid"):
        padding = "same" if values["p"].lower() == "same" else (0, 0)
    else:
        padding = pair("p", 0, (0, 0))
    return Layer(
        op,
        kernel,
        stride,
        padding,
        pair("d", 1, (1, 1)),
        pair("op", 0, (0, 0)),
        "ceil" in values,
        token,
    )


# Layers in one stack, repeats counted: far past any real network (ResNet-152 has 155), and a
# bound on the table and the work (a repeat count of 10**12 is refused, not attempted).
MAX_LAYERS = 1000
# The largest numerator or denominator of a jump or a start (no network comes near; a stack of
# strides of 2^31 cropped back by their padding would reach thousands of digits).
MAX_RATIO = 2**256
_REPEAT = re.compile(r"\s*(\d+)\s*[*xX×]\s*(?=[A-Za-z])")


def parse_layers(texts: list[str]) -> list[Layer]:
    """The layers of a stack, a token ``N*LAYER`` (or ``NxLAYER``, which needs no quotes in
    zsh) giving ``N`` copies of ``LAYER``. Errors name the layer's position and its token.

    >>> [layer.describe() for layer in parse_layers(["conv:k=7,s=2,p=3", "2*conv:k=3,p=1"])]
    ['conv:k=7,s=2,p=3', 'conv:k=3,p=1', 'conv:k=3,p=1']
    >>> parse_layers(["1000000000000*conv:k=3"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    convcli.errors.ConvcliError: layer 1 (1000000000000*conv:k=3): a repeat count is 1 to 1000, got ...
    """
    layers: list[Layer] = []
    for text in texts:
        position = len(layers) + 1
        count, body = 1, text
        match = _REPEAT.match(text)
        if match:
            digits = match.group(1).lstrip("0")
            where = f"layer {position} ({_short(text.strip())})"
            if not digits or len(digits) > len(str(MAX_LAYERS)) or int(digits) > MAX_LAYERS:
                raise ConvcliError(
                    f"{where}: a repeat count is 1 to {MAX_LAYERS}, got {quote(match.group(1), 20)}"
                )
            count, body = int(digits), text[match.end() :]
        if len(layers) + count > MAX_LAYERS:
            raise ConvcliError(
                f"layer {position} ({_short(text.strip())}): a stack has at most {MAX_LAYERS} layers, "
                f"repeats counted; this one would have {len(layers) + count}"
            )
        layer = parse_layer(body, position, token=text)
        layers += [layer] * count
    return layers


def _short(text: str, limit: int = 60) -> str:
    """A layer's text as error messages show it: cut after ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _axis(layer: Layer, axis: int, length: int, state: _AxisState, name: str) -> Axis:
    k, s, d = layer.kernel[axis], layer.stride[axis], layer.dilation[axis]
    k_eff = d * (k - 1) + 1
    if layer.op == "conv":
        if layer.padding == "same":
            before, after = same_padding(length, k, s, d)
        else:
            before = after = layer.padding[axis]
        size = conv_output_length(length, k, s, before, after, d)
        pads = f"2*{before}" if before == after else f"{before} + {after}"
        formula = f"{name}: floor(({length} + {pads} - {d}*({k}-1) - 1) / {s}) + 1 = {size}"
    elif layer.op == "pool":
        before = after = layer.padding[axis]
        size = pool_output_length(length, k, s, before, d, layer.ceil_mode)
        span = length + 2 * before - d * (k - 1) - 1
        if layer.ceil_mode:
            raw = (span + s - 1) // s + 1
            formula = f"{name}: ceil(({length} + 2*{before} - {d}*({k}-1) - 1) / {s}) + 1 = {raw}"
            if raw != size:
                formula += (
                    f"; the last window would start at {(raw - 1) * s} >= {length} + {before}, "
                    f"in the right padding, so it is dropped: {size}"
                )
        else:
            formula = f"{name}: floor(({length} + 2*{before} - {d}*({k}-1) - 1) / {s}) + 1 = {size}"
    else:  # transposed convolution
        before = after = layer.padding[axis]
        op = layer.output_padding[axis]
        size = tconv_output_length(length, k, s, before, op, d)
        formula = f"{name}: ({length} - 1)*{s} - 2*{before} + {d}*({k}-1) + {op} + 1 = {size}"
    transposed = layer.op == "tconv"
    hull = state.hull.tconv(k_eff, s, before) if transposed else state.hull.conv(k_eff, s, before)
    phases = state.phases
    if phases is not None:
        key = (id(phases), transposed, k, s, before, d)  # a square layer: the other axis's result
        if key in state.shared.memo:
            phases = state.shared.memo[key]
        else:
            try:
                step = tconv_phases if transposed else conv_phases
                phases = step(phases, k, s, before, d, state.shared.budget)
            except OverBudget:
                phases = None
            state.shared.memo[key] = phases
    state.phases, state.hull = phases, hull
    exact = phases is not None
    return Axis(
        size,
        phases.widest if exact else hull.bound,
        before,
        after,
        formula,
        exact,
        phases,
        hull,
    )


class _Shared:
    """What both axes of a stack share: the work budget, and the phases computed so far (by the
    source's identity and the layer's values along the axis), which a square stack computes
    once for both axes. The sources stay alive in the axes' states and results, so an id is
    never reused while its entry can be looked up."""

    def __init__(self):
        self.budget = Budget()
        self.memo: dict = {}


class _AxisState:
    """What one axis carries from layer to layer: the exact fields while they are affordable."""

    def __init__(self, shared: _Shared):
        self.shared = shared
        self.phases: Phases | None = INPUT
        self.hull = Hull()


def run_stack(input_hw: Pair, layers: list[Layer]) -> list[LayerResult]:
    """Every layer's output size, receptive field, jump and start; raises on an impossible layer.

    >>> results = run_stack((64, 64), [parse_layer("conv:k=3,p=1", 1), parse_layer("tconv:k=2,s=2", 2)])
    >>> last = results[-1].width
    >>> last.size, last.field, last.jump, last.start
    (128, 3, Fraction(1, 2), Fraction(-1, 4))
    """
    results = []
    size = input_hw
    shared = _Shared()
    states = (_AxisState(shared), _AxisState(shared))  # height, width
    for position, layer in enumerate(layers, start=1):
        where = f"layer {position} ({_short(layer.text or layer.describe())})"
        if layer.op == "pool":
            check_pool_padding(layer.kernel, layer.padding, where, layer.dilation)
        if layer.op == "tconv":
            check_output_padding(layer.output_padding, layer.stride, layer.dilation, where)
        axes = [_axis(layer, i, size[i], states[i], name) for i, name in ((0, "height"), (1, "width"))]
        if min(a.size for a in axes) < 1:
            raise ConvcliError(
                f"{where}: the output would be {max(axes[1].size, 0)}x{max(axes[0].size, 0)} from a "
                f"{format_size(size)} input; the (dilated) window must fit the padded input"
            )
        if max(a.size for a in axes) > MAX_VALUE:
            raise ConvcliError(
                f"{where}: the output would be {format_size((axes[0].size, axes[1].size))}, over "
                f"{MAX_VALUE:,} (2^31 - 1) on a side"
            )
        if any(
            max(abs(v) for v in (a.hull.jump, a.hull.low, a.hull.high, a.hull.scale)) > MAX_RATIO
            for a in axes
        ):
            raise ConvcliError(
                f"{where}: the jump or the start would need numbers over 2^256 to write exactly (strides "
                "multiplied through the stack, the padding cropping the sizes back)"
            )
        results.append(LayerResult(layer, axes[0], axes[1]))
        size = (axes[0].size, axes[1].size)
    return results


def number(ratio: tuple[int, int]) -> int | float:
    """JSON-friendly: a ``(numerator, denominator)`` as an int when whole, else a float."""
    numerator, denominator = ratio
    return numerator // denominator if numerator % denominator == 0 else round(numerator / denominator, 6)


def exact_text(ratio: tuple[int, int]) -> str:
    """A jump or a start as the table prints it, exactly: ``2``, ``1/2``, ``-3/4``.

    >>> exact_text((1, 2)), exact_text((4, 1)), exact_text((-6, 8))
    ('1/2', '4', '-3/4')
    """
    numerator, denominator = lowest_terms(*ratio)
    return str(numerator) if denominator == 1 else f"{numerator}/{denominator}"


def to_json(input_hw: Pair, results: list[LayerResult]) -> dict:
    layers = []
    for result in results:
        layer, w, h = result.layer, result.width, result.height
        top, bottom, left, right = result.sides
        entry = {
            "op": layer.op,
            "spec": layer.describe(),
            "kernel": {"width": layer.kernel[1], "height": layer.kernel[0]},
            "stride": {"x": layer.stride[1], "y": layer.stride[0]},
            "padding": {"top": top, "bottom": bottom, "left": left, "right": right},
            "dilation": {"x": layer.dilation[1], "y": layer.dilation[0]},
        }
        if layer.op == "pool":
            entry["ceil_mode"] = layer.ceil_mode
        if layer.op == "tconv":
            entry["output_padding"] = {"x": layer.output_padding[1], "y": layer.output_padding[0]}
        entry.update(
            {
                "output_size": {"width": result.width.size, "height": result.height.size},
                "receptive_field": {"width": result.width.field, "height": result.height.field},
                "receptive_field_exact": result.width.exact and result.height.exact,
                "jump": {"x": number(w.hull.jump_ratio), "y": number(h.hull.jump_ratio)},
                "jump_fraction": {"x": exact_text(w.hull.jump_ratio), "y": exact_text(h.hull.jump_ratio)},
                "start": {"x": number(w.hull.start_ratio), "y": number(h.hull.start_ratio)},
                "start_fraction": {"x": exact_text(w.hull.start_ratio), "y": exact_text(h.hull.start_ratio)},
            }
        )
        layers.append(entry)
    final = results[-1].output_size if results else input_hw
    return {
        "input_size": {"width": input_hw[1], "height": input_hw[0]},
        "layers": layers,
        "output_size": {"width": final[1], "height": final[0]},
    }


def parse_size(text: str) -> Pair | None:
    """``WIDTHxHEIGHT`` or ``N``; None when the text is not a size (it may be a file)."""
    if re.fullmatch(r"\s*\d+\s*(?:[xX×]\s*\d+\s*)?", text):
        return parse_pair(text, "SIZE", minimum=1)
    return None
