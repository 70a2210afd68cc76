"""The Ray runtime on real clusters: placement across two nodes, faults, learners, learning."""

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from ray_cluster import TwoNodeCluster, ray_environment

from distdqn.config import resolve_config
from distdqn.run.train import train
from distdqn.runtime.ray import RayRuntime, RoleHost, ray  # first: it sets Ray's environment before Ray loads
from distdqn.storage.checkpoint import load_checkpoint, load_resume_state

QUIET = ["logging.progress=false", "logging.tensorboard=false"]
RAY = ["placement.runtime=ray", "placement.actor_steps_per_call=16"]
TWO_LEARNERS = (
    QUIET
    + RAY
    + [
        "placement.num_learners=2",
        "placement.num_shards=2",
        "placement.num_actors=2",
        "placement.learner.num_cpus=0.5",
        "placement.actor.num_cpus=0.5",
    ]
)


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def cluster():
    started = TwoNodeCluster(head_resources={"head": 8}, node_resources={"node2": 8})
    yield started
    started.stop()


@pytest.fixture(scope="module")
def embedded():
    """One embedded cluster for the module's runs in this process that start none of their own
    (a run keeps a connection it finds, and its runtime's shutdown leaves it open): starting and
    stopping one per run took seconds each. 4 CPUs place every role of the largest of them at
    once (5 CPUs: two actors and two shards), as the cluster each started for itself did. It is
    stopped after the module's last test; the tests that connect this process to the two-node
    cluster come before the first that uses it."""
    from distdqn.runtime.ray import RayConnection

    connection = RayConnection(None, 5)
    try:
        yield
    finally:
        connection.close()


def test_roles_pinned_to_nodes_run_there_and_learn(cluster, tmp_path: Path):
    config = resolve_config(
        "CartPole-v1",
        overrides=QUIET
        + RAY
        + [
            f"placement.address={cluster.address}",
            "placement.num_actors=2",
            "placement.actor.resources={node2: 1}",
            "placement.learner.resources={head: 1}",
            "placement.shard.resources={head: 1}",
            "placement.evaluator.resources={head: 1}",
            "total_steps=8000",
            "evaluation.every_steps=2000",
        ],
    )
    result = train(config, tmp_path / "run")
    placement = json.loads((tmp_path / "run" / "placement.json").read_text())

    ray.init(address=cluster.address)
    try:
        nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
    for name, where in placement.items():
        expected = "node2" if name.startswith("actor") else "head"
        assert expected in nodes[where["node_id"]], f"{name} ran on the wrong node"
    assert len({where["pid"] for where in placement.values()}) == len(placement)

    records = _metrics(tmp_path / "run")
    evals = [r["eval_return_mean"] for r in records if "eval_return_mean" in r]
    assert result.counters.updates > 1000
    assert max(evals) > 100  # a random policy scores about 20
    training = [r for r in records if "learner_0_updates_per_s" in r]
    assert training and all("actor_1_env_steps_per_s" in r and "shard_0_inserts_per_s" in r for r in training)
    assert all("weight_lag_max" in r for r in training)
    _assert_best_reproduces_its_score(tmp_path / "run", config)


def _assert_best_reproduces_its_score(run_dir: Path, config) -> None:
    """On Ray updates go on while an evaluation runs: `best` must hold the evaluated weights, not
    the learner's when the score arrived. Evaluated again with the recorded seed, it scores the same."""
    from distdqn.roles import Evaluator
    from distdqn.types import Weights

    best = load_checkpoint(run_dir / "checkpoints" / "best")
    evaluation = best.state["evaluation"]
    online = {k.removeprefix("online."): v.numpy() for k, v in best.tensors.items()}
    evaluator = Evaluator(config.env, config.network, evaluation["eval_episodes"], config.evaluation.epsilon)
    result = evaluator.evaluate(Weights(0, online), evaluation["eval_seed"])
    assert float(result.returns.mean()) == evaluation["eval_return_mean"] == best.state["counters"]["best_eval_return"]


