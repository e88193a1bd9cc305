"""``convcli shape`` without Typer: the report as plain text, and a fast path for the command.

``convcli shape`` is meant to answer instantly, and importing Typer, click and
Rich costs more than the arithmetic by far.  :func:`fast_main` parses the
shape command's own small set of arguments by hand and prints the report;
anything it does not recognise (``--help``, a misspelt option) goes to the
Typer command, which gives the usual help and errors.
"""

from __future__ import annotations

import sys

from ..errors import ConvcliError
from ..strict_json import dumps
from .chain import is_stage_form

_VALUE_OPTIONS = {
    "-k": "kernel",
    "--kernel": "kernel",
    "-s": "stride",
    "--stride": "stride",
    "-p": "padding",
    "--padding": "padding",
    "-d": "dilation",
    "--dilation": "dilation",
    "--draw": "draw",
    "--at": "at",
}
_FLAGS = {"--json": "json", "--explain": "explain"}


def render(input_hw, results, explain: bool = False) -> str:
    """The table (one row per layer), the formulas with ``explain``, and the final size."""
    from ..geometry.receptive import exact_text
    from ..geometry.sizes import format_size

    def pair(a, b):  # (numerator, denominator) ratios
        return f"{exact_text(a)}, {exact_text(b)}"

    header = ("#", "layer", "output", "receptive field", "jump (x, y)", "start (x, y)")
    rows = [("", "input", format_size(input_hw), "1x1", "1, 1", "0, 0")]
    for position, result in enumerate(results, start=1):
        w, h = result.width, result.height
        text = result.layer.describe()
        if result.layer.padding == "same":
            top, bottom, left, right = result.sides
            text += f" (pad t{top} b{bottom} l{left} r{right})"
        rows.append(
            (
                str(position),
                text,
                format_size(result.output_size),
                ("" if w.exact and h.exact else "≤") + f"{w.field}x{h.field}",
                pair(w.hull.jump_ratio, h.hull.jump_ratio),
                pair(w.hull.start_ratio, h.hull.start_ratio),
            )
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    left_aligned = {1}

    def line(cells):
        return (
            "│ "
            + " │ ".join(
                c.ljust(widths[i]) if i in left_aligned else c.rjust(widths[i]) for i, c in enumerate(cells)
            )
            + " │"
        )

    rule = "─┼─".join("─" * w for w in widths)
    out = ["┌─" + "─┬─".join("─" * w for w in widths) + "─┐", line(header), "├─" + rule + "─┤"]
    out += [line(row) for row in rows]
    out.append("└─" + "─┴─".join("─" * w for w in widths) + "─┘")
    if explain:
        for position, result in enumerate(results, start=1):
            out.append(f"layer {position} ({result.layer.describe()}):")
            out.append(f"  {result.width.formula}")
            out.append(f"  {result.height.formula}")
    final = results[-1].output_size if results else input_hw
    out.append(f"{format_size(input_hw)} -> {format_size(final)}")
    return "\n".join(out)


def run(
    size: str,
    layers: list[str],
    *,
    kernel=None,
    stride="1",
    padding="0",
    dilation="1",
    json_out=False,
    explain=False,
    draw=None,
    at=None,
) -> str:
    """The whole ``convcli shape`` computation; returns what to print. With ``draw``, also
    writes the picture of one output unit's receptive field (``at``, default the centre)."""
    from ..geometry.receptive import parse_layers

    def stack():
        if layers and kernel is not None:
            raise ConvcliError("-k/--kernel: give either LAYER specs or -k/-s/-p/-d, not both")
        if not layers and kernel is None:
            raise ConvcliError("shape: name at least one LAYER (conv:k=3) or a kernel with -k")
        return parse_layers(layers or [f"conv:k={kernel},s={stride},p={padding},d={dilation}"])

    return report(size, stack, json_out=json_out, explain=explain, draw=draw, at=at)


def report(size: str, stack, *, json_out=False, explain=False, draw=None, at=None) -> str:
    """What ``shape`` prints for the input ``size`` (a size or an image file) and the layers
    ``stack()`` returns (called once the size is read, before an image is decoded); with
    ``draw``, the picture is written first. Shared by the layer form and the stage form."""
    from ..geometry.receptive import parse_size, run_stack, to_json

    input_hw = parse_size(size)
    if at is not None and draw is None:
        raise ConvcliError("--at: names the output unit whose field --draw draws; give --draw too")
    if draw is not None:
        _check_drawing(size, input_hw, draw)
    elif input_hw is None:
        from ..io.images import read_size  # only an image path pays for Pillow

        input_hw = read_size(size)
    layers = stack()
    position = _position(at)
    if draw is not None:
        from ..draw.fields import load_rgb8

        pixels = load_rgb8(size)
        input_hw = pixels.shape[:2]  # as decoded: EXIF orientation applied
    results = run_stack(input_hw, layers)
    picture = None
    if draw is not None:
        from ..draw.fields import field_picture, write_picture

        picture = field_picture(pixels, results, position)
        write_picture(draw, picture)
    if json_out:
        data = to_json(input_hw, results)
        if picture is not None:
            top, bottom, left, right = picture.field
            data["drawn"] = {
                "path": str(draw),
                "at": {"row": picture.at[0], "col": picture.at[1]},
                "field": {"top": top, "bottom": bottom, "left": left, "right": right},
                "zoom": picture.zoom,
            }
        return dumps(data)
    text = render(input_hw, results, explain)
    if picture is not None:
        text += f"\n{draw}: {picture.describe()}"
    return text


def _check_drawing(size: str, input_hw, draw: str) -> None:
    """Refuse a ``--draw`` that cannot be written, before any image is decoded."""
    from ..io.images import output_format
    from ..run.plan import refuse_reads_as_outputs

    if input_hw is not None:
        raise ConvcliError(f"--draw: needs an image file as SIZE to draw on, got the size {size!r}")
    output_format(draw)  # a known extension
    refuse_reads_as_outputs([draw], [("image", size)])


def _position(at):
    """``--at ROW,COL`` as ``(row, col)``; None for the default (the centre unit)."""
    if at is None:
        return None
    if len(at) > 40:  # before int(): thousands of digits are no position
        raise ConvcliError(
            f"--at: expected ROW,COL (0-based, e.g. 1,2), got {at[:20]!r}... ({len(at)} characters)"
        )
    from .matrix import parse_position

    return parse_position(at)


def fast_main(args: list[str]) -> int | None:
    """Run ``shape`` from its arguments; None when Typer should handle them instead."""
    if is_stage_form(args[1:]):
        return None  # image-command stages: parsed by the commands themselves (cli.shape_chain)
    options: dict = {}
    positional: list[str] = []
    items = iter(args)
    for item in items:
        if item in _FLAGS:
            options[_FLAGS[item]] = True
        elif item in _VALUE_OPTIONS or (item.split("=", 1)[0] in _VALUE_OPTIONS and "=" in item):
            name, _, value = item.partition("=")
            if not value:
                value = next(items, None)
                if value is None:
                    return None
            options[_VALUE_OPTIONS[name]] = value
        elif item.startswith("-") and item != "-" and not item[1:2].isdigit():
            return None  # --help, or something for Typer to explain
        else:
            positional.append(item)
    if not positional:
        return None
    try:
        text = run(
            positional[0],
            positional[1:],
            kernel=options.get("kernel"),
            stride=options.get("stride", "1"),
            padding=options.get("padding", "0"),
            dilation=options.get("dilation", "1"),
            json_out=options.get("json", False),
            explain=options.get("explain", False),
            draw=options.get("draw"),
            at=options.get("at"),
        )
    except ConvcliError as exc:
        print(f"convcli: error: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        print(text, flush=True)
    except OSError as exc:  # a closed pipe, a full disk: one line (if stderr still takes it), exit 1
        from ..run.report import drop_stream, stream_failed

        try:
            print(f"convcli: error: {stream_failed(exc, sys.stdout)}", file=sys.stderr)
        except OSError:
            drop_stream(sys.stderr)
        return 1
    return 0
