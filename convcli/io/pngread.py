"""A streaming PNG decoder: rows come out band by band, never the whole image at once.

Pillow decodes a PNG whole (4 bytes a pixel, then convcli's copy); at 7680x4320 that is
most of a filter run's memory.  This decoder reads the chunks itself, inflates the IDAT
stream piece by piece (ISA-L's inflate when the ``isal`` package is there, else zlib's;
both release the GIL) and reverses each row's filter in compiled code
(``convcli/io/_pngrows.c``: Average and Paeth depend on the byte just decoded to their left,
so they cannot be vectorised in numpy).  It takes non-interlaced PNGs of 8 or 16 bits per
sample: gray, RGB, RGBA, 8-bit gray+alpha, and 8-bit palette images (looked up in PLTE, with
tRNS as alpha).  Everything else (interlaced, 1/2/4-bit, an eXIf chunk, whose orientation
Pillow applies) is left to Pillow: :func:`open_png` returns None for it, and so it does when
the compiled unfilterer was not built (it is an optional extension).

Samples come out as Pillow gives them, so that both paths load identical pixels: 16-bit gray
as uint16, 16-bit RGB and RGBA cut to their high byte, alpha split off.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections import deque

import numpy as np

from ..errors import ConvcliError

try:
    from ._pngrows import unfilter
except ImportError:  # the optional extension was not built: Pillow decodes every PNG
    unfilter = None

try:
    from isal import isal_zlib as _inflate_module  # about 2x zlib's inflate, 10x its CRC-32
except ImportError:
    _inflate_module = zlib
_crc32 = _inflate_module.crc32

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Samples per pixel by colour type: gray, RGB, palette, gray+alpha, RGBA.
_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_READ_BYTES = 1 << 20  # compressed bytes read from the file at a time
_PIECE_BYTES = 1 << 16  # compressed bytes given to the inflater at a time
BAND_ROWS = 32  # rows inflated and unfiltered per step
_ORIENTING_TEXT = (b"Raw profile type exif", b"XML:com.adobe.xmp")


class PngHeader:
    """What a PNG's chunks say, read without inflating anything: IHDR's fields, the palette
    and its alpha (tRNS), and where the first IDAT chunk starts (``idat``: the offset of its
    length field; the image data is that chunk and the IDAT chunks right after it)."""

    def __init__(self, width, height, bits, colour_type, interlace, palette, trns, idat, exif):
        self.width, self.height, self.bits = width, height, bits
        self.colour_type, self.interlace = colour_type, interlace
        self.palette, self.trns, self.idat, self.exif = palette, trns, idat, exif
        self.samples = _SAMPLES[colour_type]
        self.stride = (width * self.samples * bits + 7) // 8  # bytes in a row, without its filter byte
        self.bpp = max(1, self.samples * bits // 8)  # the filters' distance to the left neighbour

    @property
    def streams(self) -> bool:
        """Whether this decoder takes the image (else Pillow decodes it)."""
        if self.interlace or self.exif:
            return False
        if self.colour_type == 3:
            return self.bits == 8 and self.palette is not None
        if self.colour_type == 4 and self.bits == 16:
            return False  # Pillow reads it as RGBA, gray repeated: left to Pillow, so unchanged
        return self.bits in (8, 16)

    @property
    def has_alpha(self) -> bool:
        return self.colour_type in (4, 6) or (self.colour_type == 3 and self.trns is not None)

    @property
    def channels(self) -> int:
        """Colour channels as the loader counts them (alpha apart)."""
        if self.colour_type == 3:
            return 3
        return self.samples - (1 if self.colour_type in (4, 6) else 0)


def _fail(where: str, reason: str) -> ConvcliError:
    return ConvcliError(f"{where}: cannot be decoded ({reason})")


def read_header(handle, where: str) -> PngHeader:
    """The chunks of a PNG file (``handle`` at its start, seekable), checked for their order
    and for the file's end, their payloads read only for IHDR, PLTE, tRNS."""
    if handle.read(8) != SIGNATURE:
        raise _fail(where, "not a PNG signature")
    ihdr = palette = trns = None
    idat, exif = None, False
    offset = 8
    handle.seek(0, 2)
    size = handle.tell()
    handle.seek(offset)
    while offset + 12 <= size:
        length, kind = struct.unpack(">I4s", handle.read(8))
        if length > 2**31 - 1 or offset + 12 + length > size:
            if idat is not None and kind != b"IDAT":
                break  # cut short after the image data: Pillow reads such a file too
            raise _fail(
                where, f"the {kind.decode('latin-1')!r} chunk runs past the end of the file: truncated"
            )
        if kind in (b"IHDR", b"PLTE", b"tRNS"):
            data = handle.read(length)
            (crc,) = struct.unpack(">I", handle.read(4))
            if zlib.crc32(data, zlib.crc32(kind)) != crc:
                raise _fail(where, f"the {kind.decode('latin-1')} chunk fails its CRC check")
            if kind == b"IHDR":
                if length != 13 or offset != 8:
                    raise _fail(where, "IHDR is not the 13-byte first chunk")
                ihdr = struct.unpack(">IIBBBBB", data)
            elif kind == b"PLTE":
                palette = data
            else:
                trns = data
        else:
            skip = length + 4
            if kind == b"IDAT":
                idat = offset if idat is None else idat  # only the first: a file may hold millions
            elif kind == b"eXIf":
                exif = True
            elif kind in (b"tEXt", b"zTXt", b"iTXt"):
                # Pillow takes an orientation from these two text keys too (Image.getexif).
                head = handle.read(min(length, 80))
                skip -= len(head)
                exif = exif or head.split(b"\0", 1)[0] in _ORIENTING_TEXT
            elif kind == b"IEND":
                break
            handle.seek(skip, 1)
        offset += 12 + length
    if ihdr is None:
        raise _fail(where, "no IHDR chunk")
    width, height, bits, colour_type, _, _, interlace = ihdr
    if colour_type not in _SAMPLES or width == 0 or height == 0:
        raise _fail(where, f"an IHDR of colour type {colour_type}, {width}x{height}")
    if idat is None:
        raise _fail(where, "no IDAT chunk: truncated")
    return PngHeader(width, height, bits, colour_type, interlace, palette, trns, idat, exif)


