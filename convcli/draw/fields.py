"""Receptive fields drawn on the image: ``convcli shape IMAGE LAYERS... --draw rf.png``.

The picture is a copy of the image with the field of one output unit marked (an outline and a
tint inside) and the centres of the fields of its neighbours as dots, spaced by the jump. Where
the field reaches past the image (into the padding of some layer) the canvas is grown by that
much, filled with gray, so the whole field shows. Small images are enlarged by a whole factor
(nearest neighbour) so that each pixel stays visible: ``zoom = clamp(512 // longest side of the
canvas, 1, 16)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..errors import ConvcliError
from ..geometry.receptive import LayerResult
from ..geometry.sizes import format_size

PADDING_GRAY = (96, 96, 96)  # the canvas outside the image
TINT = (255, 140, 0)  # blended into the field, TINT_ALPHA of it
TINT_ALPHA = 0.35
OUTLINE = (255, 40, 0)
CENTRE = (255, 0, 255)  # the chosen unit's field centre
NEIGHBOUR = (0, 220, 255)  # its neighbours' field centres
NEIGHBOURS = 3  # units each side of the chosen one whose centres are dotted
MAX_ZOOM = 16
TARGET_SIDE = 512
# The canvas (the image and the padding the field reaches), before the zoom, which is 1 for any
# canvas over 256 on a side; the picture is held about four times over as it is drawn and written.
MAX_CANVAS_PIXELS = 50_000_000
MAX_CANVAS_SIDE = 65_000  # PNG and Pillow take more, but a picture this wide shows nothing


@dataclass(frozen=True)
class FieldPicture:
    """The drawn picture and where things are on it.

    ``field`` is ``(top, bottom, left, right)`` in input pixels (inclusive; negative or past the
    image in the padding); ``margins`` the gray added ``(top, bottom, left, right)``; a canvas
    pixel ``(y, x)`` shows input pixel ``(y // zoom - margins[0], x // zoom - margins[2])``.
    """

    image: Image.Image
    at: tuple[int, int]
    field: tuple[int, int, int, int]
    margins: tuple[int, int, int, int]
    zoom: int
    exact: bool

    def describe(self) -> str:
        top, bottom, left, right = self.field
        size = format_size((bottom - top + 1, right - left + 1))
        grown = (
            "" if not any(self.margins) else " (the canvas grown by t{} b{} l{} r{})".format(*self.margins)
        )
        bound = "" if self.exact else ", a bound: the exact field was over the work limit"
        return (
            f"output ({self.at[0]}, {self.at[1]}): field rows {top}..{bottom}, columns {left}..{right}, "
            f"{size}{bound}{grown}, drawn at {self.zoom}x"
        )


def centre_unit(results: list[LayerResult]) -> tuple[int, int]:
    """The output unit drawn by default: the centre one, ``((height - 1) // 2, (width - 1) // 2)``."""
    height, width = results[-1].output_size
    return (height - 1) // 2, (width - 1) // 2


def field_picture(pixels, results: list[LayerResult], at: tuple[int, int] | None = None) -> FieldPicture:
    """Draw the receptive field of output unit ``at`` (row, column; default :func:`centre_unit`)
    of the stack ``results`` (from :func:`convcli.geometry.receptive.run_stack` on this image's
    size) on ``pixels``, an H x W x 3 uint8 array.

    >>> from convcli.geometry.receptive import parse_layer, run_stack
    >>> results = run_stack((8, 8), [parse_layer("conv:k=3,p=1", 1)])
    >>> picture = field_picture(np.zeros((8, 8, 3), np.uint8), results, at=(0, 0))
    >>> picture.field, picture.margins, picture.zoom
    ((-1, 1, -1, 1), (1, 0, 1, 0), 16)
    """
    last = results[-1]
    out_h, out_w = last.output_size
    row, col = centre_unit(results) if at is None else at
    if not (0 <= row < out_h and 0 <= col < out_w):
        raise ConvcliError(f"--at: ({row}, {col}) is outside the {format_size((out_h, out_w))} output")
    rows, cols = last.height.field_of(row), last.width.field_of(col)
    if rows is None or cols is None:
        raise ConvcliError(
            f"--at: output ({row}, {col}) reads no input pixel (a transposed layer's stride leaves it "
            "between the inputs it scatters); choose a neighbour"
        )
    height, width = pixels.shape[:2]
    centres = []  # (y, x, chosen) in input pixels, halves where a field is an even span
    for r in range(max(0, row - NEIGHBOURS), min(out_h, row + NEIGHBOURS + 1)):
        for c in range(max(0, col - NEIGHBOURS), min(out_w, col + NEIGHBOURS + 1)):
            fy, fx = last.height.field_of(r), last.width.field_of(c)
            if fy is not None and fx is not None:
                centres.append(((fy[0] + fy[1]) / 2, (fx[0] + fx[1]) / 2, (r, c) == (row, col)))
    top = max(0, -rows[0], *(-int(y // 1) for y, _, _ in centres))
    left = max(0, -cols[0], *(-int(x // 1) for _, x, _ in centres))
    bottom = max(0, rows[1] - (height - 1), *(int(y // 1) - (height - 1) for y, _, _ in centres))
    right = max(0, cols[1] - (width - 1), *(int(x // 1) - (width - 1) for _, x, _ in centres))
    canvas_h, canvas_w = height + top + bottom, width + left + right
    if canvas_h > MAX_CANVAS_SIDE or canvas_w > MAX_CANVAS_SIDE or canvas_h * canvas_w > MAX_CANVAS_PIXELS:
        raise ConvcliError(
            f"--draw: the field of output ({row}, {col}) needs a {format_size((canvas_h, canvas_w))} canvas "
            f"(the image grown by its padding), over {MAX_CANVAS_SIDE:,} on a side or "
            f"{MAX_CANVAS_PIXELS:,} pixels"
        )
    zoom = max(1, min(MAX_ZOOM, TARGET_SIDE // max(canvas_h, canvas_w)))

    canvas = np.empty((canvas_h, canvas_w, 3), np.uint8)
    canvas[:] = PADDING_GRAY
    canvas[top : top + height, left : left + width] = pixels
    y0, y1 = (rows[0] + top) * zoom, (rows[1] + top + 1) * zoom  # the field, canvas pixels, end excluded
    x0, x1 = (cols[0] + left) * zoom, (cols[1] + left + 1) * zoom
    if zoom > 1:
        canvas = canvas.repeat(zoom, axis=0).repeat(zoom, axis=1)
    inside = canvas[y0:y1, x0:x1].astype(np.float32)
    inside += TINT_ALPHA * (np.array(TINT, np.float32) - inside)
    canvas[y0:y1, x0:x1] = np.rint(inside).astype(np.uint8)

    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    # Seen on a large image too: an outline up to 3 pixels wide (an eighth of the field at most),
    # dots of radius 2 at least where the jump leaves room (a third of the spacing at most).
    width = max(1, zoom // 4, min(3, min(x1 - x0, y1 - y0) // 8))
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=OUTLINE, width=width)
    spacing = min(
        last.height.hull.jump * zoom / last.height.hull.scale,
        last.width.hull.jump * zoom / last.width.hull.scale,
    )
    radius = min(max(zoom / 5, 2), spacing / 3)
    for y, x, chosen in sorted(centres, key=lambda item: item[2]):  # the chosen one on top
        cy, cx = (y + top + 0.5) * zoom, (x + left + 0.5) * zoom
        colour = CENTRE if chosen else NEIGHBOUR
        if radius < 1:
            draw.point((min(int(cx), zoom * canvas_w - 1), min(int(cy), zoom * canvas_h - 1)), fill=colour)
        else:
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    exact = last.height.exact and last.width.exact
    return FieldPicture(image, (row, col), (*rows, *cols), (top, bottom, left, right), zoom, exact)


def load_rgb8(path) -> np.ndarray:
    """An image file (or ``.npy``) as H x W x 3 uint8 for drawing: 8-bit samples as stored,
    16-bit ones divided by 257, others (floats, signed) stretched from their minimum to their
    maximum; one channel repeated, alpha dropped. An image over :data:`MAX_CANVAS_PIXELS` is
    refused from its header, before it is decoded."""
    from ..io.images import load_image

    def before_decode(height, width, channels):
        if height * width > MAX_CANVAS_PIXELS:
            raise ConvcliError(
                f"input {str(path)!r}: {format_size((height, width))} is over the "
                f"{MAX_CANVAS_PIXELS:,} pixels --draw draws on"
            )

    loaded = load_image(path, before_decode=before_decode)
    raw = loaded.raw[:, :, :3]
    if loaded.depth == "8" and raw.dtype == np.uint8:
        rgb = raw
    elif loaded.depth == "16" and raw.dtype == np.uint16:
        rgb = (raw // 257).astype(np.uint8)
    else:
        data = loaded.rows(slice(None))[:, :, :3]
        low, high = float(data.min()), float(data.max())
        data = (data - low) / (high - low) if high > low else np.full_like(data, 0.5)
        rgb = np.rint(data * 255).astype(np.uint8)
    if rgb.shape[2] < 3:
        rgb = np.repeat(rgb[:, :, :1], 3, axis=2)
    return rgb


def write_picture(path, picture: FieldPicture) -> None:
    """Write the picture atomically, its format by ``path``'s extension."""
    from ..io.images import write_atomic

    write_atomic(path, np.asarray(picture.image))
