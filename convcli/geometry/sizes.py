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
# The largest value of any size, stride, padding, dilation, kernel side or output padding:
# a signed 32-bit int, as PyTorch's sizes.  Larger values could only ask for more memory than
# exists; checking the digits first keeps int() away from numbers thousands of digits long.
MAX_VALUE = 2**31 - 1
_MAX_DIGITS = len(str(MAX_VALUE))


def quote(text: object, limit: int = 40) -> str:
    """``repr(text)``, cut to about ``limit`` characters, for echoing user input in errors.

    >>> quote("9" * 100)
    "'99999999999999999999999999999999999999...' (100 characters)"
    """
    text = str(text)
    if len(text) <= limit:
        return repr(text)
    return f"{text[: limit - 2]!r}"[:-1] + f"...' ({len(text)} characters)"


def parse_pair(text: str, option: str, *, minimum: int = 0) -> Pair:
    """Parse ``N`` or ``WxH`` into ``(height, width)``.

    The command line writes a pair width first, as image sizes are written; the
    library's pairs are ``(height, width)``, as in numpy and PyTorch.

    Parameters
    ----------
    text : str
        ``N`` (both sides) or ``WIDTHxHEIGHT``; ``X`` or the multiplication sign also
        separate the two, and spaces around the numbers are allowed.
    option : str
        The option's name, for error messages (for example ``"--stride"``).
    minimum : int, optional
        The smallest value accepted on each side (default 0).

    Returns
    -------
    tuple of int
        ``(height, width)``.

    Raises
    ------
    ConvcliError
        When ``text`` is not ``N`` or ``WxH``, or a side is below ``minimum``.

    Examples
    --------
    >>> parse_pair("2x1", "--stride")
    (1, 2)
    >>> parse_pair("3", "--kernel")
    (3, 3)
    >>> parse_pair("0x2", "--stride", minimum=1)
    Traceback (most recent call last):
        ...
    convcli.errors.ConvcliError: --stride: values must be at least 1, got '0x2'
    """
    match = _PAIR_RE.match(str(text))
    if not match:
        raise ConvcliError(f"{option}: expected N or WIDTHxHEIGHT (for example 3 or 2x1), got {quote(text)}")
    digits = [g.lstrip("0") for g in match.groups() if g is not None]
    if any(len(d) > _MAX_DIGITS or int(d or 0) > MAX_VALUE for d in digits):
        raise ConvcliError(f"{option}: values must be at most {MAX_VALUE:,} (2^31 - 1), got {quote(text)}")
    width = int(match.group(1))
    height = int(match.group(2)) if match.group(2) is not None else width
    if width < minimum or height < minimum:
        raise ConvcliError(f"{option}: values must be at least {minimum}, got {quote(text)}")
    return height, width


PADDING_WORDS = ("same", "valid")


def parse_padding(text: str, option: str = "--padding") -> Pair | str:
    """``N``, ``WxH``, ``same`` or ``valid`` -> ``(height, width)`` or the word.

    Parameters
    ----------
    text : str
        A word of ``PADDING_WORDS`` (read ignoring case and surrounding spaces), or a pair
        as :func:`parse_pair` reads it.
    option : str, optional
        The option's name, for error messages (default ``"--padding"``).

    Returns
    -------
    tuple of int or str
        ``(height, width)``, or the word in lower case.

    Raises
    ------
    ConvcliError
        When ``text`` is neither a word nor a pair.

    Examples
    --------
    >>> parse_padding("Same")
    'same'
    >>> parse_padding("1x2")
    (2, 1)
    """
    word = str(text).strip().lower()
    if word in PADDING_WORDS:
        return word
    return parse_pair(text, option, minimum=0)


