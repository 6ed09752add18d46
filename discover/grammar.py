"""Grammars of what each proposer may answer, generated from the candidate contract.

A small local model asked for a program writes prose, half a program or Python the sandbox
rejects (issue 19: 0 valid programs in 26 answers from a 135M model). Constrained decoding
lets the server sample only tokens that keep the answer inside a grammar, so every answer
parses. The grammar here is *built*, not written: the call forms come from
:data:`sandbox.vocabulary.OPS` (name and arity of every op), the operators, argument lists,
loop bounds and literal limits from :mod:`sandbox.contract`, so an op added to the vocabulary
is in the grammar (and in validation, export and prompts) at once.

The grammar is a context-free approximation of the contract. It enforces the module layout
(docstring, ``HPARAMS`` with a positive ``lr`` first, number constants, helpers, ``init``,
``update``), the exact signatures, 4-space indentation, the allowed statements and operators,
each op's arity, bounded literal loops nested at most ``MAX_LOOP_DEPTH`` deep, identifiers that
are not keywords and do not redefine ops, and ``hp.name`` only inside ``update``, and it
bounds the answer's size (names, nesting, operands, statements, prose) so that a small model's
answer ends before ``max_tokens``. What a context-free grammar cannot know is left to the
validator, which still checks every answer: whether a name read was assigned, whether ``hp.x``
is in HPARAMS, whether a helper called is defined, and recursion.

The grammar sent with a proposal is *scoped* (:class:`Scope`) to the names of the programs it
starts from, which narrows those gaps to one: functions assign and read the parents' names,
call their helpers, read ``hp.`` keys with a known default (which
:func:`discover.constrained.repair` declares), and a diff replaces whole statements of one body.
What is left (a parent's name read but never assigned) the validator names and the proposer
re-asks.

One grammar object is emitted in several forms (:func:`render`):

* ``gbnf``  llama.cpp's grammar format (llama-server, llama-cpp-python; vLLM's xgrammar reads it too)
* ``lark``  the same grammar as a Lark EBNF (vLLM's ``guided_grammar`` with the outlines backend)
* ``regex`` a regular approximation, expressions nested at most ``depth`` deep (vLLM's
  ``guided_regex``; Ollama's JSON-schema ``pattern`` uses it over the JSON-escaped text)

Kinds: ``full`` (a fresh program: optional short prose, then one python block), ``crossover``
(the same answer shape), ``diff`` (SEARCH/REPLACE blocks whose SEARCH lines, given the parent,
are runs of the parent's own lines and whose REPLACE lines are each a line the program grammar
allows), ``critique`` (plain prose, bounded in lines and characters, no code fences).
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import keyword
from dataclasses import dataclass
from typing import Union

from sandbox import contract, vocabulary

__all__ = ["FORMATS", "KINDS", "Grammar", "Scope", "build", "hp_defaults", "render"]

KINDS = ("full", "diff", "crossover", "critique")
FORMATS = ("gbnf", "lark", "regex")

INDENT = "    "
MAX_BLOCK_LEVEL = 4  # function body at level 1; if/for bodies up to three levels further in
MAX_DOC_LINES = 30
MAX_SCOPED_DOC_LINES = 3
MAX_DOC_LINE_CHARS = 200
MAX_LINE_CHARS = 120
# Bounds on the answer's size. The contract's own limits (8,000 characters, 3,000 syntax nodes)
# are far above what a proposal needs, and a small model under a grammar that lets it go on
# does go on: a 1,000-character identifier, an expression of 40 nested calls, prose until
# max_tokens (measured with SmolLM2-135M: 4 of 6 answers cut at 512 tokens). Every reference
# program fits well inside these (the tests check it); the answer then ends before max_tokens.
MAX_NAME_CHARS = 24
MAX_NESTING = 4  # brackets (calls, parentheses, dicts) nested in one expression
MAX_OPERANDS = 8  # operands of one chain of operators (a + b - c ...)
MAX_NESTED_OPERANDS = 4  # the same inside brackets (a line's size grows with their product)
MAX_STATEMENTS = 16  # statements in one block
MAX_HELPERS = 2  # helper functions in each of the three places the layout allows them
MAX_CONSTANTS = 8
MAX_HPARAMS = 16
MAX_INTRO_LINES = 2
MAX_INTRO_CHARS = 200
MAX_DIFF_BLOCKS = 3
MAX_SEARCH_LINES = 6  # a small model otherwise copies the whole parent into SEARCH, then REPLACE
MAX_REPLACE_LINES = 10
MAX_REPLACE_STATEMENTS = 6  # in a structured diff's REPLACE section
CRITIQUE_LINE_CHARS = 200
LARK_MAX_BOUND = 1


# --- the grammar's own small AST -----------------------------------------------------------


@dataclass(frozen=True)
class Lit:
    text: str


@dataclass(frozen=True)
class Chars:
    """A character class: ``ranges`` of (first, last) characters, or everything but them."""

    ranges: tuple[tuple[str, str], ...]
    negated: bool = False

    def __contains__(self, char: str) -> bool:
        return any(lo <= char <= hi for lo, hi in self.ranges) != self.negated


@dataclass(frozen=True)
class Ref:
    name: str


@dataclass(frozen=True)
class Seq:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Alt:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Rep:
    item: Node
    lo: int
    hi: int | None  # None: unbounded


Node = Union[Lit, Chars, Ref, Seq, Alt, Rep]


def _node(x: Node | str) -> Node:
    return Lit(x) if isinstance(x, str) else x


def seq(*items: Node | str) -> Node:
    nodes = tuple(_node(i) for i in items)
    return nodes[0] if len(nodes) == 1 else Seq(nodes)


def alt(*items: Node | str) -> Node:
    nodes = tuple(_node(i) for i in items)
    return nodes[0] if len(nodes) == 1 else Alt(nodes)


def opt(*items: Node | str) -> Node:
    return Rep(seq(*items), 0, 1)


def star(*items: Node | str) -> Node:
    return Rep(seq(*items), 0, None)


def plus(*items: Node | str) -> Node:
    return Rep(seq(*items), 1, None)


def rep(item: Node | str, lo: int, hi: int | None) -> Node:
    return Rep(_node(item), lo, hi)


_CONTROLS = (("\x00", "\x08"), ("\n", "\x1f"), ("\x7f", "\x7f"))


def text_chars(excluded: str = "") -> Chars:
    """Any character but control characters (a tab is fine) and ``excluded``: a carriage
    return in a comment would end the line for Python and let code follow it."""
    return Chars(_CONTROLS + tuple((ch, ch) for ch in excluded), negated=True)


def chars(spec: str, negated: bool = False) -> Chars:
    """``chars("A-Za-z_")``: a class from single characters and ``a-z`` ranges."""
    ranges, i = [], 0
    while i < len(spec):
        if i + 2 < len(spec) and spec[i + 1] == "-":
            ranges.append((spec[i], spec[i + 2]))
            i += 3
        else:
            ranges.append((spec[i], spec[i]))
            i += 1
    return Chars(tuple(ranges), negated)


def _minus(cls: Chars, remove: set[str]) -> Chars:
    """A positive class without the characters ``remove`` (which must be inside it)."""
    assert not cls.negated
    out: list[tuple[str, str]] = []
    for lo, hi in cls.ranges:
        start = ord(lo)
        for code in range(ord(lo), ord(hi) + 2):
            if code > ord(hi) or chr(code) in remove:
                if code > start:
                    out.append((chr(start), chr(code - 1)))
                start = code + 1
    return Chars(tuple(out))


@dataclass
class Grammar:
    """Named rules; ``root`` is where a derivation starts."""

    rules: dict[str, Node]
    root: str = "root"

    def to_gbnf(self) -> str:
        return _to_gbnf(self)

    def to_lark(self) -> str:
        return _to_lark(self)

    def to_regex(self, depth: int = 2, json_escaped: bool = False) -> str:
        return _to_regex(self, depth, json_escaped)


# --- the names a proposal may use -----------------------------------------------------------

# Hyperparameters `hp.` may read in a scoped grammar beyond the parents' own, with the defaults
# the repair (discover.constrained.repair) declares when a program reads one it did not declare.
# The keys of every reference program join these (hp_defaults), with the first value seen.
EXTRA_HP_DEFAULTS = {"beta": 0.9, "gamma": 0.99, "decay": 0.99, "clip": 1.0, "scale": 1.0, "tau": 0.01,
                     "warmup": 100.0}
# Short local names a scoped grammar lets a function assign besides the parents' own (not read:
# SmolLM2-135M read `x` without assigning it; a parent's name it reads is more often assigned).
GENERIC_LOCALS = ("a", "b", "c", "d", "g", "m", "u", "v", "x", "y", "z")


@functools.lru_cache(maxsize=1)
def hp_defaults() -> dict[str, float]:
    """Every hyperparameter a scoped grammar lets ``hp.`` read, with its default value."""
    from sandbox.references import reference_names, reference_source

    out: dict[str, float] = {}
    for name in reference_names():
        for key, value in contract.load_program(reference_source(name)).hparams.items():
            out.setdefault(key, value)
    for key, value in EXTRA_HP_DEFAULTS.items():
        out.setdefault(key, value)
    return out


def _usable(name: str) -> bool:
    reserved = set(keyword.kwlist) | set(vocabulary.OPS) | {"range", "init", "update", "HPARAMS"}
    return name.isidentifier() and not name.startswith("_") and name not in reserved and len(name) <= MAX_NAME_CHARS


@dataclass(frozen=True)
class Scope:
    """The names a *scoped* grammar lets an answer use, from the programs it starts from.

    A context-free grammar cannot know whether a name read was assigned or whether ``hp.x``
    is in HPARAMS (the validator's binding rules). Under the general grammar a 135M model
    invents names freely (``numer``, ``mbeta4d``, ``hp.bias_decay``) and most answers fail on
    them. A scoped grammar lets functions assign and read only the parents' names and a few
    short generic ones (``locals``; only the parents' own, ``readable``, may be read), call only
    the parents' helpers, and read ``hp.`` only for keys with a known default (the parents'
    and :func:`hp_defaults`), which the repair then declares. Reading a parent's name that the
    function never assigns is still possible; the validator names it, and the proposer re-asks.
    """

    locals: tuple[str, ...]
    constants: tuple[str, ...] = ()
    helpers: tuple[str, ...] = ()
    hparams: tuple[str, ...] = ()
    readable: tuple[str, ...] = ()

    @classmethod
    def of(cls, *sources: str | None) -> "Scope":
        """The scope of answers that start from ``sources`` (parents; unparsable ones add nothing)."""
        stores: set[str] = set()
        constants: set[str] = set()
        helpers: set[str] = set()
        hparams: set[str] = set(hp_defaults())
        for source in sources:
            try:
                tree = contract.parse_ast(source or "")
            except (SyntaxError, ValueError):
                continue
            for stmt in tree.body:
                if isinstance(stmt, ast.FunctionDef):
                    if stmt.name not in ("init", "update"):
                        helpers.add(stmt.name)
                        stores.update(a.arg for a in stmt.args.args)
                    stores.update(n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
                elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                    if stmt.targets[0].id != "HPARAMS":
                        constants.add(stmt.targets[0].id)
                    elif isinstance(stmt.value, ast.Dict):
                        hparams.update(k.value for k in stmt.value.keys
                                       if isinstance(k, ast.Constant) and isinstance(k.value, str) and k.value.isidentifier()
                                       and k.value.islower() and not keyword.iskeyword(k.value))
        helpers = {h for h in helpers if _usable(h)}
        constants = {c for c in constants if _usable(c)} - helpers
        readable = {n for n in stores if _usable(n)} - helpers - constants
        pool = readable | {n for n in GENERIC_LOCALS if _usable(n)} - helpers - constants
        hparams = {h for h in hparams if not hasattr(contract.HParams, h)}
        return cls(tuple(sorted(pool)), tuple(sorted(constants)), tuple(sorted(helpers)), tuple(sorted(hparams)),
                   tuple(sorted(readable)))


# --- building the grammar from the contract -------------------------------------------------

# Every operator class the validator may allow, with its text. A class the contract allows
# and this table lacks stops the build (and the sync test), so the two cannot drift apart.
_BINOP_TEXT = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**",
               ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<",
               ast.RShift: ">>", ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&"}
_CMPOP_TEXT = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_UNARY_TEXT = {ast.USub: "-", ast.UAdd: "+", ast.Invert: "~"}
_ADDITIVE = {ast.Add, ast.Sub}
_POWER = {ast.Pow}


def _operator_texts() -> tuple[list[str], list[str], list[str], list[str]]:
    """(additive, multiplicative, comparison, unary sign) operator texts the contract allows."""
    missing = [op.__name__ for op in (*contract._BINOPS, *contract._CMPOPS)
               if op not in _BINOP_TEXT and op not in _CMPOP_TEXT]
    missing += [op.__name__ for op in contract._UNARYOPS if op is not ast.Not and op not in _UNARY_TEXT]
    if missing:
        raise AssertionError(f"the contract allows operator(s) the grammar does not know: {', '.join(missing)}")
    add = [_BINOP_TEXT[op] for op in contract._BINOPS if op in _ADDITIVE]
    mul = [_BINOP_TEXT[op] for op in contract._BINOPS if op not in _ADDITIVE and op not in _POWER]
    cmp = [_CMPOP_TEXT[op] for op in contract._CMPOPS]
    unary = [_UNARY_TEXT[op] for op in contract._UNARYOPS if op is not ast.Not]
    # Longest first, so a reader of the grammar sees `**` before `*` (the order does not matter
    # to a recogniser, which tries every alternative).
    return (sorted(add, key=len, reverse=True), sorted(mul, key=len, reverse=True),
            sorted(cmp, key=len, reverse=True), unary)


def op_arities() -> dict[str, tuple[int, int]]:
    """Each vocabulary op's (least, most) positional arguments, from its signature."""
    out = {}
    for name, fn in vocabulary.OPS.items():
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        out[name] = (sum(p.default is p.empty for p in params), len(params))
    return out


def _words_excluded(rules: dict[str, Node], prefix: str, words: set[str], first: Chars, rest: Chars,
                    max_chars: int = MAX_NAME_CHARS) -> None:
    """Rules ``<prefix>`` for identifiers ``first rest*`` that are none of ``words``.

    A grammar cannot say "but not this word", so the rule is the trie of the excluded words,
    complemented: each trie node continues with a character that stays in the trie (next node)
    or one that leaves it (then anything). A word is excluded where its node must continue.
    Names are at most about ``max_chars`` long (the tail after leaving the trie is bounded).
    """
    trie: dict[str, dict] = {}
    for word in sorted(words):
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}
    tail = f"{prefix}-tail"
    rules[tail] = Rep(rest, 0, max_chars - 1)
    counter = [0]

    def emit(node: dict, path: str, cls: Chars) -> str:
        name = prefix if not path else f"{prefix}-{counter[0]}"
        counter[0] += 1
        options: list[Node] = []
        children = sorted(ch for ch in node if ch)
        for ch in children:
            if ch not in cls:
                continue
            child = node[ch]
            grand = [c for c in child if c]
            if not grand:  # an excluded word with no excluded continuation: it must go on
                options.append(seq(ch, rest, Ref(tail)))
                continue
            child_rule = emit(child, path + ch, rest)
            options.append(seq(ch, Ref(child_rule)) if "" in child else seq(ch, opt(Ref(child_rule))))
        others = _minus(cls, {c for c in children if c in cls})
        if others.ranges:
            options.append(seq(others, Ref(tail)))
        rules[name] = alt(*options)
        return name

    emit(trie, "", first)


