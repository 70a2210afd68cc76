"""The one typed config tree, its presets, file loading and `--set` overrides.

Every field has a docstring; `distdqn train --help` and the README point here. Models are frozen
and forbid unknown keys, so a typo in a file or an override fails with the field's name, and with
the fields it was probably meant to be (`suggest_field`, which also knows Stable-Baselines3's and
CleanRL's names: `learning_rate` is `algorithm.lr`).

Written configs (a run's and a checkpoint's `config.toml`, `tune`'s `best.toml`, the k8s
`run.toml`) load back to the config that was written, field for field. TOML has no null, so
`config_to_toml` leaves the fields that are None out of their tables and names them in a
`[distdqn]` table instead, which also says that the file is resolved:

    [distdqn]
    resolved = true                                        # every field is here
    none = ["algorithm.lr_end", "env.max_episode_steps"]   # these are None

A resolved file is taken whole: no preset is merged under it (presets are retuned between
versions, and `--env` only names the env), and a field it lacks (one added to distdqn after the file
was written) takes its default. `none` also works in a hand-written file, to turn off a value the
preset sets. Files written before the table load as they always did.
"""

from __future__ import annotations

import copy
import difflib
import functools
import importlib.resources
import sys
import types
from pathlib import Path
from typing import Annotated, Any, Literal, TypeGuard, Union, get_args, get_origin

import tomli_w
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from distdqn.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


_NUMBERS = {int, float, int | None, float | None}
INT64_MAX = 2**63 - 1
"""The largest integer any field takes: NumPy, torch and TOML hold 64 bits, and a count past it
overflows where it is used (a batch_size of 10**23 ended in NumPy's OverflowError)."""
MAX_LAYER_WEIGHTS = 2**34
"""Weights of one layer of `network.hidden_sizes` past which no machine trains it: 64 GiB in
float32, which the learner holds four times over (weights, target, Adam's two moments)."""


class _Section(BaseModel):
    # numbers are finite: inf or nan is no learning rate, and a run of them trains to NaN
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _integers_fit_int64(cls, value: Any) -> Any:
        """Every integer field, and every item of a tuple of them, lies within int64."""
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, int) and not isinstance(item, bool) and abs(item) > INT64_MAX:
                raise ValueError(f"must lie within int64 (at most 2**63 - 1 = {INT64_MAX})")
        return value

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        """YAML's `true` would pass as the integer 1 (a replay of capacity 1)."""
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name)
                if isinstance(value, bool) and field is not None and field.annotation in _NUMBERS:
                    raise ValueError(f"{name} must be a number, got {value!r}")
        return data


def _none_in_a_list(value: Any, in_list: bool) -> bool:
    if value is None:
        return in_list
    if isinstance(value, dict):
        return any(_none_in_a_list(item, in_list) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_none_in_a_list(item, True) for item in value)
    return False


class EnvConfig(_Section):
    id: str = "CartPole-v1"
    """Gymnasium id, e.g. `CartPole-v1` or `distdqn/Maze-v0`. Its action space must be Discrete."""
    num_envs: int = Field(4, ge=1)
    """Environments stepped together by each actor (one batched policy call per step)."""
    max_episode_steps: int | None = Field(None, ge=1)
    """Truncate episodes after this many steps; None keeps the env's registered limit."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Extra keyword arguments for `gymnasium.make`. None may be a value of a table here, not an
    item of a list: TOML, which the run's config.toml is written in, has no null."""
    backend: Literal["gymnasium", "envpool"] = "gymnasium"
    """`envpool`: EnvPool's C++ Atari envs (same preprocessing, threads instead of a Python loop)."""
    preprocessing: Literal["none", "atari"] = "none"
    """`atari`: DeepMind preprocessing (no-op starts, frame skip with max-pooling, grayscale resize)."""
    frame_stack: int = Field(1, ge=1)
    """Frames stacked into one observation (4 for Atari); replay still stores each frame once."""
    clip_rewards: bool = False
    """Learn from sign(reward); evaluation and episode returns still report the raw score."""
    terminal_on_life_loss: bool = False
    """Treat a lost life as terminal for learning (the game goes on; evaluation ignores lives)."""
    restart_stack_on_life_loss: bool = True
    """With terminal_on_life_loss, begin a new frame stack after a lost life, as SB3 and CleanRL
    do (their life-loss wrapper ends the episode for the frame stacker); false stacks across lives."""
    noop_max: int = Field(30, ge=0)
    """Atari: up to this many no-op actions after each reset."""
    frame_skip: int = Field(4, ge=1)
    """Atari: emulator frames per agent step; the last two are max-pooled."""
    screen_size: int = Field(84, ge=8)
    """Atari: side of the square grayscale frame."""

    @field_validator("kwargs")
    @classmethod
    def _kwargs_can_be_written(cls, value: dict[str, Any]) -> dict[str, Any]:
        """A None in a table is written by its key under `[distdqn] none`; one in a list has no key."""
        if _none_in_a_list(value, in_list=False):
            raise ValueError(
                "None inside a list cannot be written to the run's config.toml (TOML has no null); leave it out"
            )
        return value

    @model_validator(mode="after")
    def _envpool_runs_atari(self) -> EnvConfig:
        if self.backend == "envpool" and (self.preprocessing != "atari" or self.noop_max < 1):
            raise ValueError("backend 'envpool' needs preprocessing = 'atari' and noop_max >= 1")
        return self


