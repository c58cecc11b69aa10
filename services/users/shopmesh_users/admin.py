"""Operator command: make an existing account an admin (there is no API that grants roles).

    SHOPMESH_DATABASE_URL=postgresql://... python -m shopmesh_users.admin promote EMAIL

`make promote-admin EMAIL=...` runs it against the local stack. The change
applies to tokens issued from then on (the role is a token claim).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import asyncpg

from shopmesh_users.domain import normalize_email


async def promote(dsn: str, email: str) -> bool:
    connection = await asyncpg.connect(dsn)
    try:
        result = await connection.execute("UPDATE users SET role = 'admin' WHERE email = $1", normalize_email(email))
    finally:
        await connection.close()
    return bool(result.endswith(" 1"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["promote"])
    parser.add_argument("email")
    args = parser.parse_args()
    dsn = os.environ.get("SHOPMESH_DATABASE_URL")
    if not dsn:
        print("SHOPMESH_DATABASE_URL must be set", file=sys.stderr)
        return 2
    if not asyncio.run(promote(dsn, args.email)):
        print(f"no account with email {args.email}", file=sys.stderr)
        return 1
    print(f"{args.email} is now an admin (log in again for a token with the admin role)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
