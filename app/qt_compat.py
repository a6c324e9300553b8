"""Work-arounds for defects of the Qt binding we run on, applied once at start-up.

``guard_none_refcount``: the PySide6 6.12 wheels, on Python 3.11, give back one reference to ``None``
more than they took on every call of a method that returns nothing (``QPainter.drawLine``,
``QWidget.update``...): on Python >= 3.12 ``None`` is immortal and nothing happens, but on 3.11 its
reference count falls by one per call, and after a few seconds of painting CPython aborts with "Fatal
Python error: none_dealloc". We measure the loss with a harmless call and, when it is there, raise the
count of ``None`` far out of reach (2**60 calls). The check costs microseconds and does nothing on a
fixed binding or a newer Python. Remove it once PySide6 is pinned to a fixed version or Python >= 3.12.
"""

from __future__ import annotations

import ctypes
import sys

_GUARD = 1 << 60
_applied = False


def none_refs_lost_per_call(calls: int = 64) -> float:
    """How many references to None one void PySide6 call loses (0 on a sound binding)."""
    from PySide6.QtCore import QPointF

    point = QPointF()
    before = sys.getrefcount(None)
    for _ in range(calls):
        point.setX(1.0)
    return (before - sys.getrefcount(None)) / calls


def guard_none_refcount() -> bool:
    """Protect ``None`` from the binding's reference leak; True when the guard was needed and applied."""
    global _applied
    if _applied or sys.version_info >= (3, 12):
        return _applied
    if none_refs_lost_per_call() < 0.5:
        return False
    # ob_refcnt is the first field of every PyObject (CPython 3.11 layout, non-debug build).
    ctypes.c_ssize_t.from_address(id(None)).value += _GUARD
    _applied = True
    return True
