"""Controller overhead per candidate, with an instant LLM and instant evaluation, against the
size of the archive (issue 14 item 5: <= 0.03 s per candidate, flat up to 10,000 programs).

What is timed is what the campaign process does for a candidate when neither the LLM nor the
sandbox costs anything: parent selection and prompt building from the archive (and saving the
batch's contexts), the LLM round trip to the tests' local scripted OpenAI-compatible server
(tests/fake_openai.py, run in a child process, answering at once, through the real ``openai``
client and the campaign's LLM cache), parsing and validation, exact and behavioural
de-duplication, the would-be-best check, and every archive write (program, LLM calls, run rows,
scores, timings). Evaluation is skipped: probes are answered at once by a stand-in executor and
``evaluate`` by a stand-in evaluator that returns a result drawn from the program's hash (scoring
real run records, a cost that does not depend on the archive, is not included).

Reported per candidate: wall seconds and this process's CPU seconds (the CPU figure is the one
to read on a busy machine: the scripted server runs in another process).

For each size N a synthetic archive is built first: N evaluated programs (valid candidate
programs with per-task scores on the search tier, fingerprints, prompts, responses, LLM calls
and run rows, as a long campaign leaves them; some failed and duplicate ones among them). Then a
campaign runs in that archive with ``--candidates`` proposals in batches of ``--in-flight``; the
first batch (which scores the tuned baselines) is not timed.

    python benchmarks/controller_overhead.py [--sizes 10,1000,10000] [--candidates 40] [--in-flight 4]
                                             [--profile N]   # cProfile's top functions at size N
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import io
import itertools
import math
import multiprocessing
import os
import pstats
import random
import sys
import tempfile
import time
from concurrent.futures import Future
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import archive  # noqa: E402
from archive.store import Archive, _now  # noqa: E402
from sandbox.contract import program_hash  # noqa: E402
from sandbox.evaluate import EvaluationResult, TaskResult  # noqa: E402
from sandbox.references import reference_source  # noqa: E402
from sandbox.tasks import suite as suite_tasks  # noqa: E402
from sandbox.tasks.base import val_steps  # noqa: E402
from sandbox.worker import JobResult  # noqa: E402

TEMPLATE = '''"""Sign of momentum with RMS-normalised decay (variant {i})."""
HPARAMS = {{"lr": 0.01, "beta1": {beta1:.6f}, "weight_decay": {wd:.6f}}}

def init(param):
    return {{"m": zeros_like(param)}}

def update(grad, param, state, step, hp):
    m = interp(grad, state["m"], hp.beta1)
    return -hp.lr * tanh(m / (rms(m) + {eps:.3e})) - hp.weight_decay * param, {{"m": m}}
'''

DIFF = '''<<<<<<< SEARCH
    m = interp(grad, state["m"], hp.beta1)
=======
    m = interp(grad, state["m"], hp.beta1 * {factor:.6f})
>>>>>>> REPLACE'''

PROMPT_FILLER = ("The program above reached these per-task scores; the directional feedback says which tasks "
                 "it lost and by how much. ") * 30


def candidate(i: int, rng: random.Random) -> str:
    return TEMPLATE.format(i=i, beta1=rng.uniform(0.5, 0.99), wd=rng.uniform(0, 0.01), eps=rng.uniform(1e-9, 1e-6))


# --- the instant LLM --------------------------------------------------------------------------


def make_responder():
    counter = itertools.count()
    rng = random.Random(1)

    def respond(request: dict):
        from tests.fake_openai import Reply

        text = request["messages"][-1]["content"]
        k = next(counter)
        if text.startswith("You are reviewing"):
            return Reply("The update ignores curvature; normalise by a running second moment.", 13, 9)
        if text.startswith("Improve this program by editing it"):
            return Reply(DIFF.format(factor=0.9 + 1e-5 * k), 12, 8)
        return Reply(f"```python\n{candidate(10_000_000 + k, rng)}```", 10, 5)

    return respond


# --- the instant sandbox ----------------------------------------------------------------------


class InstantExecutor:
    """Answers probe jobs at once with a fingerprint drawn from the program's text (no worker)."""

    device = "cpu"

    def __init__(self, capacity: int = 4):
        self._capacity = capacity

    @property
    def capacity(self) -> int:
        return self._capacity

    def close(self) -> None:
        pass

    def submit(self, job_name: str, payload: dict[str, Any], timeout: float = 60.0) -> Future:
        future: Future = Future()
        if job_name == "probe":
            digest = hashlib.sha256(payload["source"].encode()).digest()
            future.set_result(JobResult(True, None, "", [round(b / 255 - 0.5, 6) for b in digest * 5], 0.0, 0))
        else:
            future.set_result(JobResult(True, None, "", payload.get("value"), 0.0, 0))
        return future


