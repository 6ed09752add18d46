"""The archive: store API, schema migrations, de-duplication, concurrent readers, resolution."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import archive
from archive import schema
from archive.dedup import ATOL, RTOL, find_duplicate, fingerprints_match, first_match
from archive.resolve import default_campaign_dir, parse_program_ref, resolve_program
from archive.store import ArchiveError, open_archive
from sandbox.contract import program_hash
from sandbox.references import reference_source

REPO = Path(__file__).resolve().parents[1]
TASKS = ("quadratic_illcond", "mlp_digits", "rosenbrock")


def task_scores(base: float, tweak: float = 0.0) -> dict:
    """Plausible per-task results shaped like the evaluator's TaskResult dicts."""
    return {
        task: {"score": round(base * (1 + tweak * i), 3), "status": "ok", "best_lr": 1e-3 * 10 ** (i / 2),
               "lr_at_edge": i == 2, "test_metric": 0.9 - 0.05 * i,
               "vs_baselines": {"adamw": round(base * (1 + tweak * i), 3), "adam": round(base * 1.1, 3),
                                "lion": round(base * 0.8, 3)}}
        for i, task in enumerate(TASKS)
    }


ADAMW_SIGN = reference_source("adamw").replace(
    "return decay - (hp.lr / bias1) * m / denom", "return decay - hp.lr * sign(m / denom)")


def populate(store: archive.Archive) -> dict[str, int]:
    """A small campaign: references, an LLM child, a crossover, a failure and a duplicate."""
    cid = store.create_campaign("demo", {"proposer": "offline", "budget": {"evaluations": 100}}, seed=7)
    ids: dict[str, int] = {}
    for name, fitness in (("adamw", 1.0), ("adam", 0.93), ("lion", 0.85)):
        ids[name] = store.add_program(reference_source(name), campaign_id=cid, proposer="reference", name=name,
                                      status="evaluated", fitness=fitness, fitness_spread=0.02,
                                      scores=task_scores(fitness), stage="full", fingerprint=[fitness, 0.5, -0.25])
    ids["child"] = store.add_program(
        ADAMW_SIGN, campaign_id=cid, parent_ids=[ids["adamw"]], proposer="llm_diff",
        prompt="Improve AdamW.\n" + "\n".join(f"context line {i}" for i in range(40)),
        response="Here is a sign-based variant.", critique="Sign of the Adam direction: fewer outliers.",
        tokens_in=900, tokens_out=150, cost_usd=0.0021)
    store.update_program(ids["child"], status="evaluated", fitness=1.31, fitness_spread=0.05,
                         heldout_fitness=1.12, scores=task_scores(1.31, 0.1), stage="confirmed")
    store.add_evaluation(ids["child"], suite="search", task=TASKS[0], seed=100, role="measure", lr=1e-3,
                         metrics={"final_loss": 0.012, "score": 1.4, "status": "ok"}, curve=[1.0, 0.3, 0.012],
                         task_version=2)
    store.add_llm_call(role="proposer", model="fake-model", prompt=[{"role": "user", "content": "Improve AdamW."}],
                       response="Here is a sign-based variant.", program_id=ids["child"], tokens_in=900,
                       tokens_out=150, cost_usd=0.0021, outcome="accepted")
    ids["cross"] = store.add_program(
        reference_source("lion").replace('"lr": 1e-4', '"lr": 3e-4'), campaign_id=cid,
        parent_ids=[ids["child"], ids["lion"]], proposer="llm_crossover", status="evaluated",
        fitness=1.05, scores=task_scores(1.05), stage="full")
    ids["failed"] = store.add_program(ADAMW_SIGN.replace("sign(m / denom)", "log(m) / denom"), campaign_id=cid,
                                      parent_ids=[ids["child"]], proposer="offline_mutation", status="failed")
    store.add_failure(ids["failed"], stage="screen", reason="nan", message="loss became NaN at step 3")
    ids["dup"] = store.add_program(ADAMW_SIGN + "\n# same again\n", campaign_id=cid, parent_ids=[ids["adamw"]],
                                   proposer="llm_full", status="duplicate", duplicate_of=ids["child"])
    store.update_spend(cid, {"tokens_in": 900, "tokens_out": 150, "usd": 0.0021, "evaluations": 40})
    store.set_best_program(cid, ids["child"])
    return ids


@pytest.fixture
def campaign_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "campaigns" / "demo-20260101-000000"
    with archive.open(directory, create=True) as store:
        populate(store)
    return directory


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- store API ----------------------------------------------------------------------------


