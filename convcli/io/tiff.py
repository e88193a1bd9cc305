"""The one TIFF decoder for samples Pillow does not give as stored, in memory and in chunks.

:func:`tiff_layout` reads a TIFF's first page (the one image convcli reads from
any TIFF, on both paths; further pages are ignored, as Pillow ignores them) and
:class:`TiffReader` reads any region of it, upright (the Orientation tag applied
as Pillow's ``exif_transpose`` applies it), as the samples are stored: H x W x S,
an alpha sample last.  The in-memory loader reads the whole page through it
(:func:`convcli.io.images.load_image` for int8, uint32, float64, 16-bit colour
...), and the chunked reader reads each block through it, so both give the same
values by construction.

Tiles and strips are read with tifffile alone (no zarr): each block reads the
bytes of the tiles or strips it touches (``os.pread``, so threads share one
descriptor) and decodes them with tifffile's own segment decoder; an
uncompressed image is read row by row, only the columns a block needs.  The
reader is picklable (a path and the layout), opens the file lazily, so each
Dask worker opens its own.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..errors import ConvcliError, describe

# Compressions whose decoding is unique (any decoder gives the same samples), by tag value:
# none, LZW, Adobe deflate, PackBits, deflate, LZMA, Zstandard (two tag values), Pixar deflate.
LOSSLESS = {1, 5, 8, 32773, 32946, 34925, 34926, 50000, 50013}
# A transform per Orientation value (2-8; 1 and unknown values leave the pixels as they are):
# how the stored image is turned upright, as Pillow's ImageOps.exif_transpose turns it.
TURNS = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, -1)[::-1],
    8: lambda a: np.rot90(a, 1),
}


def orient(pixels, orientation: int):
    """H x W x C pixels turned upright by a TIFF/EXIF Orientation value, as Pillow's exif_transpose.

    >>> a = np.arange(6).reshape(2, 3, 1)
    >>> orient(a, 6)[:, :, 0].tolist()  # 90 degrees clockwise
    [[3, 0], [4, 1], [5, 2]]
    """
    turn = TURNS.get(int(orientation))
    return pixels if turn is None else turn(pixels)


def stored_box(orientation: int, size, rows, cols):
    """The stored rows and columns (``(r0, r1), (c0, c1)``) that hold the upright region
    ``rows`` x ``cols`` of an image stored as ``size`` (height, width): :func:`orient` of that
    stored box is the upright region.

    >>> stored_box(6, (4, 5), (0, 2), (1, 3))  # clockwise: upright (r, c) is stored (H-1-c, r)
    ((1, 3), (0, 2))
    """
    height, width = size
    (r0, r1), (c0, c1) = rows, cols
    flip_rows = lambda a, b: (height - b, height - a)  # noqa: E731
    flip_cols = lambda a, b: (width - b, width - a)  # noqa: E731
    box = {
        2: lambda: ((r0, r1), flip_cols(c0, c1)),
        3: lambda: (flip_rows(r0, r1), flip_cols(c0, c1)),
        4: lambda: (flip_rows(r0, r1), (c0, c1)),
        5: lambda: ((c0, c1), (r0, r1)),
        6: lambda: (flip_rows(c0, c1), (r0, r1)),
        7: lambda: (flip_rows(c0, c1), flip_cols(r0, r1)),
        8: lambda: ((c0, c1), flip_cols(r0, r1)),
    }.get(int(orientation))
    return ((r0, r1), (c0, c1)) if box is None else box()


@contextmanager
def quiet_tifffile_log():
    """tifffile logs what it skips in a malformed file (a tag it cannot read) as warnings on
    its logger; like Pillow's notes on skipped metadata they are harmless (the pixels decode,
    or reading raises), so the records of this thread are dropped while the block runs."""
    import logging

    thread = threading.get_ident()
    logger = logging.getLogger("tifffile")

    def drop(record):
        return record.thread != thread

    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def import_tifffile(where: str, why: str = "TIFF in chunks needs tifffile"):
    try:
        import tifffile
    except ImportError:
        raise ConvcliError(f"{where}: {why}: pip install 'convcli[dask]'") from None
    return tifffile


@dataclass(frozen=True)
class TiffLayout:
    """What the reader needs to know of a TIFF's first page, read once from its tags."""

    height: int  # as stored, before the Orientation tag turns it
    width: int
    samples: int  # per pixel, an alpha sample included
    dtype: str  # of a sample as stored (byte order included), e.g. '<u2'
    alpha: bool  # the last sample is alpha (an extra sample marked associated or unassociated)
    orientation: int  # the Orientation tag, 1 when absent
    photometric: int
    extrasamples: tuple
    planar: bool  # samples stored as separate planes (PlanarConfiguration 2)
    segment: tuple[int, int]  # rows and columns of one tile or strip
    compression: int
    fill_order: int
    contiguous_offset: int | None  # uncompressed, stored in one run of bytes from here
    segment_bytes: int  # one tile or strip decoded, plus its stored bytes
    decodable: bool  # tifffile decodes these segments on this machine (codec and predictor)

    @property
    def shape(self) -> tuple[int, int, int]:
        """H x W x S upright: the Orientation tag swaps the sides for values 5-8."""
        if self.orientation in (5, 6, 7, 8):
            return self.width, self.height, self.samples
        return self.height, self.width, self.samples

    @property
    def lossless(self) -> bool:
        return self.compression in LOSSLESS

    def plain(self) -> bool:
        """Whether Pillow, reading this page, gives exactly the stored samples in this order
        (gray, gray + alpha, RGB, RGBA with unassociated alpha; whole bytes, lossless, no
        photometric conversion), so that this reader and Pillow agree on every value."""
        ordinary = {
            (1, 1, ()),
            (1, 2, (2,)),
            (2, 3, ()),
            (2, 4, (2,)),
        }
        return (
            (self.photometric, self.samples, self.extrasamples) in ordinary
            and self.fill_order == 1
            and self.lossless
            and np.dtype(self.dtype).itemsize in (1, 2, 4, 8)
        )


