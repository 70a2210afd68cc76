"""Hyperparameter search spaces as typed on the command line: `algorithm.lr=loguniform(1e-4,3e-3)`.

A spec names a config field and how to draw it: `uniform(a,b)`, `loguniform(a,b)`,
`randint(a,b)` (integers a..b, both included), `choice(v,...)` (drawn at random) or `grid(v,...)`
(every value, each in its own trials). Values are YAML, so `choice([64,64],[256,256])` and
`choice(true,false)` work. Ray Tune draws the values; this module only parses, validates and
turns a drawn (or PBT-perturbed) value back into one the config accepts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from distdqn.config import INT64_MAX, Config, YamlRefused, load_yaml, short_repr, suggest_field
from distdqn.errors import UserError

Kind = Literal["uniform", "loguniform", "randint", "choice", "grid"]
KINDS: tuple[Kind, ...] = ("uniform", "loguniform", "randint", "choice", "grid")
_SPEC = re.compile(r"^\s*([a-z]+)\s*\((.*)\)\s*$", re.DOTALL)


@dataclass(frozen=True)
class ParamSpec:
    key: str
    """Config field, dotted (`algorithm.lr`)."""
    kind: Kind
    values: tuple[Any, ...]
    """(low, high) for the ranges; the listed values for choice and grid."""

    @property
    def is_range(self) -> bool:
        return self.kind in ("uniform", "loguniform", "randint")

    def candidates(self) -> tuple[Any, ...]:
        """Values that together show whether every draw fits the config: a range's ends, or
        every listed value."""
        return self.values

    def contains(self, value: Any) -> bool:
        if not self.is_range:
            return value in self.values
        return _is_number(value) and self.values[0] <= value <= self.values[1]

    def search_domain(self) -> Any:
        """How Tune draws the starting value of each trial."""
        from ray import tune

        low, high = self.values[0], self.values[-1]
        if self.kind == "uniform":
            return tune.uniform(low, high)
        if self.kind == "loguniform":
            return tune.loguniform(low, high)
        if self.kind == "randint":
            return tune.randint(low, high + 1)  # Tune's upper end is excluded
        if self.kind == "grid":
            return tune.grid_search(list(self.values))
        return tune.choice(list(self.values))

    def mutation(self) -> Any:
        """What PBT perturbs with: a range is multiplied by 0.8 or 1.2 (or redrawn); a list of
        values shifts to a neighbouring value (or is redrawn)."""
        if self.is_range:
            return self.search_domain()
        return list(self.values)

    def fit(self, value: Any) -> Any:
        """A drawn or perturbed value as the config takes it: a PBT-perturbed range value is
        held within the range (1.2 x the top of `lr`'s range would leave it), and integer
        fields get integers."""
        if not self.is_range:
            return value
        low, high = self.values
        if self.kind == "randint":  # clamped as an integer: float(2**63 - 1) is 2**63, past int64
            return min(max(int(round(value)), low), high)
        return min(max(float(value), low), high)


def parse_param(text: str) -> ParamSpec:
    """`key=kind(args)` -> ParamSpec, or a one-line UserError naming what is wrong."""
    key, sep, spec = text.partition("=")
    key = key.strip()
    match = _SPEC.match(spec)
    if not sep or not key or match is None:
        raise UserError(f"--param expects KEY=KIND(ARGS) with KIND one of {', '.join(KINDS)}, got {short_repr(text)}")
    _check_field("--param", key)
    kind, inner = match.group(1), match.group(2)
    if kind not in KINDS:
        raise UserError(f"--param {key}: unknown kind {short_repr(kind)}; use one of {', '.join(KINDS)}")
    try:
        values = [_number_or_text(value) for value in load_yaml(f"[{inner}]")]
    except YamlRefused as error:
        raise UserError(f"--param {key}: {error}") from None
    except (yaml.YAMLError, ValueError):  # ValueError: an integer of more digits than Python converts
        raise UserError(f"--param {key}: cannot read the values {short_repr(inner)}") from None
    if kind in ("choice", "grid"):
        if not values:
            raise UserError(f"--param {key}: {kind}() needs at least one value")
        return ParamSpec(key, kind, tuple(_hashable(value) for value in values))
    if len(values) != 2 or not all(_is_number(value) for value in values):
        raise UserError(f"--param {key}: {kind}(low,high) needs two numbers, got {short_repr(inner)}")
    low, high = values
    got = f"got {short_repr(inner)}"
    if kind == "randint" and not all(isinstance(value, int) for value in values):
        raise UserError(f"--param {key}: randint(low,high) needs two integers, {got}")
    if kind == "randint" and not -INT64_MAX - 1 <= low <= high <= INT64_MAX:
        # Ray draws with NumPy's int64 (65 lines of Ray's error, after 26 s)
        raise UserError(f"--param {key}: randint(low,high) needs ends within int64, {got}")
    if kind != "randint" and not (_fits_float(low) and _fits_float(high) and math.isfinite(float(high) - float(low))):
        raise UserError(f"--param {key}: {kind}(low,high) spans more than a float holds, {got}")
    if not low < high:
        raise UserError(f"--param {key}: {kind}(low,high) needs low < high, {got}")
    if kind == "loguniform" and low <= 0:
        raise UserError(f"--param {key}: loguniform(low,high) needs low > 0, {got}")
    return ParamSpec(key, kind, (low, high))


def parse_start(text: str) -> dict[str, Any]:
    """`key=value;key=value` -> the values of one of the first trials (`--start`)."""
    start: dict[str, Any] = {}
    for assignment in filter(None, (part.strip() for part in text.split(";"))):
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--start expects KEY=VALUE[;KEY=VALUE...], got {short_repr(text)}")
        _check_field("--start", key.strip())
        try:
            start[key.strip()] = _hashable(_number_or_text(load_yaml(raw)))
        except YamlRefused as error:
            raise UserError(f"--start {key.strip()}: {error}") from None
        except (yaml.YAMLError, ValueError):
            raise UserError(f"--start {key.strip()}: cannot read the value {short_repr(raw)}") from None
    return start


def _check_field(flag: str, key: str) -> None:
    """A key that names no field is refused here, with the field it was probably meant to be."""
    if not field_exists(key):
        shown = key if key.isprintable() and len(key) <= 80 else short_repr(key)
        raise UserError(f"{flag} {shown}: unknown config field{suggest_field(key)}")


def _number_or_text(value: Any) -> Any:
    """YAML 1.1 reads `1e-3` (no dot) as text; here it is the number everyone means."""
    if not isinstance(value, str):
        return value
    for parse in (int, float):
        try:
            return parse(value)
        except ValueError:
            pass
    return value


def _is_number(value: Any) -> bool:
    # an int is finite, and math.isfinite cannot take one past a float's range
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)


def _fits_float(value: float) -> bool:
    try:
        float(value)
    except OverflowError:  # an integer past 1.8e308
        return False
    return True


def _hashable(value: Any) -> Any:
    """Lists become tuples: PBT looks values up in the list of choices."""
    return tuple(_hashable(item) for item in value) if isinstance(value, list) else value


def plain(value: Any) -> Any:
    """A value as JSON and `--set` write it (tuples as lists, NumPy scalars as Python's)."""
    if isinstance(value, (tuple, list)):
        return [plain(item) for item in value]
    return value.item() if hasattr(value, "item") else value


def field_exists(key: str) -> bool:
    """Whether `key` names a field (not a section) of the config tree."""
    fields: dict[str, Any] = Config.model_fields
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if part not in fields:
            return False
        annotation = fields[part].annotation
        nested = getattr(annotation, "model_fields", None)
        if depth == len(parts) - 1:
            return nested is None
        if nested is None:
            return False
        fields = nested
    return False
