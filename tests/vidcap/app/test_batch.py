"""`vidcap caption DIR --out results.jsonl`: one line per video as each finishes, a rerun skips what is there, a
SIGKILL loses at most the video in flight, torn lines and bad files are handled, and torchrun's parts merge."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from tests.support.faults import run_child
from vidcap.app.batch import ResultsWriter, expand_videos, parse_results, part_path

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folder(tiny_captioner, tmp_path_factory):
    """The six synthetic clips in two subfolders, and a file of random bytes named .mp4 among them."""
    root = tmp_path_factory.mktemp("batch") / "clips"
    for split in ("TrainValVideo", "TestVideo"):
        shutil.copytree(tiny_captioner / "vidcap-data" / split, root / split)
    (root / "TestVideo" / "broken.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes())
    return root


@pytest.fixture(scope="module")
def model_run(tiny_captioner):
    return tiny_captioner / "captioner"


@pytest.fixture
def run(cli):
    return cli("vidcap", preceded_by=("vidcap caption: ",))


@pytest.fixture(scope="module")
def reference(folder, model_run, tmp_path_factory):
    """The results file of an uninterrupted run over the folder."""
    from vidcap.cli import main

    out = tmp_path_factory.mktemp("reference") / "results.jsonl"
    assert main(["caption", str(folder), "--model", str(model_run), "--out", str(out), "--quiet"]) == 1
    return out


def entries(path) -> list[dict]:
    """The file's entries, each a whole line, without the seconds a video took."""
    data = path.read_bytes()
    assert data.endswith(b"\n") or not data, "a torn last line"
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in data.splitlines()]


def videos_in(folder) -> list[str]:
    return sorted(str(path) for path in folder.rglob("*.mp4"))


def test_one_line_per_video_with_its_caption_and_seconds_and_the_bad_file_with_its_error(reference, folder, model_run):
    from vidcap.run import load_run

    lines = [json.loads(line) for line in reference.read_text().splitlines()]
    assert [line["path"] for line in lines] == videos_in(folder)
    broken = next(line for line in lines if line["path"].endswith("broken.mp4"))
    assert set(broken) == {"path", "error"} and broken["error"].startswith(f"{broken['path']}: not a readable video (")
    good = [line for line in lines if "error" not in line]
    assert all(set(line) == {"path", "caption", "confidence", "in_domain", "seconds"} and line["seconds"] >= 0
               for line in good)
    model = load_run(model_run)[0]
    assert [line["caption"] for line in good] == model.caption_files([line["path"] for line in good])


def test_each_video_of_a_batch_has_its_own_seconds(reference):
    """Videos go through the models four at a time: each line has its own decoding and its share of the batch."""
    good = [json.loads(line) for line in reference.read_text().splitlines() if '"error"' not in line]
    assert len(good) >= 4 and all(line["seconds"] > 0 for line in good)


def test_a_rerun_skips_what_the_file_holds_and_the_recorded_failure_unless_asked(reference, folder, model_run, run,
                                                                                 tmp_path):
    out = tmp_path / "results.jsonl"
    shutil.copy(reference, out)
    code, stdout, err = run("caption", folder, "--model", model_run, "--out", out, "--quiet")
    assert code == 1 and stdout == f"{out}: 0 video(s) captioned, 6 already there, 0 failed\n"
    assert "1 video(s) failed in an earlier run, not retried (--retry-failed retries them)" in err
    assert out.read_bytes() == reference.read_bytes()
    code, stdout, err = run("caption", folder, "--model", model_run, "--out", out, "--quiet", "--retry-failed")
    assert code == 1 and stdout == f"{out}: 0 video(s) captioned, 6 already there, 1 failed\n"
    assert len(entries(out)) == 8 and entries(out)[-1] == entries(reference)[0]  # broken.mp4 sorts first


