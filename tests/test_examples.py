"""The shipped example configs load as they are (a typo in one would greet a new user with an error)."""

from __future__ import annotations

from pathlib import Path

import pytest

from discover.config import load_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_example_configs_load(path):
    config = load_config(path)
    if config.llm.base_url:
        # a local model is free: its price is set, so no dollar figure is guessed
        assert config.llm.prices[config.llm.proposer_model] == (0.0, 0.0)
        assert set(config.search.proposers) <= {"full", "diff", "textgrad", "crossover", "mutation"}
