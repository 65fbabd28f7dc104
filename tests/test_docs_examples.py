"""Every code example in README.md and docs/ runs here (issue 23, item 3).

The examples are written as a user writes them, against the real tenant
(``https://auth.hoxton.ai``) and API (``https://api.hoxton.cloud``); the
``docs_world`` fixture makes those names lead to the package's test server and
a protected API on loopback (``tests/_docs_world.py``), so they run unchanged.

Per Markdown file, the ``python`` blocks run in order in one namespace (a page
may build on its earlier blocks); a block whose code awaits runs under
``asyncio.run``. An exception, a warning (``filterwarnings = error``), an API
call that the API refused for want of a valid token, or a proxy request for a
host outside the world fails the page. ``bash`` blocks: every ``hoxton-auth``
command line in them is checked against the CLI's ``--help``; those marked
``run`` are executed by ``bash`` in the same world.

Markers, HTML comments right before a block (invisible on the site):

* ``<!-- test: real-tenant -->``: needs a real tenant or browser; only its
  imports and the constructors of the package's public classes run. A
  ``ConfigError`` naming a file that is not on this machine (the company's
  CA bundle) counts as constructed: the constructor checked it.
* ``<!-- test: no-run REASON -->``: compiled only (a fragment).
* ``<!-- test: run -->`` (bash): executed; must exit 0.
* ``<!-- test: setup ... -->``: Python run before the next block, in its
  namespace (``_world`` is the fixture); e.g. setting ``HOXTON_PASSWORD``.
  Variables it sets in ``os.environ`` are undone after that block. Setups
  after a page's last block run at its end (to call a test it defined).
* ``<!-- test: api-refusals N -->`` (anywhere in the file): the page shows N
  API calls refused on purpose.

Blocks between ``<!-- pending: issue N -->`` and ``<!-- /pending -->``
describe features not merged yet: compiled only, never run.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
import os
import re
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from _docs_world import API, TENANT, ApiServer, ConnectProxy, running

from hoxton_auth import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from hoxton_auth.testing import AuthServer

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

#: The placeholders the examples use, registered on the world's tenant.
CLIENT_ID, CLIENT_SECRET, NATIVE_CLIENT_ID = "CLIENT_ID", "CLIENT_SECRET", "NATIVE_CLIENT_ID"
USERNAME, PASSWORD = "ann@example.com", "correct horse battery staple"
WEB_REDIRECT_URI = "https://app.example/callback"

#: What a real-tenant block may still run: the constructors of public classes.
CONSTRUCTORS = frozenset(
    {
        "HoxtonAuth",
        "ClientCredentialsAuth",
        "PasswordAuth",
        "AuthorizationCodeAuth",
        "RefreshTokenAuth",
        "FileTokenCache",
        "MemoryTokenCache",
        "RedisTokenCache",
        *(
            f"{cls}.from_env"
            for cls in ("HoxtonAuth", "ClientCredentialsAuth", "PasswordAuth", "RefreshTokenAuth")
        ),
    }
)

_FENCE = re.compile(
    r"^(?P<indent>[ ]*)(?P<fence>```+)(?P<lang>[\w-]*)[^\n]*\n"
    r"(?P<code>.*?)^(?P=indent)(?P=fence)[ ]*$",
    re.MULTILINE | re.DOTALL,
)
_COMMENT = re.compile(r"<!--\s*(test|pending|/pending)\b:?(.*?)-->", re.DOTALL)


@dataclasses.dataclass
class Block:
    path: Path
    line: int  # of the block's first code line, 1-based
    lang: str
    code: str
    markers: list[str]  # the words after "test:" of the comments right before it
    setup: list[str]  # code of the "test: setup" comments right before it
    pending: bool


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of ``path`` with their markers."""
    text = path.read_text(encoding="utf-8")
    found: list[Block] = []
    position, pending = 0, False
    for match in _FENCE.finditer(text):
        markers: list[str] = []
        setup: list[str] = []
        gap = text[position : match.start()]
        for comment in _COMMENT.finditer(gap):
            kind, body = comment.group(1), comment.group(2)
            if kind == "pending":
                pending = True
            elif kind == "/pending":
                pending = False
            elif body.strip().startswith("setup"):
                setup.append(textwrap.dedent(body.strip()[len("setup") :]).strip("\n"))
            else:
                markers.append(body.strip())
        # Markers apply to the block right after them only.
        after_last_comment = gap[gap.rfind("-->") + 3 :] if "-->" in gap else gap
        if after_last_comment.strip():
            markers, setup = [], []
        line = text.count("\n", 0, match.start("code")) + 1
        code = textwrap.dedent(match.group("code"))
        found.append(Block(path, line, match.group("lang"), code, markers, setup, pending))
        position = match.end()
    trailing = [
        textwrap.dedent(c.group(2).strip()[len("setup") :]).strip("\n")
        for c in _COMMENT.finditer(text[position:])
        if c.group(1) == "test" and c.group(2).strip().startswith("setup")
    ]
    if trailing:
        line = text.count("\n", 0, position) + 1
        found.append(Block(path, line, "python", "", [], trailing, False))
    return found