def _number_rules(rules: dict[str, Node]) -> None:
    # Integers below 10**12 (the contract's literal limit) have at most 12 digits; no leading
    # zeros (a syntax error in Python 3).
    int_digits = len(str(10**12)) - 1
    rules["int"] = alt("0", seq(chars("1-9"), rep(chars("0-9"), 0, int_digits - 1)))
    rules["frac"] = seq(".", rep(chars("0-9"), 1, 16))
    rules["exp"] = seq(chars("eE"), opt(chars("+-")), rep(chars("0-9"), 1, 2))
    rules["number"] = seq(Ref("int"), opt(Ref("frac")), opt(Ref("exp")))
    rules["signed-number"] = seq(opt("-"), Ref("number"))
    # A positive number: a nonzero integer part, or 0.<digits with a nonzero one>.
    rules["pos-number"] = seq(alt(seq(chars("1-9"), rep(chars("0-9"), 0, int_digits - 1), opt(Ref("frac"))),
                                  seq("0.", rep(chars("0-9"), 0, 8), chars("1-9"), rep(chars("0-9"), 0, 8))),
                              opt(Ref("exp")))
    rules["small-int"] = alt(*[str(n) for n in range(contract.MAX_LOOP_ITERATIONS, -1, -1)])
    rules["loop-count"] = alt(*[str(n) for n in range(contract.MAX_LOOP_ITERATIONS, 0, -1)])


