"""The start-up guard against the binding's reference leak on ``None`` (see app/qt_compat.py)."""

from __future__ import annotations

import sys

from PySide6.QtCore import QPointF

from app.qt_compat import guard_none_refcount, none_refs_lost_per_call


def test_void_calls_can_run_far_longer_than_a_session(qapp):
    guard_none_refcount()
    lost = none_refs_lost_per_call(1000)
    point = QPointF()
    for _ in range(50_000):  # would abort CPython on an unguarded leaking binding
        point.setX(2.0)
    # Either the binding is sound, or the guard left room for 2**60 leaking calls.
    assert lost < 0.5 or sys.getrefcount(None) > 2**59
