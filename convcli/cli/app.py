"""The ``convcli`` command line: parses, loads, calls the library, reports.

Heavy modules (numpy, Pillow) are imported inside the commands that need
them, so ``convcli --help`` and ``convcli shape`` start fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import typer

from ..errors import ConvcliError


class ConvcliGroup(typer.core.TyperGroup):
    """Prints every usage error and ConvcliError as one line: ``convcli: error: ...``."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
            if isinstance(code, int) and code:  # a typer.Exit raised by a command
                sys.exit(code)
        except ConvcliError as exc:
            _fail(str(exc), exc.exit_code)
        except click.exceptions.NoArgsIsHelpError:
            sys.exit(2)  # the help is printed already
        except click.ClickException as exc:
            _fail(_usage_message(exc), exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            _fail("interrupted", 130)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except BrokenPipeError:
            sys.stderr.close()
            sys.exit(1)
        sys.exit(0)


def _usage_message(exc) -> str:
    message = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and getattr(ctx, "command_path", None):
        return f"{message} (see '{ctx.command_path} --help')"
    return message


def _fail(message: str, code: int) -> None:
    typer.echo(f"convcli: error: {message}", err=True)
    sys.exit(code)


app = typer.Typer(
    cls=ConvcliGroup,
    help="Convolution, pooling and transposed convolution on images, exact to PyTorch.",
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)

# ------------------------------------------------------------- shared options

InputsArg = Annotated[Optional[list[str]], typer.Argument(
    metavar="INPUT...", show_default=False,
    help="Image files (.png .jpg .tif ...), .npy arrays, folders, quoted glob patterns "
    "('photos/*.jpg'), or - for standard input.")]
MatrixOpt = Annotated[Optional[str], typer.Option(
    "--matrix", metavar="MATRIX",
    help="Use a small matrix instead of an image: inline ('1 2 3; 4 5 6') or a .txt/.csv/.npy "
    "file. The result is printed as a table (or written with -o .npy/.csv/.txt).")]
ExplainOpt = Annotated[bool, typer.Option(
    "--explain", help="With --matrix: show the padded input, the kernel, the window of one output "
    "value and its computation term by term, and the output-size formula with the numbers.")]
AtOpt = Annotated[Optional[str], typer.Option(
    "--at", metavar="ROW,COL", help="The output position --explain works out (0-based). Default: 0,0.")]
OutputOpt = Annotated[Optional[str], typer.Option(
    "-o", "--output", metavar="PATH",
    help="Output file (format from the extension: .png .tif .jpg .bmp .webp .npy), a folder "
    "(with several inputs; created if missing), or - for standard output. Default: next to "
    "each input, named INPUT-KERNEL.EXT.")]
TemplateOpt = Annotated[Optional[str], typer.Option(
    "--output-template", metavar="TEMPLATE",
    help="Name each output from fields {stem} {ext} {name} {parent} {op} {kernel}, "
    "e.g. 'out/{stem}-edges.png'.")]
RecursiveOpt = Annotated[bool, typer.Option("-r", "--recursive", help="Descend into subfolders of folder inputs (-o mirrors them).")]
OverwriteOpt = Annotated[bool, typer.Option(
    "--overwrite", help="Replace existing outputs. Without it they are skipped, so a rerun continues "
    "where it stopped (a single output named with -o is always replaced). Inputs are never overwritten.")]
JobsOpt = Annotated[Optional[int], typer.Option("-j", "--jobs", min=1, help="Worker processes for several images. Default: the number of cores.")]
FailFastOpt = Annotated[bool, typer.Option("--fail-fast", help="Stop at the first image that fails.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="List what would be written and the output sizes; touch nothing.")]
FormatOpt = Annotated[str, typer.Option("--format", metavar="png|tif|jpg|bmp|webp|npy", help="Format written to standard output with -o -.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object per image (JSON Lines), failures included.")]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing on stdout (errors still go to stderr).")]
GrayOpt = Annotated[bool, typer.Option("--gray", help="Convert to one luma channel (0.299 R + 0.587 G + 0.114 B) first.")]
MapOpt = Annotated[str, typer.Option(
    "--map", metavar="auto|clip|abs|normalize|offset",
    help="How results outside [0, 1] become 8/16-bit pixels: clip; abs (magnitude, then clip); "
    "normalize (min..max to 0..1); offset (+0.5, then clip). auto: abs for kernels that sum to 0 "
    "(edge detectors), clip otherwise. Ignored for .npy and float TIFF.")]
DepthOpt = Annotated[Optional[str], typer.Option(
    "--depth", metavar="8|16|float",
    help="Bits per sample of the output: 8, 16 (PNG/TIFF, one channel) or float (TIFF, one channel). "
    "Default: the input's depth when the format holds it, else 8.")]
MaxPixelsOpt = Annotated[int, typer.Option(
    "--max-pixels", min=1, help="Refuse images with more pixels than this, before decoding them.")]
MaxMemoryOpt = Annotated[Optional[str], typer.Option(
    "--max-memory", metavar="SIZE",
    help="Refuse an image whose working memory would exceed SIZE (512M, 4G), from its header, "
    "before decoding. Default: half of this machine's memory.")]
CompressOpt = Annotated[int, typer.Option(
    "--compress-level", min=0, max=9,
    help="PNG compression: 0 stores, 1-3 are fast (ISA-L deflate), 4-9 smaller and slower (zlib).")]
ChunkOpt = Annotated[Optional[str], typer.Option(
    "--chunk", metavar="N|WxH",
    help="Process .npy, TIFF and .zarr images (to .npy, TIFF or .zarr) in blocks of this many input "
    "pixels with Dask, exactly as in memory. Without it, only such images over --max-memory go in "
    "blocks (sized to fit the limit, at most 2048). Needs the dask extra.")]
SchedulerOpt = Annotated[Optional[str], typer.Option(
    "--scheduler", metavar="ADDRESS|local",
    help="Send each image as a task to a running Dask scheduler (tcp://10.0.0.5:8786), or 'local' to "
    "start a cluster on this machine. Paths must be reachable by every worker. Needs the dask extra.")]
StrideOpt = Annotated[str, typer.Option("-s", "--stride", metavar="N|WxH", help="Step between windows: N, or WIDTHxHEIGHT (2x1 is 2 across, 1 down).")]
DilationOpt = Annotated[str, typer.Option("-d", "--dilation", metavar="N|WxH", help="Spacing between kernel taps: N or WIDTHxHEIGHT.")]
ModeOpt = Annotated[str, typer.Option(
    "--mode", metavar="correlation|convolution",
    help="correlation (PyTorch's conv2d) or convolution (the kernel rotated 180 degrees, as scipy.signal.convolve2d).")]
PresetsOpt = Annotated[Optional[Path], typer.Option(
    "--presets", metavar="DIR",
    help="A folder of extra presets (.toml or .json); $CONVCLI_PRESETS is read too.")]

DEFAULT_MAX_PIXELS = 200_000_000


def _pair(text: str, option: str, minimum: int):
    from ..geometry.sizes import parse_pair

    return parse_pair(text, option, minimum=minimum)


def _check_choice(value: str, choices, option: str) -> str:
    if value not in choices:
        raise ConvcliError(f"{option}: expected one of {', '.join(choices)}, got {value!r}")
    return value


_SHARED = ("inputs", "output", "template", "recursive", "overwrite", "jobs", "fail_fast", "dry_run",
           "stream_format", "gray", "depth", "max_pixels", "max_memory", "compress_level",
           "json_out", "quiet", "matrix", "explain", "at", "chunk", "scheduler")


def _shared_options(arguments: dict) -> dict:
    """The options every image command shares, picked from its arguments."""
    return {name: arguments[name] for name in _SHARED}


def _run(operation, *, inputs, output, template, recursive, overwrite, jobs, fail_fast, dry_run,
         stream_format, gray, depth, max_pixels, max_memory, compress_level, json_out, quiet,
         matrix, explain, at, chunk, scheduler):
    from ..run.batch import RunOptions, run

    if matrix is not None:
        if inputs:
            raise ConvcliError("--matrix: give a matrix or INPUT files, not both")
        from .matrix import run_matrix

        run_matrix(operation, matrix, output=output, explain=explain, at=at, json_out=json_out,
                   quiet=quiet)
        return
    chunk_hw = None
    if chunk is not None:
        chunk_hw = _pair(chunk, "--chunk", 1)
        from ..run.chunked import dask_installed

        if not dask_installed():
            raise ConvcliError("--chunk needs the dask extra: pip install 'convcli[dask]'")
    if scheduler is not None and not scheduler.strip():
        raise ConvcliError("--scheduler: expected a scheduler address (tcp://HOST:PORT) or 'local'")
    if explain or at is not None:
        raise ConvcliError("--explain and --at work on a small matrix given with --matrix")
    if not inputs:
        raise ConvcliError("missing INPUT: name image files, a folder, - for stdin, or use --matrix")
    _check_choice(operation.value_map, ("clip", "abs", "normalize", "offset"), "--map")
    _check_choice(stream_format, ("png", "tif", "tiff", "jpg", "jpeg", "bmp", "webp", "npy"), "--format")
    if depth is not None:
        _check_choice(depth, ("8", "16", "float"), "--depth")
    from ..io.images import parse_bytes, physical_memory

    if max_memory is not None:
        memory_limit = parse_bytes(max_memory)
    else:
        total = physical_memory()
        memory_limit = total // 2 if total else None
    options = RunOptions(output=output, template=template, recursive=recursive,
                         overwrite=overwrite, jobs=jobs, fail_fast=fail_fast, dry_run=dry_run,
                         stream_format=stream_format, gray=gray, depth=depth,
                         max_pixels=max_pixels, max_memory=memory_limit,
                         compress_level=compress_level, json=json_out,
                         quiet=quiet, chunk=chunk_hw, scheduler=scheduler)
    code = run(operation, inputs, options)
    if code:
        raise typer.Exit(code)


# ------------------------------------------------------------------- filter


@app.command("filter")
def filter_command(
    inputs: InputsArg = None,
    kernel: Annotated[str, typer.Option(
        "-k", "--kernel", metavar="SPEC",
        help="A preset (sobel-vertical, gaussian:size=7,sigma=1.5; see 'convcli kernels'), an inline "
        "matrix ('1,0,-1;2,0,-2;1,0,-1'), or a .npy/.txt/.csv file.")] = "gaussian",
    stride: StrideOpt = "1",
    padding: Annotated[str, typer.Option(
        "-p", "--padding", metavar="N|WxH|same|valid",
        help="Padding on each side: N, WIDTHxHEIGHT, same (output = input at stride 1; the extra pixel "
        "of an even kernel goes bottom/right, as PyTorch) or valid (0).")] = "0",
    dilation: DilationOpt = "1",
    pad_mode: Annotated[str, typer.Option(
        "--pad-mode", metavar="zeros|reflect|replicate|circular", help="What the padding holds, as PyTorch's F.pad.")] = "zeros",
    mode: ModeOpt = "correlation",
    gray: GrayOpt = False,
    output: OutputOpt = None,
    template: TemplateOpt = None,
    recursive: RecursiveOpt = False,
    overwrite: OverwriteOpt = False,
    jobs: JobsOpt = None,
    fail_fast: FailFastOpt = False,
    dry_run: DryRunOpt = False,
    stream_format: FormatOpt = "png",
    value_map: MapOpt = "auto",
    depth: DepthOpt = None,
    presets: PresetsOpt = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    max_memory: MaxMemoryOpt = None,
    compress_level: CompressOpt = 1,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    matrix: MatrixOpt = None,
    explain: ExplainOpt = False,
    at: AtOpt = None,
    chunk: ChunkOpt = None,
    scheduler: SchedulerOpt = None,
):
    """Filter images with a kernel: cross-correlation (PyTorch's conv2d) or true convolution.

    Each channel is filtered on its own. The output size per side is
    floor((in + pad_before + pad_after - dilation*(k - 1) - 1) / stride) + 1.

    Example: convcli filter sample_images/duck.png -k sobel-vertical -o edges.png
    """
    from ..engine.filtering import check_mode
    from ..geometry.sizes import pair_json
    from ..engine.kernels import parse_kernel
    from ..engine.padding import check_pad_mode
    from ..run.batch import Operation

    check_pad_mode(pad_mode)
    check_mode(mode)
    stride_hw = _pair(stride, "--stride", 1)
    dilation_hw = _pair(dilation, "--dilation", 1)
    pad_word = padding.strip().lower()
    padding_arg = pad_word if pad_word in ("same", "valid") else _pair(padding, "--padding", 0)
    kern = parse_kernel(kernel, presets_dir=presets)
    if value_map == "auto":
        total = float(abs(kern.matrix).sum())
        value_map = "abs" if abs(float(kern.matrix.sum())) <= 1e-6 * total else "clip"
    operation = Operation(
        "filter", kern.name,
        {"kernel": kern.matrix, "stride": stride_hw, "padding": padding_arg,
         "dilation": dilation_hw, "pad_mode": pad_mode, "mode": mode},
        {"kernel": _kernel_json(kern), "mode": mode, "stride": pair_json(stride_hw),
         "dilation": pair_json(dilation_hw), "pad_mode": pad_mode},
        value_map)
    _run(operation, **_shared_options(locals()))


# --------------------------------------------------------------------- pool


@app.command("pool")
def pool_command(
    inputs: InputsArg = None,
    op: Annotated[str, typer.Option("--op", metavar="max|mean|min", help="max, mean, or min (= -maxpool(-x)).")] = "max",
    size: Annotated[str, typer.Option("-k", "--size", metavar="N|WxH", help="Window size.")] = "2",
    stride: Annotated[Optional[str], typer.Option("-s", "--stride", metavar="N|WxH", help="Step between windows. Default: the window size, as in PyTorch.")] = None,
    padding: Annotated[str, typer.Option("-p", "--padding", metavar="N|WxH", help="Padding on each side, at most half the window: -inf for max, +inf for min, 0 for mean.")] = "0",
    dilation: Annotated[str, typer.Option("-d", "--dilation", metavar="N|WxH", help="Spacing between window cells (max and min only, as PyTorch).")] = "1",
    ceil_mode: Annotated[bool, typer.Option("--ceil-mode", help="Round the output size up (PyTorch's ceil_mode): a last partial window is kept if it starts inside the input or the left padding.")] = False,
    count_include_pad: Annotated[bool, typer.Option("--count-include-pad/--no-count-include-pad", help="Mean only: count padded cells in the divisor (PyTorch's default).")] = True,
    gray: GrayOpt = False,
    output: OutputOpt = None,
    template: TemplateOpt = None,
    recursive: RecursiveOpt = False,
    overwrite: OverwriteOpt = False,
    jobs: JobsOpt = None,
    fail_fast: FailFastOpt = False,
    dry_run: DryRunOpt = False,
    stream_format: FormatOpt = "png",
    value_map: MapOpt = "auto",
    depth: DepthOpt = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    max_memory: MaxMemoryOpt = None,
    compress_level: CompressOpt = 1,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    matrix: MatrixOpt = None,
    explain: ExplainOpt = False,
    at: AtOpt = None,
    chunk: ChunkOpt = None,
    scheduler: SchedulerOpt = None,
):
    """Pool images: max, mean or min over windows, exact to PyTorch's max_pool2d / avg_pool2d.

    The output size per side is floor((in + 2*padding - dilation*(size - 1) - 1) / stride) + 1
    (ceil with --ceil-mode, dropping a last window that would start in the right padding).

    Example: convcli pool sample_images/duck.png --op max -k 2 -o small.png
    """
    from ..geometry.sizes import check_pool_padding, pair_json, sides_json, size_json
    from ..engine.pooling import POOL_OPS
    from ..run.batch import Operation

    _check_choice(op, POOL_OPS, "--op")
    size_hw = _pair(size, "--size", 1)
    stride_hw = size_hw if stride is None else _pair(stride, "--stride", 1)
    padding_hw = _pair(padding, "--padding", 0)
    dilation_hw = _pair(dilation, "--dilation", 1)
    check_pool_padding(size_hw, padding_hw, "--padding", dilation_hw)
    if op == "mean" and dilation_hw != (1, 1):
        raise ConvcliError("--dilation: mean pooling has no dilation (as PyTorch's avg_pool2d)")
    report = {
        "op": op, "window": size_json(size_hw), "stride": pair_json(stride_hw),
        "padding": sides_json((padding_hw[0], padding_hw[0], padding_hw[1], padding_hw[1])),
        "dilation": pair_json(dilation_hw), "ceil_mode": ceil_mode,
    }
    if op == "mean":
        report["count_include_pad"] = count_include_pad
    window = str(size_hw[1]) if size_hw[0] == size_hw[1] else f"{size_hw[1]}x{size_hw[0]}"
    operation = Operation(
        "pool", f"{op}pool{window}",
        {"size": size_hw, "stride": stride_hw, "padding": padding_hw, "dilation": dilation_hw,
         "ceil_mode": ceil_mode, "op": op, "count_include_pad": count_include_pad},
        report, "clip" if value_map == "auto" else value_map)
    _run(operation, **_shared_options(locals()))


# ----------------------------------------------------------------- upsample


@app.command("upsample")
def upsample_command(
    inputs: InputsArg = None,
    kernel: Annotated[str, typer.Option(
        "-k", "--kernel", metavar="SPEC",
        help="As for filter. The presets nearest and bilinear take their factor from the stride.")] = "bilinear",
    stride: StrideOpt = "2",
    padding: Annotated[Optional[str], typer.Option(
        "-p", "--padding", metavar="N|WxH",
        help="Cropped from each side. Default: for the nearest and bilinear presets, the padding "
        "that makes the output exactly stride x the input; 0 for other kernels (PyTorch's default).")] = None,
    output_padding: Annotated[str, typer.Option(
        "--output-padding", metavar="N|WxH", help="Extra rows/columns on the bottom/right; smaller than the stride or the dilation.")] = "0",
    dilation: DilationOpt = "1",
    mode: ModeOpt = "correlation",
    gray: GrayOpt = False,
    output: OutputOpt = None,
    template: TemplateOpt = None,
    recursive: RecursiveOpt = False,
    overwrite: OverwriteOpt = False,
    jobs: JobsOpt = None,
    fail_fast: FailFastOpt = False,
    dry_run: DryRunOpt = False,
    stream_format: FormatOpt = "png",
    value_map: MapOpt = "auto",
    depth: DepthOpt = None,
    presets: PresetsOpt = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    max_memory: MaxMemoryOpt = None,
    compress_level: CompressOpt = 1,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    matrix: MatrixOpt = None,
    explain: ExplainOpt = False,
    at: AtOpt = None,
    chunk: ChunkOpt = None,
    scheduler: SchedulerOpt = None,
):
    """Upsample images by transposed convolution (PyTorch's conv_transpose2d).

    Each input pixel scatters the kernel, scaled by its value, into the output at
    stride steps; overlaps add up. The output size per side is
    (in - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1.

    Example: convcli upsample sample_images/duck.png -o big.png   (bilinear, exactly 2x)
    """
    from ..engine.filtering import check_mode
    from ..geometry.sizes import check_output_padding, pair_json, sides_json
    from ..engine.kernels import parse_kernel
    from ..run.batch import Operation

    check_mode(mode)
    stride_hw = _pair(stride, "--stride", 1)
    dilation_hw = _pair(dilation, "--dilation", 1)
    out_pad_hw = _pair(output_padding, "--output-padding", 0)
    check_output_padding(out_pad_hw, stride_hw, dilation_hw, "--output-padding")
    scale = f"{stride_hw[1]}x{stride_hw[0]}"
    kern = parse_kernel(kernel, presets_dir=presets, defaults={"factor": scale})
    if padding is not None:
        padding_hw = _pair(padding, "--padding", 0)
    elif kern.source == "preset" and kern.name in ("nearest", "bilinear"):
        padding_hw = _exact_scale_padding(kern, stride_hw, dilation_hw)
    else:
        padding_hw = (0, 0)
    operation = Operation(
        "upsample", f"up-{kern.name}",
        {"kernel": kern.matrix, "stride": stride_hw, "padding": padding_hw,
         "output_padding": out_pad_hw, "dilation": dilation_hw, "mode": mode},
        {"kernel": _kernel_json(kern), "mode": mode, "stride": pair_json(stride_hw),
         "padding": sides_json((padding_hw[0], padding_hw[0], padding_hw[1], padding_hw[1])),
         "output_padding": pair_json(out_pad_hw), "dilation": pair_json(dilation_hw)},
        "clip" if value_map == "auto" else value_map)
    _run(operation, **_shared_options(locals()))


def _exact_scale_padding(kern, stride_hw, dilation_hw):
    """Padding that makes the output stride x the input: 2p = d*(k-1) + 1 - s."""
    padding = []
    for k, s, d in zip(kern.size, stride_hw, dilation_hw):
        excess = d * (k - 1) + 1 - s
        padding.append(excess // 2 if excess > 0 and excess % 2 == 0 else 0)
    return tuple(padding)


# ------------------------------------------------------------------ kernels

kernels_app = typer.Typer(help="List the preset kernels, or show one.", no_args_is_help=False,
                          invoke_without_command=True)
app.add_typer(kernels_app, name="kernels")


@kernels_app.callback()
def kernels_list(
    ctx: typer.Context,
    presets: PresetsOpt = None,
    json_out: JsonOpt = False,
):
    """List the preset kernels with their matrices."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = presets
        return
    from ..engine.kernels import load_presets

    found = load_presets(presets)
    if json_out:
        import json

        items = [_kernel_json(p.build(), with_matrix=True) | {"description": p.description}
                 for p in found.values()]
        typer.echo(json.dumps(items))
        return
    from rich.console import Console

    console = Console()
    for preset in found.values():
        _print_kernel(console, preset)


@kernels_app.command("show")
def kernels_show(
    ctx: typer.Context,
    spec: Annotated[str, typer.Argument(metavar="NAME[:PARAMS]", help="A preset, with parameters if it takes any: gaussian:size=7,sigma=1.5")],
    json_out: JsonOpt = False,
):
    """Print one preset (or any kernel spec) with its matrix."""
    from ..engine.kernels import get_preset, parse_kernel

    kern = parse_kernel(spec, presets_dir=ctx.obj)
    if json_out:
        import json

        typer.echo(json.dumps(_kernel_json(kern, with_matrix=True) | {"description": kern.description}))
        return
    from rich.console import Console

    preset = get_preset(kern.name, ctx.obj) if kern.source == "preset" else None
    _print_kernel(Console(), preset, kern)


def _print_kernel(console, preset, kern=None):
    from rich.table import Table

    kern = kern or preset.build()
    params = ", ".join(f"{k}={v}" for k, v in kern.params.items())
    console.print(f"[bold]{kern.name}[/bold]" + (f" ({params})" if params else ""))
    table = Table(show_header=False)
    for _ in range(kern.size[1]):
        table.add_column(justify="right")
    for row in kern.matrix.tolist():
        table.add_row(*(_number(v) for v in row))
    console.print(table)
    if kern.description:
        console.print(kern.description, highlight=False, markup=False)
    console.print()


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


# -------------------------------------------------------------------- shape

from .shape import shape_command  # noqa: E402  (pure Python, no numpy)

app.command("shape")(shape_command)


# ------------------------------------------------------------------ helpers


def _kernel_json(kern, with_matrix=False):
    from ..geometry.sizes import size_json

    data = {"name": kern.name, "source": kern.source, "size": size_json(kern.size)}
    if kern.params:
        data["params"] = kern.params
    if with_matrix:
        data["matrix"] = kern.matrix.tolist()
    return data


def main():
    app()
