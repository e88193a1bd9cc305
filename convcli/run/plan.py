"""Planning a run: which images, and where each output goes, decided before any work.

Every output path is decided up front, so that collisions and inputs named as
outputs are refused before a single image is computed.
"""

from __future__ import annotations

import glob
import os
import re
import string
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from ..errors import ConvcliError, describe
from ..io.images import read_size
from ..io.stores import check_url, is_url, local_path, url_key
from ..io.stores import exists as store_exists
from ..io.stores import join as join_url
from ..io.stores import parent as url_parent
from ..ops.base import Operation
from .tasks import STDIN, STDOUT, Outcome, RunOptions, Task, failed, os_reason, size_record

# What a folder input picks up.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".npy")
# Output suffixes that keep the input's extension in default names.
KEEP_SUFFIXES = (".png", ".tif", ".tiff", ".npy", ".bmp", ".webp", ".zarr")
TEMPLATE_FIELDS = ("stem", "ext", "parent", "op", "kernel", "name")
MAX_FIELD_WIDTH = 255  # a template's format spec may pad a field to this many characters, no more
DEFAULT_NAME_MAX = 255  # bytes in one file name, where the file system does not say
_GLOB_CHARS = set("*?[")


def expand_inputs(inputs: list[str], recursive: bool) -> tuple[list[str], bool]:
    """Files, folders and glob patterns -> input paths in a stable order.

    Returns the paths and whether this is a batch (several images, or any
    folder or pattern), in which a failed image does not stop the others.
    """
    paths: list[str] = []
    batch = len(inputs) > 1
    for item in inputs:
        item = local_path(item)  # a file:// URL is a local path
        if item == STDIN:
            paths.append(item)
            continue
        if is_url(item):  # a .zarr store, one image; never expanded as a folder or a pattern
            check_url(item, "input")
            paths.append(item)
            continue
        path = Path(item)
        if os.path.isdir(item) and path.suffix.lower() != ".zarr":  # a Zarr array is a folder, and one image
            batch = True
            pattern = "**/*" if recursive else "*"
            found = sorted(
                p
                for p in path.glob(pattern)
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
            paths.extend(str(p) for p in found)
        elif not os.path.exists(item) and _GLOB_CHARS & set(item):
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
    item = local_path(item)
    return Path(item) if item != STDIN and not is_url(item) and os.path.isdir(item) else None


# ---------------------------------------------------------------- outputs


def default_name(input_path: str, op: Operation, suffix: str | None = None) -> str:
    if input_path == STDIN:
        stem, in_suffix = "stdin", ".png"
    else:
        stem, in_suffix = Path(input_path).stem, Path(input_path).suffix.lower()
    if suffix is None:
        suffix = in_suffix if in_suffix in KEEP_SUFFIXES else ".png"
    return f"{stem}-{op.tag}{suffix}"


def check_template(template: str) -> None:
    """Refuse, before any work, a template that is not text with the documented plain fields.

    A field is one of TEMPLATE_FIELDS, written ``{stem}``, with an optional format spec
    (``{stem:.8}``, ``{stem:_<12}``) whose widths are at most MAX_FIELD_WIDTH; no attributes,
    indexes, positions or conversions (``{stem.x}``, ``{stem[0]}``, ``{0}``, ``{}``, ``{stem!r}``).
    """
    fields = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)

    def refuse(reason: str):
        return ConvcliError(f"--output-template: {template!r}: {reason}; fields: {fields}")

    if not template.strip():
        raise refuse("is empty")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise refuse(f"is not a valid template ({describe(exc)}; write {{{{ and }}}} for braces)") from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in TEMPLATE_FIELDS:
            raise refuse(f"{{{field}}} is not a field (only the plain names below)")
        if conversion is not None:
            raise refuse(f"{{{field}!{conversion}}}: conversions are not supported")
        if "{" in spec or "}" in spec:
            raise refuse(f"{{{field}:{spec}}}: a format spec cannot hold fields")
        if any(len(digits) > 3 or int(digits) > MAX_FIELD_WIDTH for digits in re.findall(r"\d+", spec)):
            raise refuse(f"{{{field}:{spec}}}: widths and precisions are at most {MAX_FIELD_WIDTH}")
        try:
            format("x", spec)
        except ValueError as exc:
            raise refuse(f"{{{field}:{spec}}} is not a valid format spec ({describe(exc)})") from None


