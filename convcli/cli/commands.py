"""The image commands: each parses its own options, builds its operation, and runs it.

Heavy modules (numpy, Pillow) are imported inside the commands, so that
``convcli --help`` starts fast.
"""

import os
from typing import Annotated

import typer

from ..constants import DEPTHS, GRAY_MODES, MODES, PAD_MODES, POOL_OPS, STREAM_FORMATS, VALUE_MAPS
from ..errors import ConvcliError
from ..geometry.sizes import parse_padding, parse_pair
from .chain import collect
from .options import (
    GEOMETRY,
    KERNEL,
    DilationOpt,
    PresetsOpt,
    SharedOptions,
    StrideOpt,
    built,
    check_choice,
    choices,
    image_command,
)

# How the library's parameter names read on the command line, in error messages.
OPTION_NAMES = {
    "stride": "--stride",
    "padding": "--padding",
    "dilation": "--dilation",
    "size": "--size",
    "output-padding": "--output-padding",
    "pad-mode": "--pad-mode",
    "mode": "--mode",
    "op": "--op",
}

KernelHelp = (
    "A preset (sobel-vertical, gaussian:size=7,sigma=1.5; see 'convcli kernels'), an inline "
    "matrix ('1,0,-1;2,0,-2;1,0,-1'), or a .npy/.txt/.csv file."
)
ModeOpt = Annotated[
    str,
    typer.Option(
        "--mode",
        metavar=choices(MODES),
        rich_help_panel=KERNEL,
        help="correlation (PyTorch's conv2d) or convolution (the kernel rotated 180 degrees, as "
        "scipy.signal.convolve2d; with -p same and an even kernel, one pixel off SciPy's 'same': see "
        "the README).",
    ),
]


def run_operation(operation, shared: SharedOptions) -> None:
    """Run a built operation on the inputs (or on ``--matrix``), as the shared options say.

    While a chain is being parsed (:func:`convcli.cli.chain.collecting`), the operation is
    handed to the chain instead."""
    if collect(operation, shared):
        return
    from ..run.batch import run
    from ..run.chunked import dask_installed
    from ..run.tasks import RunOptions

    gray = gray_mode(shared)
    if shared.value_map != "auto":
        operation.value_map = check_choice(shared.value_map, VALUE_MAPS[1:], "--map")
    if shared.value_range is not None:
        if shared.value_map != "auto":
            raise ConvcliError("--range: sets the values shown black and white itself; give --range or --map")
        operation.value_map, operation.value_range = "range", parse_range(shared.value_range)
    if shared.matrix is not None:
        if shared.inputs:
            raise ConvcliError("--matrix: give a matrix or INPUT files, not both")
        from .animate import plan_animation
        from .matrix import run_matrix

        animation = plan_animation(operation, shared, files_read(operation))  # None without --animate
        run_matrix(
            operation,
            shared.matrix,
            output=shared.output,
            explain=shared.explain,
            at=shared.at,
            json_out=shared.json_out,
            quiet=shared.quiet,
            reads=files_read(operation),
            max_memory=memory_limit(shared),
            dry_run=shared.dry_run,
        )
        if animation is not None:
            animation.write()
        return
    if shared.animate is not None:  # one small image, drawn
        from .animate import plan_animation

        plan_animation(operation, shared, files_read(operation)).write()
        return
    chunk = None
    if shared.chunk is not None:
        chunk = parse_pair(shared.chunk, "--chunk", minimum=1)
        if not dask_installed():
            raise ConvcliError("--chunk needs the dask extra: pip install 'convcli[dask]'")
    if shared.scheduler is not None and not shared.scheduler.strip():
        raise ConvcliError("--scheduler: expected a scheduler address (tcp://HOST:PORT) or 'local'")
    if shared.explain or shared.at is not None:
        raise ConvcliError("--explain and --at work on a small matrix given with --matrix")
    if not shared.inputs:
        raise ConvcliError("missing INPUT: name image files, a folder, - for stdin, or use --matrix")
    check_choice(shared.stream_format, STREAM_FORMATS, "--format")
    check_terminal(shared)
    if shared.depth is not None:
        check_choice(shared.depth, DEPTHS, "--depth")
    max_memory = memory_limit(shared)
    options = RunOptions(
        output=shared.output,
        template=shared.template,
        recursive=shared.recursive,
        overwrite=shared.overwrite,
        jobs=shared.jobs,
        fail_fast=shared.fail_fast,
        dry_run=shared.dry_run,
        stream_format=shared.stream_format if "stream_format" in shared.given else None,
        gray=gray,
        depth=shared.depth,
        max_pixels=shared.max_pixels,
        max_memory=max_memory,
        compress_level=shared.compress_level,
        json=shared.json_out,
        quiet=shared.quiet,
        chunk=chunk,
        scheduler=shared.scheduler,
        reads=files_read(operation),
    )
    code = run(operation, shared.inputs, options)
    if code:
        raise typer.Exit(code)


