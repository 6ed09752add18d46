"""Campaign configuration: a TOML file validated by pydantic, every field overridable.

Precedence, lowest first: the preset (`quick` or `standard`), the TOML file, then CLI overrides
(``--set evaluation.steps_scale=0.5`` or the named flags of ``discover run``). Unknown or
mistyped fields are errors that name the field, never silently ignored.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from discover.errors import UserError
from sandbox.evaluate import DEFAULT_LR_GRID


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LLMConfig(_Strict):
    """Where proposals come from. With no ``base_url`` the campaign runs offline."""

    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. https://api.openai.com/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    proposer_model: str = "gpt-4o-mini"
    critic_model: str | None = Field(None, description="model for TextGrad critiques (default: proposer_model)")
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    max_tokens: int | None = Field(None, gt=0, description="answer tokens per request (default 2048; 1024 for a "
                                                            "local endpoint, so a runaway answer cannot hold it)")
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = Field(
        "max_tokens", description="request field for max_tokens (OpenAI reasoning models want max_completion_tokens)")
    timeout: float = Field(120.0, gt=0, description="seconds per request")
    max_attempts: int = Field(5, ge=1, description="attempts per request (retries on 429/5xx/timeouts)")
    max_concurrency: int | None = Field(None, ge=1, description="LLM requests in flight at once (default 4; 1 for a "
                                                                "local endpoint: a llama.cpp server has one slot)")
    backoff_base: float = Field(1.0, gt=0, description="first retry wait in seconds (doubles each retry, plus jitter)")
    prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="model -> (USD per 1M input tokens, USD per 1M output tokens)")
    cache: Literal["off", "read_write", "replay"] = "read_write"
    stream: bool | None = Field(None, description="stream answers (default: on for a local endpoint, so a request "
                                                  "given up closes its stream and the server stops computing it)")
    compact_prompt: Literal["auto", "on", "off"] = Field(
        "auto", description="short prompts for a small context (system prompt ~400 tokens, fewer programs shown); "
                            "auto = on when the server reports a context under 8192 tokens")
    constrained: Literal["auto", "gbnf", "vllm", "ollama", "off"] = Field(
        "auto", description="send the answer's grammar (discover/constrained.py): auto = when the endpoint is local "
                            "or says it serves llama.cpp, vLLM or Ollama; gbnf, vllm, ollama = that dialect; off")
    preflight: bool = Field(True, description="one small request per model before the campaign: a dead "
                                              "endpoint, a rejected key or an unknown model stops it at once")

    @field_validator("compact_prompt", mode="before")
    @classmethod
    def _compact_bool(cls, value: Any) -> Any:
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


class BudgetConfig(_Strict):
    """Hard limits; the campaign ends cleanly with a summary when the first one is reached."""

    max_evaluations: int | None = Field(40, ge=1, description="candidate programs evaluated")
    max_seconds: float | None = Field(None, gt=0, description="wall-clock seconds")
    max_usd: float | None = Field(None, ge=0, description="dollars spent on LLM calls")
    max_tokens: int | None = Field(None, ge=1, description="LLM tokens, input plus output")


class EvaluationConfig(_Strict):
    suite: Literal["search"] = Field(
        "search", description="the tier parents are selected on (validation decides what is announced; test is "
                              "reported only: neither can pick parents)")
    task_modules: list[str] = Field(default_factory=list, description=(
        "your own tasks: .py files (relative to the working directory) or importable module names that define "
        "sandbox.tasks.Task subclasses or call register_task; loaded before `tasks` is checked, and by every worker"))
    tasks: list[str] = Field(default_factory=list,
                             description="search on exactly these tasks, NAME or NAME@VARIANT (default: the search tier)")
    validation_tasks: list[str] = Field(default_factory=list,
                                        description="confirm on exactly these tasks (default: the validation tier)")
    test_tasks: list[str] = Field(default_factory=list, description="report on exactly these tasks (default: the test tier)")
    selection_seeds: list[int] = [0, 1]
    measure_seeds: list[int] = [100, 101]
    confirm_seeds: list[int] = Field([200, 201, 202], description="fresh seeds of the validation tier")
    test_seeds: list[int] = Field([300, 301], description="fresh seeds of the test tier")
    long_horizon_scale: float = Field(3.0, ge=1, le=4, description=(
        "before a program is announced it is re-scored on the validation tier with this many times the steps; "
        "a rule that falls behind tuned AdamW there is flagged short-horizon and not announced (1: no check)"))
    lr_grid: list[float] = Field(
        default_factory=lambda: list(DEFAULT_LR_GRID),
        description="learning rates tried for every program and baseline alike (absolute, log-spaced)")
    screen: bool = True
    halving: bool = Field(True, description=(
        "successive halving inside LR selection: on the screened tasks only the better half of the LRs (by the "
        "screen's seed-0 runs) runs the other seeds; elsewhere every LR trains to 1/4 of the budget and the better "
        "half goes on. Over 1,581 program-task pairs of the reference library it changed 0.9% of picks and saved "
        "33% of selection run-steps (benchmarks/funnel.py)"))
    screen_threshold: float = Field(0.3, ge=0)
    steps_scale: float = Field(1.0, gt=0, le=4)
    device: str = "auto"
    workers: int | None = Field(None, ge=1, description="worker processes (default: CPU cores, or one per core per GPU, at most 8 per GPU)")
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    job_timeout: float = Field(300.0, gt=0, description="the most seconds any job may run")
    job_time_factor: float = Field(
        10.0, gt=0, description="an evaluation job may take this many times tuned AdamW's time on its task")
    job_time_floor: float = Field(30.0, gt=0, description="seconds every evaluation job may take, however cheap its task")
    population: Literal["auto", "on", "off"] = Field("auto", description=(
        "population batching: runs of several candidates waiting for a worker on the same task go to one worker job, "
        "one batched pass (results identical to one job each); auto: on CUDA, where small steps are launch-bound; off "
        "on CPU, where whole quick campaigns ran within noise of it (0.95x-1.4x on 2 shared cores, "
        "benchmarks/campaign_throughput.py), although 8 candidates in flight score 1.2-1.7x faster with it "
        "(benchmarks/throughput.py)"))
    test_tier: bool = Field(True, validation_alias=AliasChoices("test_tier", "heldout"),
                            description="score the final best programs and the baselines on the test tier (reported only)")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        raise ValueError("device must be auto, cpu, cuda or cuda:N")

    @field_validator("lr_grid")
    @classmethod
    def _grid(cls, value: list[float]) -> list[float]:
        if len(value) < 3 or any(not lr > 0 for lr in value) or len(set(value)) != len(value):
            raise ValueError("the LR grid needs at least 3 distinct positive learning rates")
        return sorted(value)

    @field_validator("task_modules")
    @classmethod
    def _load_task_modules(cls, value: list[str]) -> list[str]:
        # Loading registers the tasks in this process, so the task names below check against them.
        from sandbox.tasks import TaskModuleError, canonical_module_ref, load_task_module

        try:
            for ref in value:
                load_task_module(ref)
            return [canonical_module_ref(ref) for ref in value]
        except TaskModuleError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _user_task_tiers(self) -> "EvaluationConfig":
        # Searching on your own tasks: confirm on their @1 variants and report on their @2
        # variants (workloads the search never saw) unless the tiers are named explicitly; the
        # built-in tiers say nothing about a workload of yours.
        from sandbox.tasks import parse_task_spec, task_module_of

        own = [parse_task_spec(spec)[0] for spec in self.tasks]
        own = list(dict.fromkeys(n for n in own if task_module_of(n) is not None))
        if own and not self.validation_tasks:
            self.__dict__["validation_tasks"] = [f"{n}@1" for n in own]
        if own and not self.test_tasks:
            self.__dict__["test_tasks"] = [f"{n}@2" for n in own]
        return self

    @field_validator("tasks", "validation_tasks", "test_tasks")
    @classmethod
    def _known_tasks(cls, value: list[str]) -> list[str]:
        from sandbox.tasks import parse_task_spec, task_names

        names = []
        for spec in value:
            try:
                names.append(parse_task_spec(spec)[0])
            except ValueError as exc:
                raise ValueError(str(exc)) from None
        unknown = [t for t in names if t not in task_names()]
        if unknown:
            raise ValueError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(task_names())}")
        return value

    @field_validator("selection_seeds")
    @classmethod
    def _two_seeds(cls, value: list[int]) -> list[int]:
        # One selection seed picks LRs that fail on fresh seeds often enough to fake a 2x win.
        if len(value) < 2:
            raise ValueError("choose the learning rate on at least two selection seeds")
        return value


class SearchConfig(_Strict):
    proposers: dict[str, float] = Field(
        default_factory=lambda: {"mutation": 1.0},
        description="proposer kind -> weight: mutation, full, diff, textgrad, crossover")
    feedback: Literal["none", "scalar", "directional"] = "directional"
    seed_programs: list[str] = Field(
        default_factory=lambda: ["adamw", "adam", "lion", "sgd_momentum", "signum", "rmsprop"],
        description="programs the archive starts from: reference names (adamw), candidate files (path.py) or "
                    "archived programs (campaign_dir:ID); checked before the campaign starts")
    in_flight: int = Field(2, ge=1, description="proposals being evaluated at once")
    final_checks: int = Field(3, ge=0, description=(
        "at the end, this many of the best candidates that beat tuned AdamW on the search tier but were never "
        "checked are checked on the validation tier (only a would-be best is checked as it comes)"))
    selection: Literal["pareto", "random"] = Field(
        "pareto", description="pareto: parents from the Pareto front over per-task scores; random: "
                              "parents drawn uniformly from the seed programs (the no-selection control)")
    mutation_edits: int = Field(2, ge=1, le=8, description="edits per offline mutation (at most)")
    parse_retries: int = Field(1, ge=0, le=3, description="re-asks in the same conversation after a bad answer")
    top_k_in_prompt: int = Field(5, ge=1, le=20)
    pipeline: bool | None = Field(
        None, description="generate the next batch's proposals while this batch is evaluated "
                          "(default: on for LLM proposers, off for the offline proposer)")
    max_stalled_proposals: int = Field(
        60, ge=1, description="stop after this many proposals in a row that were all failures or duplicates")

    @field_validator("proposers")
    @classmethod
    def _known_proposers(cls, value: dict[str, float]) -> dict[str, float]:
        from discover.proposers import PROPOSERS

        unknown = [k for k in value if k not in PROPOSERS]
        if unknown:
            raise ValueError(f"unknown proposer kind {unknown[0]!r}; known: {', '.join(PROPOSERS)}")
        if any(not w >= 0 for w in value.values()):  # `not >=` also catches NaN
            raise ValueError("proposer weights must be >= 0")
        if not any(w > 0 for w in value.values()):
            raise ValueError("at least one proposer needs a positive weight")
        return value

    @field_validator("seed_programs")
    @classmethod
    def _known_seeds(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one seed program is needed: the population starts from them")
        for entry in value:
            seed_source(entry)  # raises ValueError naming the entry
        return value


def seed_source(entry: str) -> tuple[str, str]:
    """``(name, source)`` of a seed program: a reference name (``adamw``), a candidate file
    (``path.py``, named by its stem) or an archived program (``campaign_dir:ID``, named
    ``campaign:ID``), resolved as `discover export` and `discover eval` resolve programs; the
    program must pass the contract. Raises ``ValueError`` with one line naming the entry."""
    from archive.export import ExportError, resolve_source
    from sandbox.contract import CandidateError, load_program
    from sandbox.references import reference_names

    if entry in reference_names():
        from sandbox.references import reference_source

        return entry, reference_source(entry)
    if ":" not in entry and not entry.endswith(".py"):
        raise ValueError(f"unknown seed program {entry!r}: not a reference ({', '.join(sorted(reference_names()))}), "
                         "a .py file or an archived program (campaign_dir:ID)")
    try:
        found = resolve_source(entry)
        load_program(found.source)
    except ExportError as exc:
        raise ValueError(f"seed program {entry!r}: {exc}") from None
    except CandidateError as exc:
        raise ValueError(f"seed program {entry!r} breaks the program contract: {exc}") from None
    if ":" in entry and not entry.endswith(".py"):
        location, _, ident = entry.rpartition(":")
        return f"{Path(location).name}:{ident}", found.source
    # A file's name must not pass for a reference: baselines are found by reference name.
    name = found.name if found.name not in reference_names() else f"{found.name}_file"
    return name, found.source


class CampaignConfig(_Strict):
    name: str = "campaign"
    seed: int = 0
    output_dir: str = "campaigns"
    llm: LLMConfig = Field(default_factory=LLMConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)

    @property
    def offline(self) -> bool:
        return not self.llm.base_url


PRESETS: dict[str, dict[str, Any]] = {
    # The README demo: about a minute on 2 cores; shows the whole loop (screen, search, validation
    # checks, the announce rule), and honestly announces nothing when nothing beats tuned AdamW.
    "quick": {
        "name": "quick",
        # An evaluation count, not a clock, so a rerun with the same --seed is the same campaign
        # whatever the machine's load (about 4-5 minutes on 2 cores); the clock is only a backstop.
        "budget": {"max_evaluations": 90, "max_seconds": 900},
        # Four cheap search tasks and their validation variants: the full tiers take a few minutes a program.
        "evaluation": {"steps_scale": 0.5, "lr_grid": [1e-4, 1e-3, 1e-2, 0.1, 1.0], "test_tier": False,
                       "tasks": ["noisy_quadratic", "logreg_separable", "mlp_digits", "linreg_illcond"],
                       "validation_tasks": ["noisy_quadratic@1", "logreg_separable@1", "mlp_digits@1",
                                            "linreg_illcond@1"],
                       "long_horizon_scale": 2.0,
                       "confirm_seeds": [200, 201]},
        "search": {"in_flight": 2},
    },
    "standard": {
        "name": "standard",
        "budget": {"max_evaluations": 400, "max_seconds": 7200},
    },
}


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``a.b.c=value`` -> nested dict; the value is parsed as JSON/TOML-ish, else kept a string."""
    if "=" not in text:
        raise UserError(f"override {text!r} must look like section.field=value")
    path, raw = text.split("=", 1)
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
    out: dict[str, Any] = {}
    node = out
    keys = path.strip().split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return out


