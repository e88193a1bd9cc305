"""Chunked (dask.array) filter, pool and upsample equal the in-memory library, and huge files.

Skipped as a whole without the dask extra.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from convcli.engine.filtering import filter2d  # noqa: E402
from convcli.engine.pooling import pool2d  # noqa: E402
from convcli.engine.transposed import conv_transpose2d  # noqa: E402
from convcli.errors import ConvcliError  # noqa: E402
from convcli.io.bigfiles import open_source  # noqa: E402
from convcli.ops.catalog import Filter, Pool, Upsample  # noqa: E402
from convcli.ops.chunked import conv_transpose2d_chunked, filter2d_chunked, pool2d_chunked  # noqa: E402
from convcli.run.chunked import process_chunked, process_huge, wants_chunked  # noqa: E402
from convcli.run.process import process  # noqa: E402
from convcli.run.tasks import RunOptions, Task  # noqa: E402

TOL = {"rtol": 1e-5, "atol": 1e-5}
PAD_MODES = ("zeros", "reflect", "replicate", "circular")


@pytest.fixture(autouse=True)
def synchronous():
    with dask.config.set(scheduler="synchronous"):  # tiny blocks: threads only add overhead
        yield


def image(shape=(19, 23, 2), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def kernel(shape=(3, 4), seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ------------------------------------------------------------------ filter

# (stride, dilation, padding, chunk): odd chunks, halos wider than a chunk, uneven sides
FILTER_CASES = [
    (1, 1, "same", 5),
    (2, 1, "same", 7),
    (3, 2, (1, 2), 4),
    ((2, 1), (1, 2), (2, 0, 3, 1), (3, 11)),
    (1, 3, "valid", 5),
    ((1, 3), 1, (2, 2, 0, 1), 6),
]


@pytest.mark.parametrize("pad_mode", PAD_MODES)
@pytest.mark.parametrize("stride,dilation,padding,chunk", FILTER_CASES)
def test_filter_chunked_equals_in_memory(pad_mode, stride, dilation, padding, chunk):
    x, k = image(), kernel()
    expected = filter2d(x, k, stride=stride, padding=padding, dilation=dilation, pad_mode=pad_mode)
    lazy = filter2d_chunked(
        da.from_array(x, chunks=(5, 6, 1)),
        k,
        stride=stride,
        padding=padding,
        dilation=dilation,
        pad_mode=pad_mode,
        chunk=chunk,
    )
    assert lazy.shape == expected.shape
    np.testing.assert_allclose(lazy.compute(), expected, **TOL)


@pytest.mark.parametrize("pad_mode", PAD_MODES)
def test_filter_chunked_two_dimensional_and_convolution(pad_mode):
    x, k = image((17, 13)), kernel((5, 2))
    expected = filter2d(x, k, padding="same", pad_mode=pad_mode, mode="convolution")
    got = filter2d_chunked(x, k, padding="same", pad_mode=pad_mode, mode="convolution", chunk=(4, 5))
    assert got.ndim == 2
    np.testing.assert_allclose(got.compute(), expected, **TOL)


def test_filter_chunked_is_bit_exact():
    """Blocks make the same float operations as the whole image: not just close, equal."""
    x, k = image((31, 29, 3)), kernel((7, 7))
    for mode in PAD_MODES:
        expected = filter2d(x, k, stride=2, padding="same", dilation=2, pad_mode=mode)
        got = filter2d_chunked(x, k, stride=2, padding="same", dilation=2, pad_mode=mode, chunk=5)
        np.testing.assert_array_equal(got.compute(), expected)


def test_filter_chunked_refuses_what_pytorch_refuses():
    x = image((4, 5))
    with pytest.raises(ConvcliError, match="reflect padding must be smaller"):
        filter2d_chunked(x, np.ones((3, 3)), padding=4, pad_mode="reflect")
    with pytest.raises(ConvcliError, match="kernel spans"):
        filter2d_chunked(x, np.ones((6, 6)))


# -------------------------------------------------------------------- pool

# (size, stride, padding, dilation, ceil_mode, chunk)
POOL_CASES = [
    (2, None, 0, 1, False, 5),
    (3, 2, 1, 1, True, 7),
    (3, 1, 1, 1, False, 4),
    ((2, 3), (1, 2), (1, 1), 1, True, (3, 5)),
    (3, 2, 0, 2, False, 5),
    (2, 3, 1, 2, True, 6),
]


@pytest.mark.parametrize(
    "op,size,stride,padding,dilation,ceil_mode,chunk",
    [(op, *case) for op in ("max", "min", "mean") for case in POOL_CASES if op != "mean" or case[3] == 1],
)  # mean pooling has no dilation
def test_pool_chunked_equals_in_memory(op, size, stride, padding, dilation, ceil_mode, chunk):
    x = image()
    for include in (True, False) if op == "mean" else (True,):
        expected = pool2d(
            x,
            size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            ceil_mode=ceil_mode,
            op=op,
            count_include_pad=include,
        )
        got = pool2d_chunked(
            da.from_array(x, chunks=(7, 4, 2)),
            size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            ceil_mode=ceil_mode,
            op=op,
            count_include_pad=include,
            chunk=chunk,
        )
        assert got.shape == expected.shape
        np.testing.assert_allclose(got.compute(), expected, **TOL)


# ---------------------------------------------------------------- upsample

# (stride, padding, output_padding, dilation, chunk)
UPSAMPLE_CASES = [
    (2, 0, 0, 1, 5),
    (2, 1, 1, 1, 3),
    (3, 2, 2, 1, 4),
    ((1, 2), (0, 1), (0, 1), 1, (5, 3)),
    (2, 1, 1, 2, 7),
    (3, 0, 0, 3, 1),
    (1, 2, 0, 1, 6),
]


@pytest.mark.parametrize("stride,padding,output_padding,dilation,chunk", UPSAMPLE_CASES)
def test_upsample_chunked_equals_in_memory(stride, padding, output_padding, dilation, chunk):
    x, k = image((11, 13, 2)), kernel((3, 4))
    expected = conv_transpose2d(
        x, k, stride=stride, padding=padding, output_padding=output_padding, dilation=dilation
    )
    got = conv_transpose2d_chunked(
        x, k, stride=stride, padding=padding, output_padding=output_padding, dilation=dilation, chunk=chunk
    )
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.compute(), expected, **TOL)


def test_upsample_bilinear_exact_scale():
    from convcli.engine.kernels import parse_kernel

    k = parse_kernel("bilinear", defaults={"factor": "2x2"}).matrix
    x = image((9, 10))
    expected = conv_transpose2d(x, k, stride=2, padding=1)
    np.testing.assert_allclose(
        conv_transpose2d_chunked(x, k, stride=2, padding=1, chunk=3).compute(), expected, **TOL
    )


# ------------------------------------------------------------- huge files


def filter_op(pad_mode="reflect", stride=(1, 1), padding="same", dilation=(1, 1), size=5):
    from convcli.engine.kernels import parse_kernel

    kern = parse_kernel(f"gaussian:size={size},sigma=1.2")
    return Filter(
        kern, stride=stride, padding=padding, dilation=dilation, pad_mode=pad_mode, value_map="clip"
    )


def pool_op(op="max", size=(3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=True):
    return Pool(
        size,
        stride=stride,
        padding=padding,
        ceil_mode=ceil_mode,
        op=op,
        count_include_pad=False,
        value_map="clip",
    )


def upsample_op():
    return Upsample(kernel((3, 3)), stride=2, padding=1, output_padding=1, value_map="clip")


@pytest.mark.parametrize(
    "op",
    [filter_op(m) for m in PAD_MODES]
    + [
        filter_op("zeros", (2, 3), (2, 1), (2, 1), 3),
        pool_op(),
        pool_op("mean", ceil_mode=False),
        upsample_op(),
    ],
    ids=[*PAD_MODES, "strided", "maxpool", "meanpool", "upsample"],
)
def test_process_huge_npy_equals_in_memory(tmp_path, op):
    x = image((37, 41, 3), seed=4)
    np.save(tmp_path / "in.npy", x)
    record = process_huge(op, tmp_path / "in.npy", tmp_path / "out.npy", chunk=(7, 9))
    expected = op.apply(x)
    got = np.load(tmp_path / "out.npy")
    np.testing.assert_allclose(got, expected, **TOL)
    assert record["output_size"] == {"width": expected.shape[1], "height": expected.shape[0]}
    assert record["chunked"]["chunk"] == {"height": 7, "width": 9}
    for key, value in op.report(x.shape[:2]).items():
        assert record[key] == value
    assert leftovers(tmp_path) == []


def test_process_huge_single_channel_npy_stays_2d(tmp_path):
    x = image((30, 20))
    np.save(tmp_path / "in.npy", x)
    process_huge(filter_op("circular"), tmp_path / "in.npy", tmp_path / "out.npy", chunk=6)
    got = np.load(tmp_path / "out.npy")
    assert got.shape == (30, 20)
    np.testing.assert_allclose(got, filter_op("circular").apply(x[:, :, None])[:, :, 0], **TOL)


def test_tiff_in_and_out_match_the_in_memory_batch(tmp_path):
    """8-bit RGB TIFF (as Pillow writes it) -> contiguous 8-bit TIFF: the pixels runner.process writes."""
    tifffile = pytest.importorskip("tifffile")
    from PIL import Image

    pixels = np.random.default_rng(2).integers(0, 256, (45, 52, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.tif")
    op = filter_op("replicate", stride=(2, 1))
    outcome = process(op, Task(0, str(tmp_path / "in.tif"), str(tmp_path / "mem.tif")), RunOptions())
    assert outcome.status == "done", outcome.line
    record = process_huge(op, tmp_path / "in.tif", tmp_path / "big.tif", chunk=8)
    assert record["depth"] == "8" and record["map"] == "clip"
    with tifffile.TiffFile(tmp_path / "big.tif") as tif:
        assert tif.pages[0].is_contiguous and not tif.pages[0].is_tiled  # blocks written in place
        got = tif.asarray()
    np.testing.assert_array_equal(got, tifffile.imread(tmp_path / "mem.tif"))


@pytest.mark.parametrize("depth,value_map", [("16", "normalize"), ("float", "clip"), ("8", "abs")])
def test_tiff_depths_and_maps(tmp_path, depth, value_map):
    tifffile = pytest.importorskip("tifffile")
    from convcli.io.images import encode

    x = image((40, 33, 1), seed=5)
    np.save(tmp_path / "in.npy", x)
    op = filter_op("reflect")
    op.value_map = value_map
    process_huge(op, tmp_path / "in.npy", tmp_path / "out.tif", chunk=9, depth=depth)
    result = op.apply(x)
    expected = encode(result, None, "x.tif", depth=depth, value_map=value_map)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), expected)


def test_compressed_tiled_tiff_gray_and_zarr_round_trip(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    zarr = pytest.importorskip("zarr")
    pixels = np.random.default_rng(3).integers(0, 65536, (50, 47, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", pixels, compression="zlib", tile=(16, 16), photometric="rgb")
    op = filter_op("reflect")
    process_huge(op, tmp_path / "in.tif", tmp_path / "out.zarr", chunk=(10, 12), gray=True)
    got = np.asarray(zarr.open(str(tmp_path / "out.zarr"), mode="r"))
    # As LoadedImage.rows converts (Pillow itself reads 16-bit RGB as 8-bit, so not load_image):
    floats = pixels.astype(np.float32) * np.float32(1 / 65535)
    luma = (floats @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[:, :, None]
    np.testing.assert_allclose(got, op.apply(luma)[:, :, 0], **TOL)
    # .zarr in, .npy out; then replace an existing .zarr output whole
    process_huge(pool_op(), tmp_path / "out.zarr", tmp_path / "pooled.npy", chunk=7)
    np.testing.assert_allclose(
        np.load(tmp_path / "pooled.npy"), pool_op().apply(got[:, :, None])[:, :, 0], **TOL
    )
    process_huge(op, tmp_path / "pooled.npy", tmp_path / "out.zarr", chunk=7)
    assert zarr.open(str(tmp_path / "out.zarr"), mode="r").shape == np.load(tmp_path / "pooled.npy").shape
    assert leftovers(tmp_path) == []


def test_tiff_alpha_is_split_off(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    pixels = np.random.default_rng(6).integers(0, 256, (20, 21, 4), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "in.tif", pixels, photometric="rgb", extrasamples=[2])
    source = open_source(tmp_path / "in.tif", chunk=8)
    assert source.channels == 3 and source.alpha
    record = process_huge(filter_op(), tmp_path / "in.tif", tmp_path / "out.npy", chunk=8)
    assert record["alpha"] == "dropped" and np.load(tmp_path / "out.npy").shape == (20, 21, 3)


def test_source_array_is_the_image(tmp_path):
    x = image((23, 17, 2))
    np.save(tmp_path / "in.npy", x)
    np.testing.assert_array_equal(open_source(tmp_path / "in.npy", chunk=5).array.compute(), x)


def test_bad_values_fail_whole_and_leave_nothing(tmp_path):
    x = image((30, 30))
    x[25, 3] = np.nan
    np.save(tmp_path / "in.npy", x)
    with pytest.raises(ConvcliError, match="NaN or infinite"):
        process_huge(filter_op(), tmp_path / "in.npy", tmp_path / "out.npy", chunk=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy"]


def test_unknown_output_and_missing_input(tmp_path):
    np.save(tmp_path / "in.npy", image((8, 8)))
    with pytest.raises(ConvcliError, match=r"writes \.npy"):
        process_huge(filter_op(), tmp_path / "in.npy", tmp_path / "out.png")
    with pytest.raises(ConvcliError, match="no such file"):
        process_huge(filter_op(), tmp_path / "nope.npy", tmp_path / "out.npy")


# ------------------------------------------------------------ the CLI hook


def test_wants_chunked_threshold(tmp_path, monkeypatch):
    np.save(tmp_path / "in.npy", image((100, 100)))
    op, src = filter_op(), str(tmp_path / "in.npy")
    task = Task(0, src, str(tmp_path / "out.npy"))
    monkeypatch.setattr("convcli.system.usable_cores", lambda: 2)  # the estimate counts threads
    # The memory model of Operation.memory_estimate (README, "Limits and errors"), one channel:
    # the run's fixed 16 MiB (16,777,216) + 12 bytes x 10,000 input pixels (as stored, and as
    # float32) = 120,000 + 16 bytes x 10,000 output pixels (the result and the encoder's copies)
    # = 160,000 + the two float32 copies of the 5x5 kernel = 200 + the work: the larger of the
    # whole image (one 104x104 padded tile block three times over, two tiles, the kernel's
    # copies and its SVD, a tuple per tap: 284,328) and the banded path (two threads, each a
    # 68-row band of input floats and filter2d's work on it, and two 64-row bands of result
    # each: 578,000) = 17,635,416 bytes.
    assert op.memory_estimate((100, 100), 1) == 17_635_416
    assert wants_chunked(op, task, RunOptions(max_memory=17_635_415))
    assert not wants_chunked(op, task, RunOptions(max_memory=17_635_416))
    assert not wants_chunked(op, task, RunOptions(max_memory=None))
    assert not wants_chunked(op, Task(0, src, str(tmp_path / "out.png")), RunOptions(max_memory=1))
    forced = RunOptions()
    forced.chunk = 16  # the field the CLI's --chunk sets
    assert wants_chunked(op, task, forced)


def test_process_chunked_outcome(tmp_path):
    x = image((40, 30))
    np.save(tmp_path / "in.npy", x)
    task = Task(3, str(tmp_path / "in.npy"), str(tmp_path / "sub" / "out.npy"), make_folder=True)
    # No limit: the default block (2048) holds the whole image.  (A limit of 1 byte, which
    # used to force the smallest block, is now refused before any block is read.)
    outcome = process_chunked(filter_op(), task, RunOptions())
    assert outcome.status == "done", outcome.line
    assert outcome.line.endswith("wrote " + task.output + " in 1 block")
    expected = process(filter_op(), Task(0, task.input, str(tmp_path / "mem.npy")), RunOptions())
    for key in ("input_size", "output_size", "channels", "padding", "depth", "operation"):
        assert outcome.record[key] == expected.record[key]
    np.testing.assert_allclose(np.load(task.output), np.load(tmp_path / "mem.npy"), **TOL)
    bad = process_chunked(
        filter_op(), Task(4, str(tmp_path / "none.npy"), str(tmp_path / "x.npy")), RunOptions()
    )
    assert bad.status == "failed" and "no such file" in bad.record["error"]


def test_threaded_scheduler_gives_the_same(tmp_path):
    x = image((64, 48, 2))
    np.save(tmp_path / "in.npy", x)
    with dask.config.set(scheduler="threads"):
        process_huge(filter_op("circular"), tmp_path / "in.npy", tmp_path / "out.npy", chunk=11, workers=2)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), filter_op("circular").apply(x))


def test_many_chunkings_of_one_case():
    """A sweep over chunk sizes 1..9 of one strided, dilated, reflect-padded filter."""
    x, k = image((15, 14, 1)), kernel((3, 3))
    expected = filter2d(x, k, stride=2, padding=(2, 1, 1, 2), dilation=2, pad_mode="reflect")
    for ch in itertools.product(range(1, 10, 2), range(2, 10, 3)):
        got = filter2d_chunked(x, k, stride=2, padding=(2, 1, 1, 2), dilation=2, pad_mode="reflect", chunk=ch)
        np.testing.assert_allclose(got.compute(), expected, **TOL, err_msg=f"chunk {ch}")


def test_chunked_module_imports_without_dask():
    """convcli.run.chunked and convcli.run.cluster import nothing from dask at import time."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['dask'] = None; sys.modules['distributed'] = None; "
        "import convcli.run.chunked, convcli.run.cluster, convcli.run.batch; "
        "print(convcli.run.chunked.dask_installed() is False or 'x')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stderr
