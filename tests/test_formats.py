"""One decoder per format: every format convcli reads gives the same values in chunks as in memory.

For each format and layout (PNG 8/16-bit gray, RGB, RGBA; TIFF of 8, 16, 32 and 64-bit integer
and float samples, gray and RGB, striped, tiled, compressed, planar, turned by the Orientation
tag, several pages; ``.npy``) the chunked reader's blocks, put together, equal the in-memory
loader's float32 values bit for bit, and a filter run through the CLI in chunks writes the bytes
the in-memory run writes.  Where the values are known without convcli (16-bit RGB TIFF, the
Orientation tag) they are checked against tifffile's and numpy's own reading too.

Skipped as a whole without the dask extra.
"""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest
from PIL import Image

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
tifffile = pytest.importorskip("tifffile")

from convcli.cli.app import app  # noqa: E402
from convcli.io.bigfiles import open_source, read_header  # noqa: E402
from convcli.io.images import load_image  # noqa: E402
from convcli.io.tiff import TiffReader, tiff_layout  # noqa: E402


@pytest.fixture(autouse=True)
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


def samples(shape, dtype, seed=0):
    """Stored samples over the whole range of ``dtype`` (floats: signed, with fractions)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * 3).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def both_ways(path, gray=False, chunk=(7, 5)):
    """(in memory, in chunks): float32 H x W x C values of the same file."""
    memory = load_image(path, gray=gray)
    source = open_source(path, chunk=chunk, gray=gray)
    try:
        chunked = source.array.compute()
    finally:
        source.close()
    return memory, chunked, source


def assert_same(path, gray=False, chunk=(7, 5)):
    memory, chunked, source = both_ways(path, gray, chunk)
    assert chunked.dtype == memory.data.dtype == np.float32
    np.testing.assert_array_equal(chunked, memory.data)
    assert source.depth == memory.depth
    assert source.alpha == (memory.alpha is not None)
    return memory.data


# ----------------------------------------------------------------------------- TIFF

TIFF_CASES = {
    # name: (dtype, channels, writer options)
    "u8-gray-strips": ("uint8", 1, {"rowsperstrip": 4}),
    "u8-rgb-tiled": ("uint8", 3, {"tile": (16, 16)}),
    "u8-rgba-zlib": ("uint8", 4, {"compression": "zlib", "extrasamples": [2]}),
    "u8-gray-alpha": ("uint8", 2, {"extrasamples": [2]}),
    "u16-gray-contiguous": ("uint16", 1, {}),
    "u16-rgb-strips": ("uint16", 3, {"rowsperstrip": 5}),
    "u16-rgb-tiled-zlib": ("uint16", 3, {"tile": (16, 32), "compression": "zlib", "predictor": True}),
    "u16-rgba": ("uint16", 4, {"extrasamples": [2]}),
    "u16-rgb-planar": ("uint16", 3, {"planarconfig": "separate", "rowsperstrip": 6}),
    "i8-gray": ("int8", 1, {}),
    "i16-gray-tiled": ("int16", 1, {"tile": (16, 16)}),
    "i32-rgb": ("int32", 3, {"compression": "zlib"}),
    "u32-gray": ("uint32", 1, {"rowsperstrip": 3}),
    "f32-gray-tiled-zlib": ("float32", 1, {"tile": (32, 16), "compression": "zlib"}),
    "f32-rgb": ("float32", 3, {}),
    "f64-gray": ("float64", 1, {"rowsperstrip": 7}),
    "big-endian-u16-rgb": ("uint16", 3, {"tile": (16, 16), "byteorder": ">"}),
    "big-endian-f32-contiguous": ("float32", 1, {"byteorder": ">"}),
}


def write_tiff(path, pixels, options):
    options = dict(options)
    photometric = "rgb" if pixels.ndim == 3 and pixels.shape[2] >= 3 else "minisblack"
    if options.pop("planarconfig", None) == "separate":
        pixels = np.moveaxis(pixels, -1, 0)
        options["planarconfig"] = "separate"
    tifffile.imwrite(path, pixels, photometric=photometric, **options)


@pytest.mark.parametrize("case", sorted(TIFF_CASES))
def test_tiff_chunked_equals_in_memory(tmp_path, case):
    dtype, channels, options = TIFF_CASES[case]
    shape = (37, 45) if channels == 1 else (37, 45, channels)
    stored = samples(shape, dtype)
    path = tmp_path / f"{case}.tif"
    write_tiff(path, stored, options)
    values = assert_same(path)
    if channels >= 3:
        assert_same(path, gray=True)
    # The stored samples over their type's largest value (floats as they are), read by tifffile.
    oracle = tifffile.imread(path)
    if "planarconfig" in options:
        oracle = np.moveaxis(oracle, 0, -1)
    oracle = oracle.reshape(37, 45, -1).astype(np.float64)
    kind = np.dtype(dtype)
    scale = float(np.iinfo(kind).max) if kind.kind in "iu" else 1.0
    data_channels = channels - (1 if "extrasamples" in options else 0)
    expected = (oracle[:, :, :data_channels] / scale).astype(np.float32)
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=0)


def test_sixteen_bit_rgb_tiff_keeps_sixteen_bits(tmp_path):
    """The issue's case: Pillow would read 16-bit RGB as 8 bits; both paths keep the 16."""
    stored = (np.arange(6 * 7 * 3).reshape(6, 7, 3) * 1013 % 65536).astype(np.uint16)
    path = tmp_path / "rgb16.tif"
    tifffile.imwrite(path, stored, photometric="rgb", tile=(16, 16), compression="zlib")
    values = assert_same(path, chunk=(4, 3))
    raw = tifffile.imread(path)  # the oracle: tifffile's own reading of the whole file
    np.testing.assert_array_equal(np.round(values * 65535).astype(np.uint16), raw)
    assert len(np.unique(raw % 256)) > 1  # 8 bits would lose these low bytes