class NetworkConfig(_Section):
    torso: Literal["auto", "mlp", "nature_cnn", "minatar_cnn"] = "auto"
    """`auto`: the Nature DQN convolutions for (channels, height, width) observations, else an MLP;
    `minatar_cnn`: MinAtar's one 3x3 convolution for (10, 10, channels) observations."""
    hidden_sizes: tuple[Annotated[int, Field(ge=1)], ...] = (128, 128)
    """Widths of the fully connected layers (after the convolutions, if any); two adjacent widths
    multiply to at most 2**34 weights."""
    dueling: bool = False
    """Split the head into state value and action advantages (Wang et al. 2016)."""

    @field_validator("hidden_sizes")
    @classmethod
    def _layers_fit(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        """A layer of w units has at least w weights in and w out (one input, one action), and
        w * v to a next layer of v: past MAX_LAYER_WEIGHTS (2**34) none fits (a width of 2**62
        ended in torch's overflow traceback)."""
        for width in sizes:
            if width > MAX_LAYER_WEIGHTS:
                raise ValueError(f"a layer of {width} units is wider than 2**34: its weights fit in no machine")
        for width, after in zip(sizes, sizes[1:], strict=False):
            if width * after > MAX_LAYER_WEIGHTS:
                raise ValueError(
                    f"layers of {width} and {after} units need {width * after:.3g} weights between them; "
                    "past 2**34 (64 GiB in float32, which the learner holds four times) they fit in no machine"
                )
        return sizes


class AlgorithmConfig(_Section):
    gamma: float = Field(0.99, gt=0.0, le=1.0)
    """Discount factor."""
    n_step: int = Field(3, ge=1)
    """Length of the multi-step return folded by actors."""
    double_dqn: bool = True
    """Pick the bootstrap action with the online network and value it with the target network."""
    loss: Literal["huber", "mse"] = "huber"
    """TD loss; Huber is the DQN paper's clipped error."""
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    """Adam learning rate (at the start, when lr_end is set)."""
    lr_end: float | None = Field(None, gt=0.0)
    """Learning rate reached after lr_decay_steps env steps (linear decay, then held); None keeps
    lr constant. A decayed rate keeps a solved policy from drifting off (see the CartPole preset)."""
    lr_decay_steps: int = Field(50_000, ge=1)
    """Env steps over which the learning rate falls linearly from lr to lr_end (with lr_end set)."""
    adam_eps: float = Field(1e-8, gt=0.0)
    """Adam epsilon (1.5e-4 in Rainbow/Ape-X for Atari)."""
    batch_size: int = Field(128, ge=1)
    """Transitions per gradient update (at most replay.capacity)."""
    max_grad_norm: float = Field(10.0, ge=0.0)
    """Clip the global gradient norm to this; 0 disables clipping."""
    replay_ratio: float = Field(0.25, gt=0.0)
    """Gradient updates per env step once learning has started (0.25 = one update per 4 steps)."""
    learning_starts: int = Field(1000, ge=0)
    """Sampleable transitions the replay must hold before the first update."""
    target_update_interval: int = Field(250, ge=1)
    """Updates between target-network updates."""
    tau: float = Field(1.0, gt=0.0, le=1.0)
    """Target update weight: 1.0 copies the online network (hard); below 1 is Polyak averaging."""
    eps_start: float = Field(1.0, ge=0.0, le=1.0)
    """Initial epsilon of a single annealing actor."""
    eps_end: float = Field(0.05, ge=0.0, le=1.0)
    """Final epsilon of a single annealing actor."""
    eps_decay_steps: int = Field(10_000, ge=1)
    """Env steps over which epsilon falls linearly from eps_start to eps_end."""
    eps_decay_start: int = Field(0, ge=0)
    """Env steps at eps_start before the decay begins: 0 decays from the first step (SB3,
    CleanRL); Dopamine holds epsilon at 1 through its 20k-step warm-up (the Atari preset does)."""
    apex_eps: float = Field(0.4, ge=0.0, le=1.0)
    """Ape-X base epsilon: with N > 1 actors, actor i keeps eps ** (1 + apex_alpha * i / (N - 1))."""
    apex_alpha: float = Field(7.0, ge=0.0)
    """Ape-X exponent spreading the actors' epsilons."""


class ReplayConfig(_Section):
    capacity: int = Field(100_000, ge=1)
    """Transitions held over all shards (oldest overwritten first)."""
    alpha: float = Field(0.0, ge=0.0)
    """Priority exponent; 0 is uniform replay, 0.6 the PER paper's value."""
    beta_start: float = Field(0.4, ge=0.0, le=1.0)
    """Initial importance-sampling exponent."""
    beta_end: float = Field(1.0, ge=0.0, le=1.0)
    """Importance-sampling exponent reached at the end of training (`total_steps`)."""
    priority_eps: float = Field(1e-6, gt=0.0)
    """Added to |TD error| so that no transition's priority is zero."""


class RoleResources(_Section):
    num_cpus: float = Field(1.0, ge=0.0)
    """Ray logical CPUs reserved for each instance of the role."""
    num_gpus: float = Field(0.0, ge=0.0)
    """GPUs reserved for each instance (fractions share a GPU)."""
    resources: dict[str, float] = Field(default_factory=dict)
    """Ray custom resources each instance needs; pins the role to nodes that offer them."""
    max_restarts: int = Field(-1, ge=-1)
    """How often Ray restarts a dead instance (-1: always)."""


class PlacementConfig(_Section):
    runtime: Literal["inline", "threads", "ray"] = "inline"
    """Where roles run: `inline` puts every role in this process and runs one call at a time;
    `threads` gives each role its own thread in this process, so that acting, sampling and
    updating overlap, with results identical to inline; `ray` makes each role a Ray actor."""
    address: str | None = None
    """Ray cluster to join (HOST:PORT, or `auto`); None starts an embedded local cluster."""
    num_actors: int = Field(1, ge=1)
    """Actors, each with `env.num_envs` environments."""
    num_shards: int = Field(1, ge=1)
    """Replay shards; each actor environment feeds one shard, so there are at most
    `num_actors * env.num_envs`."""
    num_learners: int = Field(1, ge=1)
    """Learner processes (more than 1 needs the ray runtime): `num_learners / head_shards`
    data-parallel replicas that all-reduce gradients, each of `head_shards` learners."""
    head_shards: int = Field(1, ge=1)
    """Learners that split the Q-head by action rows (the model split for large action spaces,
    such as a recommender's catalog): each holds its rows, their gradients and Adam moments,
    and the torso replicated. `num_learners` must be a multiple of it."""
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    """Learner device; `auto` takes CUDA when present."""
    learner_compile: bool = False
    """Compile the learner's forward passes, TD target and loss with `torch.compile` (a one-time
    compile of tens of seconds; off by default, see benchmarks/RESULTS.md)."""
    learner_mixed_precision: bool = False
    """Run the learner's networks in bfloat16 autocast (TD math stays float32); off by default,
    see benchmarks/RESULTS.md."""
    actor_steps_per_call: int = Field(1, ge=1)
    """Vector-env steps an actor takes per collect call (more = fewer, larger messages)."""
    weight_refresh_steps: int = Field(1, ge=1)
    """Actor collect calls between pulls of the learner's latest weights."""
    torch_threads: int = Field(1, ge=1, le=1024)
    """Threads torch may use in each process that runs a network (at most 1024, more than any
    machine's cores)."""
    rate_limit: Literal["ratio", "unlimited"] = "ratio"
    """`ratio` holds algorithm.replay_ratio by pausing actors when the learner falls behind;
    `unlimited` lets actors and learner run free (Ape-X), which needs the ray runtime: in one
    process the roles take turns, so "free" would mean max_update_lag updates per collect."""
    max_update_lag: int = Field(256, ge=1)
    """Updates the learner may fall behind the replay ratio before actors wait (the tolerance)."""
    actor: RoleResources = RoleResources(num_cpus=1.0)
    """Resources of each actor."""
    shard: RoleResources = RoleResources(num_cpus=0.5)
    """Resources of each replay shard."""
    learner: RoleResources = RoleResources(num_cpus=1.0)
    """Resources of each learner."""
    evaluator: RoleResources = RoleResources(num_cpus=0.5)
    """Resources of the evaluator."""

    @model_validator(mode="after")
    def _check_runtime(self) -> PlacementConfig:
        if self.runtime != "ray" and self.num_learners != 1:
            raise ValueError(f"num_learners={self.num_learners} needs the ray runtime; {self.runtime} has 1")
        if self.num_learners % self.head_shards:
            raise ValueError(
                f"num_learners={self.num_learners} is not a multiple of head_shards={self.head_shards}: "
                "each data-parallel replica is head_shards learners"
            )
        if self.head_shards > 1 and self.learner_compile:
            raise ValueError(f"learner_compile=true needs head_shards=1, got head_shards={self.head_shards}")
        if self.runtime != "ray" and self.rate_limit == "unlimited":
            raise ValueError(
                f"rate_limit='unlimited' needs the ray runtime: on {self.runtime} the roles take turns, "
                "so free-running actors and learner cannot exist; use 'ratio'"
            )
        return self


class EvaluationConfig(_Section):
    every_steps: int = Field(2_000, ge=1)
    """Env steps between evaluations of the greedy policy."""
    episodes: int = Field(10, ge=1, le=1000)
    """Episodes per evaluation, run side by side on separately seeded envs (one env each)."""
    epsilon: float = Field(0.0, ge=0.0, le=1.0)
    """Epsilon of the evaluation policy (0 is greedy)."""
    max_episode_steps: int = Field(27_000, ge=1)
    """Evaluation episodes end after this many steps, so that a policy that never finishes an
    episode of an env without a time limit (CliffWalking) cannot stall the run."""


class CheckpointConfig(_Section):
    every_steps: int = Field(10_000, ge=1)
    """Env steps between writes of `checkpoints/latest`."""
    keep_best: bool = True
    """Write `checkpoints/best` whenever an evaluation beats the best mean return so far."""
    keep: int = Field(1, ge=1)
    """Versions of `checkpoints/latest` kept (the newest is `latest`; older ones stay as complete
    checkpoints in `checkpoints/.latest-*`, newest first by time); `best` is kept apart."""
    replay: bool | Literal["auto"] = "auto"
    """Also store the replay and every role's state (RNGs, envs where they can be captured, n-step
    records, the loop's counters) in `latest`, so that `--resume` continues as if the run had never
    stopped. `auto`: on when the replay preallocates at most 1 GiB (written in seconds)."""
    replay_codec: Literal["zstd", "lz4", "none"] = "zstd"
    """Compression of the stored replay: `zstd` (level 1; the smallest, and on replay data as fast
    as `lz4`, see benchmarks/RESULTS.md), `lz4`, or `none` (no checksum of its own; the manifest's
    SHA-256 still checks it)."""


ProgressMode = Literal["auto", "live", "lines", "none"]


class LoggingConfig(_Section):
    every_steps: int = Field(1_000, ge=1)
    """Env steps between training lines in metrics.jsonl."""
    tensorboard: bool = True
    """Also write TensorBoard event files under `tb/`."""
    progress: ProgressMode = "auto"
    """Progress on stderr: `live` redraws one line (for a terminal); `lines` writes a plain line
    every progress_interval_s and one at the end (for logs and CI, where redraws pile up on one
    line); `auto` is live when stderr is a terminal, else lines; `none` (`--quiet`) shows nothing.
    `true` and `false` are read as `auto` and `none`."""
    progress_interval_s: float = Field(30.0, ge=0.0)
    """Seconds between progress lines in `lines` mode (0: a line per batch of env steps)."""

    @field_validator("progress", mode="before")
    @classmethod
    def _progress_from_bool(cls, value: Any) -> Any:
        """Configs written when progress was a bool say true or false."""
        if isinstance(value, bool):
            return "auto" if value else "none"
        return value


class Config(_Section):
    env: EnvConfig = EnvConfig()
    network: NetworkConfig = NetworkConfig()
    algorithm: AlgorithmConfig = AlgorithmConfig()
    replay: ReplayConfig = ReplayConfig()
    placement: PlacementConfig = PlacementConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    logging: LoggingConfig = LoggingConfig()
    seed: int = Field(0, ge=0, lt=2**63)
    """Seeds every random number generator of the run (each role's streams are derived from it,
    see `distdqn.seeding`)."""
    total_steps: int = Field(100_000, ge=1)
    """Env steps to train for (all actors together)."""
    stop_return: float | None = None
    """Stop early at the first evaluation whose mean return reaches this."""

    @model_validator(mode="after")
    def _every_shard_gets_lanes(self) -> Config:
        """Lane l lives on shard l % num_shards: a shard past the last lane would hold nothing (a
        ReplayShard refused it with a traceback once the run had started)."""
        lanes = self.placement.num_actors * self.env.num_envs
        if self.placement.num_shards > lanes:
            raise ValueError(
                f"placement.num_shards={self.placement.num_shards} is more than the {lanes} actor environments "
                f"(placement.num_actors={self.placement.num_actors} x env.num_envs={self.env.num_envs}) "
                "that feed them: a shard without one holds nothing"
            )
        return self

    @model_validator(mode="after")
    def _capacity_fits_lanes(self) -> Config:
        """Shard 0 holds the most lanes (lane l is on shard l % num_shards), so its lanes are the
        shortest. A lane needs room for a write of `actor_steps_per_call` steps and the n-step
        records still waiting for rewards, twice over, plus the frames before its oldest record's
        that the record's stack is rebuilt from."""
        per_lane = lane_capacity(self, 0)
        algorithm, placement = self.algorithm, self.placement
        needed = 2 * (algorithm.n_step + placement.actor_steps_per_call) + self.env.frame_stack - 1
        if per_lane < needed:
            raise ValueError(
                f"replay.capacity={self.replay.capacity} leaves {per_lane} slots per environment on shard 0 "
                f"(of {placement.num_shards}); at least {needed} are needed"
            )
        return self

    @model_validator(mode="after")
    def _learning_starts_reachable(self) -> Config:
        reachable = reachable_replay_size(self)
        if self.algorithm.learning_starts > reachable:
            raise ValueError(
                f"algorithm.learning_starts={self.algorithm.learning_starts} is never reached: "
                f"replay.capacity={self.replay.capacity} with env.frame_stack={self.env.frame_stack} and "
                f"algorithm.n_step={self.algorithm.n_step} holds at most {reachable} sampleable transitions"
            )
        return self

    @model_validator(mode="after")
    def _batch_fits_replay(self) -> Config:
        """A batch is drawn from the replay; one larger than the replay's capacity is more draws
        than it ever holds transitions (and 10**23 of them ended in NumPy's OverflowError)."""
        if self.algorithm.batch_size > self.replay.capacity:
            raise ValueError(
                f"algorithm.batch_size={self.algorithm.batch_size} is more than replay.capacity="
                f"{self.replay.capacity}, the most transitions a batch can be drawn from"
            )
        return self


def shard_lanes(config: Config, shard: int) -> int:
    """Actor environments (lanes) stored on `shard`: lane l lives on shard l % num_shards."""
    total, shards = config.placement.num_actors * config.env.num_envs, config.placement.num_shards
    return total // shards + (shard < total % shards)  # arithmetic: len(range()) overflows past 2**63


def lane_capacity(config: Config, shard: int) -> int:
    """Slots of each lane on `shard`: its share of replay.capacity split over its lanes. Shards
    with more lanes have shorter lanes when lanes do not divide evenly over shards."""
    return config.replay.capacity // config.placement.num_shards // shard_lanes(config, shard)


def reachable_replay_size(config: Config) -> int:
    """The most sampleable transitions the replay can ever hold, over all shards.

    After each write a lane of C slots holds n_step records that cannot be sampled yet (n_step - 1
    wait for rewards, and the actor holds the completions of its last step until its next call
    brings their bootstrap observation), and its frame_stack - 1 oldest records, whose stacks
    reach into overwritten frames. Final observations of episodes lower it further.
    """
    unsampleable = config.algorithm.n_step + config.env.frame_stack - 1
    shards = config.placement.num_shards
    # shards 0..r-1 hold q + 1 lanes each and the others q: two terms, not a loop over the shards
    q, r = divmod(config.placement.num_actors * config.env.num_envs, shards)
    return sum(
        count * lanes * (config.replay.capacity // shards // lanes - unsampleable)
        for lanes, count in ((q + 1, r), (q, shards - r))
        if lanes and count
    )


def short_repr(value: Any, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters: an error line must stay one short line. Only the
    part shown is built: the repr of 4.3 MB of env.kwargs was built whole, then cut."""
    text = _repr_head(value, limit + 1)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _repr_head(value: Any, budget: int, within: frozenset[int] = frozenset()) -> str:
    """`repr(value)` whole, or a text whose first `budget` characters are the repr's (past them
    it may differ; `short_repr` cuts there). Lists, tuples and dicts stop at the budget, strings
    and bytes are cut first, and a container met again inside itself is `[...]`, as in repr."""
    kind, budget = type(value), max(budget, 0)
    if kind in (str, bytes) and len(value) > budget:
        # the same quotes in the cut value as in the whole, so repr picks the same delimiters
        quotes = [quote for quote in ("'", '"') if (quote if kind is str else quote.encode()) in value]
        tail = "".join(quotes) if kind is str else "".join(quotes).encode()
        return repr(value[:budget] + tail)
    if kind is int:
        try:
            return repr(value)
        except ValueError:  # more digits than Python converts
            return f"<an integer of {value.bit_length()} bits>"
    if kind not in (list, tuple, dict):
        return repr(value)
    brackets = "[]" if kind is list else "{}" if kind is dict else "()"
    if id(value) in within:
        return brackets[0] + "..." + brackets[1]
    within |= {id(value)}
    items = (
        ((_repr_head(key, budget - 1, within), item) for key, item in value.items())
        if kind is dict
        else ((None, item) for item in value)
    )
    parts: list[str] = []
    used = 1
    for key, item in items:
        if used > budget:
            break
        head = "" if key is None else key + ": "
        part = head + _repr_head(item, budget - used - len(head), within)
        parts.append(part)
        used += len(part) + 2
    single = "," if kind is tuple and len(value) == 1 else ""
    return brackets[0] + ", ".join(parts) + single + brackets[1]


# -- unknown keys: what they were probably meant to be --------------------------------------------
COMMON_NAMES: dict[str, tuple[str, str]] = {
    "learning_rate": ("algorithm.lr", ""),
    "buffer_size": ("replay.capacity", ""),
    "train_freq": ("algorithm.replay_ratio", "updates per env step: gradient_steps / train_freq"),
    "train_frequency": ("algorithm.replay_ratio", "updates per env step: 1 / train_frequency"),
    "gradient_steps": ("algorithm.replay_ratio", "updates per env step: gradient_steps / train_freq"),
    "target_update_interval": ("algorithm.target_update_interval", "counted in updates, not env steps"),
    "target_network_frequency": ("algorithm.target_update_interval", "counted in updates, not env steps"),
    "exploration_fraction": ("algorithm.eps_decay_steps", "env steps, not a fraction of the run"),
    "exploration_initial_eps": ("algorithm.eps_start", ""),
    "exploration_final_eps": ("algorithm.eps_end", ""),
    "start_e": ("algorithm.eps_start", ""),
    "end_e": ("algorithm.eps_end", ""),
    "double_q": ("algorithm.double_dqn", ""),
    "net_arch": ("network.hidden_sizes", ""),
    "n_envs": ("env.num_envs", ""),
    "env_id": ("env.id", ""),
    "total_timesteps": ("total_steps", ""),
    "n_timesteps": ("total_steps", ""),
    "eval_freq": ("evaluation.every_steps", ""),
    "n_eval_episodes": ("evaluation.episodes", ""),
    "prioritized_replay_alpha": ("replay.alpha", ""),
    "prioritized_replay_beta0": ("replay.beta_start", ""),
    "prioritized_replay_eps": ("replay.priority_eps", ""),
}
"""Names Stable-Baselines3 and CleanRL users type for a DQN setting -> (the distdqn field, how its
meaning differs). Names distdqn shares (batch_size, gamma, tau, learning_starts, max_grad_norm) are
found by their last part: `learning_starts` is `algorithm.learning_starts`."""


def _is_section(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


@functools.cache
def field_paths() -> tuple[str, ...]:
    """Every field of the config tree, dotted (`algorithm.lr`, `placement.actor.num_cpus`)."""

    def walk(model: type[BaseModel], prefix: str) -> list[str]:
        paths = []
        for name, field in model.model_fields.items():
            if _is_section(field.annotation):
                paths += walk(field.annotation, f"{prefix}{name}.")
            else:
                paths.append(prefix + name)
        return paths

    return tuple(walk(Config, ""))


@functools.cache
def _longest_name() -> int:
    """The longest last part of a field or a common name: a name over twice as long has a
    similarity ratio below 0.75 to each of them."""
    return max(len(name.rpartition(".")[2]) for name in (*field_paths(), *COMMON_NAMES))


def _close_fields(key: str) -> tuple[list[str], str]:
    """The fields `key` was probably meant to be, and a note on how a foreign name's meaning differs.
    Names are compared by their last part, so that `algorithm.gama` is not `algorithm.tau` for the
    `algorithm.` they share; a field in the key's own section wins a tie."""
    key = key.strip().lower().replace("-", "_")
    section, _, name = key.rpartition(".")
    if len(name) > 2 * _longest_name():  # too long to be close to any (a name of 10**5 took 22 s)
        return [], ""
    if name in COMMON_NAMES and COMMON_NAMES[name][0] != key:
        return [COMMON_NAMES[name][0]], COMMON_NAMES[name][1]
    scores: dict[str, float] = {}

    def offer(path: str, similarity: float) -> None:
        score = similarity + (0.1 if path.rpartition(".")[0] == section else 0.0)
        if path != key and score > scores.get(path, 0.0):
            scores[path] = score

    for path in field_paths():
        field = path.rpartition(".")[2]
        similarity = difflib.SequenceMatcher(None, name, field).ratio()
        if len(name) >= 4 and field.startswith(name):  # target_update for target_update_interval
            similarity = max(similarity, 0.8)
        if similarity >= 0.75:
            offer(path, similarity)
    for common, (path, _) in COMMON_NAMES.items():
        similarity = difflib.SequenceMatcher(None, name, common).ratio()
        if similarity >= 0.85:
            offer(path, similarity)
    best = max(scores.values(), default=0.0)
    return [path for path in field_paths() if best and scores.get(path) == best][:3], ""


def suggest_field(key: str) -> str:
    """` (did you mean algorithm.lr?)` for an unknown config key, or "" when nothing is close:
    the fields of the same name in other sections, close spellings, and the distdqn field for
    the Stable-Baselines3 and CleanRL names in `COMMON_NAMES`."""
    paths, note = _close_fields(key)
    if not paths:
        return ""
    either = paths[0] if len(paths) == 1 else f"{', '.join(paths[:-1])} or {paths[-1]}"
    return f" (did you mean {either}?{' ' + note if note else ''})"


def _dotted(parts: Any) -> str:
    # a key from a file may hold a newline or be long: quote such a key, cut short, as the value is
    return ".".join(
        str(part) if str(part).isprintable() and len(str(part)) <= 80 else short_repr(part) for part in parts
    )


def _format_validation_error(error: ValidationError, origin: str) -> str:
    first = error.errors()[0]
    field = _dotted(first["loc"])
    where = f"{origin}: {field}" if field else origin
    if first["type"] == "extra_forbidden":
        return f"{where}: unknown field{suggest_field('.'.join(map(str, first['loc'])))}"
    message = short_text(" ".join(first["msg"].removeprefix("Value error, ").splitlines()), 300)
    # a whole-section check names its values itself; echoing the section would bury the message
    if "input" in first and first["type"] != "model_type" and not isinstance(first["input"], dict):
        return f"{where}: {message} (got {short_repr(first['input'])})"
    return f"{where}: {message}"


def build_config(data: dict[str, Any], origin: str = "config") -> Config:
    """Validate a nested dict into a Config, naming the bad field and value on failure. A dict
    read from a written config (with its `[distdqn]` table) gives back the config written."""
    data, resolved = _take_written_table(data, origin)
    if resolved:
        data = _merge(_defaults(), data)
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, origin)) from None


