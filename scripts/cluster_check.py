"""`make cluster-check`: distdqn on a Ray cluster of containers on this machine, through faults.

It builds the CPU image here (and an S3 server image from it), then, on a Docker network of its own
with a subnet outside the private ranges (198.18.0.0/24, RFC 2544's benchmarking block) and nothing
published on the host, starts a Ray head, two workers and moto's S3 server, Ray's token
authentication on. Then, each step asserted:

1. a container without the token can neither join the cluster nor run work on it;
2. a run with its actors on worker 1, its shard on worker 2 and one learner on each worker, its run
   directory on s3://, trains (driven from a container of its own, itself a Ray node with no CPUs);
3. `docker kill` of worker 1 (actors, a learner): the run goes on, and its roles come back when a
   replacement worker (same address and resources) joins; restarts are counted in metrics.jsonl;
4. `docker pause` of worker 2 (a hung node: shard, a learner): Ray declares it dead, the run goes on
   once it is replaced, and the lost replay is counted (`replay_lost`);
5. `docker network disconnect` of worker 1 (a partition): the same, with the learner group re-formed;
6. `docker stop` of the driver's container (SIGTERM, then 30 s, as Kubernetes gives): `latest`, with
   the replay, is on s3:// in time; a new set of containers resumes the run from s3:// and solves
   CartPole (greedy mean return >= 475), metrics.jsonl continuous across the two.

Each recovery time (fault -> the run's env steps move again) is measured and printed; the last line
printed is the summary. Everything it starts carries one run id, and only that is removed at the end
(`--keep` leaves it for a look). Needs root, Docker (installed and started when missing, on Debian)
and, where no image registry answers, debootstrap (scripts/base-image.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ROOT / "docker" / "build-extras"
SUBNET = "198.18.0.0/24"
DAEMON_BRIDGE = "198.18.255.1/24"
"""The default bridge's address when this script starts dockerd: out of the private ranges too."""
HEAD_IP, WORKER_IPS, S3_IP, DRIVER_IP = "198.18.0.10", ("198.18.0.11", "198.18.0.12"), "198.18.0.20", "198.18.0.30"
RAY_PORT = 6379
BUCKET = "distdqn-check"
REGISTRY_BASE = "python:3.11-slim-trixie"
LOCAL_BASE = "distdqn-base:bookworm"
TORCH = "torch==2.13.0"
S3_ENV = {
    "AWS_ENDPOINT_URL": f"http://{S3_IP}:5000",
    "AWS_ACCESS_KEY_ID": "cluster-check",
    "AWS_SECRET_ACCESS_KEY": "cluster-check",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
OBJECT_STORE_BYTES = 300_000_000
"""Each Ray node's object store: well inside the 1 GiB /dev/shm every container gets."""
SOLVE_BOUND_S = 1500.0
"""The resumed run must solve CartPole within this."""
LOG_EVERY = 500
FAULT_BOUND_S = 240.0
"""A fault must be recovered from (the run's env steps moving again) within this."""


def log(message: str) -> None:
    print(f"[cluster-check {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(*args: str, check: bool = True, timeout: float = 600, quiet: bool = False) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise CheckFailed(f"`{' '.join(args)[:200]}` exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    if not quiet and result.stdout.strip() and args[:2] == ("docker", "build"):
        log(result.stdout.strip().splitlines()[-1])
    return result


class CheckFailed(Exception):
    """A step of the check did not hold."""


def wait_until(what: str, ready: Callable[[], bool], timeout: float, every: float = 2.0) -> float:
    """Seconds until `ready()` held; CheckFailed naming `what` after `timeout`."""
    started = time.monotonic()
    while not ready():
        if time.monotonic() - started > timeout:
            raise CheckFailed(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)
    return time.monotonic() - started


# ---- Docker and the images ----------------------------------------------------------------------


def ensure_docker() -> None:
    """A Docker daemon that answers: installed from Debian's packages and started when missing."""
    if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return
    if not shutil.which("dockerd"):
        log("installing docker.io")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "docker.io", "debootstrap"],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
    log("starting dockerd")
    with open("/tmp/distdqn-dockerd.log", "ab") as daemon_log:
        subprocess.Popen(
            ["dockerd", f"--bip={DAEMON_BRIDGE}"], stdout=daemon_log, stderr=daemon_log, start_new_session=True
        )
    wait_until("dockerd to answer", lambda: subprocess.run(["docker", "info"], capture_output=True).returncode == 0, 60)


def base_image() -> str:
    """The registry's Python image where a registry answers, else one made from Debian's packages."""
    if subprocess.run(["docker", "pull", "-q", REGISTRY_BASE], capture_output=True, timeout=300).returncode == 0:
        return REGISTRY_BASE
    log(f"no image registry answers: the base is {LOCAL_BASE}, from Debian's packages (scripts/base-image.sh)")
    if not shutil.which("debootstrap"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "debootstrap"], check=True, env=env, stdout=subprocess.DEVNULL
        )
    run(str(ROOT / "scripts" / "base-image.sh"), LOCAL_BASE, timeout=1200)
    return LOCAL_BASE


