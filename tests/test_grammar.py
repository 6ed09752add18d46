"""The grammars sent to local servers for constrained decoding (discover/grammar.py).

Everything is checked on the GBNF *text* a server receives, read back by discover/gbnf.py:
every reference program is in the language, random derivations pass the AST validator, the
grammar follows the vocabulary when an op is added or removed, and what the contract forbids
is not in the language.
"""

from __future__ import annotations

import collections
import functools
import json
import random
import re

import pytest

from discover import gbnf, grammar
from discover.grammar import Ref
from sandbox import contract, vocabulary
from sandbox.references import reference_names, reference_source


@pytest.fixture(scope="module")
def full() -> gbnf.Recogniser:
    return gbnf.Recogniser(gbnf.parse(grammar.render("full")))


def accepts(recogniser: gbnf.Recogniser, program: str) -> bool:
    return recogniser.accepts(program, "program")


# --- every reference program is in the language -------------------------------------------


@pytest.mark.parametrize("name", reference_names())
def test_every_reference_program_is_accepted(full, name):
    source = reference_source(name)
    assert accepts(full, source)
    # and as a whole answer: a sentence of prose, then the program in one python block
    assert full.accepts(f"Use a sign of the momentum.\n\n```python\n{source}```")


def test_crossover_answers_are_programs_too():
    recogniser = gbnf.Recogniser(gbnf.parse(grammar.render("crossover")))
    assert recogniser.accepts(f"```python\n{reference_source('lion')}```")


# --- what the contract forbids is not in the language ------------------------------------

ADAM = reference_source("adam")


@pytest.mark.parametrize("edit", [
    ("HPARAMS = {", "import torch\nHPARAMS = {"),                      # an import
    ("sqrt(v)", "v.sqrt()"),                                           # a method call
    ("sqrt(v)", "sqrt(v, 2)"),                                         # the op's arity
    ("sqrt(v)", "torch.sqrt(v)"),                                      # an attribute other than hp.x
    ("g = grad", "g = [grad][0] + 0 * grad"),                          # a list literal
    ("g = grad", "g = (lambda x: x)(grad)"),                           # a lambda
    ('"lr": 1e-3, ', ""),                                              # HPARAMS without lr
    ('"lr": 1e-3', '"lr": 0.0'),                                       # lr not positive
    ("bias1 = 1", "_b = 1\n    bias1 = 1"),                            # an underscore name
    ("    m = interp", "\tm = interp"),                                # tab indentation
    ("    m = interp", "    if=1\n    m = interp"),                     # a keyword as a name
    ("    m = interp", "    sqrt = 1\n    m = interp"),                 # redefining an op
    ("def init(param):", "def init(p):"),                              # the signature
    ("    m = interp", "    while step:\n        pass\n    m = interp"),  # while
    ("    return", "    state[\"m\"] = g\n    return"),                 # assigning into a subscript
    ("    bias1 = 1", "    # ok\r    import os\n    bias1 = 1"),       # a carriage return ends a comment
    ("g = grad", "g = f\"{grad}\""),                                   # an f-string
    ("g = grad", "g = grad[1:]"),                                      # a slice
])
def test_forbidden_constructs_are_not_in_the_language(full, edit):
    old, new = edit
    assert old in ADAM
    assert not accepts(full, ADAM.replace(old, new, 1))


def test_loops_are_bounded_like_the_contract(full):
    def loop(header: str, inner: str = "") -> str:
        body = f"    for i in range({header}):\n{inner or '        g = g * 0.5'}\n"
        return ADAM.replace("    m = interp", body + "    m = interp", 1)

    limit = contract.MAX_LOOP_ITERATIONS
    assert accepts(full, loop(str(limit)))
    assert not accepts(full, loop(str(limit + 1)))
    assert accepts(full, loop("2, 5"))
    twice = "        for j in range(2):\n            g = g * 0.5"
    assert accepts(full, loop("2", twice))
    assert contract.MAX_LOOP_DEPTH == 2
    thrice = "        for j in range(2):\n            for k in range(2):\n                g = g * 0.5"
    assert not accepts(full, loop("2", thrice))


def test_hyperparameter_names_follow_the_contract(full):
    def with_key(key: str) -> str:
        return ADAM.replace('"eps": 1e-8', f'"{key}": 1e-8', 1).replace("hp.eps", f"hp.{key}")

    for key, valid in (("clip", True), ("norm", True), ("replace", False), ("if", False), ("Eps", False)):
        try:
            contract.validate(with_key(key))
            validates = True
        except contract.CandidateError:
            validates = False
        assert validates == valid, key
        assert accepts(full, with_key(key)) == valid, key


