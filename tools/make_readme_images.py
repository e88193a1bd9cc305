"""Remake the pictures the README shows by running convcli itself on the sample duck.

    python tools/make_readme_images.py

Each picture is made by the exact command printed next to it (and shown in
the README), so what the README shows is what convcli does.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = "docs/images"

COMMANDS = [
    f"filter sample_images/duck.png -k sobel-vertical -o {OUT}/duck-sobel-vertical.png",
    f"filter sample_images/duck.png -k sobel-horizontal -o {OUT}/duck-sobel-horizontal.png",
    f"filter sample_images/duck.png -k gaussian:size=9,sigma=3 -p same --pad-mode replicate -o {OUT}/duck-gaussian.png",
    f"pool sample_images/duck.png --op max -k 4 -o {OUT}/duck-maxpool4.png",
    f"pool sample_images/duck.png --op min -k 4 -o {OUT}/duck-minpool4.png",
    f"upsample sample_images/badge.png -o {OUT}/badge-up-bilinear.png",
    f"upsample sample_images/badge.png -k nearest -o {OUT}/badge-up-nearest.png",
    f"upsample sample_images/badge.png -k '1,1,1;1,1,1;1,1,1' -s 2 -p 1 --map normalize -o {OUT}/badge-up-checkerboard.png",
]


def main() -> int:
    (ROOT / OUT).mkdir(parents=True, exist_ok=True)
    for command in COMMANDS:
        args = [sys.executable, "-m", "convcli"] + shlex.split(command) + ["--overwrite", "--compress-level", "9"]
        result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"convcli {command}\n{result.stderr}", file=sys.stderr)
            return 1
        print(f"$ convcli {command}\n{result.stdout.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