def _reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=10).close()
        return True
    except OSError:
        return False


def torch_index() -> str:
    """PyTorch's CPU index where it answers; else PyPI, with a local CPU wheel of torch (found by
    this machine's pip) in the build extras, which pip prefers: `2.13.0+cpu` sorts above `2.13.0`."""
    if _reachable("https://download.pytorch.org/whl/cpu/torch/"):
        return "https://download.pytorch.org/whl/cpu"
    found = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-index", "--no-deps", "-d", str(EXTRAS), TORCH],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0 or not any(EXTRAS.glob("torch-*+cpu-*.whl")):
        raise CheckFailed(f"PyTorch's index does not answer and pip finds no local CPU wheel of {TORCH}")
    return "https://pypi.org/simple"


def ca_bundle() -> None:
    """The CA bundle this machine's pip trusts, for pip inside the build (behind a proxy)."""
    configured = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.cert"], capture_output=True, text=True
    ).stdout.strip()
    bundle = os.environ.get("PIP_CERT") or configured
    if bundle and Path(bundle).is_file():
        shutil.copyfile(bundle, EXTRAS / "ca.crt")
        (EXTRAS / "pip.conf").write_text("[global]\ncert = /build-extras/ca.crt\n")


def build_images(tag: str) -> tuple[str, str]:
    """The distdqn CPU image and the S3 server image made from it, built with the legacy builder."""
    base, index = base_image(), torch_index()
    ca_bundle()
    environment = {**os.environ, "DOCKER_BUILDKIT": "0"}
    started = time.monotonic()
    image = f"distdqn:{tag}"
    for args in (
        ["-t", image, "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"TORCH_INDEX_URL={index}", "."],
        ["-t", f"distdqn-s3:{tag}", "-f", "docker/s3-server.Dockerfile", "--build-arg", f"DISTDQN_IMAGE={image}", "."],
    ):
        result = subprocess.run(["docker", "build", *args], cwd=ROOT, env=environment, capture_output=True, text=True)
        if result.returncode != 0:
            raise CheckFailed(f"docker build {' '.join(args)} failed: {result.stdout[-1500:]}{result.stderr[-1500:]}")
    size = int(run("docker", "image", "inspect", "-f", "{{.Size}}", image).stdout)
    log(f"built {image} ({size / 1e9:.2f} GB) and distdqn-s3:{tag} in {time.monotonic() - started:.0f} s")
    return image, f"distdqn-s3:{tag}"


# ---- the cluster ----------------------------------------------------------------------------------


@dataclass
class Cluster:
    """Containers on one network, all named after the check's id, removed together."""

    image: str
    s3_image: str
    check_id: str = field(default_factory=lambda: secrets.token_hex(3))
    token: str = field(default_factory=lambda: secrets.token_hex(32))

    def __post_init__(self) -> None:
        self.network = f"distdqn-check-{self.check_id}"
        run("docker", "network", "create", "--subnet", SUBNET, self.network)

    def name(self, role: str) -> str:
        return f"distdqn-check-{self.check_id}-{role}"

    def _run(self, role: str, ip: str, *args: str, environment: dict[str, str] | None = None) -> None:
        env_flags = [f"--env={key}={value}" for key, value in (environment or {}).items()]
        run(
            "docker", "run", "--detach", "--name", self.name(role), "--network", self.network, "--ip", ip,
            "--shm-size=1g", "--label", f"distdqn-check={self.check_id}", *env_flags, *args,
        )  # fmt: skip

    def ray_environment(self, token: str | None = None) -> dict[str, str]:
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token or self.token, **S3_ENV}

    def start_s3(self) -> None:
        self._run("s3", S3_IP, self.s3_image, environment=S3_ENV)
        wait_until("the S3 server", lambda: self.exec_python("s3", _MAKE_BUCKET).returncode == 0, 60)

    def start_head(self) -> None:
        self._run(
            "head", HEAD_IP, "--entrypoint", "ray", self.image, "start", "--head", f"--port={RAY_PORT}",
            "--num-cpus=1", "--include-dashboard=false", f"--object-store-memory={OBJECT_STORE_BYTES}",
            '--resources={"head": 1}', "--block",
            environment=self.ray_environment(),
        )  # fmt: skip
        wait_until("the Ray head", lambda: "Active:" in self.ray_status(), 90)

    def start_worker(self, index: int) -> None:
        """Worker `index` (0 or 1) at its fixed address: a replacement takes the same one."""
        role = f"w{index + 1}"
        self._run(
            role, WORKER_IPS[index], "--entrypoint", "ray", self.image, "start",
            f"--address={HEAD_IP}:{RAY_PORT}", "--num-cpus=2", f"--object-store-memory={OBJECT_STORE_BYTES}",
            f'--resources={{"{role}": 1, "learner_slot": 1}}', "--block",
            environment=self.ray_environment(),
        )  # fmt: skip
        wait_until(f"worker {role} to join", lambda: f" {role}" in self.ray_status(), 90)

    def start_driver(self, *train_args: str) -> None:
        """The run's driver in a container of its own, a Ray node with no CPUs (a driver joins a
        cluster through a node of its own); SIGTERM reaches `distdqn` through tini."""
        join = f"ray start --address={HEAD_IP}:{RAY_PORT} --num-cpus=0 --object-store-memory={OBJECT_STORE_BYTES}"
        command = f"{join} > /tmp/ray-start.log 2>&1 && exec distdqn train " + " ".join(train_args)
        self._run("driver", DRIVER_IP, "--entrypoint", "tini", self.image, "--", "sh", "-c", command,
                  environment=self.ray_environment())  # fmt: skip

    def ray_status(self) -> str:
        result = subprocess.run(
            ["docker", "exec", self.name("head"), "ray", "status", f"--address={HEAD_IP}:{RAY_PORT}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.stdout if result.returncode == 0 else ""

    def exec_python(self, role: str, code: str) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "exec", self.name(role), "python", "-c", code], capture_output=True, text=True)

    def alive(self, role: str) -> bool:
        state = run("docker", "inspect", "-f", "{{.State.Running}}", self.name(role), check=False, quiet=True)
        return state.stdout.strip() == "true"

    def logs(self, role: str, lines: int = 40) -> str:
        return run("docker", "logs", "--tail", str(lines), self.name(role), check=False, quiet=True).stdout

    def remove(self, role: str) -> None:
        run("docker", "rm", "--force", self.name(role), check=False, quiet=True)

    def close(self) -> None:
        containers = run("docker", "ps", "-aq", "--filter", f"label=distdqn-check={self.check_id}", check=False)
        if containers.stdout.split():
            run("docker", "rm", "--force", *containers.stdout.split(), check=False)
        run("docker", "network", "rm", self.network, check=False)


