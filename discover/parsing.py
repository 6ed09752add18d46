"""Turning an LLM's answer into something the sandbox can check.

- :func:`extract_program` finds the candidate program in a full-program answer: a fenced
  code block (the one that defines ``update`` when there are several), a JSON object with a
  ``code``/``program`` field, or bare code with or without prose around it.
- :func:`parse_diff` reads SEARCH/REPLACE edit blocks (the aider / OpenEvolve format)::

      <<<<<<< SEARCH
      exact lines of the parent
      =======
      the lines that replace them
      >>>>>>> REPLACE

  and :func:`apply_diff` applies them in order: an exact match of whole lines first, then an
  exact substring, then a match that ignores indentation and blank lines (the replacement is
  re-indented to where it lands).
- :func:`extract_critique` cleans a TextGrad critic's prose answer.

Each raises :class:`ParseError` with a message meant to be sent back to the LLM verbatim (the
campaign archives it as an ``invalid_code`` failure). ``<think>...</think>`` sections, which
some local reasoning models emit, are ignored everywhere.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
import textwrap

from sandbox.contract import parse_ast

__all__ = ["ParseError", "apply_diff", "extract_critique", "extract_program", "parse_diff"]


class ParseError(ValueError):
    """The answer does not contain what was asked for; the message says what was expected."""


_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+.-]*)[^\n]*\n(?P<body>.*?)^[ \t]*(?P=fence)[ \t]*$",
    re.MULTILINE | re.DOTALL)
_OPEN_FENCE = re.compile(r"^[ \t]*(?:`{3,}|~{3,})[ \t]*(?P<lang>[\w+.-]*)[^\n]*\n(?P<body>.*)\Z", re.MULTILINE | re.DOTALL)
_PYTHON_LANGS = {"", "python", "py", "python3", "py3"}
_DEFINES = {
    "update": re.compile(r"^\s*def\s+update\s*\(", re.MULTILINE),
    "init": re.compile(r"^\s*def\s+init\s*\(", re.MULTILINE),
    "hparams": re.compile(r"^\s*HPARAMS\s*=", re.MULTILINE),
}
_CODE_START = re.compile(r"^(HPARAMS\s*=|def\s+\w+\s*\(|\"\"\"|'''|[A-Za-z_]\w*\s*=\s*[-+\d.({]|#)")
_JSON_FIELDS = ("code", "program", "source")
_SEARCH = re.compile(r"^[ \t]*<{5,9}[ \t]*SEARCH[ \t]*$")
_DIVIDER = re.compile(r"^[ \t]*={5,9}[ \t]*$")
_REPLACE = re.compile(r"^[ \t]*>{5,9}[ \t]*REPLACE[ \t]*$")

_EXPECTED_PROGRAM = "exactly one ```python code block with the full program (HPARAMS, init and update)"
_EXPECTED_DIFF = ("SEARCH/REPLACE blocks: a line `<<<<<<< SEARCH`, the exact lines to change, a line `=======`, "
                  "the new lines, a line `>>>>>>> REPLACE`")


def _without_thinking(text: str) -> str:
    return _THINK.sub("", text)


def _tidy(code: str) -> str:
    """Dedent, drop blank lines at both ends, end with one newline."""
    lines = textwrap.dedent(code.replace("\r\n", "\n")).split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _is_program_like(code: str) -> bool:
    """Python that parses and defines a function or HPARAMS (a prose sentence may parse too)."""
    try:
        tree = parse_ast(textwrap.dedent(code))
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(node, ast.FunctionDef)
               or (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "HPARAMS" for t in node.targets))
               for node in tree.body)


def _score(body: str) -> tuple[int, ...]:
    return tuple(int(bool(pattern.search(body))) for pattern in _DEFINES.values())


def _from_json(text: str) -> str | None:
    """The code field of a JSON object answer, if the text is one."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start:end + 1])
    except ValueError:
        return None
    if isinstance(data, dict):
        for name in _JSON_FIELDS:
            if isinstance(data.get(name), str) and data[name].strip():
                return data[name]
    return None