def _expression_rules(rules: dict[str, Node], c: str, with_hp: bool, flat: bool = False) -> None:
    """Expressions for a function body; ``c`` names the context (``u``: update, reads hp).

    The GBNF form nests brackets at most :data:`MAX_NESTING` deep: each depth has its own
    chain of precedence rules (``test-u``, ``test-u1``, ...), and at the deepest an atom is a
    name, a number or ``hp.x``, no bracket."""
    if flat:
        _flat_expression_rules(rules, c, with_hp)
        return
    for depth in range(MAX_NESTING + 1):
        _expression_level(rules, c, with_hp, depth)
    rules[f"exprs-{c}"] = seq(Ref(f"test-{c}"), rep(seq(",", opt(" "), Ref(f"test-{c}")), 0, 3))


def _expression_level(rules: dict[str, Node], c: str, with_hp: bool, depth: int) -> None:
    add, mul, cmp, unary = _operator_texts()
    ws = opt(" ")
    sep = seq(",", ws)
    more = (MAX_OPERANDS if depth == 0 else MAX_NESTED_OPERANDS) - 1

    def n(base: str, d: int = depth) -> str:
        return f"{base}-{c}{d or ''}"

    test, or_, and_, not_ = n("test"), n("or"), n("and"), n("not")
    cmp_, arith, term, factor, power, atom = n("cmp"), n("arith"), n("term"), n("factor"), n("power"), n("atom")
    rules[test] = seq(Ref(or_), rep(seq(" if ", Ref(or_), " else ", Ref(or_)), 0, 2))
    rules[or_] = seq(Ref(and_), rep(seq(" or ", Ref(and_)), 0, more))
    rules[and_] = seq(Ref(not_), rep(seq(" and ", Ref(not_)), 0, more))
    rules[not_] = seq(opt("not "), Ref(cmp_))
    rules[cmp_] = seq(Ref(arith), rep(seq(ws, alt(*cmp), ws, Ref(arith)), 0, 2))
    rules[arith] = seq(Ref(term), rep(seq(ws, alt(*add), ws, Ref(term)), 0, more))
    rules[term] = seq(Ref(factor), rep(seq(ws, alt(*mul), ws, Ref(factor)), 0, more))
    rules[factor] = seq(opt(alt(*unary)), Ref(power))
    rules[power] = seq(Ref(atom), opt(ws, "**", ws, opt(alt(*unary)), Ref(atom)))
    options: list[Node] = [Ref("number"), "True", "False", "None", Ref(f"subscript-{c}"), Ref(f"load-name-{c}")]
    if with_hp:
        options.insert(4, Ref("hp-ref"))
    if depth < MAX_NESTING:
        inner = Ref(n("test", depth + 1))
        by_arity: dict[tuple[int, int], list[str]] = {}
        for name, arity in op_arities().items():
            by_arity.setdefault(arity, []).append(name)
        calls = []
        for (least, most), names in by_arity.items():  # ops of one arity share their argument list
            opening = alt(*[f"{name}(" for name in names])
            args = [inner] + [seq(sep, inner) for _ in range(max(least, 1) - 1)]
            extra = [opt(sep, inner)] * (most - max(least, 1))
            calls.append(seq(opening, *args, *extra, ")") if most else alt(*[f"{name}()" for name in names]))
        rules[n("op-call")] = alt(*calls)
        rules[n("paren")] = seq("(", inner, rep(seq(sep, inner), 0, 7), opt(","), ")")
        rules[n("dict")] = seq("{", opt(Ref(n("entry")), rep(seq(sep, Ref(n("entry"))), 0, 15)), "}")
        rules[n("entry")] = seq(Ref("key"), ": ", inner)
        options += [Ref(n("op-call")), Ref(n("paren")), Ref(n("dict"))]
        if "call-name" in rules:  # a scoped grammar without helpers calls none
            rules[n("helper-call")] = seq(Ref("call-name"), "(", opt(inner, rep(seq(sep, inner), 0, 7)), ")")
            options.insert(-2, Ref(n("helper-call")))
    rules[atom] = alt(*options)


