"""What a shell user expects: completion, one suggestion for a typo, the closest presets, binary
output kept off a terminal, an array piped through stays an array."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

CONVCLI = [sys.executable, "-m", "convcli"]


def run(*args, env=None, **kwargs):
    environment = dict(os.environ, **(env or {}))
    return subprocess.run([*CONVCLI, *map(str, args)], capture_output=True, env=environment, **kwargs)


# ------------------------------------------------------------------ completion


@pytest.mark.parametrize(
    "shell, marker",
    [("bash", "complete -o default -F"), ("zsh", "#compdef convcli"), ("fish", "complete --command convcli")],
)
def test_completion_prints_the_script(cli, shell, marker):
    script = cli.ok("completion", shell).stdout
    assert marker in script and "_CONVCLI_COMPLETE=complete_" in script


def test_completion_answers_the_shell():
    words = {"COMP_WORDS": "convcli fil", "COMP_CWORD": "1", "_CONVCLI_COMPLETE": "complete_bash"}
    assert run(env=words, text=True).stdout.split() == ["filter"]
    words = {"COMP_WORDS": "convcli filter --gr", "COMP_CWORD": "2", "_CONVCLI_COMPLETE": "complete_bash"}
    assert run(env=words, text=True).stdout.split() == ["--gray"]


def test_completion_refuses_an_unknown_shell(cli):
    cli.fail("completion", "tcsh", mentions=("completion", "bash"))


# ----------------------------------------------------------- messages, once


def test_misspelled_command_suggests_once(cli):
    result = cli.fail("fliter", mentions="Did you mean 'filter'?")
    assert result.stderr.count("Did you mean") == 1


def test_misspelled_preset_names_the_closest(cli, tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.png")
    line = cli.fail("filter", tmp_path / "x.png", "-k", "sobel-vertcal").stderr
    assert "did you mean 'sobel-vertical'" in line and "see 'convcli kernels'" in line
    assert "laplacian" not in line  # not every preset
    line = cli.fail("filter", tmp_path / "x.png", "-k", "qqqq").stderr
    assert "did you mean" not in line and "see 'convcli kernels'" in line


def test_upsample_help_names_conv_transpose2d(cli):
    text = " ".join(cli.ok("upsample", "--help").stdout.split())
    assert "conv_transpose2d" in text and "PyTorch's conv2d" not in text


# --------------------------------------------------------------- -o -


def test_binary_output_refused_on_a_terminal(tmp_path):
    pty = pytest.importorskip("pty")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "x.png")
    main, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [*CONVCLI, "filter", str(tmp_path / "x.png"), "-k", "1", "-o", "-"],
            stdout=terminal,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.close(terminal)
        os.close(main)
    assert done.returncode == 2
    assert done.stderr.startswith("convcli: error: output '-': standard output is a terminal")
    assert done.stderr.count("\n") == 1
    # not a terminal: written
    piped = run("filter", tmp_path / "x.png", "-k", "1", "-o", "-")
    assert piped.returncode == 0 and piped.stdout.startswith(b"\x89PNG")


def test_npy_in_gives_npy_out_on_stdout(tmp_path):
    array = np.array([[-1.5, 0.25], [3.0, 1e-3]], np.float32)
    buffer = io.BytesIO()
    np.save(buffer, array)
    done = run("filter", "-", "-k", "1", "-o", "-", input=buffer.getvalue())
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(io.BytesIO(done.stdout)), array)  # floats kept, negatives too
    np.save(tmp_path / "a.npy", array)
    from_file = run("filter", tmp_path / "a.npy", "-k", "1", "-o", "-")
    np.testing.assert_array_equal(np.load(io.BytesIO(from_file.stdout)), array)
    as_png = run("filter", "-", "-k", "1", "-o", "-", "--format", "png", input=buffer.getvalue())
    assert as_png.stdout.startswith(b"\x89PNG")  # --format still decides
