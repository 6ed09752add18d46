"""Population batching: several programs in one pass give exactly what each gets alone."""

from __future__ import annotations

import pytest
import torch
from torch.func import vmap

from sandbox.contract import CandidateError, load_program
from sandbox.halving import PRUNED, Schedule
from sandbox.harness import RunConfig, run_candidate
from sandbox.jobs import evaluate_job, evaluate_population_job, run_job
from sandbox.population import run_population, train_population
from sandbox.references import load_reference, reference_source
from sandbox.tasks import get_task
from sandbox.tasks.base import val_steps
from tests.test_harness import DATA_DEPENDENT_IF

torch.set_num_threads(1)  # as in a sandbox worker: bit equality is a claim about this configuration

# Traces and trains for three steps, then fails inside torch (matmul of two vectors' shapes).
CRASHES_AT_STEP_4 = '''
HPARAMS = {"lr": 0.01}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    m = 0.9 * state["m"] + grad
    if step > 3:
        return -hp.lr * matmul(grad, grad), {"m": m}
    return -hp.lr * m, {"m": m}
'''

# Climbs the loss: at the grid's larger learning rates every run is stopped early.
GRADIENT_ASCENT = '''
HPARAMS = {"lr": 0.1}

def init(param):
    return {}

def update(grad, param, state, step, hp):
    return 3.0 * hp.lr * sign(grad) + hp.lr * grad, {}
'''

PROGRAMS = {
    "adamw": reference_source("adamw"),
    "sgd_momentum": reference_source("sgd_momentum"),
    "lion": reference_source("lion"),
    "ascent": GRADIENT_ASCENT,
    "crashes": CRASHES_AT_STEP_4,
    "untraceable": DATA_DEPENDENT_IF.source,  # test_harness's: a Python `if` on a tensor's value
}
# The top learning rates make SGD and AdamW diverge part-way; the others train.
CONFIGS = [RunConfig(lr, seed) for lr in (1e-3, 3e-2, 3.0, 30.0) for seed in (0, 1)]


def run_fields(result):
    """Everything a run reports, for == comparison (NaN compared as its text)."""
    return (result.lr, result.seed, result.status, result.stopped_at, result.batched, repr(result.losses),
            repr(result.initial_loss), result.val_steps, repr(result.val_losses), repr(result.test_metric))


def alone(program, task, configs, steps, **kwargs):
    try:
        return run_candidate(program, task, configs, steps=steps, **kwargs)
    except CandidateError as exc:
        return exc


def assert_identical(population, expected):
    assert len(population) == len(expected)
    for got, want in zip(population, expected):
        if isinstance(want, CandidateError):
            assert isinstance(got, CandidateError)
            assert (got.reason, str(got)) == (want.reason, str(want))
        else:
            assert [run_fields(r) for r in got] == [run_fields(r) for r in want]


# --- bit equality with run_candidate ------------------------------------------------------------


@pytest.mark.parametrize("name, steps", [("rosenbrock", 40), ("mlp_digits", 25), ("noisy_quadratic", 40)])
def test_population_equals_each_program_alone_bit_for_bit(name, steps):
    """Full-batch (rosenbrock) and stochastic tasks (per-seed minibatches); runs that diverge
    part-way, a program whose every run diverges, one that crashes at step 4 after sharing three
    steps, one vmap cannot trace."""
    task = get_task(name)
    programs = [load_program(source) for source in PROGRAMS.values()]
    outcome = train_population(programs, task, CONFIGS, steps=steps, share="independent")
    expected = [alone(p, task, CONFIGS, steps) for p in programs]
    assert_identical(outcome.results, expected)
    assert outcome.independent is True
    assert outcome.shared == [True, True, True, True, False, False]  # the crash and the untraceable ran alone
    by_name = dict(zip(PROGRAMS, outcome.results))
    assert isinstance(by_name["crashes"], CandidateError) and by_name["crashes"].reason == "shape_error"
    assert not any(r.batched for r in by_name["untraceable"])  # run_candidate's sequential fallback
    assert all(r.status != "ok" and r.stopped_at < steps for r in by_name["ascent"] if r.lr >= 3.0)
    statuses = {r.status for key in ("adamw", "sgd_momentum") for r in by_name[key]}
    assert "ok" in statuses and statuses != {"ok"}  # early stopping inside a shared pass was exercised
    assert all(r.batched for key in ("adamw", "sgd_momentum", "lion") for r in by_name[key])


