"""Preferences kept between runs, on top of a ``QSettings`` that the caller passes in.

``app.application.run_gui`` hands in the per-user settings; tests hand in an INI file in a temporary
folder, so no test ever reads or writes the real preferences. Main thread only.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

MAX_RECENT = 10


class Preferences:
    """Typed accessors over one ``QSettings``: recent projects, window layout, editing options."""

    def __init__(self, settings: QSettings) -> None:
        self._settings = settings

    @property
    def settings(self) -> QSettings:
        return self._settings

    # -- recent projects --------------------------------------------------------------------------

    def recent_projects(self) -> list[str]:
        value = self._settings.value("recent_projects", [])
        if isinstance(value, str):  # QSettings returns a bare str for a one-element list in INI files
            value = [value]
        return [str(v) for v in (value or []) if v]

    def add_recent_project(self, path: str | Path) -> None:
        path = str(Path(path).resolve())
        recent = [p for p in self.recent_projects() if p != path]
        recent.insert(0, path)
        self._settings.setValue("recent_projects", recent[:MAX_RECENT])

    def remove_recent_project(self, path: str | Path) -> None:
        path = str(path)
        self._settings.setValue("recent_projects", [p for p in self.recent_projects() if p != path])

    def clear_recent_projects(self) -> None:
        self._settings.setValue("recent_projects", [])

    # -- generic typed values ---------------------------------------------------------------------

    def _get_bool(self, key: str, default: bool) -> bool:
        value = self._settings.value(key, default)
        if isinstance(value, str):
            return value.lower() in ("1", "true", "yes")
        return bool(value)

    def _get_int(self, key: str, default: int) -> int:
        try:
            return int(self._settings.value(key, default))
        except (TypeError, ValueError):
            return default

    @property
    def snapping(self) -> bool:
        return self._get_bool("timeline/snapping", True)

    @snapping.setter
    def snapping(self, on: bool) -> None:
        self._settings.setValue("timeline/snapping", bool(on))

    @property
    def autosave_seconds(self) -> int:
        """Quiet time after the last change before the autosave backup is written."""
        return max(1, self._get_int("autosave/seconds", 5))

    @autosave_seconds.setter
    def autosave_seconds(self, seconds: int) -> None:
        self._settings.setValue("autosave/seconds", int(seconds))

    @property
    def last_import_dir(self) -> str:
        return str(self._settings.value("paths/last_import_dir", "") or "")

    @last_import_dir.setter
    def last_import_dir(self, path: str) -> None:
        self._settings.setValue("paths/last_import_dir", str(path))

    @property
    def last_project_dir(self) -> str:
        return str(self._settings.value("paths/last_project_dir", "") or "")

    @last_project_dir.setter
    def last_project_dir(self, path: str) -> None:
        self._settings.setValue("paths/last_project_dir", str(path))

    def window_state(self) -> tuple[QByteArray | None, QByteArray | None, dict[str, QByteArray]]:
        """Saved geometry, main-window state and splitter states (None when never saved)."""
        geometry = self._settings.value("window/geometry")
        state = self._settings.value("window/state")
        splitters: dict[str, QByteArray] = {}
        self._settings.beginGroup("window/splitters")
        for key in self._settings.childKeys():
            value = self._settings.value(key)
            if isinstance(value, QByteArray):
                splitters[key] = value
        self._settings.endGroup()
        return (
            geometry if isinstance(geometry, QByteArray) else None,
            state if isinstance(state, QByteArray) else None,
            splitters,
        )

    def save_window_state(
        self, geometry: QByteArray, state: QByteArray, splitters: dict[str, QByteArray]
    ) -> None:
        self._settings.setValue("window/geometry", geometry)
        self._settings.setValue("window/state", state)
        for key, value in splitters.items():
            self._settings.setValue(f"window/splitters/{key}", value)

    def sync(self) -> None:
        self._settings.sync()
