""".zarr stores named by URL (fsspec): memory:// in the test process, file:// through a real
subprocess; no network.  Inputs and outputs, default names, existing outputs, an input named as
the output however its URL is spelled, a missing file system package, a failed write.

Skipped as a whole without the dask extra and zarr.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("dask.array")
fsspec = pytest.importorskip("fsspec")
zarr = pytest.importorskip("zarr")

from convcli.cli.app import app  # noqa: E402
from convcli.io.stores import local_path, url_key  # noqa: E402

try:
    from oracles import filter_reference
except ImportError:  # collected from the repository root as a package
    from tests.oracles import filter_reference

KERNEL = "1,2;-1,3"
K = np.array([[1, 2], [-1, 3]], dtype=np.float64)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def bucket():
    """A fresh memory:// prefix holding x.zarr (30 x 40 float32, chunks of 8), removed after."""
    name = f"memory://t{uuid.uuid4().hex[:8]}"
    x = np.random.default_rng(0).standard_normal((30, 40)).astype(np.float32)
    zarr.create_array(f"{name}/in/x.zarr", data=x, chunks=(8, 8))
    yield name, x
    fs = fsspec.filesystem("memory")
    fs.rm(name.replace("memory://", "/"), recursive=True)


def listing(url):
    fs = fsspec.filesystem("memory")
    return sorted(p.rsplit("/", 1)[-1] for p in fs.ls(url.replace("memory://", "/"), detail=False))


def read(url):
    return zarr.open(url, mode="r")[:]


def test_memory_store_in_and_out(bucket):
    name, x = bucket
    result = invoke("filter", f"{name}/in/x.zarr", "-k", KERNEL, "-o", f"{name}/out/y.zarr", "--chunk", "16")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{name}/in/x.zarr: 40x30 -> 39x29, wrote {name}/out/y.zarr in 6 blocks"
    np.testing.assert_allclose(read(f"{name}/out/y.zarr"), filter_reference(x, K), rtol=1e-5, atol=1e-5)
    assert listing(f"{name}/out") == ["y.zarr"]  # no temporary store left beside it


def test_default_output_name_beside_the_input_store(bucket):
    name, _ = bucket
    result = invoke("pool", f"{name}/in/x.zarr", "-k", "2", "--json")
    assert result.exit_code == 0, result.output
    outputs = [n for n in listing(f"{name}/in") if n != "x.zarr"]
    assert len(outputs) == 1 and outputs[0].startswith("x-") and outputs[0].endswith(".zarr")
    assert read(f"{name}/in/{outputs[0]}").shape == (15, 20)


def test_prefix_output_skips_an_existing_store_unless_overwrite(bucket):
    name, x = bucket
    zarr.create_array(f"{name}/in/w.zarr", data=x[:10], chunks=(8, 8))
    # --jobs 1: memory:// lives in this process only
    args = ("pool", f"{name}/in/x.zarr", f"{name}/in/w.zarr", "-k", "2", "-o", f"{name}/out/", "--jobs", "1")
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    stores = listing(f"{name}/out")
    assert len(stores) == 2 and all(s.endswith(".zarr") for s in stores)
    again = invoke(*args)
    assert again.exit_code == 0 and again.output.count(": skipped, ") == 2, again.output
    replaced = invoke(*args, "--overwrite")
    assert replaced.exit_code == 0 and "done 2, skipped 0" in replaced.output
    assert listing(f"{name}/out") == stores


@pytest.mark.parametrize(
    "spelling",
    ["{name}/in/x.zarr", "{name}//in/./x.zarr", "{name}/in/../in/x.zarr", "memory:///{bare}/in/x.zarr"],
)
def test_an_input_store_is_never_an_output(bucket, spelling):
    name, x = bucket
    output = spelling.format(name=name, bare=name.removeprefix("memory://"))
    result = invoke("filter", f"{name}/in/x.zarr", "-k", KERNEL, "-o", output, "--chunk", "16")
    assert result.exit_code == 2
    assert "is an input file" in result.output and "never overwrites an input" in result.output
    np.testing.assert_array_equal(read(f"{name}/in/x.zarr"), x)


def test_url_keys():
    assert url_key("s3a://b/x.zarr") == url_key("s3://b//x.zarr/")
    assert url_key("gcs://b/x.zarr") == url_key("gs://b/a/../x.zarr")
    assert url_key("s3://b/x.zarr") != url_key("gs://b/x.zarr")
    assert local_path("file:///tmp/a%20b.zarr") == "/tmp/a b.zarr"


@pytest.mark.parametrize("url", ["memory://t/x.png", "memory://t/x.npy", "memory://t/x.tif"])
def test_urls_name_zarr_stores_only(tmp_path, url):
    np.save(tmp_path / "x.npy", np.zeros((4, 4), np.float32))
    for args in (
        ["filter", url, "-k", KERNEL, "-o", tmp_path / "y.npy"],
        ["filter", tmp_path / "x.npy", "-k", KERNEL, "-o", url],
    ):
        result = invoke(*args)
        assert result.exit_code == 2
        assert result.output.count("\n") == 1
        assert (
            "URLs name .zarr stores only; PNG, TIFF and .npy files are read and written as local paths"
            in result.output
        )


