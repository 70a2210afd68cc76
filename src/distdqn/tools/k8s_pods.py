"""The pods of a KubeRay cluster for a config: its groups, how many pods each, and what one pod
offers (Ray CPUs, GPUs, custom resources) and needs (CPUs, memory), and the node pools each group
goes to. `distdqn k8s` (`tools/k8s.py`) writes them out as manifests.

**Groups from the placement.** Every role kind gets a worker group of identical pods, and the
pods offer exactly what their roles reserve, so `distdqn plan` and `distdqn k8s` agree by
construction (`tools/k8s.py`'s `manifests` runs the plan's own check, `plan.assign`, on the nodes it made):
- `learners`: one learner a pod, with `nvidia.com/gpu` limits when learners ask for GPUs;
- `shards`: one replay shard a pod, its memory sized for that shard's replay (below);
- `actors` (or `actors-0`, `actors-1`, ... with `actor_groups`): actors packed up to
  `pod_cpus` Ray CPUs a pod, split evenly over the groups, which node selectors and tolerations
  can send to different node pools (on-demand and spot, say);
- `evaluator`: one pod.
Ray schedules by resources alone, so a shard could land on an actor pod sized for actors. To keep
each role on the pods sized for it, the run config gets one custom resource per role kind,
`distdqn_<kind> = 1` added to `placement.<kind>.resources`, and each group offers as many as it
hosts instances. The custom resources of the placement itself are offered by the group of the
role that asks for them, so pinning in the config lands where the config says. The head has
0 Ray CPUs: it runs the Ray head services and the driver, no role. A group states its Ray
resources in KubeRay's `resources` field (KubeRay passes them to `ray start`, quoting the JSON of
custom resources itself); its Ray CPUs and GPUs are whole numbers, as `ray start` takes them: a
pod asks for the ceiling of what its roles reserve, and its CPU request and limit are its Ray
CPUs (the head's are `HEAD_CPUS`).

**Memory** (request = limit, so that no pod is evicted first under pressure), per pod:
`RAY_NODE_BYTES` + the object store + per role process `PROCESS_BYTES` (plus `GPU_PROCESS_BYTES`
for a process with a GPU) + a shard's replay: `replay_bytes` of its slots, from the capacity and
the env's frame bytes, as the memory table of docs/reference/memory.md counts them. The object store is
`OBJECT_STORE_BYTES` and set explicitly (`object-store-memory`), plus, when checkpoints hold the
replay (`checkpoint.replay`), one more copy of what passes through it: a shard's snapshot on its
pod, the whole replay on the head, where the driver gathers it. The head adds
`HEAD_SERVICES_BYTES` for the GCS and dashboard and one `PROCESS_BYTES` for the driver.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from distdqn.config import Config, build_config, lane_capacity, shard_lanes, short_repr
from distdqn.errors import UserError
from distdqn.memory import GiB
from distdqn.tools.k8s_values import EFFECTS, MAX_POD_CPUS, ROLE_KINDS, check_label, check_pods, check_resources

if TYPE_CHECKING:
    from distdqn.tools.k8s import K8sOptions

MiB = 1 << 20

RAY_NODE_BYTES = 1 * GiB
"""Ray's own processes on every node (raylet, dashboard agent, log monitor); a whole embedded
cluster measured about 700 MB (docs/how-to/ray.md, Costs)."""
HEAD_SERVICES_BYTES = 1 * GiB
"""The head's extra services: GCS and dashboard (which also hold the job's bookkeeping)."""
PROCESS_BYTES = 1 * GiB
"""One role process (or the driver): Python, PyTorch, Gymnasium and Ray's worker, the network and
the envs. docs/reference/memory.md measures a whole inline MinAtar run at 509 MB; this leaves room."""
GPU_PROCESS_BYTES = 2 * GiB
"""Added for a process that uses a GPU: CUDA's host-side runtime and pinned buffers."""
OBJECT_STORE_BYTES = 512 * MiB
"""Ray's object store on each pod for messages in flight (transition batches, samples, weights)."""
HEAD_CPUS = 2
"""CPUs of the head pod: the GCS, raylet and dashboard, and the driver's loop (0 Ray CPUs)."""

GROUP_NAMES = {"learner": "learners", "shard": "shards", "actor": "actors", "evaluator": "evaluator"}


