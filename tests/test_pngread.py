"""The streaming PNG decoder (convcli.io.pngread) against PNGs built here, row filter by row
filter, and against Pillow's decoding of the same files.

The oracle encoder below writes every row with a filter type chosen by the test (the PNG
specification's five, written out as plain loops), so that each type is decoded for each
kind of image; Pillow, an independent decoder, must read the very same samples.
"""

from __future__ import annotations

import itertools
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from convcli.errors import ConvcliError
from convcli.io import pngread
from convcli.io.images import _load_with_pillow, load_image
from convcli.ops.filter import Filter

pytestmark = pytest.mark.skipif(pngread.unfilter is None, reason="the _pngrows extension is not built")


# ---------------------------------------------------------------- the oracle encoder


def chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind)) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_row(kind: int, row: bytes, up: bytes, bpp: int) -> bytes:
    """One row filtered by type ``kind`` (PNG specification, section 9.2), by explicit loops."""
    out = bytearray(len(row))
    for i, x in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = up[i]
        c = up[i - bpp] if i >= bpp else 0
        predictor = [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]
        out[i] = (x - predictor) % 256
    return bytes([kind]) + bytes(out)


def make_png(
    rows: np.ndarray,
    colour_type: int,
    bits: int,
    filters,
    *,
    width: int,
    palette: bytes | None = None,
    trns: bytes | None = None,
    idat_pieces: int = 1,
    extra: bytes = b"",
) -> bytes:
    """A PNG of byte rows (H x stride), each row filtered by ``filters[row]``."""
    height = rows.shape[0]
    samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
    bpp = max(1, samples * bits // 8)
    up = bytes(rows.shape[1])
    raw = bytearray()
    for y in range(height):
        row = rows[y].tobytes()
        raw += filter_row(filters[y], row, up, bpp)
        up = row
    stream = zlib.compress(bytes(raw), 6)
    cuts = np.unique(np.linspace(0, len(stream), min(idat_pieces, len(stream)) + 1).astype(int))
    png = b"\x89PNG\r\n\x1a\n" + chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, bits, colour_type, 0, 0, 0)
    )
    png += extra
    if palette is not None:
        png += chunk(b"PLTE", palette)
    if trns is not None:
        png += chunk(b"tRNS", trns)
    for a, b in itertools.pairwise(cuts):
        png += chunk(b"IDAT", stream[a:b])
    return png + chunk(b"IEND", b"")


def paeth_vectorised(a, b, c):
    """The specification's Paeth predictor on whole arrays (int64)."""
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