def _from_fences(text: str) -> str | None:
    blocks = [(m.group("lang").lower(), m.group("body")) for m in _FENCE.finditer(text)]
    if not blocks:
        opened = _OPEN_FENCE.search(text)  # an answer cut off before its closing fence
        if opened is not None:
            blocks = [(opened.group("lang").lower(), opened.group("body"))]
    candidates = [(lang, body) for lang, body in blocks if lang != "json" and body.strip()]
    if not candidates:
        return None
    defines_update = [(i, body) for i, (_, body) in enumerate(candidates) if _DEFINES["update"].search(body)]
    if defines_update:
        # The most complete program wins; among equals the last (answers often show "before", then "after").
        _, body = max(defines_update, key=lambda item: (_score(item[1]), item[0]))
        return body
    python = [body for lang, body in candidates if lang in _PYTHON_LANGS]
    return max(python, key=len) if python else None


def _from_bare_text(text: str) -> str | None:
    """Code without fences: the whole text, or the longest parseable run of lines in it."""
    if _is_program_like(text):
        return text
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if _CODE_START.match(line)][:8]
    for start in starts:
        for end in range(len(lines), start, -1):
            chunk = "\n".join(lines[start:end])
            if not _DEFINES["update"].search(chunk):
                break
            if _is_program_like(chunk):
                return chunk
    return None


def extract_program(text: str) -> str:
    """The candidate program in an LLM answer, tidied; :class:`ParseError` if there is none."""
    if not isinstance(text, str) or not text.strip():
        raise ParseError(f"the answer is empty; expected {_EXPECTED_PROGRAM}")
    text = _without_thinking(text).replace("\r\n", "\n")
    stripped = text.strip()
    if stripped.startswith("{") or re.match(r"^(`{3,}|~{3,})\s*json", stripped, re.IGNORECASE):
        inner = _from_json(stripped)
        if inner is not None:
            text = inner
    code = _from_fences(text) or _from_bare_text(text)
    if code is None or not code.strip():
        if any(_SEARCH.match(line) for line in text.split("\n")):
            raise ParseError(f"the answer contains SEARCH/REPLACE edits, but a full program was asked for; send {_EXPECTED_PROGRAM}")
        raise ParseError(f"the answer contains no Python code; expected {_EXPECTED_PROGRAM}")
    return _tidy(code)


# --- SEARCH/REPLACE diffs ------------------------------------------------------------------


def parse_diff(text: str) -> list[tuple[str, str]]:
    """The ``(search, replace)`` pairs of every SEARCH/REPLACE block in ``text``, in order."""
    if not isinstance(text, str) or not text.strip():
        raise ParseError(f"the answer is empty; expected {_EXPECTED_DIFF}")
    blocks: list[tuple[str, str]] = []
    search: list[str] = []
    replace: list[str] = []
    state = "outside"  # -> "search" -> "replace" -> "outside"
    for number, line in enumerate(_without_thinking(text).replace("\r\n", "\n").split("\n"), 1):
        block = len(blocks) + 1
        if _SEARCH.match(line):
            if state != "outside":
                raise ParseError(f"line {number}: block {block} is not finished (expected `=======` and "
                                 f"`>>>>>>> REPLACE`) when a new `<<<<<<< SEARCH` starts")
            state, search, replace = "search", [], []
        elif _DIVIDER.match(line) and state != "outside":
            if state == "replace":
                raise ParseError(f"line {number}: block {block} has a second `=======` line; "
                                 f"close it with `>>>>>>> REPLACE` first")
            state = "replace"
        elif _REPLACE.match(line):
            if state != "replace":
                raise ParseError(f"line {number}: `>>>>>>> REPLACE` without a matching "
                                 f"`<<<<<<< SEARCH` and `=======` before it")
            blocks.append(("\n".join(search), "\n".join(replace)))
            state = "outside"
        elif state == "search":
            search.append(line)
        elif state == "replace":
            replace.append(line)
    if state != "outside":
        raise ParseError(f"block {len(blocks) + 1} is not closed (the answer ends before `>>>>>>> REPLACE`)")
    if not blocks:
        raise ParseError(f"the answer contains no SEARCH/REPLACE blocks; expected {_EXPECTED_DIFF}")
    return blocks


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _find_lines(haystack: list[str], needle: list[str]) -> int:
    for i in range(len(haystack) - len(needle) + 1):
        if haystack[i:i + len(needle)] == needle:
            return i
    return -1