def _flat_expression_rules(rules: dict[str, Node], c: str, with_hp: bool) -> None:
    """The regular form: operators of every precedence between unary-prefixed atoms, so that
    nesting happens only through brackets and calls (a regex cannot refer back to a rule, and
    each precedence level would double its size). It admits a few strings Python rejects
    (`a else b`); the validator still checks every answer."""
    add, mul, cmp, unary = _operator_texts()
    ws = opt(" ")
    sep = seq(",", ws)
    test, atom = f"test-{c}", f"atom-{c}"
    prefix = star(alt("not ", *unary))
    binop = alt(seq(ws, alt("**", *mul, *add, *cmp), ws), " and ", " or ", " if ", " else ")
    rules[test] = seq(prefix, Ref(atom), star(binop, prefix, Ref(atom)))
    rules[f"dict-{c}"] = seq("{", opt(Ref(f"entry-{c}"), star(sep, Ref(f"entry-{c}"))), "}")
    rules[f"entry-{c}"] = seq(Ref("key"), ": ", Ref(test))
    # one bracketed form for calls of any arity and parentheses: 2 copies of test, not 12
    rules[f"bracket-{c}"] = seq(opt(alt(*[Lit(name) for name in op_arities()], Ref("call-name"))),
                                "(", Ref(test), star(sep, Ref(test)), opt(","), ")")
    options: list[Node] = [Ref("number"), "True", "False", "None", Ref(f"subscript-{c}"), Ref(f"load-name-{c}"),
                           Ref(f"bracket-{c}"), Ref(f"dict-{c}")]
    if with_hp:
        options.insert(4, Ref("hp-ref"))
    rules[atom] = alt(*options)
    rules[f"exprs-{c}"] = seq(Ref(test), star(sep, Ref(test)))


def _simple_rules(rules: dict[str, Node], c: str) -> None:
    ws = opt(" ")
    rules[f"simple-{c}"] = alt(
        seq(Ref("store-name"), rep(seq(",", ws, Ref("store-name")), 0, 3), " = ", Ref(f"exprs-{c}")),
        seq(Ref("store-name"), " ", Ref("aug-op"), " ", Ref(f"test-{c}")),
        seq("return ", Ref(f"exprs-{c}")),
        "pass")


def _line_rules(rules: dict[str, Node]) -> None:
    """One line of a program on its own, at any block level, in update's context (the widest):
    the REPLACE lines of a diff, and every line of the regular form."""
    test, ws = Ref("test-u"), opt(" ")
    header = alt(seq(alt("if ", "elif "), test, ":"), "else:", seq("for ", Ref("store-name"), " in range(", Ref("range-args"), "):"))
    body_line = seq(rep(INDENT, 1, MAX_BLOCK_LEVEL), alt(Ref("simple-u"), header, Ref("comment"), Ref("fdoc")))
    top_line = alt(
        *([seq(Ref("const-name"), " = ", Ref("signed-number"))] if "const-name" in rules else []),
        seq("def ", alt(*([Ref("helper-name")] if "helper-name" in rules else []), "init", "update"), "(", opt(Ref("param-name"), rep(seq(", ", Ref("param-name")), 0, 7)), "):"),
        seq("HPARAMS = {", opt('"lr": ', Ref("pos-number"), rep(seq(",", ws, Ref("hp-entry")), 0, MAX_HPARAMS - 1), opt(","), opt("}"))),
        seq(INDENT, Ref("hp-entry"), rep(seq(",", ws, Ref("hp-entry")), 0, MAX_HPARAMS - 1), opt(",")),
        "}")
    rules["body-line"] = body_line
    rules["top-line"] = top_line
    rules["any-line"] = seq(opt(alt(Ref("body-line"), Ref("top-line"))), Ref("eol"))


