"""The ``convcli`` console script: ``shape`` answers without loading Typer; the rest goes to it."""

import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["shape"]:
        from .shape_report import fast_main

        code = fast_main(args[1:])
        if code is not None:
            sys.exit(code)
    from .cli import main as typer_main

    typer_main()