def as_pair(value: int | tuple[int, int] | list[int], name: str, *, minimum: int = 0) -> Pair:
    """Normalise a library argument (int or ``(height, width)``) into a pair.

    Parameters
    ----------
    value : int or (int, int)
        One value for both sides, or ``(height, width)`` as a tuple or a 2-item list.
        Booleans are refused.
    name : str
        The argument's name, for error messages.
    minimum : int, optional
        The smallest value accepted on each side (default 0).

    Returns
    -------
    tuple of int
        ``(height, width)``.

    Raises
    ------
    ConvcliError
        When ``value`` is not an integer or a pair of integers, or a side is below ``minimum``.

    Examples
    --------
    >>> as_pair(3, "stride")
    (3, 3)
    >>> as_pair([2, 1], "stride", minimum=1)
    (2, 1)
    >>> as_pair((0, 1), "stride", minimum=1)
    Traceback (most recent call last):
        ...
    convcli.errors.ConvcliError: stride must be at least 1, got 1x0
    """
    if isinstance(value, bool):
        raise ConvcliError(f"{name}: expected an integer or a (height, width) pair, got {value!r}")
    if isinstance(value, int):
        pair = (value, value)
    elif (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        pair = (int(value[0]), int(value[1]))
    else:
        raise ConvcliError(f"{name}: expected an integer or a (height, width) pair, got {value!r}")
    if min(pair) < minimum or max(pair) > MAX_VALUE:
        shown = "x".join(_number_text(v) for v in ((pair[0],) if pair[0] == pair[1] else (pair[1], pair[0])))
        if min(pair) < minimum:
            raise ConvcliError(f"{name} must be at least {minimum}, got {shown}")
        raise ConvcliError(f"{name} must be at most {MAX_VALUE:,} (2^31 - 1), got {quote(shown)}")
    return pair


def _number_text(value: int) -> str:
    """An int as text, or its size in bits when it is too long to print (or to convert)."""
    return str(value) if value.bit_length() <= 256 else f"({value.bit_length()}-bit number)"


def format_pair(pair: Pair) -> str:
    """``(height, width)`` -> ``"WxH"``, or ``"N"`` when both sides agree.

    The command-line spelling of a pair, as :func:`parse_pair` reads it.

    Examples
    --------
    >>> format_pair((1, 2))
    '2x1'
    >>> format_pair((3, 3))
    '3'
    """
    height, width = pair
    return str(height) if height == width else f"{width}x{height}"


def format_size(pair: Pair) -> str:
    """``(height, width)`` -> ``"WIDTHxHEIGHT"`` always, as image sizes are written.

    Examples
    --------
    >>> format_size((480, 640))
    '640x480'
    >>> format_size((3, 3))
    '3x3'
    """
    return f"{pair[1]}x{pair[0]}"


def size_json(pair: Pair) -> dict[str, int]:
    """A ``(height, width)`` size as ``{"width": width, "height": height}`` (JSON reports).

    Examples
    --------
    >>> size_json((480, 640))
    {'width': 640, 'height': 480}
    """
    return {"width": pair[1], "height": pair[0]}


def pair_json(pair: Pair) -> dict[str, int]:
    """A ``(height, width)`` pair as ``{"x": width, "y": height}`` (stride, dilation...).

    Examples
    --------
    >>> pair_json((1, 2))
    {'x': 2, 'y': 1}
    """
    return {"x": pair[1], "y": pair[0]}


def sides_json(sides: Sides) -> dict[str, int]:
    """Padding ``(top, bottom, left, right)`` as a dict with those keys (JSON reports).

    Examples
    --------
    >>> sides_json((0, 1, 2, 3))
    {'top': 0, 'bottom': 1, 'left': 2, 'right': 3}
    """
    top, bottom, left, right = sides
    return {"top": top, "bottom": bottom, "left": left, "right": right}


# ---------------------------------------------------------------- convolution


def conv_output_length(
    length: int, kernel: int, stride: int = 1, pad_before: int = 0, pad_after: int = 0, dilation: int = 1
) -> int:
    """Output length of a convolution along one axis, as PyTorch's ``conv2d``.

    ``floor((in + pad_before + pad_after - dilation*(k-1) - 1) / stride) + 1``.

    The result may be below 1 (it is 0 when the dilated kernel is longer than the padded
    input); callers decide whether that is an error.

    Parameters
    ----------
    length : int
        The input length ``in``.
    kernel : int
        The kernel length ``k``.
    stride : int, optional
        Default 1.
    pad_before, pad_after : int, optional
        Padding on each end (top and bottom, or left and right).  Default 0.
    dilation : int, optional
        Spacing of the kernel taps; default 1.

    Returns
    -------
    int
        The output length, at least 0.

    Examples
    --------
    >>> conv_output_length(7, 3, stride=2, pad_before=1, pad_after=1)  # floor(6 / 2) + 1
    4
    >>> conv_output_length(5, 2, dilation=2)  # the taps span 3: floor(2 / 1) + 1
    3
    >>> conv_output_length(2, 5)  # the kernel does not fit
    0
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

    Parameters
    ----------
    length : int
        The input length ``in``.
    kernel : int
        The kernel length ``k``.
    stride, dilation : int, optional
        Default 1.

    Returns
    -------
    tuple of int
        ``(before, after)``, each at least 0.

    Examples
    --------
    >>> same_padding(5, 3)
    (1, 1)
    >>> same_padding(10, 4)  # even kernel: total 3, the extra pixel after
    (1, 2)
    >>> same_padding(7, 3, stride=2)  # TensorFlow's SAME: output ceil(7 / 2) = 4
    (1, 1)
    >>> conv_output_length(7, 3, 2, 1, 1)
    4
    """
    out = -(-length // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - length, 0)
    return total // 2, total - total // 2


def resolve_padding(
    padding: int | Pair | Sides | list[int] | str,
    input_hw: Pair,
    kernel_hw: Pair,
    stride: Pair,
    dilation: Pair,
    name: str = "padding",
) -> Sides:
    """Turn a padding argument into explicit ``(top, bottom, left, right)``.

    ``padding`` is an int, a ``(height, width)`` pair, a 4-tuple
    ``(top, bottom, left, right)``, ``"same"`` or ``"valid"``.

    Parameters
    ----------
    padding : int, (int, int), (int, int, int, int) or str
        An int (all four sides), ``(height, width)`` (top and bottom get the height, left and
        right the width), ``(top, bottom, left, right)``, ``"same"`` (:func:`same_padding` on
        each axis) or ``"valid"`` (no padding).  Lists count as tuples; the words are read
        ignoring case and surrounding spaces.  Values must be integers, not negative.
    input_hw, kernel_hw, stride, dilation : (int, int)
        ``(height, width)`` of the input, the kernel, the stride and the dilation; only
        ``"same"`` uses them.
    name : str, optional
        The argument's name, for error messages (default ``"padding"``).

    Returns
    -------
    tuple of int
        ``(top, bottom, left, right)``.

    Raises
    ------
    ConvcliError
        For another word, a value that is not an integer or is negative, or a sequence that
        holds neither 2 nor 4 values.

    Examples
    --------
    >>> resolve_padding((1, 2), (5, 5), (3, 3), (1, 1), (1, 1))
    (1, 1, 2, 2)
    >>> resolve_padding("same", (5, 5), (4, 2), (1, 1), (1, 1))  # even kernels: extra after
    (1, 2, 0, 1)
    >>> resolve_padding("valid", (5, 5), (3, 3), (1, 1), (1, 1))
    (0, 0, 0, 0)
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
        if min(sides) < 0 or max(sides) > MAX_VALUE:
            shown = ", ".join(_number_text(v) for v in sides)
            bound = "not be negative" if min(sides) < 0 else f"be at most {MAX_VALUE:,} (2^31 - 1)"
            raise ConvcliError(f"{name} must {bound}, got {quote(shown)}")
        return sides  # type: ignore[return-value]
    ph, pw = as_pair(padding, name, minimum=0)
    return (ph, ph, pw, pw)


def conv_output_size(input_hw: Pair, kernel_hw: Pair, stride: Pair, sides: Sides, dilation: Pair) -> Pair:
    """Output ``(height, width)`` of a convolution; raises when below 1x1.

    Each axis is :func:`conv_output_length`:
    ``floor((in + pad_before + pad_after - dilation*(k-1) - 1) / stride) + 1``.

    Parameters
    ----------
    input_hw, kernel_hw, stride, dilation : (int, int)
        ``(height, width)`` of the input, the kernel, the stride and the dilation.
    sides : (int, int, int, int)
        The padding ``(top, bottom, left, right)``, as :func:`resolve_padding` gives it.

    Returns
    -------
    tuple of int
        The output's ``(height, width)``, each at least 1.

    Raises
    ------
    ConvcliError
        When the dilated kernel is larger than the padded input on either axis.

    Examples
    --------
    >>> conv_output_size((5, 5), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1))  # floor(4 / 2) + 1
    (3, 3)
    >>> conv_output_size((2, 8), (3, 3), (1, 1), (0, 0, 0, 0), (1, 1))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    convcli.errors.ConvcliError: kernel: the kernel spans 3x3 (with dilation) but the padded input ...
    """
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


# ---------------------------------------------------------------- the halo rule


def window_rows(first: int, stop: int, stride: int, extent: int) -> tuple[int, int]:
    """The padded input rows ``(lo, hi)`` that the windows of output rows ``first..stop`` read.

    ``extent`` is the dilated window, ``dilation*(k - 1) + 1``.  In padded coordinates
    (row 0 is the first padding row): subtract the padding before to get input rows,
    negative inside the top padding.  This is the one rule behind tiles, bands, chunks
    and chains: a block of output rows needs its own ``(stop - first) * stride`` rows plus
    a one-sided halo of ``extent - stride`` rows.

    Parameters
    ----------
    first, stop : int
        The output rows ``first`` (included) to ``stop`` (excluded).
    stride : int
        The step between windows.
    extent : int
        The dilated window, ``dilation*(k - 1) + 1``.

    Returns
    -------
    tuple of int
        ``(lo, hi)``: padded rows ``lo`` (included) to ``hi`` (excluded), i.e.
        ``(first*stride, (stop - 1)*stride + extent)``.

    Examples
    --------
    >>> window_rows(0, 4, 2, 3)   # 4 outputs, stride 2, a 3-row window
    (0, 9)
    """
    return first * stride, (stop - 1) * stride + extent


def scatter_rows(
    first: int, stop: int, length: int, stride: int, padding: int, extent: int
) -> tuple[int, int]:
    """The input rows ``(lo, hi)`` of a transposed convolution that scatter into its cropped
    output rows ``first..stop`` (``lo == hi`` when none does: output padding only).

    Input row ``i`` reaches full output rows ``i*stride .. i*stride + extent - 1``; full
    row ``r`` is cropped row ``r - padding``.

    Parameters
    ----------
    first, stop : int
        The cropped output rows ``first`` (included) to ``stop`` (excluded).
    length : int
        The input's length (rows).
    stride, padding : int
        As in :func:`tconv_output_length`.
    extent : int
        The dilated kernel, ``dilation*(k - 1) + 1``.

    Returns
    -------
    tuple of int
        ``(lo, hi)``: input rows ``lo`` (included) to ``hi`` (excluded), within ``0..length``.

    Examples
    --------
    >>> scatter_rows(0, 4, 10, 2, 1, 4)   # stride 2, padding 1, a 4-tap kernel
    (0, 3)
    """
    lo = max(0, -((extent - 1 - first - padding) // stride))  # ceil((first + p - extent + 1) / s)
    hi = min(length, (stop + padding - 1) // stride + 1)
    return lo, max(lo, hi)


# -------------------------------------------------------------------- pooling


def pool_output_length(
    length: int, kernel: int, stride: int, padding: int, dilation: int = 1, ceil_mode: bool = False
) -> int:
    """PyTorch's pooling output length (``pooling_output_shape`` in ATen's Pool.h).

    ``floor((in + 2*padding - dilation*(k-1) - 1 [+ stride - 1 under ceil_mode]) / stride) + 1``,
    the division rounding down even for a negative numerator; with
    ``ceil_mode`` the last window is dropped when it would start in the right
    padding, i.e. when ``(out - 1) * stride >= in + padding``.  The result
    may be below 1 (never below 0); callers decide whether that is an error.

    Parameters
    ----------
    length : int
        The input length ``in``.
    kernel : int
        The window length ``k``.
    stride : int
        The step between windows.
    padding : int
        Padding on each end.
    dilation : int, optional
        Spacing of the window's cells; default 1.
    ceil_mode : bool, optional
        Round up instead of down (default False).

    Returns
    -------
    int
        The output length, at least 0.

    Examples
    --------
    >>> pool_output_length(5, 2, 2, 0)  # floor(3 / 2) + 1
    2
    >>> pool_output_length(5, 2, 2, 0, ceil_mode=True)  # ceil(3 / 2) + 1; the last starts at 4 < 5
    3
    >>> pool_output_length(5, 2, 2, 1, ceil_mode=True)  # ceil(5 / 2) + 1 = 4, but 3*2 >= 5 + 1
    3
    """
    span = length + 2 * padding - dilation * (kernel - 1) - 1
    if ceil_mode:
        out = (span + stride - 1) // stride + 1
        if (out - 1) * stride >= length + padding:
            out -= 1
    else:
        out = span // stride + 1
    return max(out, 0)


def pool_padding_after(
    count: int, length: int, kernel: int, stride: int, padding: int, dilation: int = 1
) -> int:
    """The padding after the input (bottom or right) that the last of ``count`` pooling windows
    reaches: more than ``padding`` only for a ceil-mode window hanging outside.

    Parameters
    ----------
    count : int
        The number of windows (the output length).
    length : int
        The input length.
    kernel, stride, padding : int
        As in :func:`pool_output_length`.
    dilation : int, optional
        Default 1.

    Returns
    -------
    int
        ``max(0, (count - 1)*stride + dilation*(kernel - 1) + 1 - length - padding)``.

    Examples
    --------
    >>> pool_padding_after(3, 5, 2, 2, 0)   # ceil_mode: 5 -> 3, the last window hangs out by 1
    1
    """
    return max(0, (count - 1) * stride + dilation * (kernel - 1) + 1 - length - padding)


def check_pool_padding(
    kernel_hw: Pair, padding: Pair, name: str = "padding", dilation: Pair = (1, 1)
) -> None:
    """Refuse pooling padding over half the window, as PyTorch does.

    PyTorch refuses padding over half the window: ``pad <= k // 2``, with ``k`` the window
    as given, whatever the dilation (``pool2d_shape_check``: ``kW/2 >= padW``).

    Parameters
    ----------
    kernel_hw : (int, int)
        The window's ``(height, width)``, as given (undilated).
    padding : (int, int)
        The padding's ``(height, width)``.
    name : str, optional
        The argument's name, for error messages (default ``"padding"``).
    dilation : (int, int), optional
        Only named in the error message: the limit ignores it.

    Raises
    ------
    ConvcliError
        When a padding is over half its window.

    Examples
    --------
    >>> check_pool_padding((3, 3), (1, 1))  # 1 <= 3 // 2: accepted
    >>> check_pool_padding((3, 3), (2, 1), dilation=(2, 2))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    convcli.errors.ConvcliError: padding: pooling padding must be at most half the window ..., got 2
    """
    for axis, k, p, d in zip(("height", "width"), kernel_hw, padding, dilation):
        limit = k // 2
        if p > limit:
            dilated = ", as PyTorch counts it: without dilation" if d != 1 else ""
            raise ConvcliError(
                f"{name}: pooling padding must be at most half the window "
                f"({axis}: window {k}{dilated}, so padding <= {limit}), got {p}"
            )


def pool_output_size(
    input_hw: Pair,
    kernel_hw: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair = (1, 1),
    ceil_mode: bool = False,
) -> Pair:
    """Output ``(height, width)`` of a pooling; raises when below 1x1.

    The padding is checked by :func:`check_pool_padding` (at most ``k // 2``), then each axis
    is :func:`pool_output_length`:
    ``floor((in + 2*padding - dilation*(k-1) - 1 [+ stride - 1 under ceil_mode]) / stride) + 1``,
    where under ``ceil_mode`` a last window that would start in the right padding is dropped.

    Parameters
    ----------
    input_hw, kernel_hw, stride, padding : (int, int)
        ``(height, width)`` of the input, the window, the stride and the padding.
    dilation : (int, int), optional
        Default ``(1, 1)``.
    ceil_mode : bool, optional
        Round up instead of down (default False).

    Returns
    -------
    tuple of int
        The output's ``(height, width)``, each at least 1.

    Raises
    ------
    ConvcliError
        When the padding is over half the window, or the window does not fit the padded input.

    Examples
    --------
    >>> pool_output_size((5, 5), (2, 2), (2, 2), (0, 0))
    (2, 2)
    >>> pool_output_size((5, 5), (2, 2), (2, 2), (0, 0), ceil_mode=True)
    (3, 3)
    >>> pool_output_size((1, 4), (3, 3), (1, 1), (0, 0))
    Traceback (most recent call last):
        ...
    convcli.errors.ConvcliError: size: a 3x3 window does not fit the 4x1 input with padding 0
    """
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


def tconv_output_length(
    length: int, kernel: int, stride: int = 1, padding: int = 0, output_padding: int = 0, dilation: int = 1
) -> int:
    """Output length of a transposed convolution along one axis, as PyTorch's ``conv_transpose2d``.

    ``(in - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1``.

    The result may be below 1, even negative, when the padding crops everything; callers
    decide whether that is an error.

    Parameters
    ----------
    length : int
        The input length ``in``.
    kernel : int
        The kernel length ``k``.
    stride : int, optional
        Default 1.
    padding : int, optional
        Cropped from each end of the full result; default 0.
    output_padding : int, optional
        Added to one end (bottom or right); default 0.
    dilation : int, optional
        Default 1.

    Returns
    -------
    int
        The output length.

    Examples
    --------
    >>> tconv_output_length(3, 4, stride=2, padding=1)  # 2*2 - 2 + 3 + 1
    6
    >>> tconv_output_length(3, 3, stride=2, padding=1, output_padding=1)  # 4 - 2 + 2 + 1 + 1
    6
    """
    return (length - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def check_output_padding(
    output_padding: Pair, stride: Pair, dilation: Pair, name: str = "output-padding"
) -> None:
    """PyTorch's rule: output padding must be smaller than either stride or dilation.

    Parameters
    ----------
    output_padding, stride, dilation : (int, int)
        ``(height, width)`` of each.
    name : str, optional
        The argument's name, for error messages (default ``"output-padding"``).

    Raises
    ------
    ConvcliError
        When on either axis the output padding is at least both the stride and the dilation.

    Examples
    --------
    >>> check_output_padding((1, 1), (2, 2), (1, 1))  # 1 < stride 2: accepted
    >>> check_output_padding((0, 1), (1, 1), (1, 1))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    convcli.errors.ConvcliError: output-padding: output padding must be smaller than the stride ..., got 1
    """
    for axis, op, s, d in zip(("height", "width"), output_padding, stride, dilation):
        if op >= s and op >= d:
            raise ConvcliError(
                f"{name}: output padding must be smaller than the stride or the dilation "
                f"({axis}: stride {s}, dilation {d}), got {op}"
            )


def tconv_output_size(
    input_hw: Pair,
    kernel_hw: Pair,
    stride: Pair,
    padding: Pair,
    output_padding: Pair = (0, 0),
    dilation: Pair = (1, 1),
) -> Pair:
    """Output ``(height, width)`` of a transposed convolution; raises when below 1x1.

    The output padding is checked by :func:`check_output_padding`, then each axis is
    :func:`tconv_output_length`:
    ``(in - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1``.

    Parameters
    ----------
    input_hw, kernel_hw, stride, padding : (int, int)
        ``(height, width)`` of the input, the kernel, the stride and the padding.
    output_padding, dilation : (int, int), optional
        Default ``(0, 0)`` and ``(1, 1)``.

    Returns
    -------
    tuple of int
        The output's ``(height, width)``, each at least 1.

    Raises
    ------
    ConvcliError
        When the output padding breaks PyTorch's rule, or the padding crops the whole output.

    Examples
    --------
    >>> tconv_output_size((3, 3), (4, 4), (2, 2), (1, 1))
    (6, 6)
    >>> tconv_output_size((1, 1), (1, 1), (1, 1), (1, 1))
    Traceback (most recent call last):
        ...
    convcli.errors.ConvcliError: padding: 1 crops the whole 0x0 transposed-convolution output away
    """
    check_output_padding(output_padding, stride, dilation)
    out = tuple(
        tconv_output_length(input_hw[i], kernel_hw[i], stride[i], padding[i], output_padding[i], dilation[i])
        for i in (0, 1)
    )
    if min(out) < 1:
        raise ConvcliError(
            f"padding: {format_pair(padding)} crops the whole "
            f"{format_size((max(out[0], 0), max(out[1], 0)))} transposed-convolution output away"
        )
    return out  # type: ignore[return-value]


__all__ = [
    "MAX_VALUE",
    "PADDING_WORDS",
    "Pair",
    "Sides",
    "as_pair",
    "check_output_padding",
    "check_pool_padding",
    "conv_output_length",
    "conv_output_size",
    "format_pair",
    "format_size",
    "pair_json",
    "parse_padding",
    "parse_pair",
    "pool_output_length",
    "pool_output_size",
    "pool_padding_after",
    "quote",
    "resolve_padding",
    "same_padding",
    "scatter_rows",
    "sides_json",
    "size_json",
    "tconv_output_length",
    "tconv_output_size",
    "window_rows",
]
