"""Device choice for evaluation: ``auto`` means a GPU when one is visible."""

from __future__ import annotations

from discover.errors import UserError


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; explicit CUDA without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} was requested but no CUDA GPU is available (use --device cpu or auto)")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise UserError(f"device {device!r} was requested but this machine has {torch.cuda.device_count()} GPU(s)")
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")
    return device
