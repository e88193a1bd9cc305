"""Reading images into float arrays and writing results back, atomically.

Pixels are read as float32 in H x W x C by one mapping (:func:`sample_scale`):
an integer sample over its type's largest value (uint8 / 255, uint16 / 65535,
int16 / 32767, ...), floats and ``.npy`` arrays as they are; NaN and infinity
are refused (:func:`check_values`).  Alpha is split off on load (it is carried
over, never filtered).
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..constants import DEFAULT_MAX_PIXELS, DEPTHS, VALUE_MAPS
from ..constants import OUTPUT_FORMATS as FORMATS
from ..errors import ConvcliError, describe
from ..signals import committed, deferred
from .npy import NPY_MAGIC
from .tiff import quiet_tifffile_log

if TYPE_CHECKING:
    from collections.abc import Callable


def parse_bytes(text: str, option: str = "--max-memory") -> int:
    """``512M``, ``4G``, ``1.5GiB``, ``1000000`` -> bytes (K/M/G/T are powers of 1024)."""
    import re

    from ..geometry.sizes import quote

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    if not match or len(match.group(1)) > 30 or float(match.group(1)) <= 0:
        raise ConvcliError(f"{option}: expected a size such as 512M or 4G, got {quote(text)}")
    scale = 1024 ** " KMGT".index(match.group(2).upper() or " ")
    size = float(match.group(1)) * scale
    if size > MAX_BYTES:
        raise ConvcliError(f"{option}: at most {MAX_BYTES // 2**50:,} PiB, got {quote(text)}")
    return int(size)


MAX_BYTES = 2**60  # the largest --max-memory
# Decoding with Pillow: its buffer (up to 4 bytes a pixel), a converted copy, the numpy copy.
PILLOW_DECODE_BYTES = 12


LUMA = (0.299, 0.587, 0.114)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def sample_scale(dtype, where: str) -> tuple[str, float]:
    """The one mapping from an image file's samples to values, ``(depth, scale)``: a value is
    ``stored / scale``.  The in-memory loader and the chunked reader both take it from here.

    Integers are divided by their type's largest value, so 0 stays 0, the largest value is 1,
    and signed types keep their sign (the smallest is a little below -1: -128/127 for int8):

    >>> [sample_scale(t, "x")[1] for t in ("uint8", "uint16", "uint32", "int8", "int16", "int32")]
    [255.0, 65535.0, 4294967295.0, 127.0, 32767.0, 2147483647.0]

    Floats are taken as stored (scale 1); bool (a 1-bit image) is 0 or 1.  The depth is what an
    output defaults to (:func:`choose_depth`): ``"8"`` and ``"16"`` for uint8 (and bool) and
    uint16, ``"float"`` for every other type, whose values can be negative or finer than 16 bits.

    >>> sample_scale("uint16", "x"), sample_scale("int8", "x"), sample_scale("float64", "x")
    (('16', 65535.0), ('float', 127.0), ('float', 1.0))

    Other types (complex, text) raise a ConvcliError naming ``where``.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return "8", 1.0
    if dtype.kind in "iu":
        depth = {"u1": "8", "u2": "16"}.get(f"{dtype.kind}{dtype.itemsize}", "float")
        return depth, float(np.iinfo(dtype).max)
    if dtype.kind == "f":
        return "float", 1.0
    raise ConvcliError(f"{where}: samples of type {dtype} cannot be read (integers or floats only)")


def check_values(stored, where: str) -> None:
    """The one rule for stored values, in every input format (``.npy``, TIFF, ``.zarr``, in
    memory or in chunks): NaN and infinity are refused, and so are finite values float32 cannot
    hold (a float64 beyond about 3.4e38), with one line naming ``where``.  Integers always pass.
    """
    stored = np.asarray(stored)
    if stored.dtype.kind != "f" or stored.size == 0:
        return
    if not np.isfinite(stored).all():
        raise ConvcliError(f"{where}: holds NaN or infinite values")
    if stored.dtype.itemsize > 4 and (stored.max() > FLOAT32_MAX or stored.min() < -FLOAT32_MAX):
        raise ConvcliError(f"{where}: holds values beyond float32's range (about ±3.4e38)")


def to_float(stored, scale: float, gray):
    """Stored pixels (H x W x C) as float32 values: divided by ``scale`` (see :func:`sample_scale`),
    and, with ``gray``, converted to one channel when there are three or more: ``"mean"`` is
    ``(R + G + B) / 3``, ``"luma"`` (or True) ``0.299 R + 0.587 G + 0.114 B``."""
    part = np.asarray(stored, dtype=np.float32)
    if scale != 1:
        part *= np.float32(1.0 / scale)
    if gray and part.shape[2] >= 3:
        # Element by element, in one order: a matrix product sums in an order that depends on
        # the array's shape, so a block of an image would differ from the whole in the last bit.
        weights = (1 / 3, 1 / 3, 1 / 3) if gray == "mean" else LUMA
        red, green, blue = (part[:, :, i] * np.float32(w) for i, w in enumerate(weights))
        part = (red + green + blue)[:, :, None]
    return part


