"""Step time of exported optimizers against torch.optim.AdamW(foreach=True).

Two models, each parameter given a fixed random gradient:

* ``large``: a stack of Linear layers, about 10M parameters in 20 tensors (the headline number);
* ``small``: many small Linear layers, about 2M parameters in 400 tensors, where per-tensor
  overhead dominates and the exported optimizer's flattened path matters.

For each, ``optimizer.step()`` is timed for torch's AdamW, the exported AdamW reference (with its
elementwise fast path and, on the small model, with ``foreach=False``: the per-parameter loop),
the exported Lion reference and, on the small model, the campaign's winner
(``results/winner_program.py``: Newton-Schulz per matrix, so its cost is the point; looped, and
batched with ``foreach=True``, which is its default off the CPU), interleaved
round by round so machine noise hits all alike. Prints the median and the best step time of each
and their ratios to torch's AdamW: on the CPU always, and on CUDA as well when a GPU is present.
On a shared machine the best-of ratio is the steadier one.

    python benchmarks/export_step_time.py [--device cpu|cuda|all] [--rounds 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archive.export import load_optimizer  # noqa: E402

MODELS = {
    "large": dict(layers=10, width=1024),  # 10.5M parameters, 20 tensors
    "small": dict(layers=200, width=100),  # 2.0M parameters, 400 tensors
}


def make_params(layers: int, width: int, device: str, seed: int = 0) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)]).to(device)
    gen = torch.Generator().manual_seed(seed + 1)
    params = list(model.parameters())
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen).to(device)
    return params


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


CLOCK = time.perf_counter


def time_step(opt: torch.optim.Optimizer, device: str) -> float:
    sync(device)
    start = CLOCK()
    opt.step()
    sync(device)
    return CLOCK() - start


WINNER = str(Path(__file__).resolve().parents[1] / "results" / "winner_program.py")


def contenders(model: str) -> dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]]:
    adamw, lion, winner = load_optimizer("adamw"), load_optimizer("lion"), load_optimizer(WINNER)

    found = {
        "torch.optim.AdamW(foreach=True)": lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01, foreach=True),
        "exported AdamW": lambda ps: adamw(ps, lr=1e-3, weight_decay=0.01),
        "exported AdamW, per-param loop": lambda ps: adamw(ps, lr=1e-3, weight_decay=0.01, foreach=False),
        "exported Lion": lambda ps: lion(ps, lr=1e-4, weight_decay=0.01),
        "exported winner (Newton-Schulz)": lambda ps: winner(ps),
        "exported winner, foreach=True": lambda ps: winner(ps, foreach=True),  # batched matrices
    }
    if model == "large":  # the per-parameter loop is the fast path's slices there; the winner
        del found["exported AdamW, per-param loop"]  # takes minutes (1024x1024 Newton-Schulz)
        del found["exported winner (Newton-Schulz)"], found["exported winner, foreach=True"]
    return found


def run(model: str, device: str, rounds: int, warmup: int) -> None:
    optimizers = {name: make(make_params(device=device, **MODELS[model])) for name, make in contenders(model).items()}
    params = next(iter(optimizers.values())).param_groups[0]["params"]
    times: dict[str, list[float]] = {name: [] for name in optimizers}
    for r in range(warmup + rounds):
        for name, opt in optimizers.items():
            t = time_step(opt, device)
            if r >= warmup:
                times[name].append(t)
    base = times["torch.optim.AdamW(foreach=True)"]
    print(f"\n{model} on {device}: {sum(p.numel() for p in params) / 1e6:.1f}M parameters in {len(params)} "
          f"tensors, {rounds} steps each")
    print(f"  {'optimizer':34s} {'median ms':>10s} {'ratio':>7s} {'best ms':>9s} {'ratio':>7s}")
    for name, ts in times.items():
        med, best = statistics.median(ts), min(ts)
        print(f"  {name:34s} {med * 1e3:10.2f} {med / statistics.median(base):6.2f}x "
              f"{best * 1e3:9.2f} {best / min(base):6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all",
                        help="all: the CPU, and CUDA when a GPU is present")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--model", choices=[*MODELS, "both"], default="both")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: this process's CPU time (steadier on a shared machine; use it with "
                             "--threads 1 and the CPU device only)")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        devices.remove("cuda")
        print("no CUDA device here: CPU rows only (nothing was measured on a GPU)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.clock} clock")
    for device in devices:
        for model in MODELS if args.model == "both" else [args.model]:
            run(model, device, args.rounds, args.warmup)


if __name__ == "__main__":
    main()
