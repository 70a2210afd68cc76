"""Run directories on object storage, against a real S3 API server (moto's, on 127.0.0.1) that
the test starts: a run killed with `kill -9` and resumed from the store, evaluation of a
checkpoint on the store, and pointers that name no version of the run."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

BUCKET = "distdqn-test"
SMALL = ["--set", "logging.tensorboard=false", "--set", "logging.progress=false"]


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    """A local S3 server, and the environment that points fsspec (and only fsspec) at it."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_") and key.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update(
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE="/nonexistent",
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
        NO_PROXY="127.0.0.1",
        PYTHONWARNINGS="ignore",
    )
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # for the s3fs client of this process too
    try:
        store = _s3()
        store.mkdir(BUCKET)
        yield env
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.stop()


def _s3():
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True)


def _pointer(store, uri_path: str) -> dict | None:
    try:
        return json.loads(store.cat_file(uri_path))
    except FileNotFoundError:
        return None


def distdqn(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distdqn", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def _learned(store, run: str, pointer: dict) -> bool:
    state = json.loads(store.cat_file(f"{run}/checkpoints/versions/{pointer['version']}/state.json"))
    return state["learner"]["updates"] > 0


def test_run_on_s3_killed_and_resumed_from_there(s3_env: dict[str, str], tmp_path: Path):
    """The run writes only to the store: after `kill -9` the store's `latest` pointer names a
    complete version (with the replay), and `--resume s3://...` continues it from there."""
    run = f"{BUCKET}/run"
    store = _s3()
    work, temporary = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    temporary.mkdir()
    env = {**s3_env, "TMPDIR": str(temporary)}  # where the staging directories go
    # many steps, so that the kill surely comes before the end; the resume sets its own total
    process = subprocess.Popen(
        [sys.executable, "-m", "distdqn", "train", "--run-dir", f"s3://{run}", "--total-steps", "100000"]
        + ["--set", "checkpoint.every_steps=1000", *SMALL],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        # a checkpoint after learning started, so that a learner starting fresh would show
        while (pointer := _pointer(store, f"{run}/checkpoints/latest")) is None or not _learned(store, run, pointer):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "no checkpoint reached the store"
            time.sleep(0.05)
            store.invalidate_cache()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    # the version the pointer names: complete, with the replay for an exact resume
    version = f"{run}/checkpoints/versions/{pointer['version']}"
    manifest = json.loads(store.cat_file(f"{version}/manifest.json"))
    assert "resume.json" in manifest["files"] and "tensors.safetensors" in manifest["files"]
    killed_state = json.loads(store.cat_file(f"{version}/state.json"))
    killed_at = killed_state["counters"]["env_steps"]
    assert 1000 <= killed_at < 100000
    assert store.exists(f"{run}/config.toml") and store.exists(f"{run}/placement.json")

    target = killed_at + 2000
    resumed = distdqn("train", "--resume", f"s3://{run}", "--total-steps", str(target), env=env, cwd=work)
    assert resumed.returncode == 0, resumed.stderr
    summary = re.search(rf"run s3://{run}: (\d+) env steps", resumed.stdout)
    assert summary is not None and int(summary.group(1)) >= target, resumed.stdout

    store.invalidate_cache()
    latest = _pointer(store, f"{run}/checkpoints/latest")
    assert latest is not None and latest != pointer
    state = json.loads(store.cat_file(f"{run}/checkpoints/versions/{latest['version']}/state.json"))
    assert state["counters"]["env_steps"] >= target
    # the learner came back from the store's checkpoint (its own update count goes on), not fresh
    assert state["learner"]["updates"] == state["counters"]["updates"] > killed_state["learner"]["updates"] > 0
    # old versions are gone from the store once the pointer moved (checkpoint.keep = 1)
    versions = [path.rsplit("/", 1)[-1] for path in store.ls(f"{run}/checkpoints/versions")]
    assert sorted(v for v in versions if v.startswith("latest-")) == [latest["version"]]
    # metrics.jsonl on the store reads as one run, through the kill
    lines = store.cat_file(f"{run}/metrics.jsonl").decode().splitlines()  # uploaded before the pointer
    steps = [json.loads(line)["env_steps"] for line in lines]
    assert steps == sorted(steps) and steps[-1] >= target
    assert any(s <= killed_at for s in steps) and any(s > killed_at for s in steps)
    # nothing was written next to the command: the local copy was a temporary staging directory,
    # which only the killed run left behind
    assert list(work.iterdir()) == []
    assert len([path for path in temporary.iterdir() if path.name.startswith("distdqn-run-")]) == 1

    # a fresh run into the same location is refused, as for a local --run-dir
    again = distdqn("train", "--run-dir", f"s3://{run}", "--total-steps", "100", *SMALL, env=env, cwd=work)
    assert again.returncode == 2 and again.stderr.startswith("distdqn: error: run directory s3://"), again.stderr

    evaluated = distdqn("evaluate", f"s3://{run}/checkpoints/best", "--episodes", "2", "--json", env=env, cwd=work)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["episodes"] == 2
    # a version's own prefix is a checkpoint too
    from distdqn.cli import main

    best = _pointer(store, f"{run}/checkpoints/best")
    assert best is not None
    assert main(["evaluate", f"s3://{run}/checkpoints/versions/{best['version']}", "--episodes", "1"]) == 0


@pytest.mark.parametrize(
    ("version", "says"),
    [("../../elsewhere", "outside"), ("latest-000000000000", "which is missing"), (7, "outside")],
)
def test_pointer_to_no_version_of_the_run_is_refused(s3_env, capsys: pytest.CaptureFixture, version, says):
    from distdqn.cli import main

    run = f"{BUCKET}/bad-{abs(hash(str(version)))}"
    _s3().pipe_file(f"{run}/checkpoints/latest", json.dumps({"version": version}).encode())
    for command in (["evaluate", f"s3://{run}/checkpoints/latest"], ["train", "--resume", f"s3://{run}"]):
        assert main(command) == 2
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith("distdqn: error: checkpoint s3://") and says in line, line


def test_pointer_is_written_after_its_version_and_old_versions_go_after_it(tmp_path: Path):
    """The order that makes a store without rename atomic, checked on a `file://` store: every
    file of the new version, then the pointer, then the deletion of the version it replaced."""
    import torch

    from distdqn.checkpoint import load_checkpoint, save_checkpoint
    from distdqn.config import resolve_config
    from distdqn.storage import RemoteRun, fetch_checkpoint

    staging = tmp_path / "staging"
    staging.mkdir()
    config = resolve_config("CartPole-v1", None, [])
    store = RemoteRun(f"file://{tmp_path}/store/run", staging)
    events: list[tuple[str, str]] = []
    fs = store._fs
    for method in ("put_file", "pipe_file", "rm"):
        original = getattr(fs, method)

        def record(path, *args, _method=method, _original=original, **kwargs):
            events.append((_method, str(args[0] if _method == "put_file" else path)))
            return _original(path, *args, **kwargs)

        setattr(fs, method, record)
    for value in (1.0, 2.0):
        events.clear()
        save_checkpoint(staging / "checkpoints", "latest", config, {"w": torch.full((2,), value)}, {"v": value})
        with (staging / "metrics.jsonl").open("a") as metrics:
            metrics.write(json.dumps({"env_steps": int(value)}) + "\n")
        store.sync()
    version = (staging / "checkpoints" / "latest").resolve().name.removeprefix(".")
    checkpoint_events = [(method, path) for method, path in events if "/checkpoints/" in path]
    uploads = [path for method, path in checkpoint_events if method == "put_file"]
    assert len(uploads) == 4 and all(f"versions/{version}/" in path for path in uploads)
    assert uploads[-1].endswith("manifest.json")
    assert ("pipe_file", f"{tmp_path}/store/run/checkpoints/latest") == checkpoint_events[4]
    # the run's files went before the pointer
    assert events.index(checkpoint_events[4]) > events.index(("pipe_file", f"{tmp_path}/store/run/metrics.jsonl"))
    assert [method for method, _ in checkpoint_events[5:]] == ["rm"]
    assert version not in checkpoint_events[5][1]

    assert (tmp_path / "store/run/metrics.jsonl").read_text().count("env_steps") == 2
    link = fetch_checkpoint(f"file://{tmp_path}/store/run/checkpoints/latest", tmp_path / "fetched")
    assert link is not None and torch.equal(load_checkpoint(link).tensors["w"], torch.full((2,), 2.0))


def test_plot_and_compare_read_a_run_on_s3(s3_env, tmp_path: Path, capsys: pytest.CaptureFixture):
    """`plot` and `compare` took their arguments as paths, so `s3://bucket/run` became `s3:/bucket/run`."""
    from distdqn.cli import main

    run = f"{BUCKET}/plotted"
    lines = [{"env_steps": steps, "wall_s": steps / 100, "eval_return_mean": steps / 10} for steps in (100, 200)]
    store = _s3()
    store.pipe_file(f"{run}/metrics.jsonl", "".join(json.dumps(line) + "\n" for line in lines).encode())
    store.pipe_file(f"{run}/config.toml", b"seed = 4\n")
    assert main(["compare", f"s3://{run}", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["run"] == f"s3://{run}" and row["best_eval_return"] == 20.0 and row["env_steps"] == 200
    out = tmp_path / "curve.png"
    assert main(["plot", f"s3://{run}", "--out", str(out), "--group-by", "seed"]) == 0
    assert out.is_file()