@dataclass
class LoadedImage:
    """Pixels as stored (H x W x C: uint8, uint16, float32, or another integer or float type
    from a TIFF) and how to read them as floats (``raw / scale``, see :func:`sample_scale`).

    ``data`` converts the whole image to float32 once; :meth:`rows` converts
    only some rows, so a banded pipeline never holds a float copy of the image.
    """

    raw: object  # H x W x C array as stored (uint8, uint16, float32, ...), alpha split off
    scale: float  # raw / scale gives the values (sample_scale: 255 for uint8, 32767 for int16, ...)
    alpha: object | None  # H x W alpha as stored, or None
    depth: str  # "8", "16" or "float": what the source held
    format: str
    gray: bool | str = False  # convert to one channel when read: "luma" (or True), "mean"
    channel_axis: bool = False  # an H x W x C array (.npy), even C = 1: .npy outputs keep the axis
    _data: object = field(default=None, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.raw.shape[:2])

    @property
    def channels(self) -> int:
        return 1 if self.gray and self.raw.shape[2] >= 3 else self.raw.shape[2]

    @property
    def data(self):
        """The whole image as float32 H x W x C."""
        if self._data is None:
            self._data = self.rows(slice(None))
        return self._data

    def rows(self, index):
        """Rows (a slice or an index array) as float32 H' x W x C."""
        return to_float(self.raw[index], self.scale, self.gray)

    def alpha_float(self):
        if self.alpha is None:
            return None
        return np.clip(np.asarray(self.alpha, dtype=np.float32) / np.float32(self.scale), 0.0, 1.0)