def load_config(path: str | Path | None = None, preset: str | None = None,
                overrides: list[dict[str, Any]] | None = None) -> CampaignConfig:
    """Build a validated config from a preset, a TOML file and overrides (in that order)."""
    data: dict[str, Any] = {}
    if preset:
        if preset not in PRESETS:
            raise UserError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
        data = _merge(data, PRESETS[preset])
    if path is not None:
        path = Path(path)
        if path.is_dir():
            # A campaign directory: rerun it from the config it saved.
            if not (path / "config.toml").is_file():
                raise UserError(f"{path} is a directory, not a config file (a campaign directory holds config.toml)")
            path = path / "config.toml"
        if not path.is_file():
            raise UserError(f"config file {path} does not exist")
        try:
            data = _merge(data, tomllib.loads(path.read_text(encoding="utf-8")))
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{path} is not valid TOML: {exc}") from None
    for extra in overrides or []:
        data = _merge(data, extra)
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(_describe(exc, path)) from None


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = f" in {path}" if path else ""
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown field `{field}`")
        else:
            problems.append(f"`{field}`: {err['msg'].removeprefix('Value error, ')}")
    return f"invalid campaign config{where}: " + "; ".join(problems)


def to_toml(config: CampaignConfig) -> str:
    """The config as TOML text (stored with the campaign so it can be rerun)."""
    lines: list[str] = []
    data = config.model_dump(mode="json")

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    for key, v in scalars.items():
        lines.append(f"{key} = {value(v)}")
    for section, body in data.items():
        if not isinstance(body, dict):
            continue
        lines.append(f"\n[{section}]")
        nested = {}
        for key, v in body.items():
            if v is None:
                continue
            if isinstance(v, dict):
                nested[key] = v
            else:
                lines.append(f"{key} = {value(v)}")
        for key, table in nested.items():
            lines.append(f"\n[{section}.{key}]")
            for k, v in table.items():
                lines.append(f"{json.dumps(k)} = {value(v)}")
    return "\n".join(lines) + "\n"