@dataclass(frozen=True)
class PodGroup:
    """`replicas` identical pods; each hosts `per_pod` instances of one role kind (or the head)."""

    name: str
    role: str | None
    replicas: int
    per_pod: int
    ray_cpus: int
    cpus: int
    gpus: int
    resources: dict[str, float]
    memory: int
    object_store: int


def pin_resource(role: str) -> str:
    """The custom resource that keeps a role kind on its own group's pods."""
    return f"distdqn_{role}"


def run_config(config: Config) -> Config:
    """The config the cluster runs: on Ray, joining the cluster it runs in, each role kind pinned
    to its group by `distdqn_<kind>`."""
    data = config.model_dump(mode="json")
    placement = data["placement"]
    placement["runtime"] = "ray"
    placement["address"] = "auto"
    for role in ROLE_KINDS:
        placement[role]["resources"] = {**placement[role]["resources"], pin_resource(role): 1.0}
    return build_config(data, origin="distdqn k8s")


def plan_pods(config: Config, options: K8sOptions) -> tuple[Config, list[PodGroup]]:
    """The run config (`run_config`) and its pod groups (`pod_groups`) for a resolved config,
    refused in one line when its learners' devices and GPUs disagree or a pod would hold more than
    one pod can have."""
    _check_devices(config)
    check_resources(config)
    run = run_config(config)
    groups = pod_groups(run, options)
    check_pods(groups)
    return run, groups


def _check_devices(config: Config) -> None:
    """On a pod the learners' device and their GPUs come from two fields that must agree (the
    learner pods get GPUs only when `placement.learner.num_gpus` asks)."""
    placement = config.placement
    if placement.learner.num_gpus > 0 and placement.device == "cpu":
        raise UserError(
            f"placement.learner.num_gpus={placement.learner.num_gpus:g} gives each learner a GPU that "
            "placement.device='cpu' leaves unused; set placement.device=cuda"
        )
    if placement.learner.num_gpus == 0 and placement.device == "cuda":
        raise UserError("placement.device='cuda' needs GPUs on the learners' pods; set placement.learner.num_gpus=1")


def replay_sizes(config: Config) -> tuple[int, int, int]:
    """Bytes of the largest shard's replay, of all shards' together (`replay_bytes` of the slots
    each shard preallocates: its lanes times their capacity), and of `replay.capacity` slots (what
    `checkpoint.replay = "auto"` compares with its limit)."""
    from distdqn.envs import env_spaces, frame_box
    from distdqn.replay.buffer import replay_bytes

    frames = frame_box(env_spaces(config.env)[0])
    shards = [
        replay_bytes(shard_lanes(config, j) * lane_capacity(config, j), frames.shape, frames.dtype)
        for j in range(config.placement.num_shards)
        if shard_lanes(config, j)
    ]
    return max(shards), sum(shards), replay_bytes(config.replay.capacity, frames.shape, frames.dtype)


def snapshots_replay(config: Config, capacity_bytes: int) -> bool:
    """`train.snapshots_replay` without making the env again (a test checks they agree)."""
    from distdqn.run.snapshot import SNAPSHOT_AUTO_BYTES

    if config.checkpoint.replay != "auto":
        return config.checkpoint.replay
    return capacity_bytes <= SNAPSHOT_AUTO_BYTES


def _ceil(value: float) -> int:
    return math.ceil(value - 1e-9)


def _per_pod_cap(config: Config, role: str, count: int, pod_cpus: int) -> int:
    if role != "actor":
        return 1  # learners, shards and the evaluator each get a pod of their own
    resources = config.placement.actor
    cap = count
    if resources.num_cpus > 0:
        cap = min(cap, math.floor(pod_cpus / resources.num_cpus + 1e-9))
    if resources.num_gpus > 0:
        cap = min(cap, math.floor(1 / resources.num_gpus + 1e-9))
    return max(1, cap)


