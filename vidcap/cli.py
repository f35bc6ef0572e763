"""`vidcap` command line. Parses and calls; no logic."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from saliency.infra.commandline import (EXIT_SKIPPED, CommandParser, add_command, add_config_arguments,
                                        add_synth_arguments, port_number, positive_int, positive_number, report_skipped,
                                        run_command, run_config)
from saliency.infra.errors import UserError
from vidcap.app.formats import FORMATS, SUBTITLES

BACKEND_HELP = ("where the saliency model and frozen encoder run: auto (the fastest installed, onnxruntime), torch, "
                "onnxruntime or onnxruntime-int8; exports are cached beside the weights")
SALIENCY_BACKEND_HELP = ("the saliency model's own backend, the same names (default: the run's `saliency_backend`, "
                         "else as --backend); e.g. onnxruntime beside --backend onnxruntime-int8: an int8 encoder "
                         "with float32 maps")


def _synth(args: argparse.Namespace) -> int:
    from saliency.world import write_msrvtt

    summary = write_msrvtt(args.out, n=args.n, seed=args.seed, size=args.size, n_frames=args.frames, fps=args.fps,
                           progress=not args.quiet, world=args.world)
    print(json.dumps(summary, indent=2))
    return 0


def _run_config(args: argparse.Namespace):
    """Preset ← `--set` overrides ← `--saliency`/`--saliency-model` (resume: the run's own config)."""
    from dataclasses import replace

    from vidcap.model.captioner import with_saliency
    from vidcap.run import VidcapRunConfig

    config = run_config(VidcapRunConfig, args, args.overrides)
    source = args.saliency or config.captioner.saliency.source
    backend = getattr(args, "backend", None) or config.backend
    return replace(config, captioner=with_saliency(config.captioner, source, args.saliency_model), backend=backend)


def _scst_config(args: argparse.Namespace):
    """The self-critical stage's config: of the cross-entropy run `--out` (resuming: the stage's own), then `--set`."""
    from vidcap.training.scst import stage_config

    if args.config or args.saliency or args.saliency_model:
        raise UserError("--scst continues the run's own config; drop --config, --saliency and --saliency-model")
    return stage_config(args.out, args.overrides, resume=args.resume)


def _train(args: argparse.Namespace) -> int:
    from saliency.infra import distributed
    from saliency.infra.rundir import RunDir
    from vidcap.training.scst import STAGE_FOLDER
    from vidcap.training.train import CaptionTrainer

    config = _scst_config(args) if args.scst else _run_config(args)
    out = str(Path(args.out) / STAGE_FOLDER) if args.scst else args.out
    set_torch_threads(config.threads)
    with distributed.session() as world, RunDir(out).lock(world):  # under torchrun: one process of several
        trainer = CaptionTrainer(config, out, resume=args.resume, progress=not args.quiet)
        metrics = trainer.fit()
    if world.is_main:
        from vidcap.training.trust import fit_trust

        fit_trust(out, progress=not args.quiet)  # what its training videos look like, how far its confidence goes
        print(json.dumps({"run": out, "best_epoch": metrics["best_epoch"], "val": metrics["final"]}, indent=2))
    if not world.is_main:  # the same exit status everywhere, the lists printed once
        return EXIT_SKIPPED if trainer.skipped else 0
    return _report_skipped_videos("vidcap train", trainer.skipped)


def _extract(args: argparse.Namespace) -> int:
    from saliency.infra import distributed
    from vidcap.training.feature_cache import extract_splits

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
    import contextlib
    import tempfile

    from saliency import EXPORT_FOLDER
    from saliency.infra.media import STDIN, refuse_urls, spool_stdin
    from saliency.infra.outputs import check_outputs
    from vidcap.app.batch import check_results_path, expand_videos
    from vidcap.app.segments import VideoCaption, caption_video, parse_segments
    from vidcap.inference.front_end_backend import use_backend
    from vidcap.inference.pipeline import CaptionsAhead
    from vidcap.run import load_run

    segments = parse_segments(args.segments)
    if args.json and args.format not in (None, "json"):
        raise UserError(f"--json is --format json; give one of --json and --format {args.format}")
    form = "json" if args.json else args.format or ("jsonl" if args.out else "text")
    refuse_urls(args.videos)
    videos = expand_videos(args.videos)
    if args.out and form != "jsonl":
        raise UserError(f"--out writes JSON lines; --format {form} is for printing, without --out")
    if args.retry_failed and not args.out:
        raise UserError("--retry-failed retries the failures recorded in a results file: give it with --out")
    if form in SUBTITLES and len(videos) > 1:
        raise UserError(f"--format {form} prints the subtitles of one video, got {len(videos)}; "
                        "caption many into --out results.jsonl")
    out = check_results_path(args.out) if args.out else None
    with contextlib.ExitStack() as stack:
        # `-`: the video piped in, spooled to a file for the command's time; results still name it `-`
        source = {STDIN: str(spool_stdin(stack.enter_context(tempfile.TemporaryDirectory(prefix="vidcap-stdin-"))))
                  } if STDIN in videos else {}
        overlays = {video: overlay_path(args.overlay, source.get(video, video), len(videos))
                    for video in videos} if args.overlay else {}
        check_outputs({Path(video): [target] for video, target in overlays.items()}, inputs=map(Path, videos))
        model, config = load_run(args.model)
        if args.overlay:  # a mistake, before any video is captioned
            from vidcap.inference.overlay import require_saliency_model

            require_saliency_model(model.front, config.captioner.saliency.source, args.model)
        use_backend(model.front, config, args.backend, Path(args.model) / EXPORT_FOLDER, args.saliency_backend)
        files = [source.get(video, video) for video in videos]
        ahead = CaptionsAhead(model, files, args.beams) if segments is None else None  # decoding overlapped, batched

        def caption(video: str):
            path = source.get(video, video)
            if ahead:
                text = ahead.caption(path)
                result = VideoCaption(text, [], seconds=ahead.last_seconds)
            else:
                result = caption_video(model, path, segments, args.beams)
            if args.overlay:
                from vidcap.inference.overlay import write_overlay

                print(f"{video}: overlay {write_overlay(model.front, path, overlays[video])}", file=sys.stderr)
            return result

        if out:
            return _caption_into(args, out, videos, caption)
        return _print_captions(form, videos, caption, model.trust.about)


def _caption_into(args: argparse.Namespace, out: Path, videos: list[str], caption) -> int:
    """`vidcap caption --out`: one JSON line per video in `out`, resumable; a summary on stdout."""
    from saliency.infra import distributed
    from vidcap.app.batch import caption_into

    with distributed.session() as world:  # under torchrun: each process captions its share into a part file
        report = caption_into(out, videos, lambda path: caption(path).as_record(), world,
                              retry_failed=args.retry_failed, progress=not args.quiet)
    unusable = [path for path, _ in report.failed + report.failed_before]
    if not world.is_main:  # the same exit status everywhere, the lists printed once
        return EXIT_SKIPPED if unusable else 0
    for _, error in report.failed:
        print(f"vidcap caption: skipped {error}", file=sys.stderr)
    if report.failed_before:
        print(f"vidcap caption: {len(report.failed_before)} video(s) failed in an earlier run, not retried "
              "(--retry-failed retries them)", file=sys.stderr)
    print(f"{out}: {len(report.captioned)} video(s) captioned, {len(report.done_before)} already there, "
          f"{len(report.failed)} failed")
    return report_skipped("vidcap caption", unusable, "video")


def _print_captions(form: str, videos: list[str], caption, about: dict | None) -> int:
    """`vidcap caption` without --out: each video's caption(s) on stdout in `form`, bad files skipped; the first
    caption of a video unlike the training videos (`about` them) says on stderr what its flag means."""
    from vidcap.app import formats
    from vidcap.app.segments import whole_video_cue

    results, skipped, explained = [], [], False
    for path in videos:
        try:
            result = caption(path)
            cues = (result.segments or [whole_video_cue(path, result.caption)]) if form in SUBTITLES else []
        except UserError as error:
            print(f"vidcap caption: skipped {error}", file=sys.stderr)
            skipped.append(path)
            continue
        results.append((path, result))
        if formats.flagged(result) and not explained:
            print(f"vidcap caption: {formats.flag_note(about)}", file=sys.stderr)
            explained = True
        if form == "text":
            print("\n".join(formats.text_lines(path, result, name_it=len(videos) > 1)), flush=True)
        elif form == "jsonl":
            print(formats.jsonl_line(path, result), flush=True)
        elif form in SUBTITLES:
            print(formats.srt(cues) if form == "srt" else formats.vtt(cues), end="")
    if form == "json":
        print(json.dumps([formats.record(path, result) for path, result in results], indent=2, ensure_ascii=False))
    return report_skipped("vidcap caption", skipped, "video")


def _eval(args: argparse.Namespace) -> int:
    from vidcap.evaluation.splits import evaluate_split, evaluation_folder, format_metrics

    out = args.out or evaluation_folder(args.model, args.split, args.predictions)
    metrics = evaluate_split(args.model, args.split, predictions_file=args.predictions, per_video=args.per_video,
                             data_root=args.data, progress=not args.quiet, out=out, backend=args.backend,
                             saliency_backend=args.saliency_backend)
    for entry in metrics["skipped"]:
        if entry["reason"] != "no prediction":
            print(f"vidcap eval: skipped {entry['reason']}", file=sys.stderr)
    print(format_metrics(metrics))
    print(f"wrote {out}/")
    return report_skipped("vidcap eval", [entry["video_id"] for entry in metrics["skipped"]], "video")


def _compare(args: argparse.Namespace) -> int:
    from vidcap.evaluation.reports.comparison import compare_runs

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


def _calibrate(args: argparse.Namespace) -> int:
    from vidcap.app.card import card
    from vidcap.training.trust import fit_trust

    fit_trust(args.model, progress=not args.quiet)
    print(card(args.model))
    return 0


def _info(args: argparse.Namespace) -> int:
    from vidcap.app.card import card

    print(card(args.model))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import os
    import tempfile

    from vidcap.run import load_run
    from vidcap.app.serve import create_app, listen, serve

    sock = listen(args.host, args.port)  # a busy port or a bad host: one line, before the model is loaded
    model, _ = load_run(args.model)
    with tempfile.TemporaryDirectory(prefix="vidcap-serve-") as workdir:
        # process-wide, so set here: files decord cannot read are transcoded into the server's own folder
        os.environ["VIDCAP_TRANSCODE_CACHE"] = str(Path(workdir) / "transcode")
        app = create_app(model, args.model, workdir, max_upload_mb=args.max_upload_mb, queue=args.queue)
        host, port = sock.getsockname()[:2]
        print(f"serving {args.model} at http://{f'[{host}]' if ':' in host else host}:{port}/ (Ctrl-C stops)", flush=True)
        serve(app, sock, quiet=args.quiet)
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
    parser = CommandParser(prog="vidcap", description="Caption videos with saliency-weighted features.")
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
        command.add_argument("--saliency", choices=["none", "teacher", "student", "uniform", "shuffled", "centre",
                                                    "ground-truth"],
                             help="where the saliency maps come from (default: the config's captioner.saliency.source): "
                                  "none; a saliency model, teacher or student (with --saliency-model); or a control "
                                  "that needs none: uniform (S = 1 everywhere), shuffled (the world's maps of another "
                                  "video of the split), centre (a centre prior) or ground-truth (the synthetic world's "
                                  "own maps, from its synthetic_meta.json)")
        command.add_argument("--saliency-model", metavar="RUN", help="saliency run directory (teacher or student)")
        if name == "train":
            command.add_argument("--out", required=True, metavar="RUN", help="run directory to create (or continue with --resume)")
            command.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
            command.add_argument("--scst", action="store_true",
                                 help="after cross-entropy: self-critical sequence training (CIDEr-D reward, greedy "
                                      "baseline) from the finished run --out, into RUN/scst (its own run directory; "
                                      "with --resume continue it); --set optim.epochs/optim.lr/scst.samples change it")
        else:
            command.add_argument("--splits", default="train,val,test", help="comma-separated splits (default train,val,test)")
            command.add_argument("--backend", help=f"{BACKEND_HELP} (default: the config's `backend`, which "
                                                   "vidcap train extracts with)")
        command.set_defaults(handler=_train if name == "train" else _extract)

    caption = add_command(commands, "caption", help="caption video files with a trained captioner")
    caption.add_argument("videos", nargs="+", metavar="VIDEO",
                         help="video files (any format ffmpeg reads), folders (the videos in them) or quoted glob patterns")
    caption.add_argument("--model", required=True, metavar="RUN", help="trained captioner run directory")
    caption.add_argument("--json", action="store_true", help='print [{"video": path, "caption": text}] (= --format json)')
    caption.add_argument("--beams", type=positive_int, help="beam width (default: the run's, 3)")
    caption.add_argument("--overlay", metavar="OUT.mp4", help="also write the video with its saliency map blended in")
    caption.add_argument("--segments", metavar="SECONDS|scenes",
                         help="caption each SECONDS-long segment, or each scene (ffmpeg's scene-change detection), "
                              "with its start and end; frames are read segment by segment, so any length fits in memory")
    caption.add_argument("--format", choices=FORMATS,
                         help="what to print: text (default), json, jsonl, or the subtitles of one video as srt or vtt "
                              "(one cue per segment; without --segments one cue spans the whole video)")
    caption.add_argument("--out", metavar="RESULTS.jsonl",
                         help='write there instead of printing: one line per video ({"path", "caption" or "segments", '
                              '"seconds"}, or {"path", "error"}) as each finishes; run again, it skips what is there')
    caption.add_argument("--retry-failed", action="store_true", help="with --out: caption the videos recorded as failed again")
    caption.add_argument("--backend", help=f"{BACKEND_HELP} (default: the run's `backend`)")
    caption.add_argument("--saliency-backend", help=SALIENCY_BACKEND_HELP)
    caption.set_defaults(handler=_caption)

    evaluate = add_command(commands, "eval", help="caption a whole split and score it (BLEU-1..4, METEOR, ROUGE-L, CIDEr)")
    evaluate.add_argument("--model", required=True, metavar="RUN", help="trained captioner run directory")
    evaluate.add_argument("--split", default="test", help="split to score, always whole (default test)")
    evaluate.add_argument("--data", metavar="DIR", help="dataset root (default: the run's data.root)")
    evaluate.add_argument("--predictions", metavar="FILE",
                          help='score these captions instead of the model\'s: [{"video_id", "caption"}] JSON')
    evaluate.add_argument("--per-video", action="store_true", help="also write per_video.json (worst CIDEr first)")
    evaluate.add_argument("--backend", help=f"{BACKEND_HELP} (default: the run's `backend`)")
    evaluate.add_argument("--saliency-backend", help=SALIENCY_BACKEND_HELP)
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

    demo = add_command(commands, "demo", help="the whole job on synthetic data: pretraining → saliency teacher → "
                                            "student → three captioners → evaluation → report.html",
                               description="Generate the synthetic world, pretrain the teacher's backbone on its "
                                           "objects, train a saliency teacher, distil a student "
                                           "(and train one without distillation), train captioners with saliency none / "
                                           "teacher / student, evaluate them, write OUT/report.html and OUT/summary.json. "
                                           "Finished stages are skipped and interrupted ones resumed when run again.")
    add_config_arguments(demo)
    demo.set_defaults(config="configs/demo.yaml")
    demo.set_defaults(handler=_demo)
    demo.add_argument("--skip", metavar="STAGES", help="comma-separated stages not to run (their outputs must exist): "
                                                      "world, pretrain, teacher, student, student-no-kd, captioners, "
                                                      "evaluate, report")

    info = add_command(commands, "info", help="a trained captioner's card: what it was trained on and how far to trust it")
    info.add_argument("model", metavar="RUN", help="trained captioner run directory")
    info.set_defaults(handler=_info)

    calibrate = add_command(commands, "calibrate",
                            help="record what a captioner's training videos look like and calibrate its confidence "
                                 "(vidcap train does it; this is for runs trained before)")
    calibrate.add_argument("model", metavar="RUN", help="trained captioner run directory")
    calibrate.set_defaults(handler=_calibrate)

    serve = add_command(commands, "serve", help="a local web page and JSON API that caption uploaded videos",
                        description="Serve a page at / where one uploads or drops a video and sees its caption (or "
                                    "timestamped segment captions), the saliency overlay playing and the time each stage "
                                    "took; POST /api/caption (multipart field video, optional segments) answers JSON; "
                                    "GET /api/health.")
    serve.add_argument("--model", required=True, metavar="RUN", help="trained captioner run directory")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=port_number, default=8000, help="port (default 8000; 0: any free port)")
    serve.add_argument("--max-upload-mb", type=positive_number, default=200, metavar="MB",
                       help="larger uploads get 413 (default 200)")
    serve.add_argument("--queue", type=positive_int, default=4, metavar="N",
                       help="requests waiting or being captioned at once; more get 503 (default 4)")
    serve.set_defaults(handler=_serve)

    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