class InstantEvaluator:
    """Stands in for the evaluator: a program's result (per-task scores, run records to store)
    at once, drawn from its hash; programs below 0.6 stop at the screen, as the funnel does."""

    def __init__(self, settings, tasks: list):
        self.settings = settings
        self.tasks = tasks

    def tasks_for(self, suite: str) -> list:
        return self.tasks

    def baseline_names(self) -> tuple[str, ...]:
        return ("adamw",)

    def evaluate(self, source: str, *, suite: str | None = None, stage: str = "auto", on_task=None,
                 measure_seeds=None) -> EvaluationResult:
        suite = suite or self.settings.suite
        phash = program_hash(source)
        rng = random.Random(f"{phash}:{suite}")
        scores = _scores(rng, self.tasks)
        stage = "screen" if stage != "full" and rng.random() < 0.3 else "full"
        tasks = {name: TaskResult(**{k: v for k, v in entry.items() if k != "steps"}) for name, entry in scores.items()}
        if stage == "screen":
            tasks = dict(list(tasks.items())[:2])
        records = [{"losses": [math.exp(-i / 20) for i in range(64)], "final_loss": 0.1, "test_metric": None,
                    "status": "ok", "stopped_at": None, "task": name, "task_version": 1, "seed": seed, "lr": lr,
                    "role": role}
                   for name in tasks
                   for lr, seed, role in [(lr, 0, "select") for lr in (1e-3, 1e-2, 0.1)] + [(1e-2, 100, "measure")]]
        fitness = math.exp(sum(math.log(t.score) for t in tasks.values()) / len(tasks))
        for name, result in tasks.items():
            if on_task:
                on_task(name, result)
        return EvaluationResult(phash, suite, stage, fitness, 0.02, tasks, runs_executed=len(records),
                                run_records=records, seconds=0.0)


# --- the synthetic archive --------------------------------------------------------------------


def _scores(rng: random.Random, tasks: list) -> dict[str, dict]:
    out = {}
    for task in tasks:
        score = math.exp(rng.gauss(-0.3, 0.5))
        points = val_steps(task.steps)
        result = TaskResult(task=task.key, task_version=task.version, score=score,
                            seed_scores=[score * 0.98, score * 1.02], best_lr=10 ** rng.randint(-4, 0),
                            lr_at_edge=False, final_loss=rng.random(), test_metric=None, status="ok",
                            curve=[math.exp(-i / 20) for i in range(64)], vs_baselines={"adamw": score, "lion": score},
                            train_score=score, val_final=rng.random(), target=0.1,
                            val_curve=[math.exp(-i / 5) for i in range(len(points))], val_steps=points)
        out[task.key] = {**asdict(result), "steps": task.steps}
    return out


