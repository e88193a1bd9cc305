"""Peak memory against ``--max-memory``: what convcli admits stays within the limit.

    python benchmarks/memory.py [--limits 256M 512M 1G] [--keep DIR]

For each limit, six real commands run as child processes, each on a generated image as
large as the limit admits, and the script reads each child's peak resident memory
(``ru_maxrss`` from ``os.wait4``):

* in memory, PNG in and PNG out: ``filter -k sobel-vertical``, ``pool --op max -k 2`` and
  ``upsample`` (bilinear, 2x), each on a random RGB PNG whose side is the largest (by 32
  pixels) that the operation's ``memory_estimate`` fits under the limit;
* in chunks, ``.npy`` in and out (needs the dask extra): ``filter -k gaussian:size=7,sigma=1.5
  -p same --pad-mode reflect``, ``pool`` and ``upsample`` on a random float32 RGB ``.npy``
  with 1.5 times the side (2.25 times the pixels) of the largest image the limit admits in
  memory, so that the run goes in chunks by itself and picks its block from the limit.

The interpreter's own share is measured the same way: the peak of
``python -c 'import convcli.cli.app, numpy, PIL.Image'``.  A run passes when its peak is at
most the limit plus that baseline; the script prints every figure and exits 1 if one fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BAND = 256


def parse_size(text: str) -> int:
    from convcli.io.images import parse_bytes

    return parse_bytes(text)


def peak_of(command: list[str], cwd: Path) -> tuple[int, float, int, str]:
    """Run ``command``; return (exit code, seconds, peak resident bytes, last stderr line)."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = err.read().decode(errors="replace").strip().splitlines()
    return child.returncode, time.monotonic() - started, usage.ru_maxrss * 1024, lines[-1] if lines else ""


def operations():
    from convcli.engine.kernels import parse_kernel
    from convcli.ops.filter import Filter
    from convcli.ops.pool import Pool
    from convcli.ops.upsample import Upsample

    return {
        "filter": (Filter(parse_kernel("sobel-vertical")), ["-k", "sobel-vertical"]),
        "pool": (Pool(2), ["--op", "max", "-k", "2"]),
        "upsample": (Upsample(parse_kernel("bilinear", defaults={"factor": "2"}), stride=2), []),
    }


CHUNKED = {
    "filter": ["-k", "gaussian:size=7,sigma=1.5", "-p", "same", "--pad-mode", "reflect"],
    "pool": ["--op", "max", "-k", "2"],
    "upsample": [],
}


def largest_side(op, limit: int, channels: int = 3) -> int:
    """The largest square side (a multiple of 32) whose in-memory estimate fits ``limit``."""
    side = 32
    while op.memory_estimate((side + 32, side + 32), channels) <= limit:
        side += 32
    return side


def write_png(path: Path, side: int, seed: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path, compress_level=1)


def write_npy(path: Path, side: int, seed: int) -> None:
    import numpy as np

    header = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(side, side, 3))
    offset = header.offset
    del header
    rng = np.random.default_rng(seed)
    with open(path, "r+b") as handle:
        handle.seek(offset)
        for first in range(0, side, BAND):
            rows = min(BAND, side - first)
            handle.write(rng.random((rows, side, 3), dtype=np.float32).tobytes())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limits", nargs="+", default=["256M", "512M", "1G"])
    parser.add_argument("--keep", type=Path, help="write the images here (default: a temporary folder)")
    args = parser.parse_args()
    import importlib.util

    chunked = importlib.util.find_spec("dask") is not None
    folder = args.keep or Path(tempfile.mkdtemp(prefix="convcli-memory-"))
    folder.mkdir(parents=True, exist_ok=True)
    python = [sys.executable]
    code, _, baseline, _ = peak_of(python + ["-c", "import convcli.cli.app, numpy, PIL.Image"], folder)
    assert code == 0
    mib = 2**20
    print(f"interpreter baseline (import convcli.cli.app, numpy, PIL.Image): {baseline / mib:.0f} MiB")
    header = ("limit", "run", "image", "estimate", "peak", "limit+base", "time")
    print("{:>6} {:<28} {:>16} {:>9} {:>8} {:>10} {:>6}  ok".format(*header))
    failures = 0
    for text in args.limits:
        limit = parse_size(text)
        for name, (op, options) in operations().items():
            runs = []
            side = largest_side(op, limit)
            png = folder / f"{name}-{side}.png"
            if not png.exists():
                write_png(png, side, seed=side)
            estimate = op.memory_estimate((side, side), 3)
            runs.append(
                ("in memory", png, f"{side}x{side} RGB", options, estimate, folder / f"out-{name}.png")
            )
            if chunked:
                big = side * 3 // 2 // 32 * 32
                npy = folder / f"{name}-{big}.npy"
                if not npy.exists():
                    write_npy(npy, big, seed=big)
                runs.append(
                    ("in chunks", npy, f"{big}x{big}x3 f32", CHUNKED[name], None, folder / f"out-{name}.npy")
                )
            for how, source, shape, extra, estimate, out in runs:
                command = python + ["-m", "convcli", name, str(source), *extra, "-o", str(out)]
                code, seconds, peak, last = peak_of(command + ["--max-memory", text], folder)
                bound = limit + baseline
                ok = code == 0 and peak <= bound
                failures += not ok
                shown = f"{estimate / mib:.0f} MiB" if estimate else "-"
                verdict = "yes" if ok else "NO: " + (last or f"exit {code}")
                print(
                    f"{text:>6} {name + ' ' + how:<28} {shape:>16} {shown:>9} {peak / mib:6.0f} MiB "
                    f"{bound / mib:6.0f} MiB {seconds:5.1f}s  {verdict}"
                )
                out.unlink(missing_ok=True)
    print("all within the limit plus the interpreter" if not failures else f"{failures} run(s) over")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
