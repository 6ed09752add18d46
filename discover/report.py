"""`discover report`: one self-contained HTML page about a campaign.

The page holds everything inline (CSS, SVG figures; no scripts, fonts or links to fetch), so it
opens offline and can be mailed around. It shows the campaign's header and spend, best fitness
over candidates and over spend against the baselines, a leaderboard with per-task speed-ups
(search and held-out), loss curves of the best programs against the tuned baselines, a
performance profile, the winner's lineage with code diffs, failures and proposer success rates,
and the winner's code with the command that exports it.

The archive is opened read-only, so a report can be regenerated while the campaign runs. Bad
input never crashes it: a missing or corrupt directory is a :class:`UserError` (one line, exit
code 2 on the command line); an empty campaign, one with only failures, or one still running
renders a page that says so.

Python API: :func:`build_report` (the HTML text) and :func:`write_report` (to a file).
"""

from __future__ import annotations

import ast
import difflib
import io
import json
import keyword
import math
import os
import shlex
import tokenize
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import jinja2
from markupsafe import Markup, escape

import archive as archive_store
from archive.store import Archive, ArchiveError, Campaign, LineageNode, ProgramRecord
from discover import report_plots as plots
from discover.errors import UserError
from discover.output import write_user_file
from discover.summary import verdict
from sandbox.contract import parse_ast
from sandbox.evaluate import BASELINES

TEMPLATES = Path(__file__).resolve().parent / "templates"
LEADERBOARD_SIZE = 10
"""Candidates shown in the leaderboard (the baselines are shown besides them)."""
CURVE_PROGRAMS = 3
"""Best programs drawn in the loss-curve panels."""
PROFILE_PROGRAMS = 4
"""Best programs compared in the performance profile."""
FAILURE_BINS = 12
"""At most this many batches in the failures-over-time chart."""
BASELINE_TITLES = {"adamw": "AdamW", "adam": "Adam", "sgd_momentum": "SGD-momentum", "lion": "Lion"}


# --- view model ---------------------------------------------------------------------------


@dataclass
class TaskRow:
    """One program on one task, as the per-task tables show it."""

    suite: str
    task: str
    score: float | None
    vs: dict[str, float | None]
    best_lr: float | None
    lr_at_edge: bool
    final_loss: float | None
    test_metric: float | None
    status: str
    message: str


@dataclass
class ProgramRow:
    """One leaderboard row."""

    id: int
    label: str
    origin: str
    is_baseline: bool
    is_winner: bool
    stage: str
    fitness: float | None
    spread: float | None
    confirmed: float | None
    confirmed_spread: float | None
    confirm_seeds: list[int]
    heldout: float | None
    heldout_spread: float | None
    heldout_note: str
    tasks: list[TaskRow]
    color: str | None = None
    verdict: str = ""


@dataclass
class DiffLine:
    kind: str  # add | del | hunk | ctx
    text: str


@dataclass
class LineageStep:
    """One program on the way to the winner, with what changed from its first parent."""

    id: int
    label: str
    proposer: str
    parent_ids: list[int]
    fitness: float | None
    parent_fitness: float | None
    edits: list[str]
    critique: str | None
    diff: list[DiffLine]


@dataclass
class TreeNode:
    """One program in the lineage tree; ``parents`` are its parents' trees."""

    id: int
    name: str | None
    origin: str
    fitness: float | None
    repeated: bool
    missing: list[int]
    parents: list[TreeNode] = field(default_factory=list)


@dataclass
class Figure:
    """An inline SVG figure, or the reason it could not be drawn."""

    svg: Markup | None
    error: str | None = None


# --- helpers ------------------------------------------------------------------------------


def _label(rec: ProgramRecord) -> str:
    if rec.proposer == "reference":
        return rec.name or f"#{rec.id}"
    return f"#{rec.id}"


