"""The report's figures: matplotlib (Agg backend) rendered to inline SVG strings.

Every function takes plain data (lists, dicts) and returns the markup of one ``<svg>`` element,
ready to embed in HTML: no XML prolog, no namespace URLs, no fixed size (CSS scales it), text
kept as text (``svg.fonttype = "none"``) so files stay small and labels stay selectable.
Colours are stable across figures: a baseline always has the same colour and dash, and the
``i``-th top program the ``i``-th colour of the palette.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

BASELINE_STYLES: dict[str, dict] = {
    "adamw": {"color": "#222222", "linestyle": "--"},
    "adam": {"color": "#8c8c8c", "linestyle": "--"},
    "sgd_momentum": {"color": "#a0522d", "linestyle": ":"},
    "lion": {"color": "#6b8e23", "linestyle": "-."},
}
"""How each tuned baseline is drawn in every figure."""
PROGRAM_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#e377c2", "#bcbd22")
"""Colours of the top programs, best first."""
FAILURE_COLORS = {
    "invalid_code": "#7f7f7f", "forbidden_construct": "#9467bd", "timeout": "#ff7f0e", "oom": "#8c564b",
    "nan": "#d62728", "diverged": "#e377c2", "shape_error": "#17becf", "crashed": "#1f1f1f",
    "duplicate": "#c7c7c7",
}
"""Colours of failure reasons (and of duplicates) in the failure chart."""

RC = {
    "svg.fonttype": "none",
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e6e6e6",
    "grid.linewidth": 0.6,
    "font.family": "sans-serif",
}
_salts = count()


def baseline_style(name: str) -> dict:
    """Line colour and dash of baseline ``name`` (an unknown one is grey and dashed)."""
    return BASELINE_STYLES.get(name, {"color": "#b0b0b0", "linestyle": "--"})


def program_color(rank: int) -> str:
    """Colour of the program ranked ``rank`` (0 = best)."""
    return PROGRAM_COLORS[rank % len(PROGRAM_COLORS)]


def to_svg(fig: Figure) -> str:
    """Render ``fig`` as an ``<svg>`` element for inline HTML and close it.

    Element ids get a per-figure salt so several figures can share one page without clashing.
    """
    buf = io.StringIO()
    with plt.rc_context({**RC, "svg.hashsalt": f"fig{next(_salts)}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    head_end = text.index(">")
    head = text[:head_end]
    width = re.search(r'\swidth="([\d.]+)pt"', head)
    head = re.sub(r'\s(?:xmlns(?::\w+)?|width|height|version)="[^"]*"', "", head)
    # No fixed size: the page's CSS scales the figure down on narrow screens, never above its
    # natural width (so small figures do not blow up to the full column).
    style = f' style="max-width: {float(width.group(1)) * 4 / 3:.0f}px"' if width else ""
    return head + ' role="img"' + style + text[head_end:]


def _figure(width: float, height: float, ncols: int = 1, nrows: int = 1, **kwargs):
    with plt.rc_context(RC):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, **kwargs)
    return fig, axes


def small_multiples(count: int, ncols: int, row_height: float):
    """A figure for ``count`` panels at most ``ncols`` wide (3.5 a column, ``row_height`` a row,
    room for a legend below), its unused axes hidden: ``(fig, axes in order, columns)``."""
    ncols = max(1, min(ncols, count))
    nrows = math.ceil(count / ncols)
    fig, grid = _figure(3.5 * ncols, row_height * nrows + 0.5, ncols=ncols, nrows=nrows)
    for ax in grid.flat[count:]:
        ax.set_visible(False)
    return fig, list(grid.flat[:count]), ncols


def finish_small_multiples(fig, legend: Mapping[str, object]) -> str:
    """The shared legend under the panels (five entries a row), laid out; the figure as SVG."""
    if legend:
        fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=min(5, len(legend)), frameon=False)
    rows = math.ceil(len(legend) / 5)
    height = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, min(0.3, (0.3 * rows + 0.05) / height), 1, 1))
    return to_svg(fig)


def _readable_log_axis(axis) -> None:
    """Label a log axis with plain numbers at 1-2-5 steps (not only powers of ten)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _finite(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([np.nan if v is None else float(v) for v in values], dtype=np.float64)


# --- best fitness over the campaign -------------------------------------------------------


@dataclass
class ProgressPoint:
    """One proposed candidate: when it came (index, spend) and what it scored (None: no score)."""

    index: int
    spend: float
    measured: float | None
    confirmed: float | None
    label: str = ""


def _running_best(xs: Sequence[float], values: Sequence[float | None], start: float | None) -> tuple[list, list]:
    """Step-plot coordinates of the best value seen so far (``start`` before the first point)."""
    best = start
    out_x, out_y = [], []
    if start is not None:
        out_x.append(0.0)
        out_y.append(start)
    for x, v in zip(xs, values):
        if v is not None and (best is None or v > best):
            best = v
        if best is not None:
            out_x.append(x)
            out_y.append(best)
    return out_x, out_y


def fitness_progress(points: Sequence[ProgressPoint], baselines: Mapping[str, float],
                     seed_measured: float | None, seed_confirmed: float | None, spend_label: str) -> str:
    """Best measured and best confirmed fitness so far, against the candidate index (left) and
    the spend (right), with the baselines' fitness as horizontal lines."""
    fig, axes = _figure(10.5, 4.0, ncols=2, sharey=True)
    values = [v for p in points for v in (p.measured, p.confirmed) if v is not None]
    values += [v for v in (*baselines.values(), seed_measured, seed_confirmed) if v is not None]
    log = bool(values) and min(values) > 0 and max(values) / min(values) > 6
    for ax, key, label in ((axes[0][0], "index", "candidates proposed"), (axes[0][1], "spend", spend_label)):
        ordered = sorted(points, key=lambda p: (getattr(p, key), p.index))
        xs = [float(getattr(p, key)) for p in ordered]
        scored = [(x, p.measured) for x, p in zip(xs, ordered) if p.measured is not None]
        if scored:
            ax.scatter(*zip(*scored), s=10, color="#9ecae1", edgecolors="none", zorder=2,
                       label="a candidate's measured fitness")
        mx, my = _running_best(xs, [p.measured for p in ordered], seed_measured)
        cx, cy = _running_best(xs, [p.confirmed for p in ordered], seed_confirmed)
        end = max(xs, default=0.0)
        for sx, sy, style, name in ((cx, cy, {"color": "#d62728", "linewidth": 2.0, "zorder": 3},
                                     "best confirmed (fresh seeds)"),
                                    (mx, my, {"color": "#1f77b4", "linewidth": 1.0, "zorder": 4}, "best measured")):
            if sx:
                ax.step(sx + [end], sy + [sy[-1]], where="post", label=name, **style)
        best = seed_confirmed
        for x, p in zip(xs, ordered):  # mark and name each new confirmed best
            if p.confirmed is not None and (best is None or p.confirmed > best):
                best = p.confirmed
                ax.plot([x], [best], marker="*", markersize=9, color="#d62728", zorder=5, linestyle="none")
                ax.annotate(p.label, (x, best), textcoords="offset points", xytext=(-4, 6), ha="right",
                            fontsize=8, color="#d62728")
        for name, value in baselines.items():
            ax.axhline(value, linewidth=1.0, zorder=1, label=f"{name} (baseline)", **baseline_style(name))
        ax.set_xlabel(label)
        if log:
            ax.set_yscale("log")
            _readable_log_axis(ax.yaxis)
        ax.set_xlim(0, end * 1.04 if end > 0 else 1.0)
    axes[0][0].set_ylabel("fitness (speed-up over tuned AdamW)")
    axes[0][0].set_title("best fitness over candidates")
    axes[0][1].set_title(f"best fitness over {spend_label.split(' (')[0]}")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)) or 1, frameon=False)
    rows = math.ceil(len(labels) / 4) if labels else 0
    fig.tight_layout(rect=(0, 0.06 * rows + 0.02, 1, 1))
    return to_svg(fig)


