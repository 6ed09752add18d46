"""Parsing LLM answers (programs, SEARCH/REPLACE edits, critiques) and rendering prompts."""

from __future__ import annotations

import json

import pytest

from discover.parsing import ParseError, apply_diff, extract_critique, extract_program, parse_diff
from prompts import PromptError, placeholders, render, template
from sandbox.contract import validate
from sandbox.references import reference_source
from sandbox.vocabulary import describe

PROGRAM = '''"""Signed momentum with decoupled decay."""

HPARAMS = {"lr": 1e-3, "beta1": 0.9, "weight_decay": 0.01}


def init(param):
    return {"m": zeros_like(param)}


def update(grad, param, state, step, hp):
    m = interp(grad, state["m"], hp.beta1)
    return -hp.lr * (sign(m) + hp.weight_decay * param), {"m": m}
'''


def fenced(code: str, lang: str = "python") -> str:
    return f"```{lang}\n{code}```"


# --- extract_program -----------------------------------------------------------------------


@pytest.mark.parametrize("answer", [
    pytest.param(fenced(PROGRAM), id="python-fence"),
    pytest.param(fenced(PROGRAM, lang=""), id="bare-fence"),
    pytest.param(f"Idea: sign of momentum.\n\n{fenced(PROGRAM)}\n\nThis should be robust to noise.", id="prose-around"),
    pytest.param(PROGRAM, id="plain-code"),
    pytest.param(f"Here is the program:\n\n{PROGRAM}\nIt uses the sign of the momentum.", id="prose-around-unfenced"),
    pytest.param(json.dumps({"idea": "signed momentum", "code": PROGRAM}), id="json-code-field"),
    pytest.param("```json\n" + json.dumps({"program": fenced(PROGRAM)}) + "\n```", id="json-program-field-fenced"),
    pytest.param(f"<think>maybe ```python\ndef update(x): pass\n```</think>\n{fenced(PROGRAM)}", id="thinking-ignored"),
    pytest.param(f"Sure:\n```python\n{PROGRAM}", id="unclosed-fence"),
    pytest.param(fenced(PROGRAM).replace("\n", "\r\n"), id="crlf"),
])
def test_extract_program_formats(answer):
    code = extract_program(answer)
    assert code == PROGRAM
    validate(code)


def test_extract_program_picks_the_fence_that_defines_update():
    answer = (
        "Adam's moment update looks like this:\n"
        + fenced('v = interp(grad * grad, state["v"], hp.beta2)\n')
        + "\nUsage:\n" + fenced("opt = SignedMomentum(model.parameters())\n")
        + "\nThe full program:\n" + fenced(PROGRAM)
        + "\nExpected output:\n" + fenced("loss: 0.12\n", lang="text")
    )
    assert extract_program(answer) == PROGRAM


def test_extract_program_prefers_the_complete_and_then_the_last_version():
    partial = "def update(grad, param, state, step, hp):\n    return -hp.lr * grad, state\n"
    revised = PROGRAM.replace("sign(m)", "tanh(m)")
    answer = f"Only update changes:\n{fenced(partial)}\nBefore:\n{fenced(PROGRAM)}\nAfter:\n{fenced(revised)}"
    assert extract_program(answer) == revised


def test_extract_program_keeps_an_incomplete_program_for_validation_to_explain():
    code = extract_program(fenced('HPARAMS = {"lr": 0.1}\n\ndef init(param):\n    return {}\n'))
    assert code.startswith("HPARAMS")  # the contract check then says `update` is missing


@pytest.mark.parametrize("answer, message", [
    ("", "the answer is empty"),
    ("   \n", "the answer is empty"),
    ("I would use the sign of the momentum with a small weight decay.", "contains no Python code"),
    ("Use momentum.\n```text\nlower the learning rate\n```", "contains no Python code"),
    ("<<<<<<< SEARCH\nm = 1\n=======\nm = 2\n>>>>>>> REPLACE", "SEARCH/REPLACE edits, but a full program was asked for"),
])
def test_extract_program_failures_explain_what_was_expected(answer, message):
    with pytest.raises(ParseError, match=message) as info:
        extract_program(answer)
    assert "```python" in str(info.value)


