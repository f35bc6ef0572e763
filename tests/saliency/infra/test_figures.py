"""Training-curve and bar-chart PNGs decode and have the expected layout."""
import io

from PIL import Image

from saliency.infra.figures import metric_bars_png, training_curves_png


def test_training_curves_are_a_wide_png():
    image = Image.open(io.BytesIO(training_curves_png([1, 2, 3], [3.0, 2.0, 1.5], "CIDEr", [0.1, 0.4, 0.3])))
    assert image.format == "PNG" and image.width > 1.8 * image.height


def test_bar_chart_grows_with_the_number_of_runs():
    metrics = {name: [10.0, 20.0, 30.0] for name in ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr")}
    three = Image.open(io.BytesIO(metric_bars_png(["none", "teacher", "student"], metrics)))
    one = Image.open(io.BytesIO(metric_bars_png(["none"], {k: v[:1] for k, v in metrics.items()})))
    assert three.format == "PNG" and three.width >= one.width
