"""`foleyflow mux VIDEO AUDIO -o OUT`: put a soundtrack into a video without re-encoding the picture."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("mux", help="put a soundtrack (wav/flac) into a video without re-encoding the video",
                       description="Copies the video stream of VIDEO unchanged and adds AUDIO as AAC, trimmed or "
                                   "padded with silence to the video's duration. An audio stream already in VIDEO "
                                   "is replaced.")
    p.add_argument("video", metavar="VIDEO")
    p.add_argument("audio", metavar="AUDIO", help="soundtrack file (wav or flac; mono or stereo)")
    p.add_argument("-o", "--out", required=True, help="output video (.mp4, .mov or .mkv)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output file that foleyflow did not write (its own are always replaced)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from foleyflow.errors import MediaError
    from foleyflow.media import mux_audio
    from foleyflow.media.probe import check_readable

    import soundfile as sf

    from foleyflow.outputs import check_outputs, own_tag

    path = check_readable(args.audio)
    check_outputs([args.out], [args.video, args.audio], overwrite=args.overwrite)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise MediaError(f"{path}: not a readable wav/flac file ({' '.join(str(e).split())})") from None
    if data.shape[1] > 2:
        raise MediaError(f"{path}: has {data.shape[1]} channels; mux takes mono or stereo")
    result = mux_audio(args.video, data.T, sr, args.out, tag=own_tag("mux"), audio_name=str(path))
    note = " (replaced the original audio)" if result.replaced_audio else ""
    print(f"wrote {result.path}: {result.num_samples} samples at {sr} Hz = {result.video_duration_s:.3f} s{note}")
    return 0