def render_template(template: str, input_path: str, op: Operation) -> str:
    check_template(template)
    path = Path("stdin.png" if input_path == STDIN else input_path)
    fields = {
        "stem": path.stem,
        "ext": path.suffix.lstrip("."),
        "parent": url_parent(input_path) if is_url(input_path) else str(path.parent),
        "op": op.name,
        "kernel": op.tag,
        "name": path.name,
    }
    try:
        return template.format(**fields)
    except (KeyError, IndexError, AttributeError, TypeError, ValueError) as exc:
        raise ConvcliError(
            f"--output-template: {template!r} is not a valid template ({describe(exc)}); "
            f"fields: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}"
        ) from None


def plan_outputs(
    inputs: list[str], raw_inputs: list[str], batch: bool, op: Operation, opts: RunOptions
) -> list[Task]:
    """Decide every output path up front; refuse collisions, and outputs that are files the
    run reads (the images, and ``opts.reads``: kernel, preset and matrix files)."""
    if opts.output is not None and opts.template is not None:
        raise ConvcliError("-o and --output-template: give one or the other")
    if opts.output == STDOUT and (batch or len(inputs) != 1):
        raise ConvcliError("-o -: standard output can carry one image only")
    if opts.template is not None:
        check_template(opts.template)
    if opts.output is not None:
        opts = replace(opts, output=local_path(opts.output))
    roots = [r for r in map(_input_root, raw_inputs) if r is not None]
    limits: dict[str, int] = {}
    tasks = []
    for index, item in enumerate(inputs):
        overwrites = make_folder = False
        if opts.output == STDOUT:
            output = STDOUT
        elif opts.template is not None:
            output, make_folder = render_template(opts.template, item, op), True
        elif opts.output is not None and (
            batch or _is_folder(opts.output) or opts.output.endswith(("/", os.sep))
        ):
            sub = _relative_folder(item, roots) if opts.recursive else Path()
            if is_url(opts.output):  # a prefix in a store: joined with '/', never made
                output = join_url(opts.output, *sub.parts, default_name(item, op, ".zarr"))
            else:
                output, make_folder = str(Path(opts.output) / sub / default_name(item, op)), True
        elif opts.output is not None:
            output, overwrites = opts.output, True
        elif is_url(item):
            output = join_url(url_parent(item), default_name(item, op))
        else:
            folder = Path(".") if item == STDIN else Path(item).parent
            output = str(folder / default_name(item, op))
        output = local_path(output)  # a template may render a file:// URL
        if is_url(output):
            check_url(output, "output")
            make_folder = False
        problem = (
            None
            if output == STDOUT or is_url(output)
            else name_problem(output, opts.template is not None, limits)
        )
        tasks.append(Task(index, item, output, overwrites, make_folder, problem))

    reads = [("image", i) for i in inputs] + list(opts.reads)
    refuse_reads_as_outputs([t.output for t in tasks], reads)
    seen: dict[str, str] = {}
    for task in tasks:
        if task.output == STDOUT:
            continue
        key = path_key(task.output)
        if key in seen:
            raise ConvcliError(
                f"output {task.output!r}: both {seen[key]!r} and {task.input!r} would be written "
                f"there; use --output-template with {{parent}} or {{stem}} to tell them apart"
            )
        seen[key] = task.input
    return tasks


def _is_folder(path: str) -> bool:
    """An existing folder other than a ``.zarr`` store (a folder that is one image): ``-o x.zarr``
    names the store itself, to be replaced (or refused as an input), never a folder to write in."""
    return os.path.isdir(path) and Path(path).suffix.lower() != ".zarr"


def _relative_folder(item: str, roots: list[Path]) -> Path:
    path = Path(item).resolve()
    for root in roots:
        try:
            return path.parent.relative_to(root.resolve())
        except ValueError:
            continue
    return Path()


def path_key(path: str):
    """The same file, however it is named: resolved links, normalised case (a store named by
    URL: its protocol and normalised path, see :func:`convcli.io.stores.url_key`)."""
    path = local_path(path)
    if is_url(path):
        return url_key(path)
    return os.path.normcase(os.path.realpath(path))


def file_keys(path: str) -> set[tuple]:
    """What tells a file apart however it is named: its resolved path (symbolic links, ``..``)
    and, where it exists, its device and inode (which a hard link shares)."""
    keys: set[tuple] = {("path", path_key(path))}
    if is_url(local_path(path)):
        return keys
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return keys
    keys.add(("inode", info.st_dev, info.st_ino))
    return keys


