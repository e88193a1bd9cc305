"""Every benchmark of the README, one after the other, with this Python:

    python benchmarks/all.py [--quick]

engine.py (the seven 4K workloads against OpenCV, PyTorch and scipy.ndimage),
whole_process.py (PNG in, PNG out against ImageMagick, libvips and plain
Python, wall time and peak memory), startup.py, batch.py (200 PNGs) and
huge.py (a 20000x20000 image in chunks; needs the dask extra).  Peers that are
not installed are reported as skipped; nothing is installed.  ``--quick``
runs fewer repetitions (3) and leaves out batch.py and huge.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions; no batch or huge run")
    args = parser.parse_args()
    repeat = "3" if args.quick else "5"
    runs = [
        ("engine", ["engine.py", "--repeat", repeat]),
        ("whole process", ["whole_process.py", "--runs", repeat]),
        ("start-up", ["startup.py"]),
    ]
    if not args.quick:
        runs.append(("batch", ["batch.py", "--images", "200", "--repeat", "3"]))
        if importlib.util.find_spec("dask") is not None:
            runs.append(("huge image in chunks", ["huge.py"]))
        else:
            print("huge image in chunks: skipped (the dask extra is not installed)\n")
    failed = []
    for title, command in runs:
        print(f"== {title}: python benchmarks/{' '.join(command)}", flush=True)
        code = subprocess.call([sys.executable, str(HERE / command[0]), *command[1:]])
        print(flush=True)
        if code:
            failed.append(title)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
