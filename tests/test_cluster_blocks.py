"""One huge image across a Dask cluster (issue #15): its blocks spread over every worker.

Expected values come from the in-memory operation (``op.apply``, itself checked against
the oracles elsewhere); which worker ran which block comes from the scheduler's task
stream.  The cluster is the conftest's LocalCluster of two worker processes on 127.0.0.1,
or real ``dask scheduler`` and ``dask worker`` processes started here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
pytest.importorskip("dask.array")

from convcli.engine.kernels import parse_kernel  # noqa: E402
from convcli.errors import ConvcliError  # noqa: E402
from convcli.ops.catalog import Filter, Pool, Upsample  # noqa: E402
from convcli.run.chunked import SchedulerLost, process_chunked  # noqa: E402
from convcli.run.cluster import run_on_cluster  # noqa: E402
from convcli.run.tasks import RunOptions, Task  # noqa: E402


def operations():
    return {
        "filter": Filter(parse_kernel("gaussian:size=5"), padding="same", pad_mode="reflect", stride=(2, 1)),
        "pool": Pool(3, stride=2, padding=1, ceil_mode=True, op="mean"),
        "upsample": Upsample(parse_kernel("bilinear"), stride=2, padding=1, output_padding=1),
    }


def leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def client(dask_cluster):
    with distributed.Client(dask_cluster, set_as_default=False) as client:
        client.wait_for_workers(2)
        yield client


@pytest.mark.parametrize("name", ["filter", "pool", "upsample"])
@pytest.mark.parametrize("suffix", [".npy", ".zarr"])
def test_one_image_runs_on_both_workers_and_equals_in_memory(tmp_path, client, name, suffix):
    if suffix == ".zarr":
        pytest.importorskip("zarr")
    op = operations()[name]
    image = np.random.default_rng(3).standard_normal((150, 130, 2)).astype(np.float32)
    np.save(tmp_path / "in.npy", image)
    task = Task(0, str(tmp_path / "in.npy"), str(tmp_path / f"out{suffix}"))
    with distributed.get_task_stream(client=client) as stream:
        outcome = process_chunked(op, task, RunOptions(chunk=(32, 32)), client=client)
    assert outcome.status == "done", outcome.line
    written = [t for t in stream.data if str(t["key"]).startswith("('convcli-write-")]
    per_worker = {}
    for t in written:
        per_worker.setdefault(t["worker"], set()).add(str(t["key"]))
    assert len(per_worker) == 2, per_worker  # both workers wrote blocks of this one image
    assert len(set.union(*per_worker.values())) == outcome.record["chunked"]["blocks"]
    if suffix == ".npy":
        got = np.load(tmp_path / "out.npy")
    else:
        import zarr

        got = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...]
    np.testing.assert_array_equal(got, op.apply(image))
    assert leftovers(tmp_path) == []


class SlowFilter(Filter):
    """A filter whose blocks take a while: time to lose a worker in the middle."""

    def chunked(self, image, chunk=None):
        from convcli.ops import blocks

        x = blocks.as_source(image, chunk)
        size = blocks.source_size(x)
        plans = [blocks.window_plan(size[a], size[a], 1, 1, blocks.chunk_size(x, chunk)[a]) for a in (0, 1)]
        return blocks.windowed(x, plans, (0, 0, 0, 0), "zeros", 0.0, _slow_block, (self.kernel,))


def _slow_block(piece, row, col, kernel):
    time.sleep(0.1)
    return piece * kernel[0, 0]


def test_a_worker_killed_during_a_zarr_output_loses_nothing(tmp_path, client, dask_cluster):
    import cloudpickle

    zarr = pytest.importorskip("zarr")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    op = SlowFilter(np.full((1, 1), 2.0, np.float32))
    image = np.random.default_rng(4).standard_normal((128, 128, 1)).astype(np.float32)
    np.save(tmp_path / "in.npy", image)
    task = Task(0, str(tmp_path / "in.npy"), str(tmp_path / "out.zarr"))
    victim = sorted(client.scheduler_info()["workers"])[0]

    def kill_when_writing():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):
                time.sleep(0.5)
                client.run(os._exit, 1, workers=[victim], on_error="ignore")
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_writing)
    killer.start()
    outcome = process_chunked(op, task, RunOptions(chunk=(16, 16)), client=client)
    killer.join()
    assert outcome.status == "done", outcome.line
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...], 2 * image)
    assert leftovers(tmp_path) == []
    client.wait_for_workers(2, timeout=30)  # the nanny brings it back for the next tests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Collect:
    def __init__(self):
        self.added = []

    def add(self, outcome):
        self.added.append(outcome)


DASK = os.path.join(os.path.dirname(sys.executable), "dask")


class Stall(Pool):
    """Images 41 rows high stall on the worker (until it is stopped)."""

    streams_bands = False  # every image through apply

    def apply(self, data):
        if data.shape[0] == 41:
            time.sleep(30)
        return super().apply(data)


@pytest.mark.slow
def test_losing_the_scheduler_is_one_line_and_written_images_are_reported(tmp_path):
    from PIL import Image

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    # The scheduler and worker unpickle this module's Stall by reference: they import it.
    here = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    scheduler = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet
    )
    worker = subprocess.Popen(
        [DASK, "worker", address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"], **quiet
    )
    try:
        rng = np.random.default_rng(5)
        folder = tmp_path / "in"
        folder.mkdir()
        tasks = []
        for i in range(5):
            rows = 40 if i < 2 else 41  # the first two are quick, the rest stall
            Image.fromarray(rng.integers(0, 256, (rows, 30), dtype=np.uint8)).save(folder / f"im{i}.png")
            tasks.append(Task(i, str(folder / f"im{i}.png"), str(tmp_path / f"out{i}.png")))
        with distributed.Client(address, timeout=30) as probe:
            probe.wait_for_workers(1, timeout=30)
        report = Collect()

        def kill_scheduler():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(report.added) < 2:
                time.sleep(0.05)
            scheduler.terminate()

        killer = threading.Thread(target=kill_scheduler)
        killer.start()
        with pytest.raises(ConvcliError) as caught:
            run_on_cluster(Stall(2), tasks, RunOptions(jobs=1), address, [], report)
        killer.join()
        worker.kill()  # its stalled images are never written
        worker.wait(timeout=30)
        assert isinstance(caught.value, SchedulerLost)
        message = str(caught.value)
        assert "\n" not in message and f"127.0.0.1:{port}" in message
        reported = {o.task.index: o.status for o in report.added}
        assert reported[0] == reported[1] == "done"
        assert "failed" not in reported.values()
        # every image whose output exists was reported as written, and only those
        written = {t.index for t in tasks if Path(t.output).exists()}
        assert written == set(reported)
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    finally:
        for process in (worker, scheduler):
            process.terminate()
        for process in (worker, scheduler):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


class FakeClient:
    """What _show_dashboard asks of a client: the scheduler's services and the link."""

    def __init__(self, link):
        self.dashboard_link = link

    def scheduler_info(self):
        return {"services": {"dashboard": 8787}}


