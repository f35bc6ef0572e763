"""saliency.data.matfile: damaged .mat files that crash scipy's reader are refused first; real ones pass."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from saliency.data.matfile import load_mat, mat_v5_problem
from saliency.infra.errors import DatasetError

SCIPY_TEST_FILES = Path(scipy.io.matlab.__file__).parent / "tests" / "data"


def two_matrices() -> bytearray:
    """A MAT v5 file with two 2×2 double matrices, `a` then `b`."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"a": np.eye(2), "b": np.eye(2)})
    return bytearray(buffer.getvalue())


def complex_without_imaginary_part() -> bytes:
    data = two_matrices()
    data[128 + 16 + 1] |= 0x08  # `a`'s array flags: complex; scipy then reads `b`'s tag as a's imaginary part
    return bytes(data)


def unknown_data_type() -> bytes:
    data = two_matrices()
    real_part = data.index(bytes([9, 0, 0, 0, 32, 0, 0, 0]))  # `a`'s values: miDOUBLE, 32 bytes
    data[real_part + 1] = 156  # type code 9 → 39945
    return bytes(data)


@pytest.mark.parametrize("damaged, problem", [
    (complex_without_imaginary_part, "element at byte 216 is cut off"),  # the imaginary part `a` lacks
    (unknown_data_type, "matrix at byte 128 holds data of unknown type 39945"),
])
def test_files_that_crash_scipy_are_refused_with_a_one_line_error(tmp_path, damaged, problem):
    path = tmp_path / "damaged.mat"
    path.write_bytes(damaged())
    with pytest.raises(DatasetError) as refused:
        load_mat(path)
    assert str(refused.value) == f"{path}: damaged .mat file ({problem})"


def test_the_damage_is_named_without_scipy_reading_the_file():
    assert mat_v5_problem(unknown_data_type()) == "matrix at byte 128 holds data of unknown type 39945"
    assert mat_v5_problem(bytes(two_matrices()[:200])) == "variable at byte 128 runs past the end of the file"
    assert mat_v5_problem(b"not a mat file at all") is None  # left to scipy, which raises


@pytest.mark.skipif(not SCIPY_TEST_FILES.is_dir(), reason="scipy installed without its test data")
def test_every_file_scipy_reads_passes_the_check_except_function_handles():
    """scipy's own test files: MATLAB-written v4/v5/v7 files with cells, structs, objects, sparse, complex,
    unicode and compressed variables, both byte orders."""
    refused = []
    for path in sorted(SCIPY_TEST_FILES.glob("*.mat")):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scipy.io.loadmat(path)
        except Exception:  # files scipy itself rejects are not the check's business
            continue
        problem = mat_v5_problem(path.read_bytes())
        if problem:
            refused.append((path.name, problem))
    assert refused and all("has class 16" in problem for _, problem in refused), refused  # mxFUNCTION_CLASS


def test_a_missing_file_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="nope.mat: no such file"):
        load_mat(tmp_path / "nope.mat")
