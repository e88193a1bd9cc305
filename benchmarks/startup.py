"""Start-up benchmark: whole-process time of `convcli shape` and `convcli --help`
against a bare `python -c pass`, on this machine, in this run.

    python benchmarks/startup.py [--runs 21]

Target (issue 4): `convcli shape 224 conv:k=7,s=2,p=3 pool:k=3,s=2,p=1` within
150 ms of `python -c pass`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def median_ms(command: list[str], runs: int) -> float:
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # warm the caches
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


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
    results = [(name, median_ms(command, args.runs)) for name, command in cases]
    base = results[0][1]
    print(f"median of {args.runs} runs each, in ms")
    print(f"{'command':<55} {'ms':>7} {'over python':>12}")
    for name, ms in results:
        print(f"{name:<55} {ms:>7.1f} {ms - base:>+11.1f}")
    print("target: convcli shape within 150 ms of python -c pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
