"""`discover grammar`: print the grammar of a proposer's answer, for your own local server."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from discover.errors import UserError


def grammar_command(
    fmt: str = typer.Option("gbnf", "--format", "-f", help="gbnf (llama.cpp; vLLM's xgrammar), lark (vLLM with outlines) "
                                                           "or regex (vLLM guided_regex; a line-level approximation)"),
    kind: str = typer.Option("full", "--kind", "-k", help="full, diff, crossover or critique"),
    parent: Optional[Path] = typer.Option(None, "--parent", help="--kind diff: the program being edited (SEARCH "
                                                                 "sections are then runs of its own lines)"),
    depth: int = typer.Option(3, "--depth", min=1, max=4, help="regex: brackets and calls nest at most depth - 1 deep"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="write it to this file instead of stdout"),
) -> None:
    """Print the grammar a proposer's answer must follow, generated from the candidate contract.

    Send it with each request to a local server (llama-server: the request field "grammar"; vLLM: "guided_grammar") so that a small model writes only programs the sandbox accepts. discover.constrained sends it from Python (llm.constrained: auto, gbnf, vllm, ollama, off).
    """  # noqa: E501  (one line per paragraph: the --help text reflows it to the terminal)
    from discover import grammar
    from sandbox import contract

    if fmt not in grammar.FORMATS:
        raise UserError(f"unknown --format {fmt!r}; choose one of: {', '.join(grammar.FORMATS)}")
    if kind not in grammar.KINDS:
        raise UserError(f"unknown --kind {kind!r}; choose one of: {', '.join(grammar.KINDS)}")
    source = None
    if parent is not None:
        if kind != "diff":
            raise UserError("--parent is for --kind diff (the program the SEARCH/REPLACE blocks edit)")
        if not parent.is_file():
            raise UserError(f"--parent: {parent} is not a file")
        source = parent.read_text(encoding="utf-8")
        contract.validate(source)  # a program the contract rejects cannot be a parent
    text = grammar.render(kind, fmt, parent=source, depth=depth)
    if output is None:
        typer.echo(text, nl=not text.endswith("\n"))
    else:
        output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        typer.echo(f"wrote the {kind} grammar ({fmt}, {len(text) / 1024:.0f} KiB) to {output}", err=True)


def register(app: typer.Typer) -> None:
    app.command("grammar")(grammar_command)
