"""Sharing a trained policy: `play --video` (MP4 beside the GIF), `export` (a Hub-ready folder that
reads back strictly) and `push` (to the Hub, whose calls are replaced here: it is not reachable).
One short CartPole run, trained once for the module, is what every test shares."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from distdqn.cli import main
from distdqn.config import config_to_toml, load_config_toml, resolve_config
from distdqn.errors import CheckpointError, EnvError, UserError
from distdqn.storage.checkpoint import load_checkpoint, online_weights
from distdqn.tools.export import is_exported, read_exported
from distdqn.tools.video import Mp4Writer, even_sized

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
pytest.importorskip("pygame")  # CartPole's rgb_array frames

SHORT = [
    "total_steps=400",
    "algorithm.learning_starts=100",
    "evaluation.every_steps=200",
    "evaluation.episodes=2",
    "logging.every_steps=200",
    "logging.progress=none",
    "logging.tensorboard=false",
    "checkpoint.every_steps=200",
]
EXPORTED_FILES = {"model.safetensors", "config.toml", "README.md", "results.json", "replay.mp4"}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from distdqn.run.train import train

    directory = tmp_path_factory.mktemp("sharing") / "cartpole"
    train(resolve_config("CartPole-v1", overrides=SHORT), directory)
    return directory


@pytest.fixture(scope="module")
def exported(run_dir: Path) -> Path:
    folder = run_dir.parent / "exported"
    assert main(["export", str(run_dir), str(folder)]) == 0
    return folder


def video_facts(path: Path) -> tuple[dict, int]:
    """The first stream's metadata as ffmpeg reads it, and the number of frames it decodes."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    return meta, sum(1 for _ in reader)


# play --video


def test_play_writes_mp4_and_gif_from_the_same_frames(run_dir: Path, tmp_path: Path, capsys):
    video, gif = tmp_path / "play.mp4", tmp_path / "play.gif"
    code, out, _ = run(capsys, "play", run_dir, "--episodes", "2", "--video", video, "--gif", gif)
    assert code == 0
    lengths = [int(n) for n in re.findall(r"^episode \d: return \S+, length (\d+)", out, re.MULTILINE)]
    frames = sum(lengths) + len(lengths)  # one after each reset and one after each step
    assert f"wrote {gif}: {frames} frames of 300x200" in out
    assert f"wrote {video}: {frames} frames of 600x400 at 50 fps (H.264)" in out
    meta, decoded = video_facts(video)
    assert (meta["codec"], meta["size"], meta["fps"]) == ("h264", (600, 400), 50.0)
    assert meta["pix_fmt"].startswith("yuv420p")
    assert decoded == frames
    assert sorted(p.name for p in tmp_path.iterdir()) == ["play.gif", "play.mp4"]  # no temporary left


def test_odd_sized_frames_are_grown_to_even_by_their_edge(tmp_path: Path):
    frame = np.arange(5 * 3 * 3, dtype=np.uint8).reshape(5, 3, 3)
    grown = even_sized(frame)
    assert grown.shape == (6, 4, 3)
    assert (grown[:5, :3] == frame).all() and (grown[5, :3] == frame[4]).all() and (grown[:5, 3] == frame[:, 2]).all()
    assert even_sized(grown) is grown
    path = tmp_path / "odd.mp4"
    with Mp4Writer(path, fps=10) as video:
        for value in range(0, 250, 50):
            video.add(lambda value=value: np.full((21, 33, 3), value, np.uint8))
    meta, decoded = video_facts(path)
    assert (meta["codec"], meta["size"], decoded) == ("h264", (34, 22), 5)


