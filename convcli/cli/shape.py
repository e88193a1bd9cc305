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
            help="conv:k=3,s=1,p=0,d=1  pool:k=2,s=2,p=0,ceil  tconv:k=4,s=2,p=1,op=0,d=1. Values are N "
            "or WxH; omitted ones take PyTorch's defaults (a pool's stride is its window); conv takes "
            "p=same (output ceil(in/stride)).",
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
):
    """Output sizes, receptive fields, jumps and starts of a layer stack, exact to PyTorch.

    Examples:  convcli shape 530x612 -k 3      convcli shape 224 conv:k=7,s=2,p=3 pool:k=3,s=2,p=1
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
        )
    )
