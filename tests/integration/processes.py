"""Which processes of ours are alive: by session, since every component runs in its own."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path


def session_members(sessions: Collection[int]) -> dict[int, str]:
    """Live processes (zombies do not count) in any of `sessions`: pid -> command name.

    A component is started as the leader of a new session (its pid is the
    session id) and its children stay in it: PostgreSQL's backends, the Envoy
    behind the keeper.
    """
    members = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        name, after = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        # After the name: state, ppid, process group, session.
        state, session = after[0], int(after[3])
        if state not in ("Z", "X") and session in sessions:
            members[int(entry.name)] = name
    return members
