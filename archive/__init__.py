"""SQLite store of programs, evaluations and lineage; de-duplication; export."""