def test_round_trip_of_every_table(tmp_path: Path) -> None:
    with archive.open(tmp_path / "c", create=True) as store:
        ids = populate(store)
        campaign = store.campaign()
        assert (campaign.name, campaign.seed, campaign.status) == ("demo", 7, "running")
        assert campaign.config["budget"] == {"evaluations": 100}
        assert campaign.spend["evaluations"] == 40 and campaign.best_program_id == ids["child"]
        store.set_campaign_status(campaign.id, "finished")
        assert store.campaign(campaign.id).status == "finished"

        child = store.program(ids["child"])
        assert child.code == ADAMW_SIGN and child.hash == program_hash(ADAMW_SIGN)
        assert child.parent_ids == [ids["adamw"]] and child.proposer == "llm_diff"
        assert (child.status, child.stage, child.fitness, child.heldout_fitness) == ("evaluated", "confirmed", 1.31, 1.12)
        assert child.scores[TASKS[1]]["vs_baselines"]["lion"] == pytest.approx(1.048)
        assert (child.tokens_in, child.tokens_out, child.cost_usd) == (900, 150, 0.0021)

        [run] = store.evaluations(ids["child"])
        assert (run.suite, run.task, run.task_version, run.seed, run.lr, run.role) == (
            "search", TASKS[0], "2", 100, 1e-3, "measure")
        assert run.metrics["final_loss"] == 0.012 and run.curve == [1.0, 0.3, 0.012]
        assert store.evaluations(ids["child"], suite="heldout") == []
        assert store.cached_evaluation(child.hash, TASKS[0], 2, 100, 1e-3) == run
        assert store.cached_evaluation(child.hash, TASKS[0], 2, 101, 1e-3) is None

        [failure] = store.failures(ids["failed"])
        assert (failure.stage, failure.reason, failure.message) == ("screen", "nan", "loss became NaN at step 3")
        assert store.failure_counts() == {"nan": 1}
        [call] = store.llm_calls(ids["child"])
        assert call.prompt == [{"role": "user", "content": "Improve AdamW."}] and call.outcome == "accepted"
        assert store.llm_calls() == [call]


def test_queries_sort_filter_and_lineage(campaign_dir: Path) -> None:
    with archive.open(campaign_dir) as store:
        by_fitness = [p.fitness for p in store.programs()]
        scored = [f for f in by_fitness if f is not None]
        assert scored == sorted(scored, reverse=True) and by_fitness[-1] is None  # unscored last
        assert [p.id for p in store.programs(sort="date")] == sorted((p.id for p in store.programs()), reverse=True)
        assert [p.name for p in store.programs(top=2)] == [None, None]  # child 1.31, crossover 1.05
        assert {p.status for p in store.programs(status=["failed", "duplicate"])} == {"failed", "duplicate"}
        assert [p.fitness for p in store.best(2)] == [1.31, 1.05]
        assert store.program_count() == 7 and store.program_count("evaluated") == 5

        child = store.best(1)[0]
        assert sorted(p.proposer for p in store.children(child.id)) == ["llm_crossover", "offline_mutation"]
        tree = store.lineage(store.programs(status="evaluated", sort="date")[0].id)  # the crossover
        assert [p.program.proposer for p in tree.parents] == ["llm_diff", "reference"]
        assert tree.parents[0].parents[0].program.name == "adamw"


def test_failure_counts_count_programs_not_runs(tmp_path: Path) -> None:
    with archive.open(tmp_path / "c", create=True) as store:
        failed = store.add_program("# failed\n", status="failed")
        scored = store.add_program("# scored\n", status="evaluated", fitness=0.9, stage="full")
        store.add_failure(failed, stage="screen", reason="nan", message="noisy_quadratic: NaN")
        for task in ("mlp_digits", "rosenbrock", "deep_linear"):  # a scored program diverged on three tasks
            store.add_failure(scored, stage="full", reason="diverged", message=f"{task}: diverged")
        store.add_failure(scored, stage="full", reason="nan", message="cnn_digits: NaN")
        assert store.failure_counts() == {"nan": 2, "diverged": 1}
        assert store.failure_counts(failed_only=True) == {"nan": 1}


