"""`distdqn plot` and `distdqn compare` on hand-written run and tune directories (and one real
tiny run): the curves drawn, group means and bands, the tune figure, the table's numbers, errors."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from matplotlib.collections import PolyCollection
from matplotlib.image import imread

from distdqn.cli import main
from distdqn.tools.compare import compare
from distdqn.tools.plots import DPI, plot
from distdqn.tools.runs import align, load_run


def write_run(
    run_dir: Path,
    evaluations: list[tuple[int, float, float]],
    config: dict | None = None,
    tail: str = "",
) -> Path:
    """A run directory as `train` leaves it: a training line before each evaluation line, then
    `tail` (garbage, a partial line)."""
    run_dir.mkdir(parents=True)
    lines = []
    for steps, wall, mean in evaluations:
        lines.append({"env_steps": steps, "updates": steps // 2, "wall_s": wall, "env_steps_per_s": 1.0})
        lines.append({"env_steps": steps, "updates": steps // 2, "wall_s": wall, "eval_return_mean": mean})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines) + tail)
    (run_dir / "config.toml").write_text(tomli_w.dumps(config or {"seed": 0, "algorithm": {"lr": 0.001}}))
    return run_dir


def png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


def curves(fig) -> list[tuple[list[float], list[float]]]:
    return [(list(line.get_xdata()), list(line.get_ydata())) for line in fig.axes[0].get_lines()]


def test_plot_draws_one_line_per_run_and_writes_the_png(tmp_path: Path):
    a = write_run(tmp_path / "a", [(1000, 1.0, 10.0), (2000, 2.5, 50.0), (3000, 4.0, 120.0)])
    b = write_run(tmp_path / "b", [(1001, 1.2, 12.0), (2002, 2.6, 30.0)])
    out = tmp_path / "curves.png"

    fig = plot([a, b], out, title="CartPole")

    assert curves(fig) == [([1000, 2000, 3000], [10.0, 50.0, 120.0]), ([1001, 2002], [12.0, 30.0])]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a", "b"]
    assert not fig.axes[0].collections  # single runs: no bands
    assert fig.axes[0].get_title() == "CartPole"
    width, height = fig.get_size_inches() * DPI
    assert png_size(out) == (round(width), round(height))
    pixels = imread(out)
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 20  # not blank
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left

    by_time = plot([a, b], tmp_path / "time.svg", x="wall_s")
    assert curves(by_time)[0] == ([1.0, 2.5, 4.0], [10.0, 50.0, 120.0])
    assert (tmp_path / "time.svg").read_text().startswith("<?xml")


def test_group_mean_is_the_mean_of_its_runs_on_a_common_grid(tmp_path: Path):
    runs = [
        write_run(tmp_path / "dqn-s0", [(1000, 1, 10.0), (2000, 2, 20.0), (3000, 3, 30.0)]),
        write_run(tmp_path / "dqn-s1", [(1000, 1, 30.0), (2000, 2, 40.0), (3000, 3, 80.0)]),
        write_run(tmp_path / "ddqn-s0", [(1000, 1, 0.0), (2000, 2, 100.0), (4000, 4, 300.0)]),
        write_run(tmp_path / "ddqn-s1", [(1500, 1, 60.0), (2500, 2, 160.0), (3500, 3, 260.0)]),
    ]
    fig = plot(runs, tmp_path / "g.png", groups=["dqn=*/dqn-*", "ddqn=ddqn-*"], band="minmax")
    ax = fig.axes[0]
    (dqn_x, dqn_y), (ddqn_x, ddqn_y) = curves(fig)
    assert dqn_x == [1000, 2000, 3000] and dqn_y == [20.0, 30.0, 55.0]
    # ddqn-s0 is interpolated at ddqn-s1's evaluations and the other way round, where both have run
    assert ddqn_x == [1500, 2000, 2500, 3500]
    assert ddqn_y == pytest.approx([(50 + 60) / 2, (100 + 110) / 2, (150 + 160) / 2, (250 + 260) / 2])
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2
    vertices = bands[0].get_paths()[0].vertices
    for x, low, high in zip(dqn_x, [10, 20, 30], [30, 40, 80], strict=True):
        at_x = vertices[vertices[:, 0] == x][:, 1]
        assert at_x.min() == low and at_x.max() == high
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["dqn (n=2)", "ddqn (n=2)"]
    assert "min to max" in ax.get_legend().get_title().get_text()

    ci = plot(runs[:2], tmp_path / "ci.png", groups=["dqn=*dqn-*"])
    (band,) = ci.axes[0].collections
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() >= 10 and ys.max() <= 80  # a bootstrap interval of the mean lies within the runs
    assert "95% bootstrap CI" in ci.axes[0].get_legend().get_title().get_text()


def test_group_by_config_key_orders_groups_by_value(tmp_path: Path):
    runs = [
        write_run(tmp_path / f"r{i}", [(1000, 1, float(i)), (2000, 2, float(10 * i))], {"algorithm": {"lr": lr}})
        for i, lr in enumerate([3e-4, 1e-3, 3e-4, 1e-4])
    ]
    fig = plot(runs, tmp_path / "g.pdf", group_by=["algorithm.lr"])
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["algorithm.lr=0.0001 (n=1)", "algorithm.lr=0.0003 (n=2)", "algorithm.lr=0.001 (n=1)"]
    assert curves(fig)[1] == ([1000, 2000], [1.0, 10.0])  # mean of r0 (0, 0) and r2 (2, 20)
    assert len(fig.axes[0].collections) == 1  # only the group of two has a band
    assert (tmp_path / "g.pdf").read_bytes().startswith(b"%PDF")


def test_align_interpolates_within_the_shared_range():
    grid, values = align(
        [(np.array([0.0, 10.0, 20.0]), np.array([0.0, 10.0, 20.0])), (np.array([5.0, 15.0]), np.array([1.0, 3.0]))]
    )
    assert grid.tolist() == [5.0, 10.0, 15.0]
    assert values.tolist() == [[5.0, 10.0, 15.0], [1.0, 2.0, 3.0]]


def test_partial_and_garbled_lines_are_skipped(tmp_path: Path):
    run = write_run(
        tmp_path / "crashed",
        [(1000, 1.0, 10.0), (2000, 2.0, 20.0)],
        tail='not json\n[1, 2]\n{"env_steps": true, "wall_s": 1}\n{"env_steps": 2500, "wall_s": 3.0, "eval_ret',
    )
    loaded = load_run(run)
    assert [e.return_mean for e in loaded.evaluations] == [10.0, 20.0]
    assert (loaded.env_steps, loaded.wall_s) == (2000, 2.0)


def test_a_run_without_evaluations_is_left_out_with_a_warning(tmp_path: Path, capsys):
    done = write_run(tmp_path / "done", [(1000, 1.0, 10.0)])
    starting = tmp_path / "starting"
    starting.mkdir()
    (starting / "metrics.jsonl").write_text('{"env_steps": 500, "wall_s": 0.5, "env_steps_per_s": 1000.0}\n')
    out = tmp_path / "p.png"
    assert main(["plot", str(done), str(starting), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"{starting} has no evaluation yet" in captured.err
    assert captured.out.strip() == f"wrote {out}"
    assert out.is_file()

    assert main(["plot", str(starting), "--out", str(out)]) == 2
    assert "no run has an evaluation" in capsys.readouterr().err


def write_tune(tune_dir: Path) -> list[dict]:
    """Two trials under PBT: t0002 is exploited after its 2000-step report and takes t0001's
    weights and a mutated lr; t0001's first evaluation failed (null)."""

    def report(trial: str, steps: int, eval_return: float | None, lr: float, n_step: int) -> dict:
        params = {"algorithm.lr": lr, "algorithm.n_step": n_step}
        return {"trial": trial, "env_steps": steps, "wall_s": steps / 200, "eval_return": eval_return, "params": params}

    reports = [
        report("t0001", 1000, None, 1e-3, 3),
        report("t0002", 1000, 15.0, 1e-4, 1),
        report("t0001", 2000, 90.0, 1e-3, 3),
        report("t0002", 2000, 20.0, 1e-4, 1),
        report("t0001", 3000, 150.0, 1e-3, 3),
        {**report("t0002", 3000, 140.0, 1.2e-3, 3), "restored_from": "t0001"},
    ]
    tune_dir.mkdir()
    lines = [json.dumps({"restored_from": None, **report}) for report in reports]
    (tune_dir / "tune.jsonl").write_text("\n".join(lines) + '\n{"trial": "t0001", "env_st')
    for trial in ("t0001", "t0002"):
        own = [r for r in reports if r["trial"] == trial and r["eval_return"] is not None]
        write_run(tune_dir / "trials" / trial, [(r["env_steps"], r["wall_s"], r["eval_return"]) for r in own])
    (tune_dir / "trials" / "t0003").mkdir()  # started, nothing logged yet
    return reports


