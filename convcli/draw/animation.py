"""The sliding window, animated: GIF frames of an operation on a small matrix.

Each frame shows the input on the left (padded as the operation pads it, a number in
each cell, shaded by value; padding cells tinted blue, window cells that hang past the
padding drawn outside it), the kernel in the middle, the output filling in on the right,
and a caption with the arithmetic of the current step.  For a filter or a pooling, one
frame per output value: its window highlighted (only the dilated taps), the value
appearing.  For a transposed convolution, one frame per input value: the value scattered
through the kernel into the output cells it reaches, the sums accumulating (the rows and
columns the padding crops off drawn around the output).  A chain is drawn one stage after
another.

Nothing here re-derives the geometry: the padding is the operation's ``padding_sides``
(pooling: its ``padding``), the cells an output reads (or an input reaches) come from
its ``input_rows`` (the halo rule of :func:`~convcli.geometry.sizes.window_rows`, and
:func:`~convcli.geometry.sizes.scatter_rows` for a transposed convolution), the values
from its ``apply`` (the scatter's partial sums: ``apply`` on the input with the values
not yet scattered set to 0, which a linear operation allows), the terms of each sum from
its ``explain``.

>>> from convcli.ops.catalog import Filter
>>> op = Filter(np.ones((2, 2), np.float32), stride=3)
>>> film = animate(op, np.arange(25, dtype=np.float32).reshape(5, 5))
>>> len(film.scenes), film.frame(0).mode     # a first frame, 2x2 outputs, a last frame
(6, 'P')
>>> film.scenes[2].caption
'out(0, 1) = 3*1 + 4*1 + 8*1 + 9*1 = 24'
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import ConvcliError
from ..geometry.sizes import Pair, format_pair, format_size
from ..ops.catalog import Filter, Pool, Upsample
from ..ops.chain import Chain
from ..ops.explain import number
from ..ops.pool import POOL_FILL

MAX_SIDE = 32  # cells a side of any grid drawn: the padded input, the output
MAX_STEPS = 400  # frames of steps over all stages (an output value each, or an input value each)
STEP_MS, FIRST_MS, LAST_MS = 700, 1500, 3000  # how long a step, the first and the last frame show

# ------------------------------------------------------------------- palette

LEVELS = 32  # value shades per ramp


def _blend(gray: int, tint: tuple[int, int, int], weight: float) -> tuple[int, int, int]:
    return tuple(round(gray * (1 - weight) + t * weight) for t in tint)


def _gray(level: int) -> int:
    return round(70 + level * (255 - 70) / (LEVELS - 1))


# Cells are shaded by value (dark: low, light: high) along one of four ramps: a plain value
# is gray, padding blue, the current window (or scatter) orange, a window cell in the
# padding magenta.  Drawn in palette mode: every frame shares this palette.
RAMPS = {
    "value": [(_gray(i),) * 3 for i in range(LEVELS)],
    "pad": [_blend(_gray(i), (70, 130, 230), 0.45) for i in range(LEVELS)],
    "mark": [_blend(_gray(i), (255, 140, 0), 0.6) for i in range(LEVELS)],
    "pad_mark": [_blend(_gray(i), (235, 60, 150), 0.55) for i in range(LEVELS)],
}
FLAT = {
    "background": (255, 255, 255),
    "text": (0, 0, 0),
    "light_text": (255, 255, 255),
    "line": (170, 170, 170),
    "title": (25, 55, 120),
    "outside": (250, 250, 250),  # a window cell past the padding (ceil mode)
    "outside_mark": (255, 215, 160),
    "mark_line": (200, 90, 0),
    "cross": (110, 110, 110),
    "cropped": (225, 232, 245),  # a transposed convolution's rows the padding crops off
}
PALETTE: list[tuple[int, int, int]] = [*FLAT.values()] + [c for ramp in RAMPS.values() for c in ramp]
INDEX = {name: i for i, name in enumerate(FLAT)}
UNCHANGED = len(PALETTE)  # a frame's pixels that are as in the frame before (GIF transparency)
RAMP_START = {name: len(FLAT) + LEVELS * position for position, name in enumerate(RAMPS)}

FONT_W, FONT_H = 6, 11  # Pillow's default bitmap font
MARGIN, LINE, GAP, CELL_H = 10, 15, 28, 20


# ------------------------------------------------------------------- scenes


@dataclass
class Grid:
    """A grid of cells as one frame shows it.

    ``values[r][c]`` is the cell at coordinate ``(origin[0] + r, origin[1] + c)`` (input or
    output coordinates: negative inside the padding); None shows no number.  ``kinds``:
    ``value`` (an input value, or an output computed), ``pad`` (padding), ``outside`` (past
    the padding, reached only by a hanging ceil-mode window), ``empty`` (an output not yet
    computed), ``cropped`` (cut off by a transposed convolution's padding).
    """

    label: str
    origin: Pair
    values: list[list[float | None]]
    kinds: list[list[str]]
    low: float  # the values shaded darkest and lightest
    high: float

    @property
    def shape(self) -> Pair:
        return len(self.values), len(self.values[0])


@dataclass
class Scene:
    """One frame's content: what it shows, before it is drawn."""

    title: str
    caption: str
    input: Grid
    kernel: Grid | None
    output: Grid
    marked_input: set[Pair] = field(default_factory=set)  # coordinates (input's)
    marked_output: set[Pair] = field(default_factory=set)  # coordinates (output's)
    duration: int = STEP_MS
    note: str = ""  # a second line under the caption
    crossed: set[Pair] = field(default_factory=set)  # input cells no window reads, crossed out


def steps_of(stage, input_hw: Pair) -> int:
    """Frames of steps ``stage`` takes on an input of ``input_hw``: one per output value, or
    for a transposed convolution one per input value."""
    if isinstance(stage, Upsample):
        return input_hw[0] * input_hw[1]
    out_h, out_w = stage.output_size(input_hw)
    return out_h * out_w


def check_animation(operation, input_hw: Pair) -> int:
    """Refuse, from the sizes alone, an animation too large to read; return its frames.

    Every grid drawn (the padded input, the output) at most ``MAX_SIDE`` cells a side, and
    at most ``MAX_STEPS`` steps over all stages.
    """
    stages = operation.stages if isinstance(operation, Chain) else (operation,)
    for stage in stages:
        if not isinstance(stage, (Filter, Pool, Upsample)):
            raise ConvcliError(f"--animate: draws filter, pool and upsample, not {stage.name}")
    sizes = operation.size_path(input_hw) if isinstance(operation, Chain) else [input_hw]
    steps = 0
    for position, stage in enumerate(stages):
        in_hw = tuple(sizes[position])
        out_hw = stage.output_size(in_hw)
        if isinstance(stage, Upsample):
            (ph, pw) = stage.padding
            drawn = "output with its cropped rows" if ph or pw else "output"
            grids = {"input": in_hw, drawn: (out_hw[0] + 2 * ph, out_hw[1] + 2 * pw)}
        else:
            top, bottom, left, right = _drawn_sides(stage, in_hw)
            grids = {"padded input": (in_hw[0] + top + bottom, in_hw[1] + left + right), "output": out_hw}
        where = f" (stage {position + 1})" if len(stages) > 1 else ""
        for name, (height, width) in grids.items():
            if max(height, width) > MAX_SIDE:
                raise ConvcliError(
                    f"--animate: draws grids up to {MAX_SIDE}x{MAX_SIDE}; the {name}{where} is "
                    f"{width}x{height} (use a smaller matrix or image)"
                )
        steps += steps_of(stage, in_hw)
    if steps > MAX_STEPS:
        raise ConvcliError(
            f"--animate: draws up to {MAX_STEPS} steps (one per output value, one per input value "
            f"of upsample); this run has {steps} (use a smaller matrix or image)"
        )
    return steps + 2 * len(stages)


def _drawn_sides(stage, input_hw: Pair):
    """The padding drawn around the input: a filter's as it pads; a pooling's as given on both
    sides (a ceil-mode window may reach past it, or leave part of it unread)."""
    if isinstance(stage, Pool):
        (ph, pw) = stage.padding
        return ph, ph, pw, pw
    return stage.padding_sides(input_hw)


def _taps(stage) -> tuple[Pair, Pair]:
    """``(kernel rows and columns, dilation)``."""
    size = stage.size if isinstance(stage, Pool) else tuple(stage.kernel.shape)
    return size, stage.dilation


def window(stage, at: Pair, input_hw: Pair) -> set[Pair]:
    """The input cells (input coordinates, negative in the padding) output ``at`` reads: in
    each axis the span ``stage.input_rows`` gives, every dilation-th cell of it."""
    (kh, kw), (dy, dx) = _taps(stage)
    per_axis = []
    for axis, k, d in ((0, kh, dy), (1, kw, dx)):
        lo, hi = stage.input_rows(axis, at[axis], at[axis] + 1, input_hw)
        assert hi - lo == d * (k - 1) + 1, "input_rows spans one dilated window"
        per_axis.append(range(lo, hi, d))
    return {(i, j) for i in per_axis[0] for j in per_axis[1]}


def scatter_targets(stage, at: Pair, input_hw: Pair, rows: range, cols: range) -> set[Pair]:
    """The output cells (among ``rows`` x ``cols``, cropped coordinates: negative in the cropped
    padding) input ``at`` of a transposed convolution reaches: those whose ``input_rows``
    (:func:`~convcli.geometry.sizes.scatter_rows`) hold it, on its dilation's phase."""
    (_, _), (dy, dx) = _taps(stage)
    reached = []
    for axis, axis_cells, d in ((0, rows, dy), (1, cols, dx)):
        s, p = stage.stride[axis], stage.padding[axis]
        reached.append(
            [
                r
                for r in axis_cells
                if (r + p - at[axis] * s) % d == 0
                and stage.input_rows(axis, r, r + 1, input_hw)[0]
                <= at[axis]
                < stage.input_rows(axis, r, r + 1, input_hw)[1]
            ]
        )
    return {(r, c) for r in reached[0] for c in reached[1]}


def _range_of(values) -> tuple[float, float]:
    finite = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    return min(finite), max(finite)


def _shown_kernel(stage) -> np.ndarray:
    kernel = np.asarray(stage.kernel, dtype=np.float32)
    return kernel[::-1, ::-1] if stage.mode == "convolution" else kernel


def _kernel_grid(stage) -> Grid | None:
    if isinstance(stage, Pool):
        return None
    kernel = _shown_kernel(stage)
    label = "kernel, rotated (convolution)" if stage.mode == "convolution" else "kernel"
    values = kernel.tolist()
    low, high = _range_of(kernel.ravel().tolist())
    return Grid(label, (0, 0), values, [["value"] * kernel.shape[1] for _ in values], low, high)


def fit(caption: str, limit: int) -> str:
    """``caption`` cut to ``limit`` characters between terms: ``a + b + ... = value`` for an
    equation, ``a, b, ...`` for a list (the terms start after the first ``=`` or ``:``)."""
    if len(caption) <= limit:
        return caption
    head, _, value = caption.rpartition(" = ")
    try:
        float(value)
        tail = f" ... = {value}"
    except ValueError:
        head, tail = caption, ", ..."
    start = min(i + 2 for i in (head.find("= "), head.find(": "), len(head)) if i >= 0)
    keep = head[: max(0, limit - len(tail))]
    if not head[len(keep) :].startswith((" + ", ", ")):
        cut = max(keep.rfind(" + ", start), keep.rfind(", ", start))
        keep = keep[:cut] if cut > 0 else keep
    return keep + tail


def _title(stage, input_hw: Pair, prefix: str) -> str:
    (kh, kw), _ = _taps(stage)
    parts = [f"stride {format_pair(stage.stride)}"]
    if isinstance(stage, Filter):
        top, bottom, left, right = stage.padding_sides(input_hw)
        name = f"filter {kw}x{kh} ({stage.mode})"
        if any((top, bottom, left, right)):
            parts.append(f"padding {stage.pad_mode} t{top} b{bottom} l{left} r{right}")
    elif isinstance(stage, Pool):
        name = f"{stage.op} pool {kw}x{kh}"
        if any(stage.padding):
            parts.append(f"padding {format_pair(stage.padding)}")
        if stage.ceil_mode:
            parts.append("ceil_mode")
    else:
        name = f"upsample {kw}x{kh} ({stage.mode})"
        if any(stage.padding):
            parts.append(f"padding {format_pair(stage.padding)}")
        if any(stage.output_padding):
            parts.append(f"output padding {format_pair(stage.output_padding)}")
    if stage.dilation != (1, 1):
        parts.append(f"dilation {format_pair(stage.dilation)}")
    sizes = f"{format_size(input_hw)} -> {format_size(stage.output_size(input_hw))}"
    return f"{prefix}{name}, {', '.join(parts)}: {sizes}"


def _ranges(values) -> str:
    values = sorted(values)
    runs, start = [], values[0]
    for previous, current in zip(values, values[1:] + [None]):
        if current != previous + 1:
            runs.append(str(start) if start == previous else f"{start}..{previous}")
            start = current
    return ", ".join(runs)


def _first(stage, input_hw: Pair, title: str, grid_in: Grid, kernel: Grid | None, output: Grid) -> Scene:
    """A stage's first frame: nothing computed yet, the output-size formula of each side on a
    line of its own."""
    first, second = stage.size_formula(input_hw)
    return Scene(title, first, grid_in, kernel, output, duration=FIRST_MS, note=second)


def _window_scenes(stage, x: np.ndarray, prefix: str) -> list[Scene]:
    """A filter's or a pooling's frames on the 2-D ``x``."""
    height, width = x.shape
    result = stage.apply(x[:, :, None])[:, :, 0]
    out_h, out_w = result.shape
    top, bottom, left, right = _drawn_sides(stage, (height, width))
    windows = {(r, c): window(stage, (r, c), (height, width)) for r in range(out_h) for c in range(out_w)}
    reach = set().union(*windows.values())
    row0 = min(-top, *(i for i, _ in reach))
    col0 = min(-left, *(j for _, j in reach))
    row1 = max(height + bottom, *(i + 1 for i, _ in reach))
    col1 = max(width + right, *(j + 1 for _, j in reach))
    if isinstance(stage, Filter):
        from ..engine.padding import pad2d

        padded = pad2d(x, (top, bottom, left, right), stage.pad_mode)
        pad_value = None
    else:
        padded, pad_value = None, float(POOL_FILL[stage.op])
    values, kinds = [], []
    for i in range(row0, row1):
        value_row, kind_row = [], []
        for j in range(col0, col1):
            if 0 <= i < height and 0 <= j < width:
                value_row.append(float(x[i, j]))
                kind_row.append("value")
            elif -top <= i < height + bottom and -left <= j < width + right:
                value_row.append(pad_value if padded is None else float(padded[i + top, j + left]))
                kind_row.append("pad")
            else:
                value_row.append(None)
                kind_row.append("outside")
        values.append(value_row)
        kinds.append(kind_row)
    if isinstance(stage, Filter):
        label = f"input, padded ({stage.pad_mode})" if any((top, bottom, left, right)) else "input"
    else:
        label = "input, padded" if any(stage.padding) else "input"
    low, high = _range_of(v for row, kind in zip(values, kinds) for v, k in zip(row, kind) if k == "value")
    if padded is not None:
        low, high = _range_of([low, high, *padded.ravel().tolist()])
    grid_in = Grid(label, (row0, col0), values, kinds, low, high)
    kernel = _kernel_grid(stage)
    title = _title(stage, (height, width), prefix)
    out_low, out_high = _range_of(result.ravel().tolist())

    def output(done: int) -> Grid:
        cells = [[None] * out_w for _ in range(out_h)]
        kinds_out = [["empty"] * out_w for _ in range(out_h)]
        for n in range(done):
            r, c = divmod(n, out_w)
            cells[r][c] = float(result[r, c])
            kinds_out[r][c] = "value"
        return Grid(f"output {format_size((out_h, out_w))}", (0, 0), cells, kinds_out, out_low, out_high)

    scenes = [_first(stage, (height, width), title, grid_in, kernel, output(0))]
    for n in range(out_h * out_w):
        at = divmod(n, out_w)
        equation = stage.explain(x, at).equation
        hanging = sum(
            not (-top <= i < height + bottom and -left <= j < width + right) for i, j in windows[at]
        )
        note = f"{hanging} cells of this window hang past the padding: not counted" if hanging else ""
        scenes.append(Scene(title, equation, grid_in, kernel, output(n + 1), windows[at], {at}, note=note))
    unread_rows = sorted(set(range(height)) - {i for i, _ in reach})
    unread_cols = sorted(set(range(width)) - {j for _, j in reach})
    unread = {(i, j) for i in range(height) for j in range(width)} - reach
    last = f"output {format_size((out_h, out_w))} done"
    if unread_rows or unread_cols:
        lines = [f"rows {_ranges(unread_rows)}"] if unread_rows else []
        lines += [f"columns {_ranges(unread_cols)}"] if unread_cols else []
        last += f"; no window reads input {' or '.join(lines)}"
    elif unread:
        last += f"; no window reads {len(unread)} input cells (crossed out)"
    final = Scene(title, last, grid_in, kernel, output(out_h * out_w), duration=LAST_MS, crossed=unread)
    scenes.append(final)
    return scenes


def _scatter_scenes(stage, x: np.ndarray, prefix: str) -> list[Scene]:
    """A transposed convolution's frames on the 2-D ``x``: one input value scattered a frame."""
    height, width = x.shape
    result = stage.apply(x[:, :, None])[:, :, 0]
    out_h, out_w = result.shape
    (ph, pw) = stage.padding
    rows, cols = range(-ph, out_h + ph), range(-pw, out_w + pw)
    kernel = _shown_kernel(stage)
    (_, _), (dy, dx) = _taps(stage)
    (sy, sx) = stage.stride
    grid_in = Grid(
        "input",
        (0, 0),
        x.astype(float).tolist(),
        [["value"] * width for _ in range(height)],
        *_range_of(x.ravel().tolist()),
    )
    kernel_grid = _kernel_grid(stage)
    title = _title(stage, (height, width), prefix)
    mask = np.zeros_like(x)
    partials, reached, targets = [], set(), []
    for n in range(height * width):
        at = divmod(n, width)
        mask[at] = 1
        partials.append(stage.apply((x * mask)[:, :, None])[:, :, 0])
        targets.append(scatter_targets(stage, at, (height, width), rows, cols))
    out_low, out_high = _range_of(
        [*result.ravel().tolist(), *(v for p in partials for v in p.ravel().tolist())]
    )

    def output(done: int, shown: set[Pair]) -> Grid:
        cells, kinds_out = [], []
        for r in rows:
            value_row, kind_row = [], []
            for c in cols:
                if not (0 <= r < out_h and 0 <= c < out_w):
                    value_row.append(None)
                    kind_row.append("cropped")
                elif (r, c) in shown:
                    value_row.append(float(partials[done - 1][r, c] if done else 0.0))
                    kind_row.append("value")
                else:
                    value_row.append(None)
                    kind_row.append("empty")
            cells.append(value_row)
            kinds_out.append(kind_row)
        label = f"output {format_size((out_h, out_w))}" + (", cropped by the padding" if ph or pw else "")
        return Grid(label, (-ph, -pw), cells, kinds_out, out_low, out_high)

    scenes = [_first(stage, (height, width), title, grid_in, kernel_grid, output(0, set()))]
    for n in range(height * width):
        at = divmod(n, width)
        reached |= targets[n]
        value = number(x[at])
        terms = []
        for r, c in sorted(targets[n]):
            m, q = (r + ph - at[0] * sy) // dy, (c + pw - at[1] * sx) // dx
            where = f"out({r}, {c})" if 0 <= r < out_h and 0 <= c < out_w else f"cropped({r}, {c})"
            terms.append(f"{where} += {value}*{number(kernel[m, q])}")
        caption = f"x({at[0]}, {at[1]}) = {value} scatters: " + (", ".join(terms) or "reaches no output")
        scenes.append(Scene(title, caption, grid_in, kernel_grid, output(n + 1, reached), {at}, targets[n]))
    everything = {(r, c) for r in range(out_h) for c in range(out_w)}
    last = f"output {format_size((out_h, out_w))} done: each value the sum of what scattered into it"
    scenes.append(
        Scene(title, last, grid_in, kernel_grid, output(height * width, everything), duration=LAST_MS)
    )
    return scenes


def stage_scenes(operation, matrix) -> list[list[Scene]]:
    """Every frame's content for ``operation`` on the 2-D ``matrix``, stage by stage (a chain:
    one stage after another, each on the result of the one before)."""
    x = np.asarray(matrix, dtype=np.float32)
    if x.ndim != 2:
        raise ConvcliError("--animate: draws a 2-D matrix (one channel)")
    check_animation(operation, x.shape)
    stages = operation.stages if isinstance(operation, Chain) else (operation,)
    found = []
    for position, stage in enumerate(stages):
        prefix = f"stage {position + 1} of {len(stages)}: " if len(stages) > 1 else ""
        make = _scatter_scenes if isinstance(stage, Upsample) else _window_scenes
        found.append(make(stage, x, prefix))
        if position:
            found[-1][0].input.label += f" (stage {position}'s output)"
        x = stage.apply(x[:, :, None])[:, :, 0]
    return found


# ------------------------------------------------------------------- drawing


@dataclass
class Layout:
    """Where one stage's grids are drawn: each grid's top-left pixel, its origin coordinate,
    and the cell size (the same for every frame of the stage)."""

    cell_w: int
    corners: dict[str, Pair]  # "input", "kernel", "output" -> (x, y) of cell [0][0]
    origins: dict[str, Pair]
    size: Pair  # (width, height) of the picture

    def box(self, grid: str, row: int, col: int) -> tuple[int, int, int, int]:
        """The pixel box ``(x0, y0, x1, y1)`` of the cell at coordinate ``(row, col)``."""
        x, y = self.corners[grid]
        r, c = row - self.origins[grid][0], col - self.origins[grid][1]
        x0, y0 = x + c * self.cell_w, y + r * CELL_H
        return x0, y0, x0 + self.cell_w - 1, y0 + CELL_H - 1

    def center(self, grid: str, row: int, col: int) -> Pair:
        x0, y0, x1, y1 = self.box(grid, row, col)
        return (x0 + x1) // 2, (y0 + y1) // 2

    def probe(self, grid: str, row: int, col: int) -> Pair:
        """A pixel of the cell's fill that no number covers: three pixels in from its top left."""
        x0, y0, _, _ = self.box(grid, row, col)
        return x0 + 3, y0 + 3


def _font():
    return ImageFont.load_default_imagefont()


def _cell_text(value) -> str:
    return "" if value is None else number(value)


def _index_label_width(origin: int, count: int) -> int:
    return FONT_W * max(len(str(origin)), len(str(origin + count - 1))) + 6


def layout_of(stage_scenes: list[Scene]) -> Layout:
    """The layout shared by one stage's frames."""
    first = stage_scenes[0]
    texts = [
        _cell_text(v)
        for scene in stage_scenes
        for grid in (scene.input, scene.kernel, scene.output)
        if grid is not None
        for row in grid.values
        for v in row
    ]
    cell_w = max(22, FONT_W * max(map(len, texts), default=1) + 8)
    corners, origins = {}, {}
    x = MARGIN
    top = MARGIN + 3 * LINE + 6  # the title, the caption, a note
    bottom = 0
    for name in ("input", "kernel", "output"):
        grid = getattr(first, name)
        if grid is None:
            continue
        rows, cols = grid.shape
        gutter = _index_label_width(grid.origin[0], rows)
        label_w = FONT_W * len(grid.label)
        corners[name] = (x + gutter, top + 2 * LINE)
        origins[name] = grid.origin
        x += max(gutter + cols * cell_w, label_w) + GAP
        bottom = max(bottom, top + 2 * LINE + rows * CELL_H)
    width = max(x - GAP + MARGIN, 2 * MARGIN + FONT_W * len(first.title), 420)
    return Layout(cell_w, corners, origins, (width, bottom + MARGIN))


def _level(grid: Grid, value) -> int:
    if value is None or not np.isfinite(value):
        return LEVELS - 4
    if grid.high <= grid.low:
        return LEVELS - 8
    return round(float(value - grid.low) / (grid.high - grid.low) * (LEVELS - 1))


def _fill(grid: Grid, kind: str, value, marked: bool) -> int:
    if kind in ("outside", "empty", "cropped"):
        name = {"outside": "outside", "empty": "background", "cropped": "cropped"}[kind]
        if marked:
            name = "outside_mark" if kind != "cropped" else None
            if name is None:
                return RAMP_START["pad_mark"] + LEVELS - 6
        return INDEX[name]
    ramp = {
        ("value", False): "value",
        ("value", True): "mark",
        ("pad", False): "pad",
        ("pad", True): "pad_mark",
    }
    return RAMP_START[ramp[kind, marked]] + _level(grid, value)


def _draw_grid(
    draw, font, layout: Layout, name: str, grid: Grid, marked: set[Pair], crossed: set[Pair] = frozenset()
) -> None:
    x, y = layout.corners[name]
    rows, cols = grid.shape
    draw.text(
        (x - _index_label_width(grid.origin[0], rows), y - 2 * LINE),
        grid.label,
        font=font,
        fill=INDEX["title"],
    )
    for c in range(cols):
        label = str(grid.origin[1] + c)
        draw.text(
            (x + c * layout.cell_w + (layout.cell_w - FONT_W * len(label)) // 2, y - LINE),
            label,
            font=font,
            fill=INDEX["line"],
        )
    for r in range(rows):
        coordinate = grid.origin[0] + r
        label = str(coordinate)
        draw.text((x - FONT_W * len(label) - 4, y + r * CELL_H + 4), label, font=font, fill=INDEX["line"])
        for c in range(cols):
            value, kind = grid.values[r][c], grid.kinds[r][c]
            is_marked = (coordinate, grid.origin[1] + c) in marked
            box = layout.box(name, coordinate, grid.origin[1] + c)
            fill = _fill(grid, kind, value, is_marked)
            outline = INDEX["mark_line"] if is_marked else INDEX["line"]
            draw.rectangle(box, fill=fill, outline=outline)
            if kind == "outside" and not is_marked:
                draw.rectangle((box[0] + 2, box[1] + 2, box[2] - 2, box[3] - 2), outline=INDEX["background"])
            if (coordinate, grid.origin[1] + c) in crossed:
                draw.line(box, fill=INDEX["cross"], width=2)
                draw.line((box[0], box[3], box[2], box[1]), fill=INDEX["cross"], width=2)
            text = _cell_text(value)
            if text:
                dark = kind in ("value", "pad") and _level(grid, value) < LEVELS // 2
                draw.text(
                    (box[0] + (layout.cell_w - FONT_W * len(text)) // 2, box[1] + (CELL_H - FONT_H) // 2),
                    text,
                    font=font,
                    fill=INDEX["light_text" if dark else "text"],
                )


def draw_scene(scene: Scene, layout: Layout, size: Pair) -> Image.Image:
    """One frame, in palette mode (:data:`PALETTE`), ``size`` pixels (width, height)."""
    image = Image.new("P", size, INDEX["background"])
    image.putpalette([v for rgb in PALETTE for v in rgb] + [255, 0, 255])  # UNCHANGED: never drawn
    draw = ImageDraw.Draw(image)
    font = _font()
    draw.text((MARGIN, MARGIN), scene.title, font=font, fill=INDEX["title"])
    limit = (size[0] - 2 * MARGIN) // FONT_W
    caption = fit(scene.caption, limit)
    draw.text((MARGIN, MARGIN + LINE), caption, font=font, fill=INDEX["text"])
    if scene.note:
        color = INDEX["text"] if scene.duration == FIRST_MS else INDEX["mark_line"]
        draw.text((MARGIN, MARGIN + 2 * LINE), fit(scene.note, limit), font=font, fill=color)
    _draw_grid(draw, font, layout, "input", scene.input, scene.marked_input, scene.crossed)
    if scene.kernel is not None:
        _draw_grid(draw, font, layout, "kernel", scene.kernel, set())
    _draw_grid(draw, font, layout, "output", scene.output, scene.marked_output)
    return image


@dataclass
class Animation:
    """An animation: what each frame shows (``scenes``) and where (``layouts[i]`` for frame i),
    every frame ``size`` pixels.  Frames are drawn when asked for (:meth:`frame`) and written one
    at a time (:meth:`write_gif`): memory stays at a few frames however long the animation."""

    scenes: list[Scene]
    layouts: list[Layout]
    size: Pair  # (width, height)

    def frame(self, index: int) -> Image.Image:
        return draw_scene(self.scenes[index], self.layouts[index], self.size)

    @property
    def frames(self) -> list[Image.Image]:
        return [self.frame(index) for index in range(len(self.scenes))]

    @property
    def durations(self) -> list[int]:
        return [scene.duration for scene in self.scenes]

    def write_gif(self, handle) -> None:
        """Write the GIF (looping, each frame for its scene's duration) to a binary file, frame
        after frame: each frame after the first only as the box where it differs from the one
        before (kept on screen under it), so one frame is held at a time however long the
        animation."""
        from PIL import GifImagePlugin

        previous = None
        for index, scene in enumerate(self.scenes):
            image = self.frame(index)
            pixels = np.asarray(image)
            if previous is None:
                header, _ = GifImagePlugin.getheader(image, None, {"loop": 0})
                handle.write(b"".join(header))
                box = (0, 0, *self.size)
            else:
                rows, cols = np.nonzero(pixels != previous)
                if rows.size:
                    box = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)
                else:  # the same picture: one pixel, so that every scene keeps its frame
                    box = (0, 0, 1, 1)
            options = {"duration": scene.duration, "disposal": 1}
            part = image
            if previous is not None:
                x0, y0, x1, y1 = box
                window = pixels[y0:y1, x0:x1].copy()
                window[window == previous[y0:y1, x0:x1]] = UNCHANGED  # shows the frame before
                part = Image.fromarray(window, "P")
                part.putpalette(image.getpalette())
                options["transparency"] = UNCHANGED
            handle.write(b"".join(GifImagePlugin.getdata(part, box[:2], **options)))
            previous = pixels
        handle.write(b";")

    def gif_bytes(self) -> bytes:
        buffer = io.BytesIO()
        self.write_gif(buffer)
        return buffer.getvalue()

    def save(self, path) -> None:
        """Write the GIF to ``path`` atomically (a temporary file, then renamed)."""
        from ..io.images import atomic_write

        atomic_write(path, self.write_gif)


def animate(operation, matrix) -> Animation:
    """The animation of ``operation`` (a Filter, Pool, Upsample, or a Chain of them) on the 2-D
    ``matrix``; refused over ``MAX_SIDE`` or ``MAX_STEPS`` (:func:`check_animation`)."""
    found, layouts = [], []
    for stage in stage_scenes(operation, matrix):
        layout = layout_of(stage)
        found += stage
        layouts += [layout] * len(stage)
    size = (max(layout.size[0] for layout in layouts), max(layout.size[1] for layout in layouts))
    return Animation(found, layouts, size)
