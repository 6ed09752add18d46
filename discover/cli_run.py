"""`discover run`: a discovery campaign with a live view and a closing summary."""

from __future__ import annotations

import json
import threading
import warnings
import time
from collections import Counter, deque
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from discover.errors import UserError

console = Console()


LLM_DONE = ("finish", "finished", "done", "answered", "ok", "timeout", "timed_out", "failed", "error", "cancelled")
"""Phases of an ``llm_request`` event that end a request (any other phase, e.g. "start", begins one)."""


class LiveView:
    """What a campaign is doing right now: setup progress, a clock that ticks every second,
    evaluations and their rate, an ETA against the budget, the best program so far (name and
    verdict), requests in flight, failures and recent events.

    ``on_event`` runs on the campaign's threads and is the only place that reads the archive;
    ``render`` (called by rich's refresh thread every half second) reads only what the events
    left behind and the clock, so the clock moves even when nothing happens.
    """

    def __init__(self, campaign, console: Console, clock: Callable[[], float] = time.monotonic):
        self.campaign = campaign
        self.console = console
        self.clock = clock
        self.lock = threading.Lock()
        self.live: Live | None = None
        self.recent: deque = deque(maxlen=8)
        self.failures: Counter = Counter()
        self.duplicates = 0
        self.evaluated = 0
        self.labels: dict[int, str] = {}  # program id -> seed name or proposer kind
        self.seeds_total = len(campaign.config.search.seed_programs)
        done = campaign.archive.programs(status=("evaluated", "failed"))
        self.seeds_scored = {r.id for r in done if r.proposer == "reference"}  # on resume: already scored
        self.setup: tuple[int, int] | None = None  # (task results done, total) while seeding
        self.setup_over = bool(self.seeds_scored)
        self.in_evaluation: dict[int, str] = {}  # programs proposed and not yet scored
        self.confirming: int | None = None
        self.llm_requests: set = set()  # ids of LLM requests in flight
        self.jobs_running = 0  # sandbox jobs (see watch_jobs)
        self.jobs_done = 0
        self.llm_timeouts = 0
        self.best: str | None = None
        self.started = clock()
        self.seconds_before = campaign.spend.seconds  # a resumed campaign's clock goes on from here
        self.search_started: float | None = None  # when the first proposal arrived
        self.evaluations_before = campaign.spend.evaluations
        self._refresh_best()

    # --- events (campaign threads) -------------------------------------------------------

    def on_event(self, event) -> None:
        label = None
        if event.program_id is not None and event.kind != "llm_request":
            label = self._label(event.program_id)
        with self.lock:
            now = self.clock()
            kind = event.kind
            if kind == "setup":
                if event.total:
                    done = max(event.done or 0, self.setup[0] if self.setup else 0)
                    self.setup = (done, event.total)
            elif kind == "llm_request":
                # A request starts and ends on one thread, so its id is added before it is removed.
                phase = (event.reason or event.text.split(" ")[0] or "").lower()
                rid = (getattr(event, "data", None) or {}).get("id", object())
                if phase in LLM_DONE:
                    if rid in self.llm_requests:
                        self.llm_requests.discard(rid)
                    elif self.llm_requests:  # an event without an id ends one of them
                        self.llm_requests.pop()
                    self.llm_timeouts += phase in ("timeout", "timed_out")
                else:
                    self.llm_requests.add(rid)
            else:
                if kind == "proposal":
                    if self.search_started is None:
                        self.search_started = now
                    self.setup_over = True
                    self.in_evaluation[event.program_id] = label or ""
                elif kind == "failure":
                    self.failures[event.reason or "crashed"] += 1
                elif kind == "duplicate":
                    self.duplicates += 1
                elif kind == "evaluated":
                    self.evaluated += 1
                elif kind == "confirming":
                    self.confirming = event.program_id
                if kind in ("failure", "duplicate", "evaluated"):
                    self.in_evaluation.pop(event.program_id, None)
                if kind == "evaluated" and label and label.endswith("(seed)"):
                    self.seeds_scored.add(event.program_id)
                if kind in ("new_best", "evaluated", "note") and event.program_id == self.confirming:
                    self.confirming = None  # the confirmation ended with this event
            show = kind != "setup" or event.program_id is None
            if kind == "llm_request":
                show = phase in ("timeout", "timed_out", "failed", "error")  # starts and answers: too many
            if show:
                self.recent.append((self._elapsed(now), event, label))
        if kind in ("evaluated", "new_best"):
            self._refresh_best()
        if self.live is None:  # not a terminal: one plain line per event, for logs and CI
            if show or kind == "setup":
                self.console.print(_event_line(event, label), markup=False, highlight=False, soft_wrap=True)
        else:
            self.live.refresh()

    def watch_jobs(self) -> None:
        """Count the campaign's sandbox jobs as they start and finish: the one sign of progress
        while a program's first task result is still minutes away (on a fresh run cache the
        seed programs' first results wait for the baselines to be tuned)."""
        counting = _JobCounter(self.campaign.executor, self)
        self.campaign.executor = self.campaign.evaluator.executor = counting

    def _job(self, delta_running: int, delta_done: int) -> None:
        with self.lock:
            self.jobs_running += delta_running
            self.jobs_done += delta_done
        if self.live is not None:
            self.live.refresh()

    def _label(self, pid: int) -> str:
        """``adam (seed)`` for a seed program, the proposer kind (``mutation``) for a proposal."""
        if pid not in self.labels:
            try:
                rec = self.campaign.archive.program(pid)
            except Exception:  # a label is decoration: never let it stop a campaign
                return ""
            self.labels[pid] = f"{rec.name} (seed)" if rec.proposer == "reference" else (rec.proposer or "")
        return self.labels[pid]

    def _refresh_best(self) -> None:
        from discover.summary import verdict

        try:
            rec = self.campaign.archive.winner()
        except Exception:
            return
        if rec is None:
            return
        who = f"#{rec.id} {self._label(rec.id)}"
        if rec.confirmed_fitness is not None:
            spread = (rec.meta or {}).get("confirmed_spread") or 0.0
            word = verdict(rec)
            text = f"{who}   validation {rec.confirmed_fitness:.3f} ± {spread:.3f}" + (f"   {word}" if word else "")
        else:
            text = f"{who}   search {rec.fitness:.3f} (not yet checked on the validation tier)"
        with self.lock:
            self.best = text

    # --- rendering (any thread) -----------------------------------------------------------

    def _elapsed(self, now: float) -> float:
        return self.seconds_before + (now - self.started)

    def rate(self, now: float | None = None) -> float | None:
        """Candidate evaluations per minute since the first proposal (None before one is done)."""
        now = self.clock() if now is None else now
        done = self.campaign.spend.evaluations - self.evaluations_before
        if self.search_started is None or done <= 0 or now <= self.search_started:
            return None
        return done / ((now - self.search_started) / 60.0)

    def eta(self, now: float | None = None) -> tuple[float | None, str]:
        """Seconds until the budget that binds first runs out, and which one it is."""
        now = self.clock() if now is None else now
        budget = self.campaign.spend.budget
        options = []
        if budget.max_seconds:
            options.append((max(0.0, budget.max_seconds - self._elapsed(now)), "time budget"))
        rate = self.rate(now)
        if budget.max_evaluations and rate:
            left = max(0, budget.max_evaluations - self.campaign.spend.evaluations)
            options.append((60.0 * left / rate, "evaluation budget"))
        if not options:
            return None, ""
        return min(options)

    def __rich__(self) -> Panel:
        return self.render()

    def render(self) -> Panel:
        with self.lock:
            return self._render(self.clock())

    def _render(self, now: float) -> Panel:
        spend = self.campaign.spend
        budget = spend.budget
        head = Table.grid(padding=(0, 2))
        head.add_column(style="bold", no_wrap=True)
        head.add_column()
        elapsed = self._elapsed(now)
        clock = _clock(elapsed) + (f" / {_clock(budget.max_seconds)}" if budget.max_seconds else "")
        eta, binds = self.eta(now)
        if eta is not None and (self.rate(now) or not budget.max_evaluations):
            clock += f"   ETA {_clock(eta)} ({binds})"
        elif budget.max_evaluations:  # the rate is not known yet
            clock += "   ETA after the first evaluations" + (f" (at most {_clock(eta)})" if eta is not None else "")
        head.add_row("time", clock)
        if not self.setup_over:
            done, total = self.setup or (0, 0)
            if total:
                bar = ProgressBar(total=total, completed=done, width=20)
                head.add_row("setup", _row(bar, Text(f" {done}/{total}  scoring the seed programs, tuning the baselines")))
            else:
                head.add_row("setup", "loading the tasks and the seed programs")
        evals = f"{spend.evaluations}" + (f" / {budget.max_evaluations}" if budget.max_evaluations else "")
        rate = self.rate(now)
        evals += f"   {rate:.1f}/min" if rate else ""
        evals += f"   seeds {len(self.seeds_scored)}/{self.seeds_total} scored"
        if self.duplicates:
            evals += f"   {self.duplicates} duplicates skipped"
        head.add_row("evaluations", evals)
        head.add_row("best so far", self.best or "-")
        if self.jobs_running or self.jobs_done:
            slots = getattr(self.campaign.executor, "capacity", None)
            head.add_row("sandbox", f"{self.jobs_running} job{'s' * (self.jobs_running != 1)} running" + (f" on {slots} worker{'s' * (slots != 1)}" if slots else "")
                         + f", {self.jobs_done} done")
        now_doing = []
        if self.confirming is not None:
            now_doing.append(f"checking #{self.confirming} {self.labels.get(self.confirming, '')} on the validation tier")
        if self.in_evaluation:
            ids = ", ".join(f"#{pid} {lab}".rstrip() for pid, lab in list(self.in_evaluation.items())[:4])
            more = len(self.in_evaluation) - 4
            now_doing.append(f"evaluating {ids}" + (f" +{more}" if more > 0 else ""))
        if self.llm_requests or self.llm_timeouts:
            now_doing.append(f"LLM requests in flight: {len(self.llm_requests)}"
                             + (f" ({self.llm_timeouts} timed out so far)" if self.llm_timeouts else ""))
        if now_doing:
            head.add_row("now", "\n".join(now_doing))
        if not self.campaign.config.offline:
            head.add_row("spend", f"${spend.usd:.4f}  {spend.tokens:,} tokens  {spend.llm_calls} calls "
                                  f"({spend.cached_calls} cached)")
        fails = ", ".join(f"{k} {v}" for k, v in self.failures.most_common() if v) or "none"
        head.add_row("failures", fails)
        recent = Table(box=None, show_header=False, padding=(0, 1), expand=True)
        recent.add_column(no_wrap=True, style="dim", min_width=5)
        recent.add_column(no_wrap=True, min_width=10)
        recent.add_column(ratio=1, overflow="ellipsis", no_wrap=True)
        for at, event, label in list(self.recent):
            recent.add_row(_clock(at), _kind_label(event.kind), Text(_who(event, label) + _text(event)))
        return Panel(Group(head, Text(""), recent), title=f"discover run: {self.campaign.directory}",
                     title_align="left")


