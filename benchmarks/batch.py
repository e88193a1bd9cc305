"""Batch benchmark: one convcli call over a folder against a per-file loop.

    python benchmarks/batch.py [--images 200] [--repeat 3] [--jobs 2]

Generates N 1024x768 RGB PNGs (seeded) in a temporary folder, then times,
each `--repeat` times, on the same images and the same Sobel kernel:

* convcli over the folder in one process tree (`convcli filter DIR -k sobel-vertical -o OUT -j 2`);
* a shell loop calling convcli once per file;
* a shell loop calling ImageMagick (`convert IN -morphology Convolve '3x3: ...' OUT`),
  when `convert` is ImageMagick (skipped otherwise).

Prints the median wall time of each and convcli's speed-up over each loop.
Installs nothing.
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

SOBEL_MAGICK = "3x3: 1,0,-1 2,0,-2 1,0,-1"


def make_images(folder: Path, count: int) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(42)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = Image.new("RGB", (1024, 768), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x0, y0 = (int(v) for v in rng.integers(0, 900, 2))
            box = (x0, y0 % 700, x0 + int(rng.integers(20, 300)), y0 % 700 + int(rng.integers(20, 300)))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if i % 2 else draw.rectangle)(box, fill=colour)
        image.save(folder / f"img{i:04d}.png")


def is_imagemagick(command: str) -> bool:
    path = shutil.which(command)
    if not path:
        return False
    try:
        out = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "ImageMagick" in out


def timed(command: list[str] | str, *, shell: bool = False) -> float:
    start = time.perf_counter()
    subprocess.run(command, shell=shell, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    convcli = [sys.executable, "-m", "convcli"]
    work = Path(tempfile.mkdtemp(prefix="convcli-batch-"))
    try:
        images = work / "in"
        make_images(images, args.images)
        files = sorted(images.iterdir())
        results: dict[str, list[float]] = {"convcli batch": [], "convcli per file": []}
        magick = is_imagemagick("convert")
        if magick:
            results["ImageMagick per file"] = []
        for run in range(args.repeat):
            out = work / f"out{run}"
            results["convcli batch"].append(
                timed(
                    convcli
                    + [
                        "filter",
                        str(images),
                        "-k",
                        "sobel-vertical",
                        "-o",
                        str(out),
                        "-j",
                        str(args.jobs),
                        "-q",
                    ]
                )
            )
            loop_out = work / f"loop{run}"
            loop_out.mkdir()
            start = time.perf_counter()
            for path in files:
                subprocess.run(
                    convcli
                    + ["filter", str(path), "-k", "sobel-vertical", "-q", "-o", str(loop_out / path.name)],
                    check=True,
                )
            results["convcli per file"].append(time.perf_counter() - start)
            if magick:
                magick_out = work / f"magick{run}"
                magick_out.mkdir()
                start = time.perf_counter()
                for path in files:
                    subprocess.run(
                        [
                            "convert",
                            str(path),
                            "-morphology",
                            "Convolve",
                            SOBEL_MAGICK,
                            str(magick_out / path.name),
                        ],
                        check=True,
                    )
                results["ImageMagick per file"].append(time.perf_counter() - start)
            print(f"run {run + 1}/{args.repeat} done", file=sys.stderr)

        batch = statistics.median(results["convcli batch"])
        print(
            f"{args.images} images of 1024x768, Sobel 3x3, median of {args.repeat} runs, "
            f"{os.cpu_count()} cores"
        )
        print(f"{'what':<24} {'median s':>9} {'per image ms':>13} {'convcli batch is':>18}")
        for name, times in results.items():
            median = statistics.median(times)
            ratio = "" if name == "convcli batch" else f"{median / batch:.1f}x faster"
            print(f"{name:<24} {median:>9.2f} {1000 * median / args.images:>13.1f} {ratio:>18}")
        if not magick:
            print("ImageMagick per file: skipped (convert is not ImageMagick or not installed)")
        print("target: convcli batch at least 3x faster than each per-file loop")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
