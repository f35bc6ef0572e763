"""`vidcap demo`: the whole job on the built-in synthetic world, from nothing to a comparison report.

world → pretraining (the teacher's backbone learns the world's objects: the stand-in for ImageNet) → teacher
(all labels) → student distilled with few labels and the unlabelled frames, and the same student without the
teacher (same labels, steps and initial weights) → captioners with saliency none / teacher / student (same
data, budget and seed) → evaluation of all three on the held-out split → `report.html` (captions, and the
saliency models' scores and maps) → one held-out video captioned. Every stage notices finished work and skips it, and continues an
interrupted training run from its last checkpoint, so the demo can be stopped and started again.
"""
from __future__ import annotations

import copy
import logging
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from saliency.infra.config import require
from saliency.infra.errors import UserError
from saliency.world import baseline_scores
from saliency.infra.stats import paired_bootstrap
from saliency.world import META_NAME, WORLDS, read_meta
from saliency.infra.rundir import atomic_write_json
from saliency import (ALL_METRICS, TEACHER_FAMILIES, PretrainConfig, Pretrainer, SaliencyRunConfig, SaliencyTrainer,
                      evaluate_model, open_dataset)
from saliency import load as load_saliency_model
from saliency.infra.training import continue_training
from vidcap.evaluation.reports.comparison import compare_runs, load_evaluated_run, load_per_video, paired_differences
from vidcap.data.datasets import SPLITS as CAPTION_SPLITS, open_caption_dataset
from vidcap.evaluation.reports.split_report import METRIC_LABELS
from vidcap.evaluation.reports.saliency_maps import maps_figure, saliency_blocks
from vidcap.evaluation.splits import evaluate_split
from saliency.world import write_msrvtt
from vidcap.run import VidcapRunConfig, load_run
from vidcap.model.captioner import with_saliency
from vidcap.model.trust import TRUST_FILE
from vidcap.training.train import CaptionTrainer
from vidcap.training.trust import fit_trust

log = logging.getLogger(__name__)

SALIENCY_SOURCES = ("none", "teacher", "student")
STAGES = ("world", "pretrain", "teacher", "student", "student-no-kd", "captioners", "evaluate", "report")
SALIENCY_RUNS = {"teacher": "teacher", "student": "student", "student_no_kd": "student-no-kd"}  # summary key → run
BASELINES = ("heuristic", "centre", "oracle")
MIN_VIDEOS = 10  # the smallest world with a video in every split
PRETRAIN_RUN = "pretrain"  # captioning.captioner.encoder.pretrained naming the demo's pretraining run


@dataclass
class WorldConfig:
    """The synthetic videos the demo generates: how many, their size, length and seed, and which world."""
    videos: int = 160
    size: tuple[int, int] = (96, 128)
    frames: int = 24
    fps: int = 8
    seed: int = 0
    version: str = "v2"  # "v1": one saturated actor (pop-out); "v2": gaze drawn by object knowledge

    def __post_init__(self) -> None:
        require(self.version in WORLDS, "version", f"{self.version!r} is not one of {', '.join(WORLDS)}")
        require(self.videos >= MIN_VIDEOS, "videos", f"at least {MIN_VIDEOS}, so that every split (70/10/20%) gets a "
                                                     f"video; got {self.videos}")
        require(self.frames >= 1 and self.fps > 0 and self.seed >= 0, "frames",
                f"need frames >= 1, fps > 0 and seed >= 0; got {self.frames}, {self.fps}, {self.seed}")

    def recorded(self, meta: dict) -> dict[str, tuple]:
        """{key: (recorded, configured)} of every setting in which the world `meta` describes differs from this one."""
        recorded = {"videos": len(meta.get("videos", {})), "size": tuple(meta.get("size", ())),
                    "frames": meta.get("n_frames"), "fps": meta.get("fps"), "seed": meta.get("seed"),
                    "version": meta.get("world")}
        return {key: (value, getattr(self, key)) for key, value in recorded.items()
                if value != (tuple(self.size) if key == "size" else getattr(self, key))}


