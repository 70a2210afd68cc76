"""`logging.wandb`: a real offline W&B run (WANDB_MODE=offline) holds every metrics record and the
config, a resume goes on in the same W&B run, a fresh run starts another; the run directory's
`wandb_id` follows the run-file rules and travels with a run on object storage."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from distdqn.cli import main
from distdqn.config import override_config, resolve_config
from distdqn.errors import CheckpointError
from distdqn.run.run_dir import check_run_files
from distdqn.run.train import resume, train
from distdqn.storage.object_store import RemoteRun, download_run

wandb_pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")

SHORT = [
    "total_steps=400",
    "algorithm.learning_starts=100",
    "evaluation.every_steps=200",
    "evaluation.episodes=2",
    "logging.every_steps=100",
    "logging.progress=none",
    "logging.tensorboard=false",
    "checkpoint.every_steps=200",
    "logging.wandb=true",
    "logging.wandb_project=distdqn-tests",
    "logging.wandb_group=short",
    "logging.wandb_tags=[cartpole, test]",
]


def wandb_records(path: Path) -> list:
    """The records of a `.wandb` file, parsed with wandb's own protobuf classes. The file is a
    LevelDB-style log (wandb-core writes it; wandb 0.31 ships no Python reader): a 7-byte file
    header, then 32 KiB blocks of chunks, each with a 7-byte header (CRC-32, length, type:
    1 full, 2 first, 3 middle, 4 last)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, position = [], b"", 7
    while position + 7 <= len(data):
        left = 32768 - position % 32768
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if left < 7 or (kind == 0 and length == 0):  # the zero padding at a block's end
            position += left
            continue
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def offline_run(wandb_dir: Path, run_id: str) -> dict:
    """Every offline W&B run of id `run_id` (one per start, a resume included), read back: its
    name, project, group, tags and config, and its history rows in order."""
    files = sorted((wandb_dir / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert files, f"no offline run {run_id} under {wandb_dir}"
    found: dict = {"starts": len(files), "history": [], "config": {}}
    for file in files:
        for record in wandb_records(file):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run = record.run
                found.update(name=run.display_name, project=run.project, group=run.run_group, tags=list(run.tags))
                found["config"].update({item.key: json.loads(item.value_json) for item in run.config.update})
            elif kind == "config":
                found["config"].update({item.key: json.loads(item.value_json) for item in record.config.update})
            elif kind == "history":
                items = record.history.item
                row = {"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in items}
                found["history"].append({k: v for k, v in row.items() if not k.startswith("_")})
    return found


def expected_rows(run_dir: Path) -> list[dict]:
    """metrics.jsonl's records as the sink logs them (as TensorBoard names them)."""
    rows = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        row = {"env_steps": record["env_steps"]}
        for key, value in record.items():
            if key != "env_steps" and isinstance(value, (int, float)) and not isinstance(value, bool):
                row[f"eval/{key[5:]}" if key.startswith("eval_") else f"train/{key}"] = value
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def wandb_runs(tmp_path_factory):
    """One run of 400 steps resumed to 600, and a fresh run of the same config, logged offline."""
    root = tmp_path_factory.mktemp("wandb")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_DIR", str(root))
        patch.setenv("WANDB_SILENT", "true")
        config = resolve_config("CartPole-v1", overrides=SHORT)
        run_dir = root / "cartpole-short"
        train(config, run_dir)
        first_id = (run_dir / "wandb_id").read_text()
        first_rows = expected_rows(run_dir)
        resume(run_dir, override_config(config, ["total_steps=600"], "test"))
        other = root / "cartpole-other"
        train(config, other)
    return root, run_dir, first_id, first_rows, other


def test_offline_run_holds_the_metrics_and_config(wandb_runs):
    root, run_dir, first_id, first_rows, _ = wandb_runs
    logged = offline_run(root, first_id)
    assert logged["name"] == "cartpole-short"
    assert (logged["project"], logged["group"], logged["tags"]) == ("distdqn-tests", "short", ["cartpole", "test"])
    assert logged["config"]["env"]["id"] == "CartPole-v1"
    assert logged["config"]["total_steps"] == 600  # the resumed config replaced the first
    assert logged["config"]["algorithm"]["lr"] == pytest.approx(2.3e-3)
    # the first start logged exactly metrics.jsonl's records, evaluations under eval/
    assert logged["history"][: len(first_rows)] == first_rows
    assert any("eval/return_mean" in row for row in first_rows)
    assert any("train/loss" in row for row in first_rows)


def test_resume_goes_on_in_the_same_wandb_run(wandb_runs):
    root, run_dir, first_id, first_rows, _ = wandb_runs
    assert (run_dir / "wandb_id").read_text() == first_id
    logged = offline_run(root, first_id)
    assert logged["starts"] == 2
    resumed = logged["history"][len(first_rows) :]
    assert resumed and resumed[-1]["env_steps"] == 600
    assert [row["env_steps"] for row in resumed] == sorted(row["env_steps"] for row in resumed)
    # metrics.jsonl holds the run once; W&B got each of its records
    assert expected_rows(run_dir)[-len(resumed) :] == resumed


def test_a_fresh_run_starts_another_wandb_run(wandb_runs):
    root, _, first_id, _, other = wandb_runs
    other_id = (other / "wandb_id").read_text()
    assert other_id != first_id
    assert offline_run(root, other_id)["name"] == "cartpole-other"


def test_missing_wandb_is_one_line_before_training(tmp_path, monkeypatch, capsys):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else find_spec(name, *a))
    run_dir = tmp_path / "run"
    code = main(["train", "--run-dir", str(run_dir), *(f"--set={o}" for o in SHORT)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        "distdqn: error: logging.wandb = true needs the wandb package: pip install 'distdqn[wandb]'"
    ]
    assert not run_dir.exists()


def test_wandb_id_follows_the_run_file_rules(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (tmp_path / "elsewhere").write_text("x")
    (run_dir / "wandb_id").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CheckpointError, match="wandb_id"):
        check_run_files(run_dir)


def test_wandb_id_travels_with_a_run_on_object_storage(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "config.toml").write_text("total_steps = 1\n")
    (staging / "wandb_id").write_text("abc12345")
    RemoteRun("memory://bucket/run-with-wandb", staging).sync()
    downloaded = tmp_path / "downloaded"
    downloaded.mkdir()
    download_run("memory://bucket/run-with-wandb", downloaded)
    assert (downloaded / "wandb_id").read_text() == "abc12345"
