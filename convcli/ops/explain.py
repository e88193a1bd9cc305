"""Step-by-step explanations of one output value, for small matrices.

Each ``explain_*`` function recomputes the chosen output position with plain
Python from its definition and returns the pieces a learner needs to see:
the (padded) input with the window marked, the kernel, the terms of the sum,
and the value.  The CLI renders them; the tests check that the value agrees
with the library function.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConvcliError

MAX_EXPLAIN_SIDE = 16


@dataclass
class Step:
    """One output position, explained."""

    title: str  # what the grid shows, e.g. "padded input (zeros), window of output (0, 1)"
    grid: list[list[float | None]]  # the input as the operation sees it (None: not a number shown)
    marked: set[tuple[int, int]]  # cells of ``grid`` that take part
    grid_origin: tuple[int, int]  # input coordinate of grid[0][0] (negative inside padding)
    kernel: list[list[float]] | None
    kernel_note: str
    terms: list[str]  # each term of the sum, written out
    value: float
    equation: str  # the whole computation in one line
    notes: list[str] = field(default_factory=list)


def number(value) -> str:
    """Short, exact-looking numbers: 3, -0.5, 0.1111, inf."""
    value = float(value)
    if value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


def _signed(value: float) -> str:
    text = number(value)
    return f"({text})" if text.startswith("-") else text


def check_small(shape, limit: int = MAX_EXPLAIN_SIDE) -> None:
    if max(shape[:2]) > limit:
        raise ConvcliError(
            f"--explain: shows matrices up to {limit}x{limit}; this input is "
            f"{shape[1]}x{shape[0]} (use a smaller --matrix, or drop --explain)"
        )


def check_position(at: tuple[int, int], out_shape) -> None:
    row, col = at
    if not (0 <= row < out_shape[0] and 0 <= col < out_shape[1]):
        raise ConvcliError(
            f"--at: ({row}, {col}) is outside the {out_shape[1]}x{out_shape[0]} output "
            f"(rows 0..{out_shape[0] - 1}, columns 0..{out_shape[1] - 1})"
        )


AXES = ((1, "column", "left", "right"), (0, "row", "top", "bottom"))  # width first, as WIDTHxHEIGHT


def _listed(values) -> str:
    values = list(values)
    if len(values) > 2 and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ", ".join(str(v) for v in values)


def reach_notes(in_hw, out_hw, kernel_hw, stride, dilation, sides) -> list[str]:
    """What the windows leave out, columns first then rows: the input columns (rows) no
    window reaches, and why (the next jump of the stride would run past the padded input;
    the stride is longer than the window; dilation skips them).

    >>> note = reach_notes((5, 5), (1, 1), (3, 3), (3, 3), (1, 1), (0, 0, 0, 0))[0]
    >>> note.split(": ")[0]
    'no window reaches input columns 3, 4'
    >>> note.split("; ")[1].split(", past")[0]
    'the next jump would start at column 3 and need columns 3..5'
    """
    notes = []
    for axis, name, _, _ in AXES:
        n, out, k = in_hw[axis], out_hw[axis], kernel_hw[axis]
        s, d, before, after = stride[axis], dilation[axis], sides[2 * axis], sides[2 * axis + 1]
        starts = [o * s - before for o in range(out)]
        touched = {start + m * d for start in starts for m in range(k)}
        missing = [i for i in range(n) if i not in touched]
        if not missing:
            continue
        plural = f"{name}s" if len(missing) > 1 else name
        text = f"no window reaches input {plural} {_listed(missing)}"
        reasons = []
        beyond = [i for i in missing if i > max(touched)]
        if beyond:
            start = out * s - before
            reasons.append(
                f"the windows start every {s} {name}s, at {_listed(starts)}; the next jump would start at "
                f"{name} {start} and need {name}s {start}..{start + (k - 1) * d}, past the last {name} "
                f"the padded input has ({n - 1 + after})"
            )
        if len(beyond) < len(missing):
            extent = d * (k - 1) + 1
            why = f"the stride {s} is longer than the window ({extent})" if s > extent else ""
            if d > 1:
                why = (why + " and " if why else "") + f"the dilation {d} skips {d - 1} between taps"
            reasons.append(f"the others fall between windows: {why or 'no window covers them'}")
        notes.append(text + (": " + "; ".join(reasons) if reasons else ""))
    return notes


def hanging_notes(in_hw, out_hw, size, stride, padding, dilation) -> list[str]:
    """The windows that hang past the input and its padding (pooling with ``ceil_mode``), columns
    first: their cells outside count for nothing (no value for max and min, not in the divisor
    of mean)."""
    notes = []
    for axis, name, _, side in AXES:
        n, k, s, p, d = in_hw[axis], size[axis], stride[axis], padding[axis], dilation[axis]
        for o in range(out_hw[axis]):
            start = o * s - p
            end = start + (k - 1) * d
            if end > n - 1 + p:
                notes.append(
                    f"ceil_mode: the window of output {name} {o} covers input {name}s {start}..{end}, "
                    f"past the {side} edge (its last {name}, padding included, is {n - 1 + p}); its cells "
                    f"outside count for nothing"
                )
    return notes


def explain_filter(x, kernel, *, stride, sides, dilation, pad_mode, mode, at) -> Step:
    """Explain ``out[at]`` of :func:`convcli.engine.filtering.filter2d` on a 2-D matrix."""
    from ..engine.padding import pad2d

    k = [list(map(float, row)) for row in kernel]
    note = "kernel as given (cross-correlation: no flip)"
    if mode == "convolution":
        k = [row[::-1] for row in k[::-1]]
        note = "kernel rotated 180 degrees (convolution flips it; correlation would not)"
    padded = pad2d(x, sides, pad_mode).tolist()
    (sy, sx), (dy, dx) = stride, dilation
    row, col = at
    marked, terms, total = set(), [], 0.0
    for m, k_row in enumerate(k):
        for n, weight in enumerate(k_row):
            i, j = row * sy + m * dy, col * sx + n * dx
            value = padded[i][j]
            marked.add((i, j))
            terms.append(f"{_signed(value)}*{_signed(weight)}")
            total += value * weight
    top, _, left, _ = sides
    title = (
        f"input padded with {pad_mode} (top {sides[0]}, bottom {sides[1]}, left {sides[2]}, "
        f"right {sides[3]}); the window of output ({row}, {col}) is marked"
    )
    equation = f"out({row}, {col}) = " + " + ".join(terms) + f" = {number(total)}"
    kernel_hw, padded_hw = (len(k), len(k[0])), (len(padded), len(padded[0]))
    out_hw = tuple((padded_hw[a] - dilation[a] * (kernel_hw[a] - 1) - 1) // stride[a] + 1 for a in (0, 1))
    notes = reach_notes(x.shape[:2], out_hw, kernel_hw, stride, dilation, sides)
    return Step(title, padded, marked, (-top, -left), k, note, terms, total, equation, notes)


def explain_pool(
    x, *, size, stride, padding, dilation, ceil_mode, op, count_include_pad, at, out_size=None
) -> Step:
    """Explain ``out[at]`` of :func:`convcli.engine.pooling.pool2d` on a 2-D matrix (whose
    output is ``out_size``, ``(height, width)``, for the notes on what the windows leave out)."""
    height, width = len(x), len(x[0])
    (kh, kw), (sy, sx), (ph, pw), (dy, dx) = size, stride, padding, dilation
    row, col = at
    y0, x0 = row * sy - ph, col * sx - pw
    rows = max(height + 2 * ph, y0 + ph + (kh - 1) * dy + 1)
    cols = max(width + 2 * pw, x0 + pw + (kw - 1) * dx + 1)
    grid: list[list[float | None]] = [[None] * cols for _ in range(rows)]
    for i in range(height):
        for j in range(width):
            grid[i + ph][j + pw] = float(x[i][j])
    marked, inside = set(), []
    for m in range(kh):
        for n in range(kw):
            i, j = y0 + m * dy, x0 + n * dx
            marked.add((i + ph, j + pw))
            if 0 <= i < height and 0 <= j < width:
                inside.append(float(x[i][j]))
    notes = []
    if op in ("max", "min"):
        value = max(inside) if op == "max" else min(inside)
        pad_word = "minus" if op == "max" else "plus"
        terms = [number(v) for v in inside]
        equation = f"out({row}, {col}) = {op}({', '.join(terms)}) = {number(value)}"
        notes.append(f"padding counts as {pad_word} infinity, so it never wins")
    else:
        h_end = min(y0 + kh, height + ph)
        w_end = min(x0 + kw, width + pw)
        window_cells = (h_end - y0) * (w_end - x0)
        counted = window_cells if count_include_pad else len(inside)
        value = sum(inside) / counted
        terms = [number(v) for v in inside]
        equation = f"out({row}, {col}) = ({' + '.join(terms)}) / {counted} = {number(value)}"
        if count_include_pad:
            notes.append(
                f"count_include_pad: the divisor {counted} counts padded cells "
                f"({len(inside)} in the input), as PyTorch's avg_pool2d"
            )
        else:
            notes.append(f"--no-count-include-pad: the divisor {counted} counts input cells only")
        if window_cells < kh * kw:
            notes.append("the window runs past the padding (ceil_mode), those cells are not counted")
    out_hw = out_size if out_size is not None else (row + 1, col + 1)
    sides = (ph, ph, pw, pw)
    notes += reach_notes((height, width), out_hw, size, stride, dilation, sides)
    if ceil_mode:
        notes += hanging_notes((height, width), out_hw, size, stride, padding, dilation)
    title = (
        f"input with padding {pw} left/right, {ph} top/bottom (blank cells); "
        f"the window of output ({row}, {col}) is marked"
    )
    return Step(title, grid, marked, (-ph, -pw), None, "", terms, value, equation, notes)


def explain_transposed(x, kernel, *, stride, padding, output_padding, dilation, mode, at) -> Step:
    """Explain ``out[at]`` of :func:`convcli.engine.transposed.conv_transpose2d` on a 2-D matrix."""
    k = [list(map(float, row)) for row in kernel]
    note = "kernel as given"
    if mode == "convolution":
        k = [r[::-1] for r in k[::-1]]
        note = "kernel rotated 180 degrees (--mode convolution)"
    height, width = len(x), len(x[0])
    (sy, sx), (ph, pw), (dy, dx) = stride, padding, dilation
    row, col = at
    marked, terms, total = set(), [], 0.0
    # out[y] gathers x[i] * k[m] for every i*s - p + m*d == y.
    for i in range(height):
        for m, k_row in enumerate(k):
            if i * sy - ph + m * dy != row:
                continue
            for j in range(width):
                for n, weight in enumerate(k_row):
                    if j * sx - pw + n * dx != col:
                        continue
                    value = float(x[i][j])
                    marked.add((i, j))
                    terms.append(f"x({i}, {j})*k({m}, {n}) = {_signed(value)}*{_signed(weight)}")
                    total += value * weight
    notes = [
        "each input pixel x(i, j) adds x(i, j) * k(m, n) to the output at "
        f"(i*{sy} - {ph} + m*{dy}, j*{sx} - {pw} + n*{dx})"
    ]
    if not terms:
        notes.append("no input pixel reaches this position: its value is 0")
    equation = (
        f"out({row}, {col}) = "
        + (" + ".join(t.split(" = ")[1] for t in terms) or "0")
        + f" = {number(total)}"
    )
    title = f"input; the pixels that scatter into output ({row}, {col}) are marked"
    return Step(
        title, [list(map(float, r)) for r in x], marked, (0, 0), k, note, terms, total, equation, notes
    )