_MAKE_BUCKET = f"import boto3; boto3.client('s3').create_bucket(Bucket='{BUCKET}')"


def _read_metrics(cluster: Cluster, run_uri: str) -> list[dict]:
    """The run's metrics.jsonl as the store has it (uploaded at each checkpoint), from the head."""
    code = f"import s3fs, sys; sys.stdout.write(s3fs.S3FileSystem().cat('{run_uri}/metrics.jsonl').decode())"
    result = cluster.exec_python("head", code)
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else []


def _staged_metrics(cluster: Cluster) -> list[dict]:
    """The driver's own metrics.jsonl (its staging directory): lines as they are written."""
    code = (
        "import glob, sys; paths = glob.glob('/tmp/distdqn-*/metrics.jsonl'); "
        "sys.stdout.write(open(paths[0]).read() if paths else '')"
    )
    result = cluster.exec_python("driver", code)
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip().endswith("}")]


# ---- the steps ------------------------------------------------------------------------------------


def check_token(cluster: Cluster) -> str:
    """A container with a wrong token cannot join as a node, nor connect as a driver."""
    outsider = [
        "docker", "run", "--rm", "--network", cluster.network, "--env=RAY_AUTH_MODE=token",
        f"--env=RAY_AUTH_TOKEN={secrets.token_hex(32)}", "--entrypoint", "sh", cluster.image, "-c",
    ]  # fmt: skip
    join = subprocess.run(
        [*outsider, f"timeout 60 ray start --address={HEAD_IP}:{RAY_PORT} --num-cpus=1 --block"],
        capture_output=True,
        text=True,
    )
    driver = subprocess.run(
        [*outsider, f"timeout 60 python -c \"import ray; ray.init(address='{HEAD_IP}:{RAY_PORT}'); print('JOINED')\""],
        capture_output=True,
        text=True,
    )
    if join.returncode == 0 or "JOINED" in driver.stdout or driver.returncode == 0:
        raise CheckFailed(f"a container without the token got in: join {join.returncode}, driver {driver.returncode}")
    nodes = cluster.ray_status().count("node_")
    return f"no token: join and driver refused ({nodes} nodes, as before)"


