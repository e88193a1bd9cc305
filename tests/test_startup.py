"""Start-up paths: help without markdown-it and Pygments, and the stand-ins that make it so."""

from __future__ import annotations

import os
import subprocess
import sys

ENV = {**os.environ, "NO_COLOR": "1", "COLUMNS": "100", "TERM": "dumb"}


ENTRY = "import sys; sys.argv[0] = 'convcli'; from convcli.cli.entry import main; main()"
TYPER = "import sys; sys.argv[0] = 'convcli'; from convcli.cli.app import main; main()"


def python(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=ENV, timeout=60)


def test_help_is_what_typer_renders_and_skips_markdown_and_pygments():
    fast = python("-X", "importtime", "-c", ENTRY, "--help")
    assert fast.returncode == 0, fast.stderr
    imported = {line.split("|")[-1].strip() for line in fast.stderr.splitlines() if "|" in line}
    assert "typer.rich_utils" in imported  # the real Rich help ran
    assert not {"markdown_it", "pygments", "numpy", "PIL"} & imported
    plain = python("-c", TYPER, "--help")
    assert plain.returncode == 0
    assert fast.stdout == plain.stdout
    for command in ("filter", "pool", "upsample", "shape", "kernels"):
        assert command in fast.stdout


def test_subcommand_help_is_unchanged():
    fast = python("-c", ENTRY, "pool", "--help")
    plain = python("-c", TYPER, "pool", "--help")
    assert fast.returncode == plain.returncode == 0
    assert "--ceil-mode" in fast.stdout
    assert fast.stdout == plain.stdout


def test_stand_ins_become_the_real_classes_when_used():
    code = (
        "import sys\n"
        "from convcli.cli.entry import defer_unused_rich_modules\n"
        "defer_unused_rich_modules()\n"
        "from rich.markdown import Markdown\n"
        "assert 'markdown_it' not in sys.modules\n"
        "made = Markdown('# Title')\n"
        "import rich.markdown\n"
        "assert type(made) is rich.markdown.Markdown, type(made)\n"
        "assert not getattr(sys.modules['rich.markdown'], '_convcli_stand_in', False)\n"
        "from rich.console import Console\n"
        "console = Console(width=40, record=True)\n"
        "console.print(made)\n"
        "assert 'Title' in console.export_text()\n"
        "print('ok')\n"
    )
    result = python("-c", code)
    assert result.stdout.splitlines()[-1] == "ok", result.stderr


def test_filter_png_to_png_imports_no_pillow(tmp_path):
    """A PNG in and a PNG out need neither Pillow nor tifffile nor dask: convcli's own decoder
    (convcli.io.pngread) and writer (convcli.io.png) do both ends."""
    from convcli.io import pngread

    if pngread.unfilter is None:  # the optional extension was not built: Pillow decodes
        import pytest

        pytest.skip("the _pngrows extension is not built")
    import numpy as np
    from PIL import Image

    source = tmp_path / "in.png"
    Image.fromarray(np.arange(48 * 64 * 3, dtype=np.uint32).astype(np.uint8).reshape(48, 64, 3)).save(source)
    out = tmp_path / "out.png"
    run = python(
        "-X",
        "importtime",
        "-c",
        ENTRY,
        "filter",
        str(source),
        "-k",
        "sobel-vertical",
        "-p",
        "same",
        "-o",
        str(out),
        "-q",
    )
    assert run.returncode == 0, run.stderr
    imported = {line.split("|")[-1].strip() for line in run.stderr.splitlines() if "|" in line}
    assert "convcli.io.pngread" in imported and "numpy" in imported  # the real work ran
    assert not {"PIL", "PIL.Image", "tifffile", "dask", "zarr", "scipy"} & imported
    assert out.read_bytes().startswith(b"\x89PNG")
