"""The text `distdqn k8s` prints: the manifests (`tools/k8s.py`) as one multi-document YAML
text, after a comment that sums up the pods and says how to apply and start them.

The objects are written by a YAML dumper and the header holds only values checked printable
(`tools/k8s_values.py`), so no value can leave its field or begin a document of its own.
"""

from __future__ import annotations

from typing import Any

import yaml

from distdqn.config import Config
from distdqn.tools.k8s import LOCAL_RUN_DIR, RAY_VERSION, TOKEN_KEY, K8sOptions, manifests, train_command


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line strings (the run config) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _header(config: Config, options: K8sOptions, objects: list[dict[str, Any]]) -> list[str]:
    """The comment lines before the YAML, read back from the objects so that they say what the
    manifests hold: the pods, the token, where the run's files go, how to start a RayCluster's run."""
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
    policies = [obj["metadata"]["name"] for obj in objects if obj["kind"] == "NetworkPolicy"]
    if policies:
        operator = ", and the dashboard port from the KubeRay operator" if kind == "RayJob" else ""
        lines.append(
            f"NetworkPolicy {policies[0]}: the pods take TCP from the cluster's own pods only, on every port "
            f"(Ray's workers use a wide range){operator}; egress stays open (storage, DNS). "
            "It needs a network plugin that enforces it (--no-network-policy leaves it out)."
        )
    else:
        lines.append("No NetworkPolicy (--no-network-policy): Ray's ports are open to every pod, behind the token.")
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