def test_pillow_written_tiffs(tmp_path):
    """TIFFs Pillow writes: LZW and the floating-point predictor (tifffile cannot decode them
    without imagecodecs), palette (the in-memory path turns it into RGB), 8-bit RGB, 16-bit
    gray, float."""
    rgb = samples((21, 19, 3), "uint8")
    Image.fromarray(rgb).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    Image.fromarray(rgb).save(tmp_path / "deflate.tif", compression="tiff_adobe_deflate")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "palette.tif")
    Image.fromarray(rgb).convert("1").save(tmp_path / "bilevel.tif")
    Image.fromarray(samples((21, 19), "uint16")).save(tmp_path / "gray16.tif")
    Image.fromarray(samples((21, 19), "float32"), "F").save(tmp_path / "float.tif")
    floats = Image.fromarray(samples((21, 19), "float32"), "F")
    floats.save(tmp_path / "predicted.tif", compression="tiff_adobe_deflate", tiffinfo={317: 3})
    for name in ("lzw", "deflate", "palette", "bilevel", "gray16", "float", "predicted"):
        assert_same(tmp_path / f"{name}.tif")


def test_inverted_gray_and_associated_alpha(tmp_path):
    """Pillow inverts MinIsWhite gray and un-premultiplies associated alpha; the chunked reader
    gives what the in-memory path gives for both."""
    gray = samples((13, 17), "uint8")
    tifffile.imwrite(tmp_path / "white.tif", gray, photometric="miniswhite")
    rgba = samples((13, 17, 4), "uint8")
    tifffile.imwrite(tmp_path / "premultiplied.tif", rgba, photometric="rgb", extrasamples=[1])
    inverted = assert_same(tmp_path / "white.tif")
    np.testing.assert_allclose(inverted[:, :, 0], (255 - gray) / 255, rtol=1e-6)
    assert_same(tmp_path / "premultiplied.tif")


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float64"])
@pytest.mark.parametrize("layout", [{"tile": (16, 16)}, {}])
def test_orientation_tag_is_applied_on_both_paths(tmp_path, orientation, dtype, layout):
    """Pillow's exif_transpose for the 8-bit image (Pillow reads it), the shared decoder for the
    others, tiled or read row by row; the oracle: numpy's flips and turns of the stored samples."""
    stored = samples((11, 16, 3), dtype)
    path = tmp_path / "turned.tif"
    tifffile.imwrite(path, stored, photometric="rgb", extratags=[(274, "H", 1, orientation, True)], **layout)
    values = assert_same(path, chunk=(3, 4))
    upright = {
        1: stored,
        2: stored[:, ::-1],
        3: stored[::-1, ::-1],
        4: stored[::-1],
        5: stored.transpose(1, 0, 2),
        6: np.rot90(stored, -1),
        7: np.rot90(stored, 1)[:, ::-1],
        8: np.rot90(stored, 1),
    }[orientation]
    scale = np.float32(1.0 / np.iinfo(dtype).max) if dtype != "float64" else np.float32(1)
    np.testing.assert_array_equal(values, upright.astype(np.float32) * scale)
    height, width, channels, _ = read_header(path)
    assert (height, width, channels) == upright.shape


def test_multi_page_tiff_reads_its_first_page_on_both_paths(tmp_path):
    first, second = samples((9, 10), "uint16", 1), samples((9, 10), "uint16", 2)
    path = tmp_path / "pages.tif"
    tifffile.imwrite(path, np.stack([first, second]), photometric="minisblack")
    assert len(tifffile.TiffFile(path).pages) == 2
    values = assert_same(path)
    np.testing.assert_allclose(values[:, :, 0], first / 65535, rtol=1e-6)
    assert read_header(path)[:3] == (9, 10, 1)
    rgb = samples((9, 10, 3), "uint8")
    Image.fromarray(rgb).save(
        tmp_path / "frames.tif", save_all=True, append_images=[Image.new("RGB", (4, 4))]
    )
    assert_same(tmp_path / "frames.tif")


