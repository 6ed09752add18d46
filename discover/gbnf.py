"""Read GBNF text back, recognise strings with it, and derive random strings from it.

The grammar a server receives is GBNF text, so the property tests check that text, not the
Python objects it was printed from: :func:`parse` turns GBNF into :mod:`discover.grammar`'s
nodes, :class:`Recogniser` decides whether a string is in the language (every possible end of
every rule at every position, memoised: a general recogniser for grammars without left
recursion, which GBNF forbids anyway), and :func:`derive` draws a random derivation.
"""

from __future__ import annotations

import random
import re
import sys
from typing import Callable

from discover.grammar import Alt, Chars, Grammar, Lit, Node, Ref, Rep, Seq

__all__ = ["GBNFError", "Recogniser", "derive", "parse"]


class GBNFError(ValueError):
    """The text is not GBNF this reader understands."""


_NAME = re.compile(r"[a-zA-Z0-9-]+")
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "[": "[", "]": "]"}


class _Reader:
    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def skip(self, newlines: bool = True) -> None:
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            elif ch in " \t\r" or (newlines and ch == "\n"):
                self.pos += 1
            else:
                return

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos:self.pos + n]

    def fail(self, what: str) -> GBNFError:
        line = self.text.count("\n", 0, self.pos) + 1
        return GBNFError(f"GBNF line {line}: {what} at {self.text[self.pos:self.pos + 30]!r}")

    def char(self) -> str:
        ch = self.text[self.pos]
        if ch != "\\":
            self.pos += 1
            return ch
        code = self.text[self.pos + 1:self.pos + 2]
        if code in _SIMPLE_ESCAPES:
            self.pos += 2
            return _SIMPLE_ESCAPES[code]
        width = {"x": 2, "u": 4, "U": 8}.get(code)
        if width is None:
            raise self.fail("unknown escape")
        digits = self.text[self.pos + 2:self.pos + 2 + width]
        self.pos += 2 + width
        return chr(int(digits, 16))

    def rule_starts_here(self) -> bool:
        match = _NAME.match(self.text, self.pos)
        if not match:
            return False
        after = match.end()
        while after < len(self.text) and self.text[after] in " \t":
            after += 1
        return self.text.startswith("::=", after)


def parse(text: str, root: str = "root") -> Grammar:
    """GBNF text -> :class:`~discover.grammar.Grammar`."""
    reader = _Reader(text)
    rules: dict[str, Node] = {}
    reader.skip()
    while reader.pos < len(reader.text):
        match = _NAME.match(reader.text, reader.pos)
        if not match:
            raise reader.fail("expected a rule name")
        reader.pos = match.end()
        reader.skip(newlines=False)
        if reader.peek(3) != "::=":
            raise reader.fail("expected ::=")
        reader.pos += 3
        rules[match.group()] = _alternatives(reader, top=True)
        reader.skip()
    missing = {name for node in rules.values() for name in _refs(node)} - set(rules)
    if missing:
        raise GBNFError(f"undefined rule(s): {', '.join(sorted(missing))}")
    return Grammar(rules, root)


def _refs(node: Node) -> set[str]:
    if isinstance(node, Ref):
        return {node.name}
    if isinstance(node, (Seq, Alt)):
        return set().union(*(_refs(i) for i in node.items))
    if isinstance(node, Rep):
        return _refs(node.item)
    return set()


def _alternatives(reader: _Reader, top: bool) -> Node:
    options = [_sequence(reader, top)]
    while reader.peek() == "|":
        reader.pos += 1
        options.append(_sequence(reader, top))
    return options[0] if len(options) == 1 else Alt(tuple(options))


def _sequence(reader: _Reader, top: bool) -> Node:
    items: list[Node] = []
    while True:
        # A rule's body may continue on the next line; a new `name ::=` ends it.
        reader.skip(newlines=True)
        if reader.pos >= len(reader.text) or reader.peek() in "|)" or (top and reader.rule_starts_here()):
            break
        items.append(_postfix(reader, _primary(reader)))
    if not items:
        raise reader.fail("empty alternative")
    return items[0] if len(items) == 1 else Seq(tuple(items))