def tiff_layout(path, where: str) -> TiffLayout:
    """The layout of ``path``'s first page; a ConvcliError naming ``where`` for a file tifffile
    cannot read, or a page that is not one 2-D image of integer or float samples."""
    tifffile = import_tifffile(where)
    if hasattr(path, "seek"):
        path.seek(0)
    try:
        with quiet_tifffile_log(), tifffile.TiffFile(path) as tif:
            page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
            layout = _page_layout(tifffile, tif, page, where)
    except ConvcliError:
        raise
    except Exception as exc:  # noqa: BLE001  (malformed files raise many kinds of errors)
        raise ConvcliError(f"{where}: not a TIFF tifffile can read ({describe(exc)})") from None
    return layout


def _page_layout(tifffile, tif, page, where: str) -> TiffLayout:
    if page.axes not in ("YX", "YXS", "SYX") or int(getattr(page, "tiledepth", 1) or 1) != 1:
        raise ConvcliError(f"{where}: not one 2-D image (a TIFF of axes {page.axes})")
    height, width, samples = int(page.imagelength), int(page.imagewidth), int(page.samplesperpixel)
    if height == 0 or width == 0:
        raise ConvcliError(f"{where}: is empty ({width}x{height} pixels)")
    if page.dtype is None:
        raise ConvcliError(
            f"{where}: samples of {page.bitspersample} bits (SampleFormat {int(page.sampleformat)}) "
            f"cannot be read"
        )
    dtype = np.dtype(page.dtype).newbyteorder(tif.byteorder)
    if dtype.kind not in "buif":
        raise ConvcliError(f"{where}: samples of type {dtype} cannot be read (integers or floats only)")
    extras = tuple(int(e) for e in (page.extrasamples or ()))
    planar = page.planarconfig == 2 and samples > 1
    if page.is_tiled:
        segment = (int(page.tilelength), int(page.tilewidth))
    else:
        segment = (min(int(page.rowsperstrip), height), width)
    compression, predictor = int(page.compression), int(page.predictor)
    try:  # the codec and the predictor (floating-point needs imagecodecs) must both be here
        decodable = (compression == 1 or tifffile.TIFF.DECOMPRESSORS[compression] is not None) and (
            predictor == 1 or tifffile.TIFF.UNPREDICTORS[predictor] is not None
        )
    except (KeyError, ValueError, NotImplementedError, ImportError):
        decodable = False
    contiguous = (
        compression == 1 and not planar and page.is_contiguous and page.is_memmappable and dtype.kind != "b"
    )
    stored = max((int(n) for n in page.databytecounts), default=0)
    per_segment = segment[0] * segment[1] * (1 if planar else samples) * dtype.itemsize
    return TiffLayout(
        height=height,
        width=width,
        samples=samples,
        dtype=dtype.str,
        alpha=samples > 1 and bool(extras) and extras[-1] in (1, 2),
        orientation=int(page.tags.valueof(274, 1) or 1),
        photometric=int(page.photometric),
        extrasamples=extras,
        planar=planar,
        segment=segment,
        compression=compression,
        fill_order=int(page.fillorder),
        contiguous_offset=int(page.dataoffsets[0]) if contiguous else None,
        segment_bytes=0 if contiguous else per_segment + stored,
        decodable=decodable,
    )