MAX_CONFIG_BYTES = 1 << 20
"""A config file is a few hundred lines at most; past 1 MiB it is refused unread."""
MAX_NESTING = 32
"""Levels of tables and lists a config value may nest (the tree is three, env.kwargs a few more):
the parsers and the validators recurse, and thousands of `[` ended in a RecursionError."""


class YamlRefused(yaml.YAMLError):
    """YAML that `load_yaml` refuses to read: an alias, or nesting past MAX_NESTING."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line
        """Where, counted from 1."""


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader without aliases and with a bound on nesting.

    Every alias (`*a`) repeats the node its anchor (`&a`) names, so nested anchors expand
    exponentially: a 1 KB "billion laughs" file grew to 10.4 GB as the config was checked and
    copied. A config tree has no need of them, so an alias is refused where it stands (an
    anchor alone is harmless, and an undefined alias stays PyYAML's own error)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            if event.anchor in self.anchors:
                name = event.anchor if len(event.anchor) <= 40 else event.anchor[:37] + "..."
                raise YamlRefused(
                    f"the alias *{name} is refused: an alias repeats a value, and nested ones grow a "
                    "kilobyte into gigabytes; write the value out",
                    event.start_mark.line + 1,
                )
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                line = self.peek_event().start_mark.line + 1
                raise YamlRefused(f"values nest deeper than {MAX_NESTING} levels", line)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def load_yaml(text: str) -> Any:
    """YAML as `yaml.safe_load` reads it, less aliases and deep nesting (`YamlRefused`): the
    loader of config files, `--set` values and `tune`'s `--param` and `--start` values."""
    return yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader: no Python objects