def _primary(reader: _Reader) -> Node:
    ch = reader.peek()
    if ch == '"':
        reader.pos += 1
        out = []
        while reader.peek() != '"':
            if reader.pos >= len(reader.text):
                raise reader.fail("unterminated string")
            out.append(reader.char())
        reader.pos += 1
        return Lit("".join(out))
    if ch == "[":
        reader.pos += 1
        negated = reader.peek() == "^"
        reader.pos += negated
        ranges = []
        while reader.peek() != "]":
            if reader.pos >= len(reader.text):
                raise reader.fail("unterminated character class")
            lo = reader.char()
            hi = lo
            if reader.peek() == "-" and reader.peek(2)[1:] != "]":
                reader.pos += 1
                hi = reader.char()
            ranges.append((lo, hi))
        reader.pos += 1
        return Chars(tuple(ranges), negated)
    if ch == "(":
        reader.pos += 1
        inner = _alternatives(reader, top=False)
        reader.skip()
        if reader.peek() != ")":
            raise reader.fail("expected )")
        reader.pos += 1
        return inner
    match = _NAME.match(reader.text, reader.pos)
    if match:
        reader.pos = match.end()
        return Ref(match.group())
    raise reader.fail("unexpected character")


def _postfix(reader: _Reader, node: Node) -> Node:
    while True:
        ch = reader.peek()
        if ch in ("?", "*", "+"):
            reader.pos += 1
            node = Rep(node, *{"?": (0, 1), "*": (0, None), "+": (1, None)}[ch])
        elif ch == "{":
            end = reader.text.index("}", reader.pos)
            body = reader.text[reader.pos + 1:end]
            reader.pos = end + 1
            lo, _, hi = body.partition(",")
            node = Rep(node, int(lo), int(lo) if "," not in body else (int(hi) if hi.strip() else None))
        else:
            return node


class Recogniser:
    """Membership in a grammar's language: ``Recogniser(g).accepts(text, rule="program")``."""

    def __init__(self, grammar: Grammar):
        self.grammar = grammar

    def accepts(self, text: str, rule: str | None = None) -> bool:
        self._text = text
        self._memo: dict[tuple[str, int], frozenset[int]] = {}
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 20000))
        try:
            return len(text) in self._rule(rule or self.grammar.root, 0)
        finally:
            sys.setrecursionlimit(limit)

    def _rule(self, name: str, pos: int) -> frozenset[int]:
        key = (name, pos)
        found = self._memo.get(key)
        if found is None:
            self._memo[key] = frozenset()  # left recursion would find nothing new here
            found = self._memo[key] = frozenset(self._ends(self.grammar.rules[name], pos))
        return found

    def _ends(self, node: Node, pos: int) -> set[int]:
        text = self._text
        if isinstance(node, Lit):
            return {pos + len(node.text)} if text.startswith(node.text, pos) else set()
        if isinstance(node, Chars):
            return {pos + 1} if pos < len(text) and text[pos] in node else set()
        if isinstance(node, Ref):
            return set(self._rule(node.name, pos))
        if isinstance(node, Seq):
            current = {pos}
            for item in node.items:
                current = set().union(*(self._ends(item, p) for p in current)) if current else set()
                if not current:
                    break
            return current
        if isinstance(node, Alt):
            return set().union(*(self._ends(item, pos) for item in node.items))
        if isinstance(node, Rep):
            reached = {pos} if node.lo == 0 else set()
            frontier, count = {pos}, 0
            seen: set[int] = set()
            while frontier and (node.hi is None or count < node.hi):
                count += 1
                frontier = set().union(*(self._ends(node.item, p) for p in frontier))
                if node.hi is None:
                    frontier -= seen  # unbounded: a position reached before adds nothing new
                    seen |= frontier
                if count >= node.lo:
                    reached |= frontier
            return reached
        raise TypeError(node)


_PRINTABLE = [chr(c) for c in range(32, 127)]
_CACHE: dict[int, tuple[Grammar, dict[str, int]]] = {}  # a grammar's rule heights, computed once


