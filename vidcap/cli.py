"""`vidcap` command line. Parses and calls; no logic."""
from __future__ import annotations

import argparse
import json

from saliency.commandline import parse_size, run_command


def _synth(args: argparse.Namespace) -> int:
    from vidcap.synthetic import write_msrvtt

    summary = write_msrvtt(args.out, n=args.n, seed=args.seed, size=args.size, n_frames=args.frames, fps=args.fps,
                           progress=not args.quiet)
    print(json.dumps(summary, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidcap", description="Caption videos with saliency-weighted features.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    synth = commands.add_parser("synth", help="generate synthetic captioned videos in the MSR-VTT layout")
    synth.add_argument("out", help="output folder (TrainValVideo/, TestVideo/, *_videodatainfo.json, saliency/)")
    synth.add_argument("--n", type=int, default=50, help="number of videos (default 50)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; same seed, identical annotations")
    synth.add_argument("--size", type=parse_size, default=(120, 160), help="frame size HxW (default 120x160)")
    synth.add_argument("--frames", type=int, default=32, help="frames per video (default 32)")
    synth.add_argument("--fps", type=int, default=8, help="frame rate (default 8)")
    synth.set_defaults(handler=_synth)

    for command in commands.choices.values():
        command.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
