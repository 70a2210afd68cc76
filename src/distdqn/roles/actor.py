"""The actor: steps a vector env epsilon-greedily and hands replay lanes of steps.

It folds n-step returns itself and computes initial priorities from the Q-values it already
computed to act (Ape-X), so a transition is never evaluated twice and replay needs no network.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from distdqn.config import Config
from distdqn.envs import frame_box, make_vector_env, num_actions, policy_space
from distdqn.envs.env_state import capture_vector_env, restore_vector_env
from distdqn.frames import FrameStacker
from distdqn.networks import build_q_network, load_weights
from distdqn.replay.nstep import Completed, NStepAccumulator
from distdqn.schedules import apex_epsilon, linear_schedule
from distdqn.seeding import env_seeds, role_rng
from distdqn.state_tree import copy_arrays
from distdqn.types import TransitionBatch, Weights


def _concat(parts: list[Completed]) -> Completed:
    return Completed._make(np.concatenate(field) for field in zip(*parts, strict=True))


class Actor:
    def __init__(
        self, config: Config, actor_index: int, start_env_steps: int = 0, resumed_at: int | None = None
    ) -> None:
        """`resumed_at`: the env step a run continued from without this actor's saved streams (a
        resume without a replay snapshot, a PBT exploit); its random streams then branch off
        there, so that they neither repeat the run's first steps nor the donor's."""
        self.config = config
        self.actor_index = actor_index
        self.num_envs = config.env.num_envs
        self.lanes = actor_index * self.num_envs + np.arange(self.num_envs)
        self.env = make_vector_env(config.env, self.num_envs)
        frame_space = frame_box(self.env.single_observation_space)
        self._frame_shape = frame_space.shape
        self.q_network = build_q_network(
            config.network, policy_space(config.env, frame_space), self.env.single_action_space
        )
        self.q_network.requires_grad_(False)
        self.num_actions = num_actions(self.env.single_action_space)
        self.weights_version = -1
        self.env_steps = start_env_steps
        self._branch = () if resumed_at is None else (resumed_at,)
        self._rng = role_rng(config.seed, "actor", actor_index, *self._branch)
        self._stacker = (
            FrameStacker(self.num_envs, frame_space.shape, frame_space.dtype, config.env.frame_stack)
            if config.env.frame_stack > 1
            else None
        )
        self._finished_returns: list[float] = []
        self._finished_lengths: list[int] = []
        self._start_stream(env_seeds(config.seed, "actor", actor_index, self.num_envs, *self._branch))

    def _start_stream(self, seeds: list[int]) -> None:
        """Reset every env and count steps from position 0: a new stream for replay's lanes."""
        self._accumulator = NStepAccumulator(self.num_envs, self.config.algorithm.n_step, self.config.algorithm.gamma)
        self._frames: np.ndarray
        self._frames, infos = self.env.reset(seed=[*seeds])
        self._episode_start = np.zeros(self.num_envs, np.int64)
        self._lives = infos.get("lives")
        self._q_values = self._q(self._policy_input(self._frames, np.ones(self.num_envs, bool)))
        self._held: tuple[Completed, np.ndarray] | None = None
        self._episode_returns = np.zeros(self.num_envs)
        self._episode_lengths = np.zeros(self.num_envs, np.int64)

    def _policy_input(self, frames: np.ndarray, new_episode: np.ndarray) -> np.ndarray:
        return frames if self._stacker is None else self._stacker.push(frames, new_episode)

    def _lost_life(self, infos: dict, live: np.ndarray, ended: np.ndarray) -> np.ndarray:
        """Envs that lost a life this step without the game ending (Atari reports `lives`)."""
        lives = infos.get("lives")
        lost = np.zeros(self.num_envs, bool)
        if lives is not None and self._lives is not None:
            lost = (lives < self._lives) & live & ~ended
        self._lives = lives
        return lost

    def set_weights(self, weights: Weights) -> None:
        if weights.version == self.weights_version:
            return
        load_weights(self.q_network, weights.tensors)
        self.weights_version = weights.version

    def set_progress(self, env_steps: int) -> None:
        """Continue the epsilon schedule from `env_steps` (after a resume or a restart)."""
        self.env_steps = env_steps

    # -- snapshots ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything the next collect depends on, copied. The envs' own states are in it when
        `capture_vector_env` can take them exactly; otherwise `stream` is None and a restored
        actor starts new episodes (see `restore`)."""
        state: dict[str, Any] = {
            "rng": self._rng.bit_generator.state,
            "env_steps": self.env_steps,
            "weights_version": self.weights_version,
            "weights": {name: value.numpy().copy() for name, value in self.q_network.state_dict().items()},
            "finished_returns": list(self._finished_returns),
            "finished_lengths": list(self._finished_lengths),
            "stream": None,
        }
        envs = capture_vector_env(self.env)
        if envs is not None:
            held = None if self._held is None else {**self._held[0]._asdict(), "priorities": self._held[1]}
            state["stream"] = copy_arrays(
                {
                    "envs": envs,
                    "frames": self._frames,
                    "q_values": self._q_values,
                    "episode_start": self._episode_start,
                    "lives": self._lives,
                    "accumulator": self._accumulator.snapshot(),
                    "stacks": None if self._stacker is None else self._stacker.stacks,
                    "held": held,
                    "episode_returns": self._episode_returns,
                    "episode_lengths": self._episode_lengths,
                }
            )
        return state

    def restore(self, state: dict[str, Any], new_episodes: bool = False, own_streams: bool = False) -> None:
        """Continue from a snapshot: exactly, if it holds the envs' states; else with the same
        weights, RNG and schedules but new episodes, seeded by the env steps, whose steps replay
        takes as a new stream (as after an actor restart). `new_episodes`: begin new episodes
        even so (the config's env settings changed). `own_streams`: keep this actor's random
        streams rather than the snapshot's (a PBT recipient must not replay its donor's)."""
        if not own_streams:
            self._rng.bit_generator.state = state["rng"]
        self.env_steps = int(state["env_steps"])
        load_weights(self.q_network, state["weights"])
        self.weights_version = int(state["weights_version"])
        self._finished_returns = [float(x) for x in state["finished_returns"]]
        self._finished_lengths = [int(x) for x in state["finished_lengths"]]
        stream = None if new_episodes else state["stream"]
        if stream is None:
            self._start_stream(env_seeds(self.config.seed, "actor", self.actor_index, self.num_envs, self.env_steps))
            return
        restore_vector_env(self.env, stream["envs"])
        self._frames = np.array(stream["frames"])
        self._q_values = np.array(stream["q_values"])
        self._episode_start = np.array(stream["episode_start"])
        self._lives = None if stream["lives"] is None else np.array(stream["lives"])
        self._accumulator.restore(stream["accumulator"])
        if self._stacker is not None:
            self._stacker.restore(stream["stacks"])
        held = stream["held"]
        self._held = (
            None
            if held is None
            else (Completed(*(np.array(held[name]) for name in Completed._fields)), np.array(held["priorities"]))
        )
        self._episode_returns = np.array(stream["episode_returns"])
        self._episode_lengths = np.array(stream["episode_lengths"])

    def stats(self) -> dict[str, float]:
        return {"env_steps": self.env_steps, "weights_version": self.weights_version, "epsilon": self.current_epsilon()}

    def current_epsilon(self) -> float:
        algorithm = self.config.algorithm
        num_actors = self.config.placement.num_actors
        if num_actors > 1:
            return apex_epsilon(self.actor_index, num_actors, algorithm.apex_eps, algorithm.apex_alpha)
        decayed = max(0, self.env_steps - algorithm.eps_decay_start)
        return linear_schedule(algorithm.eps_start, algorithm.eps_end, algorithm.eps_decay_steps, decayed)

    def _q(self, observations: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.q_network(torch.as_tensor(observations)).numpy()

    def collect(self, num_steps: int) -> tuple:
        """Take `num_steps` vector steps; return them, with every n-step record they completed,
        split into one batch per replay shard, then the agent steps taken: `(*batches, steps)`.
        An env's autoreset step (the reset after an episode ended) stores the new episode's
        first frame but is no agent step: it does not count toward total_steps, epsilon or the
        replay ratio.
        Each shard receives only its own lanes, and the loop reads the small last result alone.

        Learning sees clipped rewards and life losses as terminals when the env config asks for
        them; episode returns are always the raw score.
        """
        env_config = self.config.env
        frames = np.empty((num_steps, self.num_envs, *self._frame_shape), self._frames.dtype)
        actions = np.empty((num_steps, self.num_envs), np.int64)
        episode_starts = np.empty((num_steps, self.num_envs), np.int64)
        first_position = self._accumulator.position
        records, priorities = ([], []) if self._held is None else ([self._held[0]], [self._held[1]])
        env_index = np.arange(self.num_envs)
        agent_steps = 0  # gymnasium's autoreset steps take no action: they are not counted
        for step in range(num_steps):
            position = self._accumulator.position
            explore = self._rng.random(self.num_envs) < self.current_epsilon()
            random_actions = self._rng.integers(self.num_actions, size=self.num_envs)
            chosen = np.where(explore, random_actions, self._q_values.argmax(axis=1))
            frames[step], actions[step], episode_starts[step] = self._frames, chosen, self._episode_start
            live = ~self._accumulator.resetting  # False where this step is gymnasium's autoreset
            next_frames, rewards, terminated, truncated, infos = self.env.step(chosen)
            ended = terminated | truncated
            learn_terminated = terminated
            new_stack = ~live  # an autoreset step returns the first frame of a new episode
            if env_config.terminal_on_life_loss:
                lost_life = self._lost_life(infos, live, ended)
                learn_terminated = terminated | lost_life
                if env_config.restart_stack_on_life_loss:
                    new_stack |= lost_life
            learn_rewards = np.sign(rewards) if env_config.clip_rewards else rewards
            self._episode_start[new_stack] = position + 1
            next_q_values = self._q(self._policy_input(next_frames, new_stack))
            done = self._accumulator.step(
                self._q_values[env_index, chosen], learn_rewards, learn_terminated, truncated, resets=ended
            )
            bootstrap_values = next_q_values[done.lanes].max(axis=1)
            done_priorities = np.abs(done.returns + done.discounts * bootstrap_values - done.q_taken)
            if step < num_steps - 1:
                records.append(done)
                priorities.append(done_priorities)
            else:
                self._held = (done, done_priorities)  # bootstraps from the next batch's first step
            self._track_episodes(rewards, live, ended & live)
            self._frames, self._q_values = next_frames, next_q_values
            agent_steps += int(live.sum())
            self.env_steps += int(live.sum())
        merged = _concat(records) if records else NStepAccumulator.nothing_completed()
        batch = TransitionBatch(
            lanes=self.lanes,
            first_position=np.full(self.num_envs, first_position, np.int64),
            observations=np.swapaxes(frames, 0, 1),
            actions=actions.T,
            episode_starts=episode_starts.T,
            completed_lanes=self.lanes[merged.lanes],
            completed_positions=merged.positions,
            returns=merged.returns,
            discounts=merged.discounts,
            offsets=merged.offsets,
            priorities=np.concatenate(priorities) if priorities else np.zeros(0),
        )
        num_shards = self.config.placement.num_shards
        parts = [batch] if num_shards == 1 else [batch.for_shard(j, num_shards) for j in range(num_shards)]
        return (*parts, agent_steps)

    def _track_episodes(self, rewards: np.ndarray, live: np.ndarray, ended: np.ndarray) -> None:
        self._episode_returns += np.where(live, rewards, 0.0)
        self._episode_lengths += live
        for env in np.flatnonzero(ended):
            self._finished_returns.append(float(self._episode_returns[env]))
            self._finished_lengths.append(int(self._episode_lengths[env]))
            self._episode_returns[env] = 0.0
            self._episode_lengths[env] = 0

    def episode_stats(self) -> dict[str, list[float] | list[int]]:
        """Returns and lengths of training episodes finished since the last call."""
        stats: dict[str, list[float] | list[int]] = {
            "returns": self._finished_returns,
            "lengths": self._finished_lengths,
        }
        self._finished_returns, self._finished_lengths = [], []
        return stats