# A grid of six LRs on two seeds: the top ones diverge for some programs before the first rung
# (stopped rows count as worst there), two rungs cut the rest to 3 and then 2 LRs.
HALVING_CONFIGS = [RunConfig(lr, seed) for lr in (1e-4, 1e-3, 1e-2, 0.1, 1.0, 3.0) for seed in (0, 1)]
TWO_RUNGS = Schedule((0.25, 0.5))


@pytest.mark.parametrize("name, steps", [("rosenbrock", 40), ("mlp_digits", 25), ("noisy_quadratic", 40)])
def test_population_with_halving_equals_each_program_halving_alone_bit_for_bit(name, steps):
    """Each program's rungs are decided on its own runs, at the step its own pass decides (one
    step after the rung on the full-batch rosenbrock), and its pruned rows leave the shared pass;
    the crash and the untraceable program get the schedule on their run_candidate path."""
    task = get_task(name)
    programs = [load_program(source) for source in PROGRAMS.values()]
    outcome = train_population(programs, task, HALVING_CONFIGS, steps=steps, share="independent", halving=TWO_RUNGS)
    expected = [alone(p, task, HALVING_CONFIGS, steps, halving=TWO_RUNGS) for p in programs]
    assert_identical(outcome.results, expected)
    assert outcome.shared == [True, True, True, True, False, False]
    by_name = dict(zip(PROGRAMS, outcome.results))
    rungs = TWO_RUNGS.rung_points(val_steps(steps), steps)
    for key in ("adamw", "lion", "untraceable"):  # the schedule reached both paths and cut at both rungs
        assert {r.stopped_at for r in by_name[key] if r.status == PRUNED} == set(rungs), key
        assert len({r.lr for r in by_name[key] if r.status == "ok"}) == 2, key
    assert not any(r.batched for r in by_name["untraceable"])
    assert any(r.status == "diverged" for key in ("adamw", "lion") for r in by_name[key])
    # Without the schedule nothing is pruned: the cut above is the schedule's doing.
    plain = train_population(programs[:3], task, HALVING_CONFIGS, steps=steps, share="independent")
    assert not any(r.status == PRUNED for runs in plain.results for r in runs)


@pytest.mark.parametrize("name", ["rosenbrock", "noisy_quadratic"])
def test_halving_rungs_between_divergence_checks_are_decided_at_the_rung(name, monkeypatch):
    """On a GPU the divergence check runs every 16 steps; a rung's decision step is off that grid
    (here: steps 10/11 and 20/21 of 40), and each program's pass checks there anyway, as its own
    pass does. Run on CPU with the GPU's check interval."""
    import sandbox.harness

    monkeypatch.setitem(sandbox.harness.CHECK_EVERY, "cpu", 16)
    task = get_task(name)
    programs = [load_reference(n) for n in ("adamw", "lion", "sgd_momentum")]
    outcome = train_population(programs, task, HALVING_CONFIGS, steps=40, share="independent", halving=TWO_RUNGS)
    expected = [alone(p, task, HALVING_CONFIGS, 40, halving=TWO_RUNGS) for p in programs]
    assert all(outcome.shared)
    assert_identical(outcome.results, expected)
    rungs = TWO_RUNGS.rung_points(val_steps(40), 40)
    assert all(r % 16 and (r + 1) % 16 for r in rungs)
    assert {r.stopped_at for r in outcome.results[0] if r.status == PRUNED} == set(rungs)


