"""Fuzzing the caption annotation readers and the frame sampler: any input either parses or raises
the project's one-line errors, never another exception; sampled indices are always usable."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saliency.infra.config import from_dict
from saliency.infra.errors import ConfigError, DatasetError, UserError
from vidcap.data.datasets import (read_folder_captions, read_msrvtt_annotations, read_msvd_csv, read_msvd_txt,
                             read_youtube_mapping)
from vidcap.data.video import FrameSamplerConfig, sample_indices

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def parse_or_refuse(reader, path):
    """The reader's result, or None when it refused with a one-line DatasetError naming the file."""
    try:
        return reader(path)
    except DatasetError as error:
        message = str(error)
        assert str(path) in message and "\n" not in message, message
        return None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
split_names = st.sampled_from(["train", "validate", "val", "test", "TEST", "dev", ""]) | st.integers() | st.none()


@st.composite
def msrvtt_like(draw) -> object:
    """An MSR-VTT annotation object with fields dropped, retyped or added at random."""
    def entry(fields: dict) -> object:
        kept = {key: value for key, value in fields.items() if draw(st.integers(0, 9))}  # each dropped 1 in 10
        return draw(st.sampled_from([kept, kept, kept, list(kept.values()), "oops"]))

    ids = st.sampled_from(["video0", "video1", "video2"]) | json_values
    videos = [entry({"video_id": draw(ids), "split": draw(split_names)}) for _ in range(draw(st.integers(0, 4)))]
    sentences = [entry({"video_id": draw(ids), "caption": draw(st.text(max_size=20) | json_values), "sen_id": 1})
                 for _ in range(draw(st.integers(0, 6)))]
    data = {"videos": videos, "sentences": sentences, **draw(st.dictionaries(st.text(max_size=5), json_values, max_size=2))}
    return draw(st.sampled_from([data, data, {"videos": videos}, videos, sentences]))


def text_bytes(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogatepass")


@FUZZ
@given(content=st.one_of(msrvtt_like().map(lambda data: json.dumps(data).encode()),
                         json_values.map(lambda data: json.dumps(data).encode()),
                         st.binary(max_size=200),
                         msrvtt_like().map(lambda data: json.dumps(data).encode()[: len(json.dumps(data)) // 2])))
def test_msrvtt_reader_parses_or_refuses(folder, content):
    path = folder / "videodatainfo.json"
    path.write_bytes(content)
    annotations = parse_or_refuse(read_msrvtt_annotations, path)
    for annotation in annotations or []:
        assert annotation.split in ("train", "val", "test") and isinstance(annotation.video_id, str)
        assert all(isinstance(caption, str) for caption in annotation.captions)


@FUZZ
@given(content=st.one_of(json_values.map(lambda data: json.dumps(data).encode()), st.binary(max_size=200),
                         st.dictionaries(st.text(max_size=6), st.lists(st.text(max_size=6) | json_values, max_size=3),
                                         max_size=3).map(lambda data: json.dumps(data).encode())))
def test_folder_captions_reader_parses_or_refuses(folder, content):
    path = folder / "captions.json"
    path.write_bytes(content)
    for annotation in parse_or_refuse(read_folder_captions, path) or []:
        assert annotation.split in ("train", "val", "test")
        assert all(isinstance(caption, str) for caption in annotation.captions)


csv_cells = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6) | st.sampled_from(
    ["English", "english", "German", '"', '""', ",", "\r", "\n", "\x00"])


@st.composite
def msvd_csv(draw) -> str:
    """`video_corpus.csv` text: the real header or a damaged one, then rows of odd cells and lengths."""
    header = draw(st.sampled_from(["VideoID,Start,End,WorkerID,Source,AnnotationTime,Language,Description",
                                   "VideoID,Start,End,Language,Description", "VideoID,Start", ""]))
    rows = draw(st.lists(st.lists(csv_cells, max_size=10).map(",".join), max_size=6))
    return "\n".join([header, *rows])


@FUZZ
@given(content=st.one_of(msvd_csv().map(text_bytes), st.binary(max_size=200)))
def test_msvd_csv_reader_parses_or_refuses(folder, content):
    path = folder / "video_corpus.csv"
    path.write_bytes(content)
    captions = parse_or_refuse(read_msvd_csv, path)
    for clip, texts in (captions or {}).items():
        assert isinstance(clip, str) and all(isinstance(text, str) for text in texts)


@FUZZ
@given(content=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(text_bytes),
                         st.lists(st.tuples(st.text(max_size=8), st.sampled_from([" vid", " ", "\tvid", " vid-"]),
                                            st.integers(-3, 2000)), max_size=5).map(
                             lambda rows: "\n".join(f"{a}{b}{c}" for a, b, c in rows).encode())))
def test_msvd_text_files_parse_or_refuse(folder, content):
    path = folder / "msvd.txt"
    path.write_bytes(content)
    for clip, texts in (parse_or_refuse(read_msvd_txt, path) or {}).items():
        assert clip.strip() == clip and clip and all(isinstance(text, str) for text in texts)
    for clip, number in (parse_or_refuse(read_youtube_mapping, path) or {}).items():
        assert number >= 1 and clip


# ------------------------------------------------------------------------------------------------
# The frame sampler


timestamps_for = {
    "none": lambda total: st.none(),
    "clock": lambda total: st.floats(0.01, 2).map(lambda step: np.arange(total) * step),
    "ragged": lambda total: st.lists(st.floats(-1e3, 1e3) | st.sampled_from([np.nan, np.inf, -np.inf]),
                                     min_size=total, max_size=total).map(np.array),
    "start_end": lambda total: st.lists(st.floats(0, 100), min_size=total, max_size=total).map(
        lambda starts: np.stack([np.sort(starts), np.sort(starts) + 0.04], axis=1)),
}


@FUZZ
@given(data=st.data(), total=st.integers(1, 2000), n=st.integers(1, 64), mode=st.sampled_from(["segment", "stride"]),
       stride=st.integers(1, 50), kind=st.sampled_from(sorted(timestamps_for)))
def test_sampled_indices_are_sorted_in_range_and_exactly_n(data, total, n, mode, stride, kind):
    timestamps = data.draw(timestamps_for[kind](total))
    indices = sample_indices(total, n, mode, stride, timestamps)
    assert indices.shape == (n,) and indices.dtype == np.int64
    assert np.all((indices >= 0) & (indices < total)) and np.all(np.diff(indices) >= 0)
    if total >= n and timestamps is None:  # enough frames: no repeats
        assert np.all(np.diff(indices) > 0)


@FUZZ
@given(total=st.integers(-5, 3), n=st.integers(-5, 3), mode=st.text(max_size=8) | st.sampled_from(["segment", "stride"]),
       stride=st.integers(-3, 3))
def test_impossible_sampling_requests_are_user_errors(total, n, mode, stride):
    try:
        indices = sample_indices(total, n, mode, stride)
    except UserError as error:
        assert "\n" not in str(error)
        return
    assert len(indices) == n and np.all((indices >= 0) & (indices < total))


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(["n_frames", "mode", "stride", "size", "resize", "fps"]),
                              json_values | st.lists(st.integers(-2, 300), max_size=3), max_size=4))
def test_sampler_config_from_any_mapping_is_valid_or_a_config_error(fields):
    try:
        config = from_dict(FrameSamplerConfig, fields, "frames")
    except ConfigError as error:
        assert str(error).startswith("frames") and "\n" not in str(error)
        return
    assert config.n_frames >= 1 and config.stride >= 1 and len(config.size) == 2 and min(config.size) >= 1
    assert config.mode in ("segment", "stride") and config.resize in ("center_crop", "stretch")
