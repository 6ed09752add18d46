"""`discover archive list|show|diff|lineage` and `discover campaigns`, through the real entry point."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import archive
from archive import schema
from discover.cli import main
from tests.test_archive import ADAMW_SIGN, file_digest, populate


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """Run `discover ARGS...` in this process at a given terminal width."""

    def run(*args: str, columns: int = 80) -> Result:
        monkeypatch.setenv("COLUMNS", str(columns))
        monkeypatch.setattr(sys, "argv", ["discover", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A directory with campaigns/<name>/archive.db holding a small populated campaign."""
    with archive.open(tmp_path / "campaigns" / "demo-20260101-000000", create=True) as store:
        ids = populate(store)
    assert ids["child"] == 4 and ids["cross"] == 5 and ids["failed"] == 6
    return tmp_path


def campaign(root: Path) -> Path:
    return root / "campaigns" / "demo-20260101-000000"


def widest_line(text: str) -> int:
    return max(len(line) for line in text.splitlines())


# --- list ---------------------------------------------------------------------------------


def test_list_fits_80_columns_and_shows_more_at_200(cli, root: Path) -> None:
    narrow = cli("archive", "list", "--db", campaign(root), columns=80)
    assert narrow.code == 0, narrow.err
    assert widest_line(narrow.out) <= 80
    lines = narrow.out.splitlines()
    assert lines[0].split() == ["id", "fitness", "status", "proposer", "parents", "description"]
    first = lines[2].split()
    assert first[:5] == ["4", "1.310", "±0.05", "evaluated", "llm_diff"]
    assert "nan: loss became NaN" in narrow.out and "duplicate of #4" in narrow.out

    wide = cli("archive", "list", "--db", campaign(root), columns=200)
    assert wide.code == 0 and widest_line(wide.out) <= 200
    header = wide.out.splitlines()[0].split()
    assert {"stage", "valid.", "test", "tokens", "created"} <= set(header)
    assert "confirmed" in wide.out and "llm_crossover" in wide.out and "Adam with decoupled weight decay." in wide.out


def test_list_sorts_filters_and_prints_json(cli, root: Path) -> None:
    by_fitness = json.loads(cli("archive", "list", "--db", campaign(root), "--json").out)
    assert [p["id"] for p in by_fitness] == [4, 5, 1, 2, 3, 6, 7]
    assert by_fitness[0]["scores"]["rosenbrock"]["score"] == 1.572 and "code" not in by_fitness[0]
    by_date = json.loads(cli("archive", "list", "--db", campaign(root), "--sort", "date", "--json").out)
    assert [p["id"] for p in by_date] == [7, 6, 5, 4, 3, 2, 1]
    failed = json.loads(cli("archive", "list", "--db", campaign(root), "--status", "failed", "--status",
                            "duplicate", "--json").out)
    assert [(p["id"], p["description"]) for p in failed] == [
        (6, "nan: loss became NaN at step 3"), (7, "duplicate of #4")]
    top = cli("archive", "list", "--db", campaign(root), "--top", "2")
    assert "showing 2 of 7 programs" in top.out


