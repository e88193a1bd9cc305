"""JSON as convcli prints it: standard JSON that every strict parser reads (pure Python).

Python's :func:`json.dumps` writes ``Infinity``, ``-Infinity`` and ``NaN`` for
non-finite floats, which are no JSON; convcli writes ``null`` in their place
(a ``--matrix`` result that overflows float32, for one) and never lets a
non-finite number through (``allow_nan=False``).
"""

from __future__ import annotations

import json
import math


def finite(value):
    """``value`` with every non-finite float, however deeply nested, replaced by None.

    >>> finite({"a": [1.0, float("inf")], "b": (float("nan"), "x")})
    {'a': [1.0, None], 'b': [None, 'x']}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def dumps(value) -> str:
    """One line of standard JSON; non-finite numbers become ``null``.

    >>> dumps({"result": [[1.5, float("-inf")]], "output": None})
    '{"result": [[1.5, null]], "output": null}'
    """
    return json.dumps(finite(value), allow_nan=False)
