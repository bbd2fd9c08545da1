"""foleyflow.media: probe, frame-rate resampling rule, resize modes, audio downmix/resampling, mux, bad input."""
from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np
import pytest

from foleyflow import media
from foleyflow.errors import MediaError
from media_helpers import (frame_index, make_corrupt_header, make_truncated, make_unknown_codec, make_video,
                           make_vfr_video)

NTSC, FILM = Fraction(30000, 1001), Fraction(24000, 1001)


# ---------------------------------------------------------------- video round trips and the frame rule

@pytest.mark.parametrize("fps,n", [(Fraction(25), 20), (NTSC, 31), (FILM, 25)])
def test_video_round_trip_at_rational_rate(tmp_path, fps, n):
    path = make_video(tmp_path / "v.mp4", n, fps)
    info = media.probe(path)
    assert info.has_video and not info.has_audio
    assert info.video.frame_rate == fps and info.video.frame_count == n
    assert info.video.duration_s == pytest.approx(float(n / fps), abs=1e-6)
    out = media.decode_frames(path, fps)
    assert out.frames.shape == (n, 32, 32, 3) and out.frames.dtype == np.uint8
    np.testing.assert_allclose(out.timestamps, [float(i / fps) for i in range(n)], atol=1e-9)
    np.testing.assert_allclose(out.source_timestamps, out.timestamps, atol=1e-6)
    assert [frame_index(f) for f in out.frames] == list(range(n))


def test_matroska_without_per_stream_counts(tmp_path):
    path = make_video(tmp_path / "v.mkv", 31, NTSC)  # Matroska headers carry no frame count: probe scans packets
    info = media.probe(path)
    assert info.video.frame_count == 31 and info.video.duration_s == pytest.approx(31 * 1001 / 30000, abs=2e-3)
    out = media.decode_frames(path, np.float32(8.0), 16)
    assert len(out.frames) == math.floor(31 / NTSC * 8) == 8
    assert [frame_index(f) for f in out.frames] == [math.floor(i * NTSC / 8) for i in range(8)]
    # Matroska stores no decode timestamps: muxing into mp4 must still copy every packet (B-frames included)
    import av
    muxed = media.mux_audio(path, np.zeros((1, 8000), np.float32), 16000, tmp_path / "o.mp4").path
    with av.open(str(path)) as a, av.open(str(muxed)) as b:
        assert [bytes(p) for p in a.demux(video=0) if p.size] == [bytes(p) for p in b.demux(video=0) if p.size]
    assert media.probe(muxed).video.frame_count == 31 and len(media.decode_frames(muxed, 8).frames) == 8


@pytest.mark.parametrize("src_fps", [FILM, Fraction(25), NTSC, Fraction(60)])
@pytest.mark.parametrize("target", [Fraction(8), Fraction(25)])
def test_resampling_counts_and_frames_shown(tmp_path, src_fps, target):
    n_src = 48
    path = make_video(tmp_path / "v.mp4", n_src, src_fps, size=(16, 16))
    out = media.decode_frames(path, target)
    duration = Fraction(n_src) / src_fps
    assert len(out.frames) == math.floor(duration * target) == media.num_frames(duration, target)
    # frame i shows the last source frame with pts <= i / target, i.e. source frame floor(i * src / target)
    assert [frame_index(f) for f in out.frames] == [math.floor(i * src_fps / target) for i in range(len(out.frames))]
    np.testing.assert_allclose(out.timestamps, np.arange(len(out.frames)) / float(target))


def test_variable_frame_rate_shows_frame_displayed_at_each_time(tmp_path):
    times = [0.0, 0.05, 0.30, 0.32, 0.70, 0.71, 0.72, 1.10, 1.5]
    path = make_vfr_video(tmp_path / "vfr.mp4", times)
    out = media.decode_frames(path, 10, duration_s=1.6)
    assert len(out.frames) == 16
    expected = [max(j for j, t in enumerate(times) if t <= i / 10 + 1e-9) for i in range(16)]
    assert [frame_index(f) for f in out.frames] == expected
    np.testing.assert_allclose(out.source_timestamps, [times[j] for j in expected], atol=1e-6)