def test_tiled_compressed_tiff_needs_no_zarr(tmp_path, monkeypatch):
    """The [dask] extra alone reads a tiled, compressed TIFF in chunks: zarr is not imported."""
    stored = samples((40, 50, 3), "uint16")
    path = tmp_path / "tiles.tif"
    tifffile.imwrite(path, stored, photometric="rgb", tile=(16, 16), compression="zlib")
    monkeypatch.setitem(sys.modules, "zarr", None)  # import zarr now raises ImportError
    values = assert_same(path)
    np.testing.assert_array_equal(np.round(values * 65535).astype(np.uint16), stored)


def test_damaged_tile_counts_are_one_line(tmp_path):
    """A tile whose byte count runs past the end of the file (4 GiB declared): one line naming
    the file in memory (Pillow); in chunks the bytes up to the file's end, never the count."""
    stored = samples((32, 32), "uint16")
    path = tmp_path / "damaged.tif"
    tifffile.imwrite(path, stored, tile=(16, 16), compression="zlib")
    with tifffile.TiffFile(path) as tif:
        counts = tif.pages[0].tags["TileByteCounts"]
        position, kind = counts.valueoffset, counts.dtype
    data = bytearray(path.read_bytes())
    size = np.dtype(f"<{'u4' if kind == 4 else 'u2'}").itemsize
    data[position : position + size] = np.array(
        [2**32 - 1 if size == 4 else 2**16 - 1], f"<u{size}"
    ).tobytes()
    path.write_bytes(bytes(data))
    from convcli.errors import ConvcliError

    with pytest.raises(ConvcliError, match=r"damaged.tif'?: cannot be decoded"):
        load_image(path)
    source = open_source(path, chunk=16)
    try:  # the bytes up to the file's end are read; zlib may stop at its stream's end in them
        block = source.read(0, 16, 0, 16)
    except ConvcliError as exc:
        assert "damaged.tif': cannot be decoded" in str(exc)
    else:
        np.testing.assert_allclose(block[:, :, 0], stored[:16, :16] / 65535, rtol=1e-6)
    np.testing.assert_allclose(source.read(16, 32, 16, 32)[:, :, 0], stored[16:, 16:] / 65535, rtol=1e-6)


def test_reader_is_picklable_and_reads_only_its_region(tmp_path):
    stored = samples((70, 90), "float32")
    path = tmp_path / "tiles.tif"
    tifffile.imwrite(path, stored, tile=(32, 32), compression="zlib")
    reader = TiffReader(path, tiff_layout(path, "x"))
    reader[0:1, 0:1]  # opens the file in this process
    copy = pickle.loads(pickle.dumps(reader))
    reader.close()
    np.testing.assert_array_equal(copy[33:61, 5:70][:, :, 0], stored[33:61, 5:70])
    np.testing.assert_array_equal(copy[69:70, 89:90][:, :, 0], stored[69:70, 89:90])
    assert copy[5:5, 0:3].shape == (0, 3, 1)
    copy.close()


def test_decoded_reader_decodes_once_per_process(tmp_path, monkeypatch):
    """Copies of a reader that decodes whole (as a Dask worker may unpickle several) share one
    decoding; closing drops it."""
    import convcli.io.bigfiles as bigfiles

    Image.fromarray(samples((12, 9, 3), "uint8")).save(tmp_path / "x.png")
    calls = []
    real = bigfiles.load_image
    monkeypatch.setattr(bigfiles, "load_image", lambda *a, **k: calls.append(a) or real(*a, **k))
    source = open_source(tmp_path / "x.png", chunk=4)
    copies = [pickle.loads(pickle.dumps(source.reader)) for _ in range(3)]
    blocks = [copy[0:4, 4:8] for copy in copies] + [source.array.compute()[0:4, 4:8]]
    assert len(calls) == 1
    assert all(np.array_equal(b, blocks[0]) for b in blocks)
    source.close()
    copies[0][0:1, 0:1]
    assert len(calls) == 2


# ------------------------------------------------------------------------- PNG, .npy


@pytest.mark.parametrize("mode", ["L", "I;16", "RGB", "RGBA", "LA", "P"])
def test_png_chunked_equals_in_memory(tmp_path, mode):
    rgba = samples((23, 17, 4), "uint8")
    if mode == "I;16":
        image = Image.fromarray(samples((23, 17), "uint16"))
    elif mode == "P":
        image = Image.fromarray(rgba[:, :, :3]).convert("P", palette=Image.Palette.ADAPTIVE)
    else:
        image = Image.fromarray(rgba).convert(mode)
    path = tmp_path / "image.png"
    image.save(path)
    assert_same(path)
    assert_same(path, gray=True)