def _nests_deeper(value: Any, limit: int) -> bool:
    """Whether tables and lists in `value` nest deeper than `limit` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def short_text(text: str, limit: int = 200) -> str:
    """A message quoted from a parser or a library, cut to its first line and `limit` characters."""
    lines = str(text).strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML or YAML file into a dict (not yet validated). Files past MAX_CONFIG_BYTES, YAML
    aliases, and values nested past MAX_NESTING are refused in one line."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"config file must end in .toml, .yaml or .yml: {path}")
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror or error}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        size = f"{MAX_CONFIG_BYTES >> 20} MiB"
        raise ConfigError(f"config file {path} is larger than {size}; a config is a few hundred lines")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else load_yaml(text) or {}
    except YamlRefused as error:
        raise ConfigError(f"{path}: line {error.line}: {error}") from None
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot parse config file {path}: {short_text(str(error))}") from None
    except ValueError as error:  # an integer of more digits than Python converts
        raise ConfigError(f"cannot parse config file {path}: {short_text(str(error).split(';')[0])}") from None
    except RecursionError:  # tomllib recurses into nested arrays and inline tables
        raise ConfigError(f"cannot parse config file {path}: values nest deeper than {MAX_NESTING} levels") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table of sections")
    if _nests_deeper(data, MAX_NESTING):
        raise ConfigError(f"config file {path}: values nest deeper than {MAX_NESTING} levels")
    for name, field in Config.model_fields.items():
        is_section = _is_section(field.annotation)
        if is_section and name in data and not isinstance(data[name], dict):
            raise ConfigError(f"{path}: {name} must be a table of fields, got {short_repr(data[name])}")
    env_id = data.get("env", {}).get("id")
    if env_id is not None and not isinstance(env_id, str):
        raise ConfigError(f"{path}: env.id must be a string, got {short_repr(env_id)}")
    return data


def _preset_name(env_id: str) -> str:
    return env_id.replace("/", "_") + ".toml"


def is_atari_id(env_id: str) -> bool:
    return env_id.startswith("ALE/") or env_id.endswith("NoFrameskip-v4")


def preset_for(env_id: str) -> dict[str, Any]:
    """The packaged preset for an env id (all Atari games share one, as do MinAtar's), or {}."""
    if is_atari_id(env_id):
        name = "atari.toml"
    elif env_id.startswith("MinAtar/"):
        name = "minatar.toml"
    else:
        name = _preset_name(env_id)
    if name not in _preset_names():  # looked up, not opened: an id of 5,000 characters is no file name
        return {}
    return tomllib.loads(importlib.resources.files("distdqn.presets").joinpath(name).read_text())


@functools.cache
def _preset_names() -> frozenset[str]:
    return frozenset(
        item.name for item in importlib.resources.files("distdqn.presets").iterdir() if item.name.endswith(".toml")
    )


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as YAML (1e-3, true, [64, 64])."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key.path=value, got {short_repr(assignment)}")
    parts = key.strip().split(".")
    fields: dict[str, Any] = Config.model_fields
    node = data
    for depth, part in enumerate(parts):
        if part not in fields:
            raise ConfigError(
                f"--set {short_repr(key)}: unknown field {short_repr('.'.join(parts[: depth + 1]))}"
                + suggest_field(key)
            )
        annotation = fields[part].annotation
        is_section = _is_section(annotation)
        if depth == len(parts) - 1:
            if is_section:
                raise ConfigError(f"--set {short_repr(key)}: {short_repr(key)} is a section; set one of its fields")
            break
        if not is_section:
            raise ConfigError(f"--set {short_repr(key)}: {short_repr('.'.join(parts[: depth + 1]))} has no fields")
        node = node.setdefault(part, {})
        fields = annotation.model_fields
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except YamlRefused as error:
        raise ConfigError(f"--set {short_repr(key)}: {error}") from None
    except (yaml.YAMLError, ValueError):  # ValueError: an integer of more digits than Python converts
        value = raw
    node[parts[-1]] = value


