"""The GitHub Actions workflow is valid YAML and runs only tox environments that exist.

It cannot run here (issue 14, item 8), so its shape is checked instead: the
OS and Python matrix, and that every ``tox -e`` names an environment of
``tox.ini`` that ``.ci/run`` also proves (py310..py313, lint, type).
"""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
ALLOWED_ENVS = {"py310", "py311", "py312", "py313", "lint", "type"}


def _load() -> dict[Any, Any]:
    document = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(document, dict)
    return document


def test_workflow_parses_and_has_the_top_level_keys() -> None:
    document = _load()
    # YAML 1.1 reads the bare key `on` as True.
    triggers = document["on"] if "on" in document else document[True]
    assert {"push", "pull_request"} <= set(triggers)
    assert document["name"] == "ci"
    assert set(document["jobs"]) == {"tests", "checks"}
    for job in document["jobs"].values():
        assert {"runs-on", "steps", "strategy"} <= set(job)
        assert all("uses" in step or "run" in step for step in job["steps"])


def test_matrix_is_three_systems_by_four_pythons() -> None:
    matrix = _load()["jobs"]["tests"]["strategy"]["matrix"]
    assert matrix["os"] == ["ubuntu-latest", "macos-latest", "windows-latest"]
    pairs = {(p["version"], p["env"]) for p in matrix["python"]}
    assert pairs == {("3.10", "py310"), ("3.11", "py311"), ("3.12", "py312"), ("3.13", "py313")}


def test_only_tox_environments_that_exist_and_ci_proves() -> None:
    document = _load()
    envs = {p["env"] for p in document["jobs"]["tests"]["strategy"]["matrix"]["python"]}
    envs |= set(document["jobs"]["checks"]["strategy"]["matrix"]["env"])
    assert envs == ALLOWED_ENVS
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    listed = {e.strip() for e in tox["tox"]["envlist"].replace("\n", ",").split(",") if e.strip()}
    assert envs <= listed
    for job in document["jobs"].values():
        runs = " ".join(step.get("run", "") for step in job["steps"])
        assert "tox -e ${{ matrix." in runs
