"""Plumbing shared by the `saliency` and `vidcap` commands: one-line errors, exit codes, `--set`, argument types, and
the log set-up that only a command's `main()` makes (torch's threads each CLI sets itself)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from saliency.infra.errors import UserError

EXIT_SKIPPED = 1  # finished, but some inputs were unusable and skipped (each named on stderr)
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one line on stderr, as every other user error is: `PROGRAM: error:
    MESSAGE (see 'PROGRAM COMMAND --help')`, exit status 2. Its subcommands are CommandParsers too."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog.split()[0]}: error: {message} (see '{self.prog} --help')\n")


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """`--config FILE` and repeatable `--set key=value` overrides."""
    parser.add_argument("--config", required=required, metavar="YAML", help="config preset (YAML); defaults fill the rest")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set optim.epochs=5 (repeatable)")


def add_command(commands: argparse._SubParsersAction, name: str, **options) -> argparse.ArgumentParser:
    """A subcommand (`options` as `add_parser` takes them; its `--help` describes it with its `help` unless given a
    `description`) with the flags every command has: `--quiet`."""
    command = commands.add_parser(name, **{"description": options.get("help"), **options})
    command.add_argument("--quiet", action="store_true", help="no progress bars")
    return command


def add_synth_arguments(command: argparse.ArgumentParser, layout: str, items: str, n: int,
                        size: tuple[int, int]) -> None:
    """The arguments of both `synth` commands: the output folder (its `layout`), how many `items`, the seed,
    the frame size and the version of the world."""
    command.add_argument("out", help=f"output folder ({layout})")
    command.add_argument("--n", type=int, default=n, help=f"number of {items} (default {n})")
    command.add_argument("--seed", type=int, default=0, help="random seed; same seed, identical annotations")
    command.add_argument("--size", type=parse_size, default=size, help=f"image size HxW (default {size[0]}x{size[1]})")
    command.add_argument("--world", choices=("v1", "v2"), default="v2",
                         help="v2 (default): several equally saturated objects, gaze drawn by shape and motion; "
                              "v1: one saturated actor among muted shapes (pop-out)")


def parse_size(text: str) -> tuple[int, int]:
    """`'288x384'` → (288, 384): height × width, as argparse `type=`."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HEIGHTxWIDTH, e.g. 288x384") from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be positive")
    return height, width


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse `type=` for whole numbers of at least `minimum`: `'5'` → 5, anything else one line."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: must be at least {minimum}")
        return value
    return parse


positive_int = int_at_least(1)  # counts, sizes, epochs
non_negative_int = int_at_least(0)  # counts where 0 means "the default" (threads: all cores)


def run_config(cls: type, args: argparse.Namespace, overrides: Sequence[str]):
    """A training command's config `cls`: from its preset `--config` or, on `--resume` without one, from the run's own
    config.yaml (a run continues as it was configured), then `overrides`."""
    from saliency.infra.config import load_config

    saved = Path(args.out) / "config.yaml" if getattr(args, "resume", False) and not args.config else None
    return load_config(cls, saved if saved and saved.is_file() else args.config, overrides)


def positive_number(text: str) -> float:
    """`'2.5'` → 2.5, for sizes that must be above 0, as argparse `type=`."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: must be above 0")
    return value


def port_number(text: str) -> int:
    """`'8000'` → 8000, a TCP port (0: any free one), as argparse `type=`."""
    value = non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: a port is at most 65535")
    return value


def report_skipped(command: str, skipped: Sequence[str], what: str = "input") -> int:
    """End a batch command: name everything it skipped in one line on stderr; the exit status."""
    if not skipped:
        return 0
    print(f"{command}: {len(skipped)} {what}(s) skipped: {', '.join(skipped)}", file=sys.stderr)
    return EXIT_SKIPPED


class _CurrentStderr(logging.StreamHandler):
    """A handler that writes to whatever `sys.stderr` is when a record arrives (commands run in-process by
    tests see their captured stderr)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def configure_process() -> None:
    """Once per command: the packages' messages (logging, INFO and up) to stderr, and decord's FFmpeg log
    silenced (every failure it describes ends in one UserError line)."""
    import decord

    decord.logging.set_level(decord.logging.QUIET)
    for package in ("saliency", "vidcap"):  # our messages only; other libraries keep their own settings
        logger = logging.getLogger(package)
        if not any(isinstance(handler, _CurrentStderr) for handler in logger.handlers):
            handler = _CurrentStderr()
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse, set the process up, dispatch to `args.handler(args)`, and turn user mistakes into one line on stderr."""
    args = parser.parse_args(argv)
    configure_process()
    handler: Callable[[argparse.Namespace], int | None] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USER_ERROR
    try:
        return int(handler(args) or 0)
    except UserError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:
        # the reader (e.g. `| head`) went away: silence the exit-time flush instead of a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