def _heights(grammar: Grammar) -> dict[str, int]:
    """Each rule's least derivation height (how deep the shortest way to finish it goes)."""
    inf = 10**9
    heights = {name: inf for name in grammar.rules}

    def height(node: Node) -> int:
        if isinstance(node, (Lit, Chars)):
            return 0
        if isinstance(node, Ref):
            return min(inf, heights[node.name] + 1)
        if isinstance(node, Seq):
            return max(height(i) for i in node.items)
        if isinstance(node, Alt):
            return min(height(i) for i in node.items)
        if isinstance(node, Rep):
            return 0 if node.lo == 0 else height(node.item)
        raise TypeError(node)

    changed = True
    while changed:
        changed = False
        for name, node in grammar.rules.items():
            h = height(node)
            if h < heights[name]:
                heights[name], changed = h, True
    return heights


def derive(grammar: Grammar, rng: random.Random, rule: str | None = None, *, max_depth: int = 60,
           hook: Callable[[str], str | None] | None = None,
           on_enter: Callable[[str], None] | None = None,
           on_exit: Callable[[str, str], None] | None = None,
           allow: Callable[[Node], bool] | None = None, continue_p: float = 0.3) -> str:
    """A random string of the grammar. Below ``max_depth`` rule levels each alternative and
    repetition count is drawn at random (counts geometric, mean about one beyond the least);
    the deeper, the likelier the shortest alternative and the fewer the repeats; past it the
    derivation takes the shortest way out.

    ``hook(rule)`` may return the text of a rule instead of deriving it (the caller vouches
    that it is in the rule's language); ``on_enter``/``on_exit`` see each rule as it starts and
    ends; ``allow(alternative)`` may veto alternatives (a vetoed choice is taken only if every
    alternative is vetoed). A test uses them to keep names consistent with their definitions.
    """
    heights = _CACHE.get(id(grammar))
    if heights is None or heights[0] is not grammar:
        heights = _CACHE[id(grammar)] = (grammar, _heights(grammar))
    heights = heights[1]

    def node_height(node: Node) -> int:
        if isinstance(node, (Lit, Chars)):
            return 0
        if isinstance(node, Ref):
            return heights[node.name] + 1
        if isinstance(node, Seq):
            return max(node_height(i) for i in node.items)
        if isinstance(node, Alt):
            return min(node_height(i) for i in node.items)
        return 0 if node.lo == 0 else node_height(node.item)

    def gen(node: Node, depth: int, out: list[str]) -> None:
        if isinstance(node, Lit):
            out.append(node.text)
        elif isinstance(node, Chars):
            if node.negated:
                out.append(rng.choice([c for c in _PRINTABLE if c in node]))
            else:
                lo, hi = rng.choice(node.ranges)
                out.append(chr(rng.randint(ord(lo), ord(hi))))
        elif isinstance(node, Ref):
            name = node.name
            if on_enter:
                on_enter(name)
            given = hook(name) if hook else None
            if given is not None:
                text = given
            else:
                inner: list[str] = []
                gen(grammar.rules[name], depth + 1, inner)
                text = "".join(inner)
            out.append(text)
            if on_exit:
                on_exit(name, text)
        elif isinstance(node, Seq):
            for item in node.items:
                gen(item, depth, out)
        elif isinstance(node, Alt):
            options = [i for i in node.items if allow is None or allow(i)] or list(node.items)
            if depth >= max_depth or rng.random() < depth / max_depth:
                least = min(node_height(i) for i in options)
                options = [i for i in options if node_height(i) == least]
            gen(rng.choice(options), depth, out)
        elif isinstance(node, Rep):
            count = node.lo
            shrink = 1 - depth / max_depth  # deeper, fewer repeats: the expected size stays finite
            if depth < max_depth:
                while (node.hi is None or count < node.hi) and rng.random() < shrink * (continue_p if count >= max(node.lo, 1) else 0.7):
                    count += 1
            for _ in range(count):
                gen(node.item, depth, out)
        else:
            raise TypeError(node)

    out: list[str] = []
    gen(Ref(rule or grammar.root), 0, out)
    return "".join(out)
