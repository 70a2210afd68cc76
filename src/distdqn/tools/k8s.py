"""`distdqn k8s`: KubeRay manifests made from the placement.

`manifests(config, options)` turns a resolved config into plain Kubernetes objects (dicts; no
Kubernetes client is involved): a Secret with the Ray token, a ConfigMap with the run's config,
and a KubeRay `RayJob` (default) or `RayCluster` (`apiVersion: ray.io/v1`, KubeRay 1.7).

**Groups from the placement.** Every role kind gets a worker group of identical pods, and the
pods offer exactly what their roles reserve, so `distdqn plan` and `distdqn k8s` agree by
construction (`manifests` runs the plan's own check, `plan.assign`, on the nodes it made):
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
the env's frame bytes, as the README's memory table counts them. The object store is
`OBJECT_STORE_BYTES` and set explicitly (`object-store-memory`), plus, when checkpoints hold the
replay (`checkpoint.replay`), one more copy of what passes through it: a shard's snapshot on its
pod, the whole replay on the head, where the driver gathers it. The head adds
`HEAD_SERVICES_BYTES` for the GCS and dashboard and one `PROCESS_BYTES` for the driver.

**Token authentication** is on (`spec.authOptions: {mode: token}`, Ray >= 2.52). The manifest
names its Secret (`authOptions.secretName`, key `auth_token`) rather than letting the operator
make one, because the operator names its own after the RayCluster, which for a RayJob carries a
random suffix: a named Secret lets every container here reference the token explicitly
(`RAY_AUTH_TOKEN` from the Secret, `RAY_AUTH_MODE=token`) and outlives a RayJob's clusters.
`token="random"` (the default) emits that Secret with a fresh `secrets.token_hex(32)`, marked
immutable, so that applying a second generated file fails loudly on the Secret instead of
changing the token under a running cluster; such output must not be committed. `"external"` emits
no Secret: the user creates it once (`kubectl create secret generic NAME-ray-token
--from-literal=auth_token=$(openssl rand -hex 32)`); no container starts until it exists, and
the output is reproducible, which is what the examples in `deploy/` use.

**Dashboard and job API.** A RayJob cannot do without them: KubeRay submits the entrypoint
through the job API and polls the job's status on the dashboard port through the head Service.
So a RayJob uses `submissionMode: SidecarMode`: the submitter is a container in the head pod that
talks to `127.0.0.1:8265`, so no submitter pod (K8sJobMode) needs the job API over the network and
the operator is its only remote client (it reads the token from the Secret). The head Service is
`ClusterIP` and lists only the GCS and dashboard ports (KubeRay adds the metrics port), so
nothing is exposed outside the cluster, and every request needs the token. The cost of
SidecarMode: KubeRay does not restart the head pod of a RayJob, so a lost head fails the job
(the run's files stay in its storage); and the submitter container it adds to the head pod
(requests 0.5 CPU and 200 MiB, limits 1 CPU and 1 GiB) comes on top of the head's numbers
here. A RayCluster needs no job API: its head runs `include-dashboard: false` and lists only
the GCS port, unless `open_dashboard` asks for the dashboard (still behind the token and
ClusterIP: `kubectl port-forward`). Ray's client server
(10001), left out of the Service, and every Ray port of every pod still listen on the pod's IP
inside the cluster, behind the token: as the README's security note says, keep Ray inside a
private network (a NetworkPolicy is not generated).

**Input.** Every value that reaches the output is checked before anything is made, as
Kubernetes would check it (names, label keys and values, the image reference) and for
unprintable characters (every string of the config too), and every size is bounded by what one
machine has; the objects are written by a YAML dumper and the header comment holds only checked
values, so no value can leave its field or begin a document of its own.

**Driver.** A RayJob's entrypoint (or, on a RayCluster, `kubectl exec` into the head) runs
`distdqn train --config /config/run.toml --run-dir RUN_DIR`; the config has
`placement.runtime = "ray"` and `placement.address = "auto"`, which joins the cluster of the
pod it runs in. `storage` (an fsspec URI such as `s3://bucket/run`) is the run directory;
without it runs go to `/tmp/run` on the head and vanish with the pod, and a RayJob then keeps its
cluster when the job ends (`shutdownAfterJobFinishes` only with storage).
"""

