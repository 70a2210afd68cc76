"""What `distdqn k8s` lets into a manifest: every value checked as Kubernetes checks it (names,
label keys and values, image references, custom resource names), none holding an unprintable
character that could begin a line of its own, and every quantity bounded by what one pod can have
(a role asking for 1e308 CPUs made a CPU request of 309 digits)."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from distdqn.config import Config, short_repr
from distdqn.errors import UserError

if TYPE_CHECKING:
    from distdqn.tools.k8s import K8sOptions
    from distdqn.tools.k8s_pods import PodGroup

ROLE_KINDS = ("learner", "shard", "actor", "evaluator")

MAX_NAME = {"rayjob": 47, "raycluster": 53}
"""KubeRay's limits: a RayCluster name of at most 53 characters, a RayJob's 6 fewer (its
clusters append a suffix)."""
MAX_POD_CPUS = 1024
"""Most CPUs of one pod (and `--pod-cpus`): the largest machines clouds rent have 896 vCPUs."""
MAX_POD_GPUS = 16
MAX_POD_MEMORY = 32 << 40
"""Most memory of one pod: 32 TiB, the largest machines clouds rent."""
MAX_RESOURCE = 1_000_000
"""Most of one custom resource a pod offers."""
MAX_INSTANCES = 10_000
"""Most instances of one role kind (actors, shards, learners) a manifest makes pods for."""
MAX_STORAGE = 1024
"""Longest `--storage` path or URI."""
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

# Kubernetes' own rules (apimachinery's validation) for names, label keys and label values
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS_1123 = re.compile(_DNS_LABEL)
_DNS_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_RESOURCE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]*")
"""A Ray custom resource: ASCII letters, digits and `_.:/-`, as in `accelerator_type:A100`."""
# an image reference in Docker's grammar (distribution/reference), with letters of either case
_DOMAIN_PART = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_PATH_PART = r"[A-Za-z0-9]+((\.|_|__|-+)[A-Za-z0-9]+)*"
_IMAGE = re.compile(
    rf"({_DOMAIN_PART}(\.{_DOMAIN_PART})*(:[0-9]+)?/)?{_PATH_PART}(/{_PATH_PART})*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?"
)


def one_line(flag: str, value: str) -> None:
    """Refuse a value holding a character that is not printable (a newline, a control or format
    character, a line separator): no value may begin a line of its own in the output."""
    bad = next((char for char in value if not char.isprintable()), None)
    if bad is not None:
        raise UserError(f"{flag} {short_repr(value)} holds the unprintable character {bad!r}; a manifest takes none")


def check_value(flag: str, value: str, pattern: re.Pattern[str], limit: int, what: str, tail: str = "") -> None:
    one_line(flag, value)
    if len(value) > limit or not pattern.fullmatch(value):
        raise UserError(f"{flag} must be {what} of at most {limit} characters{tail}, got {short_repr(value)}")


def check_name(name: str, kind: str) -> None:
    what = "a DNS-1035 label (lower case letters, digits and '-', starting with a letter)"
    check_value("--name", name, _DNS_1035, MAX_NAME[kind], what, tail=f" for a {kind}")


def check_label(flag: str, key: str, value: str) -> None:
    """A label's key and value (a node selector's, a toleration's): the key `[PREFIX/]NAME`,
    PREFIX a DNS subdomain, NAME and the value (which may be empty) up to 63 letters, digits,
    `-`, `_` and `.`, alphanumeric at both ends."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        check_value(f"{flag} key prefix", prefix, _DNS_SUBDOMAIN, 253, "a DNS subdomain (lower case)")
    check_value(f"{flag} key", name, _LABEL_NAME, 63, "letters, digits, '-', '_' and '.' (alphanumeric ends)")
    if value:
        check_value(f"{flag} value", value, _LABEL_NAME, 63, "letters, digits, '-', '_' and '.' (alphanumeric ends)")


def check_options(options: K8sOptions) -> None:
    """Every string of the options that reaches the output, checked as Kubernetes checks it."""
    check_value("--image", options.image, _IMAGE, 512, "an image reference ([REGISTRY[:PORT]/]PATH[:TAG][@DIGEST])")
    if options.namespace is not None:
        check_value("--namespace", options.namespace, _DNS_1123, 63, "a DNS-1123 label (lower case)")
    if options.service_account is not None:
        check_value("--service-account", options.service_account, _DNS_SUBDOMAIN, 253, "a DNS subdomain (lower case)")
    if options.storage is not None:
        one_line("--storage", options.storage)
        if not options.storage or options.storage != options.storage.strip() or len(options.storage) > MAX_STORAGE:
            raise UserError(
                f"--storage must be a path or URI of at most {MAX_STORAGE} characters, no space at either end, "
                f"got {short_repr(options.storage)}"
            )


def check_config_strings(value: Any, path: str) -> None:
    """Every key and string of the config, which the ConfigMap carries (and the header names the
    env id): none may hold an unprintable character."""
    if isinstance(value, dict):
        for key, item in value.items():
            one_line(f"{path} key" if path else "config key", str(key))
            check_config_strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_config_strings(item, path)
    elif isinstance(value, str):
        one_line(path, value)


def check_resources(config: Config) -> None:
    """Custom resource names, which KubeRay passes on (reading a key ending in `gpu` as GPUs and
    `cpu`/`memory` as those), and counts and amounts a group and a pod can hold: a role asking
    for 1e308 CPUs made a CPU request of 309 digits."""
    placement = config.placement
    for field in ("num_actors", "num_shards", "num_learners"):
        count = getattr(placement, field)
        if count > MAX_INSTANCES:
            raise UserError(f"placement.{field} must be at most {MAX_INSTANCES} on Kubernetes, got {count}")
    for role in ROLE_KINDS:
        resources = getattr(placement, role)
        for field, amount, most in (
            ("num_cpus", resources.num_cpus, MAX_POD_CPUS),
            ("num_gpus", resources.num_gpus, MAX_POD_GPUS),
        ):
            if not amount <= most:
                raise UserError(f"placement.{role}.{field} must be at most {most}, what one pod has, got {amount:g}")
        for key, amount in resources.resources.items():
            field = f"placement.{role}.resources"
            check_value(field, key, _RESOURCE_NAME, 128, "names of ASCII letters, digits and '_.:/-'")
            if key.lower() in ("cpu", "memory") or key.lower().endswith("gpu"):
                raise UserError(
                    f"{field}: KubeRay would read the custom resource {key!r} as CPUs, GPUs or memory; "
                    "give it another name"
                )
            if not 0 <= amount <= MAX_RESOURCE:
                raise UserError(f"{field}.{key} must be between 0 and {MAX_RESOURCE}, got {amount:g}")


def check_pods(groups: list[PodGroup]) -> None:
    """What packing made of the roles fits one pod (many actors' memory, a replay on the head)."""
    for group in groups:
        for what, amount, most in (
            ("CPUs", group.cpus, MAX_POD_CPUS),
            ("GPUs", group.gpus, MAX_POD_GPUS),
            ("bytes of memory", group.memory, MAX_POD_MEMORY),
            *((key, math.ceil(amount), MAX_RESOURCE) for key, amount in group.resources.items()),
        ):
            if amount > most:
                raise UserError(f"a pod of group {group.name} would need {amount} {what}, over the {most} one pod has")
