"""The candidate-program contract: parse, validate, normalise and load an update rule.

A candidate is a short module of restricted Python (see shared/DESIGN.md section 2)::

    HPARAMS = {"lr": 1e-3, "beta1": 0.9}

    def init(param):
        return {"m": zeros_like(param)}

    def update(grad, param, state, step, hp):
        m = interp(grad, state["m"], hp.beta1)
        return -hp.lr * sign(m), {"m": m}

Validation works on the AST before anything runs and rejects with a message that names the
line and the construct. Loading executes the (already validated) module with no builtins but
the vocabulary, so even a construct the whitelist missed finds nothing dangerous in scope.
Untrusted code still only *runs* inside a sandbox worker; this module is the first wall.

This module is the contract's one import point; the code lives in modules named for what they do:

- :mod:`sandbox.contract_terms`: failure reasons, limits, signatures, ``CandidateError``, ``HParams``
- :mod:`sandbox.contract_syntax`: parsing within the size limits, literals and docstrings off the tree
- :mod:`sandbox.contract_checker`: the whitelist walk over one function body
- :mod:`sandbox.contract_validate`: validation of the whole module (HPARAMS, signatures, recursion)
- :mod:`sandbox.contract_normalise`: canonical text and ``program_hash`` for exact de-duplication
- :mod:`sandbox.contract_load`: ``Program``, the executed tree and the restricted globals
- :mod:`sandbox.contract_run`: one ``init``/``update`` call with its output contract checked
"""

from __future__ import annotations

# ruff: noqa: F401 - this module re-exports the contract, the private names of the one module it
# once was included (the grammar builder reads _BINOPS/_UNARYOPS/_CMPOPS, the constrained proposer
# _literal_number); __all__ names the public ones.
from sandbox.contract_checker import (
    _BINOPS,
    _CMPOPS,
    _CONSTRUCT_NAMES,
    _UNARYOPS,
    MAX_CONSTANT_BITS,
    _Checker,
    _constant_int,
)
from sandbox.contract_load import (
    Program,
    _executable,
    _NoInPlace,
    _safe_range,
    executable_module,
    load_program,
)
from sandbox.contract_normalise import _Canonical, normalise, program_hash
from sandbox.contract_run import check_state, check_update_result, run_init, run_update
from sandbox.contract_syntax import (
    _PARSE_LOCK,
    _is_docstring,
    _literal_number,
    _max_depth,
    first_doc_line,
    parse,
    parse_ast,
)
from sandbox.contract_terms import (
    FAILURE_REASONS,
    INIT_ARGS,
    MAX_AST_DEPTH,
    MAX_AST_NODES,
    MAX_LINES,
    MAX_LOOP_DEPTH,
    MAX_LOOP_ITERATIONS,
    MAX_SOURCE_CHARS,
    MAX_STATE_FACTOR,
    UPDATE_ARGS,
    CandidateError,
    HParams,
    _forbid,
    _invalid,
)
from sandbox.contract_validate import (
    _check,
    _check_hparams,
    _Checked,
    _reject_recursion,
    validate,
)

__all__ = [
    "FAILURE_REASONS", "INIT_ARGS", "MAX_AST_DEPTH", "MAX_AST_NODES", "MAX_CONSTANT_BITS", "MAX_LINES",
    "MAX_LOOP_DEPTH", "MAX_LOOP_ITERATIONS", "MAX_SOURCE_CHARS", "MAX_STATE_FACTOR", "UPDATE_ARGS",
    "CandidateError", "HParams", "Program", "check_state", "check_update_result", "executable_module",
    "first_doc_line", "load_program", "normalise", "parse", "parse_ast", "program_hash", "run_init",
    "run_update", "validate",
]