def _apply_tolerant(source: str, search: str, replace: str) -> str | None:
    """Match stripped non-blank lines; re-indent the replacement to the matched place."""
    lines = source.split("\n")
    wanted = [line.strip() for line in search.split("\n") if line.strip()]
    present = [(i, line.strip()) for i, line in enumerate(lines) if line.strip()]
    stripped = [text for _, text in present]
    at = _find_lines(stripped, wanted)
    if at < 0:
        return None
    first, last = present[at][0], present[at + len(wanted) - 1][0]
    have = _indent(lines[first])
    gave = _indent(next(line for line in search.split("\n") if line.strip()))
    new_lines = []
    for line in replace.split("\n"):
        if line.strip():
            body = line[len(gave):] if line.startswith(gave) else line.lstrip()
            line = have + body
        new_lines.append(line)
    return "\n".join(lines[:first] + new_lines + lines[last + 1:])


def apply_diff(source: str, blocks: list[tuple[str, str]]) -> str:
    """``source`` with each block's SEARCH lines replaced by its REPLACE lines, in order.

    Raises :class:`ParseError` naming the first block whose SEARCH lines are not in the
    program (as edited by the blocks before it) and the program line closest to it.
    """
    if not blocks:
        raise ParseError(f"no edits to apply; expected {_EXPECTED_DIFF}")
    result = source
    for number, (search, replace) in enumerate(blocks, 1):
        where = f"SEARCH/REPLACE block {number} of {len(blocks)}"
        if not search.strip():
            raise ParseError(f"{where} has an empty SEARCH section; copy the lines to change from the program")
        lines, search_lines = result.split("\n"), search.split("\n")
        at = _find_lines(lines, search_lines)
        if at >= 0:
            result = "\n".join(lines[:at] + replace.split("\n") + lines[at + len(search_lines):])
            continue
        if search in result:
            result = result.replace(search, replace, 1)
            continue
        edited = _apply_tolerant(result, search, replace)
        if edited is not None:
            result = edited
            continue
        first = next(line.strip() for line in search_lines if line.strip())
        close = difflib.get_close_matches(first, [line.strip() for line in lines if line.strip()], n=1, cutoff=0.0)
        hint = f"; the closest program line is {close[0]!r}" if close else ""
        raise ParseError(f"{where} does not match the program: its SEARCH line {first!r} is not there{hint}. "
                         f"Copy SEARCH lines exactly from the current program.")
    return result


# --- critiques -----------------------------------------------------------------------------

_PREAMBLE = re.compile(
    r"^\s*(sure|certainly|of course|absolutely|okay|ok|great|here('s| is| are)|below (is|are))\b[^\n]*[:.!]\s*$",
    re.IGNORECASE)
_SIGN_OFF = re.compile(r"^\s*(let me know|i hope|hope this|feel free|good luck|happy to help)\b", re.IGNORECASE)
_FENCE_LINE = re.compile(r"^[ \t]*(`{3,}|~{3,})[\w+.-]*[ \t]*$")


def extract_critique(text: str, max_chars: int = 3000) -> str:
    """The critic's advice as clean prose: no fence lines, pleasantries or thinking, at most
    ``max_chars`` characters (cut at a word boundary, marked with ``[...]``)."""
    if not isinstance(text, str):
        raise ParseError("the critic's answer is not text")
    lines = [line.rstrip() for line in _without_thinking(text).replace("\r\n", "\n").split("\n")
             if not _FENCE_LINE.match(line)]
    while lines and (not lines[0].strip() or _PREAMBLE.match(lines[0])):
        lines.pop(0)
    while lines and (not lines[-1].strip() or _SIGN_OFF.match(lines[-1])):
        lines.pop()
    critique = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if not critique:
        raise ParseError("the critic's answer is empty; expected a few sentences on what to change in the program and why")
    if len(critique) > max_chars:
        cut = critique[:max_chars]
        space = cut.rfind(" ")
        critique = (cut[:space] if space > max_chars // 2 else cut).rstrip() + " [...]"
    return critique
