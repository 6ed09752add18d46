"""`discover archive list|show|diff|lineage|calls` and `discover campaigns`: browse what a campaign found.

A thin layer over :mod:`archive`: every command opens the archive read-only (a running campaign
can keep writing; nothing here ever modifies a file) and prints a table that fits the terminal,
or JSON with ``--json``. Without a campaign (``list DIR`` or ``--db DIR``) the archive is
``campaigns/latest`` (the link the campaign runner maintains), else the campaign under
``campaigns/`` written most recently. A program is ``ID``, ``best`` or ``DIR:ID``, so ``diff`` can
compare programs of two campaigns.
"""

from __future__ import annotations

import difflib
import json
import math
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from archive.resolve import (
    CAMPAIGNS_ROOT,
    LATEST_LINK,
    campaign_dirs,
    default_campaign_dir,
    find_program,
    last_write_time,
    parse_program_ref,
)
from archive.timings import program_times, time_breakdown, time_lines
from archive.store import (
    PROGRAM_STATUSES,
    SORT_KEYS,
    Archive,
    ArchiveError,
    LineageNode,
    ProgramRecord,
    db_path,
    effective_status,
    open_archive,
)
from discover.errors import UserError
from sandbox.contract import first_doc_line

WIDE = 150  # the wide layout adds ~60 columns of fields; below this the description would be squeezed out
"""From this many columns on, tables show their optional columns too."""
PREVIEW_LINES = 12
"""Lines of prompt, response and critique `show` prints without --full."""

DbOption = Annotated[Optional[Path], typer.Option(
    "--db", help="Campaign directory or archive.db file. Default: campaigns/latest, else the newest "
                 "campaign under campaigns/.", show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]
CampaignArgument = Annotated[Optional[Path], typer.Argument(
    help="Campaign directory or archive.db file (the same as --db).", show_default=False)]
PROGRAM_HELP = "ID, best, or DIR:ID for a program of another campaign (e.g. campaigns/latest:12)"


# --- plumbing -----------------------------------------------------------------------------


@contextmanager
def _user_errors() -> Iterator[None]:
    """Archive problems become one-line user errors (exit code 2, no traceback)."""
    try:
        yield
    except ArchiveError as exc:
        raise UserError(str(exc)) from None


@contextmanager
def _opened(db: Path | None) -> Iterator[Archive]:
    with _user_errors():
        location = db if db is not None else default_campaign_dir()
        with open_archive(location, readonly=True) as archive:
            yield archive


@contextmanager
def _opened_program(ref: str, db: Path | None) -> Iterator[tuple[Archive, ProgramRecord]]:
    """The archive holding the program ``ref`` names (``ID``, ``best`` or ``DIR:ID``; a bare id
    is looked up in ``--db``, else the default campaign) and the program's record."""
    with _user_errors():
        location, ident = parse_program_ref(ref, db)
        with _opened(location) as archive:
            yield archive, find_program(archive, ident)


def _campaign(campaign: Path | None, db: Path | None) -> Path | None:
    """The campaign named by the positional argument or ``--db`` (not both)."""
    if campaign is not None and db is not None:
        raise UserError("name the campaign once: either as an argument or with --db")
    return campaign if campaign is not None else db


def _console() -> Console:
    return Console(highlight=False)


Column = tuple[str, Optional[int], str]
"""(header, width, justify); width None marks the one column that takes the rest of the line."""


def _fitted_table(columns: list[Column], line_width: int, **options: Any) -> Table:
    """A borderless table whose rows are one line each and never wider than ``line_width``:
    fixed columns keep their width, the flexible one gets what is left (at least 8)."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, **options)
    fixed = sum(width for _, width, _ in columns if width is not None)
    rest = max(8, line_width - fixed - 3 * (len(columns) - 1))
    for header, width, justify in columns:
        size = {"min_width": width, "max_width": width} if width is not None else {"max_width": rest}
        table.add_column(header, justify=justify, no_wrap=True, overflow="ellipsis", **size)
    return table


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(_clean(data), indent=2, allow_nan=False, default=str))


def _number(value: Any, digits: int = 3) -> str:
    """A score or metric for a table cell; "-" when missing or NaN, as-is when not a number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.{digits}f}"