def check_input_file(path) -> None:
    """Refuse, with one line and without opening it, an input that is missing, a folder, not a
    regular file (a FIFO or a device would block or never end; standard input is ``-``), or
    unreadable."""
    import stat

    where = f"input {str(path)!r}"
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConvcliError(f"{where}: no such file") from None
    except OSError as exc:
        raise ConvcliError(f"{where}: cannot be read ({describe(exc)})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConvcliError(f"{where}: is a folder, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise ConvcliError(
            f"{where}: is not a regular file (a FIFO, device or socket); use - for standard input"
        )
    if not os.access(path, os.R_OK):
        raise ConvcliError(f"{where}: permission denied")


_check_readable = check_input_file


def read_stdin(limit: int | None) -> bytes:
    """All of standard input, read up to ``limit`` bytes and no further: a longer (or endless)
    stream is refused with one line once ``limit`` is passed."""
    stream = sys.stdin.buffer
    if limit is None:
        return stream.read()
    chunks, total = [], 0
    while True:
        chunk = stream.read(min(1 << 20, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise ConvcliError(
                f"input '-': standard input holds more than {limit / 2**20:,.1f} MiB, over the limit "
                f"for a stream (half of --max-memory: the stream and the image decoded from it)"
            )
    return b"".join(chunks)


def check_pixels(height: int, width: int, max_pixels: int | None, where: str) -> None:
    """Refuse an image of more than ``max_pixels`` pixels (``--max-pixels``), from its header."""
    if max_pixels is not None and width * height > max_pixels:
        raise ConvcliError(
            f"{where}: {width}x{height} is {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (--max-pixels)"
        )


def check_decoding(need: int, max_bytes: int | None, where: str) -> None:
    """Refuse an image whose decoding needs more than ``max_bytes`` (``--max-memory``)."""
    if max_bytes is not None and need > max_bytes:
        raise ConvcliError(
            f"{where}: decoding needs about {need / 2**20:,.0f} MiB, over the limit of "
            f"{max_bytes / 2**20:,.0f} MiB (--max-memory)"
        )


STDIN = "-"


def load_npy(source, name: str):
    """A numeric, finite, 2-D or 3-D array from ``.npy`` (pickles are never loaded)."""
    from .npy import read_npy_header

    where = f"input {name!r}"
    if hasattr(source, "seek"):
        read_npy_header(source, name)
        source.seek(0)
    else:
        read_npy_header(source, name)
    try:
        array = np.load(source, allow_pickle=False)
    except Exception as exc:  # a truncated file can raise almost anything
        raise ConvcliError(f"{where}: not a readable .npy array ({describe(exc)})") from None
    check_values(array, where)  # before the cast, which would turn 1e300 into inf
    return array.astype(np.float32, copy=False)


def load_image(
    path: str | os.PathLike[str],
    *,
    gray: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    before_decode: Callable[[int, int, int], object] | None = None,
    max_bytes: int | None = None,
    banded: bool = False,
) -> LoadedImage:
    """Load an image file or ``.npy`` array; see :class:`LoadedImage` for the float view.

    The pixels are kept as stored (H x W x C); read as floats, an integer sample is divided
    by its type's largest value (:func:`sample_scale`: uint8 / 255, uint16 / 65535, int16 /
    32767, ...), while floats and ``.npy`` arrays are taken as they are.  TIFFs whose samples
    Pillow does not decode as stored (int8, uint32, float64, 16-bit colour) are read with
    tifffile.  Alpha is split off (it is carried over, never filtered).  EXIF orientation
    is applied.

    Parameters
    ----------
    path : str or os.PathLike
        An image file Pillow can read, or a ``.npy`` array (by its suffix; numeric, finite,
        2-D or 3-D, never unpickled).  ``path`` ``"-"`` reads standard input (an image, or
        ``.npy`` by its magic bytes).
    gray : bool or {"luma", "mean"}, optional
        Read images of three or more channels as one channel: luma,
        ``0.299 R + 0.587 G + 0.114 B`` (``"luma"`` or True), or the channels' mean
        (``"mean"``).  Default False.
    max_pixels : int or None, optional
        Refuse an image of more pixels than this, known from its header before decoding
        (default 200 million); None for no limit.  Every format is checked, ``.npy`` included.
    before_decode : callable, optional
        ``before_decode(height, width, channels)`` is called once the header is read and
        before the pixels are decoded; it may raise to refuse the image.
    max_bytes : int or None, optional
        The memory loading may take (``--max-memory``; None: no limit).  Standard input is read
        up to half of it and no further, and an image whose decoding needs more (the stream
        and the decoded pixels; an ``.npy`` as stored and as float32) is refused before it is
        decoded.
    banded : bool, optional
        Decode a PNG without alpha as its rows are asked for (:meth:`LoadedImage.rows`, top to
        bottom: a banded filter then holds a few bands of it, not the whole image); see
        :mod:`convcli.io.pngread`.  Default False: every pixel is decoded here.

    Returns
    -------
    LoadedImage
        ``raw`` (the pixels as stored), ``alpha`` (split off, or None), ``depth`` (``"8"``,
        ``"16"`` or ``"float"``), ``format`` (as Pillow reports it, ``"?"`` when it reports
        none, or ``"NPY"``), ``size`` ``(height, width)``, ``channels``, and ``data``: the
        float32 H x W x C view.

    Raises
    ------
    ConvcliError
        For a missing, unreadable or undecodable file, a folder, empty standard input, an
        image over ``max_pixels``, a ``.npy`` that is not a numeric 2-D or 3-D array, or
        values NaN, infinite or beyond float32 (:func:`check_values`).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from PIL import Image
    >>> folder = tempfile.TemporaryDirectory()
    >>> png = os.path.join(folder.name, "pixels.png")
    >>> Image.fromarray(np.array([[0, 255], [51, 102]], dtype=np.uint8)).save(png)
    >>> image = load_image(png)
    >>> image.size, image.channels, image.depth, image.alpha
    ((2, 2), 1, '8', None)
    >>> image.data.shape
    (2, 2, 1)
    >>> (image.data[:, :, 0] * 255).round().tolist()  # stored / 255
    [[0.0, 255.0], [51.0, 102.0]]
    >>> npy = os.path.join(folder.name, "ramp.npy")
    >>> np.save(npy, np.arange(6.).reshape(2, 3))
    >>> array = load_image(npy)
    >>> array.depth, array.format, array.data[:, :, 0].tolist()
    ('float', 'NPY', [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    >>> folder.cleanup()
    """
    import io

    streamed = 0  # bytes of standard input held while decoding
    if str(path) == STDIN:
        blob = read_stdin(None if max_bytes is None else max_bytes // 2)
        name = "<stdin>"
        if not blob:
            raise ConvcliError("input '-': standard input is empty")
        source = io.BytesIO(blob)
        is_npy = blob.startswith(NPY_MAGIC)
        streamed = len(blob)
        del blob  # the stream is held by ``source`` alone, and freed with it
    else:
        path = Path(path)
        _check_readable(path)
        name = str(path)
        source = path
        is_npy = path.suffix.lower() == ".npy"
    if is_npy:
        _check_npy_header(source, name, before_decode, gray, max_pixels, max_bytes, streamed)
        data = load_npy(source, name)
        channel_axis = data.ndim == 3
        if data.ndim == 2:
            data = data[:, :, None]
        loaded = LoadedImage(data, 1.0, None, "float", "NPY", channel_axis=channel_axis)
    else:
        if streamed and max_bytes is not None:  # the stream stays in memory while it is decoded
            check = before_decode

            def before_decode(height, width, channels):
                need = streamed + PILLOW_DECODE_BYTES * height * width
                check_decoding(need, max_bytes, f"input {name!r}")
                if check is not None:
                    check(height, width, channels)

        loaded = _load_png(source, name, max_pixels, before_decode, gray, banded)
        if loaded is None:  # not a PNG, or one convcli's decoder leaves to Pillow
            loaded = _load_with_pillow(source, name, max_pixels, before_decode, gray)
    loaded.gray = gray
    return loaded


def _check_npy_header(
    source, name: str, before_decode, gray: bool, max_pixels, max_bytes, streamed: int
) -> None:
    """The limits on an ``.npy``, from its header: ``max_pixels``, and what loading takes (the
    array as stored, its float32 copy, the finiteness mask; the stream it came in) within
    ``max_bytes``; then ``before_decode``."""
    from .npy import read_npy_header

    header = read_npy_header(source, name)
    if hasattr(source, "seek"):
        source.seek(0)
    where = f"input {name!r}"
    height, width = header.size
    check_pixels(height, width, max_pixels, where)
    values = height * width * header.channels
    check_decoding(streamed + values * (header.dtype.itemsize + 5), max_bytes, where)
    if before_decode is not None:
        before_decode(height, width, 1 if gray and header.channels >= 3 else header.channels)


def _load_png(source, name: str, max_pixels, before_decode, gray: bool, banded: bool) -> LoadedImage | None:
    """A PNG decoded by :mod:`convcli.io.pngread` (the limits checked on its header first), or
    None for a file it leaves to Pillow (not a PNG, interlaced, 1-4 bits, EXIF)."""
    from . import pngread

    where = f"input {name!r}"

    def check(header):
        check_pixels(header.height, header.width, max_pixels, where)
        if before_decode is not None:
            before_decode(header.height, header.width, 1 if gray else header.channels)

    opened = pngread.open_png(source, where, check)
    if opened is None:
        return None
    header, rows = opened
    depth, scale = pngread.depth_and_scale(header)
    if banded and not header.has_alpha:
        return LoadedImage(pngread.StreamedPixels(rows), scale, None, depth, "PNG")
    pixels, alpha = pngread.decode_whole(rows)
    return LoadedImage(pixels, scale, alpha, depth, "PNG")


def _load_with_pillow(
    source, name: str, max_pixels: int | None, before_decode=None, gray: bool = False
) -> LoadedImage:
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    where = f"input {name!r}"
    Image.MAX_IMAGE_PIXELS = None  # the limit is checked below, before decoding
    tiff_type = None  # a TIFF's sample type, as its tags declare it
    if _is_tiff(source):
        tiff_type, exact = tiff_sample_type(source)
        if not exact:  # int8, uint32, float64, 16-bit RGB, ...: tifffile reads them as stored
            return _load_with_tifffile(source, name, max_pixels, before_decode, gray, tiff_type)
    try:
        with warnings.catch_warnings():
            # Pillow's notes on metadata it skips in a malformed file (corrupt EXIF, a tag past
            # the end of the file) are harmless: the pixels decode, or decoding raises.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise ConvcliError(
                    f"{where}: {width}x{height} is {width * height:,} pixels, over the limit of "
                    f"{max_pixels:,} (--max-pixels)"
                )
            if before_decode is not None:
                bands = [b for b in image.getbands() if b not in ("A", "a")] or ["L"]
                before_decode(height, width, 1 if gray else min(len(bands), 3))
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # a copy would lose image.format
    except ConvcliError:
        raise
    except UnidentifiedImageError:
        raise ConvcliError(f"{where}: not an image file Pillow can read") from None
    except Exception as exc:  # decoders of malformed files raise many kinds of errors
        raise ConvcliError(f"{where}: cannot be decoded ({describe(exc)})") from None

    fmt = image.format or "?"
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N") or (mode == "I" and fmt in UINT16_IN_MODE_I):
        pixels = np.asarray(image).astype(np.uint16)
        return LoadedImage(pixels[:, :, None], 65535.0, None, "16", fmt)
    if mode in ("I", "F"):  # Pillow's int32 and float32 modes
        pixels = np.asarray(image)
        depth, scale = sample_scale(tiff_type or pixels.dtype, where)  # TIFF int16 comes as int32
        check_values(pixels, where)
        return LoadedImage(pixels[:, :, None], scale, None, depth, fmt)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("1", "L"):
        image = image.convert("L")
    elif mode in ("LA", "La"):
        image = image.convert("LA")
    elif mode in ("RGBA", "RGBa", "PA"):
        image = image.convert("RGBA")
    elif mode != "RGB":
        image = image.convert("RGB")
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    alpha = None
    if image.mode in ("LA", "RGBA"):
        alpha = pixels[:, :, -1]
        pixels = pixels[:, :, :-1]
    return LoadedImage(pixels, 255.0, alpha, "8", fmt)


# Formats whose 16-bit samples some Pillow versions open in mode "I" (int32) rather than "I;16".
UINT16_IN_MODE_I = ("PNG", "PPM")
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF


def _is_tiff(source) -> bool:
    if hasattr(source, "seek"):
        start = source.tell()
        head = source.read(4)
        source.seek(start)
    else:
        with open(source, "rb") as handle:
            head = handle.read(4)
    return head in TIFF_MAGIC


def tiff_sample_type(source) -> tuple[str | None, bool]:
    """A TIFF's sample type as its tags declare it (``"uint8"``, ``"int16"``, ``"float64"``; None
    when Pillow cannot open the file), and whether Pillow decodes those samples exactly.

    Pillow does for unsigned samples of 8 bits (or fewer) in its 8-bit modes, and for one
    sample of uint16, int16, int32 or float32.  It does not for others: int8 comes as uint8,
    uint32 as int32, 16-bit RGB is cut to 8 bits, float64 does not open.
    """
    import warnings

    from PIL import Image

    start = source.tell() if hasattr(source, "seek") else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the decoding proper reports what matters
            with Image.open(source) as image:  # closes the file it opened, not a caller's
                mode, tags = image.mode, image.tag_v2
                samples = int(tags.get(277, 1))
                bits = int(max(tags.get(258, (1,)) or (1,)))
                kinds = tuple(tags.get(339, (1,)) or (1,))
    except Exception:  # noqa: BLE001  (not a TIFF Pillow can open: tifffile may)
        return None, False
    finally:
        if start is not None:
            source.seek(start)
    kind = {2: "int", 3: "float", 5: "complex", 6: "complex"}.get(kinds[0], "uint")
    width = next((n for n in (8, 16, 32, 64) if bits <= n), bits)
    if kind == "complex":
        width *= 2
    name = f"{kind}{width}"
    if name == "uint8":
        return name, mode not in ("I", "F") and not mode.startswith("I;")
    if name == "uint16":
        return name, samples == 1 and mode.startswith("I;16")
    return name, samples == 1 and (name, mode) in (("int16", "I"), ("int32", "I"), ("float32", "F"))


def _load_with_tifffile(
    source, name: str, max_pixels: int | None, before_decode, gray: bool, declared: str | None
) -> LoadedImage:
    """A TIFF whose samples Pillow does not decode as stored, read by the one TIFF decoder the
    chunked reader uses too (:mod:`convcli.io.tiff`): its first page, upright (the Orientation
    tag applied as Pillow applies it), values by :func:`sample_scale`, alpha (an extra sample
    marked as alpha) split off."""
    from .tiff import read_tiff, tiff_layout

    where = f"input {name!r}"
    try:
        import tifffile  # noqa: F401
    except ImportError:
        if declared is None:
            raise ConvcliError(f"{where}: not an image file Pillow can read") from None
        raise ConvcliError(
            f"{where}: TIFF samples of type {declared} are read with tifffile: pip install tifffile"
        ) from None
    layout = tiff_layout(source, where)
    height, width, samples = layout.shape
    channels = samples - layout.alpha
    check_pixels(height, width, max_pixels, where)
    depth, scale = sample_scale(layout.dtype, where)
    if before_decode is not None:
        before_decode(height, width, 1 if gray and channels >= 3 else channels)
    try:
        pixels = read_tiff(source, layout)
    except ConvcliError:
        raise
    except Exception as exc:  # noqa: BLE001  (malformed files raise many kinds of errors)
        raise ConvcliError(f"{where}: cannot be decoded ({describe(exc)})") from None
    check_values(pixels, where)
    alpha_samples = pixels[:, :, -1] if layout.alpha else None
    return LoadedImage(pixels[:, :, :channels], scale, alpha_samples, depth, "TIFF")


def _tiff_size(path) -> tuple[int, int] | None:
    """``(height, width)`` of a TIFF's first image from tifffile, or None."""
    if not _is_tiff(path):
        return None
    try:
        import tifffile

        with quiet_tifffile_log(), tifffile.TiffFile(path) as tif:
            page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
            return int(page.imagelength), int(page.imagewidth)
    except Exception:  # noqa: BLE001  (no tifffile, or a file it cannot read either)
        return None


def read_layout(path, gray: bool = False) -> tuple[int, int, int]:
    """``(height, width, channels)`` from the file header, without decoding pixels: what the
    limits are checked on (channels as the loader counts them: alpha apart, one with ``gray``;
    3 where the header does not say)."""
    height, width = read_size(path)
    if Path(path).suffix.lower() == ".npy":
        from .npy import read_npy_header

        channels = read_npy_header(path, str(path)).channels
    else:
        channels = 3
        try:
            from PIL import Image

            with Image.open(path) as image:
                bands = [b for b in image.getbands() if b not in ("A", "a")] or ["L"]
                channels = min(len(bands), 3)  # as load_image counts them
        except Exception:  # noqa: BLE001  (read_size opened it; tifffile may read what Pillow cannot)
            pass
    return height, width, 1 if gray and channels >= 3 else channels


def read_size(path) -> tuple[int, int]:
    """``(height, width)`` from the file header, without decoding pixels."""
    path = Path(path)
    _check_readable(path)
    if path.suffix.lower() == ".npy":
        from .npy import read_npy_header

        return read_npy_header(path, str(path)).size
    import warnings

    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # a header is no bomb: --max-pixels is convcli's own check
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # notes on metadata: only the size is read here
            with Image.open(path) as image:
                width, height = image.size
    except UnidentifiedImageError:
        size = _tiff_size(path)  # a TIFF Pillow cannot open (float64, int16 RGB) that load_image reads
        if size is None:
            raise ConvcliError(f"input {str(path)!r}: not an image file Pillow can read") from None
        return size
    except Exception as exc:  # a malformed header can raise almost anything
        raise ConvcliError(f"input {str(path)!r}: cannot be read ({describe(exc)})") from None
    return height, width


# ---------------------------------------------------------------------- output


def output_format(path) -> tuple[str, tuple[str, ...]]:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        known = " ".join(sorted(FORMATS))
        raise ConvcliError(f"output {str(path)!r}: unknown extension {suffix or '(none)'!r} (known: {known})")
    return FORMATS[suffix]


def choose_depth(path, requested: str | None, source_depth: str, channels: int) -> str:
    """The bit depth to write: the one asked for, else the source's if the format holds it."""
    fmt, depths = output_format(path)
    if requested is not None:
        if requested not in DEPTHS:
            raise ConvcliError(f"depth: expected 8, 16 or float, got {requested!r}")
        if requested not in depths:
            raise ConvcliError(f"depth: {fmt} files hold depth {' or '.join(depths)}, not {requested}")
        depth = requested
    elif source_depth in depths and (channels == 1 or source_depth == "8" or fmt == "NPY"):
        depth = source_depth
    else:  # the format cannot hold the source's depth (for this many channels): 8-bit
        depth = depths[0]
    if depth in ("16", "float") and fmt != "NPY" and channels != 1:
        name = "16-bit" if depth == "16" else "32-bit float"
        raise ConvcliError(
            f"depth: convcli writes {name} {fmt} with one channel only; use --gray, "
            f"--depth 8, or a .npy output for {channels} channels"
        )
    return depth


class ClipCount:
    """How many output values an 8/16-bit encoding clipped to black or white, counted band by
    band as the samples are made (no second pass over the result).

    >>> count = ClipCount()
    >>> _ = map_values(np.array([-1.0, 0.5, 2.0, 3.0], np.float32), "clip", count=count)
    >>> count.clipped, count.total, count.fraction
    (3, 4, 0.75)
    """

    def __init__(self):
        self.clipped = 0
        self.total = 0

    def add(self, outside: int, total: int) -> None:
        self.clipped += int(outside)
        self.total += int(total)

    @property
    def fraction(self) -> float:
        return self.clipped / self.total if self.total else 0.0


def shown_range(value_map: str, bounds=None) -> tuple[float, float]:
    """The values an 8/16-bit output shows as black and white: ``(low, high)``.

    ``clip`` and ``abs`` show 0..1 (``abs`` of the magnitudes); ``offset`` shows
    ``bounds`` (default -0.5..0.5: zero is mid-gray); ``normalize`` and ``range`` show
    ``bounds`` (the result's min and max, or ``--range VMIN,VMAX``).
    """
    if value_map in ("clip", "abs"):
        return 0.0, 1.0
    if value_map == "offset" and bounds is None:
        return -0.5, 0.5
    if value_map in ("offset", "normalize", "range"):
        if bounds is None:
            raise ConvcliError(f"map: {value_map} needs the bounds of the values shown")
        return float(bounds[0]), float(bounds[1])
    choices = ", ".join(m for m in VALUE_MAPS if m != "auto")
    raise ConvcliError(f"map: expected one of {choices}, got {value_map!r}")


def map_values(data, value_map: str, bounds: tuple[float, float] | None = None, count=None):
    """Map float results to [0, 1] for 8/16-bit files; returns a new float32 array.

    ``clip``: clamp to [0, 1].  ``abs``: the magnitude, clamped (signed edge
    responses show as bright edges on black).  ``normalize``: stretch
    min..max (of ``bounds``, else of ``data``) to 0..1.  ``offset``: shift
    ``bounds`` (default -0.5..0.5, so zero becomes mid-grey) to 0..1, then clamp.
    ``range``: ``bounds`` is the display range (matplotlib's ``vmin, vmax``):
    ``(x - vmin) / (vmax - vmin)``, then clamp.  ``count`` (a :class:`ClipCount`)
    adds up the values that fell outside and were clamped.

    >>> map_values(np.array([-0.5, 0.0, 0.005, 0.02], np.float32), "range", (0.0, 0.01)).tolist()
    [0.0, 0.0, 0.5, 1.0]
    """
    if value_map == "normalize" and bounds is None:
        bounds = (float(data.min()), float(data.max())) if data.size else (0.0, 1.0)
    low, high = shown_range(value_map, bounds)
    if value_map == "clip":  # counted on the data itself: no copy before the clip
        if count is not None:
            count.add(np.count_nonzero(data < 0) + np.count_nonzero(data > 1), data.size)
        return np.clip(data, 0.0, 1.0, dtype=np.float32)
    if value_map == "abs":
        out = np.abs(data, dtype=np.float32)
    elif high - low <= 0:
        out = np.zeros(data.shape, dtype=np.float32)
    else:
        out = np.subtract(data, low, dtype=np.float32)
        out *= np.float32(1.0 / (high - low))
    if count is not None:
        count.add(np.count_nonzero(out < 0) + np.count_nonzero(out > 1), out.size)
    return np.clip(out, 0.0, 1.0, out=out)


def to_samples(rows, depth: str, value_map: str, bounds=None, count=None):
    """Float result rows (H x W x C) as the integer samples of an 8- or 16-bit file: mapped
    to [0, 1] by ``value_map`` (see :func:`map_values`), scaled and rounded.  8-bit keeps every
    channel (uint8); 16-bit keeps the first (uint16 H x W x 1)."""
    band = map_values(rows[:, :, :1] if depth == "16" else rows, value_map, bounds, count)
    band *= 65535.0 if depth == "16" else 255.0
    np.rint(band, out=band)
    return band.astype(np.uint16 if depth == "16" else np.uint8)


def clip_warning(where: str, count: ClipCount, value_map: str, bounds=None) -> str | None:
    """The warning for an output more than half of whose values were clipped (an all-white
    picture from a kernel that sums to 13, say), or None.

    >>> count = ClipCount(); count.add(97, 100)
    >>> clip_warning("input 'x.png'", count, "clip").split(" and ")[0]
    "input 'x.png': 97% of the output values lie outside the range shown (0..1)"
    """
    if count.fraction <= 0.5:
        return None
    low, high = shown_range(value_map, bounds)
    what = " of magnitudes" if value_map == "abs" else ""
    return (
        f"{where}: {count.fraction:.0%} of the output values lie outside the range shown{what} "
        f"({low:g}..{high:g}) and were clipped to black or white; choose the range with "
        f"--range VMIN,VMAX or stretch it with --map normalize"
    )


def check_output_folder(path) -> None:
    from .stores import is_url

    if is_url(path):  # a store named by URL (.zarr only): its writer makes the prefix it needs
        return
    folder = Path(path).resolve().parent
    if not folder.exists():
        raise ConvcliError(f"output {str(path)!r}: folder {str(Path(path).parent)!r} does not exist")
    if not folder.is_dir():
        raise ConvcliError(f"output {str(path)!r}: {str(Path(path).parent)!r} is not a folder")
    if not os.access(folder, os.W_OK):
        raise ConvcliError(f"output {str(path)!r}: folder {str(Path(path).parent)!r} is not writable")


_ENCODE_BAND_ROWS = 256


def holds_alpha(path, depth: str) -> bool:
    """Whether convcli writes an alpha channel into this output (8-bit PNG, TIFF, WebP)."""
    return output_format(path)[0] in ("PNG", "TIFF", "WEBP") and depth == "8"


def encode(data, alpha, path, *, depth: str, value_map: str, bounds=None, count=None, keep_axis=False):
    """Turn a float H x W x C result into the array that gets written (see :func:`encode_bands`;
    ``normalize`` takes its bounds from ``data`` unless given).  An ``.npy`` of one channel is
    H x W, unless ``keep_axis`` (the input was an H x W x 1 array: so is the output)."""
    fmt, _ = output_format(path)
    if fmt == "NPY":
        return data[:, :, 0] if data.shape[2] == 1 and not keep_axis else data
    if depth == "float":
        return np.ascontiguousarray(data[:, :, 0], dtype=np.float32)
    if value_map == "normalize" and bounds is None:
        bounds = (float(data.min()), float(data.max()))
    bands = (
        (start, data[start : start + _ENCODE_BAND_ROWS])
        for start in range(0, data.shape[0], _ENCODE_BAND_ROWS)
    )
    return encode_bands(
        bands, data.shape, alpha, path, depth=depth, value_map=value_map, bounds=bounds, count=count
    )


def encode_bands(bands, shape, alpha, path, *, depth: str, value_map: str, bounds=None, count=None):
    """8/16-bit pixels from float result bands ``(first row, rows)`` of an H x W x C result.

    8-bit: uint8 H x W x C (alpha, a float H x W in [0, 1], appended where the
    format holds it).  16-bit: uint16 H x W.  Only one band is ever held as
    floats.  ``normalize`` needs ``bounds`` (the result's min and max), ``range`` and
    ``offset`` take theirs (see :func:`map_values`); ``count`` (a :class:`ClipCount`) adds up
    the clipped values as the bands are encoded.  For
    PNG the pixels stay bands too (a :class:`convcli.io.png.PixelBands`,
    made as the writer asks for them); other formats get the whole array.
    """
    from .png import PixelBands

    fmt, _ = output_format(path)
    height, width, result_channels = shape
    with_alpha = alpha is not None and holds_alpha(path, depth)
    channels = 1 if depth == "16" else result_channels + (1 if with_alpha else 0)
    if channels > 4:
        raise ConvcliError(f"output {str(path)!r}: {channels} channels cannot be written as {fmt}; use .npy")
    dtype = np.uint16 if depth == "16" else np.uint8

    def pixel_bands():
        for start, rows in bands:
            samples = to_samples(rows, depth, value_map, bounds, count)
            pixels = np.empty((samples.shape[0], width, channels), dtype=dtype)
            pixels[:, :, : samples.shape[2]] = samples
            if with_alpha:
                pixels[:, :, -1] = np.rint(alpha[start : start + samples.shape[0]] * 255.0)
            yield pixels

    image = PixelBands((height, width, channels), np.dtype(dtype), pixel_bands())
    return image if fmt == "PNG" else image.materialize()


def _save(handle, payload, fmt: str, compress_level: int | None) -> None:
    if fmt == "NPY":
        np.save(handle, np.asarray(payload, dtype=np.float32), allow_pickle=False)
        return
    if fmt == "PNG":
        from .png import PixelBands, write_png, write_png_bands

        level = 1 if compress_level is None else compress_level
        if isinstance(payload, PixelBands):
            write_png_bands(handle, payload, level)
        else:
            write_png(handle, payload, level)
        return
    from PIL import Image

    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(payload).save(handle, format=fmt, **options)


def write_stream(stream, payload, fmt: str, *, compress_level: int | None = None) -> None:
    """Encode fully in memory, then write to ``stream`` (stdout) in one go."""
    import io

    buffer = io.BytesIO()
    _save(buffer, payload, fmt, compress_level)
    stream.write(buffer.getvalue())
    stream.flush()


def write_atomic(path, payload, *, compress_level: int | None = None) -> None:
    """Encode ``payload`` into ``path`` atomically (see :func:`atomic_write`)."""
    fmt, _ = output_format(path)
    atomic_write(path, lambda handle: _save(handle, payload, fmt, compress_level))


def write_atomic_bytes(path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write(path, write) -> None:
    """Call ``write(handle)`` on a temporary file in the target folder, then rename it over the
    target (see :func:`atomic_file`)."""
    path = Path(path)
    check_output_folder(path)
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as handle:
            write(handle)


def temporary_name(path) -> str:
    """A new, empty file beside ``path`` (``.NAME.XXXXXXXX.tmp``), to be renamed over it.

    The temporary name is 14 bytes longer than NAME; where that would pass the file system's
    limit on a name (or on a whole path), NAME is shortened in it (``.NAM.XXXXXXXX.tmp``), so
    that an output whose name fits always gets a temporary file that fits too.
    """
    path = Path(path)
    added = len(".") + len(".") + 8 + len(".tmp")  # mkstemp's 8 random characters
    try:
        name_max = os.pathconf(path.parent, "PC_NAME_MAX")
        path_max = os.pathconf(path.parent, "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        name_max, path_max = 255, 4096
    folder_bytes = len(os.fsencode(os.path.abspath(path.parent)))
    budget = min(name_max - added, path_max - 1 - folder_bytes - 1 - added)
    name = path.name
    while name and len(os.fsencode(name)) > budget:
        name = name[: max(0, min(len(name) - 1, budget))]
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return tmp


def remove_temporaries(outputs) -> None:
    """Remove what writers of these outputs that were killed left behind: their temporary files
    and ``.zarr`` folders (``.NAME.XXXXXXXX.tmp`` beside each output, NAME maybe shortened, see
    :func:`temporary_name`).  One folder listing per output folder.  Only for outputs that no
    live process is writing: a temporary being written is removed too.
    """
    import shutil

    by_folder: dict[str, set[str]] = {}
    for output in outputs:
        output = Path(output)
        by_folder.setdefault(str(output.parent), set()).add(output.name)
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                continue
            stem, _, random = entry.name[1:-4].rpartition(".")
            if not (stem and random) or not any(_temporary_of(stem, random, name) for name in names):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass


def _temporary_of(stem: str, random: str, name: str) -> bool:
    """Whether ``.STEM.RANDOM.tmp`` is a temporary of output ``name``: STEM is the name, or a long
    name shortened by :func:`temporary_name` (then RANDOM is mkstemp's 8 characters)."""
    if stem == name:
        return True
    return len(random) == 8 and len(os.fsencode(stem)) >= 64 and name.startswith(stem)


@contextmanager
def atomic_file(path):
    """The name of a temporary file in ``path``'s folder, for the block to write; when the
    block ends, the file is synced to disk and renamed over ``path``.

    A reader never sees a half-written file, and a failed write (a full disk,
    an exception, Ctrl-C) leaves the previous file, if any, untouched and no
    temporary file behind; an OSError becomes a ConvcliError naming ``path``.
    SIGTERM and SIGHUP clean up as Ctrl-C does (see :mod:`convcli.signals`): no signal comes
    between the file's making and its name being kept here, nor between the rename and its
    being marked as written (an interrupted batch still reports it).
    """
    tmp = None
    try:
        with deferred():
            tmp = temporary_name(path)
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        with deferred():
            os.replace(tmp, path)
            committed()
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(exc, OSError):
            raise ConvcliError(f"output {str(path)!r}: cannot be written ({describe(exc)})") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
