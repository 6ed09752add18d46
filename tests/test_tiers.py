"""Tiers, workload variants and the announce rule (issue 18): what decides that a program is
announced, and that nothing the search sees can leak into the tiers that judge it."""

from __future__ import annotations

import pytest

from discover.campaign import Campaign, is_short_horizon
from discover.config import load_config
from sandbox.evaluate import beats_adamw
from sandbox.references import reference_source
from sandbox.tasks import TASK_CLASSES, TIERS, get_task, task_names
from tests.test_campaign import SMALL, private_run_cache  # noqa: F401 (autouse fixture)


@pytest.mark.parametrize("name", task_names())
def test_variants_are_seeded_draws_from_the_declared_space(name):
    cls = TASK_CLASSES[name]
    assert cls.variant_settings(0) == {k: getattr(cls, k) for k in cls.variant_space}
    for variant in (1, 2, 7):
        settings = cls.variant_settings(variant)
        assert settings == cls.variant_settings(variant), "a variant is the same every time it is drawn"
        assert all(settings[k] in choices for k, choices in cls.variant_space.items())
    if cls.variant_space:
        draws = {tuple(sorted(cls.variant_settings(v).items())) for v in range(1, 9)}
        assert len(draws) > 1, f"{name}: eight variants are all the same workload"


def test_the_judging_tiers_are_workloads_the_search_never_ran():
    search = {get_task(s).key for s in TIERS["search"]}
    for tier in ("validation", "test"):
        for spec in TIERS[tier]:
            task = get_task(spec)
            assert task.key not in search
            assert task.variant != 0, f"{spec}: a judging tier runs variants, never the default workload"
            if task.name in {get_task(s).name for s in TIERS["search"]}:
                # a variant whose draw equals the default would be the search workload under another name
                assert task.settings != get_task(task.name).settings, f"{spec} draws the search workload itself"


def test_beats_adamw_needs_the_seed_spread_to_exclude_one():
    assert beats_adamw(1.2, 0.1)
    assert not beats_adamw(1.2, 0.25)
    assert not beats_adamw(0.9, 0.0)
    assert not beats_adamw(float("nan"), 0.0)


def confirm(tmp_path, reference: str, proposer: str = "mutation", **evaluation):
    """Archive a reference's code as if a proposer wrote it, score it on search, then let the
    campaign decide about it as it does for any would-be best."""
    overrides = [SMALL, {"output_dir": str(tmp_path), "evaluation": {"long_horizon_scale": 2.0, **evaluation}}]
    campaign = Campaign.create(load_config(overrides=overrides))
    try:
        source = reference_source(reference)
        pid = campaign.archive.add_program(source, campaign_id=campaign.campaign_id, proposer=proposer)
        result = campaign.evaluator.evaluate(source, stage="full")
        campaign._record_result(pid, result)
        campaign._maybe_confirm(pid, source, result)
        return campaign.archive.program(pid), result
    finally:
        campaign.close()


def test_a_program_is_announced_only_by_the_rule(tmp_path):
    # SGD with momentum is strong on rotated noisy quadratics (no preconditioner helps there).
    record, search = confirm(tmp_path / "a", "sgd_momentum")
    meta = record.meta
    assert record.stage == "confirmed" and meta["validation_scores"]
    assert set(meta["validation_scores"]) == {"noisy_quadratic@1"}
    expected = beats_adamw(meta["confirmed_fitness"], meta["confirmed_spread"]) and \
        meta.get("long_horizon_fitness", 0.0) >= 1.0
    assert meta["announced"] == expected
    if beats_adamw(meta["confirmed_fitness"], meta["confirmed_spread"]):
        assert meta["long_horizon_scale"] == 2.0 and "long_horizon_fitness" in meta
        assert meta.get("short_horizon", False) == (meta["long_horizon_fitness"] < 1.0)
    else:
        assert "long_horizon_fitness" not in meta  # the check costs nothing when it cannot matter


def test_a_program_that_loses_on_validation_is_confirmed_but_not_announced(tmp_path):
    record, _ = confirm(tmp_path / "b", "signsgd")
    assert record.stage == "confirmed"
    assert record.meta["announced"] is False
    assert not beats_adamw(record.meta["confirmed_fitness"], record.meta["confirmed_spread"])


def test_references_are_never_announced(tmp_path):
    record, _ = confirm(tmp_path / "c", "sgd_momentum", proposer="reference")
    assert record.meta["announced"] is False and "long_horizon_fitness" not in record.meta


