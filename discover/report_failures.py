"""The report's failure and proposer tables: why programs failed, and how often each kind of
proposer produced an evaluated program or one that beat its parent."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from archive.store import Failure, ProgramRecord
from discover import report_plots as plots
from discover.report_model import Figure, _figure

FAILURE_BINS = 12
"""At most this many batches in the failures-over-time chart."""



def failure_table(failures: list[Failure]) -> list[dict[str, Any]]:
    """Failure records by reason, most frequent first, with the latest example of each."""
    by_reason: dict[str, list] = {}
    for f in failures:
        by_reason.setdefault(f.reason, []).append(f)
    rows = [{"reason": reason, "count": len(items), "programs": len({f.program_id for f in items}),
             "example": f"#{items[-1].program_id} ({items[-1].stage}): {items[-1].message}"}
            for reason, items in by_reason.items()]
    return sorted(rows, key=lambda r: (-r["count"], r["reason"]))

def failures_figure(candidates: list[ProgramRecord], failures: list[Failure]) -> Figure | None:
    """Failed and duplicate candidates per batch of candidates, in proposal order."""
    ordered = sorted(candidates, key=lambda r: (r.meta.get("proposal_index", r.id), r.id))
    if not ordered or not (failures or any(r.status == "duplicate" for r in ordered)):
        return None
    size = max(1, math.ceil(len(ordered) / FAILURE_BINS))
    position = {rec.id: i // size for i, rec in enumerate(ordered)}
    nbins = max(position.values()) + 1
    labels = [f"{b * size + 1}-{min((b + 1) * size, len(ordered))}" if size > 1 else str(b + 1)
              for b in range(nbins)]
    # Each candidate counts once: by its first failure (a program may fail several tasks), or
    # as a duplicate, so a batch's bar never exceeds the number of candidates proposed in it.
    first_reason: dict[int, str] = {}
    for f in failures:
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

def proposer_table(candidates: list[ProgramRecord], by_id: dict[int, ProgramRecord]) -> list[dict[str, Any]]:
    """Per proposer kind: how many it proposed, how many were evaluated, and how many beat their best parent."""
    rows = []
    kinds = sorted({r.proposer for r in candidates})
    for kind in kinds:
        mine = [r for r in candidates if r.proposer == kind]
        status = Counter(r.status for r in mine)
        evaluated = [r for r in mine if r.status == "evaluated" and r.fitness is not None]
        improved = 0
        for rec in evaluated:
            parents = [by_id[p].fitness for p in rec.parent_ids
                       if p in by_id and by_id[p].fitness is not None]
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