def test_hyperparameters_are_read_only_in_update(full):
    init_reads_hp = ADAM.replace('return {"m": zeros_like(param)', 'return {"m": hp.eps * zeros_like(param)', 1)
    assert init_reads_hp != ADAM and not accepts(full, init_reads_hp)


# --- random derivations pass the validator ------------------------------------------------

# Causes a context-free grammar cannot exclude: whether a name read was defined, whether a
# hyperparameter exists, whether a helper is defined once and not also a variable. Everything
# else the validator checks (syntax, constructs, layout, signatures, literals, loops) the
# grammar does.
BINDING_CAUSES = re.compile(
    r"unknown name|unknown op|HPARAMS has no|is defined twice|which names a function|as a value|"
    r"recursion through|a tensor attribute|duplicate argument|only hyperparameters")
SIZE_CAUSES = re.compile(r"characters \(limit|syntax nodes \(limit|lines \(limit|nested .* deep \(limit")


class ScopedDerivation:
    """Derives programs from the grammar, choosing names the way a program defines them: a
    name read is a parameter, a local assigned earlier or a constant; a helper called is one
    defined above; ``hp.x`` reads a key of HPARAMS. Only names are steered: every other choice
    (statements, operators, ops, literals, nesting) is the grammar's, at random."""

    def __init__(self, rng: random.Random, g: grammar.Grammar):
        self.rng, self.grammar = rng, g
        self.hp_keys, self.constants, self.helpers = ["lr"], [], []
        self.scope: list[str] = []
        self.used: set[str] = set(contract.UPDATE_ARGS)  # a name means one thing in the module
        self.defining: str | None = None

    def fresh(self) -> str:
        while True:
            name = gbnf.derive(self.grammar, self.rng, "name", max_depth=3)
            if name not in self.used and len(name) < 12:
                self.used.add(name)
                return name

    def hook(self, rule: str) -> str | None:
        rng = self.rng
        if rule == "load-name":
            return rng.choice(self.scope + self.constants)
        if rule == "store-name":
            name = rng.choice(self.scope) if self.scope and rng.random() < 0.5 else self.fresh()
            if name not in contract.UPDATE_ARGS or name in self.scope:
                self.scope.append(name)
            return name
        if rule in ("const-name", "helper-name", "param-name"):
            name = self.fresh()
            {"const-name": self.constants, "param-name": self.scope}.get(rule, []).append(name)
            if rule == "helper-name":
                self.defining = name
            return name
        if rule == "call-name":
            return rng.choice(self.helpers)
        if rule == "hp-attr":
            return rng.choice(self.hp_keys)
        return None

    def on_enter(self, rule: str) -> None:
        if rule == "init-def":
            self.scope = list(contract.INIT_ARGS)
        elif rule == "update-def":
            self.scope = list(contract.UPDATE_ARGS)
        elif rule == "helper":
            self.scope = []

    def on_exit(self, rule: str, text: str) -> None:
        if rule == "hp-key":
            self.hp_keys.append(text)
        elif rule == "helper" and self.defining:
            self.helpers.append(self.defining)
            self.defining = None

    def allow(self, node) -> bool:
        if isinstance(node, Ref) and node.name.startswith("helper-call"):
            return bool(self.helpers)
        if isinstance(node, Ref) and node.name.startswith(("load-name", "subscript")):
            return bool(self.scope or self.constants)
        return True

    def program(self) -> str:
        return gbnf.derive(self.grammar, self.rng, "program", max_depth=16, hook=self.hook,
                           on_enter=self.on_enter, on_exit=self.on_exit, allow=self.allow)


def _causes(programs: list[str]) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for source in programs:
        try:
            contract.validate(source)
        except contract.CandidateError as exc:
            counts[exc.message] += 1
    return counts


