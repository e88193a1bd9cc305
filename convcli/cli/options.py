"""Options shared by the image commands, declared once, and what the CLI does with them.

:func:`image_command` adds the shared options (inputs, output, values,
batch, limits, scale-out, ``--matrix``) to a command's own (kernel,
geometry) and hands them to it as one :class:`SharedOptions`, in the way
sqlite-utils' option groups work.  Choices come from :mod:`convcli.constants`,
so that the help lists exactly what the library accepts.

No numpy or Pillow here: ``convcli --help`` imports this module.
"""

import functools
import inspect
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated

import click
import typer
from click.core import ParameterSource

from ..constants import DEFAULT_MAX_PIXELS, DEPTHS, STREAM_FORMATS, VALUE_MAPS
from ..errors import ConvcliError

# Help panels, in the order `--help` shows them.
KERNEL, GEOMETRY, VALUES, OUTPUT, BATCH, LIMITS, SCALE_OUT, LEARN = (
    "Kernel",
    "Geometry",
    "Values",
    "Output",
    "Batch",
    "Limits",
    "Scale-out",
    "Learn by seeing",
)


def choices(values) -> str:
    return "|".join(values)


# ------------------------------------------------ options of several commands

StrideOpt = Annotated[
    str,
    typer.Option(
        "-s",
        "--stride",
        metavar="N|WxH",
        rich_help_panel=GEOMETRY,
        help="Step between windows: N, or WIDTHxHEIGHT (2x1 is 2 across, 1 down).",
    ),
]
DilationOpt = Annotated[
    str,
    typer.Option(
        "-d",
        "--dilation",
        metavar="N|WxH",
        rich_help_panel=GEOMETRY,
        help="Spacing between kernel taps: N or WIDTHxHEIGHT.",
    ),
]
PresetsOpt = Annotated[
    Path | None,
    typer.Option(
        "--presets",
        metavar="DIR",
        rich_help_panel=KERNEL,
        help="A folder of extra presets (.toml or .json); $CONVCLI_PRESETS is read too.",
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json",
        rich_help_panel=OUTPUT,
        help="Print one JSON object per image (JSON Lines), failures included.",
    ),
]


# --------------------------------------------- the options every image command has


@dataclass
class SharedOptions:
    """The options every image command shares, as parsed by Typer (strings, not yet checked)."""

    inputs: list[str] | None
    gray: str | None
    value_map: str
    value_range: str | None
    depth: str | None
    output: str | None
    template: str | None
    stream_format: str
    compress_level: int
    json_out: bool
    quiet: bool
    recursive: bool
    overwrite: bool
    jobs: int | None
    fail_fast: bool
    dry_run: bool
    max_pixels: int
    max_memory: str | None
    chunk: str | None
    scheduler: str | None
    matrix: str | None
    explain: bool
    at: str | None
    animate: str | None
    # The options given on the command line (not defaulted), by field name: a chain takes
    # each option from the stage that gave it.
    given: frozenset = field(default=frozenset(), compare=False)


def _option(name, annotation, default):
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


_INPUTS = _option(
    "inputs",
    Annotated[
        list[str] | None,
        typer.Argument(
            metavar="INPUT...",
            show_default=False,
            help="What to process: image files (.png .jpg .tif .bmp .webp), .npy arrays, .zarr stores, "
            "folders (their images; -r for subfolders), quoted glob patterns ('photos/*.jpg', "
            "'data/**/*.tif'), or - for standard input. Each image gets its own output.",
        ),
    ],
    None,
)

