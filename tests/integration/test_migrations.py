"""Schema migrations on SQLite and PostgreSQL: from nothing, from the previous release, and refusing
to run on a schema that is behind.

* From an empty database, ``authsvc db upgrade`` (:func:`authsvc.core.db.upgrade`) builds exactly the
  schema authsvc/core/models.py describes: a model changed without a migration fails here.
* From the previous release's schema (revision 0001) holding an account, a live session and a
  remember-me token, upgrading to head keeps all three usable: the password still signs in, the
  session cookie still verifies, the remember cookie still restores (and is now linked to its
  session, which is what 0002 added), the known-device registry (0003) and the passkey tables
  (0006) start empty, and what existed is recorded as signed in with a password alone (0005:
  ``methods`` = ``pwd``).
* ``authsvc serve`` and the other commands refuse a schema that is behind (naming both revisions
  and ``authsvc db upgrade``), one that a newer release migrated, and a database they cannot reach,
  with a message instead of a traceback and without starting gunicorn.
* On PostgreSQL, instances that all run ``authsvc db upgrade`` as they start take turns.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from authsvc.core import db, models
from authsvc.core.hashing import Hasher
from authsvc.core.passkeys import PasskeyStore
from authsvc.core.policy import load_policy
from authsvc.core.sessions import new_token, token_digest
from authsvc.server import cli
from authsvc.web.auth import session_identifier
from tests.backends import pg_schema
from tests.conftest import (
    PASSWORD,
    TEST_POLICY,
    Clock,
    build_app,
    csrf_in,
    login,
    make_env,
    new_client,
)
from tests.integration.conftest import authsvc_command, free_port

pytestmark = pytest.mark.integration

PREVIOUS_RELEASE = "0001"
IP, UA = "198.51.100.7", "Mozilla/5.0 (X11) MigratedBrowser/1"


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path):
    """An empty database of each kind: its URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'authsvc.db'}"
    else:
        with pg_schema("migr") as (_name, url):
            yield url


@pytest.fixture
def engine(database):
    e = db.make_engine(database)
    yield e
    e.dispose()


def tables(engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


# --- from nothing ----------------------------------------------------------------------------------------

def test_upgrade_from_an_empty_database_builds_exactly_the_schema_the_models_describe(engine):
    assert db.current_revision(engine) is None
    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision()
    assert tables(engine) == {"users", "sessions", "remember_tokens", "known_devices", "totp_factors",
                              "recovery_codes", "passkeys", "passkey_users", "groups", "group_members", "oidc_clients", "oidc_codes",
                              "oidc_tokens", "oidc_signing_keys", "oidc_consents", "oidc_subjects",
                              "alembic_version"}
    with engine.connect() as conn:
        drift = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), models.metadata)
    assert drift == [], f"authsvc/core/models.py and the migrations disagree (a change without a revision?): {drift}"
    assert db.schema_problem(engine) is None
    db.upgrade(engine)  # again: nothing to do, nothing breaks
    assert db.current_revision(engine) == db.head_revision()


def test_0007_groups_memberships_end_with_their_group_or_account_and_downgrade_cleanly(engine):
    """Removing a group or an account removes its memberships (ON DELETE CASCADE, on each database),
    and 0007 goes down to 0006 and up again."""
    db.upgrade(engine)
    from authsvc.core.accounts import AccountStore
    from authsvc.core.groups import GroupStore

    clock = Clock()
    groups = GroupStore(engine, clock)
    alice = AccountStore(engine, clock).create("alice", "x")
    groups.add("admins")
    groups.add("ops")
    assert groups.join(alice.id, "admins") and groups.join(alice.id, "ops") and not groups.join(alice.id, "ops")
    from authsvc.core.policy import load_policy
    from authsvc.core.sessions import SessionStore

    store = SessionStore(engine, load_policy().sessions, clock)
    token, _ = store.create(alice.id, "198.51.100.7", "ua", False)
    assert store.load(token).groups == ("admins", "ops")  # read with the session, in its one query
    with engine.begin() as conn:
        conn.execute(models.groups.delete().where(models.groups.c.name == "ops"))
    assert groups.of_user(alice.id) == ("admins",)
    with engine.begin() as conn:
        conn.execute(models.users.delete().where(models.users.c.id == alice.id))
        assert conn.execute(sa.select(sa.func.count()).select_from(models.group_members)).scalar() == 0
    db.downgrade(engine, "0006")
    assert not {"groups", "group_members"} & tables(engine)
    db.upgrade(engine)
    assert {"groups", "group_members"} <= tables(engine)


