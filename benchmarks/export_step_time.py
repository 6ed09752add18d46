"""Step time of exported optimizers against torch.optim.AdamW(foreach=True).

Two models, each parameter given a fixed random gradient:

* ``large``: a stack of Linear layers, about 10M parameters in 20 tensors (the headline number);
* ``small``: many small Linear layers, about 2M parameters in 400 tensors, where per-tensor
  overhead dominates and the exported optimizer's flattened path matters.

For each, ``optimizer.step()`` is timed for torch's AdamW, the exported AdamW reference (with and,
on the small model, without its flattened path) and the exported Lion reference, interleaved
round by round so machine noise hits all alike. Prints the median and the best step time of each
and their ratios to torch's AdamW.

    python benchmarks/export_step_time.py [--device cuda] [--rounds 30] [--threads 1]
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


def time_step(opt: torch.optim.Optimizer, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    opt.step()
    sync(device)
    return time.perf_counter() - start


def contenders(model: str) -> dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]]:
    adamw, lion = load_optimizer("adamw"), load_optimizer("lion")

    def per_param_adamw(ps):
        opt = adamw(ps, lr=1e-3, weight_decay=0.01)
        opt.flatten = False
        return opt

    found = {
        "torch.optim.AdamW(foreach=True)": lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01, foreach=True),
        "exported AdamW": lambda ps: adamw(ps, lr=1e-3, weight_decay=0.01),
        "exported AdamW, per-param loop": per_param_adamw,
        "exported Lion": lambda ps: lion(ps, lr=1e-4, weight_decay=0.01),
    }
    if model == "large":  # every tensor there is past the flat path's CPU size limit anyway
        del found["exported AdamW, per-param loop"]
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
    print(f"\n{model}: {sum(p.numel() for p in params) / 1e6:.1f}M parameters in {len(params)} tensors, "
          f"{rounds} steps each")
    print(f"  {'optimizer':32s} {'median ms':>10s} {'ratio':>7s} {'best ms':>9s} {'ratio':>7s}")
    for name, ts in times.items():
        med, best = statistics.median(ts), min(ts)
        print(f"  {name:32s} {med * 1e3:10.2f} {med / statistics.median(base):6.2f}x "
              f"{best * 1e3:9.2f} {best / min(base):6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--model", choices=[*MODELS, "both"], default="both")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for model in MODELS if args.model == "both" else [args.model]:
        run(model, args.device, args.rounds, args.warmup)


if __name__ == "__main__":
    main()
