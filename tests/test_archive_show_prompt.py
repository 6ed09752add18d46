"""`discover archive show` prints a stored prompt (the request's JSON messages) as chat turns."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import archive
from discover.cli import main
from discover.cli_archive import _chat_turns
from sandbox.references import reference_source

SYSTEM = "You write optimizer update rules.\nReturn one python block."
USER = "Improve this rule:\n```python\nreturn -hp.lr * grad\n```\n" + "\n".join(f"context {i}" for i in range(30))


def _show(monkeypatch, capsys, *args: str) -> str:
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setattr(sys, "argv", ["discover", "archive", "show", *args])
    try:
        main()
    except SystemExit as exc:
        assert not exc.code
    return capsys.readouterr().out


def test_show_renders_the_prompt_as_chat_turns(tmp_path: Path, monkeypatch, capsys):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
    with archive.open(tmp_path / "run", create=True) as store:
        pid = store.add_program(reference_source("adam"), proposer="full", prompt=json.dumps(messages),
                                response="Here is a rule.")
    out = _show(monkeypatch, capsys, str(pid), "--db", str(tmp_path / "run"))
    assert "prompt · system" in out and "prompt · user" in out
    assert out.index("prompt · system") < out.index("You write optimizer update rules.") < out.index("prompt · user")
    assert "Return one python block." in out and "return -hp.lr * grad" in out  # real line breaks
    assert "\\n" not in out and '"role"' not in out  # not the JSON text
    assert "context 5" in out and "context 29" not in out and "--full shows all" in out  # each turn previewed
    assert "context 29" in _show(monkeypatch, capsys, str(pid), "--db", str(tmp_path / "run"), "--full")


def test_chat_turns_accepts_messages_only():
    assert _chat_turns('[{"role": "user", "content": [{"type": "text", "text": "hi"}]}]') == [("user", "hi")]
    assert _chat_turns('[{"role": "assistant", "content": null}]') == [("assistant", "")]
    for text in ("Improve AdamW.\ncontext", "[]", '{"role": "user"}', '[{"content": "x"}]', "[1, 2]"):
        assert _chat_turns(text) is None  # plain prompts print as before
