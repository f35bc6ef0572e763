"""The READMEs are a contract: every command in their ```bash blocks works as written.

The command blocks of README.md (the manual), then docs/design.md, docs/data.md, docs/world.md, docs/results.md and
data/README.md are read in that order (`READMES`): backslash continuations joined, `# comments` cut off. A command
whose comment starts with `long` or `needs:` (`# long: ...`, `# needs: real data`) is only checked: the program's
parser must accept the subcommand and every flag as written (`saliency`, `vidcap` and the command `torchrun`
starts), the Makefile must have the target and `make -n` its recipe, a script's (`python benchmarks/NAME.py`) or a
benchmark module's (`python -m benchmarks.NAME`) `--help` must list every flag given. Every other command runs, one
at a time and in that order across the files, with `bash` from the root of one copy of the repository's tracked
files and this interpreter's bin folder first on PATH, so a later command (in the same file or a later one) finds
what an earlier one wrote; only its sizes are made smaller (`smaller`: fewer synthetic images and videos, one epoch,
a small benchmark input). A command that stops working, a file name that changes or a flag that disappears fails
here, and so does a flag of `saliency` or `vidcap` that none of these files mentions.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# run in this order, in one copy of the repository: the manual, then the docs it points to, then data/'s
READMES = ("README.md", "docs/design.md", "docs/data.md", "docs/world.md", "docs/results.md", "data/README.md")
BIN = Path(sys.executable).parent  # the environment the tests run in: its `saliency`, `vidcap`, `python`

CHECK_ONLY = re.compile(r"(long|needs:)(?![\w-])")  # a comment that starts so: check the command, do not run it
EXAMPLE_ENV = {"NODE_RANK": "0"}  # values for the variables a checked command leaves to the reader
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*")  # RUN1, FILE, DIR: a word for the reader to replace, not a command
BENCHMARK_MODULE = re.compile(r"benchmarks\.\w+")  # `python -m benchmarks.NAME`: a benchmark that needs the checkout

# What a README command is given in the test instead of its real size (set, or added when absent).
SMALLER = {
    ("saliency", "synth"): {"--n": "24"},  # images: 17 train, 4 val, 3 test
    ("vidcap", "synth"): {"--n": "12"},  # videos: train, validate and test all non-empty
    ("saliency", "bench"): {"--size": "64x96", "--rounds": "1"},
}
ONE_EPOCH = {("saliency", "train"), ("saliency", "distill"), ("vidcap", "train")}
COMMAND_TIMEOUT = 600  # seconds, for any one command


@dataclass(frozen=True)
class Command:
    readme: str
    line: int  # where the command starts in the README, 1-based
    text: str  # the shell command, continuations joined, its comment cut off
    comment: str

    @property
    def where(self) -> str:
        return f"{self.readme}:{self.line}"

    @property
    def check_only(self) -> bool:
        return bool(CHECK_ONLY.match(self.comment))

    @property
    def program(self) -> str:
        return Path(shlex.split(self.text)[0]).name


def split_comment(line: str) -> tuple[str, str]:
    """`code  # comment` → (`code`, `comment`): a `#` that starts a word outside quotes, as bash reads it."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip(), line[index + 1:].strip()
    return line.rstrip(), ""


def collect(readme: str) -> list[Command]:
    """The commands of `readme`'s ```bash blocks, in order."""
    commands: list[Command] = []
    block, parts, start = False, [], 0
    lines = (ROOT / readme).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not block:
            block = re.fullmatch(r"\s*```(bash|sh|shell)\s*", line) is not None
            continue
        if line.strip() == "```":
            assert not parts, f"{readme}:{start}: the block ends inside a continued command"
            block = False
            continue
        code, comment = split_comment(line)
        if not parts and not code.strip():
            continue  # a blank line or a comment of its own
        if not parts:
            start = number
        if code.endswith("\\"):
            parts.append(code[:-1].strip())
            continue
        commands.append(Command(readme, start, " ".join([*parts, code.strip()]), comment))
        parts = []
    assert not block, f"{readme}: a ```bash block is never closed"
    return commands


COMMANDS = [command for readme in READMES for command in collect(readme)]