def test_plan_reads_the_cluster_and_refuses_what_it_cannot_hold(cluster, tmp_path: Path):
    base = [
        sys.executable,
        "-m",
        "distdqn",
        "plan",
        "--set",
        "placement.runtime=ray",
        "--set",
        f"placement.address={cluster.address}",
        "--set",
        "placement.num_actors=2",
    ]

    def plan(actor_resources: str) -> subprocess.CompletedProcess:
        command = base + ["--set", f"placement.actor.resources={actor_resources}"]
        return subprocess.run(command, capture_output=True, text=True, env=ray_environment(), cwd=tmp_path, timeout=300)

    fits = plan("{node2: 1}")
    assert fits.returncode == 0, fits.stderr
    rows = {line.split()[0]: line for line in fits.stdout.splitlines()[1:]}
    assert set(rows) == {"learner-0", "shard-0", "actor-0", "actor-1", "evaluator"}
    assert "node2=1" in rows["actor-0"]

    too_big = plan("{gpu_node: 1}")
    assert too_big.returncode == 2
    assert "cannot hold actor-" in too_big.stderr and len(too_big.stderr.strip().splitlines()) == 1


def _pinned_placement(cluster) -> object:
    """Two actors on node2 (and nothing else needs it), every other role on the head."""
    return resolve_config(
        "CartPole-v1",
        overrides=RAY
        + [
            f"placement.address={cluster.address}",
            "placement.num_actors=2",
            "placement.actor.resources={node2: 1}",
            "placement.evaluator.num_cpus=0",  # reserves nothing: pinned without a bundle
        ],
    ).placement


def test_every_role_starts_on_the_node_the_plan_picked(cluster):
    from distdqn.runtime.plan import role_demands

    placement = _pinned_placement(cluster)
    ray.init(address=cluster.address)  # the runtime keeps this connection: the group can be read after
    try:
        runtime = RayRuntime(placement)
        try:
            names = [role.name for role in role_demands(placement)]
            handles = {name: runtime.spawn(dict, name=name) for name in names}  # a role as small as can be
            where = {name: ray.get(runtime.where(handle)) for name, handle in handles.items()}
            (group,) = runtime._groups  # one group for the whole run
        finally:
            runtime.shutdown()
        nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
        assert ray.util.placement_group_table(group)["state"] == "REMOVED"  # shutdown gave it back
    finally:
        ray.shutdown()
    assert {name: place["node_id"] for name, place in where.items()} == runtime.plan
    reserving = [name for name in names if name != "evaluator"]  # it needs nothing: any node fits it
    assert all(("node2" in nodes[where[name]["node_id"]]) == name.startswith("actor") for name in reserving)


def test_roles_the_cluster_has_no_room_for_now_stop_the_run_in_one_line(cluster, monkeypatch):
    """The plan counts each node's total; another job holds node2's `node2` resource, so the
    actors pinned there cannot be reserved: the first spawn says so within PLACEMENT_WAIT_S
    (no silent wait for an actor that stays pending) and gives back what it had asked for."""
    from distdqn.errors import UserError
    from distdqn.runtime import ray as ray_runtime

    monkeypatch.setattr(ray_runtime, "PLACEMENT_WAIT_S", 2.0)
    ray.init(address=cluster.address)
    blocker = ray.remote(RoleHost).options(num_cpus=0, resources={"node2": 7.5}).remote(dict, ())
    try:
        ray.get(blocker.where.remote())
        runtime = RayRuntime(_pinned_placement(cluster))  # the plan fits: node2 has 8 in all
        started = time.monotonic()
        try:
            with pytest.raises(UserError) as refused:
                runtime.spawn(dict, name="learner-0")
            waited = time.monotonic() - started
        finally:
            runtime.shutdown()
        message = str(refused.value)
        assert "\n" not in message
        assert "actor-0 (CPU=1, node2=1 on " in message and "actor-1 (" in message
        assert "learner-0" not in message.split("within")[0]  # the head had room for the rest
        assert "within 2 s" in message and "node2=0.5" in message  # what is free now
        assert waited < 10, waited
        groups = ray.util.placement_group_table().values()
        assert all(group["state"] == "REMOVED" for group in groups)
    finally:
        ray.kill(blocker)
        ray.shutdown()


