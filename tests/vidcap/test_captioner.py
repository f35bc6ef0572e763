"""The composed captioner: one caption-length setting bounds what it writes."""
import torch

from vidcap.captioner import Captioner, CaptionerConfig
from vidcap.decoder import DecoderConfig
from vidcap.encoder import EncoderConfig
from vidcap.tokenizer import SPECIAL_TOKENS, CaptionTokenizer


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