def refuse_reads_as_outputs(outputs: Iterable[str], reads: Iterable[tuple[str, str]]) -> None:
    """Refuse, before any work, an output that is a file the run reads.

    ``reads`` holds ``(what, path)`` pairs: the images, and the kernel, preset and
    ``--matrix`` files; standard input and output are no files.  An output is the same file
    as an input when its resolved path or (where both exist) its device and inode match.
    """
    known: dict[tuple, tuple[str, str]] = {}
    for what, path in reads:
        if path != STDIN:
            for key in file_keys(path):
                known.setdefault(key, (what, path))
    for output in outputs:
        if output == STDOUT:
            continue
        for key in file_keys(output):
            if key in known:
                what, path = known[key]
                same = "" if what == "image" and path == output else f" ({what} {path!r})"
                raise ConvcliError(
                    f"output {output!r}: is an input file{same}; convcli never overwrites an input"
                )


def name_limit(folder: Path, cache: dict[str, int] | None = None) -> int:
    """The longest file name, in bytes, the file system holding ``folder`` (or its nearest
    existing parent) allows."""
    cache = {} if cache is None else cache
    start = str(folder)
    if start not in cache:
        limit = DEFAULT_NAME_MAX
        while True:
            try:
                limit = os.pathconf(folder, "PC_NAME_MAX")
                break
            except (OSError, ValueError, AttributeError):
                if folder == folder.parent:
                    break
                folder = folder.parent
        cache[start] = limit
    return cache[start]


def name_problem(output: str, templated: bool, cache: dict[str, int] | None = None) -> str | None:
    """Why ``output`` cannot be created, known from its name alone (a part longer than the
    file system allows), or None."""
    path = Path(output)
    limit = name_limit(path.parent, cache)
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > limit:
            what = "a name" if part == path.name else f"a folder name ({part[:20]}...)"
            hint = " (from --output-template)" if templated else ""
            return (
                f"output {output!r}: {what} of {size} bytes{hint}, over the file system's limit "
                f"of {limit} bytes"
            )
    return None


def check_planned_limits(op: Operation, task: Task, opts: RunOptions) -> None:
    """What the run would refuse from the header, before decoding, the dry run refuses too:
    ``--max-pixels``, and ``--max-memory`` for the image in memory or in chunks, whichever
    way the run would take it.  Nothing is decoded and nothing allocated."""
    from ..io.bigfiles import CHUNK_INPUTS, read_header, suffix_of
    from ..io.images import check_pixels, read_layout
    from .chunked import check_chunked_limits, wants_chunked
    from .process import check_memory

    if suffix_of(task.input) in CHUNK_INPUTS and wants_chunked(op, task, opts):
        height, width, channels, _ = read_header(task.input)
        check_chunked_limits(op, task, opts, (height, width), channels)
        return
    height, width, channels = read_layout(task.input, opts.gray)
    check_pixels(height, width, opts.max_pixels, f"input {task.input!r}")
    check_memory(op, task, opts, height, width, channels)


def _input_size(path: str) -> tuple[int, int]:
    """``(height, width)`` from the header: an image file's, or a ``.zarr`` store's (a folder,
    or a URL), which only the chunked reader reads."""
    from ..io.bigfiles import suffix_of

    if suffix_of(path) == ".zarr":
        from ..io.bigfiles import read_header

        return read_header(path)[:2]
    return read_size(path)


def skip_or_plan(op: Operation, task: Task, opts: RunOptions) -> Outcome | None:
    """Outcomes decided without computing: an existing output, an impossible name, a dry run."""
    try:
        exists = task.output != STDOUT and store_exists(task.output)
    except ConvcliError as exc:  # a store that cannot be reached
        return failed(task, str(exc))
    if exists and not opts.overwrite and not task.replace:
        record = {"input": task.input, "output": task.output, "skipped": "output exists"}
        return Outcome(
            task, "skipped", record, f"{task.input}: skipped, {task.output} exists (--overwrite replaces it)"
        )
    if task.problem is not None:
        return failed(task, task.problem)
    if not opts.dry_run:
        return None
    try:
        if task.input == STDIN:
            raise ConvcliError("input '-': --dry-run cannot read standard input")
        in_size = _input_size(task.input)
        out_size = op.output_size(in_size)
        check_planned_limits(op, task, opts)
    except ConvcliError as exc:
        return failed(task, str(exc))
    except OSError as exc:
        return failed(task, f"input {task.input!r}: cannot be read ({os_reason(exc)})")
    record = {
        "input": task.input,
        "output": task.output,
        "operation": op.name,
        "input_size": size_record(in_size),
        "output_size": size_record(out_size),
        "dry_run": True,
        "replaces": exists,
    }
    path = op.size_path(in_size)
    if len(path) > 2:  # a chain: the size after each stage
        record["stage_sizes"] = [size_record(size) for size in path[1:]]
    verb = "would replace" if exists else "would write"
    line = f"{task.input}: {op.size_text(in_size)}, {verb} {task.output}"
    return Outcome(task, "planned", record, line)
