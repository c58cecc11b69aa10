"""The stock ledger check: every product's on_hand and reserved equal its ledger's sums,
and reserved equals what its active reservations hold.

    python -m shopmesh_inventory.ledger_check [--dsn postgresql://...]   (default: SHOPMESH_DATABASE_URL)

`make ledger-check` runs it against the local stack. Exit 0 when consistent,
1 listing each product that is not (ids and counts only), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass

import asyncpg

from shopmesh_inventory import store
from shopmesh_inventory.records import LedgerMismatch


@dataclass(frozen=True)
class LedgerReport:
    checked: int
    mismatches: tuple[LedgerMismatch, ...]

    @property
    def consistent(self) -> bool:
        return not self.mismatches


async def verify_ledger(connection: asyncpg.Connection) -> LedgerReport:
    """Check every product against the ledger and the active reservations (one snapshot)."""
    checked, mismatches = await store.ledger_mismatches(connection)
    return LedgerReport(checked, tuple(mismatches))


async def check(dsn: str) -> LedgerReport:
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        return await verify_ledger(connection)
    finally:
        await connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default=os.environ.get("SHOPMESH_DATABASE_URL"), help="the inventory database")
    args = parser.parse_args(argv)
    if not args.dsn:
        print("give --dsn or set SHOPMESH_DATABASE_URL", file=sys.stderr)
        return 2
    report = asyncio.run(check(args.dsn))
    for m in report.mismatches:
        print(
            f"MISMATCH {m.product_id}: on_hand {m.on_hand} (ledger {m.ledger_on_hand}), "
            f"reserved {m.reserved} (ledger {m.ledger_reserved}, "
            f"active reservations {m.reserved_by_active_reservations})"
        )
    verdict = "consistent" if report.consistent else f"INCONSISTENT ({len(report.mismatches)} products)"
    print(f"stock ledger {verdict}: {report.checked} products checked")
    return 0 if report.consistent else 1


if __name__ == "__main__":
    sys.exit(main())
