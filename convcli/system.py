"""What this machine offers: usable cores and physical memory (pure Python, no numpy).

One place for both, so that the engine's threads, the PNG writer, the batch's
worker processes and the chunk sizes all count the same cores.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def physical_memory() -> int | None:
    """Bytes of physical memory, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


# Address space kept free under an address-space limit (ulimit -v) for what convcli's memory
# estimates do not count: thread stacks and allocator arenas, the libraries' own buffers.
ADDRESS_SPACE_RESERVE = 256 << 20


def address_space_room() -> int | None:
    """Bytes this process may still map under its address-space limit (``RLIMIT_AS``, set by
    ``ulimit -v`` or ``prlimit --as``), less :data:`ADDRESS_SPACE_RESERVE`; None when there is
    no such limit (or the system does not say)."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, ValueError, OSError, AttributeError):
        return None
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    return max(0, soft - _mapped_bytes() - ADDRESS_SPACE_RESERVE)


def _mapped_bytes() -> int:
    """The address space this process maps now (VmSize), 0 where /proc does not say."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[0])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


def memory_ceiling() -> int | None:
    """The most memory one allocation could ever get: the physical memory, or what the
    address-space limit leaves when that is less; None when neither is known."""
    known = [n for n in (physical_memory(), address_space_room()) if n is not None]
    return min(known) if known else None


def default_memory_limit() -> int | None:
    """The default ``--max-memory``: half the physical memory, or what the address-space limit
    leaves when that is less; None when neither is known."""
    total = physical_memory()
    known = [n for n in (total // 2 if total else None, address_space_room()) if n is not None]
    return min(known) if known else None
