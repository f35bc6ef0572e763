"""The captions of the synthetic world: about twenty per video from templates and synonyms, each naming the actor's
shape and motion (mostly its colour and size too), so BLEU and CIDEr have something to measure."""
from __future__ import annotations

import re

import numpy as np

from saliency.world.rules import Scene
from saliency.world.vocabulary import MOTION_PHRASES, SHAPE_WORDS, SIZE_WORDS

# {verb}: finite phrase, {ing}: participle phrase. Every template names the shape and the motion.
CAPTION_TEMPLATES = (
    "a {size} {colour} {shape} {verb}",
    "the {size} {colour} {shape} {verb}",
    "a {colour} {shape} {verb}",
    "a {size} {shape} {verb}",
    "there is a {size} {colour} {shape} {ing}",
    "a video of a {size} {colour} {shape} {ing}",
    "an animation shows a {size} {colour} {shape} {ing}",
    "we see a {colour} {shape} {ing}",
    "a {size} {shape} in {colour} {verb}",
    "the {shape} is {colour} and {size} and it {verb}",
    "in this clip a {size} {colour} {shape} {verb}",
    "a {size} {colour} {shape} {verb} on the screen",
    "a {colour} {shape} that is {size} {verb}",
    "someone shows a {size} {colour} {shape} {ing}",
)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[rng.integers(len(options))]


def caption_from_template(template: str, scene: Scene, rng: np.random.Generator) -> str:
    """Fill `template` with synonyms for `scene`'s actor; casing and a final full stop vary."""
    finite, participle = MOTION_PHRASES[scene.motion]
    text = template.format(size=_pick(rng, SIZE_WORDS[scene.size]), colour=scene.colour,
                           shape=_pick(rng, SHAPE_WORDS[scene.shape]), verb=_pick(rng, finite),
                           ing=_pick(rng, participle))
    text = re.sub(r"\ba (?=[aeiou])", "an ", text)
    if rng.random() < 0.3:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.3:
        text += "."
    return text


def caption_variants(scene: Scene, rng: np.random.Generator, n: int = 20) -> list[str]:
    """`n` captions, distinct after lower-casing and stripping punctuation, cycling through every
    template in a shuffled order (so 14 templates appear in any 14 consecutive captions)."""
    order = rng.permutation(len(CAPTION_TEMPLATES))
    captions, seen = [], set()
    for attempt in range(50 * n):
        if len(captions) == n:
            break
        caption = caption_from_template(CAPTION_TEMPLATES[order[attempt % len(order)]], scene, rng)
        key = re.sub(r"[^a-z ]", "", caption.lower())
        if key not in seen:
            seen.add(key)
            captions.append(caption)
    return captions