TRAIN_SETTINGS = [
    "placement.num_actors=2", "placement.num_learners=2", "placement.num_shards=1",
    "placement.actor.num_cpus=0.5", "placement.actor.resources={w1: 0.1}",
    "placement.shard.num_cpus=0.25", "placement.shard.resources={w2: 0.1}",
    "placement.learner.num_cpus=0.5", "placement.learner.resources={learner_slot: 1}",
    "placement.evaluator.num_cpus=0.5", "placement.evaluator.resources={head: 0.5}",
    "checkpoint.every_steps=2000", "checkpoint.replay=true", f"logging.every_steps={LOG_EVERY}",
    "logging.progress=lines", "logging.tensorboard=false",
]  # fmt: skip


def _settings() -> list[str]:
    """TRAIN_SETTINGS as `--set` flags, quoted for the driver's shell."""
    return [part for setting in TRAIN_SETTINGS for part in ("--set", f"'{setting}'")]


def _train_args(run_uri: str, *extra: str) -> list[str]:
    settings = _settings()
    return [
        "--env", "CartPole-v1", "--runtime", "ray", "--address", f"{HEAD_IP}:{RAY_PORT}", "--run-dir", run_uri,
        "--seed", "3", *settings, *extra,
    ]  # fmt: skip


def _steps(cluster: Cluster) -> int:
    lines = _staged_metrics(cluster)
    return max((line.get("env_steps", 0) for line in lines), default=0)


def _restarts(cluster: Cluster) -> dict[str, int]:
    """Restarts by role kind (`restarts_actor`...), as the newest training line counts them."""
    lines = [line for line in _staged_metrics(cluster) if "env_steps_per_s" in line]
    last = lines[-1] if lines else {}
    return {key.removeprefix("restarts_"): value for key, value in last.items() if key.startswith("restarts_")}


