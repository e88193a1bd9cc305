"""One huge image on a two-worker loopback Dask cluster against one process.

    python benchmarks/cluster.py [--size 20000] [--chunk 2048] [--workers 2]
                                 [--memory-limit 1GiB] [--keep DIR]

Needs the dask extra (``pip install 'convcli[dask]'``).  Steps:

1. Writes a seeded random SIZE x SIZE float32 ``.npy`` (1.6 GB at 20000), band by band.
2. One process: ``convcli filter huge.npy -k gaussian:size=7,sigma=1.5 -p same
   --pad-mode reflect --chunk CHUNK -o one.npy`` (the blocks on this process's threads).
3. A loopback cluster started here: ``dask scheduler`` and WORKERS ``dask worker``
   processes (one thread each, ``--memory-limit``, no nanny, all on 127.0.0.1), then the
   same command with ``--scheduler tcp://127.0.0.1:PORT -o cluster.npy``.  A worker plugin
   counts the blocks each worker wrote.
4. Prints wall times, the blocks per worker, and the peak resident memory (VmHWM) of every
   process: the convcli client of each run (read as it exits; ``ru_maxrss`` would carry the
   parent's peak across fork and exec), the scheduler and each worker (read from
   ``/proc/PID/status`` before they stop); checks that both outputs are identical.

Exits 1 when a worker wrote no block or the outputs differ.  On a machine whose cores are
shared, the cluster cannot beat one process by much: the workers split the same cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin
from huge import KERNEL, generate, peak_run


class CountBlocks(WorkerPlugin):
    """A worker plugin: how many blocks of convcli's outputs this worker wrote."""

    name = "convcli-count-blocks"

    def setup(self, worker):
        self.blocks = 0

    def transition(self, key, start, finish, **kwargs):
        name = key[0] if isinstance(key, tuple) else key
        if finish == "memory" and str(name).startswith("convcli-write-"):
            self.blocks += 1


def vmhwm(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM")).split()[1]) * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def same(a: Path, b: Path) -> bool:
    import numpy as np

    x, y = np.load(a, mmap_mode="r"), np.load(b, mmap_mode="r")
    return x.shape == y.shape and all(
        np.array_equal(x[first : first + 1024], y[first : first + 1024])
        for first in range(0, x.shape[0], 1024)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="1GiB", help="each worker's (dask worker --memory-limit)")
    parser.add_argument("--keep", metavar="DIR", help="Work in DIR and keep the files.")
    args = parser.parse_args()
    import distributed

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="convcli-cluster-"))
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "huge.npy"
    if not source.exists() or source.stat().st_size < 4 * args.size**2:
        generate(source, args.size)
    print(f"input: {args.size}x{args.size} float32, {source.stat().st_size / 2**30:.2f} GiB")
    mib = 2**20
    command = ["filter", str(source), "-k", KERNEL, "-p", "same", "--pad-mode", "reflect"]
    command += ["--chunk", str(args.chunk), "--max-pixels", str(args.size**2), "--overwrite", "-q"]

    code, one_wall, one_peak, last = peak_run(command + ["-o", str(folder / "one.npy")], folder)
    if code:
        print(f"the one-process run failed: {last}", file=sys.stderr)
        return 1
    print(
        f"one process ({os.cpu_count()} cores, its threads): {one_wall:.1f} s, peak {one_peak / mib:,.0f} MiB"
    )

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet
    )
    workers = [
        subprocess.Popen(
            [dask, "worker", address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1"]
            + ["--memory-limit", args.memory_limit, "--no-dashboard", "--local-directory", str(folder)],
            **quiet,
        )
        for _ in range(args.workers)
    ]
    try:
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(args.workers, timeout=60)
            client.register_plugin(CountBlocks())
            code, wall, peak, last = peak_run(
                command + ["-o", str(folder / "cluster.npy"), "--scheduler", address], folder
            )
            counts = client.run(lambda dask_worker: dask_worker.plugins[CountBlocks.name].blocks)
            pids = client.run(os.getpid)
        if code:
            print(f"the cluster run failed: {last}", file=sys.stderr)
            return 1
        print(
            f"{args.workers} workers on loopback (1 thread, --memory-limit {args.memory_limit} each): "
            f"{wall:.1f} s"
        )
        print(f"  convcli client: peak {peak / mib:,.0f} MiB")
        print(f"  scheduler: peak {vmhwm(scheduler.pid) / mib:,.0f} MiB")
        for worker, blocks in sorted(counts.items()):
            print(f"  worker {worker}: {blocks} blocks written, peak {vmhwm(pids[worker]) / mib:,.0f} MiB")
        identical = same(folder / "one.npy", folder / "cluster.npy")
        print(f"outputs identical: {identical}; wall time ratio cluster / one process: {wall / one_wall:.2f}")
        return 0 if identical and all(counts.values()) else 1
    finally:
        for process in workers + [scheduler]:
            process.terminate()
        for process in workers + [scheduler]:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