def test_a_failed_recording_leaves_no_file(tmp_path: Path):
    path = tmp_path / "broken.mp4"
    with pytest.raises(EnvError, match="two sizes"), Mp4Writer(path, fps=10) as video:
        video.add(lambda: np.zeros((20, 20, 3), np.uint8))
        video.add(lambda: np.zeros((30, 20, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_missing_encoder_is_one_line(run_dir: Path, tmp_path: Path, monkeypatch, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "imageio_ffmpeg" else find_spec(name, *a)
    )
    code, out, err = run(capsys, "play", run_dir, "--video", tmp_path / "x.mp4")
    assert (code, out) == (2, "")
    assert err == "distdqn: error: --video needs the imageio-ffmpeg package: pip install 'distdqn[video]'\n"
    # export goes on without its video, and says why
    code, out, err = run(capsys, "export", run_dir, tmp_path / "no-video", "--episodes", "2")
    assert code == 0
    assert err == (
        "distdqn: no replay.mp4: the replay.mp4 of an export needs the imageio-ffmpeg package: "
        "pip install 'distdqn[video]'\n"
    )
    assert "replay.mp4" not in {p.name for p in (tmp_path / "no-video").iterdir()}


# export


def test_export_writes_the_checkpoints_policy(run_dir: Path, exported: Path, capsys):
    assert {p.name for p in exported.iterdir()} == EXPORTED_FILES
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "best")
    weights = load_file(exported / "model.safetensors")
    expected = online_weights(checkpoint).tensors
    assert weights.keys() == expected.keys() and all((weights[k] == expected[k]).all() for k in expected)
    assert load_config_toml(exported / "config.toml") == checkpoint.config
    # the card's numbers are `distdqn evaluate`'s, for the run and for the exported folder
    results = json.loads((exported / "results.json").read_text())
    for source in (run_dir, exported):
        code, out, _ = run(capsys, "evaluate", source, "--json")
        assert code == 0 and json.loads(out)["returns"] == results["returns"]
    assert results["episodes"] == 10 and results["trained_env_steps"] == checkpoint.state["counters"]["env_steps"]
    assert results["mean_reward"] == f"{np.mean(results['returns']):.2f} +/- {np.std(results['returns']):.2f}"
    meta, decoded = video_facts(exported / "replay.mp4")
    assert meta["codec"] == "h264" and decoded == results["returns"][0] + 1  # the evaluation's first episode


def test_model_card_is_read_by_huggingface_hub(exported: Path):
    hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub.repocard_data import model_index_to_eval_results

    card = hub.ModelCard.load(exported / "README.md")
    assert hub.metadata_load(exported / "README.md") == card.data.to_dict()
    assert card.data.library_name == "distdqn"
    assert {"reinforcement-learning", "deep-q-learning", "CartPole-v1"} <= set(card.data.tags)
    name, results = model_index_to_eval_results(card.data.to_dict()["model-index"])
    [result] = results
    mean_reward = json.loads((exported / "results.json").read_text())["mean_reward"]
    assert (name, result.task_type, result.dataset_name, result.dataset_type) == (
        "DQN",
        "reinforcement-learning",
        "CartPole-v1",
        "CartPole-v1",
    )
    assert (result.metric_type, result.metric_value) == ("mean_reward", mean_reward)
    assert "distdqn evaluate MODEL_DIR --episodes 10 --seed 12345" in card.text
    assert "distdqn train --config MODEL_DIR/config.toml" in card.text
    assert 'src="replay.mp4"' in card.text


def test_exported_config_trains_again(exported: Path, tmp_path: Path, capsys):
    code, out, _ = run(
        capsys, "train", "--config", exported / "config.toml", "--total-steps", "200", "--run-dir", tmp_path / "again"
    )
    assert code == 0 and out.startswith(f"run {tmp_path / 'again'}: ")
    exported_config = load_config_toml(exported / "config.toml")
    assert load_config_toml(tmp_path / "again" / "config.toml") == exported_config.model_copy(
        update={"total_steps": 200}
    )


def test_read_exported_round_trips(run_dir: Path, exported: Path):
    assert is_exported(exported) and not is_exported(run_dir)
    config, weights = read_exported(exported)
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "best")
    assert config == checkpoint.config and weights.version == 0
    expected = online_weights(checkpoint).tensors
    assert (
        all((weights.tensors[k] == expected[k]).all() for k in expected) and weights.tensors.keys() == expected.keys()
    )


def _renamed(tensors: dict) -> dict:
    return {("x" + k if i == 0 else k): v for i, (k, v) in enumerate(tensors.items())}


def _reshaped(tensors: dict) -> dict:
    first = next(iter(tensors))
    return {**tensors, first: np.zeros((1, *tensors[first].shape), np.float32)}


def _non_finite(tensors: dict) -> dict:
    first = next(iter(tensors))
    return {**tensors, first: np.full_like(tensors[first], np.nan)}


def _float64(tensors: dict) -> dict:
    return {k: v.astype(np.float64) for k, v in tensors.items()}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_renamed, "holds .*its config's network has"),
        (_reshaped, "larger than its config's network|holds"),
        (_float64, "larger than its config's network|holds"),
        (_non_finite, "hold NaN or inf"),
    ],
)
def test_read_exported_refuses_tensors_that_do_not_fit(exported: Path, tmp_path: Path, change, message):
    folder = tmp_path / "changed"
    shutil.copytree(exported, folder)
    save_file(change(load_file(exported / "model.safetensors")), folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=message):
        read_exported(folder)


def test_read_exported_refuses_what_is_no_safetensors_or_too_large(exported: Path, tmp_path: Path):
    folder = tmp_path / "changed"
    shutil.copytree(exported, folder)
    (folder / "model.safetensors").write_bytes(b"\x80\x04pickle, not safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt"):
        read_exported(folder)
    with open(folder / "model.safetensors", "wb") as file:
        file.truncate(2 << 20)
    with pytest.raises(CheckpointError, match="larger than its config's network"):
        read_exported(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="holds no model.safetensors"):
        read_exported(folder)


def test_read_exported_imports_no_module_unless_allowed(exported: Path, tmp_path: Path):
    folder = tmp_path / "changed"
    shutil.copytree(exported, folder)
    config = load_config_toml(exported / "config.toml")
    config = config.model_copy(update={"env": config.env.model_copy(update={"id": "os:CartPole-v1"})})
    (folder / "config.toml").write_text(config_to_toml(config))
    with pytest.raises(UserError, match="would import module 'os'; pass allow_import= os if you trust it"):
        read_exported(folder)
    assert read_exported(folder, ["os"])[0].env.id == "os:CartPole-v1"  # os imported, CartPole-v1 made


