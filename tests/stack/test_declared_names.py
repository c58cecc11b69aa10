"""No service or topic name is written in platform, stack or edge code.

mesh/mesh.yaml names the services and kafka/topics.yaml the topics; everything in
the scanned code derives from them, so a service is added by declaring it. A name
counts when code uses it: a string (also inside an f-string or a dotted or path-like
string such as "users.Login" or "data/users"), and for services also an identifier,
an attribute, a keyword or an imported module (`shopmesh_users`). Docstrings and comments may
mention services. The one exception: the topic-name constants of
shopmesh_platform/events/topics.py, each checked against kafka/topics.yaml below.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from shopmesh_platform.events import topics
from shopmesh_platform.events.topics import dead_letter_topic, declared_topic_names
from shopmesh_platform.mesh import load_mesh
from shopmesh_stack.settings import REPO

PLATFORM = REPO / "services" / "platform" / "shopmesh_platform"
SCANNED = (REPO / "scripts", REPO / "envoy", PLATFORM)
# Test fixtures and helpers that build the session's stack. (The platform's unit
# tests pick concrete services to test against on purpose, so tests/conftest.py is not scanned.)
SCANNED_FILES = (
    REPO / "tests" / "declared.py",
    REPO / "tests" / "integration" / "conftest.py",
    REPO / "tests" / "integration" / "extra_edge.py",
)
# Not scanned: the platform benchmarks measure one chosen service's methods
# (the users service's GetMe, Health/Check) against a bare server, by design; the demo
# is a client of the public REST API, whose paths name its resources; the chaos auditor
# checks the checkout's invariants in the named services' stores, by design too.
PENDING: tuple[Path, ...] = (
    REPO / "scripts" / "shopmesh_bench",
    REPO / "scripts" / "shopmesh_demo",
    REPO / "scripts" / "shopmesh_chaos",
)
# The one place Python spells topic names: module-level constants, checked below.
TOPIC_CONSTANTS = PLATFORM / "events" / "topics.py"
# Words inside strings: what a service or topic name could be a whole word of.
WORD = re.compile(r"[a-z0-9][a-z0-9-]*")


def forbidden_names() -> frozenset[str]:
    topic_names = declared_topic_names()
    return frozenset(
        [*load_mesh().services, *topic_names, *(dead_letter_topic(t) for t in topic_names)]
        + [f"shopmesh_{service}" for service in load_mesh().services]
    )


def scanned_files() -> Iterator[Path]:
    for root in SCANNED:
        for path in sorted(root.rglob("*.py")):
            if not any(path == pending or pending in path.parents for pending in PENDING):
                yield path
    yield from SCANNED_FILES


def docstrings(tree: ast.Module) -> set[int]:
    """ids of the string nodes that are docstrings (documentation may name services)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def topic_constant_values(tree: ast.Module) -> set[int]:
    """ids of the string nodes assigned to module-level constants (TOPIC_CONSTANTS only)."""
    return {
        id(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    }


def names_used(node: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, text) of every identifier-like thing the node uses."""
    if isinstance(node, ast.Name):
        yield node.lineno, node.id
    elif isinstance(node, ast.Attribute):
        yield node.lineno, node.attr
    elif isinstance(node, ast.keyword) and node.arg is not None:
        yield node.value.lineno, node.arg
    elif isinstance(node, ast.arg):
        yield node.lineno, node.arg
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        yield node.lineno, node.name
    elif isinstance(node, ast.ImportFrom) and node.module:
        yield from ((node.lineno, part) for part in node.module.split("."))
    elif isinstance(node, ast.Import):
        yield from ((node.lineno, part) for alias in node.names for part in alias.name.split("."))


def offences(path: Path, forbidden: frozenset[str]) -> Iterator[tuple[int, str]]:
    """(line, what) of each declared name the file's code uses."""
    tree = ast.parse(path.read_text(), filename=str(path))
    allowed = docstrings(tree) | (topic_constant_values(tree) if path == TOPIC_CONSTANTS else set())
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in allowed:
            for word in set(WORD.findall(node.value)) & forbidden:
                yield node.lineno, f"string {node.value!r} names {word!r}"
        for line, name in names_used(node):
            # An identifier names a service as a whole or as a snake_case part (`users_port`);
            # topics are names in strings only (`user_events` may well be a variable).
            for word in {name, *name.split("_")} & forbidden:
                yield line, f"identifier {name!r} names {word!r}"


def test_no_service_or_topic_name_is_written_in_platform_stack_or_edge_code() -> None:
    forbidden = forbidden_names()
    found = sorted(
        {
            f"{path.relative_to(REPO)}:{line}: {what}"
            for path in scanned_files()
            for line, what in offences(path, forbidden)
        }
    )
    assert not found, "declared names written in code (derive them from mesh.yaml / topics.yaml):\n" + "\n".join(found)


def test_the_scan_finds_a_name_written_in_code(tmp_path: Path) -> None:
    service = next(iter(load_mesh().services))
    topic = declared_topic_names()[0]
    sample = tmp_path / "sample.py"
    sample.write_text(
        f'"""Docstrings may say {service}."""\n'
        f"# and comments {service}\n"
        f'PORT = "{service}"\n'
        f'key = f"{service}.Login{{1}}"\n'
        f"settings.{service}_metrics = 1\n"
        f'topic = "{topic}"\n'
        f"from shopmesh_{service} import x\n"
    )
    lines = sorted({line for line, _ in offences(sample, forbidden_names())})
    assert lines == [3, 4, 5, 6, 7]


def test_the_topic_constants_are_declared_topics() -> None:
    tree = ast.parse(TOPIC_CONSTANTS.read_text())
    constants = [
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        and node.value.value in forbidden_names()
        for target in node.targets
        if isinstance(target, ast.Name)
    ]
    assert constants, "expected the topic constants in events/topics.py"
    declared = set(declared_topic_names())
    assert {getattr(topics, name) for name in constants} <= declared