@pytest.mark.asvs("V10.4.11")
def test_0009_gives_clients_registered_before_it_every_scope_they_could_ask_for(engine):
    """A client of 0008 could ask for every offered scope: after 0009 its list is all of them, so
    it keeps working; a new row must name its own (no default); 0009 goes down and up again."""
    from authsvc.core.oidc.store import ClientStore
    from authsvc.rules.oidc_requests import LEGACY_CLIENT_SCOPES, SUPPORTED_SCOPES

    db.upgrade(engine, "0008")
    row = {"client_id": "old-client", "secret_hash": None, "name": "Old", "redirect_uris": "https://a.example/cb",
           "public": True, "trusted": False, "require_mfa": False, "post_logout_redirect_uris": "",
           "backchannel_logout_uri": None, "created_at": 1.0}
    with engine.begin() as conn:
        conn.execute(sa.Table("oidc_clients", sa.MetaData(), autoload_with=conn).insert().values(**row))
    db.upgrade(engine)
    assert LEGACY_CLIENT_SCOPES == SUPPORTED_SCOPES
    assert ClientStore(engine, Clock()).get("old-client").scopes == SUPPORTED_SCOPES
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # no default for a new row
        conn.execute(models.oidc_clients.insert().values(**dict(row, client_id="new-client")))
    db.downgrade(engine, "0008")
    assert "scopes" not in {c["name"] for c in sa.inspect(engine).get_columns("oidc_clients")}
    db.upgrade(engine)
    assert ClientStore(engine, Clock()).get("old-client").scopes == SUPPORTED_SCOPES


def account_at_an_old_revision(engine, name: str = "alice") -> SimpleNamespace:
    """An account written into the users table as it is at the database's revision (reflected:
    AccountStore reads the columns of head)."""
    with engine.begin() as conn:
        table = sa.Table("users", sa.MetaData(), autoload_with=conn)
        user_id = conn.execute(table.insert().values(
            username=name, username_key=name, password_hash="x", disabled=False, created_at=1.0,
            password_changed_at=1.0).returning(table.c.id)).scalar_one()
    return SimpleNamespace(id=user_id)


@pytest.mark.asvs("V10.4.5")
def test_0010_leaves_every_existing_family_live_and_goes_down_and_up_again(engine):
    """0010 adds the family's revocation mark to each code row: a code (and so its tokens) from
    before it is unmarked, so its family keeps working; the mark then holds; 0010 goes down and up."""
    db.upgrade(engine, "0009")
    alice = account_at_an_old_revision(engine)
    with engine.begin() as conn:
        session_id = conn.execute(models.sessions.insert().values(
            token_hash=b"s" * 32, user_id=alice.id, created_at=1.0, last_seen_at=1.0, expires_at=9e9,
            remembered=False, client_ip="198.51.100.7", user_agent="ua").returning(models.sessions.c.id)).scalar_one()
        codes = sa.Table("oidc_codes", sa.MetaData(), autoload_with=conn)
        code_id = conn.execute(codes.insert().values(
            code_hash=b"c" * 32, client_id="c", user_id=alice.id, session_id=session_id, redirect_uri="https://a/cb",
            scope="openid", nonce=None, code_challenge="x" * 43, code_challenge_method="S256", auth_time=1.0,
            methods="pwd", created_at=1.0, expires_at=9e9, used_at=2.0).returning(codes.c.id)).scalar_one()
    db.upgrade(engine)
    from authsvc.core.oidc.store import TokenStore

    tokens = TokenStore(engine, Clock(), access_lifetime=600, refresh_lifetime=86400)
    save = dict(refresh_token="r", client_id="c", user_id=alice.id, session_id=session_id, family_id=code_id,
                scope="openid")
    assert tokens.save(access_token="a1", **save) is True  # the family from before 0010 is live
    assert tokens.revoke_family(code_id, "refresh_replayed") == 1
    assert tokens.save(access_token="a2", **dict(save, refresh_token="r2")) is False
    db.downgrade(engine, "0009")
    assert "family_revoked_at" not in {c["name"] for c in sa.inspect(engine).get_columns("oidc_codes")}
    db.upgrade(engine)
    assert "family_revoked_at" in {c["name"] for c in sa.inspect(engine).get_columns("oidc_codes")}


