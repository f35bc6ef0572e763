"""`vidcap caption ... --out results.jsonl`: whole folders captioned into a JSON-lines file that survives a crash.

One line per video, `{"path", "caption" | "segments", "seconds"}` or `{"path", "error"}`, each written with a
single `write` to a file opened for appending and fsynced before the next line: a SIGKILL loses only the videos
in flight and never leaves half a line. Run again, the videos already in the file are skipped (those that
failed too, unless `retry_failed`); a last line cut short by a writer that died mid-line is dropped with a
warning. The file is flock-ed by its writer, so two runs never append to one file. Under torchrun each process
captions every N-th video into its own part file, `OUT.rank<R>.part`, which the main process appends to OUT at
the end (and at the start, for the parts a killed run left).
"""
from __future__ import annotations

import glob
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from saliency.infra.distributed import World
from saliency.infra.errors import OutputError, UserError
from saliency.infra.rundir import require_writable, try_flock
from saliency.infra.media import VIDEO_SUFFIXES
from saliency.infra.outputs import media_in_folder

log = logging.getLogger(__name__)

_GLOB_CHARACTERS = set("*?[")
_PART_RANK = re.compile(r"\.rank(\d+)\.part$")


def expand_videos(inputs: list[str]) -> list[str]:
    """Files as given; folders → the video files inside them (recursively, sorted), less the overlays the tools wrote
    there; glob patterns the shell left (quoted) → their matches, sorted. A folder or pattern without videos stays as given, to be reported like a bad
    file. Each path once, in order."""
    paths: list[str] = []
    for text in inputs:
        pattern = bool(_GLOB_CHARACTERS & set(text)) and not os.path.exists(text)
        matches = (sorted(glob.glob(text, recursive=True)) if pattern else []) or [text]
        for match in matches:
            found = [str(path) for path in media_in_folder(Path(match), VIDEO_SUFFIXES)] if os.path.isdir(match) else []
            paths.extend(found or [match])
    return list(dict.fromkeys(paths))


def check_results_path(out: str | Path) -> Path:
    """`--out` as a Path, or a one-line error before any work: its folder missing or not writable, or a folder."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out}: a folder; --out names the results file (e.g. results.jsonl)")
    folder = out.parent
    if not folder.is_dir():
        raise UserError(f"{out}: folder {folder} does not exist")
    require_writable(folder)
    return out


def part_path(out: Path, rank: int) -> Path:
    """Where process `rank` of a torchrun writes its share before the parts are merged into `out`."""
    return out.with_name(f"{out.name}.rank{rank}.part")


def part_files(out: Path) -> list[Path]:
    """Every process's part file of `out` that is on disk, in rank order."""
    found = [(int(match.group(1)), part) for part in out.parent.glob(f"{glob.escape(out.name)}.rank*.part")
             if (match := _PART_RANK.search(part.name))]
    return [part for _, part in sorted(found)]


def parse_results(data: bytes, name: str | Path) -> tuple[list[dict], int, list[str]]:
    """The entries of a results file's bytes, in order, the byte length of its whole lines, and a warning for each
    line that is not an entry: a last line without its newline (a writer killed mid-line) or one that is not a JSON
    object with a "path"."""
    entries, warnings = [], []
    whole = data.rfind(b"\n") + 1
    if whole < len(data):
        warnings.append(f"{name}: the last line is cut short (a writer stopped mid-line): ignored and removed; "
                        "the video it was for is captioned again")
    for number, line in enumerate(data[:whole].splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            entry = None
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)):
            warnings.append(f"{name}: line {number} is not a result (a JSON object with a \"path\"): ignored")
            continue
        entries.append(entry)
    return entries, whole, warnings


def read_results(path: Path) -> tuple[list[dict], list[str]]:
    """The entries of a results file (none when it does not exist) and the warnings about lines ignored."""
    if not path.is_file():
        return [], []
    entries, _, warnings = parse_results(path.read_bytes(), path)
    return entries, warnings


