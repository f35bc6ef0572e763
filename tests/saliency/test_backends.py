"""Inference backends: the float32 ONNX export computes the torch model's log-density to 1e-4 at any batch, an
image's output is bit-identical across fresh sessions, thread counts and batch neighbours, int8 stays a close
log-density, exports are cached by the weights' digest and rebuilt (never used) when stale, damaged or of a fixed
batch, and the commands take `--backend` (default: the fastest installed) with one-line errors for what cannot be
done."""
from __future__ import annotations

import hashlib
import json
import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from saliency import backends
from saliency.backends import EXPORT_FOLDER, exported_session, resolve_backend, run_on_backend
from saliency.cli import main
from saliency.data import open_dataset
from saliency.evaluate import evaluate_model
from saliency.infra.rundir import atomic_write_checked_json, load_checked_json
from saliency.models import build_untrained
from saliency.run import load

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = (32, 64)


@pytest.fixture(scope="module")
def world(tmp_path_factory, one_thread):
    """A tiny synthetic dataset and a student trained on it for one epoch, with its float32 and int8 exports cached
    (exporting takes seconds: the tests share these)."""
    root = tmp_path_factory.mktemp("backends")
    assert main(["synth", str(root / "data"), "--n", "24", "--size", "32x64", "--quiet"]) == 0
    assert main(["train", "--config", "configs/saliency/student.yaml", "--set", f"data.root={root / 'data'}",
                 "--set", "data.size=[32, 64]", "--set", "optim.epochs=1", "--set", "val_metrics=[CC]",
                 "--out", str(root / "student"), "--quiet"]) == 0
    run_on_backend(root / "student", load(root / "student"), "onnxruntime-int8", SIZE)
    return root


@pytest.fixture
def run_copy(world, tmp_path):
    """A copy of the trained student's run directory, its cached exports included."""
    shutil.copytree(world / "student", tmp_path / "student")
    return tmp_path / "student"