def _statement_rules(rules: dict[str, Node], c: str) -> None:
    """Blocks of statements at each indentation level, loops nested at most MAX_LOOP_DEPTH."""
    test = Ref(f"test-{c}")
    for level in range(MAX_BLOCK_LEVEL, 0, -1):
        indent = INDENT * level
        for loops in range(contract.MAX_LOOP_DEPTH + 1):
            name = f"block-{level}-{loops}-{c}"
            eol = Ref("eol")  # a line's end, after an optional comment
            options: list[Node] = [seq(Ref(f"simple-{c}"), eol)]
            if level < MAX_BLOCK_LEVEL:
                inner = Ref(f"block-{level + 1}-{loops}-{c}")
                options.append(seq("if ", test, ":", eol, inner, rep(seq(indent, "elif ", test, ":", eol, inner), 0, 3),
                                   opt(indent, "else:", eol, inner)))
                if loops < contract.MAX_LOOP_DEPTH:
                    options.append(seq("for ", Ref("store-name"), " in range(", Ref("range-args"), "):", eol,
                                       Ref(f"block-{level + 1}-{loops + 1}-{c}")))
            comments = rep(seq(indent, Ref("comment"), "\n"), 0, 4)
            rules[f"stmt-{level}-{loops}-{c}"] = seq(comments, indent, alt(*options))
            rules[name] = rep(Ref(f"stmt-{level}-{loops}-{c}"), 1, MAX_STATEMENTS)
    # A structured diff's REPLACE section: fewer statements than a whole body
    rules[f"replace-{c}"] = rep(Ref(f"stmt-1-0-{c}"), 1, MAX_REPLACE_STATEMENTS)


def build(kind: str = "full", parent: str | None = None, regular: bool = False, scope: Scope | None = None) -> Grammar:
    """The grammar of an answer of ``kind``; for ``diff`` with a ``parent`` program, SEARCH
    sections are runs of the parent's own lines (they always match). ``regular``: the
    line-by-line approximation the regex form is printed from (each line valid on its own;
    indentation, layout and names unchecked). ``scope``: names only from it (see
    :class:`Scope`; the regular form ignores it)."""
    if kind not in KINDS:
        raise ValueError(f"unknown grammar kind {kind!r}; choose one of {', '.join(KINDS)}")
    rules: dict[str, Node] = {"root": Lit("")}  # placeholder, keeps root first
    if kind == "critique":
        _critique_rules(rules)
        return Grammar(rules)
    _program_rules(rules, regular, scope)
    if kind in ("full", "crossover"):
        rules["root"] = seq(opt(Ref("intro")), "```python\n", Ref("program"), "```")
    elif scope is not None and not regular and parent is not None and _structured_diff_rules(rules, parent):
        rules["root"] = seq(opt(Ref("intro")), Ref("diff-block"))
    else:
        _diff_rules(rules, parent)
        rules["root"] = seq(opt(Ref("intro")), Ref("diff-block"), rep(seq(opt("\n"), Ref("diff-block")), 0, MAX_DIFF_BLOCKS - 1))
    return Grammar(_reachable(rules, "root"))


def _reachable(rules: dict[str, Node], root: str) -> dict[str, Node]:
    """The rules a derivation from ``root`` can use, in definition order."""
    seen, stack = {root}, [root]
    while stack:
        for name in _refs(rules[stack.pop()]):
            if name not in seen:
                seen.add(name)
                stack.append(name)
    return {name: node for name, node in rules.items() if name in seen}


def _scoped_name_rules(rules: dict[str, Node], scope: Scope) -> None:
    """Names from a :class:`Scope`: each rule the list of its words (a rule left out when the
    scope has none, and so is every form that would use it)."""
    def words(*groups) -> Node:
        return alt(*sorted(set().union(*map(set, groups))))

    rules["store-name"] = words(scope.locals)
    rules["param-name"] = words(scope.readable or scope.locals)
    rules["load-name-u"] = words(scope.readable, scope.constants, contract.UPDATE_ARGS)
    rules["load-name-f"] = words(scope.readable, scope.constants, contract.INIT_ARGS)
    if scope.constants:
        rules["const-name"] = words(scope.constants)
    if scope.helpers:
        rules["helper-name"] = rules["call-name"] = words(scope.helpers)
    rules["hp-attr"] = words(scope.hparams, ["lr"])