def test_list_defaults_to_latest_campaign(cli, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    newer = root / "campaigns" / "newer-20260102-000000"
    with archive.open(newer, create=True) as store:
        store.add_program(ADAMW_SIGN, name="only-one")
    os.utime(campaign(root) / "archive.db", (1, 1))  # make the first campaign clearly older
    monkeypatch.chdir(root)
    assert [p["name"] for p in json.loads(cli("archive", "list", "--json").out)] == ["only-one"]
    (root / "campaigns" / "latest").symlink_to(campaign(root).name)
    assert len(json.loads(cli("archive", "list", "--json").out)) == 7


# --- show, diff, lineage ------------------------------------------------------------------


def test_show_prints_code_scores_and_truncated_prompt(cli, root: Path) -> None:
    shown = cli("archive", "show", "4", "--db", campaign(root))
    assert shown.code == 0 and widest_line(shown.out) <= 80
    assert "program #4" in shown.out and "evaluated (confirmed)" in shown.out and "parents #1" in shown.out
    assert "return decay - hp.lr * sign(m / denom)" in shown.out
    assert "quadratic_illcond" in shown.out and "ok (lr at grid edge)" in shown.out
    assert "vs" in shown.out and "lion" in shown.out
    assert "Sign of the Adam direction" in shown.out  # the critique
    assert "context line 10" in shown.out and "context line 39" not in shown.out and "--full shows all" in shown.out
    full = cli("archive", "show", "4", "--db", campaign(root), "--full")
    assert "context line 39" in full.out
    assert "1.0e-02" in cli("archive", "show", "4", "--db", campaign(root), columns=200).out  # best lr column


def test_show_failed_program_and_json(cli, root: Path) -> None:
    failed = cli("archive", "show", "6", "--db", campaign(root))
    assert "failed at screen: nan — loss became NaN at step 3" in failed.out
    data = json.loads(cli("archive", "show", "4", "--db", campaign(root), "--json").out)
    assert data["code"] == ADAMW_SIGN and data["parent_ids"] == [1]
    assert data["llm_calls"][0]["outcome"] == "accepted" and data["evaluations"] == 1
    assert json.loads(cli("archive", "show", "6", "--db", campaign(root), "--json").out)["failures"][0]["reason"] == "nan"


def test_diff_shows_code_and_score_changes(cli, root: Path) -> None:
    diff = cli("archive", "diff", "1", "4", "--db", campaign(root))
    assert diff.code == 0 and widest_line(diff.out) <= 80
    assert "-    return decay - (hp.lr / bias1) * m / denom" in diff.out
    assert "+    return decay - hp.lr * sign(m / denom)" in diff.out
    assert "rosenbrock" in diff.out and "+0.572" in diff.out and "+0.310" in diff.out
    data = json.loads(cli("archive", "diff", "1", "4", "--db", campaign(root), "--json").out)
    assert data["tasks"]["mlp_digits"] == {"a": 1.0, "b": 1.441, "delta": pytest.approx(0.441)}
    assert "identical code" in cli("archive", "diff", "4", "4", "--db", campaign(root)).out


def test_lineage_tree(cli, root: Path) -> None:
    tree = cli("archive", "lineage", "5", "--db", campaign(root))
    assert tree.code == 0
    lines = tree.out.splitlines()
    assert lines[0].startswith("#5 1.050") and "llm_crossover" in lines[0]
    assert "#4 1.310" in lines[1] and "#1 1.000" in lines[2] and "reference" in lines[2] and "#3 0.850" in lines[3]
    data = json.loads(cli("archive", "lineage", "5", "--db", campaign(root), "--json").out)
    assert [p["id"] for p in data["parents"]] == [4, 3] and data["parents"][0]["parents"][0]["id"] == 1


def test_programs_can_be_named_by_campaign_and_id_or_best(cli, root: Path, tmp_path_factory) -> None:
    # `list DIR` is `list --db DIR`; `show|diff|lineage` take ID, best or DIR:ID.
    assert cli("archive", "list", campaign(root), "--json").out == cli("archive", "list", "--db", campaign(root),
                                                                       "--json").out
    by_ref = json.loads(cli("archive", "show", f"{campaign(root)}:4", "--json").out)
    assert by_ref == json.loads(cli("archive", "show", "4", "--db", campaign(root), "--json").out)
    assert json.loads(cli("archive", "show", "best", "--db", campaign(root), "--json").out)["id"] == 4
    assert json.loads(cli("archive", "lineage", f"{campaign(root)}:best", "--json").out)["id"] == 4
    # diff across two campaigns: the other campaign is a copy with program 4 as its best
    other = tmp_path_factory.mktemp("other") / "campaigns" / "copy-20260102-000000"
    with archive.open(other, create=True) as store:
        populate(store)
    across = cli("archive", "diff", f"{campaign(root)}:1", f"{other}:4", columns=200)
    assert across.code == 0 and f"--- {campaign(root)}:1" in across.out and f"+++ {other}:4" in across.out
    assert "+0.572" in across.out  # the score table still compares the two programs task by task
    same = cli("archive", "diff", f"{campaign(root)}:4", f"{other}:best", columns=200)
    assert "identical code" in same.out and " A " in same.out and " B " in same.out


# --- campaigns ----------------------------------------------------------------------------


def test_campaigns_lists_each_campaign(cli, root: Path) -> None:
    broken = root / "campaigns" / "broken-20260103-000000"
    broken.mkdir()
    (broken / "archive.db").write_bytes(b"garbage" * 100)
    (root / "campaigns" / "latest").symlink_to(campaign(root).name)
    for columns in (80, 200):
        listing = cli("campaigns", root / "campaigns", columns=columns)
        assert listing.code == 0 and widest_line(listing.out) <= columns
        assert "demo-20260101-000000 *" in listing.out and "running" in listing.out and "1.310 #4" in listing.out
        assert "error" in listing.out and "not a readable archive" in listing.out
    rows = {r["name"]: r for r in json.loads(cli("campaigns", root / "campaigns", "--json").out)}
    assert set(rows) == {"demo-20260101-000000", "broken-20260103-000000"}  # `latest` is not listed twice
    demo = rows["demo-20260101-000000"]
    assert (demo["status"], demo["programs"], demo["best_id"], demo["latest"]) == ("running", 7, 4, True)
    assert demo["spend"]["evaluations"] == 40
    assert rows["broken-20260103-000000"]["status"] == "error"
    assert "no campaigns under" in cli("campaigns", root).out  # a directory without campaigns in it


# --- bad input: one line, exit code 2, nothing modified -----------------------------------


def assert_user_error(result: Result, *fragments: str) -> None:
    assert result.code == 2, (result.out, result.err)
    assert "Traceback" not in result.err + result.out
    assert len(result.err.strip().splitlines()) == 1, result.err
    for fragment in fragments:
        assert fragment in result.err, result.err


def test_missing_archive(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_user_error(cli("archive", "list", "--db", tmp_path / "nope"), "no archive at")
    assert not (tmp_path / "nope").exists()
    monkeypatch.chdir(tmp_path)
    assert_user_error(cli("archive", "list"), "no campaign found under campaigns/")
    assert_user_error(cli("campaigns", tmp_path / "nope"), "no directory")
    assert not (tmp_path / "campaigns").exists()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign", "newer_schema", "empty"])
def test_unusable_archive_is_reported_and_left_untouched(cli, root: Path, damage: str) -> None:
    db = campaign(root) / "archive.db"
    if damage == "garbage":
        db.write_bytes(os.urandom(8192))
    elif damage == "truncated":
        db.write_bytes(db.read_bytes()[:100])
    elif damage == "foreign":
        db.unlink()
        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE notes (text)")
        conn.commit()
        conn.close()
    elif damage == "newer_schema":
        conn = sqlite3.connect(db)
        conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 3}")
        conn.close()
    elif damage == "empty":
        db.write_bytes(b"")
    before = file_digest(db)
    fragments = {"newer_schema": ("newer than this optimizer-discovery", "upgrade"),
                 "foreign": ("not an optimizer-discovery archive",), "empty": ("empty database",)}
    for args in (("archive", "list"), ("archive", "show", "1"), ("archive", "diff", "1", "2"),
                 ("archive", "lineage", "1")):
        assert_user_error(cli(*args, "--db", campaign(root)), str(db), *fragments.get(damage, ()))
    assert file_digest(db) == before


def test_unknown_ids_and_bad_options(cli, root: Path) -> None:
    db = campaign(root) / "archive.db"
    before = file_digest(db)
    assert_user_error(cli("archive", "show", "99", "--db", campaign(root)), "no program with id 99", "ids 1..7")
    assert_user_error(cli("archive", "diff", "1", "99", "--db", campaign(root)), "no program with id 99")
    assert_user_error(cli("archive", "lineage", "42", "--db", campaign(root)), "no program with id 42")
    assert_user_error(cli("archive", "list", "--db", campaign(root), "--sort", "speed"), "--sort must be one of")
    assert_user_error(cli("archive", "list", "--db", campaign(root), "--status", "great"), "--status must be one of")
    assert_user_error(cli("archive", "list", "--db", campaign(root), "--top", "-1"), "--top")
    assert_user_error(cli("campaigns", db), "is a file")
    assert_user_error(cli("archive", "show", "first", "--db", campaign(root)),
                      "'first' is not a program reference", "DIR:ID")
    assert_user_error(cli("archive", "diff", f"{campaign(root)}:1", f"{root / 'nope'}:2"), "no archive at")
    assert_user_error(cli("archive", "list", campaign(root), "--db", campaign(root)), "name the campaign once")
    assert file_digest(db) == before
