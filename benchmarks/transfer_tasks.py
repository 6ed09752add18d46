"""Which workloads, and which aggregate, make the search score predict the test tier?

Reads the per-task scores ``benchmarks/transfer.py`` writes (``--out``; nothing runs) and prints

* per search/validation task: Spearman's rho of that task's score alone against the test-tier
  fitness over the library (a task that ranks optimizers unlike unseen workloads pulls the
  search score away from them),
* leave-one-out: the search tier's rho without each of its tasks,
* aggregates: the geometric mean as the protocol computes it, with per-task scores clipped at a
  lower ceiling (one task's 10x cannot outvote the rest), the median, and the fraction of tasks
  beaten, each scored against the same test-tier ground truth,
* a cross-validated task choice: the test tier's tasks are split into two halves by family; a
  greedy forward selection of search-pool tasks (search tier at its default workloads, the
  validation tier's extra tasks at their @1 variants) maximises rho against one half and is
  judged on the other. Choosing on the whole test tier would fit the ground truth itself.
* with candidate tasks in the file (``transfer.py --candidate-task``): each one added to the search
  tier against every many-seed truth (and, where the test tier holds the same task at another
  variant, against that truth without it, so the candidate is not judged partly by itself), its
  degenerate signs
  (programs whose best LR sits at the grid's edge, programs > 10x AdamW, failures), then the
  test tier enlarged by them (``--add-to-test``; default: the candidates that are in the test tier
  now, else the test-tier variants (``@2``) among them): its split-half
  reliability beside the tier's own, and the search tier's rho / tau / decision-region rho /
  announce precision against the enlarged ground truth beside the tier's own. (Candidates are
  scored on the search tier's measurement seeds, the test tier on its own seeds.)
* with a many-seed test tier in the file (``transfer.py --test-seeds 300-307``, key ``test@...``),
  inside the decision region: the search tier's rho / tau (bootstrap interval) against it beside
  the protocol's 2-seed truth, that truth's own reliability (split-half over seeds and over tasks,
  Spearman-Brown), the variance components of the per-seed log-scores (program main effect,
  program x task interaction, one task-seed cell's seed noise) with the reliability they predict
  and the cells a reliability of 0.8 needs, and which region programs beat tuned AdamW on it.
* once most programs have a many-seed test tier (``transfer.py --tiers test --test-seeds 300-307``
  without ``--only-region``), over all of them: the search fitness, the old suite and the
  validation tier against it beside the 2-seed truth (rho with a bootstrap interval over programs,
  tau, decision-region rho, announce precision), each with and without duplicate programs (the
  same scores everywhere: ``adamw(weight_decay=0)`` is ``adam``) and without the near-AdamW
  mutants screened into the library by their search fitness; the truth's reliability over tasks
  and over independently scored seed halves, the ceiling that puts on any score's rho, and the
  announce rule's precision against it. A tier as it was before a task left it, kept in the file
  as ``search+TASK`` / ``validation+TASK``, gets its own rows and is compared with the tier now on
  the same programs against every many-seed truth (the gain in rho with a paired bootstrap).

    python benchmarks/transfer_tasks.py transfer.json [--add-to-test NAME@VARIANT ...]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sandbox.evaluate import beats_adamw  # noqa: E402
from sandbox.scoring import SCORE_MAX, SCORE_MIN  # noqa: E402
from sandbox.tasks import TEST_VARIANT, TIERS, get_task  # noqa: E402
from transfer import (DECISION_REGION, decision_noise, in_region, many_seed_keys, parse_seeds, rank_figures,  # noqa: E402
                      screened, seed_fitness)


def load(path: Path) -> dict[str, dict]:
    """Rows that carry per-task scores for search, validation and test."""
    rows = json.loads(path.read_text())
    return {label: row for label, row in rows.items()
            if all(isinstance(row.get(k + "_tasks"), dict) and row[k + "_tasks"] for k in ("search", "test"))}


def task_scores(rows: dict[str, dict], tier: str) -> tuple[list[str], list[str], np.ndarray]:
    """(labels, tasks, matrix labels x tasks of per-task scores; nan where missing)."""
    labels = list(rows)
    tasks = sorted({t for row in rows.values() for t in row.get(tier + "_tasks", {})})
    matrix = np.full((len(labels), len(tasks)), math.nan)
    for i, label in enumerate(labels):
        for j, task in enumerate(tasks):
            entry = rows[label].get(tier + "_tasks", {}).get(task)
            if entry is not None and entry.get("score") is not None:
                matrix[i, j] = entry["score"]
    return labels, tasks, matrix


def _candidate_tasks(row: dict) -> list[dict]:
    """A program's candidate-task result maps (``transfer.py --candidate-task``): those measured on
    the search tier's seeds (``candidates:``) first, then those on the test tier's
    (``candidates@test:``), so a task scored both ways is read on the test seeds."""
    maps = [(key.startswith("candidates@test:"), tasks) for key, tasks in row.items()
            if key.startswith(("candidates:", "candidates@test:")) and key.endswith("_tasks") and isinstance(tasks, dict)]
    return [tasks for _, tasks in sorted(maps, key=lambda item: item[0])]


def candidate_rows(rows: dict[str, dict]) -> dict[str, list[dict | None]]:
    """Per candidate task: its per-task result rows over ``rows`` (None where a program has none)."""
    out: dict[str, list[dict | None]] = {}
    labels = list(rows)
    for i, label in enumerate(labels):
        for tasks in _candidate_tasks(rows[label]):
            for name, entry in tasks.items():
                out.setdefault(name, [None] * len(labels))[i] = entry
    return out


def candidate_scores(rows: dict[str, dict]) -> dict[str, np.ndarray]:
    """Per candidate task (``transfer.py --candidate-task``): its scores over ``rows`` (nan where
    a program has none)."""
    columns: dict[str, np.ndarray] = {}
    labels = list(rows)
    for i, label in enumerate(labels):
        for tasks in _candidate_tasks(rows[label]):
            for name, entry in tasks.items():
                column = columns.setdefault(name, np.full(len(labels), math.nan))
                if entry is not None and entry.get("score") is not None:
                    column[i] = entry["score"]
    return columns


def geomean(matrix: np.ndarray, cap: float = SCORE_MAX, floor: float = SCORE_MIN) -> np.ndarray:
    clipped = np.clip(matrix, floor, cap)
    return np.exp(np.nanmean(np.log(clipped), axis=1))


AGGREGATES = {
    "geomean (protocol)": lambda m: geomean(m),
    "geomean, cap 5": lambda m: geomean(m, 5.0),
    "geomean, cap 2": lambda m: geomean(m, 2.0),
    "geomean, cap 1.5": lambda m: geomean(m, 1.5),
    "geomean, [0.2, 5]": lambda m: geomean(m, 5.0, 0.2),
    "geomean, [1/3, 3]": lambda m: geomean(m, 3.0, 1 / 3),
    "geomean, [0.5, 2]": lambda m: geomean(m, 2.0, 0.5),
    "median": lambda m: np.nanmedian(m, axis=1),
    "fraction of tasks > 1": lambda m: np.nanmean(m > 1.0, axis=1),
}


def rho(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[ok], b[ok]).statistic) if ok.sum() >= 3 else math.nan


def precision(search: np.ndarray, truth: np.ndarray, bar: float = 1.0) -> str:
    winners = search > bar
    return f"{int((truth[winners] > 1.0).sum())}/{int(winners.sum())}"


def family(task_key: str) -> str:
    return get_task(task_key).family


def split_by_family(tasks: list[str]) -> tuple[list[str], list[str]]:
    """Two halves of ``tasks`` with no family in both (families alternate by size)."""
    families: dict[str, list[str]] = {}
    for task in tasks:
        families.setdefault(family(task), []).append(task)
    a: list[str] = []
    b: list[str] = []
    for _, members in sorted(families.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        (a if len(a) <= len(b) else b).extend(members)
    return a, b


def spearman_brown(r: float, factor: float = 2.0) -> float:
    """The reliability of a score over ``factor`` times the replicates of one whose reliability is
    ``r`` (2: a whole from its split-half agreement)."""
    return factor * r / (1 + (factor - 1) * r)


def split_half(matrix: np.ndarray, splits: int = 200, seed: int = 0) -> float:
    """Mean Spearman rho between the geomeans of two random halves of the columns."""
    rng = np.random.default_rng(seed)
    n = matrix.shape[1]
    values = []
    for _ in range(splits):
        order = rng.permutation(n)
        values.append(rho(geomean(matrix[:, order[: n // 2]]), geomean(matrix[:, order[n // 2:]])))
    return float(np.nanmean(values))


def greedy(pool: np.ndarray, names: list[str], truth: np.ndarray, size: int) -> list[int]:
    """Forward selection of ``size`` pool columns maximising rho(geomean(chosen), truth)."""
    chosen: list[int] = []
    for _ in range(size):
        best = max((j for j in range(len(names)) if j not in chosen),
                   key=lambda j: rho(geomean(pool[:, chosen + [j]]), truth))
        chosen.append(best)
    return chosen


def degenerate_signs(entries: list[dict | None], labels: list[str]) -> str:
    """One line: how a candidate's per-program results look for the signs of a degenerate task."""
    done = [(label, e) for label, e in zip(labels, entries) if e is not None]
    scores = np.array([e["score"] if e.get("score") is not None else math.nan for _, e in done])
    edge = sum(bool(e.get("lr_at_edge")) for _, e in done)
    failed = sum(e.get("status") != "ok" or e.get("score") is None for _, e in done)
    finite = np.isfinite(scores)
    top = int(np.nanargmax(scores)) if finite.any() else None
    adamw = next((e.get("score") for label, e in done if label == "adamw"), None)
    return (f"{len(done)} programs, best LR at the grid's edge {edge}, failed {failed}, > 10x AdamW "
            f"{int((scores[finite] > 10).sum())}, beat AdamW (> 1) {int((scores[finite] > 1.0).sum())}, "
            f"median {np.nanmedian(scores):.2f}, top {done[top][0] if top is not None else '-'} "
            f"{np.nanmax(scores) if finite.any() else math.nan:.2f}, adamw itself {adamw if adamw is None else round(adamw, 3)}")


