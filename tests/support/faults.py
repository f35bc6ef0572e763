"""Fault injection for the kill-anywhere campaign: a command run in a child process that SIGKILLs itself at
its N-th event, so a kill lands at the same point on any machine, however fast.

`python -m tests.support.faults [--kill-at N] [--count FILE] MODULE ARGS...` runs `MODULE.main(ARGS)`
(`saliency.cli` or `vidcap.cli`) and counts events: an optimiser step, a video opened for decoding, a file
about to be fsynced (its bytes written, not yet durable), about to be renamed into place, just renamed, a
checkpoint complete. At event N (of any kind, or the N-th of `--kind`) it kills itself with SIGKILL, the way `kill -9` or the OOM killer would; `--count` writes the events
it saw to FILE at a normal exit, which is how a campaign learns where it can kill. Nothing here is imported
by the commands themselves: this is test support, never installed with the packages.
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from tests.support import corruption

REPOSITORY = Path(__file__).resolve().parents[2]  # the checkout holding tests/support/
EVENTS: list[str] = []  # the kinds of event seen so far, in order
KILL_AT = 0  # the event to die at (1-based); 0: never
KILL_KIND: str | None = None  # count only events of this kind towards KILL_AT; None: every event


def event(kind: str) -> None:
    """Record one event; SIGKILL this process if it is the chosen one."""
    EVENTS.append(kind)
    if KILL_KIND is None:
        reached = len(EVENTS) == KILL_AT
    else:
        reached = kind == KILL_KIND and EVENTS.count(kind) == KILL_AT
    if reached:
        os.kill(os.getpid(), signal.SIGKILL)


def _around(function: Callable, before: str | None = None, after: str | None = None) -> Callable:
    """`function` with an event just before and/or just after each call."""
    def wrapper(*args, **kwargs):
        if before:
            event(before)
        result = function(*args, **kwargs)
        if after:
            event(after)
        return result
    return wrapper


def instrument() -> None:
    """Put events into the places a kill matters: file writes (data written, before and after the atomic
    rename), optimiser steps, each video opened for decoding, and each whole checkpoint. Must run before the
    commands are imported (they bind `decode_with_fallback` by name)."""
    import torch

    from saliency.infra import media
    from saliency.infra.rundir import RunDir

    os.fsync = _around(os.fsync, before="fsync")
    os.replace = _around(os.replace, before="before-rename", after="after-rename")
    torch.optim.AdamW.step = _around(torch.optim.AdamW.step, after="step")
    media.decode_with_fallback = _around(media.decode_with_fallback, before="video")
    RunDir.save_train_state = _around(RunDir.save_train_state, after="checkpoint")


def main(argv: list[str] | None = None) -> int:
    global KILL_AT, KILL_KIND
    parser = argparse.ArgumentParser(prog="python -m tests.support.faults", description=__doc__.splitlines()[0])
    parser.add_argument("--kill-at", type=int, default=0, metavar="N", help="SIGKILL at the N-th event (default: never)")
    parser.add_argument("--kind", help="count only events of this kind (e.g. checkpoint) towards --kill-at")
    parser.add_argument("--count", type=Path, metavar="FILE", help="write the events seen to FILE (JSON) at exit")
    parser.add_argument("module", help="the command's module, e.g. saliency.cli")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the command's arguments")
    options = parser.parse_args(argv)
    KILL_AT, KILL_KIND = options.kill_at, options.kind
    if options.count:
        atexit.register(lambda: options.count.write_text(json.dumps(EVENTS)))
    instrument()
    return import_module(options.module).main(options.args)


if __name__ == "__main__":
    sys.exit(main())


# ----------------------------------------------------------------------------- the campaign

def run_child(module: str, args: list[str], kill_at: int = 0, kind: str | None = None,
              count: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m tests.support.faults ... MODULE ARGS` with one torch thread (bit-exact resumes on the CPU)."""
    command = [sys.executable, "-m", "tests.support.faults", "--kill-at", str(kill_at)]
    if kind:
        command += ["--kind", kind]
    if count:
        command += ["--count", str(count)]
    # The timeout only guards against a hang; it is no speed figure.
    return subprocess.run(command + [module, *map(str, args)], capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": child_pythonpath()})


def child_pythonpath() -> str:
    """PYTHONPATH for a child that runs `python -m tests.support.faults`: the repository root (where `tests/` is,
    never installed) first, then what the parent had."""
    return os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))


