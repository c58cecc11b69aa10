"""pyproject.toml's source roots list exactly the services of mesh/mesh.yaml.

hatch's `dev-mode-dirs` (what the venv puts on the path) and mypy's `mypy_path`
take no globs and cannot read YAML, so they spell out `services/<name>`; this
test makes a service added to (or removed from) the mesh without them fail
loudly, instead of failing later as an import error. Ruff's first-party list is
the glob `shopmesh_*` and needs no update.
"""

from __future__ import annotations

import tomllib

from shopmesh_platform.mesh import load_mesh
from shopmesh_stack.settings import REPO

SERVICES_DIR = "services/"
# Source roots under services/ that are not services.
SHARED_ROOTS = {"services/platform"}


def declared_roots() -> set[str]:
    return {f"{SERVICES_DIR}{name}" for name in load_mesh().services}


def service_roots(paths: list[str]) -> set[str]:
    return {p for p in paths if p.startswith(SERVICES_DIR)} - SHARED_ROOTS


def pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_venv_puts_every_declared_service_and_no_other_on_the_path() -> None:
    dev_mode_dirs = pyproject()["tool"]["hatch"]["build"]["dev-mode-dirs"]  # type: ignore[index]
    assert service_roots(dev_mode_dirs) == declared_roots()


def test_mypy_checks_every_declared_service_and_no_other() -> None:
    mypy_path = pyproject()["tool"]["mypy"]["mypy_path"].split(":")  # type: ignore[index]
    assert service_roots(mypy_path) == declared_roots()


def test_ruff_knows_every_service_package_as_first_party_without_naming_it() -> None:
    known = pyproject()["tool"]["ruff"]["lint"]["isort"]["known-first-party"]  # type: ignore[index]
    assert "shopmesh_*" in known
    assert not {f"shopmesh_{name}" for name in load_mesh().services} & set(known)


def test_every_declared_service_has_its_package_and_entry_point() -> None:
    # The stack starts a service as `python -m shopmesh_<name>` from services/<name>.
    missing = [
        name
        for name in load_mesh().services
        if not (REPO / SERVICES_DIR / name / f"shopmesh_{name}" / "__main__.py").is_file()
    ]
    assert not missing
