"""Whole-process benchmark: PNG in, Sobel with `-p same`, PNG out, wall time and peak memory.

    python benchmarks/whole_process.py [--runs 5] [--sizes 1K,4K,8K] [--all-tools]

For each size (1K = 1920x1080, 4K = 3840x2160, 8K = 7680x4320; an RGB picture
of shapes with mild noise, seeded, written by Pillow at PNG level 1) it runs, as
separate processes, on the same file:

* convcli: `convcli filter IN -k sobel-vertical -p same -o OUT` (PNG level 1, its default);
* libvips: `vips conv IN OUT[compression=1] MATRIX`, the same 3x3 matrix, output the
  input's size, at the same PNG level;
* with --all-tools, also: vips at its default PNG level, ImageMagick
  (`convert IN -morphology Convolve '3x3: 1,0,-1 2,0,-2 1,0,-1' OUT`, default and level 1),
  and Python + Pillow + numpy the plain way (load, float32 slices, clip, save).

The runs are interleaved (run 1 of every tool, then run 2, ...), so that a machine whose load
changes during the benchmark weighs on every tool alike.  Reports the median wall time and the
median peak resident memory of each tool, read as the process's VmHWM from /proc while it runs
(ru_maxrss would count this script's memory at the fork too), and each tool's time over
convcli's in the same run; then the README's table.  Also the fixed start of a Python process
(`python -c pass`, `python -c "import numpy"`), what the 1K figure is mostly made of.
Installs nothing; absent tools are reported as skipped (`apt-get install libvips-tools`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SIZES = {"1K": (1920, 1080), "4K": (3840, 2160), "8K": (7680, 4320)}
MAGICK_KERNEL = "3x3: 1,0,-1 2,0,-2 1,0,-1"
CONVCLI = "convcli"
VIPS = "vips conv (PNG level 1)"

PLAIN_PYTHON = r"""
import sys
import numpy as np
from PIL import Image
x = np.asarray(Image.open(sys.argv[1]).convert("RGB"), dtype=np.float32) / 255
x = np.pad(x, ((1, 1), (1, 1), (0, 0)))
k = [[1, 0, -1], [2, 0, -2], [1, 0, -1]]
h, w = x.shape[0] - 2, x.shape[1] - 2
out = np.zeros((h, w, 3), np.float32)
for m in range(3):
    for n in range(3):
        if k[m][n]:
            out += k[m][n] * x[m:m + h, n:n + w]
Image.fromarray((np.clip(np.abs(out), 0, 1) * 255 + 0.5).astype(np.uint8)).save(sys.argv[2])
"""


def make_image(path: Path, width: int, height: int) -> None:
    """Runs in a child process: this script stays small and never imports numpy."""
    subprocess.run([sys.executable, __file__, "--make-image", str(path), str(width), str(height)], check=True)


def _make_image(path: Path, width: int, height: int) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(7)
    image = Image.new("RGB", (width, height), (120, 160, 200))
    draw = ImageDraw.Draw(image)
    for i in range(width * height // 30000):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = (int(v) for v in rng.integers(10, max(11, width // 10), 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if i % 2 else draw.rectangle)((x, y, x + w, y + h), fill=colour)
    pixels = np.asarray(image).astype(np.int16) + rng.integers(-6, 7, (height, width, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, compress_level=1)


# Processes run as installed ones do: with their bytecode cached (pip compiles it at install
# time; PYTHONDONTWRITEBYTECODE, set in some shells and sandboxes, would have every run compile
# convcli's sources again, about 0.1 s).
ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def _peak_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def measure(command: list[str]) -> tuple[float, float, float]:
    """(wall seconds, peak resident MiB, CPU seconds) of one process; the peak is its VmHWM,
    read every few milliseconds while it runs (the high-water mark only grows: the last reading
    stands); the CPU time is user + system, of all its threads."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    peak = [0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            value = _peak_kib(proc.pid)
            if value:
                peak[0] = max(peak[0], value)
            done.wait(0.003)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    done.set()
    watcher.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {proc.stderr.read().decode()[:300]}")
    return elapsed, peak[0] / 1024, usage.ru_utime + usage.ru_stime


def convcli_command() -> list[str]:
    script = Path(sys.executable).parent / "convcli"
    if script.exists():
        return [str(script)]
    return [shutil.which("convcli")] if shutil.which("convcli") else [sys.executable, "-m", "convcli"]


