"""Chains on the command line: stages separated by a lone ``+``, each a subcommand.

    convcli filter duck.png -k gaussian:size=5,sigma=1 -p same + filter -k sobel-vertical \\
        + pool --op max -k 2 -o edges.png

Each stage is parsed by its own command, exactly as when it runs alone, but
instead of running it hands over its operation and the shared options it was
given (:func:`collecting`).  Inputs go to the first stage; every other shared
option (``-o``, ``--json``, ``-j``, the limits...) may be written on any stage,
once (or with the same value).  The stages become one
:class:`~convcli.ops.chain.Chain`, run as one operation.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import fields, replace

from ..errors import ConvcliError

SEPARATOR = "+"
CHAIN_COMMANDS = ("filter", "pool", "upsample")


def is_stage_form(layers: list[str]) -> bool:
    """Whether ``shape``'s layers are image-command stages (``filter -k 3 + pool``)."""
    return bool(layers) and layers[0] in CHAIN_COMMANDS


def split_stages(args: list[str]) -> list[list[str]] | None:
    """The stages' argument lists, or None when there is no lone ``+`` (one command)."""
    if SEPARATOR not in args:
        return None
    stages, current = [], []
    for arg in args:
        if arg == SEPARATOR:
            stages.append(current)
            current = []
        else:
            current.append(arg)
    stages.append(current)
    for position, stage in enumerate(stages, start=1):
        if not stage:
            raise ConvcliError(f"chain: stage {position} is empty (two '+' in a row, or '+' at an end)")
        if stage[0] not in CHAIN_COMMANDS:
            where = "a chain starts" if position == 1 else f"stage {position} starts"
            raise ConvcliError(
                f"chain: {where} with {stage[0]!r}; each stage is one of {', '.join(CHAIN_COMMANDS)} "
                f"(stages are separated by a lone '+')"
            )
    return stages


class _Collector:
    def __init__(self):
        self.stages = []  # (operation, shared options) per stage, in order


_active: _Collector | None = None


@contextmanager
def collecting():
    """While active, an image command hands back its operation instead of running it."""
    global _active
    previous, _active = _active, _Collector()
    try:
        yield _active
    finally:
        _active = previous


def collect(operation, shared) -> bool:
    """Record a stage if a chain is being collected; returns whether it was."""
    if _active is None:
        return False
    _active.stages.append((operation, shared))
    return True


def merge_shared(stages):
    """One set of shared options from the stages': each option from the stage that gave it.

    ``INPUT...`` belongs to the first stage.  An option given on several stages must have
    the same value on each.
    """
    first = stages[0][1]
    merged = {}
    for position, (_, shared) in enumerate(stages, start=1):
        if position > 1 and shared.inputs:
            raise ConvcliError(
                f"chain: stage {position} names inputs ({' '.join(shared.inputs)}); inputs go to the "
                f"first stage"
            )
        for name in shared.given:
            value = getattr(shared, name)
            if name in merged and merged[name][1] != value:
                raise ConvcliError(
                    f"chain: {option_name(name)} is given on stages {merged[name][0]} and {position} "
                    f"with different values"
                )
            merged.setdefault(name, (position, value))
    names = {f.name for f in fields(first)}
    values = {name: value for name, (_, value) in merged.items() if name in names}
    return replace(first, **values, given=frozenset(merged))  # given on any stage


def option_name(field_name: str) -> str:
    """The command-line spelling of a shared option's field."""
    special = {
        "json_out": "--json",
        "value_map": "--map",
        "value_range": "--range",
        "template": "--output-template",
        "stream_format": "--format",
        "inputs": "INPUT",
    }
    return special.get(field_name, "--" + field_name.replace("_", "-"))
