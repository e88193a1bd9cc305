"""The ``convcli`` console script: ``shape`` answers without loading Typer; the rest goes to it."""

import sys

HELP_FLAGS = ("--help", "-h")


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["shape"]:
        from .shape_fast import fast_main

        code = fast_main(args[1:])
        if code is not None:
            sys.exit(code)
    if not args or any(flag in args for flag in HELP_FLAGS):
        defer_unused_rich_modules()
    from .app import main as typer_main

    typer_main()


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
