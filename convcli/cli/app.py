"""The ``convcli`` command line: the Typer app, its error handling, and the small commands.

The image commands are in :mod:`convcli.cli.commands`, their shared options in
:mod:`convcli.cli.options`.  Heavy modules (numpy, Pillow) are imported inside
the commands that need them, so ``convcli --help`` and ``convcli shape`` start fast.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import click
import typer

from ..errors import ConvcliError
from ..signals import Terminated, handling
from .chain import CHAIN_COMMANDS, SEPARATOR, collecting, is_stage_form, merge_shared, split_stages
from .commands import filter_command, pool_command, upsample_command
from .options import PresetsOpt
from .shape_chain import shape_of_stages


def _keep_argument_help() -> None:
    """Typer 0.24 sets an argument's ``help`` and then calls click's ``Argument.__init__``,
    which since click 8.3 takes ``help`` itself and resets it to None: every argument's help
    (INPUT..., SIZE, NAME) would vanish from ``--help``.  Set it again after click."""
    original = typer.core.TyperArgument.__init__
    if getattr(original, "_convcli_keeps_help", False):
        return

    def init(self, *args, help=None, **kwargs):
        original(self, *args, help=help, **kwargs)
        self.help = help

    init._convcli_keeps_help = True
    typer.core.TyperArgument.__init__ = init


_keep_argument_help()


class ConvcliGroup(typer.core.TyperGroup):
    """Prints every usage error and ConvcliError as one line: ``convcli: error: ...``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            _optional_values(command)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if COMPLETE_VAR in os.environ:  # the shell asks for completions (see `convcli completion`)
            from typer._completion_classes import completion_init

            completion_init()  # Typer's completion classes, which its scripts talk to
        try:
            with handling():  # SIGTERM and SIGHUP clean up and end the run as Ctrl-C does
                args = list(sys.argv[1:] if args is None else args)
                if args[:1] == ["shape"] and is_stage_form(args[2:]):
                    typer.echo(shape_of_stages(args[1:], self))
                    code = 0
                elif args[:1] and args[0] in CHAIN_COMMANDS and SEPARATOR in args:
                    code = self.run_chain(split_stages(args), prog_name=prog_name, **extra)
                else:
                    code = super().main(
                        args=args,
                        prog_name=prog_name,
                        complete_var=complete_var or COMPLETE_VAR,  # also as python -m convcli
                        standalone_mode=False,
                        **extra,
                    )
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
        except Terminated as exc:  # SIGTERM, SIGHUP: 128 + the signal's number
            _fail(str(exc), exc.exit_code)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except OSError as exc:  # a report, a table or JSON written to a closed pipe or a full disk
            _output_failed(exc)
        sys.exit(0)

    def run_chain(self, stages, **extra):
        """Parse each stage with its own command, then run them as one chain."""
        from ..ops.chain import Chain
        from .commands import run_operation

        with collecting() as collected:
            for position, stage in enumerate(stages, start=1):
                code = super().main(args=stage, standalone_mode=False, **extra)
                if len(collected.stages) < position:  # --help was printed: nothing to run
                    return code
        operations = [operation for operation, _ in collected.stages]
        run_operation(Chain(operations), merge_shared(collected.stages))
        return 0

    def invoke(self, ctx):
        # Typer turns a KeyboardInterrupt into a silent exit 130; as click.Abort it reaches main,
        # which says "interrupted".  (A batch that was interrupted returns 130 after its summary.)
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise click.Abort() from exc


def _suggest_once(message: str) -> str:
    """A usage message with its first "Did you mean ...?" only."""
    first = message.find("Did you mean")
    second = message.find("Did you mean", first + 1) if first >= 0 else -1
    return message if second < 0 else message[:second].rstrip()


def _optional_values(command) -> None:
    """``--gray`` takes an optional value (``--gray`` is luma, ``--gray mean``), as click allows
    with ``flag_value``; Typer 0.24 does not pass ``flag_value`` on (and warns that it is
    deprecated), so it is set on the click option here.
    The next word is then the value unless it looks like an option (``--gray -k sobel``)."""
    for param in getattr(command, "params", ()):
        if isinstance(param, click.Option) and param.name == "gray" and not param.is_flag:
            param.flag_value = "luma"
            param._flag_needs_value = True


def _usage_message(exc) -> str:
    # click (8.4+) suggests close command names itself and Typer appends the same suggestion:
    # "Did you mean 'filter'? Did you mean 'filter'?".  Said once.
    message = _suggest_once(exc.format_message())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and getattr(ctx, "command_path", None):
        return f"{message} (see '{ctx.command_path} --help')"
    return message