def test_start_duration_and_streaming(tmp_path):
    path = make_video(tmp_path / "v.mp4", 50, 25)  # 2 s
    out = media.decode_frames(path, 10, start_s=0.5, duration_s=1.0)
    assert len(out.frames) == 10
    np.testing.assert_allclose(out.timestamps, 0.5 + np.arange(10) / 10)
    assert [frame_index(f) for f in out.frames] == [math.floor((0.5 + i / 10) * 25 + 1e-9) for i in range(10)]
    # a span running past the end repeats the last frame; the iterator yields the same frames one by one
    tail = list(media.iter_frames(path, 4, start_s=1.5, duration_s=1.0))
    assert len(tail) == 4 and [frame_index(f) for _, _, f in tail] == [37, 43, 49, 49]
    assert tail[2][2] is tail[3][2] and not tail[3][2].flags.writeable  # a repeat is the same read-only array
    with pytest.raises(MediaError):  # bad arguments fail at the call, before any iteration
        media.iter_frames(path, 0)
    assert media.num_frames(0.3, 10) == 3 and media.num_frames(5.28, 8) == 42 and media.num_frames(0.1, 8) == 0


@pytest.mark.parametrize("start,duration", [(0, None), (0.5, 1.0), (1.5, 1.0)])
def test_frame_sets_from_one_decode_equal_separate_decodes(tmp_path, start, duration):
    """decode_frame_sets gives, per spec, exactly what iter_frames gives (both pick rules, rates below and above
    the source's, sizes and resize modes, spans past the end), decoding once; a variable-rate video too."""
    path = make_video(tmp_path / "v.mp4", 50, 25, size=(48, 32))  # 2 s
    vfr = make_vfr_video(tmp_path / "vfr.mp4", [0.0, 0.05, 0.30, 0.32, 0.70, 0.71, 0.72, 1.10, 1.5])
    specs = [(8, 16, "stretch", "last"), (25, (24, 12), "center_crop", "next"), (30, None, "pad", "last"),
             (10, 8, "stretch", "next")]
    for video in (path, vfr):
        sets = media.decode_frame_sets(video, specs, start_s=start, duration_s=duration)
        assert len(sets) == len(specs)
        for (fps, size, resize, pick), got in zip(specs, sets):
            want = [f for _, _, f in media.iter_frames(video, fps, size, resize, start, duration, pick=pick)]
            assert len(got) == len(want) > 0
            assert all(np.array_equal(a, b) for a, b in zip(got, want))
    with pytest.raises(MediaError, match="resize mode"):
        media.decode_frame_sets(path, [(8, 16, "squash", "last")])
    for bad in ([], [(8, 16, "stretch")], [8]):
        with pytest.raises(MediaError, match="specs"):
            media.decode_frame_sets(path, bad)
    with pytest.raises(MediaError, match="truncated"):
        make_truncated(path, tmp_path / "cut.mp4", 0.3)
        media.decode_frame_sets(tmp_path / "cut.mp4", specs[:2])


def _pattern_video(tmp_path):
    """128x64 frames: columns 0..31 white, the rest grey 128."""
    img = np.full((64, 128, 3), 128, np.uint8)
    img[:, :32] = 255
    from foleyflow.media import write_video
    return write_video(tmp_path / "p.mp4", [img] * 3, 25, crf=5)