def words(command: Command) -> list[str]:
    """The command's words as the shell gives them to the program, the README's variables set to examples."""
    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        assert name in EXAMPLE_ENV, f"{command.where}: ${name} has no example value in tests/test_readme.py"
        return EXAMPLE_ENV[name]

    return shlex.split(re.sub(r"\$\{(\w+)\}|\$(\w+)", value, command.text))


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def subcommand_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    subparsers = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return subparsers.choices[name]


def parse(parser: argparse.ArgumentParser, argv: list[str], where: str) -> argparse.Namespace:
    """`parser.parse_args(argv)` without exiting: its error message fails the test."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `{parser.prog} {shlex.join(argv)}` is refused: {err.getvalue().strip()}")


def exact_flags(argv: list[str], known: set[str], where: str, program: str) -> None:
    """argparse takes `--ever` for `--every`: every `--flag` written must be one the parser has, letter for letter."""
    for word in argv:
        flag = word.split("=", 1)[0]
        if flag.startswith("--") and flag != "--":
            assert flag in known, f"{where}: {program} has no flag {flag} (it has {', '.join(sorted(known))})"


def check_cli(module: str, argv: list[str], where: str) -> argparse.Namespace:
    """`argv` is a valid command line of `module` (`saliency.cli`, `vidcap.cli`): the subcommand, every flag
    by its exact name, every value its type accepts, and a `--config` file that exists."""
    program = module.split(".")[0]
    parser = import_module(module).build_parser()
    args = parse(parser, argv, where)
    assert args.command, f"{where}: `{program}` without a subcommand"
    exact_flags(argv, option_strings(subcommand_parser(parser, args.command)), where, f"`{program} {args.command}`")
    if getattr(args, "config", None):
        assert (ROOT / args.config).is_file(), f"{where}: {args.config} does not exist"
    return args


def check_torchrun(argv: list[str], where: str) -> None:
    """torchrun's own flags by their exact names, then the command it starts (`-m saliency.cli ...`)."""
    from torch.distributed.run import get_args_parser

    parser = get_args_parser()
    args = parse(parser, argv, where)
    exact_flags(argv[: len(argv) - len(args.training_script_args) - 1], option_strings(parser), where, "torchrun")
    assert args.module and args.training_script in ("saliency.cli", "vidcap.cli"), \
        f"{where}: torchrun should start `-m saliency.cli` or `-m vidcap.cli`, not {args.training_script}"
    check_cli(args.training_script, args.training_script_args, where)


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w.-]+)\s*:(?!=)", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M))


def is_benchmark_module(argv: list[str]) -> bool:
    """`python -m benchmarks.NAME ...`, run from the repository root."""
    return (re.fullmatch(r"python3?", Path(argv[0]).name) is not None and len(argv) > 2 and argv[1] == "-m"
            and BENCHMARK_MODULE.fullmatch(argv[2]) is not None)


def check_command_line(argv: list[str], where: str) -> None:
    """What can be checked without running anything, or a failure for a command nothing here can check."""
    program = Path(argv[0]).name
    if program in ("saliency", "vidcap"):
        check_cli(f"{program}.cli", argv[1:], where)
    elif program == "torchrun":
        check_torchrun(argv[1:], where)
    elif program == "make":
        missing = set(argv[1:]) - make_targets()
        assert argv[1:] and not missing, f"{where}: the Makefile has no target {', '.join(sorted(missing)) or 'given'}"
    elif re.fullmatch(r"python3?", program) and len(argv) > 1 and argv[1].endswith(".py"):
        assert (ROOT / argv[1]).is_file(), f"{where}: {argv[1]} does not exist"
    elif is_benchmark_module(argv):
        script = argv[2].replace(".", "/") + ".py"
        assert (ROOT / script).is_file(), f"{where}: python -m {argv[2]}: {script} does not exist"
    else:
        pytest.fail(f"{where}: `{program}` is marked not to run, and tests/test_readme.py has no way to check it")


