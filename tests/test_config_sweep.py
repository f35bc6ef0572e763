"""Every config key a user can set, given an impossible value on the command line: one line naming the key as
written (`--set optim.lr: ...`), exit 2, nothing left behind. The keys and candidate values come from the run
configs' dataclass fields, so a new key is swept the day it is added."""
from __future__ import annotations

import dataclasses
import types
import typing

import pytest

import saliency.cli
import vidcap.cli
from saliency.pretrain import PretrainConfig
from saliency.run import SaliencyRunConfig
from vidcap.run import VidcapRunConfig

# Negative values these keys take on purpose: loss weights enter with their sign (CC, NSS, SIM negated), a
# negative alpha down-weights salient places (down to -1), a negative length penalty favours short captions.
SIGNED = {"loss.kld", "loss.cc", "loss.nss", "loss.sim", "captioner.encoder.alpha", "captioner.length_penalty"}


def leaves(cls: type, prefix: str = "") -> typing.Iterator[tuple[str, typing.Any]]:
    """(dotted key, type) of every leaf field of a config dataclass."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint, key = hints[field.name], prefix + field.name
        yield from leaves(hint, f"{key}.") if dataclasses.is_dataclass(hint) else [(key, hint)]


def impossible(hint) -> list[str]:
    """Values no setting of this type may take, as YAML: negative numbers, zero sizes, unknown choices."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return [value for option in args if option is not type(None) for value in impossible(option)]
    if hint is int:
        return ["-1"]
    if hint is float:
        return ["-1.0"]
    if origin is tuple and args and all(arg is int for arg in args):
        return ["[0, 0]"]
    if origin is typing.Literal:
        return ["bogus"]
    return []


# (program, command, its config): each is given the impossible values, with data that does not exist
COMMANDS = (("saliency", "train", SaliencyRunConfig), ("saliency", "pretrain", PretrainConfig),
            ("vidcap", "train", VidcapRunConfig))
CASES = [(program, command, key, value) for program, command, config in COMMANDS
         for key, hint in leaves(config) for value in impossible(hint)
         if not (key in SIGNED and value.startswith("-"))]


def test_the_sweep_covers_the_keys_users_meet():
    keys = {key for _, _, key, _ in CASES}
    assert {"optim.epochs", "optim.lr", "data.batch_size", "data.size", "seed", "threads",
            "captioner.sampler.n_frames", "captioner.decoder.heads", "distill.temperature",
            "family", "images_per_epoch"} <= keys


@pytest.mark.parametrize(("program", "command", "key", "value"), CASES,
                         ids=[f"{p} {c} {k}={v}" for p, c, k, v in CASES])
def test_an_impossible_value_is_one_line_naming_the_key_and_leaves_nothing(program, command, key, value, tmp_path,
                                                                           capsys):
    main = {"saliency": saliency.cli.main, "vidcap": vidcap.cli.main}[program]
    out = tmp_path / "run"
    data = ["--set", f"data.root={tmp_path / 'missing'}"] if command == "train" else []
    status = main([command, *data, "--set", f"{key}={value}", "--out", str(out), "--quiet"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"{program}: error: --set {key}"), lines[0]
    assert not out.exists()
