"""Renewal while the stack runs: certificates are reissued once two thirds of
their lifetime have passed, by the renewer's rounds; lifetimes can be seconds."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
from cryptography import x509

from shopmesh_platform.config import ConfigError
from shopmesh_stack.pki import LocalCA
from shopmesh_stack.renewer import round_gap, run
from shopmesh_stack.settings import StackSettings
from tests.polling import wait_for

LIFETIME = dt.timedelta(hours=3)


class ClockedCA(LocalCA):
    """A CA whose clock the test moves forward."""

    ahead = dt.timedelta()

    def _now(self) -> dt.datetime:
        return super()._now() + self.ahead


def serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def test_renew_waits_for_two_thirds_of_the_lifetime(tmp_path: Path) -> None:
    ca = ClockedCA(tmp_path, "example.test", "shopmesh", LIFETIME)
    ca.ensure(["users", "edge"])
    first = serial(ca.files("users").cert)
    ca.ahead = dt.timedelta(hours=1, minutes=55)
    assert ca.renew(["users", "edge"]) == []  # a third and more still to go
    assert serial(ca.files("users").cert) == first
    ca.ahead = dt.timedelta(hours=2, minutes=5)
    assert ca.renew(["users", "edge"]) == ["users", "edge"]
    assert serial(ca.files("users").cert) != first
    assert ca.files("users").key.stat().st_mode & 0o077 == 0


def test_a_renewer_round_reissues_and_signals_it_ran(tmp_path: Path) -> None:
    ca = ClockedCA(tmp_path / "pki", "example.test", "shopmesh", LIFETIME)
    ca.ensure(["orders"])
    first = serial(ca.files("orders").cert)
    ca.ahead = LIFETIME
    heartbeat = tmp_path / "renewer.heartbeat"
    stop = threading.Event()
    rounds = threading.Thread(target=run, args=(ca, ["orders"], heartbeat, stop))
    rounds.start()
    try:
        wait_for(heartbeat.exists, 10, "a renewal round")
    finally:
        stop.set()
        rounds.join(timeout=10)
    assert not rounds.is_alive()
    assert serial(ca.files("orders").cert) != first


def test_rounds_are_a_tenth_of_the_lifetime_within_a_second_and_a_minute() -> None:
    assert round_gap(dt.timedelta(seconds=30)) == 3
    assert round_gap(dt.timedelta(seconds=5)) == 1
    assert round_gap(dt.timedelta(hours=24)) == 60


def test_lifetime_in_seconds_overrides_hours_and_has_a_floor() -> None:
    assert StackSettings.from_env({}).cert_lifetime == dt.timedelta(hours=24)
    assert StackSettings.from_env({"SHOPMESH_CERT_LIFETIME_HOURS": "48"}).cert_lifetime == dt.timedelta(hours=48)
    seconds = StackSettings.from_env({"SHOPMESH_CERT_LIFETIME_HOURS": "48", "SHOPMESH_CERT_LIFETIME_SECONDS": "30"})
    assert seconds.cert_lifetime == dt.timedelta(seconds=30)
    with pytest.raises(ConfigError, match="SHOPMESH_CERT_LIFETIME_SECONDS=5 is out of range"):
        StackSettings.from_env({"SHOPMESH_CERT_LIFETIME_SECONDS": "5"})
