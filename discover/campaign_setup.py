"""What a campaign needs before it starts: its directory, the LLM settings and the preflight
check of the endpoint, the executor, the batch size; and the directory a resume names."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from discover.config import CampaignConfig
from discover.errors import UserError
from sandbox.executor import ExecutorUnavailable, make_executor
from sandbox.jobbound import TimeBoundExecutor
from sandbox.population_executor import PopulationExecutor
from sandbox.tasks import suite as suite_tasks

CONFIG_FILE = "config.toml"


def new_campaign_dir(config: CampaignConfig) -> Path:
    """``<output_dir>/<name>-<YYYYmmdd-HHMMSS>`` (suffixed if taken) and a ``latest`` link to it."""
    root = Path(config.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    directory = root / f"{config.name}-{stamp}"
    n = 1
    while directory.exists():
        n += 1
        directory = root / f"{config.name}-{stamp}-{n}"
    directory.mkdir()
    latest = root / "latest"
    try:
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(directory.name)
    except OSError:
        pass  # filesystems without symlinks: `discover campaigns` still lists every directory
    return directory


def llm_settings(config: CampaignConfig, cache_dir: Path | None):
    """The LLM client settings a campaign's config asks for (``cache_dir`` None: no cache)."""
    from discover.llm import DEFAULT_PRICES, LLMSettings

    c = config.llm
    models = {"proposer": c.proposer_model}
    if c.critic_model:
        models["critic"] = c.critic_model
    return LLMSettings(
        models=models, base_url=c.base_url, api_key_env=c.api_key_env, temperature=c.temperature,
        max_tokens=c.max_tokens, max_tokens_param=c.max_tokens_param, timeout=c.timeout, max_attempts=c.max_attempts,
        max_concurrency=c.max_concurrency, backoff_base=c.backoff_base, stream=c.stream, cache_dir=cache_dir,
        cache_mode=c.cache if cache_dir is not None else "off",
        prices={**DEFAULT_PRICES, **{k: tuple(v) for k, v in c.prices.items()}})


def preflight(config: CampaignConfig, force: bool = False) -> list[tuple[str, Any]]:
    """One small live request per configured model before a campaign starts: a dead server, a
    rejected key or an unknown model is one :class:`UserError`, before anything is archived.
    Returns ``[(role, Completion)]`` for the campaign to charge and archive; nothing when the
    campaign is offline, replays its cache, or the config turns the check off (``force``
    checks anyway: ``discover llm-check``)."""
    if config.offline:
        if force:
            raise UserError("no LLM endpoint configured: set llm.base_url (or --base-url)")
        return []
    if not force and (config.llm.cache == "replay" or not config.llm.preflight):
        return []
    from discover.llm import LLMClient, LLMError

    client = LLMClient(llm_settings(config, None))
    roles = ["proposer"] + (["critic"] if config.llm.critic_model not in (None, config.llm.proposer_model) else [])
    checked = []
    for role in roles:
        try:
            checked.append((role, client.check(role)))
        except LLMError as exc:
            raise UserError(f"LLM check failed ({role} model {client.model_for(role)!r}): {exc}") from None
    return checked


def _make_executor(config: CampaignConfig, device: str):
    """The executor the config asks for; one that cannot be built here is the user's to fix.
    Evaluation jobs are bounded by a multiple of tuned AdamW's time on their task."""
    ev = config.evaluation
    options: dict[str, Any] = {"device": device}
    if ev.workers:
        options["size"] = ev.workers
    if ev.executor == "ray" and ev.ray_address:
        options["address"] = ev.ray_address
    try:
        executor = make_executor(ev.executor, **options)
    except ExecutorUnavailable as exc:
        raise UserError(str(exc)) from None
    bounded = TimeBoundExecutor(executor, factor=ev.job_time_factor, floor=ev.job_time_floor)
    if ev.population == "on" or (ev.population == "auto" and ev.executor == "local" and device.startswith("cuda")):
        return PopulationExecutor(bounded)
    return bounded


def in_flight_for(config: CampaignConfig, capacity: int) -> int:
    """Proposals per batch: ``search.in_flight`` when the config sets it; left at its default,
    enough programs to fill ``capacity`` executor slots (a program runs one job per task at a
    time). The result is recorded in config.toml, so the campaign reruns with the same batches."""
    search, ev = config.search, config.evaluation
    if "in_flight" in search.model_fields_set:
        return search.in_flight
    tasks = len(ev.tasks) or len(suite_tasks(ev.suite))
    return max(search.in_flight, capacity // max(1, tasks))


def campaign_dir_for_resume(path: str | os.PathLike) -> Path:
    directory = Path(path)
    if not (directory / CONFIG_FILE).is_file():
        raise UserError(f"{directory} is not a campaign directory (no {CONFIG_FILE}); "
                        "pass the directory `discover run` printed, e.g. campaigns/latest")
    return directory
