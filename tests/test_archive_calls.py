"""`discover archive calls`: the LLM calls that made no program (issue 19 leftover), through the
real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import archive
from tests.test_archive_cli import campaign, cli, root  # noqa: F401 (fixtures)


def add_orphans(root: Path) -> None:
    with archive.open(campaign(root)) as store:
        store.add_llm_call(role="proposer", model="smollm2", prompt=[{"role": "user", "content": "x"}],
                           response="[timeout after 120.0 s; tokens estimated]\ndef upd", program_id=None,
                           tokens_in=1016, tokens_out=412, cost_usd=0.0, cached=False, outcome="timeout")
        store.add_llm_call(role="critic", model="smollm2", prompt=[], response="not sent: time budget exhausted",
                           program_id=None, tokens_in=0, tokens_out=0, cost_usd=0.0, cached=False, outcome="cancelled")


def test_calls_without_a_program_are_listed(cli, root: Path) -> None:
    empty = cli("archive", "calls", "--db", campaign(root))
    assert empty.code == 0 and "no LLM calls without a program" in empty.out
    add_orphans(root)
    shown = cli("archive", "calls", "--db", campaign(root), columns=120)
    assert shown.code == 0, shown.err
    rows = [line for line in shown.out.splitlines() if "timeout" in line or "cancelled" in line]
    assert len(rows) == 2 and "1,016+412" in rows[0] and "[timeout after 120.0 s" in rows[0]
    assert "critic" in rows[1] and "not sent: time budget" in rows[1]
    assert max(len(line) for line in shown.out.splitlines()) <= 120
    data = json.loads(cli("archive", "calls", "--db", campaign(root), "--json").out)
    assert [(c["outcome"], c["program_id"]) for c in data] == [("timeout", None), ("cancelled", None)]
    assert "prompt" not in data[0] and data[0]["tokens_out"] == 412
    every = json.loads(cli("archive", "calls", "--db", campaign(root), "--all", "--json").out)
    assert len(every) > 2 and any(c["program_id"] is not None for c in every)


def test_calls_of_a_missing_archive_is_one_line_and_exit_2(cli, tmp_path: Path) -> None:
    result = cli("archive", "calls", "--db", tmp_path / "nowhere")
    assert result.code == 2 and len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
