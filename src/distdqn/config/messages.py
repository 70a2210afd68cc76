"""Error messages about config values: values quoted short, and unknown keys answered with the
fields they were probably meant to be (`suggest_field`, which also knows Stable-Baselines3's and
CleanRL's names: `learning_rate` is `algorithm.lr`)."""

from __future__ import annotations

import difflib
import functools
from typing import Any

from pydantic import BaseModel, ValidationError

from distdqn.config.sections import is_section
from distdqn.config.tree import Config


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


def short_text(text: str, limit: int = 200) -> str:
    """A message quoted from a parser or a library, cut to its first line and `limit` characters."""
    lines = str(text).strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


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


@functools.cache
def field_paths() -> tuple[str, ...]:
    """Every field of the config tree, dotted (`algorithm.lr`, `placement.actor.num_cpus`)."""

    def walk(model: type[BaseModel], prefix: str) -> list[str]:
        paths = []
        for name, field in model.model_fields.items():
            if is_section(field.annotation):
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


def dotted(parts: Any) -> str:
    """A field's place as one dotted key. A key from a file may hold a newline or be long: such a
    key is quoted, cut short, as a value is."""
    return ".".join(
        str(part) if str(part).isprintable() and len(str(part)) <= 80 else short_repr(part) for part in parts
    )


def format_validation_error(error: ValidationError, origin: str) -> str:
    """Pydantic's first error as one line: where (the origin and the field), what, and the value."""
    first = error.errors()[0]
    field = dotted(first["loc"])
    where = f"{origin}: {field}" if field else origin
    if first["type"] == "extra_forbidden":
        return f"{where}: unknown field{suggest_field('.'.join(map(str, first['loc'])))}"
    message = short_text(" ".join(first["msg"].removeprefix("Value error, ").splitlines()), 300)
    # a whole-section check names its values itself; echoing the section would bury the message
    if "input" in first and first["type"] != "model_type" and not isinstance(first["input"], dict):
        return f"{where}: {message} (got {short_repr(first['input'])})"
    return f"{where}: {message}"
