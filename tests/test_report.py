"""`discover report`: a self-contained HTML page from a real small campaign, and plain pages
(never a crash) for empty, failed-only and running campaigns; exit code 2 on a bad directory.
The new panels: a sortable leaderboard on three tiers, LR sensitivity read back from the runs,
baseline curves on every tier, robust y scales, the population's family tree, progress placed
at the search-tier result."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import archive
from discover.report import build_report, code_diff, highlight_python, write_report
from sandbox.references import reference_source

SMALL = {
    "budget": {"max_evaluations": 4},
    "evaluation": {"tasks": ["noisy_quadratic"], "validation_tasks": ["noisy_quadratic@1"], "steps_scale": 0.25, "lr_grid": [1e-3, 1e-2, 0.1],
                   "screen": False, "heldout": False, "workers": 2, "confirm_seeds": [200]},
    "search": {"seed_programs": ["adamw", "sgd_momentum"], "in_flight": 2},
}
SECTIONS = ("overview", "progress", "leaderboard", "curves", "profile", "lineage", "failures", "proposers", "winner")
ASSET_REFERENCE = re.compile(r"""(?:\b(?:src|href|action|poster)\s*=\s*["']?\s*(?:https?:)?//)|url\(\s*["']?\s*(?:https?:)?//"""
                             r"""|@import|<script\b[^>]*\bsrc\b|<link\b|<iframe|<img\b""", re.I)
"""Anything a browser would fetch: the page allows inline scripts, never a script with a src."""


@pytest.fixture(scope="module")
def campaign_dir(tmp_path_factory) -> Path:
    """A real offline campaign: two references and four mutation candidates on one tiny task."""
    from discover.campaign import Campaign
    from discover.config import load_config

    root = tmp_path_factory.mktemp("report-campaign")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DISCOVER_CACHE_DIR", str(root / "run-cache"))
        config = load_config(overrides=[SMALL, {"output_dir": str(root / "campaigns"), "seed": 2}])
        campaign = Campaign.create(config)
        try:
            campaign.run()
        finally:
            campaign.close()
    return campaign.directory


def run_cli(monkeypatch, *args: str) -> int:
    from discover.cli import main

    monkeypatch.setattr(sys, "argv", ["discover", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code or 0


def svgs(html: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", html, flags=re.S)


# --- a real campaign ----------------------------------------------------------------------


def test_report_of_a_real_campaign(campaign_dir):
    html = build_report(campaign_dir)
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    assert len(svgs(html)) >= 3  # progress, loss curves, performance profile (failures when there are some)
    assert "Nothing to plot yet" not in html.split('<section id="failures">')[0]
    assert "could not be drawn" not in html
    assert not ASSET_REFERENCE.search(html), ASSET_REFERENCE.search(html)
    assert "http://www.w3.org" not in html  # SVG namespaces and DTDs stripped: nothing that looks fetchable
    assert len(html.encode()) < 2_000_000
    with archive.open(campaign_dir, readonly=True) as store:
        campaign = store.campaign()
        winner = store.program(campaign.best_program_id)
        candidates = [p for p in store.programs() if p.proposer == "mutation"]
    assert campaign.status == "finished" and "Still running" not in html
    assert f"discover export {campaign_dir.resolve()}:{winner.id} -o my_optimizer.py" in html
    winner_section = html.split('<section id="winner">')[1]
    assert f"<b>{winner.name or f'#{winner.id}'}</b>" in winner_section
    assert "noisy_quadratic" in html and "vs SGD-momentum" in html
    assert "not run" in html  # held-out was off in this campaign
    assert f"<td class=\"l\">mutation</td><td>{len(candidates)}</td>" in html
    # The loss-curve panel draws the best program and both tuned baselines' curves.
    assert "adamw (tuned)" in html or winner.name == "adamw"
    assert "sgd_momentum (tuned)" in html or winner.name == "sgd_momentum"


def test_cli_writes_the_page(campaign_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "deep" / "report.html"
    assert run_cli(monkeypatch, "report", str(campaign_dir), "-o", str(out)) == 0
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert "wrote" in capsys.readouterr().out


def test_cli_defaults_to_campaigns_latest(campaign_dir, tmp_path, monkeypatch):
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "latest").symlink_to(campaign_dir)
    monkeypatch.chdir(tmp_path)
    assert run_cli(monkeypatch, "report") == 0
    assert "Leaderboard" in (tmp_path / "report.html").read_text(encoding="utf-8")


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["missing", "corrupt", "no-archive"])
def test_bad_directory_is_one_line_and_exit_code_2(kind, tmp_path, monkeypatch, capsys):
    target = tmp_path / "campaign"
    if kind == "corrupt":
        target.mkdir()
        (target / "archive.db").write_bytes(b"this is not a database" * 100)
    elif kind == "no-archive":
        target.mkdir()
    assert run_cli(monkeypatch, "report", str(target), "-o", str(tmp_path / "r.html")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "Traceback" not in err and str(target.name) in err
    assert not (tmp_path / "r.html").exists()


def make_archive(directory: Path, status: str = "finished") -> tuple[archive.Archive, int]:
    store = archive.open(directory, create=True)
    cid = store.create_campaign("synthetic", {"name": "synthetic", "seed": 0}, seed=0)
    if status != "running":
        store.set_campaign_status(cid, status)
    return store, cid


def test_empty_campaign_says_so(tmp_path):
    store, _ = make_archive(tmp_path / "empty")
    store.close()
    html = build_report(tmp_path / "empty")
    assert "This campaign has no programs yet" in html
    assert not svgs(html)
    assert "No best program yet" in html


def test_archive_without_a_campaign_row(tmp_path):
    archive.open(tmp_path / "bare", create=True).close()
    html = build_report(tmp_path / "bare")
    assert "holds no campaign record yet" in html and "has no programs yet" in html


def test_only_failures_and_still_running(tmp_path):
    store, cid = make_archive(tmp_path / "failing", status="running")
    for i, reason in enumerate(["nan", "nan", "timeout", "invalid_code"]):
        pid = store.add_program(f"not a program {i}", campaign_id=cid, proposer="mutation", status="failed",
                                meta={"proposal_index": i, "edits": ["line 1: broke it"]})
        store.add_failure(pid, stage="probe", reason=reason, message=f"{reason} <at> step {i}")
    # Keep the writer's connection open: the report reads beside a running campaign.
    html = build_report(tmp_path / "failing")
    store.close()
    assert "Still running: this is a snapshot" in html
    assert "No program was evaluated successfully" in html
    assert "timeout" in html and "invalid_code" in html
    assert "&lt;at&gt; step 3" in html and "<at>" not in html  # messages are escaped
    assert len(svgs(html)) == 2  # the failures chart and the family tree (of failed programs); nothing else has data
    assert "could not be drawn" not in html


# --- a synthetic campaign with lineage, critique and held-out scores ---------------------


def task_entry(score: float, vs: dict[str, float], curve: list[float]) -> dict:
    return {"score": score, "seed_scores": [score, score], "best_lr": 0.01, "lr_at_edge": False,
            "final_loss": curve[-1], "test_metric": 0.9, "status": "ok", "reason": None, "message": "",
            "curve": curve, "vs_baselines": vs, "diverged_at": None, "steps": 100}


def test_lineage_heldout_and_critique(tmp_path):
    store, cid = make_archive(tmp_path / "rich")
    curve = [1.0 / (1 + i) for i in range(20)]
    ids = {}
    for name, fitness in (("adamw", 1.0), ("adam", 0.95), ("sgd_momentum", 0.5), ("lion", 0.8)):
        entry = task_entry(fitness, {"adamw": fitness, "adam": fitness / 0.95, "sgd_momentum": fitness / 0.5,
                                     "lion": fitness / 0.8}, [c * (2 - fitness) for c in curve])
        ids[name] = store.add_program(reference_source(name), campaign_id=cid, proposer="reference", name=name,
                                      status="evaluated", fitness=fitness, fitness_spread=0.01, stage="full",
                                      scores={"noisy_quadratic": entry, "rosenbrock": entry})
    parent_code = reference_source("adamw")
    child_code = parent_code.replace("hp.eps", "hp.eps * 10")
    mid = store.add_program(parent_code.replace("0.999", "0.99"), campaign_id=cid, parent_ids=[ids["adamw"]],
                            proposer="mutation", status="evaluated", fitness=1.2, fitness_spread=0.02, stage="full",
                            cost_usd=0.02,
                            scores={"noisy_quadratic": task_entry(1.3, {"adamw": 1.3}, curve)},
                            meta={"proposal_index": 0, "edits": ["HPARAMS: beta2 0.999 -> 0.99"]})
    heldout = {"cnn_digits": task_entry(1.7, {"adamw": 1.7, "adam": 1.8, "sgd_momentum": 3.0, "lion": 2.0}, curve)}
    winner = store.add_program(child_code, campaign_id=cid, parent_ids=[mid, ids["sgd_momentum"]],
                               proposer="textgrad", status="evaluated", fitness=1.5, fitness_spread=0.05,
                               stage="confirmed", heldout_fitness=1.7, critique="eps is far too small <here>",
                               scores={"noisy_quadratic": task_entry(1.6, {"adamw": 1.6, "adam": 1.7,
                                                                           "sgd_momentum": 3.2, "lion": 2.0}, curve),
                                       "rosenbrock": task_entry(1.4, {"adamw": 1.4}, curve)},
                               meta={"proposal_index": 1, "edits": [], "confirmed_fitness": 1.45,
                                     "confirmed_spread": 0.04, "confirm_seeds": [200, 201],
                                     "heldout_scores": heldout, "heldout_spread": 0.1})
    store.set_best_program(cid, winner)
    store.close()
    out = write_report(tmp_path / "rich", tmp_path / "rich.html")
    html = out.read_text(encoding="utf-8")
    assert "1.450" in html and "± 0.040" in html and "seeds 200, 201" in html  # confirmed fitness on fresh seeds
    assert "1.700" in html and "cnn_digits" in html  # held-out beside search
    assert "eps is far too small &lt;here&gt;" in html
    assert "HPARAMS: beta2 0.999 -&gt; 0.99" in html
    assert '<span class="add">+' in html and '<span class="del">-' in html
    assert "textgrad of #" in html
    assert f"#{ids['sgd_momentum']}</span> <b>sgd_momentum</b>" in html  # second parent in the tree
    assert "cnn_digits (test)" in html  # a loss-curve panel for the test-tier task
    assert len(svgs(html)) == 4  # progress, curves, profile, family tree (no failures, no LR-grid runs archived)
    assert f":{winner} -o my_optimizer.py" in html
    assert "dollars spent on LLM calls" in html  # LLM spend: progress over dollars, not wall time


# --- pieces -------------------------------------------------------------------------------


def test_code_diff_ignores_formatting_and_docstrings():
    before = '"""Doc."""\nHPARAMS = {"lr": 0.1}\n\ndef update(grad, param, state, step, hp):\n    return -hp.lr * grad, state\n'
    after = "HPARAMS = {'lr': 0.1}\ndef update(grad, param, state, step, hp):\n    return -hp.lr * sign(grad), state\n"
    lines = code_diff(before, after)
    changed = [(line.kind, line.text) for line in lines if line.kind in ("add", "del")]
    assert changed == [("del", "-    return (-hp.lr * grad, state)"), ("add", "+    return (-hp.lr * sign(grad), state)")]


def test_highlight_escapes_code():
    html = str(highlight_python('x = "<b>&"  # a < b\ndef update(grad):\n    return grad\n'))
    assert "<b>" not in html.replace('<span class="k">def</span>', "")
    assert "&lt;b&gt;&amp;" in html and '<span class="k">def</span>' in html and '<span class="c"># a &lt; b</span>' in html
    broken = str(highlight_python('x = """never closed <\n'))
    assert "&lt;" in broken and "<span" not in broken


# --- the panels of issue 16: leaderboard, LR sensitivity, curves, scales, family tree, progress


def run_cache_of(campaign_dir: Path) -> Path:
    """The run cache the module's campaign wrote (its fixture points DISCOVER_CACHE_DIR there)."""
    return campaign_dir.parent.parent / "run-cache" / "runs.sqlite"


def test_page_is_self_contained(campaign_dir):
    html = build_report(campaign_dir, run_cache_of(campaign_dir))
    assert not ASSET_REFERENCE.search(html), ASSET_REFERENCE.search(html)
    links = re.findall(r"""\b(?:src|href|xlink:href)\s*=\s*["']([^"']*)["']""", html, flags=re.I)
    assert links and all(link.startswith("#") for link in links), [x for x in links if not x.startswith("#")]
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S | re.I)
    assert len(scripts) == 1 and scripts[0][0].strip() == ""  # one inline script, no attributes
    assert not re.search(r"\b(?:fetch|XMLHttpRequest|import)\s*\(|https?:", scripts[0][1])


def leaderboard_rows(html: str) -> tuple[list[str], list[list[tuple[str | None, str]]]]:
    """Header texts and, per row, (data-v, text) of each cell of the sortable leaderboard."""
    table = re.search(r'<table class="sortable" id="leaderboard-table">(.*?)</table>', html, flags=re.S).group(1)
    heads = [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th\b[^>]*>(.*?)</th>", table, flags=re.S)]
    rows = []
    for body in re.findall(r"<tr\b[^>]*>(.*?)</tr>", table.split("<tbody>")[1], flags=re.S):
        cells = re.findall(r'<td\b([^>]*)>(.*?)</td>', body, flags=re.S)
        rows.append([(m.group(1) if (m := re.search(r'data-v="([^"]*)"', attrs)) else None,
                      re.sub(r"<[^>]+>", "", text).strip()) for attrs, text in cells])
    return heads, rows


def test_sortable_leaderboard_shows_three_tiers_and_the_verdict(campaign_dir):
    from discover.summary import verdict

    html = build_report(campaign_dir)
    heads, rows = leaderboard_rows(html)
    assert heads == ["program", "origin", "stage", "search", "validation", "test", "verdict"]
    assert 'data-type="num"' in html and "table.sortable" in html  # the headers the script sorts by
    with archive.open(campaign_dir, readonly=True) as store:
        evaluated = {p.id: p for p in store.programs() if p.status == "evaluated" and p.fitness is not None}
    assert len(rows) == len(evaluated)  # every evaluated program, not only the top ten
    seen = set()
    for row in rows:
        rec = evaluated[int(row[0][0])]
        seen.add(rec.id)
        assert float(row[3][0]) == pytest.approx(rec.fitness, rel=1e-5)
        if rec.confirmed_fitness is None:
            assert row[4][0] == ""  # blank sorts last
        else:
            assert float(row[4][0]) == pytest.approx(rec.confirmed_fitness, rel=1e-5)
        assert row[5][0] == ""  # the test tier was off in this campaign
        assert row[6][1] == (verdict(rec) or "-")
    assert seen == set(evaluated)
    assert any(row[6][1] == "baseline" for row in rows)  # the first reference is confirmed
    searches = [float(row[3][0]) for row in rows]
    assert searches == sorted(searches, reverse=True)  # served best first


def _final_validation_value(record: dict) -> float:
    """What LR selection minimises, computed here from the raw record: mean of the last three
    validation measurements (infinite for a failed or truncated run)."""
    values = record.get("val_losses") or []
    if record["status"] != "ok" or not values:
        return float("inf")
    return sum(values[-3:]) / len(values[-3:])


def test_lr_sensitivity_matches_the_run_records(campaign_dir):
    from discover.report_runs import RunReader, open_run_cache
    from sandbox.contract import program_hash
    from sandbox.runcache import RunCache, run_key

    cache_file = run_cache_of(campaign_dir)
    raw = RunCache(cache_file)
    with archive.open(campaign_dir, readonly=True) as store:
        config = store.campaign().config
        reader = RunReader(store, config, open_run_cache(cache_file))
        full = [p for p in store.programs() if p.status == "evaluated" and p.stage in ("full", "confirmed")]
        checked = 0
        for rec in full:
            curves = reader.program_curves(rec)
            assert set(curves) == set(rec.scores)
            for task, curve in curves.items():
                assert curve.measure == "validation"
                assert curve.lrs == sorted(config["evaluation"]["lr_grid"])
                entry = rec.scores[task]
                for lr, value in zip(curve.lrs, curve.values):
                    raws = [raw.get(run_key(program_hash(rec.code), task, entry["task_version"], seed, lr,
                                            entry["steps"], "cpu")) for seed in config["evaluation"]["selection_seeds"]]
                    finals = [_final_validation_value(r) for r in raws]
                    if any(r["status"] == "pruned" for r in raws):  # cut by successive halving: no value, no failure
                        assert value is None and lr not in curve.diverged
                    elif all(f != float("inf") for f in finals):
                        assert value == pytest.approx(sum(finals) / len(finals), rel=1e-12)
                    else:
                        assert value is None and lr in curve.diverged
                # ... and the campaign's own selection chose the minimum of these values (a task
                # where every LR failed has none: the page marks them all diverged)
                finite = [(v, lr) for lr, v in zip(curve.lrs, curve.values) if v is not None]
                if not finite:
                    assert curve.diverged and set(curve.diverged) == set(curve.lrs)
                    continue
                assert min(finite)[1] == entry["best_lr"] == curve.best_lr
                checked += 1
        assert checked >= 2
        # tuned AdamW's grid, read from the cache without an archived program, picks its own best LR
        adamw = next(p for p in full if p.name == "adamw")
        base = reader.baseline_curve("adamw", "noisy_quadratic")
        assert base is not None and base.values == reader.program_curves(adamw)["noisy_quadratic"].values
        assert base.best_lr == adamw.scores["noisy_quadratic"]["best_lr"]
        # without the run cache: the archive's final training losses, and the page says which
        offline = RunReader(store, config, None).program_curves(adamw)["noisy_quadratic"]
        rows = [e for e in store.evaluations(adamw.id, "search") if e.role == "select" and e.task == "noisy_quadratic"]
        assert offline.measure == "train"
        for lr, value in zip(offline.lrs, offline.values):
            if any(e.metrics["status"] == "pruned" for e in rows if e.lr == lr):
                assert value is None and lr not in offline.diverged
                continue
            losses = [e.metrics["final_loss"] for e in rows if e.lr == lr]
            assert value == pytest.approx(sum(losses) / len(losses))
    raw.close()
    with_cache = build_report(campaign_dir, cache_file).split('<section id="sensitivity">')[1].split("</section>")[0]
    without = build_report(campaign_dir, cache_file.parent / "absent.sqlite").split('<section id="sensitivity">')[1]
    assert "final validation value" in with_cache and "AdamW (tuned baseline)" in with_cache
    assert "final training loss" in without.split("</section>")[0]
    assert "give it with" in build_report(campaign_dir, cache_file.parent / "absent.sqlite")  # the page says why
    assert "give it with" not in build_report(campaign_dir, cache_file)


def test_loss_curves_draw_the_baselines_on_the_validation_tier(campaign_dir):
    from discover.report import ReportData
    from discover.report_curves import curve_panels
    from discover.report_runs import RunReader, open_run_cache

    with archive.open(campaign_dir, readonly=True) as store:
        data = ReportData(store, campaign_dir)
        reader = RunReader(store, data.campaign.config, open_run_cache(run_cache_of(campaign_dir)))
        confirmed = [p for p in data.top if p.meta.get("validation_scores")]
        assert confirmed  # the first evaluated program is always confirmed
        panels = curve_panels(data.top[:3], data.baselines, reader, data._tier_seeds())
    validation = [p for p in panels if p.title.endswith("(validation)")]
    assert [p.title for p in validation] == ["noisy_quadratic@1 (validation)"]
    labels = {s.label for s in validation[0].series}
    # adam and lion were never seeded in this campaign: their curves come from the run cache
    assert {"adam (tuned)", "lion (tuned)"} <= labels
    assert validation[0].ylabel == "validation loss" and validation[0].target is not None
    assert all(len(s.x) == len(s.curve) > 1 for s in validation[0].series)


def test_robust_scales_clip_a_spike_and_say_so():
    import numpy as np

    from discover.report_plots import clip_note, robust_limits, use_log

    curve = list(np.geomspace(1.0, 1e-3, 60))
    spiked = curve + [1e-23]
    assert use_log(spiked)
    lo, hi = robust_limits(spiked, log=True)
    assert 1e-5 < lo <= 1e-3 and hi == pytest.approx(1.0)
    assert clip_note(np.asarray(spiked), lo, hi) == "off-scale: 1 below (min 1e-23)"
    lo, hi = robust_limits(curve, log=True)  # nothing clipped without an outlier
    assert lo == pytest.approx(1e-3) and clip_note(np.asarray(curve), lo, hi) == ""
    flat = list(np.linspace(0.7, 0.1, 50))
    assert not use_log(flat)  # less than ~1.5 decades: linear
    lo, hi = robust_limits(flat + [1e6], log=False)
    assert hi < 2.0 and lo == pytest.approx(0.1)
    # a curve's starting value stays on the axis even when it is far above the rest
    lo, hi = robust_limits(flat[10:] + [50.0], log=False, keep=[50.0])
    assert hi == 50.0


def test_family_tree_has_a_node_per_program_and_an_edge_per_parent_link(tmp_path):
    import random

    from discover.report_tree import ROW_CAPACITY, generations

    rng = random.Random(0)
    store, cid = make_archive(tmp_path / "big")
    code = reference_source("adamw")
    ids = [store.add_program(code, campaign_id=cid, proposer="reference", name=name, status="evaluated",
                             fitness=f, stage="full", scores={})
           for name, f in (("adamw", 1.0), ("adam", 0.9), ("lion", 0.6))]
    links = 0
    for i in range(297):  # 300 programs: children of recent and early programs, a few crossovers
        parents = sorted(set(rng.sample(ids[-40:], 2 if rng.random() < 0.2 else 1)))
        status = rng.choice(["evaluated"] * 6 + ["failed", "duplicate"])
        ids.append(store.add_program(f"{code}\n# variant {i}", campaign_id=cid, parent_ids=parents,
                                     proposer="mutation", status=status,
                                     fitness=rng.uniform(0.05, 1.3) if status == "evaluated" else None,
                                     stage="full" if status == "evaluated" else None))
        links += len(parents)
    store.set_best_program(cid, ids[-1] if store.program(ids[-1]).status == "evaluated" else ids[0])
    store.close()
    html = build_report(tmp_path / "big")
    tree = html.split('<section id="family">')[1].split("</section>")[0]
    nodes = re.findall(r'<g class="node" data-id="(\d+)">', tree)
    edges = re.findall(r'<path class="edge" data-parent="(\d+)" data-child="(\d+)"', tree)
    assert sorted(map(int, nodes)) == sorted(ids)
    assert len(edges) == links
    with archive.open(tmp_path / "big", readonly=True) as store:
        programs = store.programs()
        expected = {(q, p.id) for p in programs for q in p.parent_ids}
        gen = generations(programs)
    assert {(int(a), int(b)) for a, b in edges} == expected
    assert all(gen[child] > gen[parent] for parent, child in expected)  # layered: parents above children
    width = float(re.search(r'<svg class="family-tree" viewBox="0 0 ([\d.]+)', tree).group(1))
    assert width <= 64 + 24 + ROW_CAPACITY * 13 + 1  # wide generations wrap instead of running off
    assert "<title>#" in tree  # hovering a node names it


def test_progress_places_a_program_at_its_search_tier_result(tmp_path):
    import sqlite3
    from datetime import datetime, timedelta, timezone

    from discover.report import ReportData

    store, cid = make_archive(tmp_path / "timed")
    pid = store.add_program(reference_source("adamw"), campaign_id=cid, proposer="mutation", status="evaluated",
                            fitness=1.2, stage="confirmed", heldout_fitness=1.1, scores={},
                            meta={"confirmed_fitness": 1.1})
    for suite in ("search", "search", "validation", "long_horizon", "test"):
        store.add_evaluation(pid, suite=suite, task="noisy_quadratic", seed=0, role="measure", metrics={})
    store.close()
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    minutes = {"search": 3, "validation": 20, "long_horizon": 40, "test": 128}  # the test tier runs at the end
    with sqlite3.connect(tmp_path / "timed" / "archive.db") as conn:
        conn.execute("UPDATE campaigns SET created_at = ?", (start.isoformat(),))
        for suite, m in minutes.items():
            conn.execute("UPDATE evaluations SET created_at = ? WHERE suite = ?",
                         ((start + timedelta(minutes=m)).isoformat(), suite))
    with archive.open(tmp_path / "timed", readonly=True) as store:
        data = ReportData(store, tmp_path / "timed")
        assert data._result_time(store.program(pid), start) == pytest.approx(3.0)


def test_cli_run_cache_option(campaign_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.html"
    assert run_cli(monkeypatch, "report", str(campaign_dir), "-o", str(out), "--run-cache", str(tmp_path / "none.sqlite")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no run cache at") and "\n" not in err and not out.exists()
    assert run_cli(monkeypatch, "report", str(campaign_dir), "-o", str(out), "--run-cache",
                   str(run_cache_of(campaign_dir))) == 0
    assert "final validation value" in out.read_text(encoding="utf-8")


def test_the_report_replays_selection_under_the_campaigns_halving_and_screen_settings():
    from discover.report_runs import eval_settings
    from sandbox.halving import RECOMMENDED

    assert eval_settings({}).halving == RECOMMENDED and eval_settings({}).screen
    off = eval_settings({"evaluation": {"halving": False, "screen": False}})
    assert off.halving is None and not off.screen
