"""The generate dialogs: Shot from references, Extend, Cut to…, Avatar from an audio region.

Owns :class:`ShotDialog` (one dialog, four modes), :class:`Estimate` (the pre-flight answer) and
:func:`tiny_cpu_estimate` (the estimate for ``model="tiny"`` on the CPU, from measured timings).

The dialog shows a pre-flight estimate (time, and whether the job fits the GPU memory) before anything is
queued: it asks the injected ``estimator(request) -> Estimate`` (the application wires the models' own
numbers there; the app layer never imports ``models``). On accept it calls the
:class:`app.render_controller.RenderController` and stays open with the reason when the controller
refuses (no reference picked, clip not a video, …).

Main thread only.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.generation import ASPECTS, RESOLUTIONS, Quality, RenderRequest, Task, Transition
from core.project import AssetKind

MODES = ("shot", "extend", "cut", "avatar")
TITLES = {
    "shot": "Shot from References",
    "extend": "Extend Clip",
    "cut": "Cut to…",
    "avatar": "Avatar from Audio Region",
}
TASKS = {
    "shot": Task.REFERENCE_TO_VIDEO,
    "extend": Task.SINGLE_SHOT_EXTENSION,
    "cut": Task.SHOT_SWITCHING_EXTENSION,
    "avatar": Task.TALKING_AVATAR,
}
TRANSITION_NAMES = {
    Transition.CUT_IN: "Cut in (closer on the subject)",
    Transition.CUT_OUT: "Cut out (wider view)",
    Transition.SHOT_REVERSE_SHOT: "Shot / reverse shot",
    Transition.MULTI_ANGLE: "Multi-angle (same moment, new angle)",
    Transition.CUT_AWAY: "Cut away (to something else)",
}
DURATIONS = {"shot": (1, 30, 5), "extend": (5, 30, 5), "cut": (2, 5, 5)}


@dataclass(frozen=True)
class Estimate:
    """A pre-flight answer. ``None`` fields are unknown.

    Attributes:
        seconds: expected wall-clock time of the render.
        fits: whether the job fits the device memory (with the memory plan the backend would pick).
        peak_bytes: estimated peak device memory; ``available_bytes``: what the device has free.
        note: one line for the user (the plan: offload, fp8, block streaming…; or why there is no estimate).
    """

    seconds: float | None = None
    fits: bool | None = None
    peak_bytes: int | None = None
    available_bytes: int | None = None
    note: str = ""


# Measured with the tiny random-weight checkpoints on the 2-core development machine (one intra-op
# thread; bench/bench_render_stall.py): seconds to load a pipeline the first time (later jobs reuse it),
# then per denoising step per piece, plus decoding and writing the file.
TINY_LOAD_S = {Task.REFERENCE_TO_VIDEO: 3.7, Task.SINGLE_SHOT_EXTENSION: 4.0,
               Task.SHOT_SWITCHING_EXTENSION: 4.0, Task.TALKING_AVATAR: 5.0}
TINY_STEP_S = 0.01
TINY_DECODE_S = 0.2
TINY_PIECE_S = 5  # seconds of video per extension piece


def tiny_cpu_estimate(request: RenderRequest) -> Estimate:
    """The estimate for ``model="tiny"`` on the CPU (always fits: the weights are a few megabytes)."""
    steps = request.steps or (4 if request.quality is Quality.DRAFT else 8)
    pieces = 1
    if request.task is Task.SINGLE_SHOT_EXTENSION:
        pieces = max(1, -(-int(request.duration_s) // TINY_PIECE_S))
    seconds = TINY_LOAD_S.get(request.task, 4.0) + steps * pieces * TINY_STEP_S + pieces * TINY_DECODE_S
    return Estimate(seconds=seconds, fits=True, note="tiny test model on the CPU (measured timings)")


def as_estimate(value: Any) -> Estimate | None:
    """An estimator's answer as an :class:`Estimate`: one already, a mapping of its fields, or any object with
    those attributes (so ``models`` can answer without importing ``app``)."""
    if value is None or isinstance(value, Estimate):
        return value
    names = ("seconds", "fits", "peak_bytes", "available_bytes", "note")
    if isinstance(value, dict):
        return Estimate(**{k: value[k] for k in names if k in value})
    return Estimate(**{k: getattr(value, k) for k in names if hasattr(value, k)})


def describe_estimate(estimate: Estimate | None) -> str:
    """The estimate in words for the dialog."""
    if estimate is None:
        return "No estimate available for this model on this machine."
    parts = []
    if estimate.seconds is not None:
        s = round(estimate.seconds)
        parts.append(f"About {s // 60} min {s % 60:02d} s" if s >= 60 else f"About {s} s")
    if estimate.fits is True:
        mem = ""
        if estimate.peak_bytes and estimate.available_bytes:
            mem = f" (peak {estimate.peak_bytes / 2**30:.1f} of {estimate.available_bytes / 2**30:.1f} GiB)"
        parts.append("fits in the GPU memory" + mem)
    elif estimate.fits is False:
        mem = ""
        if estimate.peak_bytes and estimate.available_bytes:
            mem = f": needs {estimate.peak_bytes / 2**30:.1f} GiB, {estimate.available_bytes / 2**30:.1f} GiB free"
        parts.append("does NOT fit in the GPU memory" + mem + " — pick Draft, a lower resolution or low-VRAM mode")
    if estimate.note:
        parts.append(estimate.note)
    return " · ".join(parts) if parts else "No estimate available."


class ShotDialog(QDialog):
    """One dialog for the four authoring flows. See the module docstring.

    Args:
        controller: the render controller (its project, ``model`` and submit methods).
        mode: ``"shot"``, ``"extend"``, ``"cut"`` or ``"avatar"``.
        clip_id: the source clip (extend, cut) or the audio clip (avatar).
        region: ``(start, end)`` timeline frames of the audio region (avatar).
        estimator: ``estimator(request) -> Estimate``; None uses :func:`tiny_cpu_estimate` for the tiny
            model and says "no estimate" otherwise.
    """

    def __init__(self, controller: Any, mode: str, clip_id: str | None = None,
                 region: tuple[int, int] | None = None, estimator: Callable[[RenderRequest], Estimate] | None = None,
                 reference_ids: list[str] | None = None, portrait_id: str | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode}")
        self.controller = controller
        self.mode = mode
        self.clip_id = clip_id
        self.region = region
        self.estimator = estimator
        self.job: Any = None
        self.setObjectName(f"shotDialog_{mode}")
        self.setWindowTitle(TITLES[mode])
        self.setMinimumWidth(520)
        project = controller.project
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        images = [a for a in project.assets if a.kind is AssetKind.IMAGE and not a.missing]

        self.references = QListWidget()
        self.references.setObjectName("references")
        self.portrait = QComboBox()
        self.portrait.setObjectName("portrait")
        if mode == "shot":
            chosen = set(reference_ids or [])
            for asset in images:
                item = QListWidgetItem(f"{asset.name}" + (f"  ({asset.role.value})" if asset.role else ""))
                item.setData(Qt.ItemDataRole.UserRole, asset.asset_id)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if asset.asset_id in chosen else Qt.CheckState.Unchecked)
                self.references.addItem(item)
            self.references.setMaximumHeight(120)
            form.addRow("References (1–4)", self.references)
            if not images:
                form.addRow("", QLabel("Import still images (characters, objects, backgrounds) into the bin first."))
            self.references.itemChanged.connect(self._update)
        if mode in ("extend", "cut"):
            clip = project.clip(clip_id) if clip_id and project.has_clip(clip_id) else None
            name = project.asset(clip.asset_id).name if clip is not None else "(no clip selected)"
            self.source_label = QLabel(name)
            form.addRow("Continue from", self.source_label)
        self.transition = QComboBox()
        self.transition.setObjectName("transition")
        if mode == "cut":
            for transition, text in TRANSITION_NAMES.items():
                self.transition.addItem(text, transition.value)
            form.addRow("Transition", self.transition)
        if mode == "avatar":
            for asset in images:
                self.portrait.addItem(asset.name, asset.asset_id)
            if portrait_id is not None:
                self.portrait.setCurrentIndex(max(0, self.portrait.findData(portrait_id)))
            form.addRow("Portrait", self.portrait)
            fps = project.settings.fps
            if region is not None:
                text = f"{(region[1] - region[0]) / fps:.2f} s of the selected audio clip"
            else:
                text = "None: drag across a waveform on an audio lane first"
            self.region_label = QLabel(text)
            form.addRow("Voice", self.region_label)
        self.prompt = QPlainTextEdit()
        self.prompt.setObjectName("prompt")
        self.prompt.setPlaceholderText("Describe the shot: who, what happens, camera, light…")
        self.prompt.setMaximumHeight(90)
        form.addRow("Prompt", self.prompt)
        self.duration = QSpinBox()
        self.duration.setObjectName("duration")
        self.duration.setSuffix(" s")
        if mode in DURATIONS:
            lo, hi, default = DURATIONS[mode]
            self.duration.setRange(lo, hi)
            self.duration.setValue(default)
            form.addRow("Duration", self.duration)
        self.resolution = QComboBox()
        self.resolution.setObjectName("resolution")
        self.resolution.addItems(list(RESOLUTIONS))
        self.resolution.setCurrentText("480P" if mode == "avatar" else "720P")
        form.addRow("Resolution", self.resolution)
        self.aspect = QComboBox()
        self.aspect.setObjectName("aspect")
        if mode == "shot":
            self.aspect.addItem("From the first reference", None)
            for aspect in ASPECTS:
                self.aspect.addItem(aspect, aspect)
            form.addRow("Aspect", self.aspect)
        seed_row = QHBoxLayout()
        self.seed = QSpinBox()
        self.seed.setObjectName("seed")
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setValue(42)
        dice = QPushButton("New seed")
        dice.clicked.connect(lambda: self.seed.setValue(random.Random().randrange(0, 2**31 - 1)))
        seed_row.addWidget(self.seed, 1)
        seed_row.addWidget(dice)
        form.addRow("Seed", seed_row)
        quality_row = QHBoxLayout()
        self.draft = QRadioButton("Draft (fast preview)")
        self.draft.setObjectName("draft")
        self.final = QRadioButton("Final (official settings)")
        self.final.setObjectName("final")
        self.final.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.draft)
        group.addButton(self.final)
        quality_row.addWidget(self.draft)
        quality_row.addWidget(self.final)
        form.addRow("Quality", quality_row)
        self.steps: int | None = None  # tests and benches use 1-2 steps with the tiny model
        self.estimate_label = QLabel("")
        self.estimate_label.setObjectName("estimate")
        self.estimate_label.setWordWrap(True)
        self.error_label = QLabel("")
        self.error_label.setObjectName("error")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color:#ff6b6b;")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Queue render")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.buttons = buttons
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.estimate_label)
        layout.addWidget(self.error_label)
        layout.addWidget(buttons)
        for widget in (self.duration, self.seed):
            widget.valueChanged.connect(self._update)
        for combo in (self.resolution, self.aspect, self.transition, self.portrait):
            combo.currentIndexChanged.connect(self._update)
        self.draft.toggled.connect(self._update)
        self._update()

    # -- values -----------------------------------------------------------------------------------------

    def reference_ids(self) -> list[str]:
        out = []
        for i in range(self.references.count()):
            item = self.references.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                out.append(item.data(Qt.ItemDataRole.UserRole))
        return out

    def quality(self) -> Quality:
        return Quality.DRAFT if self.draft.isChecked() else Quality.FINAL

    def duration_s(self) -> float:
        if self.mode == "avatar":
            if self.region is None:
                return 0.0
            return (self.region[1] - self.region[0]) / self.controller.project.settings.fps
        return float(self.duration.value())

    def estimate_request(self) -> RenderRequest:
        """A request with this dialog's settings (placeholder paths) for the pre-flight estimate."""
        return RenderRequest(task=TASKS[self.mode], prompt=self.prompt.toPlainText(), output_path="estimate.mp4",
                             work_dir="estimate", duration_s=self.duration_s(),
                             resolution=self.resolution.currentText(), aspect=self.aspect.currentData(),
                             seed=self.seed.value(), steps=self.steps, quality=self.quality(),
                             model=self.controller.model, transition=Transition(self.transition.currentData())
                             if self.mode == "cut" and self.transition.currentData() else None)

    def estimate(self) -> Estimate | None:
        request = self.estimate_request()
        try:
            if self.estimator is not None:
                answer = as_estimate(self.estimator(request))
                if answer is not None:
                    return answer
            if request.model == "tiny":
                return tiny_cpu_estimate(request)
        except Exception as exc:  # an estimate is advice: never block the dialog
            return Estimate(note=f"No estimate ({exc}).")
        return None

    def _update(self, *args: Any) -> None:
        estimate = self.estimate()
        self.last_estimate = estimate
        self.estimate_label.setText("Pre-flight: " + describe_estimate(estimate))
        if estimate is not None and estimate.fits is False:
            self.estimate_label.setStyleSheet("color:#e8b53a;")
        else:
            self.estimate_label.setStyleSheet("")
        if self.mode == "shot":
            count = len(self.reference_ids())
            self.error_label.setText("" if 1 <= count <= 4 else
                                     ("Pick at least one reference image." if count == 0 else
                                      f"{count} references picked: at most 4."))

    # -- submit -------------------------------------------------------------------------------------------

    def submit(self) -> Any:
        """Queue the render; returns the job (raises with a message when the controller refuses)."""
        c = self.controller
        prompt = self.prompt.toPlainText()
        common = {"resolution": self.resolution.currentText(), "seed": self.seed.value(),
                  "quality": self.quality(), "steps": self.steps}
        if self.mode == "shot":
            return c.shot_from_references(self.reference_ids(), prompt, duration_s=self.duration.value(),
                                          aspect=self.aspect.currentData(), **common)
        if self.mode == "extend":
            if not self.clip_id:
                raise ValueError("Select the clip to extend on the timeline first.")
            return c.extend(self.clip_id, prompt, duration_s=self.duration.value(), **common)
        if self.mode == "cut":
            if not self.clip_id:
                raise ValueError("Select the clip to cut from on the timeline first.")
            return c.cut_to(self.clip_id, self.transition.currentData(), prompt, duration_s=self.duration.value(),
                            **common)
        if self.region is None or not self.clip_id:
            raise ValueError("Drag across the waveform of an audio clip to choose the voice first.")
        portrait = self.portrait.currentData()
        if not portrait:
            raise ValueError("Import a portrait image into the bin first.")
        return c.avatar_from_region(portrait, self.clip_id, self.region[0], self.region[1], prompt, **common)

    def accept(self) -> None:
        try:
            self.job = self.submit()
        except Exception as exc:
            self.error_label.setText(str(exc))
            return
        super().accept()
