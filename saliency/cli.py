"""`saliency` command line: synth, train, distill, pretrain, eval, predict, bench, export. Parses and calls; no logic."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from saliency.infra.commandline import (CommandParser, add_command, add_config_arguments, add_synth_arguments,
                                        non_negative_int, parse_size, positive_int, report_skipped, run_command,
                                        run_config)
from saliency.infra.errors import UserError

BACKEND_HELP = ("where the model runs: auto (default: the fastest installed, onnxruntime), torch, onnxruntime or "
                "onnxruntime-int8; exports are cached in RUN/export/")


def _synth(args: argparse.Namespace) -> int:
    from saliency.world import write_dhf1k, write_salicon

    if args.layout == "dhf1k":
        summary = write_dhf1k(args.out, n=args.n, seed=args.seed, size=args.size, n_frames=args.frames, fps=args.fps,
                              progress=not args.quiet, world=args.world)
    else:
        summary = write_salicon(args.out, n=args.n, seed=args.seed, size=args.size, progress=not args.quiet,
                                world=args.world)
    print(json.dumps(summary, indent=2))
    return 0


def _run_config(args: argparse.Namespace, implied: list[str] = ()):
    """The run's config: the preset (or, on --resume without one, the run's own config.yaml), the settings the
    command's flags imply (`--teacher`, `--unlabeled`) and then the user's --set overrides."""
    from saliency.run import SaliencyRunConfig

    return run_config(SaliencyRunConfig, args, [*implied, *args.overrides])


def _train(args: argparse.Namespace) -> int:
    from saliency.infra import distributed
    from saliency.infra.rundir import RunDir
    from saliency.train import SaliencyTrainer

    implied = [f"teacher={args.teacher}"] if getattr(args, "teacher", None) else []
    implied += [f"data.unlabeled={args.unlabeled}"] if getattr(args, "unlabeled", None) else []
    config = _run_config(args, implied)
    if config.teacher and args.command == "train":
        raise UserError("`saliency train` learns from ground truth; use `saliency distill --teacher RUN` to distil")
    set_torch_threads(config.threads)
    with distributed.session() as world, RunDir(args.out).lock(world):  # under torchrun: one process of several
        metrics = SaliencyTrainer(config, args.out, resume=args.resume, progress=not args.quiet).fit()
    if world.is_main:
        print(json.dumps({"run": args.out, "best_epoch": metrics["best_epoch"], "val": metrics["final"]}, indent=2))
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from saliency.infra.rundir import RunDir
    from saliency.infra import distributed
    from saliency.pretrain import Pretrainer, PretrainConfig

    config = run_config(PretrainConfig, args, [*args.overrides, *([f"family={args.family}"] if args.family else [])])
    set_torch_threads(config.threads)
    with distributed.session() as world, RunDir(args.out).lock(world):
        metrics = Pretrainer(config, args.out, resume=args.resume, progress=not args.quiet).fit()
    print(json.dumps({"run": args.out, "best_epoch": metrics["best_epoch"], "held_out": metrics["final"],
                      "pretrained": f"{args.out}/model.safetensors"}, indent=2))
    return 0


def _model_and_size(args: argparse.Namespace):
    """The run's model and its input size: `--size`, else the size it was trained at (from its checked config)."""
    from saliency.run import load
    from saliency.infra.rundir import RunDir
    from saliency.run import SaliencyRunConfig

    model = load(args.model)
    return model, args.size or RunDir(args.model).load_config(SaliencyRunConfig).data.size


def _model_on_backend(args: argparse.Namespace):
    """`_model_and_size`, the model running on `--backend` (its exports cached in the run directory)."""
    from saliency.backends import run_on_backend

    model, size = _model_and_size(args)
    return run_on_backend(args.model, model, args.backend, size), size


def _eval(args: argparse.Namespace) -> int:
    from saliency.data import open_dataset
    from saliency.evaluate import ALL_METRICS, describe_left_out, evaluate_model
    from saliency.infra.rundir import atomic_write_json
    from saliency.models.components import motion_gap

    model, size = _model_on_backend(args)
    reader = open_dataset(args.data, kind=args.kind, split=args.split, frame_gap=motion_gap(model) or 1)
    metrics = args.metrics.split(",") if args.metrics else ALL_METRICS
    skipped: list[tuple[int, str]] = []
    # Metrics named with --metrics must be scored; by default those the ground truth cannot give are left out.
    left_out: dict[str, str] | None = None if args.metrics else {}
    scores = evaluate_model(model, reader, size, metrics=metrics, progress=not args.quiet, skipped=skipped,
                            left_out=left_out)
    for _, reason in skipped:
        print(f"saliency eval: skipped {reason}", file=sys.stderr)
    if left_out:
        print(f"saliency eval: left out {describe_left_out(left_out)}", file=sys.stderr)
    images = len(reader) - len(skipped)
    result = {"model": args.model, "data": args.data, "split": args.split, "images": images, "size": list(size),
              "metrics": scores, "left_out": left_out or {},
              "skipped": [{"image": reader.names[i], "reason": reason} for i, reason in skipped]}
    print(f"{images} images, {args.data} ({args.split}), input {size[0]}x{size[1]}")
    for name, value in scores.items():
        print(f"  {name:<10}{value:8.4f}")
    if args.json:
        atomic_write_json(args.json, result)
    return report_skipped("saliency eval", [reader.names[i] for i, _ in skipped], "image")


