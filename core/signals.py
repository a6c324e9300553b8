"""A tiny Qt-free signal: the project model and the render queue announce changes through it.

Owns: :class:`Signal`. Listeners (Qt adapters in ``app``, tests) connect plain callables; the core never
knows who listens. Strong references only: disconnect what you connect when the listener goes away.

Must not import: PySide6, torch, diffusers, ``app``, ``models``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Slot = Callable[..., Any]


class Signal:
    """A list of callables invoked in connection order by :meth:`emit`.

    Threading: not synchronised. Emit from the thread that owns the emitting object (the main thread for
    the project and the render queue); ``app`` marshals worker events before they reach the core.

    A slot connected or disconnected while the signal is emitting takes effect from the next emit.
    Exceptions raised by a slot propagate to the caller of :meth:`emit` (later slots are not called):
    a failing listener is a bug to see, not to swallow.
    """

    __slots__ = ("_blocked", "_name", "_slots")

    def __init__(self, name: str = "") -> None:
        self._name = name
        self._slots: list[Slot] = []
        self._blocked = 0

    def __repr__(self) -> str:
        return f"<Signal {self._name or '?'} ({len(self._slots)} slots)>"

    @property
    def name(self) -> str:
        return self._name

    def connect(self, slot: Slot) -> Slot:
        """Call ``slot(*args)`` on every emit. Returns ``slot`` so it can be used as a decorator.

        Connecting the same callable twice is a no-op.
        """
        if not callable(slot):
            raise TypeError(f"Signal.connect needs a callable, got {type(slot).__name__}")
        if slot not in self._slots:
            self._slots.append(slot)
        return slot

    def disconnect(self, slot: Slot | None = None) -> None:
        """Remove ``slot`` (or every slot when ``slot`` is None).

        Raises:
            ValueError: ``slot`` was not connected.
        """
        if slot is None:
            self._slots.clear()
            return
        try:
            self._slots.remove(slot)
        except ValueError:
            raise ValueError(f"{slot!r} is not connected to signal {self._name or '?'}") from None

    def is_connected(self, slot: Slot) -> bool:
        return slot in self._slots

    def __len__(self) -> int:
        return len(self._slots)

    def emit(self, *args: Any) -> None:
        """Call every connected slot with ``args``, in connection order (unless blocked)."""
        if self._blocked:
            return
        for slot in tuple(self._slots):
            slot(*args)

    def block(self) -> _Blocker:
        """Context manager that silences the signal while it is open (nests)."""
        return _Blocker(self)


class _Blocker:
    __slots__ = ("_signal",)

    def __init__(self, signal: Signal) -> None:
        self._signal = signal

    def __enter__(self) -> Signal:
        self._signal._blocked += 1
        return self._signal

    def __exit__(self, *exc: object) -> None:
        self._signal._blocked -= 1
