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
        "Padding modes (the scene shrunk 5x, then the identity kernel with padding 30: the output is the padded input)",
        [
            (
                mode,
                f"pool {SCENE} --op mean -k 5 + filter -k identity -p 30 --pad-mode {mode} -o {IMAGES}/scene-pad-{mode}.png",
            )
            for mode in ("zeros", "reflect", "replicate", "circular")
        ],
    ),
    (
        "Alpha is carried over when the size is kept",
        [
            (
                "gaussian 9, -p same",
                f"filter {BADGE} -k gaussian:size=9,sigma=2 -p same --pad-mode replicate -o {IMAGES}/badge-blur.png",
            ),
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


# Animations (--animate): one per row, the matrices small enough to read every number.
M5 = "0 1 2 3 4; 5 6 7 8 9; 10 11 12 13 14; 15 16 17 18 19; 20 21 22 23 24"
M4 = "0 1 2 3; 4 5 6 7; 8 9 10 11; 12 13 14 15"
M6 = "3 0 1 2 7 4; 1 5 8 9 3 0; 2 7 2 5 1 6; 0 1 3 1 7 2; 4 2 1 6 2 8; 5 3 0 4 1 9"
ANIMATIONS = [
    (
        "Stride 3 on 5x5: the second jump leaves column 2 and row 2 unread",
        f"filter --matrix '{M5}' -k '0,1;2,3' -s 3 --animate {IMAGES}/anim-stride3.gif",
    ),
    (
        "Padding 2 (reflect) and dilation 2: only the dilated taps are read",
        f"filter --matrix '{M4}' -k '1,0,-1;1,0,-1;1,0,-1' -p 2 --pad-mode reflect -d 2 --animate {IMAGES}/anim-pad-dilation.gif",
    ),
    (
        "Transposed convolution, stride 2, padding 1: each input value scattered through the kernel, the sums accumulating, the padding cropped off",
        f"upsample --matrix '1 2 3; 4 5 6; 7 8 9' -k '1,1,1;1,1,1;1,1,1' -s 2 -p 1 --animate {IMAGES}/anim-upsample-stride2.gif",
    ),
    (
        "Max pool 3x3, stride 2, ceil_mode: the last windows hang past the input",
        f"pool --matrix '{M6}' -k 3 -s 2 --ceil-mode --animate {IMAGES}/anim-maxpool-ceil.gif",
    ),
]

# Receptive fields drawn (convcli shape IMAGE LAYERS... --draw): skipped while this convcli's
# shape has no --draw.
FIELDS = [
    (
        "Five 3x3 convolutions of stride 2: one unit's 63x63 field, its neighbours' centres 32 pixels apart (the jump)",
        f"shape {DUCK} '5*conv:k=3,s=2' --draw {IMAGES}/rf-duck.png",
    ),
    (
        "A ResNet stem (7x7/2 conv, 3x3/2 max pool), four 3x3 convs and a 3x3/2 conv, the unit at 0,0: its field reaches into the padding (gray)",
        f"shape {SCENE} conv:k=7,s=2,p=3 pool:k=3,s=2,p=1 '4*conv:k=3,p=1' conv:k=3,s=2,p=1 --draw {IMAGES}/rf-scene.png --at 0,0",
    ),
]


def output_of(command: str) -> str:
    """The file a command writes: its -o, --animate or --draw argument."""
    args = shlex.split(command)
    for option in ("-o", "--animate", "--draw"):
        if option in args:
            return args[args.index(option) + 1]
    raise ValueError(f"no output in {command!r}")


def run(command: str) -> bool:
    """Run ``convcli COMMAND`` (PNG outputs at the best compression); False, said, if it fails."""
    args = [sys.executable, "-m", "convcli", *shlex.split(command)]
    if "-o" in args:
        args += ["--compress-level", "9"]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"convcli {command}\n{result.stderr}", file=sys.stderr)
        return False
    print(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else f"wrote {output_of(command)}")
    return True


def shape_draws() -> bool:
    """Whether this convcli's shape command draws receptive fields (--draw)."""
    args = [sys.executable, "-m", "convcli", "shape", "--help"]
    return "--draw" in subprocess.run(args, cwd=ROOT, capture_output=True, text=True).stdout


def rows_section(title: str, entries, intro: str) -> list[str] | None:
    """Run each command; a section of one picture a row, or None if a command failed."""
    lines = [f"## {title}", "", intro, ""]
    for caption, command in entries:
        if not run(command):
            return None
        lines += [f"### {caption}", "", f"![{caption}](images/{Path(output_of(command)).name})", ""]
        lines += [f"`convcli {command}`", ""]
    return lines


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
            if not run(command):
                return 1
            pictures.append(f"![{caption}](images/{Path(output_of(command)).name})")
            commands.append(f"`convcli {command}`")
        lines += ["| " + " | ".join(pictures) + " |", "| " + " | ".join(commands) + " |", ""]
    animations = rows_section(
        "The sliding window, animated (--animate)",
        ANIMATIONS,
        "Each frame: the input (padding tinted blue, the current window orange), the kernel, the "
        "output filling in, and the arithmetic of the step.",
    )
    if animations is None:
        return 1
    lines += animations
    if shape_draws():
        fields = rows_section(
            "Receptive fields (shape --draw)",
            FIELDS,
            "The input pixels one output unit sees, and the centres of its neighbours' fields.",
        )
        if fields is None:
            return 1
        lines += fields
    else:
        print(
            "skipping the receptive-field pictures: this convcli's shape has no --draw yet", file=sys.stderr
        )
    (ROOT / "docs" / "gallery.md").write_text("\n".join(lines))
    print("wrote docs/gallery.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
