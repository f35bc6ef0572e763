"""The demo report's saliency section: teacher, distilled and undistilled student scored beside the world's
baselines, the distillation gain with its paired interval, and the three models' maps on a few held-out frames."""
from __future__ import annotations

from typing import Sequence

from torch import nn

from saliency import SaliencySample, predict_maps
from saliency.infra.figures import image_grid_png
from saliency.infra.stats import spread
from vidcap.evaluation.reports.document import Block, Figure, Heading, Paragraph, Table

MODEL_COLUMNS = {"teacher": "teacher", "student": "student", "student_no_kd": "no-KD student"}


def maps_figure(models: dict[str, nn.Module], reader: Sequence[SaliencySample], names: list[str],
                size: tuple[int, int], count: int = 4) -> bytes:
    """PNG grid: `count` held-out frames spread over the split, each as image | ground truth | one map per model."""
    rows = []
    for index in spread(len(reader), count):
        sample = reader[index]
        maps = [predict_maps(model, [sample.image], size, [sample.previous])[0] for model in models.values()]
        rows.append((names[index], [sample.image, sample.density, *maps]))
    return image_grid_png(["frame", "ground truth", *[MODEL_COLUMNS.get(k, k) for k in models]], rows)


def saliency_blocks(saliency: dict, figure: bytes, held_out: int) -> list[Block]:
    """Scores table, baselines, the gain of distillation and the maps figure, from `summary.json`'s `saliency`."""
    models = [key for key in MODEL_COLUMNS if key in saliency]
    metrics = list(saliency[models[0]])
    gain, baselines = saliency["kd_gain"], saliency["baselines"]
    return [
        Heading("Saliency models on the held-out frames"),
        Table(["model", *metrics], [[MODEL_COLUMNS[key], *[f"{saliency[key][m]:.4f}" for m in metrics]]
                                    for key in models]),
        Paragraph(f"Distillation gain (student − no-KD student, same labels, steps and initial weights): CC "
                  f"{gain['CC']:+.4f}, 95% CI [{gain['ci95'][0]:+.4f}, {gain['ci95'][1]:+.4f}] (paired bootstrap over "
                  f"{held_out} held-out frames)."),
        Paragraph("Baselines (CC): " + ", ".join(f"{name} {value:.3f}" for name, value in baselines.items())
                  + " — a colour rule, the centre bias alone, and the world's own density (the ceiling)."),
        Figure("saliency_maps.png", figure, "held-out frames: ground truth, then each model's map"),
    ]
