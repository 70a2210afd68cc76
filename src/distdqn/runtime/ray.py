"""Each role as a Ray actor; futures are object refs. The only module that imports Ray.

Without an address this starts an embedded local cluster with token authentication on, the
dashboard off, every port on 127.0.0.1 (`loopback_only`) and a reaper that ends all of its
processes at once when this driver dies, even by `kill -9` (`distdqn.runtime.reaper`). A cluster
joined by address is only connected to: its ports are its own, and nothing here ever stops it.

Roles start where `distdqn plan` says: the first spawn reserves every role at once in one
placement group whose bundles are the plan's demands, each pinned to its node by Ray's node-id
label. Ray cannot bring back a role pinned to a node that is gone, so this runtime does: it
re-places the role on an alive node with room for it now (a replacement node, or any other),
in a placement group of its own, and its failures say `restarting` meanwhile; the supervisor
counts the restart, or, when no node makes room within its bound, decides what the run does
without the role.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from gymnasium.envs.registration import EnvSpec

from distdqn.config import PlacementConfig, RoleResources
from distdqn.envs.custom import register_specs
from distdqn.errors import UserError
from distdqn.runtime.base import RoleFailed, RoleT
from distdqn.runtime.plan import (
    Node,
    RoleDemand,
    assign,
    describe_free,
    describe_resources,
    role_demands,
    unplaced,
)
from distdqn.runtime.reaper import Reaper

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")
# Workers report an event per task to the GCS for Ray's state API and dashboard (both unused here):
# with thousands of actor calls a minute the GCS grew ~2.6 MB a minute for as long as a run lasted
# (benchmarks/RESULTS.md, soaks); without the reports it stays flat.
os.environ.setdefault("RAY_task_events_report_interval_ms", "0")

import ray  # noqa: E402  (the environment above must be set before Ray reads it)
from ray._private import ray_constants  # noqa: E402
from ray.exceptions import ActorUnavailableError, RayActorError  # noqa: E402
from ray.util.placement_group import (  # noqa: E402
    NODE_ID_LABEL_KEY,
    get_current_placement_group,
    placement_group,
    remove_placement_group,
)
from ray.util.scheduling_strategies import (  # noqa: E402
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)


class RoleHost:
    """Hosts one role instance inside a Ray actor process.

    Ray re-runs this constructor when it restarts a dead actor, so the role comes back built
    from the same arguments (a learner then reloads the latest checkpoint by itself).
    """

    def __init__(self, role: type, args: tuple, env_specs: Sequence[EnvSpec] = ()) -> None:
        """`env_specs`: the env objects the driver registered (distdqn.envs.custom), which the
        role's envs may be made from."""
        register_specs(env_specs)
        context = ray.get_runtime_context()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Ray's own property warns internally
            restarted = context.was_current_actor_reconstructed
        self.identity = {
            "pid": os.getpid(),
            "node_id": context.get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),
            "restarted": restarted,
        }
        self.role = role(*args)

    def invoke(self, method: str, *args: Any) -> Any:
        return getattr(self.role, method)(*args)

    def where(self) -> dict[str, Any]:
        return self.identity


@dataclass
class RayRole:
    """A role's handle; `actor` changes when the role is re-placed after its node was lost."""

    name: str
    actor: Any  # ray.actor.ActorHandle
    role: type
    args: tuple


def role_kind(name: str) -> str:
    """`actor-3` -> `actor`: the placement section that sizes a role instance."""
    return name.split("-", 1)[0]


def embedded_cluster_cpus(placement: PlacementConfig) -> int:
    """Logical CPUs the embedded cluster needs to place every role at once."""
    total = (
        placement.num_actors * placement.actor.num_cpus
        + placement.num_shards * placement.shard.num_cpus
        + placement.num_learners * placement.learner.num_cpus
        + placement.evaluator.num_cpus
    )
    return max(1, math.ceil(total))


