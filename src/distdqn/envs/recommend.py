"""A recommendation session in the spirit of RecSim's interest-evolution model (Ie et al. 2019).

Registered as `distdqn/Recommend-v0`. Each step the agent recommends one item of a fixed catalog;
the action space is the catalog (an `ItemSpace` of `num_items` actions).

- **Catalog** (fixed by `catalog_seed`, whatever the episode seed): every item has a topic, a
  quality in [-1, 1] and an appeal (a click-logit bonus), which the action space publishes as the
  item's features (an `ItemSpace`: topic one-hot, quality, appeal), as a catalog's metadata is
  known to a real recommender; `network.action_features` reads them. Most items are regular (quality drawn
  from [-0.3, 1], appeal from [-1, 0.5]); a `clickbait_fraction` of them have a high appeal
  ([1.5, 3]) and a low quality ([-1, -0.5]). The arrays are drawn once per env with NumPy, and a
  step only indexes the chosen item, so a step costs the same for 10^3 or 10^6 items.
- **User** (drawn per episode from the env's RNG, never observed): an interest in [-1, 1] per
  topic, and a session time budget of `session_budget`.
- **Choice**: the user clicks with probability sigmoid(CLICK_SHARPNESS * interest + appeal).
  A skip costs `skip_time` of the budget and pays 0.
- **Engagement** on a click: ENGAGEMENT_SCALE * exp(INTEREST_WEIGHT * interest + QUALITY_WEIGHT *
  quality + APPEAL_WEIGHT * appeal), times mean-one log-normal noise (`engagement_noise`). The
  reward is this engagement time. Clickbait's appeal makes its immediate expected engagement the
  highest in a topic, so a recommender that maximizes the next reward picks it.
- **Budget**: a click spends its engagement times (1 - `quality_budget_gain` * quality): good
  content gives time back (the session lasts longer), clickbait takes extra. The episode
  terminates when the budget is spent. The return (total engagement) is therefore about
  (budget - time spent on skips) / (1 - gain * mean quality): preferring quality over clickbait, and items
  the user will click, pays in the long run.
- **Interest drift**: a click moves the interest in the item's topic `interest_drift` * |quality|
  of the way towards +1 (towards -1 for negative quality): good items make the user like their
  topic more, clickbait wears it out.

The observation is what a recommender logs, never the latent interests (float32, all in [0, 1]):
per topic, the session's clicks and skips squashed by n / (n + COUNT_SCALE); for each of the last
`history_length` recommendations (newest first, zeros before the first), its topic one-hot,
whether it was clicked and its engagement squashed by e / (e + ENGAGEMENT_SCALE); and the
fraction of the budget left.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from distdqn.config import short_repr
from distdqn.envs.item_space import ItemSpace
from distdqn.memory import gib, require_memory

CLICK_SHARPNESS = 4.0
"""Weight of the topic interest in the click logit: a liked topic (+1) is clicked ~98% of the
time, a disliked one (-1) ~2%, for an item of appeal 0."""
ENGAGEMENT_SCALE = 3.0
"""Engagement time of a click on a neutral item (interest, quality and appeal 0)."""
INTEREST_WEIGHT = 0.5
QUALITY_WEIGHT = 0.3
APPEAL_WEIGHT = 0.3
"""Log-engagement per unit of interest, quality and appeal: appeal outweighs quality, which is
what makes clickbait the myopic choice."""
COUNT_SCALE = 3.0
"""Clicks or skips of a topic at which its observed count reads 0.5."""

CATALOG_BYTES_PER_ITEM = 33
"""Peak bytes an item costs while the catalog is drawn (measured with tracemalloc): the 13 it keeps
(topic int32, clickbait flag, quality and appeal float32) are drawn as float64 and int64, three
float64 arrays at once for the appeal."""
FEATURE_BYTES_PER_VALUE = 8
"""Peak bytes an item feature costs: the action space's float32 copy of the env's float32 table."""
OBSERVATION_BYTES_PER_VALUE = 32
"""Peak bytes a value of the observation costs (measured with tracemalloc, for large `num_topics`
or `history_length`): the observation space's float32 bounds, and a step's float64 temporaries."""

REGULAR_QUALITY = (-0.3, 1.0)
REGULAR_APPEAL = (-1.0, 0.5)
CLICKBAIT_QUALITY = (-1.0, -0.5)
CLICKBAIT_APPEAL = (1.5, 3.0)
"""Uniform ranges the catalog's qualities and appeals are drawn from."""


