"""The program being edited: its parsed tree with handles on the parts edits touch."""

from __future__ import annotations

import ast

import torch

from discover.mutation.analysis import _Analysis
from discover.mutation.ast_tools import _is_docstring, _number, _number_node, _returns, _Site, _sites, _statements
from sandbox import vocabulary
from sandbox.contract import parse_ast


class _Work:
    """A parsed program being edited, with handles on the parts edits touch."""

    def __init__(self, source: str):
        self.tree = parse_ast(source)
        self.functions: dict[str, ast.FunctionDef] = {}
        self.constants: dict[str, float] = {}
        self.hparams_node = ast.Dict(keys=[], values=[])
        for stmt in self.tree.body:
            if isinstance(stmt, ast.FunctionDef):
                self.functions[stmt.name] = stmt
            elif isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
                if stmt.targets[0].id == "HPARAMS" and isinstance(stmt.value, ast.Dict):
                    self.hparams_node = stmt.value
                elif _number(stmt.value) is not None:
                    self.constants[stmt.targets[0].id] = _number(stmt.value)

    @property
    def init(self) -> ast.FunctionDef:
        return self.functions["init"]

    @property
    def update(self) -> ast.FunctionDef:
        return self.functions["update"]

    def arg(self, fn: ast.FunctionDef, position: int) -> str:
        """Name of ``fn``'s argument at ``position`` (``update``: grad, param, state, step, hp)."""
        return fn.args.args[position].arg

    def hparams(self) -> dict[str, float]:
        node = self.hparams_node
        return {k.value: _number(v) for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)}

    def set_hparam(self, key: str, value: float) -> None:
        node = self.hparams_node
        index = [k.value for k in node.keys].index(key)
        node.values[index] = _number_node(value)

    def add_hparam(self, stem: str, value: float) -> str:
        name = self.fresh_name(stem)
        self.hparams_node.keys.append(ast.Constant(value=name))
        self.hparams_node.values.append(_number_node(value))
        return name

    def taken(self) -> set[str]:
        """Every name in use anywhere (only for membership tests)."""
        names = {"HPARAMS", "range", *vocabulary.OPS, *self.functions, *self.constants, *self.hparams()}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Dict):
                names.update(k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str))
        return names

    def fresh_name(self, stem: str) -> str:
        """``stem`` plus the smallest number that makes a name no part of the program uses."""
        taken = self.taken()
        number = 1
        while f"{stem}{number}" in taken or hasattr(torch.Tensor, f"{stem}{number}"):
            number += 1
        return f"{stem}{number}"

    def sites(self, *names: str) -> list[_Site]:
        """Editable expressions of the named functions (all by default). When init's state
        depends on an ``if`` (Muon: one state for matrices, another for vectors), the ``if``
        conditions are left alone: update's must keep choosing the branch init chose."""
        tests = not any(isinstance(s, ast.If) for s in _statements(self.init.body))
        return [site for name, fn in self.functions.items() if not names or name in names
                for site in _sites(fn, tests)]

    def analyses(self) -> dict[str, _Analysis]:
        init = _Analysis(self, self.init)
        out = {"init": init}
        for name, fn in self.functions.items():
            if name != "init":
                out[name] = _Analysis(self, fn, init.returned_state if name == "update" else None)
        return out

    def analyse_update(self) -> _Analysis:
        return _Analysis(self, self.update, _Analysis(self, self.init).returned_state)

    def errors(self) -> list[str]:
        """What the kind analysis expects to fail at run time (empty for a sound program)."""
        analyses = self.analyses()
        errors = [e for a in analyses.values() for e in a.errors]
        init, update = analyses["init"], analyses["update"]
        if not (init.opaque_state or update.opaque_state) and set(init.state_key_sets) != set(update.state_key_sets):
            errors.append("init's and update's state keys differ")
        if "lr" not in update.hp_reads:
            errors.append("update does not read hp.lr, so the task's schedule and LR grid cannot scale it")
        return errors

    def state_dicts(self) -> tuple[list[ast.Dict], list[ast.Dict]] | None:
        """The dict literals init and update return as state, or None if one is not a literal."""
        init = [r.value for r in _returns(self.init)]
        update = [r.value.elts[1] if isinstance(r.value, ast.Tuple) and len(r.value.elts) == 2 else None
                  for r in _returns(self.update)]
        if not init or not update or not all(isinstance(d, ast.Dict) for d in init + update):
            return None
        return init, update

    def state_keys(self) -> list[str]:
        dicts = self.state_dicts()
        if dicts is None:
            return []
        keys = [k.value for d in dicts[0] for k in d.keys]
        return list(dict.fromkeys(keys))

    def common_state_keys(self) -> list[str]:
        """Keys every one of init's returns makes (Muon's vectors have a key its matrices lack)."""
        dicts = self.state_dicts()
        if dicts is None:
            return []
        return [k for k in self.state_keys() if all(k in [key.value for key in d.keys] for d in dicts[0])]

    def source(self, docstring: str) -> str:
        doc = ast.Expr(value=ast.Constant(value=docstring))
        if self.tree.body and _is_docstring(self.tree.body[0]):
            self.tree.body[0] = doc
        else:
            self.tree.body.insert(0, doc)
        return ast.unparse(self.tree) + "\n"
