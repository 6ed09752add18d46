"""The eval/baselines/tasks/run commands as a user types them: output, JSON, and bad input
(one clear line, exit code 2, never a traceback)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from discover.cli import app, main

runner = CliRunner()


@pytest.fixture(autouse=True)
def private_run_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DISCOVER_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cli-run-cache"))


def run_main(argv, monkeypatch, capsys) -> tuple[int, str, str]:
    """Run the console-script entry point (which maps user errors to exit code 2)."""
    monkeypatch.setattr("sys.argv", ["discover", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_tasks_lists_tiers_families_and_targets():
    result = runner.invoke(app, ["tasks", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    tiers = {t.split("@")[0] for r in rows for t in r["tiers"]}
    assert tiers == {"search", "validation", "test"} and all(r["steps"] > 0 for r in rows)
    assert all(r["family"] and r["val_metric"] for r in rows)
    # a task in no tier says why (deep_linear's transient validation value, for one)
    assert all(bool(r["untiered"]) == (not r["tiers"]) for r in rows)
    assert "transient" in next(r["untiered"] for r in rows if r["name"] == "deep_linear")
    assert all(r["target"] is None for r in rows)  # nothing computed in this private cache yet
    runner.invoke(app, ["baselines", "--task", "rosenbrock", "--steps-scale", "0.05", "--workers", "1", "--json"])
    rows = json.loads(runner.invoke(app, ["tasks", "--json"]).output)
    # targets are for the full budget: a 5% run does not fill them in
    assert all(r["target"] is None for r in rows)
    table = runner.invoke(app, ["tasks"])
    assert table.exit_code == 0 and "search" in table.output and "families" in table.output


def test_eval_prints_a_table_and_json(tmp_path):
    args = ["eval", "sgd_momentum", "--task", "noisy_quadratic", "--steps-scale", "0.2", "--workers", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "noisy_quadratic" in result.output and "fitness" in result.output
    result = runner.invoke(app, [*args, "--json"])
    data = json.loads(result.output)
    task = data["tiers"]["search"]["tasks"]["noisy_quadratic"]
    assert set(task["vs_baselines"]) == {"adamw", "adam", "sgd_momentum", "lion"}
    assert task["vs_baselines"]["sgd_momentum"] == pytest.approx(1.0)  # itself, same runs
    assert task["train_score"] > 0 and task["target"] > 0 and task["objective"] == "val"
    assert data["verdict"] is None  # the validation tier was not scored


def test_baselines_table_comes_from_the_cache_the_second_time():
    args = ["baselines", "--task", "noisy_quadratic", "--steps-scale", "0.2", "--workers", "1", "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    table = json.loads(first.output)
    assert table["noisy_quadratic"]["adamw"]["score"] == pytest.approx(1.0)
    second = runner.invoke(app, args)
    assert json.loads(second.output) == table


@pytest.mark.parametrize("argv, message", [
    (["eval", "no_such_program"], "no such candidate file"),
    (["eval", "no/such/campaign:3"], "no archive at"),
    (["eval", "adamw", "--suite", "bogus"], "unknown tier"),
    (["eval", "adamw", "--tier", "heldout"], "became the test tier"),
    (["eval", "adamw", "--task", "bogus"], "unknown task"),
    (["eval", "adamw", "--task", "mlp_digits@x"], "must be a non-negative integer"),
    (["eval", "adamw", "--tier", "search", "--tier", "test", "--task", "mlp_digits"], "one tier"),
    (["baselines", "--tier", "nope"], "unknown tier"),
    (["run", "--set", 'evaluation.tasks=["mlp_digits@x"]'], "must be a non-negative integer"),
    (["run", "--set", 'evaluation.validation_tasks=["nope@1"]'], "unknown task(s) nope"),
    (["run", "--set", "evaluation.bogus=1"], "unknown field `evaluation.bogus`"),
    (["run", "--set", "evaluation.selection_seeds=[1]"], "at least two selection seeds"),
    (["run", "--preset", "huge"], "unknown preset"),
    (["run", "--resume", "/no/such/campaign"], "not a campaign directory"),
    (["run", "--device", "cuda:7"], "device"),
])
def test_bad_input_is_one_line_and_exit_code_2(argv, message, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(argv, monkeypatch, capsys)
    assert code == 2
    assert message in err and "Traceback" not in err + out


def test_a_forbidden_program_is_rejected_with_its_line(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text('HPARAMS = {"lr": 0.1}\ndef init(param):\n    return {}\n'
                   'def update(grad, param, state, step, hp):\n    return grad.__class__, {}\n')
    code, out, err = run_main(["eval", str(bad)], monkeypatch, capsys)
    assert code == 2 and "line 5" in err and "__class__" in err


def test_run_from_the_cli_writes_a_campaign_and_a_json_summary(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = 0
    argv = ["run", "--max-evaluations", "2", "--workers", "1", "--json", "--output-dir", str(tmp_path / "c"),
            "--set", 'evaluation.tasks=["noisy_quadratic"]', "--set", 'evaluation.validation_tasks=["noisy_quadratic@1"]', "--set", "evaluation.steps_scale=0.2",
            "--set", "evaluation.lr_grid=[0.001, 0.01, 0.1]", "--set", 'search.seed_programs=["adamw"]']
    monkeypatch.setattr("sys.argv", ["discover", *argv])
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert code in (0, None), err
    summary = json.loads(out)
    assert summary["spend"]["evaluations"] == 2 and "evaluation budget" in summary["stop_reason"]
    assert (tmp_path / "c" / "latest" / "archive.db").exists()
    assert (tmp_path / "c" / "latest" / "config.toml").exists()
    # an archived program is evaluated by reference, as it is exported
    monkeypatch.setattr("sys.argv", ["discover", "eval", f"{tmp_path / 'c' / 'latest'}:1", "--task", "noisy_quadratic",
                                     "--steps-scale", "0.2", "--workers", "1", "--json"])
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None)
    scored = json.loads(capsys.readouterr().out)
    # program 1 is the seeded adamw: against itself it is 1.0 within its own seed noise
    assert scored["tiers"]["search"]["tasks"]["noisy_quadratic"]["vs_baselines"]["adamw"] == pytest.approx(1.0, abs=0.25)
