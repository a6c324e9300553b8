"""Shared set-up of the model tests."""

from __future__ import annotations

import pytest

from models import memory


@pytest.fixture(autouse=True)
def _host_ram_of_a_small_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The memory planner reads the host's available RAM; pin it at 16 GiB (too little to hold a 14B
    transformer in bfloat16) so that plans do not depend on the machine running the tests. Tests of
    the host-RAM rule pass ``host_free_bytes`` themselves."""
    monkeypatch.setattr(memory, "available_host_memory", lambda: 16 * memory.GIB)
