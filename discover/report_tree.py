"""The whole population's family tree as one inline SVG: every program a node, every parent
link an edge, layered by generation and coloured by fitness.

Generation 0 holds the programs with no parent in the archive (the seeded references, and any
program whose parents are missing); a child sits one layer below its deepest parent. Within a
layer, programs are ordered by the mean position of their parents (one top-down barycentre
sweep), which keeps most edges short. A layer wider than ``ROW_CAPACITY`` wraps onto more rows,
so a campaign of a few hundred programs stays a page wide. Hovering a node shows what it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from archive.store import ProgramRecord

ROW_CAPACITY = 80
"""Nodes on one row before a generation wraps onto another."""
DX, ROW_DY, GAP_DY = 13.0, 26.0, 16.0
MIN_WIDTH = 900.0  # room for the legend
MAX_DX = 44.0
LEFT, TOP, RIGHT, BOTTOM = 64.0, 70.0, 24.0, 64.0  # TOP: room for the slanted names of generation 0
FAILED_STROKE = "#c0392b"
LINEAGE_STROKE = "#1d1d1f"
# viridis at nine stops (matplotlib's table), enough for a smooth legend without matplotlib here
_VIRIDIS = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725")


@dataclass
class TreeNode:
    id: int
    generation: int
    x: float
    y: float
    fill: str
    stroke: str
    shape: str  # circle | square
    label: str | None
    title: str


@dataclass
class TreeEdge:
    parent: int
    child: int
    on_lineage: bool


def generations(programs: Sequence[ProgramRecord]) -> dict[int, int]:
    """Each program's generation: 0 without a parent in the archive, else one more than its
    deepest parent's (parent links that form a cycle, which the archive never writes, are cut)."""
    by_id = {p.id: p for p in programs}
    gen: dict[int, int] = {}
    visiting: set[int] = set()

    def depth(pid: int) -> int:
        if pid in gen:
            return gen[pid]
        visiting.add(pid)
        parents = [q for q in by_id[pid].parent_ids if q in by_id and q not in visiting]
        gen[pid] = 1 + max(depth(q) for q in parents) if parents else 0
        visiting.discard(pid)
        return gen[pid]

    for p in sorted(programs, key=lambda r: r.id):
        depth(p.id)
    return gen


