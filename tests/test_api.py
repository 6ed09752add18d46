"""The Python API (discover.run_campaign, evaluate, load_optimizer) and the user-task extension
point (register_task, load_task_module, evaluation.task_modules), run for real: sandbox workers,
the run cache and a tiny campaign on examples/custom_task.py."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

import archive
import discover
from discover.config import load_config
from discover.errors import UserError
from sandbox.references import reference_source, with_hparams
from sandbox.tasks import (BUILTIN_TASKS, TASK_CLASSES, Task, TaskModuleError, get_task, load_task_module,
                           register_task, task_module_of)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = str(REPO / "examples" / "custom_task.py")
TINY_EVAL = {"steps_scale": 0.1, "lr_grid": [1e-3, 1e-2, 0.1], "screen": False, "heldout": False, "workers": 2,
             "selection_seeds": [0, 1], "measure_seeds": [100], "confirm_seeds": [200], "long_horizon_scale": 1.0}


@pytest.fixture(autouse=True)
def private_run_cache(tmp_path_factory, monkeypatch):
    # One run cache for this module: baselines computed once, never the user's cache.
    monkeypatch.setenv("DISCOVER_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "run-cache"))


@pytest.fixture(autouse=True)
def restore_task_registry():
    # Tasks registered here must not leak into other test modules (e.g. `discover tasks` listings).
    import sandbox.tasks as tasks

    saved = [(d, dict(d)) for d in (tasks.TASK_CLASSES, tasks._TASK_MODULE, tasks._LOADED, tasks._MODULE_ROOT)]
    yield
    for registry, before in saved:
        registry.clear()
        registry.update(before)
    tasks._task.cache_clear()


def test_api_is_importable_from_the_top_level_package():
    from archive.export import load_optimizer

    assert discover.load_optimizer is load_optimizer  # re-exported, not a second implementation
    assert discover.register_task is register_task and discover.Task is Task
    assert callable(discover.run_campaign) and callable(discover.evaluate)
    assert discover.__version__.count(".") >= 1
    with pytest.raises(AttributeError):
        discover.no_such_name  # noqa: B018


def test_example_module_registers_its_task_and_its_variants_differ():
    names = load_task_module(EXAMPLE)
    assert names == ["wave_mlp"] and load_task_module(EXAMPLE) == names  # loading twice changes nothing
    assert "wave_mlp" not in BUILTIN_TASKS and task_module_of("wave_mlp") == {"ref": EXAMPLE, "path": None}
    assert task_module_of("mlp_digits") is None
    task, other = get_task("wave_mlp"), get_task("wave_mlp@1")
    assert task.family == "mlp" and task.key == "wave_mlp" and other.key == "wave_mlp@1"
    assert task.settings != other.settings or get_task("wave_mlp@2").settings != task.settings
    params = task.init_params(0)
    loss = task.loss(params, task.batch(1, 0))
    assert loss.ndim == 0 and float(loss) > 0


def _write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


TASK_BODY = '''
    import torch
    from sandbox.tasks import Task, register_task

    @register_task
    class {cls}(Task):
        name = "{name}"
        version = 1
        steps = 50
        schedule = "constant"
        description = "a bowl"
        family = "{family}"
        loss_name = "loss"
        test_metric_name = "dist"
        higher_is_better = False
        stochastic = False
        default_device_ok = False

        def init_params(self, seed):
            return {{"x": torch.ones(3)}}

        def loss(self, params, batch):
            return (params["x"] ** 2).sum()

        def batch(self, step, seed):
            return {{}}

        def eval_batch(self):
            return {{}}

        def val_batch(self):
            return {{}}

        def test_metric(self, params, seed):
            return float(params["x"].norm())
'''


def test_a_module_by_name_is_found_by_workers_through_its_root(tmp_path, monkeypatch):
    package = tmp_path / "mytasks_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    _write(package / "bowls.py", TASK_BODY.format(cls="Bowl", name="bowl_by_name", family="classical"))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_task_module("mytasks_pkg.bowls") == ["bowl_by_name"]
    assert task_module_of("bowl_by_name") == {"ref": "mytasks_pkg.bowls", "path": str(tmp_path.resolve())}


@pytest.mark.parametrize("body, message", [
    (TASK_BODY.format(cls="Bad", name="Bad-Name", family="mlp"), "must be lowercase"),
    (TASK_BODY.format(cls="Fam", name="fam_task", family="martian"), "family 'martian' is not one of"),
    (TASK_BODY.format(cls="Clash", name="mlp_digits", family="mlp"), "already taken"),
    ("import torch\n", "registers no task"),
    ("raise RuntimeError('boom\\nsecond line')\n", "failed to import: RuntimeError: boom"),
    ("from sandbox.tasks import register_task\nregister_task(int)\n", "not a concrete subclass"),
])
def test_bad_task_modules_fail_in_one_line(tmp_path, body, message):
    path = _write(tmp_path / "tasks_bad.py", body)
    with pytest.raises(TaskModuleError, match=message) as info:
        load_task_module(path)
    assert "\n" not in str(info.value)
    assert TASK_CLASSES["mlp_digits"].__module__ == "sandbox.tasks.mlp"  # a clash replaces nothing


def test_missing_module_file_and_name():
    with pytest.raises(TaskModuleError, match="no such file"):
        load_task_module("nowhere/tasks.py")
    with pytest.raises(TaskModuleError, match="no such module"):
        load_task_module("no_such_module_xyz")


def test_config_loads_task_modules_and_defaults_the_tiers_to_their_variants(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_config(overrides=[{"evaluation": {"task_modules": ["examples/custom_task.py"], "tasks": ["wave_mlp"]}}])
    assert cfg.evaluation.task_modules == [EXAMPLE]  # absolute: workers run elsewhere
    assert cfg.evaluation.validation_tasks == ["wave_mlp@1"] and cfg.evaluation.test_tasks == ["wave_mlp@2"]
    named = load_config(overrides=[{"evaluation": {"task_modules": [EXAMPLE], "tasks": ["wave_mlp"],
                                                   "validation_tasks": ["mlp_digits@1"]}}])
    assert named.evaluation.validation_tasks == ["mlp_digits@1"] and named.evaluation.test_tasks == ["wave_mlp@2"]
    builtin = load_config(overrides=[{"evaluation": {"tasks": ["mlp_digits"]}}])
    assert builtin.evaluation.validation_tasks == []  # built-in searches keep the built-in tiers
    with pytest.raises(UserError, match=r"evaluation.task_modules.*no such file"):
        load_config(overrides=[{"evaluation": {"task_modules": ["missing_tasks.py"]}}])


def test_seed_programs_are_checked_before_the_campaign_starts(tmp_path):
    good = _write(tmp_path / "my_seed.py", reference_source("adam"))
    broken = _write(tmp_path / "broken.py", "def update(grad):\n    return grad\n")
    cfg = load_config(overrides=[{"search": {"seed_programs": ["adamw", good]}}])
    assert cfg.search.seed_programs == ["adamw", good]
    for entry, message in [(str(tmp_path / "absent.py"), "no such file"), (broken, "breaks the program contract"),
                           (f"{tmp_path}:3", "seed program"), ("adamx", "unknown seed program 'adamx'")]:
        with pytest.raises(UserError, match=message) as info:
            load_config(overrides=[{"search": {"seed_programs": [entry]}}])
        assert "\n" not in str(info.value)


def test_evaluate_takes_source_text_files_and_references_alike(tmp_path):
    path = _write(tmp_path / "candidate.py", reference_source("adam"))
    kwargs = dict(tasks=["wave_mlp"], task_modules=[EXAMPLE], seeds=[100], steps_scale=0.1, workers=2)
    by_name = discover.evaluate("adam", **kwargs)["search"]
    by_file = discover.evaluate(path, **kwargs)["search"]
    by_text = discover.evaluate(reference_source("adam"), **kwargs)["search"]
    assert by_name.failure is None and by_name.tasks["wave_mlp"].status == "ok"
    assert math.isfinite(by_name.fitness) and by_name.fitness > 0
    assert by_name.fitness == by_file.fitness == by_text.fitness  # one program, one score (the run cache)
    # Tuned AdamW tunes its weight decay (0.01 or none) beside its LR: AdamW at its default decay
    # cannot beat it, and the better of the two decays is tuned AdamW itself (the same seeds).
    adamw = discover.evaluate("adamw", **kwargs)["search"]
    no_decay = discover.evaluate(with_hparams(reference_source("adamw"), {"weight_decay": 0.0}), **kwargs)["search"]
    assert adamw.fitness <= 1.05 and no_decay.fitness <= 1.05
    assert max(adamw.fitness, no_decay.fitness) == pytest.approx(1.0, abs=0.05)
    failed = discover.evaluate("def update(grad):\n    return grad\n", **kwargs)["search"]
    assert failed.failure is not None and failed.failure[0] == "invalid_code"


@pytest.mark.parametrize("kwargs, message", [
    ({"tiers": ["nope"]}, "unknown tier 'nope'"),
    ({"tiers": ["search", "test"], "tasks": ["mlp_digits"]}, "a single tier"),
    ({"tasks": ["no_such_task"]}, "no task 'no_such_task'"),
    ({"seeds": 0}, "1..16"),
    ({"task_modules": ["absent.py"]}, "no such file"),
])
def test_evaluate_rejects_bad_input_in_one_line(kwargs, message):
    with pytest.raises(UserError, match=message):
        discover.evaluate("adamw", **kwargs)
    with pytest.raises(UserError, match="no such"):
        discover.evaluate("absent_candidate.py")


def test_tiny_campaign_on_a_user_task_through_the_api(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    seed_file = _write(tmp_path / "adam_copy.py", reference_source("adam").replace('"""', '"""My seed: ', 1))
    events = []
    summary = discover.run_campaign({
        "name": "api", "output_dir": str(tmp_path / "runs"), "seed": 1,
        "budget": {"max_evaluations": 2},
        "evaluation": {**TINY_EVAL, "task_modules": ["examples/custom_task.py"], "tasks": ["wave_mlp"]},
        "search": {"seed_programs": ["adamw", seed_file], "in_flight": 2},
    }, on_event=events.append)
    assert summary.status == "finished" and summary.spend["evaluations"] == 2
    assert any(e.kind == "evaluated" for e in events)
    with archive.open(summary.directory) as store:
        seeds = {p.name: p for p in store.programs() if p.proposer == "reference"}
        assert set(seeds) == {"adamw", "adam_copy"}
        assert all(p.status == "evaluated" and "wave_mlp" in p.scores for p in seeds.values())
        copy_id = seeds["adam_copy"].id
    saved = (summary.directory / "config.toml").read_text()
    assert 'validation_tasks = ["wave_mlp@1"]' in saved and EXAMPLE in saved
    # An archived program seeds the next campaign, checked at load time.
    cfg = load_config(overrides=[{"search": {"seed_programs": [f"{summary.directory}:{copy_id}"]}}])
    assert cfg.search.seed_programs == [f"{summary.directory}:{copy_id}"]
    with pytest.raises(UserError, match="seed program"):
        load_config(overrides=[{"search": {"seed_programs": [f"{summary.directory}:9999"]}}])
    archived = discover.evaluate(f"{summary.directory}:{copy_id}", tasks=["wave_mlp"], seeds=[100], steps_scale=0.1,
                                 workers=2)["search"]
    assert archived.failure is None and archived.tasks["wave_mlp"].status == "ok"