def test_tune_dir_plot_has_returns_and_one_step_panel_per_hyperparameter(tmp_path: Path):
    write_tune(tmp_path / "pbt")
    fig = plot([tmp_path / "pbt"], tmp_path / "pbt.png")
    top, lr, n_step = fig.axes
    assert [ax.get_title() for ax in (lr, n_step)] == ["algorithm.lr", "algorithm.n_step"]
    assert fig.get_suptitle() == "pbt"

    returns = [line for line in top.get_lines() if line.get_gid() != "exploit"]
    assert [line.get_label() for line in returns] == ["t0001", "t0002"]
    np.testing.assert_array_equal(returns[0].get_ydata(), [np.nan, 90.0, 150.0])
    assert list(returns[1].get_xdata()) == [1000, 2000, 3000]

    steps = [line for line in lr.get_lines() if line.get_gid() != "exploit"]
    assert all(line.get_drawstyle() == "steps-pre" for line in steps)
    assert list(steps[1].get_xdata()) == [1000, 2000, 3000]
    assert list(steps[1].get_ydata()) == [1e-4, 1e-4, 1.2e-3]
    assert lr.get_yscale() == "log"
    assert list(n_step.get_lines()[1].get_ydata()) == [1, 1, 3]

    # the exploit happened after t0002's 2000-step report: marked there on every panel
    for ax, y in ((top, 20.0), (lr, 1.2e-3), (n_step, 3)):
        (marker,) = [line for line in ax.get_lines() if line.get_gid() == "exploit"]
        assert (list(marker.get_xdata()), list(marker.get_ydata())) == ([2000], [y])
    assert [text.get_text() for text in top.texts] == ["t0001"]