def enlarged_test_tier(rows: dict[str, dict], test: np.ndarray, test_names: list[str], search: np.ndarray,
                       candidates: dict[str, np.ndarray], add: list[str]) -> None:
    """Split-half reliability and the search tier's rank figures against the test tier with
    ``add`` (candidate tasks) joined to it, beside the same figures for the tier alone."""
    missing = [name for name in add if name not in candidates]
    if missing:
        print(f"no candidate scores for {', '.join(missing)}", file=sys.stderr)
        raise SystemExit(2)
    labels = list(rows)
    extra = np.stack([candidates[name] for name in add], axis=1)
    have = np.isfinite(extra).all(axis=1)
    enlarged = np.concatenate([test, extra], axis=1)
    print(f"\ntest tier enlarged by {len(add)} candidates ({', '.join(add)}), over the {int(have.sum())} programs "
          "that have all of them")
    sub_test, sub_enlarged, sub_search = test[have], enlarged[have], search[have]
    for name, matrix in ((f"test tier ({len(test_names)} tasks)", sub_test),
                         (f"enlarged ({len(test_names) + len(add)} tasks)", sub_enlarged)):
        r = split_half(matrix)
        n = matrix.shape[1]
        print(f"  {name:24} split-half rho {r:+.3f} (Spearman-Brown for all {n}: {spearman_brown(r):+.3f})")
    protocol = np.array([rows[label].get("search") if rows[label].get("search") is not None else math.nan
                         for label in labels])[have]
    print(f"  {'search score':30} {'truth':>26} {'rho':>7} {'tau':>7} {'rho decision':>16} {'announce':>14}")
    for score_name, score in (("search fitness (protocol)", protocol), ("search geomean (per task)", geomean(sub_search))):
        for truth_name, truth in ((f"test tier, {len(test_names)} tasks", geomean(sub_test)),
                                  (f"enlarged, {len(test_names) + len(add)} tasks", geomean(sub_enlarged))):
            f = rank_figures(list(score), list(truth))
            print(f"  {score_name:30} {truth_name:>26} {f['rho']:+7.3f} {f['tau']:+7.3f} "
                  f"{f['rho_decision']:+9.3f} (n={f['n_decision']:2d}) {f['announce_precision']:6.3f} ({f['announced']})")
    print(f"  rho between the two ground truths: {rho(geomean(sub_test), geomean(sub_enlarged)):+.3f}; "
          f"the candidates alone vs the test tier: {rho(geomean(extra[have]), geomean(sub_test)):+.3f}")


