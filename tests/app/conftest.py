"""Fixtures for the Qt editor tests (pytest-qt, offscreen).

- ``QT_QPA_PLATFORM=offscreen`` unless the caller chose a platform (e.g. Xvfb).
- Preferences and standard paths point into a temporary folder: no test reads or writes the user's.
- Media is generated once per run with our own ``core.media`` writers (a short numbered-frame video
  with sound, a 1 s sine WAV, a flat PNG).
- Every test fails if it leaves a worker pool busy or an editor thread running after teardown.
- ``FakeOutputStream`` stands in for the sound card: the test pulls samples through the callback.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import tempfile
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, QStandardPaths, QThreadPool, QtMsgType
from PySide6.QtWidgets import QMessageBox

from app.qt_compat import guard_none_refcount

guard_none_refcount()

_SETTINGS_DIR = tempfile.mkdtemp(prefix="skyreels-test-settings-")
QStandardPaths.setTestModeEnabled(True)
for _fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
    QSettings.setPath(_fmt, QSettings.Scope.UserScope, _SETTINGS_DIR)
    QSettings.setPath(_fmt, QSettings.Scope.SystemScope, _SETTINGS_DIR)

# Messages of the offscreen platform plugin itself ("This plugin does not support raise()", ...), not of
# our code.
PLATFORM_NOISE_PREFIX = "This plugin does not support"

FPS = 24
VIDEO_FRAMES = 48
SIZE = (320, 180)
RATE = 48000


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from core.media.images import write_image
    from core.media.patterns import numbered_frame, sine
    from core.media.writer import write_video, write_wav

    folder = tmp_path_factory.mktemp("media")
    frames = (numbered_frame(i, *SIZE) for i in range(VIDEO_FRAMES))
    tone = sine(VIDEO_FRAMES / FPS, RATE, 330.0)
    write_video(folder / "clip.mp4", frames, FPS, audio=np.stack([tone, tone], axis=1), audio_rate=RATE)
    write_video(folder / "silent.mp4", (numbered_frame(i, *SIZE) for i in range(24)), FPS)
    write_wav(folder / "tone.wav", sine(1.0, RATE, 440.0), RATE)
    flat = np.full((90, 160, 3), (40, 120, 200), np.uint8)
    write_image(folder / "still.png", flat)
    return folder


class FakeOutputStream:
    """A sound output the test drives: :meth:`pump` pulls ``frames`` samples like a sound card would."""

    def __init__(self, samplerate: int, channels: int, callback) -> None:
        self.samplerate, self.channels, self.callback = samplerate, channels, callback
        self.started = False
        self.closed = False
        self.pulled: list[np.ndarray] = []

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True

    def pump(self, frames: int) -> np.ndarray:
        out = np.zeros((frames, self.channels), np.float32)
        self.callback(out, frames, None, None)
        self.pulled.append(out.copy())
        return out


class FakeOutputFactory:
    def __init__(self) -> None:
        self.streams: list[FakeOutputStream] = []

    def __call__(self, samplerate: int, channels: int, callback) -> FakeOutputStream:
        stream = FakeOutputStream(samplerate, channels, callback)
        self.streams.append(stream)
        return stream


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory):
    """A folder for tiny checkpoints, in ``$SKYREELS_TINY_DIR`` for the module's tests (render processes
    they start inherit it). Tests' backend factories may set torch to one thread (much faster on the
    2-core test machine); the thread count is restored for later modules."""
    torch = pytest.importorskip("torch")
    folder = str(tmp_path_factory.mktemp("tiny"))
    old = os.environ.get("SKYREELS_TINY_DIR")
    threads = torch.get_num_threads()
    os.environ["SKYREELS_TINY_DIR"] = folder
    yield folder
    torch.set_num_threads(threads)
    if old is None:
        os.environ.pop("SKYREELS_TINY_DIR", None)
    else:
        os.environ["SKYREELS_TINY_DIR"] = old


@pytest.fixture
def output_factory() -> FakeOutputFactory:
    return FakeOutputFactory()


@pytest.fixture
def prefs(tmp_path: Path):
    from app.settings import Preferences

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    return Preferences(settings)


@pytest.fixture
def window(qtbot, qtlog, prefs, output_factory):
    from app.application import create_application
    from app.main_window import MainWindow

    create_application([])
    win = MainWindow(prefs, output_factory=output_factory)
    win.testing = True
    win.prefs.autosave_seconds = 3600  # tests trigger autosave explicitly
    win.resize(1400, 900)
    # Modal questions would block a test: answer them unless a test installs its own answer.
    win.ask_save_changes = lambda: QMessageBox.StandardButton.Discard
    win.ask_recover = lambda path, autosave: False
    win.show()
    qtbot.waitExposed(win)
    yield win
    # Not registered with qtbot.addWidget: pytest-qt would close it before this teardown runs.
    win.ask_save_changes = lambda: QMessageBox.StandardButton.Discard
    win.close()
    win.deleteLater()
    # Qt warnings are bugs (a timer stopped from another thread, a bad connection...): fail on them.
    noisy = [
        r.message
        for r in qtlog.records
        if r.type in (QtMsgType.QtWarningMsg, QtMsgType.QtCriticalMsg, QtMsgType.QtFatalMsg)
        and not r.message.startswith(PLATFORM_NOISE_PREFIX)
    ]
    assert not noisy, f"Qt warnings during the test: {noisy}"


@pytest.fixture(autouse=True)
def _no_leftover_workers(request):
    """Fail the test if it leaves pool work or an editor thread (export, render worker) running (after all
    its fixtures ended)."""
    yield
    from app.workers import live_pools, live_threads

    problems = []
    if QThreadPool.globalInstance().activeThreadCount():
        problems.append(f"{QThreadPool.globalInstance().activeThreadCount()} global pool threads busy")
    for pool in live_pools():
        if pool.activeThreadCount() or pool.pending():
            problems.append(
                f"worker pool still busy ({pool.activeThreadCount()} running, {pool.pending()} pending)"
            )
    threads = live_threads()
    if threads:
        problems.append(f"{len(threads)} editor threads still running: {[t.objectName() for t in threads]}")
    if problems:
        for pool in live_pools():
            pool.shutdown(2000)
        for thread in threads:
            thread.quit()
            thread.wait(2000)
        pytest.fail("; ".join(problems), pytrace=False)


def wait_idle(qtbot, win, timeout: int = 15000) -> None:
    """Wait until the window's background jobs (imports, thumbnails, peaks) have all reported back."""
    qtbot.waitUntil(lambda: win.pool.pending() == 0 and win.doc.editing.imports_pending == 0, timeout=timeout)
