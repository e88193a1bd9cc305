"""Hostile values (issue #14): integer TIFFs keep their sign and range through one mapping, in
memory and in chunks; NaN and infinity are refused alike in every input format; the command
line's standard error carries convcli's own lines only.

Every input is generated here: tifffile writes the TIFFs, Pillow the images with corrupt EXIF.
The command line runs as a subprocess (``python -m convcli``, the console script's entry),
since what reaches standard error is the point.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from convcli.errors import ConvcliError
from convcli.io.images import load_image

tifffile = pytest.importorskip("tifffile")
pytest.importorskip("dask")

HEIGHT, WIDTH = 37, 41  # --chunk 16 cuts this into 3 x 3 blocks


def convcli(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "CONVCLI_PRESETS")}
    env.update(NO_COLOR="1", COLUMNS="120")
    return subprocess.run(
        [sys.executable, "-m", "convcli", *map(str, args)],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=300,
    )


def quiet_success(*args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Exit 0 and nothing at all on standard error."""
    result = convcli(*args, stdin=stdin)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b"", result.stderr.decode()
    return result


def refusal(*args, stdin: bytes | None = None) -> str:
    """Exit 2 and exactly one line on standard error, ``convcli: error: ...``; returns it."""
    result = convcli(*args, stdin=stdin)
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr.decode())
    assert len(lines) == 1 and lines[0].startswith("convcli: error: "), result.stderr.decode()
    return lines[0]


def full_range(dtype, shape, seed: int) -> np.ndarray:
    """Samples over the whole range of ``dtype``: its smallest, largest and zero included."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        values = (rng.standard_normal(shape) * 1e3).astype(dtype)
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
        values.flat[:3] = info.min, info.max, 0
    return values


def expected_values(stored: np.ndarray) -> np.ndarray:
    """The documented mapping, in float64: an integer over its type's largest value."""
    if stored.dtype.kind == "f":
        return stored.astype(np.float64)
    return stored.astype(np.float64) / float(np.iinfo(stored.dtype).max)


# name: (sample type, samples per pixel, extra samples)
CASES = {
    "int8": ("int8", 1, None),
    "int16": ("int16", 1, None),
    "int32": ("int32", 1, None),
    "uint32": ("uint32", 1, None),
    "int64": ("int64", 1, None),
    "uint64": ("uint64", 1, None),
    "float64": ("float64", 1, None),
    "int16-rgb": ("int16", 3, None),
    "int16-rgb-alpha": ("int16", 4, [2]),  # unassociated alpha: split off, not filtered
    "uint16-rgb": ("uint16", 3, None),  # Pillow would cut it to 8 bits
}


def write_case(folder, name: str, seed: int) -> np.ndarray:
    dtype, samples, extras = CASES[name]
    shape = (HEIGHT, WIDTH) if samples == 1 else (HEIGHT, WIDTH, samples)
    pixels = full_range(dtype, shape, seed)
    options = {"photometric": "rgb" if samples >= 3 else "minisblack"}
    if extras:
        options["extrasamples"] = extras
    tifffile.imwrite(folder / f"{name}.tif", pixels, **options)
    return pixels


@pytest.fixture(scope="module")
def integer_runs(tmp_path_factory):
    """Every case, filtered with the identity kernel to .npy: in memory (a batch, two worker
    processes) and in 16 x 16 chunks."""
    folder = tmp_path_factory.mktemp("integers")
    stored = {name: write_case(folder, name, seed) for seed, name in enumerate(CASES)}
    inputs = [folder / f"{name}.tif" for name in CASES]
    common = ["filter", *inputs, "-k", "identity", "-p", "same", "-q"]
    memory = convcli(*common, "-j", "2", "--output-template", f"{folder}/memory/{{stem}}.npy")
    chunks = convcli(
        *common, "-j", "1", "--chunk", "16", "--output-template", f"{folder}/chunks/{{stem}}.npy"
    )
    return folder, stored, memory, chunks


@pytest.mark.parametrize("name", list(CASES))
def test_tiff_samples_keep_sign_and_range_in_memory_and_in_chunks(integer_runs, name):
    folder, stored, _, _ = integer_runs
    memory, chunks = folder / "memory" / f"{name}.npy", folder / "chunks" / f"{name}.npy"
    assert memory.exists() and chunks.exists(), (memory.exists(), chunks.exists())
    in_memory, in_chunks = np.load(memory), np.load(chunks)
    np.testing.assert_array_equal(in_memory, in_chunks)  # one mapping: the same float32 values
    pixels = stored[name]
    channels = 3 if pixels.ndim == 3 else 1
    want = expected_values(pixels if pixels.ndim == 2 else pixels[:, :, :channels])
    np.testing.assert_allclose(in_memory, want, rtol=1e-6, atol=0)
    if pixels.dtype.kind == "i":  # the sign is kept: the smallest value is about -1
        assert in_memory.min() < -0.99 and in_memory.max() == 1.0
    elif pixels.dtype.kind == "u":
        assert in_memory.min() == 0.0 and in_memory.max() == 1.0