from __future__ import annotations

import math
import re
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from distdqn.config import (
    Config,
    build_config,
    config_to_toml,
    lane_capacity,
    resolve_config,
    shard_lanes,
    short_repr,
)
from distdqn.errors import UserError
from distdqn.runtime.plan import Node, assign, role_demands
from distdqn.tools.k8s_values import (
    EFFECTS,
    MAX_NAME,
    MAX_POD_CPUS,
    ROLE_KINDS,
    check_config_strings,
    check_label,
    check_name,
    check_options,
    check_pods,
    check_resources,
)

MiB = 1 << 20
GiB = 1 << 30

RAY_VERSION = "2.60.0"
"""Ray in the image: the floor of the `ray` extra in pyproject.toml (a test checks they agree)."""
KUBERAY_API = "ray.io/v1"

RAY_NODE_BYTES = 1 * GiB
"""Ray's own processes on every node (raylet, dashboard agent, log monitor); a whole embedded
cluster measured about 700 MB (README, Distributed training on Ray)."""
HEAD_SERVICES_BYTES = 1 * GiB
"""The head's extra services: GCS and dashboard (which also hold the job's bookkeeping)."""
PROCESS_BYTES = 1 * GiB
"""One role process (or the driver): Python, PyTorch, Gymnasium and Ray's worker, the network and
the envs. The README measures a whole inline MinAtar run at 509 MB; this leaves room."""
GPU_PROCESS_BYTES = 2 * GiB
"""Added for a process that uses a GPU: CUDA's host-side runtime and pinned buffers."""
OBJECT_STORE_BYTES = 512 * MiB
"""Ray's object store on each pod for messages in flight (transition batches, samples, weights)."""
HEAD_CPUS = 2
"""CPUs of the head pod: the GCS, raylet and dashboard, and the driver's loop (0 Ray CPUs)."""

GROUP_NAMES = {"learner": "learners", "shard": "shards", "actor": "actors", "evaluator": "evaluator"}
CONFIG_DIR = "/config"
CONFIG_KEY = "run.toml"
LOCAL_RUN_DIR = "/tmp/run"
TOKEN_KEY = "auth_token"
"""The Secret key KubeRay reads the token from."""
FINISHED_TTL_S = 300
"""Seconds a finished RayJob's cluster stays for a look at its logs (with storage only)."""


@dataclass(frozen=True)
class K8sOptions:
    image: str
    """Container image with distdqn (and its `ray` extra) installed, for every pod."""
    kind: Literal["rayjob", "raycluster"] = "rayjob"
    name: str | None = None
    """Name of the RayJob/RayCluster (a DNS-1035 label); None derives it from the env id."""
    namespace: str | None = None
    storage: str | None = None
    """Run directory: a path or fsspec URI (`s3://bucket/run`); None is /tmp/run on the head."""
    resume: bool = False
    """Continue the run in `storage` (`distdqn train --resume`): a job made again after the first
    was deleted, preempted or failed goes on from its last checkpoint, exactly where the replay
    is in it, instead of being refused a run directory that is not empty."""
    token: Literal["random", "external"] = "random"
    open_dashboard: bool = False
    """RayCluster only: run the dashboard and job API (a RayJob always runs them)."""
    actor_groups: int = 1
    pod_cpus: int = 16
    """Most Ray CPUs of actors packed into one pod."""
    node_selectors: tuple[tuple[str, str], ...] = ()
    """(group, `KEY=VALUE`): a group name, or a prefix of names (`actors` for `actors-0`...)."""
    tolerations: tuple[tuple[str, str], ...] = ()
    """(group, `KEY[=VALUE]:EFFECT`)."""
    service_account: str | None = None
    """Service account of every pod (for instance one allowed to write the storage bucket)."""


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


