"""OWASP API7:2023 Server Side Request Forgery.

What shopmesh does: no service ever fetches a URL a client supplies. The only
outbound connections are to destinations fixed by configuration, read once at
start: the other services (addresses from mesh/mesh.yaml), PostgreSQL, FerretDB
and Kafka, Stripe's API (SHOPMESH_STRIPE_API_BASE, through the stripe library in
shopmesh_payments.stripe_gateway), the SMTP server (SHOPMESH_SMTP_HOST, through
aiosmtplib in shopmesh_notifications.mailer), and at the edge the issuer's JWKS
(through the edge's own listener). Two request fields hold URLs, and both are
data, stored and returned as given, never dereferenced: a user's `avatar_url`
and a product's `image_url` (absolute http or https URLs of at most 2048
characters; `javascript:`, `file:` and other schemes are refused, so a client
that renders them is not led anywhere else either). A Stripe webhook is a body
to verify, not a link to follow.

What these tests prove: the contracts' request messages have no URL-like field
(by name, or by a `uri`/`hostname`/`ip` validation rule) beyond those two, so a
new one fails here until it is reviewed; the only service modules that import a
network client are the Stripe gateway and the mailer; URLs of other schemes are
refused; and storing URLs that point at a listener of the test's own makes no
connection to it.
"""

from __future__ import annotations

import ast
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from buf.validate import validate_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor

from shopmesh_stack.settings import REPO
from shopmesh_stack.stack import Stack
from tests.integration.inventory_client import create_product
from tests.integration.owasp.support import contract_fields, new_account, new_admin
from tests.integration.users_client import Account, call

URL_LIKE_NAME = re.compile(r"(^|_)(url|uri|href|link|webhook|callback|endpoint|host|hostname|redirect)s?($|_)")
# Request fields that hold URLs, and why each is safe: stored and returned, never fetched.
STORED_URLS = {
    "shopmesh.user.v1.UpdateUserRequest.avatar_url",
    "shopmesh.inventory.v1.CreateProductRequest.image_url",
    # google.api.HttpBody's `extensions` (the webhook's body message): payments reads only
    # the body's bytes; a type URL names a protobuf type and is never resolved.
    "google.protobuf.Any.type_url",
}
# Modules that open network connections, and the calls that do it with the standard library.
NETWORK_CLIENTS = {
    "urllib.request",
    "http.client",
    "httpx",
    "aiohttp",
    "requests",
    "stripe",
    "aiosmtplib",
    "websockets",
}
CONNECTING_CALLS = {"create_connection", "open_connection", "urlopen", "socket"}
# Service modules allowed to open connections of their own, each towards a configured destination only.
CONFIGURED_CLIENTS = {
    # httpx: the stripe library's transport, whose connect errors tell a request that never left.
    "shopmesh_payments.stripe_gateway": {"stripe", "httpx"},
    "shopmesh_notifications.mailer": {"aiosmtplib"},
}


def url_rules(field: FieldDescriptor) -> bool:
    """Whether the field's protovalidate rules say it holds a URI, host name or address."""
    options = descriptor_pb2.FieldOptions.FromString(field.GetOptions().SerializeToString())
    found = [value for option, value in options.ListFields() if option.full_name == validate_pb2.field.full_name]
    rules: validate_pb2.StringRules = found[0].string if found else validate_pb2.StringRules()
    return any((rules.uri, rules.uri_ref, rules.hostname, rules.ip, rules.address, rules.host_and_port))


def test_no_request_field_takes_a_url_beyond_the_stored_ones() -> None:
    fields = contract_fields(requests=True)
    assert "shopmesh.order.v1.CreateOrderRequest.items" in fields  # the walk reaches the contracts
    url_like = {
        name
        for name, field in fields.items()
        if field.type == FieldDescriptor.TYPE_STRING and (URL_LIKE_NAME.search(field.name) or url_rules(field))
    }
    assert url_like == STORED_URLS


def service_modules() -> Iterator[tuple[str, Path]]:
    for path in sorted((REPO / "services").glob("*/shopmesh_*/**/*.py")):
        package_root = next(parent for parent in path.parents if parent.parent.parent == REPO / "services")
        relative = path.relative_to(package_root.parent).with_suffix("")
        yield ".".join(relative.parts), path


def network_use(path: Path) -> set[str]:
    """The network clients a module imports, and the connecting calls it makes (`socket.socket(...)`)."""
    modules, calls = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CONNECTING_CALLS:
            calls.add(node.func.attr)
    clients = {
        name.split(".")[0] for name in modules if name in NETWORK_CLIENTS or name.split(".")[0] in NETWORK_CLIENTS
    }
    return clients | calls


def test_only_the_stripe_gateway_and_the_mailer_open_connections_of_their_own() -> None:
    found = {module: clients for module, path in service_modules() if (clients := network_use(path))}
    assert "shopmesh_users.servicer" in dict(service_modules())  # the scan sees the services
    assert found == CONFIGURED_CLIENTS


@pytest.fixture(scope="module")
def customer(stack: Stack) -> Account:
    return new_account(stack)


@pytest.fixture(scope="module")
def admin(stack: Stack) -> Account:
    return new_admin(stack)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP listener nobody should ever connect to."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        yield sock


def connections(sock: socket.socket) -> int:
    count = 0
    while True:
        try:
            accepted, _ = sock.accept()
        except BlockingIOError:
            return count
        accepted.close()
        count += 1


def test_stored_urls_are_never_fetched(
    stack: Stack, customer: Account, admin: Account, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    trap = f"http://127.0.0.1:{port}/latest/meta-data/iam"
    account = customer
    updated = call(stack, "PATCH", f"/api/v1/users/{account.id}", account, {"avatarUrl": trap})
    assert updated.status == 200, updated.body
    product = create_product(stack, admin, imageUrl=f"{trap}?product")
    assert product.status == 200, product.body
    # Read back everywhere they appear: returned as given.
    assert call(stack, "GET", "/api/v1/users/me", account).json()["avatarUrl"] == trap
    shown = call(stack, "GET", f"/api/v1/products/{product.json()['id']}").json()
    assert shown["imageUrl"] == f"{trap}?product"
    assert connections(listener) == 0


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "//x.example"]
)
def test_url_fields_take_only_http_urls(stack: Stack, customer: Account, admin: Account, url: str) -> None:
    refused = call(stack, "PATCH", f"/api/v1/users/{customer.id}", customer, {"avatarUrl": url})
    assert refused.status == 400 and "avatar_url" in refused.body.decode(), refused.body
    product = create_product(stack, admin, imageUrl=url)
    assert product.status == 400 and "image_url" in product.body.decode(), product.body