def _made_in_this_test_module():
    """Pickled by reference to a module Ray's workers cannot import."""
    import gymnasium

    return gymnasium.make("CartPole-v1")


def test_the_python_api_trains_an_env_factory_on_the_cluster(cluster, tmp_path: Path):
    """A factory is registered in every role's process (RoleHost), on both nodes: a local
    function is pickled by value, as in a script or a notebook. Only the run's own env object
    goes to the roles: another one this process registered, which they could not unpickle,
    stays here."""
    from distdqn import DQN

    DQN(_made_in_this_test_module)  # registered, never trained on Ray

    def make_short_cartpole():
        import gymnasium

        return gymnasium.make("CartPole-v1", max_episode_steps=50)

    model = DQN(
        make_short_cartpole,
        runtime="ray",
        run_dir=tmp_path / "run",
        placement={"address": cluster.address, "num_actors": 2, "actor": {"resources": {"node2": 1}}},
        evaluation={"episodes": 2, "every_steps": 400},
        logging={"progress": "none", "tensorboard": False},
    ).learn(800)
    placement = json.loads((tmp_path / "run" / "placement.json").read_text())
    assert len({where["node_id"] for where in placement.values()}) == 2
    assert model.num_timesteps >= 800 and model.evaluate(episodes=2).lengths.max() <= 50


def test_two_learners_stay_bit_identical(embedded, tmp_path: Path):
    config = resolve_config(
        "CartPole-v1",
        overrides=TWO_LEARNERS
        + [
            "total_steps=1500",  # about 600 updates, each taken by both learners
            "algorithm.learning_starts=250",
        ],
    )
    from distdqn.run.counters import Counters
    from distdqn.run.loop import TrainingRun

    (tmp_path / "run").mkdir()
    runtime = RayRuntime(config.placement)
    try:
        run = TrainingRun(config, tmp_path / "run", runtime, Counters())
        counters = run.run()
        digests = [runtime.get(runtime.call(learner, "parameters_digest")) for learner in run.learners]
        updates = [runtime.get(runtime.call(learner, "stats"))["updates"] for learner in run.learners]
        learner_pids = [run.supervisor.where[f"learner-{i}"]["pid"] for i in range(2)]
        listening = _listening_addresses(learner_pids)
    finally:
        runtime.shutdown()
    assert counters.updates > 500
    assert updates[0] == updates[1] == counters.updates
    assert digests[0] == digests[1]
    # learners on one node form their group at a file, over loopback: no TCP store on the network
    assert listening and all(_is_loopback(address) for address in listening), listening


def test_a_killed_learner_of_two_rejoins_and_both_stay_identical(embedded, tmp_path: Path):
    """kill -9 of learner 1 (about 3500 env steps in): it is restarted, rejoins the group, and
    both learners end bit-identical. 8000 steps leave the rejoin more than half the run; a
    partition that re-forms the group on a real cluster is `make cluster-check`'s."""
    config = resolve_config(
        "CartPole-v1",
        overrides=TWO_LEARNERS
        + [
            "checkpoint.every_steps=1000",
            "logging.every_steps=500",
            "total_steps=8000",
            "algorithm.learning_starts=500",
        ],
    )
    from distdqn.run.counters import Counters
    from distdqn.run.loop import TrainingRun

    run_dir = tmp_path / "run"
    run_dir.mkdir()

    def kill_learner_1_after_a_checkpoint() -> None:
        _wait_until(lambda: _logged_updates(run_dir) >= 1500, timeout=240)
        os.kill(json.loads((run_dir / "placement.json").read_text())["learner-1"]["pid"], signal.SIGKILL)

    killer = threading.Thread(target=kill_learner_1_after_a_checkpoint, daemon=True)
    runtime = RayRuntime(config.placement)
    try:
        run = TrainingRun(config, run_dir, runtime, Counters())
        killer.start()
        counters = run.run()
        digests = [runtime.get(runtime.call(learner, "parameters_digest")) for learner in run.learners]
    finally:
        runtime.shutdown()
    killer.join(timeout=1)
    assert counters.restarts == {"learner": 1}
    assert digests[0] == digests[1]
    assert counters.env_steps >= 8000


