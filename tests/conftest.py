"""Fixtures shared by every test module.

Every test gets its own cache location: nothing ever touches the real user's
token cache, and no test sees another's tokens.
"""

from __future__ import annotations

from pathlib import Path

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
