"""Fuzzing the saliency annotation readers: any file either parses into in-range fixations or raises
a one-line DatasetError naming it, never another exception."""
from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from saliency.data.readers import read_cat2000_fixations, read_fixation_image, read_salicon_fixations
from saliency.infra.errors import DatasetError

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SHAPE = (12, 16)  # (H, W) of the image the annotations belong to


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def read_or_refuse(reader, path, shape=SHAPE):
    """The reader's (N, 2) int64 points, checked in range, or None when it refused with a good error."""
    try:
        points = reader(path, shape, path.with_suffix(".jpg"))
    except DatasetError as error:
        message = str(error)
        assert str(path) in message and "\n" not in message, message
        return None
    assert points.dtype == np.int64 and points.ndim == 2 and points.shape[1] == 2
    assert np.all((points >= 0) & (points < shape)), points
    return points


def mat_bytes(variables: dict) -> bytes:
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables)
    return buffer.getvalue()


def valid_salicon_mat() -> bytes:
    fields = [("location", object), ("timestamp", object), ("fixations", object)]
    gaze = np.zeros((1, 2), dtype=fields)
    for i in range(2):
        gaze[0, i]["fixations"] = np.array([[3.0, 4.0], [16.0, 12.0]])
        gaze[0, i]["location"] = gaze[0, i]["fixations"]
        gaze[0, i]["timestamp"] = np.arange(2.0).reshape(-1, 1)
    return mat_bytes({"image": "x", "resolution": np.array([SHAPE]), "gaze": gaze})


def corrupted(original: bytes):
    """A copy of `original` cut short, with bytes overwritten, or with junk appended."""
    return st.one_of(
        st.integers(0, len(original) - 1).map(lambda n: original[:n]),
        st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(0, 255)), min_size=1, max_size=8).map(
            lambda edits: bytes(_overwrite(bytearray(original), edits))),
        st.binary(min_size=1, max_size=64).map(lambda junk: original + junk),
    )


def _overwrite(data: bytearray, edits) -> bytearray:
    for offset, value in edits:
        data[offset] = value
    return data


shapes = st.tuples(st.integers(0, 4), st.integers(0, 4))
numbers = st.one_of(arrays(st.sampled_from([np.float64, np.int32]), shapes, elements=st.integers(-40, 40)),
                    arrays(st.sampled_from([np.uint8, np.bool_]), shapes))
odd_values = st.one_of(numbers, st.text(max_size=5), st.just(np.zeros((0, 0))), st.just(np.array([[1.0, np.nan]])),
                       st.just(np.array([[np.inf, 2.0]])))


@st.composite
def salicon_variables(draw) -> dict:
    """A SALICON-like .mat: `gaze` records whose fields, shapes and types vary, and an odd `resolution`."""
    names = draw(st.lists(st.sampled_from(["fixations", "location", "timestamp"]), min_size=1, max_size=3, unique=True))
    gaze = np.zeros((1, draw(st.integers(1, 3))), dtype=[(name, object) for name in names])
    for record in gaze.ravel():
        for name in names:
            record[name] = draw(odd_values)
    variables = {"gaze": draw(st.sampled_from([gaze, gaze.ravel(), np.array(list(gaze.ravel()), dtype=object)]))}
    if draw(st.booleans()):
        variables["resolution"] = draw(odd_values)
    return variables


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), corrupted(valid_salicon_mat())))
def test_salicon_reader_on_damaged_mat_bytes(folder, data):
    path = folder / "salicon.mat"
    path.write_bytes(data)
    read_or_refuse(read_salicon_fixations, path)


@FUZZ
@given(variables=salicon_variables())
def test_salicon_reader_on_odd_mat_contents(folder, variables):
    path = folder / "salicon_odd.mat"
    path.write_bytes(mat_bytes(variables))
    read_or_refuse(read_salicon_fixations, path)


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), corrupted(mat_bytes({"fixLocs": np.eye(*SHAPE)}))),
       locs=st.one_of(st.none(), odd_values))
def test_cat2000_reader_on_damaged_or_odd_mat_files(folder, data, locs):
    path = folder / "cat2000.mat"
    path.write_bytes(data if locs is None else mat_bytes({"fixLocs": locs}))
    read_or_refuse(read_cat2000_fixations, path)


def png_bytes(points: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(points).save(buffer, format="PNG")
    return buffer.getvalue()


@FUZZ
@given(data=st.one_of(
    st.binary(max_size=300),
    corrupted(png_bytes(np.eye(*SHAPE, dtype=np.uint8) * 255)),
    arrays(np.uint8, st.tuples(st.integers(1, 20), st.integers(1, 20))).map(png_bytes),
))
def test_mit1003_points_image_on_damaged_or_odd_images(folder, data):
    path = folder / "points.png"
    path.write_bytes(data)
    read_or_refuse(read_fixation_image, path)
