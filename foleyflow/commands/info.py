"""`foleyflow info VIDEO [--json] [--decode]`: describe a media file; optionally check that it decodes."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("info", help="describe a media file (streams, exact frame rate, audio layout)",
                       description="Prints what foleyflow sees in a media file: container, duration, video size, "
                                   "rotation, exact frame rate and frame count, audio sample rate and layout.")
    p.add_argument("path", metavar="VIDEO", help="media file to describe")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.add_argument("--decode", action="store_true",
                   help="also decode the whole file as the models would see it (video frames at --fps and --size, "
                        "audio at --sample-rate) and report the counts; fails if the file has no video stream")
    p.add_argument("--fps", default="8", help="frame rate for --decode, e.g. 8, 25 or 30000/1001 (default 8)")
    p.add_argument("--size", type=int, default=224, help="square frame size in pixels for --decode (default 224)")
    p.add_argument("--resize", default="center_crop", choices=("stretch", "center_crop", "pad"),
                   help="resize mode for --decode (default center_crop)")
    p.add_argument("--sample-rate", type=int, default=16000, help="audio sample rate for --decode (default 16000)")
    p.set_defaults(func=run)


def _describe(info) -> list[str]:
    lines = [f"{info.path}", f"  container  {info.container}, {info.size_bytes} bytes, {info.duration_s:.3f} s"]
    v, a = info.video, info.audio
    if v is not None:
        rate = v.frame_rate
        rate_s = f"{rate.numerator}/{rate.denominator} fps ({float(rate):.3f})" if rate.denominator != 1 else \
            f"{rate.numerator} fps"
        size = f"{v.width}x{v.height}" if v.width else "size unknown"
        if (v.display_width, v.display_height) != (v.width, v.height):
            size += f" (displayed {v.display_width}x{v.display_height})"
        lines.append(f"  video      {v.codec or 'unsupported codec (cannot be decoded)'}, {size}, {rate_s}, {v.frame_count} frames, "
                     f"{v.duration_s:.3f} s from {v.start_s:.3f} s, rotation {v.rotation}")
    else:
        lines.append("  video      none")
    if a is not None:
        plural = "s" if a.channels != 1 else ""
        lines.append(f"  audio      {a.codec or 'unsupported codec'}, {a.sample_rate} Hz, {a.channels} channel{plural} "
                     f"({a.layout}: {' '.join(a.channel_names)}), {a.num_samples} samples = {a.duration_s:.3f} s "
                     f"from {a.start_s:.3f} s")
    else:
        lines.append("  audio      none")
    others = [s for s in info.streams if s.index not in {x.index for x in (v, a) if x is not None}]
    for s in others:
        lines.append(f"  stream {s.index}   {s.type} ({s.codec or 'unsupported codec'}), ignored")
    return lines


def _decode(args: argparse.Namespace, info) -> dict:
    import time

    from foleyflow.errors import MediaError
    from foleyflow.media import decode_audio, iter_frames

    if not info.has_video:
        raise MediaError(f"{args.path}: has no video stream")
    t = time.perf_counter()
    count, shape = 0, None
    for _, _, frame in iter_frames(args.path, args.fps, args.size, args.resize):
        count, shape = count + 1, frame.shape
    out = {"fps": args.fps, "frames": count, "frame_shape": list(shape) if shape else None}
    if info.has_audio:
        audio = decode_audio(args.path, args.sample_rate, 2)
        out.update(sample_rate=args.sample_rate, audio_samples=int(audio.samples.shape[1]),
                   audio_duration_s=audio.duration_s)
    out["seconds"] = round(time.perf_counter() - t, 3)
    return out


def run(args: argparse.Namespace) -> int:
    import json

    from foleyflow.media import probe

    info = probe(args.path)
    decoded = _decode(args, info) if args.decode else None
    if args.json:
        d = info.to_dict()
        if decoded is not None:
            d["decoded"] = decoded
        print(json.dumps(d, indent=2))
        return 0
    print("\n".join(_describe(info)))
    if decoded is not None:
        line = f"  decoded    {decoded['frames']} frames of {decoded['frame_shape']} at {decoded['fps']} fps"
        if "audio_samples" in decoded:
            line += f"; {decoded['audio_samples']} audio samples at {decoded['sample_rate']} Hz stereo"
        print(line + f" in {decoded['seconds']:.2f} s")
    return 0
