"""Small matrices in, numbers out: the ``--matrix`` and ``--explain`` side of the image commands."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ConvcliError
from ..geometry.sizes import format_size


def load_matrix(spec: str):
    """An inline matrix (``"1 2; 3 4"``) or a text/CSV/.npy matrix file, as a 2-D float32 array."""
    import numpy as np

    from ..engine.kernels import load_kernel_file, parse_matrix_text

    path = Path(spec)
    if ";" not in spec and (path.suffix.lower() in (".txt", ".csv", ".tsv", ".npy") or _is_file(path)):
        if not path.exists():
            raise ConvcliError(f"--matrix: file {spec!r} does not exist")
        array = np.asarray(load_kernel_file(path), dtype=np.float64)
        where = f"--matrix file {spec!r}"
    else:
        array = parse_matrix_text(spec, "--matrix")
        where = "--matrix"
    if array.ndim != 2 or array.size == 0:
        raise ConvcliError(f"{where}: must be a non-empty 2-D matrix")
    if not np.isfinite(array).all():
        raise ConvcliError(f"{where}: holds NaN or infinite values")
    return array.astype(np.float32)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a long inline matrix is no valid file name
        return False


def parse_position(text: str | None) -> tuple[int, int]:
    if text is None:
        return (0, 0)
    match = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", text)
    if not match:
        raise ConvcliError(f"--at: expected ROW,COL (0-based, e.g. 1,2), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def run_matrix(
    operation, spec: str, *, output: str | None, explain: bool, at: str | None, json_out: bool, quiet: bool
) -> None:
    from ..ops.explain import check_position, check_small

    x = load_matrix(spec)
    position = parse_position(at)
    if explain:
        check_small(x.shape)
    result = operation.apply(x[:, :, None])[:, :, 0]
    if explain or at is not None:
        check_position(position, result.shape)
    if output is not None:
        write_matrix(output, result)
    if quiet:
        return
    if json_out:
        import json

        record = {
            "input": "matrix",
            "output": output,
            "operation": operation.name,
            "input_size": {"width": x.shape[1], "height": x.shape[0]},
            "output_size": {"width": result.shape[1], "height": result.shape[0]},
            **operation.report(x.shape),
            "result": result.tolist(),
        }
        if explain:
            step = operation.explain(x, position)
            record["explain"] = {
                "at": {"row": position[0], "col": position[1]},
                "terms": step.terms,
                "value": step.value,
                "equation": step.equation,
            }
        print(json.dumps(record))
        return
    render(operation, x, result, position, explain, output)


def write_matrix(output: str, result) -> None:
    import io

    import numpy as np

    from ..io.images import write_atomic_bytes

    suffix = Path(output).suffix.lower()
    buffer = io.BytesIO()
    if suffix == ".npy":
        np.save(buffer, result.astype(np.float32), allow_pickle=False)
    elif suffix in (".csv", ".txt"):
        np.savetxt(buffer, result, delimiter="," if suffix == ".csv" else " ", fmt="%.9g")
    else:
        raise ConvcliError(f"output {output!r}: a matrix is written as .npy, .csv or .txt")
    write_atomic_bytes(output, buffer.getvalue())


def _table(grid, *, marked=(), highlight=None, row_labels=None, col_labels=None):
    from rich.table import Table

    from ..ops.explain import number

    table = Table(show_header=col_labels is not None, show_lines=False, pad_edge=True)
    if row_labels is not None:
        table.add_column("", style="dim", justify="right")
    for j in range(len(grid[0])):
        table.add_column(col_labels[j] if col_labels else "", justify="right", style=None)
    for i, row in enumerate(grid):
        cells = []
        for j, value in enumerate(row):
            text = "" if value is None else number(value)
            if (i, j) in marked:
                text = f"[bold reverse]\\[{text or ' '}][/]"
            elif highlight == (i, j):
                text = f"[bold reverse]\\[{text}][/]"
            cells.append(text)
        table.add_row(*(([row_labels[i]] if row_labels else []) + cells))
    return table


def render(operation, x, result, position, explain, output) -> None:
    from rich.console import Console

    console = Console(highlight=False)
    in_size, out_size = format_size(x.shape), format_size(result.shape)
    if explain:
        step = operation.explain(x, position)
        oy, ox = step.grid_origin
        rows = [str(oy + i) for i in range(len(step.grid))]
        cols = [str(ox + j) for j in range(len(step.grid[0]))]
        console.print(step.title, markup=False)
        console.print(_table(step.grid, marked=step.marked, row_labels=rows, col_labels=cols))
        if step.kernel is not None:
            console.print(
                f"kernel {len(step.kernel[0])}x{len(step.kernel)}: {step.kernel_note}", markup=False
            )
            console.print(_table(step.kernel))
        console.print(f"[bold]{step.equation}[/]", markup=True)
        for note in step.notes:
            console.print(f"note: {note}", markup=False)
        console.print()
        console.print("output size:", markup=False)
        for line in operation.size_formula(x.shape):
            console.print(f"  {line}", markup=False)
    highlight = position if explain else None
    console.print(f"output {out_size} (from {in_size})", markup=False)
    console.print(
        _table(
            result.tolist(),
            highlight=highlight,
            row_labels=[str(i) for i in range(result.shape[0])],
            col_labels=[str(j) for j in range(result.shape[1])],
        )
    )
    if output is not None:
        console.print(f"wrote {output}", markup=False)
