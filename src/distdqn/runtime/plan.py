"""`distdqn plan`: which role goes where, and whether the cluster can hold them all.

The check packs roles onto nodes first-fit, largest demand first, against each node's total
resources, the way Ray reserves them. The Ray runtime then reserves every role on the node this
plan picked (one placement group, each bundle pinned to its node), so `plan` and `train` agree;
when other work holds what the plan counted, `unplaced` names the roles left without room.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from distdqn.config import PlacementConfig, RoleResources
from distdqn.errors import UserError


@dataclass(frozen=True)
class Node:
    name: str
    resources: dict[str, float]


@dataclass(frozen=True)
class RoleDemand:
    name: str
    demand: dict[str, float]


def role_demands(placement: PlacementConfig) -> list[RoleDemand]:
    """Every role instance of the placement with the Ray resources it reserves."""

    def demand(resources: RoleResources) -> dict[str, float]:
        wanted = {"CPU": resources.num_cpus, "GPU": resources.num_gpus, **resources.resources}
        return {key: value for key, value in wanted.items() if value > 0}

    roles = [RoleDemand(f"learner-{i}", demand(placement.learner)) for i in range(placement.num_learners)]
    roles += [RoleDemand(f"shard-{j}", demand(placement.shard)) for j in range(placement.num_shards)]
    roles += [RoleDemand(f"actor-{i}", demand(placement.actor)) for i in range(placement.num_actors)]
    roles.append(RoleDemand("evaluator", demand(placement.evaluator)))
    return roles


def assign(roles: list[RoleDemand], nodes: list[Node]) -> dict[str, str]:
    """Role name -> node name; raises `UserError` naming the first role that does not fit."""
    free = {node.name: dict(node.resources) for node in nodes}
    placed: dict[str, str] = {}
    for role in sorted(roles, key=lambda r: -sum(r.demand.values())):
        for node in nodes:
            if _take(free[node.name], role.demand):
                placed[role.name] = node.name
                break
        else:
            raise UserError(
                f"the cluster cannot hold {role.name}, which needs {describe_resources(role.demand)} "
                f"(still free: {describe_free(free)})"
            )
    return {role.name: placed[role.name] for role in roles}


def unplaced(roles: list[RoleDemand], placed: dict[str, str], free: dict[str, dict[str, float]]) -> list[RoleDemand]:
    """The roles that cannot go where `placed` puts them, given `free`, what each alive node has
    left now (a node missing from it is gone): other work took what the plan counted."""
    left = {name: dict(resources) for name, resources in free.items()}
    return [role for role in roles if not (placed[role.name] in left and _take(left[placed[role.name]], role.demand))]


def _take(free: dict[str, float], demand: dict[str, float]) -> bool:
    """Take `demand` out of `free` if it fits there; whether it did."""
    if any(free.get(key, 0.0) < amount - 1e-9 for key, amount in demand.items()):
        return False
    for key, amount in demand.items():
        free[key] -= amount
    return True


def describe_free(free: dict[str, dict[str, float]]) -> str:
    """`node: CPU=1, w1=0.6; node2: nothing`: what each node has left."""
    return "; ".join(f"{name}: {describe_resources(resources)}" for name, resources in free.items())


def describe_resources(resources: dict[str, float]) -> str:
    shown = {k: v for k, v in resources.items() if not k.startswith(("node:", "memory", "object_store"))}
    return ", ".join(f"{k}={v:g}" for k, v in sorted(shown.items())) or "nothing"


def render(roles: list[RoleDemand], placed: dict[str, str]) -> str:
    """The plan as a table: one row per role instance."""
    rows = [("role", "needs", "node")] + [(r.name, describe_resources(r.demand), placed[r.name]) for r in roles]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def machine_cores() -> int:
    """Cores this process may run on (its CPU affinity, which a container or `taskset` narrows)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def oversubscription(cluster_cpus: float, cores: int) -> str | None:
    """A warning when an embedded cluster of `cluster_cpus` logical CPUs (one per CPU the roles
    reserve, so every plan fits it) runs on a machine of fewer `cores`; None when they fit."""
    if cluster_cpus <= cores:
        return None
    return (
        f"the embedded cluster reserves {cluster_cpus:g} CPUs for these roles, but this machine has "
        f"{cores} core{'s' if cores != 1 else ''}: {cluster_cpus / cores:.3g}x oversubscribed, so roles share cores "
        "and each runs slower than its reservation says (lower placement.*.num_cpus or num_actors, "
        "or join a larger cluster with --address)"
    )