_SHARED = [
    _option(
        "gray",
        Annotated[
            str | None,
            typer.Option(
                "--gray",  # its value is optional: see convcli.cli.app._optional_values
                metavar="[luma|mean]",
                rich_help_panel=VALUES,
                help="Convert to one channel first: luma (0.299 R + 0.587 G + 0.114 B; plain --gray) or "
                "mean ((R + G + B) / 3).",
            ),
        ],
        None,
    ),
    _option(
        "value_map",
        Annotated[
            str,
            typer.Option(
                "--map",
                metavar=choices(VALUE_MAPS),
                rich_help_panel=VALUES,
                help="How results outside [0, 1] become 8/16-bit pixels: clip; abs (magnitude, then clip); "
                "normalize (min..max to 0..1); offset (a flat mid-gray area stays mid-gray: +0.5 for kernels "
                "that sum to 0). auto: abs for kernels that sum to 0 (edge detectors), clip otherwise. "
                "Ignored for .npy and float TIFF.",
            ),
        ],
        "auto",
    ),
    _option(
        "value_range",
        Annotated[
            str | None,
            typer.Option(
                "--range",
                metavar="VMIN,VMAX",
                rich_help_panel=VALUES,
                help="The values shown black and white in 8/16-bit outputs (matplotlib's vmin, vmax): "
                "(x - VMIN) / (VMAX - VMIN), values outside clip. E.g. --range 0,0.01, --range -1,1. "
                "Replaces --map.",
            ),
        ],
        None,
    ),
    _option(
        "depth",
        Annotated[
            str | None,
            typer.Option(
                "--depth",
                metavar=choices(DEPTHS),
                rich_help_panel=VALUES,
                help="Bits per sample of the output: 8, 16 (PNG/TIFF, one channel) or float (TIFF, one "
                "channel). Default: the input's depth when the format holds it, else 8.",
            ),
        ],
        None,
    ),
    _option(
        "output",
        Annotated[
            str | None,
            typer.Option(
                "-o",
                "--output",
                metavar="PATH",
                rich_help_panel=OUTPUT,
                help="Output file (format from the extension: .png .tif .jpg .bmp .webp .npy), a folder "
                "(with several inputs; created if missing), or - for standard output. Default: next to "
                "each input, named INPUT-KERNEL.EXT.",
            ),
        ],
        None,
    ),
    _option(
        "template",
        Annotated[
            str | None,
            typer.Option(
                "--output-template",
                metavar="TEMPLATE",
                rich_help_panel=OUTPUT,
                help="Name each output from fields {stem} {ext} {name} {parent} {op} {kernel}, "
                "e.g. 'out/{stem}-edges.png'.",
            ),
        ],
        None,
    ),
    _option(
        "stream_format",
        Annotated[
            str,
            typer.Option(
                "--format",
                metavar=choices(STREAM_FORMATS),
                rich_help_panel=OUTPUT,
                help="Format written to standard output with -o -. Default: npy for an .npy input "
                "(the floats kept), else png. Never to a terminal.",
            ),
        ],
        "png",
    ),
    _option(
        "compress_level",
        Annotated[
            int,
            typer.Option(
                "--compress-level",
                min=0,
                max=9,
                rich_help_panel=OUTPUT,
                help="PNG compression: 0 stores, 1-3 are fast (ISA-L deflate), 4-9 smaller and slower "
                "(zlib).",
            ),
        ],
        1,
    ),
    _option("json_out", JsonOpt, False),
    _option(
        "quiet",
        Annotated[
            bool,
            typer.Option(
                "-q",
                "--quiet",
                rich_help_panel=OUTPUT,
                help="Print nothing on stdout (errors still go to stderr).",
            ),
        ],
        False,
    ),
    _option(
        "recursive",
        Annotated[
            bool,
            typer.Option(
                "-r",
                "--recursive",
                rich_help_panel=BATCH,
                help="Descend into subfolders of folder inputs (-o mirrors them).",
            ),
        ],
        False,
    ),
    _option(
        "overwrite",
        Annotated[
            bool,
            typer.Option(
                "--overwrite",
                rich_help_panel=BATCH,
                help="Replace existing outputs. Without it they are skipped, so a rerun continues where it "
                "stopped (a single output named with -o is always replaced). Inputs are never "
                "overwritten.",
            ),
        ],
        False,
    ),
    _option(
        "jobs",
        Annotated[
            int | None,
            typer.Option(
                "-j",
                "--jobs",
                min=1,
                rich_help_panel=BATCH,
                help="Worker processes for several images. Default: the number of cores.",
            ),
        ],
        None,
    ),
    _option(
        "fail_fast",
        Annotated[
            bool,
            typer.Option("--fail-fast", rich_help_panel=BATCH, help="Stop at the first image that fails."),
        ],
        False,
    ),
    _option(
        "dry_run",
        Annotated[
            bool,
            typer.Option(
                "--dry-run",
                rich_help_panel=BATCH,
                help="List what would be written and the output sizes; touch nothing.",
            ),
        ],
        False,
    ),
    _option(
        "max_pixels",
        Annotated[
            int,
            typer.Option(
                "--max-pixels",
                min=1,
                rich_help_panel=LIMITS,
                help="Refuse images with more pixels than this, before decoding them.",
            ),
        ],
        DEFAULT_MAX_PIXELS,
    ),
    _option(
        "max_memory",
        Annotated[
            str | None,
            typer.Option(
                "--max-memory",
                metavar="SIZE",
                rich_help_panel=LIMITS,
                help="Refuse an image whose working memory would exceed SIZE (512M, 4G), from its header, "
                "before decoding. Default: half of this machine's memory.",
            ),
        ],
        None,
    ),
    _option(
        "chunk",
        Annotated[
            str | None,
            typer.Option(
                "--chunk",
                metavar="N|WxH",
                rich_help_panel=SCALE_OUT,
                help="Process .npy, TIFF and .zarr images (to .npy, TIFF or .zarr) in blocks of this many "
                "input pixels with Dask, exactly as in memory. Without it, only such images over "
                "--max-memory go in blocks (sized to fit the limit, at most 2048). Needs the dask "
                "extra.",
            ),
        ],
        None,
    ),
    _option(
        "scheduler",
        Annotated[
            str | None,
            typer.Option(
                "--scheduler",
                metavar="ADDRESS|local",
                rich_help_panel=SCALE_OUT,
                help="Send each image as a task to a running Dask scheduler (tcp://10.0.0.5:8786), or "
                "'local' to start a cluster on this machine. Paths must be reachable by every worker. "
                "Needs the dask extra.",
            ),
        ],
        None,
    ),
    _option(
        "matrix",
        Annotated[
            str | None,
            typer.Option(
                "--matrix",
                metavar="MATRIX",
                rich_help_panel=LEARN,
                help="Use a small matrix instead of an image: inline ('1 2 3; 4 5 6') or a .txt/.csv/.npy "
                "file. The result is printed as a table (or written with -o .npy/.csv/.txt).",
            ),
        ],
        None,
    ),
    _option(
        "explain",
        Annotated[
            bool,
            typer.Option(
                "--explain",
                rich_help_panel=LEARN,
                help="With --matrix: show the padded input, the kernel, the window of one output value "
                "and its computation term by term, and the output-size formula with the numbers.",
            ),
        ],
        False,
    ),
    _option(
        "at",
        Annotated[
            str | None,
            typer.Option(
                "--at",
                metavar="ROW,COL",
                rich_help_panel=LEARN,
                help="The output position --explain works out (0-based). Default: 0,0.",
            ),
        ],
        None,
    ),
    _option(
        "animate",
        Annotated[
            str | None,
            typer.Option(
                "--animate",
                metavar="PATH.gif",
                rich_help_panel=LEARN,
                help="With --matrix or one small image: draw the computation step by step into a GIF "
                "(the window sliding over the padded input, each output value appearing, the arithmetic "
                "of each step; upsample: each input value scattered through the kernel). Up to 32x32 "
                "cells a grid and 400 steps.",
            ),
        ],
        None,
    ),
]
SHARED_NAMES = [p.name for p in [_INPUTS, *_SHARED]]
assert SHARED_NAMES == [f.name for f in fields(SharedOptions) if f.name != "given"]