def resolve_k8s_config(env_id: str | None, config_file: Path | None, overrides: list[str]) -> Config:
    """Resolve as `train` does; the run is always on Ray (a placement of several learners would
    otherwise fail validation before `run_config` could set it)."""
    return resolve_config(env_id, config_file, [*overrides, "placement.runtime=ray"])


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


def _check_devices(config: Config) -> None:
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


def cluster_nodes(cluster_spec: dict[str, Any]) -> list[Node]:
    """The Ray nodes a RayCluster spec starts, as `distdqn plan` sees nodes: one per pod, with the
    CPUs, GPUs and custom resources of its group's `resources`."""

    def node(name: str, group: dict[str, Any]) -> Node:
        return Node(name, {key: float(amount) for key, amount in group["resources"].items()})

    nodes = [node("head", cluster_spec["headGroupSpec"])]
    for group in cluster_spec.get("workerGroupSpecs", []):
        nodes += [node(f"{group['groupName']}-{i}", group) for i in range(group["replicas"])]
    return nodes


def default_name(env_id: str, kind: str) -> str:
    """`distdqn-` and the env id as a DNS-1035 label: `ALE/Pong-v5` -> `distdqn-ale-pong-v5`."""
    slug = re.sub(r"[^a-z0-9]+", "-", env_id.lower()).strip("-")
    return f"distdqn-{slug}"[: MAX_NAME[kind]].rstrip("-")


def _group_settings(options: K8sOptions, names: list[str]) -> dict[str, tuple[dict[str, str], list[dict[str, str]]]]:
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


def _mebibytes(size: int) -> str:
    return f"{math.ceil(size / MiB)}Mi"


def _quantity(amount: float) -> str:
    """A bounded amount as a plain decimal, never `1e+20`, to the 4 decimals Ray keeps."""
    return f"{amount:.4f}".rstrip("0").rstrip(".")


def _ray_resources(group: PodGroup) -> dict[str, str]:
    """The group's Ray resources in KubeRay's `resources` field (KubeRay turns them into `ray start
    --num-cpus/--num-gpus/--resources`, quoting the JSON itself)."""
    resources = {"CPU": str(group.ray_cpus)}
    if group.gpus:
        resources["GPU"] = str(group.gpus)
    resources.update({key: _quantity(amount) for key, amount in group.resources.items()})
    return resources