def _predict(args: argparse.Namespace) -> int:
    from saliency.infra.rundir import require_writable
    from saliency.predict import predict_paths

    require_writable(args.out)
    model, size = _model_on_backend(args)
    videos = []
    skipped = predict_paths(model, args.inputs, args.out, size, every=args.every, max_frames=args.max_frames,
                            progress=not args.quiet, maps=args.maps, smooth=args.smooth, videos=videos)
    for video in videos:
        smoothed = "" if video.flicker_smoothed is None else \
            f", {video.flicker_smoothed:.4f} smoothed (--smooth {args.smooth:g})"
        print(f"{video.path}: {video.overlay} ({video.frames} frames); flicker {video.flicker:.4f}{smoothed}")
    for _, reason in skipped:
        print(f"saliency predict: skipped {reason}", file=sys.stderr)
    return report_skipped("saliency predict", [path for path, _ in skipped])


def _bench(args: argparse.Namespace) -> int:
    import torch

    from saliency.bench import benchmark, format_table, matmul_peaks
    from saliency.infra.rundir import atomic_write_json

    set_torch_threads(args.threads)
    peaks = matmul_peaks()
    rows = benchmark([m for m in args.models.split(",") if m], size=args.size, batch=args.batch,
                     rounds=args.rounds, progress=not args.quiet, backends=tuple(args.backends.split(",")), peaks=peaks)
    int8 = f", {peaks['int8']:.0f} GOP/s int8" if "int8" in peaks else ""
    print(f"input {args.size[0]}x{args.size[1]}, batch {args.batch}, {torch.get_num_threads()} CPU threads; "
          f"measured matmul peak {peaks['float32']:.0f} GFLOP/s float32{int8}")
    print(format_table(rows))
    if args.json:
        atomic_write_json(args.json, rows)
    return 0


def _export(args: argparse.Namespace) -> int:
    from saliency.export import export_onnx, run_calibration_images

    model, size = _model_and_size(args)
    calibration = run_calibration_images(args.model, size) if args.int8 else None
    error = export_onnx(model, args.onnx, size, calibration=calibration)
    kind = f"int8, calibrated on {len(calibration)} training images" if calibration else "float32"
    print(f"wrote {args.onnx} ({kind}; input {size[0]}x{size[1]}, dynamic batch); "
          f"float32 max |onnxruntime - torch| = {error:.2e}")
    return 0


