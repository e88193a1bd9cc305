"""The ``.npy`` header: shape, dtype, order and data offset, read once and checked once.

Every path that takes an ``.npy`` (the in-memory loader, the chunked reader,
``--dry-run`` and ``--max-memory``) reads its header here, without loading
the array and never unpickling anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConvcliError, describe
from ..geometry.sizes import MAX_VALUE

NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class NpyHeader:
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int  # bytes before the data

    @property
    def size(self) -> tuple[int, int]:
        return int(self.shape[0]), int(self.shape[1])

    @property
    def channels(self) -> int:
        return int(self.shape[2]) if len(self.shape) == 3 else 1


def read_npy_header(source, name: str) -> NpyHeader:
    """The checked header of an ``.npy`` file (a path or a binary file object at its start).

    Refuses, naming ``name``: a malformed header, a dtype that is not numbers (objects,
    strings: nothing is unpickled), a shape that is not H x W or H x W x C, an empty array,
    a side over 2^31 - 1.
    """
    where = f"input {name!r}"
    handle = open(source, "rb") if not hasattr(source, "read") else source  # noqa: SIM115
    try:
        start = handle.tell()
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        offset = handle.tell() - start
    except Exception as exc:  # noqa: BLE001  (a malformed header can raise almost anything)
        raise ConvcliError(f"{where}: not a readable .npy array ({describe(exc)})") from None
    finally:
        if handle is not source:
            handle.close()
    if dtype.kind not in "biuf":
        raise ConvcliError(f"{where}: must hold numbers, got dtype {dtype}")
    if len(shape) not in (2, 3):
        raise ConvcliError(f"{where}: must be H x W or H x W x C, got shape {tuple(shape)}")
    if 0 in shape:
        raise ConvcliError(f"{where}: is empty (shape {tuple(shape)})")
    if max(shape) > MAX_VALUE:
        raise ConvcliError(f"{where}: a side of {max(shape):,} is over {MAX_VALUE:,} (2^31 - 1)")
    return NpyHeader(tuple(int(n) for n in shape), dtype, bool(fortran), int(offset))
