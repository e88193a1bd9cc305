"""Reading images into float arrays and writing results back, atomically.

Pixels are read as float32 in H x W x C: 8-bit values divided by 255, 16-bit
by 65535; float TIFFs and ``.npy`` arrays are taken as they are.  Alpha is split
off on load (it is carried over, never filtered).
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
from .npy import NPY_MAGIC

if TYPE_CHECKING:
    from collections.abc import Callable


def parse_bytes(text: str, option: str = "--max-memory") -> int:
    """``512M``, ``4G``, ``1.5GiB``, ``1000000`` -> bytes (K/M/G/T are powers of 1024)."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    if not match or float(match.group(1)) <= 0:
        raise ConvcliError(f"{option}: expected a size such as 512M or 4G, got {text!r}")
    scale = 1024 ** " KMGT".index(match.group(2).upper() or " ")
    return int(float(match.group(1)) * scale)


LUMA = (0.299, 0.587, 0.114)


def to_float(stored, scale: float, gray: bool):
    """Stored pixels (H x W x C) as float32 values: divided by ``scale`` (255 or 65535 for
    8/16-bit), and converted to one luma channel with ``gray`` when there are three or more."""
    part = np.asarray(stored, dtype=np.float32)
    if scale != 1:
        part *= np.float32(1.0 / scale)
    if gray and part.shape[2] >= 3:
        part = (part[:, :, :3] @ np.array(LUMA, dtype=np.float32))[:, :, None]
    return part


@dataclass
class LoadedImage:
    """Pixels as stored (uint8, uint16 or float32, H x W x C) and how to read them as floats.

    ``data`` converts the whole image to float32 once; :meth:`rows` converts
    only some rows, so a banded pipeline never holds a float copy of the image.
    """

    raw: object  # H x W x C array: uint8, uint16 or float32, alpha split off
    scale: float  # raw / scale gives values in [0, 1] for 8/16-bit sources
    alpha: object | None  # H x W uint8/uint16 alpha, or None
    depth: str  # "8", "16" or "float": what the source held
    format: str
    gray: bool = False  # convert to luma when read
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
        return None if self.alpha is None else np.asarray(self.alpha, dtype=np.float32) / self.scale


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise ConvcliError(f"input {str(path)!r}: no such file")
    if path.is_dir():
        raise ConvcliError(f"input {str(path)!r}: is a folder, not an image file")
    if not os.access(path, os.R_OK):
        raise ConvcliError(f"input {str(path)!r}: permission denied")


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
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise ConvcliError(f"{where}: holds NaN or infinite values")
    return array