def manifests(config: Config, options: K8sOptions, token: str | None = None) -> list[dict[str, Any]]:
    """The Secret (with `token="random"`), the ConfigMap and the RayJob or RayCluster for a
    resolved config. `token` fixes the random token (tests); None draws one."""
    if options.kind not in MAX_NAME:
        raise UserError(f"--kind must be rayjob or raycluster, got {options.kind!r}")
    if options.open_dashboard and options.kind == "rayjob":
        raise UserError(
            "--open-dashboard is for --kind raycluster: a RayJob always runs the dashboard and job API "
            "(KubeRay submits and watches the job through them), inside the cluster and behind the token"
        )
    name = options.name if options.name is not None else default_name(config.env.id, options.kind)
    check_name(name, options.kind)
    check_options(options)
    if options.resume and options.storage is None:
        raise UserError("--resume continues the run in --storage URI: give it (a pod's /tmp/run is gone with the pod)")
    check_config_strings(config.model_dump(), "")
    _check_devices(config)
    check_resources(config)
    run = run_config(config)
    groups = pod_groups(run, options)
    check_pods(groups)
    settings = _group_settings(options, [group.name for group in groups])

    labels = {"app.kubernetes.io/name": "distdqn", "app.kubernetes.io/instance": name}
    secret_name, config_name = f"{name}-ray-token", f"{name}-config"

    def metadata(object_name: str) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": object_name}
        if options.namespace is not None:
            meta["namespace"] = options.namespace
        meta["labels"] = dict(labels)
        return meta

    def template(group: PodGroup) -> dict[str, Any]:
        head = group.role is None
        quantities = {"cpu": str(group.cpus), "memory": _mebibytes(group.memory)}
        if group.gpus:
            quantities["nvidia.com/gpu"] = str(group.gpus)
        container: dict[str, Any] = {
            "name": "ray-head" if head else "ray-worker",
            "image": options.image,
            "imagePullPolicy": "IfNotPresent",
            "env": [
                {"name": "RAY_AUTH_MODE", "value": "token"},
                {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret_name, "key": TOKEN_KEY}}},
                {"name": "RAY_USAGE_STATS_ENABLED", "value": "0"},
                # per-task event reports made the GCS grow for as long as a run lasted (README, Ray)
                {"name": "RAY_task_events_report_interval_ms", "value": "0"},
            ],
            "resources": {"limits": dict(quantities), "requests": dict(quantities)},
        }
        # Ray's object store lives in /dev/shm, which a container gets only 64 MB of by default;
        # memory-backed, it counts toward the pod's memory limit, which includes the store already
        container["volumeMounts"] = [{"name": "shared-memory", "mountPath": "/dev/shm"}]
        spec: dict[str, Any] = {
            "volumes": [
                {"name": "shared-memory", "emptyDir": {"medium": "Memory", "sizeLimit": _mebibytes(group.object_store)}}
            ]
        }
        if head:
            ports = [{"name": "gcs-server", "containerPort": 6379}]
            if options.kind == "rayjob" or options.open_dashboard:
                ports.append({"name": "dashboard", "containerPort": 8265})
            container["ports"] = ports
            container["volumeMounts"].append({"name": "run-config", "mountPath": CONFIG_DIR, "readOnly": True})
            spec["volumes"].append({"name": "run-config", "configMap": {"name": config_name}})
        spec["containers"] = [container]
        selector, tolerations = settings[group.name]
        if selector:
            spec["nodeSelector"] = dict(sorted(selector.items()))
        if tolerations:
            spec["tolerations"] = tolerations
        if options.service_account is not None:
            spec["serviceAccountName"] = options.service_account
        return {"metadata": {"labels": dict(labels)}, "spec": spec}

    head, workers = groups[0], groups[1:]
    head_params = {"object-store-memory": str(head.object_store)}
    if options.kind == "raycluster" and not options.open_dashboard:
        head_params["include-dashboard"] = "false"
    cluster_spec: dict[str, Any] = {
        "rayVersion": RAY_VERSION,
        "authOptions": {"mode": "token", "secretName": secret_name},
        "headGroupSpec": {
            "serviceType": "ClusterIP",
            "resources": _ray_resources(head),
            "rayStartParams": head_params,
            "template": template(head),
        },
        "workerGroupSpecs": [
            {
                "groupName": group.name,
                "replicas": group.replicas,
                "minReplicas": group.replicas,
                "maxReplicas": group.replicas,
                "resources": _ray_resources(group),
                "rayStartParams": {"object-store-memory": str(group.object_store)},
                "template": template(group),
            }
            for group in workers
        ],
    }
    assign(role_demands(run.placement), cluster_nodes(cluster_spec))  # what plan checks, on these pods

    objects: list[dict[str, Any]] = []
    if options.token == "random":
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": metadata(secret_name),
                "type": "Opaque",
                "immutable": True,
                "stringData": {TOKEN_KEY: token or secrets.token_hex(32)},
            }
        )
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(config_name),
            "data": {CONFIG_KEY: config_to_toml(run)},
        }
    )
    if options.kind == "rayjob":
        job_spec: dict[str, Any] = {
            "entrypoint": train_command(config, options),
            "submissionMode": "SidecarMode",
            "shutdownAfterJobFinishes": options.storage is not None,
        }
        if options.storage is not None:
            job_spec["ttlSecondsAfterFinished"] = FINISHED_TTL_S
        job_spec["rayClusterSpec"] = cluster_spec
        objects.append({"apiVersion": KUBERAY_API, "kind": "RayJob", "metadata": metadata(name), "spec": job_spec})
    else:
        objects.append(
            {"apiVersion": KUBERAY_API, "kind": "RayCluster", "metadata": metadata(name), "spec": cluster_spec}
        )
    return objects


