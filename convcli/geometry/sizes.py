"""Output-size arithmetic for convolution, pooling and transposed convolution.

Pure Python on purpose: ``convcli shape`` imports this module and nothing
heavy, so it starts instantly.  Every formula is PyTorch's.

Conventions: in the library a pair is ``(height, width)`` as in numpy and
PyTorch; on the command line a pair is written ``WxH`` (width first, as image
sizes are written) and :func:`parse_pair` swaps it into ``(height, width)``.
"""

from __future__ import annotations

import re

from ..errors import ConvcliError

Pair = tuple[int, int]
# (top, bottom, left, right), the order in which the sides are reported.
Sides = tuple[int, int, int, int]

_PAIR_RE = re.compile(r"^\s*(\d+)\s*(?:[xX×]\s*(\d+)\s*)?$")


def parse_pair(text: str, option: str, *, minimum: int = 0) -> Pair:
    """Parse ``N`` or ``WxH`` into ``(height, width)``.

    >>> parse_pair("2x1", "--stride")
    (1, 2)
    >>> parse_pair("3", "--kernel")
    (3, 3)
    """
    match = _PAIR_RE.match(str(text))
    if not match:
        raise ConvcliError(
            f"{option}: expected N or WIDTHxHEIGHT (for example 3 or 2x1), got {text!r}"
        )
    width = int(match.group(1))
    height = int(match.group(2)) if match.group(2) is not None else width
    if width < minimum or height < minimum:
        raise ConvcliError(f"{option}: values must be at least {minimum}, got {text!r}")
    return height, width


def as_pair(value: int | tuple[int, int] | list[int], name: str, *, minimum: int = 0) -> Pair:
    """Normalise a library argument (int or ``(height, width)``) into a pair."""
    if isinstance(value, bool):
        raise ConvcliError(f"{name}: expected an integer or a (height, width) pair, got {value!r}")
    if isinstance(value, int):
        pair = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        pair = (int(value[0]), int(value[1]))
    else:
        raise ConvcliError(f"{name}: expected an integer or a (height, width) pair, got {value!r}")
    if min(pair) < minimum:
        raise ConvcliError(f"{name} must be at least {minimum}, got {format_pair(pair)}")
    return pair


def format_pair(pair: Pair) -> str:
    """``(height, width)`` -> ``"WxH"``, or ``"N"`` when both sides agree."""
    height, width = pair
    return str(height) if height == width else f"{width}x{height}"


def format_size(pair: Pair) -> str:
    """``(height, width)`` -> ``"WIDTHxHEIGHT"`` always, as image sizes are written."""
    return f"{pair[1]}x{pair[0]}"


def size_json(pair: Pair) -> dict[str, int]:
    return {"width": pair[1], "height": pair[0]}


def pair_json(pair: Pair) -> dict[str, int]:
    """A ``(height, width)`` pair as ``{"x": width, "y": height}`` (stride, dilation...)."""
    return {"x": pair[1], "y": pair[0]}


def sides_json(sides: Sides) -> dict[str, int]:
    top, bottom, left, right = sides
    return {"top": top, "bottom": bottom, "left": left, "right": right}


# ---------------------------------------------------------------- convolution


def conv_output_length(length: int, kernel: int, stride: int = 1, pad_before: int = 0,
                       pad_after: int = 0, dilation: int = 1) -> int:
    """``floor((in + pad_before + pad_after - dilation*(k-1) - 1) / stride) + 1``.

    The result may be below 1; callers decide whether that is an error.
    """
    span = length + pad_before + pad_after - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    return span // stride + 1


