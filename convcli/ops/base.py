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
    """

    name: ClassVar[str]
    streams_bands: ClassVar[bool] = False  # whether :meth:`bands` can compute from stored rows
    tag: str
    value_map: str

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

    def padding_sides(self, input_hw: Pair) -> Sides:
        """The padding as ``(top, bottom, left, right)`` for this input (zeros if none)."""
        return (0, 0, 0, 0)

    # --------------------------------------------------------------- memory

    def memory_estimate(self, input_hw: Pair, channels: int) -> int:
        """Bytes of working memory to run on one image held in memory, every allocation
        counted: the decoded pixels and their float copy, the padded (or dilated) copy,
        the kernel and its generation, the result and the encoder's buffer of it."""
        in_px = input_hw[0] * input_hw[1]
        out_h, out_w = self.output_size(input_hw)
        out_px = out_h * out_w
        return (
            FLOAT_BYTES * channels * (2 * in_px + self.work_pixels(input_hw) + 2 * out_px)
            + self.parameter_bytes()
        )

    def work_pixels(self, input_hw: Pair) -> int:
        """Pixels per channel of the operation's own temporaries (a padded copy...)."""
        top, bottom, left, right = self.padding_sides(input_hw)
        return (input_hw[0] + top + bottom) * (input_hw[1] + left + right)

    def parameter_bytes(self) -> int:
        """Bytes the parameters themselves hold (a kernel)."""
        return 0

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
        """The output-size formula per side with the numbers put in, height first."""

    @abstractmethod
    def explain(self, matrix: np.ndarray, at: tuple[int, int]) -> Step:
        """One output value of a small 2-D matrix worked out term by term."""
