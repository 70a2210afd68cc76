"""`distdqn k8s`: KubeRay manifests made from the placement.

`manifests(config, options)` turns a resolved config into plain Kubernetes objects (dicts; no
Kubernetes client is involved): a Secret with the Ray token, a ConfigMap with the run's config,
and a KubeRay `RayJob` (default) or `RayCluster` (`apiVersion: ray.io/v1`, KubeRay 1.7), whose
pod groups `tools/k8s_pods.py` plans and sizes; `tools/k8s_yaml.py` prints them as YAML.

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
inside the cluster, behind the token.

**NetworkPolicy** (unless `network_policy=False`, for a cluster whose network plugin enforces
none): every pod of the cluster takes TCP only from the cluster's own pods, on all ports: Ray's
GCS, raylets, object managers and dashboard agents, the learners' torch.distributed store and
group (on ports the OS picks), and Ray's workers, which listen on a wide range of ports
(10002-19999 by default), so a list of ports would be those ranges anyway. The pods are
selected by the labels their templates carry (`app.kubernetes.io/instance: NAME`), which
KubeRay copies onto every pod; not by `ray.io/cluster`, because the cluster a RayJob makes is
named NAME and a random suffix. A RayJob's head also takes the dashboard port from the KubeRay operator (pods labelled
`app.kubernetes.io/component: kuberay-operator`, as both its Helm chart and its kustomize
manifests label them, in any namespace, since where it runs is the installer's choice): the
operator polls the job's status there. With `open_dashboard` a RayCluster's dashboard is
reached by `kubectl port-forward`, which connects inside the pod and which no policy filters;
it is open to the cluster's own pods only. Egress stays open: the pods reach the run's storage,
DNS and the image's package index wherever they are. Anything else (Prometheus on Ray's
metrics port) needs a policy of the user's. The policy is written before the
RayJob/RayCluster, so `kubectl apply` makes it before any pod starts. KubeRay 1.7's own policies
(`spec.networkPolicy`, behind the alpha feature gate RayClusterNetworkPolicy, off by default)
admit the same: all ports from pods of the same cluster.

**Input.** Every value that reaches the output is checked before anything is made, as
Kubernetes would check it (names, label keys and values, the image reference) and for
unprintable characters (every string of the config too), and every size is bounded by what one
machine has (`tools/k8s_values.py`); `tools/k8s_yaml.py` writes the objects out as YAML.

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

from distdqn.config import Config, config_to_toml, resolve_config
from distdqn.errors import UserError
from distdqn.runtime.plan import Node, assign, role_demands
from distdqn.tools.k8s_pods import MiB, PodGroup, group_settings, plan_pods
from distdqn.tools.k8s_values import MAX_NAME, check_config_strings, check_name, check_options

RAY_VERSION = "2.60.0"
"""Ray in the image: the floor of the `ray` extra in pyproject.toml (a test checks they agree)."""
KUBERAY_API = "ray.io/v1"

CONFIG_DIR = "/config"
CONFIG_KEY = "run.toml"
LOCAL_RUN_DIR = "/tmp/run"
TOKEN_KEY = "auth_token"
"""The Secret key KubeRay reads the token from."""
GCS_PORT = 6379
DASHBOARD_PORT = 8265
"""The dashboard and job API, which KubeRay's operator polls a RayJob's status at."""
OPERATOR_LABELS = {"app.kubernetes.io/component": "kuberay-operator"}
"""The label KubeRay's Helm chart and its kustomize manifests both put on the operator's pod."""
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
    network_policy: bool = True
    """Emit the NetworkPolicy that admits only the cluster's own pods (and a RayJob's operator)."""


def resolve_k8s_config(env_id: str | None, config_file: Path | None, overrides: list[str]) -> Config:
    """Resolve as `train` does; the run is always on Ray (a placement of several learners would
    otherwise fail validation before `run_config` could set it)."""
    return resolve_config(env_id, config_file, [*overrides, "placement.runtime=ray"])


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


def network_policy(metadata: dict[str, Any], pod_labels: dict[str, str], kind: str) -> dict[str, Any]:
    """Ingress to the cluster's pods from its own pods only, and to a RayJob's dashboard from the
    operator too (see the module's docstring); egress open."""
    own_pods = {"podSelector": {"matchLabels": dict(pod_labels)}}
    ingress: list[dict[str, Any]] = [{"from": [own_pods], "ports": [{"protocol": "TCP"}]}]  # every TCP port
    if kind == "rayjob":
        operator = {"namespaceSelector": {}, "podSelector": {"matchLabels": dict(OPERATOR_LABELS)}}
        ingress.append({"from": [operator], "ports": [{"protocol": "TCP", "port": DASHBOARD_PORT}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {"podSelector": {"matchLabels": dict(pod_labels)}, "policyTypes": ["Ingress"], "ingress": ingress},
    }


def manifests(config: Config, options: K8sOptions, token: str | None = None) -> list[dict[str, Any]]:
    """The Secret (with `token="random"`), the ConfigMap, the NetworkPolicy (unless left out) and
    the RayJob or RayCluster for a resolved config. `token` fixes the random token (tests); None
    draws one."""
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
    run, groups = plan_pods(config, options)
    settings = group_settings(options, [group.name for group in groups])

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
                # per-task event reports made the GCS grow for as long as a run lasted (docs/how-to/ray.md, Costs)
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
            ports = [{"name": "gcs-server", "containerPort": GCS_PORT}]
            if options.kind == "rayjob" or options.open_dashboard:
                ports.append({"name": "dashboard", "containerPort": DASHBOARD_PORT})
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
    if options.network_policy:
        objects.append(network_policy(metadata(f"{name}-ingress"), labels, options.kind))
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