def train_command(config: Config, options: K8sOptions) -> str:
    """The driver's command: the RayJob's entrypoint, or what to run on a RayCluster's head. An
    env id `module:Name` was the user's choice here (typed, or allowed with `--allow-import`);
    in the pod it comes from a file, the ConfigMap or the run's checkpoint, so the command
    passes that consent on as `--allow-import module`."""
    run_dir = options.storage if options.storage is not None else LOCAL_RUN_DIR
    module, sep, _ = config.env.id.rpartition(":")
    allow = f" --allow-import {shlex.quote(module)}" if sep else ""
    if options.resume:
        return f"distdqn train --resume {shlex.quote(run_dir)}{allow}"
    return f"distdqn train --config {CONFIG_DIR}/{CONFIG_KEY} --run-dir {shlex.quote(run_dir)}{allow}"


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line strings (the run config) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _header(config: Config, options: K8sOptions, objects: list[dict[str, Any]]) -> list[str]:
    main = objects[-1]
    name, kind = main["metadata"]["name"], main["kind"]
    spec = main["spec"]["rayClusterSpec"] if kind == "RayJob" else main["spec"]
    namespace = f" -n {options.namespace}" if options.namespace else ""
    lines = [
        f"{kind} {name} for {config.env.id}, made by `distdqn k8s` from the placement; "
        f"apply with `kubectl apply{namespace} -f FILE`.",
        f"Needs the KubeRay operator (checked against v1.7.0's CRDs) and an image with distdqn and Ray {RAY_VERSION}.",
        "Pods (CPU and memory: requests = limits):",
    ]
    groups = [("head", 1, spec["headGroupSpec"])] + [
        (group["groupName"], group["replicas"], group) for group in spec["workerGroupSpecs"]
    ]
    width = max(len(group_name) for group_name, _, _ in groups)
    for group_name, replicas, group in groups:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        gpus = f", {limits['nvidia.com/gpu']} GPU" if "nvidia.com/gpu" in limits else ""
        memory = int(limits["memory"].removesuffix("Mi")) / 1024
        lines.append(f"  {group_name.ljust(width)}  {replicas} x {limits['cpu']} CPU{gpus}, {memory:.1f} GiB")
    secret = spec["authOptions"]["secretName"]
    if options.token == "external":
        lines.append(
            f"Token: create the Secret first: kubectl create secret generic {secret}{namespace} "
            f"--from-literal={TOKEN_KEY}=$(openssl rand -hex 32)"
        )
    else:
        lines.append(
            f"Token: the Secret {secret} below holds a fresh random token: keep this output out of "
            "version control (--token external emits none)."
        )
    if options.storage is None:
        lines.append(f"Run files: {LOCAL_RUN_DIR} on the head pod, lost with it (--storage URI keeps them).")
    else:
        lines.append(f"Run files: {options.storage}")
    if kind == "RayCluster":
        lines.append(
            f"Start the run: kubectl exec{namespace} -it "
            f"$(kubectl get pod{namespace} -l ray.io/cluster={name},ray.io/node-type=head -o name) "
            f"-- {train_command(config, options)}"
        )
    return [_comment(line) for line in lines]


def _comment(line: str) -> str:
    """One line of the header: its values are checked printable, and should one slip through, a
    character that could end the comment (a newline, U+2028, NEL) is written escaped."""
    text = "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in line)
    return f"# {text}".rstrip()


def render(config: Config, options: K8sOptions, token: str | None = None) -> str:
    """The manifests as one multi-document YAML text, after a comment that sums them up."""
    objects = manifests(config, options, token)
    body = yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, explicit_start=True)
    return "\n".join(_header(config, options, objects)) + "\n" + body