def test_each_program_keeps_its_own_configs_hparams_and_seeds():
    """Different grids per program, HPARAMS overrides, single-seed programs (their own pass sees
    every minibatch entry unstacked, so they share a pass only with the same seed), one config."""
    task = get_task("mlp_digits")
    programs = [load_reference(name) for name in ("adamw", "sgd_momentum", "adamw", "lion", "adam", "sgd_momentum")]
    configs = [
        [RunConfig(1e-3, 0), RunConfig(1e-2, 1), RunConfig(1e-1, 2)],
        [RunConfig(3e-2, 5), RunConfig(3e-2, 6)],
        [RunConfig(1e-3, 100), RunConfig(1e-2, 100)],  # one seed: shares a pass with the next only
        [RunConfig(1e-4, 100), RunConfig(1e-3, 100)],
        [RunConfig(1e-3, 7)],  # one config: unbatched, alone
        [RunConfig(1e-2, 200), RunConfig(1e-1, 200)],  # the only program on seed 200: alone
    ]
    overrides = [None, {"momentum": 0.5}, {"weight_decay": 0.3}, None, None, None]
    outcome = train_population(programs, task, configs, steps=15, hparam_overrides=overrides, share="independent")
    expected = [alone(p, task, c, 15, hparam_overrides=o) for p, c, o in zip(programs, configs, overrides)]
    assert_identical(outcome.results, expected)
    assert outcome.shared == [True, True, True, True, False, False]
    # The override reached its program: the same rule without it trains differently.
    plain = run_candidate(programs[1], task, configs[1], steps=15)
    assert [r.losses for r in plain] != [r.losses for r in outcome.results[1]]


def test_tasks_whose_rows_depend_on_their_batch_mates_run_each_program_alone():
    """logreg_separable multiplies a data matrix shared by all rows with a vector parameter:
    vmap makes that one GEMM with a column per row (MKL changes kernels below 16 columns) whose
    output has the row dimension innermost, so the mean over the data rounds the last rows of a
    batch differently. The independence check sees it and no pass is shared."""
    task = get_task("logreg_separable")
    x = task.eval_batch()["x"]
    weights = torch.randn(40, x.shape[1], generator=torch.Generator().manual_seed(0))
    whole = vmap(lambda w: (x @ w).mean())(weights)
    assert not torch.equal(vmap(lambda w: (x @ w).mean())(weights[:10]), whole[:10])  # the mechanism

    programs = [load_reference(name) for name in ("adamw", "sgd_momentum", "lion")]
    configs = CONFIGS[:4]
    expected = [run_candidate(p, task, configs, steps=10) for p in programs]
    outcome = train_population(programs, task, configs, steps=10, share="independent")
    assert outcome.independent is False and not any(outcome.shared)
    assert_identical(outcome.results, expected)
    # Sharing anyway gives the same runs up to the last bits, and not bit for bit.
    loose = train_population(programs, task, configs, steps=10, share="always")
    assert all(loose.shared) and loose.independent is None and loose.faster is None
    for got, want in zip(loose.results, expected):
        for a, b in zip(got, want):
            assert (a.status, a.stopped_at, a.val_steps) == (b.status, b.stopped_at, b.val_steps)
            assert a.losses == pytest.approx(b.losses, rel=1e-5)
    assert any(a.losses != b.losses for got, want in zip(loose.results, expected) for a, b in zip(got, want))