def _driver_alive(cluster: Cluster) -> None:
    if not cluster.alive("driver"):
        raise CheckFailed(f"the driver stopped: {cluster.logs('driver')}")


def fault(
    cluster: Cluster, name: str, inject: Callable[[], None], replace: Callable[[], None], kinds: list[str]
) -> str:
    """Inject a fault, replace the lost node once Ray has declared it dead, and measure the time
    until the run's env steps move again with every role of `kinds` restarted."""
    before, restarts, dead = _steps(cluster), _restarts(cluster), _ray_dead_nodes(cluster)
    started = time.monotonic()
    inject()
    log(f"{name} at env step {before}")
    wait_until(f"{name}: Ray to declare the node dead", lambda: _ray_dead_nodes(cluster) > dead, FAULT_BOUND_S)
    detected = time.monotonic() - started
    replace()

    def recovered() -> bool:
        _driver_alive(cluster)
        now = _restarts(cluster)
        return all(now.get(kind, 0) > restarts.get(kind, 0) for kind in kinds) and _steps(cluster) > before + 1000

    wait_until(f"{name}: the run to go on with its roles back", recovered, FAULT_BOUND_S)
    total = time.monotonic() - started
    log(f"{name}: node dead after {detected:.0f} s, run moving after {total:.0f} s; restarts {_restarts(cluster)}")
    return f"{name} {detected:.0f}/{total:.0f} s"


def _replace(cluster: Cluster, index: int) -> None:
    """A new worker in the place of a dead one: a paused container is thawed first (its raylet,
    told it is dead, then exits), and the old container goes before the new one takes its address."""
    role = f"w{index + 1}"
    run("docker", "unpause", cluster.name(role), check=False, quiet=True)
    cluster.remove(role)
    cluster.start_worker(index)


def preempt_and_resume(cluster: Cluster, run_uri: str) -> str:
    """`docker stop` of the driver (SIGTERM, 30 s, SIGKILL): `latest` with the replay must be on
    the store when it exits; then a new cluster resumes the run from the store and solves it."""
    steps = _steps(cluster)
    started = time.monotonic()
    run("docker", "stop", "--time", "30", cluster.name("driver"), timeout=120)
    stopped = time.monotonic() - started
    code = run("docker", "inspect", "-f", "{{.State.ExitCode}}", cluster.name("driver")).stdout.strip()
    if code != "0":
        raise CheckFailed(f"the driver exited {code} on SIGTERM after {stopped:.0f} s: {cluster.logs('driver')}")
    latest = _latest_files(cluster, run_uri)
    if not any(name.startswith("resume") for name in latest):
        raise CheckFailed(f"`latest` on the store holds no replay snapshot: {sorted(latest)}")
    log(f"driver stopped by SIGTERM at env step {steps} in {stopped:.0f} s; latest on the store: {len(latest)} files")
    for role in ("driver", "w1", "w2", "head"):
        cluster.remove(role)
    cluster.start_head()
    for index in range(2):
        cluster.start_worker(index)
    address = f"{HEAD_IP}:{RAY_PORT}"
    cluster.start_driver("--resume", run_uri, "--address", address, "--stop-return", "475", *_settings())
    resumed = time.monotonic()
    code = run("docker", "wait", cluster.name("driver"), timeout=SOLVE_BOUND_S).stdout.strip()
    if code != "0":
        raise CheckFailed(f"the resumed run exited {code}: {cluster.logs('driver')}")
    lines = _read_metrics(cluster, run_uri)
    _check_continuous(lines)
    best = max((line["eval_return_mean"] for line in lines if "eval_return_mean" in line), default=float("nan"))
    if not best >= 475:
        raise CheckFailed(f"the resumed run ended without solving CartPole: best evaluation {best}")
    solved = time.monotonic() - resumed
    return f"SIGTERM: latest+replay on s3 in {stopped:.0f} s; resumed elsewhere, solved ({best:.0f}) in {solved:.0f} s"