def _marked(block: Block, word: str) -> bool:
    return any(marker.split()[:1] == [word] for marker in block.markers)


def _compile(source: str, path: Path, line: int) -> Any:
    # Leading newlines make tracebacks name the Markdown file's own line numbers.
    return compile(
        "\n" * (line - 1) + source, str(path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    )


def _run(code: Any, namespace: dict[str, Any]) -> None:
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, namespace))  # noqa: S307 - the docs' own examples
    else:
        exec(code, namespace)  # noqa: S102 - the docs' own examples


def _construct_only(block: Block) -> str:
    """The imports, constants and public constructors of a real-tenant block, nothing else."""
    tree = ast.parse(block.code)
    kept: list[ast.stmt] = []
    for statement in tree.body:
        if (
            isinstance(statement, (ast.Import, ast.ImportFrom))
            or (isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Constant))
            or (
                isinstance(statement, (ast.Assign, ast.Expr))
                and isinstance(statement.value, ast.Call)
                and ast.unparse(statement.value.func) in CONSTRUCTORS
            )
        ):
            kept.append(statement)
    assert kept, f"{block.path}:{block.line}: a real-tenant block must import or construct"
    return "\n".join(ast.unparse(statement) for statement in kept)


@dataclasses.dataclass
class World:
    tenant: AuthServer
    api: ApiServer
    proxy: ConnectProxy
    ca_file: Path

    def code(self, verifier: str | None = None, username: str = USERNAME) -> str:
        """A code for ``CLIENT_ID`` from the tenant's ``/authorize``, as the browser brings it."""
        from conftest import authorization_code

        return authorization_code(
            self.tenant,
            client_id=CLIENT_ID,
            redirect_uri=WEB_REDIRECT_URI,
            verifier=verifier,
            username=username,
        )

    def browse(self, authorize_url: str, username: str = USERNAME) -> str:
        """Where the tenant's ``/authorize`` sends the browser back: the callback URL,
        with its ``code`` and ``state`` (``username`` logs in)."""
        from urllib.parse import quote

        import requests

        hint = "&" if "?" in authorize_url else "?"
        url = f"{authorize_url}{hint}login_hint={quote(username)}"
        with requests.get(url, allow_redirects=False, timeout=30) as response:
            assert response.status_code == 302, response.text
            return response.headers["Location"]


@pytest.fixture
def docs_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """``auth.hoxton.ai`` and ``api.hoxton.cloud`` on loopback, through an HTTPS proxy."""
    trustme = pytest.importorskip("trustme")
    from hoxton_auth.testing import AUDIENCE, AuthServer

    ca = trustme.CA()
    certificate = ca.issue_cert(TENANT, API, "127.0.0.1")  # 127.0.0.1: World.code
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    with AuthServer(ssl_context=context) as tenant:
        tenant.add_client(CLIENT_ID, CLIENT_SECRET, redirect_uris=[WEB_REDIRECT_URI])
        tenant.add_client(NATIVE_CLIENT_ID, None)
        tenant.add_user(USERNAME, PASSWORD)
        api = ApiServer(context, tenant.jwks, AUDIENCE)
        tenant_port = int(tenant.domain.rsplit(":", 1)[1])
        proxy = ConnectProxy({f"{TENANT}:443": tenant_port, f"{API}:443": 0})
        with running(api):
            proxy.routes[f"{API}:443"] = api.port
            with running(proxy):
                for name in ("HTTPS_PROXY", "https_proxy"):
                    monkeypatch.setenv(name, proxy.url)
                for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
                    monkeypatch.delenv(name, raising=False)
                for name in ("NO_PROXY", "no_proxy"):
                    monkeypatch.setenv(name, "127.0.0.1,localhost,::1")
                for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
                    monkeypatch.setenv(name, str(ca_file))
                monkeypatch.delenv("SSL_CERT_DIR", raising=False)
                monkeypatch.setenv("HOXTON_CLIENT_ID", CLIENT_ID)
                monkeypatch.setenv("HOXTON_CLIENT_SECRET", CLIENT_SECRET)
                yield World(tenant, api, proxy, ca_file)


def _help_options(command: str) -> set[str]:
    """The long options ``hoxton-auth COMMAND --help`` lists."""
    result = subprocess.run(
        [sys.executable, "-m", "hoxton_auth", *command.split(), "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", result.stdout))


