"""What every operation object knows and does; the registry of operations.

An operation is built once from its parameters and validated then (a bad
stride, padding or mode raises :class:`~convcli.errors.ConvcliError` at
construction).  From then on it answers, for any input size and without
computing anything: its output size, the input rows a block of output rows
needs (the halo), its working memory, its JSON report and its size formula;
and it computes: on a whole array, on one block, lazily on a huge image in
chunks.  The runner, the chunked path, the cluster path and the ``--matrix``
explanations call these methods; nothing dispatches on an operation's name.

Adding an operation is one subclass of :class:`Operation` decorated with
:func:`register` (and, for the command line, one command that parses its
options and builds it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from ..geometry.sizes import Pair, Sides

if TYPE_CHECKING:
    import numpy as np

    from .explain import Step

FLOAT_BYTES = 4  # every intermediate is float32
# The memory model (README, "Limits and errors"): bytes per input pixel and channel for the
# decoded pixels as stored (up to 8 bytes a sample: a float64 .npy or TIFF) and their float32
# copy; per output pixel and channel for the float32 result and up to three copies the encoder
# makes (its samples, the image library's buffer, a standard-output buffer).
INPUT_BYTES = 8 + FLOAT_BYTES
OUTPUT_BYTES = 4 * FLOAT_BYTES
VIEW_BYTES = 200  # a numpy view held in a Python list (the loops list a window's views)
GRAPH_BYTES = 49152  # one block's tasks in a dask graph (map_overlap's: 14 tasks, 33 KiB built)
RUN_BYTES = 16 << 20  # a run's fixed costs: modules loaded on the way, thread stacks, small buffers
TAP_BYTES = 200  # a kernel tap as a Python tuple in the loops' lists of taps
OPERATIONS: dict[str, type[Operation]] = {}


def register(cls: type[Operation]) -> type[Operation]:
    """Class decorator: make an operation known by its ``name`` (reports, templates' ``{op}``)."""
    if cls.name in OPERATIONS:
        raise ValueError(f"operation {cls.name!r} is registered twice")
    OPERATIONS[cls.name] = cls
    return cls


class Operation(ABC):
    """One operation on H x W x C float32 images, its parameters validated.

    Subclasses set ``name`` and, per instance, ``tag`` (names default outputs:
    ``sobel-vertical``, ``maxpool2``, ``up-bilinear``) and ``value_map`` (how
    results outside [0, 1] become 8/16-bit pixels when the user does not say).
    ``value_range``: with ``value_map`` ``"range"``, the values shown black and white
    (``--range VMIN,VMAX``, matplotlib's ``vmin, vmax``).
    """

    name: ClassVar[str]
    streams_bands: ClassVar[bool] = False  # whether :meth:`bands` can compute from stored rows
    tag: str
    value_map: str
    value_range: tuple[float, float] | None = None

    # --------------------------------------------------------------- values

    def gain(self) -> float:
        """What the operation makes of a flat area of value 1, away from the borders: 1 for
        pooling (and by default), a filter's kernel sum, an upsampling kernel's sum over the
        stride's pixels; a chain multiplies its stages'."""
        return 1.0

    def display_bounds(self) -> tuple[float, float] | None:
        """The values an 8/16-bit output shows as black and white, where the map fixes them
        before the result is known: ``range``, its ``value_range``; ``offset``, the width-1
        range centred on half the :meth:`gain`, so that a flat mid-gray area stays mid-gray
        (``-0.5..0.5`` for a kernel summing to 0, an edge detector: zero is mid-gray;
        ``0..1`` for one summing to 1, such as emboss).  None for the other maps
        (``normalize`` takes the result's min and max)."""
        if self.value_map == "range":
            if self.value_range is None:
                from ..errors import ConvcliError

                raise ConvcliError("map: 'range' needs value_range, the values shown black and white")
            return tuple(self.value_range)
        if self.value_map == "offset":
            gain = self.gain()
            return (gain - 1) / 2, (gain + 1) / 2
        return None

    # ---------------------------------------------------------------- sizes

    @abstractmethod
    def output_size(self, input_hw: Pair) -> Pair:
        """The output ``(height, width)`` for an input of ``input_hw``; raises if it is empty."""

    @abstractmethod
    def input_rows(self, axis: int, first: int, stop: int, input_hw: Pair) -> tuple[int, int]:
        """Input rows (``axis`` 0) or columns (1) that output rows ``first..stop`` depend on.

        In input coordinates: negative, or past the input, inside the padding.  For a
        transposed convolution, the input rows that scatter into those outputs.
        """

    def size_path(self, input_hw: Pair) -> list[Pair]:
        """The size before and after each stage: ``[input, output]`` for one operation."""
        return [tuple(input_hw), tuple(self.output_size(input_hw))]

    def stage_results(self, matrix: np.ndarray) -> list[tuple[Operation, np.ndarray]]:
        """``(stage, its result)`` for each stage, on a small 2-D matrix (``--matrix``)."""
        return [(self, self.apply(matrix[:, :, None])[:, :, 0])]

    def size_text(self, input_hw: Pair) -> str:
        """``530x612 -> 528x610``, a size per stage, as the report lines write it."""
        return " -> ".join(f"{width}x{height}" for height, width in self.size_path(input_hw))

    def padding_sides(self, input_hw: Pair) -> Sides:
        """The padding as ``(top, bottom, left, right)`` for this input (zeros if none)."""
        return (0, 0, 0, 0)

    # --------------------------------------------------------------- memory

    def memory_estimate(self, input_hw: Pair, channels: int) -> int:
        """Bytes of working memory to run on one image held in memory, every allocation
        counted from the sizes and parameters alone, before anything is allocated:

        - the input: the decoded pixels as stored and their float32 copy (``INPUT_BYTES`` a
          pixel and channel);
        - the work: the operation's own temporaries (:meth:`work_bytes`: padded tiles and
          bands on every thread, FFT buffers, the engine's lists of views and taps, the
          kernel's per-call copies and factorisation);
        - the output: the float32 result and the encoder's copies of it (``OUTPUT_BYTES``);
        - the parameters: what the operation holds (:meth:`parameter_bytes`: its kernel).
        """
        in_px = input_hw[0] * input_hw[1]
        out_h, out_w = self.output_size(input_hw)
        return (
            RUN_BYTES
            + INPUT_BYTES * channels * in_px
            + self.work_bytes(input_hw, channels)
            + OUTPUT_BYTES * channels * out_h * out_w
            + self.parameter_bytes()
        )

    def work_bytes(self, input_hw: Pair, channels: int) -> int:
        """Bytes of the operation's own temporaries on one image (default: ``work_pixels``
        float32 pixels per channel)."""
        return FLOAT_BYTES * channels * self.work_pixels(input_hw)

    def work_pixels(self, input_hw: Pair) -> int:
        """Pixels per channel of the operation's own temporaries (a padded copy...)."""
        top, bottom, left, right = self.padding_sides(input_hw)
        return (input_hw[0] + top + bottom) * (input_hw[1] + left + right)

    def parameter_bytes(self) -> int:
        """Bytes the parameters themselves hold (a kernel)."""
        return 0

    def chunk_memory(self, input_hw: Pair, channels: int, chunk_hw: Pair, threads: int | None = None) -> int:
        """Bytes in flight when run in chunks of ``chunk_hw`` input pixels: on every thread
        (``threads``, default this machine's usable cores) two
        blocks, each its padded input region (read, and as float32), the work on it and its
        result; the dask graph; the parameters.  (The reader's own buffers, such as a TIFF's
        tiles or strips, are the caller's to add.)"""
        from ..system import usable_cores

        out_h, out_w = self.output_size(input_hw)
        block_out, region = [], []
        for axis, out_len in enumerate((out_h, out_w)):
            rows = max(1, min(out_len, -(-out_len * chunk_hw[axis] // input_hw[axis])))
            lo, hi = self.input_rows(axis, 0, rows, input_hw)
            block_out.append(rows)
            region.append(max(1, hi - lo))
        blocks = -(-out_h // block_out[0]) * -(-out_w // block_out[1])
        region_px, out_px = region[0] * region[1], block_out[0] * block_out[1]
        block = (
            INPUT_BYTES * channels * region_px
            + self.block_work_bytes(tuple(region), tuple(block_out), channels)
            + 2 * FLOAT_BYTES * channels * out_px
        )
        threads = threads or usable_cores()
        return RUN_BYTES + 2 * threads * block + GRAPH_BYTES * blocks + self.parameter_bytes()

    def block_work_bytes(self, region_hw: Pair, out_hw: Pair, channels: int) -> int:
        """Bytes of the temporaries of one chunked block: ``region_hw`` input pixels (padding
        included) giving ``out_hw`` (default: three float32 copies of the region)."""
        return 3 * FLOAT_BYTES * channels * region_hw[0] * region_hw[1]

    # -------------------------------------------------------------- compute

    @abstractmethod
    def apply(self, data: np.ndarray) -> np.ndarray:
        """The result on an H x W x C float32 array (H x W x C out)."""

    def bands(self, loaded):
        """The result band by band from stored pixels (where ``streams_bands`` says so)."""
        raise NotImplementedError(f"{self.name} does not stream bands")

    @abstractmethod
    def chunked(self, image, chunk=None):
        """The result as a lazy dask array, block by block, bit-identical to :meth:`apply`.

        ``image``: a dask or numpy array, or a file-backed region source (an object with
        ``size``, ``channels`` and ``read(r0, r1, c0, c1)``, as ``convcli.io.bigfiles.Source``).
        """

    # ------------------------------------------------------------ reporting

    @abstractmethod
    def report(self, input_hw: Pair) -> dict:
        """The parameters as the JSON report of one run on an input of ``input_hw`` shows
        them, with whatever depends on the input (a padding resolved from ``same``)."""

    @abstractmethod
    def size_formula(self, input_hw: Pair) -> list[str]:
        """The output-size formula per side with the numbers put in, width first (WIDTHxHEIGHT)."""

    @abstractmethod
    def explain(self, matrix: np.ndarray, at: tuple[int, int]) -> Step:
        """One output value of a small 2-D matrix worked out term by term."""


def tile_rows(out_h: int, out_w: int, channels: int) -> int:
    """Output rows per tile of the engine's tiled loops (:func:`convcli.engine.loops.row_tiles`)."""
    from ..engine.loops import TILE_ELEMENTS, TILE_ROWS_MIN

    return max(1, min(out_h, max(TILE_ROWS_MIN, TILE_ELEMENTS // max(1, out_w * channels))))


def busy_threads(jobs: int) -> int:
    """Threads that work at once on ``jobs`` jobs: the usable cores, at most one a job."""
    from ..system import usable_cores

    return max(1, min(usable_cores(), jobs))


def svd_bytes(height: int, width: int) -> int:
    """Bytes numpy's SVD of a ``height`` x ``width`` float64 matrix takes (full matrices, as
    :func:`convcli.engine.loops.separable_factors` computes it): U and V^T, LAPACK's copy and
    workspace; measured on numpy 2 with OpenBLAS, with a margin."""
    small = min(height, width)
    return 16 * (height * height + width * width) + 16 * height * width + 40 * small * small + (64 << 10)


class PlannedKernel:
    """A kernel known by its size alone (``parse_kernel(..., plan_only=True)``, for
    ``--dry-run``): enough for output sizes, reports and memory estimates, made of nothing.
    Computing with it is refused."""

    ndim = 2
    nbytes = 0

    def __init__(self, shape: Pair):
        self.shape = (int(shape[0]), int(shape[1]))
        self.size = self.shape[0] * self.shape[1]

    def __array__(self, *args, **kwargs):
        from ..errors import ConvcliError

        raise ConvcliError("kernel: sized for planning only (--dry-run), never made")


def kernel_parts(kernel):
    """``(the Kernel, or None for a bare array; the matrix to compute with)``: a
    :class:`~convcli.engine.kernels.Kernel` is reported by name and origin, a bare array as
    given, and a kernel sized for a dry run (no matrix) becomes a :class:`PlannedKernel`."""
    from ..engine.filtering import as_kernel
    from ..engine.kernels import Kernel

    if not isinstance(kernel, Kernel):
        return None, as_kernel(kernel)
    if kernel.matrix is None:  # sized only, for a dry run
        return kernel, PlannedKernel(kernel.size)
    return kernel, as_kernel(kernel.matrix)


def kernel_bytes(kernel_info, kernel) -> int:
    """The kernel as an operation holds it, and as its Kernel holds it (float32 both)."""
    held = kernel_info.matrix if kernel_info is not None else None
    return int(kernel.nbytes) + (int(held.nbytes) if held is not None else 0)