def test_export_refuses_a_non_empty_folder_unless_forced(run_dir: Path, tmp_path: Path, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    code, out, err = run(capsys, "export", run_dir, folder, "--episodes", "1", "--no-video")
    assert (code, out) == (2, "")
    assert err == f"distdqn: error: {folder} is not empty; use --force to replace it\n"
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    code, out, _ = run(capsys, "export", run_dir, folder, "--episodes", "1", "--no-video", "--force")
    assert code == 0
    assert {p.name for p in folder.iterdir()} == EXPORTED_FILES - {"replay.mp4"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left
    assert "replay.mp4" not in (folder / "README.md").read_text()


# push


@pytest.fixture
def fake_hub(monkeypatch):
    """HfApi's two calls replaced: what they were given, and the folder as huggingface_hub would
    upload it (its default ignore patterns applied, each file a CommitOperationAdd, which checks
    its path; the card parsed by its ModelCard)."""
    hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub.utils import filter_repo_objects
    from huggingface_hub.utils._paths import DEFAULT_IGNORE_PATTERNS

    calls: dict = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = (repo_id, kwargs)

    def upload_folder(self, *, repo_id, folder_path, commit_message, **kwargs):
        folder = Path(folder_path)
        names = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        kept = sorted(filter_repo_objects(names, ignore_patterns=DEFAULT_IGNORE_PATTERNS))
        operations = [hub.CommitOperationAdd(path_in_repo=name, path_or_fileobj=folder / name) for name in kept]
        card = hub.ModelCard.load(folder / "README.md")
        calls["upload_folder"] = (repo_id, commit_message, [op.path_in_repo for op in operations], card.data, kwargs)
        return hub.CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id if '/' in repo_id else 'user/' + repo_id}/commit/0123abcd",
            commit_message=commit_message,
            commit_description="",
            oid="0123abcd",
        )

    monkeypatch.setattr(hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(hub.HfApi, "upload_folder", upload_folder)
    return calls


def test_push_exports_a_run_and_uploads_it(run_dir: Path, fake_hub: dict, capsys):
    code, out, _ = run(capsys, "push", run_dir, "--repo", "someone/cartpole-dqn", "--private", "--episodes", "2")
    assert code == 0
    assert fake_hub["create_repo"] == (
        "someone/cartpole-dqn",
        {"private": True, "exist_ok": True, "repo_type": "model"},
    )
    repo_id, message, files, card, kwargs = fake_hub["upload_folder"]
    assert (repo_id, message, kwargs) == (
        "someone/cartpole-dqn",
        "Upload DQN agent for CartPole-v1",
        {"repo_type": "model"},
    )
    assert sorted(files) == sorted(EXPORTED_FILES)
    assert card.library_name == "distdqn" and card.eval_results[0].dataset_name == "CartPole-v1"
    assert "pushed to someone/cartpole-dqn: https://huggingface.co/someone/cartpole-dqn/commit/0123abcd" in out


def test_push_uploads_an_exported_folder_as_it_is(exported: Path, fake_hub: dict, capsys):
    code, _, _ = run(capsys, "push", exported, "--repo", "cartpole-dqn")
    assert code == 0
    assert fake_hub["create_repo"][1]["private"] is False
    assert sorted(fake_hub["upload_folder"][2]) == sorted(EXPORTED_FILES)


@pytest.mark.parametrize("repo", ["bad repo", "a/b/c", "-x/y"])
def test_push_refuses_a_bad_repo_id_before_exporting(run_dir: Path, fake_hub: dict, repo: str, capsys):
    code, out, err = run(capsys, "push", run_dir, f"--repo={repo}")
    assert (code, out, fake_hub) == (2, "", {})
    assert err.startswith(f"distdqn: error: --repo {repo!r} is no Hub repo id: Repo id must") and err.count("\n") == 1


def test_push_without_huggingface_hub_is_one_line(run_dir: Path, monkeypatch, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "huggingface_hub" else find_spec(name, *a)
    )
    code, out, err = run(capsys, "push", run_dir, "--repo", "someone/x")
    assert (code, out) == (2, "")
    assert err == "distdqn: error: push needs the huggingface_hub package: pip install 'distdqn[hub]'\n"


def test_an_unreachable_hub_is_one_line(exported: Path, monkeypatch, capsys):
    """The real HfApi, sent to a port where nothing listens."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_token")
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")
    code, out, err = run(capsys, "push", exported, "--repo", "someone/x")
    assert (code, out) == (2, "")
    assert err.startswith("distdqn: error: cannot push to someone/x: ") and err.count("\n") == 1


def test_a_bug_under_push_keeps_its_traceback(exported: Path, monkeypatch):
    import huggingface_hub

    def broken(self, repo_id, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", broken)
    with pytest.raises(TypeError, match="a bug"):
        main(["push", str(exported), "--repo", "someone/x"])
