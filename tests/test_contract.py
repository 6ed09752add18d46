"""The candidate contract: every rejection names its reason, line and construct; loading and
running a valid program never touches the caller's tensors; hashing ignores formatting."""

from __future__ import annotations

import gc
import sys
import threading

import pytest
import torch

from sandbox import vocabulary
from sandbox.contract import (
    FAILURE_REASONS,
    MAX_AST_NODES,
    MAX_LINES,
    MAX_SOURCE_CHARS,
    CandidateError,
    load_program,
    normalise,
    parse_ast,
    program_hash,
    run_init,
    run_update,
    validate,
)
from sandbox.references import reference_source

# Line numbers matter below: the statement under test is inserted as line 8, inside `update`.
BASE = '''HPARAMS = {"lr": 1e-3, "beta": 0.9}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    m = interp(grad, state["m"], hp.beta)
    return -hp.lr * m, {"m": m}
'''
LINE = 8


def with_statement(code: str) -> str:
    """BASE with ``code`` (indented for the body of update) inserted as line 8."""
    lines = BASE.splitlines()
    return "\n".join(lines[:7] + [code] + lines[7:]) + "\n"


def rejected(source: str) -> CandidateError:
    with pytest.raises(CandidateError) as info:
        load_program(source)
    err = info.value
    assert err.reason in FAILURE_REASONS
    # validate() and load_program() agree
    with pytest.raises(CandidateError) as again:
        validate(source)
    assert str(again.value) == str(err)
    return err


FORBIDDEN_STATEMENTS = {
    # id: (statement at line 8, reason, fragment the message must contain)
    "import": ("    import os", "forbidden_construct", "import"),
    "from-import": ("    from os import path", "forbidden_construct", "import"),
    "dunder-name": ("    x = __builtins__", "forbidden_construct", "`__builtins__`"),
    "dunder-attribute": ("    x = grad.__class__", "forbidden_construct", "`grad.__class__`"),
    "tensor-attribute": ("    x = grad.data", "forbidden_construct", "`grad.data`"),
    "unknown-hparam": ("    x = hp.gamma", "forbidden_construct", "`hp.gamma`"),
    "method-call": ("    x = grad.add_(1)", "forbidden_construct", "`grad.add_`"),
    "while": ("    while step > 0:\n        step = step - 1", "forbidden_construct", "`while` loop"),
    "lambda": ("    f = lambda z: z", "forbidden_construct", "lambda"),
    "list-comprehension": ("    xs = [m for i in range(3)]", "forbidden_construct", "list comprehension"),
    "dict-comprehension": ('    xs = {"a": m for i in range(3)}', "forbidden_construct", "dict comprehension"),
    "generator": ("    x = sum(m for i in range(3))", "forbidden_construct", "generator expression"),
    "subscript-assignment": ('    state["m"] = m', "forbidden_construct", "assigning into a subscript"),
    "attribute-assignment": ("    hp.lr = 1.0", "forbidden_construct", "`hp.lr`"),
    "loop-over-17": ("    for i in range(17):\n        m = m + 1", "forbidden_construct", "17 iterations"),
    "loop-2-to-20": ("    for i in range(2, 20):\n        m = m + 1", "forbidden_construct", "18 iterations"),
    "loop-over-variable": ("    for i in range(step):\n        m = m + 1", "forbidden_construct", "`range(step)`"),
    "loop-over-tensor": ("    for row in grad:\n        m = m + 1", "forbidden_construct", "a loop over `grad`"),
    "with": ("    with m:\n        m = m", "forbidden_construct", "`with` block"),
    "try": ("    try:\n        m = m\n    except:\n        m = m", "forbidden_construct", "`try` block"),
    "global": ("    global m", "forbidden_construct", "`global`"),
    "del": ("    del m", "forbidden_construct", "`del`"),
    "f-string": ('    x = f"{m}"', "forbidden_construct", "f-string"),
    "starred": ("    x = maximum(*m)", "forbidden_construct", "starred expression"),
    "nested-function": ("    def inner(x):\n        return x", "forbidden_construct", "nested function `inner`"),
    "bare-expression": ("    maximum(m, m)", "forbidden_construct", "bare expression"),
    "unknown-op": ("    x = softmax(grad)", "invalid_code", "unknown op `softmax`"),
    "builtin-eval": ('    x = eval("1")', "invalid_code", "unknown op `eval`"),
    "builtin-getattr": ('    x = getattr(grad, "data")', "invalid_code", "unknown op `getattr`"),
    "builtin-open": ('    x = open("/etc/passwd")', "invalid_code", "unknown op `open`"),
    "unknown-name": ("    x = torch + 1", "invalid_code", "unknown name `torch`"),
    "op-as-value": ("    f = sqrt", "forbidden_construct", "using the function `sqrt` as a value"),
    "range-as-value": ("    r = range(3)", "forbidden_construct", "`range` outside"),
}


