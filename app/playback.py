"""Timeline playback: the audio clock, the sound output, and the picture that follows it.

Owns :class:`PlaybackController`. While playing, the sound card pulls samples of the timeline mix
through a callback; the number of samples it has consumed *is* the clock, and a timer on the main
thread turns that clock into the playhead frame (so picture follows sound, never the other way). When
there is no audio device, or PortAudio is missing, or the shuttle runs at another speed than 1x, a wall
clock stands in and the status bar says so.

The output stream is opened lazily on the first play through an injected factory
``output_factory(samplerate, channels, callback) -> stream`` (``start()``, ``stop()``, ``close()``); the
default one uses ``sounddevice``. Tests inject a stream object they drive by hand.

Threading: the controller lives on the main thread; only :meth:`_audio_callback` runs on the audio
thread, and it touches nothing but the current buffer reference and the sample counter. Timeline audio is
mixed in a worker (:func:`mix_timeline_audio`) from a snapshot taken on the main thread.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from app.workers import WorkerPool
from core.project import Project

SAMPLE_RATE_DEFAULT = 48000
CHANNELS = 2
MIX_SECONDS = 120  # how much sound is mixed ahead when play starts (re-mixed when it runs out)
TICK_MS = 10


def sounddevice_output(samplerate: int, channels: int, callback: Callable[..., None]) -> Any:
    """The default output: a ``sounddevice.OutputStream`` (raises when PortAudio or a device is missing)."""
    import sounddevice  # imported lazily: PortAudio may be absent, and it costs start-up time

    return sounddevice.OutputStream(
        samplerate=samplerate, channels=channels, dtype="float32", callback=callback, latency="low"
    )


def mix_timeline_audio(snapshot: Project, start_frame: int, end_frame: int) -> np.ndarray:
    """Worker function: the timeline's sound for ``[start_frame, end_frame)`` as float32 ``[n, 2]`` at the
    project rate, mixed by ``core.media.timeline_render`` (same rules as the export; unreadable media is
    silent rather than an error during playback)."""
    from core.media.timeline_render import TimelineRenderer

    with TimelineRenderer(snapshot, missing_ok=True) as renderer:
        if not renderer.has_audio(start_frame, end_frame):
            return np.zeros((0, CHANNELS), np.float32)
        return renderer.audio(start_frame, end_frame)


class PlaybackController(QObject):
    """Play/pause, shuttle, frame step and the playhead position. Main thread only.

    Signals:
        position_changed(int): the playhead frame (while playing: every tick it moves; also on seeks).
        state_changed(bool): playing or not.
        message(str): status-bar text (no audio device, and so on).
    """

    position_changed = Signal(int)
    state_changed = Signal(bool)
    message = Signal(str)

    def __init__(
        self,
        project: Project,
        pool: WorkerPool,
        output_factory: Callable[[int, int, Callable[..., None]], Any] | None = sounddevice_output,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.project = project
        self._pool = pool
        self._output_factory = output_factory
        self._stream: Any = None
        self._stream_failed: str | None = None if output_factory is not None else "no audio output"
        self.position = 0
        self.playing = False
        self.speed = 0  # shuttle: -4..4 (0 = stopped)
        self.loop_end: int | None = None
        self._start_frame = 0
        self._start_time = 0.0
        self._consumed = 0  # samples handed to the device since play started (audio thread writes)
        self._buffer: np.ndarray | None = None  # the mix from _start_frame (audio thread reads)
        self._buffer_generation = 0
        self._use_audio_clock = False
        self._rate = project.settings.sample_rate or SAMPLE_RATE_DEFAULT
        self._lock = threading.Lock()
        self._timer = QTimer(self)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._on_tick)
        # An edit while playing re-mixes the sound from the playhead (the old mix would be stale).
        self._remix_timer = QTimer(self, singleShot=True, interval=150)
        self._remix_timer.timeout.connect(self._on_remix_timer_timeout)
        self._subscriptions = [
            (project.clip_added, self._on_project_changed),
            (project.clip_removed, self._on_project_changed),
            (project.clip_changed, self._on_project_changed),
            (project.track_changed, self._on_project_changed),
        ]
        for signal, slot in self._subscriptions:
            signal.connect(slot)

    def _on_project_changed(self, *args: Any) -> None:
        if self.playing and self.speed == 1:
            self._remix_timer.start()

    def _on_remix_timer_timeout(self) -> None:
        if self.playing:
            self.seek(self.position)

    # -- the output stream ------------------------------------------------------------------------

    @property
    def audio_available(self) -> bool:
        return self._stream is not None

    @property
    def audio_problem(self) -> str | None:
        return self._stream_failed

    def _ensure_stream(self) -> bool:
        if self._stream is not None:
            return True
        if self._stream_failed is not None:
            return False
        try:
            self._stream = self._output_factory(self._rate, CHANNELS, self._audio_callback)
        except Exception as exc:  # OSError from a missing PortAudio, PortAudioError without a device
            self._stream_failed = str(exc) or type(exc).__name__
            self.message.emit(f"No audio output available, playing without sound ({self._stream_failed})")
            return False
        return True

    def _audio_callback(
        self, outdata: np.ndarray, frames: int, time_info: Any = None, status: Any = None
    ) -> None:
        """Runs on the audio thread: copy the next samples of the mix, count them (the clock)."""
        buffer = self._buffer
        pos = self._consumed
        if buffer is None or pos >= len(buffer):
            outdata.fill(0)
        else:
            chunk = buffer[pos : pos + frames]
            outdata[: len(chunk)] = chunk
            if len(chunk) < frames:
                outdata[len(chunk) :] = 0
        self._consumed = pos + frames

    def close(self) -> None:
        """Stop playback and close the sound device (call when the window closes)."""
        self.pause()
        self._timer.stop()
        self._remix_timer.stop()
        for signal, slot in self._subscriptions:
            if signal.is_connected(slot):
                signal.disconnect(slot)
        self._subscriptions = []
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()
            self._stream = None

    # -- transport --------------------------------------------------------------------------------

    def end_frame(self) -> int:
        return self.loop_end if self.loop_end is not None else self.project.end_frame

    def seek(self, frame: int) -> None:
        frame = max(0, int(frame))
        was_playing = self.playing
        speed = self.speed
        if was_playing:
            self._stop_clock()
        self.position = frame
        self.position_changed.emit(frame)
        if was_playing:
            self._start_clock(speed)

    def step(self, frames: int) -> None:
        self.pause()
        self.seek(self.position + frames)

    def toggle_play(self) -> None:
        if self.playing:
            self.pause()
        else:
            self.play()

    def play(self, speed: int = 1) -> None:
        if self.playing and self.speed == speed:
            return
        if self.playing:
            self._stop_clock()
        if speed > 0 and self.position >= self.end_frame() > 0:
            self.position = 0
            self.position_changed.emit(0)
        self._start_clock(speed)
        self.playing = True
        self.state_changed.emit(True)

    def pause(self) -> None:
        if not self.playing:
            return
        self._stop_clock()
        self.playing = False
        self.speed = 0
        self.state_changed.emit(False)

    def shuttle(self, direction: int) -> None:
        """J (-1) / K (0) / L (+1): each press of the same direction doubles the speed, up to 4x."""
        if direction == 0:
            self.pause()
            return
        if self.playing and (self.speed > 0) == (direction > 0):
            speed = max(-4, min(4, self.speed * 2))
        else:
            speed = direction
        self.play(speed)

    # -- clock ------------------------------------------------------------------------------------

    def _start_clock(self, speed: int) -> None:
        self.speed = speed
        self._start_frame = self.position
        self._start_time = time.perf_counter()
        self._consumed = 0
        self._buffer = None
        self._use_audio_clock = False
        if speed == 1 and self._ensure_stream():
            self._use_audio_clock = True
            self._request_mix(self._start_frame)
            try:
                self._stream.start()
            except Exception as exc:
                self._use_audio_clock = False
                self._stream_failed = str(exc)
                self.message.emit(f"No audio output available, playing without sound ({exc})")
        self._timer.start()

    def _stop_clock(self) -> None:
        self._timer.stop()
        if self._use_audio_clock and self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.stop()
        self._use_audio_clock = False
        self._buffer_generation += 1
        self._buffer = None

    def _request_mix(self, start_frame: int) -> None:
        fps = self.project.settings.fps
        end = max(start_frame, min(self.end_frame(), start_frame + MIX_SECONDS * fps))
        if end <= start_frame:
            self._buffer = np.zeros((0, CHANNELS), np.float32)
            return
        # A snapshot taken here: the worker never reads the project being edited.
        snapshot = Project.from_dict(self.project.to_dict())
        generation = self._buffer_generation

        def _done(samples: np.ndarray) -> None:
            if generation == self._buffer_generation and self.playing:
                self._buffer = samples

        self._pool.submit(
            mix_timeline_audio,
            snapshot,
            start_frame,
            end,
            on_done=_done,
            on_error=lambda exc: self.message.emit(f"Cannot play sound: {exc}"),
        )

    def clock_seconds(self) -> float:
        """Seconds played since play started (audio samples consumed, or the wall clock)."""
        if self._use_audio_clock:
            # What the listener hears now lags what the device took by its output latency.
            latency = float(getattr(self._stream, "latency", 0.0) or 0.0)
            return max(0.0, self._consumed / self._rate - latency)
        return (time.perf_counter() - self._start_time) * self.speed

    def _on_tick(self) -> None:
        fps = self.project.settings.fps
        frame = self._start_frame + int(self.clock_seconds() * fps)
        end = self.end_frame()
        if self.speed > 0 and frame >= end:
            frame = end
            self.position = frame
            self.position_changed.emit(frame)
            self.pause()
            return
        if frame <= 0 and self.speed < 0:
            self.position = 0
            self.position_changed.emit(0)
            self.pause()
            return
        if frame != self.position:
            self.position = frame
            self.position_changed.emit(frame)
