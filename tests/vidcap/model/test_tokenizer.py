"""Specification of the word-level caption tokenizer and its `tokenizer.json`."""

from __future__ import annotations

import json

import pytest
import tokenizers
import torch

from saliency.infra.errors import UserError
from vidcap.model.tokenizer import CaptionTokenizer

CAPTIONS = [
    "A big red circle moves to the left.",
    "a large red ball is moving left",
    "The big red circle moves left!",
    "A small blue square rises",
    "a tiny blue box goes up",
    "a small blue square goes up.",
    "someone plays the violin",  # every word once except "the"
]


@pytest.fixture(scope="module")
def tokenizer() -> CaptionTokenizer:
    return CaptionTokenizer.build(CAPTIONS, min_count=2, max_length=6)


def test_special_tokens_have_fixed_ids(tokenizer):
    assert (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.unk_id) == (0, 1, 2, 3)
    vocab = tokenizer.backend.get_vocab()
    assert [vocab[token] for token in ("[PAD]", "[BOS]", "[EOS]", "[UNK]")] == [0, 1, 2, 3]


def test_normalize_lowercases_strips_punctuation_and_collapses_whitespace(tokenizer):
    assert tokenizer.normalize("  A Big, RED circle...   moves (left)!  ") == "a big red circle moves left"
    assert tokenizer.normalize("the man's t-shirt\tis  blue") == "the mans t shirt is blue"
    assert tokenizer.normalize("?!.,") == ""


def test_unicode_letters_are_kept_and_composed_forms_agree():
    tokenizer = CaptionTokenizer.build(["Le CAFÉ est ouvert", "le cafe\u0301 est fermé"], min_count=2)
    # NFKC makes "e" + combining acute the same word as "é"; accents are not stripped.
    assert tokenizer.normalize("Café") == tokenizer.normalize("Cafe\u0301") == "café"
    assert tokenizer.normalize("cafe") == "cafe"
    assert tokenizer.decode(tokenizer.encode("CAFÉ!")) == "café"
    assert tokenizer.encode("cafe") == [tokenizer.bos_id, tokenizer.unk_id, tokenizer.eos_id]


def test_round_trip_gives_the_normalised_caption(tokenizer):
    caption = "The big RED circle, moves left."
    ids = tokenizer.encode(caption)
    assert ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.eos_id
    assert tokenizer.unk_id not in ids
    assert tokenizer.decode(ids) == tokenizer.normalize(caption) == "the big red circle moves left"


def test_words_rarer_than_min_count_become_unk(tokenizer):
    vocab = tokenizer.backend.get_vocab()
    assert "violin" not in vocab and "red" in vocab and "the" in vocab
    assert tokenizer.encode("the violin") == [tokenizer.bos_id, vocab["the"], tokenizer.unk_id, tokenizer.eos_id]
    assert tokenizer.decode(tokenizer.encode("the violin")) == "the"  # [UNK] is skipped like every special
    everything = CaptionTokenizer.build(CAPTIONS, min_count=1)
    assert "violin" in everything.backend.get_vocab()
    assert everything.vocab_size > tokenizer.vocab_size


def test_vocabulary_is_ordered_by_count_then_alphabetically():
    tokenizer = CaptionTokenizer.build(["b a", "a c", "c b a", "d"], min_count=1)
    vocab = tokenizer.backend.get_vocab()
    assert sorted(vocab, key=vocab.get)[4:] == ["a", "b", "c", "d"]
    assert tokenizer.vocab_size == 8


def test_long_captions_are_truncated_to_max_length_words(tokenizer):
    ids = tokenizer.encode("a big red circle moves left and a small blue square goes up")
    assert len(ids) == 6 + 2 and ids[-1] == tokenizer.eos_id
    assert tokenizer.decode(ids) == "a big red circle moves left"
    assert len(tokenizer.encode("")) == 2


def test_encode_batch_pads_with_pad_and_masks_padding(tokenizer):
    ids, mask = tokenizer.encode_batch(["a red circle", "", "a big red circle moves left"])
    assert ids.dtype == mask.dtype == torch.long and ids.shape == mask.shape == (3, 8)
    assert mask.sum(dim=1).tolist() == [5, 2, 8]
    assert (ids[mask == 0] == tokenizer.pad_id).all()
    assert ids[0, :5].tolist() == tokenizer.encode("a red circle")
    assert tokenizer.decode_batch(ids) == ["a red circle", "", "a big red circle moves left"]


def test_decode_stops_at_eos_and_rejects_unknown_ids(tokenizer):
    red = tokenizer.backend.token_to_id("red")
    assert tokenizer.decode(torch.tensor([1, red, 2, red, 0])) == "red"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tokenizer.decode([1, tokenizer.vocab_size])


def test_saved_file_loads_in_tokenizers_with_the_same_ids(tokenizer, tmp_path):
    path = tmp_path / "tokenizer.json"
    tokenizer.save(path)
    backend = tokenizers.Tokenizer.from_file(str(path))
    for caption in ("A big red circle moves left.", "the violin", "a small blue square goes up and up and up"):
        assert backend.encode(caption).ids == tokenizer.encode(caption)
    loaded = CaptionTokenizer.load(path)
    assert (loaded.min_count, loaded.max_length, loaded.vocab_size) == (2, 6, tokenizer.vocab_size)
    assert loaded.encode_batch(CAPTIONS)[0].equal(tokenizer.encode_batch(CAPTIONS)[0])
    assert CaptionTokenizer.load(tmp_path).vocab_size == tokenizer.vocab_size  # a run directory works too
    assert not list(tmp_path.glob("*.tmp*"))


@pytest.mark.parametrize("content", ['{"version": "1.0", "model": ', "not json at all", '{"version": "1.0"}'])
def test_loading_a_corrupt_file_names_it(tmp_path, content):
    path = tmp_path / "tokenizer.json"
    path.write_text(content)
    with pytest.raises(UserError, match="tokenizer.json"):
        CaptionTokenizer.load(path)


def test_loading_a_foreign_tokenizer_or_no_file_is_refused(tokenizer, tmp_path):
    with pytest.raises(UserError, match="not found"):
        CaptionTokenizer.load(tmp_path / "absent.json")
    data = json.loads(tokenizer.backend.to_str())
    data["truncation"] = None
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="not a vidcap caption tokenizer"):
        CaptionTokenizer.load(tmp_path / "tokenizer.json")


@pytest.mark.parametrize("kwargs", [{"min_count": 0}, {"max_length": 0}, {"min_count": 100}])
def test_bad_build_settings_are_user_errors(kwargs):
    with pytest.raises(UserError):
        CaptionTokenizer.build(CAPTIONS, **kwargs)