@pytest.mark.parametrize("case", sorted(FORBIDDEN_STATEMENTS))
def test_rejection_names_reason_line_and_construct(case: str) -> None:
    code, reason, fragment = FORBIDDEN_STATEMENTS[case]
    err = rejected(with_statement(code))
    assert err.reason == reason
    assert err.line == LINE
    assert str(err).startswith(f"line {LINE}: ")
    assert fragment in err.message


def test_nested_loop_depth() -> None:
    code = ("    for i in range(2):\n        for j in range(2):\n"
            "            for k in range(2):\n                m = m + 1")
    err = rejected(with_statement(code))
    assert (err.reason, err.line) == ("forbidden_construct", LINE + 2)
    assert "nested more than 2 deep" in err.message
    # two levels are fine
    load_program(with_statement("    for i in range(16):\n        for j in range(16):\n            m = m + 1"))


@pytest.mark.parametrize("helpers, line", [
    ("def f(x):\n    return f(x)\n", 10),
    ("def f(x):\n    return g(x)\n\ndef g(x):\n    return f(x)\n", 10),
])
def test_recursion(helpers: str, line: int) -> None:
    err = rejected(BASE + "\n" + helpers)
    assert (err.reason, err.line) == ("forbidden_construct", line)
    assert "recursion through `f`" in err.message


def test_helper_functions_and_constants_are_allowed() -> None:
    source = BASE.replace("    m = interp", "    m = scale(interp").replace('hp.beta)\n', "hp.beta))\n")
    program = load_program(source + "\nFACTOR = 2.0\n\ndef scale(x):\n    return FACTOR * x\n")
    delta, _ = program.update(torch.ones(3), torch.zeros(3), {"m": torch.zeros(3)}, 1, program.hp())
    torch.testing.assert_close(delta, torch.full((3,), -1e-3 * 2 * 0.1))


@pytest.mark.parametrize("old, new, expected", [
    ("def init(param):", "def init(p, q):", "wrong `init` signature: expected init(param), got init(p, q)"),
    ("def update(grad, param, state, step, hp):", "def update(grad, param, state):",
     "wrong `update` signature: expected update(grad, param, state, step, hp), got update(grad, param, state)"),
])
def test_wrong_signatures(old: str, new: str, expected: str) -> None:
    err = rejected(BASE.replace(old, new))
    assert err.reason == "invalid_code"
    assert err.line == BASE.splitlines().index(old) + 1
    assert expected in err.message


def test_missing_functions() -> None:
    err = rejected(BASE.replace("def init(param):\n    return {\"m\": zeros_like(param)}\n", ""))
    assert err.reason == "invalid_code" and "must define `def init(param):`" in err.message


@pytest.mark.parametrize("hparams, fragment", [
    (None, "must define HPARAMS"),
    ('{"beta": 0.9}', 'must contain "lr"'),
    ('{"lr": 0.0}', 'HPARAMS["lr"] must be positive'),
    ('{"lr": "fast"}', "HPARAMS['lr'] must be a number literal"),
    ('{"lr": 1e-3, "if": 2.0}', "HPARAMS key 'if'"),
    ('{"lr": 1e-3, "replace": 2.0}', "HPARAMS key 'replace'"),
    ('{"lr": 1e-3, "as_dict": 2.0}', "HPARAMS key 'as_dict'"),  # a tensor attribute name (`data`, `clip`) is fine
    ('dict(lr=1e-3)', "HPARAMS must be a dict literal"),
])
def test_hparams_rules(hparams: str | None, fragment: str) -> None:
    if hparams is None:
        source = BASE.replace('HPARAMS = {"lr": 1e-3, "beta": 0.9}\n', "")
    else:
        source = BASE.replace('{"lr": 1e-3, "beta": 0.9}', hparams).replace("hp.beta", "0.9")
    err = rejected(source)
    assert err.reason == "invalid_code"
    assert fragment in err.message


