"""Tiny `vidcap train → caption → extract` on synthetic videos: the captioner learns, the CLI behaves."""
import json
import re

import subprocess

import pytest
import torch

import vidcap
from saliency.cli import main as saliency_main
from saliency.infra.errors import UserError
from vidcap.cli import main
from vidcap.data.datasets import open_caption_dataset
from vidcap.run import load_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("vidcap")
    assert main(["synth", str(root / "data"), "--n", "24", "--size", "64x96", "--frames", "8", "--quiet"]) == 0
    common = ["--config", "configs/vidcap/synthetic.yaml", "--set", f"data.root={root / 'data'}",
              "--set", f"data.cache_dir={root / 'cache'}", "--set", "captioner.sampler.size=[64, 96]",
              "--set", "optim.epochs=10", "--set", "optim.captions_per_video=20", "--set", "optim.warmup_steps=20",
              "--set", "optim.lr=2e-3", "--quiet"]
    assert main(["train", *common, "--saliency", "none", "--out", str(root / "none")]) == 0
    assert saliency_main(["train", "--config", "configs/saliency/student.yaml", "--set", f"data.root={root / 'data' / 'saliency'}",
                          "--set", "data.size=[64, 96]", "--set", "optim.epochs=1", "--quiet", "--out", str(root / "student")]) == 0
    assert main(["train", *common, "--set", "optim.epochs=1", "--saliency", "student", "--saliency-model", str(root / "student"),
                 "--out", str(root / "with-student")]) == 0
    return root


STOPWORDS = {"a", "an", "the", "is", "in", "to", "of", "and", "on", "it", "its", "there"}


def words(text: str) -> set[str]:
    """Content words: what a caption says about the clip, not its grammar."""
    return set(re.findall(r"[a-z]+", text.lower())) - STOPWORDS


def test_training_loss_falls_well_below_its_start(trained):
    epochs = json.loads((trained / "none" / "metrics.json").read_text())["epochs"]
    assert epochs[-1]["train"]["loss"] < 0.75 * epochs[0]["train"]["loss"]
    assert (trained / "none" / "log.csv").read_text().count("\n") == len(epochs) + 1


def test_captions_of_training_videos_share_words_with_their_references(trained, capsys):
    train = open_caption_dataset(trained / "data", split="train")
    paths = [str(item.path) for item in train.items[:4]]
    assert main(["caption", *paths, "--model", str(trained / "none"), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["video"] for r in results] == paths
    for result, item in zip(results, train.items):
        shared = words(result["caption"]) & set().union(*(words(c) for c in item.captions))
        assert len(shared) >= 2, (result["caption"], item.captions[:3])


def test_resume_to_more_epochs_is_refused_the_run_says_what_was_trained(trained, capsys):
    run = trained / "with-student"
    assert main(["train", "--out", str(run), "--resume", "--set", "optim.epochs=2", "--quiet"]) == 2
    assert "optim.epochs: 1 → 2; train the changed settings into another --out" in capsys.readouterr().err
    assert [e["epoch"] for e in json.loads((run / "metrics.json").read_text())["epochs"]] == [1]


def test_run_directory_reloads_with_its_tokenizer_and_saliency_model(trained):
    model, config = load_run(trained / "with-student")
    assert config.captioner.saliency.source == "student" and model.front.saliency_model is not None
    assert (trained / "with-student" / "tokenizer.json").is_file()
    public = vidcap.load(trained / "with-student")  # the public loader: the same weights, in eval mode
    assert not public.training and public.tokenizer.vocab_size == model.tokenizer.vocab_size
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in public.state_dict().items())


def test_vidcap_load_refuses_a_saliency_run(trained):
    with pytest.raises(UserError, match="not a captioner run directory"):
        vidcap.load(trained / "student")


def test_caption_skips_bad_files_with_one_line_each(trained, tmp_path, capsys):
    bad = tmp_path / "noise.mp4"
    bad.write_bytes(b"\x00" * 100)
    good = str(next((trained / "data" / "TestVideo").glob("*.mp4")))
    assert main(["caption", good, str(bad), "--model", str(trained / "none")]) == 1
    captured = capsys.readouterr()
    assert captured.out.strip() and "noise.mp4" in captured.err and "Traceback" not in captured.err


