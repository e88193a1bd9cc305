"""``--scheduler`` and ``--chunk`` through the real command line (issue: scaling out).

Expected outputs come from the same command run without them (the in-memory,
single-machine path, itself checked against the oracles elsewhere), compared
byte for byte or value for value.  Skipped as a whole without the dask extra.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
pytest.importorskip("dask.array")

from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from convcli.cli.app import app  # noqa: E402

ENV = {**os.environ, "NO_COLOR": "1"}


def convcli(*args, cwd=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "convcli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=ENV if env is None else {**ENV, **env},
        timeout=300,
    )


def make_pngs(folder: Path, count=5):
    rng = np.random.default_rng(7)
    folder.mkdir()
    for i in range(count):
        pixels = rng.integers(0, 256, size=(20 + 3 * i, 31 - 2 * i, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"im{i}.png")


def images_computed(cluster) -> int:
    """How many convcli image tasks the cluster's workers have finished so far."""
    prefix = cluster.scheduler.task_prefixes.get("convcli")
    return 0 if prefix is None else prefix.state_counts["memory"]


@pytest.mark.parametrize(
    "command",
    [
        ["filter", "-k", "sobel-horizontal", "-p", "same", "--pad-mode", "reflect"],
        ["pool", "--op", "mean", "-k", "3", "-s", "2", "--ceil-mode"],
        ["upsample", "-k", "bilinear"],
    ],
)
def test_cluster_batch_writes_the_same_bytes_as_the_local_batch(
    tmp_path, dask_cluster, dask_address, command
):
    make_pngs(tmp_path / "in")
    before = images_computed(dask_cluster)
    local = convcli(*command, tmp_path / "in", "-o", tmp_path / "local", "-j", "2", "--json")
    assert local.returncode == 0, local.stderr
    remote = convcli(
        *command, tmp_path / "in", "-o", tmp_path / "remote", "--scheduler", dask_address, "--json"
    )
    assert remote.returncode == 0, remote.stderr
    assert images_computed(dask_cluster) == before + 5  # each image was a task on the cluster
    names = sorted(p.name for p in (tmp_path / "local").iterdir())
    assert len(names) == 5 and names == sorted(p.name for p in (tmp_path / "remote").iterdir())
    for name in names:
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "remote" / name).read_bytes()
    # the same JSON lines, in input order, apart from the output folder
    local_lines = [json.loads(line) for line in local.stdout.splitlines()]
    remote_lines = [json.loads(line) for line in remote.stdout.splitlines()]
    assert [r["input"] for r in remote_lines] == [r["input"] for r in local_lines]
    for a, b in zip(local_lines, remote_lines):
        assert {k: v for k, v in a.items() if k != "output"} == {k: v for k, v in b.items() if k != "output"}
    # a rerun skips every existing output
    again = convcli(*command, tmp_path / "in", "-o", tmp_path / "remote", "--scheduler", dask_address)
    assert again.returncode == 0 and again.stdout.count("skipped") == 5


def test_cluster_batch_reports_a_bad_image_and_goes_on(tmp_path, dask_address):
    make_pngs(tmp_path / "in", count=3)
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    result = convcli("pool", tmp_path / "in", "-o", tmp_path / "out", "--scheduler", dask_address, "--json")
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["input"]).name for r in records] == ["broken.png", "im0.png", "im1.png", "im2.png"]
    assert "error" in records[0] and all("error" not in r for r in records[1:])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "im0-maxpool2.png",
        "im1-maxpool2.png",
        "im2-maxpool2.png",
    ]
    people = convcli("pool", tmp_path / "in", "-o", tmp_path / "again", "--scheduler", dask_address)
    assert people.returncode == 1
    assert "convcli: error: input " in people.stderr and "broken.png" in people.stderr
    assert "done 3, skipped 0, failed 1 of 4" in people.stderr and "Traceback" not in people.stderr


def test_scheduler_local_and_unreachable(tmp_path):
    make_pngs(tmp_path / "in", count=2)
    result = convcli("filter", tmp_path / "in", "-o", tmp_path / "out", "--scheduler", "local", "-j", "2")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "out").iterdir())) == 2
    # Port 9 (discard) refuses at once; a short timeout keeps a slow refusal from costing 10 s.
    bad = convcli(
        "filter",
        tmp_path / "in",
        "-o",
        tmp_path / "bad",
        "--scheduler",
        "tcp://127.0.0.1:9",
        env={"CONVCLI_SCHEDULER_TIMEOUT": "1"},
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith(
        "convcli: error: --scheduler: cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"
    )
    assert "Traceback" not in bad.stderr and not (tmp_path / "bad").exists()


def test_scheduler_refuses_standard_input(tmp_path):
    png = tmp_path / "a.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(png)
    with open(png, "rb") as stdin:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "convcli",
                "pool",
                "-",
                "-o",
                str(tmp_path / "o.png"),
                "--scheduler",
                "tcp://127.0.0.1:9",
            ],
            stdin=stdin,
            capture_output=True,
            text=True,
            env=ENV,
            timeout=60,
        )
    assert result.returncode == 2
    assert "standard input cannot be sent to a cluster" in result.stderr


# ------------------------------------------------------------------ --chunk


def rgb_npy(path, shape=(97, 83, 3), seed=3):
    data = np.random.default_rng(seed).random(shape, dtype=np.float32)
    np.save(path, data)
    return data