def _fitness(record: ProgramRecord) -> Text:
    if record.fitness is None:
        return Text("-", style="dim")
    text = Text(_number(record.fitness), style="green" if record.fitness >= 1.0 else "")
    if record.fitness_spread is not None and math.isfinite(record.fitness_spread):
        text.append(f" ±{record.fitness_spread:.2f}", style="dim")
    return text


STATUS_STYLES = {"evaluated": "green", "failed": "red", "rejected": "red", "duplicate": "dim", "pending": "yellow"}


def _status(record: ProgramRecord) -> Text:
    return Text(record.status, style=STATUS_STYLES.get(record.status, ""))


def _parents(record: ProgramRecord) -> str:
    return ",".join(str(p) for p in record.parent_ids) or "-"


def _first_doc_line(code: str) -> str:
    """The first line of the program's docstring, read from the AST (nothing runs)."""
    return "" if len(code) > 50_000 else first_doc_line(code)


def _description(record: ProgramRecord, last_failure: dict[int, str]) -> str:
    if record.status in ("failed", "rejected") and record.id in last_failure:
        return last_failure[record.id]
    if record.status == "duplicate" and record.duplicate_of is not None:
        return f"duplicate of #{record.duplicate_of}"
    doc = _first_doc_line(record.code)
    if record.name and doc:
        return f"{record.name}: {doc}"
    return record.name or doc or record.hash


def _last_failures(archive: Archive) -> dict[int, str]:
    return {f.program_id: f"{f.reason}: {f.message}" if f.message else f.reason for f in archive.failures()}


