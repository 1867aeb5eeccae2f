"""Groups for access rules: names (table ``groups``) and who is in each (``group_members``).

Names are stored in their one normal form (:mod:`authsvc.rules.groups`); the caller judges a new
name with :func:`authsvc.rules.groups.group_problem` first. Removing a group removes its memberships.
``/auth/verify`` reads a user's groups with the session (:mod:`authsvc.core.sessions`, one query), so
a change here reaches this process's verify at once (``on_changed``: the verify cache's
``invalidate``) and every other process within the cache's lifetime (<= 1 s).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from authsvc.core.models import group_members, groups
from authsvc.rules.groups import normalize_group


class GroupExists(Exception):
    pass


class NoSuchGroup(Exception):
    pass


class GroupStore:
    def __init__(self, engine: Engine, clock: Callable[[], float],
                 on_changed: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.on_changed = on_changed

    def _changed(self) -> None:
        if self.on_changed is not None:
            self.on_changed()  # after the commit (see VerifyCache.put)

    def add(self, name: str) -> str:
        """Create the group; its stored (normal) name. Raises :class:`GroupExists`."""
        key = normalize_group(name)
        try:
            with self.engine.begin() as conn:
                conn.execute(groups.insert().values(name=key, created_at=self.clock()))
        except IntegrityError:
            raise GroupExists(key) from None
        return key

    def remove(self, name: str) -> int:
        """Delete the group and its memberships; how many memberships went. Raises :class:`NoSuchGroup`."""
        with self.engine.begin() as conn:
            group_id = self._id(conn, name)
            members = conn.execute(group_members.delete().where(group_members.c.group_id == group_id)).rowcount
            conn.execute(groups.delete().where(groups.c.id == group_id))
        self._changed()
        return members

    def _id(self, conn, name: str) -> int:
        group_id = conn.execute(sa.select(groups.c.id).where(groups.c.name == normalize_group(name))).scalar()
        if group_id is None:
            raise NoSuchGroup(normalize_group(name))
        return group_id

    def join(self, user_id: int, name: str) -> bool:
        """Put the user in the group; False if they were in it already. Raises :class:`NoSuchGroup`."""
        try:
            with self.engine.begin() as conn:
                group_id = self._id(conn, name)
                conn.execute(group_members.insert().values(group_id=group_id, user_id=user_id))
        except IntegrityError:
            return False
        self._changed()
        return True

    def leave(self, user_id: int, name: str) -> bool:
        """Take the user out of the group; False if they were not in it. Raises :class:`NoSuchGroup`."""
        with self.engine.begin() as conn:
            group_id = self._id(conn, name)
            done = conn.execute(group_members.delete().where(
                group_members.c.group_id == group_id, group_members.c.user_id == user_id)).rowcount
        if done:
            self._changed()
        return bool(done)

    def of_user(self, user_id: int) -> tuple[str, ...]:
        with self.engine.connect() as conn:
            return tuple(conn.execute(
                sa.select(groups.c.name).select_from(group_members.join(groups))
                .where(group_members.c.user_id == user_id).order_by(groups.c.name)).scalars())

    def by_user(self) -> dict[int, tuple[str, ...]]:
        """Every account's groups (for ``authsvc user list``)."""
        out: dict[int, list[str]] = {}
        with self.engine.connect() as conn:
            for user_id, name in conn.execute(
                    sa.select(group_members.c.user_id, groups.c.name).select_from(group_members.join(groups))
                    .order_by(groups.c.name)):
                out.setdefault(user_id, []).append(name)
        return {k: tuple(v) for k, v in out.items()}

    def all(self) -> list[tuple[str, int]]:
        """Every group and its number of members, by name."""
        count = sa.func.count(group_members.c.user_id)
        with self.engine.connect() as conn:
            return [(name, n) for name, n in conn.execute(
                sa.select(groups.c.name, count).select_from(groups.outerjoin(group_members))
                .group_by(groups.c.id, groups.c.name).order_by(groups.c.name))]