# --- SEARCH/REPLACE ------------------------------------------------------------------------

DIFF = '''I will replace the sign with tanh and add a bias correction.

```
<<<<<<< SEARCH
    m = interp(grad, state["m"], hp.beta1)
    return -hp.lr * (sign(m) + hp.weight_decay * param), {"m": m}
=======
    m = interp(grad, state["m"], hp.beta1)
    m_hat = m / (1 - hp.beta1 ** step)
    return -hp.lr * (tanh(m_hat) + hp.weight_decay * param), {"m": m}
>>>>>>> REPLACE
```

<<<<<<< SEARCH
HPARAMS = {"lr": 1e-3, "beta1": 0.9, "weight_decay": 0.01}
=======
HPARAMS = {"lr": 3e-4, "beta1": 0.95, "weight_decay": 0.01}
>>>>>>> REPLACE
'''


def test_parse_and_apply_diff():
    blocks = parse_diff(DIFF)
    assert len(blocks) == 2
    assert blocks[1] == ('HPARAMS = {"lr": 1e-3, "beta1": 0.9, "weight_decay": 0.01}',
                         'HPARAMS = {"lr": 3e-4, "beta1": 0.95, "weight_decay": 0.01}')
    edited = apply_diff(PROGRAM, blocks)
    validate(edited)
    assert "m_hat = m / (1 - hp.beta1 ** step)" in edited and "tanh(m_hat)" in edited
    assert '"lr": 3e-4' in edited and "sign(m)" not in edited
    assert edited.count("\n") == PROGRAM.count("\n") + 1


def test_apply_diff_tolerates_indentation_and_blank_lines():
    # The model dropped the function-body indentation and added a blank line.
    blocks = parse_diff(
        "<<<<<<< SEARCH\n"
        'm = interp(grad, state["m"], hp.beta1)\n'
        "\n"
        'return -hp.lr * (sign(m) + hp.weight_decay * param), {"m": m}   \n'
        "=======\n"
        'm = interp(grad, state["m"], hp.beta1)\n'
        "if step > 10:\n"
        "    m = m * 1.0\n"
        'return -hp.lr * sign(m), {"m": m}\n'
        ">>>>>>> REPLACE\n")
    edited = apply_diff(PROGRAM, blocks)
    assert edited.endswith(
        '    m = interp(grad, state["m"], hp.beta1)\n'
        "    if step > 10:\n"
        "        m = m * 1.0\n"
        '    return -hp.lr * sign(m), {"m": m}\n')
    validate(edited)


def test_apply_diff_accepts_a_part_of_a_line():
    edited = apply_diff(PROGRAM, [("sign(m)", "tanh(m)")])
    assert "tanh(m) + hp.weight_decay" in edited


def test_apply_diff_names_the_first_block_that_does_not_match():
    blocks = [("def init(param):", "def init(param):"),
              ("    v = interp(grad * grad, state['v'], hp.beta2)", "    v = 0"),
              ("nothing like this", "x")]
    with pytest.raises(ParseError, match=r"block 2 of 3 does not match.*\"v = interp.*closest program line is 'm = interp"):
        apply_diff(PROGRAM, blocks)


def test_apply_diff_sees_earlier_edits():
    blocks = [("sign(m)", "tanh(m)"), ("tanh(m)", "clamp(m, -1, 1)")]
    assert "clamp(m, -1, 1) + hp.weight_decay" in apply_diff(PROGRAM, blocks)
    with pytest.raises(ParseError, match="block 2 of 2"):
        apply_diff(PROGRAM, [("sign(m)", "tanh(m)"), ("sign(m)", "x")])


