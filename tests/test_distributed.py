"""Image sets on a Dask cluster: a LocalCluster of 2 worker processes on 127.0.0.1.

The cluster's outputs are byte-identical to the single-machine batch
(``runner.process``), per-image errors are reported without stopping the
batch, and a worker killed mid-batch loses and duplicates nothing.  Skipped as
a whole without the dask extra.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from PIL import Image  # noqa: E402

from convcli.errors import ConvcliError  # noqa: E402
from convcli.ops.catalog import Filter, Pool, Upsample  # noqa: E402
from convcli.run.cluster import MISSING_EXTRA, run_on_cluster  # noqa: E402
from convcli.run.plan import default_name  # noqa: E402
from convcli.run.process import process  # noqa: E402
from convcli.run.tasks import RunOptions, Task  # noqa: E402

# ------------------------------------------------------- operations as the CLI builds them


def filter_operation(spec="sobel-vertical", **overrides):
    from convcli.engine.kernels import parse_kernel

    kwargs = {"padding": "same", "pad_mode": "reflect", **overrides}
    return Filter(parse_kernel(spec), **kwargs)


def pool_operation():
    return Pool(2, ceil_mode=True, op="max")


def upsample_operation():
    from convcli.engine.kernels import parse_kernel

    return Upsample(parse_kernel("bilinear", defaults={"factor": "2x2"}), stride=2)


class SlowOnce(Filter):
    """The first image any worker computes stalls (so the test can kill that worker) after
    leaving a half-written temporary file behind, as a write cut short would; every later
    attempt, the retry included, runs normally."""

    def apply(self, data):
        self.stall_once()
        return super().apply(data)

    def bands(self, loaded, band_rows: int = 64):  # the streamed path of 8/16-bit filter outputs
        self.stall_once()
        return super().bands(loaded, band_rows)

    def stall_once(self):
        try:
            fd = os.open(self.report_dir / "stalled", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        self.leftover.write_bytes(b"half a PNG")
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        time.sleep(60)  # killed long before


class Broken(Filter):
    """An operation whose computation raises something other than a ConvcliError."""

    def apply(self, data):
        raise KeyError("kernel")

    def bands(self, loaded, band_rows: int = 64):
        raise KeyError("kernel")


class Collect:
    """A Reporter stand-in: records what run_on_cluster feeds it."""

    def __init__(self, interrupt_after=None):
        self.added = []
        self.interrupt_after = interrupt_after

    def add(self, outcome):
        self.added.append(outcome)
        if self.interrupt_after is not None and len(self.added) >= self.interrupt_after:
            raise KeyboardInterrupt


# ----------------------------------------------------------------- fixtures


def make_images(folder: Path, count=6, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        size = (int(rng.integers(24, 60)), int(rng.integers(24, 60)))
        mode = ("RGB", "L", "RGBA")[i % 3]
        channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
        pixels = rng.integers(0, 256, size=size + (channels,), dtype=np.uint8)
        path = folder / f"img{i:03d}.png"
        Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode).save(path)
        paths.append(str(path))
    return paths


def tasks_for(inputs, folder: Path, op, suffix=None):
    return [
        Task(i, path, str(folder / default_name(path, op, suffix)), make_folder=True)
        for i, path in enumerate(inputs)
    ]


def local_batch(op, tasks, opts):
    return [process(op, task, opts) for task in tasks]


def temporaries(folder: Path):
    return sorted(p.name for p in folder.rglob("*.tmp"))


# -------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    "make_op,suffix",
    [(filter_operation, None), (pool_operation, None), (upsample_operation, ".npy")],
    ids=["filter", "pool", "upsample-npy"],
)
def test_cluster_outputs_are_byte_identical(tmp_path, dask_address, make_op, suffix):
    op, opts = make_op(), RunOptions(compress_level=1)
    inputs = make_images(tmp_path / "in")
    expected = local_batch(op, tasks_for(inputs, tmp_path / "local", op, suffix), opts)
    tasks = tasks_for(inputs, tmp_path / "cluster", op, suffix)
    report, outcomes = Collect(), []
    returned = run_on_cluster(op, tasks, opts, dask_address, outcomes, report)
    assert returned == outcomes == report.added
    assert sorted(o.task.index for o in outcomes) == list(range(len(inputs)))
    for outcome in outcomes:
        local = expected[outcome.task.index]
        assert outcome.status == local.status == "done", outcome.line
        assert Path(outcome.task.output).read_bytes() == Path(local.task.output).read_bytes()
        assert {**outcome.record, "output": None} == {**local.record, "output": None}
    assert temporaries(tmp_path) == []


def test_relative_paths_resolve_on_workers_with_another_working_folder(tmp_path, dask_address, monkeypatch):
    make_images(tmp_path / "in", count=3)
    monkeypatch.chdir(tmp_path)  # the workers started elsewhere: their working folder differs
    op, opts = filter_operation("laplacian"), RunOptions()
    inputs = [f"in/img{i:03d}.png" for i in range(3)]
    expected = local_batch(op, tasks_for(inputs, Path("a"), op), opts)
    outcomes = []
    run_on_cluster(op, tasks_for(inputs, Path("b"), op), opts, dask_address, outcomes, Collect())
    for outcome in sorted(outcomes, key=lambda o: o.task.index):
        local = expected[outcome.task.index]
        assert outcome.record["input"] == local.record["input"] == outcome.task.input
        assert outcome.record["output"] == outcome.task.output == f"b/{Path(local.task.output).name}"
        assert outcome.line == local.line.replace("wrote a/", "wrote b/")
        assert Path(outcome.task.output).read_bytes() == Path(local.task.output).read_bytes()


def test_bad_images_fail_alone_and_bugs_become_failures(tmp_path, dask_address):
    inputs = make_images(tmp_path / "in", count=4)
    Path(inputs[1]).write_bytes(b"not a png at all")
    op, opts = pool_operation(), RunOptions()
    outcomes = []
    run_on_cluster(op, tasks_for(inputs, tmp_path / "out", op), opts, dask_address, outcomes, Collect())
    status = {o.task.index: o.status for o in outcomes}
    assert status == {0: "done", 1: "failed", 2: "done", 3: "done"}
    failed = next(o for o in outcomes if o.status == "failed")
    expected = process(op, Task(1, inputs[1], str(tmp_path / "x.png")), opts)
    assert failed.record["error"] == expected.record["error"]

    broken = Broken(np.ones((3, 3)))  # apply raises KeyError
    outcomes = []
    run_on_cluster(
        broken, tasks_for(inputs[:1], tmp_path / "out2", broken), opts, dask_address, outcomes, Collect()
    )
    assert [o.status for o in outcomes] == ["failed"]
    # process() turns the bug into the image's failure on the worker itself (one line, no retry)
    assert "unexpected error (KeyError" in outcomes[0].record["error"]
    assert outcomes[0].line.startswith(f"convcli: error: input {inputs[0]!r}:")


def test_fail_fast_stops_the_batch(tmp_path, dask_address):
    inputs = make_images(tmp_path / "in", count=6)
    for path in inputs:
        Path(path).write_bytes(b"broken")
    op, opts = pool_operation(), RunOptions(fail_fast=True)
    outcomes = []
    run_on_cluster(op, tasks_for(inputs, tmp_path / "out", op), opts, dask_address, outcomes, Collect())
    assert outcomes and all(o.status == "failed" for o in outcomes)
    assert len({o.task.index for o in outcomes}) == len(outcomes)


def test_killed_worker_loses_and_duplicates_nothing(tmp_path, dask_address):
    """One worker is SIGKILLed while it holds an image: the task is retried elsewhere."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    inputs = make_images(tmp_path / "in", count=6, seed=3)
    base = filter_operation("gaussian:size=5,sigma=1")
    op = SlowOnce(base.kernel_info, padding=base.padding, pad_mode=base.pad_mode)
    out = tmp_path / "out"
    tasks = tasks_for(inputs, out, op)
    op.report_dir = tmp_path
    op.leftover = out / f".{Path(tasks[0].output).name}.k1ll3d.tmp"
    expected = local_batch(base, tasks_for(inputs, tmp_path / "local", base), RunOptions())

    killed = []

    def killer():
        marker = tmp_path / "stalled"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if marker.exists() and marker.read_text():
                pid = int(marker.read_text())
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    outcomes, report = [], Collect()
    started = time.monotonic()
    run_on_cluster(op, tasks, RunOptions(), dask_address, outcomes, report)
    thread.join()
    assert killed, ("no worker stalled", [o.line for o in outcomes])
    assert time.monotonic() - started < 45
    assert sorted(o.task.index for o in outcomes) == list(range(6))  # each once
    assert [o.status for o in outcomes] == ["done"] * 6, [o.line for o in outcomes]
    assert sorted(os.listdir(out)) == sorted(Path(t.output).name for t in tasks)  # nothing else
    for outcome in outcomes:
        written = Path(outcome.task.output).read_bytes()
        assert written == Path(expected[outcome.task.index].task.output).read_bytes()  # whole
    assert temporaries(tmp_path) == []