def test_compare_numbers_on_fixtures(tmp_path: Path):
    fast = write_run(tmp_path / "fast", [(1000, 2.0, 100.0), (2000, 4.0, 480.0), (3000, 6.0, 450.0)])
    last_training_line = '{"env_steps": 2500, "wall_s": 5.0}\n'
    slow = write_run(tmp_path / "slow", [(1000, 1.0, 50.0), (2000, 3.0, 200.0)], tail=last_training_line)
    rows = json.loads(compare([fast, slow], 475, as_json=True))
    assert rows == [
        {
            "run": str(fast),
            "final_eval_return": 450.0,
            "best_eval_return": 480.0,
            "env_steps_to_threshold": 2000,
            "wall_s_to_threshold": 4.0,
            "env_steps_per_s": 500.0,
            "env_steps": 3000,
        },
        {
            "run": str(slow),
            "final_eval_return": 200.0,
            "best_eval_return": 200.0,
            "env_steps_to_threshold": None,
            "wall_s_to_threshold": None,
            "env_steps_per_s": 500.0,
            "env_steps": 2500,
        },
    ]
    assert json.loads(compare([fast], None, as_json=True))[0]["env_steps_to_threshold"] is None

    text = compare([fast, slow], 475, as_json=False).splitlines()
    assert text[0].split("  ")[0].strip() == "run" and "env steps to 475" in text[0]
    assert text[1].split() == [str(fast), "450.0", "480.0", "2000", "4.0", "500.0", "3000"]
    assert text[2].split() == [str(slow), "200.0", "200.0", "500.0", "2500"]
    assert len({len(line) for line in text[:2]}) == 1  # right-aligned to the header's width
    assert "\x1b" not in "\n".join(text)


