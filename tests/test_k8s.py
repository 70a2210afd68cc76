"""`distdqn k8s`: KubeRay manifests valid against the CRDs, in agreement with `distdqn plan`,
closed by default (a NetworkPolicy valid against Kubernetes' schema), and the examples in
`deploy/` current."""

from __future__ import annotations

import contextlib
import copy
import gzip
import importlib.util
import io
import json
import re
import shlex
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema.protocols import Validator

from distdqn.cli import main as distdqn
from distdqn.config import Config, build_config, load_config_toml, resolve_config, short_repr
from distdqn.errors import UserError
from distdqn.memory import GiB
from distdqn.runtime.plan import assign, role_demands
from distdqn.tools import k8s, k8s_pods, k8s_values, k8s_yaml
from distdqn.tools.k8s import K8sOptions
from distdqn.tools.k8s_pods import MiB

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).parents[1]
SCHEMAS = Path(__file__).parent / "kuberay"
K8S_SCHEMAS = Path(__file__).parent / "k8s_schemas"
IMAGE = "ghcr.io/OWNER/distdqn:0.1.0"

PLACEMENTS: dict[str, tuple[str, list[str], dict[str, Any]]] = {
    "cpu-4-actors": ("CartPole-v1", ["placement.num_actors=4"], {}),
    "gpu-learner-32-actors-4-shards": (
        "ALE/Pong-v5",
        [
            "placement.device=cuda",
            "placement.learner.num_gpus=1",
            "placement.num_actors=32",
            "placement.num_shards=4",
        ],
        {"storage": "s3://bucket/pong"},
    ),
    "two-learners-64-actors-two-groups": (
        "ALE/Pong-v5",
        [
            "placement.device=cuda",
            "placement.num_learners=2",
            "placement.learner.num_gpus=1",
            "placement.num_actors=64",
            "placement.num_shards=4",
        ],
        {"actor_groups": 2, "node_selectors": (("actors-1", "pool=spot"),)},
    ),
}
KINDS = ["rayjob", "raycluster"]
API_VERSIONS = {
    "Secret": "v1",
    "ConfigMap": "v1",
    "NetworkPolicy": "networking.k8s.io/v1",
    "RayJob": "ray.io/v1",
    "RayCluster": "ray.io/v1",
}


@cache
def _config(placement: str) -> Config:
    env_id, overrides, _ = PLACEMENTS[placement]
    return k8s.resolve_k8s_config(env_id, None, overrides)


@cache
def _objects(placement: str, kind: str) -> tuple[dict[str, Any], ...]:
    options = K8sOptions(image=IMAGE, kind=kind, **PLACEMENTS[placement][2])  # type: ignore[arg-type]
    return tuple(k8s.manifests(_config(placement), options, token="0" * 64))