class _JobCounter:
    """A campaign's executor, telling a :class:`LiveView` when each job starts and ends."""

    def __init__(self, inner, view: LiveView):
        self.inner = inner
        self.view = view

    def __getattr__(self, name: str):  # capacity, device, close, ...: the wrapped executor's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def submit(self, job_name: str, payload: dict, timeout: float = 60.0):
        future = self.inner.submit(job_name, payload, timeout)
        self.view._job(1, 0)
        future.add_done_callback(lambda _: self.view._job(-1, 1))
        return future


def _row(bar, text) -> Table:
    grid = Table.grid()
    grid.add_column(no_wrap=True)
    grid.add_column()  # the words wrap in a narrow terminal rather than being cut
    grid.add_row(bar, text)
    return grid


def _clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` past an hour)."""
    seconds = int(max(0.0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _kind_label(kind: str) -> Text:
    return Text.from_markup({
        "new_best": "[bold green]new best[/]", "failure": "[red]failed[/]", "duplicate": "[dim]duplicate[/]",
        "evaluated": "[cyan]scored[/]", "proposal": "proposed", "heldout": "[magenta]test tier[/]",
        "note": "[yellow]note[/]", "setup": "setup", "confirming": "[blue]checking[/]",
        "llm_request": "[red]LLM[/]", "cancelled": "[dim]cancelled[/]",
    }.get(kind, kind))


def _event_line(event, label: str | None = None) -> str:
    name = {"new_best": "NEW BEST", "failure": "failed", "duplicate": "duplicate", "evaluated": "scored",
            "proposal": "proposed", "heldout": "test tier", "note": "note", "confirming": "checking",
            "llm_request": "LLM"}.get(event.kind, event.kind)
    if event.kind == "setup" and event.total:
        name = f"setup {event.done}/{event.total}"
    return f"[{name}] {_who(event, label)}{_text(event)}"


def _who(event, label: str | None) -> str:
    """``#7 mutation: `` before an event's text (nothing for campaign-wide events)."""
    if event.program_id is None:
        return ""
    return f"#{event.program_id} {label}: " if label else f"#{event.program_id} "


def _text(event) -> str:
    """The event's text without the ``#7 `` some notes begin with (the id is already shown)."""
    prefix = f"#{event.program_id} "
    return event.text[len(prefix):] if event.program_id is not None and event.text.startswith(prefix) else event.text


def print_summary(summary, campaign, console: Console) -> None:
    """The closing summary: best programs vs baselines, where things are, how to export."""
    from discover.summary import leaderboard

    console.print()
    headline = "interrupted" if summary.interrupted else summary.status
    console.print(f"[bold]Campaign {headline}:[/] {summary.stop_reason}")
    s = summary.spend
    line = (f"{summary.proposals} proposals, {s.get('evaluations', 0)} evaluated "
            f"({summary.counts.get('duplicate', 0)} duplicates skipped, {summary.counts.get('failed', 0)} failed) "
            f"in {summary.seconds:.0f} s")
    if not summary.offline:
        line += f"; LLM: {s.get('llm_calls', 0)} calls, {s.get('tokens_in', 0) + s.get('tokens_out', 0):,} tokens, ${s.get('usd', 0):.4f}"
    console.print(line)
    if summary.failure_counts:
        # counted per program with any failed run, most often a grid learning rate too high for
        # it: more than the programs that failed outright, which the line above counts
        console.print(f"programs with a failed run (often only at the grid's highest learning rates; "
                      f"{summary.counts.get('failed', 0)} failed outright), by reason: "
                      + ", ".join(f"{k} {v}" for k, v in summary.failure_counts.items()))
    console.print(leaderboard(campaign.archive, limit=8))
    where = summary.directory
    console.print(f"archive:  {where / 'archive.db'}", soft_wrap=True)
    console.print(f"browse:   discover archive list {where}", soft_wrap=True)
    console.print(f"report:   discover report {where} -o {where / 'report.html'}", soft_wrap=True)
    announced = [r for r in campaign.archive.programs(status="evaluated")
                 if r.proposer != "reference" and (r.meta or {}).get("announced")]
    if announced:
        best = max(announced, key=lambda r: r.confirmed_fitness)
        spread = best.meta.get("confirmed_spread") or 0.0
        console.print(f"[bold green]discovered:[/] #{best.id}, validation fitness {best.confirmed_fitness:.3f} ± "
                      f"{spread:.3f} (beats tuned AdamW beyond seed noise on workloads the search never saw"
                      + (f"; {best.meta['long_horizon_fitness']:.3f} at {best.meta.get('long_horizon_scale', 3):g}x the steps"
                         if best.meta.get("long_horizon_fitness") is not None else "") + ")")
        seeds = [r for r in campaign.archive.programs(status="evaluated")
                 if r.proposer == "reference" and r.name != "adamw" and r.confirmed_fitness is not None]
        top_seed = max(seeds, key=lambda r: r.confirmed_fitness, default=None)
        if top_seed is not None and top_seed.confirmed_fitness >= best.confirmed_fitness:
            console.print(f"          below the seed {top_seed.name or '#' + str(top_seed.id)}'s "
                          f"{top_seed.confirmed_fitness:.3f} on the validation tier: it beats tuned AdamW, "
                          "not the best seed program", soft_wrap=True)
        if best.heldout_fitness is None:
            # validation decides what is announced; the test tier is the check no decision read
            from sandbox.tasks import TIERS
            console.print(f"check:    discover eval {where}:{best.id} --tier test   (the test tier: "
                          f"{len(TIERS['test'])} unseen workloads, a few minutes; a win on a few small tasks often "
                          "does not hold there)", soft_wrap=True)
        console.print(f"export:   discover export {where}:{best.id} -o my_optimizer.py", soft_wrap=True)
    elif summary.best_id is not None:
        best = campaign.archive.program(summary.best_id)
        label = f" ({best.name})" if best.name else ""
        from discover.summary import verdict

        what = "a seed program" if best.proposer == "reference" else verdict(best)
        console.print(f"[bold]nothing discovered this time:[/] no new program beat tuned AdamW on the validation "
                      f"tier beyond seed noise. Best on validation: #{summary.best_id}{label}, "
                      f"{summary.best_fitness:.3f} ({what}).")
        console.print("next:     a larger budget (--max-evaluations), another --seed, or an LLM proposer "
                      "(--base-url, README 'LLM proposers')", soft_wrap=True)


def run_command(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="campaign TOML file"),
    preset: Optional[str] = typer.Option(None, "--preset", help="quick (a few minutes) or standard"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue the campaign in this directory"),
    seed: Optional[int] = typer.Option(None, "--seed", help="seed of every random choice (campaigns rerun identically)"),
    name: Optional[str] = typer.Option(None, "--name", help="campaign name (directory prefix)"),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", help="where campaign directories go"),
    max_evaluations: Optional[int] = typer.Option(None, "--max-evaluations", help="budget: programs evaluated"),
    max_seconds: Optional[float] = typer.Option(None, "--max-seconds", help="budget: wall-clock seconds"),
    max_usd: Optional[float] = typer.Option(None, "--max-usd", help="budget: dollars of LLM spend"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="budget: LLM tokens"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint (none: offline)"),
    model: Optional[str] = typer.Option(None, "--model", help="proposer model"),
    critic_model: Optional[str] = typer.Option(None, "--critic-model", help="critic model (TextGrad step)"),
    feedback: Optional[str] = typer.Option(None, "--feedback", help="none, scalar or directional"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N"),
    workers: Optional[int] = typer.Option(None, "--workers", help="sandbox worker processes"),
    executor: Optional[str] = typer.Option(None, "--executor", help="local or ray"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster (auto, ray://host:port)"),
    replay: bool = typer.Option(False, "--replay", help="answer LLM requests only from the campaign's response cache"),
    overrides: list[str] = typer.Option([], "--set", help="any config field: --set evaluation.steps_scale=0.5"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON (no live view)"),
) -> None:
    """Run a discovery campaign: propose programs, evaluate them in the sandbox, archive, repeat."""
    from discover.campaign import Campaign, campaign_dir_for_resume, preflight
    from discover.config import CampaignConfig, load_config, parse_override

    named = {
        ("seed",): seed, ("name",): name, ("output_dir",): output_dir,
        ("budget", "max_evaluations"): max_evaluations, ("budget", "max_seconds"): max_seconds,
        ("budget", "max_usd"): max_usd, ("budget", "max_tokens"): max_tokens,
        ("llm", "base_url"): base_url, ("llm", "proposer_model"): model, ("llm", "critic_model"): critic_model,
        ("search", "feedback"): feedback, ("evaluation", "device"): device, ("evaluation", "workers"): workers,
        ("evaluation", "executor"): executor, ("evaluation", "ray_address"): ray_address,
        ("llm", "cache"): "replay" if replay else None,
    }
    extra = [parse_override(o) for o in overrides]
    for path, value in named.items():
        if value is not None:
            node: dict = {}
            cursor = node
            for key in path[:-1]:
                cursor = cursor.setdefault(key, {})
            cursor[path[-1]] = value
            extra.append(node)
    if resume is not None:
        directory = campaign_dir_for_resume(resume)
        if config is not None or preset is not None:
            raise UserError("--resume continues with the campaign's own config.toml; drop --config/--preset "
                            "(budgets can still be raised with --max-evaluations etc.)")
        cfg = load_config(directory / "config.toml", overrides=extra)
        warn_missing_key(cfg)
        with _starting(cfg, as_json), _warnings_as_notes(_note_line):
            campaign = Campaign(cfg, directory, resume=True, checked=preflight(cfg))
    else:
        cfg: CampaignConfig = load_config(config, preset=preset or (None if config else "quick"), overrides=extra)
        warn_missing_key(cfg)
        with _starting(cfg, as_json), _warnings_as_notes(_note_line):
            campaign = Campaign.create(cfg)
    view = LiveView(campaign, Console(stderr=True) if as_json else console)
    view.watch_jobs()
    campaign.on_event = view.on_event
    from discover.campaign import Event

    with _warnings_as_notes(lambda text: view.on_event(Event("note", text=text))):
        summary = _run_in_view(campaign, view, as_json)
    if summary.interrupted:
        raise typer.Exit(130)  # what a shell expects of a program stopped by Ctrl-C


def _note_line(text: str) -> None:
    Console(stderr=True).print(f"note: {text}", soft_wrap=True, markup=False)


@contextmanager
def _warnings_as_notes(note: Callable[[str], None]):
    """Python warnings raised while a campaign starts and runs (an unpriced model, an unreadable
    cache entry) become one note line (``note(text)``) instead of a raw ``UserWarning`` with a
    file and line number."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, *_args, **_kw: _once(note, str(message))
        yield


_NOTED: set[str] = set()


def _once(note: Callable[[str], None], text: str) -> None:
    # the endpoint check and the campaign each have an LLM client: say a thing once per process
    if text not in _NOTED:
        _NOTED.add(text)
        note(text)


def _run_in_view(campaign, view, as_json: bool):
    try:
        if not as_json and console.is_terminal:
            # The view renders itself at every refresh: the clock ticks with or without events.
            with Live(console=console, get_renderable=view.render, refresh_per_second=2, transient=True) as live:
                view.live = live
                summary = campaign.run()
            view.live = None
        else:
            if not as_json:
                console.print(f"campaign directory: {campaign.directory}")
            summary = campaign.run()
        if as_json:
            print(json.dumps({
                "directory": str(summary.directory), "stop_reason": summary.stop_reason, "best_id": summary.best_id,
                "best_fitness": summary.best_fitness, "spend": summary.spend, "counts": summary.counts,
                "failure_counts": summary.failure_counts, "proposals": summary.proposals, "seconds": summary.seconds,
                "notes": summary.notes, "status": "interrupted" if summary.interrupted else summary.status},
                indent=2))
        else:
            print_summary(summary, campaign, console)
    finally:
        campaign.close()
    return summary


def _starting(cfg, quiet: bool):
    """A spinner while the sandbox workers start (and the LLM endpoint is checked): seconds
    with nothing on the screen otherwise."""
    from contextlib import nullcontext

    if quiet or not console.is_terminal:
        return nullcontext()
    what = "starting the sandbox workers" + ("" if cfg.offline else ", checking the LLM endpoint")
    return console.status(what)


def warn_missing_key(cfg) -> None:
    """One warning line when an LLM campaign has no API key for a remote endpoint."""
    if cfg.offline:
        return
    from discover.campaign import llm_settings
    from discover.llm import missing_key_warning

    warning = missing_key_warning(llm_settings(cfg, None))
    if warning:
        Console(stderr=True).print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


def llm_check_command(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="campaign TOML file"),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible endpoint"),
    model: Optional[str] = typer.Option(None, "--model", help="proposer model"),
    critic_model: Optional[str] = typer.Option(None, "--critic-model", help="critic model"),
    overrides: list[str] = typer.Option([], "--set", help="any config field: --set llm.api_key_env=MY_KEY"),
) -> None:
    """Send one small request to each configured model: does the endpoint answer, take the key,
    know the model? Exit code 0 if so; otherwise one line saying what is wrong and exit code 2."""
    from discover.campaign import preflight
    from discover.config import load_config, parse_override

    extra = [parse_override(o) for o in overrides]
    llm = {k: v for k, v in (("base_url", base_url), ("proposer_model", model), ("critic_model", critic_model)) if v}
    if llm:
        extra.append({"llm": llm})
    cfg = load_config(config, overrides=extra)
    warn_missing_key(cfg)
    for role, completion in preflight(cfg, force=True):
        console.print(f"ok: {role} model {completion.model!r} at {cfg.llm.base_url} answered in "
                      f"{completion.seconds:.2f} s ({completion.prompt_tokens + completion.completion_tokens} tokens)",
                      highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("llm-check")(llm_check_command)
