"""Whole-process benchmark: PNG in, Sobel, PNG out, wall time and peak memory.

    python benchmarks/whole_process.py [--runs 5] [--sizes 1K,4K,8K]

For each size (1K = 1920x1080, 4K = 3840x2160, 8K = 7680x4320; an RGB picture
of shapes with mild noise, seeded) it runs, as separate processes, each
tool that is installed, on the same file:

* convcli: `convcli filter IN -k sobel-vertical -o OUT` (defaults: PNG level 1);
* convcli at PNG level 6: `... --compress-level 6`;
* ImageMagick: `convert IN -morphology Convolve '3x3: 1,0,-1 2,0,-2 1,0,-1' OUT`
  and the same with `-define png:compression-level=1`;
* libvips: `vips conv IN OUT MATRIX` with the same 3x3 matrix file, and `OUT[compression=1]`;
* Python + Pillow + numpy, the plain way (load, float32 slices, clip, save at Pillow's default).

Reports the median wall time and the median peak resident memory (from
os.wait4) of `--runs` runs, and each tool's time over convcli's (above 1:
convcli is faster). Installs nothing; absent
tools are reported as skipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {"1K": (1920, 1080), "4K": (3840, 2160), "8K": (7680, 4320)}
MAGICK_KERNEL = "3x3: 1,0,-1 2,0,-2 1,0,-1"

PLAIN_PYTHON = r"""
import sys
import numpy as np
from PIL import Image
x = np.asarray(Image.open(sys.argv[1]).convert("RGB"), dtype=np.float32) / 255
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
    """Runs in a child process: the parent stays small, because a child's peak
    memory as the kernel reports it includes the parent's at fork time."""
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


def measure(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident MiB) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {proc.stderr.read().decode()[:300]}")
    return elapsed, usage.ru_maxrss / 1024  # Linux reports KiB


def tool_commands(src: Path, out: Path, work: Path) -> dict[str, list[str] | None]:
    convcli = [sys.executable, "-m", "convcli", "filter", str(src), "-k", "sobel-vertical", "-q"]
    commands: dict[str, list[str] | None] = {
        "convcli (PNG level 1)": convcli + ["-o", str(out / "convcli.png"), "--overwrite"],
        "convcli (PNG level 6)": convcli + ["--compress-level", "6", "-o", str(out / "convcli6.png")],
        "ImageMagick (default)": None,
        "ImageMagick (level 1)": None,
        "vips conv (default)": None,
        "vips conv (level 1)": None,
        "Python+Pillow+numpy": [sys.executable, "-c", PLAIN_PYTHON, str(src), str(out / "plain.png")],
    }
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
    vips = shutil.which("vips")
    if vips:
        matrix = work / "sobel.mat"
        matrix.write_text("3 3 1 0\n1 0 -1\n2 0 -2\n1 0 -1\n")
        commands["vips conv (default)"] = [vips, "conv", str(src), str(out / "vips.png"), str(matrix)]
        commands["vips conv (level 1)"] = [
            vips,
            "conv",
            str(src),
            f"{out / 'vips1.png'}[compression=1]",
            str(matrix),
        ]
    return commands


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="1K,4K,8K")
    parser.add_argument("--make-image", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_image:
        _make_image(Path(args.make_image[0]), int(args.make_image[1]), int(args.make_image[2]))
        return 0
    work = Path(tempfile.mkdtemp(prefix="convcli-whole-"))
    print(f"PNG in, Sobel 3x3, PNG out; median of {args.runs} runs; {os.cpu_count()} cores")
    print(f"{'size':<5} {'tool':<24} {'wall s':>8} {'peak MiB':>9} {'time / convcli':>15}")
    try:
        for label in args.sizes.split(","):
            width, height = SIZES[label]
            src = work / f"{label}.png"
            make_image(src, width, height)
            out = work / f"out-{label}"
            out.mkdir()
            results = {}
            for name, command in tool_commands(src, out, work).items():
                if command is None:
                    results[name] = None
                    continue
                runs = [measure(command) for _ in range(args.runs)]
                results[name] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
            ours = results["convcli (PNG level 1)"][0]
            for name, result in results.items():
                if result is None:
                    print(f"{label:<5} {name:<24} {'skipped (not installed)':>33}")
                    continue
                wall, peak = result
                print(f"{label:<5} {name:<24} {wall:>8.2f} {peak:>9.0f} {wall / ours:>14.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
