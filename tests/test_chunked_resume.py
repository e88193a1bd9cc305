"""A ``.zarr`` output killed midway resumes from the blocks it wrote (issue #15).

The first run is a child process killed outright (``os._exit`` after half the blocks, as
SIGKILL or the out-of-memory killer would leave it); the second, here, must compute only
the other half and give the in-memory result.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")

from convcli.engine.kernels import parse_kernel  # noqa: E402
from convcli.io.bigfiles import ThreadedBlocks, open_source, write_zarr  # noqa: E402
from convcli.ops.catalog import Filter  # noqa: E402
from convcli.run.chunked import resume_key  # noqa: E402

KILLED_RUN = """
import os, sys
import numpy as np
from convcli.engine.kernels import parse_kernel
from convcli.io.bigfiles import ThreadedBlocks, open_source, write_zarr
from convcli.ops.catalog import Filter
from convcli.run.chunked import resume_key

class HalfThenDie(ThreadedBlocks):
    def write(self, array, skip=()):
        half = set(list(np.ndindex(*array.numblocks))[len(list(np.ndindex(*array.numblocks))) // 2:])
        super().write(array, skip=half)
        os._exit(9)  # killed outright: no cleanup runs

src, out = sys.argv[1], sys.argv[2]
op = Filter(parse_kernel("gaussian:size=5"), padding="same", pad_mode="reflect")
source = open_source(src, chunk=16)
write_zarr(out, op.chunked(source, 16), HalfThenDie(2), resume_key=resume_key(op, src, 16, False))
"""


def operation():
    return Filter(parse_kernel("gaussian:size=5"), padding="same", pad_mode="reflect")


def test_a_killed_zarr_output_resumes_from_the_blocks_it_wrote(tmp_path):
    image = np.random.default_rng(6).standard_normal((64, 48, 2)).astype(np.float32)
    src, out = tmp_path / "in.npy", tmp_path / "out.zarr"
    np.save(src, image)
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(src), str(out)], capture_output=True)
    assert killed.returncode == 9, killed.stderr
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".out.zarr.")]
    assert len(left) == 1 and left[0].is_dir()  # what the killed run leaves, kept for this one

    op = operation()
    computed = []
    source = open_source(src, chunk=16)
    result = op.chunked(source, 16)
    total = result.numblocks[0] * result.numblocks[1]
    write_zarr(
        out, result, ThreadedBlocks(2, lambda: computed.append(1)), resume_key=resume_key(op, src, 16, False)
    )
    assert len(computed) == total - total // 2  # only the blocks the killed run had not written
    np.testing.assert_array_equal(zarr.open_array(str(out), mode="r")[...], op.apply(image))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "out.zarr"]
    assert not (out / ".convcli-done").exists()


def test_another_operation_does_not_resume_a_killed_output(tmp_path):
    image = np.random.default_rng(7).standard_normal((40, 40, 1)).astype(np.float32)
    src, out = tmp_path / "in.npy", tmp_path / "out.zarr"
    np.save(src, image)
    subprocess.run([sys.executable, "-c", KILLED_RUN, str(src), str(out)], capture_output=True)
    other = Filter(parse_kernel("gaussian:size=3"), padding="same", pad_mode="reflect")
    assert resume_key(other, src, 16, False) != resume_key(operation(), src, 16, False)
    computed = []
    result = other.chunked(open_source(src, chunk=16), 16)
    write_zarr(
        out,
        result,
        ThreadedBlocks(2, lambda: computed.append(1)),
        resume_key=resume_key(other, src, 16, False),
    )
    assert len(computed) == result.numblocks[0] * result.numblocks[1]
    np.testing.assert_array_equal(zarr.open_array(str(out), mode="r")[...], other.apply(image)[:, :, 0])
