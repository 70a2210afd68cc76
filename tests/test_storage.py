"""Run directories on object storage, against a real S3 API server (moto's, on 127.0.0.1) that
the test starts: a run killed with `kill -9` and resumed from the store, evaluation of a
checkpoint on the store, and pointers that name no version of the run. A store that fails
(`FlakyStore`): retried while the failures are transient and few, otherwise the run stops and
keeps its staging directory, which `distdqn upload` uploads later."""

import errno
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


def _learned(store, run: str, pointer: dict) -> bool:
    state = json.loads(store.cat_file(f"{run}/checkpoints/versions/{pointer['version']}/state.json"))
    return state["learner"]["updates"] > 0


def test_run_on_s3_killed_and_resumed_from_there(
    s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    """The run writes only to the store: after `kill -9` the store's `latest` pointer names a
    complete version (with the replay), and `--resume s3://...` continues it from there. Only the
    killed run needs a process of its own; the commands after it run in this one, in the same
    working and temporary directories."""
    import tempfile

    from distdqn.cli import main

    run = f"{BUCKET}/run"
    store = _s3()
    work, temporary = tmp_path / "work", tmp_path / "tmp"
    work.mkdir()
    temporary.mkdir()
    env = {**s3_env, "TMPDIR": str(temporary)}  # where the staging directories go
    # many steps, so that the kill surely comes before the end; the resume sets its own total
    process = subprocess.Popen(
        [sys.executable, "-m", "distdqn", "train", "--run-dir", f"s3://{run}", "--total-steps", "100000"]
        + ["--set", "checkpoint.every_steps=500", "--set", "algorithm.learning_starts=200"]
        + ["--set", "logging.every_steps=250", *SMALL],
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
    assert 500 <= killed_at < 100000
    assert store.exists(f"{run}/config.toml") and store.exists(f"{run}/placement.json")

    target = killed_at + 500
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))  # as TMPDIR did for the killed run
    capsys.readouterr()
    assert main(["train", "--resume", f"s3://{run}", "--total-steps", str(target)]) == 0
    resumed = capsys.readouterr().out
    summary = re.search(rf"run s3://{run}: (\d+) env steps", resumed)
    assert summary is not None and int(summary.group(1)) >= target, resumed

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
    assert main(["train", "--run-dir", f"s3://{run}", "--total-steps", "100", *SMALL]) == 2
    refused = capsys.readouterr().err
    assert refused.startswith("distdqn: error: run directory s3://"), refused

    assert main(["evaluate", f"s3://{run}/checkpoints/best", "--episodes", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 2
    # a version's own prefix is a checkpoint too
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

    from distdqn.config import resolve_config
    from distdqn.storage.checkpoint import load_checkpoint, save_checkpoint
    from distdqn.storage.object_store import RemoteRun, fetch_checkpoint

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


# -- a store that fails ----------------------------------------------------------------------
TRANSIENT = [
    ConnectionError("Connection reset by peer"),
    OSError(errno.EBUSY, "SlowDown: Please reduce your request rate."),  # s3fs's 503
    TimeoutError("Read timed out"),
]
STAGING = re.compile(r"are only in (\S+), kept")


class FlakyStore:
    """Wraps the fsspec filesystem of every store that distdqn.storage.object_store opens, so that its writes
    (`put_file`, `pipe_file`, `rm`) fail on cue: `fail(n)` makes the next `n` writes fail,
    `fail(None)` every write until `recover()`, each with the next error of `errors`;
    `fail_after_pointer` arms `fail` once the first `latest` pointer reached the store."""

    WRITES = ("put_file", "pipe_file", "rm")

    def __init__(self) -> None:
        self.left: int | None = 0
        self.errors: list[Exception] = TRANSIENT
        self.failed = 0
        self.writes = 0
        self.after_pointer: tuple[int | None] | None = None

    def fail(self, times: int | None, errors: list[Exception] | None = None) -> None:
        self.left = times
        self.errors = errors or TRANSIENT

    def fail_after_pointer(self, times: int | None) -> None:
        self.after_pointer = (times,)

    def recover(self) -> None:
        self.left = 0

    def wrap(self, fs, path: str):
        return _FlakyFilesystem(fs, self), path

    def write(self, call, path, args, kwargs):
        self.writes += 1
        if self.left is None or self.left > 0:
            error = self.errors[self.failed % len(self.errors)]
            self.failed += 1
            if self.left is not None:
                self.left -= 1
            raise error
        result = call(path, *args, **kwargs)
        if self.after_pointer is not None and str(path).endswith("/checkpoints/latest"):
            (times,), self.after_pointer = self.after_pointer, None
            self.fail(times)
        return result


class _FlakyFilesystem:
    def __init__(self, fs, store: FlakyStore) -> None:
        self._fs, self._store = fs, store

    def __getattr__(self, name: str):
        attribute = getattr(self._fs, name)
        if name not in FlakyStore.WRITES:
            return attribute
        return lambda path, *args, **kwargs: self._store.write(attribute, path, args, kwargs)


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FlakyStore:
    """Every store distdqn.storage.object_store opens fails on cue; retries wait a few milliseconds; staging
    directories go under tmp_path/tmp."""
    import tempfile

    from distdqn.storage import object_store as storage
    from distdqn.storage.retry import Retry

    store = FlakyStore()
    real = storage._filesystem
    monkeypatch.setattr(storage, "_filesystem", lambda uri: store.wrap(*real(uri)))
    monkeypatch.setattr(storage, "STORE_RETRY", Retry(first_wait_s=0.001, max_wait_s=0.004, total_s=60))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return store


def _stagings(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "tmp").glob("distdqn-run-*"))


def _steps_on_store(store, run: str, name: str = "latest") -> int:
    pointer = _pointer(store, f"{run}/checkpoints/{name}")
    assert pointer is not None
    state = json.loads(store.cat_file(f"{run}/checkpoints/versions/{pointer['version']}/state.json"))
    return state["counters"]["env_steps"]


# three checkpoints (500, 1000, and the final one at 1500), learning from 1000 env steps
TRAIN_SMALL = ["--total-steps", "1500", "--set", "checkpoint.every_steps=500", *SMALL]


def test_store_that_fails_then_recovers_is_retried_and_the_run_ends_normally(s3_env, flaky, tmp_path: Path):
    """Seven failures in a row (8 tries allowed) of the upload after the first checkpoint: the
    upload is retried until it goes through, and the run ends as if nothing had happened."""
    from distdqn.cli import main

    run = f"{BUCKET}/recovers"
    flaky.fail_after_pointer(7)
    assert main(["train", "--run-dir", f"s3://{run}", *TRAIN_SMALL]) == 0
    assert flaky.failed == 7 and flaky.left == 0
    store = _s3()
    assert _steps_on_store(store, run) >= 1500
    assert _stagings(tmp_path) == []  # everything reached the store: the staging directory went


def test_store_that_never_recovers_stops_the_run_and_keeps_its_newest_checkpoints(
    s3_env, flaky, tmp_path: Path, capsys: pytest.CaptureFixture
):
    """The store fails for good after the first checkpoint reached it: the next upload gives up
    after its 8 tries, the run stops with one line naming the staging directory, which holds the
    newer `latest`. The run goes on from there (`--resume STAGING`), and once the store is back
    `distdqn upload STAGING URI` puts it where `--resume URI` finds it."""
    from distdqn.cli import main
    from distdqn.storage import object_store as storage
    from distdqn.storage.checkpoint import load_checkpoint

    run = f"{BUCKET}/never-recovers"
    uri = f"s3://{run}"
    flaky.fail_after_pointer(None)
    assert main(["train", "--run-dir", uri, *TRAIN_SMALL]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"distdqn: error: cannot write to {uri}: ") and "(gave up after 8 tries in " in line, line
    found = STAGING.search(line)
    assert found is not None, line
    staging = Path(found.group(1))
    assert _stagings(tmp_path) == [staging]
    assert f"`{storage.UPLOAD_COMMAND} {staging} {uri}`" in line
    assert f"`distdqn train --resume {staging}`" in line
    store = _s3()
    on_store = _steps_on_store(store, run)
    kept = load_checkpoint(staging / "checkpoints" / "latest").state["counters"]["env_steps"]
    assert on_store < kept and f"latest at env step {kept}" in line

    # it is an ordinary local run directory: the run goes on in it
    assert main(["train", "--resume", str(staging), "--total-steps", str(kept + 500)]) == 0
    went_on = load_checkpoint(staging / "checkpoints" / "latest").state["counters"]["env_steps"]
    assert went_on >= kept + 500

    assert main(["upload", str(staging), uri]) == 2  # the store still fails
    assert capsys.readouterr().err.startswith(f"distdqn: error: cannot write to {uri}: ")
    flaky.recover()
    assert main(["upload", str(staging), uri]) == 0
    assert capsys.readouterr().out.startswith(f"uploaded {staging} to {uri} (latest -> latest-")
    store.invalidate_cache()
    assert _steps_on_store(store, run) == went_on
    local_versions = {p.name[1:] for p in (staging / "checkpoints").glob(".*-*")}
    assert {p.rsplit("/", 1)[-1] for p in store.ls(f"{run}/checkpoints/versions")} == local_versions
    metrics = store.cat_file(f"{run}/metrics.jsonl").decode().splitlines()
    assert json.loads(metrics[-1])["env_steps"] >= went_on

    resumed = main(["train", "--resume", uri, "--total-steps", str(went_on + 500), "--set", "logging.progress=false"])
    assert resumed == 0
    store.invalidate_cache()
    assert _steps_on_store(store, run) >= went_on + 500


def _one_checkpoint(checkpoints: Path, env_steps: int, name: str = "latest") -> str:
    import torch

    from distdqn.config import resolve_config
    from distdqn.storage.checkpoint import save_checkpoint

    config = resolve_config("CartPole-v1", None, [])
    state = {"counters": {"env_steps": env_steps}}
    link = save_checkpoint(checkpoints, name, config, {"w": torch.zeros(2)}, state)
    return link.resolve().name.removeprefix(".")


@pytest.mark.parametrize(
    ("errors", "tries"),
    [(TRANSIENT, 8), ([PermissionError("Access Denied")], 1)],
    ids=["transient", "permanent"],
)
def test_final_upload_that_fails_keeps_the_staging_directory(flaky, tmp_path: Path, errors, tries):
    """The store fails at the last upload (after the run ended): the staging directory, with the
    only copy of `latest`, stays and the error names it. A permanent error is not retried."""
    from distdqn.storage.object_store import StorageError, remote_run

    uri = f"file://{tmp_path}/store/run"
    with pytest.raises(StorageError) as raised, remote_run(uri, resume=False) as store:
        _one_checkpoint(store.staging / "checkpoints", 5)
        flaky.fail(None, errors)
    message = str(raised.value)
    assert flaky.writes == tries
    last = errors[(tries - 1) % len(errors)]
    assert message.startswith(f"cannot write to {uri}: {type(last).__name__}: {last}")
    assert ("(gave up after 8 tries in " in message) == (tries == 8)
    assert _stagings(tmp_path) == [store.staging]
    assert f"(latest at env step 5) are only in {store.staging}, kept: " in message
    assert (store.staging / "checkpoints" / "latest" / "manifest.json").is_file()
    assert not (tmp_path / "store/run/checkpoints").exists()


def test_final_upload_after_the_run_stopped_names_both(flaky, tmp_path: Path):
    """A run stopped by its own error (diverged, disk full) whose last upload fails too: one
    line with both, the staging directory kept."""
    from distdqn.errors import TrainingDiverged
    from distdqn.storage.object_store import StorageError, remote_run

    with pytest.raises(StorageError) as raised, remote_run(f"file://{tmp_path}/store/run", resume=False) as store:
        _one_checkpoint(store.staging / "checkpoints", 5)
        flaky.fail(None)
        raise TrainingDiverged("training diverged at env step 7")
    assert str(raised.value).endswith("(the run had stopped: training diverged at env step 7)")
    assert f"are only in {store.staging}, kept" in str(raised.value)
    assert _stagings(tmp_path) == [store.staging]


def test_failed_upload_of_checkpoints_the_store_has_removes_the_staging_directory(flaky, tmp_path: Path):
    """Nothing is kept when the store already has every checkpoint (its metrics since the last
    checkpoint are what `--resume` would cut anyway)."""
    from distdqn.storage.object_store import StorageError, remote_run

    uri = f"file://{tmp_path}/store/run"
    with pytest.raises(StorageError) as raised, remote_run(uri, resume=False) as store:
        _one_checkpoint(store.staging / "checkpoints", 5)
        store.sync()
        (store.staging / "metrics.jsonl").write_text('{"env_steps": 6}\n')
        flaky.fail(None)
    assert "kept" not in str(raised.value) and _stagings(tmp_path) == []


def test_best_is_tried_once_and_goes_with_the_next_upload(flaky, tmp_path: Path):
    """`upload_best` runs on the training loop's thread: it does not wait out an outage (one
    try), and the next sync, retried, takes `best` along. A permanent error still stops."""
    from distdqn.storage.object_store import RemoteRun, StorageError

    staging = tmp_path / "staging"
    store = RemoteRun(f"file://{tmp_path}/store/run", staging)
    version = _one_checkpoint(staging / "checkpoints", 5, "best")
    flaky.fail(None)
    store.upload_best()
    assert flaky.writes == 1 and not (tmp_path / "store/run/checkpoints/best").exists()
    flaky.fail(3)
    store.sync()
    assert json.loads((tmp_path / "store/run/checkpoints/best").read_text()) == {"version": version}

    _one_checkpoint(staging / "checkpoints", 6, "best")
    flaky.fail(None, [PermissionError("Access Denied")])
    with pytest.raises(StorageError, match="PermissionError: Access Denied"):
        store.upload_best()


def test_upload_refuses_to_replace_a_run_that_went_further(tmp_path: Path):
    from distdqn.errors import CheckpointError
    from distdqn.storage.object_store import upload_run

    uri = f"file://{tmp_path}/store/run"
    ahead, behind = tmp_path / "ahead", tmp_path / "behind"
    for run_dir, steps in ((ahead, 10), (behind, 5)):
        run_dir.mkdir()
        (run_dir / "config.toml").write_text("")
        _one_checkpoint(run_dir / "checkpoints", steps)
    assert upload_run(ahead, uri)["latest"].startswith("latest-")
    with pytest.raises(CheckpointError, match=r"checkpoints/latest is at env step 10, further than .*behind \(5\)"):
        upload_run(behind, uri)


def _client_error(code: str, status: int):
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Put"
    )