CONNECT_TIMEOUT_S = 10.0
"""How long we wait for a Ray cluster's GCS port to answer (Ray itself retries for minutes)."""


def probe_address(address: str) -> None:
    """Fail in one line, within CONNECT_TIMEOUT_S, when nothing listens at HOST:PORT; `ray.init`
    would print its connection log for minutes before giving up. `auto` and `ray://` are Ray's."""
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise UserError(f"placement.address must be HOST:PORT, `auto` or a ray:// URI, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise UserError(f"cannot reach the Ray cluster at {address!r}: {error.strerror or error}") from None


def ensure_private_token() -> None:
    """Give token authentication a token only this user can read. Ray 2.60 writes the token it
    generates to `~/.ray/auth_token` world-readable (0644), and whoever reads it can run code on
    the cluster; so we write one ourselves, 0600, and tighten an existing one. A token handed over
    in the environment (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH) is left alone."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    path = Path.home() / ".ray" / "auth_token"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        return
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as token:
        token.write(secrets.token_hex(32))


@contextmanager
def loopback_only() -> Iterator[None]:
    """Keep a cluster that `ray.init` starts on 127.0.0.1. Ray rewrites `_node_ip_address=127.0.0.1`
    to the machine's routable address unless multi-node clusters are off, which is what Ray does
    on macOS and Windows (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`): then the GCS, raylet, workers
    and agents all bind 127.0.0.1. Ray read that variable when it was imported, so its constant is
    set too, both only while the cluster starts: joining a remote cluster later needs this
    machine's real address."""
    name = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
    saved_env, saved_constant = os.environ.get(name), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[name], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_constant
        if saved_env is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved_env


def plain_worker_lines(stream: IO[str] | None = None) -> None:
    """Ray prints its workers' output on this driver behind a `(RoleHost pid=...)` prefix in ANSI
    colours; where `stream` (stderr) is no terminal (a log file, CI, a pipe) the escape codes are
    noise. Ray reads RAY_COLOR_PREFIX at every line it prints, and `0` prints the prefix plain.
    A value the user set is kept."""
    stream = sys.stderr if stream is None else stream
    if not stream.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")


class RayConnection:
    """This process's connection to Ray: joins the cluster at `address` (else RAY_ADDRESS), or
    starts an embedded one of `num_cpus` (token auth, loopback, reaper). A caller that set Ray up
    itself (a Tune trial) keeps its connection, and `close` leaves it alone."""

    def __init__(self, address: str | None, num_cpus: int) -> None:
        plain_worker_lines()
        self.connected = False
        self._reaper: Reaper | None = None
        address = address or os.environ.get("RAY_ADDRESS")
        try:
            if ray.is_initialized():
                pass
            elif address:
                probe_address(address)
                ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
                self.connected = True
            else:
                ensure_private_token()
                self._reaper = Reaper()
                with loopback_only(), self._reaper.marking():
                    ray.init(
                        num_cpus=num_cpus,
                        include_dashboard=False,
                        _node_ip_address="127.0.0.1",
                        log_to_driver=True,
                        logging_level=logging.WARNING,
                    )
                self.connected = True
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RaySystemError) as error:
            self._close_reaper()
            raise UserError(f"cannot reach the Ray cluster at {address!r}: {str(error).splitlines()[0]}") from None

    def close(self) -> None:
        try:
            if self.connected:
                ray.shutdown()  # stops an embedded cluster; only disconnects from one we joined
        finally:
            self._close_reaper()

    def _close_reaper(self) -> None:
        if self._reaper is not None:
            self._reaper.close()  # kills what `ray.shutdown` left of the embedded cluster, if anything
            self._reaper = None


PLACEMENT_WAIT_S = 60.0
"""How long the first spawn waits for the cluster to reserve every role where the plan puts it.
The plan counted each node's total resources; when other work holds some of them the placement
group stays pending, and after this bound the run stops naming the roles without room."""


def _alive_nodes() -> list[tuple[Node, str]]:
    """The alive nodes of the connected cluster with their total resources, and their Ray node ids."""
    return [
        (Node(f"{node['NodeManagerAddress']} ({node['NodeID'][:8]})", dict(node["Resources"])), node["NodeID"])
        for node in ray.nodes()
        if node["Alive"]
    ]


class RayRuntime:
    def __init__(self, placement: PlacementConfig, env_specs: Sequence[EnvSpec] = ()) -> None:
        self.placement = placement
        self.env_specs = list(env_specs)  # registered in each role's process (distdqn.envs.custom)
        self._roles: list[RayRole] = []
        self._names_by_actor_id: dict[str, str] = {}
        self._groups: list[Any] = []  # the run's placement group (made by the first spawn), then re-placements
        self._bundles: dict[str, int] | None = None  # role name -> its bundle, once reserved
        self._pinned: dict[str, str] = {}  # role name -> the node id it is pinned to, once reserved
        self._connection = RayConnection(placement.address, embedded_cluster_cpus(placement))
        try:
            nodes = _alive_nodes()
            placed = assign(role_demands(placement), [node for node, _ in nodes])  # fail now, clearly
        except BaseException:
            self._connection.close()
            raise
        self._node_names = {node_id: node.name for node, node_id in nodes}
        ids = {node.name: node_id for node, node_id in nodes}
        self.plan = {role: ids[node] for role, node in placed.items()}
        """Role name -> the Ray node id `distdqn plan` puts it on."""

    @staticmethod
    def cluster_nodes() -> list[Node]:
        """The alive nodes of the connected cluster with their total resources."""
        return [node for node, _ in _alive_nodes()]

    def _strategy(self, name: str) -> Any:
        """Where role `name` is created: its bundle of the run's placement group, reserved by
        the first spawn. A role that reserves nothing has no bundle and is pinned to its node
        directly. Inside a caller's placement group (a Tune trial's) the roles stay in that."""
        if get_current_placement_group() is not None:
            return None
        if self._bundles is None:
            self._reserve()
        assert self._bundles is not None
        index = self._bundles.get(name)
        if index is None:
            return NodeAffinitySchedulingStrategy(self.plan[name], soft=False)
        return PlacementGroupSchedulingStrategy(self._groups[0], placement_group_bundle_index=index)

    def _reserve(self) -> None:
        """Reserve every role on its planned node at once, or stop within PLACEMENT_WAIT_S
        naming the roles the cluster has no room for now and what each node has free."""
        roles = [role for role in role_demands(self.placement) if role.demand]
        if roles:
            group = placement_group(
                [role.demand for role in roles],
                bundle_label_selector=[{NODE_ID_LABEL_KEY: self.plan[role.name]} for role in roles],
            )
            if not group.wait(PLACEMENT_WAIT_S):
                remove_placement_group(group)
                raise UserError(self._unplaceable(roles))
            self._groups.append(group)
        self._bundles = {role.name: index for index, role in enumerate(roles)}
        self._pinned = dict(self.plan)

    def _unplaceable(self, roles: list[RoleDemand]) -> str:
        free_by_id = ray._private.state.available_resources_per_node()
        free = {self._node_names.get(node_id, node_id[:8]): free_by_id[node_id] for node_id in free_by_id}
        placed = {role.name: self._node_names[self.plan[role.name]] for role in roles}
        missing = unplaced(roles, placed, free) or roles
        names = ", ".join(f"{role.name} ({describe_resources(role.demand)} on {placed[role.name]})" for role in missing)
        return (
            f"the cluster could not reserve {names} where the plan puts {'it' if len(missing) == 1 else 'them'} "
            f"within {PLACEMENT_WAIT_S:g} s: other work holds what the plan counted, or a node is gone "
            f"(free now: {describe_free(free)})"
        )

    def _resources(self, name: str) -> RoleResources:
        return getattr(self.placement, role_kind(name))

    def spawn(self, role: type[RoleT], *args: Any, name: str) -> RayRole:
        handle = RayRole(name, self._create(name, role, args, self._strategy(name)), role, args)
        self._roles.append(handle)
        return handle

    def _create(self, name: str, role: type, args: tuple, strategy: Any) -> Any:
        resources = self._resources(name)
        actor: Any = (
            ray.remote(RoleHost)
            .options(
                num_cpus=resources.num_cpus,
                num_gpus=resources.num_gpus,
                resources=dict(resources.resources),
                max_restarts=resources.max_restarts,
                max_task_retries=0,  # the loop sees each failure and decides what to redo
                max_concurrency=1,
                scheduling_strategy=strategy,
            )
            .remote(role, args, self.env_specs)
        )
        self._names_by_actor_id[actor._actor_id.hex()] = name
        return actor

    def _replace(self, name: str, failed_actor_id: str) -> str:
        """Bring back role `name`, whose pinned node is gone, on an alive node with room for it
        now, pinned there in a placement group of its own; why it is still down otherwise."""
        handle = next(handle for handle in self._roles if handle.name == name)
        if handle.actor._actor_id.hex() != failed_actor_id:
            return "being re-placed"  # a failure of the actor this role had before
        (demand,) = [role for role in role_demands(self.placement) if role.name == name]
        free_by_id = ray._private.state.available_resources_per_node()
        alive = {node_id for _, node_id in _alive_nodes()}
        room = [node_id for node_id, free in free_by_id.items() if node_id in alive and not unplaced(
            [demand], {name: node_id}, {node_id: free})]  # fmt: skip
        if not room:
            return f"its node is gone and no node has room for it now (free: {describe_free(free_by_id)})"
        node = room[0]
        strategy: Any = NodeAffinitySchedulingStrategy(node, soft=False)
        if demand.demand:
            group = placement_group([demand.demand], bundle_label_selector=[{NODE_ID_LABEL_KEY: node}])
            self._groups.append(group)
            strategy = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=0)
        ray.kill(handle.actor, no_restart=True)
        handle.actor = self._create(name, handle.role, handle.args, strategy)
        self._pinned[name] = node
        return f"its node is gone: re-placed on {node[:8]}"

    def call(self, handle: RayRole, method: str, *args: Any, num_returns: int = 1) -> Any:
        if num_returns == 1:
            return handle.actor.invoke.remote(method, *args)
        return handle.actor.invoke.options(num_returns=num_returns).remote(method, *args)

    def put(self, value: Any) -> Any:
        return ray.put(value)

    def where(self, handle: RayRole) -> Any:
        return handle.actor.where.remote()

    def wait(self, futures: Sequence[Any], num_returns: int = 1, timeout: float | None = None) -> list[Any]:
        if not futures:
            return []
        ready, _ = ray.wait(
            list(futures), num_returns=min(num_returns, len(futures)), timeout=timeout, fetch_local=False
        )
        return ready

    def get(self, future: Any) -> Any:
        try:
            return ray.get(future)
        except (RayActorError, ActorUnavailableError) as error:
            # a call that consumed a dead role's result names that role only in its message
            actor_id = getattr(error, "actor_id", None) or next(
                (known for known in self._names_by_actor_id if known in str(error)), ""
            )
            name = self._names_by_actor_id.get(actor_id, "unknown role")
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            restarting = isinstance(error, ActorUnavailableError)
            node = self._pinned.get(name)
            if restarting and node is not None and node not in {node_id for _, node_id in _alive_nodes()}:
                reason = self._replace(name, actor_id)
            raise RoleFailed(name, reason, restarting=restarting) from error

    def shutdown(self) -> None:
        for handle in self._roles:
            ray.kill(handle.actor, no_restart=True)
        self._roles.clear()
        for group in self._groups:
            remove_placement_group(group)
        self._groups.clear()
        self._connection.close()
