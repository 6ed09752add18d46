"""A Python warning during a campaign (an unpriced model) is one line in the view, not a raw
``UserWarning`` with a file and line number above it (issue 16 item 6)."""

from __future__ import annotations

import warnings

from discover.config import to_toml
from sandbox.references import reference_source
from tests.fake_openai import Reply, fake_llm_server  # noqa: F401 (fixture)
from tests.test_campaign import private_run_cache  # noqa: F401 (autouse fixture)
from tests.test_reliability import llm_config, run_main


def test_an_unpriced_model_is_one_note_line_in_the_view(tmp_path, fake_llm_server, monkeypatch, capsys):
    fake_llm_server.script([Reply("ready", 3, 1)])
    # copies of a seed program: archived as duplicates, nothing to evaluate (seconds)
    fake_llm_server.responder = lambda request: Reply(f"```python\n{reference_source('adamw')}```", 400, 100)
    config = llm_config(tmp_path, fake_llm_server, search={"search": {"proposers": {"full": 1}}},
                        budget={"budget": {"max_tokens": 2000, "max_evaluations": 20}},
                        model={"llm": {"proposer_model": "my-local-model"}})  # not in the price table
    (tmp_path / "campaign.toml").write_text(to_toml(config))
    with warnings.catch_warnings(record=True) as raw:
        warnings.simplefilter("always")
        code, out, err = run_main(["run", "--config", str(tmp_path / "campaign.toml")], monkeypatch, capsys)
    assert code == 0, err
    assert not [w for w in raw if "price" in str(w.message)]  # none escaped as a raw warning
    text = out + err
    notes = [line for line in text.splitlines() if "no price for model" in line]
    assert len(notes) == 1, text  # said once, as a line of the campaign's log
    assert "UserWarning" not in text and "warnings.warn" not in text and ".py:" not in notes[0]
