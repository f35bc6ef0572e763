"""Kill-anywhere campaign: every long-running command SIGKILLed at seeded points and resumed until done.

    python -m benchmarks.kill_campaign [--kills 50] [--seed 0] [--work runs/kill-campaign]
                                       [--json benchmarks/results/kill_campaign.json]

For each of saliency train, saliency distill, vidcap extract and vidcap train (tiny data, so a run takes
seconds), trials of 1–3 kills at seeded event numbers — an optimiser step, a video opened, a file written but
not yet fsynced, before or after its atomic rename, a checkpoint complete — each followed by the resume a user
would run, until at least `--kills` kill points per command; every trial's outputs are compared with an
uninterrupted run (weights, train state and caches bit for bit, metrics and logs equal). Resumable: the JSON
keeps every finished trial, and running the command again continues where it stopped.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from tests.support import faults
from saliency.infra.rundir import atomic_write_json
from tests.support.captioner_runs import captioner_scenarios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50, help="kill points per command (default 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("runs/kill-campaign"))
    parser.add_argument("--json", type=Path, default=Path("runs/bench/kill_campaign.json"),
                        help="results, reused by the next run (default %(default)s; the committed reference is "
                             "benchmarks/results/kill_campaign.json)")
    args = parser.parse_args()
    results = json.loads(args.json.read_text()) if args.json.is_file() else {"seed": args.seed, "commands": {}}
    if results["seed"] != args.seed:
        raise SystemExit(f"{args.json} holds seed {results['seed']}; pass --seed {results['seed']} or another --json")
    for events in args.work.glob("*/events.json"):  # this code's uninterrupted runs, made afresh
        shutil.rmtree(events.parent / "reference", ignore_errors=True)
        events.unlink()
    scenarios = [*faults.saliency_scenarios(args.work), *captioner_scenarios(args.work)]
    faults.campaign(args.work, scenarios, args.kills, args.seed, results["commands"],
                    save=lambda commands: atomic_write_json(args.json, {**results, "commands": commands}))
    print(f"{'command':<18}{'events':>8}{'trials':>8}{'kill points':>13}{'identical':>11}")
    for row in faults.summarise(results["commands"]):
        print(f"{row['command']:<18}{row['events']:>8}{row['trials']:>8}{row['kill_points']:>13}"
              f"{row['identical']:>8}/{row['trials']}")
        for failed in row["failed"]:
            print(f"    trial {failed['trial']}, killed at {failed['killed_at']}: {'; '.join(failed['problems'])}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