def tool_commands(src: Path, out: Path, work: Path, all_tools: bool) -> dict[str, list[str] | None]:
    convcli = convcli_command() + ["filter", str(src), "-k", "sobel-vertical", "-p", "same", "-q"]
    commands: dict[str, list[str] | None] = {
        CONVCLI: convcli + ["-o", str(out / "convcli.png"), "--overwrite"],
        VIPS: None,
    }
    vips = shutil.which("vips")
    matrix = work / "sobel.mat"
    matrix.write_text("3 3 1 0\n1 0 -1\n2 0 -2\n1 0 -1\n")
    if vips:
        commands[VIPS] = [vips, "conv", str(src), f"{out / 'vips1.png'}[compression=1]", str(matrix)]
    if not all_tools:
        return commands
    commands["vips conv (default level)"] = (
        [vips, "conv", str(src), str(out / "vips.png"), str(matrix)] if vips else None
    )
    commands["ImageMagick (default)"] = commands["ImageMagick (level 1)"] = None
    convert = shutil.which("convert")
    if (
        convert
        and "ImageMagick" in subprocess.run([convert, "-version"], capture_output=True, text=True).stdout
    ):
        base = [convert, str(src), "-morphology", "Convolve", MAGICK_KERNEL]
        commands["ImageMagick (default)"] = base + [str(out / "magick.png")]
        commands["ImageMagick (level 1)"] = base + [
            "-define",
            "png:compression-level=1",
            str(out / "magick1.png"),
        ]
    commands["Python+Pillow+numpy"] = [sys.executable, "-c", PLAIN_PYTHON, str(src), str(out / "plain.png")]
    return commands


def interleaved(commands: dict[str, list[str] | None], runs: int) -> dict[str, tuple[float, ...] | None]:
    """Median (wall s, peak MiB, CPU s) of each command, one run of each in turn, ``runs`` times."""
    live = {name: command for name, command in commands.items() if command is not None}
    for command in live.values():  # warm the page cache and the file system
        measure(command)
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in live}
    for _ in range(runs):
        for name, command in live.items():
            samples[name].append(measure(command))
    return {
        name: tuple(statistics.median(s[i] for s in samples[name]) for i in range(3))
        if name in samples
        else None
        for name in commands
    }


def vips_version() -> str:
    vips = shutil.which("vips")
    if not vips:
        return "not installed"
    return subprocess.run([vips, "--version"], capture_output=True, text=True).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="1K,4K,8K")
    parser.add_argument(
        "--all-tools", action="store_true", help="also ImageMagick, vips's default level, Pillow"
    )
    parser.add_argument("--make-image", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_image:
        _make_image(Path(args.make_image[0]), int(args.make_image[1]), int(args.make_image[2]))
        return 0
    work = Path(tempfile.mkdtemp(prefix="convcli-whole-"))
    print(
        f"PNG in, Sobel 3x3 -p same, PNG out; median of {args.runs} interleaved runs; "
        f"{os.cpu_count()} cores; {vips_version()}; load average {os.getloadavg()[0]:.1f}"
    )
    start = interleaved(
        {
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import numpy'": [sys.executable, "-c", "import numpy"],
        },
        args.runs,
    )
    for name, (wall, peak, cpu) in start.items():
        print(f"{'start':<5} {name:<26} {wall:>8.3f} s {peak:>7.0f} MiB {cpu:>8.3f} s")
    print(f"{'size':<5} {'tool':<26} {'wall':>10} {'peak':>11} {'CPU':>10} {'time / convcli':>15}")
    table = []
    try:
        for label in args.sizes.split(","):
            width, height = SIZES[label]
            src = work / f"{label}.png"
            make_image(src, width, height)
            out = work / f"out-{label}"
            out.mkdir()
            results = interleaved(tool_commands(src, out, work, args.all_tools), args.runs)
            ours = results[CONVCLI][0]
            for name, result in results.items():
                if result is None:
                    print(f"{label:<5} {name:<26} {'skipped (not installed)':>27}")
                    continue
                wall, peak, cpu = result
                ratio = wall / ours
                print(f"{label:<5} {name:<26} {wall:>8.2f} s {peak:>7.0f} MiB {cpu:>8.2f} s {ratio:>14.2f}x")
            table.append((f"{width}x{height}", results))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| size | convcli: wall, peak (CPU) | `vips conv` level 1: wall, peak (CPU) | convcli / vips |")
    print("|---|---|---|---|")
    for size, results in table:
        ours, theirs = results[CONVCLI], results[VIPS]
        vips_cell = (
            f"{theirs[0]:.2f} s, {theirs[1]:.0f} MiB ({theirs[2]:.2f} s)" if theirs else "not installed"
        )
        ratio = f"{ours[0] / theirs[0]:.2f}" if theirs else "-"
        print(f"| {size} | {ours[0]:.2f} s, {ours[1]:.0f} MiB ({ours[2]:.2f} s) | {vips_cell} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