def seed_cube(rows: dict[str, dict], labels: list[str], key: str) -> tuple[list[str], np.ndarray]:
    """(tasks, programs x tasks x seeds of log per-seed scores on ``key``'s tier, clipped to the
    protocol's [SCORE_MIN, SCORE_MAX]; nan where missing)."""
    tasks = sorted({t for label in labels for t in rows[label].get(key + "_tasks", {})})
    seeds = max((len(e.get("seed_scores") or []) for label in labels
                 for e in rows[label].get(key + "_tasks", {}).values()), default=0)
    cube = np.full((len(labels), len(tasks), seeds), math.nan)
    for i, label in enumerate(labels):
        for j, task in enumerate(tasks):
            scores = (rows[label].get(key + "_tasks", {}).get(task) or {}).get("seed_scores") or []
            values = np.array([math.nan if v is None else v for v in scores], dtype=np.float64)
            cube[i, j, : values.size] = np.log(np.clip(values, SCORE_MIN, SCORE_MAX))
    return tasks, cube


def variance_components(cube: np.ndarray) -> dict[str, float]:
    """Variance components of a complete programs x tasks x seeds table of log-scores, seeds nested
    in tasks and crossed with programs (seed s of a task is the same data for every program): the
    ANOVA estimates of the program main effect, the program x task interaction, and the seed noise
    of one program-task-seed cell after the effect every program shares on that task-seed (an easy
    or hard draw of the data, which ranks no program above another) is removed. Expected mean
    squares: MS_P = e + s*pt + t*s*p, MS_PT = e + s*pt, MS_E = e. Estimates can come out negative
    (a component that is 0 measured with noise); they are returned as measured."""
    p, t, s = cube.shape
    if p < 2 or t < 2 or s < 2 or not np.isfinite(cube).all():
        raise ValueError(f"needs a complete table of >= 2 programs, tasks and seeds, got {p} x {t} x {s}")
    grand = cube.mean()
    prog = cube.mean(axis=(1, 2))  # p
    task = cube.mean(axis=(0, 2))  # t
    cell = cube.mean(axis=2)  # p x t
    draw = cube.mean(axis=0)  # t x s: what every program shares on a task-seed
    ms_p = t * s * ((prog - grand) ** 2).sum() / (p - 1)
    ms_pt = s * ((cell - prog[:, None] - task[None, :] + grand) ** 2).sum() / ((p - 1) * (t - 1))
    residual = cube - cell[:, :, None] - draw[None, :, :] + task[None, :, None]
    ms_e = (residual ** 2).sum() / ((p - 1) * t * (s - 1))
    return {"program": float((ms_p - ms_pt) / (t * s)), "interaction": float((ms_pt - ms_e) / s),
            "noise": float(ms_e), "programs": p, "tasks": t, "seeds": s}


def reliability(components: dict[str, float], tasks: float, seeds: float, fixed_tasks: bool = False) -> float:
    """The generalisability coefficient of a program mean over ``tasks`` tasks x ``seeds`` seeds:
    the share of its variance across programs that is the programs' own (negative components as
    0). ``fixed_tasks``: the tasks are the ground truth's definition (a tier's), not a sample of
    workloads, so the program x task interaction is signal and only seed noise is error."""
    program = max(components["program"], 0.0)
    interaction = max(components["interaction"], 0.0) / tasks
    noise = max(components["noise"], 0.0) / (tasks * seeds)
    signal = program + (interaction if fixed_tasks else 0.0)
    error = noise + (0.0 if fixed_tasks else interaction)
    return signal / (signal + error) if signal + error > 0 else math.nan


