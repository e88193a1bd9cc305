"""Every operation, registered: import this module to fill ``OPERATIONS``."""

from .base import OPERATIONS, Operation, register
from .chain import Chain
from .filter import Filter
from .pool import Pool
from .upsample import Upsample

__all__ = ["OPERATIONS", "Chain", "Filter", "Operation", "Pool", "Upsample", "register"]
