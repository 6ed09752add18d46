"""Program code as the report shows it: normalised diffs between a program and its parent, and
syntax-highlighted, escaped source."""

from __future__ import annotations

import ast
import difflib
import io
import keyword
import tokenize
from dataclasses import dataclass

from markupsafe import Markup, escape

from sandbox.contract import parse_ast


@dataclass
class DiffLine:
    kind: str  # add | del | hunk | ctx
    text: str


def normalised_code(code: str) -> str:
    """``code`` as the AST sees it (no comments or module docstring, one quoting style), so a
    diff shows what changed in behaviour, not in formatting; unparsable text is kept as is."""
    try:
        tree = parse_ast(code)
    except SyntaxError:
        return code
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        tree.body = body[1:]
    return ast.unparse(tree)


def code_diff(before: str, after: str, context: int = 2) -> list[DiffLine]:
    """A unified diff of two programs' normalised code, each line tagged for colouring."""
    lines = difflib.unified_diff(normalised_code(before).splitlines(), normalised_code(after).splitlines(),
                                 "parent", "child", lineterm="", n=context)
    out = []
    for line in lines:
        if line.startswith(("---", "+++")):
            continue
        kind = "hunk" if line.startswith("@@") else "add" if line.startswith("+") else \
            "del" if line.startswith("-") else "ctx"
        out.append(DiffLine(kind, line))
    return out


def highlight_python(code: str) -> Markup:
    """Escaped code with ``<span>`` classes for keywords, names, strings, numbers and comments."""
    lines = code.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    out: list[str] = []
    pos = 0
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return Markup(escape(code))
    for tok in tokens:
        (srow, scol), (erow, ecol) = tok.start, tok.end
        if srow > len(lines) or not tok.string:
            continue
        start = offsets[srow - 1] + scol
        end = offsets[min(erow, len(lines)) - 1] + ecol
        css = None
        if tok.type == tokenize.COMMENT:
            css = "c"
        elif tok.type == tokenize.STRING:
            css = "s"
        elif tok.type == tokenize.NUMBER:
            css = "n"
        elif tok.type == tokenize.NAME and keyword.iskeyword(tok.string):
            css = "k"
        elif tok.type == tokenize.NAME and tok.string in ("init", "update", "HPARAMS"):
            css = "f"
        if css is None or start < pos:
            continue
        out.append(str(escape(code[pos:start])))
        out.append(f'<span class="{css}">{escape(code[start:end])}</span>')
        pos = end
    out.append(str(escape(code[pos:])))
    return Markup("".join(out))