def test_the_batches_of_hostile_tiffs_print_nothing_on_stderr(integer_runs):
    _, _, memory, chunks = integer_runs
    for run in (memory, chunks):
        assert run.returncode == 0, run.stderr.decode()
        assert run.stderr == b"", run.stderr.decode()


def test_a_tiff_on_standard_input_reads_as_the_file_does(tmp_path):
    pixels = full_range("int16", (HEIGHT, WIDTH), 20)
    tifffile.imwrite(tmp_path / "x.tif", pixels)
    stdin = (tmp_path / "x.tif").read_bytes()
    quiet_success("filter", "-", "-k", "identity", "-p", "same", "-o", tmp_path / "y.npy", "-q", stdin=stdin)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected_values(pixels), rtol=1e-6, atol=0)


def test_a_tiff_read_by_tifffile_is_turned_upright_as_pillow_would(tmp_path):
    pixels = full_range("int8", (5, 8), 21)
    tifffile.imwrite(tmp_path / "turned.tif", pixels, extratags=[(274, "H", 1, 6, True)])  # 90° clockwise
    loaded = load_image(tmp_path / "turned.tif")
    assert loaded.depth == "float" and loaded.size == (8, 5)
    np.testing.assert_allclose(loaded.data[:, :, 0], np.rot90(pixels, -1) / 127.0, rtol=1e-6, atol=0)


def test_the_size_of_a_tiff_pillow_cannot_open_is_read_for_dry_runs_and_shape(tmp_path):
    from convcli.io.images import read_size

    tifffile.imwrite(tmp_path / "wide.tif", full_range("float64", (3, 11), 25))
    assert read_size(tmp_path / "wide.tif") == (3, 11)


def test_without_tifffile_pillow_reads_what_it_decodes_exactly_and_the_rest_is_refused(tmp_path, monkeypatch):
    int16 = full_range("int16", (6, 7), 22)
    tifffile.imwrite(tmp_path / "int16.tif", int16)
    tifffile.imwrite(tmp_path / "int8.tif", full_range("int8", (6, 7), 23))
    monkeypatch.setitem(sys.modules, "tifffile", None)  # import tifffile now raises ImportError
    filters = list(warnings.filters)
    loaded = load_image(tmp_path / "int16.tif")  # Pillow's "I" mode: exact
    assert loaded.depth == "float"
    np.testing.assert_allclose(loaded.data[:, :, 0], int16 / 32767.0, rtol=1e-6, atol=0)
    with pytest.raises(
        ConvcliError, match=r"'.*int8\.tif': TIFF samples of type int8 .*pip install tifffile"
    ):
        load_image(tmp_path / "int8.tif")  # Pillow would read -1 as 255
    assert warnings.filters == filters  # the library sets no warning filter of its own


# ------------------------------------------------------------------ NaN, infinity, float64


def test_nan_and_infinity_are_refused_alike_in_every_input(tmp_path):
    zarr = pytest.importorskip("zarr")
    bad = np.array([[0.25, np.nan, 1.0], [0.5, 0.75, 1.0], [0.0, 0.5, 1.0]], dtype=np.float32)
    infinite = np.where(np.isnan(bad), np.inf, bad).astype(np.float32)
    np.save(tmp_path / "nan.npy", bad)
    tifffile.imwrite(tmp_path / "nan.tif", bad)  # float32: Pillow's "F" mode
    tifffile.imwrite(tmp_path / "inf.tif", infinite)
    tifffile.imwrite(tmp_path / "nan64.tif", bad.astype(np.float64))  # read by tifffile
    store = zarr.open(str(tmp_path / "nan.zarr"), mode="w", shape=bad.shape, dtype=bad.dtype)
    store[:] = bad
    runs = {
        "nan.npy": ("nan.npy",),
        "nan.tif": ("nan.tif",),
        "inf.tif (chunks)": ("inf.tif", "--chunk", "2"),
        "nan64.tif": ("nan64.tif",),
        "nan.zarr": ("nan.zarr",),
    }
    reasons = {}
    for label, (name, *options) in runs.items():
        out = tmp_path / f"out-{len(reasons)}.npy"
        line = refusal("filter", tmp_path / name, "-k", "1,1", "-o", out, *options)
        assert f"input '{tmp_path / name}': " in line, line
        reasons[label] = line.split(f"input '{tmp_path / name}': ", 1)[1]
        assert not out.exists(), label
    buffer = (tmp_path / "nan.npy").read_bytes()
    line = refusal("filter", "-", "-k", "1,1", "-o", tmp_path / "stdin.npy", stdin=buffer)
    reasons["standard input"] = line.split("input '<stdin>': ", 1)[1]
    assert set(reasons.values()) == {"holds NaN or infinite values"}, reasons