def seeds_needed(components: dict[str, float], tasks: int, target: float = 0.8, fixed_tasks: bool = False) -> float:
    """Seeds per task a program mean over ``tasks`` tasks needs for ``reliability`` ``target``
    (inf where the interaction alone keeps it below: more tasks are needed then, not seeds)."""
    program = max(components["program"], 0.0)
    interaction = max(components["interaction"], 0.0) / tasks
    signal = program + (interaction if fixed_tasks else 0.0)
    room = signal * (1 - target) / target - (0.0 if fixed_tasks else interaction)
    return max(components["noise"], 0.0) / (tasks * room) if room > 0 else math.inf


def cells_needed(components: dict[str, float], target: float = 0.8) -> float:
    """Task-seed cells a program mean needs for ``reliability`` ``target`` when every cell is a
    fresh task at one seed (the cheapest way: each cell averages the interaction away as well)."""
    program = max(components["program"], 0.0)
    total = max(components["interaction"], 0.0) + max(components["noise"], 0.0)
    return total / (program * (1 - target) / target) if program > 0 else math.inf


def components_line(comp: dict[str, float], per_replicate: int, replicates: int = 2) -> str:
    """The reliability ``comp`` (noise per replicate of ``per_replicate`` seeds) predicts for a
    mean over ``replicates``, and what a reliability of 0.8 needs, over workloads (the tasks a
    sample: the interaction is error) and for these tasks (the interaction is signal)."""
    t = comp["tasks"]
    fixed = seeds_needed(comp, t, fixed_tasks=True)
    return (f"reliability of {replicates} replicates: {reliability(comp, t, replicates):.3f} over workloads, "
            f"{reliability(comp, t, replicates, True):.3f} for these {t} tasks; for 0.8: {fixed:.1f} replicates "
            f"of {per_replicate} seeds ({t * fixed * per_replicate:.0f} cells) for these {t} tasks, over workloads "
            f"{seeds_needed(comp, t):.1f} at {t} tasks or {cells_needed(comp):.0f} fresh tasks at {per_replicate} "
            "seeds (if replicates average independently)")