QUADRATIC = {"tasks": ["noisy_quadratic"], "lr_grid": [1e-3, 1e-2, 0.1, 1.0]}
"""A rotated noisy quadratic at a quarter of its budget: Nesterov momentum reaches tuned AdamW's
target about 1.5x sooner (seed spread 0.02); Lion and plain SGD are far behind."""


def test_a_program_that_beats_adamw_beyond_noise_and_holds_at_longer_horizons_is_announced(tmp_path):
    # Nesterov momentum beats tuned AdamW on a rotated noisy quadratic (no diagonal preconditioner
    # helps there). Validation on the same workload and seeds as the search makes the verdict known.
    record, search = confirm(tmp_path / "d", "nesterov", validation_tasks=["noisy_quadratic"],
                             confirm_seeds=[100, 101], **QUADRATIC)
    meta = record.meta
    assert meta["confirmed_fitness"] == pytest.approx(search.fitness)
    assert beats_adamw(meta["confirmed_fitness"], meta["confirmed_spread"])
    assert meta["long_horizon_scale"] == 2.0 and meta["long_horizon_fitness"] >= 1.0
    assert meta["announced"] is True and not meta.get("short_horizon")


def test_the_long_horizon_rule():
    assert is_short_horizon(0.97) and is_short_horizon(float("nan")) and is_short_horizon(0.05)
    assert not is_short_horizon(1.0) and not is_short_horizon(1.4)


def test_a_would_be_best_that_loses_to_adamw_skips_the_long_horizon_run(tmp_path):
    # Lion is far behind AdamW here: confirmed, not announced, no long-horizon run paid for.
    record, _ = confirm(tmp_path / "f", "lion", validation_tasks=["noisy_quadratic"], confirm_seeds=[100, 101],
                        **QUADRATIC)
    assert record.meta["announced"] is False and "long_horizon_fitness" not in record.meta


def test_candidates_are_checked_apart_from_the_seeds_and_runners_up_before_the_end(tmp_path):
    # A strong seed must not stop the campaign from checking what it discovered, and a would-be
    # best that collapses on validation must not hide the runners-up: the end of the campaign
    # checks the best unchecked candidates that beat tuned AdamW on search.
    overrides = [SMALL, {"output_dir": str(tmp_path), "evaluation": {
        "long_horizon_scale": 1.0, "validation_tasks": ["noisy_quadratic"], "confirm_seeds": [100, 101], **QUADRATIC}}]
    campaign = Campaign.create(load_config(overrides=overrides))
    try:
        def scored(name: str, proposer: str, check: bool) -> int:
            source = reference_source(name)
            pid = campaign.archive.add_program(source, campaign_id=campaign.campaign_id, proposer=proposer,
                                               name=name if proposer == "reference" else None)
            result = campaign.evaluator.evaluate(source, stage="full")
            campaign._record_result(pid, result)
            if check:
                campaign._maybe_confirm(pid, source, result)
            return pid

        seed = scored("nesterov", "reference", check=True)
        first = scored("adamw", "mutation", check=True)
        program = campaign.archive.program
        assert program(seed).fitness > program(first).fitness  # Nesterov is far ahead here
        assert program(seed).confirmed_fitness is not None
        assert program(first).confirmed_fitness is not None, "a candidate behind a seed is still checked"
        runner_up = scored("nesterov", "mutation", check=False)  # as if it came behind a would-be best
        behind = scored("sgd", "mutation", check=False)
        assert program(runner_up).fitness > 1.0 > program(behind).fitness
        campaign._final_checks()
        assert program(runner_up).confirmed_fitness is not None and program(runner_up).meta["announced"]
        assert program(behind).confirmed_fitness is None  # it did not beat AdamW on search: not worth a check
        # The summary announces it, says it is no better than the seed it copies, and gives the
        # command that checks it on the test tier (no decision has read that tier).
        from rich.console import Console

        from discover.campaign import CampaignSummary
        from discover.cli_run import print_summary

        console = Console(record=True, width=200)
        summary = CampaignSummary(campaign.directory, campaign.campaign_id, "done", seed, 1.0, {}, {}, {}, 0, 0.0, True)
        print_summary(summary, campaign, console)
        text = console.export_text()
        assert f"discovered: #{runner_up}" in text
        assert "below the seed nesterov's" in text  # the same rule as the Nesterov seed: not better than it
        assert f"discover eval {campaign.directory}:{runner_up} --tier test" in text
    finally:
        campaign.close()
