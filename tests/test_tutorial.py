"""The README's tutorial walk-through ("### The tutorial, with convcli alone"), run: every
``$ convcli ...`` command of its console blocks is run as a real process in a copy of the files
it reads, its output must be the README's, the pictures it writes must be the committed ones,
and the values are checked against SciPy and plain loops (never against convcli)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import signal

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial"
M = np.array([[3, 0, 1, 2, 7], [1, 5, 8, 9, 3], [2, 7, 2, 5, 1], [0, 1, 3, 1, 7], [4, 2, 1, 6, 2]], float)
SOBEL_V = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], float)
SOBEL_H = SOBEL_V.T.copy()


def section() -> str:
    """The README's "Learn by seeing" section, its tutorial walk-through included."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Learn by seeing")
    assert "### The tutorial, with convcli alone" in text[start : text.index("\n## ", start)]
    return text[start : text.index("\n## ", start)]


def examples() -> list[tuple[str, str]]:
    """``(command, expected output)`` for each ``$ convcli`` line of the section's console blocks."""
    found = []
    for block in re.findall(r"```console\n(.*?)```", section(), re.DOTALL):
        for chunk in re.split(r"^\$ ", block, flags=re.MULTILINE)[1:]:
            command, _, output = chunk.partition("\n")
            found.append((command, output.rstrip("\n")))
    return found


def run(command: str, cwd: Path, *extra: str) -> str:
    args = shlex.split(command)
    assert args[0] == "convcli"
    done = subprocess.run(
        [sys.executable, "-m", "convcli", *args[1:], *extra],
        cwd=cwd,
        env=dict(os.environ, COLUMNS="80"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert done.returncode == 0, done.stdout
    return "\n".join(line.rstrip() for line in done.stdout.rstrip("\n").splitlines())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The files the tutorial reads, at the same relative paths; the outputs land here."""
    folder = tmp_path_factory.mktemp("tutorial")
    (folder / "sample_images").mkdir()
    shutil.copy(ROOT / "sample_images" / "duck.png", folder / "sample_images")
    (folder / "docs" / "tutorial").mkdir(parents=True)
    for name in ("noise20.png", "gaussian7.txt"):
        shutil.copy(TUTORIAL / name, folder / "docs" / "tutorial")
    return folder


def test_every_command_prints_what_the_readme_shows(workdir):
    cases = examples()
    assert len(cases) == 9
    for command, expected in cases:
        assert run(command, workdir) == expected, command
    for written in sorted((workdir / "docs" / "tutorial").glob("*-*.png")):  # the README's pictures
        committed = np.asarray(Image.open(TUTORIAL / written.name))
        np.testing.assert_array_equal(np.asarray(Image.open(written)), committed, err_msg=written.name)


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.int64)


def test_gaussian_pictures_against_scipy():
    x = pixels(TUTORIAL / "noise20.png") / 255.0
    kernel = np.loadtxt(TUTORIAL / "gaussian7.txt")
    assert kernel.sum() == pytest.approx(13.648, abs=1e-3)
    raw = signal.correlate2d(x, kernel, mode="same")  # zero padding 3 on each side
    assert raw.min() > 1  # every value clips: the all-white picture, and the 100% of the warning
    assert (pixels(TUTORIAL / "noise20-white.png") == 255).all()
    normalized = np.rint((raw - raw.min()) / (raw.max() - raw.min()) * 255)
    assert np.abs(pixels(TUTORIAL / "noise20-normalize.png") - normalized).max() <= 1
    axis = np.arange(7) - 3
    exact = np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * 1.5**2))
    blurred = np.rint(np.clip(signal.correlate2d(x, exact / exact.sum(), mode="same"), 0, 1) * 255)
    assert np.abs(pixels(TUTORIAL / "noise20-blur.png") - blurred).max() <= 1


@pytest.mark.parametrize("name, kernel", [("duck-vertical.png", SOBEL_V), ("duck-horizontal.png", SOBEL_H)])
def test_duck_edges_are_the_tutorials_vmin_vmax(name, kernel):
    rgb = pixels(ROOT / "sample_images" / "duck.png")[:, :, :3].astype(float)
    gray = rgb.mean(axis=2)
    gray /= gray.max()  # the tutorial's gray: the channels' mean, scaled by the maximum
    raw = signal.correlate2d(gray, kernel, mode="valid")
    shown = np.rint(np.clip((raw - 0) / (0.01 - 0), 0, 1) * 255)  # imshow(vmin=0, vmax=.01)
    got = pixels(TUTORIAL / name)
    assert got.shape == shown.shape
    assert np.abs(got - shown).max() <= 1


def json_result(workdir, command) -> tuple[np.ndarray, dict]:
    record = json.loads(run(command, workdir, "--json"))
    return np.array(record["result"]), record


def command_with(prefix: str, contains: str = "") -> str:
    return next(command for command, _ in examples() if command.startswith(prefix) and contains in command)


def test_stride_3_values_and_unreached_columns(workdir):
    result, record = json_result(workdir, command_with("convcli filter --matrix", "-s 3 --explain"))
    kernel = np.array([[1, 0, -1]] * 3, float)
    outputs = [(r, c) for r in range(0, 5 - 3 + 1, 3) for c in range(0, 5 - 3 + 1, 3)]
    assert outputs == [(0, 0)]  # one window: the second jump would need column 5
    assert result.tolist() == [[float((M[0:3, 0:3] * kernel).sum())]] == [[-5.0]]
    reached = {c + n for _, c in outputs for n in range(3)}
    missing = [c for c in range(5) if c not in reached]
    assert record["explain"]["notes"][0].startswith(
        f"no window reaches input columns {missing[0]}, {missing[1]}"
    )


def test_transposed_scatter_against_a_loop(workdir):
    result, record = json_result(workdir, command_with("convcli upsample"))
    x, k = np.array([[0, 1], [2, 3]], float), np.array([[0, 1], [2, 3]], float)
    expected = np.zeros((3, 3))
    for i in range(2):
        for j in range(2):
            expected[i : i + 2, j : j + 2] += x[i, j] * k  # each input pixel scatters the kernel
    assert result.tolist() == expected.tolist() == [[0, 0, 1], [0, 4, 6], [4, 12, 9]]
    assert record["explain"]["value"] == expected[1, 1]


def test_ceil_mode_pooling_against_a_loop(workdir):
    result, record = json_result(workdir, command_with("convcli pool"))
    out = -(-(5 - 2) // 2) + 1  # ceil((5 - 2) / 2) + 1 = 3; the last window starts at 4 < 5
    expected = [[M[2 * r : 2 * r + 2, 2 * c : 2 * c + 2].max() for c in range(out)] for r in range(out)]
    assert result.tolist() == expected
    assert [n for n in record["explain"]["notes"] if n.startswith("ceil_mode:")] == [
        "ceil_mode: the window of output column 2 covers input columns 4..5, past the right edge (its "
        "last column, padding included, is 4); its cells outside count for nothing",
        "ceil_mode: the window of output row 2 covers input rows 4..5, past the bottom edge (its "
        "last row, padding included, is 4); its cells outside count for nothing",
    ]