@pytest.mark.parametrize("bpp", [1, 2, 3, 4, 6, 8])
@pytest.mark.parametrize("pixels", [1, 2, 3, 5000])
def test_paeth_rows_against_the_specification(bpp, pixels):
    """Long rows of every pixel size through each of the unfilterer's Paeth paths (registers,
    SIMD on 3- and 4-byte pixels, first and last pixels), ties made common by small values."""
    rng = np.random.default_rng(bpp * 10 + pixels)
    up, row = rng.integers(0, 256, size=(2, bpp * pixels)).astype(np.int64)
    up[: up.size // 3] //= 37
    row[: row.size // 3] //= 37
    zeros = np.zeros(bpp, np.int64)
    left, upper_left = np.concatenate([zeros, row[:-bpp]]), np.concatenate([zeros, up[:-bpp]])
    raw = np.concatenate([[4], (row - paeth_vectorised(left, up, upper_left)) % 256]).astype(np.uint8)
    out = np.empty(row.size, np.uint8)
    pngread.unfilter(raw, out, up.astype(np.uint8).tobytes(), bpp)
    np.testing.assert_array_equal(out, row)


@pytest.mark.slow
def test_paeth_every_triple():
    """The predictor for all 256**3 (left, above, upper left): pixel pairs of one byte, the first
    of each pair setting left and upper left for the second; one row per value of left."""
    b, c = (v.ravel() for v in np.meshgrid(np.arange(256), np.arange(256), indexing="ij"))
    up = np.empty(2 * b.size, np.int32)
    up[0::2], up[1::2] = c, b
    upper_left = np.concatenate([[0], up[:-1]])
    row = np.empty(2 * b.size, np.int32)
    row[1::2] = np.arange(b.size) % 251
    for a in range(256):
        row[0::2] = a
        left = np.concatenate([[0], row[:-1]])
        raw = np.concatenate([[4], (row - paeth_vectorised(left, up, upper_left)) % 256]).astype(np.uint8)
        out = np.empty(row.size, np.uint8)
        pngread.unfilter(raw, out, up.astype(np.uint8).tobytes(), 1)
        np.testing.assert_array_equal(out, row)


# (colour type, bits, channels of stored samples)
KINDS = [(0, 8, 1), (0, 16, 1), (2, 8, 3), (2, 16, 3), (4, 8, 2), (6, 8, 4), (6, 16, 4)]


def random_kind(colour_type, bits, samples, height, width, seed):
    rng = np.random.default_rng(seed)
    dtype = np.uint16 if bits == 16 else np.uint8
    values = rng.integers(0, np.iinfo(dtype).max + 1, size=(height, width, samples), dtype=dtype)
    values[: height // 3] //= 5  # runs and small differences, as photographs have
    stored = values.astype(">u2") if bits == 16 else values
    return values, np.ascontiguousarray(stored).view(np.uint8).reshape(height, -1)


def expected_samples(values, colour_type, bits):
    """What the loader keeps: alpha apart; 16-bit colour cut to the high byte (as Pillow reads
    it), 16-bit gray whole."""
    if bits == 16 and colour_type != 0:
        values = (values >> 8).astype(np.uint8)
    if colour_type in (4, 6):
        return values[:, :, :-1], values[:, :, -1]
    return values, None


def pillow_load(path):
    return _load_with_pillow(str(path), str(path), None)


@pytest.mark.parametrize("colour_type, bits, samples", KINDS)
@pytest.mark.parametrize("width", [1, 2, 13])
def test_every_kind_and_every_filter_type(tmp_path, colour_type, bits, samples, width):
    height = 15
    values, rows = random_kind(colour_type, bits, samples, height, width, seed=width * 100 + colour_type)
    filters = [y % 5 for y in range(height)]  # each type at least twice, after every other type
    path = tmp_path / "x.png"
    path.write_bytes(make_png(rows, colour_type, bits, filters, width=width, idat_pieces=3))
    ours = load_image(path)
    pixels, alpha = expected_samples(values, colour_type, bits)
    np.testing.assert_array_equal(ours.raw, pixels)
    if alpha is None:
        assert ours.alpha is None
    else:
        np.testing.assert_array_equal(ours.alpha, alpha)
    pillow = pillow_load(path)  # an independent decoder reads the same samples
    np.testing.assert_array_equal(ours.raw, pillow.raw)
    assert (ours.depth, ours.scale, ours.format) == (pillow.depth, pillow.scale, pillow.format)
    banded = load_image(path, banded=True)
    np.testing.assert_array_equal(np.asarray(banded.raw), pixels)
    np.testing.assert_array_equal(banded.data, pillow.data)


@pytest.mark.parametrize("with_trns", [False, True])
def test_palette(tmp_path, with_trns):
    rng = np.random.default_rng(5)
    height, width = 11, 9
    palette = rng.integers(0, 256, size=(200, 3), dtype=np.uint8)
    index = rng.integers(0, 200, size=(height, width), dtype=np.uint8)
    trns = rng.integers(0, 256, size=120, dtype=np.uint8) if with_trns else None
    path = tmp_path / "p.png"
    filters = [(y * 3) % 5 for y in range(height)]
    png = make_png(
        index,
        3,
        8,
        filters,
        width=width,
        palette=palette.tobytes(),
        trns=None if trns is None else trns.tobytes(),
    )
    path.write_bytes(png)
    ours = load_image(path)
    np.testing.assert_array_equal(ours.raw, palette[index])
    if with_trns:
        table = np.full(256, 255, np.uint8)
        table[:120] = trns
        np.testing.assert_array_equal(ours.alpha, table[index])
    else:
        assert ours.alpha is None
    pillow = pillow_load(path)
    np.testing.assert_array_equal(ours.raw, pillow.raw)
    np.testing.assert_array_equal(ours.alpha, pillow.alpha)


def test_pillow_written_files_decode_as_pillow_reads_them(tmp_path):
    rng = np.random.default_rng(3)
    for mode, shape in [("RGB", (70, 90, 3)), ("L", (33, 65)), ("RGBA", (20, 31, 4))]:
        pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
        pixels[10:20] = 7
        for level in (0, 1, 9):
            path = tmp_path / f"{mode}{level}.png"
            Image.fromarray(pixels, mode).save(path, compress_level=level)
            assert pngread.open_png(str(path), "x") is not None
            np.testing.assert_array_equal(load_image(path).raw, pillow_load(path).raw)


def test_an_idat_chunk_per_byte(tmp_path):
    values, rows = random_kind(2, 8, 3, 9, 7, seed=12)
    png = make_png(rows, 2, 8, [y % 5 for y in range(9)], width=7)
    path = tmp_path / "bytes.png"
    path.write_bytes(make_png(rows, 2, 8, [y % 5 for y in range(9)], width=7, idat_pieces=10**6))
    assert path.read_bytes().count(b"IDAT") == len(png) - 57  # one chunk per byte of the stream
    np.testing.assert_array_equal(load_image(path).raw, values)
    np.testing.assert_array_equal(np.asarray(load_image(path, banded=True).raw), values)


def test_streamed_rows_forward_backward_and_whole(tmp_path):
    height, width = 300, 17
    values, rows = random_kind(2, 8, 3, height, width, seed=9)
    path = tmp_path / "tall.png"
    path.write_bytes(make_png(rows, 2, 8, [4, 3, 1, 2, 0] * 60, width=width, idat_pieces=7))
    _, source = pngread.open_png(str(path), "x")
    streamed = pngread.StreamedPixels(source)
    for index in ([0, 1, 2], [1, 0, 1, 2, 3], range(30, 95), [299, 298, 297], [5, 6], range(100, 140)):
        index = np.asarray(list(index))
        np.testing.assert_array_equal(streamed[index], values[index])  # [5, 6] reads from the top
    np.testing.assert_array_equal(streamed[10:20], values[10:20])
    np.testing.assert_array_equal(np.asarray(streamed), values)


def test_a_banded_filter_holds_a_few_bands(tmp_path, monkeypatch):
    height, width = 1500, 23
    values, rows = random_kind(0, 8, 1, height, width, seed=2)
    path = tmp_path / "tall.png"
    path.write_bytes(make_png(rows, 0, 8, [4] * height, width=width, idat_pieces=40))
    loaded = load_image(path, banded=True)
    held = []
    real = pngread.StreamedPixels._decode

    def decode(self, low, high):
        real(self, low, high)
        held.append(sum(len(band) for _, band in self._kept))

    monkeypatch.setattr(pngread.StreamedPixels, "_decode", decode)
    op = Filter(np.ones((5, 5), np.float32), padding="same", pad_mode="reflect")
    result = np.concatenate([rows for _, rows in op.bands(loaded)])
    np.testing.assert_allclose(result, op.apply(values / np.float32(255)), rtol=1e-5, atol=1e-5)
    assert len(held) > 10 and max(held) <= 64 + 4 + 2 * pngread.BAND_ROWS  # one filter band, its halo


# ---------------------------------------------------------------- what goes to Pillow


def test_kinds_left_to_pillow(tmp_path):
    rng = np.random.default_rng(1)
    bits1 = tmp_path / "bits1.png"
    Image.fromarray(rng.integers(0, 2, size=(9, 13), dtype=bool)).save(bits1)
    exif = Image.Exif()
    exif[0x0112] = 6
    turned = tmp_path / "turned.png"
    pixels = rng.integers(0, 256, size=(5, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(turned, exif=exif)
    interlaced = tmp_path / "interlaced.png"
    png = bytearray(make_png(pixels.reshape(5, -1), 2, 8, [0] * 5, width=8))
    png[28] = 1  # IHDR's interlace byte, and its CRC
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    interlaced.write_bytes(bytes(png))
    gray_alpha16 = tmp_path / "ga16.png"  # Pillow reads it as RGBA: it stays Pillow's
    _, rows = random_kind(4, 16, 2, 6, 7, seed=3)
    gray_alpha16.write_bytes(make_png(rows, 4, 16, [4] * 6, width=7))
    for path in (bits1, turned, interlaced, gray_alpha16):
        assert pngread.open_png(str(path), "x") is None
    assert load_image(gray_alpha16).channels == 3
    assert load_image(turned).size == (8, 5)  # Pillow applied the EXIF orientation
    np.testing.assert_array_equal(load_image(bits1).raw, pillow_load(bits1).raw)


def test_without_the_extension_pillow_decodes(tmp_path, monkeypatch):
    values, rows = random_kind(2, 8, 3, 12, 10, seed=4)
    path = tmp_path / "x.png"
    path.write_bytes(make_png(rows, 2, 8, [4] * 12, width=10))
    monkeypatch.setattr(pngread, "unfilter", None)
    assert pngread.open_png(str(path), "x") is None
    loaded = load_image(path, banded=True)
    assert isinstance(loaded.raw, np.ndarray)
    np.testing.assert_array_equal(loaded.raw, values)


# ---------------------------------------------------------------- damaged files


def damaged_files(tmp_path):
    height, width = 40, 30
    _, rows = random_kind(2, 8, 3, height, width, seed=6)
    good = make_png(rows, 2, 8, [y % 5 for y in range(height)], width=width, idat_pieces=2)
    first_idat = good.index(b"IDAT") - 4
    length = struct.unpack(">I", good[first_idat : first_idat + 4])[0]
    crc_at = first_idat + 8 + length
    bad_filter = bytearray(rows.shape[1] + 1)
    bad_filter[0] = 5
    short = make_png(rows[:-3], 2, 8, [1] * (height - 3), width=width)
    files = {
        "truncated": good[: first_idat + 8 + length // 2],  # cut inside the first IDAT
        "bad-crc": good[:crc_at] + bytes([good[crc_at] ^ 1]) + good[crc_at + 1 :],
        "bad-filter": make_png(rows, 2, 8, [0] * height, width=width).replace(
            chunk(b"IDAT", zlib.compress(b"".join(b"\0" + rows[y].tobytes() for y in range(height)), 6)),
            chunk(
                b"IDAT",
                zlib.compress(
                    b"".join(b"\0" + rows[y].tobytes() for y in range(height - 1)) + bytes(bad_filter), 6
                ),
            ),
        ),
        # IHDR says 40 rows, the stream holds 37: each row the right length, too few of them
        "short-rows": short.replace(
            chunk(b"IHDR", struct.pack(">IIBBBBB", width, height - 3, 8, 2, 0, 0, 0)),
            chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)),
        ),
        # the rows are one byte shorter than IHDR's width makes them
        "wrong-row-length": make_png(
            np.ascontiguousarray(rows[:, :-3]), 2, 8, [0] * height, width=width - 1
        ).replace(
            chunk(b"IHDR", struct.pack(">IIBBBBB", width - 1, height, 8, 2, 0, 0, 0)),
            chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)),
        ),
        "garbage-stream": good[: first_idat + 10] + b"\xff" * (length - 2) + good[first_idat + 8 + length :],
    }
    assert files["bad-filter"] != make_png(rows, 2, 8, [0] * height, width=width)
    return files


@pytest.mark.parametrize("case", ["truncated", "bad-crc", "bad-filter", "short-rows", "wrong-row-length"])
def test_damaged_png_is_one_line_and_no_output(tmp_path, case, cli, list_folder):
    path = tmp_path / f"{case}.png"
    path.write_bytes(damaged_files(tmp_path)[case])
    out = tmp_path / "out.png"
    for padding in ("same", "0"):
        cli.fail(
            "filter",
            path,
            "-k",
            "sobel-vertical",
            "-p",
            padding,
            "-o",
            out,
            mentions=(case, "cannot be decoded"),
        )
    assert list_folder(tmp_path) == [path.name]


def test_damaged_png_messages(tmp_path):
    files = damaged_files(tmp_path)
    expected = {
        "truncated": "truncated",
        "bad-crc": "CRC",
        "bad-filter": "row 39 has filter type 5",
        "short-rows": "before the last row",
        "wrong-row-length": "before the last row",
        "garbage-stream": "corrupt image data",
    }
    for case, words in expected.items():
        path = tmp_path / f"{case}.png"
        path.write_bytes(files[case])
        for banded in (False, True):
            with pytest.raises(ConvcliError) as caught:
                np.asarray(load_image(path, banded=banded).raw)
            assert words in str(caught.value) and repr(str(path)) in str(caught.value), (case, caught.value)
        # Pillow refuses these too; it does not check IDAT's CRC, and it fills the rows after an
        # early end of the stream with zeros, where libpng and this decoder refuse the file.
        if case in ("truncated", "bad-filter", "garbage-stream"):
            with pytest.raises(ConvcliError):
                pillow_load(path)


def test_limits_hold_before_decoding(tmp_path, cli):
    # A header of 30000 x 30000 pixels over a few bytes of data: refused from the header.
    bomb = tmp_path / "bomb.png"
    stream = zlib.compress(b"\0" * (30000 + 1) * 10)
    bomb.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", stream)
        + chunk(b"IEND", b"")
    )
    cli.fail(
        "filter",
        bomb,
        "-k",
        "box",
        "-o",
        tmp_path / "o.png",
        mentions=("900,000,000 pixels", "--max-pixels"),
    )
    small = tmp_path / "small.png"
    _, rows = random_kind(0, 8, 1, 20, 20, seed=1)
    small.write_bytes(make_png(rows, 0, 8, [0] * 20, width=20))
    cli.fail(
        "filter",
        small,
        "-k",
        "box",
        "--max-pixels",
        "399",
        "-o",
        tmp_path / "o.png",
        mentions="--max-pixels",
    )


# ---------------------------------------------------------------- whole commands


COMMANDS = [
    ["-k", "sobel-vertical", "-p", "same"],
    ["-k", "box:size=5", "-p", "same", "--pad-mode", "reflect"],
    ["-k", "box:size=5", "-p", "same", "--pad-mode", "circular"],
    ["-k", "sobel-horizontal", "-s", "2", "-p", "1", "--pad-mode", "replicate"],
    ["-k", "sobel-vertical", "--gray"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
@pytest.mark.parametrize("colour_type, bits, samples", [(2, 8, 3), (0, 16, 1), (0, 8, 1), (6, 8, 4)])
def test_banded_command_writes_the_bytes_of_the_in_memory_one(
    tmp_path, cli, monkeypatch, args, colour_type, bits, samples
):
    height, width = 203, 37  # several filter bands and decoder bands, none of them even
    _, rows = random_kind(colour_type, bits, samples, height, width, seed=height)
    path = tmp_path / "in.png"
    path.write_bytes(
        make_png(rows, colour_type, bits, [y % 5 for y in range(height)], width=width, idat_pieces=9)
    )
    streamed = tmp_path / "streamed.png"
    whole = tmp_path / "whole.png"
    cli.ok("filter", path, *args, "-o", streamed)
    monkeypatch.setattr(pngread, "unfilter", None)  # Pillow decodes the whole image
    cli.ok("filter", path, *args, "-o", whole)
    assert streamed.read_bytes() == whole.read_bytes()


def test_standard_input_streams_as_a_file(tmp_path):
    _, rows = random_kind(2, 8, 3, 50, 40, seed=8)
    png = make_png(rows, 2, 8, [y % 5 for y in range(50)], width=40)
    path = tmp_path / "in.png"
    path.write_bytes(png)
    command = [sys.executable, "-m", "convcli", "filter", "-", "-k", "sobel-vertical", "-p", "same", "-q"]
    piped = subprocess.run(command + ["-o", str(tmp_path / "piped.png")], input=png, capture_output=True)
    assert piped.returncode == 0, piped.stderr
    filed = subprocess.run(command[:4] + [str(path)] + command[5:] + ["-o", str(tmp_path / "filed.png")])
    assert filed.returncode == 0
    assert (tmp_path / "piped.png").read_bytes() == (tmp_path / "filed.png").read_bytes()
