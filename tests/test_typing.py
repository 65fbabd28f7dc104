"""Typing as a user sees it (issue 14 item 4): ``mypy --strict`` on a user's file.

``HoxtonAuth(...)`` is overloaded on ``__new__`` to return the grant class
its arguments choose, and the package ships ``py.typed``. Each test writes a
user's file and runs mypy on it in a subprocess, as the user's CI would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import hoxton_auth

# The package directory's parent: an editable install is found through an
# import hook that mypy does not run, so mypy is pointed at the checkout.
_PACKAGE_ROOT = str(Path(hoxton_auth.__file__).resolve().parent.parent)

USES_EACH_GRANT = """\
from __future__ import annotations

import httpx
import requests

from hoxton_auth import (
    AuthorizationCodeAuth,
    ClientCredentialsAuth,
    HoxtonAuth,
    PasswordAuth,
    RefreshTokenAuth,
)

m2m: ClientCredentialsAuth = HoxtonAuth("id", "secret")
user: PasswordAuth = HoxtonAuth("id", username="ann", password="pw", scope=["openid"])
coded: AuthorizationCodeAuth = HoxtonAuth("id", code="c", redirect_uri="http://127.0.0.1/cb")
seeded: RefreshTokenAuth = HoxtonAuth("id", refresh_token="rt", cache=None, leeway=30)
session: AuthorizationCodeAuth = AuthorizationCodeAuth("id")
logged_in: AuthorizationCodeAuth = HoxtonAuth.login("id", open_browser=False)
from_env: PasswordAuth = PasswordAuth.from_env()
reveal_type(HoxtonAuth("id", username="ann", password="pw"))
reveal_type(HoxtonAuth("id", "secret"))
token: str = m2m.get_token()
requests.get("https://api.hoxton.cloud", auth=user, timeout=5)
httpx.get("https://api.hoxton.cloud", auth=seeded)
"""

WRONG_TYPES = """\
from __future__ import annotations

from hoxton_auth import HoxtonAuth, PasswordAuth, RefreshTokenAuth

wrong: RefreshTokenAuth = HoxtonAuth("id", username="ann", password="pw")
also_wrong: PasswordAuth = HoxtonAuth("id", "secret")
bad_argument = HoxtonAuth("id", "secret", leeway="soon")
"""


def _mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    user_file = tmp_path / "user_code.py"
    user_file.write_text(source)
    env = {**os.environ, "MYPYPATH": _PACKAGE_ROOT}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            os.devnull,
            str(user_file),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )


def test_py_typed_ships() -> None:
    assert (Path(hoxton_auth.__file__).parent / "py.typed").is_file()


def test_each_grant_types_as_its_class(tmp_path: Path) -> None:
    result = _mypy(tmp_path, USES_EACH_GRANT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Revealed type is "hoxton_auth._auth.PasswordAuth"' in result.stdout
    assert 'Revealed type is "hoxton_auth._auth.ClientCredentialsAuth"' in result.stdout


def test_wrong_grant_class_or_argument_is_a_type_error(tmp_path: Path) -> None:
    result = _mypy(tmp_path, WRONG_TYPES)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 3, result.stdout
    assert '"PasswordAuth", variable has type "RefreshTokenAuth"' in errors[0]
    assert '"ClientCredentialsAuth", variable has type "PasswordAuth"' in errors[1]
    assert "No overload variant" in errors[2]