def test_1000_random_derivations_pass_the_validator():
    g = gbnf.parse(grammar.render("full"))
    rng = random.Random(19)
    programs = [ScopedDerivation(rng, g).program() for _ in range(1000)]
    causes = _causes(programs)
    rejected = sum(causes.values())
    # Measured: 0 of 1000 rejected with this seed (the bound is the 5%). Unsteered (next
    # test) 205 of 300 are rejected, every one for a name: unknown name 99, unknown op 43, a
    # helper's name assigned 37, defined twice 7, hp.x not in HPARAMS 12, a function used as a
    # value 6, recursion 1. (The grammar scoped to a parent's names, tests/test_grammar_scope.py,
    # leaves only unknown names, and those of the repair's kinds are mended.)
    assert rejected < 50, causes.most_common(10)
    assert all(BINDING_CAUSES.search(m) or SIZE_CAUSES.search(m) for m in causes), causes.most_common(10)
    assert len(set(programs)) > 990  # they are different programs, not one program 1000 times


def test_unsteered_derivations_fail_only_on_names():
    """Without steering names, derivations still only fail on what a CFG cannot know."""
    g = gbnf.parse(grammar.render("full"))
    rng = random.Random(7)
    programs = [gbnf.derive(g, rng, "program", max_depth=16) for _ in range(300)]
    causes = _causes(programs)
    structural = {m: n for m, n in causes.items() if not (BINDING_CAUSES.search(m) or SIZE_CAUSES.search(m))}
    assert not structural, structural
    assert sum(causes.values()) < len(programs)  # some pass even unsteered


def test_derivations_are_recognised(full):
    g = gbnf.parse(grammar.render("full"))
    rng = random.Random(3)
    for _ in range(20):
        assert accepts(full, gbnf.derive(g, rng, "program", max_depth=14))


# --- in sync with the vocabulary by construction ------------------------------------------


def test_every_op_is_callable_with_exactly_its_arity(full):
    for name, (least, most) in grammar.op_arities().items():
        for count in range(0, most + 2):
            args = ", ".join(["grad"] * count)
            program = ADAM.replace("    bias1 = 1", f"    x = {name}({args})\n    bias1 = 1", 1)
            assert accepts(full, program) == (least <= count <= most and count > 0), (name, count)


def test_an_op_added_to_the_vocabulary_is_in_the_grammar(monkeypatch):
    def softsign(x, scale):
        """x / (scale + |x|), elementwise."""
        return x / (scale + abs(x))

    def with_line(line: str) -> str:
        return ADAM.replace("    bias1 = 1", f"    {line}\n    bias1 = 1", 1)

    before = gbnf.Recogniser(gbnf.parse(grammar.render("full")))
    assert accepts(before, with_line("softsign = grad")) and '"softsign("' not in grammar.render("full")
    monkeypatch.setitem(vocabulary.OPS, "softsign", softsign)
    contract.validate(with_line("x = softsign(grad, 2.0)"))  # the validator knows it ...
    after = gbnf.Recogniser(gbnf.parse(grammar.render("full")))
    assert accepts(after, with_line("x = softsign(grad, 2.0)"))  # ... and so does the grammar,
    assert not accepts(after, with_line("x = softsign(grad)"))  # with its arity,
    assert not accepts(after, with_line("softsign = grad"))  # as a reserved name
    assert "softsign(x, scale)" in vocabulary.describe()  # (and the prompt shows it)
    monkeypatch.delitem(vocabulary.OPS, "interp")
    assert '"interp("' not in grammar.render("full")
    assert accepts(gbnf.Recogniser(gbnf.parse(grammar.render("full"))), with_line("interp = grad"))


def test_operators_follow_the_contract(monkeypatch):
    import ast

    text = grammar.render("full")
    assert '"@"' in text and '"//"' in text and '"**="' in text
    monkeypatch.setattr(contract, "_BINOPS", contract._BINOPS + (ast.BitOr,))
    assert '"|"' in grammar.render("full")
    monkeypatch.setattr(contract, "_BINOPS", contract._BINOPS + (ast.Is,))  # an operator the builder does not know
    with pytest.raises(AssertionError, match="Is"):
        grammar.render("full")


# --- diff, critique, other formats -----------------------------------------------------------


def test_diff_search_lines_come_from_the_parent():
    parent = reference_source("lion")
    g = gbnf.Recogniser(gbnf.parse(grammar.render("diff", parent=parent)))
    good = ("Use tanh instead of sign.\n"
            "<<<<<<< SEARCH\n    direction = sign(interp(grad, state[\"m\"], hp.beta1))\n=======\n"
            "    direction = tanh(3.0 * interp(grad, state[\"m\"], hp.beta1))\n>>>>>>> REPLACE\n")
    assert g.accepts(good)
    assert not g.accepts(good.replace("    direction = sign", "    direction  = sign"))  # not a parent line
    assert not g.accepts(good.replace("    direction = tanh(3.0", "    import os\n    direction = tanh(3.0"))
    assert not g.accepts(good.replace("tanh(3.0 * interp", "interp(grad).tanh(3.0 * interp"))
    generic = gbnf.Recogniser(gbnf.parse(grammar.render("diff")))
    assert generic.accepts(good) and not generic.accepts(good.replace("tanh(3.0", "torch.tanh(3.0"))