def _program_rules(rules: dict[str, Node], regular: bool = False, scope: Scope | None = None) -> None:
    _operator_texts()  # stops the build if the contract allows an operator this module does not know
    add_mul = [_BINOP_TEXT[op] for op in contract._BINOPS]
    rules["intro"] = seq(rep(seq(text_chars("`"), rep(text_chars("`"), 0, MAX_INTRO_CHARS - 1), "\n"), 1, MAX_INTRO_LINES),
                         opt("\n"))
    free = scope is None or regular
    helpers = [rep(seq(Ref("helper"), Ref("gap")), 0, MAX_HELPERS)] if free else []
    # A scoped grammar defines the parents' helpers before init, at most as many as they have
    # (one helper is then never defined twice; the parents' helpers come first in references).
    first = [rep(seq(Ref("helper"), Ref("gap")), 0, len(scope.helpers))] if not free and scope.helpers else helpers
    constants = [rep(seq(Ref("constant"), Ref("gap")), 0, MAX_CONSTANTS)] if free or scope.constants else []
    rules["program"] = seq(
        opt(Ref("docstring"), Ref("gap")), Ref("hparams"), Ref("gap"), *constants,
        *first, Ref("init-def"), Ref("gap"), *helpers, Ref("update-def"), Ref("gap"), *helpers)
    rules["gap"] = rep("\n", 0, 2)
    doc_char = alt(text_chars('"\\'), seq('"', text_chars('"\\')))
    rules["doc-line"] = rep(doc_char, 0, MAX_DOC_LINE_CHARS)
    # A scoped grammar (sent to a model) keeps the module docstring to a few lines naming the
    # idea: SmolLM2-135M copied its parent's 10-line docstring and ran out of tokens inside it.
    doc_lines = MAX_DOC_LINES if scope is None or regular else MAX_SCOPED_DOC_LINES
    rules["docstring"] = seq('"""', Ref("doc-line"), rep(seq("\n", Ref("doc-line")), 0, doc_lines - 1), '"""\n')
    rules["fdoc"] = seq('"""', rep(text_chars('"\\'), 1, MAX_LINE_CHARS), '"""')
    rules["comment"] = seq("#", rep(text_chars(), 0, MAX_LINE_CHARS))
    rules["eol"] = seq(opt(rep(" ", 1, 2), Ref("comment")), "\n")
    # HPARAMS: "lr" first and positive; keys are lowercase identifiers (hp.key must read them).
    entry_sep = seq(",", alt(" ", f"\n{INDENT}"))
    rules["hparams"] = seq("HPARAMS = {", opt(f"\n{INDENT}"), '"lr": ', Ref("pos-number"),
                           rep(seq(entry_sep, Ref("hp-entry")), 0, MAX_HPARAMS - 1), opt(","), opt("\n"), "}\n")
    rules["hp-entry"] = seq('"', Ref("hp-key"), '": ', Ref("signed-number"))
    rules["constant"] = seq(Ref("const-name"), " = ", Ref("signed-number"), "\n")
    init_args, update_args = ", ".join(contract.INIT_ARGS), ", ".join(contract.UPDATE_ARGS)
    rules["init-def"] = seq(f"def init({init_args}):\n", Ref("body-f"))
    rules["update-def"] = seq(f"def update({update_args}):\n", Ref("body-u"))
    rules["helper"] = seq("def ", Ref("helper-name"), "(", opt(Ref("param-name"), rep(seq(", ", Ref("param-name")), 0, 7)),
                          "):\n", Ref("body-f"))
    for c in ("u", "f"):
        rules[f"body-{c}"] = seq(opt(INDENT, Ref("fdoc"), "\n"), Ref(f"block-1-0-{c}"))
    # Names: a name is read, stored, defined or called under its own rule, so a derivation
    # engine can tell them apart; all are identifiers that are not keywords, ops or the names
    # the module layout reserves.
    reserved = set(keyword.kwlist) | set(vocabulary.OPS) | {"range", "init", "update", "HPARAMS"}
    _words_excluded(rules, "name", reserved, chars("A-Za-z"), chars("A-Za-z0-9_"))
    # HPARAMS keys the validator refuses: keywords and HParams' own attributes.
    hp_reserved = {w for w in keyword.kwlist if w.islower()} | {a for a in dir(contract.HParams) if not a.startswith("_")}
    _words_excluded(rules, "hp-key", hp_reserved, chars("a-z"), chars("a-z0-9_"))
    if scope is None or regular:
        for alias in ("load-name", "store-name", "const-name", "helper-name", "param-name", "call-name"):
            rules[alias] = Ref("name")
        rules["load-name-u"] = rules["load-name-f"] = Ref("load-name")
        rules["hp-attr"] = Ref("hp-key")
    else:
        _scoped_name_rules(rules, scope)
    rules["hp-ref"] = seq("hp.", Ref("hp-attr"))
    rules["key"] = seq('"', chars("A-Za-z_"), rep(chars("A-Za-z0-9_"), 0, 39), '"')
    for c in ("u", "f"):
        rules[f"subscript-{c}"] = seq(Ref(f"load-name-{c}"), "[", alt(Ref("key"), seq(opt("-"), Ref("small-int"))), "]")
    rules["aug-op"] = alt(*[f"{text}=" for text in sorted(add_mul, key=len, reverse=True)])
    rules["range-args"] = alt(seq(Ref("small-int"), ",", opt(" "), Ref("small-int")), Ref("loop-count"))
    _number_rules(rules)
    _expression_rules(rules, "u", with_hp=True, flat=regular)
    _simple_rules(rules, "u")
    _line_rules(rules)
    if regular:
        rules["name"] = seq(chars("A-Za-z"), star(chars("A-Za-z0-9_")))
        rules["hp-key"] = seq(chars("a-z"), star(chars("a-z0-9_")))
        rules["program"] = seq(opt(Ref("docstring"), Ref("gap")), Ref("hparams"), star(Ref("any-line")))
        return
    _expression_rules(rules, "f", with_hp=False)
    _simple_rules(rules, "f")
    _statement_rules(rules, "u")
    _statement_rules(rules, "f")


def _structured_diff_rules(rules: dict[str, Node], parent: str) -> bool:
    """SEARCH/REPLACE blocks that keep the program's structure (a scoped diff with a parent):
    a SEARCH section is a run of whole statements of one function body (at most
    :data:`MAX_SEARCH_LINES` lines, or one statement), copied from the parent, and its REPLACE
    section is statements of that same body at its indentation (nested blocks included), or
    SEARCH is the HPARAMS statement and REPLACE a new HPARAMS. So the edited program parses
    and keeps its layout; its names are the scope's. One block: a small model repeats the
    first block's SEARCH in the next, which no longer matches once the first is applied.
    False when the parent does not parse (the line-based rules are used then)."""
    try:
        tree = contract.parse_ast(parent)
    except (SyntaxError, ValueError):
        return False
    lines = parent.split("\n")

    def text(first: ast.stmt, last: ast.stmt) -> str:
        return "\n".join(lines[first.lineno - 1:last.end_lineno]) + "\n"

    blocks: list[Node] = []
    for stmt in tree.body:
        if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
                and stmt.targets[0].id == "HPARAMS"):
            blocks.append(seq("<<<<<<< SEARCH\n", text(stmt, stmt), "=======\n", Ref("hparams"), ">>>>>>> REPLACE\n"))
        elif isinstance(stmt, ast.FunctionDef):
            body = stmt.body[1:] if stmt.body and isinstance(stmt.body[0], ast.Expr) and isinstance(
                getattr(stmt.body[0], "value", None), ast.Constant) else stmt.body
            if not body or any(s.col_offset != len(INDENT) for s in body):
                continue
            runs = []
            for i in range(len(body)):
                for j in range(i, len(body)):
                    if j > i and body[j].end_lineno - body[i].lineno + 1 > MAX_SEARCH_LINES:
                        break
                    runs.append(text(body[i], body[j]))
            context = "u" if stmt.name == "update" else "f"
            blocks.append(seq("<<<<<<< SEARCH\n", alt(*dict.fromkeys(runs)), "=======\n", Ref(f"replace-{context}"),
                              ">>>>>>> REPLACE\n"))
    if not blocks:
        return False
    rules["diff-block"] = alt(*blocks)
    return True


