"""A campaign's checks of what it found: a would-be best is confirmed on the validation tier
(and at a longer horizon) and announced only by the announce rule; before the campaign ends
the unchecked runners-up are checked, and the best are scored on the test tier. Mixed into
:class:`discover.campaign.Campaign`; the confirmations run on the queue of
``discover/confirmations.py``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from archive.store import ProgramRecord
from archive.timings import record_timings
from discover.campaign_evaluation import _evaluation_rows
from discover.campaign_events import Event
from sandbox import scoring
from sandbox.evaluate import EvaluationResult, Evaluator, beats_adamw


class CampaignChecks:
    """Confirmation, the announce rule, final checks and the test tier of
    :class:`discover.campaign.Campaign`."""

    def best_confirmed(self) -> tuple[int | None, float]:
        """The id and confirmed fitness of the best program confirmed so far (None, -inf: none)."""
        winner = self.archive.winner()
        if winner is None or winner.confirmed_fitness is None:
            return None, float("-inf")
        return winner.id, winner.confirmed_fitness

    def _best_confirmed_search(self, reference: bool) -> float:
        """The best search fitness among confirmed programs of one kind, seed references or
        candidates (-inf: none). Kept apart so a strong seed (Adam, say) never stops the
        campaign from checking what it discovered. Read from the archive once (a resumed
        campaign's confirmations count), then kept up to date by :meth:`_confirm`, the only
        writer of confirmations: a scan of every summary per candidate cost ~10 ms at 10,000
        programs."""
        if self._confirmed_search is None:
            best = {True: float("-inf"), False: float("-inf")}
            for r in self.archive.summaries().values():
                if r.status == "evaluated" and r.confirmed_fitness is not None and r.fitness is not None:
                    kind = r.proposer == "reference"
                    best[kind] = max(best[kind], r.fitness)
            self._confirmed_search = best
        return self._confirmed_search[reference]

    def _maybe_confirm(self, pid: int, source: str, result: EvaluationResult) -> None:
        """A would-be new best (on the search tier) is scored on the validation tier, fresh seeds
        and workload variants the search never saw, before anything is said about it. It is
        *announced* only if it beats tuned AdamW there with its seed spread excluding 1.0 and
        still leads at ``long_horizon_scale`` times the steps (else it is "short-horizon")."""
        if result.fitness <= self._best_confirmed_search(self.archive.program(pid).proposer == "reference"):
            return
        self._confirm(pid, source, result)

    def _confirm(self, pid: int, source: str, result: EvaluationResult) -> None:
        """Score a program on the validation tier and apply the announce rule (see _maybe_confirm).
        Every evaluation comes before the first write, so a confirmation dropped while the
        campaign stops (discover/confirmations.py) leaves nothing half-written."""
        best_id, best = self.best_confirmed()
        self.on_event(Event("confirming", pid, f"search fitness {result.fitness:.3f}: checking it on the validation tier"))
        confirm = self.evaluator.evaluate(source, suite="validation", stage="full",
                                          measure_seeds=self.settings.confirm_seeds)
        self._confirmations.check()
        rec = self.archive.program(pid)
        long = self._long_horizon(source, rec, confirm) if confirm.failure is None else None
        self._confirmations.check()
        record_timings(self.archive, self.campaign_id, pid, "validation", confirm)
        if confirm.failure is not None:
            self.archive.update_program(pid, meta={**rec.meta, "validation_failure": list(confirm.failure)})
            return
        self.archive.add_evaluations(_evaluation_rows(pid, "validation", confirm.run_records))
        if long is not None:
            record_timings(self.archive, self.campaign_id, pid, "long_horizon", long)
            if long.failure is None:
                self.archive.add_evaluations(_evaluation_rows(pid, "long_horizon", long.run_records))
        meta = {**rec.meta, "confirmed_fitness": confirm.fitness, "confirmed_spread": confirm.fitness_spread,
                "confirm_seeds": list(self.settings.confirm_seeds), "validation_scores": self._scores(confirm)}
        verdict = self._announce_verdict(rec, confirm, long, meta)
        self.archive.update_program(pid, stage="confirmed", meta=meta)
        if self._confirmed_search is not None and rec.status == "evaluated" and rec.fitness is not None:
            kind = rec.proposer == "reference"
            self._confirmed_search[kind] = max(self._confirmed_search[kind], rec.fitness)
        label = f"{confirm.fitness:.3f} on the validation tier (search {result.fitness:.3f}); {verdict}"
        if confirm.fitness > best:
            self.archive.set_best_program(self.campaign_id, pid)
            kind = "new_best" if rec.proposer != "reference" else "evaluated"
            self.on_event(Event(kind, pid, label, confirm.fitness))
        else:
            self.on_event(Event("note", pid, f"#{pid} measured {result.fitness:.3f} on search but "
                                             f"{confirm.fitness:.3f} on the validation tier: not a new best"))

    def _long_horizon(self, source: str, rec: ProgramRecord, confirm: EvaluationResult) -> EvaluationResult | None:
        """The validation tier at ``long_horizon_scale`` times the steps, where the announce rule
        needs it (a candidate that beats tuned AdamW beyond seed noise); else None."""
        scale = self.config.evaluation.long_horizon_scale
        if rec.proposer == "reference" or not beats_adamw(confirm.fitness, confirm.fitness_spread) or scale <= 1:
            return None
        long_settings = replace(self.settings, steps_scale=self.settings.steps_scale * scale)
        return Evaluator(self.executor, self.cache, long_settings).evaluate(
            source, suite="validation", stage="full", measure_seeds=self.settings.confirm_seeds)

    def _announce_verdict(self, rec: ProgramRecord, confirm: EvaluationResult, long: EvaluationResult | None,
                          meta: dict[str, Any]) -> str:
        """Apply the announce rule to a confirmation (and its long-horizon check); fills ``meta``."""
        meta["announced"] = False
        if rec.proposer == "reference":
            return "a reference (never announced)"
        if not beats_adamw(confirm.fitness, confirm.fitness_spread):
            return "does not beat tuned AdamW beyond seed noise: not announced"
        scale = self.config.evaluation.long_horizon_scale
        if long is not None:
            fitness = scoring.FAILED_SCORE if long.failure else long.fitness
            meta.update(long_horizon_fitness=fitness, long_horizon_spread=long.fitness_spread,
                        long_horizon_scale=scale)
            if is_short_horizon(fitness):
                meta["short_horizon"] = True
                return (f"short-horizon: at {scale:g}x the steps it falls behind tuned AdamW ({fitness:.3f}); "
                        "not announced")
        meta["announced"] = True
        return "beats tuned AdamW beyond seed noise" + (" and holds at " f"{scale:g}x the steps" if scale > 1 else "")

    def _final_checks(self) -> None:
        """Before the campaign ends, the best few candidates that beat tuned AdamW on the search
        tier but were never checked (only a would-be best is checked as it comes, so one that
        collapses there hides the runners-up) are checked on the validation tier, best first.
        ``search.final_checks`` of them at most; none once the time budget is spent."""
        remaining = self.spend.remaining().get("seconds")
        if remaining is not None and remaining <= 0:
            return
        # the cached summaries, not every record decoded (seconds at 10,000 programs)
        unchecked = sorted(((r.fitness, r.id) for r in self.archive.summaries().values()
                            if r.status == "evaluated" and r.proposer != "reference" and r.stage == "full"
                            and r.fitness is not None and r.fitness > 1.0 and r.confirmed_fitness is None),
                           reverse=True)
        checks = 0
        for fitness, pid in unchecked:
            if checks >= self.config.search.final_checks:
                break
            rec = self.archive.program(pid)
            if "validation_failure" in (rec.meta or {}):
                continue
            self._confirm(pid, rec.code, _Measured(fitness))
            checks += 1

    def _score_test_tier(self) -> None:
        """Score the best programs, and the tuned baselines beside them, on the test tier
        (reported only: no decision reads it)."""
        evaluated = self.archive.programs(status="evaluated")
        ranked = sorted(((r.confirmed_fitness, r.id) for r in evaluated
                         if r.confirmed_fitness is not None and r.proposer != "reference"),
                        reverse=True)[:3]
        baselines = [r.id for r in evaluated if r.proposer == "reference" and r.name in self.evaluator.baseline_names()]
        for pid in [pid for _, pid in ranked] + sorted(baselines):
            rec = self.archive.program(pid)
            if rec.heldout_fitness is not None:
                continue
            result = self.evaluator.evaluate(rec.code, suite="test", stage="full", measure_seeds=self.settings.test_seeds)
            record_timings(self.archive, self.campaign_id, pid, "test", result)
            if result.failure is not None:
                self.archive.update_program(pid, meta={**rec.meta, "heldout_failure": list(result.failure)})
                continue
            self.archive.add_evaluations(_evaluation_rows(pid, "test", result.run_records))
            scores = self._scores(result)
            self.archive.update_program(pid, heldout_fitness=result.fitness,
                                        meta={**rec.meta, "heldout_scores": scores,
                                              "heldout_spread": result.fitness_spread})
            self.on_event(Event("heldout", pid, f"test-tier fitness {result.fitness:.3f}", result.fitness))


def is_short_horizon(long_horizon_fitness: float) -> bool:
    """A rule that beat tuned AdamW at the task budgets but is behind it (below 1.0) when both
    train for longer leads early and falls behind later: it is not announced."""
    return not long_horizon_fitness >= 1.0


@dataclass(frozen=True)
class _Measured:
    """What confirmation reads of an archived program's search result: its fitness."""

    fitness: float