def test_winner_is_the_best_fitness_confirmed_on_fresh_seeds(tmp_path: Path) -> None:
    # A "new best" measured on two seeds is often seed noise: the winner is ranked by the fitness
    # re-measured on fresh seeds, and only without any confirmed program by the measured one.
    with archive.open(tmp_path / "c", create=True) as store:
        assert store.winner() is None
        screen = store.add_program("# screened\n", status="evaluated", fitness=2.0, stage="screen")
        assert store.winner().id == screen  # only a screening fitness exists
        lucky = store.add_program("# lucky\n", status="evaluated", fitness=1.5, stage="full")
        steady = store.add_program("# steady\n", status="evaluated", fitness=1.3, stage="full")
        assert store.winner().id == lucky  # nothing confirmed yet: the best full-suite fitness
        store.update_program(lucky, stage="confirmed", meta={"confirmed_fitness": 1.1})
        store.update_program(steady, stage="confirmed", meta={"confirmed_fitness": 1.25})
        winner = store.winner()
        assert (winner.id, winner.confirmed_fitness, winner.fitness) == (steady, 1.25, 1.3)
        assert store.best(1)[0].id == screen and store.program(lucky).confirmed_fitness == 1.1
        tie = store.add_program("# tie\n", status="evaluated", fitness=1.2, stage="confirmed",
                                meta={"confirmed_fitness": 1.25})
        assert store.winner().id == steady and store.program(tie).confirmed_fitness == 1.25  # the older one
    assert resolve_program(f"{tmp_path / 'c'}:best").program_id == steady


def test_lineage_marks_shared_ancestors(tmp_path: Path) -> None:
    with archive.open(tmp_path, create=True) as store:
        root = store.add_program(reference_source("sgd"))
        left = store.add_program(reference_source("sgd_momentum"), parent_ids=[root])
        right = store.add_program(reference_source("nesterov"), parent_ids=[root])
        both = store.add_program(reference_source("adam"), parent_ids=[left, right])
        tree = store.lineage(both)
        assert [n.repeated for n in (tree.parents[0].parents[0], tree.parents[1].parents[0])] == [False, True]


def test_bad_writes_are_refused_and_leave_nothing(tmp_path: Path) -> None:
    with archive.open(tmp_path, create=True) as store:
        pid = store.add_program(reference_source("sgd"))
        with pytest.raises(ArchiveError, match="no parent program with id 99"):
            store.add_program(reference_source("adam"), parent_ids=[99])
        with pytest.raises(ValueError, match="program status must be one of"):
            store.update_program(pid, status="great")
        with pytest.raises(ValueError, match="programs have no field colour"):
            store.update_program(pid, colour="red")
        with pytest.raises(ValueError, match="failure reason must be one of"):
            store.add_failure(pid, stage="screen", reason="sad")
        with pytest.raises(ArchiveError, match="no program with id 42"):
            store.add_evaluation(42, suite="search", task="t", seed=0, role="measure", metrics={})
        with pytest.raises(ArchiveError, match="no program with id 5 .*ids 1..1"):
            store.program(5)
        # A batch with one bad row stores none of them.
        good = dict(program_id=pid, suite="search", task="t", seed=0, role="measure", metrics={})
        with pytest.raises(ArchiveError):
            store.add_evaluations([good, {**good, "program_id": 77}])
        assert store.evaluations(pid) == [] and store.program_count() == 1


def test_invalid_code_is_stored_with_a_raw_hash(tmp_path: Path) -> None:
    with archive.open(tmp_path, create=True) as store:
        pid = store.add_program("def update(:\n", status="rejected")
        store.add_failure(pid, stage="validate", reason="invalid_code", message="syntax error")
        assert store.program(pid).hash.startswith("raw:")
        assert find_duplicate(store, "def update(:\n") == ("exact", pid)