def check_terminal(shared: SharedOptions) -> None:
    """Refuse ``-o -`` when standard output is a terminal, as gzip does: an image's bytes would
    only garble the screen.  Redirected or piped, it is written in ``--format``."""
    import sys

    if shared.output == "-" and not shared.dry_run and sys.stdout.isatty():
        raise ConvcliError(
            "output '-': standard output is a terminal, and images are binary; redirect it "
            "(-o - > out.png), pipe it (-o - | convcli pool -), or name a file with -o"
        )


def gray_mode(shared: SharedOptions) -> str | bool:
    """``--gray`` (luma), ``--gray luma`` or ``--gray mean``; False without it.  ``--gray`` takes
    an optional value, so ``--gray photo.png`` reads the file name as one: a word that is no gray
    mode but a file name, a path, a pattern or ``-`` is an input, as when ``--gray`` took none."""
    if shared.gray is None:
        return False
    if shared.gray in GRAY_MODES:
        return shared.gray
    word = shared.gray
    if shared.matrix is None and (word == "-" or os.path.exists(word) or any(c in word for c in "/.*?[")):
        shared.inputs = [*(shared.inputs or []), word]
        return "luma"
    raise ConvcliError(f"--gray: expected {' or '.join(GRAY_MODES)} (or nothing: luma), got {shared.gray!r}")