# --- loss curves --------------------------------------------------------------------------


@dataclass
class Series:
    """One line of a loss-curve panel (``x``: the steps of ``curve``; empty: evenly spaced)."""

    label: str
    curve: list[float]
    style: dict = field(default_factory=dict)
    x: list[float] = field(default_factory=list)


@dataclass
class Panel:
    """One task's loss curves on one tier (``target``: tuned AdamW's validation target)."""

    title: str
    steps: int
    series: list[Series]
    ylabel: str = "loss"
    target: float | None = None


LOG_SPAN = 30.0
"""A panel uses a log y axis when all its values are positive and the robust range spans more
than this factor (~1.5 decades); otherwise linear. One rule for every panel."""
OUTLIER_REACH = 1.5
"""How far past the bulk of a panel's values (2nd-98th percentile) its axis still reaches: 1.5
decades on a log axis, 1.5 band widths on a linear one; what lies further is an outlier."""
MAX_DECADES = 6.0
"""A log axis shows at most this many decades below its top: a loss that reaches 1e-23 (an
exact optimum) would otherwise squash every other curve into a line."""


def robust_limits(values: Sequence[float], log: bool, keep: Sequence[float] = ()) -> tuple[float, float]:
    """Y limits that show all of ``values`` except extreme outliers: the data's range, cut where
    it reaches more than ``OUTLIER_REACH`` beyond the 2nd-98th percentile band (in decades on a
    log axis, in band widths on a linear one), and on a log axis at most ``MAX_DECADES`` deep.
    ``keep`` (e.g. the curves' starting values) is always inside. Values outside are clipped
    (the caller says so on the panel)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    k = np.asarray([x for x in keep if x is not None and math.isfinite(x)], dtype=np.float64)
    if log:
        v, k = np.log10(v[v > 0]), np.log10(k[k > 0])
    if v.size == 0:
        return (0.1, 1.0) if log else (0.0, 1.0)
    q_lo, q_hi = np.percentile(v, [2, 98])
    reach = OUTLIER_REACH if log else OUTLIER_REACH * max(q_hi - q_lo, 1e-12)
    lo, hi = max(v.min(), q_lo - reach), min(v.max(), q_hi + reach)
    if k.size:
        lo, hi = min(lo, k.min()), max(hi, k.max())
    if log:
        lo = max(lo, hi - MAX_DECADES)
        if hi - lo < 0.1:
            lo, hi = lo - 0.05, hi + 0.05
        return float(10 ** lo), float(10 ** hi)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 * (abs(lo) or 1.0), hi + 0.5 * (abs(hi) or 1.0)
    return float(lo), float(hi)


def use_log(values: Sequence[float]) -> bool:
    """The one log-or-linear rule (see :data:`LOG_SPAN`)."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v or min(v) <= 0:
        return False
    lo, hi = robust_limits(v, log=True)
    return hi / lo > LOG_SPAN