def smoothing(text: str) -> float:
    """`--smooth`: a weight in [0, 1), as argparse `type=`."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number in [0, 1)") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 0 and below 1")
    return value


def set_torch_threads(threads: int) -> None:
    """Use `threads` CPU threads for torch (0: torch's default, all cores); process-wide, so only here."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="saliency", description="Train, distil, evaluate, benchmark and export saliency-prediction models.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    synth = add_command(commands, "synth", help="generate the synthetic saliency world: images in the SALICON layout, "
                                                "or videos in the DHF1K layout (--layout dhf1k)")
    add_synth_arguments(synth, "SALICON layout: images/, maps/, fixations/; DHF1K: video/, annotation/",
                        "images (DHF1K: videos) over all splits", 200, (240, 320))
    synth.add_argument("--layout", choices=("salicon", "dhf1k"), default="salicon",
                       help="salicon (default): still images; dhf1k: videos whose every 4th frame is annotated, where "
                            "motion draws gaze too (to train models that see motion, model.options.motion=true)")
    synth.add_argument("--frames", type=int, default=24, help="frames per video, dhf1k only (default 24)")
    synth.add_argument("--fps", type=float, default=8, help="frame rate, dhf1k only (default 8)")
    synth.set_defaults(handler=_synth)

    for name, text in (("train", "train a teacher or a student from ground-truth maps and fixations"),
                       ("distill", "distil a teacher run into a student by feature statistics")):
        command = add_command(commands, name, help=text, description=text)
        add_config_arguments(command)
        if name == "distill":
            command.add_argument("--teacher", required=True, metavar="RUN", help="trained teacher run directory")
            command.add_argument("--unlabeled", metavar="DIR",
                                 help="folder of images or videos without maps (frames sampled with decord), seen only "
                                      "through the teacher: adapt the student to your footage (sets data.unlabeled)")
        command.add_argument("--out", required=True, metavar="RUN", help="run directory to create (or continue with --resume)")
        command.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
        command.set_defaults(handler=_train)

    pretrain = add_command(commands, "pretrain", help="pretrain a teacher family's backbone on synthetic object "
                           "recognition (the stand-in for ImageNet); `pretrained: RUN` then loads it")
    pretrain.add_argument("--family", choices=("mobilenetv2", "resnet50", "vgg16", "densenet121"),
                          help="backbone family (default: the config's, mobilenetv2)")
    add_config_arguments(pretrain)
    pretrain.add_argument("--out", required=True, metavar="RUN", help="run directory to create (or continue with --resume)")
    pretrain.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    pretrain.set_defaults(handler=_pretrain)

    evaluate = add_command(commands, "eval", help="score a model with CC, KLD, NSS, SIM, AUC-Judd, AUC-Borji, sAUC")
    evaluate.add_argument("--model", required=True, metavar="RUN", help="trained run directory")
    evaluate.add_argument("--data", required=True, metavar="DIR", help="dataset root (SALICON, MIT1003, CAT2000 or images/+maps/ folder)")
    evaluate.add_argument("--split", default="val",
                          help="split to score (default val): SALICON train/val/test; MIT1003, CAT2000 and plain "
                               "folders train/val (a fixed held-out share) or all; CAT2000 also test (images only)")
    evaluate.add_argument("--kind", default="auto", help="dataset layout (default: detected)")
    evaluate.add_argument("--size", type=parse_size, help="model input HxW (default: the run's training size)")
    evaluate.add_argument("--metrics", help="comma-separated subset, e.g. CC,KLD,NSS")
    evaluate.add_argument("--json", metavar="FILE", help="also write the scores as JSON")
    evaluate.add_argument("--backend", default="auto", help=BACKEND_HELP)
    evaluate.set_defaults(handler=_eval)

    predict = add_command(commands, "predict", help="write saliency maps and overlays for images, folders and videos")
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, video files or folders")
    predict.add_argument("--model", required=True, metavar="RUN", help="trained run directory")
    predict.add_argument("--out", required=True, metavar="DIR",
                         help="output folder: <name>.png maps and <name>_overlay.jpg for images, <name>_saliency.mp4 for videos")
    predict.add_argument("--size", type=parse_size, help="model input HxW (default: the run's training size)")
    predict.add_argument("--every", type=positive_int, default=1, help="videos: every N-th frame (default 1)")
    predict.add_argument("--max-frames", type=positive_int, help="videos: at most this many frames each")
    predict.add_argument("--maps", action="store_true",
                         help="videos: also each frame's map and overlay as images in OUT/<name>/ (beside OUT/<name>_saliency.mp4)")
    predict.add_argument("--smooth", type=smoothing, default=0.0, metavar="A",
                         help="videos: smooth the maps over time, each the moving average A·previous + (1-A)·this "
                              "(0 ≤ A < 1; default 0, none); the flicker with and without it is printed")
    predict.add_argument("--backend", default="auto", help=BACKEND_HELP)
    predict.set_defaults(handler=_predict)

    bench = add_command(commands, "bench", help="params, MB, GFLOPs and ms/image of several models side by side")
    bench.add_argument("--models", required=True, help="comma-separated registry names or run directories; ratios are to the first")
    bench.add_argument("--size", type=parse_size, default=(288, 384), help="input HxW (default 288x384)")
    bench.add_argument("--batch", type=positive_int, default=1, help="batch size (default 1)")
    bench.add_argument("--threads", type=non_negative_int, default=0, help="torch CPU threads (default: all cores)")
    bench.add_argument("--rounds", type=positive_int, default=5, help="interleaved timing rounds (default 5)")
    bench.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    bench.add_argument("--backends", default="torch",
                       help="comma-separated: torch, torch-channels-last, onnxruntime, onnxruntime-int8 (default torch); "
                            "a row per model and backend, int8 rows against the int8 matmul peak")
    bench.set_defaults(handler=_bench)

    export = add_command(commands, "export", help="export a trained model to ONNX, checked against onnxruntime")
    export.add_argument("--model", required=True, metavar="RUN", help="trained run directory")
    export.add_argument("--onnx", required=True, metavar="FILE", help="output .onnx file")
    export.add_argument("--size", type=parse_size, help="input HxW (default: the run's training size)")
    export.add_argument("--int8", action="store_true", help="quantize to int8 (static, QDQ, per-channel weights), "
                                                           "calibrated on the run's own training images")
    export.set_defaults(handler=_export)

    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