def test_compare_expands_a_tune_dir_to_its_trials(tmp_path: Path, capsys):
    write_tune(tmp_path / "pbt")
    assert main(["compare", str(tmp_path / "pbt"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["run"] for row in rows] == [str(tmp_path / "pbt" / "trials" / t) for t in ("t0001", "t0002")]
    assert [row["best_eval_return"] for row in rows] == [150.0, 140.0]


def test_plot_and_compare_a_real_run(tmp_path: Path, capsys):
    run_dir = tmp_path / "run"
    tiny = ["--total-steps", "600", "--set", "algorithm.learning_starts=100", "--set", "evaluation.every_steps=300"]
    quiet = ["--set", "evaluation.episodes=2", "--set", "logging.tensorboard=false", "--set", "logging.progress=false"]
    assert main(["train", "--env", "CartPole-v1", "--run-dir", str(run_dir), *tiny, *quiet]) == 0
    capsys.readouterr()
    assert main(["compare", str(run_dir), "--json", "--threshold", "1"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["env_steps"] == last["env_steps"] >= 600
    assert row["env_steps_to_threshold"] is not None and row["final_eval_return"] is not None
    assert main(["plot", str(run_dir), "--out", str(tmp_path / "run.png")]) == 0
    assert png_size(tmp_path / "run.png") == (800, 500)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plot", "{tmp}/missing", "--out", "{tmp}/p.png"], "run directory {tmp}/missing does not exist"),
        (["plot", "{tmp}/empty", "--out", "{tmp}/p.png"], "{tmp}/empty has no metrics.jsonl"),
        (["plot", "{tmp}/a", "--out", "{tmp}/p.jpgx"], "unsupported file type '.jpgx'"),
        (["plot", "{tmp}/a", "--out", "{tmp}/p"], "unsupported file type '(none)'"),
        (["plot", "{tmp}/a", "--out", "{tmp}/nodir/p.png"], "directory {tmp}/nodir does not exist"),
        (["plot", "{tmp}/a", "--out", "{tmp}/a/metrics.jsonl/p.png"], "{tmp}/a/metrics.jsonl is not a directory"),
        (["plot", "{tmp}/a", "--out", "{tmp}/p.png", "--group", "oops"], "--group must be NAME=GLOB, got 'oops'"),
        (["plot", "{tmp}/a", "--out", "{tmp}/p.png", "--group", "x=zz*"], "--group 'x=zz*' matches none"),
        (["plot", "{tmp}/a", "{tmp}/b", "--out", "{tmp}/p.png", "--group", "x=a"], "{tmp}/b matches no --group"),
        (["plot", "{tmp}/a", "--out", "{tmp}/p.png", "--group-by", "algorithm.lrr"], "no run's config.toml has"),
        (["plot", "{tmp}/a", "--out", "{tmp}/p.png", "--group-by", "k", "--group", "x=*"], "cannot be combined"),
        (["plot", "{tmp}/pbt", "{tmp}/a", "--out", "{tmp}/p.png"], "tune directory {tmp}/pbt is plotted on its own"),
        (["plot", "{tmp}/far", "{tmp}/a", "--out", "{tmp}/p.png", "--group", "x=*"], "runs share no range"),
        (["compare", "{tmp}/missing"], "run directory {tmp}/missing does not exist"),
        (["compare", "{tmp}/a", "--threshold", "nan"], "--threshold must be a finite number, got nan"),
        (["compare", "{tmp}/emptytune"], "tune directory {tmp}/emptytune has no trial"),
    ],
)
def test_errors_are_one_line_and_exit_2(tmp_path: Path, capsys, args: list[str], message: str):
    write_run(tmp_path / "a", [(1000, 1.0, 10.0)])
    write_run(tmp_path / "b", [(1000, 1.0, 10.0)])
    write_run(tmp_path / "far", [(5000, 5.0, 10.0)])
    (tmp_path / "empty").mkdir()
    write_tune(tmp_path / "pbt")
    (tmp_path / "emptytune").mkdir()
    (tmp_path / "emptytune" / "tune.jsonl").write_text("")
    assert main([arg.format(tmp=tmp_path) for arg in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("distdqn: error: ")
    assert message.format(tmp=tmp_path) in err
    assert not (tmp_path / "p.png").exists()


def test_unwritable_out_is_one_line_and_leaves_no_file(tmp_path: Path, capsys, monkeypatch):
    run = write_run(tmp_path / "a", [(1000, 1.0, 10.0)])
    out = tmp_path / "p.png"
    monkeypatch.setattr("os.access", lambda path, mode: False)  # what a read-only directory says (tests run as root)
    assert main(["plot", str(run), "--out", str(out)]) == 2
    assert f"directory {tmp_path} is not writable" in capsys.readouterr().err
    monkeypatch.undo()

    def refuse(self, fname, **kwargs):
        Path(fname).write_bytes(b"half")
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", refuse)
    assert main(["plot", str(run), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"distdqn: error: cannot write --out {out}: Permission denied\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def upload(local: Path, uri: str) -> str:
    """A copy of a local run or tune directory on fsspec's in-memory object store."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    fs.put(str(local), path, recursive=True)
    return uri


def test_plot_and_compare_read_runs_on_object_storage(tmp_path: Path, capsys):
    """They made `Path("s3://bucket/run")` of a URI, which is `s3:/bucket/run`, and found no run."""
    store = f"memory://distdqn-plots/{tmp_path.name}"
    a = upload(write_run(tmp_path / "a", [(1000, 1.0, 10.0), (2000, 2.0, 30.0)]), f"{store}/runs/a")
    b = upload(write_run(tmp_path / "b", [(1000, 1.0, 20.0), (2000, 2.0, 40.0)]), f"{store}/runs/b")
    write_tune(tmp_path / "pbt")
    pbt = upload(tmp_path / "pbt", f"{store}/pbt")

    assert main(["compare", a, b, pbt, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["run"] for row in rows] == [a, b, f"{pbt}/trials/t0001", f"{pbt}/trials/t0002"]
    assert [row["best_eval_return"] for row in rows] == [30.0, 40.0, 150.0, 140.0]

    out = tmp_path / "p.png"
    assert main(["plot", a, b, "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n" and png_size(out) == (800, 500)
    fig = plot([a, b], out)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a", "b"]
    assert curves(fig) == [([1000, 2000], [10.0, 30.0]), ([1000, 2000], [20.0, 40.0])]
    fig = plot([a, b], out, groups=[f"all={store}/runs/*"])
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["all (n=2)"]
    fig = plot([a, b], out, group_by=["seed"])
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["seed=0 (n=2)"]
    fig = plot([pbt], out)
    assert fig.get_suptitle() == "pbt" and len(fig.axes) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "{store}/missing"], "{store}/missing has no metrics.jsonl (not a run directory)"),
        (["plot", "{store}/missing", "--out", "{tmp}/p.png"], "{store}/missing has no metrics.jsonl"),
        (["plot", "{store}/pbt", "{store}/a", "--out", "{tmp}/p.png"], "(plot {store}/pbt/trials/* to treat"),
    ],
)
def test_errors_about_runs_on_object_storage_name_the_uri(tmp_path: Path, capsys, args: list[str], message: str):
    store = f"memory://distdqn-plots/{tmp_path.name}"
    upload(write_run(tmp_path / "a", [(1000, 1.0, 10.0)]), f"{store}/a")
    write_tune(tmp_path / "pbt")
    upload(tmp_path / "pbt", f"{store}/pbt")
    assert main([arg.format(tmp=tmp_path, store=store) for arg in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("distdqn: error: ")
    assert message.format(tmp=tmp_path, store=store) in err
