"""Fixtures shared by every test module.

Every test gets its own cache location: nothing ever touches the real user's
token cache, and no test sees another's tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ``$HOXTON_AUTH_CACHE`` at a fresh file; clear other HOXTON_ variables."""
    path = tmp_path / "cache" / "tokens.json"
    for name in (
        "HOXTON_CLIENT_ID",
        "HOXTON_CLIENT_SECRET",
        "HOXTON_USERNAME",
        "HOXTON_PASSWORD",
        "HOXTON_REFRESH_TOKEN",
        "HOXTON_SCOPE",
        "HOXTON_AUDIENCE",
        "HOXTON_AUTH_DOMAIN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOXTON_AUTH_CACHE", str(path))
    return path


#: HS256 key for test tokens. The library never verifies signatures (the API
#: does), so any key works; 32+ bytes keeps PyJWT from warning about its length.
TEST_JWT_KEY = "hoxton-auth-test-signing-key-not-a-secret-0123456789"


@pytest.fixture
def make_jwt() -> Callable[..., str]:
    """Return a function that mints an HS256 JWT with the given claims."""
    import jwt

    def mint(**claims: Any) -> str:
        return jwt.encode(claims, TEST_JWT_KEY, algorithm="HS256")

    return mint


@pytest.fixture
def fake_browser_command(tmp_path: Path) -> Path:
    """An executable for ``$BROWSER`` that runs ``tests/fake_browser.py`` (see its docstring).

    ``webbrowser`` runs ``$BROWSER`` as one program name, without arguments,
    so this interpreter and the script go into a small shell wrapper.
    """
    import sys

    if sys.platform == "win32":  # pragma: no cover
        pytest.skip("the fake browser wrapper is a POSIX shell script")
    script = Path(__file__).with_name("fake_browser.py")
    command = tmp_path / "fake-browser"
    command.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n', encoding="utf-8")
    command.chmod(0o755)
    return command


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody can create files in, root included.

    Mode 0500 for ordinary users; root ignores permission bits, so for root the
    directory gets the immutable attribute (``chattr +i``) instead. Skips when
    neither works (root without ``chattr`` or its capability).
    """
    import os
    import shutil
    import subprocess

    directory = tmp_path / "read-only"
    directory.mkdir()
    chattr = shutil.which("chattr")
    immutable = os.geteuid() == 0
    if immutable:
        if chattr is None or subprocess.run([chattr, "+i", str(directory)]).returncode:
            pytest.skip("root needs chattr +i for a read-only directory")
    else:
        directory.chmod(0o500)
    try:
        probe = directory / "probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip("could not make a read-only directory here")
        yield directory
    finally:
        if immutable:
            subprocess.run([str(chattr), "-i", str(directory)], check=True)
        else:
            directory.chmod(0o700)


@pytest.fixture
def warnings_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog at WARNING for the package logger."""
    import logging

    caplog.set_level(logging.WARNING, logger="hoxton_auth")
    return caplog