def _fail(message: str, code: int) -> None:
    try:
        typer.echo(f"convcli: error: {message}", err=True)
    except OSError:  # standard error is gone too: the exit code alone tells
        from ..run.report import drop_stream

        drop_stream(sys.stderr)
    sys.exit(code)


def _output_failed(exc: OSError) -> None:
    """An OSError that reached the top: standard output failing, in practice (a full disk; a
    closed pipe Typer ends itself). One line and exit code 1, never a traceback."""
    from ..run.report import stream_failed

    if exc.filename is not None:
        _fail(f"{str(exc.filename)!r}: {exc.strerror or exc}", 1)
    error = stream_failed(exc, sys.stdout)
    _fail(str(error), error.exit_code)


app = typer.Typer(
    cls=ConvcliGroup,
    help="Convolution, pooling and transposed convolution on images, exact to PyTorch.",
    add_completion=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"convcli {version('convcli')}")
        except PackageNotFoundError:
            typer.echo("convcli (not installed: no package metadata)")
        raise typer.Exit()


@app.callback()
def main_options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=version_callback, help="Print convcli's version and exit."
        ),
    ] = False,
):
    """Convolution, pooling and transposed convolution on images, exact to PyTorch."""


app.command("filter")(filter_command)
app.command("pool")(pool_command)
app.command("upsample")(upsample_command)


# ------------------------------------------------------------------ kernels

kernels_app = typer.Typer(
    help="List the preset kernels, or show one.", no_args_is_help=False, invoke_without_command=True
)
app.add_typer(kernels_app, name="kernels")


@kernels_app.callback()
def kernels_list(
    ctx: typer.Context,
    presets: PresetsOpt = None,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON object per preset (JSON Lines), with its matrix."),
    ] = False,
):
    """List the preset kernels with their matrices."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = presets
        return
    from ..engine.kernels import load_presets

    found = load_presets(presets)
    if json_out:
        from ..strict_json import dumps

        # every preset built before the first line: a bad one fails the listing with no output
        items = [p.build().to_json(with_matrix=True) | {"description": p.description} for p in found.values()]
        typer.echo("\n".join(dumps(item) for item in items))
        return
    from rich.console import Console

    console = Console()
    for preset in found.values():
        _print_kernel(console, preset)


SHOW_TABLE_TAPS = 100 * 100  # kernels show draws a table of at most this many values
SHOW_JSON_TAPS = 1 << 20  # and prints at most this many as JSON (PLAN_TAPS: all are made)


@kernels_app.command("show")
def kernels_show(
    ctx: typer.Context,
    spec: Annotated[
        str,
        typer.Argument(
            metavar="NAME[:PARAMS]",
            help="A preset, with parameters if it takes any: gaussian:size=7,sigma=1.5",
        ),
    ],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the kernel as one JSON object, with its matrix.")
    ] = False,
):
    """Print one preset (or any kernel spec) with its matrix."""
    from ..engine.kernels import get_preset, parse_kernel

    # A kernel larger than PLAN_TAPS is only sized here, never made: too large to print anyway.
    kern = parse_kernel(spec, presets_dir=ctx.obj, plan_only=True)
    height, width = kern.size
    limit = SHOW_JSON_TAPS if json_out else SHOW_TABLE_TAPS
    if height * width > limit:
        raise ConvcliError(
            f"kernels show: a {width}x{height} kernel is too large to print (at most {limit:,} "
            f"values{'' if json_out else ' as a table; --json prints more'})"
        )
    if json_out:
        from ..strict_json import dumps

        typer.echo(dumps(kern.to_json(with_matrix=True) | {"description": kern.description}))
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


# --------------------------------------------------------------- completion

COMPLETION_SHELLS = ("bash", "zsh", "fish", "powershell")
COMPLETE_VAR = "_CONVCLI_COMPLETE"


@app.command("completion")
def completion_command(
    shell: Annotated[str, typer.Argument(metavar="|".join(COMPLETION_SHELLS), help="The shell.")],
):
    """Print the shell completion script for convcli (commands, options, file names).

    Load it in the current shell with  eval "$(convcli completion bash)", or save it where the
    shell looks: convcli completion bash > ~/.local/share/bash-completion/completions/convcli,
    convcli completion zsh > "${fpath[1]}/_convcli", convcli completion fish >
    ~/.config/fish/completions/convcli.fish.
    """
    from typer._completion_shared import get_completion_script

    if shell not in COMPLETION_SHELLS:
        raise ConvcliError(f"completion: expected one of {', '.join(COMPLETION_SHELLS)}, got {shell!r}")
    typer.echo(get_completion_script(prog_name="convcli", complete_var=COMPLETE_VAR, shell=shell))


# -------------------------------------------------------------------- shape

from .shape import shape_command  # noqa: E402  (pure Python, no numpy)

app.command("shape")(shape_command)


def main():
    app()
