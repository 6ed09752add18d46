"""`discover --version` and the shape of `--help` (issue 16 item 7)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

import discover
from discover.cli import COMMAND_ORDER, app

runner = CliRunner()


def test_version_prints_the_package_version_and_exits_0():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"discover (optimizer-discovery) {discover.__version__}"


def test_help_lists_commands_in_the_order_a_user_meets_them():
    result = runner.invoke(app, ["--help"], terminal_width=100)
    assert result.exit_code == 0
    listed = [m.group(1) for m in re.finditer(r"^│ ([a-z-]+) {2,}", result.output, re.M)
              if m.group(1) in COMMAND_ORDER]
    assert listed == list(COMMAND_ORDER)


@pytest.mark.parametrize("command", [[], ["run"], ["eval"], ["archive", "list"], ["report"], ["export"]])
def test_flags_are_shown_without_a_type(command):
    result = runner.invoke(app, [*command, "--help"], terminal_width=120)
    assert result.exit_code == 0
    assert "--help" in result.output and "<bool>" not in result.output
    assert re.search(r"<(int|str|path|float)", result.output) or not command  # valued options keep their type
