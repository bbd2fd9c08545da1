"""Decoding video frames at a target frame rate and size, and audio at a target sample rate and channel count.

Video rules (see docs/media.md):
- Time is measured in seconds on the file clock (0 = container start). Output frame i has timestamp
  t_i = start_s + i / fps and shows the source frame displayed at t_i: the last source frame whose presentation time
  is <= t_i (the first source frame when t_i comes before it; the last one when t_i runs past the end). Comparisons
  are exact (Fractions), so a source at exactly the target rate maps frame i to source frame i.
  `pick="next"` is MMAudio's inference rule instead (hkchengrex/MMAudio, `mmaudio/data/av_utils.py`, `read_frames`,
  called by `eval_utils.load_video`): frame i shows the first source frame whose time is >= t_i. Past the last source
  frame the last one is repeated (MMAudio shortens the clip instead). Departure: MMAudio accumulates t_i in floating
  point (t += 1 / fps); at 8 fps that sum is exact, but at 25 fps it overshoots k / 25 for most k, so on a 25 fps
  video its frame k is skipped and most later outputs show the next source frame (40 ms late) and the last one is
  dropped. Here t_i is exact, like every comparison in this module.
- Frame count: n = floor(duration_s * fps), with duration_s the requested duration or, by default, the video
  stream's duration minus start_s (MMAudio's clip length rule int(duration * 8) at 8 fps).
- Resize (to `size` = S or (W, H)): "stretch" scales to W x H ignoring aspect; "center_crop" scales so the picture
  covers W x H keeping its aspect and crops the centre; "pad" scales so it fits inside and pads with black.
  Frames come out as displayed (rotation metadata applied first).
Audio rules:
- The output covers the audio stream's own length (no padding to the video); `duration_s` pads with silence.
- Channels are downmixed with ITU-R BS.775 style gains (front 1, centre and surround 0.7071, LFE dropped),
  each output channel's gains normalised to sum to 1 so a full-scale input can never clip.
- Resampling: scipy.signal.resample_poly (Kaiser-windowed polyphase FIR), applied block by block with exactly the
  same result as on the whole signal; output length ceil(N * sr_out / sr_in).
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from foleyflow.errors import MediaError
from foleyflow.media.probe import (_reason, check_readable, container_start, first_frame_rotation, open_media,
                                   require_decoder, to_fraction)

RESIZE_MODES = ("stretch", "center_crop", "pad")
MAX_SIZE = 8192  # pixels per side
MAX_FPS = Fraction(1000)
MAX_SAMPLE_RATE = 384_000
MAX_SPAN_S = 24 * 3600  # longest start_s / duration_s accepted (a typo like 1e9 must not run for ever)
MIN_SAMPLE_RATE = 1000
_SQRT_HALF = math.sqrt(0.5)
_DEFAULT_LAYOUTS = {6: ["FL", "FR", "FC", "LFE", "BL", "BR"], 8: ["FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR"]}


class DecodedFrames(NamedTuple):
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    timestamps: np.ndarray  # (T,) float64 seconds: start_s + i / fps
    source_timestamps: np.ndarray  # (T,) float64 seconds: presentation time of the source frame shown


class DecodedAudio(NamedTuple):
    samples: np.ndarray  # (C, N) float32 in [-1, 1]
    duration_s: float  # the decoded span at the source rate (N_source / source_sample_rate)


def num_frames(duration_s, fps) -> int:
    """The documented frame-count rule: floor(duration_s * fps), computed exactly (0.3 s at 10 fps gives 3)."""
    return max(0, math.floor(to_fraction(duration_s) * to_fraction(fps)))


def _check_fps(fps) -> Fraction:
    try:
        fps = to_fraction(fps)
    except (ValueError, TypeError, ZeroDivisionError, OverflowError):
        raise MediaError(f"invalid frame rate {fps!r}") from None
    if not 0 < fps <= MAX_FPS:
        raise MediaError(f"frame rate {fps} fps is out of range (0, {MAX_FPS}]")
    return fps


def _check_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    w, h = (size, size) if isinstance(size, (int, np.integer)) else tuple(size) if len(size) == 2 else (0, 0)
    if not all(isinstance(v, (int, np.integer)) and 1 <= v <= MAX_SIZE for v in (w, h)):
        raise MediaError(f"frame size {size!r} is out of range: give whole numbers of 1..{MAX_SIZE} pixels per side")
    return int(w), int(h)


def _check_span(start_s, duration_s) -> tuple[Fraction, Fraction | None]:
    try:
        start = to_fraction(start_s)
        duration = None if duration_s is None else to_fraction(duration_s)
    except (ValueError, TypeError, OverflowError):
        raise MediaError(f"invalid time span start_s={start_s!r}, duration_s={duration_s!r}") from None
    if start < 0 or (duration is not None and duration < 0):
        raise MediaError(f"start_s and duration_s must be >= 0, got {start_s} and {duration_s}")
    if start > MAX_SPAN_S or (duration is not None and duration > MAX_SPAN_S):
        raise MediaError(f"start_s and duration_s must be at most {MAX_SPAN_S} s, got {start_s} and {duration_s}")
    return start, duration


def _scaled_dims(src_w: float, src_h: float, out: tuple[int, int], resize: str) -> tuple[int, int]:
    """The size the (display-oriented) picture is scaled to before cropping/padding."""
    w, h = out
    if resize == "stretch":
        return w, h
    scale = (max if resize == "center_crop" else min)(w / src_w, h / src_h)
    sw, sh = max(1, round(src_w * scale)), max(1, round(src_h * scale))
    if resize == "center_crop":
        return max(sw, w), max(sh, h)
    return min(sw, w), min(sh, h)


class _Converter:
    """Turns decoded VideoFrames into (H, W, 3) uint8 display-oriented arrays at the output size."""

    def __init__(self, size, resize: str, rotation: int, sar: Fraction | None):
        self.size, self.resize, self.k = size, resize, (rotation // 90) % 4
        self.sar = sar if sar and sar > 0 else Fraction(1)
        self.plan = None
        # One scaler for the whole stream: VideoFrame.to_ndarray(width=...) builds a new one per frame, which took
        # about 10x the scaling itself (4.4 ms against 0.4 ms per 128 -> 224 px frame).
        from av.video.reformatter import VideoReformatter
        self.scaler = VideoReformatter()

    def __call__(self, frame) -> np.ndarray:
        if self.plan is None or self.plan[0] != (frame.width, frame.height):
            fw, fh = frame.width * float(self.sar), frame.height
            dw, dh = (fh, fw) if self.k % 2 else (fw, fh)  # display orientation
            out = self.size or (round(dw), round(dh))
            sw, sh = _scaled_dims(dw, dh, out, self.resize) if self.size else out
            self.plan = ((frame.width, frame.height), (sh, sw) if self.k % 2 else (sw, sh), out, (sw, sh))
        _, (rw, rh), (ow, oh), (sw, sh) = self.plan
        img = self.scaler.reformat(frame, width=rw, height=rh, format="rgb24", interpolation="BICUBIC").to_ndarray()
        if self.k:
            img = np.rot90(img, self.k)
        if (sw, sh) == (ow, oh):
            out = np.ascontiguousarray(img)
        elif self.resize == "center_crop":
            y, x = (sh - oh) // 2, (sw - ow) // 2
            out = np.ascontiguousarray(img[y:y + oh, x:x + ow])
        else:
            out = np.zeros((oh, ow, 3), np.uint8)
            y, x = (oh - sh) // 2, (ow - sw) // 2
            out[y:y + sh, x:x + sw] = img
        out.flags.writeable = False
        return out


def iter_frames(path: str | Path, fps, size=None, resize: str = "stretch", start_s=0, duration_s=None,
                pick: str = "last") -> Iterator[tuple[float, float, np.ndarray]]:
    """Streams the video resampled to `fps` (int, Fraction or "30000/1001") as (t_i, source_t, frame) tuples.

    `frame` is (H, W, 3) uint8 RGB at `size` (S for S x S, or (W, H); None keeps the display size) using `resize`
    ("stretch", "center_crop" or "pad"). Yields exactly num_frames(duration, fps) frames, where duration is
    `duration_s` or the video's duration minus `start_s`; t_i = start_s + i / fps and the frame shown is the last
    source frame with presentation time <= t_i (`pick="last"`), or MMAudio's rule, the first source frame with time
    >= t_i (`pick="next"`; see the module docstring). Memory stays bounded by a few frames.
    A source frame shown several times is yielded as the same read-only array.
    Raises MediaError for out-of-range arguments and missing files at once, and for bad content (not media, no
    video stream, unsupported codec, truncated or corrupt) when iteration starts or reaches the damage.
    """
    fps, size, resize, pick = _check_spec(fps, size, resize, pick)
    start, duration = _check_span(start_s, duration_s)
    return _iter_frames(check_readable(path), fps, size, resize, start, duration, pick)


def _check_spec(fps, size, resize: str, pick: str) -> tuple:
    fps, size = _check_fps(fps), _check_size(size)
    if resize not in RESIZE_MODES:
        raise MediaError(f"unknown resize mode {resize!r}: choose from {', '.join(RESIZE_MODES)}")
    if pick not in ("last", "next"):
        raise MediaError(f"unknown frame pick rule {pick!r}: choose last or next")
    return fps, size, resize, pick


def decode_frame_sets(path: str | Path, specs, start_s=0, duration_s=None) -> list[list[np.ndarray]]:
    """Several `iter_frames` results from one decode of the video. `specs`: a sequence of (fps, size, resize, pick)
    tuples; returns, for each, the list of frames `iter_frames(path, fps, size, resize, start_s, duration_s, pick)`
    yields (the same rules and errors, the same pixels), while the stream is decoded once instead of once per spec
    (the semantic and sync encoders' frames and the planner's position frames of one window). Damage the decode
    reaches fails the whole call, also for a spec whose own frames ended before it."""
    specs = list(specs)
    if not specs or any(not isinstance(spec, (tuple, list)) or len(spec) != 4 for spec in specs):
        raise MediaError(f"decode_frame_sets takes a non-empty list of (fps, size, resize, pick) specs, got {specs!r}")
    checked = [_check_spec(*spec) for spec in specs]
    start, duration = _check_span(start_s, duration_s)
    out: list[list[np.ndarray]] = [[] for _ in checked]
    for k, (_, _, img) in _decode(check_readable(path), checked, start, duration):
        out[k].append(img)
    return out


def _iter_frames(path: Path, fps: Fraction, size, resize: str, start: Fraction, duration: Fraction | None,
                 pick: str = "last"):
    for _, item in _decode(path, [(fps, size, resize, pick)], start, duration):
        yield item


class _Tap:
    """One output of a decode: `n` frames at times start + i / fps, each the source frame chosen by `pick` among the
    decoded frames pushed in presentation order (module docstring), converted when first shown."""

    def __init__(self, fps: Fraction, n: int, start: Fraction, convert, pick: str):
        self.step, self.n, self.start, self.convert, self.pick = 1 / fps, n, start, convert, pick
        self.i, self.cur, self.cur_t, self.cur_img = 0, None, None, None

    @property
    def done(self) -> bool:
        return self.i >= self.n

    def _emit(self):
        if self.cur_img is None:
            self.cur_img = self.convert(self.cur)
        item = (float(self.start + self.i * self.step), float(self.cur_t), self.cur_img)
        self.i += 1
        return item

    def push(self, frame, ft: Fraction) -> list:
        out = []
        if self.pick == "next":     # output i is the first source frame whose time is >= start + i / fps
            self.cur, self.cur_t, self.cur_img = frame, ft, None
            while self.i < self.n and ft >= self.start + self.i * self.step:
                out.append(self._emit())
            return out
        while self.i < self.n and self.start + self.i * self.step < ft:   # the last source frame at or before
            if self.cur is None:  # output time before the first source frame: show the first frame
                self.cur, self.cur_t = frame, ft
            out.append(self._emit())
        if self.i < self.n and self.cur is not frame:
            self.cur, self.cur_t, self.cur_img = frame, ft, None
        return out

    def finish(self, path: Path, last_end: Fraction | None, declared_end: Fraction | None) -> list:
        """The remaining outputs once the stream has ended (the last frame repeated); MediaError when nothing was
        decoded or the frames stop more than a second before the declared end."""
        if self.cur is None:
            raise MediaError(f"{path}: no video frames could be decoded (truncated or corrupt)")
        if declared_end is not None and last_end is not None and \
                last_end < min(declared_end, self.start + self.n * self.step) - 1:
            raise MediaError(f"{path}: truncated or corrupt video (frames stop at {float(last_end):.2f} s of "
                             f"{float(declared_end):.2f} s)")
        return [self._emit() for _ in range(self.n - self.i)]


def _decode(path: Path, specs, start: Fraction, duration: Fraction | None):
    """Yields (spec index, (t_i, source_t, frame)) for checked specs (fps, size, resize, pick), decoding once."""
    import av

    container = open_media(path)
    try:
        if not container.streams.video:
            raise MediaError(f"{path}: has no video stream")
        stream = container.streams.video[0]
        require_decoder(path, stream)
        t0 = container_start(container)
        tb = stream.time_base
        if stream.duration:
            s0 = Fraction(stream.start_time or 0) * tb - t0
            declared_end = s0 + Fraction(stream.duration) * tb
        else:  # e.g. Matroska: no per-stream duration in the header; probe scans the packets
            from foleyflow.media.probe import probe
            info = probe(path).video
            declared_end = to_fraction(info.start_s) + to_fraction(info.duration_s)
        if duration is None:
            duration = max(Fraction(0), declared_end - start)
        if start > 0 and start >= declared_end:
            raise MediaError(f"{path}: start_s {float(start):.3f} s is past the end of the video "
                             f"({float(declared_end):.3f} s)")
        stream.thread_type = "AUTO"
        rotation = first_frame_rotation(path, container, stream)
        taps = [_Tap(fps, num_frames(duration, fps), start,
                     _Converter(size, resize, rotation, stream.sample_aspect_ratio), pick)
                for fps, size, resize, pick in specs]
        if start > 0:
            container.seek(int((start + t0) / tb), stream=stream, backward=True)
        src_rate = stream.average_rate or stream.guessed_rate
        frame_s = Fraction(1) / src_rate if src_rate else Fraction(0)
        ft = last_end = None
        for frame in container.decode(stream):
            if frame.pts is None:
                ft = (ft + frame_s) if (ft is not None and src_rate) else Fraction(0)
            else:
                ft = Fraction(frame.pts) * frame.time_base - t0
            last_end = ft + frame_s
            for k, tap in enumerate(taps):
                if not tap.done:
                    for item in tap.push(frame, ft):
                        yield k, item
            if all(tap.done for tap in taps):
                return
        if ft is None:
            raise MediaError(f"{path}: no video frames could be decoded (truncated or corrupt)")
        for k, tap in enumerate(taps):
            if not tap.done:
                for item in tap.finish(path, last_end, declared_end):
                    yield k, item
    except av.error.FFmpegError as e:
        raise MediaError(f"{path}: truncated or corrupt video ({_reason(e)})") from None
    finally:
        container.close()


def decode_frames(path: str | Path, fps, size=None, resize: str = "stretch", start_s=0, duration_s=None, *,
                  max_bytes: int = 2 << 30) -> DecodedFrames:
    """Like `iter_frames` but returns arrays: frames (T, H, W, 3) uint8, timestamps (T,) and source_timestamps (T,).

    For short clips; refuses (MediaError) when the result would exceed `max_bytes` (use `iter_frames` then).
    """
    frames, ts, src = [], [], []
    total = 0
    for t, st, img in iter_frames(path, fps, size, resize, start_s, duration_s):
        total += img.nbytes
        if total > max_bytes:
            raise MediaError(f"{path}: decoded frames would exceed {max_bytes / 2**30:.1f} GiB; "
                             f"decode a shorter span or stream with iter_frames")
        frames.append(img)
        ts.append(t)
        src.append(st)
    if not frames:
        w, h = _check_size(size) or (0, 0)
        return DecodedFrames(np.zeros((0, h, w, 3), np.uint8), np.zeros(0), np.zeros(0))
    return DecodedFrames(np.stack(frames), np.asarray(ts), np.asarray(src))


def downmix_matrix(channel_names: list[str], channels: int) -> np.ndarray:
    """(channels, len(channel_names)) gains from a source layout (FFmpeg channel names) to mono or stereo.

    Stereo: L' = FL + 0.7071 FC + 0.7071 (BL|SL) (+ 0.7071 for other left channels), R' likewise; back/top centre
    0.5 to each side; LFE dropped; each row then normalised to sum to 1 (no clipping). Mono = (L' + R') / 2.
    Unnamed layouts: 1 channel is mono, 2 are L/R, 6 and 8 are taken as 5.1 and 7.1 in WAV/SMPTE order
    (FL FR FC LFE BL BR [SL SR]), other counts are averaged.
    """
    m = len(channel_names)
    left, right = np.zeros(m), np.zeros(m)
    named = all(n and n not in ("NA", "NONE") and not n.startswith("USR") for n in channel_names)
    if not named and m in _DEFAULT_LAYOUTS:  # e.g. a 6-channel wav without a channel mask: WAV/SMPTE order
        channel_names, named = _DEFAULT_LAYOUTS[m], True
    for j, name in enumerate(channel_names):
        if not named:
            if m == 1:
                left[j] = right[j] = 1.0
            elif m == 2:
                (left if j == 0 else right)[j] = 1.0
            else:
                left[j] = right[j] = 1.0
        elif name == "LFE" or name.startswith("LFE"):
            continue
        elif name in ("FL", "FR"):
            (left if name == "FL" else right)[j] = 1.0
        elif name == "FC":
            left[j] = right[j] = _SQRT_HALF
        elif name in ("BC", "TC", "TFC", "TBC"):
            left[j] = right[j] = 0.5
        elif name.endswith("L") or name in ("FLC", "DL", "WL"):
            left[j] = _SQRT_HALF
        elif name.endswith("R") or name in ("FRC", "DR", "WR"):
            right[j] = _SQRT_HALF
        else:
            left[j] = right[j] = 0.5
    if not left.any() and not right.any():
        left[:] = right[:] = 1.0
    if m == 1:
        left, right = np.ones(1), np.ones(1)
    left, right = left / left.sum(), right / right.sum()
    if channels == 2:
        return np.stack([left, right]).astype(np.float32)
    return ((left + right) / 2)[None].astype(np.float32)


def _frame_to_float(frame) -> np.ndarray:
    """(C, n) float32 from any PyAV AudioFrame sample format."""
    arr = frame.to_ndarray()
    c = len(frame.layout.channels)
    if not frame.format.is_planar:
        arr = arr.reshape(-1, c).T
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) - 128) / 128
    if arr.dtype.kind == "i":
        return arr.astype(np.float32) / float(np.iinfo(arr.dtype).max + 1)
    return arr.astype(np.float32, copy=False)


def decode_audio(path: str | Path, sample_rate: int, channels: int = 2, start_s=0, duration_s=None) -> DecodedAudio:
    """Decodes the first audio stream to (channels, N) float32 at `sample_rate` (1 or 2 channels, downmixed).

    Covers [start_s, end of the audio stream) on the file clock (silence first if the stream starts later), or
    exactly `duration_s` (padded with silence past the stream's end). The stream's own length is the duration its
    header records: FFmpeg drops the AAC priming samples (edit list) and the decoded end padding is trimmed to it,
    so audio written as N samples decodes back as N samples (to the millisecond rounding of the mp4 edit list).
    N = ceil(N_source * sample_rate / source_rate). Returns DecodedAudio(samples, duration_s) with
    duration_s = N_source / source_rate.
    """
    import av

    if not (isinstance(sample_rate, (int, np.integer)) and MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE):
        raise MediaError(f"sample rate {sample_rate!r} is out of range [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}]")
    if channels not in (1, 2):
        raise MediaError(f"channels must be 1 or 2, got {channels!r}")
    start, duration = _check_span(start_s, duration_s)
    path = check_readable(path)
    container = open_media(path)
    try:
        if not container.streams.audio:
            raise MediaError(f"{path}: has no audio stream")
        stream = container.streams.audio[0]
        require_decoder(path, stream)
        src_sr = stream.codec_context.sample_rate
        if not src_sr:
            raise MediaError(f"{path}: audio stream has no sample rate")
        t0 = container_start(container)
        tb = stream.time_base
        s_start = Fraction(stream.start_time or 0) * tb - t0 if stream.start_time is not None else Fraction(0)
        first = round(start * src_sr)  # first wanted sample on the file clock
        if duration is not None:
            end = first + round(duration * src_sr)
        elif stream.duration:
            end = round((s_start + Fraction(stream.duration) * tb) * src_sr)
        else:
            end = None
        if start > 0 and end is not None and duration is None and first >= end:
            raise MediaError(f"{path}: start_s {float(start):.3f} s is past the end of the audio "
                             f"({end / src_sr:.3f} s)")
        if start > 0:
            container.seek(int((start + t0) / tb), stream=stream, backward=True)
        out = StreamingResampler(src_sr, int(sample_rate), channels)
        pos, matrix = None, None
        for frame in container.decode(stream):
            if pos is None:
                pos = round((Fraction(frame.pts) * tb - t0) * src_sr) if frame.pts is not None else round(
                    s_start * src_sr)
                if pos > first:
                    out.feed(np.zeros((channels, pos - first), np.float32))
            x = _frame_to_float(frame)
            if matrix is None:
                names = [ch.name for ch in frame.layout.channels]
                matrix = downmix_matrix(names, channels) if x.shape[0] > 1 or channels == 2 else None
            lo, hi = max(first - pos, 0), x.shape[1] if end is None else min(x.shape[1], end - pos)
            if hi > lo:
                block = x[:, lo:hi]
                out.feed(matrix @ block if matrix is not None else block)
            pos += x.shape[1]
            if end is not None and pos >= end:
                break
    except av.error.FFmpegError as e:
        raise MediaError(f"{path}: truncated or corrupt audio ({_reason(e)})") from None
    finally:
        container.close()
    if duration is None and end is not None and (pos is None or pos < end - src_sr):
        got = 0.0 if pos is None else pos / src_sr
        raise MediaError(f"{path}: truncated or corrupt audio (samples stop at {got:.2f} s of {end / src_sr:.2f} s)")
    if duration is not None and out.n_in < end - first:
        out.feed(np.zeros((channels, end - first - out.n_in), np.float32))
    return DecodedAudio(out.finish(), out.n_in / src_sr)


class StreamingResampler:
    """Resamples (C, n) blocks as they arrive, giving exactly what scipy.signal.resample_poly gives on the whole
    signal (ceil(N * sr_out / sr_in) samples) while holding only the output and a short input tail.

    resample_poly's output m depends on inputs j with |j up - m down| <= half_len (half_len = 10 max(up, down));
    each step resamples the buffered input from a multiple of `down` (so output indices stay integers) and keeps
    only the outputs whose whole support has arrived.
    """

    def __init__(self, sr_in: int, sr_out: int, channels: int, block: int = 1 << 16):
        g = math.gcd(sr_in, sr_out)
        self.up, self.down = sr_out // g, sr_in // g
        self.half = 10 * max(self.up, self.down)
        self.channels, self.block = channels, block
        self.buf, self.buf_start, self.n_in = [], 0, 0  # buffered input blocks; global index of the first
        self.outs, self.n_out = [], 0

    def feed(self, x: np.ndarray) -> None:
        self.buf.append(np.asarray(x, np.float32))
        self.n_in += x.shape[1]
        if self.n_in - self.buf_start >= self.block:
            self._step(final=False)

    def _step(self, final: bool) -> None:
        from scipy.signal import resample_poly

        x = np.concatenate(self.buf, axis=1) if len(self.buf) > 1 else self.buf[0] if self.buf else np.zeros(
            (self.channels, 0), np.float32)
        if self.up == self.down:
            y, first_out = x, self.buf_start
        else:
            y = resample_poly(x, self.up, self.down, axis=1) if x.shape[1] else x
            first_out = self.buf_start * self.up // self.down
        if final:
            stop = -(-self.n_in * self.up // self.down)
        else:  # outputs whose support lies inside the input received so far
            stop = max(self.n_out, (self.n_in * self.up - self.half - 1) // self.down)
        self.outs.append(y[:, self.n_out - first_out:stop - first_out])
        self.n_out = stop
        # keep the input that later outputs still need, from a multiple of `down`
        need = max(self.buf_start, (self.n_out * self.down - self.half) // self.up - 1)
        keep_from = need // self.down * self.down if self.up != self.down else need
        keep_from = max(keep_from, self.buf_start)
        self.buf = [x[:, keep_from - self.buf_start:]]
        self.buf_start = keep_from

    def finish(self) -> np.ndarray:
        """All output samples, (C, ceil(N * sr_out / sr_in)) float32."""
        self._step(final=True)
        out = np.concatenate(self.outs, axis=1) if self.outs else np.zeros((self.channels, 0), np.float32)
        return np.ascontiguousarray(out, dtype=np.float32)