def clip_note(values: np.ndarray, lo: float, hi: float) -> str:
    """What falls outside ``lo``..``hi`` ("" when nothing), for a panel's x label."""
    tol = 1e-9 * max(abs(lo), abs(hi))
    below, above = values[values < lo - tol], values[values > hi + tol]
    notes = []
    if below.size:
        notes.append(f"{below.size} below (min {below.min():.2g})")
    if above.size:
        notes.append(f"{above.size} above (max {above.max():.2g})")
    return "off-scale: " + ", ".join(notes) if notes else ""


def loss_curves(panels: Sequence[Panel], ncols: int = 3) -> str:
    """Small multiples of loss curves (x = steps). Every panel follows one scale rule: log y when
    its values are positive and span decades, else linear; limits hold the bulk of the data and
    the panel names what falls off-scale."""
    fig, axes, ncols = small_multiples(len(panels), ncols, 2.5)
    legend: dict[str, object] = {}
    for i, (ax, panel) in enumerate(zip(axes, panels)):
        values, starts = [], []
        for series in panel.series:
            y = _finite(series.curve)
            ok = np.isfinite(y)
            if not ok.any():
                continue
            if series.x and len(series.x) == len(y):
                x = np.asarray(series.x, dtype=np.float64)
            else:
                x = np.linspace(1, panel.steps, len(y)) if len(y) > 1 else np.array([panel.steps])
            (line,) = ax.plot(x[ok], y[ok], **{"linewidth": 1.3, **series.style})
            legend.setdefault(series.label, line)
            values.extend(y[ok].tolist())
            starts.append(float(y[ok][0]))
        if panel.target is not None and ax.lines:
            line = ax.axhline(panel.target, color="#222222", linestyle=(0, (1, 2)), linewidth=0.9)
            legend.setdefault("AdamW's validation target", line)
            values.append(panel.target)
        if values:
            log = use_log(values)
            lo, hi = robust_limits(values, log, keep=starts + ([panel.target] if panel.target else []))
            if log:
                ax.set_yscale("log")
                if hi / lo < 30:  # within ~1.5 decades: 1-2-5 labels instead of crowded minor ticks
                    _readable_log_axis(ax.yaxis)
                else:
                    from matplotlib.ticker import NullFormatter

                    ax.yaxis.set_minor_formatter(NullFormatter())
                ax.set_ylim(lo / 1.15, hi * 1.15)
            else:
                pad = 0.04 * (hi - lo)
                ax.set_ylim(lo - pad, hi + pad)
        note = clip_note(np.asarray(values), lo, hi) if values else ""
        ax.set_title(panel.title)
        ax.set_xlabel("step" + (f"  ({note})" if note else ""))
        if i % ncols == 0 or panel.ylabel != panels[i - 1].ylabel:
            ax.set_ylabel(panel.ylabel)
        if not ax.lines:
            ax.text(0.5, 0.5, "no finite loss recorded", ha="center", va="center", transform=ax.transAxes,
                    color="#888888")
    return finish_small_multiples(fig, legend)