def test_0011_leaves_existing_sessions_unasked_and_chains_without_a_time_and_goes_down_and_up(engine):
    """0011 adds the sign-in time to remember-me chains, the re-authentication mark and the sid's
    source to sessions: rows from before it get none (a session is not sent to sign in again by the upgrade, and a
    chain from before reports its session's start as auth_time, as it did); 0011 goes down and up."""
    from authsvc.rules.oidc_requests import auth_time

    db.upgrade(engine, "0010")
    alice = account_at_an_old_revision(engine)
    with engine.begin() as conn:
        tables = sa.MetaData()
        sessions = sa.Table("sessions", tables, autoload_with=conn)
        remember = sa.Table("remember_tokens", tables, autoload_with=conn)
        session_id = conn.execute(sessions.insert().values(
            token_hash=b"s" * 32, user_id=alice.id, created_at=5.0, last_seen_at=5.0, expires_at=9e9,
            remembered=True, client_ip="198.51.100.7", user_agent="ua").returning(sessions.c.id)).scalar_one()
        conn.execute(remember.insert().values(
            selector="s" * 22, validator_hash=b"v" * 32, user_id=alice.id, created_at=5.0, expires_at=9e9,
            client_ip="198.51.100.7", user_agent="ua", session_id=session_id))
    db.upgrade(engine)
    with engine.connect() as conn:
        asked, sid_hash = conn.execute(sa.select(models.sessions.c.reauth_asked_at, models.sessions.c.sid_hash)).one()
        chain = conn.execute(sa.select(models.remember_tokens.c.signed_in_at)).scalar_one()
    assert asked is None and chain is None and auth_time(None, chain, 5.0) == 5.0
    assert sid_hash is None  # its sid still comes from token_hash: clients holding it see no change
    db.downgrade(engine, "0010")
    assert not {"reauth_asked_at", "sid_hash"} & {c["name"] for c in sa.inspect(engine).get_columns("sessions")}
    assert "signed_in_at" not in {c["name"] for c in sa.inspect(engine).get_columns("remember_tokens")}
    db.upgrade(engine)
    assert "signed_in_at" in {c["name"] for c in sa.inspect(engine).get_columns("remember_tokens")}


def test_0012_leaves_existing_sessions_and_chains_live_and_goes_down_and_up(engine):
    """0012 adds the sign-out generation: every account, session and remember-me token from before
    it is generation 0, so each keeps working; the next sign-out everywhere ends them; 0012 goes
    down and up."""
    from authsvc.core.accounts import AccountStore
    from authsvc.core.sessions import SessionStore, session_verdict

    db.upgrade(engine, "0011")
    alice = account_at_an_old_revision(engine)
    with engine.begin() as conn:
        sessions = sa.Table("sessions", sa.MetaData(), autoload_with=conn)
        conn.execute(sessions.insert().values(
            token_hash=token_digest("old"), user_id=alice.id, created_at=5.0, last_seen_at=5.0, expires_at=9e9,
            remembered=False, client_ip="198.51.100.7", user_agent="ua"))
    db.upgrade(engine)
    clock = Clock(6.0)
    store = SessionStore(engine, load_policy(TEST_POLICY).sessions, clock)
    assert session_verdict(store.load("old"), 6.0, store.policy) == "live"
    AccountStore(engine, clock).next_sign_out_generation(alice.id)
    assert session_verdict(store.load("old"), 6.0, store.policy) == "revoked"
    db.downgrade(engine, "0011")
    assert "sign_out_generation" not in {c["name"] for c in sa.inspect(engine).get_columns("users")}
    assert "generation" not in {c["name"] for c in sa.inspect(engine).get_columns("sessions")}
    db.upgrade(engine)
    assert "generation" in {c["name"] for c in sa.inspect(engine).get_columns("remember_tokens")}