def build_archive(directory: Path, size: int, seed: int = 0) -> None:
    """``size`` programs as a long campaign leaves them (80% evaluated, 10% failed, 10%
    duplicates), with their LLM calls and some run rows, in one transaction."""
    rng = random.Random(seed)
    tasks = suite_tasks("search")
    with archive.open(directory, create=True) as store:
        cid = store.create_campaign("synthetic", {}, seed)
        with store._write() as conn:
            ref = reference_source("adamw")
            ids = [Archive._insert(conn, "programs", dict(
                campaign_id=cid, code=ref, hash=program_hash(ref), parent_ids=[], proposer="reference",
                status="evaluated", fitness=1.0, fitness_spread=0.02, scores=_scores(rng, tasks), stage="full",
                created_at=_now(), name="adamw", meta={}, fingerprint=[0.0] * 160, fingerprint_size=160,
                fingerprint_l1=0.0))]
            for i in range(1, size):
                code = candidate(i, rng)
                kind = rng.random()
                parents = rng.sample(ids, min(len(ids), 2 if kind < 0.2 else 1))
                fingerprint = [round(rng.uniform(-1, 1), 6) for _ in range(160)]
                values = dict(campaign_id=cid, code=code, hash=f"synthetic{i:08d}", parent_ids=parents,
                              proposer=rng.choice(["full", "diff", "crossover", "textgrad"]), created_at=_now(),
                              prompt=PROMPT_FILLER, response=f"```python\n{code}```", tokens_in=900, tokens_out=300,
                              meta={"proposal_index": i, "edits": []}, fingerprint=fingerprint,
                              fingerprint_size=160, fingerprint_l1=sum(abs(x) for x in fingerprint))
                if kind < 0.8:
                    values.update(status="evaluated", stage="full" if kind < 0.6 else "screen",
                                  fitness=math.exp(rng.gauss(-0.3, 0.4)), fitness_spread=0.03,
                                  scores=_scores(rng, tasks))
                    if kind < 0.6 and (i % 50 == 1 or values["fitness"] > 2.0):
                        # Would-be bests were confirmed on the validation tier (as a campaign does).
                        values.update(stage="confirmed", meta={**values["meta"], "confirmed_fitness": values["fitness"],
                                                               "validation_scores": values["scores"]})
                elif kind < 0.9:
                    values.update(status="failed")
                else:
                    values.update(status="duplicate", duplicate_of=rng.choice(ids))
                pid = Archive._insert(conn, "programs", values)
                ids.append(pid)
                if values["status"] == "failed":
                    Archive._insert(conn, "failures", dict(program_id=pid, stage="full", reason="nan",
                                                           message="update's delta is NaN", created_at=_now()))
                Archive._insert(conn, "llm_calls", dict(
                    program_id=pid, role="proposer", model="fake", prompt=[{"role": "user", "content": PROMPT_FILLER}],
                    response=values["response"], tokens_in=900, tokens_out=300, outcome="ok", created_at=_now()))
                for task in tasks[:4] if values["status"] == "evaluated" else ():
                    Archive._insert(conn, "evaluations", dict(
                        program_id=pid, suite="search", task=task.key, task_version=str(task.version), seed=100,
                        lr=1e-3, role="measure", metrics={"final_loss": 0.1, "status": "ok"},
                        curve=[math.exp(-i / 20) for i in range(64)], created_at=_now()))


# --- the measurement --------------------------------------------------------------------------


