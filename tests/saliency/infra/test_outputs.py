"""Where the commands write: names from the inputs' paths, no output over an input or written by two inputs, and
the tools' own outputs recognised (and left out of a folder's inputs)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from saliency.infra.errors import UserError
from saliency.infra.media import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Mp4Writer
from saliency.infra.outputs import check_outputs, is_own_output, media_in_folder, named_inputs
from saliency.predict import write_outputs

MEDIA = (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES)


def image(path, value: int = 90):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)
    return path


def test_a_folders_files_are_named_by_their_path_inside_it_and_a_file_by_its_stem(tmp_path):
    a, b = image(tmp_path / "photos" / "a" / "x.jpg"), image(tmp_path / "photos" / "b" / "x.jpg")
    single = image(tmp_path / "other" / "y.png")
    named = named_inputs([str(tmp_path / "photos"), str(single)], MEDIA)
    assert [(path, str(name)) for path, name in named] == [(a, "a/x"), (b, "b/x"), (single, "y")]


def test_hidden_files_and_the_tools_own_outputs_are_not_a_folders_inputs(tmp_path):
    photo = image(tmp_path / "photo.jpg")
    image(tmp_path / ".partial.jpg")
    write_outputs(np.full((8, 8, 3), 90, np.uint8), np.random.default_rng(0).random((8, 8)), tmp_path / "photo")
    with Mp4Writer(tmp_path / "overlay.mp4", 8, mark=True) as writer:
        writer.write(np.zeros((2, 16, 16, 3), np.uint8))
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        ".partial.jpg", "overlay.mp4", "photo.jpg", "photo.png", "photo_overlay.jpg"]
    assert media_in_folder(tmp_path, MEDIA) == [photo]


def test_only_what_the_tools_wrote_is_recognised_as_theirs(tmp_path):
    plain = image(tmp_path / "plain.png")
    with Mp4Writer(tmp_path / "plain.mp4", 8) as writer:
        writer.write(np.zeros((2, 16, 16, 3), np.uint8))
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    write_outputs(np.full((8, 8, 3), 90, np.uint8), np.random.default_rng(0).random((8, 8)), tmp_path / "map")
    assert [is_own_output(path) for path in (plain, tmp_path / "plain.mp4", tmp_path / "broken.mp4")] == [False] * 3
    assert is_own_output(tmp_path / "map.png") and is_own_output(tmp_path / "map_overlay.jpg")


def test_an_output_over_an_input_or_written_by_two_inputs_is_refused(tmp_path):
    x, y = tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg"
    with pytest.raises(UserError, match="x.png: an input; writing there would destroy it"):
        check_outputs({x: [tmp_path / "a" / "x.png"]}, inputs=[tmp_path / "a" / "x.png"])
    with pytest.raises(UserError, match=r"a/x.jpg and .*b/x.jpg would both write .*out/x.png"):
        check_outputs({x: [tmp_path / "out" / "x.png"], y: [tmp_path / "out" / "x.png"]})
    check_outputs({x: [tmp_path / "out" / "a" / "x.png"], y: [tmp_path / "out" / "b" / "x.png"]})
