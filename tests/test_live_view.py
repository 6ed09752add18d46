"""The live view of `discover run`, driven by a real offline campaign: setup progress while the
seed programs are scored, names beside ids, seeds counted, evaluations/min, an ETA against the
budget that binds, the best program so far with its verdict, and a clock that ticks on its own."""

from __future__ import annotations

import json
from io import StringIO
from types import SimpleNamespace

import pytest
from rich.console import Console

from discover.campaign import Campaign, Event
from discover.cli_run import LiveView, _clock, _event_line
from discover.config import load_config

TINY = {
    "budget": {"max_evaluations": 3, "max_seconds": 600},
    "evaluation": {"tasks": ["noisy_quadratic"], "validation_tasks": ["noisy_quadratic@1"], "steps_scale": 0.2,
                   "lr_grid": [1e-3, 1e-2, 0.1], "screen": False, "test_tier": False, "workers": 1,
                   "confirm_seeds": [200], "long_horizon_scale": 1.0},
    "search": {"seed_programs": ["adamw", "adam"], "in_flight": 1},
}


@pytest.fixture(autouse=True)
def private_run_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DISCOVER_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "live-view-cache"))


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def text_of(view: LiveView, width: int = 100) -> str:
    console = Console(file=StringIO(), width=width, record=True, color_system=None)
    console.print(view.render())
    return console.export_text()