@pytest.mark.parametrize("learners", [4])
def test_a_split_head_run_checkpoints_the_whole_head_and_resumes_unsplit(embedded, tmp_path: Path, learners: int):
    """Recommend-v0 with 101 items over two head shards on Ray, 4 learners (two data-parallel
    replicas of them): every learner takes every step, actors and evaluator act with the gathered
    head (best reproduces its score), `latest` holds all 101 rows, and the run continues with one
    unsplit learner in one process. Two learners (one replica) took the same path through the run
    and the checkpoint, which joins the shards of the first replica either way; the shard
    arithmetic of one and of two replicas is test_sharded_head's."""
    from distdqn.cli import main

    run_dir = tmp_path / "run"
    config = resolve_config(
        "distdqn/Recommend-v0",
        overrides=QUIET
        + RAY
        + [
            "env.kwargs={num_items: 101}",
            f"placement.num_learners={learners}",
            "placement.head_shards=2",
            "network.action_features=false",  # the split head is the per-item head's
            f"placement.learner.num_cpus={1 / learners}",
            "total_steps=3000",
            "algorithm.learning_starts=500",
            "evaluation.every_steps=1000",
            "evaluation.episodes=5",
            "checkpoint.every_steps=1000",
        ],
    )
    counters = train(config, run_dir).counters
    records = _metrics(run_dir)
    assert counters.updates > 300
    assert all(any(record.get(f"learner_{k}_updates_per_s", 0) > 0 for record in records) for k in range(learners))
    latest = load_checkpoint(run_dir / "checkpoints" / "latest")
    assert latest.state["learner"]["updates"] == counters.updates
    for name in ("online.advantage.weight", "target.advantage.weight"):
        assert tuple(latest.tensors[name].shape) == (101, 256)
    _assert_best_reproduces_its_score(run_dir, config)

    unsplit = ["placement.runtime=inline", "placement.num_learners=1", "placement.head_shards=1"]
    sets = [item for override in unsplit for item in ("--set", override)]
    assert main(["train", "--resume", str(run_dir), "--total-steps", "4000", *sets]) == 0
    resumed = load_checkpoint(run_dir / "checkpoints" / "latest")
    assert resumed.state["counters"]["env_steps"] >= 4000
    assert resumed.state["learner"]["updates"] > counters.updates


@pytest.mark.learning
@pytest.mark.parametrize("seed", [2])  # one seed here (the inline learning tests take three): the test budget
def test_cartpole_on_ray_with_two_actors_solves(embedded, tmp_path: Path, seed: int):
    config = resolve_config(
        "CartPole-v1",
        overrides=QUIET + RAY + ["placement.num_actors=2", f"seed={seed}", "stop_return=475", "total_steps=60000"],
    )
    counters = train(config, tmp_path / "run").counters
    assert counters.solved_at_env_steps is not None


def _train_command(run_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "distdqn", "train", "--run-dir", str(run_dir), *args]


def _wait_until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError("timed out")