def test_critique_is_prose_bounded_in_length():
    g = gbnf.Recogniser(gbnf.parse(grammar.render("critique")))
    assert g.accepts("The sign step ignores magnitude.\n\n- Use tanh(3 m) instead of sign(m).")
    assert not g.accepts("Here is code:\n```python\nx = 1\n```")
    assert not g.accepts("")
    assert not g.accepts("word " * 3000)
    from discover import parsing

    longest = "\n".join(["x" * grammar.CRITIQUE_LINE_CHARS] * 200)
    accepted = [n for n in range(1, 40) if g.accepts("\n".join(["x" * grammar.CRITIQUE_LINE_CHARS] * n))]
    text = "\n".join(["x" * grammar.CRITIQUE_LINE_CHARS] * max(accepted))
    assert len(text) <= 3000 and parsing.extract_critique(text) == text  # never cut by the parser
    assert not g.accepts(longest)


@pytest.mark.parametrize("name", ["adam", "nesterov", "lion", "sgd"])
def test_the_regex_form_accepts_the_references(name):
    # The regular form nests calls and brackets at most depth - 1 = 2 deep: muon, nadam and
    # ademamix nest deeper and are outside it (the GBNF form has no such limit).
    source = reference_source(name)
    pattern = _regex()
    assert pattern.fullmatch(f"```python\n{source}```")
    assert not pattern.fullmatch(f"```python\n{source.replace('hp.lr', 'hp.lr.item()', 1)}```")
    assert not pattern.fullmatch(f"```python\nimport os\n{source}```")


@functools.lru_cache(maxsize=1)
def _regex() -> re.Pattern:
    return re.compile(grammar.render("full", "regex"))


def test_the_lark_form_accepts_the_references():
    lark = pytest.importorskip("lark")
    # dynamic_complete: a regex terminal may match any prefix length (`0.` [0-9]{0,8} [1-9] needs it)
    parser = lark.Lark(grammar.render("full", "lark"), start="start", parser="earley", lexer="dynamic_complete")
    for name in ("adam", "muon"):
        parser.parse(f"```python\n{reference_source(name)}```")
    with pytest.raises(lark.exceptions.LarkError):
        parser.parse(f"```python\n{ADAM.replace('sqrt(v)', 'v.sqrt()')}```")


# --- the grammar on the wire (tests/fake_openai.py, the real openai client) ---------------

from discover.constrained import ConstrainedDecoding, is_local, request_fields  # noqa: E402
from discover.llm import LLMClient, LLMError, LLMSettings  # noqa: E402
from tests.fake_openai import Reply, fake_llm_server  # noqa: E402,F401 (fixture)

MESSAGES = [{"role": "user", "content": "Write an optimizer."}]


def client_for(server) -> LLMClient:
    return LLMClient(LLMSettings(base_url=server.base_url, models={"proposer": "tiny"}, cache_mode="off",
                                 max_attempts=1, prices={"tiny": (0.0, 0.0)}))


def test_a_local_endpoint_gets_the_gbnf_grammar(fake_llm_server):
    fake_llm_server.script([Reply(f"```python\n{ADAM}```")])
    constrained = ConstrainedDecoding("auto", fake_llm_server.base_url)
    answer = constrained.complete(client_for(fake_llm_server), MESSAGES, "full")
    assert answer.text.startswith("```python")
    body = fake_llm_server.requests[0]
    assert body["grammar"] == grammar.render("full") and "guided_grammar" not in body
    assert is_local(fake_llm_server.base_url) and not is_local("https://api.openai.com/v1")


@pytest.mark.parametrize("owner, field", [("vllm", "guided_grammar"), ("llamacpp", "grammar"), ("library", "response_format")])
def test_auto_speaks_the_dialect_the_server_names(fake_llm_server, owner, field):
    fake_llm_server.owned_by = owner
    program = f"```python\n{reference_source('sgd')}```"
    fake_llm_server.script([Reply(json.dumps({"answer": program}) if owner == "library" else program)])
    answer = ConstrainedDecoding("auto", fake_llm_server.base_url).complete(client_for(fake_llm_server), MESSAGES, "full")
    assert field in fake_llm_server.requests[0]
    assert answer.text == program  # an Ollama answer is unwrapped from its JSON