def test_sixteen_bit_rgb_png(tmp_path):
    """A 16-bit RGB PNG (written byte by byte: Pillow writes none): Pillow reads it as 8 bits
    on both paths, so both agree."""
    import struct
    import zlib

    stored = samples((5, 6, 3), "uint16")
    rows = b"".join(b"\x00" + stored[i].astype(">u2").tobytes() for i in range(5))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 6, 5, 16, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    (tmp_path / "rgb16.png").write_bytes(png)
    assert_same(tmp_path / "rgb16.png")


@pytest.mark.parametrize("shape", [(13, 11), (13, 11, 3)])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "float64", "float32"])
def test_npy_chunked_equals_in_memory(tmp_path, shape, dtype):
    path = tmp_path / "array.npy"
    np.save(path, samples(shape, dtype))
    assert_same(path)


# --------------------------------------------------------------------------- the CLI


KERNEL = "1,2,-1;0,3,1;-2,1,1"


def cli_run(args):
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize(
    "name,make",
    [
        ("rgb16.tif", lambda p: tifffile.imwrite(p, samples((30, 26, 3), "uint16"), photometric="rgb")),
        (
            "tiled.tif",
            lambda p: tifffile.imwrite(p, samples((30, 26), "int16"), tile=(16, 16), compression="zlib"),
        ),
        ("rgba.png", lambda p: Image.fromarray(samples((30, 26, 4), "uint8")).save(p)),
        ("lzw.tif", lambda p: Image.fromarray(samples((30, 26, 3), "uint8")).save(p, compression="tiff_lzw")),
    ],
)
def test_cli_filter_in_chunks_writes_what_memory_writes(tmp_path, name, make):
    path = tmp_path / name
    make(path)
    cli_run(["filter", str(path), "-k", KERNEL, "-p", "1", "-o", str(tmp_path / "memory.npy"), "-q"])
    result = cli_run(
        [
            "filter",
            str(path),
            "-k",
            KERNEL,
            "-p",
            "1",
            "-o",
            str(tmp_path / "chunks.npy"),
            "--chunk",
            "8",
            "--json",
        ]
    )
    assert '"chunked"' in result.output  # it did take the chunked path
    np.testing.assert_array_equal(np.load(tmp_path / "chunks.npy"), np.load(tmp_path / "memory.npy"))


def test_convcli_chunked_tiff_output_reads_back_in_chunks(tmp_path, monkeypatch):
    """Two chunked steps chained, zarr not installed: convcli's own chunked TIFF output (one
    contiguous run of samples, each block written in place) is the next step's input."""
    monkeypatch.setitem(sys.modules, "zarr", None)  # import zarr now raises ImportError
    stored = samples((40, 33, 3), "uint8")
    Image.fromarray(stored).save(tmp_path / "in.png")
    cli_run(
        ["filter", str(tmp_path / "in.png"), "-k", KERNEL, "-o", str(tmp_path / "step.tif"), "--chunk", "16"]
    )
    with tifffile.TiffFile(tmp_path / "step.tif") as tif:
        assert tif.pages[0].is_contiguous
    assert_same(tmp_path / "step.tif")
    cli_run(
        ["pool", str(tmp_path / "step.tif"), "-k", "2", "-o", str(tmp_path / "pooled.npy"), "--chunk", "16"]
    )
    cli_run(["pool", str(tmp_path / "step.tif"), "-k", "2", "-o", str(tmp_path / "memory.npy")])
    np.testing.assert_array_equal(np.load(tmp_path / "pooled.npy"), np.load(tmp_path / "memory.npy"))


@pytest.mark.parametrize("options", [{"tile": (16, 16), "compression": "zlib"}, {}])
def test_sixteen_bit_rgb_tiff_on_standard_input(tmp_path, options):
    """Standard input goes through the same decoder, read from the stream's bytes in memory."""
    import io
    import subprocess

    stored = samples((25, 26, 3), "uint16")
    stream = io.BytesIO()
    tifffile.imwrite(stream, stored, photometric="rgb", **options)
    command = [
        sys.executable,
        "-m",
        "convcli",
        "filter",
        "-",
        "-k",
        "1",
        "-o",
        "-",
        "--depth",
        "16",
        "--gray",
    ]
    done = subprocess.run(command, input=stream.getvalue(), capture_output=True)
    assert done.returncode == 0, done.stderr
    got = np.asarray(Image.open(io.BytesIO(done.stdout)))
    luma = stored.astype(np.float64) / 65535 @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(got, np.round(luma * 65535), atol=1)