def pod_groups(config: Config, options: K8sOptions) -> list[PodGroup]:
    """The head, then one group per role kind (actors split over `actor_groups`), sized as the
    module docstring says. `config` is the run config (`run_config`)."""
    placement = config.placement
    if options.actor_groups < 1 or options.actor_groups > placement.num_actors:
        raise UserError(
            f"--actor-groups must be between 1 and placement.num_actors={placement.num_actors}, "
            f"got {options.actor_groups}"
        )
    if not 1 <= options.pod_cpus <= MAX_POD_CPUS:
        raise UserError(f"--pod-cpus must be between 1 and {MAX_POD_CPUS}, got {options.pod_cpus}")
    shard_replay, total_replay, capacity_bytes = replay_sizes(config)
    snapshots = snapshots_replay(config, capacity_bytes)

    head_store = OBJECT_STORE_BYTES + (total_replay if snapshots else 0)
    groups = [
        PodGroup(
            name="head",
            role=None,
            replicas=1,
            per_pod=0,
            ray_cpus=0,
            cpus=HEAD_CPUS,
            gpus=0,
            resources={},
            memory=RAY_NODE_BYTES + HEAD_SERVICES_BYTES + PROCESS_BYTES + head_store,
            object_store=head_store,
        )
    ]
    actor_counts = [
        placement.num_actors // options.actor_groups + (i < placement.num_actors % options.actor_groups)
        for i in range(options.actor_groups)
    ]
    actor_names = (
        [GROUP_NAMES["actor"]]
        if options.actor_groups == 1
        else [f"{GROUP_NAMES['actor']}-{i}" for i in range(options.actor_groups)]
    )
    plan = [
        ("learner", GROUP_NAMES["learner"], placement.num_learners),
        ("shard", GROUP_NAMES["shard"], placement.num_shards),
        *[("actor", name, count) for name, count in zip(actor_names, actor_counts, strict=True)],
        ("evaluator", GROUP_NAMES["evaluator"], 1),
    ]
    for role, name, count in plan:
        resources = getattr(placement, role)
        cap = _per_pod_cap(config, role, count, options.pod_cpus)
        replicas = math.ceil(count / cap)
        per_pod = math.ceil(count / replicas)  # spread evenly: 35 actors by 16 are 3 pods of 12
        data = shard_replay if role == "shard" else 0
        store = OBJECT_STORE_BYTES + (data if snapshots else 0)
        process = PROCESS_BYTES + (GPU_PROCESS_BYTES if resources.num_gpus > 0 else 0)
        ray_cpus = _ceil(per_pod * resources.num_cpus)
        groups.append(
            PodGroup(
                name=name,
                role=role,
                replicas=replicas,
                per_pod=per_pod,
                ray_cpus=ray_cpus,
                cpus=max(1, ray_cpus),
                gpus=_ceil(per_pod * resources.num_gpus),
                resources={key: per_pod * amount for key, amount in sorted(resources.resources.items())},
                memory=RAY_NODE_BYTES + store + per_pod * (process + data),
                object_store=store,
            )
        )
    return groups


def group_settings(options: K8sOptions, names: list[str]) -> dict[str, tuple[dict[str, str], list[dict[str, str]]]]:
    """Node selectors and tolerations of each group, from `GROUP` prefixes."""
    settings: dict[str, tuple[dict[str, str], list[dict[str, str]]]] = {name: ({}, []) for name in names}

    def matching(flag: str, group: str) -> list[str]:
        matched = [name for name in names if name == group or name.startswith(group + "-")]
        if not matched:
            raise UserError(f"{flag} {short_repr(group)}: no such group (groups: {', '.join(names)})")
        return matched

    for group, selector in options.node_selectors:
        flag = f"--node-selector {short_repr(group)}"
        key, sep, value = selector.partition("=")
        if not sep or not key:
            raise UserError(f"{flag} expects KEY=VALUE, got {short_repr(selector)}")
        check_label(flag, key, value)
        for name in matching("--node-selector", group):
            settings[name][0][key] = value
    for group, spec in options.tolerations:
        flag = f"--toleration {short_repr(group)}"
        pair, colon, effect = spec.rpartition(":")
        key, equals, value = pair.partition("=")
        if not colon or not key or effect not in EFFECTS:
            raise UserError(
                f"{flag} expects KEY[=VALUE]:EFFECT with EFFECT NoSchedule, PreferNoSchedule or NoExecute, "
                f"got {short_repr(spec)}"
            )
        check_label(flag, key, value)
        toleration = {"key": key, "operator": "Exists", "effect": effect}
        if equals:
            toleration = {"key": key, "operator": "Equal", "value": value, "effect": effect}
        for name in matching("--toleration", group):
            settings[name][1].append(toleration)
    return settings