def test_interrupt_cancels_pending_and_reraises(tmp_path, dask_address):
    inputs = make_images(tmp_path / "in", count=6)
    op = filter_operation()
    outcomes, report = [], Collect(interrupt_after=1)
    with pytest.raises(KeyboardInterrupt):
        run_on_cluster(
            op, tasks_for(inputs, tmp_path / "out", op), RunOptions(), dask_address, outcomes, report
        )
    assert len({o.task.index for o in outcomes}) == len(outcomes) >= 1
    with distributed.Client(dask_address, set_as_default=False) as client:
        deadline = time.monotonic() + 10
        while (
            client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        assert client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) == 0


def test_scheduler_local_starts_and_closes_its_own_cluster(tmp_path):
    inputs = make_images(tmp_path / "in", count=3)
    op = pool_operation()
    before = set(threading.enumerate())
    outcomes = []
    run_on_cluster(
        op, tasks_for(inputs, tmp_path / "out", op), RunOptions(jobs=2), "local", outcomes, Collect()
    )
    assert [o.status for o in outcomes] == ["done"] * 3
    expected = local_batch(op, tasks_for(inputs, tmp_path / "local", op), RunOptions())
    for outcome in outcomes:
        assert (
            Path(outcome.task.output).read_bytes()
            == Path(expected[outcome.task.index].task.output).read_bytes()
        )
    time.sleep(0.5)
    assert not [t for t in set(threading.enumerate()) - before if t.is_alive() and not t.daemon]