@pytest.mark.parametrize(
    "command",
    [
        ["filter", "-k", "gaussian:size=5,sigma=1", "-p", "same", "--pad-mode", "circular"],
        ["filter", "-k", "1,2,0;0,-1,3", "-s", "2x3", "-p", "2x1", "-d", "2", "--pad-mode", "reflect"],
        ["pool", "--op", "min", "-k", "3x2", "-p", "1", "--ceil-mode"],
        ["pool", "--op", "mean", "-k", "3", "-s", "2", "-p", "1", "--no-count-include-pad"],
        ["upsample", "-k", "bilinear", "-s", "2"],
        ["upsample", "-k", "1,2;3,4", "-s", "3", "--output-padding", "1"],
    ],
)
def test_chunk_equals_in_memory(tmp_path, command):
    rgb_npy(tmp_path / "in.npy")
    memory = convcli(*command, tmp_path / "in.npy", "-o", tmp_path / "mem.npy", "--json")
    chunked = convcli(
        *command, tmp_path / "in.npy", "-o", tmp_path / "chunked.npy", "--chunk", "17x23", "--json"
    )
    assert memory.returncode == 0 and chunked.returncode == 0, chunked.stderr
    expected, got = np.load(tmp_path / "mem.npy"), np.load(tmp_path / "chunked.npy")
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    a, b = json.loads(memory.stdout), json.loads(chunked.stdout)
    assert b["chunked"]["chunk"] == {"width": 17, "height": 23}
    assert b["output_size"] == a["output_size"] and b["channels"] == a["channels"]


def test_over_max_memory_goes_in_chunks_and_the_limit_picks_the_block(tmp_path):
    # The memory model counts the run's fixed 16 MiB, so the image and the limit are larger
    # than they were (300x260 under 2M): in memory this image needs about 80 MiB, in blocks
    # of a few hundred pixels under 64 MiB.
    rgb_npy(tmp_path / "in.npy", shape=(900, 800, 3))
    result = convcli(
        "filter",
        tmp_path / "in.npy",
        "-k",
        "sobel-vertical",
        "-o",
        tmp_path / "out.npy",
        "--max-memory",
        "64M",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["chunked"]["blocks"] > 1
    convcli("filter", tmp_path / "in.npy", "-k", "sobel-vertical", "-o", tmp_path / "mem.npy")
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), np.load(tmp_path / "mem.npy"), atol=1e-5)
    # to a format only the in-memory path writes: refused, saying how to go in chunks
    png = convcli(
        "filter",
        tmp_path / "in.npy",
        "-k",
        "sobel-vertical",
        "-o",
        tmp_path / "out.png",
        "--max-memory",
        "64M",
    )
    assert png.returncode == 2 and not (tmp_path / "out.png").exists()
    assert "(--max-memory); write .npy, .tif or .zarr to process it in chunks" in png.stderr


def test_zarr_folder_is_one_image_not_a_folder_of_inputs(tmp_path):
    pytest.importorskip("zarr")
    data = rgb_npy(tmp_path / "in.npy", shape=(40, 50, 2))
    made = convcli(
        "filter", tmp_path / "in.npy", "-k", "box:size=3", "-o", tmp_path / "in.zarr", "--chunk", "16"
    )
    assert made.returncode == 0, made.stderr
    result = convcli("pool", tmp_path / "in.zarr", "-o", tmp_path / "pooled.npy")
    assert result.returncode == 0, result.stderr
    assert "in.zarr: 48x38 -> 24x19, wrote" in result.stdout  # the box filter had no padding
    from scipy.ndimage import correlate

    boxed = (
        np.stack(
            [correlate(data[:, :, c].astype(np.float64), np.ones((3, 3)), mode="constant") for c in range(2)],
            axis=-1,
        )[1:-1, 1:-1]
        / 9
    )  # box:size=3 is ones/9, no padding
    expected = boxed.reshape(19, 2, 24, 2, 2).max(axis=(1, 3))
    np.testing.assert_allclose(np.load(tmp_path / "pooled.npy"), expected, rtol=1e-5, atol=1e-6)


def test_chunked_tiff_bomb_is_refused_by_max_pixels(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "wide.tif", np.zeros((300, 400), np.uint8), compression="zlib", tile=(64, 64))
    result = convcli(
        "filter", tmp_path / "wide.tif", "-o", tmp_path / "out.tif", "--chunk", "64", "--max-pixels", "100000"
    )
    assert result.returncode == 2
    assert "400x300 is 120,000 pixels, over the limit of 100,000 (--max-pixels)" in result.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "wide.tif"]


def test_chunk_option_errors(tmp_path, monkeypatch):
    runner = CliRunner()
    rgb_npy(tmp_path / "in.npy", shape=(8, 8, 1))
    bad = runner.invoke(
        app, ["filter", str(tmp_path / "in.npy"), "-o", str(tmp_path / "o.npy"), "--chunk", "0"]
    )
    assert bad.exit_code == 2 and "--chunk" in bad.output
    import convcli.run.chunked

    monkeypatch.setattr(convcli.run.chunked, "dask_installed", lambda: False)
    missing = runner.invoke(
        app, ["filter", str(tmp_path / "in.npy"), "-o", str(tmp_path / "o.npy"), "--chunk", "64"]
    )
    assert missing.exit_code == 2
    assert "--chunk needs the dask extra: pip install 'convcli[dask]'" in missing.output
    assert not (tmp_path / "o.npy").exists()