def load_image(
    path: str | os.PathLike[str],
    *,
    gray: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    before_decode: Callable[[int, int, int], object] | None = None,
) -> LoadedImage:
    """Load an image file or ``.npy`` array; see :class:`LoadedImage` for the float view.

    The pixels are kept as stored (uint8, uint16 or float32, H x W x C); read as floats,
    8-bit values are divided by 255 and 16-bit ones by 65535, while float TIFFs and ``.npy``
    arrays are taken as they are.  Alpha is split off (it is carried over, never filtered).
    EXIF orientation is applied.

    Parameters
    ----------
    path : str or os.PathLike
        An image file Pillow can read, or a ``.npy`` array (by its suffix; numeric, finite,
        2-D or 3-D, never unpickled).  ``path`` ``"-"`` reads standard input (an image, or
        ``.npy`` by its magic bytes).
    gray : bool, optional
        Read images of three or more channels as one luma channel,
        ``0.299 R + 0.587 G + 0.114 B``.  Default False.
    max_pixels : int or None, optional
        Refuse an image of more pixels than this, known from its header before decoding
        (default 200 million); None for no limit.  Only Pillow's images are checked, not ``.npy``.
    before_decode : callable, optional
        ``before_decode(height, width, channels)`` is called once the header is read and
        before the pixels are decoded; it may raise to refuse the image.  (``.npy`` read from
        standard input does not call it.)

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
        image over ``max_pixels``, or a ``.npy`` that is not a finite numeric 2-D or 3-D array.

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

    if str(path) == STDIN:
        blob = sys.stdin.buffer.read()
        name = "<stdin>"
        if not blob:
            raise ConvcliError("input '-': standard input is empty")
        source = io.BytesIO(blob)
        is_npy = blob.startswith(NPY_MAGIC)
    else:
        path = Path(path)
        _check_readable(path)
        name = str(path)
        source = path
        is_npy = path.suffix.lower() == ".npy"
    if is_npy:
        if before_decode is not None and source is path:
            _check_npy_header(path, name, before_decode, gray)
        data = load_npy(source, name)
        if data.ndim == 2:
            data = data[:, :, None]
        loaded = LoadedImage(data, 1.0, None, "float", "NPY")
    else:
        loaded = _load_with_pillow(source, name, max_pixels, before_decode, gray)
    loaded.gray = gray
    return loaded


def _check_npy_header(path: Path, name: str, before_decode, gray: bool) -> None:
    from .npy import read_npy_header

    header = read_npy_header(path, name)
    channels = 1 if gray and header.channels >= 3 else header.channels
    before_decode(*header.size, channels)


def _load_with_pillow(
    source, name: str, max_pixels: int | None, before_decode=None, gray: bool = False
) -> LoadedImage:
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    where = f"input {name!r}"
    Image.MAX_IMAGE_PIXELS = None  # the limit is checked below, before decoding
    try:
        with warnings.catch_warnings():
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
            image = ImageOps.exif_transpose(image)
    except ConvcliError:
        raise
    except UnidentifiedImageError:
        raise ConvcliError(f"{where}: not an image file Pillow can read") from None
    except Exception as exc:  # decoders of malformed files raise many kinds of errors
        raise ConvcliError(f"{where}: cannot be decoded ({describe(exc)})") from None

    fmt = image.format or "?"
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        pixels = np.asarray(image)
        pixels = pixels.astype(np.uint16 if pixels.max(initial=0) <= 65535 else np.float32)
        return LoadedImage(pixels[:, :, None], 65535.0, None, "16", fmt)
    if mode == "F":
        return LoadedImage(np.asarray(image, dtype=np.float32)[:, :, None], 1.0, None, "float", fmt)
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


def read_size(path) -> tuple[int, int]:
    """``(height, width)`` from the file header, without decoding pixels."""
    path = Path(path)
    _check_readable(path)
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:  # a malformed header can raise almost anything
            raise ConvcliError(f"input {str(path)!r}: not a readable .npy array ({describe(exc)})") from None
        if array.ndim not in (2, 3):
            raise ConvcliError(f"input {str(path)!r}: must be H x W or H x W x C, got shape {array.shape}")
        return int(array.shape[0]), int(array.shape[1])
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except UnidentifiedImageError:
        raise ConvcliError(f"input {str(path)!r}: not an image file Pillow can read") from None
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


def map_values(data, value_map: str, bounds: tuple[float, float] | None = None):
    """Map float results to [0, 1] for 8/16-bit files; returns a new float32 array.

    ``clip``: clamp to [0, 1].  ``abs``: the magnitude, clamped (signed edge
    responses show as bright edges on black).  ``normalize``: stretch
    min..max (of ``bounds``, else of ``data``) to 0..1.  ``offset``: add 0.5,
    then clamp (zero becomes mid-grey).
    """
    if value_map == "clip":
        return np.clip(data, 0.0, 1.0, dtype=np.float32)
    if value_map == "abs":
        out = np.abs(data, dtype=np.float32)
        return np.minimum(out, 1.0, out=out)
    if value_map == "offset":
        out = np.add(data, 0.5, dtype=np.float32)
        return np.clip(out, 0.0, 1.0, out=out)
    if value_map == "normalize":
        low, high = bounds if bounds is not None else (float(data.min()), float(data.max()))
        if high - low <= 0:
            return np.zeros(data.shape, dtype=np.float32)
        out = np.subtract(data, low, dtype=np.float32)
        out *= np.float32(1.0 / (high - low))
        return np.clip(out, 0.0, 1.0, out=out)
    choices = ", ".join(m for m in VALUE_MAPS if m != "auto")
    raise ConvcliError(f"map: expected one of {choices}, got {value_map!r}")


def to_samples(rows, depth: str, value_map: str, bounds=None):
    """Float result rows (H x W x C) as the integer samples of an 8- or 16-bit file: mapped
    to [0, 1] by ``value_map``, scaled and rounded.  8-bit keeps every channel (uint8);
    16-bit keeps the first (uint16 H x W x 1)."""
    band = map_values(rows[:, :, :1] if depth == "16" else rows, value_map, bounds)
    band *= 65535.0 if depth == "16" else 255.0
    np.rint(band, out=band)
    return band.astype(np.uint16 if depth == "16" else np.uint8)


def check_output_folder(path) -> None:
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


def encode(data, alpha, path, *, depth: str, value_map: str):
    """Turn a float H x W x C result into the array that gets written (see :func:`encode_bands`)."""
    fmt, _ = output_format(path)
    if fmt == "NPY":
        return data[:, :, 0] if data.shape[2] == 1 else data
    if depth == "float":
        return np.ascontiguousarray(data[:, :, 0], dtype=np.float32)
    bounds = (float(data.min()), float(data.max())) if value_map == "normalize" else None
    bands = (
        (start, data[start : start + _ENCODE_BAND_ROWS])
        for start in range(0, data.shape[0], _ENCODE_BAND_ROWS)
    )
    return encode_bands(bands, data.shape, alpha, path, depth=depth, value_map=value_map, bounds=bounds)


def encode_bands(bands, shape, alpha, path, *, depth: str, value_map: str, bounds=None):
    """8/16-bit pixels from float result bands ``(first row, rows)`` of an H x W x C result.

    8-bit: uint8 H x W x C (alpha, a float H x W in [0, 1], appended where the
    format holds it).  16-bit: uint16 H x W.  Only one band is ever held as
    floats.  ``normalize`` needs ``bounds`` (the result's min and max).  For
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
            samples = to_samples(rows, depth, value_map, bounds)
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
    """A new, empty file beside ``path`` (``.NAME.XXXXXXXX.tmp``), to be renamed over it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return tmp


@contextmanager
def atomic_file(path):
    """The name of a temporary file in ``path``'s folder, for the block to write; when the
    block ends, the file is synced to disk and renamed over ``path``.

    A reader never sees a half-written file, and a failed write (a full disk,
    an exception, Ctrl-C) leaves the previous file, if any, untouched and no
    temporary file behind; an OSError becomes a ConvcliError naming ``path``.
    """
    tmp = temporary_name(path)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
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