def test_overlay_writes_a_video_with_the_saliency_map(trained, tmp_path, capsys):
    import decord

    video = next((trained / "data" / "TestVideo").glob("*.mp4"))
    out = tmp_path / "overlay.mp4"
    assert main(["caption", str(video), "--model", str(trained / "with-student"), "--overlay", str(out)]) == 0
    reader = decord.VideoReader(str(out))
    assert len(reader) == len(decord.VideoReader(str(video)))


def test_overlays_of_several_videos_are_named_after_each_video(trained, tmp_path, capsys):
    first, second = sorted((trained / "data" / "TestVideo").glob("*.mp4"))[:2]
    assert main(["caption", str(first), str(second), "--model", str(trained / "with-student"),
                 "--overlay", str(tmp_path / "overlay.mp4"), "--quiet"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"overlay-{v.stem}.mp4" for v in (first, second))


def test_overlay_without_a_saliency_model_is_a_mistake_before_any_caption(trained, tmp_path, cli):
    video = next((trained / "data" / "TestVideo").glob("*.mp4"))
    run = cli("vidcap")
    code, out, err = run("caption", video, video, "--model", trained / "none", "--overlay", tmp_path / "o.mp4")
    assert code == 2 and not out and not (tmp_path / "o.mp4").exists()
    run.assert_one_line_error(err, "--overlay needs a captioner with a saliency model", "uses saliency none")


def test_overlay_of_a_thumbnail_video_decord_misreads_is_written_through_ffmpeg(trained, tmp_path, capsys):
    """decord returns wrongly sized buffers for a 48×32 H.264 clip; the overlay reads it as captioning does."""
    from saliency.infra.media import ffmpeg_path, open_frames

    tiny, out = tmp_path / "tiny.mp4", tmp_path / "tiny-overlay.mp4"
    subprocess.run([ffmpeg_path(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=48x32:rate=25", "-t", "1",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(tiny)], check=True)
    assert main(["caption", str(tiny), "--model", str(trained / "with-student"), "--overlay", str(out)]) == 0
    reader = open_frames(out)  # decord misreads this size in the written file too
    assert len(reader) == 25 and reader.get_batch([0]).shape == (1, 32, 48, 3)


def test_extract_fills_the_cache_that_training_reads(trained, capsys):
    described = {path: path.read_text() for path in (trained / "cache").glob("*/extractor.json")}
    assert main(["extract", "--config", "configs/vidcap/synthetic.yaml", "--set", f"data.root={trained / 'data'}",
                 "--set", f"data.cache_dir={trained / 'cache'}", "--set", "captioner.sampler.size=[64, 96]",
                 "--saliency", "none", "--quiet"]) == 0
    out = capsys.readouterr().out
    test_videos = len(open_caption_dataset(trained / "data", split="test"))
    # training cached train + val with the same extractor, so only the test split is new
    assert f"24 videos ({test_videos} newly extracted)" in out
    folder = next(path for path in described if path.parent.name in out)  # what training wrote, extract writes too
    assert folder.read_text() == described[folder]
    assert {"fingerprint", "sampler", "encoder", "saliency", "dtype"} <= json.loads(described[folder]).keys()


def test_eval_captions_the_whole_split_and_writes_the_results(trained, capsys):
    assert main(["eval", "--model", str(trained / "none"), "--split", "test", "--per-video", "--quiet"]) == 0
    out = trained / "none" / "eval" / "test"
    metrics = json.loads((out / "metrics.json").read_text())
    test = open_caption_dataset(trained / "data", split="test")
    assert metrics["videos"] == len(test) and set(metrics["metrics"]) == {
        "Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"}
    assert {"decode", "encoder", "decoder"} <= set(metrics["sec_per_video"])
    predictions = json.loads((out / "predictions.json").read_text())
    assert sorted(p["video_id"] for p in predictions) == sorted(i.video_id for i in test.items)
    per_video = json.loads((out / "per_video.json").read_text())
    assert [row["CIDEr"] for row in per_video] == sorted(row["CIDEr"] for row in per_video)
    assert "CIDEr" in capsys.readouterr().out


def test_eval_report_shows_the_scores_timings_and_sample_videos(trained, parse_report, decode_image):
    out = trained / "none" / "eval" / "test"
    metrics = json.loads((out / "metrics.json").read_text())
    captions = {p["video_id"]: p["caption"] for p in json.loads((out / "predictions.json").read_text())}
    report = parse_report((out / "report.html").read_text())
    scores = [f"{100 * metrics['metrics'][k]:.2f}" for k in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")]
    assert report.tables[0] == [["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"], scores]
    stages = {row[0]: float(row[1]) for row in report.tables[1][1:]}
    assert stages["total"] == pytest.approx(sum(metrics["sec_per_video"].values()), abs=1e-3)
    samples = [h for h in report.headings if h in captions]
    assert len(samples) == 4 and all(f"Generated: {captions[v]}" in (out / "report.html").read_text() for v in samples)
    strips = [decode_image(src) for src in report.images[:4]]
    assert all(s.format == "JPEG" and s.size == (4 * 144 + 3 * 3, 108) for s in strips)
    assert decode_image(report.images[-1]).format == "PNG"  # the training curves
    assert all(link.startswith("data:") for link in report.links)
    markdown = (out / "report.md").read_text()
    assert "| " + " | ".join(scores) + " |" in markdown and (out / "thumbs" / f"{samples[0]}.jpg").is_file()


def test_compare_puts_runs_side_by_side_with_differences(trained, parse_report, capsys):
    assert main(["eval", "--model", str(trained / "with-student"), "--split", "test", "--quiet"]) == 0
    out = trained / "comparison"
    assert main(["compare", str(trained / "none"), str(trained / "with-student"), "--out", str(out), "--quiet"]) == 0
    runs = {r["name"]: r for r in json.loads((out / "compare.json").read_text())["runs"]}
    report = parse_report((out / "report.html").read_text())
    table, deltas = report.tables[0], report.tables[1]
    assert [row[:2] for row in table[1:]] == [["none", "none"], ["with-student", "student"]]
    cider = {row[0]: float(row[8]) for row in table[1:]}
    assert cider["with-student"] == pytest.approx(100 * runs["with-student"]["metrics"]["CIDEr"], abs=0.01)
    assert float(deltas[1][7]) == pytest.approx(cider["with-student"] - cider["none"], abs=0.011)
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| with-student | student |" in capsys.readouterr().out


def test_compare_says_what_to_run_when_a_run_is_not_evaluated(trained, tmp_path, capsys):
    assert main(["compare", str(trained / "none"), str(trained / "with-student"), "--split", "val", "--quiet"]) == 2
    assert "vidcap eval --model" in capsys.readouterr().err


def test_training_writes_its_curves(trained):
    assert (trained / "none" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (trained / "student" / "curves.png").is_file()


def test_eval_scores_a_predictions_file_from_any_system(trained, tmp_path, capsys):
    test = open_caption_dataset(trained / "data", split="test")
    perfect = [{"video_id": item.video_id, "caption": item.captions[0]} for item in test.items]
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(perfect))
    own = trained / "none" / "eval" / "test"
    before = {path.name: path.read_bytes() for path in own.iterdir() if path.is_file()}
    assert main(["eval", "--model", str(trained / "none"), "--split", "test", "--predictions", str(path), "--quiet"]) == 0
    scored = trained / "none" / "eval" / "test-predictions"  # its own folder: the run's evaluation stays as it was
    metrics = json.loads((scored / "metrics.json").read_text())
    assert metrics["source"] == str(path) and "predictions.json, split test" in (scored / "report.md").read_text()
    assert metrics["metrics"]["Bleu_4"] > 0.9 and metrics["metrics"]["CIDEr"] > 2  # each is one of its own references
    assert {path.name: path.read_bytes() for path in own.iterdir() if path.is_file()} == before
    path.write_text("[{\"video_id\": 3}]")
    assert main(["eval", "--model", str(trained / "none"), "--predictions", str(path), "--quiet"]) == 2
    assert "entry 0" in capsys.readouterr().err
