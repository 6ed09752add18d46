"""Offline symbolic mutation and crossover of candidate programs: the proposer that needs no LLM.

In the spirit of the program search that found Lion (Chen et al., "Symbolic Discovery of
Optimization Algorithms", 2023), a child is its parent with a few random edits: replace an op,
an operator, an operand or a constant; insert a statement, a wrapping op, a new moving-average
state or a new hyperparameter; delete a statement or simplify an expression to one of its
operands; swap arguments. Edits are plain functions in the :data:`EDITS` registry, each drawn
with a weight.

Edits work on the AST and keep the program well formed. A small *kind* analysis
(:class:`_Analysis`) tracks which values are parameter-shaped tensors, 0-d tensors, numbers or
masks, and which names are certainly assigned at each statement; an edit only puts an
expression where one of the same kind was, and a child is kept only if (1) every name it reads
is assigned first, the update is still shaped like the parameter and init's and update's
state keys still agree, (2) it passes :func:`sandbox.contract.validate`, and (3) its
:func:`~sandbox.contract.program_hash` differs from its parent's. Otherwise another random edit
is tried, up to ``max_attempts`` times, before :class:`MutationError`.

Every random choice comes from the ``random.Random`` passed in, and nothing iterates a set, so
one seed gives the same children in the same order.

The package, one module a part (each imports only the ones above it, and ``sandbox``):

- :mod:`.analysis`: the kind analysis (:class:`_Analysis`, the kinds ``TENSOR``, ``ZEROD`` ...);
- :mod:`.ast_tools`: small AST helpers, the editable expressions of a function (:class:`_Site`);
- :mod:`.work`: :class:`_Work`, the program being edited;
- :mod:`.values`: :func:`perturb_value` and the other number moves;
- :mod:`.children`: :class:`Mutation`, :class:`MutationError`, and the checks a child must pass;
- :mod:`.expression_edits`, :mod:`.structure_edits`: the edit functions;
- :mod:`.edits`: the registry :data:`EDITS` and :func:`mutate`;
- :mod:`.crossovers`: the registry :data:`CROSSOVERS` and :func:`crossover`.
"""

# Besides the public API, the internals tests and scripts reach as `mutation._Work` (the package
# was one module): `_Analysis`, `_Site`, `_sites`, `_Work`.
from discover.mutation.analysis import HP, MASK, SCALAR, STATE, TENSOR, UNKNOWN, ZEROD
from discover.mutation.analysis import _Analysis as _Analysis
from discover.mutation.ast_tools import SNIPPET_CHARS
from discover.mutation.ast_tools import _Site as _Site
from discover.mutation.ast_tools import _sites as _sites
from discover.mutation.children import Mutation, MutationError
from discover.mutation.crossovers import CROSSOVERS, Crossover, crossover
from discover.mutation.edits import DEFAULT_ATTEMPTS, EDITS, Edit, mutate
from discover.mutation.values import perturb_value
from discover.mutation.work import _Work as _Work

__all__ = [
    "CROSSOVERS", "DEFAULT_ATTEMPTS", "EDITS", "HP", "MASK", "SCALAR", "SNIPPET_CHARS", "STATE", "TENSOR", "UNKNOWN",
    "ZEROD", "Crossover", "Edit", "Mutation", "MutationError", "crossover", "mutate", "perturb_value",
]
