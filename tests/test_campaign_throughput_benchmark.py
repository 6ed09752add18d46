"""benchmarks/campaign_throughput.py's arm syntax and revision checkouts (no campaign is run)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import campaign_throughput  # noqa: E402


@pytest.mark.parametrize("text,expected", [
    ("today", ("today", None, [])),
    ("halving:evaluation.halving=true", ("halving", None, ["evaluation.halving=true"])),
    ("start@ef52377", ("start", "ef52377", [])),
    ("old@HEAD~3:evaluation.population=off; evaluation.halving=false",
     ("old", "HEAD~3", ["evaluation.population=off", "evaluation.halving=false"])),
])
def test_arms_parse(text: str, expected: tuple) -> None:
    assert campaign_throughput.parse_arm(text) == expected


@pytest.mark.parametrize("text", ["", ":a=1", "name@", "name@:a=1", "name:novalue"])
def test_bad_arms_are_one_line_errors(text: str) -> None:
    with pytest.raises(SystemExit, match="bad arm"):
        campaign_throughput.parse_arm(text)


def test_a_revision_is_checked_out_and_an_unknown_one_refused(tmp_path: Path) -> None:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    tree = campaign_throughput.checkout("HEAD", tmp_path / "rev")
    try:
        assert (tree / "sandbox" / "harness.py").is_file()
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
    with pytest.raises(SystemExit, match="cannot check out 'no-such-revision'"):
        campaign_throughput.checkout("no-such-revision", tmp_path / "bad")


def test_the_report_prints_ratios_to_the_first_arm(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    arms = [("session-start", "ef52377", []), ("now", None, [])]
    runs = {"session-start": [{"wall": 120.0, "cpu": 200.0, "evaluations": 90, "best": (83, 1.1)}] * 2,
            "now": [{"wall": 80.0, "cpu": 140.0, "evaluations": 90, "best": (83, 1.1)}] * 2}
    campaign_throughput.report(argparse.Namespace(preset="quick", seed=0), arms, runs)
    out = capsys.readouterr().out
    assert "session-start@ef52377" in out and "2700" in out and "4050" in out and "1.50x" in out
    assert "every run archived the same best program: yes" in out
