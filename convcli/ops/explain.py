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
    return Step(title, padded, marked, (-top, -left), k, note, terms, total, equation)


def explain_pool(x, *, size, stride, padding, dilation, ceil_mode, op, count_include_pad, at) -> Step:
    """Explain ``out[at]`` of :func:`convcli.engine.pooling.pool2d` on a 2-D matrix."""
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
