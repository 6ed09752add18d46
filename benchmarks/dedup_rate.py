"""How many duplicate programs each de-duplication method catches, and how many it wrongly flags.

Builds an archive holding every reference optimizer (with its behaviour fingerprint), then
generates a few hundred variants of the references by rewriting their syntax trees:

- rewrites that keep the behaviour (true duplicates): renamed locals, reformatting and
  comments, reordered definitions, swapped operands of ``+`` and ``*``, ``a - b`` as
  ``a + -b``, division as multiplication by a reciprocal, ``square(x)`` <-> ``x * x``,
  ``interp`` expanded into arithmetic, ``sqrt(a) / sqrt(b)`` as ``sqrt(a / b)``, dead code, and
  mixes of two or three of these;
- changes that do not (not duplicates): one HPARAMS value scaled, one arithmetic operator or
  one elementwise op replaced.

Fingerprints come from the real path: the ``probe`` job in sandbox workers (``WorkerPool``).
Whether a variant truly duplicates its reference is decided by an independent, more thorough
oracle run in this process (the variants are generated here, so trusted): 12 steps in float64
on other tensors, with gradients at scales 1, 1e-4 and 1e-8 (where ``eps`` matters), deltas
equal to 1e-9 relative. A "change" can be a true duplicate: ``hp.weight_decay / param`` is
still zero when weight_decay is 0. Prints, per rewrite kind and overall, what exact
(normalised hash), behavioural (fingerprint) and combined de-duplication catch, and which
non-duplicates they flag.

    python benchmarks/dedup_rate.py [--seed 0] [--per-kind 2] [--mixes 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import ast
import copy
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import archive  # noqa: E402
from archive.dedup import find_duplicate  # noqa: E402
from sandbox.contract import CandidateError, load_program, run_init, run_update, validate  # noqa: E402
from sandbox.pool import WorkerPool  # noqa: E402
from sandbox.references import reference_names, reference_source  # noqa: E402

Rewrite = Callable[[ast.Module, random.Random], bool]
"""Edits a program's tree in place; False when it does not apply to this program."""

UNARY_SWAPS = ("sqrt", "abs", "sign", "tanh", "square", "exp")


# --- tree helpers -------------------------------------------------------------------------


def functions(tree: ast.Module) -> list[ast.FunctionDef]:
    return [s for s in tree.body if isinstance(s, ast.FunctionDef)]


def nodes(tree: ast.Module, kind: type, where: Callable[[ast.AST], bool] = lambda n: True) -> list:
    """Nodes of ``kind`` inside function bodies (HPARAMS and constants are left alone)."""
    return [n for fn in functions(tree) for n in ast.walk(fn) if isinstance(n, kind) and where(n)]


def number(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool)


def replace_node(tree: ast.Module, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(tree):
        for name, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, name, new)
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = new


def some(items: list, rng: random.Random) -> list:
    """A random non-empty subset (each item with probability 1/2)."""
    chosen = [item for item in items if rng.random() < 0.5]
    return chosen or [rng.choice(items)]


# --- rewrites that keep the behaviour -----------------------------------------------------


def rename_locals(tree: ast.Module, rng: random.Random) -> bool:
    changed = False
    for fn in functions(tree):
        stores = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        renames = {name: f"{name}_v{rng.randrange(1000)}" for name in stores}
        for n in ast.walk(fn):
            if isinstance(n, ast.Name) and n.id in renames:
                n.id = renames[n.id]
                changed = True
    return changed


def reorder_definitions(tree: ast.Module, rng: random.Random) -> bool:
    defs = [i for i, s in enumerate(tree.body) if isinstance(s, ast.FunctionDef)]
    if len(defs) < 2:
        return False
    order = [tree.body[i] for i in defs][::-1]
    for i, stmt in zip(defs, order):
        tree.body[i] = stmt
    return True


def commute(tree: ast.Module, rng: random.Random) -> bool:
    ops = nodes(tree, ast.BinOp, lambda n: isinstance(n.op, (ast.Add, ast.Mult)))
    for n in some(ops, rng) if ops else []:
        n.left, n.right = n.right, n.left
    return bool(ops)


def subtract_as_add_negative(tree: ast.Module, rng: random.Random) -> bool:
    ops = nodes(tree, ast.BinOp, lambda n: isinstance(n.op, ast.Sub))
    for n in some(ops, rng) if ops else []:
        n.op = ast.Add()
        n.right = ast.UnaryOp(ast.USub(), n.right)
    return bool(ops)