class PngRows:
    """The unfiltered byte rows of a PNG, top to bottom, band by band (:meth:`bands`)."""

    def __init__(self, opener, header: PngHeader, where: str):
        self.opener, self.header, self.where = opener, header, where

    def bands(self, band_rows: int = BAND_ROWS):
        """Yield ``(first row, rows)``: uint8 arrays of ``band_rows`` x stride unfiltered bytes
        (fewer at the bottom).  Each IDAT chunk's CRC is checked as it is read."""
        header, where = self.header, self.where
        stride = header.stride
        row_bytes = stride + 1
        inflater = _inflate_module.decompressobj()
        pending = b""  # inflated bytes not yet unfiltered
        previous = b""
        first = 0
        with self.opener() as handle:
            chunks = self._compressed(handle)
            tail = b""
            while first < header.height:
                count = min(band_rows, header.height - first)
                want = count * row_bytes
                while len(pending) < want:
                    if not tail:
                        tail = next(chunks, b"")
                    try:
                        out = inflater.decompress(tail, want - len(pending))
                    except Exception as exc:  # zlib.error, isal_zlib.error
                        raise _fail(where, f"corrupt image data: {exc}") from None
                    given, tail = tail, inflater.unconsumed_tail
                    if not out and not given:  # no input left, and no output held in the inflater
                        if inflater.eof:
                            raise _fail(where, "the image data ends before the last row")
                        raise _fail(where, "the image data is truncated")
                    if not pending and len(out) == want:
                        pending = out  # the whole band in one piece: no copy
                    else:
                        if not isinstance(pending, bytearray):
                            pending = bytearray(pending)
                        pending += out
                rows = np.empty((count, stride), dtype=np.uint8)
                try:
                    unfilter(pending, rows, previous, header.bpp)  # pending holds exactly `want` bytes
                except ValueError as exc:
                    raise _fail(where, f"bad row filter: {_shift_row(str(exc), first)}") from None
                pending = b""
                previous = rows[-1].tobytes()
                yield first, rows
                first += count

    def _compressed(self, handle):
        """The IDAT payloads in pieces of at most 64 KiB, each chunk's CRC checked at its end.

        The inflater copies whatever input it leaves unconsumed (to keep within the rows
        asked for) at every call: small pieces keep that copy small.
        """
        handle.seek(self.header.idat)
        while True:
            head = handle.read(8)
            if len(head) < 8 or head[4:] != b"IDAT":
                return  # the image data ends with the first chunk of another kind
            (length,) = struct.unpack(">I", head[:4])
            crc = _crc32(head[4:])
            left = length
            while left:
                block = handle.read(min(left, _READ_BYTES))
                if not block:
                    raise _fail(self.where, "the file is truncated")
                crc = _crc32(block, crc)
                left -= len(block)
                view = memoryview(block)
                for start in range(0, len(block), _PIECE_BYTES):
                    yield view[start : start + _PIECE_BYTES]
            (stored,) = struct.unpack(">I", handle.read(4).rjust(4, b"\0"))
            if crc != stored:
                raise _fail(self.where, "an IDAT chunk fails its CRC check")


