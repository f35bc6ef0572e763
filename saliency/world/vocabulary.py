"""The world's words: shape and size synonyms, motion phrases, colour names, and how a caption's words are matched
to the attribute values they name (what grounding scores).

Each motion's name ("left", "grows", "still", ...) only ever appears inside that motion's phrases. Words match whole,
after lower-casing and dropping punctuation; shape nouns also match in the plural; motion phrases match as whole
phrases ("grows in size", not "size"), so "gets larger" names a motion, not the size "large".
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from saliency.world.rules import COLOURS

ATTRIBUTES = ("shape", "colour", "size", "motion")
SHAPE_WORDS = {
    "circle": ("circle", "ball", "disc", "dot"),
    "square": ("square", "box", "block", "tile"),
    "triangle": ("triangle", "wedge"),
    "diamond": ("diamond", "rhombus", "lozenge"),
    "star": ("star",),
}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "big": ("big", "large", "huge")}
# Per motion: finite verb phrases ("... moves left") and participle phrases ("a ball moving left").
MOTION_PHRASES = {
    "left": (("moves to the left", "is moving left", "slides to the left", "goes left",
              "travels to the left", "moves leftwards"),
             ("moving to the left", "sliding left", "going to the left", "travelling left")),
    "right": (("moves to the right", "is moving right", "slides to the right", "goes right",
               "travels to the right", "moves rightwards"),
              ("moving to the right", "sliding right", "going to the right", "travelling right")),
    "up": (("moves up", "is moving upwards", "slides up", "rises", "goes up", "floats upwards"),
           ("moving up", "rising", "sliding upwards", "going up")),
    "down": (("moves down", "is moving downwards", "slides down", "falls", "goes down", "sinks"),
             ("moving down", "falling", "sliding downwards", "going down")),
    "grows": (("grows bigger", "is growing", "gets larger", "expands", "becomes bigger", "grows in size"),
              ("growing", "getting bigger", "expanding", "growing larger")),
    "shrinks": (("shrinks", "is shrinking", "gets smaller", "becomes smaller", "shrinks in size"),
                ("shrinking", "getting smaller", "becoming smaller")),
    "still": (("stays still", "does not move", "is not moving", "stays in place", "remains still",
               "sits still"),
              ("staying still", "standing still", "not moving", "resting in place")),
}


def _plural(noun: str) -> str:
    """English plural of a shape noun ("box" → "boxes", "ball" → "balls"): captions may count objects."""
    return noun + ("es" if noun.endswith(("s", "x", "z", "ch", "sh")) else "s")


def _phrases(words: Mapping[str, tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    """{phrase as a tuple of words: value} from {value: phrases}, so matching works on word sequences."""
    return {tuple(phrase.split()): value for value, phrases in words.items() for phrase in phrases}


def vocabulary() -> dict[str, dict[tuple[str, ...], str]]:
    """Per attribute, {phrase (tuple of words): the value it names}: the world's words and synonyms."""
    shapes = {shape: (*words, *map(_plural, words)) for shape, words in SHAPE_WORDS.items()}
    motions = {motion: (motion, *finite, *participle) for motion, (finite, participle) in MOTION_PHRASES.items()}
    return {"shape": _phrases(shapes), "colour": _phrases({colour: (colour,) for colour in COLOURS}),
            "size": _phrases(SIZE_WORDS), "motion": _phrases(motions)}


VOCABULARY = vocabulary()


def caption_words(caption: str) -> tuple[str, ...]:
    """The caption's words, lower-cased, punctuation and digits dropped: how the vocabulary is matched."""
    return tuple(re.findall(r"[a-z]+", caption.lower()))


def named_values(caption: str) -> dict[str, set[str]]:
    """Per attribute, the values the caption names anywhere (whole words or whole phrases)."""
    words = caption_words(caption)
    named = {attribute: set() for attribute in ATTRIBUTES}
    for attribute, phrases in VOCABULARY.items():
        for phrase, value in phrases.items():
            if any(words[i:i + len(phrase)] == phrase for i in range(len(words) - len(phrase) + 1)):
                named[attribute].add(value)
    return named

