"""Soak: train on the Ray runtime for a long while and watch every process's memory.

Starts `distdqn train` (CartPole preset, embedded Ray cluster, 2 actors, run without a step limit)
and once a minute reads the resident memory (VmRSS) of the driver and of every process below
it: each role (named from RUN_DIR/placement.json) and Ray's own processes. Replay must stay
within its capacity and nothing else may keep growing (RLlib's Ape-X leaked, ray#5977). Ends the
run with SIGTERM and prints a Markdown table of RSS per minute.

    python benchmarks/soak.py [--minutes 30] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def _descendants(root: int) -> list[int]:
    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += tree.get(pid, [])
    return found


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _name(pid: int, roles: dict[int, str], driver: int) -> str:
    if pid == driver:
        return "driver"
    if pid in roles:
        return roles[pid]
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return str(pid)
    return Path(command).name.removeprefix("ray::") or str(pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp(prefix="distdqn-soak-")) / "run"
    overrides = ["placement.num_actors=2", "logging.progress=false", "logging.tensorboard=false", *args.overrides]
    command = [
        sys.executable,
        "-m",
        "distdqn",
        "train",
        "--run-dir",
        str(run_dir),
        "--runtime",
        "ray",
        "--total-steps",
        str(10**12),
    ]
    command += [part for override in overrides for part in ("--set", override)]
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples: list[dict[str, float]] = []
    replay: list[tuple[int, int]] = []
    started = time.monotonic()
    for minute in range(1, args.minutes + 1):
        time.sleep(max(0.0, started + 60 * minute - time.monotonic()))
        placement = json.loads((run_dir / "placement.json").read_text())
        roles = {where["pid"]: name for name, where in placement.items()}
        sample: dict[str, float] = {}
        for pid in _descendants(driver.pid):
            rss = _rss_mb(pid)
            if rss is not None:
                name = _name(pid, roles, driver.pid)
                sample[name] = sample.get(name, 0.0) + rss
        samples.append(sample)
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        last = next(json.loads(line) for line in reversed(lines) if "replay_size" in line)
        replay.append((last["env_steps"], last["replay_size"]))
        print(
            f"minute {minute}: {sum(sample.values()):.0f} MB in {len(sample)} kinds of process, "
            f"env steps {last['env_steps']}, replay {last['replay_size']}",
            flush=True,
        )
    driver.send_signal(signal.SIGTERM)
    driver.wait(timeout=120)
    shown = sorted({name for sample in samples for name in sample})
    marks = sorted({0, len(samples) // 4, len(samples) // 2, len(samples) - 1})
    print("\n| process | " + " | ".join(f"min {m + 1} MB" for m in marks) + " | growth, first half -> end |")
    print("|---|" + "---|" * (len(marks) + 1))
    for name in shown + ["total"]:
        values = [sum(s.values()) if name == "total" else s.get(name, 0.0) for s in samples]
        half = values[len(values) // 2]
        print(f"| {name} | " + " | ".join(f"{values[m]:.0f}" for m in marks) + f" | {values[-1] - half:+.0f} |")
    print(f"\nreplay (env steps, sampleable transitions) at each mark: {[replay[m] for m in marks]}")
    print(f"driver exit code after SIGTERM: {driver.returncode}")


if __name__ == "__main__":
    main()