@pytest.mark.parametrize("scheme,package", [("s3", "s3fs"), ("gs", "gcsfs")])
def test_missing_file_system_package_is_one_line(tmp_path, scheme, package):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    np.save(tmp_path / "x.npy", np.zeros((4, 4), np.float32))
    for args in (
        ["filter", f"{scheme}://bucket/x.zarr", "-k", KERNEL, "-o", tmp_path / "y.npy"],
        ["filter", tmp_path / "x.npy", "-k", KERNEL, "-o", f"{scheme}://bucket/y.zarr"],
    ):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1
        assert f"{scheme}:// URLs need the {package} package: pip install {package}" in result.output
    assert not (tmp_path / "y.npy").exists()


def test_failed_write_leaves_no_temporary_store_and_the_old_one_whole(bucket):
    name, x = bucket
    bad = x.copy()
    bad[25, 3] = np.nan  # refused when its block is read, after other blocks were written
    zarr.create_array(f"{name}/in/bad.zarr", data=bad, chunks=(8, 8))
    zarr.create_array(f"{name}/out/y.zarr", data=np.ones((2, 2), np.float32))
    result = invoke("filter", f"{name}/in/bad.zarr", "-k", KERNEL, "-o", f"{name}/out/y.zarr", "--chunk", "8")
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "holds NaN or infinite values" in result.output
    assert listing(f"{name}/out") == ["y.zarr"]
    np.testing.assert_array_equal(read(f"{name}/out/y.zarr"), np.ones((2, 2)))


def test_dry_run_reads_a_store_header(bucket):
    name, _ = bucket
    result = invoke("filter", f"{name}/in/x.zarr", "-k", KERNEL, "-o", f"{name}/out/y.zarr", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{name}/in/x.zarr: 40x30 -> 39x29, would write {name}/out/y.zarr"
    assert listing(name) == ["in"]


def test_file_urls_in_a_real_process(tmp_path):
    x = np.random.default_rng(1).standard_normal((21, 18, 2)).astype(np.float32)
    zarr.create_array(str(tmp_path / "x.zarr"), data=x, chunks=(8, 8, 2))
    url_in, url_out = f"file://{tmp_path}/x.zarr", f"file://{tmp_path}/y.zarr"
    command = [sys.executable, "-m", "convcli", "filter", url_in, "-k", KERNEL, "-o", url_out, "--chunk", "8"]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    assert done.returncode == 0, done.stderr
    got = zarr.open(str(tmp_path / "y.zarr"), mode="r")[:]
    expected = np.stack([filter_reference(x[:, :, c], K) for c in range(2)], axis=-1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert sorted(os.listdir(tmp_path)) == ["x.zarr", "y.zarr"]
    # The input, named as a local path and as a file:// URL, is refused as the output.
    for output in (str(tmp_path / "x.zarr"), url_in, f"file://{tmp_path}/./x.zarr"):
        command[-3] = output
        refused = subprocess.run(command, capture_output=True, text=True)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.count("\n") == 1 and "never overwrites an input" in refused.stderr


def test_interrupted_store_write_removes_its_temporary_store(bucket):
    """Ctrl-C (or SIGTERM, raised the same way) while blocks are written: the temporary store
    goes, an existing store stays as it was."""
    from convcli.io.stores import atomic_store

    name, x = bucket
    zarr.create_array(f"{name}/out/y.zarr", data=np.ones((2, 2), np.float32))
    with pytest.raises(KeyboardInterrupt), atomic_store(f"{name}/out/y.zarr") as tmp:
        assert tmp.rsplit("/", 1)[1].startswith(".y.zarr.") and tmp.endswith(".tmp")
        zarr.create_array(tmp, data=x, chunks=(8, 8))
        assert len(listing(f"{name}/out")) == 2
        raise KeyboardInterrupt
    assert listing(f"{name}/out") == ["y.zarr"]
    np.testing.assert_array_equal(read(f"{name}/out/y.zarr"), np.ones((2, 2)))
    with atomic_store(f"{name}/out/y.zarr") as tmp:  # and a whole write replaces it
        zarr.create_array(tmp, data=x, chunks=(8, 8))
    assert listing(f"{name}/out") == ["y.zarr"]
    np.testing.assert_array_equal(read(f"{name}/out/y.zarr"), x)


def test_small_image_to_a_store_needs_no_chunk_option(bucket, tmp_path):
    """A .zarr output is written by the chunked path alone: taken without --chunk."""
    name, _ = bucket
    x = np.random.default_rng(2).standard_normal((9, 7)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = invoke("filter", tmp_path / "x.npy", "-k", KERNEL, "-o", f"{name}/out/small.zarr")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(read(f"{name}/out/small.zarr"), filter_reference(x, K), rtol=1e-5, atol=1e-5)