def test_0013_voids_the_recovery_codes_of_accounts_without_a_second_factor(engine):
    """Codes made while an account had no factor (anyone with a reused password could) would pass
    the second step of the factor added later: 0013 voids them; an account with an app or a
    passkey keeps its codes."""
    from authsvc.core.recovery_codes import RecoveryCodes

    db.upgrade(engine, "0012")
    with_app, with_passkey, without = (account_at_an_old_revision(engine, name) for name in ("a", "b", "c"))
    codes = RecoveryCodes(engine, Clock())
    for account in (with_app, with_passkey, without):
        codes.generate(account.id)
    with engine.begin() as conn:
        conn.execute(models.totp_factors.insert().values(user_id=with_app.id, secret=b"x", created_at=1.0,
                                                         last_step=0))
        conn.execute(models.passkeys.insert().values(
            user_id=with_passkey.id, credential_id=b"c" * 16, public_key=b"k", sign_count=0, name="Laptop",
            transports="", created_at=1.0))
    db.upgrade(engine)
    assert [codes.remaining(a.id) for a in (with_app, with_passkey, without)] == [10, 10, 0]
    db.downgrade(engine, "0012")
    db.upgrade(engine)
    assert [codes.remaining(a.id) for a in (with_app, with_passkey, without)] == [10, 10, 0]


# --- from the previous release, with data ------------------------------------------------------------------

def seed_previous_release(engine, clock: Clock) -> dict:
    """The schema as release 0001 left it, with what that release wrote: an account, a live
    session and an unused remember-me token (tables reflected, so nothing of head leaks in)."""
    db.upgrade(engine, PREVIOUS_RELEASE)
    assert db.current_revision(engine) == PREVIOUS_RELEASE
    meta = sa.MetaData()
    users, sessions, remember = (sa.Table(n, meta, autoload_with=engine)
                                 for n in ("users", "sessions", "remember_tokens"))
    assert "session_id" not in remember.c, "revision 0001 already had 0002's column"
    now = clock()
    token, selector, validator = new_token(), secrets.token_urlsafe(16), secrets.token_urlsafe(32)
    with engine.begin() as conn:
        user_id = conn.execute(users.insert().values(
            username="Alice", username_key="alice", password_hash=Hasher(load_policy(TEST_POLICY).argon2).hash(PASSWORD),
            disabled=False, created_at=now - 3600, password_changed_at=now - 3600).returning(users.c.id)).scalar_one()
        session_id = conn.execute(sessions.insert().values(
            token_hash=token_digest(token), user_id=user_id, created_at=now - 60, last_seen_at=now - 60,
            expires_at=now + 86400, remembered=True, client_ip=IP, user_agent=UA,
        ).returning(sessions.c.id)).scalar_one()
        conn.execute(remember.insert().values(
            selector=selector, validator_hash=hashlib.sha256(validator.encode()).digest(), user_id=user_id,
            created_at=now - 60, expires_at=now + 14 * 86400, client_ip=IP, user_agent=UA))
    return {"token": token, "cookie": f"{selector}.{validator}", "user_id": user_id, "session_id": session_id,
            "selector": selector}


def browser(app):
    c = new_client(app)
    c.environ_base.update(REMOTE_ADDR=IP, HTTP_USER_AGENT=UA)
    return c


def with_session(app, token: str):
    """A browser holding the Flask session cookie that release 0001 gave for ``token``."""
    with app.test_request_context(environ_base={"REMOTE_ADDR": IP, "HTTP_USER_AGENT": UA}):
        binding = session_identifier()
    value = app.session_interface.get_signing_serializer(app).dumps(
        {"_user_id": token, "_id": binding, "_fresh": True})
    c = browser(app)
    c.set_cookie(app.extensions["authsvc"].cookies.session, value, domain="auth.example.test")
    return c