def test_resize_modes(tmp_path):
    path = _pattern_video(tmp_path)
    stretch = media.decode_frames(path, 25, 32, "stretch").frames[0].astype(int)
    assert stretch.shape == (32, 32, 3)
    assert (stretch[:, :7] > 240).all() and (abs(stretch[:, 9:] - 128) < 6).all()
    crop = media.decode_frames(path, 25, 32, "center_crop").frames[0].astype(int)
    assert (abs(crop[:, 2:] - 128) < 6).all() and crop.max() < 150  # the centre half of the width: all grey
    pad = media.decode_frames(path, 25, (32, 32), "pad").frames[0].astype(int)
    assert (pad[:8] == 0).all() and (pad[24:] == 0).all()  # 2:1 picture fitted into a square: bars top and bottom
    assert (pad[9:23, :7] > 240).all() and (abs(pad[9:23, 9:] - 128) < 6).all()
    wide = media.decode_frames(path, 25, (40, 10), "pad").frames[0]  # 2:1 into 4:1: bars left and right
    assert wide.shape == (10, 40, 3) and (wide[:, :10] == 0).all() and (wide[:, 30:] == 0).all()
    assert media.decode_frames(path, 25).frames.shape == (3, 64, 128, 3)  # size None keeps the size



def test_one_scaler_per_frame_set_equals_scaling_each_frame(tmp_path):
    """The scaler kept for a whole stream gives the pixels a fresh per-frame conversion gives, for every frame."""
    import av

    path = make_video(tmp_path / "v.mp4", 12, 25, size=(48, 32))
    with av.open(str(path)) as c:
        want = [f.to_ndarray(width=20, height=14, format="rgb24", interpolation="BICUBIC") for f in c.decode(video=0)]
    got = media.decode_frame_sets(path, [(25, (20, 14), "stretch", "last"), (25, 8, "stretch", "last")])[0]
    assert len(got) == len(want) == 12
    assert all(np.array_equal(a, b) for a, b in zip(got, want))

def test_rotation_is_reported_and_applied(tmp_path):
    import av

    path = tmp_path / "rot.mp4"
    img = np.zeros((32, 64, 3), np.uint8)
    img[:, :32] = 255  # left half white
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        s.set_display_rotation(90)
        for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    info = media.probe(path).video
    assert (info.width, info.height, info.rotation) == (64, 32, 90)
    assert (info.display_width, info.display_height) == (32, 64)
    frame = media.decode_frames(path, 25).frames[0]
    assert frame.shape == (64, 32, 3)  # turned 90 degrees counter-clockwise: the left half ends at the bottom
    assert frame[40:].mean() > 200 and frame[:24].mean() < 50


# ---------------------------------------------------------------- audio

def test_audio_round_trip_wav_and_flac(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.uniform(-0.9, 0.9, (2, 12345))).astype(np.float32)
    wav = media.write_audio(tmp_path / "a.wav", x, 22050)
    got = media.decode_audio(wav, 22050, 2)
    assert got.duration_s == pytest.approx(12345 / 22050)
    np.testing.assert_array_equal(got.samples, x)  # 32-bit float wav: exactly the same samples
    flac = media.write_audio(tmp_path / "a.flac", x, 22050)
    np.testing.assert_allclose(media.decode_audio(flac, 22050, 2).samples, x, atol=2.0 ** -22)
    mono = media.decode_audio(wav, 22050, 1).samples
    np.testing.assert_allclose(mono[0], x.mean(0), atol=1e-6)
    up = media.decode_audio(media.write_audio(tmp_path / "m.wav", x[0], 22050), 22050, 2).samples
    np.testing.assert_array_equal(up, np.stack([x[0], x[0]]))  # mono to stereo duplicates


def test_downmix_51_gains_and_no_clipping(tmp_path):
    import soundfile as sf

    n, sr = 4800, 48000
    for name, ch in [("FL", 0), ("FR", 1), ("FC", 2), ("LFE", 3), ("BL", 4)]:
        x = np.zeros((n, 6), np.float32)
        x[:, ch] = 0.5
        sf.write(tmp_path / f"{name}.flac", x, sr)  # flac records the 5.1 layout (FL FR FC LFE SL SR)
        got = media.decode_audio(tmp_path / f"{name}.flac", sr, 2).samples[:, 100]
        g = 1 / (1 + 2 * math.sqrt(0.5))  # rows normalised: 1 + 0.7071 (centre) + 0.7071 (surround)
        expected = {"FL": (0.5 * g, 0), "FR": (0, 0.5 * g), "FC": (0.5 * g * math.sqrt(0.5),) * 2, "LFE": (0, 0),
                    "BL": (0.5 * g * math.sqrt(0.5), 0)}[name]
        np.testing.assert_allclose(got, expected, atol=1e-4)
    full = np.ones((n, 6), np.float32)  # every channel at full scale stays within [-1, 1]
    sf.write(tmp_path / "full.flac", full * 0.999, sr)
    assert np.abs(media.decode_audio(tmp_path / "full.flac", sr, 2).samples).max() <= 1.0