def test_a_program_down_to_one_row_gets_a_forward_backward_of_its_own():
    """On teacher_student a batch of one row takes other kernels than a row in a bigger batch
    (the check finds rows independent otherwise). Each program's high-LR config diverges at step
    1, leaving one row: its own pass computes that row alone, so the shared pass must too."""
    task = get_task("teacher_student")
    programs = [load_reference(name) for name in ("adamw", "sgd_momentum", "lion")]
    configs = [RunConfig(1e-2, 0), RunConfig(1e3, 1)]
    expected = [run_candidate(p, task, configs, steps=20) for p in programs]
    assert all([r.status for r in runs] == ["ok", "diverged"] for runs in expected)
    outcome = train_population(programs, task, configs, steps=20, share="independent")
    assert outcome.independent is True and all(outcome.shared)
    assert_identical(outcome.results, expected)
    # Without the check (share="always") the lone rows stay in the shared batch: last bits differ.
    loose = train_population(programs, task, configs, steps=20, share="always")
    assert all(loose.shared)
    assert any(got[0].losses != want[0].losses for got, want in zip(loose.results, expected))
    for got, want in zip(loose.results, expected):
        assert got[0].losses == pytest.approx(want[0].losses, rel=1e-5)


def test_auto_mode_and_row_cap_give_the_same_runs():
    """Whatever the speed check decides (it is timing, so either way) and however the programs
    are split into passes, each program's runs are its own."""
    task = get_task("rosenbrock")
    programs = [load_reference(name) for name in ("adamw", "sgd_momentum", "lion", "adam")]
    expected = [run_candidate(p, task, CONFIGS, steps=20) for p in programs]
    auto = train_population(programs, task, CONFIGS, steps=20)
    assert auto.independent is True and auto.faster in (True, False)
    assert auto.shared == [auto.faster] * 4
    assert_identical(auto.results, expected)
    capped = train_population(programs, task, CONFIGS, steps=20, share="independent", max_rows=2 * len(CONFIGS))
    assert all(capped.shared)  # two passes of two programs
    assert_identical(capped.results, expected)


def test_bad_arguments_are_rejected():
    task = get_task("rosenbrock")
    adamw = load_reference("adamw")
    with pytest.raises(ValueError, match="at least one program"):
        run_population([], task, CONFIGS)
    with pytest.raises(ValueError, match="one list per program"):
        run_population([adamw, adamw], task, [CONFIGS])
    with pytest.raises(ValueError, match="hparam_overrides"):
        run_population([adamw], task, CONFIGS, hparam_overrides=[None, None])
    with pytest.raises(ValueError, match="positive"):
        run_population([adamw, adamw], task, [RunConfig(-1.0, 0)])
    with pytest.raises(ValueError, match="share"):
        run_population([adamw, adamw], task, CONFIGS, share="sometimes")
    with pytest.raises(ValueError, match="beta9"):
        run_population([adamw, adamw], task, CONFIGS, hparam_overrides=[None, {"beta9": 1.0}])


# --- the worker job ----------------------------------------------------------------------------


def test_population_job_returns_what_each_evaluate_job_returns():
    sources = [reference_source("adamw"), "def broken(:\n", CRASHES_AT_STEP_4, reference_source("lion"),
               reference_source("sgd_momentum")]
    configs = [[1e-3, 0], [3e-2, 1], [30.0, 0]]
    common = {"task": "mlp_digits", "steps": 8, "device": "cpu"}
    reply = run_job("evaluate_population", {**common, "share": "independent",
                                            "programs": [{"source": s, "configs": configs} for s in sources]})
    assert reply["ok"], reply
    entries = reply["value"]["programs"]
    for source, entry in zip(sources, entries):
        single = run_job("evaluate", {**common, "source": source, "configs": configs})
        if single["ok"]:
            assert entry == {"ok": True, "runs": single["value"]["runs"], "shared": entry["shared"]}
        else:
            assert entry == {"ok": False, "reason": single["reason"], "message": single["message"]}
    assert [e["ok"] for e in entries] == [True, False, False, True, True]
    assert entries[1]["reason"] == "invalid_code" and entries[2]["reason"] == "shape_error"
    assert [e.get("shared") for e in entries] == [True, None, None, True, True]
    # Called directly, as a Ray actor would, the job gives the same records.
    direct = evaluate_population_job({**common, "programs": [{"source": sources[0], "configs": configs},
                                                             {"source": sources[3], "configs": configs}]})
    assert direct["programs"][0]["runs"] == evaluate_job({**common, "source": sources[0], "configs": configs})["runs"]