def test_float64_beyond_float32_is_refused_not_made_infinite(tmp_path):
    huge = np.array([[1e300, 0.5], [0.25, -2.0]], dtype=np.float64)
    np.save(tmp_path / "huge.npy", huge)
    tifffile.imwrite(tmp_path / "huge.tif", huge)
    for name, options in (("huge.npy", ()), ("huge.npy", ("--chunk", "1")), ("huge.tif", ())):
        out = tmp_path / "out.npy"
        line = refusal("filter", tmp_path / name, "-k", "1", "-o", out, *options)
        assert line.endswith(
            f"input '{tmp_path / name}': holds values beyond float32's range (about ±3.4e38)"
        )
        assert not out.exists()


def test_the_library_refuses_float64_beyond_float32_without_a_numpy_warning(tmp_path):
    from convcli.io.bigfiles import open_source

    np.save(tmp_path / "huge.npy", np.array([[1e300, 0.5], [0.25, -2.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning (overflow in a cast) would raise here
        with pytest.raises(ConvcliError, match="beyond float32's range"):
            load_image(tmp_path / "huge.npy")
        source = open_source(tmp_path / "huge.npy", chunk=1)
        try:
            with pytest.raises(ConvcliError, match="beyond float32's range"):
                source.read(0, 2, 0, 2)
        finally:
            source.close()


# ------------------------------------------------------------------ warnings on stderr


def corrupt_exif() -> bytes:
    """An EXIF block whose one tag points past its end (Pillow: "Tag data larger than file")."""
    entry = struct.pack("<HHII", 0x010E, 2, 100, 1000)  # ImageDescription, 100 bytes at 1000
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + b"\0" * 4


def corrupt_tiff_tag(path, pixels) -> None:
    """A TIFF whose ImageDescription points far past the end of the file."""
    tifffile.imwrite(path, pixels, description="x" * 50, metadata=None)
    data = bytearray(path.read_bytes())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for index in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * index
        if struct.unpack_from("<H", data, entry)[0] == 270:
            struct.pack_into("<I", data, entry + 8, 10**8)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_corrupt_exif_is_read_quietly(tmp_path, suffix):
    pixels = np.full((6, 9, 3), 200, dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / f"photo{suffix}", exif=corrupt_exif())
    quiet_success("filter", tmp_path / f"photo{suffix}", "-k", "box", "-o", tmp_path / "out.png", "-q")
    assert Image.open(tmp_path / "out.png").size == (7, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the library too: nothing to warn about, nothing to refuse
        assert load_image(tmp_path / f"photo{suffix}").size == (6, 9)


def test_an_unreadable_tiff_tag_prints_no_tifffile_log(tmp_path):
    pixels = full_range("uint8", (HEIGHT, WIDTH), 24)
    corrupt_tiff_tag(tmp_path / "tagged.tif", pixels)
    corrupt_tiff_tag(tmp_path / "tagged2.tif", pixels)
    quiet_success(
        "filter", tmp_path / "tagged.tif", "-k", "1", "-o", tmp_path / "m.npy", "-q"
    )  # Pillow fails
    np.testing.assert_allclose(np.load(tmp_path / "m.npy"), pixels / 255.0, rtol=1e-6, atol=0)
    inputs = (tmp_path / "tagged.tif", tmp_path / "tagged2.tif")
    template = f"{tmp_path}/chunks/{{stem}}.npy"  # two worker processes, each in chunks
    quiet_success(
        "filter", *inputs, "-k", "1", "--output-template", template, "-q", "-j", "2", "--chunk", "16"
    )
    for name in ("tagged", "tagged2"):
        np.testing.assert_array_equal(
            np.load(tmp_path / "chunks" / f"{name}.npy"), np.load(tmp_path / "m.npy")
        )


def test_overflowing_results_print_no_numpy_warning(tmp_path):
    np.save(tmp_path / "a.npy", np.full((5, 6), 3e38, dtype=np.float32))
    np.save(tmp_path / "b.npy", np.full((5, 6), -3e38, dtype=np.float32))
    quiet_success("filter", tmp_path / "a.npy", "-k", "3e38,3e38", "-o", tmp_path / "a.png", "-q")
    template = f"{tmp_path}/batch/{{stem}}.png"  # in two worker processes
    inputs = (tmp_path / "a.npy", tmp_path / "b.npy")
    quiet_success("filter", *inputs, "-k", "3e38,3e38", "--output-template", template, "-q", "-j", "2")
    assert sorted(p.name for p in (tmp_path / "batch").iterdir()) == ["a.png", "b.png"]


def test_shape_of_a_huge_image_prints_no_decompression_bomb_warning(tmp_path):
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 10_000, 9_000, 8, 0, 0, 0, 0)  # 90 million pixels: a header only
    (tmp_path / "wide.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    result = quiet_success("shape", tmp_path / "wide.png", "conv:k=3")
    assert b"9998x8998" in result.stdout
