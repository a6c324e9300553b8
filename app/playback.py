"""Timeline playback: the audio clock, the sound output, and the picture that follows it.

Owns :class:`PlaybackController`. While playing, the sound card pulls samples of the timeline mix
through a callback; the number of samples it has consumed *is* the clock, and a timer on the main
thread turns that clock into the playhead frame (so picture follows sound, never the other way):
``position = start + speed * (consumed / rate - latency) * fps``. When there is no audio device, or
PortAudio is missing, a wall clock stands in and the status bar says so.

Shuttle sound (J/K/L, speeds -4..4): every speed plays sound. The worker mixes the stretch of the
timeline the shuttle will cover with :func:`mix_timeline_audio` (from a snapshot, like 1x), reverses it
when the shuttle runs backwards, and compresses it in time by the speed with :func:`time_stretch` (a
WSOLA overlap-add: 40 ms Hann grains, each placed where it best continues the one before, so the pitch
stays and speech stays intelligible; the windows sum to one, so grain joins do not click). One output
second covers ``speed`` timeline seconds, which is exactly what the clock formula above assumes, so
picture and sound stay in sync at every speed.

The sound is mixed in pieces of output time (:func:`mix_shuttle_audio`): a short first piece so that
sound starts soon after play, a seek or a speed change (those restart the mix from the playhead; the
gap is one short mix job), then longer pieces requested while the one playing still has
``MIX_AHEAD_SECONDS`` left. Each piece is mixed a few milliseconds longer than it lasts and the next
one cross-fades over that tail, so pieces join without a click. An edit while playing re-mixes from
the playhead at the current speed.

The output stream is opened lazily on the first play through an injected factory
``output_factory(samplerate, channels, callback) -> stream`` (``start()``, ``stop()``, ``close()``); the
default one uses ``sounddevice``. Tests inject a stream object they drive by hand.

Threading: the controller lives on the main thread; only :meth:`_audio_callback` runs on the audio
thread, and it touches nothing but the current ``(first sample, samples)`` reference (swapped whole by
the main thread) and the sample counter. Mixing and stretching run in a worker from a snapshot taken on
the main thread.
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
from core.media.stretch import GRAIN_SECONDS, time_stretch
from core.project import Project

SAMPLE_RATE_DEFAULT = 48000
CHANNELS = 2
FIRST_MIX_SECONDS = 2.0  # output seconds of the first mix after play/seek/speed change (starts fast)
MIX_SECONDS = 15.0  # output seconds of each later mix
MIX_AHEAD_SECONDS = 6.0  # the next mix is requested when less than this is left to play
CROSSFADE_SECONDS = 0.01  # each mix runs this much longer; the next one fades in over it
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


def mix_shuttle_audio(
    snapshot: Project,
    first_sample: int,
    stop_sample: int,
    limit_sample: int,
    speed: int,
    out_len: int,
    lead: np.ndarray | None = None,
) -> np.ndarray:
    """Worker function: the sound the shuttle plays for timeline samples ``[first_sample, stop_sample)``
    (negative or past ``limit_sample``: silence), reversed when ``speed < 0``, compressed in time to
    ``out_len`` samples (``lead``: see :func:`time_stretch`). Mixed by :func:`mix_timeline_audio`; empty
    when the stretch is silent."""
    rate = snapshot.settings.sample_rate or SAMPLE_RATE_DEFAULT
    fps = snapshot.settings.fps
    context = round(rate * GRAIN_SECONDS * (2 + abs(speed)))  # real sound around the edges
    first_sample, stop_sample = first_sample - context, stop_sample + context
    lo, hi = max(0, first_sample), min(stop_sample, limit_sample)
    if hi <= lo or out_len <= 0:
        return np.zeros((0, CHANNELS), np.float32)
    start_frame = lo * fps // rate  # sample_at(start_frame) <= lo
    end_frame = -(-hi * fps // rate)  # sample_at(end_frame) >= hi
    mixed = mix_timeline_audio(snapshot, start_frame, end_frame)
    if len(mixed) == 0:
        return np.zeros((0, CHANNELS), np.float32)
    offset = start_frame * rate // fps
    samples = np.zeros((stop_sample - first_sample, CHANNELS), np.float32)
    piece = mixed[lo - offset : hi - offset]
    samples[lo - first_sample : lo - first_sample + len(piece)] = piece
    if speed < 0:
        samples = samples[::-1]
    return time_stretch(samples, out_len, rate, lead, context)


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
        # The sound to play: (output sample of samples[0], samples); past its end is silence. Swapped
        # whole by the main thread, read by the audio thread.
        self._audio: tuple[int, np.ndarray] | None = None
        self._buffer_generation = 0
        self._start_sample = 0  # the timeline sample at output sample 0
        self._mixed_to = 0  # output samples mixed (or being mixed) so far
        self._mix_limit = 0  # output samples until the end of the timeline (or its start, backwards)
        self._mix_pending = False
        self._use_audio_clock = False
        self._rate = project.settings.sample_rate or SAMPLE_RATE_DEFAULT
        self._lock = threading.Lock()
        self._timer = QTimer(self)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._on_tick)
        # An edit while playing re-mixes the sound from the playhead (the old mix would be stale).
        self._remix_timer = QTimer(self, singleShot=True, interval=150)
        self._remix_timer.timeout.connect(self._on_remix_timer_timeout)
        # The project copy the mixing workers read; taken again only after a change that affects sound
        # (a copy of a large project costs the GUI thread tens of milliseconds, and a long playback
        # mixes a piece every MIX_SECONDS).
        self._snapshot: Project | None = None
        self._subscriptions = [
            (project.clip_added, self._on_project_changed),
            (project.clip_removed, self._on_project_changed),
            (project.clip_changed, self._on_project_changed),
            (project.track_changed, self._on_project_changed),
            (project.asset_changed, self._on_sound_source_changed),
            (project.settings_changed, self._on_sound_source_changed),
        ]
        for signal, slot in self._subscriptions:
            signal.connect(slot)

    def _on_project_changed(self, *args: Any) -> None:
        self._snapshot = None
        if self.playing and self._use_audio_clock:
            self._remix_timer.start()

    def _on_sound_source_changed(self, *args: Any) -> None:
        self._snapshot = None

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

    @property
    def _buffer(self) -> np.ndarray | None:
        """The mixed samples held now (None until the first mix since play arrived)."""
        audio = self._audio
        return None if audio is None else audio[1]

    def _audio_callback(
        self, outdata: np.ndarray, frames: int, time_info: Any = None, status: Any = None
    ) -> None:
        """Runs on the audio thread: copy the next samples of the mix, count them (the clock)."""
        audio = self._audio
        pos = self._consumed
        outdata.fill(0)
        if audio is not None:
            base, samples = audio
            first = max(pos, base)
            chunk = samples[first - base : pos + frames - base]
            outdata[first - pos : first - pos + len(chunk)] = chunk
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
        self._audio = None
        self._use_audio_clock = False
        if speed != 0 and self._ensure_stream():
            self._use_audio_clock = True
            fps = self.project.settings.fps
            self._start_sample = self._start_frame * self._rate // fps
            if speed > 0:
                span = max(0, self.end_frame() * self._rate // fps - self._start_sample)
            else:
                span = self._start_sample
            self._mix_limit = -(-span // abs(speed))
            self._mixed_to = 0
            self._mix_pending = False
            self._request_mix(round(FIRST_MIX_SECONDS * self._rate))
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
        self._audio = None
        self._mix_pending = False

    def _request_mix(self, length: int) -> None:
        """Mix the next ``length`` output samples (from ``_mixed_to``) at the current speed, in a worker."""
        first_out = self._mixed_to
        stop_out = min(self._mix_limit, first_out + length)
        if stop_out <= first_out:
            if self._audio is None:
                self._audio = (0, np.zeros((0, CHANNELS), np.float32))
            return
        fade = round(CROSSFADE_SECONDS * self._rate)
        factor = abs(self.speed)
        if self.speed > 0:
            first = self._start_sample + factor * first_out
            stop = self._start_sample + factor * (stop_out + fade)
            limit = self.end_frame() * self._rate // self.project.settings.fps
        else:
            first = self._start_sample - factor * (stop_out + fade)
            stop = self._start_sample - factor * first_out
            limit = self._start_sample
        lead = None
        if self._audio is not None:
            base, held = self._audio
            lead = held[first_out - base : first_out - base + fade].copy() if first_out >= base else None
        # A snapshot taken here: the worker never reads the project being edited.
        if self._snapshot is None:
            self._snapshot = Project.from_dict(self.project.to_dict())
        snapshot = self._snapshot
        generation = self._buffer_generation
        self._mixed_to = stop_out
        self._mix_pending = True

        def _done(samples: np.ndarray) -> None:
            if generation == self._buffer_generation and self.playing:
                self._mix_pending = False
                self._place_mix(first_out, samples)

        def _failed(exc: BaseException) -> None:
            if generation == self._buffer_generation:
                self._mix_pending = False
                self._mixed_to = self._mix_limit  # no more tries until the next play or seek
            self.message.emit(f"Cannot play sound: {exc}")

        self._pool.submit(
            mix_shuttle_audio,
            snapshot,
            first,
            stop,
            limit,
            self.speed,
            stop_out - first_out + fade,
            lead,
            on_done=_done,
            on_error=_failed,
        )

    def _place_mix(self, first_out: int, samples: np.ndarray) -> None:
        """Put a mixed piece at output sample ``first_out``, cross-fading it over the tail of the piece
        before (which ran ``CROSSFADE_SECONDS`` long); drop what has been played."""
        base, held = (
            self._audio if self._audio is not None else (first_out, np.zeros((0, CHANNELS), np.float32))
        )
        keep_from = max(base, min(first_out, self._consumed - self._rate // 2))
        head = held[keep_from - base : first_out - base]
        tail = held[first_out - base :] if first_out - base < len(held) else held[:0]
        if len(head) < first_out - keep_from:
            head = np.concatenate([head, np.zeros((first_out - keep_from - len(head), CHANNELS), np.float32)])
        if len(samples) == 0 and len(tail) == 0:
            placed = head
        else:
            overlap = len(tail) if len(samples) == 0 else min(len(tail), len(samples))
            piece = (
                np.array(samples, np.float32) if len(samples) else np.zeros((overlap, CHANNELS), np.float32)
            )
            if overlap:
                fade_in = np.linspace(0.0, 1.0, overlap + 2, dtype=np.float32)[1:-1, None]
                piece[:overlap] = piece[:overlap] * fade_in + tail[:overlap] * (1.0 - fade_in)
            placed = np.concatenate([head, piece])
        self._audio = (keep_from, placed)

    def _feed_mix(self) -> None:
        """Ask for the next piece of sound while the one playing still has MIX_AHEAD_SECONDS left."""
        if (
            self._use_audio_clock
            and not self._mix_pending
            and self._mixed_to < self._mix_limit
            and self._mixed_to - self._consumed < MIX_AHEAD_SECONDS * self._rate
        ):
            self._request_mix(round(MIX_SECONDS * self._rate))

    def clock_seconds(self) -> float:
        """Timeline seconds played since play started, negative backwards (audio samples consumed times
        the speed, or the wall clock)."""
        if self._use_audio_clock:
            # What the listener hears now lags what the device took by its output latency.
            latency = float(getattr(self._stream, "latency", 0.0) or 0.0)
            return max(0.0, self._consumed / self._rate - latency) * self.speed
        return (time.perf_counter() - self._start_time) * self.speed

    def _on_tick(self) -> None:
        self._feed_mix()
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
