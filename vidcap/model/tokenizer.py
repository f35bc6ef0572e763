"""Word-level caption tokenizer on HuggingFace `tokenizers`, saved as a `tokenizer.json` that
`tokenizers.Tokenizer.from_file` (and so `transformers.PreTrainedTokenizerFast`) loads as it is.

Normalisation: NFKC, lower-case, apostrophes removed ("don't" → "dont"), every other punctuation or
symbol character replaced by a space, whitespace collapsed. Letters of any script are kept with their
accents ("Café" → "café"; its decomposed spelling gives the same word). Ids: [PAD]=0, [BOS]=1,
[EOS]=2, [UNK]=3, then the training words by falling count (ties alphabetical).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel

from saliency.infra.errors import UserError
from saliency.infra.rundir import atomic_write_text

PAD, BOS, EOS, UNK = "[PAD]", "[BOS]", "[EOS]", "[UNK]"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)  # their ids are their positions
TOKENIZER_FILE = "tokenizer.json"


def _backend(vocab: dict[str, int], max_length: int) -> Tokenizer:
    """The `tokenizers.Tokenizer` for `vocab`: normaliser, word split, [BOS] … [EOS], truncation, padding."""
    tokenizer = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.NFKC(),
        normalizers.Lowercase(),
        normalizers.Replace(Regex("['’‘`]"), ""),
        normalizers.Replace(Regex(r"[^\w\s]|_"), " "),
    ])
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])])
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    # `tokenizers` counts the [BOS]/[EOS] the post-processor adds against the limit.
    tokenizer.enable_truncation(max_length=max_length + 2)
    tokenizer.enable_padding(pad_id=vocab[PAD], pad_token=PAD)
    return tokenizer


class CaptionTokenizer:
    """Captions ↔ id sequences `[BOS] w1 … wn [EOS]` (n ≤ `max_length` words); rare words are [UNK]."""

    pad_id, bos_id, eos_id, unk_id = range(len(SPECIAL_TOKENS))

    def __init__(self, backend: Tokenizer, min_count: int, max_length: int) -> None:
        self.backend = backend  # the `tokenizers.Tokenizer`, e.g. for `PreTrainedTokenizerFast(tokenizer_object=...)`
        self.min_count = min_count
        self.max_length = max_length

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 2, max_length: int = 20) -> CaptionTokenizer:
        """A vocabulary of the normalised words seen at least `min_count` times in `captions`."""
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise UserError(f"tokenizer min_count must be an integer >= 1, got {min_count!r}")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise UserError(f"tokenizer max_length must be an integer >= 1, got {max_length!r}")
        normalizer = _backend({token: i for i, token in enumerate(SPECIAL_TOKENS)}, max_length)
        # Counted here rather than by WordLevelTrainer, which starts the Rust thread pool: a DataLoader
        # forking workers after that makes `tokenizers` warn and turn its parallelism off.
        counts = Counter(word for caption in captions for word in _words(normalizer, caption))
        words = sorted((word for word, count in counts.items() if count >= min_count),
                       key=lambda word: (-counts[word], word))
        if not words:
            raise UserError(f"no word occurs {min_count} or more times in the training captions "
                            f"({len(counts)} distinct words); lower min_count or check the captions")
        vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *words])}
        return cls(_backend(vocab, max_length), min_count, max_length)

    def save(self, path: str | Path) -> None:
        """Write `tokenizer.json` atomically; `min_count` rides along in the model entry (which
        `tokenizers` ignores), `max_length` is the truncation limit less the two specials."""
        data = json.loads(self.backend.to_str())
        data["model"]["min_count"] = self.min_count
        atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> CaptionTokenizer:
        """Load a `tokenizer.json` written by `save`; `path` may also be the run directory holding it."""
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        if not path.is_file():
            raise UserError(f"{path}: tokenizer file not found")
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text)
            backend = Tokenizer.from_str(text)
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"{path}: cannot read tokenizer file ({err})") from err
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: corrupt tokenizer file (invalid JSON at line {err.lineno} "
                            f"column {err.colno}: {err.msg})") from err
        except Exception as err:  # `tokenizers` raises a bare Exception for files it cannot parse
            raise UserError(f"{path}: not a tokenizer file ({err})") from err
        model, truncation = data.get("model") or {}, data.get("truncation") or {}
        specials = [backend.token_to_id(token) for token in SPECIAL_TOKENS]
        if model.get("type") != "WordLevel" or specials != list(range(len(SPECIAL_TOKENS))) \
                or not isinstance(truncation.get("max_length"), int) or truncation["max_length"] < 3:
            raise UserError(f"{path}: not a vidcap caption tokenizer (needs a WordLevel model with "
                            f"{', '.join(f'{t}={i}' for i, t in enumerate(SPECIAL_TOKENS))} and truncation)")
        return cls(backend, int(model.get("min_count", 1)), truncation["max_length"] - 2)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def normalize(self, caption: str) -> str:
        """The caption as the vocabulary sees it: lower-case, no punctuation, single spaces."""
        return " ".join(_words(self.backend, caption))

    def encode(self, caption: str) -> list[int]:
        """`[BOS] w1 … wn [EOS]` ids, the words truncated to `max_length`."""
        # Normalising first also keeps a literal "[PAD]" in a caption from matching the special token.
        return self.backend.encode(self.normalize(caption)).ids

    def encode_batch(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, attention_mask), both int64 `[B, L]`, L the longest encoding; padded with [PAD] / 0."""
        encoded = [self.encode(caption) for caption in captions]
        length = max((len(ids) for ids in encoded), default=0)
        ids = torch.full((len(encoded), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), length), dtype=torch.long)
        for row, sequence in enumerate(encoded):
            ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
            mask[row, : len(sequence)] = 1
        return ids, mask

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The words of `ids` up to the first [EOS], special tokens skipped, joined by single spaces."""
        words = []
        for token_id in (ids.tolist() if isinstance(ids, torch.Tensor) else ids):
            token_id = int(token_id)
            if token_id == self.eos_id:
                break
            if not 0 <= token_id < self.vocab_size:
                raise ValueError(f"token id {token_id} outside the vocabulary (size {self.vocab_size})")
            if token_id >= len(SPECIAL_TOKENS):
                words.append(self.backend.id_to_token(token_id))
        return " ".join(words)

    def decode_batch(self, ids: torch.Tensor | Sequence[Sequence[int]]) -> list[str]:
        """`decode` of each row of `[B, L]` ids."""
        return [self.decode(row) for row in ids]


def _words(tokenizer: Tokenizer, caption: str) -> list[str]:
    """The normalised words of `caption`, exactly as `tokenizer`'s normaliser and pre-tokenizer make them."""
    if not isinstance(caption, str):
        raise TypeError(f"a caption must be a str, got {type(caption).__name__}")
    normalized = tokenizer.normalizer.normalize_str(caption)
    return [word for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(normalized)]