def _defaults() -> dict[str, Any]:
    """Every default spelled out, so that a partial section keeps its siblings' defaults
    (placement.evaluator's num_cpus is not RoleResources' own default)."""
    return Config().model_dump(mode="json")


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key not in ("kwargs", "resources"):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_config(
    env_id: str | None = None,
    config_file: Path | None = None,
    overrides: tuple[str, ...] | list[str] = (),
) -> Config:
    """Defaults, then the env's preset, then the file, then `--set` overrides, then validation.

    The preset is chosen by the env id from the command line, else the file's `env.id`. A
    resolved file (one `config_to_toml` wrote) gets no preset under it; see the module docstring.
    """
    origin = str(config_file) if config_file else "config"
    file_data, resolved = _take_written_table(read_config_file(config_file) if config_file else {}, origin)
    chosen_id = env_id or file_data.get("env", {}).get("id") or EnvConfig().id
    # a resolved file (a run's config.toml) holds every field: no preset goes under it
    data = _defaults() if resolved else _merge(_defaults(), preset_for(chosen_id))
    data = _merge(data, file_data)
    data = _merge(data, {"env": {"id": chosen_id}})
    for assignment in overrides:
        apply_override(data, assignment)
    return build_config(data, origin=origin)


def override_config(config: Config, overrides: tuple[str, ...] | list[str], origin: str) -> Config:
    """A copy of `config` with `--set` style overrides applied and validated."""
    data = config.model_dump(mode="json")
    for assignment in overrides:
        apply_override(data, assignment)
    return build_config(data, origin=origin)


