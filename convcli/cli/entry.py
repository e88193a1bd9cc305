"""The ``convcli`` console script: ``shape`` answers without loading Typer; the rest goes to it."""

import sys

HELP_FLAGS = ("--help", "-h")


def main() -> None:
    silence_library_warnings()
    args = sys.argv[1:]
    if args[:1] == ["shape"]:
        from .shape_fast import fast_main

        code = fast_main(args[1:])
        if code is not None:
            sys.exit(code)
    if not args or any(flag in args for flag in HELP_FLAGS):
        defer_unused_rich_modules()
    else:
        silence_library_logs()
    run_app()


def run_app() -> None:
    """The Typer app, with Ctrl-C, SIGTERM and SIGHUP handled from here on (:mod:`convcli.signals`):
    each ends convcli with one line and exit code 130, 143 or 129, its temporary files removed;
    the app maps what its commands raise, this what comes while Typer and the commands load."""
    from ..signals import exit_code, ignore_from_now, install, message, stop_in

    install()
    try:
        from .app import main as typer_main

        typer_main()
    except SystemExit:
        raise
    except BaseException as exc:
        stop = stop_in(exc)  # also one Python wrapped (a RuntimeError while a class is made)
        if stop is None:
            raise
        sys.stderr.write(f"convcli: error: {message(stop)}\n")
        sys.exit(exit_code(stop))
    finally:
        ignore_from_now()


def silence_library_warnings() -> None:
    """Standard error carries convcli's own lines only (``convcli: error: ...``, the report).

    Bad input is reported where convcli finds it, as one line; the warnings of the libraries
    it drives (numpy on a cast, Pillow on a malformed file, Dask) are not printed, here nor
    in the processes it starts (batch workers, a local Dask cluster), which inherit
    PYTHONWARNINGS.  This is the command line's choice: the library sets no warning filter.
    """
    import os
    import warnings

    warnings.simplefilter("ignore")
    os.environ["PYTHONWARNINGS"] = "ignore"


def silence_library_logs() -> None:
    """The same for log records that reach Python's last-resort handler, which prints them on
    standard error (tifffile on a tag it cannot read): the root logger drops them instead."""
    import logging

    logging.getLogger().addHandler(logging.NullHandler())


def defer_unused_rich_modules() -> None:
    """Let Typer's help import rich.markdown and rich.traceback only if it uses them.

    typer.rich_utils imports both at the top, for the Markdown help mode and for
    tracebacks, neither of which convcli's help uses; together they pull in
    markdown-it and Pygments, about half of the time ``convcli --help`` takes.
    Each gets a stand-in module whose class imports the real module when called.
    """
    import types

    for module_name, class_name in (("rich.markdown", "Markdown"), ("rich.traceback", "Traceback")):
        if module_name in sys.modules:
            continue
        stand_in = types.ModuleType(module_name)
        stand_in.__dict__["_convcli_stand_in"] = True

        def real_class(module_name=module_name, class_name=class_name):
            import importlib

            if getattr(sys.modules.get(module_name), "_convcli_stand_in", False):
                del sys.modules[module_name]
            return getattr(importlib.import_module(module_name), class_name)

        deferred = type(class_name, (), {"__new__": lambda cls, *a, _real=real_class, **k: _real()(*a, **k)})
        setattr(stand_in, class_name, deferred)
        sys.modules[module_name] = stand_in
