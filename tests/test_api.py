"""The Python API (distdqn.api): DQN's constructor, learn (and learning on), predict, evaluate,
save/load, callbacks, and env objects on each runtime. One trained CartPole model is shared."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from distdqn import DQN, Callback, CallbackList
from distdqn.cli import main
from distdqn.config import Config
from distdqn.envs import env_spaces, policy_space
from distdqn.errors import CheckpointError, ConfigError, UserError
from distdqn.networks import build_q_network, load_weights
from distdqn.run.greedy import read_policy
from distdqn.storage.checkpoint import save_checkpoint

FAST = {
    "learning_starts": 200,
    "evaluation": {"episodes": 2, "every_steps": 500},
    "logging": {"progress": "none", "tensorboard": False},
}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> DQN:
    run_dir = tmp_path_factory.mktemp("api") / "run"
    return DQN("CartPole-v1", seed=3, run_dir=run_dir, **FAST).learn(600)


def _observations(count: int) -> np.ndarray:
    env = gym.make("CartPole-v1")
    observations = [env.reset(seed=seed)[0] for seed in range(count)]
    return np.stack(observations) + np.random.default_rng(0).normal(0, 0.5, (count, 4)).astype(np.float32)


def test_import_distdqn_registers_its_envs_and_imports_no_torch():
    code = (
        "import sys, gymnasium as gym, distdqn; gym.register_envs(distdqn); "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "env = gym.make('distdqn/Maze-v0'); print(env.action_space.n, sorted(dir(distdqn)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(" ", 1)[0] == "4" and "'DQN'" in done.stdout and "'Callback'" in done.stdout


def test_predict_is_the_argmax_of_the_latest_q_network_for_one_observation_or_a_batch(model: DQN):
    config, weights = read_policy(Path(model.run_dir) / "checkpoints" / "latest")
    frame_space, action_space = env_spaces(config.env)
    network = build_q_network(config.network, policy_space(config.env, frame_space), action_space)
    load_weights(network, weights.tensors)
    observations = _observations(16)
    expected = network(torch.as_tensor(observations)).detach().numpy().argmax(axis=1)
    actions, state = model.predict(observations)
    assert state is None and actions.tolist() == expected.tolist()
    assert model.q_network(torch.as_tensor(observations)).argmax(dim=1).tolist() == expected.tolist()
    single, _ = model.predict(observations[5])
    assert isinstance(single, int) and single == expected[5]
    with pytest.raises(UserError, match=r"shape \(3,\)"):
        model.predict(np.zeros(3))
    with pytest.raises(UserError, match="not an array of numbers"):
        model.predict("left")


def test_evaluate_plays_the_episodes_distdqn_evaluate_plays(model: DQN, capsys):
    result = model.evaluate(episodes=3, seed=7)
    main(["evaluate", str(model.run_dir), "--latest", "--episodes", "3", "--seed", "7", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert result.returns.tolist() == printed["returns"] and result.mean_return == pytest.approx(printed["return_mean"])


def test_save_and_load_give_the_same_policy_and_a_loaded_checkpoint_learns_on_in_a_new_run(model: DQN, tmp_path):
    saved = model.save(tmp_path / "saved")
    assert sorted(path.name for path in saved.iterdir()) == [
        "config.toml",
        "manifest.json",
        "state.json",
        "tensors.safetensors",
    ]
    model.save(saved)  # replacing a checkpoint is fine; anything else is not
    (tmp_path / "notes").mkdir()
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        model.save(tmp_path / "notes")
    observations = _observations(32)
    loaded = DQN.load(saved, run_dir=tmp_path / "on")
    assert loaded.predict(observations)[0].tolist() == model.predict(observations)[0].tolist()
    assert loaded.num_timesteps == model.num_timesteps
    from_run = DQN.load(model.run_dir)
    assert from_run.predict(observations)[0].tolist() == model.predict(observations)[0].tolist()
    loaded.learn(200)
    assert loaded.num_timesteps >= model.num_timesteps + 200
    assert (tmp_path / "on" / "checkpoints" / "latest").is_dir()


def test_learn_again_continues_the_run_for_that_many_more_steps(tmp_path):
    model = DQN("CartPole-v1", seed=1, run_dir=tmp_path / "run", **FAST).learn(300)
    first = model.num_timesteps
    model.learn(300, progress_bar=False)
    assert model.config.logging.progress == "none"
    assert first >= 300 and model.num_timesteps >= first + 300 and model.config.total_steps == first + 300
    steps = [json.loads(line)["env_steps"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == model.num_timesteps
    with pytest.raises(UserError, match="positive integer"):
        model.learn(0)


def test_a_callback_hears_logs_evaluations_and_checkpoints_and_false_stops_training(tmp_path):
    heard: list[str] = []

    class StopAtFirstEvaluation(Callback):
        def on_log(self, record):
            heard.append(f"log {record['env_steps']}")

        def on_evaluation(self, record):
            heard.append(f"eval {record['env_steps']}")
            return False

        def on_checkpoint(self, name, env_steps):
            heard.append(f"checkpoint {name}")

    records: list[dict] = []
    callbacks = CallbackList([StopAtFirstEvaluation()])
    model = DQN("CartPole-v1", seed=2, run_dir=tmp_path / "run", **FAST)
    model.learn(5_000, callback=[callbacks, _Recorder(records)])
    assert 500 <= model.num_timesteps < 1_000
    assert heard[0] == "eval 500" or heard[0].startswith("log"), heard
    assert "checkpoint latest" in heard and "checkpoint best" in heard
    assert any("eval_return_mean" in record for record in records)
    model.learn(100, callback=lambda record: None)  # a function hears every record; None goes on
    assert model.num_timesteps >= 600


class _Recorder(Callback):
    def __init__(self, records: list[dict]) -> None:
        self.records = records

    def on_evaluation(self, record):
        self.records.append(record)


def test_keyword_arguments_name_config_fields_by_section_unique_name_or_path():
    model = DQN(("FrozenLake-v1", {"is_slippery": False}), seed=4, lr=5e-4, replay={"capacity": 5000})
    config = model.config
    assert config.algorithm.lr == 5e-4 and config.replay.capacity == 5000 and config.seed == 4
    assert config.env.id == "FrozenLake-v1" and config.env.kwargs == {"is_slippery": False}
    assert DQN("CartPole-v1", evaluation__every_steps=700, runtime="threads").config.evaluation.every_steps == 700
    with pytest.raises(ConfigError, match=r"every_steps= is more than one field .*name it as"):
        DQN("CartPole-v1", every_steps=10)
    with pytest.raises(ConfigError, match="algorithm.lr"):
        DQN("CartPole-v1", learning_rate=1e-3)
    base = Config().model_copy(update={"seed": 9})
    assert DQN("Acrobot-v1", config=base).config.env.id == "Acrobot-v1"
    with pytest.raises(UserError, match=r"\(id, kwargs\)"):
        DQN(("CartPole-v1",))  # type: ignore[arg-type]


def make_cartpole() -> gym.Env:
    return gym.make("CartPole-v1")


def test_an_env_factory_trains_on_threads_and_an_instance_inline_and_loading_asks_for_it_again(tmp_path):
    factory_model = DQN(make_cartpole, runtime="threads", run_dir=tmp_path / "factory", **FAST).learn(300)
    env_id = factory_model.config.env.id
    assert env_id.startswith("distdqn-py/make_cartpole-v") and factory_model.num_timesteps >= 300
    assert DQN(make_cartpole).config.env.id == env_id  # the same object keeps its id
    doubled = gym.wrappers.TransformReward(gym.make("CartPole-v1", max_episode_steps=20), lambda reward: 2 * reward)
    instance_model = DQN(doubled, run_dir=tmp_path / "instance", **FAST).learn(300)
    evaluation = instance_model.evaluate(episodes=3)
    assert (evaluation.returns == 2 * evaluation.lengths).all() and evaluation.lengths.max() <= 20  # the wrappers kept
    del gym.registry[env_id]  # as in a new process
    with pytest.raises(UserError, match="pass it again"):
        DQN.load(tmp_path / "factory")
    assert DQN.load(tmp_path / "factory", env=make_cartpole).predict(_observations(1)[0])[0] in (0, 1)


def test_load_refuses_an_env_id_from_the_files_that_would_import_a_module(tmp_path, model: DQN):
    config, weights = read_policy(Path(model.run_dir) / "checkpoints" / "latest")
    hostile = config.model_copy(update={"env": config.env.model_copy(update={"id": "evil_module:Env"})})
    tensors = {f"online.{name}": torch.as_tensor(value) for name, value in weights.tensors.items()}
    save_checkpoint(tmp_path / "checkpoints", "latest", hostile, tensors, {"counters": {}})
    with pytest.raises(UserError, match=r"would import module 'evil_module'; pass allow_import="):
        DQN.load(tmp_path / "checkpoints" / "latest")
    allowed = DQN.load(tmp_path / "checkpoints" / "latest", allow_import=["evil_module"])
    assert allowed.config.env.id == "evil_module:Env"


def test_an_exported_model_loads_acts_and_evaluates_but_neither_learns_nor_saves(model: DQN, tmp_path, capsys):
    main(
        ["export", str(model.run_dir), str(tmp_path / "hub"), "--checkpoint", "latest", "--episodes", "2", "--no-video"]
    )
    capsys.readouterr()
    exported = DQN.load(tmp_path / "hub")
    observations = _observations(16)
    assert exported.predict(observations)[0].tolist() == model.predict(observations)[0].tolist()
    assert exported.evaluate(episodes=2, seed=5).returns.tolist() == model.evaluate(episodes=2, seed=5).returns.tolist()
    with pytest.raises(UserError, match="exported model"):
        exported.learn(100)
    with pytest.raises(UserError, match="copy its folder"):
        exported.save(tmp_path / "copy")
