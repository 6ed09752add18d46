"""SQLite store of programs, evaluations and lineage; de-duplication; export.

``archive.open(campaign_dir)`` returns an :class:`Archive`; see :mod:`archive.store`.
"""

from archive.store import (
    Archive,
    ArchiveError,
    Campaign,
    Evaluation,
    Failure,
    Job,
    LineageNode,
    LLMCall,
    ProgramRecord,
    Stage,
    open,
)

__all__ = [
    "Archive",
    "ArchiveError",
    "Campaign",
    "Evaluation",
    "Failure",
    "Job",
    "LineageNode",
    "LLMCall",
    "ProgramRecord",
    "Stage",
    "open",
]