def parse_range(text: str) -> tuple[float, float]:
    """``--range VMIN,VMAX``: two finite numbers, VMIN below VMAX, within float32's range."""
    import math

    parts = text.replace(" ", "").split(",")
    try:
        low, high = (float(part) for part in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        low = high = None
    if low is None or not (math.isfinite(low) and math.isfinite(high)):
        raise ConvcliError(f"--range: expected two numbers VMIN,VMAX such as 0,0.01, got {text!r}")
    if max(abs(low), abs(high)) > 3.4e38:
        raise ConvcliError(
            f"--range: VMIN and VMAX must lie within float32's range (about ±3.4e38), got {text!r}"
        )
    if not low < high:
        raise ConvcliError(
            f"--range: VMIN must be below VMAX (the value shown black, then white), got {text!r}"
        )
    if (high - low) * 3.4e38 <= 1:  # 1 / (VMAX - VMIN) must be a float32: no inf * 0 = NaN
        raise ConvcliError(f"--range: VMAX - VMIN is too small to divide by, got {text!r}")
    return low, high


def memory_limit(shared: SharedOptions) -> int | None:
    """``--max-memory`` in bytes, never more than the address-space limit (``ulimit -v``)
    leaves; by default half the physical memory, or that room when it is less."""
    from ..io.images import parse_bytes
    from ..system import address_space_room, default_memory_limit

    if shared.max_memory is None:
        return default_memory_limit()
    room = address_space_room()
    limit = parse_bytes(shared.max_memory)
    return limit if room is None else min(limit, room)


def files_read(operation) -> tuple[tuple[str, str], ...]:
    """The files an operation was made from, as ``(what, path)`` pairs: its kernel file or
    preset file (a kernel's ``sources``), and those of every stage of a chain.  The run refuses
    to write an output over any of them."""
    found = []
    kernel = getattr(operation, "kernel_info", None)
    for path in getattr(kernel, "sources", ()):
        found.append(("preset file" if kernel.source == "preset" else "kernel file", path))
    for stage in getattr(operation, "stages", ()):
        found.extend(files_read(stage))
    return tuple(found)


# ------------------------------------------------------------------- filter


@image_command
def filter_command(
    kernel: Annotated[
        str, typer.Option("-k", "--kernel", metavar="SPEC", rich_help_panel=KERNEL, help=KernelHelp)
    ] = "gaussian",
    mode: ModeOpt = "correlation",
    presets: PresetsOpt = None,
    stride: StrideOpt = "1",
    padding: Annotated[
        str,
        typer.Option(
            "-p",
            "--padding",
            metavar="N|WxH|same|valid",
            rich_help_panel=GEOMETRY,
            help="Padding on each side: N, WIDTHxHEIGHT, same (output = input at stride 1; the extra "
            "pixel of an even kernel goes bottom/right, as PyTorch) or valid (0).",
        ),
    ] = "0",
    dilation: DilationOpt = "1",
    pad_mode: Annotated[
        str,
        typer.Option(
            "--pad-mode",
            metavar=choices(PAD_MODES),
            rich_help_panel=GEOMETRY,
            help="What the padding holds, as PyTorch's F.pad.",
        ),
    ] = "zeros",
    *,
    shared: SharedOptions,
):
    """Filter images with a kernel: cross-correlation (PyTorch's conv2d) or true convolution.

    Each channel is filtered on its own. The output size per side is
    floor((in + pad_before + pad_after - dilation*(k - 1) - 1) / stride) + 1.

    Example: convcli filter sample_images/duck.png -k sobel-vertical -o edges.png
    """
    from ..engine.kernels import parse_kernel
    from ..ops.filter import Filter

    check_choice(pad_mode, PAD_MODES, "--pad-mode")
    check_choice(mode, MODES, "--mode")
    stride_hw = parse_pair(stride, "--stride", minimum=1)
    dilation_hw = parse_pair(dilation, "--dilation", minimum=1)
    padding_arg = parse_padding(padding, "--padding")
    operation = built(
        Filter,
        OPTION_NAMES,
        kernel=parse_kernel(
            kernel, presets_dir=presets, max_bytes=memory_limit(shared), plan_only=shared.dry_run
        ),
        stride=stride_hw,
        padding=padding_arg,
        dilation=dilation_hw,
        pad_mode=pad_mode,
        mode=mode,
    )
    run_operation(operation, shared)


# --------------------------------------------------------------------- pool


@image_command
def pool_command(
    op: Annotated[
        str,
        typer.Option(
            "--op",
            metavar=choices(POOL_OPS),
            rich_help_panel=KERNEL,
            help="max, mean, or min (= -maxpool(-x)).",
        ),
    ] = "max",
    size: Annotated[
        str, typer.Option("-k", "--size", metavar="N|WxH", rich_help_panel=KERNEL, help="Window size.")
    ] = "2",
    stride: Annotated[
        str | None,
        typer.Option(
            "-s",
            "--stride",
            metavar="N|WxH",
            rich_help_panel=GEOMETRY,
            help="Step between windows. Default: the window size, as in PyTorch.",
        ),
    ] = None,
    padding: Annotated[
        str,
        typer.Option(
            "-p",
            "--padding",
            metavar="N|WxH",
            rich_help_panel=GEOMETRY,
            help="Padding on each side, at most half the window: -inf for max, +inf for min, 0 for mean.",
        ),
    ] = "0",
    dilation: Annotated[
        str,
        typer.Option(
            "-d",
            "--dilation",
            metavar="N|WxH",
            rich_help_panel=GEOMETRY,
            help="Spacing between window cells (max and min only, as PyTorch).",
        ),
    ] = "1",
    ceil_mode: Annotated[
        bool,
        typer.Option(
            "--ceil-mode",
            rich_help_panel=GEOMETRY,
            help="Round the output size up (PyTorch's ceil_mode): a last partial window is kept if "
            "it starts inside the input or the left padding.",
        ),
    ] = False,
    count_include_pad: Annotated[
        bool,
        typer.Option(
            "--count-include-pad/--no-count-include-pad",
            rich_help_panel=GEOMETRY,
            help="Mean only: count padded cells in the divisor (PyTorch's default).",
        ),
    ] = True,
    *,
    shared: SharedOptions,
):
    """Pool images: max, mean or min over windows, exact to PyTorch's max_pool2d / avg_pool2d.

    The output size per side is floor((in + 2*padding - dilation*(size - 1) - 1) / stride) + 1
    (ceil with --ceil-mode, dropping a last window that would start in the right padding).

    Example: convcli pool sample_images/duck.png --op max -k 2 -o small.png
    """
    from ..ops.pool import Pool

    check_choice(op, POOL_OPS, "--op")
    size_hw = parse_pair(size, "--size", minimum=1)
    operation = built(
        Pool,
        OPTION_NAMES,
        size=size_hw,
        stride=None if stride is None else parse_pair(stride, "--stride", minimum=1),
        padding=parse_pair(padding, "--padding", minimum=0),
        dilation=parse_pair(dilation, "--dilation", minimum=1),
        ceil_mode=ceil_mode,
        op=op,
        count_include_pad=count_include_pad,
    )
    run_operation(operation, shared)


# ----------------------------------------------------------------- upsample


@image_command
def upsample_command(
    kernel: Annotated[
        str,
        typer.Option(
            "-k",
            "--kernel",
            metavar="SPEC",
            rich_help_panel=KERNEL,
            help="As for filter. The presets nearest and bilinear take their factor from the stride.",
        ),
    ] = "bilinear",
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            metavar=choices(MODES),
            rich_help_panel=KERNEL,
            help="correlation (the kernel scattered as given, as PyTorch's conv_transpose2d) or "
            "convolution (rotated 180 degrees first).",
        ),
    ] = "correlation",
    presets: PresetsOpt = None,
    stride: StrideOpt = "2",
    padding: Annotated[
        str | None,
        typer.Option(
            "-p",
            "--padding",
            metavar="N|WxH",
            rich_help_panel=GEOMETRY,
            help="Cropped from each side. Default: for the nearest and bilinear presets, the padding "
            "that makes the output exactly stride x the input; 0 for other kernels (PyTorch's "
            "default).",
        ),
    ] = None,
    output_padding: Annotated[
        str,
        typer.Option(
            "--output-padding",
            metavar="N|WxH",
            rich_help_panel=GEOMETRY,
            help="Extra rows/columns on the bottom/right; smaller than the stride or the dilation.",
        ),
    ] = "0",
    dilation: DilationOpt = "1",
    *,
    shared: SharedOptions,
):
    """Upsample images by transposed convolution (PyTorch's conv_transpose2d).

    Each input pixel scatters the kernel, scaled by its value, into the output at
    stride steps; overlaps add up. The output size per side is
    (in - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1.

    Example: convcli upsample sample_images/duck.png -o big.png   (bilinear, exactly 2x)
    """
    from ..engine.kernels import parse_kernel
    from ..ops.upsample import Upsample

    check_choice(mode, MODES, "--mode")
    stride_hw = parse_pair(stride, "--stride", minimum=1)
    dilation_hw = parse_pair(dilation, "--dilation", minimum=1)
    out_pad_hw = parse_pair(output_padding, "--output-padding", minimum=0)
    padding_hw = None if padding is None else parse_pair(padding, "--padding", minimum=0)
    scale = f"{stride_hw[1]}x{stride_hw[0]}"
    kern = parse_kernel(
        kernel,
        presets_dir=presets,
        defaults={"factor": scale},
        max_bytes=memory_limit(shared),
        plan_only=shared.dry_run,
    )
    operation = built(
        Upsample,
        OPTION_NAMES,
        kernel=kern,
        stride=stride_hw,
        padding=padding_hw,
        output_padding=out_pad_hw,
        dilation=dilation_hw,
        mode=mode,
    )
    run_operation(operation, shared)