def image_command(func):
    """Give an image command the shared options; it receives them as ``shared``.

    The command declares only its own options (kernel, geometry) and a ``shared``
    parameter; Typer sees INPUT..., then the command's options, then the shared ones.
    """
    own = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(func).parameters.values()
        if p.name != "shared"
    ]

    @functools.wraps(func)
    def command(**kwargs):
        context = click.get_current_context(silent=True)
        given = frozenset(
            name
            for name in SHARED_NAMES
            if context is not None and context.get_parameter_source(name) == ParameterSource.COMMANDLINE
        )
        shared = SharedOptions(**{name: kwargs.pop(name) for name in SHARED_NAMES}, given=given)
        return func(shared=shared, **kwargs)

    command.__signature__ = inspect.Signature([_INPUTS, *own, *_SHARED])
    del command.__wrapped__  # Typer must read the signature above, not the function's own
    return command


def check_choice(value: str, values, option: str) -> str:
    if value not in values:
        raise ConvcliError(f"{option}: expected one of {', '.join(values)}, got {value!r}")
    return value


def built(make, options: dict[str, str], **parameters):
    """``make(**parameters)`` (an operation's class), its errors naming the CLI's options.

    The library names its parameters (``padding: ...``); on the command line the same
    message names the option the user typed (``--padding: ...``).
    """
    try:
        return make(**parameters)
    except ConvcliError as exc:
        message = str(exc)
        for name, option in options.items():
            if message.startswith((f"{name}:", f"{name} ")):
                raise ConvcliError(option + message[len(name) :], exc.exit_code) from None
        raise
