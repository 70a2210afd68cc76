"""The figures of docs/experiments.md, drawn from the measurements the benchmarks wrote.

Inputs (in `benchmarks/results/`, one file per experiment, as the benchmark printed them):
* `recommend.json`: Recommend-v0's returns per policy and catalog size, with their 95% intervals
  (`recommend_baselines.py`'s table);
* `model_split.jsonl`: `model_split.py`'s JSON lines;
* `highway_side_by_side.jsonl`: `highway_side_by_side.py`'s JSON lines (one per run).

    python benchmarks/plot_experiments.py            # writes docs/img/exp-*.png
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).parent / "results"
IMAGES = Path(__file__).parents[1] / "docs" / "img"


def _lines(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (RESULTS / name).read_text().splitlines() if line.startswith("{")]


def recommend() -> None:
    """Return per session by policy, one group of bars per catalog size, with 95% intervals."""
    table = json.loads((RESULTS / "recommend.json").read_text())
    sizes = list(table)
    policies = list(dict.fromkeys(policy for size in sizes for policy in table[size]))
    figure, axes = plt.subplots(figsize=(7.5, 4.2))
    width = 0.8 / len(policies)
    for p, policy in enumerate(policies):
        label: str | None = policy
        for s, size in enumerate(sizes):
            if policy not in table[size]:
                continue
            mean, low, high = table[size][policy]
            x = s + (p - (len(policies) - 1) / 2) * width
            axes.bar(x, mean, width, color=f"C{p}", label=label)
            label = None
            axes.errorbar(x, mean, [[mean - low], [high - mean]], color="black", capsize=3)
    axes.set_xticks(range(len(sizes)), [f"{int(size):,} items" for size in sizes])
    axes.set_ylabel("engagement per session")
    axes.set_title("Recommend-v0: return with 95% interval")
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    figure.tight_layout()
    figure.savefig(IMAGES / "exp-recommend.png", dpi=110)


def model_split() -> None:
    """Updates/s and peak learner memory against catalog size, one line per learner layout."""
    rows = _lines("model_split.jsonl")
    figure, (speed, memory) = plt.subplots(1, 2, figsize=(9, 3.6))
    layouts = sorted({(row["head_shards"], row["threads"]) for row in rows})
    for shards, threads in layouts:
        mine = sorted(
            (row for row in rows if (row["head_shards"], row["threads"]) == (shards, threads)),
            key=lambda row: row["num_items"],
        )
        items = [row["num_items"] for row in mine]
        label = f"K = {shards}, {threads} thread{'s' if threads > 1 else ''} per learner"
        speed.plot(items, [row["updates_per_s"] for row in mine], marker="o", label=label)
        memory.plot(items, [row["peak_rss_gib"] for row in mine], marker="o", label=label)
    for axes, title in ((speed, "learner updates/s"), (memory, "peak learner RSS (GiB)")):
        axes.set_xscale("log")
        axes.set_xlabel("items (actions)")
        axes.set_title(title)
    speed.set_yscale("log")
    speed.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(IMAGES / "exp-model-split.png", dpi=110)


def highway() -> None:
    """Greedy return against env steps, mean over seeds with each seed faint, per system."""
    runs = defaultdict(list)
    for run in _lines("highway_side_by_side.jsonl"):
        runs[run["system"]].append(run)
    figure, axes = plt.subplots(figsize=(6, 3.6))
    for color, (system, system_runs) in enumerate(runs.items()):
        for run in system_runs:
            axes.plot([e[0] for e in run["evals"]], [e[1] for e in run["evals"]], color=f"C{color}", alpha=0.25)
        steps = [e[0] for e in system_runs[0]["evals"]]
        means = [statistics.mean(run["evals"][i][1] for run in system_runs) for i in range(len(steps))]
        name = {"sb3": "Stable-Baselines3 (the env's script)", "distdqn": "distdqn (preset)"}.get(system, system)
        axes.plot(steps, means, color=f"C{color}", marker="o", label=f"{name}, {len(system_runs)} seeds")
    axes.set_xlabel("env steps")
    axes.set_ylabel("greedy return (10 episodes)")
    axes.set_title("highway-fast-v0")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(IMAGES / "exp-highway.png", dpi=110)


if __name__ == "__main__":
    for draw in (recommend, model_split, highway):
        draw()
