"""A PNG writer that compresses row bands in parallel threads.

Pillow's PNG encoder tries every row filter on every row and compresses on
one core: on a 3840x2160 RGB image it takes about 1.6 s at level 1 here.
This writer applies one filter with numpy (``Up``: each row minus the row
above, which suits photographs and filter responses alike), band by band,
compresses each band in a thread of its own (zlib and ISA-L release the GIL),
and joins the raw deflate streams the way pigz does (with ISA-L's deflate when the ``isal`` package
is installed, see :func:`_deflate_module`): every band but the last ends with a sync flush, so
the concatenation is one valid zlib stream.  The Adler-32 checksum of the
whole is combined from the bands' checksums.
"""

from __future__ import annotations

import struct
import zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types by channel count: gray, gray+alpha, RGB, RGBA.
_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}
_FILTER_UP = 2
_BAND_BYTES = 4 << 20  # about 4 MiB of filtered data per compression task


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def filter_up(rows, previous=None):
    """PNG filter type 2 (Up) on a band of byte rows: a filter-type byte, then each row
    minus the row above (``previous`` for the band's first row, zeros at the top)."""
    import numpy as np

    out = np.empty((rows.shape[0], rows.shape[1] + 1), dtype=np.uint8)
    out[:, 0] = _FILTER_UP
    if previous is None:
        out[0, 1:] = rows[0]
    else:
        np.subtract(rows[0], previous, out=out[0, 1:])
    np.subtract(rows[1:], rows[:-1], out=out[1:, 1:])  # wraps modulo 256, as PNG wants
    return out


def _deflate_module(level: int):
    """ISA-L's deflate for levels 1-3 when the isal package is there, else the stdlib's zlib.

    ISA-L at its level 1 runs about 6x faster than zlib at level 1 here and
    compresses filter responses as well as zlib at level 6; levels 4-9 and 0
    (stored) use zlib.
    """
    if 1 <= level <= 3:
        try:
            from isal import isal_zlib

            return isal_zlib, level
        except ImportError:
            pass
    return zlib, level


def adler32_combine(first: int, second: int, second_length: int) -> int:
    """The Adler-32 of two pieces joined, from theirs (zlib's adler32_combine)."""
    base = 65521
    rem = second_length % base
    sum1 = first & 0xFFFF
    sum2 = (rem * sum1) % base
    sum1 = (sum1 + (second & 0xFFFF) + base - 1) % base
    sum2 = (sum2 + (first >> 16) + (second >> 16) + base - rem) % base
    return sum1 | (sum2 << 16)


def _band(rows, previous, level: int, last: bool):
    """Filter and deflate one band: (raw deflate bytes, Adler-32 of the filtered bytes, length)."""
    filtered = filter_up(rows, previous).reshape(-1)
    module, module_level = _deflate_module(level)
    compressor = module.compressobj(module_level, module.DEFLATED, -15)
    data = compressor.compress(filtered)
    data += compressor.flush(module.Z_FINISH if last else module.Z_SYNC_FLUSH)
    return data, zlib.adler32(filtered), filtered.size


def _byte_rows(pixels):
    import numpy as np

    height = pixels.shape[0]
    if pixels.dtype == np.uint16:  # 16-bit samples are stored big-endian
        pixels = pixels.astype(">u2")
    return np.ascontiguousarray(pixels).view(np.uint8).reshape(height, -1)


def write_png(handle, pixels, level: int = 1, threads: int | None = None) -> None:
    """Write an H x W (x C) uint8 or uint16 array (C = 1..4) to ``handle`` as PNG.

    Each band becomes one IDAT chunk, written as soon as it and the bands
    before it are compressed; only the bands in flight are held in memory.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    height, width, channels = pixels.shape
    if pixels.dtype not in (np.uint8, np.uint16) or channels not in _COLOUR_TYPE:
        raise ValueError(f"cannot write {pixels.dtype} with {channels} channels as PNG")
    depth = 16 if pixels.dtype == np.uint16 else 8
    rows = _byte_rows(pixels)
    per_band = max(1, _BAND_BYTES // rows.shape[1])
    starts = list(range(0, height, per_band))
    jobs = [(rows[a: a + per_band], rows[a - 1] if a else None, level, a == starts[-1])
            for a in starts]
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    handle.write(_SIGNATURE)
    handle.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth,
                                             _COLOUR_TYPE[channels], 0, 0, 0)))
    # zlib header: deflate with a 32 KiB window; FLEVEL 0 (fastest) is only a hint.
    adler, prefix = 1, b"\x78\x01"
    with ThreadPoolExecutor(max(1, min(threads, len(jobs)))) as pool:
        for data, band_adler, length in pool.map(lambda job: _band(*job), jobs):
            adler = adler32_combine(adler, band_adler, length)
            handle.write(_chunk(b"IDAT", prefix + data))
            prefix = b""
    handle.write(_chunk(b"IDAT", struct.pack(">I", adler)))
    handle.write(_chunk(b"IEND", b""))


def encode_png(pixels, level: int = 1, threads: int | None = None) -> bytes:
    """PNG bytes for an H x W (x C) uint8 or uint16 array (see :func:`write_png`)."""
    import io

    buffer = io.BytesIO()
    write_png(buffer, pixels, level, threads)
    return buffer.getvalue()
