"""ONNX export: a dynamic batch axis (the exporter's example batch is not baked in), float32 parity with torch on
the log-density at batch 1 and batch 2, no draw from torch's global random generator (a training run's dropout
stream must not depend on whether its export was cached), and a one-line refusal of an export with a fixed batch."""
from __future__ import annotations

import onnx
import pytest
import torch

from saliency import export
from saliency.export import max_difference, onnx_float32, plain_session, seeded_images
from saliency.infra.errors import UserError
from saliency.models import build_untrained

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = (32, 64)


@pytest.fixture(scope="module")
def student():
    """A tiny untrained student and its float32 export."""
    torch.manual_seed(0)
    model = build_untrained("student", width=8, depth=1, decoder_width=8).eval()
    return model, onnx_float32(model, SIZE)


def batch_dims(onnx_bytes: bytes) -> list:
    """The first dimension of the graph's input and output: a name when dynamic, a number when fixed."""
    graph = onnx.load_from_string(onnx_bytes).graph
    return [value.type.tensor_type.shape.dim[0].dim_param or value.type.tensor_type.shape.dim[0].dim_value
            for value in (graph.input[0], graph.output[0])]


def test_the_export_has_a_dynamic_batch_axis(student):
    _, onnx_bytes = student
    assert batch_dims(onnx_bytes) == ["batch", "batch"]


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_float32_export_gives_the_torch_log_density_to_1e_4_at_any_batch(student, batch):
    model, onnx_bytes = student
    x = torch.randn(batch, 3, *SIZE, generator=torch.Generator().manual_seed(batch))
    got = plain_session(onnx_bytes)(x)
    with torch.no_grad():
        assert got.shape == (batch, 1, *SIZE) and (got - model(x)).abs().max() <= 1e-4


@pytest.mark.slow
def test_a_teacher_export_has_a_dynamic_batch_and_parity_at_batch_1_and_2():
    model = build_untrained("teacher-mobilenetv2").eval()
    onnx_bytes = onnx_float32(model, SIZE)
    assert batch_dims(onnx_bytes) == ["batch", "batch"]
    assert max_difference(model, onnx_bytes, SIZE) <= 1e-4


def test_the_parity_check_runs_one_image_and_a_batch_of_two(student):
    model, onnx_bytes = student
    seen = []
    run = plain_session(onnx_bytes)
    assert max_difference(model, lambda x: seen.append(len(x)) or run(x), SIZE) <= 1e-4
    assert seen == [1, 2]
    assert torch.equal(seeded_images(SIZE, 1)[0], seeded_images(SIZE, 2)[0])  # the single image is in the batch


def test_exporting_and_checking_draw_nothing_from_the_global_random_generator(student):
    model, onnx_bytes = student
    before = torch.get_rng_state()
    max_difference(model, onnx_float32(model, SIZE), SIZE)
    assert torch.equal(before, torch.get_rng_state())


def test_an_export_whose_batch_the_exporter_fixed_is_refused_in_one_line(student, monkeypatch):
    model, _ = student
    real = torch.onnx.export
    monkeypatch.setattr(export.torch.onnx, "export",
                        lambda *args, dynamic_shapes=None, **kwargs: real(*args, **kwargs))  # as a 0/1 specialisation
    with pytest.raises(UserError, match=r"^the ONNX exporter fixed the batch dimension to 2 .*use --backend torch$"):
        onnx_float32(model, SIZE)


def test_export_onnx_writes_a_file_that_runs_any_batch(student, tmp_path):
    model, _ = student
    error = export.export_onnx(model, tmp_path / "student.onnx", SIZE)
    assert error <= 1e-4
    session = plain_session((tmp_path / "student.onnx").read_bytes())
    assert [tuple(session(torch.zeros(n, 3, *SIZE)).shape) for n in (1, 2)] == [(1, 1, *SIZE), (2, 1, *SIZE)]