class Recorder(LiveView):
    """The real view, keeping a rendered frame after every event (as the terminal would show it)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frames: list[tuple[str, str]] = []

    def on_event(self, event) -> None:
        super().on_event(event)
        self.frames.append((event.kind, text_of(self)))


@pytest.fixture(scope="module")
def campaign_run(tmp_path_factory):
    """One tiny offline campaign, its view fed every event, frames recorded after each."""
    import os

    os.environ["DISCOVER_CACHE_DIR"] = str(tmp_path_factory.getbasetemp() / "live-view-cache")
    tmp = tmp_path_factory.mktemp("live")
    config = load_config(overrides=[TINY, {"output_dir": str(tmp)}, {"seed": 1}])
    campaign = Campaign.create(config)
    log = StringIO()
    view = Recorder(campaign, Console(file=log, width=120, color_system=None))
    view.live = SimpleNamespace(refresh=lambda: None)  # frames come from the recorder, not a terminal
    view.watch_jobs()
    campaign.on_event = view.on_event
    try:
        summary = campaign.run()
        final = text_of(view)
        view.winner = campaign.archive.winner()
    finally:
        campaign.close()
    return view, summary, final


def test_setup_progress_is_shown_while_the_seeds_are_scored(campaign_run):
    view, _, _ = campaign_run
    setup = [frame for kind, frame in view.frames if kind == "setup"]
    assert len(setup) == 3  # the start, then one per (seed program, task): 2 seeds x 1 task
    assert "0/2  scoring the seed programs, tuning the baselines" in setup[0]
    assert "2/2  scoring" in setup[-1]
    assert "seeds 0/2 scored" in setup[0]
    assert "ETA after the first evaluations" in setup[0]
    # before the first task result the sandbox's jobs show that work goes on
    assert "running on 1 worker," in setup[1] and view.jobs_running == 0 and view.jobs_done > 0


def test_the_view_names_programs_counts_seeds_and_shows_rate_eta_and_best(campaign_run):
    view, summary, final = campaign_run
    assert summary.spend["evaluations"] == 3
    assert "seeds 2/2 scored" in final
    assert "setup" not in final.split("\n\n")[0]  # the setup row goes once proposals begin
    # seed programs carry their names, proposals their kind
    assert "adamw (seed)" in final or "adam (seed)" in final
    assert "mutation" in final
    assert "/min" in final
    assert "ETA" in final and ("evaluation budget" in final or "time budget" in final)
    best_line = next(line for line in final.splitlines() if "best so far" in line)
    best = view.winner
    label = f"{best.name} (seed)" if best.proposer == "reference" else best.proposer
    assert f"#{best.id} {label}" in best_line
    assert f"validation {best.confirmed_fitness:.3f}" in best_line
    # the evaluations line counts the candidates against the budget
    assert "3 / 3" in next(line for line in final.splitlines() if "evaluations" in line)


def test_event_labels_are_readable_in_a_narrow_terminal(campaign_run):
    view, _, _ = campaign_run
    view.recent.append((61.0, Event("failure", None, "mutation: invalid_code: " + "x" * 300,
                                    reason="invalid_code"), None))
    narrow = text_of(view, width=60)
    line = next(line for line in narrow.splitlines() if "1:01" in line)
    assert "failed" in line and "mutation: inva" in line  # the label is whole; the text is cut at the edge
    assert all(len(line) <= 60 for line in narrow.splitlines())


@pytest.fixture(scope="module")
def idle(tmp_path_factory):
    """A campaign made and never run (its workers start once for the module): the views built
    on it are driven by hand and a fake clock."""
    config = load_config(overrides=[TINY, {"output_dir": str(tmp_path_factory.mktemp("idle"))},
                                    {"budget": {"max_evaluations": 100, "max_seconds": 600}}])
    campaign = Campaign.create(config)
    yield campaign
    campaign.close()


@pytest.fixture
def idle_campaign(idle):
    idle.spend.evaluations = 0
    return lambda: idle


def test_the_clock_ticks_without_events(idle_campaign):
    clock = FakeClock()
    view = LiveView(idle_campaign(), Console(file=StringIO()), clock=clock)
    view.seconds_before = 0.0
    first = text_of(view)
    clock.now += 75
    later = text_of(view)
    time_line = lambda frame: next(line for line in frame.splitlines() if "time" in line)  # noqa: E731
    assert "0:00 / 10:00" in time_line(first)  # elapsed / the time budget
    assert "1:15 / 10:00" in time_line(later)
    assert "loading the tasks" in first  # no event yet: the setup row says so rather than nothing


def test_rate_and_eta_take_the_budget_that_binds(idle_campaign):
    campaign = idle_campaign()
    clock = FakeClock()
    view = LiveView(campaign, Console(file=StringIO()), clock=clock)
    view.seconds_before = 0.0
    assert view.rate() is None and view.eta() == (600.0, "time budget")
    view.search_started = clock.now
    clock.now += 120  # 2 minutes of search, 10 evaluations: 5/min; 90 left take 18 min > 8 min of time left
    campaign.spend.charge_evaluations(10)
    assert view.rate() == pytest.approx(5.0)
    eta, binds = view.eta()
    assert binds == "time budget" and eta == pytest.approx(480.0)
    campaign.spend.charge_evaluations(80)  # 90 in 2 min = 45/min; 10 left take 13 s
    eta, binds = view.eta()
    assert binds == "evaluation budget" and eta == pytest.approx(60 * 10 / 45)
    frame = text_of(view)
    assert "45.0/min" in frame and "ETA 0:13 (evaluation budget)" in frame


def test_llm_requests_in_flight_are_counted(idle_campaign):
    view = LiveView(idle_campaign(), Console(file=StringIO()), clock=FakeClock())
    view.live = SimpleNamespace(refresh=lambda: None)
    # As the campaign reports its LLM client's requests: reason = phase, data = the details.
    for rid, phase in ((1, "start"), (2, "start"), (1, "timeout"), (3, "start")):
        event = Event("llm_request", None, f"proposer request {rid} {phase}", reason=phase)
        event.data = {"id": rid, "phase": phase}
        view.on_event(event)
    assert (len(view.llm_requests), view.llm_timeouts) == (2, 1)
    assert [e.reason for _, e, _ in view.recent] == ["timeout"]  # only the timeout is worth a line
    frame = text_of(view)
    assert "LLM requests in flight: 2 (1 timed out so far)" in frame and "proposer request 1 timeout" in frame
    done = Event("llm_request", None, "", reason="done")
    done.data = {"id": 3}
    view.on_event(done)
    view.on_event(Event("llm_request", None, "", reason="cancelled"))  # no id: one of those in flight ended
    assert not view.llm_requests


def test_log_lines_name_programs_and_count_setup():
    assert _event_line(Event("setup", 3, "mlp_digits", done=3, total=24), "adam (seed)") == \
        "[setup 3/24] #3 adam (seed): mlp_digits"
    assert _event_line(Event("evaluated", 9, "full: fitness 0.912", 0.912), "mutation") == \
        "[scored] #9 mutation: full: fitness 0.912"
    assert _clock(59.9) == "0:59" and _clock(3725) == "1:02:05"


def test_baselines_and_eval_print_a_line_per_task_as_it_completes(tmp_path_factory, monkeypatch):
    from typer.testing import CliRunner

    from discover.cli import app

    # tests/test_cli.py's run cache and settings: in a whole-suite run these baselines are cached.
    monkeypatch.setenv("DISCOVER_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cli-run-cache"))
    runner = CliRunner()
    args = ["--task", "noisy_quadratic", "--steps-scale", "0.2", "--workers", "1"]
    result = runner.invoke(app, ["baselines", *args])
    assert result.exit_code == 0, result.output
    assert "[1/1] baselines on the search tier: noisy_quadratic: baselines tuned (" in result.output
    result = runner.invoke(app, ["eval", "adam", *args])
    assert result.exit_code == 0, result.output
    assert "[1/1] adam on the search tier: noisy_quadratic " in result.output
    quiet = runner.invoke(app, ["eval", "adam", *args, "--json"])
    assert "[1/1]" not in quiet.output and json.loads(quiet.output)["program"] == "adam"  # --json: data only
    note = Event("note", 2, "#2 measured 1.031 on search but 0.787 on the validation tier: not a new best")
    assert _event_line(note, "adam (seed)").startswith("[note] #2 adam (seed): measured 1.031")


def test_without_a_terminal_each_event_is_one_plain_line(idle_campaign):
    log = StringIO()
    view = LiveView(idle_campaign(), Console(file=log, width=200), clock=FakeClock())
    view.on_event(Event("setup", None, "scoring 2 seed programs", done=0, total=2))
    view.on_event(Event("failure", None, "mutation: invalid_code: no HPARAMS [sic]", reason="invalid_code"))
    lines = log.getvalue().splitlines()
    # the [labels] are text, not markup to be swallowed
    assert lines == ["[setup 0/2] scoring 2 seed programs", "[failed] mutation: invalid_code: no HPARAMS [sic]"]