def _origin(rec: ProgramRecord) -> str:
    if rec.proposer == "reference":
        return "baseline" if rec.name in BASELINES else "reference"
    parents = ", ".join(f"#{p}" for p in rec.parent_ids)
    return f"{rec.proposer} of {parents}" if parents else rec.proposer


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _when(text: str | None) -> str | None:
    """An archive timestamp as a person reads it: ``2026-11-24 06:49:34 UTC``."""
    value = _parse_time(text)
    return None if value is None else value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _num(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _figure(draw: Callable[..., str], *args: Any, **kwargs: Any) -> Figure:
    """Draw a figure; a drawing error becomes a note on the page instead of a crash."""
    try:
        return Figure(Markup(draw(*args, **kwargs)))
    except Exception as exc:  # noqa: BLE001  (a report shows what it can)
        return Figure(None, f"{type(exc).__name__}: {exc}")


def normalised_code(code: str) -> str:
    """``code`` as the AST sees it (no comments or module docstring, one quoting style), so a
    diff shows what changed in behaviour, not in formatting; unparsable text is kept as is."""
    try:
        tree = parse_ast(code)
    except SyntaxError:
        return code
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        tree.body = body[1:]
    return ast.unparse(tree)


def code_diff(before: str, after: str, context: int = 2) -> list[DiffLine]:
    """A unified diff of two programs' normalised code, each line tagged for colouring."""
    lines = difflib.unified_diff(normalised_code(before).splitlines(), normalised_code(after).splitlines(),
                                 "parent", "child", lineterm="", n=context)
    out = []
    for line in lines:
        if line.startswith(("---", "+++")):
            continue
        kind = "hunk" if line.startswith("@@") else "add" if line.startswith("+") else \
            "del" if line.startswith("-") else "ctx"
        out.append(DiffLine(kind, line))
    return out


def highlight_python(code: str) -> Markup:
    """Escaped code with ``<span>`` classes for keywords, names, strings, numbers and comments."""
    lines = code.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    out: list[str] = []
    pos = 0
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return Markup(escape(code))
    for tok in tokens:
        (srow, scol), (erow, ecol) = tok.start, tok.end
        if srow > len(lines) or not tok.string:
            continue
        start = offsets[srow - 1] + scol
        end = offsets[min(erow, len(lines)) - 1] + ecol
        css = None
        if tok.type == tokenize.COMMENT:
            css = "c"
        elif tok.type == tokenize.STRING:
            css = "s"
        elif tok.type == tokenize.NUMBER:
            css = "n"
        elif tok.type == tokenize.NAME and keyword.iskeyword(tok.string):
            css = "k"
        elif tok.type == tokenize.NAME and tok.string in ("init", "update", "HPARAMS"):
            css = "f"
        if css is None or start < pos:
            continue
        out.append(str(escape(code[pos:start])))
        out.append(f'<span class="{css}">{escape(code[start:end])}</span>')
        pos = end
    out.append(str(escape(code[pos:])))
    return Markup("".join(out))


def _display_dir(directory: Path) -> str:
    """The campaign directory as a user would type it: resolved (``latest`` moves on), relative
    to the working directory when inside it."""
    resolved = directory.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def export_command(directory: Path, program_id: int) -> str:
    """The exact command that exports program ``program_id`` of the campaign in ``directory``."""
    return f"discover export {shlex.quote(f'{_display_dir(directory)}:{program_id}')} -o my_optimizer.py"


# --- gathering ----------------------------------------------------------------------------


class ReportData:
    """Everything the page shows, read from one archive."""

    def __init__(self, store: Archive, directory: Path):
        self.store = store
        self.directory = directory
        self.programs = sorted(store.programs(), key=lambda r: r.id)
        self.by_id = {r.id: r for r in self.programs}
        try:
            self.campaign: Campaign | None = store.campaign()
        except ArchiveError:
            self.campaign = None
        self.references = [r for r in self.programs if r.proposer == "reference"]
        self.candidates = [r for r in self.programs if r.proposer != "reference"]
        self.evaluated = [r for r in self.programs if r.status == "evaluated" and r.fitness is not None]
        self.failures = store.failures()
        self.baselines = {name: ref for name in BASELINES for ref in self.references
                          if ref.name == name and ref.status == "evaluated" and ref.scores}
        self.winner = self._winner()
        self.top = self._top_programs()

    # --- choices

    def _winner(self) -> ProgramRecord | None:
        if self.campaign is not None and self.campaign.best_program_id in self.by_id:
            return self.by_id[self.campaign.best_program_id]
        winner = self.store.winner()
        return None if winner is None else self.by_id[winner.id]

    def _top_programs(self) -> list[ProgramRecord]:
        """The winner, then the fittest fully evaluated candidates (the programs the plots follow)."""
        ranked = sorted((r for r in self.evaluated if r.proposer != "reference" and r.stage != "screen"),
                        key=lambda r: (-r.fitness, r.id))
        top = [self.winner] if self.winner is not None else []
        top += [r for r in ranked if r not in top]
        return top[:max(CURVE_PROGRAMS, PROFILE_PROGRAMS)]

    def color(self, rec: ProgramRecord) -> str | None:
        return plots.program_color(self.top.index(rec)) if rec in self.top else None

    # --- header

    def header(self) -> dict[str, Any]:
        c = self.campaign
        config = c.config if c else {}
        spend = dict(c.spend or {}) if c else {}
        return {
            "name": c.name if c else self.directory.name,
            "status": c.status if c else "no campaign recorded",
            "directory": _display_dir(self.directory),
            "created_at": _when(c.created_at) if c else None,
            "updated_at": _when(c.updated_at) if c else None,
            "seed": c.seed if c else None,
            "summary": self._config_summary(config),
            "config_text": self._config_text(config),
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
            "counts": Counter(r.status for r in self.programs),
            "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        }

    @staticmethod
    def _config_summary(config: dict) -> list[tuple[str, str]]:
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

    @staticmethod
    def _config_text(config: dict) -> str:
        if not config:
            return ""
        try:
            from discover.config import CampaignConfig, to_toml

            return to_toml(CampaignConfig.model_validate(config))
        except Exception:  # noqa: BLE001  (an older or foreign config still shows, as JSON)
            return json.dumps(config, indent=2, sort_keys=True)

    # --- progress

    def _result_time(self, rec: ProgramRecord, start: datetime | None) -> float:
        """Minutes from the campaign's start to when ``rec``'s result was known."""
        times = [_parse_time(e.created_at) for e in self.store.evaluations(rec.id)] if rec.fitness is not None else []
        when = max((t for t in times if t), default=None) or _parse_time(rec.created_at)
        if start is None or when is None:
            return 0.0
        return max(0.0, (when - start).total_seconds() / 60.0)

    def progress_figure(self) -> Figure | None:
        if not any(r.stage != "screen" for r in self.evaluated):
            return None
        start = _parse_time(self.campaign.created_at) if self.campaign else None
        online = any(r.cost_usd for r in self.candidates)
        points, spent = [], 0.0
        ordered = sorted(self.candidates, key=lambda r: (r.meta.get("proposal_index", r.id), r.id))
        for index, rec in enumerate(ordered, start=1):
            spent += rec.cost_usd or 0.0
            full = rec.status == "evaluated" and rec.stage != "screen"
            points.append(plots.ProgressPoint(
                index=index, spend=spent if online else self._result_time(rec, start),
                measured=rec.fitness if full else None,
                confirmed=rec.confirmed_fitness if full else None, label=_label(rec)))
        seeded = [r for r in self.references if r.status == "evaluated" and r.stage != "screen" and r.fitness]
        seed_measured = max((r.fitness for r in seeded), default=None)
        seed_confirmed = max((c for r in seeded if (c := r.confirmed_fitness) is not None),
                             default=None)
        label = "dollars spent on LLM calls" if online else "wall time (minutes since start)"
        return _figure(plots.fitness_progress, points, self.baseline_fitness(), seed_measured, seed_confirmed, label)

    def baseline_fitness(self) -> dict[str, float]:
        out = {}
        for name, ref in self.baselines.items():
            value = ref.confirmed_fitness or ref.fitness
            if value is not None:
                out[name if ref.stage != "screen" else f"{name}, screened out"] = value
        return out

    # --- leaderboard

    def _task_rows(self, suite: str, scores: dict | None) -> list[TaskRow]:
        rows = []
        for task, entry in (scores or {}).items():
            if not isinstance(entry, dict):
                continue
            vs = entry.get("vs_baselines") or {}
            rows.append(TaskRow(
                suite=suite, task=task, score=_num(entry.get("score")), vs={b: _num(vs.get(b)) for b in BASELINES},
                best_lr=_num(entry.get("best_lr")), lr_at_edge=bool(entry.get("lr_at_edge")),
                final_loss=_num(entry.get("final_loss")), test_metric=_num(entry.get("test_metric")),
                status=str(entry.get("status", "?")), message=str(entry.get("message") or "")))
        return rows

    def _row(self, rec: ProgramRecord) -> ProgramRow:
        meta = rec.meta or {}
        if rec.heldout_fitness is not None:
            note = ""
        elif meta.get("heldout_failure"):
            note = f"failed: {meta['heldout_failure'][0]}"
        else:
            note = "not run"
        return ProgramRow(
            id=rec.id, label=_label(rec), origin=_origin(rec), is_baseline=rec.proposer == "reference",
            is_winner=self.winner is not None and rec.id == self.winner.id, stage=rec.stage or "-",
            fitness=rec.fitness, spread=rec.fitness_spread, confirmed=rec.confirmed_fitness,
            confirmed_spread=_num(meta.get("confirmed_spread")), confirm_seeds=list(meta.get("confirm_seeds") or []),
            heldout=rec.heldout_fitness, heldout_spread=_num(meta.get("heldout_spread")), heldout_note=note,
            tasks=(self._task_rows("search", rec.scores) + self._task_rows("validation", meta.get("validation_scores"))
                   + self._task_rows("test", meta.get("heldout_scores"))),
            color=self.color(rec), verdict=verdict(rec))

    def leaderboard(self) -> list[ProgramRow]:
        """The fittest candidates and every reference, best first."""
        candidates = sorted((r for r in self.evaluated if r.proposer != "reference"), key=lambda r: (-r.fitness, r.id))
        shown = candidates[:LEADERBOARD_SIZE]
        if self.winner is not None and self.winner not in shown and self.winner.proposer != "reference":
            shown.append(self.winner)
        shown += [r for r in self.references if r.status == "evaluated" and r.fitness is not None]
        return [self._row(r) for r in sorted(shown, key=lambda r: (-r.fitness, r.id))]

    def task_columns(self, rows: list[ProgramRow]) -> list[tuple[str, str]]:
        """(suite, task) columns of the per-task matrix, search tasks first."""
        seen: dict[tuple[str, str], None] = {}
        for suite in ("search", "validation", "test"):
            for row in rows:
                for t in row.tasks:
                    if t.suite == suite:
                        seen.setdefault((suite, t.task), None)
        return list(seen)

    # --- curves and profile

    def _curve_panels(self) -> list[plots.Panel]:
        shown = [r for r in self.top[:CURVE_PROGRAMS]]
        panels = []
        tasks: dict[str, int] = {}
        for rec in shown + list(self.baselines.values()):
            for task, entry in (rec.scores or {}).items():
                if isinstance(entry, dict) and entry.get("curve"):
                    tasks.setdefault(task, int(entry.get("steps") or len(entry["curve"])))
        for task, steps in tasks.items():
            series = []
            for rank, rec in enumerate(shown):
                entry = (rec.scores or {}).get(task) or {}
                if entry.get("curve"):
                    series.append(plots.Series(f"{_label(rec)} ({rec.proposer})" if rec.proposer != "reference"
                                               else f"{_label(rec)} (best program)",
                                               entry["curve"], {"color": plots.program_color(rank)}))
            for name, ref in self.baselines.items():
                if ref in shown:
                    continue
                entry = (ref.scores or {}).get(task) or {}
                if entry.get("curve"):
                    series.append(plots.Series(f"{name} (tuned)", entry["curve"],
                                               {**plots.baseline_style(name), "linewidth": 1.1}))
            panels.append(plots.Panel(task, steps, series))
        heldout_tasks: dict[str, int] = {}
        for rec in shown:
            for task, entry in (rec.meta.get("heldout_scores") or {}).items():
                if isinstance(entry, dict) and entry.get("curve"):
                    heldout_tasks.setdefault(task, int(entry.get("steps") or len(entry["curve"])))
        for task, steps in heldout_tasks.items():
            series = [plots.Series(f"{_label(rec)} ({rec.proposer})" if rec.proposer != "reference"
                                   else f"{_label(rec)} (best program)",
                                   rec.meta["heldout_scores"][task]["curve"], {"color": plots.program_color(rank)})
                      for rank, rec in enumerate(shown)
                      if ((rec.meta.get("heldout_scores") or {}).get(task) or {}).get("curve")]
            panels.append(plots.Panel(f"{task} (test)", steps, series))
        return panels

    def curves_figure(self) -> Figure | None:
        panels = self._curve_panels()
        return _figure(plots.loss_curves, panels) if panels else None

    def profile_figure(self) -> Figure | None:
        scores: dict[str, dict[str, float]] = {}
        styles: dict[str, dict] = {}
        for rank, rec in enumerate(self.top[:PROFILE_PROGRAMS]):
            name = _label(rec) if rec.proposer != "reference" else f"{rec.name} (best program)"
            scores[name] = {t: s for t, e in (rec.scores or {}).items() if (s := _num((e or {}).get("score")))}
            styles[name] = {"color": plots.program_color(rank)}
        for name, ref in self.baselines.items():
            if ref in self.top[:PROFILE_PROGRAMS]:
                continue
            scores[name] = {t: s for t, e in (ref.scores or {}).items() if (s := _num((e or {}).get("score")))}
            styles[name] = plots.baseline_style(name)
        if len(scores) < 2 or not any(scores.values()):
            return None
        return _figure(plots.performance_profile, scores, styles)

    # --- lineage

    def lineage_target(self) -> ProgramRecord | None:
        """Whose lineage to show: the winner, or the best candidate when a reference won (a
        reference has no ancestors; the best candidate shows what the search tried)."""
        if self.winner is None or self.winner.proposer != "reference":
            return self.winner
        return next((r for r in self.top if r.proposer != "reference"), self.winner)

    def tree(self) -> TreeNode | None:
        target = self.lineage_target()
        if target is None:
            return None

        def convert(node: LineageNode) -> TreeNode:
            rec = node.program
            return TreeNode(rec.id, rec.name if rec.proposer == "reference" else None, _origin(rec), rec.fitness,
                            node.repeated,
                            list(node.missing_parent_ids), [convert(p) for p in node.parents])

        return convert(self.store.lineage(target.id))

    def lineage_steps(self) -> list[LineageStep]:
        """Every ancestor of the lineage target that was derived from a parent, oldest first."""
        target = self.lineage_target()
        if target is None:
            return []
        seen: dict[int, ProgramRecord] = {}

        def walk(node: LineageNode) -> None:
            if node.program.id in seen:
                return
            seen[node.program.id] = node.program
            for parent in node.parents:
                walk(parent)

        walk(self.store.lineage(target.id))
        steps = []
        for rec in sorted(seen.values(), key=lambda r: r.id):
            if not rec.parent_ids:
                continue
            parent = self.by_id.get(rec.parent_ids[0])
            steps.append(LineageStep(
                id=rec.id, label=_label(rec), proposer=rec.proposer, parent_ids=list(rec.parent_ids),
                fitness=rec.fitness, parent_fitness=parent.fitness if parent else None,
                edits=[str(e) for e in (rec.meta.get("edits") or [])], critique=rec.critique,
                diff=code_diff(parent.code, rec.code) if parent else []))
        return steps

    # --- failures and proposers

    def failure_table(self) -> list[dict[str, Any]]:
        by_reason: dict[str, list] = {}
        for f in self.failures:
            by_reason.setdefault(f.reason, []).append(f)
        rows = [{"reason": reason, "count": len(items), "programs": len({f.program_id for f in items}),
                 "example": f"#{items[-1].program_id} ({items[-1].stage}): {items[-1].message}"}
                for reason, items in by_reason.items()]
        return sorted(rows, key=lambda r: (-r["count"], r["reason"]))

    def failures_figure(self) -> Figure | None:
        ordered = sorted(self.candidates, key=lambda r: (r.meta.get("proposal_index", r.id), r.id))
        if not ordered or not (self.failures or any(r.status == "duplicate" for r in ordered)):
            return None
        size = max(1, math.ceil(len(ordered) / FAILURE_BINS))
        position = {rec.id: i // size for i, rec in enumerate(ordered)}
        nbins = max(position.values()) + 1
        labels = [f"{b * size + 1}-{min((b + 1) * size, len(ordered))}" if size > 1 else str(b + 1)
                  for b in range(nbins)]
        # Each candidate counts once: by its first failure (a program may fail several tasks), or
        # as a duplicate, so a batch's bar never exceeds the number of candidates proposed in it.
        first_reason: dict[int, str] = {}
        for f in self.failures:
            first_reason.setdefault(f.program_id, f.reason)
        counts: dict[str, list[int]] = {}
        for rec in ordered:
            reason = "duplicate" if rec.status == "duplicate" else first_reason.get(rec.id)
            if reason is not None:
                counts.setdefault(reason, [0] * nbins)[position[rec.id]] += 1
        proposed = [0] * nbins
        for b in position.values():
            proposed[b] += 1
        if not counts:
            return None
        ranked = dict(sorted(counts.items(), key=lambda kv: (kv[0] == "duplicate", -sum(kv[1]))))
        return _figure(plots.failures_over_time, labels, ranked, proposed)

    def proposer_table(self) -> list[dict[str, Any]]:
        rows = []
        kinds = sorted({r.proposer for r in self.candidates})
        for kind in kinds:
            mine = [r for r in self.candidates if r.proposer == kind]
            status = Counter(r.status for r in mine)
            evaluated = [r for r in mine if r.status == "evaluated" and r.fitness is not None]
            improved = 0
            for rec in evaluated:
                parents = [self.by_id[p].fitness for p in rec.parent_ids
                           if p in self.by_id and self.by_id[p].fitness is not None]
                if parents and rec.stage != "screen" and rec.fitness > max(parents):
                    improved += 1
            rows.append({
                "kind": kind, "proposed": len(mine), "evaluated": status["evaluated"], "failed": status["failed"],
                "duplicate": status["duplicate"], "pending": status["pending"] + status["rejected"],
                "success": status["evaluated"] / len(mine), "improved": improved,
                "improved_rate": improved / len(mine),
                "best": max((r.fitness for r in evaluated if r.stage != "screen"), default=None),
            })
        return rows


# --- rendering ----------------------------------------------------------------------------


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

    def fmt(value: Any, spec: str = ".3f", missing: str = "-") -> str:
        number = _num(value)
        return missing if number is None else format(number, spec)

    env.filters["fmt"] = fmt
    env.filters["pct"] = lambda value: "-" if value is None else f"{100 * value:.0f}%"
    # task names break after their underscores, so wide tables of tasks fit the page
    env.filters["breakable"] = lambda text: Markup(str(escape(text)).replace("_", "_<wbr>"))
    env.globals["baseline_titles"] = BASELINE_TITLES
    env.globals["baselines"] = BASELINES
    return env


def _open(campaign_dir: str | os.PathLike) -> Archive:
    directory = Path(campaign_dir).expanduser()
    if not directory.exists():
        raise UserError(f"no campaign directory at {directory} (run `discover run` first, or name one)")
    try:
        return archive_store.open(directory, readonly=True)
    except ArchiveError as exc:
        raise UserError(f"cannot read the campaign in {directory}: {exc}") from None


def build_report(campaign_dir: str | os.PathLike) -> str:
    """The HTML text of the report on the campaign in ``campaign_dir`` (opened read-only).

    Raises :class:`UserError` when the directory is missing or holds no readable archive.
    """
    directory = Path(campaign_dir).expanduser()
    with _open(directory) as store:
        try:
            data = ReportData(store, directory)
            context = _context(data)
        except ArchiveError as exc:
            raise UserError(f"cannot read the campaign in {directory}: {exc}") from None
    return _environment().get_template("report.html.j2").render(**context)


def _context(data: ReportData) -> dict[str, Any]:
    leaderboard = data.leaderboard()
    winner = data.winner
    return {
        "header": data.header(),
        "n_programs": len(data.programs),
        "n_candidates": len(data.candidates),
        "n_evaluated": len(data.evaluated),
        "n_failures": len(data.failures),
        "winner": winner and {
            "id": winner.id, "label": _label(winner), "origin": _origin(winner),
            "is_reference": winner.proposer == "reference", "fitness": winner.fitness,
            "spread": winner.fitness_spread, "confirmed": winner.confirmed_fitness,
            "confirmed_spread": _num(winner.meta.get("confirmed_spread")), "heldout": winner.heldout_fitness,
            "verdict": verdict(winner), "code": highlight_python(winner.code), "export": export_command(data.directory, winner.id),
        },
        "baseline_fitness": data.baseline_fitness(),
        "missing_baselines": [b for b in BASELINES if b not in data.baselines],
        "progress": data.progress_figure(),
        "leaderboard": leaderboard,
        "task_columns": data.task_columns(leaderboard),
        "details": [row for row in leaderboard if not row.is_baseline][:5],
        "curves": data.curves_figure(),
        "profile": data.profile_figure(),
        "tree": data.tree(),
        "lineage_of": (target := data.lineage_target()) and {"label": _label(target), "id": target.id},
        "steps": data.lineage_steps(),
        "failure_rows": data.failure_table(),
        "failures_plot": data.failures_figure(),
        "proposers": data.proposer_table(),
    }


def write_report(campaign_dir: str | os.PathLike, output_path: str | os.PathLike) -> Path:
    """Write the report on ``campaign_dir`` to ``output_path`` (an .html file); return its path."""
    return write_user_file(output_path, build_report(campaign_dir), "report.html")


def _grid_text(grid: list[float]) -> str:
    return f"{len(grid)} points {min(grid):g}..{max(grid):g}" if grid else "-"