def test_the_ollama_pattern_accepts_what_the_json_carries():
    schema = request_fields("ollama", "full")["response_format"]["json_schema"]["schema"]
    pattern = re.compile(schema["properties"]["answer"]["pattern"])
    answer = json.dumps({"answer": f"```python\n{reference_source('adam')}```"})
    assert pattern.fullmatch(answer[len('{"answer": "'):-2])
    assert not pattern.fullmatch(json.dumps(f"```python\n{ADAM.replace('sqrt(v)', 'v.sqrt()')}```")[1:-1])


def test_auto_falls_back_in_one_line_when_the_server_rejects_the_grammar(fake_llm_server):
    fake_llm_server.reject_fields = {"grammar"}
    fake_llm_server.script([Reply("first"), Reply("second")])
    lines: list[str] = []
    constrained = ConstrainedDecoding("auto", fake_llm_server.base_url, warn=lines.append)
    client = client_for(fake_llm_server)
    assert constrained.complete(client, MESSAGES, "full").text == "first"
    assert constrained.complete(client, MESSAGES, "diff").text == "second"
    assert len(lines) == 1 and "rejected the gbnf grammar" in lines[0] and "grammar" in constrained.fell_back
    assert ["grammar" in r for r in fake_llm_server.requests] == [True, False, False]  # asked once with it


def test_an_explicit_dialect_that_is_rejected_is_an_error(fake_llm_server):
    fake_llm_server.reject_fields = {"grammar"}
    with pytest.raises(LLMError, match=r'rejected the gbnf grammar .*llm.constrained = "auto"'):
        ConstrainedDecoding("gbnf", fake_llm_server.base_url).complete(client_for(fake_llm_server), MESSAGES, "full")


def test_off_and_remote_endpoints_send_no_grammar(fake_llm_server):
    fake_llm_server.script([Reply("a")])
    ConstrainedDecoding("off", fake_llm_server.base_url).complete(client_for(fake_llm_server), MESSAGES, "full")
    assert "grammar" not in fake_llm_server.requests[0]
    with pytest.raises(ValueError, match="llm.constrained"):
        ConstrainedDecoding("grammar")


def test_a_diff_request_carries_the_parents_lines(fake_llm_server):
    parent = reference_source("lion")
    fake_llm_server.script([Reply("x")])
    ConstrainedDecoding("gbnf", fake_llm_server.base_url).complete(client_for(fake_llm_server), MESSAGES, "diff", parent=parent)
    assert '"    m = interp(grad, state[\\"m\\"], hp.beta2)\\n"' in fake_llm_server.requests[0]["grammar"]


# --- `discover grammar` --------------------------------------------------------------------


