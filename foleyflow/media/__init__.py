"""Media I/O on PyAV and soundfile: probe, decode frames and audio at target rates, write audio, encode and mux video.

The rules (how many frames a duration gives, which source frame each output frame shows, resize modes, the 5.1
downmix, AAC priming and trimming) are stated in the docstrings below and in `docs/media.md`.

- `probe(path)` -> `MediaInfo` (streams, exact rational frame rate, frame count, rotation, audio layout...).
- `iter_frames(...)` streams resampled RGB frames; `decode_frames(...)` collects them for short clips;
  `decode_frame_sets(...)` gives several rates and sizes of one window from a single decode.
- `decode_audio(...)` -> `DecodedAudio(samples (C, N) float32, duration_s)` at a target rate and channel count.
- `write_audio`, `write_video`, `mux_audio` write files.

Every failure a user can cause raises `foleyflow.errors.MediaError` with a one-line message.
PyAV, soundfile and scipy are imported inside the functions, so `import foleyflow.media` stays light.
"""
from foleyflow.media.decode import (DecodedAudio, DecodedFrames, decode_audio, decode_frame_sets, decode_frames,
                                    iter_frames, num_frames)
from foleyflow.media.probe import AudioInfo, MediaInfo, StreamInfo, VideoInfo, probe
from foleyflow.media.write import MuxResult, mux_audio, write_audio, write_video

__all__ = [
    "AudioInfo", "DecodedAudio", "DecodedFrames", "MediaInfo", "MuxResult", "StreamInfo", "VideoInfo",
    "decode_audio", "decode_frame_sets", "decode_frames", "iter_frames", "mux_audio", "num_frames", "probe",
    "write_audio", "write_video",
]
