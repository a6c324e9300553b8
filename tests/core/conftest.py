"""tests/core must run with neither Qt nor torch imported: the session fails if either sneaks in.

The check applies when only tests/core is collected (``bootstrap.py test`` runs it in its own process);
a combined run that also collects tests/models or tests/app imports torch there legitimately.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FORBIDDEN = ("torch", "PySide6", "diffusers", "transformers", "pyqtgraph")
CORE_TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True, scope="session")
def _no_qt_or_torch_in_core_tests(request: pytest.FixtureRequest):
    yield
    only_core = all(CORE_TESTS in Path(str(item.fspath)).resolve().parents for item in request.session.items)
    leaked = [name for name in FORBIDDEN if name in sys.modules]
    if only_core and leaked:
        pytest.fail(f"tests/core imported {leaked}: core must stay free of Qt and torch", pytrace=False)
