"""Signals from a hostile user, a scheduler or ``timeout``: SIGTERM, SIGHUP, Ctrl-C twice, Ctrl-C
while the worker pool starts.  Each test runs the real command line in its own process group
(``start_new_session``), waits for a sign of progress rather than a fixed time, and sends the
signal as a terminal (the whole group) or ``kill PID`` (the process alone) would.

Whatever the moment: no temporary file or folder is left, the exit code is 128 + the signal's
number, stderr holds no traceback, and the outputs present are whole and exactly the ones reported.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CONVCLI = [sys.executable, "-m", "convcli"]
WROTE = re.compile(r": \S+ -> \S+, wrote (\S+)")

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")


def _default_sigint():
    # A shell starts background jobs with SIGINT ignored, and Python keeps an ignored SIGINT
    # ignored; give convcli the default disposition a terminal's foreground job has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args, cwd) -> subprocess.Popen:
    return subprocess.Popen(
        CONVCLI + [str(a) for a in args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )


def finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Standard output and error once the process ends; the whole group is killed (and the test
    fails) if it has not ended within ``timeout`` seconds."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"still running {timeout} s after the signal; stderr: {err.decode()[-2000:]}")
    return out.decode(), err.decode()


def wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never saw {what}")
        time.sleep(0.01)


def make_images(folder: Path, count: int, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(14)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:03d}.png", compress_level=1)


def hidden(folder: Path) -> list[str]:
    """Temporary files and folders (``.NAME.XXXXXXXX.tmp``) and any other hidden entry."""
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp"))


def check_outputs_reported(out_folder: Path, stdout: str, stderr: str, total: int) -> list[Path]:
    """Every output present is whole and reported, and the summary counts exactly those."""
    present = sorted(out_folder.glob("*.png"))
    for path in present:
        with Image.open(path) as image:
            image.load()
    reported = sorted(Path(m) for m in WROTE.findall(stdout))
    assert [p.name for p in reported] == [p.name for p in present], (stdout, stderr)
    summary = [line for line in stderr.splitlines() if line.startswith("interrupted: ")]
    assert summary == [stderr.strip()], stderr  # the summary is the one line on stderr
    assert f"done {len(present)}, skipped 0, failed 0 of {total}" in summary[0]
    return present


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum,to_group",
    [(signal.SIGTERM, True), (signal.SIGHUP, False)],
    ids=["SIGTERM-to-the-group", "SIGHUP-to-convcli-alone"],
)
def test_sigterm_and_sighup_mid_batch_report_what_was_written_and_leave_no_temporary(
    tmp_path, signum, to_group
):
    make_images(tmp_path / "in", 16, (900, 700))
    args = ["filter", "in", "-k", "gaussian:size=9", "-o", "out", "-j", "2", "--compress-level", "9"]
    proc = start(args, tmp_path)
    out = tmp_path / "out"
    wait_for(lambda: out.exists() and any(out.glob("*.png")), "a first output")
    if to_group:  # kill -TERM -PGID, a job scheduler, timeout
        os.killpg(proc.pid, signum)
    else:  # kill -HUP PID: convcli stops its workers itself
        proc.send_signal(signum)
    stdout, stderr = finish(proc, timeout=20)
    assert proc.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    assert hidden(out) == []
    present = check_outputs_reported(out, stdout, stderr, 16)
    assert 0 < len(present) < 16


def _blocks_written(folder: Path) -> bool:
    """Whether blocks are in the hidden temporary output: data in the ``.npy`` file (made sparse,
    at its full size, at the start), or chunk files in the ``.zarr`` folder."""
    for entry in folder.iterdir():
        if not entry.name.startswith("."):
            continue
        try:
            if entry.is_dir():
                if any(
                    p.is_file() and not p.name.startswith(".z") and p.name != "zarr.json"
                    for p in entry.rglob("*")
                ):
                    return True
            elif entry.stat().st_blocks * 512 > 64 * 1024:
                return True
        except OSError:  # renamed or removed meanwhile
            continue
    return False


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".npy", ".zarr"])
def test_sigterm_during_a_chunked_run_leaves_no_hidden_temporary(tmp_path, suffix):
    pytest.importorskip("dask")
    if suffix == ".zarr":
        pytest.importorskip("zarr")
    rng = np.random.default_rng(3)
    np.save(tmp_path / "big.npy", rng.random((2400, 2400), dtype=np.float32))
    out = tmp_path / "out"
    out.mkdir()
    args = ["filter", "big.npy", "-k", "gaussian:size=9", "--chunk", "256", "-o", f"out/big{suffix}"]
    proc = start(args, tmp_path)
    wait_for(lambda: _blocks_written(out), "blocks written into the hidden temporary output")
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = finish(proc, timeout=20)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert sorted(os.listdir(out)) == []  # neither the temporary nor a partial output


@pytest.mark.slow
def test_a_second_ctrl_c_stops_the_images_in_hand_at_once(tmp_path):
    # Large, slow images (a wide box filter, zlib's slowest level): the first Ctrl-C lets the
    # ones in hand finish, and they would take seconds; the second stops them now.
    make_images(tmp_path / "in", 4, (1200, 900))
    args = ["filter", "in", "-k", "box:size=31", "-o", "out", "-j", "2", "--compress-level", "9"]
    proc = start(args, tmp_path)
    out = tmp_path / "out"
    wait_for(lambda: out.exists() and any(p.name.endswith(".tmp") for p in out.iterdir()), "a write")
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    second = time.monotonic()
    stdout, stderr = finish(proc, timeout=15)
    assert time.monotonic() - second < 5, stderr
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert hidden(out) == []
    check_outputs_reported(out, stdout, stderr, 4)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _fork_server_importing(pid: int) -> bool:
    """Whether convcli's fork server has started and is importing numpy (its preload)."""
    for child in _children(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
            maps = Path(f"/proc/{child}/maps").read_text() if b"forkserver" in command else ""
        except OSError:
            continue
        if "_multiarray_umath" in maps:
            return True
    return False


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads /proc to see the pool start")
def test_ctrl_c_while_the_pool_starts_exits_130_with_one_line(tmp_path):
    make_images(tmp_path / "in", 8, (200, 150))
    proc = start(["filter", "in", "-k", "gaussian:size=9", "-o", "out", "-j", "2"], tmp_path)
    wait_for(lambda: _fork_server_importing(proc.pid), "the fork server starting")
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C does: the fork server and workers get it too
    stdout, stderr = finish(proc, timeout=20)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    out = tmp_path / "out"
    if out.exists():
        assert hidden(out) == []
        check_outputs_reported(out, stdout, stderr, 8)
