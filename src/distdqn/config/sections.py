"""The sections of the config tree, each checked on its own: frozen models that forbid unknown
keys, so that a typo in a file or an override fails with the field's name. Every field has a
docstring; `distdqn train --help` and the docs' config reference (docs/reference/config.md) are built from them."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeGuard

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_NUMBERS = {int, float, int | None, float | None}
INT64_MAX = 2**63 - 1
"""The largest integer any field takes: NumPy, torch and TOML hold 64 bits, and a count past it
overflows where it is used (a batch_size of 10**23 ended in NumPy's OverflowError)."""
MAX_LAYER_WEIGHTS = 2**34
"""Weights of one layer of `network.hidden_sizes` past which no machine trains it: 64 GiB in
float32, which the learner holds four times over (weights, target, Adam's two moments)."""


class Section(BaseModel):
    """The base of every model of the tree, so that all of them refuse alike."""

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


class EnvConfig(Section):
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


class NetworkConfig(Section):
    torso: Literal["auto", "mlp", "nature_cnn", "minatar_cnn"] = "auto"
    """`auto`: the Nature DQN convolutions for (channels, height, width) observations, else an MLP;
    `minatar_cnn`: MinAtar's one 3x3 convolution for (10, 10, channels) observations."""
    hidden_sizes: tuple[Annotated[int, Field(ge=1)], ...] = (128, 128)
    """Widths of the fully connected layers (after the convolutions, if any); two adjacent widths
    multiply to at most 2**34 weights."""
    dueling: bool = False
    """Split the head into state value and action advantages (Wang et al. 2016)."""
    action_features: bool = False
    """Score each action by the features its env's action space publishes (an `ItemSpace`, as
    distdqn/Recommend-v0's catalog does): Q(s, a) = f(s) . g(features of a), so that what is learned
    of one item carries to similar ones, where the plain head learns each action's output from that
    action's own samples. Needs placement.head_shards = 1."""
    action_embedding_size: int = Field(32, ge=1, le=4096)
    """Width of the state and item embeddings whose dot product is Q, with `action_features`."""

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


class AlgorithmConfig(Section):
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


class ReplayConfig(Section):
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


class RoleResources(Section):
    num_cpus: float = Field(1.0, ge=0.0)
    """Ray logical CPUs reserved for each instance of the role."""
    num_gpus: float = Field(0.0, ge=0.0)
    """GPUs reserved for each instance (fractions share a GPU)."""
    resources: dict[str, float] = Field(default_factory=dict)
    """Ray custom resources each instance needs; pins the role to nodes that offer them."""
    max_restarts: int = Field(-1, ge=-1)
    """How often Ray restarts a dead instance (-1: always)."""


class PlacementConfig(Section):
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


class EvaluationConfig(Section):
    every_steps: int = Field(2_000, ge=1)
    """Env steps between evaluations of the greedy policy."""
    episodes: int = Field(10, ge=1, le=1000)
    """Episodes per evaluation, run side by side on separately seeded envs (one env each)."""
    epsilon: float = Field(0.0, ge=0.0, le=1.0)
    """Epsilon of the evaluation policy (0 is greedy)."""
    max_episode_steps: int = Field(27_000, ge=1)
    """Evaluation episodes end after this many steps, so that a policy that never finishes an
    episode of an env without a time limit (CliffWalking) cannot stall the run."""


class CheckpointConfig(Section):
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


class LoggingConfig(Section):
    every_steps: int = Field(1_000, ge=1)
    """Env steps between training lines in metrics.jsonl."""
    tensorboard: bool | Literal["auto"] = "auto"
    """Also write TensorBoard event files under `tb/`: `auto` does when TensorBoard is installed
    (`pip install 'distdqn[tensorboard]'`), `true` refuses to start without it, `false` never does."""
    wandb: bool = False
    """Also stream every metrics record, and the config, to Weights & Biases (CleanRL's `--track`;
    needs the `wandb` extra). The W&B run is named after the run directory; a resumed run goes on
    in the same W&B run, whose id the run directory keeps in `wandb_id`. `WANDB_MODE=offline`
    writes it locally, for `wandb sync` later."""
    wandb_project: str = "distdqn"
    """W&B project the run goes to (CleanRL's `--wandb-project-name`); empty: W&B's default."""
    wandb_entity: str | None = None
    """W&B team or user that owns the project; None: the API key's default entity."""
    wandb_group: str | None = None
    """W&B group, to show runs together (the seeds of one config, say); None: no group."""
    wandb_tags: tuple[str, ...] = ()
    """W&B tags of the run (rl-zoo's `--wandb-tags`)."""
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


def is_section(annotation: Any) -> TypeGuard[type[BaseModel]]:
    """Whether a field's type is a section (a table of fields), not a value."""
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
