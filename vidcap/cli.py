"""`vidcap` command line. Parses and calls; no logic."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from saliency.infra.commandline import (EXIT_SKIPPED, add_command, add_config_arguments, add_synth_arguments,
                                        positive_int, report_skipped, run_command)
from saliency.infra.errors import UserError


def _synth(args: argparse.Namespace) -> int:
    from vidcap.data.synthetic import write_msrvtt

    summary = write_msrvtt(args.out, n=args.n, seed=args.seed, size=args.size, n_frames=args.frames, fps=args.fps,
                           progress=not args.quiet, world=args.world)
    print(json.dumps(summary, indent=2))
    return 0


def _run_config(args: argparse.Namespace):
    """Preset ← `--set` overrides ← `--saliency`/`--saliency-model` (resume: the run's own config)."""
    from dataclasses import replace

    from saliency.infra.config import load_config
    from vidcap.captioner import with_saliency
    from vidcap.run import VidcapRunConfig

    resuming = getattr(args, "resume", False) and not args.config and (Path(args.out) / "config.yaml").is_file()
    config = load_config(VidcapRunConfig, Path(args.out) / "config.yaml" if resuming else args.config, args.overrides)
    source = args.saliency or config.captioner.saliency.source
    return replace(config, captioner=with_saliency(config.captioner, source, args.saliency_model))


def _train(args: argparse.Namespace) -> int:
    from saliency.infra import distributed
    from saliency.infra.rundir import RunDir
    from vidcap.train import CaptionTrainer

    config = _run_config(args)
    set_torch_threads(config.threads)
    with distributed.session() as world, RunDir(args.out).lock(world):  # under torchrun: one process of several
        trainer = CaptionTrainer(config, args.out, resume=args.resume, progress=not args.quiet)
        metrics = trainer.fit()
    if world.is_main:
        print(json.dumps({"run": args.out, "best_epoch": metrics["best_epoch"], "val": metrics["final"]}, indent=2))
    if not world.is_main:  # the same exit status everywhere, the lists printed once
        return EXIT_SKIPPED if trainer.skipped else 0
    return _report_skipped_videos("vidcap train", trainer.skipped)


def _extract(args: argparse.Namespace) -> int:
    from saliency.infra import distributed
    from vidcap.data.cache import extract_splits

    config = _run_config(args)
    set_torch_threads(config.threads)
    with distributed.session() as world:  # under torchrun: each process extracts its share of the videos
        result = extract_splits(config, args.splits.split(","), progress=not args.quiet)
    if not world.is_main:  # the same exit status everywhere, the lists printed once
        return EXIT_SKIPPED if result.skipped else 0
    print(f"feature cache {result.folder}: {result.videos} videos ({result.new} newly extracted)")
    return _report_skipped_videos("vidcap extract", result.skipped)


def _report_skipped_videos(command: str, skipped: list[tuple[str, str]]) -> int:
    """One line per video a command could not read, then the closing list; the exit status."""
    for _, reason in skipped:
        print(f"{command}: skipped {reason}", file=sys.stderr)
    return report_skipped(command, [video for video, _ in skipped], "video")


def _caption(args: argparse.Namespace) -> int:
    from vidcap.run import load_run

    model, _ = load_run(args.model)
    results, skipped = [], []
    for path in args.videos:
        try:
            caption = model.caption_files([path], num_beams=args.beams)[0]
            if args.overlay:
                from vidcap.reports.overlay import write_overlay

                write_overlay(model.front, path, overlay_path(args.overlay, path, len(args.videos)))
        except UserError as error:
            print(f"vidcap caption: skipped {error}", file=sys.stderr)
            skipped.append(path)
            continue
        results.append({"video": path, "caption": caption})
        if not args.json:
            print(f"{path}\t{caption}" if len(args.videos) > 1 else caption)
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
    return report_skipped("vidcap caption", skipped, "video")


def _eval(args: argparse.Namespace) -> int:
    from vidcap.split_evaluation import evaluate_split, evaluation_folder, format_metrics

    out = args.out or evaluation_folder(args.model, args.split, args.predictions)
    metrics = evaluate_split(args.model, args.split, predictions_file=args.predictions, per_video=args.per_video,
                             data_root=args.data, progress=not args.quiet, out=out)
    for entry in metrics["skipped"]:
        if entry["reason"] != "no prediction":
            print(f"vidcap eval: skipped {entry['reason']}", file=sys.stderr)
    print(format_metrics(metrics))
    print(f"wrote {out}/")
    return report_skipped("vidcap eval", [entry["video_id"] for entry in metrics["skipped"]], "video")


def _compare(args: argparse.Namespace) -> int:
    from vidcap.reports.comparison import compare_runs

    names = args.names.split(",") if args.names else None
    markdown, page = compare_runs(args.runs, args.split, args.out, names)
    print(markdown.read_text(encoding="utf-8"))
    print(f"wrote {page} and {markdown}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from saliency.infra.config import load_config
    from vidcap.demo import Demo, DemoConfig, format_summary

    config = load_config(DemoConfig, args.config, args.overrides)
    skip = tuple(args.skip.split(",")) if args.skip else ()
    summary = Demo(config, skip=skip, progress=not args.quiet).run()
    print(format_summary(summary))
    written = [Path(config.out) / "summary.json"] + ([] if "report" in skip else [Path(config.out) / "report.html"])
    print(f"total {summary['seconds_this_run']['total'] / 60:.1f} min; wrote {' and '.join(map(str, written))}")
    return 0


def overlay_path(template: str, video: str, count: int) -> Path:
    """`--overlay OUT.mp4` for one video; for several, `OUT-<video stem>.mp4` each."""
    out = Path(template)
    return out if count == 1 else out.with_name(f"{out.stem}-{Path(video).stem}{out.suffix or '.mp4'}")


def set_torch_threads(threads: int) -> None:
    """Use `threads` CPU threads for torch (0: torch's default, all cores); process-wide, so only here."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidcap", description="Caption videos with saliency-weighted features.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    synth = add_command(commands, "synth", help="generate synthetic captioned videos in the MSR-VTT layout")
    add_synth_arguments(synth, "TrainValVideo/, TestVideo/, *_videodatainfo.json, saliency/", "videos", 50, (120, 160))
    synth.add_argument("--frames", type=int, default=32, help="frames per video (default 32)")
    synth.add_argument("--fps", type=int, default=8, help="frame rate (default 8)")
    synth.set_defaults(handler=_synth)

    for name, text in (("train", "train a captioner (decoder on cached, saliency-weighted visual tokens)"),
                       ("extract", "precompute the weighted visual tokens of a dataset into the feature cache")):
        command = add_command(commands, name, help=text, description=text)
        add_config_arguments(command)
        command.add_argument("--saliency", choices=["none", "teacher", "student"],
                             help="where the saliency maps come from (default: the config's captioner.saliency.source)")
        command.add_argument("--saliency-model", metavar="RUN", help="saliency run directory (teacher or student)")
        if name == "train":
            command.add_argument("--out", required=True, metavar="RUN", help="run directory to create (or continue with --resume)")
            command.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
        else:
            command.add_argument("--splits", default="train,val,test", help="comma-separated splits (default train,val,test)")
        command.set_defaults(handler=_train if name == "train" else _extract)

    caption = add_command(commands, "caption", help="caption video files with a trained captioner")
    caption.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (any format ffmpeg reads)")
    caption.add_argument("--model", required=True, metavar="RUN", help="trained captioner run directory")
    caption.add_argument("--json", action="store_true", help='print [{"video": path, "caption": text}]')
    caption.add_argument("--beams", type=positive_int, help="beam width (default: the run's, 3)")
    caption.add_argument("--overlay", metavar="OUT.mp4", help="also write the video with its saliency map blended in")
    caption.set_defaults(handler=_caption)

    evaluate = add_command(commands, "eval", help="caption a whole split and score it (BLEU-1..4, METEOR, ROUGE-L, CIDEr)")
    evaluate.add_argument("--model", required=True, metavar="RUN", help="trained captioner run directory")
    evaluate.add_argument("--split", default="test", help="split to score, always whole (default test)")
    evaluate.add_argument("--data", metavar="DIR", help="dataset root (default: the run's data.root)")
    evaluate.add_argument("--predictions", metavar="FILE",
                          help='score these captions instead of the model\'s: [{"video_id", "caption"}] JSON')
    evaluate.add_argument("--per-video", action="store_true", help="also write per_video.json (worst CIDEr first)")
    evaluate.add_argument("--out", metavar="DIR", help="output folder (default: RUN/eval/SPLIT, or RUN/eval/SPLIT-NAME "
                                                       "for --predictions NAME.json, so the run's own scores stay)")
    evaluate.set_defaults(handler=_eval)

    compare = add_command(commands, "compare", help="put evaluated runs side by side: Markdown, HTML and a bar chart",
                                  description="Compare runs already scored with `vidcap eval` on the same split; "
                                              "differences are to the first run.")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="captioner run directories, the baseline first")
    compare.add_argument("--split", default="test", help="evaluated split to compare (default test)")
    compare.add_argument("--out", metavar="DIR", help="output folder (default: compare/ beside the first run)")
    compare.add_argument("--names", help="comma-separated display names, one per run (default: folder names)")
    compare.set_defaults(handler=_compare)

    demo = add_command(commands, "demo", help="the whole job on synthetic data: saliency teacher → student → three "
                                            "captioners → evaluation → report.html",
                               description="Generate the synthetic world, train a saliency teacher, distil a student "
                                           "(and train one without distillation), train captioners with saliency none / "
                                           "teacher / student, evaluate them, write OUT/report.html and OUT/summary.json. "
                                           "Finished stages are skipped and interrupted ones resumed when run again.")
    add_config_arguments(demo)
    demo.set_defaults(config="configs/demo.yaml")
    demo.set_defaults(handler=_demo)
    demo.add_argument("--skip", metavar="STAGES", help="comma-separated stages not to run (their outputs must exist): "
                                                      "world, teacher, student, student-no-kd, captioners, evaluate, report")

    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