def divide_as_reciprocal(tree: ast.Module, rng: random.Random) -> bool:
    """``a / b`` -> ``a * (1 / b)``, and ``a / 2`` -> ``a * 0.5``."""
    ops = nodes(tree, ast.BinOp, lambda n: isinstance(n.op, ast.Div))
    for n in some(ops, rng) if ops else []:
        n.op = ast.Mult()
        if number(n.right) and n.right.value != 0:
            n.right = ast.Constant(1 / n.right.value)
        else:
            n.right = ast.BinOp(ast.Constant(1.0), ast.Div(), n.right)
    return bool(ops)


def square_as_product(tree: ast.Module, rng: random.Random) -> bool:
    """``square(x)`` -> ``x * x`` and ``g * g`` -> ``square(g)``."""
    calls = nodes(tree, ast.Call, lambda n: isinstance(n.func, ast.Name) and n.func.id == "square")
    products = nodes(tree, ast.BinOp, lambda n: isinstance(n.op, ast.Mult) and ast.dump(n.left) == ast.dump(n.right))
    for n in calls:
        replace_node(tree, n, ast.BinOp(n.args[0], ast.Mult(), copy.deepcopy(n.args[0])))
    for n in products:
        replace_node(tree, n, ast.Call(ast.Name("square", ast.Load()), [n.left], []))
    return bool(calls or products)


def expand_interp(tree: ast.Module, rng: random.Random) -> bool:
    """``interp(x, y, w)`` -> ``w * y + (1 - w) * x`` (the op's documented meaning)."""
    calls = nodes(tree, ast.Call, lambda n: isinstance(n.func, ast.Name) and n.func.id == "interp")
    for n in some(calls, rng) if calls else []:
        x, y, w = n.args
        one_minus_w = ast.BinOp(ast.Constant(1), ast.Sub(), copy.deepcopy(w))
        replace_node(tree, n, ast.BinOp(ast.BinOp(w, ast.Mult(), y), ast.Add(), ast.BinOp(one_minus_w, ast.Mult(), x)))
    return bool(calls)


def merge_square_roots(tree: ast.Module, rng: random.Random) -> bool:
    """``sqrt(a) / sqrt(b)`` -> ``sqrt(a / b)``."""
    def is_sqrt(n: ast.AST) -> bool:
        return isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "sqrt"

    ops = nodes(tree, ast.BinOp, lambda n: isinstance(n.op, ast.Div) and is_sqrt(n.left) and is_sqrt(n.right))
    for n in ops:
        merged = ast.BinOp(n.left.args[0], ast.Div(), n.right.args[0])
        replace_node(tree, n, ast.Call(ast.Name("sqrt", ast.Load()), [merged], []))
    return bool(ops)


def add_dead_code(tree: ast.Module, rng: random.Random) -> bool:
    update = next(fn for fn in functions(tree) if fn.name == "update")
    update.body.insert(0, ast.parse(f"unused_{rng.randrange(100)} = grad * {rng.choice([2.0, 0.5, 3.0])}").body[0])
    return True


def reformat(tree: ast.Module, rng: random.Random) -> bool:
    """Marked here, applied to the text by :func:`render` (comments and blank lines are not in the tree)."""
    return True


# --- changes that alter the behaviour ------------------------------------------------------


def scale_hparam(tree: ast.Module, rng: random.Random) -> bool:
    assign = next(s for s in tree.body if isinstance(s, ast.Assign) and getattr(s.targets[0], "id", "") == "HPARAMS")
    index = rng.randrange(len(assign.value.keys))
    value = assign.value.values[index]
    old = ast.literal_eval(value)
    new = rng.choice([0.1, 0.25]) if old == 0 else old * rng.choice([0.5, 2.0, 3.0])
    assign.value.values[index] = ast.Constant(new)
    return True


def change_operator(tree: ast.Module, rng: random.Random) -> bool:
    swaps = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}
    ops = nodes(tree, ast.BinOp, lambda n: type(n.op) in swaps)
    if not ops:
        return False
    n = rng.choice(ops)
    n.op = swaps[type(n.op)]()
    return True


def change_elementwise_op(tree: ast.Module, rng: random.Random) -> bool:
    calls = nodes(tree, ast.Call, lambda n: isinstance(n.func, ast.Name) and n.func.id in UNARY_SWAPS)
    if not calls:
        return False
    n = rng.choice(calls)
    n.func.id = rng.choice([op for op in UNARY_SWAPS if op != n.func.id])
    return True


PRESERVING: dict[str, Rewrite] = {
    "rename locals": rename_locals,
    "reformat + comments": reformat,
    "reorder definitions": reorder_definitions,
    "a*b -> b*a, a+b -> b+a": commute,
    "a-b -> a+(-b)": subtract_as_add_negative,
    "a/b -> a*(1/b)": divide_as_reciprocal,
    "square(x) <-> x*x": square_as_product,
    "interp expanded": expand_interp,
    "sqrt(a)/sqrt(b) -> sqrt(a/b)": merge_square_roots,
    "dead code": add_dead_code,
}
CHANGING: dict[str, Rewrite] = {
    "HPARAMS value changed": scale_hparam,
    "operator changed": change_operator,
    "elementwise op changed": change_elementwise_op,
}
MIXED = "2-3 rewrites mixed"


