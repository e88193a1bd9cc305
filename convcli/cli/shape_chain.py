"""``convcli shape SIZE filter ... + pool ...``: the sizes of a chain, as the chain computes them.

The stages are parsed by the image commands themselves (in collecting mode, see
:mod:`convcli.cli.chain`), so a stage means exactly what it means when it runs;
each operation then gives its layer (``as_layer``) to the shape arithmetic.
In ``shape``, ``-k N`` or ``-k WxH`` is a kernel size, as in ``shape -k 3``;
any other kernel spec (a preset, a matrix, a file) is read for its size.
Only this form of ``shape`` loads numpy (the kernels are numpy arrays).
"""

from __future__ import annotations

import re

from ..errors import ConvcliError
from ..geometry.sizes import parse_pair
from .chain import collecting, split_stages

_SIZE = re.compile(r"^\s*\d+\s*(?:[xX×]\s*\d+\s*)?$")
SHAPE_FLAGS = ("--json", "--explain")
SHAPE_VALUES = ("--draw", "--at")


def shape_of_stages(args: list[str], group) -> str:
    """``convcli shape SIZE STAGE [+ STAGE]...``: the report, as ``shape`` prints it; ``group``
    is the command line's click group, whose commands parse the stages. ``--json``,
    ``--explain``, ``--draw PICTURE`` and ``--at ROW,COL`` are shape's own, anywhere."""
    from .shape_fast import report

    flags, values, words = set(), {}, []
    items = iter(args)
    for arg in items:
        name, eq, value = arg.partition("=")
        if arg in SHAPE_FLAGS:
            flags.add(arg)
        elif name in SHAPE_VALUES:
            values[name] = value if eq else next(items, None)
            if values[name] is None:
                raise ConvcliError(f"{name}: needs a value")
        else:
            words.append(arg)
    size, stages = words[0], words[1:]
    return report(
        size,
        lambda: stage_layers(stages, group),
        json_out="--json" in flags,
        explain="--explain" in flags,
        draw=values.get("--draw"),
        at=values.get("--at"),
    )


def stage_layers(words: list[str], group):
    """The receptive-field layers of the stages in ``words`` (``filter -k 3 -p same + pool``)."""
    import click
    import typer

    stages = split_stages(words) or [words]
    with collecting() as collected:
        for stage in stages:
            if stage[0] in ("filter", "upsample"):
                stage = _kernel_sizes_as_matrices(stage)
            try:
                # click's own main, not ConvcliGroup's: errors come back here as exceptions
                typer.core.TyperGroup.main(group, args=stage, prog_name="convcli", standalone_mode=False)
            except click.ClickException as exc:
                position = len(collected.stages) + 1
                raise ConvcliError(f"stage {position} ({stage[0]}): {exc.format_message()}") from None
    layers = []
    for position, (operation, shared) in enumerate(collected.stages, start=1):
        if shared.given:
            options = ", ".join(sorted(shared.given))
            raise ConvcliError(
                f"shape: stage {position} ({operation.name}) takes only its own options here, not {options}"
            )
        layers.append(operation.as_layer())
    return layers


def _kernel_sizes_as_matrices(stage: list[str]) -> list[str]:
    """``-k 3`` / ``-k 5x3`` in shape means a kernel of that size: an all-ones matrix stands in."""
    out, items = [], iter(stage)
    for item in items:
        name, eq, value = item.partition("=")
        if name in ("-k", "--kernel"):
            value = value if eq else next(items, "")
            if _SIZE.match(value):
                height, width = parse_pair(value, "-k/--kernel", minimum=1)  # bounded as everywhere
                if height > 512 or width > 512:
                    raise ConvcliError(f"-k/--kernel: a kernel size is 1 to 512 per side, got {value!r}")
                value = ";".join([",".join(["1"] * width)] * height)
            out += ["--kernel", value]
        else:
            out.append(item)
    return out