def count_events(module: str, args: list[str], folder: Path) -> list[str]:
    """The events of an uninterrupted run of the command (which must succeed)."""
    count = folder / "events.json"
    done = run_child(module, args, count=count)
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(map(str, args))}: exit {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(count.read_text())


def kill_until_done(module: str, start: list[str], resume: Callable[[], list[str]], kill_points: list[int]
                    ) -> list[int]:
    """Run the command, SIGKILLed at each of `kill_points` in turn (event numbers counted from each process's
    start), continuing each time with `resume()`'s arguments, then once more without a kill; returns the
    kill points that actually killed (a resumed process may end before its point). Raises on any failure."""
    args, killed = start, []
    for point in [*kill_points, 0]:
        done = run_child(module, args, kill_at=point)
        if done.returncode == -signal.SIGKILL:
            killed.append(point)
            args = resume()
            continue
        if done.returncode != 0:
            raise RuntimeError(f"{module} {' '.join(map(str, args))}: exit {done.returncode} after kills at "
                               f"{killed}: {done.stderr[-2000:]}")
        return killed
    raise AssertionError("unreachable: the last run has no kill point")


def _tensors(paths: list[Path]) -> dict:
    """Every tensor of the safetensors files `paths`, by name (cache shards: one name per video)."""
    from safetensors.torch import load_file

    return {name: tensor for path in paths for name, tensor in load_file(path).items()}


def _metadata(path: Path) -> dict:
    """A safetensors file's metadata without its digests (of its data, and of config files that name folders)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return {key: value for key, value in (handle.metadata() or {}).items() if not key.startswith("sha256")}


def differences(reference: Path, trial: Path) -> list[str]:
    """How output folder `trial` differs from `reference`: every file must be there and equal — tensors bit for
    bit (cache shards pooled, since a resumed extraction cuts its shards elsewhere), JSON equal but for the
    seconds a session took, other text equal once the trial's folder is named as the reference's. Lock and
    temp files are not outputs, and figures and TensorBoard event logs (wall-clock stamped, one file per
    session) are not compared."""
    import torch

    from saliency.infra.training import TENSORBOARD

    def outputs(folder: Path) -> dict[str, Path]:
        return {str(path.relative_to(folder)): path for path in sorted(folder.rglob("*"))
                if path.is_file() and not path.name.startswith(".") and TENSORBOARD not in path.parts}

    def here(path: Path) -> str:
        """A text file of the trial as if written in the reference folder (configs name their folders)."""
        return path.read_text(errors="replace").replace(str(trial), str(reference))

    ours, theirs = outputs(reference), outputs(trial)
    problems = [f"{name}: missing" for name in ours.keys() - theirs.keys() if "shard_" not in name]
    problems += [f"{name}: not in the uninterrupted run" for name in theirs.keys() - ours.keys() if "shard_" not in name]
    shards = sorted({str(Path(name).parent) for name in ours if "shard_" in name})
    for folder in shards:
        a = _tensors([path for name, path in ours.items() if name.startswith(f"{folder}/shard_")])
        b = _tensors([path for name, path in theirs.items() if name.startswith(f"{folder}/shard_")])
        if a.keys() != b.keys() or any(not torch.equal(a[key], b[key]) for key in a):
            problems.append(f"{folder}: cached tensors differ")
    for name in sorted(ours.keys() & theirs.keys()):
        mine, other = ours[name], theirs[name]
        if "shard_" in name:
            continue
        if name.endswith(".safetensors"):
            a, b = _tensors([mine]), _tensors([other])
            same = a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
            same = same and _metadata(mine) == _metadata(other)
        elif name.endswith(".png"):
            continue  # figures: what they draw is compared in log.csv and metrics.json; titles name the folder
        elif name.endswith("index.json"):
            same = json.loads(mine.read_text()).keys() == json.loads(other.read_text()).keys()
        elif name.endswith(".json"):
            a, b = json.loads(mine.read_text()), json.loads(here(other))
            for value in (a, b):
                if isinstance(value, dict):  # the time a session took, and the checksum that covers it
                    value.pop("train_seconds_this_session", None)
                    value.pop("sha256", None)
            same = a == b
        else:
            same = mine.read_text(errors="replace") == here(other)
        if not same:
            problems.append(f"{name}: differs")
    return problems


# The corruption battery's tiny saliency run, trained three epochs so that kills fall between checkpoints too.
SALIENCY_TINY = [*corruption.SALIENCY_TINY, "--set", "optim.epochs=3", "--set", "val_metrics=[CC, KLD]"]


@dataclass
class Scenario:
    """A long-running command: how to start it into output folder `out`, and how to continue it there."""
    name: str
    module: str
    start: Callable[[Path], list[str]]
    resume: Callable[[Path], list[str]]


def continue_run(start: Callable[[Path], list[str]], resume: list[str], run: Callable[[Path], Path]
                 ) -> Callable[[Path], list[str]]:
    """Resume a training run with `--resume` once it has a config.yaml; before that (killed while reading its
    data) there is nothing to resume and the user runs the command again."""
    return lambda out: [*resume, "--out", str(run(out)), "--resume", "--quiet"] if (run(out) / "config.yaml").is_file() \
        else start(out)


def prepare_once(made: Path, module: str, args: list) -> None:
    """Run a command that makes `made` (tiny data, a teacher) unless an earlier campaign left it in place."""
    if not made.exists():
        done = run_child(module, args)
        if done.returncode:
            raise RuntimeError(f"preparing {made}: {done.stderr[-2000:]}")


def saliency_scenarios(work: Path) -> list[Scenario]:
    """Tiny SALICON-layout data and a tiny teacher in `work` (kept and reused); the scenarios saliency train and
    saliency distill (vidcap's are `tests.support.captioner_runs.captioner_scenarios`)."""
    salicon, teacher = work / "salicon", work / "teacher"
    prepare_once(salicon, "saliency.cli", ["synth", salicon, "--n", "24", "--size", "32x64", "--quiet"])
    prepare_once(teacher / "model.safetensors", "saliency.cli",
                 ["train", "--set", f"data.root={salicon}", *SALIENCY_TINY, "--out", teacher])
    train = lambda out: ["train", "--set", f"data.root={salicon}", *SALIENCY_TINY, "--out", str(out)]  # noqa: E731
    distill = lambda out: ["distill", "--teacher", str(teacher), "--set", f"data.root={salicon}", *SALIENCY_TINY,  # noqa: E731
                           "--out", str(out)]
    return [
        Scenario("saliency train", "saliency.cli", train, continue_run(train, ["train"], lambda out: out)),
        Scenario("saliency distill", "saliency.cli", distill,
                 continue_run(distill, ["distill", "--teacher", str(teacher)], lambda out: out)),
    ]


def trial(scenario: Scenario, work: Path, events: int, number: int, seed: int = 0, max_kills: int = 3) -> dict:
    """Trial `number` of `scenario`: 1..`max_kills` seeded kill points among the run's `events`, resumed until
    done, then compared with the uninterrupted run in `work/reference`; returns what happened."""
    rng = random.Random(f"{seed}/{scenario.name}/{number}")
    points = [rng.randint(1, events) for _ in range(rng.randint(1, max_kills))]
    out = work / f"trial-{number}"
    shutil.rmtree(out, ignore_errors=True)
    try:
        killed = kill_until_done(scenario.module, scenario.start(out), lambda: scenario.resume(out), points)
        problems = differences(work / "reference", out)
    except RuntimeError as error:
        killed, problems = points, [str(error)]
    shutil.rmtree(out, ignore_errors=True)
    return {"trial": number, "kill_points": points, "killed_at": killed, "identical": not problems,
            "problems": problems}


def reference_events(scenario: Scenario, work: Path) -> list[str]:
    """The uninterrupted run into `work/reference` (made once, kept) and its events."""
    events = work / "events.json"
    if not events.is_file():
        shutil.rmtree(work / "reference", ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        found = count_events(scenario.module, scenario.start(work / "reference"), work)
        events.write_text(json.dumps(found))
    return json.loads(events.read_text())


def campaign(work: Path, scenarios: list[Scenario], kills: int, seed: int = 0, results: dict | None = None,
             save: Callable[[dict], None] = lambda results: None) -> dict:
    """At least `kills` kill points for each of `scenarios` (prepared in `work`), in seeded trials compared with an
    uninterrupted run.
    `results` of an earlier invocation are continued (trial numbers pick the kill points, so nothing is
    redrawn); `save(results)` runs after every trial, so a campaign killed itself loses at most one trial."""
    results = {} if results is None else results
    for scenario in scenarios:
        folder = work / scenario.name.replace(" ", "-")
        events = reference_events(scenario, folder)
        entry = results.setdefault(scenario.name, {"events": len(events), "trials": []})
        while sum(len(done["killed_at"]) for done in entry["trials"]) < kills:
            entry["trials"].append(trial(scenario, folder, len(events), len(entry["trials"]), seed))
            save(results)
    return results


def summarise(results: dict) -> list[dict]:
    """Per command: trials, kill points tried, trials that ended identical to the uninterrupted run."""
    rows = []
    for name, entry in results.items():
        trials = entry["trials"]
        rows.append({"command": name, "events": entry["events"], "trials": len(trials),
                     "kill_points": sum(len(done["killed_at"]) for done in trials),
                     "identical": sum(done["identical"] for done in trials),
                     "failed": [done for done in trials if not done["identical"]]})
    return rows