# --- performance profile ------------------------------------------------------------------


def performance_profile(scores: Mapping[str, Mapping[str, float]], styles: Mapping[str, dict]) -> str:
    """Dolan-Moré performance profile of methods over tasks.

    ``scores[method][task]`` is a speed-up (higher is better). On each task a method's ratio is
    best score / its score (1 for the best method); the profile of a method is, for each
    ``tau``, the fraction of tasks whose ratio is at most ``tau``. A missing score counts as
    never within any factor.
    """
    tasks = sorted({t for per in scores.values() for t in per})
    best = {t: max((per[t] for per in scores.values() if per.get(t)), default=None) for t in tasks}
    ratios = {m: np.asarray([best[t] / per[t] if per.get(t) and best[t] else np.inf for t in tasks])
              for m, per in scores.items()}
    finite = [r for rs in ratios.values() for r in rs if np.isfinite(r)]
    tau_max = max(2.0, max(finite, default=2.0) * 1.25)
    taus = np.geomspace(1.0, tau_max, 200)
    fig, axes = _figure(7.4, 3.8)
    ax = axes[0][0]
    for method, rs in ratios.items():
        frac = [(rs <= tau * (1 + 1e-12)).mean() for tau in taus]
        ax.step(taus, frac, where="post", linewidth=1.6, label=method, **styles.get(method, {}))
    ax.set_xscale("log")
    _readable_log_axis(ax.xaxis)
    ax.set_xlim(1.0, tau_max)
    ax.set_ylim(-0.02, 1.04)
    ax.set_xlabel("τ (within this factor of the best method on a task)")
    ax.set_ylabel(f"fraction of tasks (of {len(tasks)})")
    ax.set_title("performance profile (higher and further left is better)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return to_svg(fig)


# --- failures -----------------------------------------------------------------------------


def failures_over_time(bins: Sequence[str], counts: Mapping[str, Sequence[int]], proposed: Sequence[int]) -> str:
    """Stacked bars: candidates that failed (by reason) or were duplicates in each batch of
    candidates, beside how many were proposed."""
    fig, axes = _figure(6.4, 3.2)
    ax = axes[0][0]
    x = np.arange(len(bins))
    bottom = np.zeros(len(bins))
    for reason, values in counts.items():
        ax.bar(x, values, bottom=bottom, width=0.7, label=reason, color=FAILURE_COLORS.get(reason, "#aaaaaa"))
        bottom += np.asarray(values, dtype=float)
    ax.plot(x, proposed, color="#333333", marker="o", markersize=3, linewidth=1.0, label="proposed")
    ax.set_ylim(0, max(max(proposed, default=1), bottom.max(initial=1)) * 1.12)
    ax.set_xticks(x)
    ax.set_xticklabels(bins, rotation=30 if len(bins) > 6 else 0, ha="right" if len(bins) > 6 else "center")
    ax.set_xlabel("candidates (by proposal index)")
    ax.set_ylabel("count")
    ax.set_title("failed and duplicate candidates, per batch of candidates")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return to_svg(fig)