def command_env() -> dict[str, str]:
    """The environment the README asks for (`source .venv/bin/activate`): this interpreter's bin folder first."""
    for program in ("saliency", "vidcap", "python"):
        assert (BIN / program).exists(), f"{BIN / program} is missing: install the project (`make install`)"
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def bash(text: str, cwd: Path, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
    """`text` run by bash; a glob that matches nothing is an error (a file no earlier command wrote)."""
    return subprocess.run(["bash", "-O", "failglob", "-e", "-o", "pipefail", "-c", text], cwd=cwd,
                          env=command_env(), capture_output=True, text=True, timeout=timeout)


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# ------------------------------------------------------------------ every command, without running anything


def test_every_readme_is_read():
    """The manual has its quick start and one example per command; the docs hold the rest."""
    by_readme = {readme: [c for c in COMMANDS if c.readme == readme] for readme in READMES}
    counts = {readme: len(commands) for readme, commands in by_readme.items()}
    assert len(by_readme["README.md"]) > 20 and by_readme["docs/design.md"] and by_readme["data/README.md"], counts
    assert len(COMMANDS) > 60, counts
    assert any(not command.check_only for command in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=[command.where for command in COMMANDS])
def test_command_can_be_copied_as_written(command):
    """No `...` or `…` to fill in, no `[--optional flags]`, no RUN1/FILE placeholders; the program accepts
    the subcommand and every flag (the commands that run are checked so too, before they run)."""
    assert "..." not in command.text and "…" not in command.text, f"{command.where}: `{command.text}` has a `...`"
    assert not re.search(r"\[-", command.text), f"{command.where}: `{command.text}` has an option in brackets"
    argv = words(command)
    placeholders = [word for word in argv if PLACEHOLDER.fullmatch(word)]
    assert not placeholders, f"{command.where}: `{command.text}` has placeholders {placeholders}"
    if command.check_only or Path(argv[0]).name in ("saliency", "vidcap", "torchrun"):
        check_command_line(argv, command.where)


def every_subcommand_flag() -> list[tuple[str, str, str]]:
    """(program, subcommand, flag) for every long option of every subcommand of `saliency` and `vidcap`."""
    found = []
    for program in ("saliency", "vidcap"):
        parser = import_module(f"{program}.cli").build_parser()
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for name, sub in subparsers.choices.items():
            found += [(program, name, flag) for flag in sorted(option_strings(sub)) if flag.startswith("--")]
    return found


def test_every_flag_of_every_command_is_in_the_readme():
    """A flag a user cannot learn about from the README or the docs (beside `--help`) is a flag they forgot."""
    text = "\n".join((ROOT / readme).read_text(encoding="utf-8") for readme in READMES)
    missing = [f"{program} {name} {flag}" for program, name, flag in every_subcommand_flag()
               if flag != "--help" and not re.search(re.escape(flag) + r"(?![\w-])", text)]
    assert not missing, f"none of {', '.join(READMES)} mentions: {', '.join(missing)}"


# ------------------------------------------------------------------ the marked commands' deeper checks


CHECKED_BY_RUNNING_HELP = [c for c in COMMANDS if c.check_only and c.program not in ("saliency", "vidcap", "torchrun")]


def check_by_help(argv: list[str], where: str) -> None:
    """`make TARGET`: `make -n` prints its recipe, whose saliency, vidcap and script commands are checked in
    turn; `python SCRIPT ARGS` (or `python -m benchmarks.NAME ARGS`): the same with `--help` succeeds (the values
    parse), run from the repository root, and lists every flag."""
    program = Path(argv[0]).name
    if program == "make":
        dry = bash(shlex.join(["make", "-n", *argv[1:]]), ROOT, timeout=60)
        assert dry.returncode == 0, f"{where}: make -n {' '.join(argv[1:])}: {tail(dry.stderr)}"
        for line in dry.stdout.splitlines():
            recipe = shlex.split(line)
            name = Path(recipe[0]).name if recipe else ""
            if name in ("saliency", "vidcap") or (re.fullmatch(r"python3?", name) and recipe[1:2] and recipe[1].endswith(".py")):
                check_command_line(recipe, f"{where} (make recipe `{line.strip()}`)")
                check_by_help(recipe, f"{where} (make recipe `{line.strip()}`)")
    elif re.fullmatch(r"python3?", program):
        help_ = bash(shlex.join([*argv, "--help"]), ROOT, timeout=120)
        assert help_.returncode == 0, f"{where}: `{shlex.join(argv)} --help` failed: {tail(help_.stderr)}"
        script = argv[1:3] if is_benchmark_module(argv) else argv[1:2]  # benchmarks/NAME.py or -m benchmarks.NAME
        for word in argv[1 + len(script):]:
            flag = word.split("=", 1)[0]
            if flag.startswith("--"):
                assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_.stdout), \
                    f"{where}: {' '.join(script)} has no flag {flag}:\n{help_.stdout}"


