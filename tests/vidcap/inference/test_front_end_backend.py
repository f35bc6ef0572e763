"""The captioner's front end on onnxruntime, the default where it is installed: the encoder's export has a dynamic
batch (frames of any number of videos) and gives torch's features to 1e-4 at batch 1 and 2, and features extracted
into the cache are bit-identical however the extraction ran (fresh or cached export, a new session, another thread
count, interrupted and resumed), which is what lets a resumed `vidcap train` end with the uninterrupted weights."""
from __future__ import annotations

import pytest
import torch

from dataclasses import replace

from saliency.backends import EXPORT_FOLDER, ExportedModel, exported_session
from saliency.infra.errors import UserError
from saliency.models import build_untrained
from vidcap.inference.front_end_backend import backends_name, resolve_backends, split_backends_name, use_backend
from vidcap.model.captioner import CaptionerConfig, VisualFrontEnd, with_saliency
from vidcap.cli import main
from tests.support.captioner_runs import VIDCAP_TINY
from vidcap.training.feature_cache import FeatureCache, extractor_fingerprint
from vidcap.data.video import FrameSamplerConfig
from vidcap.model.encoder import EncoderConfig, FrameEncoder
from vidcap.run import VidcapRunConfig, load_run

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = (32, 64)


def frames(count: int) -> torch.Tensor:
    return torch.randn(count, 3, *SIZE, generator=torch.Generator().manual_seed(count))


@pytest.mark.parametrize("batch", [1, 2, 8])
def test_the_encoder_export_gives_torchs_features_to_1e_4_at_any_batch(batch):
    torch.manual_seed(0)
    encoder = FrameEncoder(EncoderConfig(backbone="small-cnn", pretrained=False, grid=2)).eval()
    session = exported_session(encoder, "onnxruntime", SIZE, output="features")
    assert session.batch_is_dynamic()
    with torch.no_grad():
        expected = encoder(frames(batch))
    assert expected.shape == (batch, encoder.out_channels, 2, 2)
    assert (session(frames(batch)) - expected).abs().max() <= 1e-4 * max(1.0, expected.abs().max().item())


def test_a_captioner_runs_on_onnxruntime_unless_told_otherwise(tiny_captioner, tmp_path):
    assert VidcapRunConfig().backend == "auto"
    model, config = load_run(tiny_captioner / "captioner")
    assert config.backend == "auto"
    assert use_backend(model.front, config, None, tmp_path / EXPORT_FOLDER) == ("onnxruntime", "onnxruntime")
    assert model.front.encoder.session is not None and model.front.encoder.session.accepts(frames(1))


def test_the_saliency_model_can_run_on_a_backend_of_its_own(tmp_path):
    """An int8 (here float32 ONNX) encoder beside a saliency model on torch: each runs where it was told, the
    config's `saliency_backend` applies unless overridden, and the feature cache's fingerprint tells them apart."""
    config = VidcapRunConfig(captioner=with_saliency(CaptionerConfig(
        sampler=FrameSamplerConfig(n_frames=2, size=SIZE),
        encoder=EncoderConfig(backbone="small-cnn", pretrained=False, grid=2)), "student", weighting="prior"))
    assert resolve_backends(config) == ("onnxruntime", "onnxruntime")
    assert resolve_backends(replace(config, saliency_backend="torch")) == ("onnxruntime", "torch")
    assert resolve_backends(config, "torch", "onnxruntime-int8") == ("torch", "onnxruntime-int8")
    with pytest.raises(UserError, match="unknown backend 'fast'"):
        resolve_backends(config, None, "fast")
    student = build_untrained("student", width=8, depth=1, decoder_width=8).eval()
    front = VisualFrontEnd(config.captioner, student).eval()
    assert use_backend(front, config, "onnxruntime", tmp_path, "torch") == ("onnxruntime", "torch")
    assert front.saliency_model is student and front.encoder.session is not None
    front = VisualFrontEnd(config.captioner, student).eval()
    use_backend(front, replace(config, backend="torch", saliency_backend="onnxruntime"), None, tmp_path)
    assert front.encoder.session is None and isinstance(front.saliency_model, ExportedModel)
    state = front.encoder.state_dict()
    assert backends_name("onnxruntime", "onnxruntime") == "onnxruntime"
    for pair in [("onnxruntime", "onnxruntime"), ("onnxruntime-int8", "onnxruntime"), ("torch", "onnxruntime-int8")]:
        assert split_backends_name(backends_name(*pair)) == pair
    fingerprints = {extractor_fingerprint(config.captioner, state, backends_name("onnxruntime-int8", saliency))
                    for saliency in ("onnxruntime-int8", "onnxruntime")}
    assert len(fingerprints) == 2


def cached_tokens(cache_root) -> dict[str, torch.Tensor]:
    """Every video's cached tokens in the one feature cache under `cache_root`."""
    (folder,) = [path for path in cache_root.iterdir() if path.is_dir()]
    cache = FeatureCache(cache_root, folder.name)
    return {video_id: cache.get(video_id)[0] for video_id in cache.index}


def extract(data, cache, splits: str, *more: str) -> int:
    """`vidcap extract` of the tiny captioner's settings (its default backend) in this process."""
    return main(["extract", *VIDCAP_TINY, "--set", f"data.root={data}", "--set", f"data.cache_dir={cache}", *more,
                 "--splits", splits])


def test_extracted_features_are_bit_identical_however_the_extraction_ran(tiny_captioner, tmp_path):
    data = tiny_captioner / "vidcap-data"
    assert extract(data, tmp_path / "whole", "train,val,test") == 0
    # interrupted after one split and resumed on two threads: a new session of the export it cached, other neighbours
    assert extract(data, tmp_path / "resumed", "val") == 0
    assert extract(data, tmp_path / "resumed", "train,val,test", "--set", "threads=2") == 0
    whole, resumed = cached_tokens(tmp_path / "whole"), cached_tokens(tmp_path / "resumed")
    assert len(whole) == 6 and whole.keys() == resumed.keys()
    assert all(torch.equal(whole[video], resumed[video]) for video in whole)
    exports = [sorted((path.name, path.read_bytes()) for path in (tmp_path / name).glob(f"*/{EXPORT_FOLDER}/*.onnx"))
               for name in ("whole", "resumed")]
    assert exports[0] and exports[0] == exports[1]  # and the export itself is made byte for byte alike