@dataclass
class DemoConfig:
    """Every choice the demo makes; `configs/demo.yaml` holds the defaults a newcomer runs."""
    out: str = "runs/demo"
    world: WorldConfig = field(default_factory=WorldConfig)
    # the teacher's backbone (family, world and size set by the demo); its run is the teacher's `pretrained`
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    teacher: SaliencyRunConfig = field(default_factory=SaliencyRunConfig)  # every training label
    student: SaliencyRunConfig = field(default_factory=SaliencyRunConfig)  # distilled from the teacher
    labels: int = 200  # labelled training frames of both students; the distilled one also sees the rest unlabelled
    # shared by all three; the saliency source is set per run (`none`: no weighting; teacher and student: the
    # captioner's encoder.weighting)
    captioning: VidcapRunConfig = field(default_factory=VidcapRunConfig)
    eval_split: str = "test"

    def __post_init__(self) -> None:
        require(self.labels >= 1, "labels", f"must be at least 1, got {self.labels}")
        require(self.eval_split in CAPTION_SPLITS, "eval_split", f"{self.eval_split!r} is not one of {', '.join(CAPTION_SPLITS)}")


class Demo:
    """Runs the stages in order; `skip` names stages whose outputs must already exist."""

    def __init__(self, config: DemoConfig, skip: tuple[str, ...] = (), progress: bool = True):
        unknown = [stage for stage in skip if stage not in STAGES]
        if unknown:
            raise UserError(f"--skip {unknown[0]!r}: not a demo stage (stages: {', '.join(STAGES)})")
        self.config, self.skip, self.progress = config, skip, progress
        self.out = Path(config.out)
        self.data = self.out / "data"
        self.seconds: dict[str, float] = {}
        self._saliency: dict | None = None
        self._models: dict | None = None

    def run_dir(self, name: str) -> Path:
        return self.out / name

    def saliency_config(self, base: SaliencyRunConfig) -> SaliencyRunConfig:
        config = copy.deepcopy(base)
        config.data.root = str(self.data / "saliency")
        config.data.size = tuple(self.config.world.size)
        return config

    def captioner_config(self, source: str) -> VidcapRunConfig:
        config = copy.deepcopy(self.config.captioning)
        config.data.root = str(self.data)
        config.data.cache_dir = str(self.out / "feature-cache")
        config.captioner = with_saliency(config.captioner, source, str(self.run_dir(source)))
        if config.captioner.encoder.pretrained == PRETRAIN_RUN:  # the grounded encoder: the demo's own pretraining
            config.captioner.encoder.pretrained = str(self.run_dir("pretrain"))
        return config

    def stage(self, name: str, work: Callable[[], None]) -> None:
        index = STAGES.index(name) + 1
        if name in self.skip:
            log.info("[%d/%d] %s: skipped (--skip)", index, len(STAGES), name)
            return
        log.info("[%d/%d] %s", index, len(STAGES), name)
        started = time.perf_counter()
        work()
        self.seconds[name] = time.perf_counter() - started

    def world(self) -> None:
        """The world, or the one already there if it is the configured one; another world is refused, as are trained
        stages whose world is gone (they would be reused on data they were not trained on)."""
        world = self.config.world
        if (self.data / META_NAME).is_file():
            changed = world.recorded(read_meta(self.data / META_NAME))
            if changed:
                key, (old, new) = next(iter(changed.items()))
                raise UserError(f"{self.data} holds a world generated with world.{key}={old}, not {new}: give the "
                                f"demo another `out` (--set out=...), or delete {self.out} to start over")
            log.info("%s: already generated, skipped", self.data)
            return
        trained = [name for name in ("pretrain", *SALIENCY_RUNS.values(), *(f"captioner-{s}" for s in SALIENCY_SOURCES))
                   if self.run_dir(name).is_dir()]
        if trained:
            raise UserError(f"{self.out}/{trained[0]} was trained on a world that {self.data} no longer holds: give the "
                            f"demo another `out` (--set out=...), or delete {self.out} to start over")
        write_msrvtt(self.data, n=world.videos, seed=world.seed, size=tuple(world.size), n_frames=world.frames,
                     fps=world.fps, progress=self.progress, world=world.version)

    def teacher_family(self) -> str:
        """The backbone family of the configured teacher (`teacher-<family>`), which pretraining must match."""
        family = self.config.teacher.model.name.removeprefix("teacher-")
        if family not in TEACHER_FAMILIES:
            raise UserError(f"teacher.model.name {self.config.teacher.model.name!r}: the demo pretrains a teacher "
                            f"backbone, so it needs one of {', '.join('teacher-' + f for f in TEACHER_FAMILIES)}")
        return family

    def pretrain(self) -> None:
        config = copy.deepcopy(self.config.pretrain)
        config.family, config.world = self.teacher_family(), self.config.world.version
        config.size = tuple(32 * math.ceil(side / 32) for side in self.config.world.size)  # the backbones' stride
        continue_training(Pretrainer, config, self.run_dir("pretrain"), self.progress)

    def teacher(self) -> None:
        config = self.saliency_config(self.config.teacher)
        config.model.options = {**config.model.options, "pretrained": str(self.run_dir("pretrain"))}
        continue_training(SaliencyTrainer, config, self.run_dir("teacher"), self.progress)

    def student(self, distilled: bool) -> None:
        """The student on `labels` labelled frames: distilled with every training frame as the unlabelled pool, or
        without the teacher for as many optimiser steps (more epochs over the labels alone)."""
        config = self.saliency_config(self.config.student)
        config.data.limit = self.config.labels
        frames = len(open_dataset(self.data / "saliency", split="train"))
        labels = min(self.config.labels, frames)
        if distilled:
            config.teacher, config.data.unlabeled = str(self.run_dir("teacher")), str(self.data / "saliency/images/train")
        else:
            config.teacher = None
            config.optim.epochs = max(1, round(config.optim.epochs * (labels + frames) / labels))
        name = "student" if distilled else "student-no-kd"
        continue_training(SaliencyTrainer, config, self.run_dir(name), self.progress)

    def captioners(self) -> None:
        """The three captioners, each with its trust record (`vidcap.training.trust`) once trained."""
        for source in SALIENCY_SOURCES:
            config = self.captioner_config(source)
            run = self.run_dir(f"captioner-{source}")
            continue_training(CaptionTrainer, config, run, self.progress)
            if not (run / TRUST_FILE).is_file():
                fit_trust(run, progress=self.progress)

    def evaluate(self) -> None:
        for source in SALIENCY_SOURCES:
            run = self.run_dir(f"captioner-{source}")
            metrics = evaluate_split(run, self.config.eval_split, per_video=True, progress=self.progress)
            scores = "  ".join(f"{METRIC_LABELS[k]} {100 * metrics['metrics'][k]:.1f}" for k in ("Bleu_4", "METEOR", "CIDEr"))
            log.info("captioner-%s: %s", source, scores)

    def report(self) -> None:
        reader = open_dataset(self.data / "saliency", split="test")
        figure = maps_figure(self.saliency_models(), reader, reader.names, tuple(self.config.world.size))
        compare_runs([self.run_dir(f"captioner-{s}") for s in SALIENCY_SOURCES], self.config.eval_split, self.out,
                     names=list(SALIENCY_SOURCES), extra=saliency_blocks(self.saliency_scores(), figure, len(reader)))
        log.info("%s", self.out / "report.html")

    def saliency_models(self) -> dict:
        """Teacher, student and undistilled student, loaded once for the scores and the report's figure."""
        if self._models is None:
            self._models = {key: load_saliency_model(self.run_dir(name)) for key, name in SALIENCY_RUNS.items()}
        return self._models

    def saliency_scores(self) -> dict:
        """All seven saliency metrics of teacher, student and undistilled student on the held-out frames, the
        distillation gain in CC with its paired bootstrap interval, and the world's baselines (CC)."""
        if self._saliency is None:
            reader = open_dataset(self.data / "saliency", split="test")
            scores, per_image = {}, {}
            for key, model in self.saliency_models().items():
                per_image[key] = {}
                scores[key] = evaluate_model(model, reader, tuple(self.config.world.size), metrics=ALL_METRICS,
                                             progress=False, per_image=per_image[key])
            gain = paired_bootstrap(per_image["student"]["CC"], per_image["student_no_kd"]["CC"])
            scores["kd_gain"] = {"CC": gain["diff"], "ci95": gain["ci95"]}
            baselines = baseline_scores(self.data / "saliency", "test")
            scores["baselines"] = {name: statistics.mean(baselines[name]) for name in BASELINES}
            self._saliency = scores
        return self._saliency

    def caption_one(self) -> tuple[str, str]:
        """(path, caption) of the first held-out video, by the student-weighted captioner."""
        item = open_caption_dataset(self.data, split=self.config.eval_split).items[0]
        model, _ = load_run(self.run_dir("captioner-student"))
        return str(item.path), model.caption_files([item.path])[0]

    def run(self) -> dict:
        started = time.perf_counter()
        self.stage("world", self.world)
        self.stage("pretrain", self.pretrain)
        self.stage("teacher", self.teacher)
        self.stage("student", lambda: self.student(distilled=True))
        self.stage("student-no-kd", lambda: self.student(distilled=False))
        self.stage("captioners", self.captioners)
        self.stage("evaluate", self.evaluate)
        self.stage("report", self.report)
        summary = self.summary()
        video, caption = self.caption_one()
        summary["example"] = {"video": video, "caption": caption}
        summary["seconds_this_run"] = {**self.seconds, "total": time.perf_counter() - started}
        atomic_write_json(self.out / "summary.json", summary)
        return summary

    def caption_scores(self) -> dict[str, dict]:
        """BLEU-4, METEOR, ROUGE-L, CIDEr (fractions) and seconds per video of each evaluated captioner, its grounded
        share on a synthetic world, and for teacher and student `vs_none`: CIDEr and grounded differences to the
        `none` captioner with paired bootstrap intervals over the held-out videos."""
        captioners, per_video = {}, {}
        for source in SALIENCY_SOURCES:
            run = load_evaluated_run(self.run_dir(f"captioner-{source}"), self.config.eval_split)
            captioners[source] = {key: run.metrics["metrics"][key] for key in ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr")}
            captioners[source]["sec_per_video"] = run.sec_per_video
            if "grounding" in run.metrics:
                captioners[source]["grounded"] = run.metrics["grounding"]["grounded"]
            per_video[source] = load_per_video(self.run_dir(f"captioner-{source}"), self.config.eval_split)
        for source in SALIENCY_SOURCES[1:]:
            captioners[source]["vs_none"] = paired_differences(per_video[source], per_video["none"])
        return captioners

    def summary(self) -> dict:
        """The numbers the demo ends with: `summary.json`'s `captioners` and `saliency` (fractions, seconds)."""
        return {"captioners": self.caption_scores(), "saliency": self.saliency_scores()}


def format_summary(summary: dict) -> str:
    """The closing tables: caption metrics ×100 and time per video; saliency metrics of the three models."""
    lines = [f"{'captioner':<12}{'BLEU-4':>8}{'METEOR':>8}{'ROUGE-L':>9}{'CIDEr':>8}{'grounded':>10}{'s/video':>9}"
             f"   vs none: CIDEr, grounded (x100, 95% CI)"]
    for source, row in summary["captioners"].items():
        grounded = f"{100 * row['grounded']:10.1f}" if "grounded" in row else f"{'n/a':>10}"
        versus = "   " + ", ".join(f"{100 * d['diff']:+.1f} [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]"
                                  for d in row["vs_none"].values()) if "vs_none" in row else ""
        lines.append(f"{source:<12}{100 * row['Bleu_4']:8.1f}{100 * row['METEOR']:8.1f}{100 * row['ROUGE_L']:9.1f}"
                     f"{100 * row['CIDEr']:8.1f}{grounded}{row['sec_per_video']:9.3f}{versus}")
    saliency = summary["saliency"]
    names = list(saliency["teacher"])
    lines += ["", f"{'saliency':<14}" + "".join(f"{name:>10}" for name in names)]
    for model in SALIENCY_RUNS:
        lines.append(f"{model:<14}" + "".join(f"{saliency[model][name]:10.4f}" for name in names))
    gain = saliency["kd_gain"]
    lines += ["", f"distillation gain (student - student_no_kd): CC {gain['CC']:+.4f} "
                  f"[95% CI {gain['ci95'][0]:+.4f}, {gain['ci95'][1]:+.4f}]",
              "baselines (CC): " + "  ".join(f"{name} {value:.3f}" for name, value in saliency["baselines"].items())]
    if "example" in summary:
        lines += ["", f"{summary['example']['video']}: {summary['example']['caption']}"]
    return "\n".join(lines)
