"""The composed captioner: one caption-length setting bounds what it writes; a motion saliency model sees each frame
with the frame before it."""

import pytest
import torch

from vidcap.model.captioner import Captioner, CaptionerConfig
from vidcap.model.decoder import DecoderConfig
from vidcap.model.encoder import EncoderConfig
from vidcap.model.tokenizer import SPECIAL_TOKENS, CaptionTokenizer


def test_a_caption_never_exceeds_max_length_words_even_without_an_end_token(one_thread):
    tokenizer = CaptionTokenizer.build(["a red ball moves left", "a blue star grows"], min_count=1, max_length=5)
    config = CaptionerConfig(encoder=EncoderConfig(backbone="small-cnn", pretrained=False, weighting="none", grid=1),
                             decoder=DecoderConfig(hidden_size=16, layers=1, heads=2, intermediate_size=32,
                                                   dropout=0.0, visual_positions=8),
                             max_length=5)
    torch.manual_seed(0)
    model = Captioner(config, tokenizer).eval()
    tokens = torch.randn(2, 4, model.front.out_channels)
    for beams in (1, 3):
        captions = model.generate(tokens, None, num_beams=beams, suppress_tokens=list(range(len(SPECIAL_TOKENS))))  # words only
        assert [len(caption.split()) for caption in captions] == [5, 5], captions


def stuck_captioner(repeats: int) -> Captioner:
    """A tiny captioner whose decoder writes the word "red" whatever it sees and whatever came before: the
    decoder's last LayerNorm gives one vector, and the (tied) embedding of "red" points along it."""
    tokenizer = CaptionTokenizer.build(["a red ball moves left", "a blue star grows"], min_count=1, max_length=8)
    config = CaptionerConfig(encoder=EncoderConfig(backbone="small-cnn", pretrained=False, weighting="none", grid=1),
                             decoder=DecoderConfig(hidden_size=16, layers=1, heads=2, intermediate_size=32,
                                                   dropout=0.0, visual_positions=8),
                             max_length=8, no_repeat_ngram_size=repeats)
    torch.manual_seed(0)
    model = Captioner(config, tokenizer).eval()
    gpt = model.decoder.decoder
    with torch.no_grad():
        gpt.transformer.ln_f.weight.zero_()
        gpt.transformer.ln_f.bias.copy_(torch.linspace(-1, 1, 16))
        gpt.transformer.wte.weight[tokenizer.backend.token_to_id("red")] = 10 * gpt.transformer.ln_f.bias
    return model


@pytest.mark.parametrize("beams", [1, 3])
def test_generation_never_says_a_pair_of_words_twice(one_thread, beams):
    tokens = torch.randn(2, 4, stuck_captioner(0).front.out_channels)
    special = list(range(len(SPECIAL_TOKENS)))
    stuck = stuck_captioner(0).generate(tokens, None, num_beams=beams, suppress_tokens=special)
    assert stuck == ["red red red red red red red red"] * 2  # what the rule is there for
    for caption in stuck_captioner(2).generate(tokens, None, num_beams=beams, suppress_tokens=special):
        pairs = list(zip(caption.split(), caption.split()[1:]))
        assert len(set(pairs)) == len(pairs) and caption.split().count("red") >= 4, caption


def mean_pairwise_cosine(memory: torch.Tensor) -> float:
    """Mean cosine between every two of the tokens `[B,M,D]`, across positions and videos (not a token with itself)."""
    unit = torch.nn.functional.normalize(memory.reshape(-1, memory.shape[-1]), dim=1)
    n = unit.shape[0]
    return float(((unit @ unit.T).sum() - n) / (n * n - n))