def _hex_mix(a: str, b: str, t: float) -> str:
    ca = [int(a[i:i + 2], 16) for i in (1, 3, 5)]
    cb = [int(b[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb))


def fitness_color(value: float, low: float, high: float) -> str:
    """Viridis colour of ``value`` on a log scale from ``low`` (dark) to ``high`` (yellow)."""
    if high <= low:
        return _VIRIDIS[-1]
    t = (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
    t = min(1.0, max(0.0, t)) * (len(_VIRIDIS) - 1)
    i = min(int(t), len(_VIRIDIS) - 2)
    return _hex_mix(_VIRIDIS[i], _VIRIDIS[i + 1], t - i)


def _fitness_range(programs: Sequence[ProgramRecord]) -> tuple[float, float]:
    values = [p.fitness for p in programs if p.status == "evaluated" and p.fitness and p.fitness > 0]
    if not values:
        return 1.0, 1.0
    low, high = min(values), max(values)
    # Keep 1.0 (tuned AdamW) inside the scale, so "brighter than AdamW" reads off the legend.
    return min(low, 0.5), max(high, 1.0)


def _title(rec: ProgramRecord, generation: int) -> str:
    who = rec.name if rec.proposer == "reference" and rec.name else rec.proposer
    parents = ", ".join(f"#{p}" for p in rec.parent_ids)
    parts = [f"#{rec.id} {who}" + (f" of {parents}" if parents else ""), f"generation {generation}",
             f"status {rec.status}" + (f" ({rec.stage})" if rec.stage else "")]
    if rec.fitness is not None:
        parts.append(f"search {rec.fitness:.3f}")
    if rec.confirmed_fitness is not None:
        parts.append(f"validation {rec.confirmed_fitness:.3f}")
    if rec.heldout_fitness is not None:
        parts.append(f"test {rec.heldout_fitness:.3f}")
    return " · ".join(parts)


def layout(programs: Sequence[ProgramRecord], winner_id: int | None, lineage: set[int],
           target_id: int | None = None) -> tuple[list[TreeNode], list[TreeEdge], float, float, list[tuple[int, float]]]:
    """Node positions and edges; also the figure's width and height and each generation's y."""
    by_id = {p.id: p for p in programs}
    gen = generations(programs)
    layers: dict[int, list[int]] = {}
    for pid in sorted(gen):
        layers.setdefault(gen[pid], []).append(pid)
    width_nodes = min(ROW_CAPACITY, max((len(ids) for ids in layers.values()), default=1))
    dx = min(MAX_DX, max(DX, (MIN_WIDTH - LEFT - RIGHT) / width_nodes))  # small populations spread out
    width = max(MIN_WIDTH, LEFT + RIGHT + width_nodes * dx)
    low, high = _fitness_range(programs)
    x_of: dict[int, float] = {}
    nodes: list[TreeNode] = []
    gen_y: list[tuple[int, float]] = []
    y = TOP
    for g in sorted(layers):
        ids = layers[g]
        if g > 0:  # barycentre of the parents already placed above
            def centre(pid: int) -> float:
                xs = [x_of[q] for q in by_id[pid].parent_ids if q in x_of]
                return sum(xs) / len(xs) if xs else width / 2
            ids = sorted(ids, key=lambda pid: (centre(pid), pid))
        gen_y.append((g, y))
        for start in range(0, len(ids), ROW_CAPACITY):
            row = ids[start:start + ROW_CAPACITY]
            offset = LEFT + (width - LEFT - RIGHT - len(row) * dx) / 2 + dx / 2
            for i, pid in enumerate(row):
                rec = by_id[pid]
                x_of[pid] = offset + i * dx
                nodes.append(_node(rec, g, x_of[pid], y, winner_id, lineage, low, high, target_id))
            y += ROW_DY
        y += GAP_DY
    edges = [TreeEdge(q, p.id, p.id in lineage and q in lineage)
             for p in sorted(programs, key=lambda r: r.id) for q in dict.fromkeys(p.parent_ids) if q in by_id]
    return nodes, edges, width, y - GAP_DY - ROW_DY + BOTTOM, gen_y


def _node(rec: ProgramRecord, g: int, x: float, y: float, winner_id: int | None, lineage: set[int],
          low: float, high: float, target_id: int | None) -> TreeNode:
    evaluated = rec.status == "evaluated" and rec.fitness is not None and rec.fitness > 0
    if evaluated:
        fill, stroke = fitness_color(rec.fitness, low, high), "none"
    elif rec.status == "failed":
        fill, stroke = "#ffffff", FAILED_STROKE
    else:  # duplicate, pending, rejected
        fill, stroke = "#ffffff", "#9a9a9a"
    if rec.id in lineage:
        stroke = LINEAGE_STROKE
    label = None
    if rec.proposer == "reference" and rec.name:
        label = rec.name
    if rec.id == target_id:
        label = f"#{rec.id}"  # the end of the highlighted lineage (the best candidate): name it
    if rec.id == winner_id:
        label = f"#{rec.id} ★" if rec.proposer != "reference" else f"{rec.name} ★"
    return TreeNode(rec.id, g, x, y, fill, stroke, "square" if rec.proposer == "reference" else "circle",
                    label, _title(rec, g))


def family_tree_svg(programs: Sequence[ProgramRecord], winner_id: int | None = None,
                    lineage: set[int] | None = None, target_id: int | None = None) -> Markup:
    """The inline ``<svg>`` of the population's family tree (``lineage``: ids drawn in black,
    ``target_id`` and its ancestors: the winner's, or the best candidate's when a reference won)."""
    lineage = lineage or set()
    nodes, edges, width, height, gen_y = layout(programs, winner_id, lineage, target_id)
    pos = {n.id: n for n in nodes}
    low, high = _fitness_range(programs)
    out = [f'<svg class="family-tree" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
           f'height="{height:.0f}" role="img" aria-label="family tree of {len(nodes)} programs" '
           'font-family="sans-serif" font-size="10">']
    for g, y in gen_y:
        out.append(f'<text x="6" y="{y + 3.5:.1f}" fill="#6b6b70">gen {g}</text>')
    # plain edges first, the winner's lineage on top
    for edge in sorted(edges, key=lambda e: e.on_lineage):
        a, b = pos[edge.parent], pos[edge.child]
        mid = (a.y + b.y) / 2
        style = f'stroke="{LINEAGE_STROKE}" stroke-width="1.6"' if edge.on_lineage else \
            'stroke="#9aa5b1" stroke-width="0.6" stroke-opacity="0.55"'
        out.append(f'<path class="edge" data-parent="{edge.parent}" data-child="{edge.child}" fill="none" {style} '
                   f'd="M{a.x:.1f},{a.y:.1f} C{a.x:.1f},{mid:.1f} {b.x:.1f},{mid:.1f} {b.x:.1f},{b.y:.1f}"/>')
    for n in nodes:
        sw = "1.4" if n.stroke != "none" else "0"
        if n.shape == "square":
            shape = (f'<rect x="{n.x - 5:.1f}" y="{n.y - 5:.1f}" width="10" height="10" fill="{n.fill}" '
                     f'stroke="{n.stroke if n.stroke != "none" else "#1d1d1f"}" stroke-width="1"/>')
        else:
            shape = f'<circle cx="{n.x:.1f}" cy="{n.y:.1f}" r="4.5" fill="{n.fill}" stroke="{n.stroke}" stroke-width="{sw}"/>'
        label = "" if n.label is None else \
            (f'<text x="{n.x + 2:.1f}" y="{n.y - 8:.1f}" transform="rotate(-35 {n.x + 2:.1f} {n.y - 8:.1f})" '
             f'font-weight="600">{escape(n.label)}</text>')
        out.append(f'<g class="node" data-id="{n.id}"><title>{escape(n.title)}</title>{shape}{label}</g>')
    out.append(_legend(width, height, low, high))
    out.append("</svg>")
    return Markup("".join(out))


def _legend(width: float, height: float, low: float, high: float) -> str:
    """A fitness colour bar (log scale) and the shape key, along the bottom."""
    x0, y0, w = LEFT, height - 40, min(260.0, width - LEFT - RIGHT - 10)
    parts = [f'<g class="legend" transform="translate({x0:.0f},{y0:.0f})">']
    steps = 40
    for i in range(steps):
        value = math.exp(math.log(low) + (math.log(high) - math.log(low)) * (i + 0.5) / steps) if high > low else high
        parts.append(f'<rect x="{i * w / steps:.1f}" y="0" width="{w / steps + 0.5:.1f}" height="8" '
                     f'fill="{fitness_color(value, low, high)}"/>')
    def at(value: float) -> float:
        return 0.0 if high <= low else (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))

    # 1.0 (AdamW) always; an end only where its label does not run into that one
    ticks = [1.0] + [v for v in (low, high) if abs(at(v) - at(1.0)) * w > 40]
    for value in ticks:
        t = at(value)
        note = " (AdamW)" if value == 1.0 else ""
        parts.append(f'<text x="{t * w:.1f}" y="20" text-anchor="middle" fill="#444">{value:.2g}{note}</text>')
    parts.append(f'<text x="{w + 8:.0f}" y="8">search fitness (log scale)</text>')
    kx = w + 160
    parts.append(f'<rect x="{kx:.0f}" y="-1" width="10" height="10" fill="#cccccc" stroke="#1d1d1f"/>'
                 f'<text x="{kx + 14:.0f}" y="8">reference</text>'
                 f'<circle cx="{kx + 85:.0f}" cy="4" r="4.5" fill="#ffffff" stroke="{FAILED_STROKE}" stroke-width="1.4"/>'
                 f'<text x="{kx + 93:.0f}" y="8">failed</text>'
                 f'<circle cx="{kx + 140:.0f}" cy="4" r="4.5" fill="#ffffff" stroke="#9a9a9a" stroke-width="1.4"/>'
                 f'<text x="{kx + 148:.0f}" y="8">duplicate / not scored</text>'
                 f'<line x1="{kx + 275:.0f}" y1="4" x2="{kx + 295:.0f}" y2="4" stroke="{LINEAGE_STROKE}" stroke-width="1.6"/>'
                 f'<text x="{kx + 300:.0f}" y="8">best program\'s lineage</text>')
    parts.append("</g>")
    return "".join(parts)
