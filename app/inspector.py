"""The inspector: properties of the selected clip or asset, a generated clip's recipe, clip level.

Owns :class:`InspectorPanel`. It shows what is selected (timeline selection wins over the bin) and edits
only through the :class:`app.editing.EditingController` (level, reference role). Main thread only.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.timecode import format_duration, format_timecode
from core.project import MAX_GAIN_DB, MIN_GAIN_DB, AssetKind, Project, ReferenceRole, TrackKind


class InspectorPanel(QWidget):
    """Shows one clip or asset; edits go through the editing controller."""

    def __init__(self, project: Project, editing: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.project = project
        self.editing = editing
        self.clip_id = ""
        self.asset_id = ""
        title = QLabel("Inspector")
        title.setObjectName("panelTitle")
        self._body = QWidget()
        self._form = QFormLayout(self._body)
        self._form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        self._form.setContentsMargins(8, 8, 8, 8)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setWidget(self._body)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(title)
        layout.addWidget(scroll, 1)
        self.gain: QDoubleSpinBox | None = None
        self.role: QComboBox | None = None
        # Model events arrive in bursts (a ripple moves many clips): rebuild once per burst.
        self._refresh_timer = QTimer(self, singleShot=True, interval=0)
        self._refresh_timer.timeout.connect(self.refresh)
        self._subscriptions = [
            (project.clip_changed, self._on_project_changed),
            (project.clip_removed, self._on_project_changed),
            (project.asset_changed, self._on_project_changed),
            (project.asset_removed, self._on_project_changed),
            (project.track_changed, self._on_project_changed),
        ]
        for signal, slot in self._subscriptions:
            signal.connect(slot)
        self.refresh()

    def detach(self) -> None:
        for signal, slot in self._subscriptions:
            if signal.is_connected(slot):
                signal.disconnect(slot)
        self._subscriptions = []

    def _on_project_changed(self, *args: Any) -> None:
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def show_clip(self, clip_id: str) -> None:
        self.clip_id, self.asset_id = clip_id, ""
        self.refresh()

    def show_asset(self, asset_id: str) -> None:
        self.clip_id, self.asset_id = "", asset_id
        self.refresh()

    def _clear(self) -> None:
        while self._form.rowCount():
            self._form.removeRow(0)
        self.gain = None
        self.role = None

    def _row(self, label: str, value: str) -> QLabel:
        widget = QLabel(value)
        widget.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        widget.setWordWrap(True)
        self._form.addRow(label, widget)
        return widget

    def refresh(self) -> None:
        self._clear()
        fps = self.project.settings.fps
        if self.clip_id and self.project.has_clip(self.clip_id):
            self._show_clip(fps)
        elif self.asset_id and self.project.has_asset(self.asset_id):
            self._show_asset(self.project.asset(self.asset_id), fps)
        else:
            hint = QLabel("Select a clip on the timeline or media in the bin to see its properties.")
            hint.setWordWrap(True)
            hint.setObjectName("viewerMessage")
            self._form.addRow(hint)

    def _show_clip(self, fps: int) -> None:
        clip = self.project.clip(self.clip_id)
        track = self.project.track(clip.track_id)
        asset = self.project.asset(clip.asset_id) if self.project.has_asset(clip.asset_id) else None
        self._row("Clip", asset.name if asset else "(missing media)")
        self._row("Track", f"{track.name}{' (locked)' if track.locked else ''}")
        self._row("Start", format_timecode(clip.start, fps))
        self._row("End", format_timecode(clip.end, fps))
        self._row("Duration", f"{format_timecode(clip.duration, fps)}  ({clip.duration} frames)")
        self._row("Source in", format_timecode(clip.in_point, fps))
        self._row("Source out", format_timecode(clip.out_point, fps))
        if track.kind is TrackKind.AUDIO:
            gain = QDoubleSpinBox(self._body)
            gain.setRange(MIN_GAIN_DB, MAX_GAIN_DB)
            gain.setDecimals(1)
            gain.setSingleStep(0.5)
            gain.setSuffix(" dB")
            gain.setValue(clip.gain_db)
            gain.setEnabled(not track.locked)
            gain.setKeyboardTracking(False)
            gain.valueChanged.connect(self._on_gain_value_changed)
            self._form.addRow("Level", gain)
            self.gain = gain
        if asset is not None:
            self._row("File", asset.path + ("  — offline" if asset.missing else ""))
        if clip.recipe is not None:
            self._show_recipe(clip.recipe)
        if clip.takes:
            self._row("Other takes", str(len(clip.takes)))

    def _show_recipe(self, recipe: Any) -> None:
        header = QLabel("Generated clip — recipe")
        header.setStyleSheet("color: #b98cff; font-weight: bold; padding-top: 8px;")
        self._form.addRow(header)
        self._row("Task", recipe.task.value.replace("_", " "))
        prompt = QPlainTextEdit(recipe.prompt)
        prompt.setReadOnly(True)
        prompt.setMaximumHeight(80)
        self._form.addRow("Prompt", prompt)
        refs = []
        for asset_id in recipe.reference_asset_ids:
            if self.project.has_asset(asset_id):
                a = self.project.asset(asset_id)
                refs.append(f"{a.name} ({a.role.value})" if a.role else a.name)
            else:
                refs.append("(removed)")
        if refs:
            self._row("References", ", ".join(refs))
        self._row("Duration", f"{recipe.duration_s:g} s")
        self._row("Resolution", recipe.resolution + (f" {recipe.aspect}" if recipe.aspect else ""))
        self._row("Seed", str(recipe.seed))
        self._row("Steps", "default" if recipe.steps is None else str(recipe.steps))
        self._row("Quality", recipe.quality.value)
        if recipe.transition is not None:
            self._row("Transition", recipe.transition.value.replace("_", " "))
        if recipe.audio_region is not None:
            r = recipe.audio_region
            fps = self.project.settings.fps
            self._row("Audio", f"{format_timecode(r.start_frame, fps)} – {format_timecode(r.end_frame, fps)}")
        if recipe.model_id:
            self._row(
                "Model",
                recipe.model_id + (f" @ {recipe.model_revision[:10]}" if recipe.model_revision else ""),
            )

    def _show_asset(self, asset: Any, fps: int) -> None:
        self._row("Media", asset.name)
        self._row(
            "Kind",
            asset.kind.value + (" with sound" if asset.has_audio and asset.kind is AssetKind.VIDEO else ""),
        )
        self._row("Duration", format_duration(asset.duration_frames, fps))
        if asset.width:
            self._row("Size", f"{asset.width} × {asset.height}")
        if asset.fps:
            self._row("Frame rate", f"{asset.fps:g} fps")
        if asset.sample_rate:
            self._row("Sound", f"{asset.sample_rate} Hz, {asset.channels} ch")
        self._row("File", asset.path + ("  — offline: relink it" if asset.missing else ""))
        if asset.kind is AssetKind.IMAGE:
            role = QComboBox(self._body)
            role.addItem("Not a reference", "")
            for r in ReferenceRole:
                role.addItem(r.value.capitalize(), r.value)  # Qt stores plain strings
            role.setCurrentIndex(0 if asset.role is None else list(ReferenceRole).index(asset.role) + 1)
            role.currentIndexChanged.connect(self._on_role_index_changed)
            self._form.addRow("Reference role", role)
            self.role = role
        uses = [c for c in self.project.clips() if c.asset_id == asset.asset_id]
        self._row("Used in", f"{len(uses)} clip{'s' if len(uses) != 1 else ''}")

    def _on_gain_value_changed(self, value: float) -> None:
        try:
            self.editing.set_clip_gain(self.clip_id, value)
        except Exception as exc:
            self.editing.message.emit(str(exc))

    def _on_role_index_changed(self, index: int) -> None:
        value = self.role.itemData(index) if self.role is not None else ""
        try:
            self.editing.set_asset_role(self.asset_id, ReferenceRole(value) if value else None)
        except Exception as exc:
            self.editing.message.emit(str(exc))
