"""Caption decoder: teacher-forcing loss, HF generate() (greedy and beam) over visual tokens, the additive
saliency bias on cross-attention, and local pretrained loading (safetensors only)."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from saliency.infra.errors import UserError
from vidcap.model.weighting import build_weighting
from vidcap.model.decoder import CaptionDecoder, DecoderConfig

VOCAB, PAD, BOS, EOS = 12, 0, 1, 2
VISUAL_DIM, M = 8, 6
TINY = DecoderConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64, dropout=0.0)
POSITIONS = 16
CAPTIONS = [[3, 4, 5], [6, 7, 8, 9, 10]]  # video 0 and video 1, without BOS/EOS


pytestmark = pytest.mark.usefixtures("one_thread")


def make_decoder(config: DecoderConfig = TINY, seed: int = 0) -> CaptionDecoder:
    """A decoder of the `prior` weighting: the per-token saliency it is given is an attention bias."""
    torch.manual_seed(seed)
    return CaptionDecoder(config, vocab_size=VOCAB, visual_dim=VISUAL_DIM, pad_id=PAD, bos_id=BOS, eos_id=EOS,
                          max_positions=POSITIONS, weighting=build_weighting("prior"))


def visual(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, M, VISUAL_DIM, generator=torch.Generator().manual_seed(seed))


def batch_of(captions: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """[BOS, words, EOS] right-padded with PAD → input_ids, attention_mask [B,L]."""
    length = 2 + max(map(len, captions))
    ids = torch.full((len(captions), length), PAD)
    for row, words in enumerate(captions):
        ids[row, :len(words) + 2] = torch.tensor([BOS, *words, EOS])
    return ids, (ids != PAD).long()


def pad_to(ids: torch.Tensor, length: int) -> torch.Tensor:
    return F.pad(ids, (0, length - ids.shape[1]), value=PAD)


@pytest.fixture(scope="module")
def overfit() -> tuple[CaptionDecoder, list[float]]:
    """A decoder trained for 30 steps to give video i the caption CAPTIONS[i]; and its losses."""
    decoder = make_decoder()
    ids, mask = batch_of(CAPTIONS)
    optimiser = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss, _ = decoder(visual(), ids, mask)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return decoder.eval(), losses


def test_loss_is_finite_and_falls_when_overfitting_one_batch(overfit):
    _, losses = overfit
    assert all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < 0.4 * losses[0]


def test_loss_is_label_smoothed_cross_entropy_over_the_real_next_tokens_only():
    decoder = make_decoder().eval()
    ids, mask = batch_of(CAPTIONS)
    loss, logits = decoder(visual(), ids, mask)
    assert logits.shape == (2, ids.shape[1], VOCAB)
    real = mask[:, 1:].bool()  # [B,L-1]
    expected = F.cross_entropy(logits[:, :-1][real], ids[:, 1:][real], label_smoothing=TINY.label_smoothing)
    assert torch.allclose(loss, expected)


def test_extra_padding_changes_neither_loss_nor_logits():
    decoder = make_decoder().eval()
    ids, mask = batch_of(CAPTIONS)
    loss, logits = decoder(visual(), ids, mask)
    longer = pad_to(ids, ids.shape[1] + 3)
    loss_padded, logits_padded = decoder(visual(), longer, (longer != PAD).long())
    assert torch.allclose(loss, loss_padded, atol=1e-6)
    assert torch.allclose(logits, logits_padded[:, :ids.shape[1]], atol=1e-5)


def test_overfit_decoder_reproduces_each_videos_caption_then_pads(overfit):
    decoder, _ = overfit
    expected = pad_to(torch.tensor([CAPTIONS[0] + [EOS]]), 6)
    expected = torch.cat([expected, torch.tensor([CAPTIONS[1] + [EOS]])])  # [[3,4,5,EOS,PAD,PAD], [6..10,EOS]]
    for beams in (1, 3):
        assert torch.equal(decoder.generate(visual(), num_beams=beams, max_length=10), expected)


def test_generation_stops_at_eos(overfit):
    decoder, _ = overfit
    for beams in (1, 3):
        alone = decoder.generate(visual()[:1], num_beams=beams, max_length=10)
        assert alone.tolist() == [CAPTIONS[0] + [EOS]]


def test_max_length_is_respected(overfit):
    decoder, _ = overfit
    for beams in (1, 3):
        assert decoder.generate(visual(), num_beams=beams, max_length=2).tolist() == [[3, 4], [6, 7]]
    with pytest.raises(UserError, match="max_positions"):
        decoder.generate(visual(), max_length=POSITIONS)


def test_num_beams_1_is_greedy_decoding_of_the_forward_pass():
    decoder = make_decoder(seed=3).eval()
    vis, bias = visual(), torch.randn(2, M)
    banned = [PAD, BOS, EOS]  # no EOS: both run the full length
    ids = torch.full((2, 1), BOS)
    for _ in range(8):
        _, logits = decoder(vis, ids, torch.ones_like(ids), bias)  # no cache: the full prefix each step
        scores = logits[:, -1].clone()  # [B,V]
        scores[:, banned] = float("-inf")
        ids = torch.cat([ids, scores.argmax(dim=-1, keepdim=True)], dim=1)
    generated = decoder.generate(vis, bias, num_beams=1, max_length=8, suppress_tokens=banned)
    assert torch.equal(generated, ids[:, 1:])


@pytest.mark.parametrize("with_bias", [False, True])
def test_beam_search_on_a_batch_equals_each_video_decoded_alone(with_bias):
    decoder = make_decoder(seed=4).eval()
    vis = visual(batch=3, seed=5)
    bias = torch.randn(3, M) if with_bias else None
    together = decoder.generate(vis, bias, num_beams=3, max_length=8)
    for i in range(3):
        alone = decoder.generate(vis[i:i + 1], None if bias is None else bias[i:i + 1], num_beams=3, max_length=8)
        assert torch.equal(pad_to(alone, together.shape[1]), together[i:i + 1])


def test_zero_visual_bias_equals_no_bias():
    decoder = make_decoder().eval()
    ids, mask = batch_of(CAPTIONS)
    zero = torch.zeros(2, M)
    assert torch.allclose(decoder(visual(), ids, mask, zero)[1], decoder(visual(), ids, mask)[1], atol=1e-6)
    assert torch.equal(decoder.generate(visual(), zero, max_length=10), decoder.generate(visual(), max_length=10))


def test_visual_bias_is_additive_on_the_cross_attention_logits():
    decoder = make_decoder().eval()
    with torch.no_grad():
        decoder.visual_position.zero_()  # so token 2 alone equals token 2 at its place among the others
    ids, mask = batch_of(CAPTIONS)
    plain = decoder(visual(), ids, mask)[1]
    assert not torch.allclose(decoder(visual(), ids, mask, torch.randn(2, M))[1], plain, atol=1e-3)
    only_token_2 = torch.full((2, M), -1e4)
    only_token_2[:, 2] = 0.0  # every other visual token gets zero attention weight
    masked = decoder(visual(), ids, mask, only_token_2)[1]
    assert torch.allclose(masked, decoder(visual()[:, 2:3], ids, mask)[1], atol=1e-5)


def test_gate_scales_the_projected_tokens_after_their_layernorm_and_masks_nothing():
    torch.manual_seed(0)
    gated = CaptionDecoder(TINY, vocab_size=VOCAB, visual_dim=VISUAL_DIM, pad_id=PAD, bos_id=BOS, eos_id=EOS,
                           max_positions=POSITIONS, weighting=build_weighting("gate", alpha=2.0)).eval()
    maps = torch.rand(2, M, generator=torch.Generator().manual_seed(4))
    memory, mask = gated.encode_visual(visual(), maps)
    expected = gated.visual_proj(visual()) * (1 + 2.0 * maps[..., None]) + gated.visual_position[:M]
    assert mask is None and torch.allclose(memory, expected, atol=1e-6)
    assert not torch.allclose(memory, gated.encode_visual(visual(), None)[0], atol=1e-3)  # the maps matter
    ids, mask = batch_of(CAPTIONS)
    assert torch.allclose(gated(visual(), ids, mask, torch.zeros(2, M))[1], gated(visual(), ids, mask)[1], atol=1e-6)


def test_pretrained_path_round_trip_gives_identical_logits(tmp_path):
    decoder = make_decoder(seed=6).eval()
    decoder.decoder.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = make_decoder(DecoderConfig(pretrained_path=str(tmp_path)), seed=7).eval()  # sizes come from the files
    loaded.visual_proj.load_state_dict(decoder.visual_proj.state_dict())
    loaded.visual_position.data.copy_(decoder.visual_position.data)
    ids, mask = batch_of(CAPTIONS)
    assert torch.equal(loaded(visual(), ids, mask)[1], decoder(visual(), ids, mask)[1])


def test_pickled_pretrained_weights_are_refused(tmp_path):
    """A directory as `save_pretrained(safe_serialization=False)` leaves it (transformers 4; 5 always writes
    safetensors): config.json and a pickled pytorch_model.bin, which could run code when loaded."""
    language_model = make_decoder().decoder
    language_model.config.save_pretrained(tmp_path)
    torch.save(language_model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(UserError, match="must be safetensors") as refused:
        make_decoder(DecoderConfig(pretrained_path=str(tmp_path)))
    assert "\n" not in str(refused.value)


def test_a_plain_language_model_gets_fresh_cross_attention_and_nothing_else_is_let_go(tmp_path):
    """A GPT-2 without cross-attention loads (those layers start fresh); weights it lacks or does not know of are a
    one-line error, never a silently re-initialised layer."""
    from safetensors.torch import load_file, save_file
    from transformers import GPT2Config, GPT2LMHeadModel

    plain = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=POSITIONS, n_embd=TINY.hidden_size,
                                       n_layer=TINY.layers, n_head=TINY.heads))
    plain.save_pretrained(tmp_path, safe_serialization=True)
    loaded = make_decoder(DecoderConfig(pretrained_path=str(tmp_path))).decoder
    assert torch.equal(loaded.transformer.h[0].mlp.c_fc.weight, plain.transformer.h[0].mlp.c_fc.weight)
    weights = load_file(tmp_path / "model.safetensors")
    for change, problem in (("drop", "1 missing, e.g. transformer.h.0.mlp.c_fc.weight"), ("add", "1 unexpected")):
        damaged = dict(weights)
        if change == "drop":
            del damaged["transformer.h.0.mlp.c_fc.weight"]
        else:
            damaged["transformer.h.0.extra.weight"] = torch.zeros(2)
        save_file(damaged, tmp_path / "model.safetensors", metadata={"format": "pt"})
        with pytest.raises(UserError, match="decoder weights do not fit") as refused:
            make_decoder(DecoderConfig(pretrained_path=str(tmp_path)))
        assert problem in str(refused.value) and "\n" not in str(refused.value)


def test_visual_positions_tell_the_decoder_where_a_token_comes_from():
    decoder = make_decoder().eval()
    ids, mask = batch_of(CAPTIONS)
    tokens = visual()
    swapped = tokens[:, [1, 0, *range(2, M)]]  # the same tokens with the first two exchanged

    def order_effect() -> float:
        return (decoder(tokens, ids, mask)[1] - decoder(swapped, ids, mask)[1]).abs().max().item()

    with torch.no_grad():
        decoder.visual_position.zero_()
    blind = order_effect()  # without positions cross-attention cannot see the order ...
    with torch.no_grad():
        decoder.visual_position.normal_()
    assert blind < 1e-5 and order_effect() > 100 * max(blind, 1e-7)  # ... with them it can


def test_bad_pretrained_paths_and_sizes_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not a saved model directory"):
        make_decoder(DecoderConfig(pretrained_path=str(tmp_path / "missing")))
    make_decoder().decoder.save_pretrained(tmp_path)
    with pytest.raises(UserError, match="vocabulary"):
        CaptionDecoder(DecoderConfig(pretrained_path=str(tmp_path)), vocab_size=VOCAB + 1, visual_dim=VISUAL_DIM,
                       pad_id=PAD, bos_id=BOS, eos_id=EOS,
                       max_positions=POSITIONS)
    with pytest.raises(UserError, match="multiple of heads"):
        make_decoder(replace(TINY, heads=3))
    with pytest.raises(UserError, match="max_positions"):
        ids = torch.full((1, POSITIONS + 1), 3)
        make_decoder()(visual(batch=1), ids, torch.ones_like(ids))


def test_a_decoder_whose_weighting_hands_it_nothing_refuses_a_per_token_saliency():
    torch.manual_seed(0)
    plain = CaptionDecoder(TINY, vocab_size=VOCAB, visual_dim=VISUAL_DIM, pad_id=PAD, bos_id=BOS, eos_id=EOS,
                           max_positions=POSITIONS).eval()
    with pytest.raises(ValueError, match="hands the decoder no per-token signal"):
        plain.encode_visual(visual(), torch.zeros(2, M))
