"""Padding an image array exactly as PyTorch's ``F.pad`` does."""

from __future__ import annotations

from .errors import ConvcliError
from .geometry import Sides

PAD_MODES = ("zeros", "reflect", "replicate", "circular")
_NUMPY_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def check_pad_mode(mode: str) -> str:
    if mode not in PAD_MODES:
        raise ConvcliError(f"pad-mode: expected one of {', '.join(PAD_MODES)}, got {mode!r}")
    return mode


def pad2d(image, sides: Sides, mode: str = "zeros", value: float = 0.0):
    """Pad the first two axes of an H x W (x C) array by ``(top, bottom, left, right)``.

    ``mode`` is PyTorch's: ``zeros`` (or the constant ``value``), ``reflect``
    (mirror without repeating the edge; padding must be smaller than the side),
    ``replicate`` (repeat the edge) or ``circular`` (wrap around; padding at
    most the side).  Sizes PyTorch refuses are refused here too.

    >>> import numpy as np
    >>> pad2d(np.array([[1., 2., 3.]]), (0, 0, 2, 1), "reflect").tolist()
    [[3.0, 2.0, 1.0, 2.0, 3.0, 2.0]]
    """
    import numpy as np

    check_pad_mode(mode)
    top, bottom, left, right = sides
    height, width = image.shape[:2]
    if mode == "reflect":
        if max(top, bottom) >= height or max(left, right) >= width:
            raise ConvcliError(
                f"padding: reflect padding must be smaller than the input side "
                f"(input {width}x{height}, padding top/bottom/left/right {top}/{bottom}/{left}/{right})"
            )
    elif mode == "circular":
        if max(top, bottom) > height or max(left, right) > width:
            raise ConvcliError(
                f"padding: circular padding must be at most the input side "
                f"(input {width}x{height}, padding top/bottom/left/right {top}/{bottom}/{left}/{right})"
            )
    if not any(sides):
        return image
    widths = [(top, bottom), (left, right)] + [(0, 0)] * (image.ndim - 2)
    if mode == "zeros":
        return np.pad(image, widths, mode="constant", constant_values=value)
    return np.pad(image, widths, mode=_NUMPY_MODE[mode])
