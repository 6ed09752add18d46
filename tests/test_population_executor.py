"""Population batching at the scheduler (sandbox/population_executor.py): concurrent `evaluate`
jobs on one task become one `evaluate_population` job, and every caller gets exactly what its
own job would have given."""

from __future__ import annotations

import pytest

from discover.campaign import Campaign
from discover.config import load_config
from sandbox.executor import make_executor
from sandbox.halving import PRUNED, RECOMMENDED, Schedule
from sandbox.population_executor import PopulationExecutor
from sandbox.references import reference_source
from tests.test_campaign import SMALL, private_run_cache  # noqa: F401 (autouse fixture)

CONFIGS = [[1e-3, 0], [1e-2, 0], [1e-2, 1], [0.1, 1]]


def payload(source: str, task: str = "rosenbrock") -> dict:
    return {"source": source, "task": task, "configs": CONFIGS, "steps": 60, "device": "cpu"}


@pytest.fixture(scope="module")
def local():
    executor = make_executor("local", size=2)
    yield executor
    executor.close()


def test_jobs_waiting_on_one_task_run_as_one_population_job_with_the_same_records(local):
    sources = [reference_source(n) for n in ("adamw", "sgd_momentum", "lion")]
    alone = [local.submit("evaluate", payload(s), 120).result() for s in sources]
    other = local.submit("evaluate", payload(sources[0], "noisy_quadratic"), 120).result()
    population = PopulationExecutor(local, slots=1)
    lone = population.submit("evaluate", payload(sources[0], "noisy_quadratic"), 120)  # takes the one slot
    futures = [population.submit("evaluate", payload(s), 120) for s in sources]  # wait for it, together
    results = [f.result() for f in futures]
    assert population.stats["population_jobs"] == 1 and population.stats["programs_merged"] == 3
    for got, want in zip(results, alone):
        assert got.ok and want.ok
        assert got.value["runs"] == want.value["runs"]  # bit for bit: the same floats, the same statuses
    assert lone.result().value["runs"] == other.value["runs"]


HALVING_CONFIGS = [[lr, seed] for lr in (1e-3, 1e-2, 0.1, 1.0) for seed in (0, 1)]


def halving_payload(source: str, schedule: Schedule | None) -> dict:
    job = {**payload(source), "configs": HALVING_CONFIGS}
    return job if schedule is None else {**job, "halving": schedule.to_json()}


def test_halving_jobs_with_the_same_schedule_merge_and_keep_their_records(local):
    sources = [reference_source(n) for n in ("adamw", "sgd_momentum", "lion")]
    alone = [local.submit("evaluate", halving_payload(s, RECOMMENDED), 120).result() for s in sources]
    population = PopulationExecutor(local, slots=1)
    blocker = population.submit("evaluate", payload(sources[0], "noisy_quadratic"), 120)  # takes the one slot
    futures = [population.submit("evaluate", halving_payload(s, RECOMMENDED), 120) for s in sources]
    results = [f.result() for f in futures]
    assert blocker.result().ok
    assert population.stats["population_jobs"] == 1 and population.stats["programs_merged"] == 3
    for got, want in zip(results, alone):
        assert got.ok and want.ok
        assert got.value["runs"] == want.value["runs"]  # pruned records included, bit for bit
    statuses = [[r["status"] for r in got.value["runs"]] for got in results]
    assert statuses[0].count(PRUNED) == statuses[2].count(PRUNED) == 4  # adamw and lion: 4 LRs cut to 2
    assert "diverged" in statuses[1]  # sgd_momentum's top LRs diverge before the rung: nothing to cut


def test_jobs_with_different_halving_schedules_are_not_merged(local):
    source = reference_source("adamw")
    schedules = [RECOMMENDED, Schedule((0.5,)), None]
    alone = [local.submit("evaluate", halving_payload(source, s), 120).result() for s in schedules]
    population = PopulationExecutor(local, slots=1)
    blocker = population.submit("evaluate", payload(source, "noisy_quadratic"), 120)
    futures = [population.submit("evaluate", halving_payload(source, s), 120) for s in schedules]
    results = [f.result() for f in futures]
    assert blocker.result().ok and population.stats["population_jobs"] == 0
    assert [r.value["runs"] for r in results] == [a.value["runs"] for a in alone]
    pruned_at = [{r["stopped_at"] for r in a.value["runs"] if r["status"] == PRUNED} for a in alone]
    assert len(pruned_at[0]) == len(pruned_at[1]) == 1 and pruned_at[0] != pruned_at[1] and not pruned_at[2]


