"""Writing a file the user named (an exported module, a report): clear errors, no traceback."""

from __future__ import annotations

from pathlib import Path

from discover.errors import UserError


def write_user_file(path: str | Path, text: str, example_name: str) -> Path:
    """Write ``text`` to ``path`` (creating its folder); a directory or an unwritable place is a
    :class:`UserError` that suggests ``example_name`` as a file name."""
    output = Path(path).expanduser()
    if output.is_dir():
        raise UserError(f"{output} is a directory; give a file name such as {output / example_name}")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None
    return output