def click_probability(interest: Any, appeal: Any) -> Any:
    """Probability that the user clicks an item (arrays or scalars)."""
    return 1.0 / (1.0 + np.exp(-(CLICK_SHARPNESS * interest + appeal)))


def mean_engagement(interest: Any, quality: Any, appeal: Any) -> Any:
    """Expected engagement time of a click (arrays or scalars)."""
    return ENGAGEMENT_SCALE * np.exp(INTEREST_WEIGHT * interest + QUALITY_WEIGHT * quality + APPEAL_WEIGHT * appeal)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_fits(num_items: int, num_topics: int, history_length: int) -> None:
    """Refuse, before anything is allocated, an env larger than this machine's memory (a
    `num_items` of 10**10 ended in NumPy's allocation traceback)."""
    obs_size = 2 * num_topics + history_length * (num_topics + 2) + 1
    item_bytes = CATALOG_BYTES_PER_ITEM + FEATURE_BYTES_PER_VALUE * (num_topics + 2)
    needed = item_bytes * num_items + OBSERVATION_BYTES_PER_VALUE * obs_size
    require_memory(
        needed,
        f"num_items={num_items} and observations of {obs_size:,} values (num_topics={num_topics}, "
        f"history_length={history_length}) need {gib(needed)} ({item_bytes} bytes an item while the "
        f"catalog and its features are drawn, {OBSERVATION_BYTES_PER_VALUE} an observation value)",
        ValueError,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


class RecommendEnv(gym.Env):
    metadata: dict[str, Any] = {"render_modes": []}
    constant_attributes: ClassVar[frozenset[str]] = frozenset(
        {"item_topic", "item_clickbait", "item_quality", "item_appeal"}
    )
    """The catalog, fixed by the constructor's arguments: not state to capture (`distdqn.envs.env_state`)."""

    def __init__(
        self,
        num_items: int = 1000,
        num_topics: int = 20,
        clickbait_fraction: float = 0.1,
        session_budget: float = 200.0,
        catalog_seed: int = 0,
        history_length: int = 5,
        skip_time: float = 2.0,
        quality_budget_gain: float = 0.3,
        interest_drift: float = 0.03,
        engagement_noise: float = 0.3,
    ) -> None:
        _check(_is_int(num_items) and num_items >= 1, f"num_items must be an int >= 1, got {short_repr(num_items)}")
        _check(_is_int(num_topics) and num_topics >= 1, f"num_topics must be an int >= 1, got {short_repr(num_topics)}")
        _check(
            _is_number(clickbait_fraction) and 0.0 <= clickbait_fraction <= 1.0,
            f"clickbait_fraction must be a number in [0, 1], got {short_repr(clickbait_fraction)}",
        )
        _check(
            _is_number(session_budget) and 0.0 < session_budget < math.inf,
            f"session_budget must be a finite number > 0, got {short_repr(session_budget)}",
        )
        _check(
            _is_int(catalog_seed) and catalog_seed >= 0,
            f"catalog_seed must be an int >= 0, got {short_repr(catalog_seed)}",
        )
        _check(
            _is_int(history_length) and history_length >= 1,
            f"history_length must be an int >= 1, got {short_repr(history_length)}",
        )
        _check(
            _is_number(skip_time) and 0.0 < skip_time < math.inf,
            f"skip_time must be a finite number > 0 (a session must end), got {short_repr(skip_time)}",
        )
        _check(
            _is_number(quality_budget_gain) and 0.0 <= quality_budget_gain < 1.0,
            "quality_budget_gain must be a number in [0, 1) (a click must spend time), "
            f"got {short_repr(quality_budget_gain)}",
        )
        _check(
            _is_number(interest_drift) and 0.0 <= interest_drift <= 1.0,
            f"interest_drift must be a number in [0, 1], got {short_repr(interest_drift)}",
        )
        _check(
            _is_number(engagement_noise) and 0.0 <= engagement_noise < math.inf,
            f"engagement_noise must be a finite number >= 0, got {short_repr(engagement_noise)}",
        )
        _check_fits(int(num_items), int(num_topics), int(history_length))
        self.num_items = int(num_items)
        self.num_topics = int(num_topics)
        self.session_budget = float(session_budget)
        self.history_length = int(history_length)
        self.skip_time = float(skip_time)
        self.quality_budget_gain = float(quality_budget_gain)
        self.interest_drift = float(interest_drift)
        self.engagement_noise = float(engagement_noise)

        # the catalog: the only arrays whose size grows with num_items
        catalog = np.random.default_rng(catalog_seed)
        self.item_topic = catalog.integers(self.num_topics, size=self.num_items).astype(np.int32)
        self.item_clickbait = catalog.random(self.num_items) < clickbait_fraction
        self.item_quality = np.where(
            self.item_clickbait,
            catalog.uniform(*CLICKBAIT_QUALITY, self.num_items),
            catalog.uniform(*REGULAR_QUALITY, self.num_items),
        ).astype(np.float32)
        self.item_appeal = np.where(
            self.item_clickbait,
            catalog.uniform(*CLICKBAIT_APPEAL, self.num_items),
            catalog.uniform(*REGULAR_APPEAL, self.num_items),
        ).astype(np.float32)

        self.action_space = ItemSpace(self._item_features())
        obs_size = 2 * self.num_topics + self.history_length * (self.num_topics + 2) + 1
        self.observation_space = gym.spaces.Box(0.0, 1.0, (obs_size,), np.float32)

        # the session: latent user state, then what the recommender has logged
        self.interests = np.zeros(self.num_topics)
        self.budget_left = self.session_budget
        self.topic_clicks = np.zeros(self.num_topics)
        self.topic_skips = np.zeros(self.num_topics)
        self.recent_topics = np.full(self.history_length, -1, np.int64)
        self.recent_clicked = np.zeros(self.history_length)
        self.recent_engagement = np.zeros(self.history_length)

    def _item_features(self) -> np.ndarray:
        """What the action space publishes of each item: its topic one-hot, quality and appeal."""
        features = np.zeros((self.num_items, self.num_topics + 2), np.float32)
        features[np.arange(self.num_items), self.item_topic] = 1.0
        features[:, -2] = self.item_quality
        features[:, -1] = self.item_appeal
        return features

    def expected_engagement(self, items: np.ndarray) -> np.ndarray:
        """Expected immediate reward of recommending each of `items` to the current user. An oracle:
        it reads the latent interests, which the agent never sees (the myopic baseline uses it)."""
        interest = self.interests[self.item_topic[items]]
        quality, appeal = self.item_quality[items], self.item_appeal[items]
        return click_probability(interest, appeal) * mean_engagement(interest, quality, appeal)

    def _observation(self) -> np.ndarray:
        recent = np.zeros((self.history_length, self.num_topics + 2))
        shown = self.recent_topics >= 0
        recent[np.flatnonzero(shown), self.recent_topics[shown]] = 1.0
        recent[:, -2] = self.recent_clicked
        recent[:, -1] = self.recent_engagement / (self.recent_engagement + ENGAGEMENT_SCALE)
        return np.concatenate(
            [
                self.topic_clicks / (self.topic_clicks + COUNT_SCALE),
                self.topic_skips / (self.topic_skips + COUNT_SCALE),
                recent.ravel(),
                [min(max(self.budget_left / self.session_budget, 0.0), 1.0)],
            ]
        ).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.interests = self.np_random.uniform(-1.0, 1.0, self.num_topics)
        self.budget_left = self.session_budget
        self.topic_clicks[:] = 0.0
        self.topic_skips[:] = 0.0
        self.recent_topics[:] = -1
        self.recent_clicked[:] = 0.0
        self.recent_engagement[:] = 0.0
        return self._observation(), {}

    def step(self, action: int):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid item {action!r}: actions are items 0..{self.num_items - 1}")
        item = int(action)
        topic = int(self.item_topic[item])
        quality, appeal = float(self.item_quality[item]), float(self.item_appeal[item])
        interest = float(self.interests[topic])
        engagement = 0.0
        clicked = bool(self.np_random.random() < click_probability(interest, appeal))
        if clicked:
            noise = self.engagement_noise
            engagement = float(
                mean_engagement(interest, quality, appeal) * math.exp(noise * self.np_random.normal() - noise**2 / 2)
            )
            self.budget_left -= engagement * (1.0 - self.quality_budget_gain * quality)
            target = 1.0 if quality >= 0 else -1.0
            self.interests[topic] = interest + self.interest_drift * abs(quality) * (target - interest)
            self.topic_clicks[topic] += 1.0
        else:
            self.budget_left -= self.skip_time
            self.topic_skips[topic] += 1.0
        for history in (self.recent_topics, self.recent_clicked, self.recent_engagement):
            history[1:] = history[:-1]  # NumPy copies overlapping slices correctly
        self.recent_topics[0] = topic
        self.recent_clicked[0] = float(clicked)
        self.recent_engagement[0] = engagement
        return self._observation(), engagement, self.budget_left <= 0.0, False, {}
