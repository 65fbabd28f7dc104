"""``python -m hoxton_auth.testing demo``: the README's first command (issue 14, item 6)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hoxton_auth.testing.__main__ import main


def test_demo_fetches_calls_and_shows_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "tokens.json"
    assert main(["demo", "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "token requests so far: 1" in out
    assert "-> HTTP 200" in out
    assert "the same token from the cache; token requests so far: 1" in out
    assert out.rstrip().endswith("demo OK")
    document = json.loads(cache.read_text())
    (entry,) = document["entries"].values()
    token = entry["token"]["access_token"]
    assert token not in out  # printed cut short, never whole
    assert token[:10] in out


def test_demo_runs_as_a_module_with_a_temporary_cache() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hoxton_auth.testing", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "demo OK" in result.stdout
    assert result.stderr == ""


def test_mask_cuts_every_token() -> None:
    from hoxton_auth.testing.__main__ import _mask

    masked = _mask({"a": [{"refresh_token": "r" * 40, "token_url": "http://x"}], "n": 1})
    assert json.dumps(masked) == json.dumps(
        {"a": [{"refresh_token": "rrrrrrrrrr...(40 chars)", "token_url": "http://x"}], "n": 1}
    )
