"""Small matrices in, numbers out: the ``--matrix`` and ``--explain`` side of the image commands."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ..errors import ConvcliError
from ..geometry.sizes import format_size


def load_matrix(spec: str):
    """An inline matrix (``"1 2; 3 4"``) or a text/CSV/.npy matrix file, as a 2-D float32 array."""
    import numpy as np

    from ..engine.kernels import load_kernel_file, parse_matrix_text

    path = matrix_file(spec)
    if path is not None:
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


def matrix_file(spec: str) -> Path | None:
    """The file a ``--matrix`` spec names, or None for an inline matrix."""
    path = Path(spec)
    if ";" not in spec and (path.suffix.lower() in (".txt", ".csv", ".tsv", ".npy") or _is_file(path)):
        return path
    return None


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
    operation,
    spec: str,
    *,
    output: str | None,
    explain: bool,
    at: str | None,
    json_out: bool,
    quiet: bool,
    reads: tuple[tuple[str, str], ...] = (),
    max_memory: int | None = None,
    dry_run: bool = False,
) -> None:
    """Run ``operation`` on a small matrix; print it (a table or JSON), write it with ``output``.

    ``dry_run``: compute and print as usual (the matrix is small), but write nothing.

    ``reads``: the other files the run read, ``(what, path)`` (a kernel file): like the
    ``--matrix`` file itself, never overwritten by ``output``.
    """
    from ..ops.explain import check_position, check_small
    from ..run.plan import refuse_reads_as_outputs

    if output is not None:
        source = matrix_file(spec)
        matrix_reads = [("--matrix file", str(source))] if source is not None else []
        refuse_reads_as_outputs([output], [*matrix_reads, *reads])
    x = load_matrix(spec)
    check_matrix_memory(operation, x.shape, max_memory, None if quiet else "json" if json_out else "table")
    position = parse_position(at)
    if explain:
        check_small(x.shape)
    result = operation.apply(x[:, :, None])[:, :, 0]
    if explain or at is not None:
        check_position(position, result.shape)
    if output is not None and not dry_run:
        write_matrix(output, result)
    if quiet:
        return
    if json_out:
        from ..strict_json import dumps

        record = {
            "input": "matrix",
            "output": output,
            "operation": operation.name,
            "input_size": {"width": x.shape[1], "height": x.shape[0]},
            "output_size": {"width": result.shape[1], "height": result.shape[0]},
            **operation.report(x.shape),
            "result": result.tolist(),
        }
        if dry_run:
            record["dry_run"] = True
        if explain:
            step = operation.explain(x, position)
            record["explain"] = {
                "at": {"row": position[0], "col": position[1]},
                "terms": step.terms,
                "value": step.value,
                "equation": step.equation,
                "notes": step.notes,
            }
        try:
            print(dumps(record), flush=True)
        except OSError as exc:
            from ..run.report import stream_failed

            raise stream_failed(exc, sys.stdout) from None
        return
    render(operation, x, result, position, explain, output, dry_run)


# Printing a result: a value in a Python list and JSON text; a cell of Rich's table (measured
# at 500-700 bytes).
PRINT_BYTES = {"json": 64, "table": 1024}


def check_matrix_memory(operation, shape, max_memory: int | None, printed: str | None) -> None:
    """Refuse, before computing, a ``--matrix`` run whose working memory (the operation's
    estimate, and the result printed as a table or JSON) would exceed ``--max-memory``."""
    if max_memory is None:
        return
    out_h, out_w = operation.output_size(shape[:2])
    need = operation.memory_estimate(shape[:2], 1) + PRINT_BYTES.get(printed, 0) * out_h * out_w
    if need > max_memory:
        raise ConvcliError(
            f"--matrix: the {out_w}x{out_h} result needs about {need / 2**20:,.0f} MiB, over the "
            f"limit of {max_memory / 2**20:,.0f} MiB (--max-memory)"
        )


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


def _console():
    """Rich's console, except that a closed standard output is an error of one line (exit code
    1) where Rich would exit silently."""
    from rich.console import Console

    class Reporting(Console):
        def on_broken_pipe(self) -> None:
            from ..run.report import stream_failed

            self.quiet = True
            raise stream_failed(BrokenPipeError(32, "Broken pipe"), sys.stdout)

    return Reporting(highlight=False)


def render(operation, x, result, position, explain, output, dry_run: bool = False) -> None:
    console = _console()
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
    stages = operation.stage_results(x)
    for index, (stage, partial) in enumerate(stages[:-1], start=1):  # a chain: each stage's result
        console.print(f"stage {index} ({stage.name}): {format_size(partial.shape)}", markup=False)
        console.print(
            _table(
                partial.tolist(),
                row_labels=[str(i) for i in range(partial.shape[0])],
                col_labels=[str(j) for j in range(partial.shape[1])],
            )
        )
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
        from ..run.report import encodable

        verb = "would write" if dry_run else "wrote"
        console.print(encodable(f"{verb} {output}", console.file), markup=False)
