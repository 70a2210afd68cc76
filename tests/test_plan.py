"""`distdqn plan` on the embedded cluster: it reserves what the roles ask for, so it says how far
that oversubscribes this machine's cores."""

from __future__ import annotations

import pytest

from distdqn.cli import main
from distdqn.runtime import plan as plan_module
from distdqn.runtime.plan import Node, RoleDemand, assign, describe_free, oversubscription, unplaced


def test_oversubscription_names_the_cpus_the_cores_and_the_factor():
    assert oversubscription(2, 2) is None and oversubscription(3, 16) is None
    warning = oversubscription(66, 2)
    assert warning is not None
    assert warning.startswith(
        "the embedded cluster reserves 66 CPUs for these roles, but this machine has 2 cores: 33x oversubscribed"
    )
    assert "1 core: 3x oversubscribed" in (oversubscription(3, 1) or "")


def test_plan_of_64_actors_on_2_cores_warns_in_one_line(capsys: pytest.CaptureFixture[str], monkeypatch):
    """It printed 64 actors on the "embedded local cluster" of a 2-core machine and nothing else."""
    monkeypatch.setattr(plan_module, "machine_cores", lambda: 2)
    assert main(["plan", "--runtime", "ray", "--set", "placement.num_actors=64"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 1 + 64 + 3  # the header and every role, as before
    assert captured.err == f"distdqn: warning: {oversubscription(66, 2)}\n"

    monkeypatch.setattr(plan_module, "machine_cores", lambda: 128)
    assert main(["plan", "--runtime", "ray", "--set", "placement.num_actors=64"]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(plan_module, "machine_cores", lambda: 2)
    assert main(["plan", "--set", "placement.num_actors=64"]) == 0  # inline: one process, nothing reserved
    assert capsys.readouterr().err == ""


def test_unplaced_names_the_roles_that_what_is_free_now_cannot_hold_where_the_plan_put_them():
    roles = [
        RoleDemand("learner-0", {"CPU": 1.0}),
        RoleDemand("actor-0", {"CPU": 1.0, "w1": 0.4}),
        RoleDemand("actor-1", {"CPU": 1.0, "w1": 0.4}),
        RoleDemand("evaluator", {}),
    ]
    nodes = [Node("head", {"CPU": 1.0}), Node("w1", {"CPU": 2.0, "w1": 1.0})]
    placed = assign(roles, nodes)
    assert placed == {"learner-0": "head", "actor-0": "w1", "actor-1": "w1", "evaluator": "head"}
    assert unplaced(roles, placed, {"head": {"CPU": 1.0}, "w1": {"CPU": 2.0, "w1": 1.0}}) == []
    # another job took a CPU of w1: one actor has no room there
    assert [r.name for r in unplaced(roles, placed, {"head": {"CPU": 1.0}, "w1": {"CPU": 1.0, "w1": 1.0}})] == [
        "actor-1"
    ]
    # w1 is gone: both of its actors
    assert [r.name for r in unplaced(roles, placed, {"head": {"CPU": 3.0}})] == ["actor-0", "actor-1"]
    assert describe_free({"head": {"CPU": 1.0, "node:1.2.3.4": 1.0}, "w1": {}}) == "head: CPU=1; w1: nothing"