class _HttpError(Exception):
    """As gcsfs' HttpError: the status in `code`."""

    def __init__(self, code: int) -> None:
        super().__init__(f"HTTP {code}")
        self.code = code


def _transient_cases() -> list[tuple[str, object, bool]]:
    import aiohttp
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError, ReadTimeoutError
    from fsspec.exceptions import FSTimeoutError
    from s3fs.errors import translate_boto_error

    return [
        ("connection reset", ConnectionError("reset"), True),
        ("timeout", TimeoutError(), True),
        ("fsspec timeout", FSTimeoutError(), True),
        ("botocore endpoint down", EndpointConnectionError(endpoint_url="http://s3"), True),
        ("botocore read timeout", ReadTimeoutError(endpoint_url="http://s3"), True),
        ("aiohttp disconnected", aiohttp.ServerDisconnectedError(), True),
        ("s3 SlowDown", translate_boto_error(_client_error("SlowDown", 503)), True),
        ("s3 500", translate_boto_error(_client_error("InternalError", 500)), True),
        ("s3 unknown code", translate_boto_error(_client_error("Weird", 500)), True),
        ("ClientError throttling", _client_error("Throttling", 400), True),
        ("ClientError 503", _client_error("ServiceUnavailable", 503), True),
        ("gcs 503", _HttpError(503), True),
        ("gcs 429", _HttpError(429), True),
        ("s3 access denied", translate_boto_error(_client_error("AccessDenied", 403)), False),
        ("s3 expired token", translate_boto_error(_client_error("ExpiredToken", 400)), False),
        ("s3 no such bucket", translate_boto_error(_client_error("NoSuchBucket", 404)), False),
        ("s3 bad request", translate_boto_error(_client_error("InvalidArgument", 400)), False),
        ("ClientError 403", _client_error("AccessDenied", 403), False),
        ("no credentials", NoCredentialsError(), False),
        ("gcs 401", _HttpError(401), False),
        ("permission", PermissionError("denied"), False),
        ("not found", FileNotFoundError("x"), False),
        ("local disk full", OSError(errno.ENOSPC, "No space left on device"), False),
        ("a bug", ValueError("x"), False),
    ]