def test_dashboard_link_goes_to_stderr_only_when_served_and_not_quiet(capsys):
    import http.server

    from convcli.run.cluster import _show_dashboard

    class Status(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/status" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Status)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        _show_dashboard(FakeClient(base + "/status"), RunOptions())
        assert capsys.readouterr() == ("", f"Dask dashboard: {base}/status\n")
        for opts in (RunOptions(quiet=True), RunOptions(json=True)):
            _show_dashboard(FakeClient(base + "/status"), opts)
        _show_dashboard(FakeClient(base + "/missing"), RunOptions())  # no bokeh: 404, no link
        assert capsys.readouterr() == ("", "")
    finally:
        server.shutdown()


def test_block_bar_only_on_a_terminal_and_not_quiet(monkeypatch):
    from convcli.run import chunked

    class Tty:
        def isatty(self):
            return True

    monkeypatch.setattr(chunked.sys, "stderr", Tty())
    assert chunked.show_block_bar(RunOptions())
    assert not chunked.show_block_bar(RunOptions(quiet=True))
    assert not chunked.show_block_bar(RunOptions(json=True))
    monkeypatch.undo()
    assert not chunked.show_block_bar(RunOptions())  # pytest's stderr is no terminal
    with chunked.block_bar(False, 4, "x") as advance:
        assert advance is None
