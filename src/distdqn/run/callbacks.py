"""What a Python caller hears while a run trains (`DQN.learn(callback=...)`), in the shape of
Stable-Baselines3's callbacks: a class with a hook per event, each of which may stop the run.

A hook that returns False stops the run at the loop's next turn, the way `total_steps` would: the
run evaluates where it stands (unless it just did), writes `latest`, and a later `learn()`
continues it. Hooks run on the driver, between the loop's steps; a slow hook slows training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Record = dict[str, Any]


class Callback:
    """Override the hooks you need; each returns False to stop training (None or True go on).

    - `on_log(record)`: a training line of metrics.jsonl (env steps, rates, losses, episode returns);
    - `on_evaluation(record)`: an evaluation line (`eval_return_mean`, `eval_return_std`, ...);
    - `on_checkpoint(name, env_steps)`: checkpoint `name` ("latest" or "best") was taken at
      `env_steps`; it is written to disk in the background (`DQN.save` waits for it).
    """

    def on_log(self, record: Record) -> bool | None:
        return None

    def on_evaluation(self, record: Record) -> bool | None:
        return None

    def on_checkpoint(self, name: str, env_steps: int) -> bool | None:
        return None


class CallbackList(Callback):
    """Several callbacks, each hearing every event; training stops if any of them says so."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def on_log(self, record: Record) -> bool | None:
        return _all_go_on(callback.on_log(record) for callback in self.callbacks)

    def on_evaluation(self, record: Record) -> bool | None:
        return _all_go_on(callback.on_evaluation(record) for callback in self.callbacks)

    def on_checkpoint(self, name: str, env_steps: int) -> bool | None:
        return _all_go_on(callback.on_checkpoint(name, env_steps) for callback in self.callbacks)


class EveryRecord(Callback):
    """A plain function called with every record, training and evaluation lines alike."""

    def __init__(self, function: Callable[[Record], bool | None]) -> None:
        self.function = function

    def on_log(self, record: Record) -> bool | None:
        return self.function(record)

    def on_evaluation(self, record: Record) -> bool | None:
        return self.function(record)


def _all_go_on(answers: Any) -> bool:
    """Every callback hears the event (a list, not a short-circuit), and any False stops."""
    return all([answer is not False for answer in answers])


CallbackLike = Callback | Callable[[Record], bool | None] | Sequence[Callback] | None


def as_callback(callback: CallbackLike) -> Callback | None:
    """A `Callback` from what `learn(callback=...)` accepts: one, a list of them, or a function."""
    if callback is None or isinstance(callback, Callback):
        return callback
    if callable(callback):
        return EveryRecord(callback)
    if isinstance(callback, Sequence) and all(isinstance(item, Callback) for item in callback):
        return CallbackList(callback)
    raise TypeError(
        f"callback must be a distdqn.Callback, a list of them or a function of a record, got {type(callback).__name__}"
    )


class CallbackSink:
    """The loop's side of a callback: a metrics sink that sends each record to its hook, and
    remembers whether any hook asked to stop."""

    def __init__(self, callback: Callback) -> None:
        self.callback = callback
        self.stop_requested = False

    def write(self, record: Record) -> None:
        hook = self.callback.on_evaluation if "eval_return_mean" in record else self.callback.on_log
        self._heard(hook(record))

    def checkpoint(self, name: str, env_steps: int) -> None:
        self._heard(self.callback.on_checkpoint(name, env_steps))

    def close(self) -> None:
        return None

    def _heard(self, answer: bool | None) -> None:
        if answer is False:
            self.stop_requested = True
