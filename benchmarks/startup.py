"""Start-up benchmark: whole-process time of `convcli shape`, `convcli --help` and a filter
of a tiny PNG against a bare `python -c pass` (and `import numpy`), on this machine, in this run.

    python benchmarks/startup.py [--runs 21]

Target (issue 4): `convcli shape 224 conv:k=7,s=2,p=3 pool:k=3,s=2,p=1` within
150 ms of `python -c pass`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

# Processes run as installed ones do, with their bytecode cached (see benchmarks/whole_process.py).
ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def median_ms(command: list[str], runs: int) -> float:
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)  # warm the caches
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=ENV)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def tiny_png(width: int, height: int) -> bytes:
    """An RGB gradient as PNG bytes, from the standard library alone."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(
        b"\0" + bytes((x * 4 + y) % 256 for x in range(width) for _ in range(3)) for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    python = [sys.executable]
    script = Path(sys.executable).parent / "convcli"
    convcli = (
        [str(script)]
        if script.exists()
        else ([shutil.which("convcli")] if shutil.which("convcli") else python + ["-m", "convcli"])
    )
    shape = ["shape", "224", "conv:k=7,s=2,p=3", "pool:k=3,s=2,p=1"]
    cases = [
        ("python -c pass", python + ["-c", "pass"]),
        ("convcli shape 224 conv:k=7,s=2,p=3 pool:k=3,s=2,p=1", convcli + shape),
        ("python -m convcli shape ...", python + ["-m", "convcli"] + shape),
        ("convcli --help", convcli + ["--help"]),
        ("convcli filter --help", convcli + ["filter", "--help"]),
    ]
    folder = tempfile.mkdtemp(prefix="convcli-startup-")
    tiny = Path(folder) / "tiny.png"
    tiny.write_bytes(tiny_png(64, 48))
    filter_args = [
        "filter",
        str(tiny),
        "-k",
        "sobel-vertical",
        "-p",
        "same",
        "-o",
        str(Path(folder) / "o.png"),
    ]
    cases += [
        ("python -c 'import numpy'", python + ["-c", "import numpy"]),
        (
            "convcli filter tiny.png -k sobel-vertical -p same (64x48)",
            convcli + filter_args + ["--overwrite", "-q"],
        ),
    ]
    try:
        results = [(name, median_ms(command, args.runs)) for name, command in cases]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    base = results[0][1]
    print(f"median of {args.runs} runs each, in ms")
    print(f"{'command':<55} {'ms':>7} {'over python':>12}")
    for name, ms in results:
        print(f"{name:<55} {ms:>7.1f} {ms - base:>+11.1f}")
    print("target: convcli shape within 150 ms of python -c pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
