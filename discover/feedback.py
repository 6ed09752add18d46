"""Directional feedback: computed facts about past candidates, rendered for the LLM.

Not free text: for each program we state per-task score changes parent -> child, what the code
change was, failure reasons with their messages, loss-curve diagnostics (diverged at step N,
plateaued after step M, oscillated) and where it stands against each tuned baseline. The
ablation switch ``feedback = "none" | "scalar" | "directional"`` decides how much is shown.

Inputs are plain dicts shaped like archive rows (``id``, ``code``, ``fitness``, ``scores`` =
{task: {score, vs_baselines, curve, status, diverged_at, best_lr, lr_at_edge, ...}},
``status``, ``failure`` = (reason, message), ``proposer``, ``edits``), so this module has no
database in it and is easy to test.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

FEEDBACK_MODES = ("none", "scalar", "directional")
Program = Mapping[str, Any]


def curve_diagnosis(curve: Sequence[float], steps: int, status: str = "ok",
                    diverged_at: int | None = None) -> str:
    """One phrase on how a (downsampled) loss curve went."""
    if status in ("nan", "diverged"):
        where = f" at step {diverged_at}" if diverged_at else ""
        return f"{'produced NaN' if status == 'nan' else 'diverged'}{where}"
    values = np.asarray([v for v in curve if v is not None and math.isfinite(v)], dtype=np.float64)
    if values.size < 4:
        return "too short to judge"
    start, end = values[0], values[-1]
    total = start - values.min()
    if total <= 1e-12 * max(1.0, abs(start)):
        return "made no progress"
    phrases = []
    running = np.minimum.accumulate(values)
    reached = np.nonzero(running <= values.min() + 0.01 * total)[0][0]
    if reached < 0.6 * (values.size - 1):
        step = int(round(reached / (values.size - 1) * steps))
        phrases.append(f"plateaued after step {step}")
    diffs = np.diff(values)
    ups = diffs[diffs > 0].sum()
    if ups > 0.25 * total:
        flips = int(np.sum(np.sign(diffs[1:]) != np.sign(diffs[:-1])))
        phrases.append(f"oscillated ({flips} direction changes, rises sum to {ups / total:.0%} of the progress)")
    if end > running[-1] + 0.1 * total:
        phrases.append("ended above its best loss")
    if not phrases:
        phrases.append(f"still improving at the end (loss {start:.3g} -> {end:.3g})")
    return "; ".join(phrases)


def _score(entry: Mapping[str, Any] | None) -> float | None:
    return None if entry is None else entry.get("score")


def code_change(parent_code: str, child_code: str, max_lines: int = 24) -> str:
    """A compact unified diff parent -> child (comments and blank lines kept as written)."""
    lines = list(difflib.unified_diff(parent_code.splitlines(), child_code.splitlines(), "parent", "child", n=1, lineterm=""))
    lines = [ln for ln in lines[2:]]  # drop the file header
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"... ({len(lines) - max_lines} more diff lines)"]
    return "\n".join(lines) if lines else "(no textual change)"


def program_feedback(program: Program, parent: Program | None = None, mode: str = "directional") -> str:
    """Feedback on one evaluated (or failed) program, relative to its parent if given."""
    if mode not in FEEDBACK_MODES:
        raise ValueError(f"feedback mode must be one of {FEEDBACK_MODES}, got {mode!r}")
    if mode == "none":
        return ""
    pid = program.get("id")
    head = f"Program #{pid}" if pid is not None else "This program"
    failure = program.get("failure")
    if failure:
        reason, message = failure
        if mode == "scalar":
            return f"{head}: failed ({reason})."
        return f"{head} FAILED with reason `{reason}`: {message}"
    fitness = program.get("fitness")
    if fitness is None:
        return f"{head}: not evaluated."
    spread = program.get("fitness_spread") or 0.0
    text = f"{head}: fitness {fitness:.3f} (seed spread ±{spread:.3f}; 1.0 = tuned AdamW)"
    if parent is not None and parent.get("fitness") is not None:
        text += f", parent #{parent.get('id')} had {parent['fitness']:.3f} ({_signed(fitness - parent['fitness'])})"
    if mode == "scalar":
        return text + "."
    lines = [text + "."]
    if program.get("stage") == "screen":
        lines.append("It stopped at the cheap screen (too weak to run the full suite).")
    scores: Mapping[str, Mapping[str, Any]] = program.get("scores") or {}
    parent_scores = (parent or {}).get("scores") or {}
    for task in sorted(scores):
        entry = scores[task]
        score = entry.get("score", 0.0)
        parts = [f"- {task}: speed-up {score:.2f}x"]
        before = _score(parent_scores.get(task))
        if before is not None:
            parts.append(f"(parent {before:.2f}x, {_signed(score - before)})")
        base = entry.get("vs_baselines") or {}
        others = [f"{name} {value:.2f}x" for name, value in sorted(base.items()) if name != "adamw"]
        if others:
            parts.append("vs " + ", ".join(others))
        steps = entry.get("steps") or 100
        parts.append("| " + curve_diagnosis(entry.get("curve") or [], steps, entry.get("status", "ok"), entry.get("diverged_at")))
        if entry.get("lr_at_edge"):
            parts.append(f"| best lr {entry.get('best_lr'):.3g} is at the edge of the grid")
        lines.append(" ".join(parts))
    if parent is not None and parent.get("code") and program.get("code"):
        edits = program.get("edits")
        if edits:
            lines.append("Change from the parent: " + "; ".join(edits))
        lines.append("Code diff from the parent:\n" + code_change(parent["code"], program["code"]))
    return "\n".join(lines)


def _signed(x: float) -> str:
    return f"{x:+.3f}"


def archive_summary(programs: Sequence[Program], failure_counts: Mapping[str, int], mode: str = "directional",
                    top_k: int = 5) -> str:
    """What the search knows so far: the best programs and how candidates tend to fail
    (``failure_counts``: how many failed programs each reason has)."""
    if mode == "none":
        return ""
    ranked = sorted((p for p in programs if p.get("fitness") is not None and not p.get("failure")),
                    key=lambda p: (-p["fitness"], p.get("id", 0)))[:top_k]
    lines = [f"Best {len(ranked)} programs so far (fitness = geometric-mean speed-up over tuned AdamW):"]
    for p in ranked:
        name = f" ({p['name']})" if p.get("name") else ""
        lines.append(f"- #{p.get('id')}{name}: {p['fitness']:.3f}")
        if mode == "directional":
            scores = p.get("scores") or {}
            if scores:
                lines.append("  " + ", ".join(f"{t} {s.get('score', 0):.2f}x" for t, s in sorted(scores.items())))
    if mode == "directional" and failure_counts:
        parts = ", ".join(f"{reason} {n}" for reason, n in sorted(failure_counts.items(), key=lambda kv: (-kv[1], kv[0])))
        lines.append(f"Programs that failed so far, by reason: {parts}.")
    return "\n".join(lines)