def test_upgrade_from_the_previous_release_keeps_accounts_sessions_and_remember_tokens_usable(database, engine,
                                                                                               tmp_path):
    clock = Clock()
    old = seed_previous_release(engine, clock)
    db.upgrade(engine)  # what `authsvc db upgrade` does
    assert db.current_revision(engine) == db.head_revision()
    with engine.connect() as conn:  # 0004: a session from before counts as used (nothing is known of it)
        assert conn.execute(sa.select(models.sessions.c.used_at, models.sessions.c.last_seen_at).where(
            models.sessions.c.id == old["session_id"])).one() == (clock() - 60, clock() - 60)

    app = build_app(tmp_path, clock, AUTHSVC_DATABASE_URL=database)
    svc = app.extensions["authsvc"]
    try:
        account = svc.accounts.by_username("ALICE")
        # The old release stored "Alice" as typed; the account's one name is its canonical key (review
        # finding 9: apps are given "alice", the name every other path uses).
        assert account is not None and account.id == old["user_id"] and account.username == "alice"
        # The session the old release started still authenticates, and can still be ended.
        kept = with_session(app, old["token"])
        answer = kept.get("/auth/verify")
        assert answer.status_code == 200 and answer.headers["X-Auth-User"] == "alice"
        # 0005: a session from before was signed in with the password alone, and is not recent.
        assert svc.sessions.load(old["token"]).methods == ("pwd",)
        assert answer.headers["X-Auth-Methods"] == "pwd"
        assert svc.sessions.load(old["token"]).authenticated_at is None
        assert [s.id for s in svc.sessions.list_live(account.id)] == [old["session_id"]]
        # The password hashed by the old release still signs in.
        assert login(browser(app), "alice").status_code == 303
        # The remember cookie it issued still restores once, rotating into a token linked to the
        # session it started (the column 0002 added).
        restoring = browser(app)
        restoring.set_cookie(svc.cookies.remember, svc.remember.serializer.dumps(old["cookie"]),
                             domain="auth.example.test")
        assert restoring.get("/login").status_code == 303
        assert restoring.get("/auth/verify").status_code == 200
        with engine.connect() as conn:
            rows = conn.execute(sa.select(models.remember_tokens).order_by(models.remember_tokens.c.id)).all()
        assert rows[0].selector == old["selector"] and rows[0].rotated_at is not None and rows[0].session_id is None
        assert len(rows) == 2 and rows[1].session_id is not None and rows[1].expires_at == rows[0].expires_at
        assert rows[0].successor_id == rows[1].id  # the link 0004 added
        assert rows[0].methods == rows[1].methods == "pwd"  # 0005: the methods its chain carries
        # Device cookies of the old release are not registered (0003's table starts empty): the
        # browser that signed in above is now the account's one known device.
        assert svc.known_devices.count(account.id) == 1
        # 0006's passkey tables start empty, and the account can register one (its user handle is
        # made then) and sign in with it.
        store = PasskeyStore(svc.engine, clock)
        assert store.list(account.id) == [] and store.user_handle(account.id) is None
        handle = store.handle_for(account.id)
        added = store.add(account.id, b"\x01" * 16, b"cose", 7, "Old laptop", ("usb",))
        assert store.find(b"\x01" * 16) == added and len(handle) == 32
        assert store.record_use(added.id, 7, 2**32 - 1)  # the counter's whole range fits
        # Logging the old session out ends it.
        token = _csrf(kept)
        assert kept.post("/logout", data={"csrf_token": token}).status_code == 303
        assert with_session(app, old["token"]).get("/auth/verify").status_code == 401
    finally:
        svc.engine.dispose()


def _csrf(client) -> str:

    return csrf_in(client.get("/").get_data(as_text=True))


# --- refusing a schema that is behind ------------------------------------------------------------------------

@contextlib.contextmanager
def configured(monkeypatch, tmp_path, database):
    """`authsvc ...` in-process with the environment of a production instance on ``database``;
    ``os.execve`` (serve's hand-over to gunicorn) is recorded instead of run."""
    for key in [k for k in os.environ if k.startswith(("AUTHSVC_", "PROMETHEUS_"))]:
        monkeypatch.delenv(key)
    for key, value in make_env(tmp_path, AUTHSVC_DATABASE_URL=database).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AUTHSVC_INSTANCE_PATH", str(tmp_path / "instance"))
    started: list[list[str]] = []

    def execve(path, argv, env):
        started.append(list(argv))
        os.rmdir(env["PROMETHEUS_MULTIPROC_DIR"])  # made for the gunicorn that never runs
        raise SystemExit(0)
    monkeypatch.setattr(cli.os, "execve", execve)
    yield started


def run(argv, capsys) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


SERVE = ["serve", "--bind", "127.0.0.1:1", "--workers", "1"]


