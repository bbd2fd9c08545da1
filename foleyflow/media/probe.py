"""Opening media files safely and describing them (`probe`).

All times are on one clock per file: seconds from the container's start time (usually 0), so the video and audio
of a file stay aligned. Frame rates are exact `Fraction`s (30000/1001, not 29.97).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

from foleyflow.errors import MediaError

# Formats FFmpeg opens but which are not audio/video media for us ("tty" turns any .txt file into ANSI-art video).
_NOT_MEDIA_FORMATS = {"tty", "ansi"}


def _reason(e: BaseException) -> str:
    """A short one-line reason from an FFmpeg/OS error (without the repeated file name)."""
    msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(msg).split())


def check_readable(path: str | Path) -> Path:
    """Raises MediaError unless `path` is an existing, non-empty regular file (FIFOs and devices could hang)."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    if path.is_dir():
        raise MediaError(f"{path}: is a folder, not a media file")
    if not path.is_file():
        raise MediaError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: file is empty (0 bytes)")
    return path


def open_media(path: str | Path):
    """Opens `path` for reading with PyAV; every failure becomes a one-line MediaError. Caller closes it."""
    import av

    path = check_readable(path)
    try:
        # metadata in another encoding than UTF-8 (found by the fuzz harness) must not stop a probe: replace it
        container = av.open(str(path), mode="r", metadata_errors="replace")
    except av.error.InvalidDataError:
        raise MediaError(f"{path}: not a media file, or truncated or corrupt (FFmpeg cannot read it)") from None
    except (OSError, av.error.FFmpegError) as e:
        raise MediaError(f"{path}: cannot open ({_reason(e)})") from None
    if container.format.name in _NOT_MEDIA_FORMATS or not any(
            s.type in ("video", "audio") for s in container.streams):
        container.close()
        raise MediaError(f"{path}: not a media file (no audio or video streams)")
    return container


def require_decoder(path: Path, stream) -> None:
    """Raises MediaError when FFmpeg has no decoder for `stream`'s codec."""
    if stream.codec_context is None:
        raise MediaError(f"{path}: unsupported {stream.type} codec (no decoder available for it)")


def container_start(container) -> Fraction:
    """The file's clock origin in seconds (the container start time, 0 when unknown)."""
    start = container.start_time
    return Fraction(start, 1_000_000) if start not in (None, 0) else Fraction(0)


def to_fraction(x, max_den: int = 1_000_000) -> Fraction:
    """Exact Fraction from int/Fraction/str ('30000/1001'); floats are rounded to the nearest ratio with a denominator
    <= max_den (so 0.3 is 3/10, not its binary expansion)."""
    import numbers

    if isinstance(x, Fraction):
        return x
    if isinstance(x, numbers.Rational):
        return Fraction(int(x.numerator), int(x.denominator))
    if isinstance(x, numbers.Real):  # float, numpy floats
        return Fraction(float(x)).limit_denominator(max_den)
    return Fraction(x)


@dataclass
class StreamInfo:
    index: int
    type: str
    codec: str | None  # None when FFmpeg has no decoder for it


@dataclass
class VideoInfo:
    index: int
    codec: str | None
    width: int  # coded size, before rotation
    height: int
    rotation: int  # degrees counter-clockwise that a player turns the picture (0, 90, 180, -90)
    display_width: int  # size as displayed (after rotation and sample aspect ratio)
    display_height: int
    frame_rate: Fraction  # average rate, exact (e.g. 30000/1001)
    frame_count: int
    start_s: float
    duration_s: float
    pix_fmt: str | None


@dataclass
class AudioInfo:
    index: int
    codec: str | None
    sample_rate: int
    channels: int
    layout: str  # FFmpeg layout name: "mono", "stereo", "5.1", ...
    channel_names: list[str]
    start_s: float
    duration_s: float
    num_samples: int  # at sample_rate, the stream's own length (AAC priming and padding excluded when recorded)


@dataclass
class MediaInfo:
    path: str
    container: str
    size_bytes: int
    duration_s: float  # the longest stream
    streams: list[StreamInfo] = field(default_factory=list)
    video: VideoInfo | None = None  # the first video stream
    audio: AudioInfo | None = None  # the first audio stream

    @property
    def has_video(self) -> bool:
        return self.video is not None

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    def to_dict(self) -> dict:
        """JSON-able dict; frame rates are given both as a string ratio and a float."""
        d = asdict(self)
        if self.video is not None:
            rate = self.video.frame_rate
            d["video"]["frame_rate"] = f"{rate.numerator}/{rate.denominator}"
            d["video"]["frame_rate_float"] = float(rate)
        d["has_video"], d["has_audio"] = self.has_video, self.has_audio
        return d

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)