def _diff_rules(rules: dict[str, Node], parent: str | None) -> None:
    # Each REPLACE line is a line the program grammar allows on its own (no import, method
    # call or comprehension can appear); whether the edited whole validates is checked after.
    rules["replace-line"] = Ref("any-line")
    rules["replace"] = rep(Ref("replace-line"), 0, MAX_REPLACE_LINES)
    if parent is None:
        rules["search"] = rep(seq(chars("\n=<>", negated=True), rep(chars("\n", negated=True), 0, 200), "\n"), 1,
                              MAX_SEARCH_LINES)
    else:
        lines = parent.rstrip("\n").split("\n")
        starts = []
        for i in range(len(lines) - 1, -1, -1):
            # search-i-k: parent line i, then at most k - 1 lines more
            for k in range(1, MAX_SEARCH_LINES + 1):
                rest = [opt(Ref(f"search-{i + 1}-{k - 1}"))] if i + 1 < len(lines) and k > 1 else []
                rules[f"search-{i}-{k}"] = seq(lines[i] + "\n", *rest)
            if lines[i].strip():
                starts.append(Ref(f"search-{i}-{MAX_SEARCH_LINES}"))
        rules["search"] = alt(*reversed(starts))
    rules["diff-block"] = seq("<<<<<<< SEARCH\n", Ref("search"), "=======\n", Ref("replace"), ">>>>>>> REPLACE\n")