@pytest.mark.parametrize("answer, message", [
    ("I would change the sign to tanh.", "no SEARCH/REPLACE blocks"),
    ("<<<<<<< SEARCH\nm = 1\n=======\nm = 2\n", "block 1 is not closed"),
    ("<<<<<<< SEARCH\nm = 1\n<<<<<<< SEARCH\n", "line 3: block 1 is not finished"),
    ("<<<<<<< SEARCH\nm = 1\n>>>>>>> REPLACE\n", "line 3: `>>>>>>> REPLACE` without"),
    ("<<<<<<< SEARCH\na\n=======\nb\n=======\nc\n>>>>>>> REPLACE", "line 5: block 1 has a second `=======`"),
])
def test_parse_diff_failures(answer, message):
    with pytest.raises(ParseError, match=message):
        parse_diff(answer)


def test_parse_diff_ignores_a_setext_underline_outside_blocks():
    answer = "Plan\n=======\n<<<<<<< SEARCH\nsign(m)\n=======\ntanh(m)\n>>>>>>> REPLACE\n"
    assert parse_diff(answer) == [("sign(m)", "tanh(m)")]


def test_empty_search_section_is_rejected():
    with pytest.raises(ParseError, match="block 1 of 1 has an empty SEARCH section"):
        apply_diff(PROGRAM, parse_diff("<<<<<<< SEARCH\n=======\nx = 1\n>>>>>>> REPLACE"))


# --- critiques -----------------------------------------------------------------------------


def test_extract_critique_strips_boilerplate_and_fences():
    answer = ("Sure! Here is my critique:\n\n"
              "The sign() update oscillates on the quadratics.\n\n\n\n"
              "```\nUse tanh(m / rms(m)) instead.\n```\n"
              "Let me know if you need more detail.")
    assert extract_critique(answer) == ("The sign() update oscillates on the quadratics.\n\n"
                                        "Use tanh(m / rms(m)) instead.")


def test_extract_critique_caps_length_at_a_word_boundary():
    critique = extract_critique("word " * 1000, max_chars=100)
    assert len(critique) <= 106 and critique.endswith("word [...]")


def test_extract_critique_rejects_an_empty_answer():
    with pytest.raises(ParseError, match="critic's answer is empty"):
        extract_critique("<think>hmm</think>\nSure!\n")


# --- prompts -------------------------------------------------------------------------------

PROMPT_VALUES = {
    "vocabulary": describe(),
    "contract": template("contract"),
    "program": PROGRAM,
    "parent_feedback": "quadratic: 1.40x AdamW; mlp_digits: diverged at step 120",
    "archive_summary": "best: 1.12x (signed momentum)",
    "critique": "Bound the update with tanh.",
    "parent_a": PROGRAM,
    "parent_b": reference_source("adamw"),
    "error": "line 3: unknown op `foo` (not in the vocabulary)",
}


@pytest.mark.parametrize("name", ["system", "propose", "diff", "critique", "edit", "crossover", "retry"])
def test_every_prompt_renders_all_its_placeholders(name):
    text = render(name, **{key: PROMPT_VALUES[key] for key in placeholders(name)})
    assert "$" not in text.replace("$$", "")
    for key in placeholders(name):
        assert PROMPT_VALUES[key] in text


def test_system_prompt_shows_a_valid_example_and_the_vocabulary():
    text = render("system", vocabulary=describe(), contract=template("contract"))
    assert "newton_schulz(x, steps)" in text
    validate(extract_program(template("contract")))


def test_render_fails_loudly_on_a_missing_placeholder():
    with pytest.raises(PromptError, match=r"prompt 'diff' needs a value for \$archive_summary, \$parent_feedback"):
        render("diff", program=PROGRAM)
    with pytest.raises(PromptError, match=r"prompt 'retry' has no placeholder for critique \(prompts/retry.txt uses: \$error\)"):
        render("retry", error="x", critique="y")
    with pytest.raises(PromptError, match="no prompt template 'nope'; known: .*propose"):
        render("nope")
