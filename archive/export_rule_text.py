"""The rule's own text for an exported module, exactly as the sandbox executes it."""

from __future__ import annotations

import ast

from sandbox.contract import executable_module, parse_ast


def rule_text(source: str, reserved: set[str]) -> str:
    """The program's code (without its module docstring) as the sandbox executes it.

    Where possible this is the original text with each ``x op= y`` rewritten in place, so
    comments and layout survive; a program whose top-level names collide with the module's
    other names gets them renamed and is printed from the syntax tree instead. Either way the
    result parses to exactly the tree :func:`sandbox.contract.load_program` executes.
    """
    executed = executable_module(source)
    if executed.body and _is_docstring(executed.body[0]):
        executed.body = executed.body[1:]
    top_level = {node.name for node in executed.body if isinstance(node, ast.FunctionDef)} | {
        target.id for node in executed.body if isinstance(node, ast.Assign)
        for target in node.targets if isinstance(target, ast.Name)}
    collisions = sorted(top_level & reserved - {"HPARAMS", "init", "update"})
    if collisions:
        taken = reserved | {node.id for node in ast.walk(executed) if isinstance(node, ast.Name)}
        renames = {}
        for name in collisions:
            new = f"{name}_rule"
            while new in taken:
                new += "_"
            taken.add(new)
            renames[name] = new
        executed = _Rename(renames).visit(executed)
        return ast.unparse(executed)
    text = _rewrite_in_place(source)
    if text is not None and ast.dump(parse_ast(text)) == ast.dump(executed):
        return text
    return ast.unparse(executed)


def _rewrite_in_place(source: str) -> str | None:
    """The source with its docstring dropped and every augmented assignment spelled out."""
    tree = parse_ast(source)
    edits = []  # (start line, start col, end line, end col, replacement), 1-based lines
    if tree.body and _is_docstring(tree.body[0]):
        doc = tree.body[0]
        edits.append((doc.lineno, doc.col_offset, doc.end_lineno, doc.end_col_offset, ""))
    for node in ast.walk(tree):
        if isinstance(node, ast.AugAssign):
            if node.lineno != node.end_lineno:
                return None  # a statement over several lines: let the tree printer lay it out
            spelled = ast.Assign(targets=[node.target], value=ast.BinOp(
                ast.Name(id=node.target.id, ctx=ast.Load()), node.op, node.value))
            edits.append((node.lineno, node.col_offset, node.end_lineno, node.end_col_offset,
                          ast.unparse(ast.fix_missing_locations(spelled))))
    lines = source.splitlines(keepends=True)
    for start, col, end, end_col, text in sorted(edits, reverse=True):
        head = _utf8_prefix(lines[start - 1], col)
        tail = _utf8_suffix(lines[end - 1], end_col)
        lines[start - 1:end] = [head + text + tail]
    return "".join(lines).strip("\n") + "\n"


def _utf8_prefix(line: str, byte_col: int) -> str:
    # ast columns are UTF-8 byte offsets
    return line.encode("utf-8")[:byte_col].decode("utf-8")


def _utf8_suffix(line: str, byte_col: int) -> str:
    return line.encode("utf-8")[byte_col:].decode("utf-8")


class _Rename(ast.NodeTransformer):
    def __init__(self, renames: dict[str, str]):
        self.renames = renames

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.renames.get(node.id, node.id)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.name = self.renames.get(node.name, node.name)
        for arg in node.args.args:
            arg.arg = self.renames.get(arg.arg, arg.arg)
        self.generic_visit(node)
        return node


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)
