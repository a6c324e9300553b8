"""The main window: menus and shortcuts, the bin / viewer / inspector / timeline layout, the open project.

Owns :class:`MainWindow`. It holds one open project at a time (a :class:`_Document`: the project, its
undo stack, the editing controller, playback and the panels built for it); opening another project
tears that down and builds a new one. File operations go through :mod:`app.document` (atomic saves,
autosave after bursts of changes, recovery prompt, relinking); export runs in an
:class:`app.workers.ExportWorker`; File ▸ Collect Media… is :class:`app.collect_media.MediaCollector`.

User questions (save changes? recover autosave? where to save?) go through small overridable methods
(``ask_*`` / ``choose_*``) so tests can answer them without a modal dialog. Main thread only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer, QUrl
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices, QKeySequence, QUndoStack
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressDialog,
    QSplitter,
    QWidget,
)

from app import document, theme
from app.bin import BinPanel
from app.collect_media import MediaCollector, untitled_hint
from app.editing import EditingController
from app.inspector import InspectorPanel
from app.media_jobs import MediaCache
from app.playback import PlaybackController, sounddevice_output
from app.settings import Preferences
from app.timecode import format_timecode
from app.timeline import QtTimelineView, TimelinePanel
from app.undo import UndoController
from app.viewer import FrameProvider, ViewerPanel
from app.workers import ExportWorker, WorkerPool, cancellable_progress
from core.project import Project, TrackKind

APP_NAME = "SkyReels Studio"
MEDIA_FILTER = (
    "Media (*.mp4 *.mov *.m4v *.mkv *.webm *.avi *.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff "
    "*.wav *.mp3 *.m4a *.aac *.flac *.ogg);;All files (*)"
)
PROJECT_FILTER = f"{APP_NAME} projects (*{document.PROJECT_SUFFIX});;All files (*)"


class _Document:
    """Everything that belongs to one open project (built and torn down together)."""

    def __init__(self, window: MainWindow, project: Project, path: Path | None, queue: Any = None) -> None:
        self.project = project
        self.path = path
        self.queue = queue  # the render queue saved with the project (kept and saved back)
        self.recovered = False
        # Owned here, not by the window: it must not outlive (and signal into) a closed document.
        self.stack = QUndoStack()
        self.undo = UndoController(project, self.stack)
        cache_dir = str(document.cache_dir(path)) if path else None
        self.media = MediaCache(window.pool, project.settings.fps, cache_dir, window)
        self.editing = EditingController(project, self.undo, window.pool, window)
        self.playback = PlaybackController(project, window.pool, window.output_factory, window)
        self.frames = FrameProvider(project, window)
        self.timeline = QtTimelineView(project, self.editing, self.media)
        self.timeline.snapping = window.prefs.snapping
        self.timeline_panel = TimelinePanel(self.timeline)
        self.bin = BinPanel(project, self.editing, self.media)
        self.viewer = ViewerPanel(project, self.playback, self.frames)
        self.inspector = InspectorPanel(project, self.editing)
        for asset in project.assets:
            self.media.request_asset(asset)

    def close(self) -> None:
        self.stack.blockSignals(True)
        self.playback.close()
        self.frames.close()
        self.media.close()
        self.timeline.detach()
        self.bin.detach()
        self.inspector.detach()


class MainWindow(QMainWindow):
    """The editor window. Main thread only.

    Args:
        prefs: preferences (backed by a QSettings the caller chose).
        output_factory: opens the sound output (see :mod:`app.playback`); None = no sound.
    """

    def __init__(
        self,
        prefs: Preferences,
        output_factory: Callable[..., Any] | None = sounddevice_output,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.prefs = prefs
        self.output_factory = output_factory
        self.pool = WorkerPool(self, max_threads=2)
        self.export_worker: ExportWorker | None = None
        self.export_dialog: QProgressDialog | None = None
        self.last_export_error = ""
        self._stuck_exports: list[ExportWorker] = []
        self.doc: _Document | None = None
        self.setWindowIcon(theme.icon("app"))
        self.setMinimumSize(QSize(960, 600))
        self.resize(1440, 900)
        self._autosave_timer = QTimer(self, singleShot=True)
        self._autosave_timer.timeout.connect(self._on_autosave_timer_timeout)
        self._status_label = QLabel("")
        self.statusBar().addPermanentWidget(self._status_label)
        self.collector = MediaCollector(self)  # File ▸ Collect Media… (app/collect_media.py)
        self._build_actions()
        self._build_menus()
        self._set_document(document.new_project(), None)
        self._restore_layout()
        # Import the media stack in the background once the window is up: first imports of C extensions
        # (PyAV, scipy, OpenCV) hold the GIL for tens of milliseconds, better now than mid-edit.
        self._warm_timer = QTimer(self, singleShot=True, interval=300)
        self._warm_timer.timeout.connect(self._on_warm_timer_timeout)
        self._warm_timer.start()

    def _on_warm_timer_timeout(self) -> None:
        self.pool.submit(warm_media_imports)

    # -- actions and menus ------------------------------------------------------------------------

    def _action(
        self, text: str, slot: Callable[[], Any], shortcut: Any = None, icon: str = "", tip: str = ""
    ) -> QAction:
        action = QAction(text, self)
        if icon:
            action.setIcon(theme.icon(icon))
        if shortcut is not None:
            if isinstance(shortcut, list):
                action.setShortcuts(shortcut)
            else:
                action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(lambda checked=False: self._guard(slot))
        self.addAction(action)  # shortcuts work whichever panel has focus
        return action

    def _guard(self, slot: Callable[[], Any]) -> None:
        """Run an action; a refused edit or failed operation becomes a status message, not a crash."""
        try:
            slot()
        except Exception as exc:
            self.show_message(str(exc) or type(exc).__name__)

    def _build_actions(self) -> None:
        K = QKeySequence.StandardKey
        self.act_new = self._action("&New Project", self.new_project, K.New)
        self.act_open = self._action("&Open Project…", self.open_project_dialog, K.Open)
        self.act_save = self._action("&Save", self.save, K.Save)
        self.act_save_as = self._action("Save &As…", self.save_as_dialog, K.SaveAs)
        self.act_import = self._action("&Import Media…", self.import_dialog, "Ctrl+I", "import")
        self.act_relink = self._action("&Relink Missing Media…", self.relink_missing, icon="relink")
        self.act_collect = self._action(
            "&Collect Media…",
            lambda: self.collector.start(),
            tip="Copy the media files the project uses into its own folder (<project>.media/collected)",
        )
        self.act_export = self._action("&Export to MP4…", self.export_dialog_open, "Ctrl+E", "export")
        self.act_quit = self._action("&Quit", self.close, K.Quit)
        self.act_undo = self._action("&Undo", lambda: self.doc.stack.undo(), K.Undo)
        self.act_redo = self._action("&Redo", lambda: self.doc.stack.redo(), _redo_keys())
        self.act_split = self._action("&Split at Playhead", self.split, "S", "split")
        self.act_lift = self._action(
            "&Lift (leave gap)", self.lift, [QKeySequence("Delete"), QKeySequence("Backspace")]
        )
        self.act_ripple = self._action("&Ripple Delete", self.ripple_delete, "Shift+Delete")
        self.act_select_all = self._action(
            "Select &All Clips", lambda: self.doc.timeline.select_all(), K.SelectAll
        )
        self.act_deselect = self._action(
            "&Deselect", lambda: self.doc.timeline.set_selection(set()), "Ctrl+Shift+A"
        )
        self.act_marker = self._action("Add &Marker", self.add_marker, "M", "marker")
        self.act_remove_marker = self._action("Remove Marker at Playhead", self.remove_marker, "Ctrl+Alt+M")
        self.act_snap = self._action("Snapping", self.toggle_snapping, "N", "snap")
        self.act_snap.setCheckable(True)
        self.act_snap.setChecked(self.prefs.snapping)
        self.act_add_video_track = self._action(
            "Add &Video Track", lambda: self.doc.editing.add_track(TrackKind.VIDEO)
        )
        self.act_add_audio_track = self._action(
            "Add &Audio Track", lambda: self.doc.editing.add_track(TrackKind.AUDIO)
        )
        self.act_zoom_in = self._action(
            "Zoom &In", lambda: self.doc.timeline.zoom_in(), [QKeySequence("="), QKeySequence("+")], "zoom-in"
        )
        self.act_zoom_out = self._action("Zoom &Out", lambda: self.doc.timeline.zoom_out(), "-", "zoom-out")
        self.act_zoom_fit = self._action("Zoom to &Fit", lambda: self.doc.timeline.zoom_to_fit(), "Shift+Z")
        self.act_play = self._action(
            "&Play / Pause", lambda: self.doc.playback.toggle_play(), "Space", "play"
        )
        self.act_shuttle_back = self._action("Shuttle &Reverse", lambda: self.doc.playback.shuttle(-1), "J")
        self.act_shuttle_stop = self._action("Shuttle &Stop", lambda: self.doc.playback.shuttle(0), "K")
        self.act_shuttle_fwd = self._action("Shuttle &Forward", lambda: self.doc.playback.shuttle(1), "L")
        self.act_mark_in = self._action("Mark &In", self.mark_in, "I")
        self.act_mark_out = self._action("Mark &Out", self.mark_out, "O")
        self.act_clear_in_out = self._action("&Clear In/Out", self.clear_in_out, "Alt+X")
        self.act_prev_frame = self._action(
            "Previous Frame", lambda: self.doc.playback.step(-1), "Left", "step-back"
        )
        self.act_next_frame = self._action(
            "Next Frame", lambda: self.doc.playback.step(1), "Right", "step-forward"
        )
        self.act_back_second = self._action(
            "Back One Second", lambda: self.doc.playback.step(-self.doc.project.settings.fps), "Shift+Left"
        )
        self.act_fwd_second = self._action(
            "Forward One Second", lambda: self.doc.playback.step(self.doc.project.settings.fps), "Shift+Right"
        )
        self.act_home = self._action("Go to Start", lambda: self.doc.playback.seek(0), "Home", "goto")
        self.act_end = self._action(
            "Go to End", lambda: self.doc.playback.seek(self.doc.project.end_frame), "End"
        )
        self.act_models = self._action("Model &Weights…", self.show_models, icon="models")
        self.act_about = self._action("&About SkyReels Studio", self.show_about)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        for a in (self.act_new, self.act_open):
            file_menu.addAction(a)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        file_menu.addSeparator()
        for a in (self.act_save, self.act_save_as):
            file_menu.addAction(a)
        file_menu.addSeparator()
        for a in (self.act_import, self.act_relink, self.act_collect):
            file_menu.addAction(a)
        file_menu.addSeparator()
        file_menu.addAction(self.act_export)
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)
        edit_menu = bar.addMenu("&Edit")
        for a in (
            self.act_undo,
            self.act_redo,
            None,
            self.act_split,
            self.act_lift,
            self.act_ripple,
            None,
            self.act_select_all,
            self.act_deselect,
            None,
            self.act_marker,
            self.act_remove_marker,
            None,
            self.act_snap,
        ):
            edit_menu.addSeparator() if a is None else edit_menu.addAction(a)
        timeline_menu = bar.addMenu("&Timeline")
        for a in (
            self.act_add_video_track,
            self.act_add_audio_track,
            None,
            self.act_zoom_in,
            self.act_zoom_out,
            self.act_zoom_fit,
        ):
            timeline_menu.addSeparator() if a is None else timeline_menu.addAction(a)
        play_menu = bar.addMenu("&Playback")
        for a in (
            self.act_play,
            self.act_shuttle_back,
            self.act_shuttle_stop,
            self.act_shuttle_fwd,
            None,
            self.act_mark_in,
            self.act_mark_out,
            self.act_clear_in_out,
            None,
            self.act_prev_frame,
            self.act_next_frame,
            self.act_back_second,
            self.act_fwd_second,
            self.act_home,
            self.act_end,
        ):
            play_menu.addSeparator() if a is None else play_menu.addAction(a)
        models_menu = bar.addMenu("&Models")
        models_menu.addAction(self.act_models)
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.act_about)
        self.file_menu = file_menu
        self.edit_menu = edit_menu

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.prefs.recent_projects()
        for path in recent:
            action = self.recent_menu.addAction(Path(path).name)
            action.setToolTip(path)
            action.setStatusTip(path)
            action.triggered.connect(lambda checked=False, p=path: self._guard(lambda: self.open_recent(p)))
        if not recent:
            self.recent_menu.addAction("(none)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear Recent", self.prefs.clear_recent_projects)

    # -- document lifecycle -----------------------------------------------------------------------

    def _set_document(
        self, project: Project, path: Path | None, clean: bool = True, queue: Any = None
    ) -> None:
        old = self.doc
        sizes = self._splitter_sizes() if old is not None else None
        if old is not None:
            old.close()
        doc = _Document(self, project, path, queue)
        self.doc = doc
        top = QSplitter(Qt.Orientation.Horizontal)
        top.setObjectName("topSplitter")
        top.addWidget(doc.bin)
        top.addWidget(doc.viewer)
        top.addWidget(doc.inspector)
        top.setStretchFactor(0, 3)
        top.setStretchFactor(1, 5)
        top.setStretchFactor(2, 2)
        top.setSizes([430, 700, 310])
        main = QSplitter(Qt.Orientation.Vertical)
        main.setObjectName("mainSplitter")
        main.addWidget(top)
        main.addWidget(doc.timeline_panel)
        main.setStretchFactor(0, 5)
        main.setStretchFactor(1, 4)
        main.setSizes([480, 380])
        self.top_splitter, self.main_splitter = top, main
        if sizes is not None:
            top.setSizes(sizes[0])
            main.setSizes(sizes[1])
        old_central = self.centralWidget()
        self.setCentralWidget(main)
        if old_central is not None:
            old_central.deleteLater()
        # wiring
        doc.stack.cleanChanged.connect(self._on_stack_clean_changed)
        doc.stack.indexChanged.connect(self._on_stack_index_changed)
        doc.stack.canUndoChanged.connect(self.act_undo.setEnabled)
        doc.stack.canRedoChanged.connect(self.act_redo.setEnabled)
        doc.stack.undoTextChanged.connect(lambda t: self.act_undo.setText(f"&Undo {t}" if t else "&Undo"))
        doc.stack.redoTextChanged.connect(lambda t: self.act_redo.setText(f"&Redo {t}" if t else "&Redo"))
        self.act_undo.setEnabled(False)
        self.act_redo.setEnabled(False)
        self.act_undo.setText("&Undo")
        self.act_redo.setText("&Redo")
        doc.timeline.playhead_scrubbed.connect(doc.playback.seek)
        doc.playback.position_changed.connect(self._on_playback_position_changed)
        doc.timeline.selection_changed.connect(self._on_timeline_selection_changed)
        doc.timeline.message.connect(self.show_message)
        doc.timeline.audio_region_selected.connect(self._on_timeline_audio_region_selected)
        doc.bin.asset_selected.connect(self._on_bin_asset_selected)
        doc.bin.import_requested.connect(lambda: self._guard(self.import_dialog))
        doc.bin.relink_requested.connect(lambda a: self._guard(lambda: self.relink_dialog(a)))
        doc.bin.add_to_timeline_requested.connect(
            lambda a: self._guard(lambda: self.add_asset_at_playhead(a))
        )
        doc.editing.message.connect(self.show_message)
        doc.editing.clips_placed.connect(lambda ids: doc.timeline.set_selection(set(ids)))
        doc.media.failed.connect(self.show_message)
        doc.playback.message.connect(self.show_message)
        doc.frames.failed.connect(self.show_message)
        for signal in (project.clip_added, project.clip_removed, project.clip_changed, project.track_changed):
            signal.connect(self._on_project_timeline_changed)
        # Keys go to the timeline first (Space, J/K/L, S...), not to the bin's search box.
        doc.timeline.setFocus(Qt.FocusReason.OtherFocusReason)
        # A recovered autosave differs from the file on disk although nothing is on the undo stack.
        doc.recovered = not clean
        self._update_title()

    def _on_project_timeline_changed(self, *args: Any) -> None:
        if self.doc is not None and not self.doc.playback.playing:
            self.doc.viewer.refresh()

    def project(self) -> Project:
        assert self.doc is not None
        return self.doc.project

    def _update_title(self) -> None:
        doc = self.doc
        name = doc.path.name if doc and doc.path else "Untitled"
        self.setWindowTitle(f"{name}[*] — {APP_NAME}")
        self.setWindowModified(self.is_modified())

    def is_modified(self) -> bool:
        doc = self.doc
        if doc is None:
            return False
        # An untitled project's render queue is unsaved work too (it lives only in the untitled autosave).
        unsaved_queue = doc.path is None and doc.queue is not None and len(doc.queue) > 0
        return bool(not doc.stack.isClean() or doc.recovered or unsaved_queue)

    def _on_stack_clean_changed(self, clean: bool) -> None:
        self._update_title()

    def _on_stack_index_changed(self, index: int) -> None:
        self._update_title()
        # Autosave after a burst of changes: the timer restarts on every change.
        if self.is_modified():
            self._autosave_timer.start(self.prefs.autosave_seconds * 1000)

    def _on_autosave_timer_timeout(self) -> None:
        doc = self.doc
        if doc is None or not self.is_modified():
            return
        try:
            document.write_autosave(doc.project, doc.path, doc.queue)
        except Exception as exc:
            self.show_message(f"Autosave failed: {exc}")

    def show_message(self, text: str, timeout_ms: int = 8000) -> None:
        self.statusBar().showMessage(text, timeout_ms)

    # -- questions (overridden in tests) ----------------------------------------------------------

    def ask_save_changes(self) -> QMessageBox.StandardButton:
        name = self.doc.path.name if self.doc and self.doc.path else "Untitled"
        return QMessageBox.question(
            self,
            APP_NAME,
            f"Save changes to “{name}” before closing?",
            QMessageBox.StandardButton.Save
            | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Save,
        )

    def ask_recover(self, path: Path, autosave: Path) -> bool:
        answer = QMessageBox.question(
            self,
            "Recover unsaved changes?",
            f"“{path.name}” has an autosave that is newer than the saved file (the app may have closed "
            "unexpectedly).\n\nOpen the autosaved version? Choosing No opens the file as last saved; the "
            "autosave is kept until you save.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.Yes,
        )
        return answer == QMessageBox.StandardButton.Yes

    def ask_recover_untitled(self, autosave: Path) -> bool:
        answer = QMessageBox.question(
            self,
            "Recover unsaved project?",
            "An untitled project was not saved before the app closed unexpectedly. Recover it?\n\n"
            "Choosing No deletes that backup.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.Yes,
        )
        return answer == QMessageBox.StandardButton.Yes

    def check_untitled_recovery(self) -> bool:
        """Offer the newest autosave of an untitled project a crashed run left behind (at start-up)."""
        for autosave in document.orphaned_untitled_autosaves():
            if not self.ask_recover_untitled(autosave):
                autosave.unlink(missing_ok=True)
                continue
            try:
                loaded = document.adopt_untitled_autosave(autosave)
            except Exception as exc:
                self.show_message(f"Could not recover the untitled project: {exc}")
                continue
            self._set_document(loaded.project, None, clean=False, queue=loaded.queue)
            self.show_message("Recovered the untitled project: save it to keep it")
            return True
        return False

    def choose_save_path(self) -> str:
        start = self.prefs.last_project_dir or str(Path.home())
        path, _ = QFileDialog.getSaveFileName(
            self, "Save Project", str(Path(start) / f"Untitled{document.PROJECT_SUFFIX}"), PROJECT_FILTER
        )
        if path and not Path(path).suffix:
            path += document.PROJECT_SUFFIX
        return path

    def choose_open_path(self) -> str:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open Project", self.prefs.last_project_dir, PROJECT_FILTER
        )
        return path

    def choose_import_paths(self) -> list[str]:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Import Media", self.prefs.last_import_dir, MEDIA_FILTER
        )
        return paths

    def choose_relink_path(self, name: str) -> str:
        path, _ = QFileDialog.getOpenFileName(
            self, f"Relink “{name}”", self.prefs.last_import_dir, MEDIA_FILTER
        )
        return path

    def choose_export_path(self) -> str:
        doc = self.doc
        base = (
            doc.path.with_suffix(".mp4")
            if doc and doc.path
            else Path(self.prefs.last_project_dir or Path.home()) / "export.mp4"
        )
        path, _ = QFileDialog.getSaveFileName(self, "Export to MP4", str(base), "MPEG-4 video (*.mp4)")
        if path and not Path(path).suffix:
            path += ".mp4"
        return path

    # -- file operations --------------------------------------------------------------------------

    def maybe_save(self) -> bool:
        """True when it is fine to drop the open project (saved, discarded, or unchanged)."""
        doc = self.doc
        if doc is None or not self.is_modified():
            return True
        answer = self.ask_save_changes()
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        if answer == QMessageBox.StandardButton.Discard:
            # The user threw the changes away: their backup goes too.
            self._discard_autosave()
            return True
        return False

    def new_project(self) -> None:
        if not self.maybe_save():
            return
        self._discard_autosave()
        self._set_document(document.new_project(), None)

    def open_project_dialog(self) -> None:
        path = self.choose_open_path()
        if path:
            self.open_project(path)

    def open_recent(self, path: str) -> None:
        if not Path(path).exists():
            self.prefs.remove_recent_project(path)
            raise FileNotFoundError(f"{path} no longer exists; removed it from the recent projects")
        self.open_project(path)

    def open_project(self, path: str | Path, check_recovery: bool = True) -> bool:
        """Open a project file (offering a newer autosave first). Returns False when nothing was opened."""
        path = Path(path).resolve()
        if not self.maybe_save():
            return False
        recovered = False
        autosave = document.newer_autosave(path) if check_recovery else None
        try:
            if autosave is not None and self.ask_recover(path, autosave):
                loaded = document.load_autosave(autosave, path)
                recovered = True
            else:
                loaded = document.load(path)
        except Exception as exc:
            QMessageBox.warning(self, APP_NAME, f"Cannot open {path.name}:\n{exc}") if not _testing(
                self
            ) else None
            self.show_message(f"Cannot open {path.name}: {exc}")
            return False
        self._autosave_timer.stop()
        if self.doc is not None and self.doc.path != path:
            document.remove_autosave(self.doc.path)
        project = loaded.project
        self._set_document(project, path, clean=not recovered, queue=loaded.queue)
        QTimer.singleShot(0, self.doc.timeline.zoom_to_fit)  # once the new timeline has its size
        self.prefs.add_recent_project(path)
        self.prefs.last_project_dir = str(path.parent)
        missing = project.missing_assets()
        if missing:
            names = ", ".join(a.name for a in missing[:3]) + ("…" if len(missing) > 3 else "")
            self.show_message(
                f"{len(missing)} media file(s) are offline ({names}): File ▸ Relink Missing Media", 15000
            )
        else:
            self.show_message(f"Opened {path.name}" + (" (recovered from autosave)" if recovered else ""))
        return True

    def save(self) -> bool:
        doc = self.doc
        if doc is None:
            return False
        if doc.path is None:
            return self.save_as_dialog()
        return self.save_to(doc.path)

    def save_as_dialog(self) -> bool:
        path = self.choose_save_path()
        return self.save_to(Path(path)) if path else False

    def save_to(self, path: str | Path) -> bool:
        doc = self.doc
        assert doc is not None
        path = Path(path).resolve()
        try:
            document.save(doc.project, path, doc.queue)
        except Exception as exc:
            self.show_message(f"Could not save {path.name}: {exc}")
            if not _testing(self):
                QMessageBox.warning(
                    self, APP_NAME, f"Could not save {path.name}:\n{exc}\n\nYour changes are still open."
                )
            return False
        old_path = doc.path
        doc.path = path
        if old_path != path:
            doc.media.cache_dir = str(document.cache_dir(path))
        document.remove_autosave(old_path)
        document.remove_autosave(path)
        doc.stack.setClean()
        doc.recovered = False
        self.prefs.add_recent_project(path)
        self.prefs.last_project_dir = str(path.parent)
        self._update_title()
        # The first save of a project whose renders stayed in the shared untitled.media: say how to collect them.
        hint = untitled_hint(doc.project, path.name) if old_path is None else ""
        self.show_message(hint or f"Saved {path.name}", 20000 if hint else 8000)
        return True

    def _discard_autosave(self) -> None:
        self._autosave_timer.stop()
        if self.doc is not None:
            document.remove_autosave(self.doc.path)

    def import_dialog(self) -> None:
        paths = self.choose_import_paths()
        if paths:
            self.prefs.last_import_dir = str(Path(paths[0]).parent)
            self.doc.editing.import_files(paths)

    def add_asset_at_playhead(self, asset_id: str) -> None:
        doc = self.doc
        clip_id = doc.editing.add_clip(asset_id, "", doc.playback.position)
        doc.timeline.set_selection({clip_id})

    def relink_missing(self) -> None:
        missing = self.doc.project.missing_assets()
        if not missing:
            self.show_message("No media is offline.")
            return
        self.relink_dialog(missing[0].asset_id)

    def relink_dialog(self, asset_id: str) -> None:
        asset = self.doc.project.asset(asset_id)
        path = self.choose_relink_path(asset.name)
        if path:
            self.doc.editing.relink_asset(asset_id, path)

    # -- editing commands -------------------------------------------------------------------------

    def _selected(self) -> list[str]:
        return sorted(self.doc.timeline.selected)

    def split(self) -> None:
        self.doc.editing.split_at(self.doc.playback.position, self._selected())

    def lift(self) -> None:
        """Delete: in the bin it removes the selected media from the project (one undo step, their clips
        included); anywhere else it lifts the selected clips, leaving a gap."""
        bin_view = self.doc.bin.view
        if bin_view.hasFocus() and self.doc.bin.selected_asset_ids():
            self.doc.bin.remove_selected()
            return
        self.doc.editing.lift(self._selected())

    def ripple_delete(self) -> None:
        self.doc.editing.ripple_delete(self._selected())

    def add_marker(self) -> None:
        self.doc.editing.add_marker(self.doc.playback.position)

    def remove_marker(self) -> None:
        self.doc.editing.remove_marker_near(self.doc.playback.position)

    def toggle_snapping(self) -> None:
        on = self.act_snap.isChecked()
        self.prefs.snapping = on
        self.doc.timeline.snapping = on
        self.doc.timeline_panel.snap_button.setChecked(on)
        self.show_message("Snapping on" if on else "Snapping off", 2000)

    def mark_in(self) -> None:
        doc = self.doc
        doc.timeline.set_in_out(doc.playback.position, doc.timeline.out_point)

    def mark_out(self) -> None:
        doc = self.doc
        doc.timeline.set_in_out(doc.timeline.in_point, doc.playback.position + 1)

    def clear_in_out(self) -> None:
        self.doc.timeline.set_in_out(None, None)

    def _on_playback_position_changed(self, frame: int) -> None:
        timeline = self.doc.timeline
        timeline.set_playhead(frame)
        if self.doc.playback.playing:
            timeline.ensure_frame_visible(frame)

    def _on_timeline_selection_changed(self) -> None:
        selected = self._selected()
        if len(selected) == 1:
            self.doc.inspector.show_clip(selected[0])
        elif not selected and not self.doc.bin.current_asset_id():
            self.doc.inspector.show_clip("")
        self._status_label.setText(f"{len(selected)} clips selected" if len(selected) > 1 else "")

    def _on_bin_asset_selected(self, asset_id: str) -> None:
        if asset_id:
            self.doc.inspector.show_asset(asset_id)

    def _on_timeline_audio_region_selected(self, clip_id: str, start: int, end: int) -> None:
        fps = self.doc.project.settings.fps
        self.show_message(f"Audio region {(end - start) / fps:.2f} s selected (drives a talking avatar)")

    # -- export -----------------------------------------------------------------------------------

    def export_dialog_open(self) -> None:
        if self.doc.project.end_frame <= 0:
            raise ValueError("The timeline is empty: put some clips on it before exporting.")
        path = self.choose_export_path()
        if path:
            self.start_export(path)

    def start_export(self, path: str | Path) -> ExportWorker:
        if self.export_worker is not None:
            raise RuntimeError("An export is already running.")
        doc = self.doc
        in_out = (doc.timeline.in_point, doc.timeline.out_point)
        job = document.export_job(doc.project, Path(path), in_out)
        worker = ExportWorker(job, document.export_cancelled_types())
        fps = doc.project.settings.fps
        span = ""
        if in_out != (None, None):
            a = in_out[0] if in_out[0] is not None else 0
            b = in_out[1] if in_out[1] is not None else doc.project.end_frame
            span = f" (in {format_timecode(a, fps)} to out {format_timecode(b, fps)})"
        dialog = cancellable_progress(self, "Export", f"Exporting {Path(path).name}{span}…", 100, worker.cancel_event)
        worker.progress_changed.connect(self._on_export_progress_changed)
        worker.finished.connect(self._on_export_finished)
        worker.failed.connect(self._on_export_failed)
        worker.cancelled.connect(self._on_export_cancelled)
        self.export_worker, self.export_dialog = worker, dialog
        self.last_export_error = ""
        worker.start_thread()
        dialog.show()
        return worker

    def _on_export_progress_changed(self, done: int, total: int) -> None:
        if self.export_dialog is not None and total:
            self.export_dialog.setValue(int(100 * done / total))

    def _end_export(self) -> None:
        worker, dialog = self.export_worker, self.export_dialog
        self.export_worker, self.export_dialog = None, None
        if worker is not None:
            if not worker.wait(10000):
                # Never drop a running QThread (Qt aborts); keep it until it ends.
                self._stuck_exports.append(worker)
            else:
                worker.deleteLater()
        if dialog is not None:
            dialog.close()
            dialog.deleteLater()

    def _on_export_finished(self, path: str) -> None:
        self._end_export()
        self.show_message(f"Exported {Path(path).name}", 15000)

    def _on_export_failed(self, message: str) -> None:
        self._end_export()
        self.last_export_error = message
        self.show_message(f"Export failed: {message}", 20000)
        if not _testing(self):
            QMessageBox.warning(
                self, "Export failed", f"The export failed:\n{message}\n\nNo file was left behind."
            )

    def _on_export_cancelled(self) -> None:
        self._end_export()
        self.show_message("Export cancelled; no file was written.")

    # -- dialogs ----------------------------------------------------------------------------------

    def show_models(self) -> None:
        from app.models_dialog import ModelsDialog

        dialog = ModelsDialog(self.pool, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()

    def show_about(self) -> None:
        QMessageBox.about(
            self,
            f"About {APP_NAME}",
            f"<b>{APP_NAME}</b><br>A video editor around the SkyReels-V3 generation models.",
        )

    def open_url(self, url: str) -> None:
        QDesktopServices.openUrl(QUrl(url))

    # -- layout and closing -----------------------------------------------------------------------

    def _splitter_sizes(self) -> tuple[list[int], list[int]]:
        return self.top_splitter.sizes(), self.main_splitter.sizes()

    def _restore_layout(self) -> None:
        geometry, state, splitters = self.prefs.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        if "top" in splitters:
            self.top_splitter.restoreState(splitters["top"])
        if "main" in splitters:
            self.main_splitter.restoreState(splitters["main"])

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.maybe_save():
            event.ignore()
            return
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop everything that runs in the background and remember the layout."""
        self._autosave_timer.stop()
        self._warm_timer.stop()
        if self.export_worker is not None:
            self.export_worker.cancel_event.set()
            self._end_export()
        self.collector.shutdown()
        with contextlib.suppress(RuntimeError):
            self.prefs.save_window_state(
                self.saveGeometry(),
                self.saveState(),
                {"top": self.top_splitter.saveState(), "main": self.main_splitter.saveState()},
            )
            self.prefs.sync()
        if self.doc is not None:
            self.doc.close()
        self.pool.shutdown()
        if self.doc is not None:
            self.doc.media.release_readers()


def warm_media_imports() -> None:
    """Worker function: import the media modules the editor uses (no work, no files)."""
    import core.media.audio
    import core.media.decode
    import core.media.probe
    import core.media.thumbnails
    import core.media.timeline_render
    import core.media.waveform  # noqa: F401


def _redo_keys() -> list[QKeySequence]:
    """The platform's redo keys plus both common conventions (Ctrl+Shift+Z and Ctrl+Y)."""
    keys = list(QKeySequence.keyBindings(QKeySequence.StandardKey.Redo))
    for extra in ("Ctrl+Shift+Z", "Ctrl+Y"):
        if QKeySequence(extra) not in keys:
            keys.append(QKeySequence(extra))
    return keys


def _testing(window: MainWindow) -> bool:
    """Modal message boxes are skipped when the window runs under tests (they would block)."""
    return bool(getattr(window, "testing", False))