@pytest.mark.slow
@pytest.mark.parametrize("command", CHECKED_BY_RUNNING_HELP, ids=[c.where for c in CHECKED_BY_RUNNING_HELP])
def test_marked_command_passes_its_help_check(command):
    check_by_help(words(command), command.where)


# ------------------------------------------------------------------ the rest, run in README order


def set_flag(text: str, flag: str, value: str) -> str:
    """`text` with `flag`'s value replaced by `value`, or `flag value` added at the end."""
    pattern = rf"(?<!\S){re.escape(flag)}(?:=|\s+)\S+"
    if re.search(pattern, text):
        return re.sub(pattern, f"{flag} {value}", text, count=1)
    return f"{text} {flag} {value}"


def smaller(command: Command) -> str:
    """The command as the test runs it: the README's text with smaller sizes."""
    argv = shlex.split(command.text)
    key = (Path(argv[0]).name, argv[1] if len(argv) > 1 else "")
    text = command.text
    for flag, value in SMALLER.get(key, {}).items():
        text = set_flag(text, flag, value)
    if key in ONE_EPOCH:  # the same on a --resume, so that it continues the same configuration
        epochs = r"(?<!\S)--set(?:=|\s+)optim\.epochs=\S+"
        text = re.sub(epochs, "--set optim.epochs=1", text) if re.search(epochs, text) else f"{text} --set optim.epochs=1"
    return text


def outputs(command: Command, text: str) -> list[str]:
    """The files and folders the command says it writes: `--out`, `--json FILE`, `--onnx`, `--overlay`
    (one input), a synth folder."""
    argv = shlex.split(text)
    program = Path(argv[0]).name
    if program not in ("saliency", "vidcap"):
        return []
    args = check_cli(f"{program}.cli", argv[1:], command.where)
    named = [getattr(args, name, None) for name in ("out", "onnx", "overlay")]
    named.append(args.json if isinstance(getattr(args, "json", None), str) else None)
    if args.command == "caption" and args.overlay and len(args.videos) > 1:
        named.remove(args.overlay)  # one file per video, OUT-<stem>.mp4
    return [str(path) for path in named if path]


def copy_of_repository(dest: Path) -> Path:
    """The tracked files as they are in the working tree (a fresh clone, with uncommitted edits)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0 or not listed.stdout:
        pytest.skip("not a git checkout: the README test copies the tracked files")
    for name in filter(None, listed.stdout.split(b"\0")):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            (dest / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / os.fsdecode(name))
    return dest


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_readme_commands_run_in_order(tmp_path):
    """Each command that is not marked runs in `READMES` order in one copy of the repository and exits 0,
    without a traceback, leaving the outputs it names."""
    repo = copy_of_repository(tmp_path / "repo")
    timings = []
    for command in COMMANDS:
        if command.check_only:
            continue
        text = smaller(command)
        started = time.perf_counter()
        result = bash(text, repo)
        timings.append((time.perf_counter() - started, command.where, text))
        report = f"{command.where}: `{text}` exited {result.returncode}\n{tail(result.stdout)}\n{tail(result.stderr)}"
        assert result.returncode == 0, report
        assert "Traceback" not in result.stderr, report
        missing = [path for path in outputs(command, text) if not (repo / path).exists()]
        assert not missing, f"{command.where}: `{text}` did not write {missing}"
    assert timings
    print(f"\n{len(timings)} README commands in {sum(t for t, _, _ in timings):.0f} s:")
    for seconds, where, text in timings:
        print(f"  {seconds:6.1f} s  {where:<20} {text}")
