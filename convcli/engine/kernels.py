"""Kernels: presets (data files in ``presets/``), inline matrices and kernel files.

A kernel spec is one of:

* a preset name, optionally with parameters: ``sobel-vertical``, ``gaussian:size=7,sigma=1.5``;
* an inline matrix, rows split by ``;`` and values by ``,`` or spaces: ``"1,0,-1;2,0,-2;1,0,-1"``;
* a file: ``.npy`` (2-D, numeric, no pickles) or text/CSV with one row per line.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConvcliError, describe

PRESETS_ENV = "CONVCLI_PRESETS"

# Bounds on what a kernel spec may ask for, so that every refusal is one line before anything
# large is read or made (see README, "Limits and errors").
MAX_PRESET_BYTES = 4 << 20  # a preset file (TOML or JSON)
MAX_PRESET_NESTING = 16  # lists and tables inside lists and tables, in a preset file
MAX_TEXT_KERNEL_BYTES = 64 << 20  # a text/CSV kernel file
TEXT_PARSE_BYTES = 48  # memory per byte of a text matrix while it is parsed (Python lists)
BUILD_BYTES_PER_TAP = 24  # making a kernel: float64 values, a float64 temporary, the float32 copy
SIGMA_RANGE = (1e-6, 1e6)  # a Gaussian's sigma, in pixels
PLAN_TAPS = 1 << 20  # with plan_only, larger generated kernels are sized, not made (--dry-run)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_NUMBER_START = re.compile(r"^\s*[-+.\d\[]")


@dataclass
class Kernel:
    """A resolved kernel: its matrix (float32, 2-D) and where it came from."""

    name: str
    matrix: object  # np.ndarray, float32
    description: str = ""
    source: str = "inline"  # "preset", "inline" or a file path
    params: dict = field(default_factory=dict)
    sources: tuple[str, ...] = ()  # the files read to make it (a kernel file, a preset file)
    planned: tuple[int, int] | None = None  # (height, width) of a kernel sized but not made

    @property
    def size(self) -> tuple[int, int]:
        if self.matrix is None:  # planned only (parse_kernel's plan_only): its size, no values
            return self.planned
        return tuple(self.matrix.shape)  # (height, width)

    def to_json(self, with_matrix: bool = False) -> dict:
        """The kernel as JSON reports show it: name, source, size, parameters (and matrix)."""
        data = {
            "name": self.name,
            "source": self.source,
            "size": {"width": int(self.size[1]), "height": int(self.size[0])},
        }
        if self.params:
            data["params"] = self.params
        if with_matrix and self.matrix is not None:
            data["matrix"] = self.matrix.tolist()
        return data


# ------------------------------------------------------------------ generators


def _size_param(value, name: str) -> tuple[int, int]:
    from ..geometry.sizes import as_pair, parse_pair

    if isinstance(value, str):
        return parse_pair(value, name, minimum=1)
    return as_pair(value, name, minimum=1)


def _float_param(value, name: str, bounds: tuple[float, float] = SIGMA_RANGE) -> float:
    from ..geometry.sizes import quote

    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConvcliError(f"kernel: {name} must be a number, got {quote(value)}") from None
    if not math.isfinite(number) or number <= 0:
        raise ConvcliError(f"kernel: {name} must be a positive number, got {quote(value)}")
    low, high = bounds
    if not low <= number <= high:
        raise ConvcliError(f"kernel: {name} must be between {low:g} and {high:g}, got {quote(value)}")
    return number


def check_kernel_bytes(shape: tuple[int, int], max_bytes: int | None, what: str, per_tap: int) -> None:
    """Refuse, before it is made, a ``shape`` kernel whose making needs more than ``max_bytes``
    (``per_tap`` bytes a tap; None: no more than this machine's memory)."""
    from ..system import default_memory_limit

    height, width = shape
    limit = default_memory_limit() if max_bytes is None else max_bytes
    need = height * width * per_tap
    if limit is not None and need > limit:
        raise ConvcliError(
            f"{what}: {width}x{height} is {height * width:,} taps, about {need / 2**20:,.0f} MiB "
            f"to make, over the memory limit of {limit / 2**20:,.0f} MiB (--max-memory)"
        )


def _checked_size(value, name: str) -> tuple[int, int]:
    """A generator's size parameter, refused with one line when it cannot be allocated."""
    shape = _size_param(value, name)
    _check_allocatable(shape)
    return shape


def _check_allocatable(shape: tuple[int, int]) -> None:
    """Refuse a kernel to be generated that needs more than this machine's memory (or its
    address-space limit) holds."""
    from ..system import memory_ceiling

    ceiling = memory_ceiling()
    need = shape[0] * shape[1] * BUILD_BYTES_PER_TAP
    if ceiling is not None and need > ceiling:
        raise ConvcliError(
            f"kernel: a {shape[1]}x{shape[0]} kernel needs about {need / 2**20:,.0f} MiB to make, "
            f"more than this machine can allocate ({ceiling / 2**20:,.0f} MiB)"
        )


def gaussian_kernel(size: int | tuple[int, int] | str = 5, sigma: float | str = 1.0) -> np.ndarray:
    """``exp(-(x^2 + y^2) / (2 sigma^2))`` on a size grid centred on its middle, summing to 1.

    Parameters
    ----------
    size : int, (int, int) or str, optional
        The grid: one value, ``(height, width)``, or ``"N"`` or ``"WxH"`` (width first, as on
        the command line); at least 1.  Default 5.
    sigma : float or str, optional
        The standard deviation in pixels, a positive finite number (or its text).  Default 1.0.

    Returns
    -------
    np.ndarray
        float64, ``(height, width)``, summing to 1.

    Raises
    ------
    ConvcliError
        For a size below 1 or a sigma that is not a positive finite number.

    Examples
    --------
    The 1-D weights are ``exp(-1/2), 1, exp(-1/2)`` over their sum, ``0.2741, 0.4519, 0.2741``,
    and the kernel is their outer product:

    >>> k = gaussian_kernel(3, sigma=1.0)
    >>> k.round(4).tolist()
    [[0.0751, 0.1238, 0.0751], [0.1238, 0.2042, 0.1238], [0.0751, 0.1238, 0.0751]]
    >>> round(float(k.sum()), 12)
    1.0
    >>> gaussian_kernel("5x3").shape  # WxH: 3 rows, 5 columns
    (3, 5)
    """
    height, width = _checked_size(size, "size")
    sigma = _float_param(sigma, "sigma")
    y = np.arange(height) - (height - 1) / 2
    x = np.arange(width) - (width - 1) / 2
    gy = np.exp(-(y**2) / (2 * sigma**2))
    gx = np.exp(-(x**2) / (2 * sigma**2))
    kernel = np.outer(gy, gx)
    return kernel / kernel.sum()


def box_kernel(size: int | tuple[int, int] | str = 3) -> np.ndarray:
    """A box (mean) kernel: ``1 / (height * width)`` everywhere, summing to 1.

    Parameters
    ----------
    size : int, (int, int) or str, optional
        One value, ``(height, width)``, or ``"N"`` or ``"WxH"`` (width first); at least 1.
        Default 3.

    Returns
    -------
    np.ndarray
        float64, ``(height, width)``.

    Raises
    ------
    ConvcliError
        For a size below 1.

    Examples
    --------
    >>> box_kernel(2).tolist()
    [[0.25, 0.25], [0.25, 0.25]]
    >>> box_kernel((1, 4)).tolist()
    [[0.25, 0.25, 0.25, 0.25]]
    """
    height, width = _checked_size(size, "size")
    return np.full((height, width), 1.0 / (height * width))


def nearest_kernel(factor: int | tuple[int, int] | str = 2) -> np.ndarray:
    """The kernel of nearest-neighbour upsampling by ``factor``: ones, ``factor`` x ``factor``.

    With :func:`~convcli.engine.transposed.conv_transpose2d` at ``stride=factor`` every pixel
    becomes a ``factor`` x ``factor`` block.

    Parameters
    ----------
    factor : int, (int, int) or str, optional
        One value, ``(height, width)``, or ``"N"`` or ``"WxH"`` (width first); at least 1.
        Default 2.

    Returns
    -------
    np.ndarray
        float64 ones, ``(height, width)``.

    Raises
    ------
    ConvcliError
        For a factor below 1.

    Examples
    --------
    >>> nearest_kernel(2).tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    >>> import numpy as np
    >>> from convcli import conv_transpose2d
    >>> conv_transpose2d(np.array([[1., 2.]]), nearest_kernel(2), stride=2).tolist()
    [[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]]
    """
    height, width = _checked_size(factor, "factor")
    return np.ones((height, width))


def _triangle(factor: int):
    length = 2 * factor - factor % 2
    centre = factor - 1 if length % 2 == 1 else factor - 0.5
    return 1 - np.abs(np.arange(length) - centre) / factor


def bilinear_kernel(factor: int | tuple[int, int] | str = 2) -> np.ndarray:
    """The triangle kernel of bilinear upsampling by an integer ``factor`` (FCN's ``bilinear`` filler).

    Along each axis: ``2*factor - factor % 2`` taps, ``1 - |i - centre| / factor`` with the
    centre in the middle.  With :func:`~convcli.engine.transposed.conv_transpose2d` at
    ``stride=factor`` and ``padding=factor // 2`` the output is exactly ``factor`` times the
    input (what ``convcli upsample`` does by default).

    Parameters
    ----------
    factor : int, (int, int) or str, optional
        One value, ``(height, width)``, or ``"N"`` or ``"WxH"`` (width first); at least 1.
        Default 2.

    Returns
    -------
    np.ndarray
        float64, ``(2*fy - fy % 2, 2*fx - fx % 2)`` for the factor ``(fy, fx)``.

    Raises
    ------
    ConvcliError
        For a factor below 1.

    Examples
    --------
    >>> bilinear_kernel((1, 2)).tolist()  # factor 1 down, 2 across: one row of 4 taps
    [[0.25, 0.75, 0.75, 0.25]]
    >>> (bilinear_kernel(2) * 16).tolist()  # the outer product of 1 3 3 1 / 4 with itself
    [[1.0, 3.0, 3.0, 1.0], [3.0, 9.0, 9.0, 3.0], [3.0, 9.0, 9.0, 3.0], [1.0, 3.0, 3.0, 1.0]]
    >>> bilinear_kernel(3).shape  # 2*3 - 3 % 2 = 5
    (5, 5)

    Doubling a row: inside, the samples are the linear interpolation at the output pixels'
    centres (``0.25, 0.75, 1.25, 1.75`` input pixels: 1, 3, 5, 7); at the ends the outside
    counts as zeros:

    >>> import numpy as np
    >>> from convcli import conv_transpose2d
    >>> row = np.array([[0., 4., 8.]])
    >>> conv_transpose2d(row, bilinear_kernel((1, 2)), stride=(1, 2), padding=(0, 1)).tolist()
    [[0.0, 1.0, 3.0, 5.0, 7.0, 6.0]]
    """
    fy, fx = _size_param(factor, "factor")
    _check_allocatable((2 * fy - fy % 2, 2 * fx - fx % 2))
    return np.outer(_triangle(fy), _triangle(fx))


GENERATORS = {
    "gaussian": gaussian_kernel,
    "box": box_kernel,
    "nearest": nearest_kernel,
    "bilinear": bilinear_kernel,
}


def generated_shape(generator: str, params: dict) -> tuple[int, int]:
    """The ``(height, width)`` that ``GENERATORS[generator](**params)`` would make, from the
    parameters alone (nothing is made; sigma is checked too).  Raises TypeError for parameters
    the generator does not take, as calling it would.

    >>> generated_shape("bilinear", {"factor": "3x2"})  # 2*2 - 0 rows, 2*3 - 1 columns
    (4, 5)
    >>> generated_shape("gaussian", {"size": 100000})
    (100000, 100000)
    """
    arguments = inspect.signature(GENERATORS[generator]).bind(**params)
    arguments.apply_defaults()
    values = arguments.arguments
    if generator == "gaussian":
        _float_param(values["sigma"], "sigma")
    if generator == "bilinear":
        fy, fx = _size_param(values["factor"], "factor")
        return 2 * fy - fy % 2, 2 * fx - fx % 2
    name = "factor" if "factor" in values else "size"
    return _size_param(values[name], name)


# --------------------------------------------------------------------- presets


def builtin_presets_dir() -> Path:
    package = Path(__file__).resolve().parent.parent
    installed = package / "presets"  # inside an installed package
    return installed if installed.is_dir() else package.parent / "presets"  # source checkout


def preset_dirs(extra: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for presets, later ones overriding earlier ones."""
    dirs = [builtin_presets_dir()]
    env = os.environ.get(PRESETS_ENV)
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    if extra:
        dirs.append(Path(extra))
    for folder in dirs[1:]:
        if not folder.is_dir():
            raise ConvcliError(f"presets: {str(folder)!r} is not a folder")
    return dirs


def _preset_files(dirs: list[Path]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for folder in dirs:
        for path in sorted(folder.iterdir()):
            if path.suffix in (".toml", ".json") and path.is_file():
                files[path.stem] = path
    return files


def regular_file_size(path, where: str) -> int:
    """The size of ``path``, which must be a regular file: a folder, a device (``/dev/zero``), a
    FIFO or a socket is refused with one line naming ``where``, without reading from it (a
    device or a FIFO could be read forever, or block)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ConvcliError(f"{where}: cannot be read ({describe(exc)})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConvcliError(f"{where}: is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise ConvcliError(f"{where}: is not a regular file (a device, FIFO or socket); name a file")
    return info.st_size


def read_regular_file(path: Path, limit: int, where: str) -> bytes:
    """The bytes of ``path``, a regular file (:func:`regular_file_size`) of at most ``limit``
    bytes; anything else is refused with one line naming ``where``, before anything is read."""
    size = regular_file_size(path, where)
    if size > limit:
        raise ConvcliError(f"{where}: is {size:,} bytes, over the limit of {limit:,}")
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ConvcliError(f"{where}: cannot be read ({describe(exc)})") from None
    if len(data) > limit:  # it grew since it was looked at
        raise ConvcliError(f"{where}: is over the limit of {limit:,} bytes")
    return data


def _nesting(data) -> int:
    """How deeply lists and tables nest in parsed TOML or JSON (0 for a plain value)."""
    deepest, pending = 0, [(data, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth + 1)
            if deepest > MAX_PRESET_NESTING:
                break
            pending.extend((value, depth + 1) for value in item)
    return deepest


def _read_preset_file(path: Path) -> dict:
    where = f"preset file {str(path)!r}"
    raw = read_regular_file(path, MAX_PRESET_BYTES, where)
    try:
        text = raw.decode("utf-8")
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except RecursionError:
        raise ConvcliError(f"{where}: nested too deeply (at most {MAX_PRESET_NESTING} levels)") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConvcliError(f"{where}: cannot be read ({describe(exc)})") from None
    if _nesting(data) > MAX_PRESET_NESTING:
        raise ConvcliError(f"{where}: nested too deeply (at most {MAX_PRESET_NESTING} levels)")
    if not isinstance(data, dict) or ("matrix" in data) == ("generator" in data):
        raise ConvcliError(f"{where}: needs exactly one of 'matrix' or 'generator'")
    generator = data.get("generator")
    if "generator" in data and (not isinstance(generator, str) or generator not in GENERATORS):
        from ..geometry.sizes import quote

        raise ConvcliError(
            f"{where}: unknown generator {quote(data['generator'])} (known: {', '.join(GENERATORS)})"
        )
    return data


@dataclass
class Preset:
    name: str
    description: str
    path: Path
    matrix: list | None = None
    generator: str | None = None
    params: dict = field(default_factory=dict)

    def build(
        self, overrides: dict | None = None, *, max_bytes: int | None = None, plan_only: bool = False
    ) -> Kernel:
        """The kernel, with ``overrides`` of its parameters.  A generated kernel is sized from
        its parameters first and refused when making it needs more than ``max_bytes`` (None:
        :func:`convcli.system.default_memory_limit`); with ``plan_only``, one of more than
        :data:`PLAN_TAPS` taps is not made: its ``matrix`` is None and ``size`` its size."""
        from ..geometry.sizes import quote

        params = dict(self.params)
        for key, value in (overrides or {}).items():
            if self.generator is None or key not in params:
                allowed = ", ".join(params) if params else "none"
                raise ConvcliError(
                    f"kernel: preset {self.name!r} has no parameter {quote(key)} (parameters: {allowed})"
                )
            params[key] = value
        if self.generator is not None:
            try:
                shape = generated_shape(self.generator, params)
                check_kernel_bytes(shape, max_bytes, f"kernel {self.name!r}", BUILD_BYTES_PER_TAP)
                if plan_only and shape[0] * shape[1] > PLAN_TAPS:
                    return Kernel(
                        self.name, None, self.description, "preset", params, (str(self.path),), shape
                    )
                matrix = GENERATORS[self.generator](**params)
            except TypeError as exc:
                raise ConvcliError(f"preset file {str(self.path)!r}: {describe(exc)}") from None
        else:
            matrix = self.matrix
        from .filtering import as_kernel

        return Kernel(
            self.name,
            as_kernel(matrix, f"kernel {self.name!r}"),
            self.description,
            "preset",
            params,
            (str(self.path),),
        )


def load_presets(extra_dir=None) -> dict[str, Preset]:
    """All presets by name: the built-in ones, then ``$CONVCLI_PRESETS``, then ``extra_dir``."""
    presets = {}
    for name, path in _preset_files(preset_dirs(extra_dir)).items():
        presets[name] = _preset_from_file(name, path)
    return presets


def _preset_from_file(name: str, path: Path) -> Preset:
    data = _read_preset_file(path)
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise ConvcliError(f"preset file {str(path)!r}: 'params' must be a table")
    return Preset(
        name, str(data.get("description", "")), path, data.get("matrix"), data.get("generator"), params
    )


def get_preset(name: str, extra_dir=None) -> Preset:
    if not _NAME_RE.match(name) or name in (".", ".."):
        from ..geometry.sizes import quote

        raise ConvcliError(f"kernel: {quote(name)} is not a valid preset name")
    files = _preset_files(preset_dirs(extra_dir))
    if name not in files:
        import difflib

        close = difflib.get_close_matches(name, sorted(files), n=3)
        hint = f"did you mean {' or '.join(repr(match) for match in close)}? " if close else ""
        raise ConvcliError(f"kernel: unknown preset {name!r} ({hint}see 'convcli kernels' for every preset)")
    return _preset_from_file(name, files[name])


# ------------------------------------------------------------------- parsing


def parse_matrix_text(text: str, where: str):
    """Rows split by ``;`` or newlines, values by ``,`` or whitespace; ``#`` starts a comment."""
    rows = []
    for raw in re.split(r"[;\n]", text):
        line = raw.split("#", 1)[0].strip().strip("[]").strip()
        if not line:
            continue
        cells = [c for c in re.split(r"[,\s]+", line) if c]
        try:
            rows.append([float(c) for c in cells])
        except ValueError:
            bad = next(c for c in cells if not _is_float(c))
            from ..geometry.sizes import quote

            raise ConvcliError(f"{where}: {quote(bad)} is not a number") from None
    if not rows:
        raise ConvcliError(f"{where}: the matrix is empty")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise ConvcliError(f"{where}: rows have different lengths ({', '.join(str(len(r)) for r in rows)})")
    return np.array(rows, dtype=np.float64)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# Loading an .npy kernel: the array as stored, then as_kernel's float64 copy, its float64
# temporary and the float32 result, per value (besides the stored bytes themselves).
NPY_LOAD_BYTES_PER_TAP = 24


def load_kernel_file(path: Path, *, max_bytes: int | None = None, where: str | None = None):
    """The matrix in a kernel file: ``.npy`` (numbers, never unpickled) or text/CSV (one row a
    line).  The file must be a regular file (never a device or a FIFO, which could be read
    forever); what loading it takes is known from its header or its size and refused, before
    anything is loaded, over ``max_bytes`` (None: :func:`convcli.system.default_memory_limit`),
    and a text file over :data:`MAX_TEXT_KERNEL_BYTES`."""
    from ..system import default_memory_limit

    where = where or f"kernel file {str(path)!r}"
    limit = default_memory_limit() if max_bytes is None else max_bytes
    size = regular_file_size(path, where)
    if path.suffix.lower() == ".npy":
        shape, dtype = _npy_header(path, where)
        count = math.prod(shape)
        need = count * (dtype.itemsize + NPY_LOAD_BYTES_PER_TAP)
        if limit is not None and need > limit:
            raise ConvcliError(
                f"{where}: {count:,} values need about {need / 2**20:,.0f} MiB to load, over the "
                f"memory limit of {limit / 2**20:,.0f} MiB (--max-memory)"
            )
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as exc:  # a malformed header can raise almost anything
            raise ConvcliError(f"{where}: not a readable .npy array ({describe(exc)})") from None
        if array.dtype.kind not in "biuf":
            raise ConvcliError(f"{where}: must hold numbers, got dtype {array.dtype}")
        return array
    text_limit = MAX_TEXT_KERNEL_BYTES
    if limit is not None:
        text_limit = min(text_limit, limit // TEXT_PARSE_BYTES)
    if size > text_limit:
        raise ConvcliError(
            f"{where}: a text matrix of {size:,} bytes is over the limit of {text_limit:,} bytes "
            f"(about {TEXT_PARSE_BYTES} bytes of memory each while parsed); save large kernels as .npy"
        )
    try:
        text = read_regular_file(path, text_limit, where).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConvcliError(f"{where}: cannot be read ({describe(exc)})") from None
    return parse_matrix_text(text, where)


def _parse_params(text: str) -> dict:
    params = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            from ..geometry.sizes import quote

            raise ConvcliError(f"kernel: parameters are written name=value, got {quote(item)}")
        params[key.strip()] = value.strip()
    return params


def parse_kernel(
    spec: str,
    *,
    presets_dir: str | os.PathLike[str] | None = None,
    defaults: dict[str, object] | None = None,
    max_bytes: int | None = None,
    plan_only: bool = False,
) -> Kernel:
    """Resolve a kernel spec (see the module docstring) into a :class:`Kernel`.

    A kernel spec is one of:

    * a preset name, optionally with parameters: ``sobel-vertical``, ``gaussian:size=7,sigma=1.5``;
    * an inline matrix, rows split by ``;`` and values by ``,`` or spaces: ``"1,0,-1;2,0,-2;1,0,-1"``;
    * a file: ``.npy`` (2-D, numeric, no pickles) or text/CSV with one row per line.

    Parameters
    ----------
    spec : str
        The spec.  One holding a path separator or ending in ``.npy``, ``.txt``, ``.csv`` or
        ``.tsv`` is a file; one that starts like a number (or ``[``), or holds ``;``, ``,`` or
        spaces but no ``:``, is an inline matrix; anything else is a preset name, optionally
        followed by ``:name=value,...``.
    presets_dir : str or os.PathLike, optional
        A folder of more presets (``.toml`` or ``.json``), searched after the built-in ones and
        those of ``$CONVCLI_PRESETS``, and overriding them.
    defaults : dict, optional
        ``defaults`` supplies parameter values that the spec does not set (the ``upsample``
        command passes the stride as the ``factor`` of ``nearest`` and ``bilinear``); names the
        preset has no parameter for are ignored.
    max_bytes : int, optional
        The memory that making the kernel may take (``--max-memory``; default
        :func:`convcli.system.default_memory_limit`).  A generated kernel is sized from its
        parameters and a kernel file from its header or its size, and refused over this before
        anything is made or read.
    plan_only : bool, optional
        Only size a generated kernel (or an ``.npy`` kernel file) of more than
        :data:`PLAN_TAPS` taps: its ``matrix`` is None and ``size`` is known (``--dry-run``).

    Returns
    -------
    Kernel
        ``name`` (the preset's name, ``"custom"`` for an inline matrix, the file's stem),
        ``matrix`` (float32, 2-D; ``size`` is its ``(height, width)``), ``description``,
        ``source`` (``"preset"``, ``"inline"`` or the file's path), ``params`` (a
        preset's parameters as used) and ``sources`` (the files read: the kernel file or the
        preset file, so that a run can refuse to write over them).

    Raises
    ------
    ConvcliError
        For an empty spec; a missing or unreadable file; a matrix with a value that is not a
        number, rows of different lengths, or NaN or infinite values; an unknown preset or
        parameter; a ``presets_dir`` (or ``$CONVCLI_PRESETS`` entry) that is not a folder; a
        kernel file that is not a regular file; a kernel over ``max_bytes`` to make or load.

    Examples
    --------
    >>> k = parse_kernel("sobel-vertical")
    >>> k.name, k.source, k.size
    ('sobel-vertical', 'preset', (3, 3))
    >>> k.matrix.tolist()
    [[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]
    >>> k = parse_kernel("1,2;3,4")
    >>> k.name, k.source, k.matrix.tolist()
    ('custom', 'inline', [[1.0, 2.0], [3.0, 4.0]])
    >>> parse_kernel("gaussian:size=7,sigma=1.5").size
    (7, 7)
    >>> parse_kernel("box:size=3x1").size  # WxH: 1 row, 3 columns
    (1, 3)
    >>> parse_kernel("nearest", defaults={"factor": 3}).size
    (3, 3)
    >>> parse_kernel("no-such-kernel")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    convcli.errors.ConvcliError: kernel: unknown preset 'no-such-kernel' (see 'convcli kernels' ...)
    >>> parse_kernel("sobel-vertcal")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    convcli.errors.ConvcliError: kernel: unknown preset 'sobel-vertcal' (did you mean 'sobel-vertical' or ...
    """
    from .filtering import as_kernel

    spec = str(spec).strip()
    if not spec:
        raise ConvcliError("kernel: the kernel spec is empty")
    path = Path(spec)
    # A matrix never holds a path separator and a preset name never holds one
    # either, so anything with one (or a kernel-file suffix) is a file.
    if path.suffix.lower() in (".npy", ".txt", ".csv", ".tsv") or "/" in spec or os.sep in spec:
        from ..geometry.sizes import quote

        where = f"kernel file {quote(spec, 200)}"
        if not os.path.lexists(spec):
            raise ConvcliError(f"{where}: does not exist")
        if plan_only and path.suffix.lower() == ".npy":
            planned = _planned_npy(path, where)
            if planned is not None:
                return Kernel(
                    path.stem, None, f"from {spec}", str(path), sources=(str(path),), planned=planned
                )
        matrix = as_kernel(load_kernel_file(path, max_bytes=max_bytes, where=where), where)
        return Kernel(path.stem, matrix, f"from {spec}", str(path), sources=(str(path),))
    if _NUMBER_START.match(spec) or (":" not in spec and re.search(r"[;,\s]", spec)):
        return Kernel(
            "custom", as_kernel(parse_matrix_text(spec, "kernel"), "kernel"), "inline matrix", "inline"
        )
    name, _, param_text = spec.partition(":")
    preset = get_preset(name.strip(), presets_dir)
    overrides = {k: v for k, v in (defaults or {}).items() if k in preset.params}
    overrides.update(_parse_params(param_text))
    return preset.build(overrides, max_bytes=max_bytes, plan_only=plan_only)


def _planned_npy(path: Path, where: str) -> tuple[int, int] | None:
    """The ``(height, width)`` of an ``.npy`` kernel of more than :data:`PLAN_TAPS` values, from
    its header (the array is not loaded); None for a smaller one, which is loaded."""
    regular_file_size(path, where)
    shape, _ = _npy_header(path, where)
    if len(shape) != 2:
        raise ConvcliError(f"{where}: must be a 2-D matrix, got {len(shape)} dimension(s)")
    return shape if math.prod(shape) > PLAN_TAPS else None


def _npy_header(path: Path, where: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype an ``.npy`` kernel file declares, read from its header alone."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
    except Exception as exc:  # noqa: BLE001  (a malformed header can raise almost anything)
        raise ConvcliError(f"{where}: not a readable .npy array ({describe(exc)})") from None
    if dtype.kind not in "biuf":
        raise ConvcliError(f"{where}: must hold numbers, got dtype {dtype}")
    return tuple(int(n) for n in shape), dtype
