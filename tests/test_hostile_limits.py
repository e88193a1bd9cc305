"""A hostile user's numbers, files and streams (issue #14): every one is refused up front with
one line, ``convcli: error: ...``, exit code 2, no traceback, no output file, and quickly.

Numbers are bounded where they are parsed; ``convcli shape`` stays arithmetic whatever the
stride; kernels are sized from their parameters before they are made; files that are not
regular files (devices, FIFOs) are never opened; standard input is read up to a limit; and
every allocation a run makes is counted from headers and parameters before any is made, so
that under an address-space limit (``prlimit --as``) convcli refuses instead of dying with a
MemoryError.  Inputs are generated here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CONVCLI = [sys.executable, "-m", "convcli"]
HUGE = "9" * 5000  # more digits than Python converts to an int by default (4300)
# An address-space cap that leaves a normal small run room (the interpreter, numpy and Pillow
# map about 200 MB) and makes any large allocation fail, as a MemoryError if convcli tried it.
CAP = 1_500_000_000
HAS_PRLIMIT = shutil.which("prlimit") is not None
needs_prlimit = pytest.mark.skipif(not HAS_PRLIMIT, reason="needs prlimit (util-linux)")
HANG = 10  # seconds: a refusal takes well under one; a hang would take forever


def run(args, cwd, *, cap: int | None = None, timeout: float = HANG, **kwargs):
    """convcli in a subprocess (under an address-space cap with ``cap``), one BLAS thread."""
    command = CONVCLI + [str(a) for a in args]
    if cap is not None:
        command = ["prlimit", f"--as={cap}", *command]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", CONVCLI_PRESETS="")
    env.update(kwargs.pop("env", {}))
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, **kwargs
    )


def assert_refused(result, *mentions, code: int = 2) -> str:
    """Exit code 2, exactly one stderr line ``convcli: error: ...`` naming ``mentions``, no
    traceback and no MemoryError."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("convcli: error: "), lines[0]
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    assert "not enough memory" not in lines[0]  # refused up front, not caught when it failed
    for word in mentions:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture
def png(tmp_path) -> Path:
    path = tmp_path / "a.png"
    rng = np.random.default_rng(14)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(path)
    return path


def no_outputs(folder: Path, *keep: str) -> None:
    names = sorted(p.name for p in folder.iterdir() if p.name not in keep)
    assert not [n for n in names if n.startswith(("out", ".out"))], names


# ------------------------------------------------------------------ numbers


def test_shape_refuses_a_stride_of_thirty_digits_with_one_line(cli):
    line = cli.fail("shape", "224", "conv:k=3,s=123456789012345678901234567890").stderr
    assert "at most 2,147,483,647" in line and "layer 1" in line