def measure(size: int, candidates: int, in_flight: int, workdir: Path, server, profile: bool = False) -> dict:
    import discover.campaign as campaign_module
    from discover.campaign import Campaign
    from discover.config import load_config

    directory = workdir / f"archive-{size}"
    started = time.perf_counter()
    build_archive(directory, size)
    built = time.perf_counter() - started
    config = load_config(overrides=[{
        "name": f"overhead-{size}", "output_dir": str(workdir),
        "llm": {"base_url": server.base_url, "preflight": False, "constrained": "off", "timeout": 10},
        "budget": {"max_evaluations": candidates + in_flight},
        "evaluation": {"device": "cpu", "heldout": False, "long_horizon_scale": 1.0, "workers": in_flight},
        "search": {"proposers": {"full": 1.0, "diff": 1.0, "crossover": 1.0, "textgrad": 1.0},
                   "seed_programs": ["adamw"], "in_flight": in_flight, "max_stalled_proposals": 10_000},
    }])
    finished: list[tuple[float, float]] = []  # (wall, this process's CPU) when each candidate was done

    def on_event(event) -> None:
        if event.kind in ("evaluated", "duplicate", "failure") and event.program_id and event.program_id > size:
            finished.append((time.perf_counter(), time.process_time()))

    original = campaign_module._make_executor
    campaign_module._make_executor = lambda config, device: InstantExecutor(in_flight)
    try:
        campaign = Campaign(config, directory, on_event=on_event, checked=[])
    finally:
        campaign_module._make_executor = original
    campaign.evaluator = InstantEvaluator(campaign.settings, suite_tasks("search"))
    # The synthetic archive's programs were never confirmed, so the campaign first confirms the
    # ones an uninterrupted campaign would have (a one-off, on the confirmation thread beside the
    # first batches): the timed window starts after it, as it started after it when it ran first.
    unchecked_done: list[float] = []
    confirm_unchecked = campaign._confirm_unchecked

    def timed_unchecked(evaluated):
        confirm_unchecked(evaluated)
        unchecked_done.append(time.perf_counter())
    campaign._confirm_unchecked = timed_unchecked
    profiler = cProfile.Profile() if profile else None
    try:
        if profiler:
            profiler.enable()
        campaign.run()
        if profiler:
            profiler.disable()
    finally:
        campaign.close()
    # The first batch scores the tuned baselines: time from its end (and the one-off
    # confirmations' end) to the last candidate.
    start = max(finished[in_flight - 1][0], *unchecked_done)
    timed = [t for t in finished[in_flight - 1:] if t[0] >= start]
    n = len(timed) - 1
    wall = (timed[-1][0] - timed[0][0]) / n if n > 0 else float("nan")
    cpu = (timed[-1][1] - timed[0][1]) / n if n > 0 else float("nan")
    out = {"size": size, "built_s": built, "candidates": n, "per_candidate_s": wall, "cpu_per_candidate_s": cpu}
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(35)
        out["profile"] = text.getvalue()
    return out


def run(sizes: list[int], candidates: int, in_flight: int, profile_size: int | None = None) -> list[dict]:
    """Measure every size in one run (one fake server, one scratch directory, one run cache)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="controller-overhead-") as tmp:
        workdir = Path(tmp)
        os.environ["DISCOVER_CACHE_DIR"] = str(workdir / "run-cache")  # never the user's cache
        with _server_process() as server:
            for size in sizes:
                print(f"controller overhead: archive of {size} programs ...", flush=True)
                rows.append(measure(size, candidates, in_flight, workdir, server, profile=size == profile_size))
    return rows


class _Server:
    def __init__(self, base_url: str):
        self.base_url = base_url


@contextlib.contextmanager
def _server_process():
    """The scripted server in a child process, so this process's CPU time is the controller's."""
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe()
    process = context.Process(target=_serve, args=(child,), daemon=True)
    process.start()
    try:
        yield _Server(parent.recv())
    finally:
        parent.send("stop")
        process.join(timeout=10)


def _serve(pipe) -> None:
    from tests.fake_openai import FakeOpenAIServer

    server = FakeOpenAIServer()
    server.responder = make_responder()
    server.start()
    pipe.send(server.base_url)
    pipe.recv()
    server.stop()


def print_table(rows: list[dict]) -> None:
    print(f"{'archived programs':>18}{'candidates timed':>18}{'wall s/cand.':>14}{'CPU s/cand.':>13}"
          f"{'CPU x smallest':>16}")
    first = rows[0]["cpu_per_candidate_s"] if rows else float("nan")
    for r in rows:
        print(f"{r['size']:>18}{r['candidates']:>18}{r['per_candidate_s']:>14.4f}{r['cpu_per_candidate_s']:>13.4f}"
              f"{r['cpu_per_candidate_s'] / first:>16.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,1000,10000", help="archive sizes (programs), comma-separated")
    parser.add_argument("--candidates", type=int, default=40, help="timed proposals per size (default: 40)")
    parser.add_argument("--in-flight", type=int, default=4, help="proposals per batch (default: 4)")
    parser.add_argument("--profile", type=int, default=None, metavar="N", help="print cProfile's top functions at size N")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    rows = run(sizes, args.candidates, args.in_flight, args.profile)
    print()
    print_table(rows)
    for r in rows:
        if "profile" in r:
            print(f"\n--- profile at {r['size']} programs ---\n{r['profile']}")


if __name__ == "__main__":
    main()