def _when(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return iso


def _task_scores(record: ProgramRecord) -> dict[str, dict[str, Any]]:
    """Per-task results as dicts with at least ``score`` (scores may be stored as bare numbers)."""
    out = {}
    for task, value in (record.scores or {}).items():
        out[task] = dict(value) if isinstance(value, dict) else {"score": value}
    return out


def _record_json(record: ProgramRecord, with_code: bool) -> dict[str, Any]:
    data = asdict(record)
    if not with_code:
        for key in ("code", "prompt", "response", "critique", "fingerprint"):
            data.pop(key)
    return data


# --- archive list -------------------------------------------------------------------------


def list_programs(
    campaign: CampaignArgument = None,
    db: DbOption = None,
    top: Annotated[int, typer.Option("--top", "-n", help="Show at most N programs (0: all).")] = 25,
    sort: Annotated[str, typer.Option("--sort", help="Order: fitness (best first) or date (newest first).")] = "fitness",
    status: Annotated[Optional[list[str]], typer.Option(
        "--status", help=f"Only programs with this status ({', '.join(PROGRAM_STATUSES)}); repeatable.",
        show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:
    """List archived programs: id, fitness ± seed spread, status, proposer, parents, description."""
    if sort not in SORT_KEYS:
        raise UserError(f"--sort must be one of {', '.join(SORT_KEYS)}, not {sort!r}")
    for s in status or ():
        if s not in PROGRAM_STATUSES:
            raise UserError(f"--status must be one of {', '.join(PROGRAM_STATUSES)}, not {s!r}")
    if top < 0:
        raise UserError("--top must be 0 (all) or a positive number")
    with _opened(_campaign(campaign, db)) as archive:
        records = archive.programs(top=top or None, sort=sort, status=status or None)
        total = archive.program_count(status or None)
        failures = _last_failures(archive)
        path = archive.path
    if as_json:
        _print_json([{**_record_json(r, with_code=False), "description": _description(r, failures)} for r in records])
        return
    console = _console()
    wide = console.width >= WIDE
    columns: list[Column] = [("id", 4, "right"), ("fitness", 11, "left"), ("status", 9, "left")]
    if wide:
        columns += [("stage", 9, "left"), ("valid.", 6, "right"), ("test", 6, "right")]
    columns += [("proposer", 14 if wide else 9, "left"), ("parents", 12 if wide else 7, "left")]
    if wide:
        columns += [("tokens", 7, "right"), ("created", 16, "left")]
    columns.append(("description", None, "left"))
    table = _fitted_table(columns, console.width, caption=str(path), caption_style="dim", caption_justify="left")
    for r in records:
        row: list[Any] = [str(r.id), _fitness(r), _status(r)]
        if wide:
            row += [r.stage or "-", _number(r.confirmed_fitness), _number(r.heldout_fitness)]
        row += [Text(r.proposer or "-"), _parents(r)]
        if wide:
            row += [str(r.tokens_in + r.tokens_out) if r.tokens_in or r.tokens_out else "-", _when(r.created_at)]
        row.append(escape(_description(r, failures)))
        table.add_row(*row)
    if not records:
        console.print(f"no programs in {path}" + (f" with status {', '.join(status)}" if status else ""))
        return
    console.print(table)
    if total > len(records):
        console.print(f"[dim]showing {len(records)} of {total} programs (--top 0 shows all)[/]")


# --- archive show -------------------------------------------------------------------------


def _chat_turns(text: str) -> list[tuple[str, str]] | None:
    """``[(role, content), ...]`` when ``text`` is a JSON list of chat messages, else None.
    Content given as OpenAI content parts is joined from their text parts."""
    try:
        messages = json.loads(text)
    except (TypeError, ValueError):
        return None
    if not (isinstance(messages, list) and messages
            and all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages)):
        return None
    turns = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
        turns.append((message["role"], "" if content is None else str(content)))
    return turns


def _preview(text: str, full: bool) -> str:
    lines = text.splitlines()
    if full or len(lines) <= PREVIEW_LINES:
        return text
    return "\n".join(lines[:PREVIEW_LINES]) + f"\n… ({len(lines) - PREVIEW_LINES} more lines; --full shows all)"


def _scores_table(record: ProgramRecord, width: int) -> Table | None:
    """Per-task score, the speed-up over each other tuned baseline, test metric, chosen lr."""
    tasks = _task_scores(record)
    if not tasks:
        return None
    wide = width >= WIDE
    baselines = sorted({b for entry in tasks.values() for b in (entry.get("vs_baselines") or {})} - {"adamw"})
    columns: list[Column] = [("task", min(20, max(len(t) for t in tasks)), "left"), ("score", 6, "right")]
    columns += [(f"vs\n{name}", max(6, len(name)), "right") for name in baselines]
    if wide:
        columns += [("test", 6, "right"), ("best lr", 7, "right")]
    table = _fitted_table(columns + [("status", None, "left")], width)
    for task, entry in tasks.items():
        score = entry.get("score")
        style = "green" if isinstance(score, (int, float)) and score >= 1.0 else ""
        vs = entry.get("vs_baselines") or {}
        status = str(entry.get("status") or "-")
        if entry.get("lr_at_edge"):
            status += " (lr at grid edge)"
        cells: list[Any] = [Text(task), Text(_number(score), style=style), *[_number(vs.get(b)) for b in baselines]]
        if wide:
            lr = entry.get("best_lr")
            cells += [_number(entry.get("test_metric")), f"{lr:.1e}" if isinstance(lr, (int, float)) else "-"]
        table.add_row(*cells, Text(status))
    return table


def _pack(parts: list[str], width: int, separator: str = " · ") -> str:
    """Join ``parts`` into lines no wider than ``width``, breaking only between parts."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + len(separator) + len(part) <= width:
            lines[-1] += separator + part
        else:
            lines.append(part)
    return "\n".join(lines)


def show_program(
    program: Annotated[str, typer.Argument(help=f"The program: {PROGRAM_HELP}.", show_default=False)],
    db: DbOption = None,
    full: Annotated[bool, typer.Option("--full", help="Print prompt, response and critique in full.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Show one program: code, per-task scores against the baselines, parents, the prompt and
    critique that produced it, and why it failed if it did."""
    with _opened_program(program, db) as (archive, record):
        failures = archive.failures(record.id)
        evaluations = archive.evaluations(record.id)
        calls = archive.llm_calls(record.id)
        times = program_times(archive, record.id)
    if as_json:
        _print_json({**_record_json(record, with_code=True),
                     "failures": [asdict(f) for f in failures],
                     "evaluations": len(evaluations), "seconds": times,
                     "llm_calls": [{k: v for k, v in asdict(c).items() if k not in ("prompt", "response")}
                                   for c in calls]})
        return
    console = _console()
    title = Text(f"program #{record.id}", style="bold")
    if record.name:
        title.append(f"  {record.name}", style="bold cyan")
    title.append("  ")
    title.append_text(_status(record))
    if record.stage:
        title.append(f" ({record.stage})", style="dim")
    console.print(title)
    facts = [f"fitness {_fitness(record).plain}"]
    if record.confirmed_fitness is not None:
        facts.append(f"validation {_number(record.confirmed_fitness)} ± {_number(record.meta.get('confirmed_spread') or 0)}")
    if record.meta.get("long_horizon_fitness") is not None:
        facts.append(f"at {record.meta.get('long_horizon_scale', 3):g}x steps {_number(record.meta['long_horizon_fitness'])}")
    if record.heldout_fitness is not None:
        facts.append(f"test {_number(record.heldout_fitness)}")
    if record.proposer != "reference" and "announced" in record.meta:
        facts.append("announced" if record.meta["announced"] else
                     "short-horizon, not announced" if record.meta.get("short_horizon") else "not announced")
    facts.append(f"proposer {record.proposer or '-'}")
    facts.append("parents " + (", ".join(f"#{p}" for p in record.parent_ids) or "none"))
    if record.duplicate_of is not None:
        facts.append(f"duplicate of #{record.duplicate_of}")
    facts.append(f"created {_when(record.created_at)}")
    if record.tokens_in or record.tokens_out:
        facts.append(f"tokens {record.tokens_in}+{record.tokens_out} (${record.cost_usd:.4f})")
    facts.append(f"{len(evaluations)} runs")
    facts.append(f"hash {record.hash}")
    console.print(escape(_pack(facts, console.width)))
    if times["by_stage"] or times["wall"]:
        console.print(escape(_pack(_time_facts(times), console.width)))
    for failure in failures:
        console.print(f"[bold red]failed[/] at {escape(failure.stage)}: [red]{escape(failure.reason)}[/]"
                      + (f" — {escape(failure.message)}" if failure.message else ""))
    scores = _scores_table(record, console.width)
    if scores is not None:
        console.print("[dim]score: speed-up over tuned AdamW (1.0 = as good) · vs X: speed-up over tuned X[/]")
        console.print(scores)
    console.print(Syntax(record.code, "python", line_numbers=True, word_wrap=True, theme="ansi_dark"))
    for label, text in (("critique", record.critique), ("prompt", record.prompt), ("response", record.response)):
        if not text:
            continue
        turns = _chat_turns(text) if label == "prompt" else None
        if turns is None:
            console.rule(f"[dim]{label}[/]", align="left", style="dim")
            console.print(escape(_preview(text, full)))
            continue
        # A prompt is stored as the request's JSON messages: show it as the conversation it was.
        for role, content in turns:
            console.rule(f"[dim]prompt · {escape(role)}[/]", align="left", style="dim")
            console.print(escape(_preview(content, full)))
    if calls:
        tokens = sum(c.tokens_in + c.tokens_out for c in calls)
        console.print(f"[dim]{len(calls)} LLM call(s), {tokens} tokens: "
                      + escape(", ".join(f"{c.role}/{c.model}→{c.outcome or '?'}" for c in calls)) + "[/]")


def _time_facts(times: dict[str, Any]) -> list[str]:
    """Worker seconds per stage and per task, and evaluation wall time per tier."""
    facts = ["worker s: " + ", ".join(f"{stage} {s:.2f}" for stage, s in times["by_stage"].items())]
    facts += [f"{task} {s:.2f} s" for task, s in times["by_task"].items()]
    facts.append("wall: " + ", ".join(f"{tier} {s:.2f} s" for tier, s in times["wall"].items()))
    facts.append(f"{times['runs']} runs executed, {times['cached_runs']} cached")
    return facts


# --- archive diff -------------------------------------------------------------------------


def _score_deltas(a: ProgramRecord, b: ProgramRecord) -> dict[str, dict[str, float | None]]:
    sa, sb = _task_scores(a), _task_scores(b)
    out = {}
    for task in list(sa) + [t for t in sb if t not in sa]:
        va, vb = sa.get(task, {}).get("score"), sb.get(task, {}).get("score")
        delta = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
        out[task] = {"a": va, "b": vb, "delta": delta}
    return out


def _label(record: ProgramRecord, ref: str) -> str:
    """``#ID``, or the reference as typed when it names another campaign."""
    return ref if ":" in ref else f"#{record.id}"


def _headers(a: ProgramRecord, b: ProgramRecord) -> tuple[str, str]:
    """Short column headers for the score table (``A``/``B`` when both ids are the same)."""
    return ("A", "B") if a.id == b.id else (f"#{a.id}", f"#{b.id}")


def diff_programs(
    a: Annotated[str, typer.Argument(help=f"The 'before' program: {PROGRAM_HELP}.", show_default=False)],
    b: Annotated[str, typer.Argument(help=f"The 'after' program: {PROGRAM_HELP}.", show_default=False)],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Unified diff of two programs' code, and how each task's score changed from A to B."""
    with _opened_program(a, db) as (_, ra), _opened_program(b, db) as (_, rb):
        label_a, label_b = _label(ra, a), _label(rb, b)
    diff = list(difflib.unified_diff(ra.code.splitlines(), rb.code.splitlines(),
                                     fromfile=f"{label_a} {ra.name or ''}".strip(),
                                     tofile=f"{label_b} {rb.name or ''}".strip(), lineterm=""))
    deltas = _score_deltas(ra, rb)
    if as_json:
        _print_json({"a": ra.id, "b": rb.id, "diff": "\n".join(diff), "fitness": {"a": ra.fitness, "b": rb.fitness},
                     "tasks": deltas})
        return
    console = _console()
    if not diff:
        console.print(f"{label_a} and {label_b} have identical code")
    styles = (("+++", "bold"), ("---", "bold"), ("@@", "cyan"), ("+", "green"), ("-", "red"))
    for line in diff:
        style = next((s for prefix, s in styles if line.startswith(prefix)), "")
        console.print(Text(line, style=style))
    table = _fitted_table([("task", None, "left"), *[(h, 7, "right") for h in _headers(ra, rb)],
                           ("change", 7, "right")], min(console.width, 60))
    fa, fb = ra.fitness, rb.fitness
    rows = [("fitness (geo-mean)", {"a": fa, "b": fb, "delta": fb - fa if fa is not None and fb is not None else None})]
    for task, entry in [*rows, *deltas.items()]:
        delta = entry["delta"]
        style = "" if delta is None or delta == 0 else ("green" if delta > 0 else "red")
        table.add_row(Text(task), _number(entry["a"]), _number(entry["b"]),
                      Text("-" if delta is None else f"{delta:+.3f}", style=style))
    console.print(table)


# --- archive lineage ----------------------------------------------------------------------


def _node_label(record: ProgramRecord) -> Text:
    label = Text(f"#{record.id} ", style="bold")
    label.append_text(_fitness(record))
    label.append(f"  {record.proposer or '-'}", style="cyan")
    if record.status != "evaluated":
        label.append("  ")
        label.append_text(_status(record))
    description = record.name or _first_doc_line(record.code)
    if description:
        label.append(f"  {description}", style="dim")
    return label


def _tree(node: LineageNode, tree: Tree) -> None:
    for parent in node.parents:
        label = _node_label(parent.program)
        if parent.repeated:
            label.append("  (shown above)", style="dim italic")
        _tree(parent, tree.add(label))
    for missing in node.missing_parent_ids:
        tree.add(Text(f"#{missing} (not in this archive)", style="red"))


def _lineage_json(node: LineageNode) -> dict[str, Any]:
    r = node.program
    return {"id": r.id, "name": r.name, "fitness": r.fitness, "fitness_spread": r.fitness_spread,
            "proposer": r.proposer, "status": r.status, "repeated": node.repeated,
            "missing_parent_ids": node.missing_parent_ids, "parents": [_lineage_json(p) for p in node.parents]}


def lineage(
    program: Annotated[str, typer.Argument(help=f"The program whose ancestors to show: {PROGRAM_HELP}.",
                                           show_default=False)],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """The tree of a program's ancestors, with fitness and proposer at each node."""
    with _opened_program(program, db) as (archive, record):
        root = archive.lineage(record.id)
    if as_json:
        _print_json(_lineage_json(root))
        return
    tree = Tree(_node_label(root.program), guide_style="dim")
    _tree(root, tree)
    _console().print(tree)


# --- campaigns ----------------------------------------------------------------------------


def _spend(spend: dict[str, Any], compact: bool = False) -> str:
    """Dollars, tokens and evaluations spent (only the first of them when ``compact``)."""
    parts = []
    usd = float(spend.get("usd") or 0.0)
    if usd:
        parts.append(f"${usd:.2f}" if usd >= 0.01 else f"${usd:.4f}")
    tokens = int(spend.get("tokens_in", 0)) + int(spend.get("tokens_out", 0))
    if tokens:
        parts.append(f"{tokens / 1000:.1f}k tok" if tokens >= 1000 else f"{tokens} tok")
    if spend.get("evaluations"):
        parts.append(f"{spend['evaluations']} evals")
    return (parts[0] if compact else " ".join(parts)) if parts else "-"


def _campaign_summary(path: Path) -> dict[str, Any]:
    """One row of `discover campaigns`; an unreadable archive is reported, not fatal."""
    row: dict[str, Any] = {"dir": str(path), "name": path.name,
                           "updated": datetime.fromtimestamp(last_write_time(path)).isoformat(timespec="seconds")}
    try:
        with open_archive(path, readonly=True) as archive:
            campaigns = archive.campaigns()
            best = archive.winner()
            row.update(programs=archive.program_count(), best_id=best.id if best else None,
                       best_fitness=best.fitness if best else None,
                       best_confirmed=best.confirmed_fitness if best else None, failures=archive.failure_counts())
            if campaigns:
                c = campaigns[-1]
                # A SIGKILLed campaign could not record its end: its dead process or silent
                # heartbeat says it stopped.
                row.update(campaign=c.name, status=effective_status(c), recorded_status=c.status, seed=c.seed,
                           spend=c.spend, created=c.created_at)
            else:
                row.update(status="empty", spend={})
    except ArchiveError as exc:
        row.update(status="error", error=str(exc), spend={})
    return row


def campaigns(
    root: Annotated[Path, typer.Argument(help="Directory holding campaign directories.")] = CAMPAIGNS_ROOT,
    as_json: JsonOption = False,
) -> None:
    """All campaigns under a directory: status, programs, best fitness, spend, last write."""
    if not root.exists():
        raise UserError(f"no directory {root} (campaigns are written to campaigns/<name>-<timestamp>/)")
    if not root.is_dir():
        if db_path(root).is_file():
            raise UserError(f"{root} is a file; pass the directory that holds campaign directories")
        raise UserError(f"{root} is not a directory")
    found = campaign_dirs(root)
    if (root / "archive.db").is_file():
        found = [root] + found
    latest = (root / LATEST_LINK).resolve() if (root / LATEST_LINK).exists() else None
    rows = [{**_campaign_summary(p), "latest": p.resolve() == latest} for p in found]
    if as_json:
        _print_json(rows)
        return
    console = _console()
    if not rows:
        console.print(f"no campaigns under {root}/ (`discover run` writes them there)")
        return
    wide = console.width >= WIDE
    # Narrow terminals leave out the last write time (the name already holds the start time),
    # so that the name, which the other commands take, is shown whole.
    columns: list[Column] = [("campaign", None, "left"), ("status", 16 if wide else 8, "left"), ("progs", 5, "right"),
                             ("best", 11 if wide else 10, "right"), ("spend", 28 if wide else 9, "left")]
    if wide:
        columns += [("updated", 16, "left"), ("seed", 6, "right"), ("failures", 30, "left")]
    table = _fitted_table(columns, console.width)
    for row in rows:
        name = Text(row["name"] + (" *" if row["latest"] else ""), style="bold" if row["latest"] else "")
        status = Text(row["status"], style={"running": "yellow", "finished": "green", "failed": "red",
                                            "error": "red", "stopped (killed)": "red"}.get(row["status"], ""))
        value = row.get("best_confirmed") if row.get("best_confirmed") is not None else row.get("best_fitness")
        best = "-" if value is None else f"{value:.3f} #{row['best_id']}"
        cells = [name, status, str(row.get("programs", "-")), best, _spend(row["spend"], compact=not wide)]
        if wide:
            failures = row.get("failures") or {}
            cells += [row["updated"].replace("T", " ")[:16], str(row.get("seed", "-")),
                      Text(", ".join(f"{k} {v}" for k, v in failures.items()) or "-")]
        table.add_row(*cells)
    console.print(table)
    for row in rows:
        if row["status"] == "error":
            console.print(f"[red]{escape(row['name'])}: {escape(row['error'])}[/]")
    notes = ["best: validation-tier fitness (search fitness if nothing was confirmed)"]
    if latest is not None:
        notes.append("* = campaigns/latest")
    for note in notes:
        console.print(f"[dim]{note}[/]")


def time_report(
    campaign: CampaignArgument = None,
    db: DbOption = None,
    tasks: Annotated[int, typer.Option("--tasks", min=1, help="Tasks to list (the most expensive first).")] = 12,
    as_json: JsonOption = False,
) -> None:
    """Where a campaign's time went: worker seconds per stage (probe, screen, select, measure,
    validation, long_horizon, test) and per task, busy seconds per worker, idle worker time."""
    with _opened(_campaign(campaign, db)) as archive:
        found = archive.campaigns()
        breakdown = time_breakdown(archive, found[-1].id if found else None)
    if as_json:
        _print_json(breakdown.to_dict())
        return
    console = _console()
    for line in time_lines(breakdown, tasks=tasks):
        console.print(escape(line))


# --- archive calls ------------------------------------------------------------------------


def list_calls(
    campaign: CampaignArgument = None,
    db: DbOption = None,
    all_calls: Annotated[bool, typer.Option("--all", help="Every LLM call, not only those that made no program.")] = False,
    as_json: JsonOption = False,
) -> None:
    """LLM calls that made no program: failed, timed-out or cancelled requests (`show ID` has a program's own)."""
    with _opened(_campaign(campaign, db)) as archive:
        calls = [c for c in archive.llm_calls() if all_calls or c.program_id is None]
        path = archive.path
    if as_json:
        _print_json([{k: v for k, v in asdict(c).items() if k != "prompt"} for c in calls])
        return
    console = _console()
    if not calls:
        console.print(f"no LLM calls{'' if all_calls else ' without a program'} in {path}")
        return
    columns: list[Column] = [("id", 4, "right"), ("program", 7, "right"), ("role", 9, "left"), ("outcome", 9, "left"),
                             ("tokens", 11, "right"), ("created", 16, "left"), ("answer", None, "left")]
    table = _fitted_table(columns, console.width, caption=str(path), caption_style="dim", caption_justify="left")
    for c in calls:
        answer = " ".join((c.response or "").split()) or "-"
        table.add_row(str(c.id), str(c.program_id) if c.program_id is not None else "-", escape(c.role),
                      escape(c.outcome), f"{c.tokens_in:,}+{c.tokens_out:,}", _when(c.created_at), escape(answer))
    console.print(table)


# --- registration -------------------------------------------------------------------------


def register(app: typer.Typer) -> None:
    """Add `archive list|show|diff|lineage` and `campaigns` to the CLI."""
    group = typer.Typer(name="archive", no_args_is_help=True,
                        help="Browse a campaign's archive of programs (read-only; safe while a campaign runs).")
    group.command("list")(list_programs)
    group.command("show")(show_program)
    group.command("diff")(diff_programs)
    group.command("lineage")(lineage)
    group.command("time")(time_report)
    group.command("calls")(list_calls)
    app.add_typer(group, name="archive")
    app.command("campaigns")(campaigns)