def _by_kind(objects: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {obj["kind"]: obj for obj in objects}


def _cluster_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["rayClusterSpec"] if obj["kind"] == "RayJob" else obj["spec"]


def _pod_groups(spec: dict[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
    """(name, replicas, group spec) of the head and every worker group."""
    return [("head", 1, spec["headGroupSpec"])] + [(g["groupName"], g["replicas"], g) for g in spec["workerGroupSpecs"]]


def _container(group: dict[str, Any]) -> dict[str, Any]:
    return group["template"]["spec"]["containers"][0]


def _bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)?", quantity).groups()  # type: ignore[union-attr]
    return int(number) * {"Mi": MiB, "Gi": GiB, None: 1}[unit]


# -- validation against the CRDs -----------------------------------------------------------------
def _strict(schema: Any) -> Any:
    """The API server drops fields a structural schema does not list: make them errors instead."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        listed = "properties" in schema and "additionalProperties" not in schema
        if listed and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@cache
def _validator(kind: str) -> Validator:
    """The CRD's schema for RayJob and RayCluster, Kubernetes' own (strict already) for NetworkPolicy."""
    if kind == "NetworkPolicy":
        schema = json.loads((K8S_SCHEMAS / "networkpolicy-networking-v1.json").read_text())
        return jsonschema.Draft202012Validator(schema)
    schema = json.loads(gzip.decompress((SCHEMAS / f"{kind.lower()}.v1.schema.json.gz").read_bytes()))
    return jsonschema.Draft7Validator(_strict(schema))


def _schema_errors(obj: dict[str, Any]) -> list[str]:
    errors = _validator(obj["kind"]).iter_errors(obj)
    return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in errors]


def _operator_errors(obj: dict[str, Any]) -> list[str]:
    """The checks of KubeRay's validation.go that apply to what `distdqn k8s` writes."""
    errors = []
    name, spec = obj["metadata"]["name"], _cluster_spec(obj)
    limit = 47 if obj["kind"] == "RayJob" else 53
    if len(name) > limit or not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name):
        errors.append(f"name {name!r} is no DNS-1035 label of at most {limit} characters")
    if tuple(map(int, spec["rayVersion"].split("."))) < (2, 52, 0):
        errors.append("token auth needs rayVersion >= 2.52.0")
    for group_name, _, group in _pod_groups(spec):
        params = group["rayStartParams"]
        if group.get("resources") and {"num-cpus", "num-gpus", "memory", "resources"} & set(params):
            errors.append(f"{group_name}: Ray resources both in rayStartParams and resources")
        if group_name != "head" and not group["minReplicas"] == group["replicas"] == group["maxReplicas"]:
            errors.append(f"{group_name}: without autoscaling minReplicas = replicas = maxReplicas")
    if obj["kind"] == "RayJob" and obj["spec"]["submissionMode"] == "SidecarMode":
        if {"submitterPodTemplate", "submitterConfig"} & set(obj["spec"]):
            errors.append("SidecarMode takes no submitterPodTemplate or submitterConfig")
        if spec["headGroupSpec"]["template"]["spec"].get("restartPolicy", "Never") != "Never":
            errors.append("SidecarMode needs the head's restartPolicy Never or unset")
    return errors


# -- the NetworkPolicy: Kubernetes' rules, and which pods it lets in -------------------------------
def _policy_errors(policy: dict[str, Any]) -> list[str]:
    """The API server's checks of a NetworkPolicy that its JSON schema leaves out and that apply here."""
    spec, errors = policy["spec"], []
    types = spec["policyTypes"]
    if not set(types) <= {"Ingress", "Egress"} or len(set(types)) < len(types):
        errors.append(f"policyTypes {types}")
    for rule in spec.get("ingress", []):
        for port in rule.get("ports", []):
            if port.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP") or not 0 < port.get("port", 1) < 65536:
                errors.append(f"port {port}")
        selectors = [spec["podSelector"]] + [selector for peer in rule["from"] for selector in peer.values()]
        for key, value in (item for selector in selectors for item in selector.get("matchLabels", {}).items()):
            try:
                k8s_values.check_label("label", key, value)
            except UserError as error:
                errors.append(str(error))
    return errors


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # what the policy uses; an empty selector selects all
    return selector.get("matchLabels", {}).items() <= labels.items()


def _admits(policy: dict[str, Any], source: dict[str, str], port: int, namespace: str = "here") -> bool:
    """Whether the policy lets TCP from a pod labelled `source` in `namespace` ("here": the policy's
    own) in to `port` of the pods it selects, by the API's rules for the fields it uses."""
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # egress open

    def peer_admits(peer: dict[str, Any]) -> bool:
        if "namespaceSelector" in peer:
            in_namespace = _selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
        else:
            in_namespace = namespace == "here"
        return in_namespace and _selects(peer.get("podSelector", {}), source)

    return any(
        any(item.get("protocol", "TCP") == "TCP" and item.get("port", port) == port for item in rule["ports"])
        and any(peer_admits(peer) for peer in rule["from"])
        for rule in policy["spec"]["ingress"]
    )


def _kuberay_pod_labels(cluster: str, node_type: str, group: str, template: dict[str, str]) -> dict[str, str]:
    """The labels KubeRay v1.7.0 gives a pod (`labelPod`, ray-operator/controllers/ray/common/pod.go):
    its own, overridden by the template's except ray.io/cluster, ray.io/node-type and ray.io/group."""
    own = {
        "ray.io/is-ray-node": "yes",
        "ray.io/cluster": cluster,
        "ray.io/node-type": node_type,
        "ray.io/group": group,
        "ray.io/identifier": f"{cluster}-{node_type}",
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    kept = {"ray.io/cluster", "ray.io/node-type", "ray.io/group"}
    return own | {key: value for key, value in template.items() if key not in kept}


def _cluster_pod_labels(main: dict[str, Any]) -> list[dict[str, str]]:
    """The labels of every pod KubeRay makes for the RayJob or RayCluster (a RayJob's cluster is
    named after it with a random suffix)."""
    name = main["metadata"]["name"]
    cluster = f"{name}-x7k2q" if main["kind"] == "RayJob" else name
    return [
        _kuberay_pod_labels(cluster, "head" if group_name == "head" else "worker", group_name, labels)
        for group_name, _, group in _pod_groups(_cluster_spec(main))
        for labels in [group["template"]["metadata"]["labels"]]
    ]


def _check_network_policy(policy: dict[str, Any], main: dict[str, Any]) -> None:
    """Valid, selecting every pod of the cluster, and letting in its own pods on every TCP port and,
    for a RayJob, the operator on the dashboard port only (it polls the job there); nothing else."""
    assert _schema_errors(policy) == [] and _policy_errors(policy) == []
    pods = _cluster_pod_labels(main)
    ports = [6379, 8265, 10001, 10002, 19999, 52365, 45678]  # GCS, dashboard, client, workers, agent, an OS pick
    for pod in pods:
        assert _selects(policy["spec"]["podSelector"], pod)
        assert all(_admits(policy, pod, port) for port in ports)
        assert not _admits(policy, pod, 6379, namespace="elsewhere")
    operator = {"app.kubernetes.io/name": "kuberay-operator", "app.kubernetes.io/component": "kuberay-operator"}
    assert _admits(policy, operator, 8265, namespace="ray-system") is (main["kind"] == "RayJob")
    assert not any(_admits(policy, operator, port, namespace="ray-system") for port in ports if port != 8265)
    # another distdqn run in the same namespace, and a pod without labels
    other = _kuberay_pod_labels(
        "other", "head", "head", {"app.kubernetes.io/name": "distdqn", "app.kubernetes.io/instance": "other"}
    )
    assert not any(_admits(policy, source, port) for source in (other, {}) for port in ports)


def _check_plain_objects(objects: list[dict[str, Any]] | tuple[dict[str, Any], ...], main: dict[str, Any]) -> None:
    """ConfigMap and Secret: the few fields they have, and the references to them."""
    spec = _cluster_spec(main)
    secret_name = spec["authOptions"]["secretName"]
    for obj in objects:
        assert obj["apiVersion"] == API_VERSIONS[obj["kind"]]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", obj["metadata"]["name"])
        assert obj["metadata"].get("namespace") == main["metadata"].get("namespace")
    plain = _by_kind(objects)
    config_map = plain["ConfigMap"]
    assert set(config_map) == {"apiVersion", "kind", "metadata", "data"}
    assert all(isinstance(value, str) for value in config_map["data"].values())
    head = spec["headGroupSpec"]["template"]["spec"]
    assert {"name": "run-config", "configMap": {"name": config_map["metadata"]["name"]}} in head["volumes"]
    for pod in [head] + [group["template"]["spec"] for group in spec.get("workerGroupSpecs", [])]:
        # every pod's object store gets a memory-backed /dev/shm of its size, not Docker's 64 MB
        (shm,) = [volume for volume in pod["volumes"] if volume["name"] == "shared-memory"]
        assert shm["emptyDir"]["medium"] == "Memory"
        assert {"name": "shared-memory", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]
    if "Secret" in plain:
        secret = plain["Secret"]
        assert set(secret) == {"apiVersion", "kind", "metadata", "type", "immutable", "stringData"}
        assert secret["type"] == "Opaque" and secret["immutable"] is True
        assert secret["metadata"]["name"] == secret_name
        assert set(secret["stringData"]) == {"auth_token"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_manifests_validate_against_the_kuberay_crds(placement: str, kind: str):
    objects = _objects(placement, kind)
    main_kind = {"rayjob": "RayJob"}.get(kind, "RayCluster")
    assert [obj["kind"] for obj in objects] == ["Secret", "ConfigMap", "NetworkPolicy", main_kind]
    main = objects[-1]
    assert _schema_errors(main) == []
    assert _operator_errors(main) == []
    _check_plain_objects(objects, main)


def test_the_strict_schema_catches_a_misspelt_field():
    """The point of `_strict`: the API server would silently drop `replica`."""
    main = copy.deepcopy(_objects("cpu-4-actors", "raycluster")[-1])
    main["spec"]["workerGroupSpecs"][0]["replica"] = 2
    main["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "two"
    errors = _schema_errors(main)
    assert any("'replica' was unexpected" in error for error in errors), errors
    assert any("limits.cpu" in error for error in errors), errors


# -- plan and k8s agree -----------------------------------------------------------------------------
@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_plan_fits_the_generated_cluster_and_resources_add_up(placement: str):
    config = _config(placement)
    main = _objects(placement, "rayjob")[-1]
    spec = _cluster_spec(main)
    nodes = k8s.cluster_nodes(spec)
    text = _by_kind(_objects(placement, "rayjob"))["ConfigMap"]["data"]["run.toml"]
    run = build_config(tomllib.loads(text), origin="ConfigMap")

    # what the cluster runs fits, each role on its own group's pods; the user's placement too
    placed = assign(role_demands(run.placement), nodes)
    for role, node in placed.items():
        assert node.startswith(k8s_pods.GROUP_NAMES[role.split("-")[0]]), (role, node)
    assign(role_demands(config.placement), nodes)

    roles = role_demands(run.placement)
    needed = {key: sum(r.demand.get(key, 0.0) for r in roles) for key in {k for r in roles for k in r.demand}}
    offered: dict[str, float] = {}
    for node in nodes:
        for key, amount in node.resources.items():
            offered[key] = offered.get(key, 0.0) + amount
    workers = len(nodes) - 1
    assert offered.get("GPU", 0.0) == needed.get("GPU", 0.0)  # whole GPUs asked, whole GPUs given
    assert needed["CPU"] <= offered["CPU"] <= needed["CPU"] + workers  # at most a rounding per pod
    for role in k8s_values.ROLE_KINDS:
        pin = k8s_pods.pin_resource(role)
        assert offered[pin] == needed[pin]  # every pod full: pins offered = role instances

    # the pods' Kubernetes requests are what Ray is told they have (the head: its services)
    for name, _, group in _pod_groups(spec):
        container = _container(group)
        limits = container["resources"]["limits"]
        assert container["resources"]["requests"] == limits
        assert int(limits["cpu"]) == (k8s_pods.HEAD_CPUS if name == "head" else max(1, int(group["resources"]["CPU"])))
        assert limits.get("nvidia.com/gpu", "0") == group["resources"].get("GPU", "0")

    # memory: every shard pod holds its replay and the headroom, and the total is not far above
    _, total_replay, _ = k8s_pods.replay_sizes(run)
    memory = {name: _bytes(_container(group)["resources"]["limits"]["memory"]) for name, _, group in _pod_groups(spec)}
    replicas = {name: count for name, count, _ in _pod_groups(spec)}
    shard_share = total_replay / run.placement.num_shards
    pod_floor = k8s_pods.RAY_NODE_BYTES + k8s_pods.OBJECT_STORE_BYTES + k8s_pods.PROCESS_BYTES
    assert memory["shards"] >= shard_share + pod_floor
    processes = len(roles) + 1  # and the driver
    total = sum(memory[name] * replicas[name] for name in memory)
    overhead = processes * (k8s_pods.PROCESS_BYTES + k8s_pods.GPU_PROCESS_BYTES) + len(nodes) * 2 * GiB
    assert total_replay < total <= 2 * total_replay + overhead


def test_shard_pod_memory_by_hand():
    """Pong, 32 actors x 8 envs over 4 shards: 64 lanes a shard of 1_000_000 // 4 // 64 = 3906
    slots, 249_984 slots of 84*84 frame bytes + 49 bytes of fields = 1_776_136_320 bytes, and a
    sum tree of 2 * 8 * 2**18 = 4_194_304 bytes. A 1M replay is no snapshot (over 1 GiB), so the
    pod is 1 GiB (Ray) + 512 MiB (object store) + 1 GiB (the shard's process) + the replay:
    4_464_685_184 bytes, 4258 MiB rounded up."""
    spec = _cluster_spec(_objects("gpu-learner-32-actors-4-shards", "rayjob")[-1])
    (shards,) = [g for g in spec["workerGroupSpecs"] if g["groupName"] == "shards"]
    assert shards["replicas"] == 4
    assert _container(shards)["resources"]["limits"]["memory"] == "4258Mi"
    assert shards["rayStartParams"] == {"object-store-memory": str(512 * MiB)}


def test_a_snapshot_of_the_replay_is_counted_on_its_shard_and_on_the_head():
    """CartPole's 50k replay is in checkpoints (under 1 GiB): 50_000 slots of 16 + 49 bytes and a
    tree of 2 * 8 * 2**16 bytes = 4_298_576 bytes, once more in each object store that holds it."""
    spec = _cluster_spec(_objects("cpu-4-actors", "rayjob")[-1])
    groups = {name: group for name, _, group in _pod_groups(spec)}
    replay = 4_298_576
    assert groups["shards"]["rayStartParams"]["object-store-memory"] == str(512 * MiB + replay)
    assert groups["head"]["rayStartParams"]["object-store-memory"] == str(512 * MiB + replay)
    expected = {"shards": 2 * GiB + 512 * MiB + 2 * replay, "head": 3 * GiB + 512 * MiB + replay}
    for name, size in expected.items():
        assert _container(groups[name])["resources"]["limits"]["memory"] == f"{-(-size // MiB)}Mi"


@pytest.mark.parametrize("placement", ["cpu-4-actors", "gpu-learner-32-actors-4-shards"])
def test_snapshot_rule_agrees_with_training(placement: str):
    from distdqn.run.snapshot import snapshots_replay

    run = k8s_pods.run_config(_config(placement))
    assert k8s_pods.snapshots_replay(run, k8s_pods.replay_sizes(run)[2]) == snapshots_replay(run)


def test_actors_pack_into_pods_and_split_over_groups():
    spec = _cluster_spec(_objects("two-learners-64-actors-two-groups", "rayjob")[-1])
    groups = {name: (replicas, group) for name, replicas, group in _pod_groups(spec)}
    for name in ("actors-0", "actors-1"):
        replicas, group = groups[name]
        assert replicas == 2 and group["resources"] == {"CPU": "16", "distdqn_actor": "16"}
    assert groups["learners"][0] == 2 and groups["learners"][1]["resources"]["GPU"] == "1"
    assert groups["actors-1"][1]["template"]["spec"]["nodeSelector"] == {"pool": "spot"}
    assert "nodeSelector" not in groups["actors-0"][1]["template"]["spec"]

    odd = k8s_pods.pod_groups(
        k8s_pods.run_config(resolve_config("CartPole-v1", None, ["placement.num_actors=35"])), K8sOptions(IMAGE)
    )
    (actors,) = [g for g in odd if g.name == "actors"]
    assert (actors.replicas, actors.per_pod, actors.ray_cpus) == (3, 12, 12)  # evenly, not 16 + 16 + 3


def test_placement_pinning_lands_on_the_group_of_its_role():
    config = resolve_config("CartPole-v1", None, ["placement.shard.resources={bigmem: 1}", "placement.num_shards=2"])
    spec = _cluster_spec(k8s.manifests(config, K8sOptions(IMAGE, token="external"))[-1])
    (shards,) = [g for g in spec["workerGroupSpecs"] if g["groupName"] == "shards"]
    assert shards["resources"] == {"CPU": "1", "bigmem": "1", "distdqn_shard": "1"}
    placed = assign(role_demands(config.placement), k8s.cluster_nodes(spec))
    assert placed["shard-0"].startswith("shards-") and placed["shard-1"].startswith("shards-")


# -- the run config, the token, the dashboard ---------------------------------------------------------
def test_config_map_holds_the_config_the_driver_runs(tmp_path: Path):
    config = _config("gpu-learner-32-actors-4-shards")
    objects = _by_kind(_objects("gpu-learner-32-actors-4-shards", "rayjob"))
    path = tmp_path / "run.toml"
    path.write_text(objects["ConfigMap"]["data"]["run.toml"])
    in_pod = resolve_config(None, path)  # what `distdqn train --config /config/run.toml` resolves
    assert in_pod == load_config_toml(path) == k8s_pods.run_config(config)
    assert in_pod.placement.runtime == "ray" and in_pod.placement.address == "auto"
    assert in_pod.placement.learner.resources == {"distdqn_learner": 1.0}
    assert in_pod.model_dump(exclude={"placement"}) == config.model_dump(exclude={"placement"})
    job = objects["RayJob"]["spec"]
    assert job["entrypoint"] == "distdqn train --config /config/run.toml --run-dir s3://bucket/pong"
    assert job["shutdownAfterJobFinishes"] is True and job["ttlSecondsAfterFinished"] == k8s.FINISHED_TTL_S


def test_every_container_gets_the_token_from_the_secret():
    config = _config("cpu-4-actors")
    first, second = (k8s.manifests(config, K8sOptions(IMAGE)) for _ in range(2))
    tokens = [_by_kind(objects)["Secret"]["stringData"]["auth_token"] for objects in (first, second)]
    assert all(re.fullmatch(r"[0-9a-f]{64}", token) for token in tokens) and tokens[0] != tokens[1]
    spec = _cluster_spec(first[-1])
    assert spec["authOptions"] == {"mode": "token", "secretName": "distdqn-cartpole-v1-ray-token"}
    for _, _, group in _pod_groups(spec):
        env = {item["name"]: item for item in _container(group)["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"] == {
            "secretKeyRef": {"name": "distdqn-cartpole-v1-ray-token", "key": "auth_token"}
        }

    external = k8s.manifests(config, K8sOptions(IMAGE, token="external"))
    assert [obj["kind"] for obj in external] == ["ConfigMap", "NetworkPolicy", "RayJob"]
    assert _cluster_spec(external[-1])["authOptions"]["secretName"] == "distdqn-cartpole-v1-ray-token"


def test_dashboard_and_job_api_stay_closed_unless_asked():
    config = _config("cpu-4-actors")

    def head(kind: str, open_dashboard: bool = False) -> dict[str, Any]:
        options = K8sOptions(IMAGE, kind=kind, open_dashboard=open_dashboard)  # type: ignore[arg-type]
        return _cluster_spec(k8s.manifests(config, options)[-1])["headGroupSpec"]

    cluster = head("raycluster")
    assert cluster["rayStartParams"]["include-dashboard"] == "false"
    assert cluster["serviceType"] == "ClusterIP"
    assert _container(cluster)["ports"] == [{"name": "gcs-server", "containerPort": 6379}]
    opened = head("raycluster", open_dashboard=True)
    assert "include-dashboard" not in opened["rayStartParams"]
    assert [port["containerPort"] for port in _container(opened)["ports"]] == [6379, 8265]

    job = k8s.manifests(config, K8sOptions(IMAGE))[-1]
    assert job["spec"]["submissionMode"] == "SidecarMode"  # the submitter talks to 127.0.0.1
    job_head = job["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert job_head["serviceType"] == "ClusterIP"
    assert [port["containerPort"] for port in _container(job_head)["ports"]] == [6379, 8265]  # no client port
    with pytest.raises(UserError, match="--open-dashboard is for --kind raycluster"):
        k8s.manifests(config, K8sOptions(IMAGE, open_dashboard=True))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_the_network_policy_admits_only_the_clusters_own_pods(placement: str, kind: str):
    """Valid against Kubernetes' schema; its podSelector matches the labels KubeRay gives the pods of
    the head and worker templates; in: those pods on every TCP port, a RayJob's operator on 8265."""
    objects = _objects(placement, kind)
    _check_network_policy(_by_kind(objects)["NetworkPolicy"], objects[-1])


def test_the_network_policy_schema_catches_what_the_api_server_would_refuse():
    """The schema is strict (a misspelt field is an error, not dropped) and `_policy_errors` holds
    the rules it leaves out."""
    policy = copy.deepcopy(_by_kind(_objects("cpu-4-actors", "rayjob"))["NetworkPolicy"])
    policy["spec"]["podSelectors"] = policy["spec"].pop("podSelector")
    policy["spec"]["ingress"][1]["ports"][0]["port"] = [8265]
    errors = _schema_errors(policy)
    assert any("'podSelectors' was unexpected" in error for error in errors), errors
    assert any(error.startswith("spec.ingress.1.ports.0.port") for error in errors), errors
    policy = copy.deepcopy(_by_kind(_objects("cpu-4-actors", "rayjob"))["NetworkPolicy"])
    policy["spec"]["policyTypes"] = ["Ingres"]
    policy["spec"]["ingress"][0]["ports"] = [{"protocol": "tcp"}, {"port": 70000}]
    assert _schema_errors(policy) == [] and len(_policy_errors(policy)) == 3


def test_the_network_policy_can_be_left_out(capsys: pytest.CaptureFixture[str]):
    """`--no-network-policy`, for a cluster whose network plugin enforces none; the header says so."""
    argv = ["k8s", "--env", "CartPole-v1", "--image", IMAGE, "--kind", "raycluster", "--token", "external"]
    status, out, err = _run(argv, capsys)
    assert status == 0, err
    assert "# NetworkPolicy distdqn-cartpole-v1-ingress: the pods take TCP from the cluster's own pods only" in out
    assert "from the KubeRay operator" not in out  # a RayCluster's dashboard is for port-forward only
    status, out, err = _run([*argv, "--no-network-policy"], capsys)
    assert status == 0, err
    assert [obj["kind"] for obj in yaml.safe_load_all(out)] == ["ConfigMap", "RayCluster"]
    assert "# No NetworkPolicy (--no-network-policy): Ray's ports are open to every pod, behind the token." in out
    with pytest.raises(SystemExit):
        distdqn(["k8s", "--help"])
    assert "--no-network-policy" in capsys.readouterr().out


# -- refusals ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "options", "message"),
    [
        (["placement.learner.num_gpus=1"], {}, "placement.device='cpu' leaves unused"),
        (["placement.device=cuda"], {}, "needs GPUs on the learners' pods"),
        (["placement.actor.resources={edge_gpu: 1}"], {}, "KubeRay would read the custom resource 'edge_gpu'"),
        ([], {"name": "Pong"}, "--name must be a DNS-1035 label"),
        ([], {"name": "x" * 48}, "at most 47 characters for a rayjob"),
        ([], {"namespace": "Team_A"}, "--namespace must be a DNS-1123 label"),
        ([], {"actor_groups": 2}, "--actor-groups must be between 1 and placement.num_actors=1"),
        ([], {"pod_cpus": 0}, "--pod-cpus must be between 1 and 1024, got 0"),
        ([], {"resume": True}, "--resume continues the run in --storage URI"),
        ([], {"node_selectors": (("gpus", "a=b"),)}, "--node-selector 'gpus': no such group"),
        ([], {"node_selectors": (("actors", "a"),)}, "expects KEY=VALUE"),
        ([], {"tolerations": (("learners", "a=b:Sometimes"),)}, "expects KEY[=VALUE]:EFFECT"),
        # issue 18: every value that reaches a manifest, as Kubernetes would check it, and sizes in bounds
        ([], {"storage": "s3://b/run\n---\nkind: Pod"}, "--storage 's3://b/run\\n---\\nkind: Pod' holds the unprint"),
        ([], {"storage": ""}, "--storage must be a path or URI"),
        ([], {"storage": " s3://b/run"}, "no space at either end"),
        ([], {"image": "img:1\n  hostNetwork: true"}, "--image 'img:1\\n  hostNetwork: true' holds the unprint"),
        ([], {"image": "img: 1"}, "--image must be an image reference"),
        ([], {"image": ""}, "--image must be an image reference"),
        ([], {"image": "img:1 # x"}, "--image must be an image reference"),
        ([], {"name": ""}, "--name must be a DNS-1035 label"),
        ([], {"name": "pong\u2028x"}, "--name 'pong\\u2028x' holds the unprintable character '\\u2028'"),
        ([], {"namespace": "rl\x85"}, "--namespace 'rl\\x85' holds the unprintable"),
        ([], {"service_account": "runner_1"}, "--service-account must be a DNS subdomain"),
        ([], {"service_account": "a\tb"}, "--service-account 'a\\tb' holds the unprintable"),
        ([], {"node_selectors": (("actors", "pool=spot\nx"),)}, "--node-selector 'actors' value 'spot\\nx' holds"),
        ([], {"node_selectors": (("actors", "pool=a b"),)}, "--node-selector 'actors' value must be"),
        ([], {"node_selectors": (("actors", "Example.com/pool=a"),)}, "key prefix must be a DNS subdomain"),
        ([], {"node_selectors": (("actors", "-pool=a"),)}, "--node-selector 'actors' key must be"),
        ([], {"node_selectors": (("act\nors", "a=b"),)}, "--node-selector 'act\\nors': no such group"),
        ([], {"tolerations": (("actors", "a b:NoSchedule"),)}, "--toleration 'actors' key must be"),
        ([], {"tolerations": (("actors", "a=b\n:NoSchedule"),)}, "--toleration 'actors' value 'b\\n' holds"),
        ([], {"pod_cpus": 10**20}, "--pod-cpus must be between 1 and 1024, got 100000000000000000000"),
        (["placement.actor.num_cpus=1e308"], {}, "placement.actor.num_cpus must be at most 1024"),
        (
            ["placement.device=cuda", "placement.learner.num_gpus=64"],
            {},
            "placement.learner.num_gpus must be at most 16",
        ),
        (["placement.shard.resources={bigmem: 1e308}"], {}, "placement.shard.resources.bigmem must be between 0 and"),
        (["placement.shard.resources={bigmem: -1}"], {}, "placement.shard.resources.bigmem must be between 0 and"),
        (["placement.shard.resources={'big mem': 1}"], {}, "placement.shard.resources must be names of ASCII"),
        (["placement.num_actors=10001", "replay.capacity=1000000"], {}, "placement.num_actors must be at most 10000"),
        (['env.kwargs={note: "a\\n---\\nkind: Pod"}'], {}, "env.kwargs.note 'a\\n---\\nkind: Pod' holds"),
        (['env.kwargs={"a\\nb": 1}'], {}, "env.kwargs key 'a\\nb' holds the unprintable"),
    ],
)
def test_bad_requests_are_refused_in_one_line(overrides: list[str], options: dict[str, Any], message: str):
    config = resolve_config("CartPole-v1", None, overrides)
    with pytest.raises(UserError) as caught:
        k8s.manifests(config, K8sOptions(**{"image": IMAGE, **options}))
    assert message in str(caught.value), str(caught.value)
    assert str(caught.value).isprintable() and len(str(caught.value)) < 400


def test_a_pod_too_large_for_any_machine_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(k8s_values, "MAX_POD_MEMORY", 3 * GiB)
    with pytest.raises(UserError, match="a pod of group head would need [0-9]+ bytes of memory, over the 3221225472"):
        k8s.manifests(_config("cpu-4-actors"), K8sOptions(IMAGE))


def test_quantities_are_plain_kubernetes_quantities():
    """`--pod-cpus 1e308` made a CPU request of 309 digits; every amount is now bounded and written
    as a plain decimal (a custom resource to Ray's 4 decimals), never with an exponent."""
    config = resolve_config(
        "CartPole-v1", None, ["placement.num_actors=3", "placement.actor.resources={fast: 0.123456789, big: 1000}"]
    )
    made = k8s.manifests(config, K8sOptions(IMAGE, pod_cpus=1024))
    objects = [*made]
    for placement in PLACEMENTS:
        objects += _objects(placement, "rayjob") + _objects(placement, "raycluster")
    quantity = re.compile(r"[0-9]+(\.[0-9]{1,4})?(Mi)?")
    for obj in objects:
        if obj["kind"] in ("RayJob", "RayCluster"):
            for name, _, group in _pod_groups(_cluster_spec(obj)):
                resources = _container(group)["resources"]
                values = [*group["resources"].values(), *resources["limits"].values(), *resources["requests"].values()]
                values += list(group["rayStartParams"].values())
                assert all(quantity.fullmatch(value) for value in values if value != "false"), (name, values)
    (actors,) = [g for g in _cluster_spec(made[-1])["workerGroupSpecs"] if g["groupName"] == "actors"]
    assert actors["resources"] == {"CPU": "3", "big": "3000", "fast": "0.3704", "distdqn_actor": "3"}


def test_names_and_tolerations():
    assert k8s.default_name("ALE/Pong-v5", "rayjob") == "distdqn-ale-pong-v5"
    assert k8s.default_name("MinAtar/Breakout-v1", "rayjob") == "distdqn-minatar-breakout-v1"
    long = k8s.default_name("distdqn/" + "Very-Long-Name-" * 5, "rayjob")
    assert len(long) <= 47 and not long.endswith("-")
    options = K8sOptions(
        IMAGE,
        tolerations=(("learners", "nvidia.com/gpu:NoSchedule"), ("actors", "spot=true:NoExecute")),
        service_account="distdqn-runner",
    )
    spec = _cluster_spec(k8s.manifests(_config("cpu-4-actors"), options)[-1])
    groups = {name: group["template"]["spec"] for name, _, group in _pod_groups(spec)}
    assert groups["learners"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert groups["actors"]["tolerations"] == [
        {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoExecute"}
    ]
    assert "tolerations" not in groups["head"]
    assert {spec["serviceAccountName"] for spec in groups.values()} == {"distdqn-runner"}


# -- the command and the examples ------------------------------------------------------------------
def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = distdqn(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_command_prints_multi_document_yaml(capsys: pytest.CaptureFixture[str]):
    argv = ["k8s", "--env", "CartPole-v1", "--image", IMAGE, "--kind", "raycluster", "--namespace", "rl"]
    status, out, _ = _run(argv + ["--set", "placement.num_learners=2"], capsys)
    assert status == 0
    assert out.startswith("# RayCluster distdqn-cartpole-v1 for CartPole-v1")
    assert "kubectl exec -n rl -it" in out and "-- distdqn train --config /config/run.toml --run-dir /tmp/run" in out
    objects = list(yaml.safe_load_all(out))
    assert [obj["kind"] for obj in objects] == ["Secret", "ConfigMap", "NetworkPolicy", "RayCluster"]
    assert _schema_errors(objects[-1]) == [] and _operator_errors(objects[-1]) == []
    _check_plain_objects(objects, objects[-1])
    _check_network_policy(objects[2], objects[-1])
    assert {obj["metadata"]["namespace"] for obj in objects} == {"rl"}
    assert objects[-1]["spec"]["workerGroupSpecs"][0]["replicas"] == 2  # learners; runtime forced to ray

    status, out, err = _run(["k8s", "--env", "CartPole-v1", "--image", IMAGE, "--open-dashboard"], capsys)
    assert (status, out) == (2, "") and err.startswith("distdqn: error: --open-dashboard") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exited:
        distdqn(["k8s", "--env", "CartPole-v1"])
    assert exited.value.code == 2 and "--image" in capsys.readouterr().err


def _examples_script() -> Any:
    spec = importlib.util.spec_from_file_location("k8s_examples", ROOT / "scripts" / "k8s_examples.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_examples_in_deploy_are_current_and_valid():
    """Regenerate with `python scripts/k8s_examples.py`."""
    script = _examples_script()
    assert sorted(path.name for path in (ROOT / "deploy").iterdir()) == sorted(script.EXAMPLES)
    for name in script.EXAMPLES:
        committed = (ROOT / "deploy" / name).read_text()
        with contextlib.redirect_stderr(io.StringIO()):
            assert script.generate(name) == committed, f"deploy/{name} is stale: run python scripts/k8s_examples.py"
        objects = list(yaml.safe_load_all(committed))
        # --token external: no secret inside; the NetworkPolicy is
        assert [obj["kind"] for obj in objects] == ["ConfigMap", "NetworkPolicy", "RayJob"]
        assert _schema_errors(objects[-1]) == [] and _operator_errors(objects[-1]) == []
        _check_plain_objects(objects, objects[-1])
        _check_network_policy(objects[1], objects[-1])


def test_ray_version_is_the_pin_of_the_ray_extra():
    """The manifests' rayVersion is the Ray the image holds: the `ray` extra's exact pin."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (ray,) = [req for req in pyproject["project"]["optional-dependencies"]["ray"] if req.startswith("ray")]
    pinned = re.fullmatch(r"ray(\[[\w,]+\])?==([\d.]+)", ray)
    assert pinned is not None, ray
    assert ".".join((pinned.group(2).split(".") + ["0", "0"])[:3]) == k8s.RAY_VERSION


def test_a_job_made_again_resumes_the_run_in_its_storage():
    config = _config("gpu-learner-32-actors-4-shards")
    options = K8sOptions(IMAGE, storage="s3://bucket/pong", resume=True, token="external")
    (job,) = [o for o in k8s.manifests(config, options) if o["kind"] == "RayJob"]
    assert job["spec"]["entrypoint"] == "distdqn train --resume s3://bucket/pong"
    assert _schema_errors(job) == [] and _operator_errors(job) == []


def test_the_run_flags_of_train_go_into_the_config_the_job_runs(capsys: pytest.CaptureFixture[str]):
    """docs/how-to/kubernetes.md says k8s shares train's flags; --seed, --total-steps and --runtime were refused."""
    argv = ["k8s", "--env", "CartPole-v1", "--image", IMAGE, "--token", "external"]
    flags = ["--seed", "7", "--total-steps", "5000", "--stop-return", "400", "--runtime", "ray"]
    status, out, err = _run(argv + flags, capsys)
    assert status == 0, err
    run_toml = _by_kind(list(yaml.safe_load_all(out)))["ConfigMap"]["data"]["run.toml"]
    config = build_config(tomllib.loads(run_toml))
    assert (config.seed, config.total_steps, config.stop_return) == (7, 5000, 400.0)
    sets = [item for one in ("seed=7", "total_steps=5000", "stop_return=400") for item in ("--set", one)]
    assert _run(argv + sets, capsys)[1] == out  # as the --set overrides would

    for runtime in ("inline", "threads"):
        status, out, err = _run([*argv, "--runtime", runtime], capsys)
        assert (status, out) == (2, "")
        assert err == (
            f"distdqn: error: --runtime {runtime}: a RayCluster runs every role as a Ray actor on its pods; "
            "k8s takes --runtime ray or none\n"
        )


def test_an_atari_config_prints_no_ale_banner(tmp_path: Path):
    """k8s makes the env only to read its spaces, and the ALE printed its banner
    ("A.L.E: Arcade Learning Environment ...") on stderr from C++, past Python's sys.stderr."""
    import os
    import subprocess

    pytest.importorskip("ale_py")
    done = subprocess.run(
        [sys.executable, "-m", "distdqn", "k8s", "--env", "ALE/Pong-v5", "--image", IMAGE, "--token", "external"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "kind: RayJob" in done.stdout


# -- hostile values: refused in one line, or carried intact ---------------------------------------
def test_a_storage_uri_cannot_add_a_document(capsys: pytest.CaptureFixture[str]):
    """Issue 18: the storage URI was echoed into the header comment, so a newline in it began a
    document of its own: this printed a Pod with hostNetwork: true before the ConfigMap."""
    storage = "s3://b/run\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {hostNetwork: true}"
    status, out, err = _run(["k8s", "--env", "CartPole-v1", "--image", IMAGE, "--storage", storage], capsys)
    assert (status, out) == (2, "")
    assert err == f"distdqn: error: --storage {short_repr(storage)} holds the unprintable character '\\n'; " + (
        "a manifest takes none\n"
    )


_TRICKY = [
    "\n", "\r\n", "\r", "\n---\n", "---", "...", "#", " # ", "'", '"', ": ", "- ", "? ", "{", "}", "[", "]", ",",
    "&a ", "*a", "!!python/object:os.system", "|", ">", "%YAML", "@", "`", "$(id)", ";", "\\", "\t", " ",
    "\x00", "\x85", "\u2028", "\u2029", "\ufeff", "\u202e", "é", "\U0001f680", "=", ":", "/", ".", "-", "_",
]  # fmt: skip
_PIECES = st.one_of(
    st.sampled_from(_TRICKY),
    st.text(max_size=6),
    st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,8}[a-z0-9])?", fullmatch=True),
)
HOSTILE = st.lists(_PIECES, max_size=4).map("".join)


def _with_env(config: Config, **changes: Any) -> Config:
    return config.model_copy(update={"env": config.env.model_copy(update=changes)})


def _actor_resources(config: Config, resources: dict[str, float]) -> Config:
    placement = config.placement
    actor = placement.actor.model_copy(update={"resources": resources})
    return config.model_copy(update={"placement": placement.model_copy(update={"actor": actor})})


def _containers(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_container(group) for _, _, group in _pod_groups(_cluster_spec(objects[-1]))]


def _pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: group["template"]["spec"] for name, _, group in _pod_groups(_cluster_spec(objects[-1]))}


def _run_toml(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return tomllib.loads(_by_kind(objects)["ConfigMap"]["data"]["run.toml"])


def test_the_header_never_lets_a_value_end_its_comment():
    """Every value in the header is checked printable first; should one slip through, it is escaped."""
    assert (
        k8s_yaml._comment("Run files: s3://b\n---\nkind: Pod\u2028x\x85")
        == "# Run files: s3://b\\n---\\nkind: Pod\\u2028x\\x85"
    )


# field -> (config and options with the value in that field, the value as the parsed manifests hold it)
MANIFEST_FIELDS: dict[str, tuple[Any, Any]] = {
    "image": (
        lambda c, v: (c, {"image": v}),
        lambda objects, v: {container["image"] for container in _containers(objects)} == {v},
    ),
    "name": (lambda c, v: (c, {"name": v}), lambda objects, v: objects[-1]["metadata"]["name"] == v),
    "namespace": (
        lambda c, v: (c, {"namespace": v}),
        lambda objects, v: {obj["metadata"]["namespace"] for obj in objects} == {v},
    ),
    "storage": (
        lambda c, v: (c, {"storage": v}),
        lambda objects, v: shlex.split(objects[-1]["spec"]["entrypoint"])[-1] == v,
    ),
    "service_account": (
        lambda c, v: (c, {"service_account": v}),
        lambda objects, v: {spec["serviceAccountName"] for spec in _pod_specs(objects).values()} == {v},
    ),
    "node_selector_key": (
        lambda c, v: (c, {"node_selectors": (("actors", f"{v}=spot"),)}),
        lambda objects, v: _pod_specs(objects)["actors"]["nodeSelector"] == dict([f"{v}=spot".split("=", 1)]),
    ),
    "node_selector_value": (
        lambda c, v: (c, {"node_selectors": (("actors", f"pool={v}"),)}),
        lambda objects, v: _pod_specs(objects)["actors"]["nodeSelector"] == {"pool": v},
    ),
    "node_selector_group": (
        lambda c, v: (c, {"node_selectors": ((v, "pool=spot"),)}),
        lambda objects, v: _pod_specs(objects)[v]["nodeSelector"] == {"pool": "spot"},
    ),
    "toleration_key": (
        lambda c, v: (c, {"tolerations": (("learners", f"{v}:NoSchedule"),)}),
        lambda objects, v: _pod_specs(objects)["learners"]["tolerations"][0]["key"] == v.partition("=")[0],
    ),
    "toleration_value": (
        lambda c, v: (c, {"tolerations": (("learners", f"gpu={v}:NoExecute"),)}),
        lambda objects, v: (
            _pod_specs(objects)["learners"]["tolerations"]
            == [{"key": "gpu", "operator": "Equal", "value": v, "effect": "NoExecute"}]
        ),
    ),
    "env_id": (
        lambda c, v: (_with_env(c, id=v), {}),
        lambda objects, v: _run_toml(objects)["env"]["id"] == v,
    ),
    "env_kwargs_value": (
        lambda c, v: (_with_env(c, kwargs={"note": v}), {}),
        lambda objects, v: _run_toml(objects)["env"]["kwargs"] == {"note": v},
    ),
    "env_kwargs_key": (
        lambda c, v: (_with_env(c, kwargs={v: 1}), {}),
        lambda objects, v: _run_toml(objects)["env"]["kwargs"] == {v: 1},
    ),
    "resource_name": (
        lambda c, v: (_actor_resources(c, {v: 1.0}), {}),
        lambda objects, v: (
            [
                group["resources"].get(v) == group["resources"]["distdqn_actor"]
                for group in _cluster_spec(objects[-1])["workerGroupSpecs"]
                if group["groupName"] == "actors"
            ]
            == [True]
        ),
    ),
}


@pytest.mark.parametrize("field", list(MANIFEST_FIELDS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=HOSTILE)
def test_any_value_of_a_field_is_refused_in_one_line_or_carried_intact(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str
):
    """Random strings (newlines, `---`, `#`, quotes, YAML tags, unicode line separators...) in
    each field that reaches a manifest: a one-line UserError, or the same four documents
    (a comment header first), parsing back to exactly the objects made, the value in its place."""
    monkeypatch.setattr(k8s_pods, "replay_sizes", lambda config: (1 << 20, 1 << 20, 1 << 20))  # no env to make
    place, holds = MANIFEST_FIELDS[field]
    config, changes = place(_config("cpu-4-actors"), value)
    options = K8sOptions(**{"image": IMAGE, **changes})
    try:
        text = k8s_yaml.render(config, options, token="0" * 64)
    except UserError as error:
        assert str(error).isprintable() and len(str(error)) < 1000, str(error)
        return
    header, _, _ = text.partition("\n---\n")
    assert header and all(line.startswith("# ") and line.isprintable() for line in header.split("\n")), header
    objects = list(yaml.safe_load_all(text))
    assert [obj["kind"] for obj in objects] == ["Secret", "ConfigMap", "NetworkPolicy", "RayJob"]
    assert objects == k8s.manifests(config, options, token="0" * 64)
    assert holds(objects, value), (field, value)