@dataclass
class Variant:
    reference: str
    kind: str
    source: str
    duplicate: bool = False  # by the oracle
    fingerprint: list[float] | None = None


def render(tree: ast.Module, rng: random.Random, messy: bool) -> str:
    """Program text; ``messy`` adds comments, blank lines and a different docstring."""
    if not messy:
        return ast.unparse(tree) + "\n"
    body = [s for s in tree.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    out = [f'"""Variant {rng.randrange(10**6)}: rewritten by the dedup benchmark."""']
    for line in ast.unparse(ast.Module(body, [])).splitlines():
        if not line.strip():
            continue
        indent = line[: len(line) - len(line.lstrip())]
        if rng.random() < 0.3:
            out.append(f"{indent}# note {rng.randrange(1000)}")
        out.append(line.replace(", ", ",  ") if rng.random() < 0.2 and '"' not in line else line)
        if rng.random() < 0.2:
            out.append("")
    return "\n".join(out) + "\n"


def make_variant(reference: str, kinds: list[str], rng: random.Random) -> str | None:
    tree = ast.parse(reference_source(reference))
    for kind in kinds:
        if not {**PRESERVING, **CHANGING}[kind](tree, rng):
            return None
    source = render(ast.fix_missing_locations(tree), rng, messy="reformat + comments" in kinds)
    try:
        validate(source)
    except CandidateError:
        return None
    return source


def make_variants(rng: random.Random, per_kind: int, mixes: int) -> list[Variant]:
    variants = []
    for reference in reference_names():
        for kind in [*PRESERVING, *CHANGING]:
            for _ in range(per_kind):
                source = make_variant(reference, [kind], rng)
                if source is not None:
                    variants.append(Variant(reference, kind, source))
        for _ in range(mixes):
            for _attempt in range(10):
                kinds = rng.sample(list(PRESERVING), rng.randint(2, 3))
                source = make_variant(reference, kinds, rng)
                if source is not None:
                    variants.append(Variant(reference, MIXED, source))
                    break
    return variants


# --- the oracle: does the variant really behave like its reference? ---------------------

ORACLE_SHAPES = ((7,), (5, 3), (4, 4))
ORACLE_GRAD_SCALES = (1.0, 1e-4, 1e-8)
ORACLE_STEPS = 12


def oracle_trace(source: str) -> list[torch.Tensor] | str:
    """Every delta over the oracle's runs (float64), or the failure reason."""
    try:
        program = load_program(source)
        hp = program.hp()
        gen = torch.Generator().manual_seed(2024)
        deltas = []
        for shape in ORACLE_SHAPES:
            for scale in ORACLE_GRAD_SCALES:
                param = torch.randn(shape, generator=gen, dtype=torch.float64)
                state = run_init(program, param.clone())
                for step in range(1, ORACLE_STEPS + 1):
                    grad = scale * (torch.randn(shape, generator=gen, dtype=torch.float64) + 0.5 * param)
                    delta, state = run_update(program, grad, param.clone(), state, step, hp)
                    param = param + delta
                    deltas.append(delta)
        return deltas
    except CandidateError as exc:
        return exc.reason
    except (RuntimeError, ValueError, ZeroDivisionError, OverflowError) as exc:
        return type(exc).__name__


def same_behaviour(a: list[torch.Tensor] | str, b: list[torch.Tensor] | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return all(torch.allclose(x, y, rtol=1e-9, atol=0.0, equal_nan=True) for x, y in zip(a, b))


# --- measuring ----------------------------------------------------------------------------


def probe_all(sources: list[str], workers: int) -> list[list[float] | None]:
    """Fingerprints from the sandbox's probe job; None where the probe failed (e.g. NaN)."""
    with WorkerPool(size=workers) as pool:
        results = pool.map("probe", [{"source": s} for s in sources], timeout=60)
    return [r.value if r.ok else None for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-kind", type=int, default=2, help="variants per reference and rewrite kind")
    parser.add_argument("--mixes", type=int, default=5, help="mixed-rewrite variants per reference")
    parser.add_argument("--workers", type=int, default=2, help="sandbox workers computing fingerprints")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    started = time.perf_counter()
    variants = make_variants(rng, args.per_kind, args.mixes)
    references = reference_names()
    traces = {r: oracle_trace(reference_source(r)) for r in references}
    for v in variants:
        v.duplicate = same_behaviour(traces[v.reference], oracle_trace(v.source))
    oracle_seconds = time.perf_counter() - started
    started = time.perf_counter()
    fingerprints = probe_all([reference_source(r) for r in references] + [v.source for v in variants], args.workers)
    for variant, fp in zip(variants, fingerprints[len(references):]):
        variant.fingerprint = fp
    probe_seconds = time.perf_counter() - started

    found: dict[str, Counter] = defaultdict(Counter)  # per rewrite kind: counts by method and truth
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, archive.open(tmp, create=True) as store:
        ids = {r: store.add_program(reference_source(r), name=r, proposer="reference", fingerprint=fp)
               for r, fp in zip(references, fingerprints)}
        names = {pid: r for r, pid in ids.items()}
        for v in variants:
            truth = "dup" if v.duplicate else "new"
            behavioural = store.find_by_fingerprint(v.fingerprint) if v.fingerprint is not None else None
            matches = {"exact": find_duplicate(store, v.source),
                       "behavioural": None if behavioural is None else ("behavioural", behavioural.id),
                       "combined": find_duplicate(store, v.source, v.fingerprint)}
            row = found[v.kind]
            row[truth] += 1
            row["probe failed"] += v.fingerprint is None
            for method, match in matches.items():
                row[f"{method} {truth}"] += match is not None
            combined = matches["combined"]
            if combined is not None and v.duplicate and names[combined[1]] != v.reference:
                row["wrong original"] += 1
            if v.kind in PRESERVING or v.kind == MIXED:
                if not v.duplicate:
                    notes.append(f"oracle says {v.kind!r} changed {v.reference}: {describe_change(v)}")
            elif v.duplicate:
                notes.append(f"no effect at default HPARAMS ({v.kind}, {v.reference}): {describe_change(v)}"
                             + ("" if combined else "  [missed]"))
            if combined is not None and not v.duplicate:
                notes.append(f"FALSE POSITIVE ({combined[0]}) {v.kind} in {v.reference}: {describe_change(v)}")

    n_dup = sum(r["dup"] for r in found.values())
    n_new = sum(r["new"] for r in found.values())
    print(f"{len(variants)} variants of {len(references)} references: {n_dup} true duplicates, {n_new} different "
          f"(oracle {oracle_seconds:.1f}s; sandbox fingerprints {probe_seconds:.1f}s)")
    print(f"\n{'rewrite':30} {'dups':>5} {'exact':>6} {'behav':>6} {'both':>6}   {'diff':>5} {'exact':>6} "
          f"{'behav':>6} {'both':>6}")
    print(f"{'':30} {'caught of the duplicates':>26}   {'flagged of the different ones':>30}")
    for kind in [*PRESERVING, MIXED, *CHANGING]:
        r = found[kind]
        print(f"{kind:30} {r['dup']:>5} {r['exact dup']:>6} {r['behavioural dup']:>6} {r['combined dup']:>6}   "
              f"{r['new']:>5} {r['exact new']:>6} {r['behavioural new']:>6} {r['combined new']:>6}"
              + (f"  ({r['probe failed']} probes failed)" if r["probe failed"] else ""))
    print(f"\n{'method':12} {'duplicates caught':>20} {'false positives':>18}")
    for method in ("exact", "behavioural", "combined"):
        hit = sum(r[f"{method} dup"] for r in found.values())
        wrong = sum(r[f"{method} new"] for r in found.values())
        print(f"{method:12} {hit:>7}/{n_dup:<4} {hit / max(1, n_dup):7.1%} {wrong:>7}/{n_new:<4} "
              f"{wrong / max(1, n_new):6.1%}")
    print(f"duplicates matched to the wrong original: {sum(r['wrong original'] for r in found.values())}")
    if notes:
        print()
        for line in notes:
            print(line)


def describe_change(variant: Variant) -> str:
    """The HPARAMS line of a variant whose HPARAMS changed, else its update body's first lines."""
    original = {k: v for k, v in _hparams(reference_source(variant.reference)).items()}
    changed = {k: v for k, v in _hparams(variant.source).items() if original.get(k) != v}
    if changed:
        return ", ".join(f"{k} {original[k]:g} -> {v:g}" for k, v in changed.items())
    before = set(ast.unparse(ast.parse(reference_source(variant.reference))).splitlines())
    after = [line.strip() for line in ast.unparse(ast.parse(variant.source)).splitlines() if line not in before]
    return "; ".join(after)[:120]


def _hparams(source: str) -> dict[str, float]:
    tree = ast.parse(source)
    assign = next(s for s in tree.body if isinstance(s, ast.Assign) and getattr(s.targets[0], "id", "") == "HPARAMS")
    return ast.literal_eval(assign.value)


if __name__ == "__main__":
    main()
