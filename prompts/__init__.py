"""Prompt templates, kept as plain text files next to this module."""

from __future__ import annotations

from importlib import resources


def template(name: str) -> str:
    """The text of ``prompts/<name>.txt``."""
    return resources.files(__name__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
