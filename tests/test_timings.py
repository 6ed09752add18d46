"""Where a campaign's time goes (issue 14 item 1): the v4 migration (jobs, stages, campaign slots
and run time), per-job and per-evaluation seconds recorded by a real small campaign for every
stage, and `discover archive time` / `archive show` printing them."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest

import archive
from archive import schema
from archive.timings import STAGE_ORDER, time_breakdown, time_line
from discover.cli import main
from sandbox.contract import program_hash
from sandbox.references import reference_source
from tests.test_campaign import run_campaign, small_config

V3_CAMPAIGN = ("INSERT INTO campaigns (name, created_at, updated_at, seed, status, pid, host, heartbeat_at) "
               "VALUES ('old', '2026-01-01T00:00:00+00:00', '2026-01-01T00:10:00+00:00', 7, 'finished', 12, 'h', "
               "'2026-01-01T00:10:00+00:00')")


def make_v3_archive(path: Path) -> None:
    """An archive as schema version 3 wrote it (heartbeat columns, no timings), with a campaign
    and a program in it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for migration in schema.MIGRATIONS[:3]:
        migration(conn)
    conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 3")
    conn.execute(V3_CAMPAIGN)
    conn.execute("INSERT INTO programs (campaign_id, code, hash, created_at) VALUES (1, ?, ?, '2026-01-01T00:00:00+00:00')",
                 (reference_source("sgd"), program_hash(reference_source("sgd"))))
    conn.execute("COMMIT")
    conn.close()


def test_a_v3_archive_opens_read_only_and_migrates_on_write_open(tmp_path: Path) -> None:
    db = tmp_path / "archive.db"
    make_v3_archive(db)
    with archive.open(tmp_path, readonly=True) as store:  # migrated in memory: the file stays v3
        old = store.campaign()
        assert (old.name, old.slots, old.run_seconds, old.seconds_run) == ("old", None, 0.0, 0.0)
        assert store.jobs() == [] and store.stages() == []
        assert time_breakdown(store).idle_seconds is None  # no slots recorded: idle is unknown
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 3
    with archive.open(tmp_path) as store:
        assert store.program(1).code == reference_source("sgd")
        store.add_jobs([dict(campaign_id=1, program_id=1, tier="search", stage="select", task="t", runs=3,
                             seconds=1.5, worker="9", device="cpu")])
        store.add_stage(campaign_id=1, program_id=1, tier="search", stage="full", seconds=2.0, runs=3)
        (job,) = store.jobs(program_id=1)
        assert (job.seconds, job.runs, job.worker, job.ok, job.baseline, job.job) == (1.5, 3, "9", True, False, "evaluate")
        assert store.stages(campaign_id=1)[0].seconds == 2.0
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION


def test_run_seconds_add_up_over_sessions_and_stop_at_the_last_heartbeat(tmp_path: Path) -> None:
    with archive.open(tmp_path, create=True) as store:
        cid = store.create_campaign("c", {}, 0)
        store.set_campaign_runner(cid, slots=3)
        # Pin the session to 10 s (heartbeat - start), then start a second session.
        with store._write() as conn:
            conn.execute("UPDATE campaigns SET run_started_at = '2026-01-01T00:00:00+00:00', "
                         "heartbeat_at = '2026-01-01T00:00:10+00:00' WHERE id = ?", (cid,))
        store.set_campaign_runner(cid)
        second = store.campaign(cid)
        assert second.run_seconds == 10.0 and second.slots == 3
        with store._write() as conn:
            conn.execute("UPDATE campaigns SET run_started_at = '2026-01-01T01:00:00+00:00', "
                         "heartbeat_at = '2026-01-01T01:00:05+00:00' WHERE id = ?", (cid,))
        assert store.campaign(cid).seconds_run == 15.0
        store.add_jobs([dict(campaign_id=cid, tier="search", stage="measure", task="a", seconds=20.0, worker="1"),
                        dict(campaign_id=cid, tier="validation", stage="select", task="b", seconds=5.0, worker="2",
                             baseline=True)])
        breakdown = time_breakdown(store, cid)
    assert breakdown.busy_seconds == 25.0 and breakdown.capacity_seconds == 45.0
    assert breakdown.idle_seconds == 20.0 and breakdown.baseline_seconds == 5.0
    assert breakdown.by_stage == {"measure": 20.0, "validation": 5.0}
    assert breakdown.by_worker == {"1": 20.0, "2": 5.0}
    assert "idle 20.0 s (44%)" in time_line(breakdown)