def test_a_broken_program_fails_alone_and_a_failed_population_job_reruns_each(local):
    population = PopulationExecutor(local, slots=1)
    good, broken = reference_source("adamw"), "HPARAMS = {'lr': 0.1}\ndef init(param):\n    return {}\n"
    blocker = population.submit("evaluate", payload(good, "noisy_quadratic"), 120)
    futures = [population.submit("evaluate", payload(good), 120), population.submit("evaluate", payload(broken), 120)]
    ok, bad = (f.result() for f in futures)
    assert blocker.result().ok and population.stats["programs_merged"] == 2
    assert ok.ok and len(ok.value["runs"]) == len(CONFIGS)
    assert not bad.ok and bad.reason == "invalid_code"
    # A population job that fails as a whole (here: an unknown task) is not one program's fault:
    # each job runs alone and reports its own outcome.
    blocker = population.submit("evaluate", payload(good, "noisy_quadratic"), 120)
    futures = [population.submit("evaluate", payload(good, "no_such_task"), 60) for _ in range(2)]
    assert all(not f.result().ok for f in futures)
    assert population.stats["rerun_alone"] == 2 and population.stats["population_jobs"] == 2


def test_a_task_whose_population_job_shared_nothing_is_not_merged_again(local):
    # One config per program: the worker runs each alone (as run_candidate runs a single config),
    # so merging them bought nothing and the task's next waiting jobs go out one by one.
    population = PopulationExecutor(local, slots=1)
    single = {**payload(reference_source("adamw")), "configs": [[1e-2, 0]]}
    for _ in range(2):
        blocker = population.submit("evaluate", payload(reference_source("adamw"), "noisy_quadratic"), 120)
        futures = [population.submit("evaluate", {**single, "source": reference_source(n)}, 120)
                   for n in ("adamw", "lion")]
        assert blocker.result().ok and all(f.result().ok for f in futures)
    assert population.stats["population_jobs"] == 1 and population.stats["unshared_tasks"] == 1
    alone = local.submit("evaluate", {**single, "source": reference_source("lion")}, 120).result()
    assert futures[1].result().value["runs"] == alone.value["runs"]


def test_a_job_never_waits_while_a_slot_is_free(local):
    """Work-conserving: with as many slots as jobs nothing is merged (merging only what would wait
    for a slot anyway cannot leave one idle)."""
    population = PopulationExecutor(local)
    sources = [reference_source(n) for n in ("adamw", "lion")]
    assert population.slots == local.capacity == 2
    results = [f.result() for f in [population.submit("evaluate", payload(s), 120) for s in sources]]
    assert all(r.ok for r in results) and population.stats["population_jobs"] == 0


def test_closing_cancels_the_jobs_still_waiting():
    inner = make_executor("local", size=1)
    population = PopulationExecutor(inner)
    running = population.submit("evaluate", payload(reference_source("adamw")), 120)
    waiting = [population.submit("evaluate", payload(reference_source("lion"), "noisy_quadratic"), 120)
               for _ in range(2)]
    population.close()
    # Each is either finished (it had a slot before the close) or cancelled: none is left hanging.
    assert all(f.done() and (f.cancelled() or f.result().ok) for f in [running, *waiting])
    assert any(f.cancelled() for f in waiting)  # one slot: at least one of them was still waiting
    with pytest.raises(RuntimeError, match="closed"):
        population.submit("evaluate", payload(reference_source("adamw")), 120)


def test_other_jobs_and_unusual_payloads_pass_through(local):
    population = PopulationExecutor(local, slots=1)
    probe = population.submit("probe", {"source": reference_source("adamw")}, 30).result()
    sequential = population.submit("evaluate", {**payload(reference_source("adamw")), "batched": False}, 120).result()
    assert probe.ok and sequential.ok and population.stats["evaluate_jobs"] == 0


def test_a_campaign_scores_the_same_with_population_batching_on_and_off(tmp_path, monkeypatch):
    fitness = {}
    for mode in ("off", "on"):
        monkeypatch.setenv("DISCOVER_CACHE_DIR", str(tmp_path / mode / "run-cache"))  # each computes its own runs
        config = load_config(overrides=[SMALL, {"output_dir": str(tmp_path / mode), "seed": 5,
                                                "evaluation": {"population": mode, "workers": 1},  # one slot: jobs wait, so they merge
                                                "search": {"in_flight": 3}, "budget": {"max_evaluations": 6}}])
        campaign = Campaign.create(config)
        try:
            assert isinstance(campaign.executor, PopulationExecutor) == (mode == "on")
            campaign.run()
            fitness[mode] = {p.code: (p.fitness, p.fitness_spread, p.status) for p in campaign.archive.programs()}
            if mode == "on":
                assert campaign.executor.stats["population_jobs"] >= 1
        finally:
            campaign.close()
    assert fitness["on"] == fitness["off"]


def test_campaigns_batch_populations_by_default_only_on_cuda(tmp_path):
    campaign = Campaign.create(load_config(overrides=[SMALL, {"output_dir": str(tmp_path)}]))
    try:
        assert campaign.device == "cpu" and not isinstance(campaign.executor, PopulationExecutor)
    finally:
        campaign.close()