def test_threads_share_one_archive(tmp_path: Path) -> None:
    with archive.open(tmp_path, create=True) as store:
        pid = store.add_program(reference_source("sgd"))

        def write(seed: int) -> None:
            for i in range(20):
                store.add_evaluation(pid, suite="search", task="t", seed=seed, role="select", metrics={"i": i})

        threads = [threading.Thread(target=write, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(store.evaluations(pid)) == 80


# --- opening, read-only use and migrations ------------------------------------------------


def test_open_refuses_what_is_not_an_archive_without_touching_it(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="no archive at campaign directory"):
        archive.open(tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()

    garbage = tmp_path / "garbage" / "archive.db"
    garbage.parent.mkdir()
    garbage.write_bytes(b"not a database at all " * 200)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    for path, message in ((garbage.parent, "not a readable archive"), (foreign, "not an optimizer-discovery archive"),
                          (empty, "empty database")):
        before = file_digest(db_path_of(path))
        with pytest.raises(ArchiveError, match=message):
            archive.open(path)
        assert file_digest(db_path_of(path)) == before


def db_path_of(path: Path) -> Path:
    return path / "archive.db" if path.is_dir() else path


def test_newer_schema_is_refused_and_not_modified(campaign_dir: Path) -> None:
    db = campaign_dir / "archive.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()
    before = file_digest(db)
    for readonly in (False, True):
        with pytest.raises(ArchiveError, match=f"schema version {schema.SCHEMA_VERSION + 1}, newer .* upgrade"):
            archive.open(campaign_dir, readonly=readonly)
    assert file_digest(db) == before


def make_v1_archive(path: Path) -> None:
    """An archive as the first schema version wrote it, with one program in it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    schema.MIGRATIONS[0](conn)
    conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO programs (code, hash, created_at) VALUES (?, ?, '2026-01-01T00:00:00+00:00')",
                 (reference_source("sgd"), program_hash(reference_source("sgd"))))
    conn.execute("COMMIT")
    conn.close()


def test_old_schema_is_migrated_on_open(tmp_path: Path) -> None:
    db = tmp_path / "archive.db"
    make_v1_archive(db)
    with archive.open(tmp_path) as store:
        assert store.program(1).code == reference_source("sgd")
        store.add_llm_call(role="proposer", model="m", prompt=[], program_id=1)  # a v2 table
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    conn.close()


def test_read_only_open_of_old_schema_migrates_a_copy_in_memory(tmp_path: Path) -> None:
    db = tmp_path / "archive.db"
    make_v1_archive(db)
    before = file_digest(db)
    with archive.open(tmp_path, readonly=True) as store:
        assert store.llm_calls() == [] and store.program(1).name is None
        with pytest.raises(ArchiveError, match="read-only"):
            store.add_program(reference_source("adam"))
    assert file_digest(db) == before


def test_a_failed_migration_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "archive.db"
    make_v1_archive(db)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        conn.execute("THIS IS NOT SQL")

    monkeypatch.setattr(schema, "MIGRATIONS", [schema.MIGRATIONS[0], broken])
    with pytest.raises(ArchiveError, match="migrating archive .* failed"):
        archive.open(tmp_path)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0] == 0
    conn.close()


READER = textwrap.dedent("""
    import sys, time
    import archive
    seen = []
    with archive.open(sys.argv[1], readonly=True) as store:
        print("ready", flush=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            seen.append(store.program_count())
            if seen[-1] >= int(sys.argv[2]):
                break
    print(len(set(seen)), seen[0], seen[-1])
""")


def test_a_reader_process_reads_while_a_campaign_writes(tmp_path: Path) -> None:
    total = 100
    with archive.open(tmp_path, create=True) as store:
        store.add_program(reference_source("sgd"))
        reader = subprocess.Popen([sys.executable, "-c", READER, str(tmp_path), str(total)], cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert reader.stdout.readline().strip() == "ready", reader.stderr.read()
        source = reference_source("adam")
        for i in range(total - 1):
            store.add_program(source.replace('"lr": 1e-3', f'"lr": {1 + i}e-4'))
            time.sleep(0.002)
        out, err = reader.communicate(timeout=30)
    assert reader.returncode == 0, err
    distinct, first, last = map(int, out.split())
    # The reader saw the archive grow under a live writer, and never got "database is locked".
    assert first < total and last == total and distinct >= 3


# --- de-duplication -----------------------------------------------------------------------


def test_exact_duplicates_ignore_formatting_comments_and_names(campaign_dir: Path) -> None:
    variant = reference_source("adamw").replace("denom", "denominator").replace("\n\n\ndef", "\n# hi\ndef")
    with archive.open(campaign_dir, readonly=True) as store:
        adamw = next(p for p in store.programs() if p.name == "adamw")
        assert find_duplicate(store, variant) == ("exact", adamw.id)
        # A duplicate's hash leads back to the program that was evaluated.
        child = store.best(1)[0]
        assert find_duplicate(store, ADAMW_SIGN + "\n\n") == ("exact", child.id)
        assert find_duplicate(store, variant, exclude_id=adamw.id) is None
        assert find_duplicate(store, reference_source("adamw").replace("0.999", "0.99")) is None


def test_behavioural_duplicates_match_within_tolerance(campaign_dir: Path) -> None:
    other = reference_source("sgd")
    with archive.open(campaign_dir, readonly=True) as store:
        adam = next(p for p in store.programs() if p.name == "adam")
        assert find_duplicate(store, other, [0.93 * (1 + 1e-6), 0.5, -0.25]) == ("behavioural", adam.id)
        assert find_duplicate(store, other, [0.93 * (1 + 1e-3), 0.5, -0.25]) is None
        assert find_duplicate(store, other, [0.93, 0.5]) is None  # another probe's length
        assert find_duplicate(store, other, [float("nan"), 0.5, -0.25]) is None
        assert find_duplicate(store, other) is None


def test_fingerprint_tolerance_edges() -> None:
    assert fingerprints_match([1.0, 0.0], [1.0 + 1.5e-5, 5e-8])  # one 6-digit rounding step, tiny zero noise
    assert not fingerprints_match([1.0, 0.0], [1.0 + 5e-5, 0.0])
    assert not fingerprints_match([1.0, 0.0], [1.0, 1e-6])
    assert not fingerprints_match([float("inf")], [float("inf")])
    assert not fingerprints_match([], [])
    # Values straddling a rounding boundary still match (no quantised buckets).
    assert fingerprints_match([0.12344999], [0.12345001])
    assert first_match([1.0, 2.0], [(3, [1.0, 2.5]), (8, [1.0, 2.0]), (9, [1.0, 2.0])]) == 8
    assert first_match([1.0, 2.0], [(3, [float("nan"), 2.0])]) is None


def test_norm_prefilter_keeps_every_match_at_the_tolerance_edge(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = [rng.normal(size=145) * 10.0 ** rng.uniform(-7, 1, size=145) for _ in range(40)]
    with archive.open(tmp_path, create=True) as store:
        ids = [store.add_program(f"program {i}", fingerprint=fp.tolist()) for i, fp in enumerate(base)]
        for pid, fp in zip(ids, base):
            # Every entry moved (almost) as far as allowed, all the same way: the largest norm change.
            allowed = 0.98 * (ATOL + RTOL * np.abs(fp))
            for direction in (1.0, -1.0):
                moved = fp + direction * np.sign(fp) * allowed
                assert store.find_by_fingerprint(moved.tolist()).id == pid
            assert store.find_by_fingerprint((fp + np.sign(fp) * 3 * (ATOL + RTOL * np.abs(fp))).tolist()) is None


# --- resolving DIR:ID ---------------------------------------------------------------------


def test_resolve_program_references(campaign_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = resolve_program(f"{campaign_dir}:1")
    assert found.source == reference_source("adamw") and found.name == "adamw" and found.program_id == 1
    assert resolve_program(f"{campaign_dir / 'archive.db'}:best").source == ADAMW_SIGN
    assert resolve_program("best", default_dir=campaign_dir).name == f"{campaign_dir.name}:4"
    monkeypatch.chdir(campaign_dir.parent.parent)  # the directory holding campaigns/
    assert default_campaign_dir() == Path("campaigns") / campaign_dir.name
    assert resolve_program("2").name == "adam"
    (Path("campaigns") / "latest").symlink_to(campaign_dir.name)
    assert default_campaign_dir() == Path("campaigns/latest")
    with pytest.raises(ArchiveError, match="not a program reference"):
        parse_program_ref("campaigns/latest:first")
    with pytest.raises(ArchiveError, match="no program with id 99"):
        resolve_program("99")
    with pytest.raises(ArchiveError, match="no archive at"):
        resolve_program("elsewhere:3")
    monkeypatch.chdir(campaign_dir)
    with pytest.raises(ArchiveError, match="no campaign found under campaigns/"):
        resolve_program("3")


def test_package_exposes_open() -> None:
    assert archive.open is open_archive


def test_the_verdict_tells_a_program_below_adamw_from_a_near_miss(tmp_path):
    from archive.verdict import verdict

    cases = [  # (proposer, meta, verdict)
        ("mutation", {"confirmed_fitness": 0.654, "confirmed_spread": 0.061}, "below AdamW"),
        ("mutation", {"confirmed_fitness": 0.96, "confirmed_spread": 0.05}, "not beyond noise"),
        ("mutation", {"confirmed_fitness": 1.03, "confirmed_spread": 0.05}, "not beyond noise"),
        ("mutation", {"confirmed_fitness": 0.99}, "below AdamW"),  # no spread recorded: the value alone
        ("mutation", {"confirmed_fitness": 1.2, "confirmed_spread": 0.05, "short_horizon": True}, "short-horizon"),
        ("mutation", {"confirmed_fitness": 1.2, "confirmed_spread": 0.05, "announced": True}, "announced"),
        ("mutation", {}, ""),
        ("reference", {"confirmed_fitness": 0.9, "confirmed_spread": 0.01}, "baseline"),
    ]
    with archive.open(tmp_path, create=True) as store:
        names = ("adam", "lion", "sgd", "adamw", "nadam", "radam", "yogi", "adagrad")
        ids = [store.add_program(reference_source(name), proposer=proposer, status="evaluated", fitness=1.0, meta=meta)
               for name, (proposer, meta, _) in zip(names, cases)]
        assert [verdict(store.program(i)) for i in ids] == [want for _, _, want in cases]
