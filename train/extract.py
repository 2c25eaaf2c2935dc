"""Command line: extract (or resume, or find) the pseudo-label cache of one or more videos.

    python -m train.extract VIDEO [VIDEO ...] --cache runs/cache --size 256 [--depth pydnet] [--teacher deeplab]

Prints each cache directory and a summary of its manifest. Thin: all the work is ``train.cache.extract``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from train.cache import Cache, extract
from train.extractors import DEFAULT_EXTRACTORS


def _optional(name: str) -> str | None:
    return None if name.lower() == "none" else name


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m train.extract", description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="+", help="video files (mp4, webm, mkv, avi)")
    parser.add_argument("--cache", default="runs/cache", help="cache root directory")
    parser.add_argument("--size", type=int, default=256, help="side of the square clip frames, pixels")
    parser.add_argument("--flow", default=DEFAULT_EXTRACTORS["flow"], help="flow extractor name")
    parser.add_argument("--depth", default=DEFAULT_EXTRACTORS["depth"], help="depth extractor name, or none")
    parser.add_argument("--teacher", default=DEFAULT_EXTRACTORS["teacher"], help="teacher name, or none")
    parser.add_argument("--weights", default=None, help="local weights folder for depth/teacher that need one")
    parser.add_argument("--skips", default="1,2,3", help="frame skips to store flow for, comma-separated")
    parser.add_argument("--start", type=int, default=0, help="first source frame")
    parser.add_argument("--max-frames", type=int, default=None, help="at most this many frames")
    parser.add_argument("--chunk", type=int, default=16, help="frames per written chunk")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> list[str]:
    args = parse_args(argv)

    def spec(name: str | None):
        if name is None or args.weights is None or name in ("pydnet", "deeplab"):
            return name
        return {"name": name, "weights": args.weights}

    done = []
    for video in args.videos:
        cache_dir = extract(
            video,
            args.cache,
            size=args.size,
            flow=_optional(args.flow),
            depth=spec(_optional(args.depth)),
            teacher=spec(_optional(args.teacher)),
            skips=[int(k) for k in args.skips.split(",") if k],
            start=args.start,
            max_frames=args.max_frames,
            chunk_frames=args.chunk,
        )
        cache = Cache(cache_dir)
        summary = {
            "cache": str(cache_dir),
            "frames": cache.n_frames,
            "fps": cache.fps,
            "ms_per_frame": cache.manifest["ms_per_frame"],
        }
        print(json.dumps(summary))
        done.append(str(cache_dir))
    return done


if __name__ == "__main__":
    main()