def run_cli(argv, monkeypatch, capsys) -> tuple[int, str, str]:
    from discover.cli import main

    monkeypatch.setattr("sys.argv", ["discover", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_the_grammar_command_prints_each_kind_and_format(monkeypatch, capsys, tmp_path):
    code, out, _ = run_cli(["grammar"], monkeypatch, capsys)
    assert code == 0 and out == grammar.render("full")
    code, out, _ = run_cli(["grammar", "--format", "lark", "--kind", "critique"], monkeypatch, capsys)
    assert code == 0 and out.startswith("start: root") and out == grammar.render("critique", "lark")
    parent = tmp_path / "lion.py"
    parent.write_text(reference_source("lion"))
    code, out, _ = run_cli(["grammar", "--kind", "diff", "--parent", str(parent)], monkeypatch, capsys)
    assert code == 0 and '"    m = interp(grad, state[\\"m\\"], hp.beta2)\\n"' in out
    code, _, err = run_cli(["grammar", "-o", str(tmp_path / "g.gbnf")], monkeypatch, capsys)
    assert code == 0 and (tmp_path / "g.gbnf").read_text() == grammar.render("full") and "wrote" in err


@pytest.mark.parametrize("argv, message", [
    (["grammar", "--format", "yaml"], "unknown --format 'yaml'; choose one of: gbnf, lark, regex"),
    (["grammar", "--kind", "essay"], "unknown --kind 'essay'"),
    (["grammar", "--parent", "x.py"], "--parent is for --kind diff"),
    (["grammar", "--kind", "diff", "--parent", "missing.py"], "missing.py is not a file"),
])
def test_bad_grammar_arguments_are_one_line_and_exit_2(monkeypatch, capsys, argv, message):
    code, out, err = run_cli(argv, monkeypatch, capsys)
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# --- benchmarks/local_llm.py against the scripted server ----------------------------------


def test_the_local_llm_benchmark_runs_against_a_server(fake_llm_server):
    """A server that writes a valid answer only when the request carries a grammar (a stand-in
    for constrained decoding): the benchmark must count 0 valid without it and all with it."""
    import subprocess
    import sys
    from pathlib import Path

    def responder(request: dict) -> str:
        if "grammar" not in request:
            return "Sure! A great optimizer would use momentum."
        lr = 1e-3 * (1 + request["seed"])  # a different program each time
        if "SEARCH" in request["grammar"]:
            from discover import parsing

            parent = parsing.extract_program(request["messages"][1]["content"])
            line = next(line for line in parent.split("\n") if line.startswith("HPARAMS"))
            changed = line.replace('"lr": 1e-3', f'"lr": {lr!r}')
            return f"Change the learning rate.\n<<<<<<< SEARCH\n{line}\n=======\n{changed}\n>>>>>>> REPLACE\n"
        return f"```python\n{reference_source('sgd').replace('1e-3', repr(lr))}```"

    fake_llm_server.responder = responder
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "local_llm.py"), fake_llm_server.base_url, "tiny",
         "--proposals", "4", "--kinds", "full,diff", "--evaluate", "1", "--tasks", "noisy_quadratic",
         "--steps-scale", "0.2"], capture_output=True, text=True, timeout=600, cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line.split("  ")[0]: line for line in result.stdout.splitlines()}
    assert "0/4 (0%)" in rows["no grammar"] and "no program / bad edit 4" in rows["no grammar"]
    # columns: valid, distinct valid, first answer valid, repaired, s/proposal, answers, tokens, beat parent
    assert re.search(r"no grammar\s+0/4 \(0%\)\s+0/4 \(0%\)\s+0/4 \(0%\)\s+0\s+[\d.]+\s+8\s", rows["no grammar"])
    assert re.search(r"grammar \(gbnf\)\s+4/4 \(100%\)\s+4/4 \(100%\)\s+4/4 \(100%\)\s+0\s+[\d.]+\s+4\s+5\s+[01]/1",
                     rows["grammar (gbnf)"]), result.stdout
    # one re-ask per bad answer (search.parse_retries' default): 4 x 2 without the grammar, 4 with it
    assert len(fake_llm_server.requests) == 12 and sum("grammar" in r for r in fake_llm_server.requests) == 4
    grammars = [r["grammar"] for r in fake_llm_server.requests if "grammar" in r]
    # each scoped to its parent's names: adamw's bias1 in its own, not in lion's (the third)
    assert '"bias1"' in grammars[0] and '"bias1"' not in grammars[2]


@pytest.mark.parametrize("kind", grammar.KINDS)
def test_no_repetition_repeats_the_empty_string(kind):
    """llama.cpp rewrites `x*` as `r ::= x r |`: a nullable x makes that left recursion, which
    it refuses ("unsupported grammar, left recursion detected"). No repeated item is nullable."""
    g = gbnf.parse(grammar.render(kind, parent=reference_source("muon") if kind == "diff" else None))
    nullable: dict[str, bool] = {name: False for name in g.rules}

    def can_be_empty(node) -> bool:
        if isinstance(node, grammar.Lit):
            return node.text == ""
        if isinstance(node, grammar.Chars):
            return False
        if isinstance(node, Ref):
            return nullable[node.name]
        if isinstance(node, grammar.Seq):
            return all(can_be_empty(i) for i in node.items)
        if isinstance(node, grammar.Alt):
            return any(can_be_empty(i) for i in node.items)
        return node.lo == 0 or can_be_empty(node.item)

    changed = True
    while changed:
        changed = False
        for name, node in g.rules.items():
            if not nullable[name] and can_be_empty(node):
                nullable[name] = changed = True

    def repeated(node):
        if isinstance(node, grammar.Rep):
            yield node.item
            yield from repeated(node.item)
        elif isinstance(node, (grammar.Seq, grammar.Alt)):
            for item in node.items:
                yield from repeated(item)

    bad = [(name, item) for name, node in g.rules.items() for item in repeated(node) if can_be_empty(item)]
    assert not bad, bad[:3]
    assert not nullable["root"]