def test_shape_answers_a_transposed_stride_of_a_billion_at_once(tmp_path):
    """The receptive field of a transposed layer was the widest over a loop of ``stride``
    phases, each over the kernel: minutes at a stride of 10**9.  It is now solved by phases
    (convcli.geometry.phases; tests/test_receptive.py holds it to a read-matrix oracle)."""
    started = time.monotonic()
    result = run(["shape", "2", "tconv:k=3,s=1000000000", "conv:k=1000,s=999999,d=7", "--json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 5
    layers = json.loads(result.stdout)["layers"]
    assert layers[0]["output_size"] == {"width": 1_000_000_003, "height": 1_000_000_003}
    assert layers[0]["receptive_field"] == {"width": 1, "height": 1}


@pytest.mark.parametrize(
    "args, option",
    [
        (["filter", "{png}", "-s", HUGE], "--stride"),
        (["filter", "{png}", "-p", HUGE], "--padding"),
        (["filter", "{png}", "-d", f"3x{HUGE}"], "--dilation"),
        (["filter", "{png}", "-k", f"box:size={HUGE}"], "size"),
        (["pool", "{png}", "-k", HUGE], "--size"),
        (["upsample", "{png}", "--output-padding", HUGE], "--output-padding"),
        (["filter", "{png}", "--chunk", HUGE], "--chunk"),
        (["filter", "{png}", "--max-memory", f"{HUGE}G"], "--max-memory"),
        (["shape", HUGE, "conv:k=3"], "SIZE"),
        (["shape", "224", f"tconv:k=3,s=2,op={HUGE}"], "op"),
    ],
)
def test_numbers_of_thousands_of_digits_are_one_line_errors(cli, png, args, option):
    line = cli.fail(*[a.format(png=png) for a in args]).stderr
    assert option in line
    assert len(line) < 300  # the number is cut, not echoed whole


@pytest.mark.parametrize("sigma", ["1e308", "1e-200"])
def test_an_absurd_sigma_is_one_line(cli, png, tmp_path, sigma):
    cli.fail(
        "filter", png, "-k", f"gaussian:size=5,sigma={sigma}", "-o", tmp_path / "out.png", mentions="sigma"
    )
    no_outputs(tmp_path)


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_a_deeply_nested_preset_is_one_line(cli, png, tmp_path, suffix):
    folder = tmp_path / "presets"
    folder.mkdir()
    nested = "[" * 3000 + "1" + "]" * 3000
    text = (
        f"matrix = {nested}\n" if suffix == ".toml" else json.dumps({"x": 0})[:-1] + f', "matrix": {nested}}}'
    )
    (folder / f"deep{suffix}").write_text(text)
    cli.fail(
        "filter",
        png,
        "-k",
        "deep",
        "--presets",
        folder,
        "-o",
        tmp_path / "out.png",
        mentions="nested too deeply",
    )
    no_outputs(tmp_path)


def test_a_huge_preset_file_is_refused_before_it_is_read(cli, png, tmp_path):
    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "big.toml").write_text('matrix = [[1]]\ndescription = "' + "x" * (5 << 20) + '"\n')
    cli.fail(
        "filter", png, "-k", "big", "--presets", folder, "-o", tmp_path / "out.png", mentions="over the limit"
    )
    no_outputs(tmp_path)


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_a_kernel_file_that_never_ends_is_refused_unread(png, tmp_path, kind):
    if kind == "device":
        kernel = "/dev/zero"
    else:
        kernel = str(tmp_path / "k.txt")
        os.mkfifo(kernel)  # nobody writes to it: opening it would block
    result = run(["filter", png, "-k", kernel, "-o", tmp_path / "out.png"], tmp_path)
    assert_refused(result, "not a regular file", "kernel file")
    no_outputs(tmp_path, "k.txt")


@pytest.mark.parametrize(
    "args",
    [
        ["filter", "x.png", "-o", "out.png"],
        ["filter", "x.npy", "-o", "out.npy"],  # the chunked path reads the header first
        ["filter", "x.png", "--dry-run", "-o", "out.png"],
        ["shape", "x.png", "conv:k=3"],
    ],
)
def test_an_input_fifo_is_refused_without_blocking(tmp_path, args):
    os.mkfifo(tmp_path / "x.png")
    os.mkfifo(tmp_path / "x.npy")
    result = run(args, tmp_path)
    assert_refused(result, "not a regular file", "standard input")
    no_outputs(tmp_path)


def test_kernels_show_refuses_a_kernel_too_large_to_print(tmp_path):
    """Drawing a 3000x3000 kernel as a table took forever (nine million cells); it is sized
    from its parameters, never made, and refused."""
    result = run(["kernels", "show", "box:size=3000"], tmp_path)
    assert_refused(result, "too large to print")
    assert result.stdout == ""


# ------------------------------------------------------------------- limits


@needs_prlimit
@pytest.mark.parametrize(
    "args, mentions",
    [
        (["filter", "{png}", "-k", "box:size=100000", "--max-memory", "1G"], ["taps", "to make"]),
        (["upsample", "{png}", "-s", "100000", "--dry-run"], ["kernel 'bilinear'", "to make"]),
        (["upsample", "{png}", "-s", "100000"], ["kernel 'bilinear'", "to make"]),
        # thin (one row, 20000 taps: its separability check alone was a 3 GB SVD)
        (["filter", "{png}", "-k", "box:size=20000x1", "-p", "10000x0"], ["--max-memory"]),
        # dilated, with padding to match: a 10,000-pixel square output
        (["filter", "{png}", "-k", "laplacian", "-d", "5000", "-p", "10000"], ["--max-memory"]),
        # a mean over 3000x3000 windows: nine million views of the window's cells
        (["pool", "{png}", "-k", "3000", "-p", "1500", "--op", "mean"], ["--max-memory"]),
        # a small matrix padded to a 200000-row result
        (["filter", "--matrix", "1 2; 3 4", "-k", "1;1", "-p", "100000"], ["--matrix", "--max-memory"]),
    ],
)
def test_every_allocation_is_counted_before_any_is_made(png, tmp_path, args, mentions):
    """Under an address-space cap these died with a MemoryError (a traceback, or caught after
    the allocation failed); now the estimate refuses them first, naming the limit."""
    result = run([a.format(png=png) for a in args] + ["-o", tmp_path / "out.png"], tmp_path, cap=CAP)
    assert_refused(result, *mentions)
    no_outputs(tmp_path)


@needs_prlimit
def test_the_default_limit_is_what_the_address_space_leaves(png, tmp_path):
    """Without --max-memory the limit is half the memory, or what ``ulimit -v`` leaves when that
    is less: a 7000x7000 box kernel (about 1.1 GB to make) is refused under a 1.5 GB cap, while
    a normal small run under the same cap goes through."""
    small = run(["filter", png, "-k", "sobel-vertical", "-o", tmp_path / "small.png"], tmp_path, cap=CAP)
    assert small.returncode == 0, small.stderr
    result = run(
        ["filter", png, "-k", "box:size=7000", "-p", "3500", "-o", tmp_path / "out.png"], tmp_path, cap=CAP
    )
    line = assert_refused(result, "--max-memory", "to make")
    limit = int(line.split("memory limit of ")[1].split(" MiB")[0].replace(",", ""))
    assert 256 < limit < CAP / 2**20
    no_outputs(tmp_path)


def test_a_dry_run_sizes_a_large_kernel_without_making_it(png, tmp_path):
    """``--dry-run`` with a 64-million-tap box kernel: its size comes from its parameters, so
    the dry run stays small (making it took over a gigabyte)."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork and exec, so in a long test run
    # it would report the pytest process's own peak (measured: 430 MiB in CI).
    script = (
        "import runpy, sys\n"
        "sys.argv = ['convcli'] + sys.argv[1:]\n"
        "try:\n"
        "    runpy.run_module('convcli', run_name='__main__')\n"
        "finally:\n"
        "    status = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
        "    print(f'peak {status}', file=sys.stderr)\n"
    )
    args = ["filter", png, "-k", "box:size=8000", "-p", "4000", "--dry-run", "--max-memory", "64G"]
    result = subprocess.run(
        [sys.executable, "-c", script, *map(str, args), "-o", str(tmp_path / "out.png")],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, OPENBLAS_NUM_THREADS="1"),
    )
    assert result.returncode == 0, result.stderr
    assert "would write" in result.stdout
    peak_kib = int(result.stderr.strip().splitlines()[-1].split()[1])
    assert peak_kib < 300 * 1024, peak_kib
    no_outputs(tmp_path)


@pytest.mark.parametrize("output", ["out.png", "out.npy"])
def test_max_pixels_holds_for_npy_too(cli, tmp_path, output):
    np.save(tmp_path / "wide.npy", np.zeros((20, 30), np.float32))
    for extra in ([], ["--dry-run"]):
        cli.fail(
            "filter",
            tmp_path / "wide.npy",
            "--max-pixels",
            "500",
            "-o",
            tmp_path / output,
            *extra,
            mentions=["30x20 is 600 pixels", "--max-pixels"],
        )
    no_outputs(tmp_path)


@pytest.mark.parametrize("limited_by", ["--max-memory", "prlimit"])
def test_an_endless_standard_input_is_read_up_to_the_limit(tmp_path, limited_by):
    if limited_by == "prlimit" and not HAS_PRLIMIT:
        pytest.skip("needs prlimit")
    args = ["filter", "-", "-o", tmp_path / "out.png"]
    with open("/dev/zero", "rb") as zeros:
        if limited_by == "--max-memory":
            result = run([*args, "--max-memory", "64M"], tmp_path, stdin=zeros)
        else:
            result = run(args, tmp_path, stdin=zeros, cap=CAP)
    assert_refused(result, "standard input holds more than")
    no_outputs(tmp_path)


def test_a_tiff_of_one_huge_strip_is_refused_in_chunks(tmp_path):
    """Every block that touches a strip decodes it whole: a 64 MB strip, two a thread, is over
    a 128 MB limit however small the blocks."""
    tifffile = pytest.importorskip("tifffile")
    pytest.importorskip("dask")
    pytest.importorskip("zarr")
    tifffile.imwrite(
        tmp_path / "strip.tif", np.zeros((8000, 8000), np.uint8), compression="zlib", rowsperstrip=8000
    )
    args = ["filter", "strip.tif", "-o", "out.tif", "--chunk", "64", "--max-memory", "128M"]
    result = run(args, tmp_path, timeout=20)
    assert_refused(result, "--max-memory", "strip of the TIFF")
    no_outputs(tmp_path)