@pytest.mark.parametrize("top, fragment", [
    ("class Hack:\n    pass\n", "class definition"),
    ('print("hello")\n', "module-level statement `print('hello')`"),
    ("X = foo()\n", "module-level value of `X`"),
])
def test_module_level_rules(top: str, fragment: str) -> None:
    err = rejected(top + BASE)
    assert (err.reason, err.line) == ("forbidden_construct", 1)
    assert fragment in err.message


def test_size_limits() -> None:
    long_comment = BASE + "#" * (MAX_SOURCE_CHARS + 1) + "\n"
    err = rejected(long_comment)
    assert err.reason == "forbidden_construct" and f"(limit {MAX_SOURCE_CHARS})" in err.message

    many_lines = BASE + "\n" * MAX_LINES
    err = rejected(many_lines)
    assert err.reason == "forbidden_construct" and f"lines (limit {MAX_LINES})" in err.message

    many_nodes = with_statement("    x = " + " + ".join(["m"] * (MAX_AST_NODES // 2)))
    assert len(many_nodes) < MAX_SOURCE_CHARS
    err = rejected(many_nodes)
    assert err.reason == "forbidden_construct" and f"syntax nodes (limit {MAX_AST_NODES})" in err.message


@pytest.mark.parametrize("text, fragment", [
    ("This optimizer uses momentum and then\nscales the step by the gradient norm.", "syntax error"),
    ("", "empty"),
    ("```python\nHPARAMS = {'lr': 1.0}\n```", "syntax error"),
])
def test_non_python_text(text: str, fragment: str) -> None:
    err = rejected(text)
    assert err.reason == "invalid_code" and fragment in err.message


def test_non_text_is_rejected() -> None:
    err = rejected(b"HPARAMS = {}")  # type: ignore[arg-type]
    assert err.reason == "invalid_code" and "bytes" in err.message


# --- the runtime output contract ----------------------------------------------------------


def program_returning(expression: str, state_init: str = '{"m": zeros_like(param)}'):
    return load_program(
        'HPARAMS = {"lr": 0.1}\n\n'
        f"def init(param):\n    return {state_init}\n\n"
        f"def update(grad, param, state, step, hp):\n    return {expression}\n")


@pytest.mark.parametrize("expression, fragment", [
    ("grad", "update must return (delta, new_state), got Tensor"),
    ("grad, state, 1", "got tuple of length 3"),
    ("1.0, state", "delta must be a tensor shaped like param, got float"),
    ("ones_like(grad[0]), state", "delta has shape (4,), param has (3, 4)"),
    ("grad > 0, state", "dtype torch.bool"),
    ("grad, 3", "must return a dict of tensors as state, got int"),
    ('grad, {"v": grad}', "state keys ['v'], but init made ['m']"),
    ('grad, {"m": grad, "extra": grad}', "state keys ['extra', 'm'], but init made ['m']"),
    ('grad, {"m": 1.0}', "state['m'] must be a tensor, got float"),
])
def test_run_update_checks_the_output(expression: str, fragment: str) -> None:
    program = program_returning(expression)
    param = torch.randn(3, 4)
    state = run_init(program, param)
    with pytest.raises(CandidateError) as info:
        run_update(program, torch.randn(3, 4), param, state, 1, program.hp())
    assert info.value.reason == "shape_error"
    assert fragment in str(info.value)


@pytest.mark.parametrize("state_init, fragment", [
    ("zeros_like(param)", "init must return a dict of tensors as state, got Tensor"),
    ('{"m": 0.0}', "init: state['m'] must be a tensor, got float"),
])
def test_run_init_checks_the_output(state_init: str, fragment: str) -> None:
    program = program_returning("grad, state", state_init)
    with pytest.raises(CandidateError) as info:
        run_init(program, torch.randn(3))
    assert info.value.reason == "shape_error" and fragment in str(info.value)


def test_state_size_is_bounded() -> None:
    program = program_returning("grad, state", '{"m": zeros_like(param), "big": zeros_like(dot(param, param) * ones_like(param))}')
    run_init(program, torch.randn(3))  # 6 entries for 3: fine
    wide = load_program(
        'HPARAMS = {"lr": 0.1}\n\ndef init(param):\n'
        "    return {\"outer\": matmul(transpose(param), param)}\n\n"
        "def update(grad, param, state, step, hp):\n    return grad, state\n")
    with pytest.raises(CandidateError) as info:
        run_init(wide, torch.randn(1, 3000))  # a 3000 x 3000 state for 3000 entries
    assert info.value.reason == "shape_error" and "more than 8x" in str(info.value)


# --- purity ---------------------------------------------------------------------------------

AUGMENTED = '''HPARAMS = {"lr": 0.5}

def init(param):
    return {"m": zeros_like(param)}

def update(grad, param, state, step, hp):
    m = state["m"]
    m += grad
    m *= 2.0
    grad -= 1.0
    param += grad
    param /= 4.0
    return param, {"m": m}
'''


def test_augmented_assignment_does_not_mutate_the_callers_tensors() -> None:
    program = load_program(AUGMENTED)
    grad, param, m = torch.randn(5), torch.randn(5), torch.randn(5)
    before = (grad.clone(), param.clone(), m.clone())
    delta, new_state = run_update(program, grad, param, {"m": m}, 1, program.hp())
    for tensor, original in zip((grad, param, m), before):
        assert torch.equal(tensor, original)
    g0, p0, m0 = before
    torch.testing.assert_close(new_state["m"], (m0 + g0) * 2.0)
    torch.testing.assert_close(delta, (p0 + (g0 - 1.0)) / 4.0)


def test_loaded_program_has_no_builtins() -> None:
    program = load_program(BASE)
    builtins = program.update.__globals__["__builtins__"]
    assert set(builtins) == {"range"}
    assert set(vocabulary.OPS) <= set(program.update.__globals__)


# --- hashing for de-duplication -----------------------------------------------------------

REFORMATTED = '''"""Same rule, different text."""

# comments do not count
HPARAMS = {"lr": 0.001, "beta": 0.90}


def update(g, p, s, t, h):
    """Renamed arguments and locals."""
    avg = interp(g,
                 s["m"],   # the old average
                 h.beta)
    return (-h.lr * avg), {"m": avg}


def init(x):
    return {"m": zeros_like(x)}
'''


def test_program_hash_ignores_formatting_comments_and_local_names() -> None:
    assert program_hash(BASE) == program_hash(REFORMATTED)
    assert normalise(BASE) == normalise(REFORMATTED)
    assert load_program(BASE).hash == program_hash(BASE)


@pytest.mark.parametrize("old, new", [
    ('"beta": 0.9', '"beta": 0.95'),
    ('"lr": 1e-3', '"lr": 2e-3'),
    ("-hp.lr * m", "-hp.lr * sign(m)"),
    ("interp(grad, state[\"m\"], hp.beta)", "interp(state[\"m\"], grad, hp.beta)"),
])
def test_program_hash_changes_with_behaviour(old: str, new: str) -> None:
    changed = BASE.replace(old, new)
    assert changed != BASE
    assert program_hash(changed) != program_hash(BASE)


# --- vocabulary ------------------------------------------------------------------------------


def test_describe_has_one_line_per_op() -> None:
    lines = vocabulary.describe().splitlines()
    assert len(lines) == len(vocabulary.OPS)
    assert [line.split("(", 1)[0] for line in lines] == list(vocabulary.OPS)
    for line in lines:
        signature, meaning = line.split("): ", 1)
        assert meaning.strip(), line


def test_ops_work_on_numbers_and_tensors() -> None:
    x = torch.tensor([0.25, 4.0], dtype=torch.float64)
    for name in ("abs", "sign", "sqrt", "rsqrt", "exp", "log", "square", "tanh", "sigmoid", "relu"):
        op = vocabulary.OPS[name]
        on_numbers = [op(float(v)) for v in x]
        torch.testing.assert_close(torch.tensor(on_numbers, dtype=torch.float64), op(x), rtol=1e-15, atol=0)
    assert vocabulary.size(torch.zeros(3, 5), 0) == 3 and vocabulary.size(torch.zeros(3, 5), -1) == 5


def test_parsing_is_safe_from_several_threads_at_once() -> None:
    # CPython < 3.13: ast.parse in two threads at once can raise "SystemError: AST constructor
    # recursion depth mismatch" when a garbage collection (running __del__) switches threads in
    # the middle (python/cpython#106905); a campaign parses in evaluation and proposal threads.
    # Unguarded, this loop raised it ~24 times in 1200 parses here; parse_ast must never.
    source = reference_source("adamw") * 3
    errors: list[str] = []

    class Garbage:
        def __del__(self) -> None:
            sum(range(50))  # Python code inside a collection: a thread switch point

    def work() -> None:
        for i in range(300):
            junk = [Garbage() for _ in range(5)]
            for j in junk:
                j.cycle = j
            del junk
            try:
                parse_ast(source) if i % 2 else program_hash(source)
            except SystemError as exc:
                errors.append(str(exc))

    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    gc.set_threshold(50)
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(interval)
    assert errors == []