def _cli_lines(code: str) -> Iterator[list[str]]:
    """The argument lists of the ``hoxton-auth`` invocations in a shell block."""
    for line in code.splitlines():
        for part in re.split(r"\$\(|\||&&|\|\||;|`", line.split(" #")[0]):
            words = part.strip().rstrip(")").split()
            if words[:1] == ["hoxton-auth"]:
                yield words[1:]


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", PAGES, ids=_page_id)
def test_examples_run(path: Path, docs_world: World, tmp_path: Path) -> None:
    saved = dict(os.environ)
    namespace: dict[str, Any] = {"__name__": "__docs__", "_world": docs_world}
    ran = 0
    try:
        for block in blocks(path):
            if block.lang not in ("python", "py"):
                if block.lang in ("bash", "sh", "shell") and _marked(block, "run"):
                    _run_shell(block, tmp_path)
                    ran += 1
                continue
            if block.pending or _marked(block, "no-run"):
                _compile(block.code, path, block.line)
                continue
            before = dict(os.environ)  # a setup's variables are for its block only
            for setup in block.setup:
                _setup(setup, namespace)
            if _marked(block, "real-tenant"):
                _compile(block.code, path, block.line)
                try:
                    _run(compile(_construct_only(block), str(path), "exec"), namespace)
                except ConfigError as exc:
                    if "no such file or directory" not in str(exc):
                        raise
            elif block.code.strip():
                _run(_compile(block.code, path, block.line), namespace)
            os.environ.clear()
            os.environ.update(before)
            ran += 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    expected = re.search(r"<!--\s*test:\s*api-refusals\s+(\d+)\s*-->", path.read_text())
    assert len(docs_world.api.refused) == (int(expected.group(1)) if expected else 0), (
        f"the API refused calls made by the examples of {path.name}: {docs_world.api.refused}"
    )
    assert docs_world.proxy.refused == [], f"{path.name} asked for hosts outside the world"
    if ran == 0:
        pytest.skip(f"{path.name} has no example to run")


def _setup(source: str, namespace: dict[str, Any]) -> None:
    """Run a hidden setup: with ``os`` at hand, which it does not lend to the examples."""
    scope = {"os": os, **namespace}
    exec(source, scope)  # noqa: S102 - the page's own hidden setup
    namespace.update({k: v for k, v in scope.items() if k != "os" or "os" in namespace})


def _run_shell(block: Block, tmp_path: Path) -> None:
    environment = dict(os.environ)
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.code],  # noqa: S607 - the shell on PATH, as a reader's
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (
        f"{block.path}:{block.line}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    )


@pytest.mark.parametrize("path", PAGES, ids=_page_id)
def test_command_lines_use_real_options(path: Path) -> None:
    """Every ``hoxton-auth`` option in a shell block is one the parser has."""
    known: dict[str, set[str]] = {}
    for block in blocks(path):
        if block.lang not in ("bash", "sh", "shell", "console"):
            continue
        for words in _cli_lines(block.code):
            command = next((w for w in words if not w.startswith("-")), "")
            if command not in ("token", "login", "logout", "status"):
                command = ""
            if command not in known:
                known[command] = _help_options(command)
            for word in words:
                option = word.split("=", 1)[0]
                if option.startswith("--"):
                    assert option in known[command], (
                        f"{path.name}:{block.line}: hoxton-auth {command} has no {option}"
                    )


# -- the collector itself -----------------------------------------------------------


def test_a_wrong_example_fails(docs_world: World, tmp_path: Path) -> None:
    """A page whose example sends no valid token, or raises, fails its test."""
    page = tmp_path / "wrong.md"
    page.write_text(
        "```python\n"
        "import requests\n"
        "from hoxton_auth import HoxtonAuth\n"
        'auth = HoxtonAuth("CLIENT_ID", "NOT-THE-SECRET")\n'
        'requests.get("https://api.hoxton.cloud/v1/projects", auth=auth)\n'
        "```\n",
        encoding="utf-8",
    )
    from hoxton_auth import TokenRequestError

    (block,) = blocks(page)
    with pytest.raises(TokenRequestError, match="invalid_client"):
        _run(_compile(block.code, page, block.line), {})
    page.write_text(
        "```python\n"
        "import requests\n"
        'requests.get("https://api.hoxton.cloud/v1/projects")  # forgot auth=\n'
        "```\n",
        encoding="utf-8",
    )
    (block,) = blocks(page)
    _run(_compile(block.code, page, block.line), {})
    assert docs_world.api.refused == ["GET /v1/projects"]  # what fails test_examples_run


def test_markers_apply_to_the_next_block_only(tmp_path: Path) -> None:
    page = tmp_path / "markers.md"
    page.write_text(
        "<!-- test: real-tenant -->\n```python\na = 1\n```\n\ntext\n\n```python\nb = 2\n```\n"
        "<!-- pending: issue 9 -->\n```python\nc = 3\n```\n<!-- /pending -->\n```python\nd\n```\n",
        encoding="utf-8",
    )
    first, second, third, fourth = blocks(page)
    assert (first.markers, first.line) == (["real-tenant"], 3)
    assert second.markers == []
    assert (third.pending, fourth.pending) == (True, False)


def test_every_page_is_collected() -> None:
    assert ROOT / "README.md" in PAGES
    assert len(PAGES) > 20, PAGES


def test_command_line_parsing() -> None:
    lines = list(
        _cli_lines(
            "TOKEN=$(hoxton-auth token --min-valid 600)  # x\nhoxton-auth status --check || x"
        )
    )
    assert lines == [["token", "--min-valid", "600"], ["status", "--check"]]
