"""Drop-in check of an exported optimizer on a task the search never saw: a character-level LM.

Trains a small causal transformer on torch's own optimizer source in an ordinary PyTorch loop
(batch, forward, cross-entropy, ``backward()``, ``optimizer.step()``), once with the candidate
optimizer and once with ``torch.optim.AdamW`` (torch's own, defaults: betas (0.9, 0.999),
weight decay 0.01). Both get the same learning-rate grid: the LR with the lowest mean final
validation loss on the selection seeds is chosen (a diverged run counts as +inf and is never
chosen), then measured on fresh seeds. For a given seed both optimizers start from the same
weights and see the same batches. Prints, for each, the chosen LR, the final validation loss
(mean ± std over the measurement seeds), the steps needed to reach tuned AdamW's final training
loss and the time per step, then one plain line saying whether the gap is larger than the seed
noise. This checks two things at once: that the export drops into normal training code, and
whether its advantage on the proxy suites survives on a task the search never saw.

The task: the ``*.py`` files of the installed ``torch/optim/`` (about 0.5 MB of text; the same
for a given torch version, printed with the results), sorted by name, read as UTF-8 and concatenated, split 90/10 by position into train and validation; the vocabulary
is every character of that text. The model: a 64-wide character embedding plus a learned position
embedding, two pre-norm ``nn.TransformerEncoderLayer`` blocks (4 heads, feed-forward width 128,
dropout 0, batch_first) under a causal mask, a final LayerNorm and a linear head: about 85k
parameters for a ~100-character vocabulary. Batches of 32 random 64-character windows drawn from a
``torch.Generator`` seeded by the run seed (the model's init uses the same seed); constant LR, no
warm-up, no clipping: a user's first loop. Validation loss is measured once, after the last step,
on every non-overlapping 64-character window of the validation text (the same for every run).
Training-loss curves are averaged over the measurement seeds, smoothed with a trailing 20-step
mean and made monotone with a running minimum, as ``sandbox.scoring`` does; "speed-up" is the
steps AdamW needs to reach its own final smoothed training loss divided by the steps the candidate
needs to reach that level.

The candidate is loaded as a user would load it, with ``archive.export.load_optimizer``: an
exported module (such as ``results/winner.py``), a candidate program file, a reference name such
as ``adamw``, or ``campaign_dir:ID``. Times are per training step, measured in the
measurement runs: ``step()`` alone, and the whole step (batch, forward, backward, ``step()``).

    python benchmarks/dropin_lm.py [--optimizer results/winner.py] [--steps 300]
        [--lr-grid 1e-4 3e-4 1e-3 ...] [--selection-seeds 0 1] [--seeds 100 101 102] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from archive.export import ExportError, load_optimizer  # noqa: E402
from sandbox.contract import CandidateError  # noqa: E402
from sandbox.scoring import first_step_reaching, mean_curve  # noqa: E402

CORPUS_DIR = Path(torch.__file__).parent / "optim"  # torch's own optimizer source: fixed for a torch version
CONTEXT = 64
BATCH = 32
SMOOTHING_WINDOW = 20
EVAL_CHUNK = 256  # validation windows per forward pass
BASELINE = "torch.optim.AdamW"

OptimizerFactory = Callable[..., torch.optim.Optimizer]


@dataclass(frozen=True)
class Corpus:
    train: torch.Tensor  # character ids, int64
    val_windows: torch.Tensor  # (n, CONTEXT + 1): inputs are [:, :-1], targets [:, 1:]
    vocab_size: int
    files: int


@dataclass
class Run:
    val_loss: float  # +inf when the run diverged
    train_losses: list[float]  # stops at the first non-finite loss
    step_seconds: list[float]  # optimizer.step() alone
    whole_seconds: list[float]  # batch, forward, backward and step()
    wall: float


class CharTransformer(nn.Module):
    """Causal pre-norm transformer over characters."""

    def __init__(self, vocab_size: int, width: int = 64, layers: int = 2, heads: int = 4, ff: int = 128):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.position = nn.Embedding(CONTEXT, width)
        block = nn.TransformerEncoderLayer(width, heads, ff, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(CONTEXT), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.position(torch.arange(ids.shape[1]))
        x = self.blocks(x, mask=self.mask[: ids.shape[1], : ids.shape[1]], is_causal=True)
        return self.head(self.norm(x))


def load_corpus(root: Path = CORPUS_DIR) -> Corpus:
    files = sorted(root.glob("*.py"))
    text = "".join(path.read_text(encoding="utf-8") for path in files)
    index = {char: i for i, char in enumerate(sorted(set(text)))}
    ids = torch.tensor([index[char] for char in text], dtype=torch.long)
    split = int(0.9 * len(ids))
    val = ids[split:]
    starts = torch.arange(0, len(val) - CONTEXT, CONTEXT)
    return Corpus(ids[:split], val[starts[:, None] + torch.arange(CONTEXT + 1)], len(index), len(files))


def load_candidate(ref: str) -> type[torch.optim.Optimizer]:
    """The candidate's class, loaded as a user would: ``load_optimizer`` takes an exported module,
    a candidate program file, a reference name or ``campaign_dir:ID``."""
    try:
        return load_optimizer(ref)
    except (ExportError, CandidateError) as error:
        raise SystemExit(f"{ref}: {error}") from None


def lm_loss(model: nn.Module, windows: torch.Tensor) -> torch.Tensor:
    logits = model(windows[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))


@torch.no_grad()
def validation_loss(model: nn.Module, windows: torch.Tensor) -> float:
    total = sum(lm_loss(model, chunk).item() * len(chunk) for chunk in windows.split(EVAL_CHUNK))
    return total / len(windows)


def train(make: OptimizerFactory, corpus: Corpus, lr: float, seed: int, steps: int) -> Run:
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = CharTransformer(corpus.vocab_size)
    optimizer = make(model.parameters(), lr=lr)
    batches = torch.Generator().manual_seed(seed)
    offsets = torch.arange(CONTEXT + 1)
    run = Run(math.inf, [], [], [], 0.0)
    for _ in range(steps):
        t0 = time.perf_counter()
        starts = torch.randint(len(corpus.train) - CONTEXT, (BATCH,), generator=batches)
        loss = lm_loss(model, corpus.train[starts[:, None] + offsets])
        if not torch.isfinite(loss):
            break
        optimizer.zero_grad()
        loss.backward()
        t1 = time.perf_counter()
        optimizer.step()
        t2 = time.perf_counter()
        run.train_losses.append(loss.item())
        run.step_seconds.append(t2 - t1)
        run.whole_seconds.append(t2 - t0)
    else:
        val = validation_loss(model, corpus.val_windows)
        run.val_loss = val if math.isfinite(val) else math.inf
    run.wall = time.perf_counter() - start
    return run


def smoothed(curve: Sequence[float]) -> np.ndarray:
    """Trailing moving average then a running minimum; inf stays inf (never counts as progress)."""
    values = np.asarray(curve, dtype=np.float64)
    cumsum = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(values.size)
    lo = np.maximum(0, idx + 1 - SMOOTHING_WINDOW)
    with np.errstate(invalid="ignore"):
        means = (cumsum[idx + 1] - cumsum[lo]) / (idx + 1 - lo)
    return np.minimum.accumulate(np.where(np.isfinite(means), means, np.inf))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not all(math.isfinite(v) for v in values):
        return math.inf, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def tune(optimizers: dict[str, OptimizerFactory], corpus: Corpus, grid: Sequence[float],
         seeds: Sequence[int], steps: int) -> dict[str, dict[float, float]]:
    """Mean final validation loss per optimizer and LR over the selection seeds (inf if any diverged)."""
    table: dict[str, dict[float, float]] = {name: {} for name in optimizers}
    for lr in grid:
        for name, make in optimizers.items():  # interleaved, so load from neighbours hits both alike
            losses = [report(name, lr, seed, train(make, corpus, lr, seed, steps)) for seed in seeds]
            table[name][lr] = mean_std(losses)[0]
    return table


def measure(optimizers: dict[str, OptimizerFactory], chosen: dict[str, float], corpus: Corpus,
            seeds: Sequence[int], steps: int) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {name: [] for name in optimizers}
    for seed in seeds:
        for name, make in optimizers.items():
            run = train(make, corpus, chosen[name], seed, steps)
            report(name, chosen[name], seed, run)
            runs[name].append(run)
    return runs


def report(name: str, lr: float, seed: int, run: Run) -> float:
    print(f"  {name:24s} lr {lr:<7g} seed {seed:<4d} val loss {run.val_loss:.4f}  ({run.wall:.1f} s)",
          file=sys.stderr, flush=True)
    return run.val_loss


def print_sweep(table: dict[str, dict[float, float]], chosen: dict[str, float], seeds: Sequence[int]) -> None:
    grid = list(next(iter(table.values())))
    print(f"\nLR sweep: mean final validation loss on selection seeds {', '.join(map(str, seeds))} "
          f"(* = chosen)")
    print(f"  {'lr':24s}" + "".join(f"{lr:>9g}" for lr in grid))
    for name, row in table.items():
        cells = "".join(f"{row[lr]:>8.4f}{'*' if lr == chosen[name] else ' '}" for lr in grid)
        print(f"  {name:24s}{cells}")
    for name, lr in chosen.items():
        if lr in (grid[0], grid[-1]):
            print(f"  warning: {name}'s chosen LR {lr:g} is on the edge of the grid; widen --lr-grid")


def print_results(runs: dict[str, list[Run]], chosen: dict[str, float], steps: int) -> None:
    curves = {name: smoothed(mean_curve([r.train_losses for r in rs], steps)) for name, rs in runs.items()}
    target = curves[BASELINE][-1]
    base_steps = first_step_reaching(curves[BASELINE], target)
    print(f"\nMeasured on {len(runs[BASELINE])} fresh seeds, {steps} steps; target = tuned AdamW's final "
          f"smoothed training loss {target:.4f}")
    print(f"  {'optimizer':24s} {'lr':>7s} {'val loss':>17s} {'train loss':>10s} {'steps to target':>15s} "
          f"{'speed-up':>8s} {'step() ms':>9s} {'whole step ms':>13s}")
    for name, rs in runs.items():
        mean, std = mean_std([r.val_loss for r in rs])
        reached = first_step_reaching(curves[name], target)
        speedup = f"{base_steps / reached:.2f}x" if reached else "never"
        step_ms = 1e3 * statistics.median(t for r in rs for t in r.step_seconds)
        whole_ms = 1e3 * statistics.median(t for r in rs for t in r.whole_seconds)
        print(f"  {name:24s} {chosen[name]:>7g} {mean:>8.4f} ± {std:<6.4f} {curves[name][-1]:>10.4f} "
              f"{reached or 'never':>15} {speedup:>8s} {step_ms:>9.2f} {whole_ms:>13.2f}")


def verdict(name: str, candidate: Sequence[float], adamw: Sequence[float]) -> str:
    """One plain line: the relative gap in final validation loss against the seed-to-seed spread."""
    (c, c_std), (a, a_std) = mean_std(candidate), mean_std(adamw)
    if not (math.isfinite(c) and math.isfinite(a)):
        return (f"A run diverged at its chosen LR on some measurement seed, so no comparison is made "
                f"({name}: {c}, AdamW: {a}).")
    gap, noise = c - a, math.sqrt((c_std ** 2 + a_std ** 2) / 2)
    wins = sum(x < y for x, y in zip(candidate, adamw))
    line = (f"{name}'s final validation loss is {100 * abs(gap) / a:.1f}% {'lower' if gap < 0 else 'higher'} "
            f"than tuned AdamW's ({c:.4f} vs {a:.4f}; lower on {wins} of {len(candidate)} seeds)")
    if noise == 0:
        return line + "; with a single seed there is no spread to compare with."
    ratio = abs(gap) / noise
    if ratio < 2:
        return line + f": {ratio:.1f} times the seed std ({noise:.4f}), within noise."
    return line + f": {ratio:.1f} times the seed std ({noise:.4f}), larger than the seed noise."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", default="results/winner.py",
                        help="exported module, candidate file, reference name or campaign_dir:ID")
    parser.add_argument("--steps", type=int, default=300, help="training steps per run (default: 300)")
    parser.add_argument("--lr-grid", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1])
    parser.add_argument("--selection-seeds", type=int, nargs="+", default=[0, 1], help="seeds the LR is tuned on")
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102], help="fresh measurement seeds")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: 1)")
    args = parser.parse_args()

    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    candidate = load_candidate(args.optimizer)
    optimizers: dict[str, OptimizerFactory] = {candidate.__name__: candidate, BASELINE: torch.optim.AdamW}
    corpus = load_corpus()
    parameters = sum(p.numel() for p in CharTransformer(corpus.vocab_size).parameters())
    print(f"candidate {candidate.__name__} from {args.optimizer}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"corpus: {CORPUS_DIR} ({corpus.files} files), {len(corpus.train)} train characters, {len(corpus.val_windows)} "
          f"validation windows of {CONTEXT}, vocabulary {corpus.vocab_size}; model: {parameters} parameters")

    sorted_grid = sorted(args.lr_grid)
    print(f"tuning on seeds {args.selection_seeds} over {len(sorted_grid)} LRs", file=sys.stderr)
    table = tune(optimizers, corpus, sorted_grid, args.selection_seeds, args.steps)
    chosen = {name: min(row, key=row.__getitem__) for name, row in table.items()}
    print_sweep(table, chosen, args.selection_seeds)
    if not all(math.isfinite(table[name][lr]) for name, lr in chosen.items()):
        raise SystemExit("an optimizer diverged at every LR of the grid; nothing to measure")

    print(f"measuring on seeds {args.seeds}", file=sys.stderr)
    runs = measure(optimizers, chosen, corpus, args.seeds, args.steps)
    print_results(runs, chosen, args.steps)
    walls = ", ".join(f"{name} {sum(r.wall for r in rs):.0f} s" for name, rs in runs.items())
    final = {name: [r.val_loss for r in rs] for name, rs in runs.items()}
    print(f"\n{verdict(candidate.__name__, final[candidate.__name__], final[BASELINE])}")
    print(f"wall time {time.perf_counter() - start:.0f} s in all (measurement runs: {walls})")


if __name__ == "__main__":
    main()
