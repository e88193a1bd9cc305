"""Batch work and pipes, driven through the real command line (subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

CONVCLI = [sys.executable, "-m", "convcli"]


def run(args, cwd, stdin=None, timeout=120):
    return subprocess.run(
        CONVCLI + [str(a) for a in args], cwd=cwd, input=stdin, capture_output=True, timeout=timeout
    )


def make_images(folder: Path, count: int, size=(40, 30), seed=0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        path = folder / f"img{i:03d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def leftovers(folder: Path) -> list[str]:
    """Temporary files a write could leave behind."""
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp"))


def test_folder_to_folder_in_input_order_and_summary(tmp_path):
    make_images(tmp_path / "in", 5)
    result = run(["filter", "in", "-k", "sobel-vertical", "-o", "out", "-j", "2"], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines == [
        f"in/img{i:03d}.png: 40x30 -> 38x28, wrote out/img{i:03d}-sobel-vertical.png" for i in range(5)
    ]
    assert "done 5, skipped 0, failed 0 of 5" in result.stderr.decode()
    for i in range(5):
        assert Image.open(tmp_path / "out" / f"img{i:03d}-sobel-vertical.png").size == (38, 28)


def test_parallel_results_equal_serial(tmp_path):
    make_images(tmp_path / "in", 4, size=(64, 48))
    assert run(["filter", "in", "-k", "laplacian", "-o", "a", "-j", "1"], tmp_path).returncode == 0
    assert run(["filter", "in", "-k", "laplacian", "-o", "b", "-j", "2"], tmp_path).returncode == 0
    for name in sorted(os.listdir(tmp_path / "a")):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_skip_existing_then_overwrite(tmp_path):
    make_images(tmp_path / "in", 2)
    assert run(["pool", "in", "-o", "out"], tmp_path).returncode == 0
    target = tmp_path / "out" / "img000-maxpool2.png"
    target.write_bytes(b"sentinel")
    again = run(["pool", "in", "-o", "out"], tmp_path)
    assert again.returncode == 0
    assert "skipped" in again.stdout.decode()
    assert target.read_bytes() == b"sentinel"
    forced = run(["pool", "in", "-o", "out", "--overwrite"], tmp_path)
    assert forced.returncode == 0
    assert Image.open(target).size == (20, 15)


def test_glob_pattern_and_template(tmp_path):
    make_images(tmp_path / "in", 3)
    result = run(
        [
            "filter",
            "in/img00[01].png",
            "-k",
            "box",
            "--output-template",
            "res/{stem}-{op}-{kernel}.{ext}",
            "--json",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [r["output"] for r in records] == ["res/img000-filter-box.png", "res/img001-filter-box.png"]
    assert sorted(os.listdir(tmp_path / "res")) == ["img000-filter-box.png", "img001-filter-box.png"]


def test_recursive_mirrors_subfolders(tmp_path):
    make_images(tmp_path / "in" / "a", 1)
    make_images(tmp_path / "in" / "b", 1)
    flat = run(["filter", "in", "-o", "out"], tmp_path)
    assert flat.returncode == 2  # no images directly in 'in'
    result = run(["filter", "in", "-r", "-o", "out", "-k", "box"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "a" / "img000-box.png").exists()
    assert (tmp_path / "out" / "b" / "img000-box.png").exists()


def test_colliding_outputs_refused_before_any_work(tmp_path):
    make_images(tmp_path / "a", 1)
    make_images(tmp_path / "b", 1)
    result = run(["filter", "a/img000.png", "b/img000.png", "-o", "out"], tmp_path)
    assert result.returncode == 2
    err = result.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "both" in err[0]
    assert not (tmp_path / "out").exists()


def test_output_equal_to_input_refused(tmp_path):
    make_images(tmp_path, 1)
    before = (tmp_path / "img000.png").read_bytes()
    result = run(["filter", "img000.png", "-o", "img000.png"], tmp_path)
    assert result.returncode == 2
    assert "never overwrites an input" in result.stderr.decode()
    assert (tmp_path / "img000.png").read_bytes() == before
    template = run(["filter", "img000.png", "--output-template", "{stem}.png", "--overwrite"], tmp_path)
    assert template.returncode == 2
    assert (tmp_path / "img000.png").read_bytes() == before


def test_failed_image_does_not_stop_batch(tmp_path):
    make_images(tmp_path / "in", 2)
    (tmp_path / "in" / "broken.png").write_text("not an image")
    result = run(["filter", "in", "-o", "out", "--json", "-j", "2"], tmp_path)
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [r["input"] for r in records] == ["in/broken.png", "in/img000.png", "in/img001.png"]
    assert "error" in records[0] and "broken.png" in records[0]["error"]
    assert all("error" not in r for r in records[1:])
    assert sorted(os.listdir(tmp_path / "out")) == ["img000-gaussian.png", "img001-gaussian.png"]


def test_fail_fast_stops(tmp_path):
    make_images(tmp_path / "in", 3)
    (tmp_path / "in" / "aaa.png").write_text("not an image")
    result = run(["filter", "in", "-o", "out", "--fail-fast", "-j", "1"], tmp_path)
    assert result.returncode == 1
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_dry_run_touches_nothing(tmp_path):
    make_images(tmp_path / "in", 2)
    result = run(["upsample", "in", "-o", "out", "--dry-run"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == [
        "in/img000.png: 40x30 -> 80x60, would write out/img000-up-bilinear.png",
        "in/img001.png: 40x30 -> 80x60, would write out/img001-up-bilinear.png",
    ]
    assert not (tmp_path / "out").exists()


def test_pipe_chain_png(tmp_path):
    make_images(tmp_path, 1, size=(50, 40))
    source = (tmp_path / "img000.png").read_bytes()
    first = run(["filter", "-", "-k", "gaussian", "-p", "same", "-o", "-"], tmp_path, stdin=source)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(b"\x89PNG")
    assert "50x40 -> 50x40" in first.stderr.decode()  # the report moves to stderr
    second = run(["pool", "-", "--op", "max", "-o", "small.png"], tmp_path, stdin=first.stdout)
    assert second.returncode == 0, second.stderr
    assert Image.open(tmp_path / "small.png").size == (25, 20)


def test_pipe_npy_raw_floats(tmp_path):
    x = np.random.default_rng(1).normal(size=(9, 7)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    piped = run(
        ["filter", "-", "-k", "1,-1", "-o", "-", "--format", "npy"],
        tmp_path,
        stdin=(tmp_path / "x.npy").read_bytes(),
    )
    assert piped.returncode == 0, piped.stderr
    (tmp_path / "y.npy").write_bytes(piped.stdout)
    y = np.load(tmp_path / "y.npy")
    np.testing.assert_allclose(y, x[:, :-1] - x[:, 1:], atol=1e-6)


def test_stdout_refused_for_several_images(tmp_path):
    make_images(tmp_path / "in", 2)
    result = run(["filter", "in", "-o", "-"], tmp_path)
    assert result.returncode == 2
    assert result.stdout == b""


def _default_sigint():
    # A shell starts background jobs with SIGINT ignored, and Python keeps an ignored SIGINT
    # ignored; give convcli the default disposition a terminal's foreground job has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_leaves_no_partial_files_and_rerun_continues(tmp_path):
    make_images(tmp_path / "in", 24, size=(900, 700))
    proc = subprocess.Popen(
        CONVCLI + ["filter", "in", "-k", "gaussian:size=9", "-o", "out", "-j", "2", "--compress-level", "9"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )
    out = tmp_path / "out"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out.exists() and any(out.glob("*.png"))):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C does: the whole process group
    _, stderr = proc.communicate(timeout=60)
    finished = sorted(out.glob("*.png"))
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr.decode()
    assert leftovers(out) == []
    assert 0 < len(finished) < 24
    for path in finished:  # every file present is whole
        with Image.open(path) as image:
            image.load()
    rerun = run(["filter", "in", "-k", "gaussian:size=9", "-o", "out", "-j", "2"], tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.decode().count("skipped") == len(finished)
    assert len(list(out.glob("*.png"))) == 24