def test_a_retried_failure_that_now_reads_is_captioned(folder, model_run, run, tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not yet a video")
    out = tmp_path / "results.jsonl"
    assert run("caption", clip, "--model", model_run, "--out", out, "--quiet")[0] == 1
    shutil.copy(videos_in(folder)[-1], clip)
    assert run("caption", clip, "--model", model_run, "--out", out, "--quiet", "--retry-failed")[0] == 0
    first, second = entries(out)
    assert "error" in first and set(second) == {"path", "caption", "confidence", "in_domain"}


def test_segments_are_recorded_with_their_times(folder, model_run, run, tmp_path):
    out = tmp_path / "results.jsonl"
    clip = videos_in(folder)[-1]
    assert run("caption", clip, "--model", model_run, "--out", out, "--segments", "0.25", "--quiet")[0] == 0
    (entry,) = entries(out)
    assert [(s["start"], s["end"]) for s in entry["segments"]] == [(0, 0.25), (0.25, 0.5)] and "caption" not in entry


@pytest.mark.parametrize("kind, at", [("video", 5), ("fsync", 3)])
def test_a_sigkill_loses_only_what_is_in_flight_and_the_rerun_ends_as_an_uninterrupted_run(
        reference, folder, model_run, run, tmp_path, kind, at):
    """Killed as the 5th video is opened (the next videos are decoded and captioned a few ahead, so some may be in
    flight), or just before the 3rd line is made durable: the file holds whole lines, the uninterrupted run's
    first ones; the same command run again finishes the rest, and the file is the uninterrupted run's."""
    out = tmp_path / "results.jsonl"
    args = ["caption", folder, "--model", model_run, "--out", out, "--quiet"]
    killed = run_child("vidcap.cli", args, kill_at=at, kind=kind)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    written = entries(out)
    assert written == entries(reference)[:len(written)] and len(written) < len(entries(reference))
    if kind == "fsync":
        assert len(written) == 3  # the line is written before it is fsynced: a kill there keeps it
    code, stdout, _ = run(*args)
    done_before = sum("error" not in entry for entry in written)
    assert code == 1 and stdout.startswith(f"{out}: {6 - done_before} video(s) captioned, {done_before} already there")
    assert entries(out) == entries(reference)


def test_a_torn_last_line_is_dropped_with_a_warning_and_its_video_captioned_again(reference, folder, model_run, run,
                                                                               tmp_path):
    out = tmp_path / "results.jsonl"
    lines = reference.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:3]) + lines[3][:25])
    code, _, err = run("caption", folder, "--model", model_run, "--out", out, "--quiet")
    assert code == 1
    assert f"{out}: the last line is cut short (a writer stopped mid-line): ignored and removed" in err
    assert entries(out) == entries(reference)


def test_a_line_that_is_not_a_result_is_ignored_with_a_warning():
    data = b'{"path": "a.mp4", "caption": "x"}\nnot json\n[1, 2]\n{"path": "b.mp4", "error": "e"}\n'
    found, whole, warnings = parse_results(data, "r.jsonl")
    assert [entry["path"] for entry in found] == ["a.mp4", "b.mp4"] and whole == len(data)
    assert warnings == ['r.jsonl: line 2 is not a result (a JSON object with a "path"): ignored',
                        'r.jsonl: line 3 is not a result (a JSON object with a "path"): ignored']