def same_padding(length: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """Padding (before, after) that makes the output ``ceil(in / stride)`` long.

    At stride 1 this is PyTorch's ``padding='same'``: total ``dilation*(k-1)``,
    ``total // 2`` before and the rest after (the extra pixel of an even kernel
    goes to the bottom/right).  At larger strides it is TensorFlow's ``SAME``
    rule, which PyTorch refuses; the extra pixel again goes after.
    """
    out = -(-length // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - length, 0)
    return total // 2, total - total // 2


def resolve_padding(padding, input_hw: Pair, kernel_hw: Pair, stride: Pair,
                    dilation: Pair, name: str = "padding") -> Sides:
    """Turn a padding argument into explicit ``(top, bottom, left, right)``.

    ``padding`` is an int, a ``(height, width)`` pair, a 4-tuple
    ``(top, bottom, left, right)``, ``"same"`` or ``"valid"``.
    """
    if isinstance(padding, str):
        word = padding.strip().lower()
        if word == "valid":
            return (0, 0, 0, 0)
        if word == "same":
            top, bottom = same_padding(input_hw[0], kernel_hw[0], stride[0], dilation[0])
            left, right = same_padding(input_hw[1], kernel_hw[1], stride[1], dilation[1])
            return (top, bottom, left, right)
        raise ConvcliError(f"{name}: expected a number, a pair, 'same' or 'valid', got {padding!r}")
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        sides = tuple(padding)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in sides):
            raise ConvcliError(f"{name}: expected integers, got {padding!r}")
        if min(sides) < 0:
            raise ConvcliError(f"{name} must not be negative, got {padding!r}")
        return sides  # type: ignore[return-value]
    ph, pw = as_pair(padding, name, minimum=0)
    return (ph, ph, pw, pw)


def conv_output_size(input_hw: Pair, kernel_hw: Pair, stride: Pair, sides: Sides,
                     dilation: Pair) -> Pair:
    """Output ``(height, width)`` of a convolution; raises when below 1x1."""
    top, bottom, left, right = sides
    out_h = conv_output_length(input_hw[0], kernel_hw[0], stride[0], top, bottom, dilation[0])
    out_w = conv_output_length(input_hw[1], kernel_hw[1], stride[1], left, right, dilation[1])
    if out_h < 1 or out_w < 1:
        eff = (dilation[0] * (kernel_hw[0] - 1) + 1, dilation[1] * (kernel_hw[1] - 1) + 1)
        padded = (input_hw[0] + top + bottom, input_hw[1] + left + right)
        raise ConvcliError(
            f"kernel: the kernel spans {format_size(eff)} (with dilation) but the padded input "
            f"is only {format_size(padded)}; use a smaller kernel or more padding"
        )
    return out_h, out_w


# -------------------------------------------------------------------- pooling


def pool_output_length(length: int, kernel: int, stride: int, padding: int,
                       dilation: int = 1, ceil_mode: bool = False) -> int:
    """PyTorch's pooling output length (``pooling_output_shape`` in ATen's Pool.h).

    ``floor((in + 2*padding - dilation*(k-1) - 1 [+ stride - 1 under ceil_mode]) / stride) + 1``,
    the division rounding down even for a negative numerator; with
    ``ceil_mode`` the last window is dropped when it would start in the right
    padding, i.e. when ``(out - 1) * stride >= in + padding``.  The result
    may be below 1; callers decide whether that is an error.
    """
    span = length + 2 * padding - dilation * (kernel - 1) - 1
    if ceil_mode:
        out = (span + stride - 1) // stride + 1
        if (out - 1) * stride >= length + padding:
            out -= 1
    else:
        out = span // stride + 1
    return max(out, 0)


def check_pool_padding(kernel_hw: Pair, padding: Pair, name: str = "padding",
                       dilation: Pair = (1, 1)) -> None:
    """PyTorch refuses padding over half the window: ``pad <= k // 2``, with ``k`` the window
    as given, whatever the dilation (``pool2d_shape_check``: ``kW/2 >= padW``)."""
    for axis, k, p, d in zip(("height", "width"), kernel_hw, padding, dilation):
        limit = k // 2
        if p > limit:
            dilated = ", as PyTorch counts it: without dilation" if d != 1 else ""
            raise ConvcliError(
                f"{name}: pooling padding must be at most half the window "
                f"({axis}: window {k}{dilated}, so padding <= {limit}), got {p}"
            )


def pool_output_size(input_hw: Pair, kernel_hw: Pair, stride: Pair, padding: Pair,
                     dilation: Pair = (1, 1), ceil_mode: bool = False) -> Pair:
    check_pool_padding(kernel_hw, padding, dilation=dilation)
    out = tuple(
        pool_output_length(input_hw[i], kernel_hw[i], stride[i], padding[i], dilation[i], ceil_mode)
        for i in (0, 1)
    )
    if min(out) < 1:
        raise ConvcliError(
            f"size: a {format_size(kernel_hw)} window does not fit the "
            f"{format_size(input_hw)} input with padding {format_pair(padding)}"
        )
    return out  # type: ignore[return-value]


# ------------------------------------------------------ transposed convolution


def tconv_output_length(length: int, kernel: int, stride: int = 1, padding: int = 0,
                        output_padding: int = 0, dilation: int = 1) -> int:
    """``(in - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1``."""
    return (length - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def check_output_padding(output_padding: Pair, stride: Pair, dilation: Pair,
                         name: str = "output-padding") -> None:
    """PyTorch's rule: output padding must be smaller than either stride or dilation."""
    for axis, op, s, d in zip(("height", "width"), output_padding, stride, dilation):
        if op >= s and op >= d:
            raise ConvcliError(
                f"{name}: must be smaller than the stride or the dilation "
                f"({axis}: stride {s}, dilation {d}), got {op}"
            )


def tconv_output_size(input_hw: Pair, kernel_hw: Pair, stride: Pair, padding: Pair,
                      output_padding: Pair = (0, 0), dilation: Pair = (1, 1)) -> Pair:
    check_output_padding(output_padding, stride, dilation)
    out = tuple(
        tconv_output_length(input_hw[i], kernel_hw[i], stride[i], padding[i],
                            output_padding[i], dilation[i])
        for i in (0, 1)
    )
    if min(out) < 1:
        raise ConvcliError(
            f"padding: {format_pair(padding)} crops the whole "
            f"{format_size((max(out[0], 0), max(out[1], 0)))} transposed-convolution output away"
        )
    return out  # type: ignore[return-value]


__all__ = [
    "Pair", "Sides", "parse_pair", "as_pair", "format_pair", "format_size", "size_json",
    "pair_json", "sides_json", "conv_output_length", "same_padding", "resolve_padding",
    "conv_output_size", "pool_output_length", "check_pool_padding", "pool_output_size",
    "tconv_output_length", "check_output_padding", "tconv_output_size"
]