def seed_split_half(cube: np.ndarray, splits: int = 200, seed: int = 0) -> float:
    """Mean Spearman rho between the programs' mean log-scores over all tasks on two random halves
    of the seeds (every task in both halves: the reliability against seed noise alone)."""
    rng = np.random.default_rng(seed)
    s = cube.shape[2]
    values = []
    for _ in range(splits):
        order = rng.permutation(s)
        values.append(rho(cube[:, :, order[: s // 2]].mean(axis=(1, 2)), cube[:, :, order[s // 2:]].mean(axis=(1, 2))))
    return float(np.nanmean(values))


def seed_halves(keys: list[str], key: str) -> tuple[str, str] | None:
    """Two of ``keys`` whose seeds split ``key``'s into disjoint halves, if the file holds such."""
    seeds = set(parse_seeds(key.split("@", 1)[1]))
    sets = {k: set(parse_seeds(k.split("@", 1)[1])) for k in keys if k != key}
    for a in sorted(sets):
        for b in sorted(sets):
            if a < b and not sets[a] & sets[b] and sets[a] | sets[b] == seeds and len(sets[a]) == len(sets[b]):
                return a, b
    return None


def halves_components(rows: dict[str, dict], labels: list[str], tasks: list[str],
                      halves: tuple[str, str]) -> dict[str, float]:
    """Print (and return) the variance components of ``labels``' log per-task scores on two
    independently scored seed halves, and the reliability they predict."""
    # The protocol's per-task scores of the two halves are independent replicates of one cell
    # (the per-seed scores of one run are not: they share its end-value cap), so their
    # components are the unbiased ones; a half's noise is its k seeds' mean's, so x k per seed.
    per_half = len(parse_seeds(halves[0].split("@", 1)[1]))
    replicates = np.log(np.clip(np.array([[[rows[label][h + "_tasks"][t]["score"] for h in halves] for t in tasks]
                                          for label in labels], dtype=np.float64), SCORE_MIN, SCORE_MAX))
    comp = variance_components(replicates)
    print(f"  variance components from the halves (log protocol score, clipped [{SCORE_MIN:g}, {SCORE_MAX:g}]): "
          f"program {comp['program']:.4f}, program x task {comp['interaction']:.4f}, one cell's seed noise "
          f"{comp['noise']:.4f} at {per_half} seeds")
    print("    " + components_line(comp, per_half))
    return comp


def pick_key(rows: list[dict], keys: list[str]) -> str:
    """The key of ``keys`` most of ``rows`` have a result for, the most seeds among equals."""
    return min(keys, key=lambda k: (-sum(k in row for row in rows), -len(parse_seeds(k.split("@", 1)[1])), k))


def many_seed_truths(rows: dict[str, dict], labels: list[str], keys: list[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(key, which of ``labels`` have it, their fitness on it) for every many-seed key most have."""
    truths = []
    for many in keys:
        have = np.array([rows[label].get(many) is not None for label in labels])
        if have.sum() >= max(5, len(labels) // 2):
            truths.append((many, have, np.array([rows[label][many] for label, h in zip(labels, have) if h])))
    return truths


def candidate_against_many(rows: dict[str, dict], name: str, column: np.ndarray, search: np.ndarray,
                           truths: list[tuple[str, np.ndarray, np.ndarray]]) -> list[str]:
    """A candidate task added to the search tier, judged against each many-seed truth over the
    programs that have both; where that truth holds the same task at another variant, also against
    the truth without it (otherwise the candidate is partly scored against itself)."""
    lines = []
    base = name.split("@")[0]
    for many, have, many_truth in truths:
        _, test_names, matrix = task_scores(rows, many)
        ok = np.isfinite(column)[have]
        added = geomean(np.concatenate([search, column[:, None]], axis=1))[have][ok]
        alone = geomean(search)[have][ok]
        line = (f"vs {many} ({int(ok.sum())} programs): search tier with it {rho(added, many_truth[ok]):+.3f} "
                f"(without {rho(alone, many_truth[ok]):+.3f})")
        shared = [j for j, task in enumerate(test_names) if task.split("@")[0] == base]
        if shared:
            clean = geomean(np.delete(matrix[have], shared, axis=1))[ok]
            line += (f"; against it without {', '.join(test_names[j] for j in shared)}: {rho(added, clean):+.3f} "
                     f"(without {rho(alone, clean):+.3f})")
        lines.append(line)
    return lines


def many_seed_region(rows: dict[str, dict], key: str, halves: tuple[str, str] | None = None) -> None:
    """The search tier inside the decision region against the many-seed test tier ``key``
    (``halves``: two keys whose seeds split ``key``'s, each scored on its own seeds alone)."""
    labels = [label for label, row in rows.items() if in_region(row.get("search"))
              and row.get(key) is not None and row.get("test") is not None]
    if len(labels) < 4:
        return
    tasks, cube = seed_cube(rows, labels, key)
    search = np.array([rows[label]["search"] for label in labels])
    two = np.array([rows[label]["test"] for label in labels])
    many = np.array([rows[label][key] for label in labels])
    print(f"\nmany-seed ground truth inside the decision region ({key}: {len(tasks)} tasks x {cube.shape[2]} seeds; "
          f"{len(labels)} programs with search fitness {DECISION_REGION[0]:g}-{DECISION_REGION[1]:g}x AdamW)")
    for name, truth in (("protocol test tier (2 seeds)", two), (f"{key} ({cube.shape[2]} seeds)", many)):
        noise = decision_noise(list(search), list(truth), [seed_fitness(rows[label], "search") for label in labels])
        print(f"  search fitness vs {name:28} rho {rho(search, truth):+.3f} (5-95% bootstrap {noise['boot_lo']:+.3f} "
              f"to {noise['boot_hi']:+.3f}), tau {kendalltau(search, truth).statistic:+.3f}; one search seed alone: "
              + ", ".join(f"{r:+.3f}" for r in noise["per_seed"]))
    print(f"  rho between the 2-seed and the {cube.shape[2]}-seed truth: {rho(two, many):+.3f}")
    by_seeds = seed_split_half(cube)
    by_tasks = split_half(np.array([[rows[label][key + "_tasks"][t]["score"] for t in tasks] for label in labels],
                                   dtype=np.float64))
    print(f"  its reliability: split-half over seeds rho {by_seeds:+.3f} (Spearman-Brown {spearman_brown(by_seeds):+.3f}; "
          f"per-seed scores of one run share its end-value cap), over tasks rho {by_tasks:+.3f} "
          f"(Spearman-Brown {spearman_brown(by_tasks):+.3f})")
    if halves and all(rows[label].get(h) is not None for label in labels for h in halves):
        a, b = (np.array([rows[label][h] for label in labels]) for h in halves)
        r = rho(a, b)
        print(f"  the seed halves scored alone ({halves[0]} vs {halves[1]}: each its own cap and AdamW curve): "
              f"rho {r:+.3f} (Spearman-Brown {spearman_brown(r):+.3f}); search fitness vs each: {rho(search, a):+.3f}, "
              f"{rho(search, b):+.3f}")
        halves_components(rows, labels, tasks, halves)
    for name, run in ((key, cube), ("the protocol's test", seed_cube(rows, labels, "test")[1])):
        if run.shape[2] >= 2 and np.isfinite(run).all():
            comp = variance_components(run)
            print(f"  from one run's per-seed scores ({name}; biased: one seed's NaN fails all, the end-value cap is "
                  f"shared): program {comp['program']:.4f}, program x task {comp['interaction']:.4f}, seed noise "
                  f"{comp['noise']:.4f}")
    # The announce rule inside the region: the region's search scores mostly sit below 1.
    figures = rank_figures(list(search), list(many))
    precision = figures["announce_precision"]
    print(f"  announce precision against it (search > 1): {'n/a' if math.isnan(precision) else f'{precision:.3f}'} "
          f"({figures['announced']})")
    beat = [label for label, f in zip(labels, many) if beats_adamw(f, rows[label].get(key + "_spread") or 0.0)]
    above = [label for label, f in zip(labels, many) if f > 1.0]
    print(f"  beat tuned AdamW on it beyond seed spread: {', '.join(beat) or 'none'}; above 1.0 at all: "
          f"{', '.join(above) or 'none'}")
    print(f"  {'program':26} {'search':>7} {'test (2)':>9} {key:>13} {'spread':>7}")
    for label in sorted(labels, key=lambda k: -rows[k][key]):
        row = rows[label]
        print(f"  {label:26} {row['search']:7.3f} {row['test']:9.3f} {row[key]:13.3f} {row.get(key + '_spread') or 0.0:7.3f}")


def duplicates(rows: dict[str, dict], labels: list[str]) -> dict[str, str]:
    """label -> the earlier label of ``labels`` it duplicates: the same per-task seed scores on the
    search and the test tier (``adamw(weight_decay=0)`` steps exactly as ``adam``). Programs that
    fail every task tie at the floor without being one program: they are not duplicates."""
    first: dict[str, str] = {}
    out: dict[str, str] = {}
    for label in labels:
        tiers = [sorted((task, entry.get("seed_scores")) for task, entry in rows[label][tier + "_tasks"].items())
                 for tier in ("search", "test")]
        if not any((entry.get("score") or 0.0) > SCORE_MIN * (1 + 1e-9) for tier in ("search", "test")
                   for entry in rows[label][tier + "_tasks"].values()):
            continue
        signature = json.dumps(tiers)
        if signature in first:
            out[label] = first[signature]
        else:
            first[signature] = label
    return out


def paired_gain(score: np.ndarray, earlier: np.ndarray, truth: np.ndarray, resamples: int = 2000,
                seed: int = 0) -> tuple[float, float, float]:
    """rho(score, truth) - rho(earlier, truth) over the same programs, with its 5-95% interval over
    bootstrap resamples of the programs (both scores resampled together, so what they share cancels)."""
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(resamples):
        pick = rng.integers(0, truth.size, truth.size)
        gains.append(rho(score[pick], truth[pick]) - rho(earlier[pick], truth[pick]))
    return (rho(score, truth) - rho(earlier, truth), float(np.nanpercentile(gains, 5)),
            float(np.nanpercentile(gains, 95)))


def many_seed_all(rows: dict[str, dict], key: str, halves: tuple[str, str] | None = None) -> None:
    """Every program's search fitness (old suite, validation tier) against the many-seed test tier
    ``key`` beside the protocol's 2-seed one, with and without duplicate programs; that truth's
    reliability over tasks and over independently scored seed halves, the ceiling it puts on any
    score's rho, and the announce precision against it. Printed only when most programs with a
    test tier have ``key`` (a region-only run leaves the output as it was)."""
    having = [label for label, row in rows.items() if row.get("test") is not None and row.get("search") is not None]
    labels = [label for label in having if rows[label].get(key) is not None]
    if 2 * len(labels) <= len(having) or len(labels) < 5:
        return
    tasks, cube = seed_cube(rows, labels, key)
    dup = duplicates(rows, labels)
    keep = [label for label in labels if label not in dup]
    print(f"\nall programs against the many-seed truth ({key}: {len(tasks)} tasks x {cube.shape[2]} seeds; "
          f"{len(labels)} of the {len(having)} programs with a test tier have it)")
    if dup:
        print("  duplicates (the same per-task seed scores on search and test): "
              + ", ".join(f"{d} = {o}" for d, o in dup.items()) + f"; 'w/o dup' leaves them out ({len(keep)} programs)")
    subsets = (("all", labels), ("w/o dup", keep)) if dup else (("all", labels),)
    # The screened mutants are in the library because their search fitness fell in the decision
    # region: comparing two versions of a tier is fair only over the programs that are not.
    unscreened = [label for label in keep if not screened(label)]
    if len(unscreened) < len(keep):
        subsets += (("unscr.", unscreened),)
    print(f"  {'score':24} {'truth':14} {'programs':>12} {'rho':>7} {'5-95% bootstrap':>17} {'tau':>7} "
          f"{'rho decision':>16} {'announce':>15}")
    if len(subsets) == 3:
        print("  ('unscr.': without duplicates and without the near-AdamW mutants screened in by their search fitness)")
    every = (-math.inf, math.inf)
    # A tier as it was before a task left it, kept in the file under "search+TASK" (its scores then).
    earlier = sorted({k for row in rows.values() for k in row if k.startswith(("search+", "validation+"))
                      and not k.endswith(("_tasks", "_spread", "_seconds"))})
    for score_name, score_key in (("search fitness", "search"), ("old suite (train loss)", "legacy"),
                                  ("validation tier", "validation"), *((k, k) for k in earlier)):
        for truth_name, truth_key in (("test (2 seeds)", "test"), (f"{key}", key)):
            for subset_name, subset in subsets:
                have = [label for label in subset
                        if rows[label].get(score_key) is not None and rows[label].get(truth_key) is not None]
                if len(have) < 5:
                    continue
                score, truth = [rows[label][score_key] for label in have], [rows[label][truth_key] for label in have]
                f = rank_figures(score, truth)
                noise = decision_noise(score, truth, [seed_fitness(rows[label], score_key) for label in have],
                                       region=every)
                print(f"  {score_name:24} {truth_name:14} {len(have):4d} {subset_name:7} {f['rho']:+7.3f} "
                      f"{noise['boot_lo']:+8.3f} {noise['boot_hi']:+8.3f} {f['tau']:+7.3f} "
                      f"{f['rho_decision']:+9.3f} (n={f['n_decision']:2d}) {f['announce_precision']:7.3f} "
                      f"({f['announced']:>5})")
    # Each earlier version of a tier against the tier now, on the same programs, for every
    # many-seed truth most of them have (fresh seeds judge a change chosen on others).
    truths = [many for many, _, _ in many_seed_truths(
        rows, labels, sorted({k for label in labels for k in many_seed_keys(rows[label])}))]
    for earlier_key in earlier:
        now_key = earlier_key.split("+", 1)[0]
        for subset_name, subset in subsets:
            for truth_key in truths:
                have = [label for label in subset if all(rows[label].get(k) is not None
                                                         for k in (earlier_key, now_key, truth_key))]
                if len(have) < 5:
                    continue
                now, before, truth = (np.array([rows[label][k] for label in have])
                                      for k in (now_key, earlier_key, truth_key))
                gain, lo, hi = paired_gain(now, before, truth)
                print(f"  {now_key} now vs {earlier_key:24} against {truth_key:13} {len(have):4d} {subset_name:7} "
                      f"rho {rho(before, truth):+.3f} -> {rho(now, truth):+.3f} (gain {gain:+.3f}, paired bootstrap "
                      f"5-95% {lo:+.3f}..{hi:+.3f})")
    two = np.array([rows[label]["test"] for label in labels])
    many = np.array([rows[label][key] for label in labels])
    search = np.array([rows[label]["search"] for label in labels])
    print(f"  rho between the 2-seed and the {cube.shape[2]}-seed truth: {rho(two, many):+.3f}")
    # Reliability over tasks: a truth that stands for unseen workloads (the tasks a sample of them).
    by_tasks = {}
    for name, tier in (("2 seeds", "test"), (key, key)):
        matrix = np.array([[(rows[label][tier + "_tasks"].get(t) or {}).get("score", math.nan) for t in tasks]
                           for label in labels], dtype=np.float64)
        by_tasks[tier] = spearman_brown(split_half(matrix))
    print(f"  reliability over tasks (split-half of the {len(tasks)} tasks, Spearman-Brown): 2-seed truth "
          f"{by_tasks['test']:+.3f}, {key} {by_tasks[key]:+.3f}")
    ceilings = [("workloads (tasks a sample)", "test", by_tasks["test"]), ("workloads (tasks a sample)", key, by_tasks[key])]
    if halves and all(rows[label].get(h) is not None for label in labels for h in halves):
        a, b = (np.array([rows[label][h] for label in labels]) for h in halves)
        r = rho(a, b)
        # The protocol's seeds 300, 301 lie in the first half: only the second is independent of it.
        per_half = len(parse_seeds(halves[0].split("@", 1)[1]))
        seeds_two = spearman_brown(r, 2 / per_half)  # the protocol's truth: 2 seeds
        print(f"  reliability over seeds (the halves scored alone, {halves[0]} vs {halves[1]}): rho {r:+.3f}; "
              f"Spearman-Brown for {cube.shape[2]} seeds {spearman_brown(r):+.3f}, for the protocol's 2 {seeds_two:+.3f}; "
              f"the 2-seed truth vs {halves[1]} (no seed shared): {rho(two, b):+.3f}")
        ceilings = [("these tasks (seed noise only)", "test", seeds_two),
                    ("these tasks (seed noise only)", key, spearman_brown(r))] + ceilings
        halves_components(rows, labels, tasks, halves)
    print("  the ceiling each truth puts on any score's rho (sqrt of its reliability: a score that ranked "
          "the programs' true means exactly would reach it), and the search fitness's rho over it:")
    for what, truth_key, rel in ceilings:
        truth = two if truth_key == "test" else many
        ceiling = math.sqrt(rel) if rel > 0 else math.nan
        print(f"    {truth_key:14} as a measure of {what:30} reliability {rel:+.3f}  ceiling {ceiling:.3f}  "
              f"search rho {rho(search, truth):+.3f} = {rho(search, truth) / ceiling:.2f} of it")
    vals = [(rows[label].get("validation"), rows[label].get("validation_spread") or 0.0, label) for label in labels]
    announced = [label for v, spread, label in vals if v is not None and beats_adamw(v, spread)]
    print(f"  announce rule (validation beats 1.0 beyond its seed spread): {len(announced)} programs; beat AdamW on "
          f"the 2-seed truth {sum(rows[label]['test'] > 1.0 for label in announced)}/{len(announced)}, on {key} "
          f"{sum(rows[label][key] > 1.0 for label in announced)}/{len(announced)}")
    above = sorted((label for label in labels if rows[label][key] > 1.0), key=lambda k: -rows[k][key])
    print(f"  above tuned AdamW (1.0) on {key}: " + (", ".join(f"{label} {rows[label][key]:.3f} (search "
                                                           f"{rows[label]['search']:.3f})" for label in above) or "none"))
    ranks = {name: np.argsort(np.argsort(-values)) for name, values in (("search", search), ("truth", many))}
    moved = np.argsort(-np.abs(ranks["search"] - ranks["truth"]))[:5]
    print("  largest rank disagreements, search vs " + key + ": "
          + "; ".join(f"{labels[i]} {ranks['search'][i] + 1} vs {ranks['truth'][i] + 1}" for i in moved))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="the JSON benchmarks/transfer.py wrote (--out)")
    parser.add_argument("--size", type=int, default=6, help="tasks the cross-validated choice picks (default 6)")
    parser.add_argument("--add-to-test", action="append", default=None, metavar="NAME@VARIANT",
                        help="candidate task to join to the test tier for the enlarged figures (repeatable; "
                             "default: the candidates in TIERS['test'] now, else every test-tier variant (@2) "
                             "among the file's candidates)")
    args = parser.parse_args()
    rows = load(Path(args.path))
    if len(rows) < 5:
        print(f"only {len(rows)} programs carry per-task scores; rerun benchmarks/transfer.py first", file=sys.stderr)
        raise SystemExit(2)
    labels, test_names, test = task_scores(rows, "test")
    _, search_names, search = task_scores(rows, "search")
    truth = geomean(test)
    print(f"{len(labels)} programs; ground truth: test-tier geomean over {len(test_names)} tasks")

    print("\nper task alone: Spearman rho against the test tier")
    for tier in ("search", "validation", "legacy"):
        _, names, matrix = task_scores(rows, tier)
        for j, name in enumerate(names):
            print(f"  {tier:10} {name:26} rho {rho(matrix[:, j], truth):+.3f}   AdamW-beaters {precision(matrix[:, j], truth)}")
    candidates = candidate_scores(rows)
    # Beside the protocol's 2-seed truth, every many-seed one most programs have (fresh seeds judge
    # a choice made on others): a task that helps only against the noisier truth is noise.
    keys = sorted({key for row in rows.values() for key in many_seed_keys(row)})
    truths = many_seed_truths(rows, labels, keys)
    if candidates:
        print("\ncandidate tasks (transfer.py --candidate-task; in no tier): alone, and added to the search tier")
        for name, column in candidates.items():
            added = geomean(np.concatenate([search, column[:, None]], axis=1))
            in_test = geomean(np.concatenate([test, column[:, None]], axis=1))
            print(f"  {name:26} rho {rho(column, truth):+.3f}   search tier with it {rho(added, truth):+.3f} "
                  f"(without {rho(geomean(search), truth):+.3f})   test tier with it vs without: rho "
                  f"{rho(in_test, truth):+.3f}   AdamW-beaters {precision(column, truth)}")
            for line in candidate_against_many(rows, name, column, search, truths):
                print("    " + line)
        print("candidate tasks: signs of a degenerate workload")
        entries = candidate_rows(rows)
        for name in candidates:
            print(f"  {name:26} {degenerate_signs(entries[name], labels)}")
        # Default: the candidates that have joined the test tier since (the tier as it is now, beside
        # the tier the file scored), else the test-tier variants the scored tier does not hold.
        joined = [name for name in candidates if name in TIERS["test"] and name not in test_names]
        # A search-tier candidate (variant 0, the search's seeds) measures something else.
        outside = [name for name in candidates if name not in test_names and name.endswith(f"@{TEST_VARIANT}")]
        add = args.add_to_test or joined or outside
        if add:
            enlarged_test_tier(rows, test, test_names, search, candidates, add)

    full = geomean(search)
    reliability = split_half(test)
    print(f"\ntest tier split-half agreement: rho {reliability:+.3f} between random halves of its tasks "
          f"(Spearman-Brown for all {len(test_names)}: {spearman_brown(reliability):+.3f}); a search score "
          "cannot rank like the test tier much better than the test tier ranks like itself")
    low, high = DECISION_REGION
    region = np.array([in_region(rows[label].get("search")) for label in labels])
    if region.sum() >= 4:
        inside = split_half(test[region])
        print(f"inside the decision region ({int(region.sum())} programs with search fitness {low:g}-{high:g}x AdamW): "
              f"split-half rho {inside:+.3f} (Spearman-Brown {spearman_brown(inside):+.3f}): the ceiling on "
              "any score's rho there")
    if keys:
        # Inside the region, the key most of its programs have (the most seeds among equals); over
        # all programs, the key most programs have.
        inside = pick_key([row for row in rows.values() if in_region(row.get("search"))], keys)
        many_seed_region(rows, inside, seed_halves(keys, inside))
        overall = pick_key(list(rows.values()), keys)
        many_seed_all(rows, overall, seed_halves(keys, overall))
    _, _, val = task_scores(rows, "validation")
    print(f"validation tier vs test tier: rho {rho(geomean(val), truth):+.3f}; search tier vs validation tier: "
          f"rho {rho(full, geomean(val)):+.3f}")

    def against(score: np.ndarray) -> str:
        return f"rho {rho(score, truth):+.3f}" + "".join(
            f"   vs {many} {rho(score[have], many_truth):+.3f}" for many, have, many_truth in truths)
    print(f"\nsearch tier, leave one task out (all {len(search_names)}: {against(full)})")
    for j, name in enumerate(search_names):
        keep = [k for k in range(len(search_names)) if k != j]
        print(f"  without {name:26} {against(geomean(search[:, keep]))}")

    print("\naggregates of the search tier (ground truth unchanged)")
    for name, fn in AGGREGATES.items():
        score = fn(search)
        bar = 0.5 if name.startswith("fraction") else 1.0
        print(f"  {name:24} rho {rho(score, truth):+.3f}   announce precision {precision(score, truth, bar)}")

    _, val_names, val = task_scores(rows, "validation")
    extra = [j for j, n in enumerate(val_names) if n.split("@")[0] not in search_names]
    pool = np.concatenate([search, val[:, extra]], axis=1)
    pool_names = search_names + [val_names[j] for j in extra]
    half_a, half_b = split_by_family(test_names)
    print(f"\ncross-validated task choice ({args.size} of {len(pool_names)} pool tasks; test halves by family)")
    for fit_on, judge_on in ((half_a, half_b), (half_b, half_a)):
        fit_cols = [test_names.index(t) for t in fit_on]
        judge_cols = [test_names.index(t) for t in judge_on]
        chosen = greedy(pool, pool_names, geomean(test[:, fit_cols]), args.size)
        held = geomean(test[:, judge_cols])
        print(f"  fit on {', '.join(fit_on)}")
        print(f"    chose {', '.join(pool_names[j] for j in chosen)}")
        print(f"    judged on the other half: chosen rho {rho(geomean(pool[:, chosen]), held):+.3f}"
              f"  vs search tier {rho(full, held):+.3f}")


if __name__ == "__main__":
    main()