def test_population_job_with_halving_returns_what_each_halving_evaluate_job_returns():
    sources = [reference_source(n) for n in ("adamw", "sgd_momentum", "lion")]
    configs = [[lr, seed] for lr in (1e-3, 1e-2, 0.1, 1.0) for seed in (0, 1)]
    common = {"task": "noisy_quadratic", "steps": 24, "device": "cpu", "halving": TWO_RUNGS.to_json()}
    reply = run_job("evaluate_population", {**common, "share": "independent",
                                            "programs": [{"source": s, "configs": configs} for s in sources]})
    assert reply["ok"], reply
    for source, entry in zip(sources, reply["value"]["programs"]):
        single = run_job("evaluate", {**common, "source": source, "configs": configs})
        assert single["ok"] and entry == {"ok": True, "runs": single["value"]["runs"], "shared": True}
        assert [r["status"] for r in entry["runs"]].count(PRUNED) >= 2
    bad = run_job("evaluate_population", {**common, "halving": {"fractions": [2.0]},
                                          "programs": [{"source": sources[0], "configs": configs}]})
    assert not bad["ok"] and "fractions" in bad["message"]


def test_population_job_rejects_a_bad_payload():
    reply = run_job("evaluate_population", {"task": "mlp_digits", "steps": 5, "programs": []})
    assert not reply["ok"] and "programs" in reply["message"]
    reply = run_job("evaluate_population", {"task": "no_such_task", "steps": 5,
                                            "programs": [{"source": reference_source("adamw"), "configs": [[1e-3, 0]]}]})
    assert not reply["ok"] and "no_such_task" in reply["message"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_population_equals_each_program_alone_on_cuda():
    task = get_task("mlp_digits")
    programs = [load_program(source) for source in PROGRAMS.values()]
    outcome = train_population(programs, task, CONFIGS, steps=20, device="cuda", share="independent")
    assert_identical(outcome.results, [alone(p, task, CONFIGS, 20, device="cuda") for p in programs])


def test_a_population_job_is_bounded_by_all_its_programs_runs():
    """TimeBoundExecutor gives an evaluate_population job factor x AdamW's time per run x every
    program's runs, so a hanging program cannot hold the worker for the caller's whole timeout."""
    from pathlib import Path

    from sandbox.executor import LocalExecutor
    from sandbox.jobbound import TimeBoundExecutor

    slow = (Path(__file__).parent / "hostile" / "nested_loops_bigint.py").read_text()  # passes validation
    common = {"task": "noisy_quadratic", "steps": 20, "device": "cpu"}
    members = [{"source": reference_source("sgd_momentum"), "configs": [[1e-3, 0], [1e-2, 1]]},
               {"source": reference_source("adamw"), "configs": [[1e-3, 0]]}]
    with TimeBoundExecutor(LocalExecutor(size=1), factor=10.0, floor=1.0) as executor:
        ok = executor.submit("evaluate_population", {**common, "programs": members}, 120).result()
        assert ok.ok, ok.message
        assert [len(p["runs"]) for p in ok.value["programs"]] == [2, 1]
        per_run = executor.seconds_per_run({**common, "configs": [[1e-3, 0]]}, 120)
        assert executor.limit({**common, "programs": members}, 120) == pytest.approx(max(1.0, 10 * 3 * per_run))
        hung = [members[0], {"source": slow, "configs": [[1e-3, 0], [1e-2, 1]]}]
        result = executor.submit("evaluate_population", {**common, "programs": hung}, 120).result()
    assert result.reason == "timeout"
