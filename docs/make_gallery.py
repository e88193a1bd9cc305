"""Remake the gallery (docs/gallery.md and docs/images/) by running convcli itself.

    python docs/make_gallery.py

Every picture is made by the exact command written under it, run through the
installed convcli, so the gallery shows what the tool does today.  The README
shows four of these pictures.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = "docs/images"
DUCK = "sample_images/duck.png"
SCENE = "sample_images/scene.png"
BADGE = "sample_images/badge.png"

# (section, caption, command without the leading "convcli"); the output is the -o argument.
SECTIONS = [
    (
        "Presets",
        [
            ("identity", f"filter {DUCK} -k identity -o {IMAGES}/duck-identity.png"),
            ("box 5x5", f"filter {DUCK} -k box:size=5 -o {IMAGES}/duck-box.png"),
            (
                "gaussian size 9, sigma 3",
                f"filter {DUCK} -k gaussian:size=9,sigma=3 -p same --pad-mode replicate -o {IMAGES}/duck-gaussian.png",
            ),
            ("sobel-vertical", f"filter {DUCK} -k sobel-vertical -o {IMAGES}/duck-sobel-vertical.png"),
            ("sobel-horizontal", f"filter {DUCK} -k sobel-horizontal -o {IMAGES}/duck-sobel-horizontal.png"),
            ("prewitt-vertical", f"filter {DUCK} -k prewitt-vertical -o {IMAGES}/duck-prewitt-vertical.png"),
            (
                "scharr-horizontal (normalize)",
                f"filter {DUCK} -k scharr-horizontal --map normalize -o {IMAGES}/duck-scharr-horizontal.png",
            ),
            ("laplacian", f"filter {DUCK} -k laplacian -o {IMAGES}/duck-laplacian.png"),
            ("sharpen", f"filter {SCENE} -k sharpen -o {IMAGES}/scene-sharpen.png"),
            ("emboss (offset)", f"filter {DUCK} --gray -k emboss --map offset -o {IMAGES}/duck-emboss.png"),
        ],
    ),
    (
        "Stride",
        [
            ("stride 1", f"filter {SCENE} -k sobel-vertical -o {IMAGES}/scene-stride1.png"),
            ("stride 2", f"filter {SCENE} -k sobel-vertical -s 2 -o {IMAGES}/scene-stride2.png"),
            (
                "stride 2x1 (2 across, 1 down)",
                f"filter {SCENE} -k sobel-vertical -s 2x1 -o {IMAGES}/scene-stride2x1.png",
            ),
        ],
    ),
    (
        "Padding modes (gaussian 31, padding 40: the border shows what the padding holds)",
        [
            (
                mode,
                f"filter {BADGE} -k gaussian:size=31,sigma=8 -p 40 --pad-mode {mode} -o {IMAGES}/badge-pad-{mode}.png",
            )
            for mode in ("zeros", "reflect", "replicate", "circular")
        ],
    ),
    (
        "Correlation and convolution on an asymmetric kernel",
        [
            (
                "correlation (PyTorch's conv2d)",
                f"filter {SCENE} --gray -k '0,0,0;0,1,0;0,0,-1' --map offset -o {IMAGES}/scene-correlation.png",
            ),
            (
                "convolution (kernel rotated 180 degrees)",
                f"filter {SCENE} --gray -k '0,0,0;0,1,0;0,0,-1' --map offset --mode convolution -o {IMAGES}/scene-convolution.png",
            ),
        ],
    ),
    (
        "Pooling, 4x4 windows",
        [(op, f"pool {DUCK} --op {op} -k 4 -o {IMAGES}/duck-{op}pool4.png") for op in ("max", "mean", "min")],
    ),
    (
        "Transposed convolution (upsample x2)",
        [
            ("bilinear (default)", f"upsample {DUCK} -o {IMAGES}/duck-up-bilinear.png"),
            ("nearest", f"upsample {DUCK} -k nearest -o {IMAGES}/duck-up-nearest.png"),
            (
                "3x3 ones, stride 2: checkerboard",
                f"upsample {DUCK} -k '1,1,1;1,1,1;1,1,1' -s 2 -p 1 --map normalize -o {IMAGES}/duck-up-checkerboard.png",
            ),
        ],
    ),
]


def output_of(command: str) -> str:
    args = shlex.split(command)
    return args[args.index("-o") + 1]


def main() -> int:
    (ROOT / IMAGES).mkdir(parents=True, exist_ok=True)
    lines = [
        "# Gallery",
        "",
        "Made by `python docs/make_gallery.py`, which runs each command below with convcli.",
        "Inputs are the bundled sample images (`python tools/make_samples.py`).",
        "",
    ]
    for title, entries in SECTIONS:
        lines += [
            f"## {title}",
            "",
            "| " + " | ".join(c for c, _ in entries) + " |",
            "|" + "---|" * len(entries),
        ]
        pictures, commands = [], []
        for caption, command in entries:
            args = [sys.executable, "-m", "convcli"] + shlex.split(command) + ["--compress-level", "9"]
            result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
            if result.returncode != 0:
                print(f"convcli {command}\n{result.stderr}", file=sys.stderr)
                return 1
            print(result.stdout.strip())
            pictures.append(f"![{caption}](images/{Path(output_of(command)).name})")
            commands.append(f"`convcli {command}`")
        lines += ["| " + " | ".join(pictures) + " |", "| " + " | ".join(commands) + " |", ""]
    (ROOT / "docs" / "gallery.md").write_text("\n".join(lines))
    print("wrote docs/gallery.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
