"""`discover run`: a discovery campaign with a live view and a closing summary."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from discover.errors import UserError

console = Console()


class LiveView:
    """What a campaign is doing right now: progress, best so far, spend, failures, recent work."""

    def __init__(self, campaign, console: Console):
        self.campaign = campaign
        self.console = console
        self.recent: deque = deque(maxlen=8)
        self.failures: Counter = Counter()
        self.best: tuple[int, float] | None = None
        self.evaluated = 0
        self.duplicates = 0
        self.started = time.perf_counter()
        self.lock = threading.Lock()
        self.live: Live | None = None

    def on_event(self, event) -> None:
        with self.lock:
            if event.kind == "failure":
                self.failures[event.reason or "crashed"] += 1
            elif event.kind == "duplicate":
                self.duplicates += 1
            elif event.kind == "evaluated":
                self.evaluated += 1
            elif event.kind == "new_best":
                self.best = (event.program_id, event.fitness)
            self.recent.append(event)
        if self.live is None:  # not a terminal: one plain line per event, for logs and CI
            self.console.print(_event_line(event), highlight=False)
        else:
            self.live.update(self.render())

    def render(self) -> Panel:
        spend = self.campaign.spend
        budget = spend.budget
        head = Table.grid(padding=(0, 2))
        head.add_column(style="bold")
        head.add_column()
        evals = f"{spend.evaluations}" + (f" / {budget.max_evaluations}" if budget.max_evaluations else "")
        head.add_row("evaluations", f"{evals}   (duplicates skipped: {self.duplicates})")
        best_id, best = self.campaign.best_confirmed()
        head.add_row("best (confirmed)", "-" if best_id is None else f"#{best_id}  fitness {best:.3f}")
        elapsed = spend.seconds
        limit = f" / {budget.max_seconds:.0f} s" if budget.max_seconds else ""
        head.add_row("time", f"{elapsed:.0f} s{limit}")
        if not self.campaign.config.offline:
            head.add_row("spend", f"${spend.usd:.4f}  {spend.tokens:,} tokens  {spend.llm_calls} calls "
                                  f"({spend.cached_calls} cached)")
        fails = ", ".join(f"{k} {v}" for k, v in self.failures.most_common() if v) or "none"
        head.add_row("failures", fails)
        recent = Table(box=None, show_header=False, padding=(0, 1))
        recent.add_column(width=9, no_wrap=True)
        recent.add_column(overflow="ellipsis", no_wrap=True)
        for event in list(self.recent):
            recent.add_row(_kind_label(event.kind), (f"#{event.program_id} " if event.program_id else "") + event.text)
        return Panel(Group(head, Text(""), recent), title=f"discover run: {self.campaign.directory}",
                     title_align="left")


def _kind_label(kind: str) -> str:
    return {
        "new_best": "[bold green]new best[/]", "failure": "[red]failed[/]", "duplicate": "[dim]duplicate[/]",
        "evaluated": "[cyan]scored[/]", "proposal": "proposed", "heldout": "[magenta]held-out[/]",
        "note": "[yellow]note[/]", "reference": "reference",
    }.get(kind, kind)


def _event_line(event) -> str:
    label = {"new_best": "NEW BEST", "failure": "failed", "duplicate": "duplicate", "evaluated": "scored",
             "proposal": "proposed", "heldout": "held-out", "note": "note"}.get(event.kind, event.kind)
    who = f"#{event.program_id} " if event.program_id else ""
    return f"[{label}] {who}{event.text}"


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
        console.print("programs with failures, by reason: " + ", ".join(f"{k} {v}" for k, v in summary.failure_counts.items()))
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
        campaign = Campaign(cfg, directory, resume=True, checked=preflight(cfg))
    else:
        cfg: CampaignConfig = load_config(config, preset=preset or (None if config else "quick"), overrides=extra)
        warn_missing_key(cfg)
        campaign = Campaign.create(cfg)
    view = LiveView(campaign, Console(stderr=True) if as_json else console)
    campaign.on_event = view.on_event
    try:
        if not as_json and console.is_terminal:
            with Live(view.render(), console=console, refresh_per_second=4, transient=True) as live:
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
    if summary.interrupted:
        raise typer.Exit(130)  # what a shell expects of a program stopped by Ctrl-C


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