def images(n: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, *SIZE, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_float32_export_gives_the_torch_log_density_to_1e_4(world, batch):
    model = load(world / "student")
    exported = run_on_backend(world / "student", model, "onnxruntime", SIZE)
    with torch.no_grad():
        assert (exported(images(batch)) - model(images(batch))).abs().max() <= 1e-4


def test_fresh_sessions_thread_counts_and_batch_neighbours_leave_an_images_output_bit_identical(world):
    """What cached features and resumed runs rely on: an image's output depends on the export and the image alone."""
    model = load(world / "student")
    outputs = []
    for threads in (1, 1, 2):  # two fresh sessions on one thread, a third on two
        torch.set_num_threads(threads)
        session = exported_session(model, "onnxruntime", SIZE, world / "student" / EXPORT_FOLDER,
                                   output="log_density")  # the export `run_on_backend` cached
        outputs.append(session(images(4)))
    assert all(torch.equal(outputs[0], other) for other in outputs[1:])
    assert all(torch.equal(session(images(4)[i:i + 1])[0], outputs[0][i]) for i in range(4))
    assert torch.equal(session(images(4)[1:3]), outputs[0][1:3])


@pytest.mark.slow
def test_float32_export_of_a_teacher_gives_the_torch_log_density_to_1e_4():
    model = build_untrained("teacher-mobilenetv2").eval()
    session = exported_session(model, "onnxruntime", SIZE)
    with torch.no_grad():
        assert (session(images()) - model(images())).abs().max() <= 1e-4


def test_int8_export_is_a_log_density_close_to_torch(world):
    model = load(world / "student")
    exported = run_on_backend(world / "student", model, "onnxruntime-int8", SIZE)
    x = images()
    with torch.no_grad():
        expected, got = model(x), exported(x)
    assert torch.allclose(got.exp().sum(dim=(1, 2, 3)), torch.ones(3), atol=1e-3)
    correlation = np.corrcoef(got.exp().flatten().numpy(), expected.exp().flatten().numpy())[0, 1]
    assert correlation > 0.98


def test_inputs_of_another_size_run_the_torch_model(world):
    model = load(world / "student")
    exported = run_on_backend(world / "student", model, "onnxruntime", SIZE)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(exported(x), model(x))


def test_the_export_is_cached_by_weights_size_and_backend_and_reused(run_copy, monkeypatch):
    cached = sorted(path.name for path in (run_copy / EXPORT_FOLDER).iterdir())
    assert [name.rsplit("-", 1)[0] for name in cached] == ["model-onnxruntime-32x64"] * 2 + \
        ["model-onnxruntime-int8-32x64"] * 2
    assert [name.split(".", 1)[1] for name in cached] == ["onnx", "onnx.json"] * 2
    monkeypatch.setattr(backends, "onnx_float32", lambda *args, **kwargs: pytest.fail("exported again"))
    monkeypatch.setattr(backends, "quantize_int8", lambda *args, **kwargs: pytest.fail("quantized again"))
    run_on_backend(run_copy, load(run_copy), "onnxruntime-int8", SIZE)


def test_changed_weights_make_a_new_export_and_drop_the_stale_one(run_copy):
    model = load(run_copy)
    before = {path.name for path in (run_copy / EXPORT_FOLDER).glob("model-onnxruntime-32x64-*.onnx")}
    with torch.no_grad():
        next(model.parameters()).add_(0.5)
    exported = run_on_backend(run_copy, model, "onnxruntime", SIZE)
    after = {path.name for path in (run_copy / EXPORT_FOLDER).glob("model-onnxruntime-32x64-*.onnx")}
    assert len(after) == 1 and after != before
    with torch.no_grad():
        assert (exported(images()) - model(images())).abs().max() <= 1e-4


def test_a_damaged_cached_export_is_rebuilt_not_used(run_copy, caplog):
    model = load(run_copy)
    path = next((run_copy / EXPORT_FOLDER).glob("model-onnxruntime-32x64-*.onnx"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="saliency"):
        exported = run_on_backend(run_copy, model, "onnxruntime", SIZE)
    assert "cached export damaged" in caplog.text
    with torch.no_grad():
        assert (exported(images()) - model(images())).abs().max() <= 1e-4


def test_an_export_made_by_other_model_code_is_stale_and_rebuilt(run_copy, caplog):
    model = load(run_copy)
    path = next((run_copy / EXPORT_FOLDER).glob("model-onnxruntime-32x64-*.onnx"))
    # a float32 export under the same weights' name that computes something else, as older model code would:
    # the int8 model made from it
    other = next((run_copy / EXPORT_FOLDER).glob("model-onnxruntime-int8-*.onnx")).read_bytes()
    path.write_bytes(other)
    record = path.with_name(path.name + ".json")
    atomic_write_checked_json(record, load_checked_json(record) | {"onnx_sha256": hashlib.sha256(other).hexdigest()})
    with caplog.at_level(logging.WARNING, logger="saliency"):
        session = run_on_backend(run_copy, model, "onnxruntime", SIZE)
    assert "no longer computes what the model does" in caplog.text
    with torch.no_grad():
        assert (session(images()) - model(images())).abs().max() <= 1e-4


def test_a_cached_export_with_a_fixed_batch_is_stale_and_rebuilt(run_copy, caplog):
    import onnx

    model = load(run_copy)
    path = next((run_copy / EXPORT_FOLDER).glob("model-onnxruntime-32x64-*.onnx"))
    proto = onnx.load_from_string(path.read_bytes())  # as an exporter that baked in its example batch of one
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    fixed = proto.SerializeToString()
    path.write_bytes(fixed)
    record = path.with_name(path.name + ".json")
    atomic_write_checked_json(record, load_checked_json(record) | {"onnx_sha256": hashlib.sha256(fixed).hexdigest()})
    with caplog.at_level(logging.WARNING, logger="saliency"):
        session = exported_session(model, "onnxruntime", SIZE, run_copy / EXPORT_FOLDER, output="log_density")
    assert "cached export has a fixed batch size" in caplog.text
    with torch.no_grad():
        assert session.batch_is_dynamic() and (session(images(2)) - model(images(2))).abs().max() <= 1e-4


def test_eval_on_each_backend_scores_like_torch(world, tmp_path):
    reader = open_dataset(world / "data", split="test")
    model = load(world / "student")
    scores = {backend: evaluate_model(run_on_backend(world / "student", model, backend, SIZE), reader, SIZE,
                                      metrics=["CC", "KLD", "NSS"], progress=False)
              for backend in backends.BACKENDS}
    for name, value in scores["torch"].items():
        assert scores["onnxruntime"][name] == pytest.approx(value, abs=1e-4)
        assert scores["onnxruntime-int8"][name] == pytest.approx(value, rel=0.05)


def test_unknown_backend_is_one_line_listing_the_valid_ones(world, cli):
    run = cli("saliency")
    code, _, err = run("eval", "--model", world / "student", "--data", world / "data", "--backend", "tensorrt",
                       "--quiet")
    assert code == 2
    run.assert_one_line_error(err, "unknown backend 'tensorrt'", "torch, onnxruntime, onnxruntime-int8")


def test_auto_is_onnxruntime_on_a_cpu_and_torch_on_a_gpu():
    assert resolve_backend("auto") == resolve_backend(None) == "onnxruntime"
    assert resolve_backend("auto", "cuda") == "torch" and resolve_backend("onnxruntime-int8") == "onnxruntime-int8"


def test_without_onnxruntime_the_commands_run_on_torch_and_say_so_once(monkeypatch, caplog):
    monkeypatch.setattr(backends, "onnxruntime_installed", lambda: False)
    backends.warn_torch_instead.cache_clear()
    with caplog.at_level(logging.WARNING, logger="saliency"):
        assert resolve_backend("onnxruntime-int8") == "torch"
        assert [resolve_backend("auto"), resolve_backend(None), resolve_backend("auto", "cuda")] == ["torch"] * 3
    backends.warn_torch_instead.cache_clear()
    assert [record.getMessage() for record in caplog.records] == [
        "onnxruntime is not installed: running on torch instead of onnxruntime-int8 (pip install onnxruntime)",
        "onnxruntime is not installed: running on torch instead of the fastest backend (auto) "
        "(pip install onnxruntime)"]


def test_int8_calibration_without_training_images_names_the_folder(world, tmp_path, cli):
    shutil.copytree(world / "data", tmp_path / "data")
    assert main(["train", "--config", "configs/saliency/student.yaml", "--set", f"data.root={tmp_path / 'data'}",
                 "--set", "data.size=[32, 64]", "--set", "optim.epochs=1", "--set", "val_metrics=[CC]",
                 "--out", str(tmp_path / "student"), "--quiet"]) == 0
    shutil.rmtree(tmp_path / "data")
    run = cli("saliency")
    code, _, err = run("export", "--model", tmp_path / "student", "--onnx", tmp_path / "s.onnx", "--int8")
    assert code == 2 and not (tmp_path / "s.onnx").exists()
    run.assert_one_line_error(err, "int8 calibration needs the run's training images, looked in",
                              f"{tmp_path / 'data'} (split train)")


def test_export_int8_writes_a_quantized_model_that_runs(run_copy, cli):
    import onnx
    import onnxruntime

    out = run_copy.parent / "student-int8.onnx"
    code, stdout, err = cli("saliency")("export", "--model", run_copy, "--onnx", out, "--int8")
    assert code == 0, err
    assert "int8, calibrated on" in stdout
    ops = {node.op_type for node in onnx.load(out).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    got = onnxruntime.InferenceSession(str(out)).run(None, {"image": images().numpy()})[0]
    assert got.shape == (3, 1, *SIZE) and np.allclose(np.exp(got).sum(axis=(1, 2, 3)), 1, atol=1e-3)


def test_bench_gives_a_row_per_model_and_backend(run_copy, cli, tmp_path):
    out = tmp_path / "bench.json"
    code, stdout, err = cli("saliency")("bench", "--models", run_copy, "--backends",
                                        "torch,torch-channels-last,onnxruntime,onnxruntime-int8", "--size", "32x64",
                                        "--rounds", "1", "--json", out, "--quiet")
    assert code == 0, err
    rows = json.loads(out.read_text())
    assert [row["backend"] for row in rows] == ["torch", "torch-channels-last", "onnxruntime", "onnxruntime-int8"]
    assert set(rows[0]) == {"model", "backend", "params", "mb", "gflops", "ms_per_image", "fps", "gflops_per_s",
                            "peak_fraction", "speed_ratio_vs_first"}
    assert all(row["fps"] > 0 and 0 < row["peak_fraction"] for row in rows)
    assert "measured matmul peak" in stdout


def test_predict_on_onnxruntime_writes_the_maps_torch_writes(world, tmp_path, cli):
    image = sorted((world / "data" / "images" / "test").glob("*.jpg"))[0]
    for backend in ("torch", "onnxruntime"):
        code, _, err = cli("saliency")("predict", "--model", world / "student", image, "--out", tmp_path / backend,
                                       "--backend", backend, "--quiet")
        assert code == 0, err
    torch_map, onnx_map = (np.asarray(Image.open(tmp_path / backend / f"{image.stem}.png"), np.int16)
                           for backend in ("torch", "onnxruntime"))
    assert np.abs(torch_map - onnx_map).max() <= 1