def _latest_files(cluster: Cluster, run_uri: str) -> list[str]:
    """The files of the version `latest` names on the store."""
    code = (
        "import json, s3fs; fs = s3fs.S3FileSystem(); "
        f"v = json.loads(fs.cat('{run_uri}/checkpoints/latest'))['version']; "
        f"files = fs.find('{run_uri}/checkpoints/versions/' + v, withdirs=True); "
        "print('\\n'.join(p.rsplit('/', 1)[-1] for p in files))"
    )
    result = cluster.exec_python("head", code)
    if result.returncode != 0:
        raise CheckFailed(f"cannot read `latest` on the store: {result.stderr.strip()[-500:]}")
    return result.stdout.split()


def _check_continuous(lines: list[dict]) -> None:
    """Training lines' env steps only grow, across the stop and the resume: none repeated, none lost
    (a line every logging.every_steps, so no gap of more than two intervals)."""
    steps = [line["env_steps"] for line in lines if "env_steps_per_s" in line]
    gaps = [later - earlier for earlier, later in zip(steps, steps[1:], strict=False)]
    if not steps or min(gaps, default=1) <= 0 or max(gaps, default=0) > 4 * LOG_EVERY:
        raise CheckFailed(f"metrics.jsonl is not continuous: env steps {steps}")


def _ray_dead_nodes(cluster: Cluster) -> int:
    """Nodes the cluster's GCS counts as dead (Ray prints warnings of its own on stdout too)."""
    code = (
        "import ray; ray.init(address='auto', logging_level=40); "
        "print('DEAD', sum(not n['Alive'] for n in ray.nodes()))"
    )
    result = cluster.exec_python("head", code)
    counts = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("DEAD ")]
    return int(counts[-1]) if result.returncode == 0 and counts else 0


MEASURE_STEPS = 20_000
MEASURE_SETTINGS = [
    "placement.num_actors=2", "placement.num_shards=1", "placement.num_learners=1",
    "placement.actor.num_cpus=0.5", "placement.shard.num_cpus=0.25", "placement.learner.num_cpus=0.5",
    "placement.evaluator.num_cpus=0.5", "evaluation.every_steps=100000", "logging.tensorboard=false",
]  # fmt: skip
"""One placement for the three runtimes compared (inline has one learner), evaluation out of the way."""


def _final_rate(output: str) -> float:
    """Env steps per second over a whole run, from the last training line of its metrics.jsonl."""
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    last = [line for line in lines if "env_steps_per_s" in line][-1]
    return last["env_steps"] / last["wall_s"]


def _network_bytes(cluster: Cluster, roles: list[str]) -> int:
    """Bytes the containers sent on their network interface so far (the kernel's counters)."""
    total = 0
    for role in roles:
        result = run("docker", "exec", cluster.name(role), "cat", "/sys/class/net/eth0/statistics/tx_bytes")
        total += int(result.stdout)
    return total