def test_serve_and_the_cli_refuse_a_schema_that_is_behind_and_say_to_run_db_upgrade(database, engine, tmp_path,
                                                                                   monkeypatch, capsys):
    with configured(monkeypatch, tmp_path, database) as started:
        # no schema at all
        code, err = run(SERVE, capsys)
        assert code == 1 and "no authsvc schema" in err and "authsvc db upgrade" in err, err
        # the previous release's schema
        db.upgrade(engine, PREVIOUS_RELEASE)
        for argv in (SERVE, ["user", "list"], ["sessions", "purge"], ["sessions", "revoke", "alice"]):
            code, err = run(argv, capsys)
            assert code == 1, (argv, err)
            assert f"revision {PREVIOUS_RELEASE}" in err and db.head_revision() in err, err
            assert "authsvc db upgrade" in err and "Traceback" not in err, err
        assert started == [], "gunicorn was started on a schema that is behind"
        assert tables(engine) >= {"users", "sessions"} and db.current_revision(engine) == PREVIOUS_RELEASE, \
            "refusing changed the schema"
        # after the upgrade, serve gets as far as handing over to gunicorn
        assert run(["db", "upgrade"], capsys)[0] == 0
        code, err = run(SERVE, capsys)
        assert code == 0 and len(started) == 1 and "authsvc.server.wsgi:app" in started[0], err


def test_a_schema_from_a_newer_release_is_refused_without_suggesting_db_upgrade(database, engine, tmp_path,
                                                                                monkeypatch, capsys):
    db.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    with configured(monkeypatch, tmp_path, database) as started:
        code, err = run(SERVE, capsys)
    assert code == 1 and started == []
    assert "9999_from_the_future" in err and "newer release" in err and "db upgrade" not in err, err


def test_an_unreachable_database_is_a_clear_refusal_not_a_traceback(tmp_path, monkeypatch, capsys):
    port = free_port()  # nobody listens there
    url = f"postgresql+psycopg://authsvc@127.0.0.1:{port}/authsvc"
    with configured(monkeypatch, tmp_path, url) as started:
        code, err = run(SERVE, capsys)
        assert code == 1 and started == []
        assert "cannot read the database schema" in err and "AUTHSVC_DATABASE_URL" in err, err
        code, err = run(["db", "upgrade"], capsys)
        assert code == 1 and "cannot migrate the database" in err and "AUTHSVC_DATABASE_URL" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("database", ["postgres"], indirect=True)  # SQLite's DDL is not transactional
def test_a_failed_upgrade_on_postgres_leaves_nothing_half_done(engine):
    """The whole upgrade is one transaction: when a step fails (here a table in the way of 0001's
    last one), the tables made before it are gone too and the schema is still "empty", so the
    next `authsvc db upgrade` starts clean instead of from a state no revision describes."""
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE remember_tokens (id integer)"))
    with pytest.raises(sa.exc.ProgrammingError):
        db.upgrade(engine)
    assert tables(engine) == {"remember_tokens"}, "a failed upgrade left tables behind"
    assert db.current_revision(engine) is None


def test_real_serve_process_refuses_the_previous_release_schema_until_db_upgrade(tmp_path):
    """The same, end to end on PostgreSQL: the `authsvc serve` process exits 1 with the message and
    nothing listens on its port; `authsvc db upgrade` then brings the schema to head."""
    with pg_schema("migr") as (_name, url):
        engine = db.make_engine(url)
        try:
            db.upgrade(engine, PREVIOUS_RELEASE)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "PROMETHEUS_"))}
            env.update(make_env(tmp_path, AUTHSVC_DATABASE_URL=url), AUTHSVC_INSTANCE_PATH=str(tmp_path / "i"))
            port = free_port()
            served = subprocess.run([*authsvc_command(), "serve", "--bind", f"127.0.0.1:{port}"], env=env,
                                    capture_output=True, text=True, timeout=60, check=False)
            assert served.returncode == 1, served.stderr
            assert f"revision {PREVIOUS_RELEASE}" in served.stderr and "authsvc db upgrade" in served.stderr
            assert "Traceback" not in served.stderr
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            upgraded = subprocess.run([*authsvc_command(), "db", "upgrade"], env=env, capture_output=True,
                                      text=True, timeout=60, check=False)
            assert upgraded.returncode == 0, upgraded.stderr
            assert f"database at revision {db.head_revision()}" in upgraded.stdout
            assert db.schema_problem(engine) is None
        finally:
            engine.dispose()


