"""Fixtures of the schema tests: real files and folders the payloads point at."""

from __future__ import annotations

import pytest

from .examples import Files, build_cases


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    """An opener, a description, archives and three sample folders on disk."""
    root = tmp_path_factory.mktemp("schema-inputs")
    made = Files(root)
    made.create()
    return made


@pytest.fixture(scope="session")
def cases(files: Files) -> dict:
    """Operation -> Case (a valid call payload, its minimal form, its required fields)."""
    return build_cases(files)