def test_unreachable_scheduler_is_a_clear_error(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    inputs = make_images(tmp_path / "in", count=1)
    op = pool_operation()
    started = time.monotonic()
    with pytest.raises(ConvcliError, match=r"cannot reach the Dask scheduler at 'tcp://127\.0\.0\.1:"):
        run_on_cluster(
            op,
            tasks_for(inputs, tmp_path / "out", op),
            RunOptions(),
            f"tcp://127.0.0.1:{port}",
            [],
            Collect(),
            timeout=1,
        )
    assert time.monotonic() - started < 8


def test_missing_extra_and_stdin_are_clear_errors(tmp_path, monkeypatch):
    op = pool_operation()
    with pytest.raises(ConvcliError, match="standard input cannot be sent to a cluster"):
        run_on_cluster(op, [Task(0, "-", str(tmp_path / "x.png"))], RunOptions(), "local", [], Collect())
    with pytest.raises(ConvcliError, match="standard output"):
        run_on_cluster(op, [Task(0, "a.png", "-")], RunOptions(), "local", [], Collect())
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ConvcliError) as info:
        run_on_cluster(op, [Task(0, "a.png", str(tmp_path / "x.png"))], RunOptions(), "local", [], Collect())
    assert str(info.value) == MISSING_EXTRA == "--scheduler needs the dask extra: pip install 'convcli[dask]'"


def test_nothing_pending_starts_nothing():
    assert run_on_cluster(pool_operation(), [], RunOptions(), "tcp://127.0.0.1:1", [], Collect()) == []
