"""Pinned versions of every component the stack installs.

Python packages (Envoy's wheel, the client libraries) are pinned in uv.lock;
localstripe, which runs in its own virtualenv, in scripts/requirements/.
"""

POSTGRES_MAJOR = "15"
KAFKA = "4.1.1"
SCALA = "2.13"
FERRETDB = "v1.24.2"
GRPCURL = "v1.9.3"
LOCALSTRIPE = "1.15.10"
MAILPIT = "v1.33.1"
# Jaeger v2 (cmd/jaeger); the Go module keeps v1.x tags for the v2 binary.
JAEGER = "v1.76.0"