class ResultsWriter:
    """Appends entries to one results file, held under an flock; each entry one `write` of a whole line, fsynced."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.handle = open(path, "a+b", buffering=0)
        except OSError as error:
            raise OutputError(f"{path}: could not be opened for writing ({error.strerror or error})") from None
        if not try_flock(self.handle):
            self.handle.close()
            raise UserError(f"{path}: another process is writing to it")
        self.handle.seek(0)
        self.entries, whole, self.warnings = parse_results(self.handle.read(), path)
        if whole and not self.entries:  # whole lines, none a result: some other file, not to be appended to
            self.handle.close()
            raise UserError(f"{path}: not a results file (no line is a JSON object with a \"path\"); "
                            "give --out a new file or one an earlier run wrote")
        if whole < self.handle.tell():
            self.handle.truncate(whole)  # drop a torn last line, so the next line starts on a line of its own

    def append(self, entries: list[dict]) -> None:
        """Write `entries` as lines in one `write` and make them durable before returning."""
        data = b"".join(json.dumps(entry, ensure_ascii=False).encode("utf-8") + b"\n" for entry in entries)
        try:
            view = memoryview(data)
            while view:  # a regular file takes it all in one call; a short write only continues the same line
                view = view[self.handle.write(view):]
            os.fsync(self.handle.fileno())
        except OSError as error:
            raise OutputError(f"{self.path}: could not be written ({error.strerror or error})") from None
        self.entries.extend(entries)

    def close(self) -> None:
        """Close the file, which releases its lock."""
        self.handle.close()


@contextmanager
def results_writer(path: Path) -> Iterator[ResultsWriter]:
    """A `ResultsWriter` on `path`, closed (and unlocked) at the end."""
    writer = ResultsWriter(path)
    try:
        yield writer
    finally:
        writer.close()


def merge_parts(writer: ResultsWriter, parts: list[Path]) -> list[str]:
    """Append to `writer`'s file the entries of `parts` it does not hold yet, then delete the parts; warnings."""
    latest = {entry["path"]: entry for entry in writer.entries}
    new, warnings = [], []
    for part in parts:
        entries, part_warnings = read_results(part)
        warnings += part_warnings
        for entry in entries:
            if latest.get(entry["path"]) != entry:
                new.append(entry)
                latest[entry["path"]] = entry
    if new:
        writer.append(new)
    for part in parts:  # after the append is durable: a kill between the two merges nothing twice
        part.unlink(missing_ok=True)
    return warnings


@dataclass
class BatchReport:
    """What a run into a results file did: videos captioned and failed now, and those the file already had."""

    out: Path
    captioned: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, one-line error), this run
    done_before: list[str] = field(default_factory=list)
    failed_before: list[tuple[str, str]] = field(default_factory=list)  # recorded failures, not retried

    @staticmethod
    def total(out: Path, reports: list[BatchReport]) -> BatchReport:
        """The report of every process of a torchrun."""
        total = BatchReport(out)
        for report in reports:
            total.captioned += report.captioned
            total.failed += report.failed
            total.done_before += report.done_before
            total.failed_before += report.failed_before
        return total


def caption_into(out: str | Path, videos: list[str], caption_one: Callable[[str], dict], world: World | None = None,
                 retry_failed: bool = False, progress: bool = True) -> BatchReport:
    """Caption each of `videos` not yet in results file `out` with `caption_one(path)` (→ `{"caption": ...}` or
    `{"segments": [...]}`; a UserError for a bad file, recorded as `{"path", "error"}`); under torchrun this
    process takes every `world.size`-th video. Returns what was done (every process's, on every process)."""
    out, world = Path(out), world or World()
    with ExitStack() as held:
        main = held.enter_context(results_writer(out)) if world.is_main else None
        if main is not None:  # a torn line was cut off; the parts of a killed torchrun go in first
            for warning in main.warnings + merge_parts(main, part_files(out)):
                log.warning(warning)
        world.barrier()
        known = main.entries if main is not None else read_results(out)[0]
        with results_writer(part_path(out, world.rank)) if world.distributed else nullcontext(main) as writer:
            report = caption_share(writer, known, videos[world.rank::world.size], caption_one, retry_failed,
                                   progress and world.is_main)
            report.out = out
        if world.distributed:
            world.barrier()  # every part complete and closed
            if main is not None:
                for warning in merge_parts(main, part_files(out)):
                    log.warning(warning)
            report = BatchReport.total(out, world.gather(report))
    return report


def caption_share(writer: ResultsWriter, known: list[dict], videos: list[str], caption_one: Callable[[str], dict],
                  retry_failed: bool, progress: bool) -> BatchReport:
    """Caption the `videos` that `known` entries (and the writer's own) do not settle, one line each."""
    latest = {entry["path"]: entry for entry in [*known, *writer.entries]}
    report, todo = BatchReport(writer.path), []
    for video in videos:
        entry = latest.get(video)
        if entry is None or ("error" in entry and retry_failed):
            todo.append(video)
        elif "error" in entry:
            report.failed_before.append((video, str(entry["error"])))
        else:
            report.done_before.append(video)
    start = time.perf_counter()
    for video in tqdm(todo, desc="captioning", unit="video", disable=not progress):
        try:  # the video's own time when `caption_one` knows it (batched with others), else since the line before
            fields = caption_one(video)
            seconds = fields.pop("seconds", time.perf_counter() - start)
            entry = {"path": video, **fields, "seconds": round(seconds, 3)}
            report.captioned.append(video)
        except OutputError:
            raise  # the output failed (disk full): every later video would fail the same way
        except UserError as error:
            entry = {"path": video, "error": str(error)}
            report.failed.append((video, str(error)))
        writer.append([entry])
        start = time.perf_counter()
    return report