def _logged_updates(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return max((json.loads(line)["updates"] for line in lines[:-1]), default=0)  # the last may be half written


def test_killed_actor_shard_and_learner_are_restarted_and_the_run_finishes(embedded, tmp_path: Path):
    """kill -9 of an actor, a shard and the learner (about 4500 env steps in): each comes back,
    the learner from the latest checkpoint, and the run finishes. 10000 steps leave the restarts
    more than half the run to come back in; a longer run only trains on. Killing and replacing whole nodes
    of a real cluster is `make cluster-check`'s (scripts/cluster_check.py). The driver is this
    process (the kills are of the roles' processes), on the module's embedded cluster."""
    run_dir = tmp_path / "run"
    config = resolve_config(
        "CartPole-v1",
        overrides=QUIET
        + RAY
        + ["placement.num_actors=2", "total_steps=10000", "checkpoint.every_steps=1000", "logging.every_steps=500"],
    )
    placement: dict = {}

    def kill_after_a_checkpoint_with_updates() -> None:
        # checkpoints come every 1000 env steps (about 500 updates): one with 1000+ updates exists
        _wait_until(lambda: _logged_updates(run_dir) >= 1600, timeout=240)
        placement.update(json.loads((run_dir / "placement.json").read_text()))
        for role in ("actor-0", "shard-0", "learner-0"):
            os.kill(placement[role]["pid"], signal.SIGKILL)
            time.sleep(3)

    killer = threading.Thread(target=kill_after_a_checkpoint_with_updates, daemon=True)
    killer.start()
    counters = train(config, run_dir).counters
    killer.join(timeout=1)
    assert placement, "the roles were not killed before the run ended"
    assert counters.env_steps >= 10000
    records = _metrics(run_dir)
    last = [r for r in records if "restarts_actor" in r][-1]
    assert (last["restarts_actor"], last["restarts_shard"], last["restarts_learner"]) == (1, 1, 1)
    assert last["replay_lost"] > 0
    # the learner came back from the latest checkpoint (losing at most the updates since then
    # plus those in flight), not from a fresh init, which would lose the 1600+ before the kill
    final = load_checkpoint(run_dir / "checkpoints" / "latest").state
    assert final["learner"]["updates"] >= final["counters"]["updates"] - 1000
    placement_after = json.loads((run_dir / "placement.json").read_text())
    for role in ("actor-0", "shard-0", "learner-0"):
        assert placement_after[role]["pid"] != placement[role]["pid"]


def _processes_mentioning(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="ignore"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_a_killed_driver_leaves_no_ray_process_and_resume_restores_every_shard_exactly(embedded, tmp_path: Path):
    """Two actors, two shards on the embedded cluster, which listens on loopback only, the driver
    killed with kill -9: every process it started (gcs_server, raylet, agents, role hosts) ends
    within DRIVER_DEATH_BOUND_S, and `--resume` puts back the replay the checkpoint holds, bit for
    bit (a resume to the checkpoint's own step count inserts nothing, and its final checkpoint
    holds the shards as restored), then the run finishes. (One driver killed for both: the kill
    and the loopback check were a test of their own, on a run of their own.)"""
    run_dir = tmp_path / "run"
    command = _train_command(
        run_dir,
        "--total-steps",
        "100000",
        *[item for setting in QUIET + RAY for item in ("--set", setting)],
        "--set",
        "placement.num_actors=2",
        "--set",
        "placement.num_shards=2",
        "--set",
        "checkpoint.every_steps=1000",
    )
    driver = subprocess.Popen(command, env=ray_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started: list[int] = []
    try:
        # every role is up and learning, and a checkpoint with the shards is there to resume from
        # (one every 1000 env steps; learning starts at 1000, so updates are first logged at 2000)
        _wait_until(lambda: _logged_updates(run_dir) > 0 and (run_dir / "checkpoints" / "latest").exists(), timeout=240)
        started = _descendants(driver.pid)
        for name in ("gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent", "ray::RoleHost"):
            assert set(_processes_mentioning(name)) & set(started), f"no {name} among the driver's descendants"
        addresses = _listening_addresses([driver.pid, *started])
        assert addresses and all(_is_loopback(address) for address in addresses), addresses
        driver.kill()
        driver.wait()
        deadline = time.monotonic() + DRIVER_DEATH_BOUND_S
        while (left := [pid for pid in started if _alive(pid)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, f"still running {DRIVER_DEATH_BOUND_S} s after the driver's kill -9: {left}"
    finally:
        driver.kill()
        driver.wait()
        for pid in started:  # only what this test's driver started, if an assertion failed
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    # the embedded cluster's processes carry the driver's pid in their session path; they go too
    _wait_until(lambda: not _processes_mentioning(f"_{driver.pid}/"), timeout=60)
    latest = run_dir / "checkpoints" / "latest"
    saved_steps = load_checkpoint(latest).state["counters"]["env_steps"]
    saved_shards = load_resume_state(latest)["shards"]

    def resume(total_steps: int) -> None:  # in this process, on the module's embedded cluster
        from distdqn.cli import main

        assert main(["train", "--resume", str(run_dir), "--total-steps", str(total_steps)]) == 0

    resume(saved_steps)
    restored_shards = load_resume_state(latest)["shards"]
    assert len(restored_shards) == 2
    for saved, restored in zip(saved_shards, restored_shards, strict=True):
        assert saved["replay"]["arrays"].keys() == restored["replay"]["arrays"].keys()
        for name, array in saved["replay"]["arrays"].items():
            assert np.array_equal(array, restored["replay"]["arrays"][name]), name
        assert np.array_equal(saved["replay"]["tree"], restored["replay"]["tree"])
        assert saved["replay"]["rng"] == restored["replay"]["rng"]
    assert restored_shards[0]["replay"]["arrays"]["sampleable"].any()

    resume(saved_steps + 500)  # and goes on from there to its end
    assert load_checkpoint(latest).state["counters"]["env_steps"] >= saved_steps + 500


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) from /proc/PID/stat, or None once the process is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            children.setdefault(stat[1], []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        found += (new := children.get(todo.pop(), []))
        todo += new
    return found


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def _listening_addresses(pids: list[int]) -> set[str]:
    """Addresses the TCP sockets of these processes listen on, from /proc/net/tcp{,6}."""
    listening = {}
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                raw = bytes.fromhex(fields[1].split(":")[0])
                words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]  # little-endian words
                listening[f"socket:[{fields[9]}]"] = socket.inet_ntop(family, b"".join(words))
    found = set()
    for pid in pids:
        try:
            descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for descriptor in descriptors:
            try:
                found.add(listening[os.readlink(descriptor)])
            except (OSError, KeyError):
                pass
    return found


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


DRIVER_DEATH_BOUND_S = 5.0
"""docs/how-to/ray.md (Driver death): 0.2 s measured for Ray's processes, 0.5 s for the reaper;
room for a busy machine."""


_CONNECT = "import ray; ray.init(address='{address}'); print(ray.cluster_resources())"


@pytest.mark.parametrize("token", [None, "0" * 64])
def test_a_client_without_the_token_or_with_a_wrong_one_is_refused(cluster, tmp_path: Path, token):
    env = {k: v for k, v in ray_environment().items() if k != "RAY_AUTH_TOKEN"}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token to fall back on
    if token is not None:
        env["RAY_AUTH_TOKEN"] = token
    client = subprocess.run(
        [sys.executable, "-c", _CONNECT.format(address=cluster.address)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert client.returncode != 0
    assert "CPU" not in client.stdout  # it never saw the cluster
    assert "auth" in client.stderr.lower() or "token" in client.stderr.lower()


def test_the_embedded_cluster_token_is_readable_by_its_owner_only(tmp_path: Path, monkeypatch):
    env = {k: v for k, v in ray_environment().items() if k != "RAY_AUTH_TOKEN"}
    env["HOME"] = str(tmp_path)
    script = (
        "from distdqn.config import PlacementConfig\n"
        "from distdqn.runtime.ray import RayRuntime\n"
        "RayRuntime(PlacementConfig(runtime='ray')).shutdown()\n"
    )
    started = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr[-2000:]
    token = tmp_path / ".ray" / "auth_token"
    assert token.stat().st_mode & 0o777 == 0o600
    token.chmod(0o644)  # as Ray 2.60 writes the token it generates
    from distdqn.runtime.ray import ensure_private_token

    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("HOME", str(tmp_path))
    ensure_private_token()
    assert token.stat().st_mode & 0o777 == 0o600


def test_sigterm_to_the_ray_driver_writes_latest_and_exits_0(cluster, tmp_path: Path):
    """Ray's driver installs a SIGTERM handler of its own (exit 1 and a stack dump); ours must win."""
    run_dir = tmp_path / "run"
    command = _train_command(
        run_dir,
        "--total-steps",
        "1000000",
        "--runtime",
        "ray",
        "--address",
        cluster.address,
        "--set",
        "placement.num_actors=2",
        "--set",
        "logging.progress=false",
        "--set",
        "logging.every_steps=500",
    )
    driver = subprocess.Popen(command, env=ray_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = run_dir / "metrics.jsonl"
    _wait_until(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 1, timeout=120)  # training
    driver.send_signal(signal.SIGTERM)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 0, err[-2000:]
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    assert load_checkpoint(run_dir / "checkpoints" / "latest").state["counters"]["env_steps"] > 0
