"""The reference pages say what the code has (issue 23, item 2).

- ``docs/reference/configuration.md``: every constructor keyword of the auth
  classes and every keyword of ``HoxtonAuth.login`` is in its table, and
  nothing else; a default the signature states is the documented one. Every
  ``HOXTON_*`` variable the package reads is in the variables table, and
  nothing else.
- ``docs/reference/cli.md``: every option of every command, from the
  installed parser's ``--help``, is on the page, and nothing else.

A row marked ``<!-- pending: ... -->`` documents a setting being merged: it
counts once the code has that name, and is not required before.

Read through the public surface only (signatures, ``--help``, the package's
source text), so the check survives a restructuring of the private modules.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

import hoxton_auth

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION = ROOT / "docs" / "reference" / "configuration.md"
CLI = ROOT / "docs" / "reference" / "cli.md"


def _table(marker: str) -> list[list[str]]:
    """The rows (cells) of the table after ``<!-- reference: marker -->``."""
    text = CONFIGURATION.read_text(encoding="utf-8")
    start = text.index(f"<!-- reference: {marker} -->")
    rows: list[list[str]] = []
    for line in text[start:].splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if set(cells[0]) <= {"-", " "} or cells[0] in ("argument", "variable"):
            continue
        rows.append(cells)
    return rows


def _names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _pending(row: list[str]) -> bool:
    return any("<!-- pending:" in cell for cell in row)


def _documented(marker: str, code: typing.Collection[str], column: int = 1) -> dict[str, str]:
    """Name -> the cell in ``column`` of each row; a pending row's names only once in ``code``."""
    return {
        name: row[column]
        for row in _table(marker)
        for name in _names(row[0].split("<!--")[0])
        if not _pending(row) or name in code
    }


def _keywords(function: Any, *, expand: bool = True) -> dict[str, inspect.Parameter]:
    """Named parameters of ``function``, with ``**kwargs: Unpack[TypedDict]`` spelled out."""
    found: dict[str, inspect.Parameter] = {}
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD and expand:
            # "Unpack[AllArgs]": the TypedDict named in the annotation, from the
            # function's own module (Unpack itself is imported for checkers only).
            annotation = str(parameter.annotation)
            match = re.fullmatch(r"(?:typing(?:_extensions)?\.)?Unpack\[(\w+)\]", annotation)
            assert match, f"**{name}: {annotation} does not name its keywords"
            typed_dict = vars(sys.modules[function.__module__])[match.group(1)]
            for key in typing.get_type_hints(typed_dict):
                found.setdefault(key, inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY))
        elif (
            parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
            and name != "self"
        ):
            found[name] = parameter
    return found


def _documented_default(cell: str) -> Any:
    text = cell.strip("`")
    if text in ("required", "DEFAULT"):
        return text
    return ast.literal_eval(text)


def _check(documented: dict[str, str], code: dict[str, inspect.Parameter]) -> None:
    assert set(documented) == set(code), (
        f"documented but not in the code: {sorted(set(documented) - set(code))}; "
        f"in the code but not documented: {sorted(set(code) - set(documented))}"
    )
    for name, parameter in code.items():
        if parameter.default is inspect.Parameter.empty:
            continue  # required, or behind **kwargs: the signature does not say
        default = parameter.default
        expected = "DEFAULT" if default is hoxton_auth.DEFAULT else default
        assert _documented_default(documented[name]) == expected, name


def test_constructor_keywords_are_documented() -> None:
    classes = (
        hoxton_auth.HoxtonAuth,
        hoxton_auth.ClientCredentialsAuth,
        hoxton_auth.PasswordAuth,
        hoxton_auth.AuthorizationCodeAuth,
        hoxton_auth.RefreshTokenAuth,
    )
    code: dict[str, inspect.Parameter] = {}
    for cls in classes:
        code.update(_keywords(cls.__init__))
    _check(_documented("constructor", code), code)


def test_login_keywords_are_documented() -> None:
    code = {
        name: parameter
        for name, parameter in _keywords(hoxton_auth.HoxtonAuth.login, expand=False).items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    _check(_documented("login", code), code)


def test_every_variable_is_documented() -> None:
    read = set()
    for path in (ROOT / "hoxton_auth").glob("*.py"):  # the kit's own modules read none
        read |= set(re.findall(r"\bHOXTON_[A-Z_]*[A-Z]\b", path.read_text(encoding="utf-8")))
    assert set(_documented("environment", read)) == read


def _help(command: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-m", "hoxton_auth", *command.split(), "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    # Option lines only (the epilog mentions `status --check`).
    return set(re.findall(r"^ +(?:-\w, )?(--[a-z][a-z-]*)", result.stdout, re.MULTILINE))


def _cli_sections() -> dict[str, set[str]]:
    """``hoxton-auth [COMMAND]`` -> the options in the first cells of its tables."""
    sections: dict[str, set[str]] = {}
    current = None
    for line in CLI.read_text(encoding="utf-8").splitlines():
        heading = re.fullmatch(r"## `hoxton-auth ?([a-z]*)`", line)
        if heading:
            current = heading.group(1)
            sections[current] = set()
        elif line.startswith("## "):
            current = None
        elif current is not None and line.startswith("| `--"):
            first = line.strip("|").split("|")[0]
            sections[current] |= set(re.findall(r"`(--[a-z-]+)", first))
    return sections


@pytest.mark.parametrize("command", ["", "token", "login", "logout", "status"])
def test_every_cli_option_is_documented(command: str) -> None:
    sections = _cli_sections()
    assert command in sections
    assert sections[command] == _help(command)


def test_the_table_reader_sees_every_row() -> None:
    rows = _table("environment")
    # issue 24: HOXTON_PRIVATE_KEY_FILE, HOXTON_KEY_ID, and the three of sealing
    assert len(rows) == 18
    assert _names(_table("constructor")[0][0]) == ["client_id"]
    assert "HOXTON_CLIENT_ID" in _documented("environment", set())


def test_every_module_has_a_row_in_the_architecture_page() -> None:
    page = (ROOT / "docs" / "explanation" / "architecture.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([a-z_]+\.py)` \|", page, re.MULTILINE))
    modules = {path.name for path in (ROOT / "hoxton_auth").glob("*.py")}
    assert rows == modules