def measure(cluster: Cluster) -> str:
    """Env steps/s of one placement inline and on an embedded cluster (both in one container of 2
    CPUs), and on the cluster of containers, with the bytes its nodes sent per env step."""
    settings = [part for setting in MEASURE_SETTINGS for part in ("--set", f"'{setting}'")]
    common = ["--env", "CartPole-v1", "--total-steps", str(MEASURE_STEPS), "--quiet", "--seed", "1", *settings]
    rates = {}
    for runtime in ("inline", "ray"):
        command = f"distdqn train --runtime {runtime} --run-dir /tmp/r {' '.join(common)} && cat /tmp/r/metrics.jsonl"
        result = run("docker", "run", "--rm", "--cpus=2", "--shm-size=1g", "--entrypoint", "sh", cluster.image,
                     "-c", command, timeout=1800)  # fmt: skip
        rates[runtime] = _final_rate(result.stdout)
    roles = ["head", "w1", "w2"]
    sent = _network_bytes(cluster, roles)
    settings_cluster = [*settings, "--set", "'placement.actor.resources={w1: 0.1}'"]
    settings_cluster += [
        "--set",
        "'placement.shard.resources={w2: 0.1}'",
        "--set",
        "'placement.learner.resources={w2: 0.1}'",
    ]
    command = (
        f"distdqn train --runtime ray --address {HEAD_IP}:{RAY_PORT} --run-dir /tmp/r "
        f"{' '.join([*common[: -len(settings)], *settings_cluster])} && cat /tmp/r/metrics.jsonl"
    )
    join = (
        f"ray start --address={HEAD_IP}:{RAY_PORT} --num-cpus=0 --object-store-memory={OBJECT_STORE_BYTES} > /dev/null"
    )
    result = run("docker", "run", "--rm", "--network", cluster.network, "--ip", DRIVER_IP, "--shm-size=1g",
                 *[f"--env={k}={v}" for k, v in cluster.ray_environment().items()], "--entrypoint", "sh",
                 cluster.image, "-c", f"{join} && {command}", timeout=1800)  # fmt: skip
    rates["containers"] = _final_rate(result.stdout)
    per_step = (_network_bytes(cluster, roles) - sent) / MEASURE_STEPS
    line = (
        f"env steps/s: inline {rates['inline']:.0f}, embedded Ray {rates['ray']:.0f}, "
        f"3 containers {rates['containers']:.0f} ({rates['containers'] / rates['inline']:.2f}x inline); "
        f"{per_step / 1024:.1f} KiB sent between nodes per env step"
    )
    log(line)
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the containers and network for a look")
    parser.add_argument("--tag", default="cluster-check", help="tag of the images built")
    parser.add_argument(
        "--measure", action="store_true", help="measure throughput and network bytes instead of the fault steps"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    ensure_docker()
    EXTRAS.mkdir(parents=True, exist_ok=True)
    image, s3_image = build_images(args.tag)
    cluster = Cluster(image, s3_image)
    summary: list[str] = []
    try:
        cluster.start_s3()
        cluster.start_head()
        for index in range(2):
            cluster.start_worker(index)
        summary.append(check_token(cluster))
        if args.measure:
            summary.append(measure(cluster))
            return _passed(started, summary)
        run_uri = f"s3://{BUCKET}/run-{cluster.check_id}"
        cluster.start_driver(*_train_args(run_uri, "--total-steps", "200000"))
        wait_until("the run to start updating", lambda: _steps(cluster) >= 3000 or not cluster.alive("driver"), 300)
        _driver_alive(cluster)
        summary.append(f"trains on s3:// at {_steps(cluster)} steps")
        summary.append(
            fault(cluster, "kill w1", lambda: run("docker", "kill", cluster.name("w1")),
                  lambda: _replace(cluster, 0), ["actor", "learner"])
        )  # fmt: skip
        summary.append(
            fault(cluster, "pause w2", lambda: run("docker", "pause", cluster.name("w2")),
                  lambda: _replace(cluster, 1), ["shard", "learner"])
        )  # fmt: skip
        summary.append(
            fault(cluster, "partition w1", lambda: run("docker", "network", "disconnect", cluster.network,
                  cluster.name("w1")), lambda: _replace(cluster, 0), ["actor", "learner"])
        )  # fmt: skip
        summary.append(preempt_and_resume(cluster, run_uri))
    except (CheckFailed, subprocess.TimeoutExpired, OSError, ValueError) as failure:
        log(f"FAILED: {failure}")
        for role in ("driver", "head"):
            log(f"{role} log tail:\n{cluster.logs(role)}")
        print(f"cluster-check: FAILED after {time.monotonic() - started:.0f} s: {failure}")
        return 1
    finally:
        if not args.keep:
            cluster.close()
    return _passed(started, summary)


def _passed(started: float, summary: list[str]) -> int:
    print(f"cluster-check: passed in {time.monotonic() - started:.0f} s: " + "; ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
