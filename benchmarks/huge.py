"""Huge-image benchmark: a 20000x20000 float32 image filtered in chunks, within a memory bound.

    python benchmarks/huge.py [--size 20000] [--chunk N] [--bound-mib 512] [--keep DIR]

Needs the dask extra (``pip install 'convcli[dask]'``).  Steps:

1. Writes a seeded random SIZE x SIZE float32 ``.npy`` (1.6 GB at 20000) band
   by band (``open_memmap`` writes the header, then 256-row bands are written
   with plain file writes), so generating it stays within the bound too.
2. Runs the real command, ``convcli filter huge.npy -k gaussian:size=7,sigma=1.5
   -p same --pad-mode reflect --max-memory BOUND-64M -o huge-gaussian.npy`` (the limit
   picks the block; ``--chunk N`` forces one), as a child process and reads its peak
   resident memory (VmHWM, as it exits) and wall time.
3. Checks three 64-row bands of the output (top edge, middle, bottom edge)
   against ``filter2d`` run in memory on the rows those bands read (to 1e-5).

The bound: peak RSS of the child under BOUND_MIB (default 512 MiB), a third
of the 1.5 GiB input alone, and independent of the image height: what is held
is the blocks in flight on each thread and the two rows of input chunks that
``map_overlap`` keeps for their neighbours' halos, which the limit sizes.
Exits 1 when the bound or the check fails.

    python benchmarks/huge.py --limits 256M 512M 1G [--keep DIR]

The memory bound by output format: for each limit, the filter above from an RGB float32
``.npy`` 1.5 times the side of the largest image the limit admits in memory (so that it
goes in chunks by itself and picks its block from ``--max-memory``) to ``.npy``, TIFF and
``.zarr``; each child's peak is its VmHWM (read from ``/proc/self/status`` as it exits:
``ru_maxrss`` would report the parent's peak too, which Linux carries across fork and
exec).  A run passes at most the limit plus the interpreter (the peak of ``import
convcli.cli.app, numpy, dask.array``).  ``--wide H W`` adds an H x W float32 image to
TIFF at 512M (3000 x 100000: a row of blocks once took 1.9 GiB there).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KERNEL = "gaussian:size=7,sigma=1.5"
BAND = 256


def generate(path: Path, size: int, seed: int = 0, width: int | None = None) -> None:
    """A seeded random ``size`` x ``width`` (default square) float32 ``.npy``, band by band."""
    import numpy as np

    width = width or size
    header = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(size, width))
    offset = header.offset
    del header
    rng = np.random.default_rng(seed)
    with open(path, "r+b") as handle:
        handle.seek(offset)
        for first in range(0, size, BAND):
            rows = min(BAND, size - first)
            handle.write(rng.random((rows, width), dtype=np.float32).tobytes())


def operation():
    from convcli.engine.kernels import parse_kernel
    from convcli.ops.filter import Filter

    return Filter(parse_kernel(KERNEL), padding="same", pad_mode="reflect", value_map="clip")


def check(source: Path, target: Path, size: int) -> float:
    """Largest difference between chunked output bands and filter2d on the rows they read."""
    import numpy as np

    from convcli.engine.filtering import filter2d
    from convcli.engine.padding import pad_rows
    from convcli.geometry.sizes import resolve_padding

    op = operation()
    kernel = op.kernel
    top, _, left, right = resolve_padding("same", (size, size), kernel.shape, (1, 1), (1, 1))
    x = np.load(source, mmap_mode="r")
    y = np.load(target, mmap_mode="r")
    worst = 0.0
    for first in (0, size // 2 - 32, size - 64):
        last = first + 64
        index, _ = pad_rows(size, first - top, last - 1 + kernel.shape[0] - top, "reflect")
        band = filter2d(np.asarray(x[index]), kernel, padding=(0, 0, left, right), pad_mode="reflect")
        worst = max(worst, float(np.abs(band - y[first:last]).max()))
    return worst


# Runs convcli as ``python -m convcli``, writing its VmHWM to $PEAK_FILE as it exits.
PEAK_WRAPPER = (
    "import atexit, os, runpy, sys\n"
    "def _peak():\n"
    "    with open('/proc/self/status') as status, open(os.environ['PEAK_FILE'], 'w') as out:\n"
    "        out.write(next(line for line in status if line.startswith('VmHWM')).split()[1])\n"
    "atexit.register(_peak)\n"
    "sys.argv = ['convcli'] + sys.argv[1:]\n"
    "runpy.run_module('convcli', run_name='__main__', alter_sys=True)\n"
)


def peak_run(args: list[str], cwd: Path, stdout: bool = False):
    """``convcli ARGS`` as a child: (exit code, seconds, its own peak resident bytes, last
    stderr line), and its standard output last when ``stdout``."""
    with tempfile.NamedTemporaryFile(suffix=".peak") as peak:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", PEAK_WRAPPER, *args],
            cwd=cwd,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PEAK_FILE": peak.name},
        )
        seconds = time.monotonic() - started
        text = Path(peak.name).read_text().strip()
    lines = done.stderr.strip().splitlines()
    result = (done.returncode, seconds, int(text or 0) * 1024, lines[-1] if lines else "")
    return (*result, done.stdout) if stdout else result


def limits_main(limits: list[str], keep, wide=None) -> int:
    from memory import largest_side, parse_size, write_npy

    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="convcli-limits-"))
    folder.mkdir(parents=True, exist_ok=True)
    baseline_code = (
        PEAK_WRAPPER.replace("runpy.run_module('convcli', run_name='__main__', alter_sys=True)", "")
        + "import convcli.cli.app, numpy, dask.array\n"
    )
    with tempfile.NamedTemporaryFile(suffix=".peak") as peak:
        subprocess.run([sys.executable, "-c", baseline_code], env={**os.environ, "PEAK_FILE": peak.name})
        baseline = int(Path(peak.name).read_text()) * 1024
    mib = 2**20
    print(f"interpreter baseline (import convcli.cli.app, numpy, dask.array): {baseline / mib:.0f} MiB")
    print(f"{'limit':>6} {'output':<6} {'input':>16} {'peak':>8} {'limit+base':>10} {'time':>6}  ok")
    options = ["-k", KERNEL, "-p", "same", "--pad-mode", "reflect"]

    def measure(text: str, source: Path, suffix: str, shape: str, extra=()) -> bool:
        """One run at ``--max-memory TEXT``: its row of the table; whether it held."""
        target = folder / f"out{suffix}"
        args = ["filter", str(source), *options, "-o", str(target), "--overwrite", "--max-memory", text]
        code, seconds, peak, last = peak_run([*args, *extra], folder)
        bound = parse_size(text) + baseline
        ok = code == 0 and peak <= bound
        verdict = "yes" if ok else "NO: " + (last or f"exit {code}")
        print(
            f"{text:>6} {suffix:<6} {shape:>16} {peak / mib:6.0f} MiB {bound / mib:6.0f} MiB "
            f"{seconds:5.1f}s  {verdict}",
            flush=True,
        )
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
        return ok

    failures = 0
    for text in limits:
        side = largest_side(operation(), parse_size(text)) * 3 // 2 // 32 * 32
        source = folder / f"rgb-{side}.npy"
        if not source.exists():
            write_npy(source, side, seed=side)
        for suffix in (".npy", ".tif", ".zarr"):
            failures += not measure(text, source, suffix, f"{side}x{side}x3 f32")
        if not keep:
            source.unlink(missing_ok=True)
    if wide:  # a wide image to TIFF, where a row of blocks once took 1.9 GiB at 512M
        height, width = wide
        source = folder / f"wide-{height}x{width}.npy"
        if not source.exists():
            generate(source, height, width=width)
        failures += not measure(
            "512M", source, ".tif", f"{height}x{width} f32", ["--max-pixels", str(height * width)]
        )
        if not keep:
            source.unlink(missing_ok=True)
    print("all within the limit plus the interpreter" if not failures else f"{failures} run(s) over")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits", nargs="+", help="measure peaks by output format at these --max-memory")
    parser.add_argument(
        "--wide",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="with --limits: also an H x W image to TIFF at 512M",
    )
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--chunk", type=int, help="force this block side (default: the limit picks it)")
    parser.add_argument("--bound-mib", type=int, default=512)
    parser.add_argument("--keep", metavar="DIR", help="Work in DIR and keep the files.")
    args = parser.parse_args()
    if args.limits:
        return limits_main(args.limits, args.keep, tuple(args.wide) if args.wide else None)

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="convcli-huge-"))
    folder.mkdir(parents=True, exist_ok=True)
    source, target = folder / "huge.npy", folder / "huge-gaussian.npy"
    try:
        started = time.perf_counter()
        if not source.exists() or source.stat().st_size < 4 * args.size**2:
            generate(source, args.size)
        print(
            f"input: {args.size}x{args.size} float32, {source.stat().st_size / 2**30:.2f} GiB "
            f"(made in {time.perf_counter() - started:.1f} s)"
        )
        sizing = ["--chunk", str(args.chunk)] if args.chunk else ["--max-memory", f"{args.bound_mib - 64}M"]
        command = ["filter", str(source), "-k", KERNEL, "-p", "same", "--pad-mode", "reflect", *sizing]
        command += ["--max-pixels", str(args.size**2), "-o", str(target), "--overwrite", "--json"]
        code, wall, peak, last, output = peak_run(command, folder, stdout=True)
        if code != 0:
            print(f"the chunked run failed: {last}", file=sys.stderr)
            return 1
        record = json.loads(output)
        peak_mib = peak / 2**20
        worst = check(source, target, args.size)
        print(
            f"convcli filter huge.npy -k {KERNEL} -p same --pad-mode reflect {' '.join(sizing)} "
            f"-o huge-gaussian.npy: {record['chunked']['blocks']} blocks of "
            f"{record['chunked']['chunk']['height']}, {os.cpu_count()} threads"
        )
        print(f"wall time: {wall:.1f} s (the whole process)")
        print(
            f"peak RSS: {peak_mib:,.0f} MiB (bound {args.bound_mib:,} MiB; input "
            f"{source.stat().st_size / 2**20:,.0f} MiB, output {target.stat().st_size / 2**20:,.0f} MiB)"
        )
        print(f"check against filter2d on 3 bands: max |difference| = {worst:g}")
        ok = peak_mib <= args.bound_mib and worst <= 1e-5
        print("within the bound, exact" if ok else "FAILED")
        return 0 if ok else 1
    finally:
        if not args.keep:
            for path in (source, target):
                path.unlink(missing_ok=True)
            folder.rmdir()


if __name__ == "__main__":
    sys.exit(main())