# -- written configs ---------------------------------------------------------------------------
WRITTEN_TABLE = "distdqn"
"""The table of a config file that is about the file, not a section: `resolved` (every field is
in the file, so no preset is merged under it) and `none` (the fields that are None)."""
_WRITTEN_KEYS = ("resolved", "none")
_WRITTEN_HEADER = """\
# The resolved config, every field as the run used it: loading this file merges no preset under it
# ([distdqn] resolved), and the fields named in [distdqn] none are None (TOML has no null).
"""


def _none_paths(value: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not isinstance(value, dict):
        return []
    paths: list[tuple[str, ...]] = []
    for key, item in value.items():
        paths += [(*prefix, key)] if item is None else _none_paths(item, (*prefix, key))
    return paths


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    return value


def _toml_key(parts: tuple[str, ...]) -> str:
    """`("env", "kwargs", "a.b")` -> `env.kwargs."a.b"`: a dotted key as TOML spells it."""
    return ".".join(tomli_w.dumps({part: 0}).removesuffix(" = 0\n") for part in parts)


def config_to_toml(config: Config) -> str:
    """The resolved config as TOML that loads back to it, field for field: the fields that are
    None are left out of their tables and named in the `[distdqn]` table's `none`, which also
    marks the file resolved (see the module docstring)."""
    # Python's values, not JSON's: JSON would make an inf in env.kwargs null and a date a string
    data = config.model_dump()
    table = {"resolved": True, "none": sorted(_toml_key(path) for path in _none_paths(data))}
    return _WRITTEN_HEADER + tomli_w.dumps({WRITTEN_TABLE: table, **_without_none(data)})


def _key_parts(entry: str, where: str) -> list[str]:
    """`env.kwargs."a.b"` -> ["env", "kwargs", "a.b"], read as TOML reads a dotted key."""
    try:
        node: Any = tomllib.loads(f"{entry} = 0") if "\n" not in entry and "\r" not in entry else None
    except tomllib.TOMLDecodeError:
        node = None
    parts = []
    while isinstance(node, dict) and len(node) == 1:
        [(part, node)] = node.items()
        parts.append(part)
    if node != 0 or isinstance(node, bool) or not parts:
        raise ConfigError(f"{where}: {short_repr(entry)} is not a dotted key (algorithm.lr_end)")
    return parts


def _admits_none(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


def _set_none(data: dict[str, Any], parts: list[str], where: str) -> None:
    """Set the field at `parts` to None in `data`, a file's tables: a field of the tree that
    takes None, or a key inside a free-form table (`env.kwargs`)."""
    fields: dict[str, Any] | None = Config.model_fields
    node = data
    for depth, part in enumerate(parts):
        path = _dotted(parts[: depth + 1])
        last = depth == len(parts) - 1
        annotation = None
        if fields is not None:
            if part not in fields:
                raise ConfigError(f"{where}: unknown field {short_repr(path)}{suggest_field('.'.join(parts))}")
            annotation = fields[part].annotation
            if last and _is_section(annotation):
                raise ConfigError(f"{where}: {path} is a section; name one of its fields")
            if last and not _admits_none(annotation):
                raise ConfigError(f"{where}: {path} cannot be None")
            if not last and not _is_section(annotation) and get_origin(annotation) is not dict:
                raise ConfigError(f"{where}: {path} has no fields")
        if last:
            node[part] = None
            return
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: {path} is not a table, got {short_repr(child)}")
        node = child
        fields = annotation.model_fields if _is_section(annotation) else None


def _take_written_table(data: dict[str, Any], origin: str) -> tuple[dict[str, Any], bool]:
    """A file's tables without its `[distdqn]` table, the fields that table names None set to
    None, and whether the file is resolved."""
    if WRITTEN_TABLE not in data:
        return data, False
    data = copy.deepcopy(data)
    table = data.pop(WRITTEN_TABLE)
    where = f"{origin}: {WRITTEN_TABLE}"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table (resolved, none), got {short_repr(table)}")
    for key in table:
        if key not in _WRITTEN_KEYS:
            close = difflib.get_close_matches(str(key), _WRITTEN_KEYS, n=1)
            hint = f" (did you mean {WRITTEN_TABLE}.{close[0]}?)" if close else " (it holds resolved and none)"
            raise ConfigError(f"{where}.{_dotted([key])}: unknown key{hint}")
    resolved = table.get("resolved", False)
    if not isinstance(resolved, bool):
        raise ConfigError(f"{where}.resolved must be true or false, got {short_repr(resolved)}")
    entries = table.get("none", [])
    if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
        raise ConfigError(f"{where}.none must be a list of dotted keys, got {short_repr(entries)}")
    for entry in entries:
        _set_none(data, _key_parts(entry, f"{where}.none"), f"{where}.none")
    return data, resolved


def load_config_toml(path: Path) -> Config:
    """Load a resolved config written by `config_to_toml` (a run's or a checkpoint's); a file
    written before the `[distdqn]` table is read as it was then, without a preset."""
    return build_config(read_config_file(path), origin=str(path))
