"""Kill anywhere: each long-running command (saliency train and distill, vidcap extract and train), SIGKILLed at
seeded points — mid-step, mid-write, between a file and its rename — and resumed until done, ends with the
outputs of a run that was never stopped: weights and caches bit for bit, metrics and logs equal. The long
version is `benchmarks/kill_campaign.py`."""
import pytest

from tests.support import faults
from tests.support.captioner_runs import captioner_scenarios

pytestmark = pytest.mark.slow


def test_every_command_resumes_from_seeded_kill_points_to_the_uninterrupted_outputs(tmp_path):
    scenarios = [*faults.saliency_scenarios(tmp_path), *captioner_scenarios(tmp_path)]
    results = faults.campaign(tmp_path, scenarios, kills=2, seed=0)
    for row in faults.summarise(results):
        assert row["kill_points"] >= 2, row
        assert row["identical"] == row["trials"], row["failed"]


@pytest.mark.parametrize(("kind", "at", "killed_after"), [(None, 3, 3), ("step", 2, 4), ("checkpoint", 1, None)])
def test_the_kill_lands_on_the_nth_event_or_the_nth_of_its_kind(monkeypatch, kind, at, killed_after):
    kills = []
    monkeypatch.setattr(faults.os, "kill", lambda pid, signal: kills.append(len(faults.EVENTS)))
    monkeypatch.setattr(faults, "EVENTS", [])
    monkeypatch.setattr(faults, "KILL_AT", at)
    monkeypatch.setattr(faults, "KILL_KIND", kind)
    for seen in ["fsync", "step", "fsync", "step", "step"]:
        faults.event(seen)
    assert kills == ([] if killed_after is None else [killed_after])
