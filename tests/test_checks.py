"""The code checks CI holds the project to: ruff (lint and format) and mypy in strict mode.

They run from the environment the tests run in (``./dev test`` installs both); where one is
missing the check is skipped locally and fails under ``CI=true``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from servers import in_ci

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["distqueue", "tests", "bench", "examples"]


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        message = f"{name} is not installed (pip install -e '.[dev]')"
        if in_ci():
            pytest.fail(message + "; under CI=true a missing checker is a failure", pytrace=False)
        pytest.skip(message)
    return found


def run(*command: str) -> None:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr}"


def test_ruff_finds_nothing_to_report() -> None:
    run(tool("ruff"), "check", *SOURCES)


def test_the_code_is_formatted() -> None:
    run(tool("ruff"), "format", "--check", *SOURCES)


@pytest.mark.slow
def test_mypy_strict_passes() -> None:
    run(tool("mypy"))
