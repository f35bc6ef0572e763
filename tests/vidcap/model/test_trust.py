"""A caption's trust: the string it is, its confidence and whether its video is like the training videos."""
from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch

from saliency.infra.errors import UserError
from vidcap.model.trust import Caption, Trust


def test_a_caption_is_its_text_with_its_confidence_and_domain():
    caption = Caption("a red ball moves left", 0.25, False)
    assert caption == "a red ball moves left" and isinstance(caption, str)
    assert (caption.confidence, caption.in_domain, caption.flagged) == (0.25, False, True)
    assert not Caption("x", 0.5, None).flagged and not Caption("x", 0.5, True).flagged
    for kept in (copy.deepcopy(caption), pickle.loads(pickle.dumps(caption))):
        assert (kept, kept.confidence, kept.in_domain) == (caption, 0.25, False)


def test_without_a_record_confidence_is_the_mean_word_probability_and_the_domain_unknown():
    trust = Trust()
    assert trust.confidence(math.log(0.5)) == pytest.approx(0.5)
    assert trust.in_domain(torch.zeros(3, 4)) == [None, None, None]


def test_a_record_calibrates_confidence_and_flags_videos_beyond_its_threshold(tmp_path):
    trust = Trust(slope=2.0, intercept=1.0, mean=torch.zeros(2), precision=torch.eye(2), threshold=1.5,
                  about={"train_videos": 9})
    assert trust.confidence(-0.5) == pytest.approx(0.5) and trust.confidence(0.0) > 0.5
    features = torch.tensor([[1.0, 1.0], [3.0, 0.0]])  # distances √2 and 3
    assert torch.allclose(trust.distances(features), torch.tensor([math.sqrt(2), 3.0]))
    assert trust.in_domain(features) == [True, False]
    captions = trust.captions(["near", "far"], torch.tensor([-0.5, -0.5]), features)
    assert [(c, c.in_domain) for c in captions] == [("near", True), ("far", False)]
    trust.save(tmp_path / "trust.safetensors")
    loaded = Trust.load(tmp_path / "trust.safetensors")
    assert (loaded.slope, loaded.intercept, loaded.threshold, loaded.about) == (2.0, 1.0, 1.5, {"train_videos": 9})
    assert torch.equal(loaded.mean, trust.mean) and torch.equal(loaded.precision, trust.precision)
    assert Trust.load(tmp_path / "missing.safetensors") == Trust()


def test_a_damaged_record_is_one_line(tmp_path):
    from saliency.infra.rundir import save_safetensors

    save_safetensors({"mean": torch.zeros(2)}, tmp_path / "trust.safetensors", {"numbers": "{not json"})
    with pytest.raises(UserError, match="trust.safetensors: not a captioner's trust record"):
        Trust.load(tmp_path / "trust.safetensors")