def test_resampling_length_rule_and_quality(tmp_path):
    sr_in, n = 44100, 44100 + 17
    t = np.arange(n) / sr_in
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = media.write_audio(tmp_path / "tone.wav", tone, sr_in)
    got = media.decode_audio(path, 16000, 1)
    assert got.samples.shape == (1, math.ceil(n * 16000 / sr_in))
    ref = 0.5 * np.sin(2 * np.pi * 440 * np.arange(got.samples.shape[1]) / 16000)
    err = got.samples[0, 200:-200] - ref[200:-200]
    assert np.sqrt(np.mean(err ** 2)) < 1e-3  # a good band-limited resampler, not linear interpolation
    part = media.decode_audio(path, sr_in, 1, start_s=0.5, duration_s=0.25).samples
    np.testing.assert_array_equal(part[0], tone[22050:22050 + 11025])
    padded = media.decode_audio(path, sr_in, 1, start_s=0.9, duration_s=0.5).samples
    assert padded.shape == (1, 22050) and (padded[0, n - 39690:] == 0).all()


@pytest.mark.parametrize("sr_in,sr_out", [(48000, 16000), (44100, 16000), (16000, 44100), (48000, 44100)])
def test_streaming_resampler_equals_whole_signal_resampling(sr_in, sr_out):
    from scipy.signal import resample_poly

    from foleyflow.media.decode import StreamingResampler

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 30011)).astype(np.float32)
    r = StreamingResampler(sr_in, sr_out, 2, block=2048)
    i = 0
    while i < x.shape[1]:  # blocks of random sizes, as audio frames arrive
        k = int(rng.integers(1, 1500))
        r.feed(x[:, i:i + k])
        i += k
    g = math.gcd(sr_in, sr_out)
    np.testing.assert_allclose(r.finish(), resample_poly(x, sr_out // g, sr_in // g, axis=1), atol=1e-5)


# ---------------------------------------------------------------- mux

@pytest.mark.parametrize("fps,n", [(Fraction(25), 40), (NTSC, 47), (FILM, 41)])
def test_mux_audio_length_matches_video(tmp_path, fps, n):
    import av

    video = make_video(tmp_path / "v.mp4", n, fps)
    sr = 16000
    v_samples = round(Fraction(n) / fps * sr)
    for extra, name in [(3000, "long"), (-5000, "short")]:  # audio longer (trimmed) and shorter (padded)
        audio = np.zeros((2, v_samples + extra), np.float32)
        audio[:, 8000:8010] = 0.8  # a click at 0.5 s
        out = media.mux_audio(video, audio, sr, tmp_path / f"{name}.mp4")
        assert out.num_samples == v_samples and not out.replaced_audio
        got = media.decode_audio(out.path, sr, 2)
        assert abs(got.samples.shape[1] - v_samples) <= 1024
        assert abs(int(np.argmax(np.abs(got.samples[0]))) - 8000) < 64  # priming removed: still aligned
        with av.open(str(video)) as a, av.open(str(out.path)) as b:  # the video packets are copied, not re-encoded
            pa = [bytes(p) for p in a.demux(video=0) if p.size]
            pb = [bytes(p) for p in b.demux(video=0) if p.size]
        assert pa == pb
    info = media.probe(tmp_path / "long.mp4")
    assert info.video.frame_count == n and info.video.frame_rate == fps and info.audio.sample_rate == sr


def test_mux_replaces_existing_audio(tmp_path):
    noise = np.random.default_rng(1).uniform(-0.5, 0.5, (1, 16000)).astype(np.float32)
    video = make_video(tmp_path / "v.mp4", 25, 25, audio=noise, sample_rate=16000)
    out = media.mux_audio(video, np.zeros((1, 16000), np.float32), 16000, tmp_path / "o.mp4")
    assert out.replaced_audio
    info = media.probe(out.path)
    assert [s.type for s in info.streams] == ["video", "audio"] and info.audio.channels == 1
    assert np.abs(media.decode_audio(out.path, 16000, 1).samples).max() < 1e-3
    with pytest.raises(MediaError, match="input video"):
        media.mux_audio(video, noise, 16000, video)


# ---------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    good = make_video(d / "good.mp4", 50, 25)
    (d / "notes.txt").write_text("not a video\n" * 50)
    (d / "notes.mp4").write_text("not a video\n" * 50)
    (d / "empty.mp4").write_bytes(b"")
    os.mkfifo(d / "fifo.mp4")
    media.write_audio(d / "sound.wav", np.zeros((1, 800), np.float32), 8000)
    return {"good": good, "text": d / "notes.txt", "text_mp4": d / "notes.mp4", "empty": d / "empty.mp4",
            "fifo": d / "fifo.mp4", "missing": d / "missing.mp4", "folder": d, "audio_only": d / "sound.wav",
            "truncated": make_truncated(good, d / "truncated.mp4"),
            "corrupt": make_corrupt_header(good, d / "corrupt.mp4"),
            "unknown_codec": make_unknown_codec(good, d / "unknown.mp4")}


@pytest.mark.parametrize("case,words", [
    ("missing", "no such file"), ("folder", "is a folder"), ("empty", "empty"), ("fifo", "not a regular file"),
    ("text", "not a media file"), ("text_mp4", "not a media file"), ("truncated", "truncated"),
    ("corrupt", "corrupt"), ("unknown_codec", "unsupported video codec"), ("audio_only", "no video stream")])
def test_bad_video_input_is_a_one_line_media_error(bad_files, case, words):
    with pytest.raises(MediaError) as e:
        media.decode_frames(bad_files[case], 8, 32)
    assert words in str(e.value) and "\n" not in str(e.value)
    if case not in ("unknown_codec", "audio_only"):
        with pytest.raises(MediaError):
            media.probe(bad_files[case])


def test_truncated_stream_with_index_at_front(tmp_path):
    import av

    path = tmp_path / "fast.mp4"
    frames = (np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(100))
    with av.open(str(path), mode="w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    cut = make_truncated(path, tmp_path / "cut.mp4", 0.5)
    assert media.probe(cut).video.frame_count == 100  # the header still promises 100 frames...
    with pytest.raises(MediaError, match="truncated"):  # ...decoding notices they are not there
        media.decode_frames(cut, 8, 32)


def test_bad_audio_input(bad_files):
    with pytest.raises(MediaError, match="no audio stream"):
        media.decode_audio(bad_files["good"], 16000)
    for kwargs in [dict(sample_rate=0), dict(sample_rate=10 ** 7), dict(sample_rate=16000, channels=6),
                   dict(sample_rate=8000, duration_s=1e9), dict(sample_rate=8000, start_s=3.0)]:
        with pytest.raises(MediaError):
            media.decode_audio(bad_files["audio_only"], **kwargs)
    for case in ("missing", "empty", "text", "truncated"):
        with pytest.raises(MediaError):
            media.decode_audio(bad_files[case], 16000)


@pytest.mark.parametrize("kwargs", [dict(fps=0), dict(fps=-8), dict(fps=1e9), dict(fps=float("nan")),
                                    dict(fps="abc"), dict(size=0), dict(size=100_000), dict(size=(224, -1)),
                                    dict(size=(1, 2, 3)), dict(resize="zoom"), dict(start_s=-1),
                                    dict(start_s=5.0), dict(duration_s=1e9)])
def test_absurd_decode_arguments(bad_files, kwargs):
    args = dict(fps=8, size=32) | kwargs
    with pytest.raises(MediaError):
        media.decode_frames(bad_files["good"], **args)


def test_unwritable_outputs(bad_files, tmp_path):
    x = np.zeros((1, 100), np.float32)
    for target in (tmp_path / "no" / "such" / "dir" / "o.mp4", tmp_path):
        with pytest.raises(MediaError, match="cannot write"):
            media.mux_audio(bad_files["good"], x, 16000, target)
        with pytest.raises(MediaError, match="cannot write"):
            media.write_video(target, [np.zeros((8, 8, 3), np.uint8)], 25)
        with pytest.raises(MediaError, match="cannot write"):
            media.write_audio(target.with_suffix(".wav") if target != tmp_path else tmp_path, x, 16000)
    with pytest.raises(MediaError, match="AAC"):
        media.mux_audio(bad_files["good"], x, 12345, tmp_path / "o.mp4")
    with pytest.raises(MediaError, match="no video stream"):
        media.mux_audio(bad_files["audio_only"], x, 16000, tmp_path / "o.mp4")
    assert not list(tmp_path.glob(".*partial*"))  # no half-written files left behind


# ---------------------------------------------------------------- the real clips

def test_bigbuckbunny(shared_media):
    path = shared_media / "bigbuckbunny.mp4"
    info = media.probe(path)
    v, a = info.video, info.audio
    assert (v.width, v.height, v.frame_rate, v.frame_count, v.duration_s) == (1280, 720, 25, 132, 5.28)
    assert (a.sample_rate, a.channels, a.layout, a.num_samples) == (48000, 6, "5.1", 254976)
    assert a.duration_s == pytest.approx(5.312)
    import json
    assert json.loads(info.to_json())["video"]["frame_rate"] == "25/1"
    frames = media.decode_frames(path, 8, 224, "center_crop")
    assert frames.frames.shape == (media.num_frames(5.28, 8), 224, 224, 3) == (42, 224, 224, 3)
    np.testing.assert_allclose(frames.timestamps, np.arange(42) / 8)
    np.testing.assert_allclose(frames.source_timestamps, np.floor(np.arange(42) / 8 * 25) / 25)
    assert frames.frames.std() > 10  # real pictures, not blank frames
    part = media.decode_frames(path, 8, 224, "center_crop", start_s=2.0, duration_s=1.0)  # seeks: same frames
    np.testing.assert_array_equal(part.frames, frames.frames[16:24])
    np.testing.assert_allclose(part.timestamps, frames.timestamps[16:24])
    audio = media.decode_audio(path, 16000, 2)
    assert audio.samples.shape == (2, math.ceil(254976 * 16000 / 48000)) == (2, 84992)
    assert audio.duration_s == pytest.approx(5.312) and 0.01 < np.abs(audio.samples).max() <= 1.0


def test_carphone_has_no_audio_and_decodes(shared_media):
    path = shared_media / "carphone_pristine.mp4"
    info = media.probe(path)
    assert not info.has_audio and info.video.frame_rate == NTSC and info.video.frame_count == 120
    out = media.decode_frames(path, 25, 224, "center_crop")
    assert out.frames.shape == (math.floor(Fraction(4004, 1000) * 25), 224, 224, 3) == (100, 224, 224, 3)
    with pytest.raises(MediaError, match="no audio stream"):
        media.decode_audio(path, 16000)


def test_probe_reads_files_whose_metadata_is_not_utf8(tmp_path):
    """Found by the slow fuzz harness: a title in Latin-1 made PyAV raise UnicodeDecodeError inside probe."""
    import av
    import numpy as np

    from foleyflow.media import probe

    path = tmp_path / "latin1.mp4"
    with av.open(str(path), "w", metadata_encoding="latin-1") as c:
        c.metadata["title"] = "caf\u00e9 \u00e0 la plage"
        s = c.add_stream("libx264", rate=10)
        s.width = s.height = 16
        s.pix_fmt = "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 20 * i, np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with pytest.raises(UnicodeDecodeError):
        av.open(str(path)).close()          # the failure mode this guards against
    info = probe(path)
    assert info.video is not None and info.video.frame_count == 5
