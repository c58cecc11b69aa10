"""Shared fixtures: the rendered files (as committed) and the built manifest checker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shopmesh_render.validate import REPO, Checker, build_checker


def load_objects(relative: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((REPO / relative).read_text()) if doc]


@pytest.fixture(scope="session")
def checker() -> Checker:
    # Built once per machine (cached under SHOPMESH_CACHE); `make lint` builds it first.
    return build_checker()


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