class TiffReader:
    """Any region of a TIFF's first page, upright, as stored (H x W x S, native byte order).

    ``reader[r0:r1, c0:c1]`` reads the tiles or strips that region touches (or, uncompressed,
    its columns of each row) and nothing else.  Picklable: a path and the layout; the file is
    opened on the first read in each process, and :meth:`close` closes it.

    >>> import tempfile, tifffile
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "tiles.tif")
    >>> stored = np.arange(40 * 48, dtype=np.uint16).reshape(40, 48)
    >>> tifffile.imwrite(path, stored, tile=(16, 16), compression="zlib")
    >>> reader = TiffReader(path, tiff_layout(path, "x"))
    >>> reader.shape, bool((reader[10:30, 5:40][:, :, 0] == stored[10:30, 5:40]).all())
    ((40, 48, 1), True)
    >>> reader.close(); folder.cleanup()
    """

    def __init__(self, path, layout: TiffLayout):
        # A file in memory (standard input's BytesIO) is read through a view of its bytes, never
        # copied whole, and never pickled.
        self._memory = path if hasattr(path, "getbuffer") else None
        self._bytes = path.getbuffer() if self._memory is not None else None
        self.path = "<stdin>" if self._bytes is not None else str(path)
        self.layout, self.shape, self.ndim = layout, layout.shape, 3
        self.dtype = np.dtype(layout.dtype).newbyteorder("=")
        self._open()

    def _open(self):
        self._lock = threading.Lock()
        self._fd = None
        self._tif = None

    def __getstate__(self):
        if self._bytes is not None:
            raise TypeError("a TiffReader of bytes in memory is not sent to other processes")
        return {"path": self.path, "layout": self.layout, "shape": self.shape, "dtype": self.dtype}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.ndim, self._bytes, self._memory = 3, None, None
        self._open()

    def close(self):
        with self._lock:
            if self._tif is not None:
                self._tif.close()
            if self._fd is not None:
                os.close(self._fd)
            if self._bytes is not None:
                self._bytes.release()  # the BytesIO may be resized again
            self._fd = self._tif = self._bytes = None

    def _tiff(self):
        """The tifffile page's decoder, opened once per process (for compressed or tiled pages)."""
        with self._lock:
            if self._tif is None:
                import tifffile

                if self._memory is not None:
                    self._memory.seek(0)  # tifffile reads a file object from where it stands
                with quiet_tifffile_log():
                    self._tif = tifffile.TiffFile(self._memory if self._memory is not None else self.path)
            return self._tif

    def _pread(self, count: int, offset: int) -> bytes:
        """``count`` bytes from ``offset``, or fewer where the file ends (a count a damaged file
        declares is never allocated beyond the file's end)."""
        if self._memory is not None:
            return bytes(self._bytes[offset : offset + count])
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
                self._end = os.fstat(self._fd).st_size
            fd = self._fd
        return os.pread(fd, max(0, min(count, self._end - offset)), offset)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        rows, cols = (key + (slice(None), slice(None)))[:2]
        r0, r1, step_r = rows.indices(self.shape[0])
        c0, c1, step_c = cols.indices(self.shape[1])
        if step_r != 1 or step_c != 1:
            raise ValueError("TiffReader reads regions with step 1 only")
        r1, c1 = max(r0, r1), max(c0, c1)
        layout = self.layout
        (sr0, sr1), (sc0, sc1) = stored_box(
            layout.orientation, (layout.height, layout.width), (r0, r1), (c0, c1)
        )
        try:
            block = self.read_stored(sr0, sr1, sc0, sc1)
        except ConvcliError:
            raise
        except Exception as exc:  # noqa: BLE001  (a damaged tile or strip raises many kinds of errors)
            raise ConvcliError(f"input {self.path!r}: cannot be decoded ({describe(exc)})") from None
        return np.ascontiguousarray(orient(block, layout.orientation))

    def read_stored(self, r0: int, r1: int, c0: int, c1: int):
        """Stored rows ``r0..r1`` and columns ``c0..c1`` (before orientation), H' x W' x S."""
        layout = self.layout
        out = np.zeros((r1 - r0, c1 - c0, layout.samples), dtype=np.dtype(layout.dtype))
        if out.size and self.layout.contiguous_offset is not None:
            self._read_rows(out, r0, c0)
        elif out.size:
            with quiet_tifffile_log():
                self._read_segments(out, r0, c0)
        return out.astype(self.dtype, copy=False)

    def _read_rows(self, out, r0: int, c0: int):
        layout = self.layout
        pixel = layout.samples * out.dtype.itemsize
        row_bytes = layout.width * pixel
        start = layout.contiguous_offset + c0 * pixel
        span = out.shape[1] * pixel
        for i in range(out.shape[0]):
            data = self._pread(span, start + (r0 + i) * row_bytes)
            if len(data) != span:
                raise ConvcliError(f"input {self.path!r}: the TIFF ends before its last row")
            out[i] = np.frombuffer(data, dtype=out.dtype).reshape(out.shape[1:])

    def _read_segments(self, out, r0: int, c0: int):
        layout = self.layout
        tif = self._tiff()
        page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
        seg_h, seg_w = layout.segment
        across = -(-layout.width // seg_w)
        down = -(-layout.height // seg_h)
        planes = layout.samples if layout.planar else 1
        r1, c1 = r0 + out.shape[0], c0 + out.shape[1]
        offsets, counts = page.dataoffsets, page.databytecounts
        decode = page.decode
        for plane in range(planes):
            for ty in range(r0 // seg_h, min(down, -(-r1 // seg_h))):
                for tx in range(c0 // seg_w, min(across, -(-c1 // seg_w))):
                    index = plane * across * down + ty * across + tx
                    count = int(counts[index]) if index < len(counts) else 0
                    if count == 0:
                        continue  # an empty segment reads as zeros, as tifffile reads it
                    data = self._pread(count, int(offsets[index]))
                    segment, _, _ = decode(data, index, jpegtables=page.jpegtables)
                    if segment is None:
                        continue
                    segment = segment.reshape(segment.shape[-3:])  # rows, columns, samples
                    top, left = ty * seg_h, tx * seg_w
                    a0, a1 = max(r0, top), min(r1, top + segment.shape[0])
                    b0, b1 = max(c0, left), min(c1, left + segment.shape[1])
                    if a1 <= a0 or b1 <= b0:
                        continue
                    part = segment[a0 - top : a1 - top, b0 - left : b1 - left]
                    target = slice(plane, plane + 1) if layout.planar else slice(None)
                    out[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0, target] = part


def read_tiff(path, layout: TiffLayout):
    """The whole first page, upright, as stored (H x W x S, native byte order)."""
    reader = TiffReader(path, layout)
    try:
        return reader[:, :]
    finally:
        reader.close()