def _shift_row(message: str, first: int) -> str:
    """ "row 3 has ..." of a band starting at ``first`` as the image's row number."""
    words = message.split(" ", 2)
    if len(words) == 3 and words[0] == "row" and words[1].isdigit():
        return f"row {int(words[1]) + first} {words[2]}"
    return message


def samples(header: PngHeader, rows):
    """Unfiltered byte rows as H' x W x C samples with alpha apart: ``(pixels, alpha or None)``,
    as Pillow loads them (16-bit gray as uint16; 16-bit RGB and RGBA cut to their high byte;
    palette indexes looked up, tRNS giving the alpha)."""
    count = rows.shape[0]
    width = header.width
    if header.colour_type == 3:
        index = rows.reshape(count, width)
        table = np.zeros((256, 4), dtype=np.uint8)
        table[:, 3] = 255
        colours = np.frombuffer(header.palette[: len(header.palette) // 3 * 3], dtype=np.uint8)
        colours = colours.reshape(-1, 3)[:256]
        table[: len(colours), :3] = colours
        if header.trns is not None:
            alphas = np.frombuffer(header.trns, dtype=np.uint8)[:256]
            table[: len(alphas), 3] = alphas
            looked = table[index]
            return looked[:, :, :3], looked[:, :, 3]
        return table[:, :3][index], None
    values = rows.reshape(count, width, header.samples, header.bits // 8)
    if header.bits == 16:
        if header.colour_type == 0:
            return rows.view(">u2").reshape(count, width, 1).astype(np.uint16), None
        values = values[..., 0]  # Pillow reads 16-bit RGB and RGBA as 8-bit
    else:
        values = values[..., 0]
    if header.colour_type in (4, 6):
        return values[:, :, :-1], values[:, :, -1]
    return values, None


def depth_and_scale(header: PngHeader) -> tuple[str, float]:
    """The loader's depth and scale for these samples (see ``sample_scale``)."""
    if header.bits == 16 and header.colour_type == 0:
        return "16", 65535.0
    return "8", 255.0


def decode_whole(source: PngRows):
    """The whole image: ``(pixels H x W x C, alpha H x W or None)``."""
    header = source.header
    pixels = alpha = None
    for first, rows in source.bands(256):
        part, part_alpha = samples(header, rows)
        if pixels is None:
            pixels = np.empty((header.height,) + part.shape[1:], dtype=part.dtype)
            if part_alpha is not None:
                alpha = np.empty((header.height, header.width), dtype=np.uint8)
        pixels[first : first + part.shape[0]] = part
        if alpha is not None:
            alpha[first : first + part.shape[0]] = part_alpha
    return pixels, alpha


class StreamedPixels:
    """The H x W x C samples of a PNG without alpha, decoded as they are asked for.

    Indexing with rows (a slice or an integer array, as ``LoadedImage.rows`` does) decodes
    forward to the last row asked for and keeps only the rows from the first row asked for on:
    a banded filter that asks for its bands top to bottom (halo rows included) holds a few
    bands, whatever the image's size.  Asking for a row above those kept reads the file again
    from the top (circular padding does, once).  ``np.asarray`` decodes the whole image.
    """

    def __init__(self, source: PngRows):
        self.source = source
        header = source.header
        self.dtype = np.dtype(np.uint16 if depth_and_scale(header)[0] == "16" else np.uint8)
        self.shape = (header.height, header.width, header.channels)
        self.ndim = 3
        self._lock = threading.Lock()
        self._bands = None  # the decoder's generator
        self._next = 0  # the first row it has yet to give
        self._kept = deque()  # (first row, samples) of the rows kept, top to bottom
        self._whole = None

    def __array__(self, dtype=None, copy=None):
        whole = self[slice(None)]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def __getitem__(self, index):
        height = self.shape[0]
        with self._lock:
            if isinstance(index, slice) and index == slice(None):
                if self._whole is None:
                    self._whole = decode_whole(self.source)[0]
                return self._whole
            if self._whole is not None:
                return self._whole[index]
            rows = np.arange(height)[index] if isinstance(index, slice) else np.asarray(index)
            if rows.size == 0:
                return np.empty((0,) + self.shape[1:], dtype=self.dtype)
            low, high = int(rows.min()), int(rows.max()) + 1
            if low < 0 or high > height:
                raise IndexError(f"rows {low}..{high - 1} outside 0..{height - 1}")
            if self._bands is None or low < (self._kept[0][0] if self._kept else self._next):
                self._kept.clear()  # asked above what is kept: read again from the top
                self._bands, self._next = self.source.bands(), 0
            self._decode(low, high)
            start = self._kept[0][0]
            parts = [band for first, band in self._kept if first < high]
            held = parts[0] if len(parts) == 1 else np.concatenate(parts)
            return held[rows - start]

    def _decode(self, low: int, high: int) -> None:
        """Decode on to row ``high`` (excluded), dropping the bands wholly above row ``low``."""
        header = self.source.header
        while True:
            while self._kept and self._kept[0][0] + len(self._kept[0][1]) <= low:
                self._kept.popleft()
            if self._next >= high:
                return
            first, rows = next(self._bands)
            self._kept.append((first, samples(header, rows)[0]))
            self._next = first + len(rows)


def open_png(source, where: str, check_header=None):
    """The PNG at ``source`` (a path, or a seekable binary stream) as this decoder reads it:
    ``(header, PngRows)``, or None when it is not a PNG this decoder takes (Pillow then does).

    ``check_header(header)`` runs on the header before anything is inflated (the pixel and
    memory limits).  A PNG whose chunks are cut short or damaged raises a ConvcliError.
    """
    if unfilter is None:
        return None
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):

        def opener():
            return open(source, "rb")

    else:
        start = source.tell()

        class _Borrowed:  # the caller's stream, rewound, and left open
            def __enter__(self):
                source.seek(start)
                return source

            def __exit__(self, *exc):
                source.seek(start)  # as found, for Pillow when this decoder leaves the file to it
                return False

        def opener():
            return _Borrowed()

    with opener() as handle:
        if handle.read(8) != SIGNATURE:
            return None
        handle.seek(handle.tell() - 8)
        header = read_header(handle, where)
    if not header.streams:
        return None
    if check_header is not None:
        check_header(header)
    return header, PngRows(opener, header, where)