@pytest.mark.parametrize(("what", "error", "transient"), _transient_cases(), ids=lambda case: str(case)[:24])
def test_which_store_errors_areretried(what, error, transient):
    from distdqn.storage.retry import is_transient

    assert is_transient(error) is transient, what


def test_retry_bound():
    """The default: 8 tries, waits of about 1, 2, 4, 8, 16, 30, 30 s, no try after 120 s; a call
    gives up at whichever bound comes first."""
    from distdqn.storage.retry import STORE_RETRY, GaveUp, Retry, retried

    waits = [STORE_RETRY.nominal_wait(failures) for failures in range(1, STORE_RETRY.attempts)]
    assert waits == [1, 2, 4, 8, 16, 30, 30] and sum(waits) <= STORE_RETRY.total_s == 120

    calls: list[float] = []

    def fails() -> None:
        calls.append(time.monotonic())
        raise ConnectionError("down")

    with pytest.raises(GaveUp) as raised:
        retried(fails, (), {}, Retry(attempts=4, first_wait_s=0.01, max_wait_s=0.02))
    assert raised.value.tries == len(calls) == 4
    gaps = [later - earlier for earlier, later in zip(calls, calls[1:], strict=False)]
    assert all(gap >= 0.005 for gap in gaps[:1]) and all(gap >= 0.01 for gap in gaps[1:])

    calls.clear()
    with pytest.raises(GaveUp) as raised:
        retried(fails, (), {}, Retry(attempts=1000, first_wait_s=0.01, max_wait_s=0.01, total_s=0.1))
    assert 5 <= len(calls) < 1000 and calls[-1] - calls[0] <= 0.1

    calls.clear()
    with pytest.raises(PermissionError):
        retried(lambda: calls.append(0) or (_ for _ in ()).throw(PermissionError("no")), (), {}, Retry())
    assert len(calls) == 1


def test_no_try_starts_after_the_total_even_when_a_sleep_overruns(monkeypatch: pytest.MonkeyPatch):
    """A loaded machine sleeps longer than asked (CI saw a try 0.1002 s into a 0.1 s budget)."""
    from distdqn.storage import retry
    from distdqn.storage.retry import GaveUp, Retry, retried

    sleep = time.sleep
    monkeypatch.setattr(retry.time, "sleep", lambda seconds: sleep(seconds + 0.06))
    calls: list[float] = []

    def fails() -> None:
        calls.append(time.monotonic())
        raise ConnectionError("down")

    with pytest.raises(GaveUp):
        retried(fails, (), {}, Retry(attempts=1000, first_wait_s=0.01, max_wait_s=0.01, total_s=0.1))
    assert len(calls) == 2 and calls[-1] - calls[0] <= 0.1


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
