"""The stack's Jaeger build: its main and trimmed storage extension over a module copy, and the cache name."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopmesh_stack import install, versions
from shopmesh_stack.install import (
    JAEGER_MAIN,
    JAEGER_QUERY_FLAGS,
    JAEGER_QUERY_FLAGS_EDITS,
    JAEGER_SOURCES,
    JAEGER_STORAGE,
    InstallError,
    jaeger_binary,
)

UPSTREAM_FLAGS = f"""package app

import (
{JAEGER_QUERY_FLAGS_EDITS[0][0]}
)

{JAEGER_QUERY_FLAGS_EDITS[1][0]}
"""


def module_copy(root: Path, flags: str = UPSTREAM_FLAGS) -> Path:
    """The files of Jaeger's module the build rewrites, as upstream has them (in shape)."""
    (root / JAEGER_STORAGE).mkdir(parents=True)
    for name in ("config.go", "extension.go"):
        (root / JAEGER_STORAGE / name).write_text("package jaegerstorage // upstream\n")
    (root / JAEGER_QUERY_FLAGS).parent.mkdir(parents=True)
    (root / JAEGER_QUERY_FLAGS).write_text(flags)
    return root


def test_the_build_gets_the_stacks_main_storage_and_query_flags(tmp_path: Path) -> None:
    work = module_copy(tmp_path)
    install._write_jaeger_sources(work)
    assert (work / JAEGER_MAIN / "main.go").read_bytes() == (JAEGER_SOURCES / "main.go").read_bytes()
    for name in ("config.go", "extension.go"):
        written = (work / JAEGER_STORAGE / name).read_text()
        assert written == (JAEGER_SOURCES / "jaegerstorage" / name).read_text()
        assert "elasticsearch" not in written.split("package jaegerstorage", 1)[1]
    flags = (work / JAEGER_QUERY_FLAGS).read_text()
    assert '"github.com/jaegertracing/jaeger/internal/storage/v1/factory"' not in flags
    assert "type ArchiveStorage struct" in flags and "func() (*ArchiveStorage, error)" in flags


def test_an_upstream_that_moved_fails_the_build_clearly(tmp_path: Path) -> None:
    work = module_copy(tmp_path, flags="package app\n")
    with pytest.raises(InstallError, match="does not read as expected"):
        install._write_jaeger_sources(work)


def test_the_cached_binary_is_named_with_the_version_and_a_hash_of_its_sources(tmp_path: Path) -> None:
    binary = jaeger_binary(tmp_path)
    assert binary.parent == tmp_path / "go" / "bin"
    assert binary.name.startswith(f"jaeger-{versions.JAEGER}-") and len(binary.name.rsplit("-", 1)[1]) == 12
    assert jaeger_binary(tmp_path) == binary  # stable: a second install finds it
