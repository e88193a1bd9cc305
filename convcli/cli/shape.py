"""``convcli shape`` as a Typer command: its help, and the path for arguments the fast
parser in :mod:`convcli.cli.shape_fast` leaves to Typer. Imports no numpy, scipy or Pillow."""

from __future__ import annotations

from typing import Annotated

import typer


def shape_command(
    size: Annotated[
        str,
        typer.Argument(
            metavar="SIZE",
            show_default=False,
            help="WIDTHxHEIGHT, N for a square, or an image file (its size is read from the header).",
        ),
    ],
    layers: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[LAYER]...",
            show_default=False,
            help="conv:k=3,s=1,p=0,d=1  pool:k=2,s=2,p=0,d=1,ceil  tconv:k=4,s=2,p=1,op=0,d=1  "
            "4*conv:k=3,p=1 (4 copies; 4xconv:... needs no quotes in zsh). Values are N or WxH; omitted "
            "ones take PyTorch's defaults (a pool's stride is its window); conv takes p=same (output "
            "ceil(in/stride)). At most 1000 layers, repeats counted.",
        ),
    ] = None,
    kernel: Annotated[
        str | None,
        typer.Option(
            "-k", "--kernel", metavar="N|WxH", help="With no LAYER: one conv layer of this kernel size."
        ),
    ] = None,
    stride: Annotated[
        str, typer.Option("-s", "--stride", metavar="N|WxH", help="With -k: its stride.")
    ] = "1",
    padding: Annotated[
        str, typer.Option("-p", "--padding", metavar="N|WxH|same|valid", help="With -k: its padding.")
    ] = "0",
    dilation: Annotated[
        str, typer.Option("-d", "--dilation", metavar="N|WxH", help="With -k: its dilation.")
    ] = "1",
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show each layer's size formula with the numbers put in.")
    ] = False,
    draw: Annotated[
        str | None,
        typer.Option(
            "--draw",
            metavar="PICTURE",
            help="SIZE is an image: write a copy with the receptive field of one output unit marked "
            "(outline, tint; the canvas grown where the field reaches into the padding) and its "
            "neighbours' field centres as dots, the jump apart.",
        ),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at", metavar="ROW,COL", help="The output unit --draw draws (0-based). Default: the centre."
        ),
    ] = None,
):
    """Output sizes, receptive fields, jumps and starts of a layer stack, exact to PyTorch.

    A LAYER is TYPE:SETTING,SETTING... with TYPE conv, pool or tconv; settings k (kernel, required),
    s (stride), p (padding), d (dilation), op (a tconv's output padding), ceil (a pool's ceil_mode);
    N*LAYER repeats it N times.

    The receptive field is the widest span of input pixels one output unit depends on (where an
    all-ones network's gradient is not zero), padding counted; the jump, a fraction after a
    transposed layer, is the input distance between neighbouring units.

    Examples:  convcli shape 530x612 -k 3      convcli shape 224 conv:k=7,s=2,p=3 pool:k=3,s=2,p=1
    convcli shape duck.png conv:k=3,p=1 pool:k=2 2*conv:k=3,p=1 --draw rf.png --at 40,60
    """
    from .shape_fast import run

    typer.echo(
        run(
            size,
            layers or [],
            kernel=kernel,
            stride=stride,
            padding=padding,
            dilation=dilation,
            json_out=json_out,
            explain=explain,
            draw=draw,
            at=at,
        )
    )