@pytest.fixture(scope="module")
def timed_campaign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real offline campaign with a screen, confirmation, a long-horizon check and the
    test tier, so every stage runs at least once."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("timed")
    mp.setenv("DISCOVER_CACHE_DIR", str(root / "run-cache"))
    try:
        config = small_config(root, extra={"evaluation": {"screen": True, "screen_threshold": 0.0, "heldout": True,
                                                          "long_horizon_scale": 2.0,
                                                          "test_tasks": ["noisy_quadratic@2"]}})
        campaign, _ = run_campaign(config)
    finally:
        mp.undo()
    return campaign.directory


def test_a_campaign_records_seconds_device_and_worker_for_every_job_and_stage(timed_campaign: Path) -> None:
    with archive.open(timed_campaign, readonly=True) as store:
        jobs = store.jobs()
        stages = store.stages()
        campaign = store.campaign()
        programs = {p.id: p for p in store.programs()}
        runs = {pid: len(store.evaluations(pid, "search")) for pid, p in programs.items() if p.proposer != "reference"}
        breakdown = time_breakdown(store, campaign.id)
    assert campaign.slots == 2 and campaign.seconds_run > 0
    labels = {(j.tier, j.stage) for j in jobs}
    assert {("search", s) for s in ("probe", "screen", "select", "measure")} <= labels
    assert {"validation", "long_horizon", "test"} <= {tier for tier, _ in labels}
    assert {s.tier for s in stages} == {"search", "validation", "long_horizon", "test"}
    executed = [j for j in jobs if j.runs]
    assert executed and all(j.seconds > 0 and j.worker.isdigit() and j.device == "cpu" for j in executed)
    assert all(j.seconds == 0 and j.worker == "" for j in jobs if j.job == "evaluate" and not j.runs)
    assert len({j.worker for j in executed}) <= 2 * 3  # two slots (a worker may be replaced)
    # Every search-tier run archived for a candidate is one of its own (non-baseline) jobs' runs
    # (a seed reference's own runs and its tuned-baseline runs share one hash: left out).
    for pid, count in runs.items():
        own = [j for j in jobs if j.program_id == pid and j.tier == "search" and not j.baseline and j.job == "evaluate"]
        assert sum(j.runs + j.cached_runs for j in own) == count, pid
    # The first evaluations computed the tuned baselines; later ones found them cached.
    assert any(j.baseline and j.runs for j in jobs)
    assert breakdown.busy_seconds == pytest.approx(sum(j.seconds for j in jobs))
    assert breakdown.busy_seconds == pytest.approx(sum(breakdown.by_stage.values()))
    assert breakdown.busy_seconds == pytest.approx(sum(breakdown.by_worker.values()))
    assert list(breakdown.by_stage) == [s for s in STAGE_ORDER if s in breakdown.by_stage]
    assert breakdown.idle_seconds == pytest.approx(max(0.0, 2 * campaign.seconds_run - breakdown.busy_seconds))
    assert breakdown.runs == sum(j.runs for j in jobs)


def _discover(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setattr(sys, "argv", ["discover", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_archive_time_prints_stages_tasks_workers_and_idle_time(timed_campaign, monkeypatch, capsys) -> None:
    code, out, err = _discover(monkeypatch, capsys, "archive", "time", timed_campaign)
    assert code == 0, err
    for word in ("probe", "screen", "select", "measure", "validation", "long_horizon", "test", "(baselines)",
                 "noisy_quadratic", "noisy_quadratic@2", "idle", "2 slot(s)"):
        assert word in out, word
    code, out, _ = _discover(monkeypatch, capsys, "archive", "time", timed_campaign, "--json")
    data = json.loads(out)
    assert code == 0 and data["slots"] == 2
    assert data["idle_seconds"] == pytest.approx(max(0.0, 2 * data["wall_seconds"] - data["busy_seconds"]))
    assert sum(data["by_task"].values()) + data["by_stage"]["probe"] == pytest.approx(data["busy_seconds"])
    code, out, err = _discover(monkeypatch, capsys, "archive", "time", timed_campaign / "nothing-here")
    assert code == 2 and "no archive" in err and "Traceback" not in err


def test_archive_show_prints_a_programs_seconds(timed_campaign, monkeypatch, capsys) -> None:
    code, out, err = _discover(monkeypatch, capsys, "archive", "show", "best", "--db", timed_campaign)
    assert code == 0, err
    assert "worker s: probe" in out and "wall: search" in out
    code, out, _ = _discover(monkeypatch, capsys, "archive", "show", "best", "--db", timed_campaign, "--json")
    seconds = json.loads(out)["seconds"]
    assert "search" in seconds["wall"] and seconds["runs"] + seconds["cached_runs"] > 0
