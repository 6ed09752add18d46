"""`discover report`: a self-contained HTML page from a real small campaign, and plain pages
(never a crash) for empty, failed-only and running campaigns; exit code 2 on a bad directory."""

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
                             r"""|@import|<script|<link\b|<iframe|<img\b""", re.I)


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
    assert len(svgs(html)) == 1  # the failures chart; nothing else has data
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
    assert len(svgs(html)) == 3  # progress, curves, profile (no failures)
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
