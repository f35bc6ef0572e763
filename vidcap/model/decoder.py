"""Caption decoder: projected visual tokens → a `transformers` GPT-2 with cross-attention.

The language model is `GPT2LMHeadModel` (pre-LayerNorm, learned positions, tied input/output
embeddings) built from `GPT2Config(add_cross_attention=True)`, randomly initialised or loaded from a
local `save_pretrained` directory holding safetensors weights (pickled `pytorch_model.bin` weights are
refused: unpickling can run code). It runs in float32, the precision of the cached visual tokens. Every
block cross-attends to the visual tokens, passed as `encoder_hidden_states`; search is
`GenerationMixin.generate()` (greedy or beam), which carries the visual tokens along as model kwargs and
repeats them per beam.

What the saliency weighting hands the decoder per visual token (`token_saliency`) is applied by the weighting's own
strategy (`vidcap.model.weighting`: `into_decoder`) to the projected tokens: `prior`'s log S enters as
`encoder_attention_mask` in its 4-D float form `[B,1,1,M]` (transformers passes a 4-D mask through unchanged and its
attention functions, sdpa and eager, add it to the cross-attention logits, so the bias is exactly
`softmax(q·k/√d + log S)` over the visual tokens); `gate`'s maps S scale the projected tokens by (1 + α·S) after the
projection's LayerNorm, where no normalisation undoes them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import AutoConfig, GPT2Config, GPT2LMHeadModel

from saliency.infra.config import require, require_positive
from saliency.infra.errors import UserError
from vidcap.model.weighting import NoWeighting, Weighting

IGNORE = -100  # target id that cross-entropy skips
SAFETENSORS_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")  # one file, or the index of shards


@dataclass
class DecoderConfig:
    hidden_size: int = 256  # model width (the visual tokens are projected to it)
    layers: int = 2  # transformer blocks, each: causal self-attention, cross-attention, MLP
    heads: int = 4  # attention heads; must divide hidden_size
    intermediate_size: int = 1024  # MLP width
    dropout: float = 0.1  # on embeddings, residuals and attention weights
    visual_positions: int = 1024  # learned positions of the visual tokens (frame-major, then row, column)
    pretrained_path: str | None = None  # local `save_pretrained` directory; overrides the sizes above
    label_smoothing: float = 0.1  # of the teacher-forcing cross-entropy

    def __post_init__(self) -> None:
        require_positive(self, "hidden_size", "layers", "heads", "intermediate_size", "visual_positions")
        require(self.pretrained_path is not None or self.hidden_size % self.heads == 0, "hidden_size",
                f"{self.hidden_size} is not a multiple of heads {self.heads}")
        require(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(0 <= self.label_smoothing < 1, "label_smoothing", f"must be in [0, 1), got {self.label_smoothing}")


CROSS_ATTENTION_KEY = re.compile(r"\.(crossattention|ln_cross_attn)\.")  # what a plain GPT-2 lacks


def build_language_model(config: DecoderConfig, vocab_size: int, bos_id: int, eos_id: int,
                         max_positions: int) -> GPT2LMHeadModel:
    """A GPT-2 LM with cross-attention and `max_positions` learned positions: from `config` (random init) or
    from `config.pretrained_path` (local safetensors files only; cross-attention layers it lacks are freshly
    initialised; it must have at least `max_positions` positions)."""
    if config.pretrained_path is None:
        gpt = GPT2Config(vocab_size=vocab_size, n_positions=max_positions, n_embd=config.hidden_size,
                         n_layer=config.layers, n_head=config.heads, n_inner=config.intermediate_size,
                         resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
                         add_cross_attention=True, bos_token_id=bos_id, eos_token_id=eos_id)
        # No pad_token_id in the config: generate() gets it explicitly, and with it set GPT-2 warns about padding
        # whenever generate() feeds PAD to finished sequences (it drops the all-ones attention mask).
        return GPT2LMHeadModel(gpt)
    path = Path(config.pretrained_path)
    if not (path / "config.json").is_file():
        raise UserError(f"{path}: decoder pretrained_path is not a saved model directory (no config.json)")
    if not any((path / name).is_file() for name in SAFETENSORS_WEIGHTS):
        raise UserError(f"{path}: decoder weights must be safetensors (model.safetensors), pickled weights such as "
                        f"pytorch_model.bin are refused; re-save with save_pretrained(safe_serialization=True)")
    try:
        gpt = AutoConfig.from_pretrained(path, local_files_only=True)
        if not isinstance(gpt, GPT2Config):
            raise UserError(f"{path}: decoder must be a GPT-2 model, got model_type {gpt.model_type!r}")
        gpt.add_cross_attention = True
        model, loading = GPT2LMHeadModel.from_pretrained(path, config=gpt, local_files_only=True, use_safetensors=True,
                                                         output_loading_info=True)
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: cannot load the decoder ({str(error).splitlines()[0]})") from None
    # strict but for the cross-attention layers a plain language model lacks (freshly initialised, as documented)
    missing = [key for key in loading["missing_keys"] if not CROSS_ATTENTION_KEY.search(key)]
    unfit = {"missing": missing, "unexpected": list(loading["unexpected_keys"]),
             "of another shape": [str(entry[0]) for entry in loading["mismatched_keys"]]}
    if any(unfit.values()):
        raise UserError(f"{path}: decoder weights do not fit the GPT-2 its config.json describes (" + "; ".join(
            f"{len(keys)} {kind}, e.g. {keys[0]}" for kind, keys in unfit.items() if keys) + ")")
    if gpt.vocab_size != vocab_size:
        raise UserError(f"{path}: decoder vocabulary has {gpt.vocab_size} tokens, the tokenizer {vocab_size}")
    if gpt.n_positions < max_positions:
        raise UserError(f"{path}: decoder has {gpt.n_positions} positions, captions need {max_positions} "
                        f"(captioner.max_length + 2)")
    return model


def sequence_log_probs(logits: Tensor, ids: Tensor, pad_id: int) -> tuple[Tensor, Tensor]:
    """Log-probabilities `[N,L]` of the tokens `ids` `[N,L]` under teacher-forced `logits` `[N,1+L,V]` (position i
    scores token i+1 of BOS + ids), and the mask `[N,L]` of the tokens the caption has (PAD after EOS is not one)."""
    log_probs = F.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, ids[..., None]).squeeze(-1)  # [N,L]
    return log_probs, ids != pad_id


class CaptionDecoder(nn.Module):
    """Visual tokens `[B,M,Dv]` (+ the weighting's per-token saliency `[B,M]`, for `prior` and `gate`) → caption
    token ids.

    Captions are `[BOS, w1..wn, EOS, PAD...]` (right-padded); token i predicts token i+1.
    """

    def __init__(self, config: DecoderConfig, vocab_size: int, visual_dim: int, pad_id: int, bos_id: int,
                 eos_id: int, max_positions: int, weighting: Weighting | None = None):
        super().__init__()
        self.config = config
        self.weighting = weighting or NoWeighting()  # applies the per-token saliency to the projected tokens
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.decoder = build_language_model(config, vocab_size, bos_id, eos_id, max_positions)
        width = self.decoder.config.n_embd
        self.visual_proj = nn.Sequential(nn.Linear(visual_dim, width), nn.LayerNorm(width))
        # Cross-attention is blind to order: without these the decoder could not tell which frame or
        # where in it a token comes from, so motion ("moves left") would be unlearnable.
        self.visual_position = nn.Parameter(torch.zeros(config.visual_positions, width))
        nn.init.normal_(self.visual_position, std=0.02)

    @property
    def max_positions(self) -> int:
        return self.decoder.config.n_positions

    def encode_visual(self, tokens_vis: Tensor, token_saliency: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Visual tokens `[B,M,Dv]` → `[B,M,D]`, and an additive cross-attention mask `[B,1,1,M]` or None: the
        weighting applies its per-token saliency `[B,M]` (`Weighting.into_decoder`) before the positions are added."""
        if tokens_vis.shape[1] > self.visual_position.shape[0]:
            raise UserError(f"{tokens_vis.shape[1]} visual tokens exceed decoder.visual_positions "
                            f"{self.visual_position.shape[0]} (fewer frames or a smaller encoder.grid)")
        memory = self.visual_proj(tokens_vis)  # [B,M,D]
        if token_saliency is not None and token_saliency.shape != memory.shape[:2]:
            raise ValueError(f"token_saliency {tuple(token_saliency.shape)} must be [B,M] = {tuple(memory.shape[:2])}")
        memory, mask = self.weighting.into_decoder(memory, token_saliency)  # [B,M,D], [B,1,1,M] | None
        return memory + self.visual_position[: tokens_vis.shape[1]], mask  # [B,M,D]

    def forward(self, tokens_vis: Tensor, input_ids: Tensor, attention_mask: Tensor,
                token_saliency: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Teacher forcing. input_ids, attention_mask `[B,L]` → (label-smoothed cross-entropy over the
        non-PAD next tokens, logits `[B,L,V]` where position i scores token i+1)."""
        if input_ids.shape[1] > self.max_positions:
            raise UserError(f"captions of {input_ids.shape[1]} tokens exceed the decoder's max_positions "
                            f"{self.max_positions}")
        memory, memory_mask = self.encode_visual(tokens_vis, token_saliency)
        logits = self.decoder(input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=memory,
                              encoder_attention_mask=memory_mask, use_cache=False).logits  # [B,L,V]
        targets = input_ids[:, 1:]  # [B,L-1]
        ignored = (attention_mask[:, 1:] == 0) | (targets == self.pad_id)  # [B,L-1]
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), targets.masked_fill(ignored, IGNORE).flatten(),
                               ignore_index=IGNORE, label_smoothing=self.config.label_smoothing)
        return loss, logits

    @torch.no_grad()
    def mean_log_prob(self, tokens_vis: Tensor, ids: Tensor, token_saliency: Tensor | None = None) -> Tensor:
        """`[B]`: the mean log-probability of the tokens of captions `ids` `[B,L]` (as `generate` returns them: no BOS,
        EOS included, PAD after), teacher-forced on their visual tokens; call `.eval()` first."""
        start = torch.full((ids.shape[0], 1), self.bos_id, dtype=ids.dtype, device=ids.device)
        input_ids = torch.cat([start, ids], dim=1)  # [B,1+L]
        _, logits = self(tokens_vis, input_ids, (input_ids != self.pad_id).long(), token_saliency)
        log_probs, mask = sequence_log_probs(logits, ids, self.pad_id)  # [B,L] each
        return (log_probs * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)  # [B]

    @torch.no_grad()
    def generate(self, tokens_vis: Tensor, token_saliency: Tensor | None = None, num_beams: int = 3,
                 max_length: int = 20, length_penalty: float = 1.0, **generate_kwargs) -> Tensor:
        """Greedy (`num_beams=1`) or beam search by `transformers` `generate()`, from BOS. Returns
        `[B,L]` token ids without the BOS, L ≤ max_length, EOS included, PAD after it. Call `.eval()` first
        (dropout stays on in training mode); `generate_kwargs` go to HF `generate()` (e.g. no_repeat_ngram_size)."""
        if 1 + max_length > self.max_positions:
            raise UserError(f"max_length {max_length} + BOS exceeds the decoder's max_positions {self.max_positions}")
        memory, memory_mask = self.encode_visual(tokens_vis, token_saliency)
        start = torch.full((memory.shape[0], 1), self.bos_id, dtype=torch.long, device=memory.device)  # [B,1]
        options = {"do_sample": False, "num_beams": num_beams, "max_new_tokens": max_length,
                   "length_penalty": length_penalty, "bos_token_id": self.bos_id, "eos_token_id": self.eos_id,
                   "pad_token_id": self.pad_id,
                   "suppress_tokens": [self.pad_id, self.bos_id]}  # never targets in training; PAD only after EOS
        ids = self.decoder.generate(input_ids=start, attention_mask=torch.ones_like(start), encoder_hidden_states=memory,
                                    encoder_attention_mask=memory_mask, **(options | generate_kwargs))  # [B,1+L]
        ids = ids[:, 1:]  # [B,L]
        # HF beam search fills finished beams with EOS when pad id is 0 (`pad or eos` on a tensor): PAD them.
        is_eos = ids == self.eos_id  # [B,L]
        after_eos = is_eos.cumsum(dim=1) - is_eos.long() > 0  # [B,L], strictly after the first EOS
        return ids.masked_fill(after_eos, self.pad_id)  # [B,L]
