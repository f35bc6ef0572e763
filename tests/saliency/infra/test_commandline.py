"""Mistakes the argument parsers catch are one line on stderr and exit status 2, as every other user error is:
counts below their minimum, a port out of range, an unknown flag; no traceback, no usage block."""
import pytest

import saliency.cli
import vidcap.cli

CASES = {
    "rounds 0": (saliency.cli, ["bench", "--models", "student", "--rounds", "0"], "argument --rounds: '0': must be at least 1"),
    "batch 0": (saliency.cli, ["bench", "--models", "student", "--batch", "0"], "argument --batch: '0': must be at least 1"),
    "threads -1": (saliency.cli, ["bench", "--models", "student", "--threads", "-1"], "'-1': must be at least 0"),
    "every 0": (saliency.cli, ["predict", "--model", "run", "video.mp4", "--out", "out", "--every", "0"], "must be at least 1"),
    "unknown flag": (saliency.cli, ["train", "--out", "run", "--bogus"], "unrecognized arguments: --bogus"),
    "port too large": (vidcap.cli, ["serve", "--model", "run", "--port", "70000"], "'70000': a port is at most 65535"),
    "port negative": (vidcap.cli, ["serve", "--model", "run", "--port", "-1"], "'-1': must be at least 0"),
    "no command's flag": (vidcap.cli, ["caption", "video.mp4", "--model", "run", "--beams", "x"], "expected a whole number"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_parser_mistake_is_one_line_pointing_at_help(case, capsys):
    module, args, message = CASES[case]
    program = module.__name__.split(".")[0]
    with pytest.raises(SystemExit) as exited:
        module.main(args)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"{program}: error: ") and message in err, err
    assert f"(see '{program} " in err and "--help')" in err