def test_a_file_that_holds_no_results_is_not_appended_to(model_run, folder, run, tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("my notes\n")
    code, _, err = run("caption", folder, "--model", model_run, "--out", out, "--quiet")
    assert code == 2 and out.read_text() == "my notes\n"
    run.assert_one_line_error(err, f"{out}: not a results file (no line is a JSON object with a \"path\")")


def test_a_second_writer_is_refused(model_run, folder, run, tmp_path):
    out = tmp_path / "results.jsonl"
    holder = ResultsWriter(out)
    try:
        code, _, err = run("caption", folder, "--model", model_run, "--out", out, "--quiet")
        assert code == 2
        run.assert_one_line_error(err, f"{out}: another process is writing to it")
    finally:
        holder.close()


@pytest.mark.parametrize("where, problem", [("missing/results.jsonl", "folder {tmp}/missing does not exist"),
                                            (".", "a folder; --out names the results file")])
def test_an_output_path_in_a_missing_folder_is_a_one_line_error_before_any_work(run, folder, tmp_path, where, problem):
    code, out, err = run("caption", folder, "--model", tmp_path / "no-such-run", "--out", tmp_path / where)
    assert code == 2 and out == ""
    run.assert_one_line_error(err, problem.format(tmp=tmp_path))


def test_out_writes_json_lines_only(run, folder, tmp_path):
    code, _, err = run("caption", folder, "--model", tmp_path / "no-such-run", "--out", tmp_path / "r.jsonl",
                       "--format", "srt")
    assert code == 2
    run.assert_one_line_error(err, "--out writes JSON lines; --format srt is for printing, without --out")


def test_folders_and_quoted_globs_expand_to_their_videos_each_once(folder, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    pattern = str(folder / "TrainValVideo" / "video*.mp4")
    found = expand_videos([str(folder), pattern, str(empty), str(folder / "missing.mp4")])
    assert found == [*videos_in(folder), str(empty), str(folder / "missing.mp4")]
    assert expand_videos([str(folder / "nothing-*.mp4")]) == [str(folder / "nothing-*.mp4")]


def test_the_parts_a_killed_torchrun_left_are_merged_and_their_videos_skipped(reference, folder, model_run, run,
                                                                           tmp_path):
    out = tmp_path / "results.jsonl"
    lines = reference.read_bytes().splitlines(keepends=True)
    part_path(out, 1).write_bytes(b"".join(lines[1:3]))
    code, stdout, _ = run("caption", folder, "--model", model_run, "--out", out, "--quiet")
    assert code == 1 and stdout == f"{out}: 4 video(s) captioned, 2 already there, 1 failed\n"
    assert not part_path(out, 1).exists()
    assert sorted(map(json.dumps, entries(out))) == sorted(map(json.dumps, entries(reference)))


@pytest.mark.slow
def test_two_torchrun_processes_each_caption_their_share_into_parts_merged_into_the_file(reference, folder, model_run,
                                                                                          tmp_path):
    out = tmp_path / "results.jsonl"
    good = [str(folder / "TrainValVideo"), str(folder / "TestVideo" / "video*.mp4")]  # all but the broken file
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "vidcap.cli", "caption", *good, "--model", str(model_run), "--out", str(out),
                           "--quiet"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == f"{out}: 6 video(s) captioned, 0 already there, 0 failed\n"
    assert sorted(map(json.dumps, entries(out))) == sorted(json.dumps(entry) for entry in entries(reference)
                                                           if "error" not in entry)
    assert [path.name for path in tmp_path.iterdir()] == ["results.jsonl"]


def test_overlays_the_tools_wrote_and_hidden_partial_files_are_not_a_folders_videos(tmp_path):
    import numpy as np

    from saliency.infra.media import Mp4Writer

    for name, mark in (("clip.mp4", False), ("clip-overlay.mp4", True), (".clip.partial.mp4", False)):
        with Mp4Writer(tmp_path / name, 8, mark=mark) as writer:
            writer.write(np.zeros((2, 16, 16, 3), np.uint8))
    assert expand_videos([str(tmp_path)]) == [str(tmp_path / "clip.mp4")]


@pytest.mark.parametrize("videos, overlay, problem", [
    (["a/clip.mp4"], "a/clip.mp4", "clip.mp4: an input; writing there would destroy it"),
    (["a/clip.mp4", "b/clip.mp4"], "over.mp4", "would both write"),
])
def test_an_overlay_over_an_input_or_two_videos_sharing_one_is_refused_before_the_model_loads(
        tmp_path, cli, videos, overlay, problem):
    for video in videos:
        (tmp_path / video).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / video).write_bytes(b"kept as it is")
    run = cli("vidcap")
    code, _, err = run("caption", *(tmp_path / video for video in videos), "--model", tmp_path / "no-such-run",
                       "--overlay", tmp_path / overlay)
    assert code == 2 and all((tmp_path / video).read_bytes() == b"kept as it is" for video in videos)
    run.assert_one_line_error(err, problem)


def test_a_url_is_refused_in_one_line_before_any_work(tmp_path, cli):
    run = cli("vidcap")
    code, _, err = run("caption", "https://example.com/clip.mp4", "--model", tmp_path / "no-such-run")
    assert code == 2
    run.assert_one_line_error(err, "https://example.com/clip.mp4: a URL; inputs are not fetched, download")


def test_a_video_piped_in_is_captioned_as_the_file_is(folder, model_run):
    """`-` reads the video from standard input (spooled to a file); the caption is the file's, named `-`."""
    video = sorted(path for path in folder.rglob("*.mp4") if path.name != "broken.mp4")[0]
    def command(video: str) -> list[str]:
        return [sys.executable, "-m", "vidcap.cli", "caption", video, "--model", str(model_run), "--json", "--quiet"]

    piped = subprocess.run(command("-"), input=video.read_bytes(), capture_output=True, timeout=600)
    given = subprocess.run(command(str(video)), capture_output=True, timeout=600)
    assert piped.returncode == given.returncode == 0, piped.stderr[-2000:]
    (from_pipe,), (from_file,) = json.loads(piped.stdout), json.loads(given.stdout)
    assert from_pipe["video"] == "-" and from_pipe["caption"] == from_file["caption"]
    empty = subprocess.run(command("-"), input=b"", capture_output=True, timeout=600)
    assert empty.returncode == 2 and b"-: nothing was piped in on standard input" in empty.stderr
