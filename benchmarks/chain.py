"""Chain benchmark: a three-stage chain in one command against the same stages through pipes.

    python benchmarks/chain.py [--runs 5] [--size 3840x2160]

On a WIDTHxHEIGHT RGB PNG (shapes and mild noise, seeded) it runs the chain of the README,
Gaussian 5x5 (same padding), Sobel vertical, 2x2 max pooling, to a PNG, three ways:

* one command: ``convcli filter IN -k gaussian:size=5,sigma=1 -p same + filter -k sobel-vertical
  + pool --op max -k 2 -o OUT``;
* a pipe of PNG: each stage a process, ``-o -`` into the next one's ``-`` (Sobel's negative
  responses are mapped to 8-bit pixels between stages, so this result differs: it is here for
  the time, as a user would have done it before chains);
* a pipe of ``.npy``: the same with ``--format npy`` between the stages (float32, the same
  values as the chain).

It reports the median wall time of ``--runs`` runs and the peak memory: for a pipe, the sum of
the stages' peak resident sizes (they run at the same time), each measured with
``/usr/bin/time -f %M``.  Installs nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = [
    ["filter", "-k", "gaussian:size=5,sigma=1", "-p", "same"],
    ["filter", "-k", "sobel-vertical"],
    ["pool", "--op", "max", "-k", "2"],
]


def make_image(path: Path, width: int, height: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // width), (yy * 255 // height), ((xx + yy) % 256)], axis=2)
    disk = (xx - width // 2) ** 2 + (yy - height // 2) ** 2 < (min(width, height) // 3) ** 2
    base[disk] = 255 - base[disk]
    noisy = np.clip(base + rng.integers(-8, 9, size=base.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(path)


def convcli() -> list[str]:
    script = Path(sys.executable).parent / "convcli"
    return [str(script)] if script.exists() else [sys.executable, "-m", "convcli"]


def timed(commands: list[list[str]], folder: Path) -> tuple[float, int]:
    """Run ``commands`` as one pipe (each one's stdout into the next's stdin); returns the wall
    time and the sum of their peak resident sizes in bytes."""
    reports = [folder / f"rss{i}.txt" for i in range(len(commands))]
    start = time.perf_counter()
    processes, previous = [], None
    for command, report in zip(commands, reports):
        wrapped = ["/usr/bin/time", "-f", "%M", "-o", str(report), *command]
        last = command is commands[-1]
        process = subprocess.Popen(
            wrapped, stdin=previous, stdout=subprocess.DEVNULL if last else subprocess.PIPE
        )
        if previous is not None:
            previous.close()  # the next stage owns it now
        previous = process.stdout
        processes.append(process)
    codes = [process.wait() for process in processes]
    seconds = time.perf_counter() - start
    if any(codes):
        raise SystemExit(f"a stage failed ({codes}): {commands}")
    peak = sum(int(report.read_text().split()[-1]) * 1024 for report in reports)
    return seconds, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", default="3840x2160")
    args = parser.parse_args()
    if not shutil.which("/usr/bin/time"):
        print("needs /usr/bin/time (GNU time) for the peak memory of each process")
        return 1
    width, height = (int(v) for v in args.size.lower().split("x"))
    tool = convcli()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = folder / "in.png"
        make_image(source, width, height)
        chain = [tool + STAGES[0][:1] + [str(source)] + STAGES[0][1:]]
        for stage in STAGES[1:]:
            chain[0] += ["+", *stage]
        chain[0] += ["-o", str(folder / "chain.png"), "-q"]

        def pipe(fmt: str, out: str) -> list[list[str]]:
            commands = []
            for index, stage in enumerate(STAGES):
                source_arg = str(source) if index == 0 else "-"
                target = (
                    ["-o", str(folder / out)] if index == len(STAGES) - 1 else ["-o", "-", "--format", fmt]
                )
                commands.append(tool + stage[:1] + [source_arg] + stage[1:] + target + ["-q"])
            return commands

        cases = [
            ("one command (chain)", chain),
            ("pipe of PNG", pipe("png", "png.png")),
            ("pipe of .npy", pipe("npy", "npy.png")),
        ]
        results = []
        for name, commands in cases:
            timed(commands, folder)  # warm the caches
            runs = [timed(commands, folder) for _ in range(args.runs)]
            results.append(
                (name, statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
            )
    print(
        f"{width}x{height} RGB PNG -> Gaussian 5x5 + Sobel + max pool 2x2 -> PNG; median of {args.runs} runs"
    )
    print(f"{'how':<22} {'seconds':>8} {'peak MiB':>9} {'time / chain':>13}")
    base = results[0][1]
    for name, seconds, peak in results:
        print(f"{name:<22} {seconds:>8.2f} {peak / 2**20:>9.0f} {seconds / base:>12.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