def _critique_rules(rules: dict[str, Node]) -> None:
    from discover import parsing

    # Bounded so the whole critique fits extract_critique's limit without being cut.
    max_chars = inspect.signature(parsing.extract_critique).parameters["max_chars"].default
    lines = max(1, max_chars // (CRITIQUE_LINE_CHARS + 1))
    text = text_chars("`")
    rules["root"] = seq(text, rep(text, 0, CRITIQUE_LINE_CHARS - 1), rep(seq("\n", rep(text, 0, CRITIQUE_LINE_CHARS)), 0, lines - 1))


# --- emitting -----------------------------------------------------------------------------

_GBNF_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Escapes every reader of a class understands (llama.cpp's GBNF parser rejects `\-` and `\^`,
# so `-` goes last and `^` never first instead).
_CLASS_ESCAPES = {"\\": "\\\\", "]": "\\]", "[": "\\[", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _class_char(ch: str, escapes: dict[str, str]) -> str:
    if ch in escapes:
        return escapes[ch]
    return f"\\x{ord(ch):02x}" if ord(ch) < 32 or ord(ch) == 127 else ch


def _class_text(cls: Chars, escapes: dict[str, str]) -> str:
    parts = [_class_char(lo, escapes) if lo == hi else f"{_class_char(lo, escapes)}-{_class_char(hi, escapes)}"
             for lo, hi in cls.ranges]
    parts.sort(key=lambda p: (p == "-", p == "^"))  # a lone - last, a lone ^ not first
    if parts and parts[0] == "^" and len(parts) == 1:
        raise AssertionError("a class of only ^ cannot be written; use a literal")
    return f"[{'^' if cls.negated else ''}{''.join(parts)}]"


def _quantifier(lo: int, hi: int | None, lark: bool = False) -> str:
    if (lo, hi) == (0, 1):
        return "?"
    if (lo, hi) == (0, None):
        return "*"
    if (lo, hi) == (1, None):
        return "+"
    if lark:
        raise AssertionError("handled by the caller")
    if hi is None:
        return f"{{{lo},}}"
    return f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}"


def _gbnf_node(node: Node, nested: bool = False) -> str:
    if isinstance(node, Lit):
        return '"' + "".join(_GBNF_ESCAPES.get(ch, ch) for ch in node.text) + '"'
    if isinstance(node, Chars):
        return _class_text(node, _CLASS_ESCAPES)
    if isinstance(node, Ref):
        return node.name
    if isinstance(node, Seq):
        return " ".join(_gbnf_node(item, nested=True) for item in node.items)
    if isinstance(node, Alt):
        text = " | ".join(_gbnf_node(item) for item in node.items)
        return f"({text})" if nested else text
    if isinstance(node, Rep):
        inner = _gbnf_node(node.item, nested=True)
        if isinstance(node.item, Seq):
            inner = f"({inner})"
        return inner + _quantifier(node.lo, node.hi)
    raise TypeError(node)


def _to_gbnf(grammar: Grammar) -> str:
    lines = [f"{name} ::= {_gbnf_node(node)}" for name, node in grammar.rules.items()]
    return "\n".join(lines) + "\n"


def _lark_name(name: str) -> str:
    return name.replace("-", "_")


def _lark_node(node: Node, nested: bool = False) -> str:
    if isinstance(node, Lit):
        return json.dumps(node.text)
    if isinstance(node, Chars):
        return "/" + _class_text(node, {**_CLASS_ESCAPES, "/": "\\/"}) + "/"
    if isinstance(node, Ref):
        return _lark_name(node.name)
    if isinstance(node, Seq):
        return " ".join(_lark_node(item, nested=True) for item in node.items)
    if isinstance(node, Alt):
        text = " | ".join(_lark_node(item) for item in node.items)
        return f"({text})" if nested else text
    if isinstance(node, Rep):
        if isinstance(node.item, Chars):  # one regex terminal: Lark expands `x ~ m..n` into n - m alternatives
            # (never zero-width: Lark's dynamic Earley refuses those; an optional group instead)
            quantifier = _quantifier(max(node.lo, 1), node.hi)
            terminal = "/" + _class_text(node.item, {**_CLASS_ESCAPES, "/": "\\/"}) + quantifier + "/"
            return f"({terminal})?" if node.lo == 0 else terminal
        inner = _lark_node(node.item, nested=True)
        if isinstance(node.item, Seq):
            inner = f"({inner})"
        if node.hi is not None and node.hi > LARK_MAX_BOUND:
            # The same expansion for bounded repeats of a sequence; the Lark form drops every
            # bound but `?` (llama.cpp's GBNF keeps them): with the size bounds of the
            # expression levels expanded, Lark's Earley parser took minutes on one program.
            node = Rep(node.item, node.lo, None)
        if (node.lo, node.hi) in ((0, 1), (0, None), (1, None)):
            return inner + _quantifier(node.lo, node.hi)
        if node.hi is None:
            return f"{inner} ~ {node.lo} {inner}*"
        if node.lo == 0:
            return f"({inner} ~ 1..{node.hi})?"
        return f"{inner} ~ {node.lo}..{node.hi}"
    raise TypeError(node)


def _to_lark(grammar: Grammar) -> str:
    lines = [f"start: {_lark_name(grammar.root)}"]
    lines += [f"{_lark_name(name)}: {_lark_node(node)}" for name, node in grammar.rules.items()]
    return "\n".join(lines) + "\n"


_REGEX_META = set(".^$|?*+()[]{}\\/")
_JSON_SPECIAL = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _regex_literal(text: str, json_escaped: bool) -> str:
    if json_escaped:
        text = "".join(_JSON_SPECIAL.get(ch, ch) for ch in text)
    out = []
    for ch in text:
        out.append("\\n" if ch == "\n" else "\\t" if ch == "\t" else "\\" + ch if ch in _REGEX_META else ch)
    return "".join(out)


def _regex_class(cls: Chars, json_escaped: bool) -> str:
    if not json_escaped:
        return _class_text(cls, _CLASS_ESCAPES)
    # Over the JSON-escaped text: the class without the characters JSON escapes, plus the
    # escape sequences of those it contains.
    specials = [ch for ch in _JSON_SPECIAL if ch in cls]
    if cls.negated:
        base = Chars(cls.ranges + tuple((ch, ch) for ch in _JSON_SPECIAL) + (("\x00", "\x1f"),), negated=True)
    else:
        base = _minus(cls, set(specials))
    parts = [_class_text(base, _CLASS_ESCAPES)] if base.ranges or base.negated else []
    parts += [_regex_literal(_JSON_SPECIAL[ch], json_escaped=False) for ch in specials]
    return parts[0] if len(parts) == 1 else "(" + "|".join(parts) + ")"


def _cyclic_anchors(grammar: Grammar) -> set[str]:
    """For each recursive cycle, the first rule of it (in definition order): the regex form
    counts nesting by how often a derivation passes through one."""
    graph = {name: _refs(node) for name, node in grammar.rules.items()}
    order = list(grammar.rules)
    anchors: set[str] = set()
    for name in order:
        # name is an anchor if it reaches itself without passing an earlier anchor
        seen, stack = set(), list(graph[name])
        while stack:
            current = stack.pop()
            if current == name:
                anchors.add(name)
                break
            if current in seen or current in anchors:
                continue
            seen.add(current)
            stack.extend(graph.get(current, ()))
    return anchors


def _refs(node: Node) -> set[str]:
    if isinstance(node, Ref):
        return {node.name}
    if isinstance(node, (Seq, Alt)):
        return set().union(*(_refs(i) for i in node.items))
    if isinstance(node, Rep):
        return _refs(node.item)
    return set()


def _to_regex(grammar: Grammar, depth: int, json_escaped: bool) -> str:
    anchors = _cyclic_anchors(grammar)
    memo: dict[tuple[str, int], str | None] = {}

    def rule(name: str, budget: int) -> str | None:
        if name in anchors:
            if budget == 0:
                return None
            budget -= 1
        key = (name, budget)
        if key not in memo:
            memo[key] = None  # a cycle without an anchor cannot happen; this guards it anyway
            memo[key] = node_regex(grammar.rules[name], budget)
        return memo[key]

    def node_regex(node: Node, budget: int) -> str | None:
        if isinstance(node, Lit):
            return _regex_literal(node.text, json_escaped)
        if isinstance(node, Chars):
            return _regex_class(node, json_escaped)
        if isinstance(node, Ref):
            return rule(node.name, budget)
        if isinstance(node, Seq):
            parts = [node_regex(i, budget) for i in node.items]
            return None if any(p is None for p in parts) else "".join(parts)
        if isinstance(node, Alt):
            parts = [p for p in (node_regex(i, budget) for i in node.items) if p is not None]
            return None if not parts else parts[0] if len(parts) == 1 else "(" + "|".join(parts) + ")"
        if isinstance(node, Rep):
            inner = node_regex(node.item, budget)
            if inner is None:
                return "" if node.lo == 0 else None
            return f"({inner})" + _quantifier(node.lo, node.hi)
        raise TypeError(node)

    text = rule(grammar.root, depth)
    if text is None:
        raise ValueError(f"no regular approximation of depth {depth}")
    return text


def render(kind: str = "full", fmt: str = "gbnf", parent: str | None = None, depth: int = 3,
           scope: Scope | None = None) -> str:
    """The grammar of ``kind`` in format ``fmt`` (see :data:`FORMATS`), names from ``scope``
    when given (the GBNF and Lark forms)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown grammar format {fmt!r}; choose one of {', '.join(FORMATS)}")
    grammar = build(kind, parent, scope=scope)
    if fmt == "gbnf":
        return grammar.to_gbnf()
    if fmt == "lark":
        return grammar.to_lark()
    return build(kind, parent, regular=True).to_regex(depth)