# --- several instances upgrading at once ---------------------------------------------------------------------

_UPGRADE = """
import sys
from authsvc.core import db
engine = db.make_engine(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()  # go: all racers at once
db.upgrade(engine)
print(db.current_revision(engine))
"""


def test_instances_upgrading_postgres_at_the_same_moment_take_turns():
    """Three processes run `authsvc db upgrade`'s code on one empty PostgreSQL schema at the same
    moment (instances that upgrade as they start): every one succeeds, the later ones finding
    nothing to do, and the schema is built once. Without the lock they collide on CREATE TABLE."""
    with pg_schema("migr") as (_name, url):
        racers = [subprocess.Popen([sys.executable, "-c", _UPGRADE, url], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
        try:
            for r in racers:
                assert r.stdout.readline().strip() == "ready", r.stderr.read()
            for r in racers:
                r.stdin.write("go\n")
                r.stdin.flush()
            results = [r.communicate(timeout=60) + (r.returncode,) for r in racers]
        finally:
            for r in racers:
                if r.poll() is None:
                    r.kill()
        failed = [next((line for line in reversed(err.splitlines()) if "Error" in line), err[-300:])
                  for _out, err, code in results if code != 0]
        assert failed == [], f"concurrent upgrades failed: {failed}"
        assert [out.strip() for out, _err, _code in results] == [db.head_revision()] * 3
        engine = db.make_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
        finally:
            engine.dispose()


# --- SQLite rebuilds tables without cascading ----------------------------------------------------------

def _row_counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {name: conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one()  # nosec B608 - fixed names
                for name in ("users", "totp_factors", "recovery_codes", "passkeys", "group_members", "sessions",
                             "remember_tokens") if name in tables(engine)}


def test_a_downgrade_keeps_every_second_factor_membership_session_and_remember_token(engine):
    """On SQLite, dropping a column rebuilds the table (copy, drop, rename). With foreign keys on,
    dropping the old users table cascaded to every row that named an account: a downgrade of 0012
    deleted every authenticator app, recovery code, passkey, group membership and session, and
    those of 0011, 0005, 0004 and 0002 ended every session's remember-me link. Migrations run with
    foreign keys off and check them after, so each row survives the way down."""
    db.upgrade(engine)
    with engine.begin() as conn:
        uid = conn.execute(models.users.insert().values(
            username="alice", username_key="alice", password_hash="x", disabled=False, created_at=1.0,
            password_changed_at=1.0).returning(models.users.c.id)).scalar_one()
        conn.execute(models.totp_factors.insert().values(user_id=uid, secret=b"s", created_at=1.0, last_step=0))
        conn.execute(models.recovery_codes.insert().values(user_id=uid, code_hash=b"c" * 32, created_at=1.0))
        conn.execute(models.passkeys.insert().values(user_id=uid, credential_id=b"p" * 16, public_key=b"k",
                                                     sign_count=0, name="Laptop", transports="", created_at=1.0))
        gid = conn.execute(models.groups.insert().values(name="admins", created_at=1.0)
                           .returning(models.groups.c.id)).scalar_one()
        conn.execute(models.group_members.insert().values(group_id=gid, user_id=uid))
        sid = conn.execute(models.sessions.insert().values(
            token_hash=b"t" * 32, user_id=uid, created_at=1.0, last_seen_at=1.0, expires_at=9e9, remembered=True,
            client_ip=IP, user_agent=UA).returning(models.sessions.c.id)).scalar_one()
        conn.execute(models.remember_tokens.insert().values(
            selector="r" * 22, validator_hash=b"v" * 32, user_id=uid, created_at=1.0, expires_at=9e9,
            client_ip=IP, user_agent=UA, session_id=sid))
    every_row = _row_counts(engine)
    assert set(every_row.values()) == {1}
    db.downgrade(engine, "0011")
    assert _row_counts(engine) == every_row
    db.downgrade(engine, "0001")
    assert _row_counts(engine) == {"users": 1, "sessions": 1, "remember_tokens": 1}
    db.upgrade(engine)
    assert _row_counts(engine) == {**every_row, "totp_factors": 0, "recovery_codes": 0, "passkeys": 0,
                                   "group_members": 0}
    with engine.connect() as conn:  # the connection goes back to the pool with foreign keys on again
        if conn.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
