"""Planning a run: which images, and where each output goes, decided before any work.

Every output path is decided up front, so that collisions and inputs named as
outputs are refused before a single image is computed.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from ..errors import ConvcliError
from ..geometry.sizes import format_size
from ..io.images import read_size
from ..ops.base import Operation
from .tasks import STDIN, STDOUT, Outcome, RunOptions, Task, failed, size_record

# What a folder input picks up.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".npy")
# Output suffixes that keep the input's extension in default names.
KEEP_SUFFIXES = (".png", ".tif", ".tiff", ".npy", ".bmp", ".webp")
TEMPLATE_FIELDS = ("stem", "ext", "parent", "op", "kernel", "name")
_GLOB_CHARS = set("*?[")


def expand_inputs(inputs: list[str], recursive: bool) -> tuple[list[str], bool]:
    """Files, folders and glob patterns -> input paths in a stable order.

    Returns the paths and whether this is a batch (several images, or any
    folder or pattern), in which a failed image does not stop the others.
    """
    paths: list[str] = []
    batch = len(inputs) > 1
    for item in inputs:
        if item == STDIN:
            paths.append(item)
            continue
        path = Path(item)
        if path.is_dir() and path.suffix.lower() != ".zarr":  # a Zarr array is a folder, and one image
            batch = True
            pattern = "**/*" if recursive else "*"
            found = sorted(
                p
                for p in path.glob(pattern)
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
            paths.extend(str(p) for p in found)
        elif not path.exists() and _GLOB_CHARS & set(item):
            batch = True
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise ConvcliError(f"input {item!r}: the pattern matches no file")
            paths.extend(m for m in matches if Path(m).is_file())
        else:
            paths.append(item)  # a missing file fails when it is loaded
    unique = {}
    for item in paths:  # the same file named twice (or matched twice) is processed once
        unique.setdefault(item if item == STDIN else path_key(item), item)
    paths = list(unique.values())
    if not paths:
        raise ConvcliError(f"input: no image files found in {', '.join(map(repr, inputs))}")
    if paths.count(STDIN) > 1:
        raise ConvcliError("input '-': standard input can be read only once")
    return paths, batch or len(paths) > 1


def _input_root(item: str) -> Path | None:
    path = Path(item)
    return path if item != STDIN and path.is_dir() else None


# ---------------------------------------------------------------- outputs


def default_name(input_path: str, op: Operation, suffix: str | None = None) -> str:
    if input_path == STDIN:
        stem, in_suffix = "stdin", ".png"
    else:
        stem, in_suffix = Path(input_path).stem, Path(input_path).suffix.lower()
    if suffix is None:
        suffix = in_suffix if in_suffix in KEEP_SUFFIXES else ".png"
    return f"{stem}-{op.tag}{suffix}"


def render_template(template: str, input_path: str, op: Operation) -> str:
    path = Path("stdin.png" if input_path == STDIN else input_path)
    fields = {
        "stem": path.stem,
        "ext": path.suffix.lstrip("."),
        "parent": str(path.parent),
        "op": op.name,
        "kernel": op.tag,
        "name": path.name,
    }
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConvcliError(
            f"--output-template: {template!r} is not a valid template ({exc}); "
            f"fields: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
        ) from None


def plan_outputs(
    inputs: list[str], raw_inputs: list[str], batch: bool, op: Operation, opts: RunOptions
) -> list[Task]:
    """Decide every output path up front; refuse collisions and inputs as outputs."""
    if opts.output is not None and opts.template is not None:
        raise ConvcliError("-o and --output-template: give one or the other")
    if opts.output == STDOUT and (batch or len(inputs) != 1):
        raise ConvcliError("-o -: standard output can carry one image only")
    roots = [r for r in map(_input_root, raw_inputs) if r is not None]
    tasks = []
    for index, item in enumerate(inputs):
        replace = make_folder = False
        if opts.output == STDOUT:
            output = STDOUT
        elif opts.template is not None:
            output, make_folder = render_template(opts.template, item, op), True
        elif opts.output is not None and (
            batch or Path(opts.output).is_dir() or opts.output.endswith(("/", os.sep))
        ):
            sub = _relative_folder(item, roots) if opts.recursive else Path()
            output, make_folder = str(Path(opts.output) / sub / default_name(item, op)), True
        elif opts.output is not None:
            output, replace = opts.output, True
        else:
            folder = Path(".") if item == STDIN else Path(item).parent
            output = str(folder / default_name(item, op))
        tasks.append(Task(index, item, output, replace, make_folder))

    seen: dict[str, str] = {}
    input_keys = {path_key(i): i for i in inputs if i != STDIN}
    for task in tasks:
        if task.output == STDOUT:
            continue
        key = path_key(task.output)
        if key in input_keys:
            raise ConvcliError(f"output {task.output!r}: is an input file; convcli never overwrites an input")
        if key in seen:
            raise ConvcliError(
                f"output {task.output!r}: both {seen[key]!r} and {task.input!r} would be written "
                f"there; use --output-template with {{parent}} or {{stem}} to tell them apart"
            )
        seen[key] = task.input
    return tasks


def _relative_folder(item: str, roots: list[Path]) -> Path:
    path = Path(item).resolve()
    for root in roots:
        try:
            return path.parent.relative_to(root.resolve())
        except ValueError:
            continue
    return Path()


def path_key(path: str) -> str:
    """The same file, however it is named: resolved links, normalised case."""
    return os.path.normcase(os.path.realpath(path))


def skip_or_plan(op: Operation, task: Task, opts: RunOptions) -> Outcome | None:
    """Outcomes decided without computing: an existing output, or a dry run."""
    exists = task.output != STDOUT and Path(task.output).exists()
    if exists and not opts.overwrite and not task.replace:
        record = {"input": task.input, "output": task.output, "skipped": "output exists"}
        return Outcome(
            task, "skipped", record, f"{task.input}: skipped, {task.output} exists (--overwrite replaces it)"
        )
    if not opts.dry_run:
        return None
    try:
        if task.input == STDIN:
            raise ConvcliError("input '-': --dry-run cannot read standard input")
        in_size = read_size(task.input)
        out_size = op.output_size(in_size)
    except ConvcliError as exc:
        return failed(task, str(exc))
    record = {
        "input": task.input,
        "output": task.output,
        "operation": op.name,
        "input_size": size_record(in_size),
        "output_size": size_record(out_size),
        "dry_run": True,
        "replaces": exists,
    }
    verb = "would replace" if exists else "would write"
    line = f"{task.input}: {format_size(in_size)} -> {format_size(out_size)}, {verb} {task.output}"
    return Outcome(task, "planned", record, line)
