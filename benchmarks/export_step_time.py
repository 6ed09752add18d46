"""Step time of exported optimizers against torch.optim.AdamW(foreach=True).

Builds a stack of Linear layers (about 10M parameters by default), gives every parameter a fixed
random gradient, and times ``optimizer.step()`` for torch's AdamW, the exported AdamW reference
and the exported Lion reference, interleaved round by round so that machine noise hits all three
alike. Prints the median step time of each and its ratio to torch's AdamW.

    python benchmarks/export_step_time.py [--device cuda] [--layers 10] [--width 1024]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archive.export import load_optimizer  # noqa: E402


def make_model(layers: int, width: int, device: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(layers)]).to(device)
    gen = torch.Generator().manual_seed(seed + 1)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen).to(device)
    return model


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_step(opt: torch.optim.Optimizer, device: str) -> float:
    sync(device)
    start = time.perf_counter()
    opt.step()
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    exported_adamw, exported_lion = load_optimizer("adamw"), load_optimizer("lion")
    contenders = {
        "torch.optim.AdamW(foreach=True)": lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01, foreach=True),
        "exported AdamW": lambda ps: exported_adamw(ps, lr=1e-3, weight_decay=0.01),
        "exported Lion": lambda ps: exported_lion(ps, lr=1e-4, weight_decay=0.01),
    }
    optimizers = {}
    for name, make in contenders.items():
        model = make_model(args.layers, args.width, args.device)
        optimizers[name] = make(list(model.parameters()))
    n_params = sum(p.numel() for p in next(iter(optimizers.values())).param_groups[0]["params"])
    n_tensors = len(next(iter(optimizers.values())).param_groups[0]["params"])

    times: dict[str, list[float]] = {name: [] for name in optimizers}
    for r in range(args.warmup + args.rounds):
        for name, opt in optimizers.items():
            t = time_step(opt, args.device)
            if r >= args.warmup:
                times[name].append(t)

    base = statistics.median(times["torch.optim.AdamW(foreach=True)"])
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{n_params / 1e6:.1f}M parameters in {n_tensors} tensors, median of {args.rounds} steps")
    print(f"{'optimizer':34s} {'step ms':>9s} {'vs torch AdamW':>15s}")
    for name, ts in times.items():
        median = statistics.median(ts)
        print(f"{name:34s} {median * 1e3:9.2f} {median / base:14.2f}x")


if __name__ == "__main__":
    main()
