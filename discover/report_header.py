"""The report's header: the campaign's name, status, configuration and spend."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from archive.store import Campaign, ProgramRecord
from discover.report_model import _display_dir, _duration, _num, _when



def header(campaign: Campaign | None, directory: Path, programs: list[ProgramRecord]) -> dict[str, Any]:
    """The page's title block: name, status, times, configuration and spend."""
    c = campaign
    config = c.config if c else {}
    spend = dict(c.spend or {}) if c else {}
    return {
        "name": c.name if c else directory.name,
        "status": c.status if c else "no campaign recorded",
        "directory": _display_dir(directory),
        "created_at": _when(c.created_at) if c else None,
        "updated_at": _when(c.updated_at) if c else None,
        "seed": c.seed if c else None,
        "summary": config_summary(config),
        "config_text": config_text(config),
        "spend": {
            "tokens": int(spend.get("tokens_in", 0) or 0) + int(spend.get("tokens_out", 0) or 0),
            "tokens_in": int(spend.get("tokens_in", 0) or 0),
            "tokens_out": int(spend.get("tokens_out", 0) or 0),
            "usd": float(spend.get("usd", 0.0) or 0.0),
            "evaluations": int(spend.get("evaluations", 0) or 0),
            "llm_calls": int(spend.get("llm_calls", 0) or 0),
            "cached_calls": int(spend.get("cached_calls", 0) or 0),
            "wall": _duration(_num(spend.get("seconds"))),
        },
        "counts": Counter(r.status for r in programs),
        "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }

def config_summary(config: dict) -> list[tuple[str, str]]:
    if not config:
        return []
    llm = config.get("llm", {}) or {}
    ev = config.get("evaluation", {}) or {}
    search = config.get("search", {}) or {}
    budget = config.get("budget", {}) or {}
    proposers = ", ".join(f"{k} {v:g}" for k, v in (search.get("proposers") or {}).items())
    caps = {"max_evaluations": "{} evaluations", "max_seconds": "{:g} s", "max_usd": "${:g}",
            "max_tokens": "{} tokens"}
    budget_text = ", ".join(fmt.format(budget[k]) for k, fmt in caps.items() if budget.get(k) is not None)
    tasks = ", ".join(ev.get("tasks") or []) or f"the {ev.get('suite', 'search')} suite"
    model = f"{llm.get('proposer_model')} at {llm.get('base_url')}" if llm.get("base_url") else \
        "offline (symbolic mutation, no LLM)"
    return [
        ("proposals", model),
        ("proposers", proposers or "-"),
        ("budget", budget_text or "none"),
        ("tasks", tasks),
        ("evaluation", f"steps x{ev.get('steps_scale', 1):g}, LR grid {_grid_text(ev.get('lr_grid') or [])}, "
                       f"selection seeds {ev.get('selection_seeds')}, measure seeds "
                       f"{ev.get('measure_seeds')}, confirm seeds {ev.get('confirm_seeds')}, "
                       f"screening {'on' if ev.get('screen') else 'off'}, test tier "
                       f"{'on' if ev.get('test_tier', ev.get('heldout')) else 'off'}"),
        ("seed programs", ", ".join(search.get("seed_programs") or []) or "-"),
    ]

def config_text(config: dict) -> str:
    if not config:
        return ""
    try:
        from discover.config import CampaignConfig, to_toml

        return to_toml(CampaignConfig.model_validate(config))
    except Exception:  # noqa: BLE001  (an older or foreign config still shows, as JSON)
        return json.dumps(config, indent=2, sort_keys=True)


def _grid_text(grid: list[float]) -> str:
    return f"{len(grid)} points {min(grid):g}..{max(grid):g}" if grid else "-"
