"""`discover report`: one self-contained HTML page about a campaign.

The page holds everything inline (CSS, SVG figures, one small script that sorts the
leaderboard; no fonts, images or links to fetch), so it opens offline and can be mailed around.
It shows the campaign's header and spend; best fitness over candidates and over spend (each
program placed when its search-tier result was known) against the baselines; a sortable
leaderboard of every evaluated program on the three tiers with its verdict, and per-task
speed-ups; loss curves of the best programs against the tuned baselines on every tier; their
learning-rate sensitivity against AdamW's over the grid; a performance profile; the whole
population's family tree; the winner's lineage with code diffs; failures and proposer success
rates; and the winner's code with the command that exports it.

The archive (and the run cache, when this machine has it) is opened read-only, so a report can
be regenerated while the campaign runs. Bad input never crashes it: a missing or corrupt
directory is a :class:`UserError` (one line, exit code 2 on the command line); an empty
campaign, one with only failures, or one still running renders a page that says so.

Python API: :func:`build_report` (the HTML text) and :func:`write_report` (to a file). The
pieces live beside it: ``report_model`` (rows), ``report_header``, ``report_curves``,
``report_sensitivity`` and ``report_runs`` (what is read back from the runs), ``report_tree``
(family tree), ``report_failures``, ``report_code`` (diffs, highlighting), ``report_plots``.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

import archive as archive_store
from archive.store import Archive, ArchiveError, Campaign, LineageNode, ProgramRecord
from discover import report_curves, report_failures, report_header, report_sensitivity
from discover import report_plots as plots
from discover.errors import UserError
from discover.report_code import DiffLine, code_diff, highlight_python, normalised_code  # noqa: F401  (API)
from discover.report_model import (Figure, LineageStep, ProgramRow, TaskRow, TreeNode, _figure,
                                   _label, _num, _origin, _parse_time, export_command)
from discover.report_runs import RunReader, open_run_cache, search_time
from discover.report_tree import family_tree_svg
from discover.output import write_user_file
from discover.summary import verdict
from sandbox.evaluate import BASELINES

TEMPLATES = Path(__file__).resolve().parent / "templates"
LEADERBOARD_SIZE = 10
"""Candidates shown in the leaderboard (the baselines are shown besides them)."""
CURVE_PROGRAMS = 3
"""Best programs drawn in the loss-curve panels."""
PROFILE_PROGRAMS = 4
"""Best programs compared in the performance profile."""
BASELINE_TITLES = {"adamw": "AdamW", "adam": "Adam", "sgd_momentum": "SGD-momentum", "lion": "Lion"}


# --- gathering ----------------------------------------------------------------------------


class ReportData:
    """Everything the page shows, read from one archive."""

    def __init__(self, store: Archive, directory: Path, run_cache: str | os.PathLike | None = None):
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
        # The runs' own records (LR grid, baselines' curves) when this machine has the run cache.
        self.reader = RunReader(store, self.campaign.config if self.campaign else {}, open_run_cache(run_cache))

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

    # --- progress

    def _result_time(self, rec: ProgramRecord, start: datetime | None) -> float:
        """Minutes from the campaign's start to when ``rec``'s search-tier result was known (not
        its later validation or end-of-run test-tier checks, which would put every confirmed
        program at the end of the run)."""
        when = _parse_time(search_time(self.store, rec)) if rec.fitness is not None else None
        when = when or _parse_time(rec.created_at)
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
        """The fittest candidates and every reference, best first (the per-task tables' rows)."""
        candidates = sorted((r for r in self.evaluated if r.proposer != "reference"), key=lambda r: (-r.fitness, r.id))
        shown = candidates[:LEADERBOARD_SIZE]
        if self.winner is not None and self.winner not in shown and self.winner.proposer != "reference":
            shown.append(self.winner)
        shown += [r for r in self.references if r.status == "evaluated" and r.fitness is not None]
        return [self._row(r) for r in sorted(shown, key=lambda r: (-r.fitness, r.id))]

    def population(self) -> list[ProgramRow]:
        """Every evaluated program (the sortable leaderboard), best search fitness first."""
        return [self._row(r) for r in sorted(self.evaluated, key=lambda r: (-r.fitness, r.id))]

    def family_tree(self) -> Markup | None:
        if not self.programs:
            return None
        target = self.lineage_target()
        lineage: set[int] = set()
        if target is not None:
            stack = [target.id]
            while stack:
                pid = stack.pop()
                if pid in lineage or pid not in self.by_id:
                    continue
                lineage.add(pid)
                stack.extend(self.by_id[pid].parent_ids)
        return family_tree_svg(self.programs, self.winner.id if self.winner else None, lineage,
                               target.id if target is not None else None)

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

    def _tier_seeds(self) -> dict[str, tuple[int, ...]]:
        ev = ((self.campaign.config if self.campaign else {}) or {}).get("evaluation") or {}
        defaults = {"search": (100, 101), "validation": (200, 201, 202), "test": (300, 301)}
        keys = {"search": "measure_seeds", "validation": "confirm_seeds", "test": "test_seeds"}
        return {tier: tuple(ev.get(key) or defaults[tier]) for tier, key in keys.items()}

    def curves_figure(self) -> Figure | None:
        panels = report_curves.curve_panels(self.top[:CURVE_PROGRAMS], self.baselines, self.reader, self._tier_seeds())
        return _figure(plots.loss_curves, panels) if panels else None

    def sensitivity_figure(self) -> Figure | None:
        """Final value against learning rate over the grid, for the best programs and AdamW."""
        shown = [r for r in self.top[:CURVE_PROGRAMS]]
        try:
            panels = report_sensitivity.gather(self.reader, shown, [plots.program_color(i) for i in range(len(shown))],
                                               self.baselines.get("adamw"))
        except Exception as exc:  # noqa: BLE001  (a report shows what it can)
            return Figure(None, f"{type(exc).__name__}: {exc}")
        return _figure(report_sensitivity.figure, panels) if panels else None

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


def build_report(campaign_dir: str | os.PathLike, run_cache: str | os.PathLike | None = None) -> str:
    """The HTML text of the report on the campaign in ``campaign_dir`` (opened read-only).
    ``run_cache``: the run cache's SQLite file (default: where campaigns write it; missing:
    LR sensitivity falls back to the archive's training losses, baselines to archived ones).

    Raises :class:`UserError` when the directory is missing or holds no readable archive.
    """
    directory = Path(campaign_dir).expanduser()
    with _open(directory) as store:
        data = None
        try:
            data = ReportData(store, directory, run_cache)
            context = _context(data)
        except ArchiveError as exc:
            raise UserError(f"cannot read the campaign in {directory}: {exc}") from None
        finally:
            if data is not None and data.reader.cache is not None:
                data.reader.cache.close()
    return _environment().get_template("report.html.j2").render(**context)


def _context(data: ReportData) -> dict[str, Any]:
    leaderboard = data.leaderboard()
    winner = data.winner
    return {
        "header": report_header.header(data.campaign, data.directory, data.programs),
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
        "sensitivity": data.sensitivity_figure(),
        # after the figures: whether the run cache answered any of their lookups
        "run_cache": data.reader.cache is not None and data.reader.hits > 0,
        "population": data.population(),
        "family_tree": data.family_tree(),
        "profile": data.profile_figure(),
        "tree": data.tree(),
        "lineage_of": (target := data.lineage_target()) and {"label": _label(target), "id": target.id},
        "steps": data.lineage_steps(),
        "failure_rows": report_failures.failure_table(data.failures),
        "failures_plot": report_failures.failures_figure(data.candidates, data.failures),
        "proposers": report_failures.proposer_table(data.candidates, data.by_id),
    }


def write_report(campaign_dir: str | os.PathLike, output_path: str | os.PathLike,
                 run_cache: str | os.PathLike | None = None) -> Path:
    """Write the report on ``campaign_dir`` to ``output_path`` (an .html file); return its path."""
    return write_user_file(output_path, build_report(campaign_dir, run_cache), "report.html")
