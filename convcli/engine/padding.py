"""Padding an image array exactly as PyTorch's ``F.pad`` does."""

from __future__ import annotations

import numpy as np

from ..constants import PAD_MODES
from ..errors import ConvcliError
from ..geometry.sizes import Sides

NUMPY_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def check_pad_mode(mode: str) -> str:
    if mode not in PAD_MODES:
        raise ConvcliError(f"pad-mode: expected one of {', '.join(PAD_MODES)}, got {mode!r}")
    return mode


def pad2d(image: np.ndarray, sides: Sides, mode: str = "zeros", value: float = 0.0) -> np.ndarray:
    """Pad the first two axes of an H x W (x C) array by ``(top, bottom, left, right)``.

    ``mode`` is PyTorch's: ``zeros`` (or the constant ``value``), ``reflect``
    (mirror without repeating the edge; padding must be smaller than the side),
    ``replicate`` (repeat the edge) or ``circular`` (wrap around; padding at
    most the side).  Sizes PyTorch refuses are refused here too.

    Parameters
    ----------
    image : np.ndarray
        H x W or H x W x C, of any dtype (kept).
    sides : (int, int, int, int)
        ``(top, bottom, left, right)``, each at least 0.
    mode : {"zeros", "reflect", "replicate", "circular"}, optional
        Default ``"zeros"``.
    value : float, optional
        The constant that ``"zeros"`` pads with (default 0).

    Returns
    -------
    np.ndarray
        ``(top + H + bottom) x (left + W + right) (x C)``, the dtype of ``image``; ``image``
        itself, not a copy, when all four sides are 0.

    Raises
    ------
    ConvcliError
        For an unknown mode, reflect padding not smaller than the side, or circular padding
        over the side.

    Examples
    --------
    >>> import numpy as np
    >>> pad2d(np.array([[1., 2., 3.]]), (0, 0, 2, 1), "reflect").tolist()
    [[3.0, 2.0, 1.0, 2.0, 3.0, 2.0]]
    >>> row = np.array([[1., 2., 3.]])
    >>> pad2d(row, (0, 0, 2, 1), "replicate").tolist()
    [[1.0, 1.0, 1.0, 2.0, 3.0, 3.0]]
    >>> pad2d(row, (0, 0, 2, 1), "circular").tolist()
    [[2.0, 3.0, 1.0, 2.0, 3.0, 1.0]]
    >>> pad2d(row, (1, 0, 0, 0), value=-1).tolist()
    [[-1.0, -1.0, -1.0], [1.0, 2.0, 3.0]]
    >>> pad2d(np.zeros((4, 5, 3)), (1, 1, 2, 2)).shape
    (6, 9, 3)
    >>> pad2d(row, (0, 0, 3, 0), "reflect")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    convcli.errors.ConvcliError: padding: reflect padding must be smaller than the input side ...
    """
    check_pad_mode(mode)
    top, bottom, left, right = sides
    check_pad_sizes(image.shape[:2], sides, mode)
    if not any(sides):
        return image
    widths = [(top, bottom), (left, right)] + [(0, 0)] * (image.ndim - 2)
    if mode == "zeros":
        return np.pad(image, widths, mode="constant", constant_values=value)
    return np.pad(image, widths, mode=NUMPY_MODES[mode])


def pad_rows(length: int, start: int, stop: int, mode: str):
    """Source rows for padded rows ``start..stop`` (padded coordinates shifted so that
    row 0 is the first input row), and a mask of the rows that are zeros padding.

    The banded pipeline uses it to build a band of a padded image from the
    unpadded one, with exactly the values :func:`pad2d` would give.
    """
    index = np.arange(start, stop)
    outside = (index < 0) | (index >= length)
    if mode == "reflect":
        index = np.abs(index)
        index = np.where(index >= length, 2 * (length - 1) - index, index)
    elif mode == "circular":
        index = index % length
    else:  # replicate, and zeros (whose rows are masked afterwards)
        index = np.clip(index, 0, length - 1)
    return index, (outside if mode == "zeros" else np.zeros_like(outside))


def check_pad_sizes(size, sides: Sides, mode: str) -> None:
    """Refuse the padding PyTorch refuses for ``mode`` on an input of ``size`` (H, W)."""
    height, width = size
    top, bottom, left, right = sides
    limit = {"reflect": 1, "circular": 0}.get(mode)
    if limit is None:
        return
    if max(top, bottom) > height - limit or max(left, right) > width - limit:
        rule = "smaller than" if mode == "reflect" else "at most"
        raise ConvcliError(
            f"padding: {mode} padding must be {rule} the input side "
            f"(input {width}x{height}, padding top/bottom/left/right {top}/{bottom}/{left}/{right})"
        )