def _stream_span(container, stream, t0: Fraction) -> tuple[Fraction, Fraction | None]:
    """(start, duration) of a stream in seconds on the file clock; duration None if the header does not say."""
    tb = stream.time_base
    start = Fraction(stream.start_time) * tb - t0 if stream.start_time is not None else Fraction(0)
    duration = Fraction(stream.duration) * tb if stream.duration else None
    return start, duration


def _scan_video_packets(container, stream) -> tuple[int, Fraction | None, Fraction | None]:
    """Counts packets and finds the first pts and the end (pts + duration) by demuxing without decoding."""
    count, first, end = 0, None, None
    for packet in container.demux(stream):
        if packet.size == 0:
            continue
        count += 1
        if packet.pts is not None:
            t = Fraction(packet.pts) * packet.time_base
            first = t if first is None else min(first, t)
            e = t + Fraction(packet.duration or 0) * packet.time_base
            end = e if end is None else max(end, e)
    return count, first, end


def _video_info(path: Path, container, stream, t0: Fraction) -> VideoInfo:
    start, duration = _stream_span(container, stream, t0)
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    count = stream.frames or 0
    if not count or duration is None or not rate:
        count, first, end = _scan_video_packets(container, stream)
        if first is not None and end is not None and duration is None:
            duration = end - first
            start = first - t0
        if not rate and duration:
            rate = Fraction(count) / duration
        container.seek(0)
    rate = Fraction(rate) if rate else Fraction(0)
    if duration is None:
        duration = Fraction(count) / rate if rate else Fraction(0)
    rotation = 0
    ctx = stream.codec_context
    if ctx is not None:
        rotation = first_frame_rotation(path, container, stream)
    w, h = (ctx.width, ctx.height) if ctx is not None else (0, 0)
    sar = stream.sample_aspect_ratio
    dw = round(w * sar) if sar and sar > 0 else w
    dw, dh = (h, dw) if rotation % 180 else (dw, h)
    return VideoInfo(index=stream.index, codec=ctx.name if ctx else None, width=w, height=h, rotation=rotation,
                     display_width=dw, display_height=dh, frame_rate=rate, frame_count=count, start_s=float(start),
                     duration_s=float(duration), pix_fmt=ctx.format.name if ctx is not None and ctx.format else None)


def first_frame_rotation(path: Path, container, stream) -> int:
    """The display rotation of the stream (read from the first decoded frame's display matrix), rounded to 90s."""
    import av

    try:
        for frame in container.decode(stream):
            rot = frame.rotation or 0
            break
        else:
            rot = 0
    except av.error.FFmpegError:
        rot = 0
    finally:
        try:
            container.seek(0)
        except av.error.FFmpegError:
            pass
    return int(round(rot / 90.0)) * 90 % 360 if rot else 0


def _audio_info(container, stream, t0: Fraction) -> AudioInfo:
    start, duration = _stream_span(container, stream, t0)
    ctx = stream.codec_context
    sr = (ctx.sample_rate if ctx is not None else 0) or 0
    layout = ctx.layout if ctx is not None else None
    names = [ch.name for ch in layout.channels] if layout is not None else []
    if duration is None and container.duration:
        duration = Fraction(container.duration, 1_000_000) - start
    duration = duration or Fraction(0)
    return AudioInfo(index=stream.index, codec=ctx.name if ctx else None, sample_rate=sr, channels=len(names),
                     layout=layout.name if layout is not None else "", channel_names=names, start_s=float(start),
                     duration_s=float(duration), num_samples=round(duration * sr))


def probe(path: str | Path) -> MediaInfo:
    """Describes a media file: its streams and, for the first video and first audio stream, exact timing.

    Reads the headers, and demuxes the video packets (no decoding) only when the header lacks the frame count or
    duration (e.g. Matroska/WebM); decodes one frame to read the rotation.
    Raises MediaError for a missing, empty, non-media, truncated or corrupt file.
    """
    import av

    path = check_readable(path)
    container = open_media(path)
    try:
        t0 = container_start(container)
        streams = [StreamInfo(index=s.index, type=s.type,
                              codec=s.codec_context.name if s.codec_context is not None else None)
                   for s in container.streams]
        video = audio = None
        if container.streams.video:
            video = _video_info(path, container, container.streams.video[0], t0)
        if container.streams.audio:
            audio = _audio_info(container, container.streams.audio[0], t0)
        ends = [i.start_s + i.duration_s for i in (video, audio) if i is not None]
        duration = max(ends) if ends else (container.duration or 0) / 1e6
        return MediaInfo(path=str(path), container=container.format.name, size_bytes=path.stat().st_size,
                         duration_s=duration, streams=streams, video=video, audio=audio)
    except av.error.FFmpegError as e:
        raise MediaError(f"{path}: truncated or corrupt ({_reason(e)})") from None
    finally:
        container.close()
