"""Windows code paths of the file cache, simulated on POSIX (issue 14, item 8).

CI runs the suite on Windows and macOS too (.github/workflows/ci.yml); these
tests make the branches that only Windows takes run everywhere, through the
public behaviour of the cache. They patch only our own platform checks
(``os.name``, ``os.fchmod``, ``os.replace`` as the cache calls them), never
requests or httpx.

* No ``fchmod`` and no POSIX modes (Windows reports 0o666 for every file):
  a cache file that looks open to others is used as it is, with no chmod and
  no warning (``FileTokenCache._check_permissions``, the ``os.name`` branch).
* ``os.replace`` onto a file another process holds open fails on Windows
  (a sharing violation, ``PermissionError``): the token is still returned,
  kept in memory with a warning, and no temporary file is left behind
  (``FileTokenCache._write``, the ``os.replace`` call and its cleanup).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from hoxton_auth import HoxtonAuth, HoxtonAuthWarning
from hoxton_auth.testing import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, AuthServer

pytestmark = pytest.mark.skipif(os.name != "posix", reason="simulates Windows on POSIX")


def _auth(server: AuthServer, cache: Path) -> HoxtonAuth:
    return HoxtonAuth(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, domain=server.domain, cache=cache)


def test_no_fchmod_on_windows_the_file_is_used_as_it_is(
    hoxton_auth_server: AuthServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = tmp_path / "tokens.json"
    token = _auth(hoxton_auth_server, cache).get_token()
    cache.chmod(0o666)  # what os.stat reports for any file on Windows
    reader = _auth(hoxton_auth_server, cache)  # built first: Path() follows os.name
    monkeypatch.setattr(os, "name", "nt")
    monkeypatch.delattr(os, "fchmod")  # Windows has none
    with caplog.at_level(logging.DEBUG, logger="hoxton_auth"):
        assert reader.get_token() == token  # read from the file, no token request
    monkeypatch.undo()
    assert hoxton_auth_server.count() == 1
    assert stat.S_IMODE(cache.stat().st_mode) == 0o666  # no chmod was tried
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_posix_tightens_the_same_file(
    hoxton_auth_server: AuthServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The other side of the branch above, on the real platform.
    cache = tmp_path / "tokens.json"
    _auth(hoxton_auth_server, cache).get_token()
    cache.chmod(0o666)
    with (
        caplog.at_level(logging.WARNING, logger="hoxton_auth"),
        pytest.warns(HoxtonAuthWarning, match="tightened to 0600"),
    ):
        _auth(hoxton_auth_server, cache).get_token()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert any("tightened to 0600" in r.getMessage() for r in caplog.records)


def test_replace_onto_an_open_file_fails_as_on_windows(
    hoxton_auth_server: AuthServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = tmp_path / "tokens.json"
    real_replace = os.replace

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        if Path(dst) == cache:
            # What Windows answers while a reader holds the target open.
            raise PermissionError(13, "The process cannot access the file", str(dst))
        real_replace(src, dst, **kwargs)

    auth = _auth(hoxton_auth_server, cache)
    monkeypatch.setattr(os, "replace", replace)
    with caplog.at_level(logging.WARNING, logger="hoxton_auth"):
        with pytest.warns(HoxtonAuthWarning, match="keeping tokens in memory"):
            token = auth.get_token()
        assert auth.get_token() == token  # kept in memory: no second token request
    monkeypatch.undo()
    assert hoxton_auth_server.count() == 1
    assert not cache.exists()
    assert list(tmp_path.glob(".tokens.json.*.tmp")) == []  # the temporary file was removed
    assert any("cannot write token cache" in r.getMessage() for r in caplog.records)
    # Once the file is free again, the next process writes it.
    assert _auth(hoxton_auth_server, cache).get_token()
    assert cache.exists()