def test_normalised_stride_16_tokens_differ_across_positions_and_videos_where_the_old_ones_did_not(one_thread,
                                                                                                  tmp_path):
    """What the decoder attends to, after its projection and LayerNorm (positions left out), on the synthetic world:
    the random small-cnn at stride 32 without normalisation gave ~100x smaller features than the projection's bias,
    so every token came out the same."""
    from vidcap.model.captioner import VisualFrontEnd, frames_to_tensor
    from saliency.world import write_msrvtt
    from vidcap.data.video import FrameSamplerConfig, read_frames

    write_msrvtt(tmp_path, n=4, size=(64, 96), n_frames=8, progress=False)
    sampler = FrameSamplerConfig(n_frames=4, mode="segment", size=(64, 96), resize="stretch")
    frames = torch.stack([frames_to_tensor(read_frames(path, sampler)) for path in sorted(tmp_path.rglob("*.mp4"))])
    tokenizer = CaptionTokenizer.build(["a red ball moves left"], min_count=1, max_length=5)

    def cosine(encoder: EncoderConfig) -> float:
        model = Captioner(CaptionerConfig(encoder=encoder, decoder=DecoderConfig(hidden_size=64, heads=4)),
                          tokenizer, seed=0).eval()
        with torch.no_grad():
            tokens, _ = model.front(frames)
            memory, _ = model.decoder.encode_visual(tokens, None)
        return mean_pairwise_cosine(memory - model.decoder.visual_position[: memory.shape[1]].detach())

    old = cosine(EncoderConfig(backbone="small-cnn", pretrained=False, weighting="none", grid=4))
    new = cosine(EncoderConfig(backbone="small-cnn", pretrained=False, weighting="none", stride=16, normalise=True))
    assert old > 0.99 and new < 0.75, (old, new)


def saliency_front(model: torch.nn.Module | None, source: str = "student", size=None):
    """A tiny front end taking its maps from `model` (or the control `source`), at saliency input `size`."""
    from vidcap.model.captioner import VisualFrontEnd, with_saliency

    config = with_saliency(CaptionerConfig(encoder=EncoderConfig(backbone="small-cnn", pretrained=False, grid=2)),
                           source, weighting="prior")
    config.saliency.size = size
    return VisualFrontEnd(config, model).eval()


def test_a_motion_saliency_model_sees_each_frame_and_its_difference_to_the_frame_before(one_thread, motion_spy):
    from torch.nn.functional import interpolate

    from saliency.models.components import motion_input

    spy = motion_spy()
    front = saliency_front(spy, size=(16, 24))
    torch.manual_seed(0)
    frames, previous = torch.randn(2, 3, 3, 32, 48), torch.randn(2, 3, 3, 32, 48)  # (B, T, 3, H, W)
    with torch.no_grad():
        front(frames, previous=previous)
        front(frames, previous=frames)  # a still video
    resized = [interpolate(x.flatten(0, 1), size=(16, 24), mode="bilinear", antialias=True) for x in (frames, previous)]
    assert front.needs_previous and spy.seen[0].shape == (6, 6, 16, 24)
    assert torch.allclose(spy.seen[0], motion_input(*resized))
    assert torch.allclose(spy.seen[0][:, 3:], resized[0] - resized[1])
    assert torch.equal(spy.seen[1][:, :3], spy.seen[0][:, :3]) and not spy.seen[1][:, 3:].any()


def test_a_motion_saliency_model_without_previous_frames_is_a_clear_error(one_thread, motion_spy):
    with pytest.raises(ValueError, match="sees motion"):
        saliency_front(motion_spy())(torch.zeros(1, 2, 3, 32, 32))


def test_only_a_motion_saliency_model_needs_previous_frames(one_thread):
    from saliency.models import build_untrained

    still = build_untrained("student", width=8, depth=1, decoder_width=8).eval()
    assert not saliency_front(still).needs_previous
    assert saliency_front(build_untrained("student", motion=True, width=8, depth=1, decoder_width=8)).needs_previous == 1
    assert saliency_front(build_untrained("student", motion=4, width=8, depth=1, decoder_width=8)).needs_previous == 4
    assert not saliency_front(None, source="centre").needs_previous
    assert not saliency_front(None, source="none").needs_previous
