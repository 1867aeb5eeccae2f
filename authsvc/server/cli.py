"""The ``authsvc`` command line: serve, db, user, group, access, sessions, mfa, oidc, gen-secret, check,
probe."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
import tempfile
import time
from typing import Mapping

from authsvc.core import config as config_mod
from authsvc.core.hashing import with_hugepages

EXIT_USAGE = 2


def _fail(message: str, code: int = 1) -> int:
    print(f"authsvc: {message}", file=sys.stderr)
    return code


def _shown(text: str) -> str:
    """Client-supplied text (User-Agent) made safe for the operator's terminal: control and
    format characters (escape sequences, tabs, newlines, bidi overrides) are printed escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# Long enough for every retry of a back-channel logout (attempts x timeout + backoff).
CLI_BACKCHANNEL_WAIT_SECONDS = 30.0


def _settings() -> config_mod.Settings:
    return config_mod.from_env()


def _app():
    from authsvc.core import db
    from authsvc.web.app import StartupRefused, create_app

    settings = _settings()
    try:
        app = create_app(settings)
    except StartupRefused as exc:
        raise SystemExit(_fail(str(exc)))
    problem = db.schema_problem(app.extensions["authsvc"].engine)
    if problem:
        raise SystemExit(_fail(problem))
    return app


def _read_password(args, prompt: str = "Password: ") -> str:
    if args.password_stdin:
        # The line without its end, whichever: a password file saved on Windows ends in CRLF, and a
        # "\r" kept in the password is one no browser can send (found by review, session 14).
        line = sys.stdin.readline()
        return line.removesuffix("\n").removesuffix("\r")
    try:
        first = getpass.getpass(prompt)
        again = getpass.getpass("Repeat: ")
    except EOFError:  # no terminal and nothing (more) on stdin
        raise SystemExit(_fail("no password was entered; to read it from a pipe, use --password-stdin")) from None
    if again != first:
        raise SystemExit(_fail("the passwords did not match"))
    return first


def cmd_gen_secret(_args) -> int:
    from authsvc.rules.secretkeys import generate_secret

    print(generate_secret())
    return 0


def cmd_check(_args) -> int:
    try:
        settings = _settings()
    except config_mod.ConfigError as exc:
        print(f"error: {exc}")
        return 1
    problems = config_mod.audit(settings)
    try:
        from authsvc.core import db

        engine = db.make_engine(settings.database_url)
        schema = db.schema_problem(engine)
        if schema:
            problems.append(config_mod.Problem("error", "AUTHSVC_DATABASE_URL", f"AUTHSVC_DATABASE_URL: {schema}"))
    except Exception as exc:  # unreachable database
        problems.append(config_mod.Problem("error", "AUTHSVC_DATABASE_URL",
                                           f"AUTHSVC_DATABASE_URL: cannot connect ({type(exc).__name__})."))
    problems += _file_mode_problems(settings)
    problems += _access_problems(settings)
    problems += config_mod.oidc_issuer_problems(settings, _oidc_client_count(settings))
    for p in problems:
        print(p)
    if not [p for p in problems if p.severity != "note"]:
        print(f"ok: configuration is sound for {settings.env} (policy: {settings.policy.source})")
        return 0
    return 1


def _oidc_client_count(settings: config_mod.Settings) -> int | None:
    """How many OpenID Connect clients are registered; None when the database cannot say (its
    problem is reported above). Asked only when the answer matters (production, no public URL)."""
    if not settings.production or settings.public_url:
        return None
    import sqlalchemy as sa

    from authsvc.core import db
    from authsvc.core.models import oidc_clients

    try:
        engine = db.make_engine(settings.database_url)
        try:
            with engine.connect() as conn:
                return int(conn.execute(sa.select(sa.func.count()).select_from(oidc_clients)).scalar_one())
        finally:
            engine.dispose()
    except Exception:  # unreachable, or the schema is not there yet
        return None


def _access_problems(settings: config_mod.Settings) -> list[config_mod.Problem]:
    """The access rules' lints; group members are counted when the database can be read."""
    from authsvc.core import db
    from authsvc.core.access_lint import access_problems
    from authsvc.core.groups import GroupStore

    if not settings.policy.access.rules:
        return []
    try:
        members = dict(GroupStore(db.make_engine(settings.database_url), time.time).all())
    except Exception:  # reported above as the database's problem
        members = None
    return access_problems(settings.policy.access, settings, members)


def _file_mode_problems(settings: config_mod.Settings) -> list[config_mod.Problem]:
    """The instance folder and a SQLite database's folder and files, if group or others can read them."""
    from authsvc.core import db, filemodes

    problems = [config_mod.Problem("warning", "AUTHSVC_INSTANCE_PATH", m) for m in
                filemodes.open_paths([(settings.instance_path, True, "the instance folder")])]
    database = db.sqlite_file(settings.database_url)
    if database:
        paths = [p for p in filemodes.sqlite_paths(database)
                 if os.path.abspath(p[0]) != os.path.abspath(settings.instance_path)]  # reported once
        problems += [config_mod.Problem("warning", "AUTHSVC_DATABASE_URL", m) for m in filemodes.open_paths(paths)]
    return problems


def cmd_db_upgrade(_args) -> int:
    import sqlalchemy as sa

    from authsvc.core import db

    settings = _settings()
    engine = db.make_engine(settings.database_url)
    try:
        db.upgrade(engine)
    except sa.exc.OperationalError as exc:  # unreachable server, bad credentials
        return _fail(f"cannot migrate the database ({str(exc.orig).strip().splitlines()[0][:200]}). "
                     "Fix: check AUTHSVC_DATABASE_URL and that the database server is up.")
    print(f"database at revision {db.current_revision(engine)}")
    return 0


def cmd_serve(args) -> int:
    from authsvc.core import db
    from authsvc.web.app import StartupRefused, create_app

    settings = _settings()
    try:
        create_app(settings)  # refuses unsound production settings, with the fixes
    except StartupRefused as exc:
        return _fail(str(exc))
    problem = db.schema_problem(db.make_engine(settings.database_url))
    if problem:
        return _fail(problem)
    for warning in config_mod.serve_problems(settings, args.workers):  # a JSON line in the server's own log
        logging.getLogger("authsvc.server").warning(warning.message)
    env = server_environ(os.environ)
    # Workers share metrics through files here; a fresh directory per start, so no stale counts.
    env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="authsvc-metrics-")
    argv = gunicorn_argv(args.bind, args.workers, args.worker_class, args.threads)
    os.execve(sys.executable, argv, env)  # nosec B606 - fixed argv, no shell
    return 0  # pragma: no cover


def server_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment ``authsvc serve`` runs gunicorn in: ``environ`` with argon2's memory in huge
    pages (``GLIBC_TUNABLES``, read by glibc when the process starts; hashing.with_hugepages).
    scripts/bench and scripts/bench-flood serve with the same."""
    return {**environ, "GLIBC_TUNABLES": with_hugepages(environ.get("GLIBC_TUNABLES"))}


def gunicorn_argv(bind: str, workers: int, worker_class: str = "gthread", threads: int = 8,
                  app: str = "authsvc.server.wsgi:app") -> list[str]:
    """gunicorn's command line for ``authsvc serve`` (scripts/bench serves its bare-Flask baseline
    with the same, so the two differ only in the application)."""
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:authsvc.server.gunicorn_conf",
            "--bind", bind, "--workers", str(workers),
            "--worker-class", worker_class, "--access-logfile", "-", "--error-logfile", "-",
            # JSON lines (no request can start a line), never the query or cookies: authsvc.server.access_log
            "--logger-class", "authsvc.server.access_log.JsonLogger",
            "--limit-request-line", "8190", "--limit-request-field_size", "8190", "--forwarded-allow-ips", "",
            app]
    if worker_class == "gthread":
        argv[argv.index("--worker-class"):argv.index("--worker-class")] = ["--threads", str(threads)]
    return argv


def _account(store, name):
    account = store.by_username(name)
    if account is None:
        raise SystemExit(_fail(f"no user named {name!r}"))
    return account


def cmd_user(args) -> int:
    from authsvc.rules.passwords import normalize_password, password_problems
    from authsvc.rules.streamsafe import MAX_NON_STARTERS
    from authsvc.rules.usernames import normalize_username, username_problem
    from authsvc.web.forms import value_problem

    app = _app()
    svc = app.extensions["authsvc"]
    if args.user_cmd == "list":
        member_of = svc.groups.by_user()
        for a in svc.accounts.all():
            print(f"{a.id}\t{a.username}\t{'disabled' if a.disabled else 'enabled'}\t"
                  f"password set {time.strftime('%Y-%m-%d', time.gmtime(a.password_changed_at))}\t"
                  f"groups: {','.join(member_of.get(a.id, ())) or '-'}")
        return 0
    if args.user_cmd == "add":
        problem = username_problem(args.name, svc.policy.limits.username_max_length)
        if problem:
            return _fail(problem)
        if svc.accounts.by_username(args.name):
            return _fail(f"user {args.name!r} already exists")
        canonical = normalize_username(args.name)
        if canonical != args.name:
            print(f"note: {_shown(args.name)!r} is written {canonical}: an account has one name, in lower-case "
                  "ASCII, and that is the name apps receive")
    if args.user_cmd in ("add", "passwd"):
        typed = _read_password(args)
        # What the sign-in form refuses before it normalises (authsvc.web.forms.value_problem): a
        # password the form can never send is refused here too, not stored unusable.
        refused = value_problem(typed, svc.policy.passwords.max_length * 4)
        if refused == "combining_marks":  # before NFC, whose cost grows with the square of such a run
            return _fail(f"the password has more than {MAX_NON_STARTERS} combining marks in a row, which no "
                         "language needs; type it again")
        if refused:
            return _fail("the password has characters the sign-in form never sends (NUL, or bytes that are not "
                         "UTF-8)" if refused == "invalid_characters" else "the password is longer than the sign-in "
                         "form accepts")
        password = normalize_password(typed)
        problems = password_problems(password, username=normalize_username(args.name), rules=svc.password_rules,
                                     blocklist=svc.blocklist)
        if problems:
            for p in problems:
                print(f"refused: {p}", file=sys.stderr)
            return 1
        from authsvc.core.accounts import UsernameTaken

        if args.user_cmd == "add":
            try:
                account = svc.accounts.create(args.name, svc.hasher.hash(password))
            except UsernameTaken:
                return _fail(f"user {args.name!r} already exists")
            svc.audit.emit("user_created", user_id=account.id, by="cli")
            print(f"created user {account.username} (id {account.id})")
            return 0
        account = _account(svc.accounts, args.name)
        svc.accounts.set_password_hash(account.id, svc.hasher.hash(password))
        ended = svc.sign_out.everywhere(account.id, "password_changed").sessions
        svc.audit.emit("password_changed", user_id=account.id, by="cli", sessions_revoked=ended)
        print(f"password changed for {account.username}; {ended} session(s) ended")
        return 0
    account = _account(svc.accounts, args.name)
    if args.user_cmd == "disable":
        svc.accounts.set_disabled(account.id, True)
        ended = svc.sign_out.everywhere(account.id, "account_disabled").sessions
        svc.audit.emit("account_disabled", user_id=account.id, by="cli", sessions_revoked=ended)
        print(f"disabled {account.username}; {ended} session(s) ended")
    elif args.user_cmd == "enable":
        svc.accounts.set_disabled(account.id, False)
        svc.audit.emit("account_enabled", user_id=account.id, by="cli")
        print(f"enabled {account.username}")
    elif args.user_cmd == "unlock":
        svc.throttle.unlock(account.username_key)
        svc.code_throttle.unlock(account.username_key)  # the second step's codes too
        svc.audit.emit("account_unlocked", user_id=account.id, by="cli")
        print(f"unlocked {account.username} (shared rate-limit storage only; memory:// lives in the server)")
    elif args.user_cmd == "groups":
        return _user_groups(svc, account, args)
    elif args.user_cmd == "mfa":
        for kind, count in svc.factors.counts(account.id).items():
            print(f"{kind}\t{count}")
        print(f"recovery codes left\t{svc.recovery_codes.remaining(account.id)}")
    elif args.user_cmd == "mfa-reset":
        removed = svc.factors.remove_all(account.id)
        codes = svc.recovery_codes.void(account.id)
        # The factors are gone, the password is not: known devices stay, as for a factor change.
        ended = svc.sign_out.everywhere(account.id, "mfa_reset", forget_devices=False).sessions
        svc.audit.emit("mfa_reset", user_id=account.id, by="cli", factors_removed=removed,
                       recovery_codes_voided=codes, sessions_revoked=ended)
        print(f"removed {removed} second factor(s) and {codes} recovery code(s) of {account.username}; "
              f"{ended} session(s) ended")
    return 0


def _user_groups(svc, account, args) -> int:
    """``authsvc user groups USER [--add G] [--remove G]``: change, then list, the user's groups."""
    from authsvc.core.groups import NoSuchGroup

    changes = [*((g, True) for g in args.add or ()), *((g, False) for g in args.remove or ())]
    known = {name for name, _members in svc.groups.all()}
    unknown = [name for name, _join in changes if _normal_group(name) not in known]
    if unknown:  # before any change: one unknown group in a list left the others applied
        return _fail(f"no group named {_shown(unknown[0])!r}; create it with `authsvc group add NAME` "
                     "(nothing was changed)")
    for name, join in changes:
        try:
            changed = (svc.groups.join if join else svc.groups.leave)(account.id, name)
        except NoSuchGroup as exc:
            return _fail(f"no group named {_shown(str(exc))!r}; create it with `authsvc group add NAME`")
        if changed:
            svc.audit.emit("group_member_added" if join else "group_member_removed", user_id=account.id,
                           group=str(_normal_group(name)), by="cli")
    print(f"{account.username}\t{','.join(svc.groups.of_user(account.id)) or '-'}")
    return 0


def _normal_group(name: str) -> str:
    from authsvc.rules.groups import normalize_group

    return normalize_group(name)


def cmd_group(args) -> int:
    from authsvc.core.groups import GroupExists, NoSuchGroup
    from authsvc.rules.groups import group_problem

    app = _app()
    svc = app.extensions["authsvc"]
    if args.group_cmd == "list":
        for name, members in svc.groups.all():
            print(f"{name}\t{members} member(s)")
        return 0
    if args.group_cmd == "add":
        problem = group_problem(args.name)
        if problem:
            return _fail(problem)
        try:
            name = svc.groups.add(args.name)
        except GroupExists as exc:
            return _fail(f"group {str(exc)!r} already exists")
        svc.audit.emit("group_created", group=name, by="cli")
        print(f"created group {name}")
        return 0
    try:
        members = svc.groups.remove(args.name)
    except NoSuchGroup as exc:
        return _fail(f"no group named {_shown(str(exc))!r}")
    name = _normal_group(args.name)
    svc.audit.emit("group_removed", group=name, by="cli", members_removed=members)
    print(f"removed group {name} and its {members} membership(s)")
    return 0


def cmd_access(args) -> int:
    """``authsvc access explain``: which rule decides a request, and why."""
    from authsvc.rules import access as rules
    from authsvc.rules.forward_auth import OriginalRequest, request_parts

    settings = _settings()
    access = settings.policy.access
    url = args.url
    if not url.lower().startswith(("http://", "https://")) or any(not (" " < c <= "~") for c in url):
        return _fail("--url must be an absolute http(s) URL in printable ASCII, as the proxy would describe it")
    method = args.method.upper()
    host, target = request_parts(OriginalRequest(url, method))
    user, groups, factors, steps_up = None, (), frozenset(), True
    if args.user is not None:
        from authsvc.web.views.verify import can_step_up

        app = _app()
        svc = app.extensions["authsvc"]
        account = _account(svc.accounts, args.user)
        user, groups = account.username, svc.groups.of_user(account.id)
        factors, steps_up = svc.factors.kinds(account.id), can_step_up(svc, account.id)
    print(f"request: {method} {_shown(url)}")
    normal = rules.normalize_host(host)
    path = rules.normalize_path(target or "")
    print(f"  host {normal or 'unreadable'}, path {path or 'ambiguous (denied where the host has path rules)'}")
    print(f"user: {user or 'anonymous'}" + (f" (groups: {','.join(groups) or '-'})" if user else ""))
    if user:
        required = settings.policy.mfa.required
        print(f"second factor: {','.join(sorted(factors)) or 'none'}"
              + ("" if factors else f" ([mfa] required = {str(required).lower()}"
                 + (": one is set up at the next sign-in)" if required else ")")))
    outcomes = {}
    for label, methods in (("one factor", ("pwd",)), ("two factors", ("pwd", "otp", "mfa"))):
        # What verify will do for this account: a step-up it cannot take is a 403.
        outcomes[label] = rules.for_the_account(rules.decide(access, host, target, method, user, groups, methods),
                                                steps_up)
    first = outcomes["one factor"]
    if first.rule is None:
        print(f"decided by: {'the default' if first.reason in ('default', 'no_rules') else 'no rule'} "
              f"(default = {access.default}; reason {first.reason})")
    else:
        print(f"decided by: access.rules[{first.rule}] ({_describe(access.rules[first.rule])}; reason {first.reason})")
    if user is None:
        print(f"verdict: {first.verdict}")
        return 0
    for label, decision in outcomes.items():
        if label == "two factors" and not steps_up:
            print(f"verdict signed in with two factors: not possible, the account has no second factor "
                  f"(once it sets one up on its account page: {decision.verdict})")
        else:
            print(f"verdict signed in with {label}: {decision.verdict}{_meaning(decision)}")
    return 0


def _meaning(decision) -> str:
    """What /auth/verify answers for ``decision``, for ``access explain``."""
    from authsvc.rules import access as rules

    if decision.reason == rules.NO_SECOND_FACTOR:
        return (" (403, reason no_second_factor: a two_factor rule, and the account has no second factor to "
                "step up with; it sets one up on its account page, then signs in again)")
    return {rules.STEP_UP: " (the login page with step_up=1: the password again, then the second step)",
            rules.DENY: " (403)", rules.ALLOW: " (200 with the identity headers)",
            rules.BYPASS: " (200 without identity headers)"}.get(decision.verdict, "")


def _describe(rule) -> str:
    parts = [f"hosts={','.join(rule.hosts)}"]
    for key in ("paths", "methods", "groups", "users"):
        values = getattr(rule, key)
        if values:
            parts.append(f"{key}={','.join(sorted(values))}")
    return " ".join([*parts, f"policy={rule.policy}"])


def cmd_mfa(args) -> int:
    app = _app()
    svc = app.extensions["authsvc"]
    if args.mfa_cmd == "reseal":  # after a secret-key rotation, before the old key leaves the fallbacks
        resealed, unreadable = svc.totp.reseal_all()
        svc.audit.emit("mfa_resealed", by="cli", resealed=resealed, unreadable=unreadable)
        print(f"resealed {resealed} authenticator-app secret(s) under the current key")
        if unreadable:
            return _fail(f"{unreadable} secret(s) open with no configured key: their accounts must set up their "
                         "app again (`authsvc user mfa-reset NAME`), or put the key they were sealed with back "
                         "in AUTHSVC_SECRET_KEY_FALLBACKS and run this again")
    return 0


def cmd_sessions(args) -> int:
    app = _app()
    svc = app.extensions["authsvc"]
    if args.sessions_cmd == "purge":  # run from cron or a systemd timer: docs/operations.md
        n = svc.sessions.purge() + svc.remember.purge(svc.clock() - svc.policy.sessions.purge_after_seconds) + \
            svc.known_devices.purge()
        # The OpenID Provider's: unusable tokens, old codes, keys no longer published.
        n += svc.oidc.tokens.purge() + svc.oidc.codes.purge() + svc.oidc.keys.purge()
        print(f"purged {n} record(s)")
        return 0
    account = _account(svc.accounts, args.name)
    if args.sessions_cmd == "list":
        for s in svc.sessions.list_live(account.id):
            print(f"{s.id}\t{time.strftime('%Y-%m-%d %H:%M', time.gmtime(s.last_seen_at))}\t{_shown(s.client_ip)}\t"
                  f"{'remembered' if s.remembered else '-'}\t{_shown(s.user_agent[:60])}")
        return 0
    ended = svc.sign_out.everywhere(account.id, "admin_revoked")
    svc.audit.emit("session_revoked", user_id=account.id, reason="admin_revoked", by="cli",
                   sessions_revoked=ended.sessions)
    print(f"revoked {ended.sessions} session(s) and {ended.remembered} remember-me token(s) of {account.username}")
    return 0


SCOPE_PROBLEMS = {
    "missing": "empty",
    "too_long": "too long",
    "malformed": "scope names separated by single spaces, ASCII only",
    "openid_missing": "must include openid",
    "unknown_scope": "names a scope this service does not offer (spelled exactly, lower case)",
}


def cmd_oidc(args) -> int:
    """``authsvc oidc client add|list|update|remove`` and ``authsvc oidc keys rotate``."""
    import json

    from authsvc.rules.oidc_requests import DEFAULT_CLIENT_SCOPES

    app = _app()
    svc = app.extensions["authsvc"]
    provider = svc.oidc
    if args.oidc_cmd == "keys":  # rotate: the only keys command
        kid = provider.keys.rotate()
        svc.audit.emit("oidc_key_rotated", by="cli", kid=kid)
        print(f"new signing key {kid} ({provider.keys.alg}); older keys stay in the JWKS for "
              f"{provider.policy.id_token_lifetime_seconds} s, until the ID tokens they signed have expired")
        return 0
    if args.client_cmd == "list":
        listed = provider.clients.all()
        if args.json:
            print(json.dumps([{"client_id": c.client_id, "name": c.name, "public": c.public, "trusted": c.trusted,
                               "require_mfa": c.require_mfa, "scopes": list(c.scopes),
                               "redirect_uris": list(c.redirect_uris)} for c in listed]))
            return 0
        for c in listed:
            kind = "public" if c.public else "confidential"
            flags = ",".join(f for f, on in (("trusted", c.trusted), ("require-mfa", c.require_mfa)) if on) or "-"
            print(f"{c.client_id}\t{_shown(c.name)}\t{kind}\t{flags}\t{' '.join(c.scopes)}\t"
                  f"{' '.join(c.redirect_uris)}")
        return 0
    if args.client_cmd == "remove":
        if not provider.clients.remove(args.client_id):
            return _fail(f"no client with id {args.client_id!r}")
        svc.audit.emit("oidc_client_removed", by="cli", client_id=args.client_id)
        print(f"removed client {args.client_id} and every code, token and consent it held")
        return 0
    if args.client_cmd == "update":
        return _oidc_client_update(args, svc)
    name = args.name.strip()
    if problem := _client_name_problem(name):
        return _fail(problem)
    if args.scopes is None:
        args.scopes = " ".join(DEFAULT_CLIENT_SCOPES)
    problems, scopes = _client_option_problems(args, public=args.public)
    if problems:
        return _refused(problems)
    made = provider.clients.add(name, tuple(dict.fromkeys(args.redirect_uri)), public=args.public,
                                trusted=args.trusted, require_mfa=args.require_mfa,
                                post_logout_redirect_uris=tuple(dict.fromkeys(args.post_logout_redirect_uri)),
                                backchannel_logout_uri=args.backchannel_logout_uri, scopes=scopes)
    svc.audit.emit("oidc_client_added", by="cli", client_id=made.client.client_id, public=args.public,
                   trusted=args.trusted, require_mfa=args.require_mfa, scopes=" ".join(scopes))
    if args.json:
        out = {"client_id": made.client.client_id}
        if made.client_secret is not None:
            out["client_secret"] = made.client_secret
        print(json.dumps(out))
        return 0
    print(f"client_id: {made.client.client_id}")
    if made.client_secret is not None:
        print(f"client_secret: {made.client_secret}")
        print("(shown once: authsvc keeps only its SHA-256 digest)")
    return 0


PUBLIC_NOT_TRUSTED = ("--trusted with a public client: it cannot prove who it is, so its users are always "
                      "asked for consent (ASVS V10.7.1); drop --trusted")


def _client_name_problem(name: str) -> str | None:
    """What is wrong with a client's display name (shown on the consent page), or None."""
    if not name or len(name) > 128 or not name.isprintable():
        return "the client name must be 1 to 128 printable characters"
    return None


def _client_option_problems(args, *, public: bool) -> tuple[list[str], tuple[str, ...] | None]:
    """The checks ``oidc client add`` and ``update`` share, of the options given (None: not given):
    ``--redirect-uri``, ``--post-logout-redirect-uri`` (``registration_problem``, for a public or
    confidential client), ``--backchannel-logout-uri`` (the same, server to server: as for a
    confidential client), ``--trusted`` (never for a public client) and ``--scopes``
    (``parse_scope``). Returns the problems, one line each, and the scopes in their one form (None
    when not given or refused)."""
    from authsvc.rules.oidc_redirects import registration_problem
    from authsvc.rules.oidc_requests import SUPPORTED_SCOPES, parse_scope

    problems = [f"--redirect-uri {uri!r}: {p}" for uri in args.redirect_uri or ()
                if (p := registration_problem(uri, public=public))]
    problems += [f"--post-logout-redirect-uri {uri!r}: {p}" for uri in args.post_logout_redirect_uri or ()
                 if (p := registration_problem(uri, public=public))]
    if args.backchannel_logout_uri is not None and (p := registration_problem(args.backchannel_logout_uri,
                                                                              public=False)):
        problems.append(f"--backchannel-logout-uri: {p}")
    if args.trusted and public:
        problems.append(PUBLIC_NOT_TRUSTED)
    if args.scopes is None:
        return problems, None
    scopes = parse_scope(args.scopes)
    if not scopes.accepted:
        problems.append(f"--scopes {args.scopes!r}: {SCOPE_PROBLEMS.get(scopes.reason, scopes.reason)}; "
                        f"offered: {' '.join(SUPPORTED_SCOPES)}")
        return problems, None
    return problems, scopes.scopes


def _refused(problems: list[str]) -> int:
    for p in problems:
        print(f"refused: {p}", file=sys.stderr)
    return EXIT_USAGE


def _oidc_client_update(args, svc) -> int:
    """``authsvc oidc client update CLIENT_ID``: nothing changes unless every option given passes."""
    import json

    from authsvc.core.oidc.store import KEEP

    provider = svc.oidc
    before = provider.clients.get(args.client_id)
    if before is None:
        return _fail(f"no client with id {args.client_id!r} (authsvc oidc client list shows them)")
    given = [flag for flag, value in (("--name", args.name), ("--redirect-uri", args.redirect_uri),
                                      ("--post-logout-redirect-uri", args.post_logout_redirect_uri),
                                      ("--scopes", args.scopes),
                                      ("--backchannel-logout-uri", args.backchannel_logout_uri)) if value is not None]
    given += [f"--{'' if on else 'no-'}{flag}" for flag, on in (("trusted", args.trusted),
                                                               ("require-mfa", args.require_mfa)) if on is not None]
    given += [flag for flag, on in (("--no-post-logout-redirect-uri", args.no_post_logout_redirect_uri),
                                    ("--no-backchannel-logout-uri", args.no_backchannel_logout_uri),
                                    ("--rotate-secret", args.rotate_secret)) if on]
    if not given:
        return _refused(["nothing to change: give --name, --scopes, --redirect-uri, --post-logout-redirect-uri, "
                         "--backchannel-logout-uri, --[no-]trusted, --[no-]require-mfa or --rotate-secret"])
    problems, scopes = _client_option_problems(args, public=before.public)
    name = None if args.name is None else args.name.strip()
    if name is not None and (p := _client_name_problem(name)):
        problems.append(f"--name: {p}")
    if args.rotate_secret and before.public:
        problems.append("--rotate-secret: a public client has no secret (it proves nothing; PKCE protects "
                        "its codes)")
    if problems:
        return _refused(problems)
    post_logout = (() if args.no_post_logout_redirect_uri else
                   None if args.post_logout_redirect_uri is None else tuple(dict.fromkeys(args.post_logout_redirect_uri)))
    done = provider.clients.update(
        args.client_id, name=name, rotate_secret=args.rotate_secret, scopes=scopes,
        trusted=args.trusted, require_mfa=args.require_mfa,
        backchannel_logout_uri=(None if args.no_backchannel_logout_uri else
                                KEEP if args.backchannel_logout_uri is None else args.backchannel_logout_uri),
        redirect_uris=None if args.redirect_uri is None else tuple(dict.fromkeys(args.redirect_uri)),
        post_logout_redirect_uris=post_logout)
    if done is None:  # removed since the look-up above
        return _fail(f"no client with id {args.client_id!r} (authsvc oidc client list shows them)")
    client = done.client
    # The field names stay clear of the words the secret-in-log rule looks for (AUTHSVC005).
    svc.audit.emit("oidc_client_updated", by="cli", client_id=client.client_id, changed=",".join(given),
                   scopes=" ".join(client.scopes), trusted=client.trusted, require_mfa=client.require_mfa,
                   credential_rotated=bool(args.rotate_secret),
                   scopes_removed=" ".join(done.scopes_removed), revoked=done.revoked,
                   codes_deleted=done.codes_deleted, consents_revoked=done.consents_revoked)
    if args.json:
        out: dict[str, object] = {"client_id": client.client_id}
        if done.client_secret is not None:
            out["client_secret"] = done.client_secret
        out.update(scopes_removed=list(done.scopes_removed), tokens_revoked=done.revoked)
        print(json.dumps(out))
        return 0
    print(f"updated client {client.client_id} ({_shown(client.name)}): {', '.join(given)}")
    print(f"scopes: {' '.join(client.scopes)}")
    print(f"redirect URIs: {' '.join(client.redirect_uris)}")
    if client.post_logout_redirect_uris:
        print(f"post-logout redirect URIs: {' '.join(client.post_logout_redirect_uris)}")
    flags = ",".join(f for f, on in (("trusted", client.trusted), ("require-mfa", client.require_mfa)) if on)
    print(f"flags: {flags or '-'}")
    if client.backchannel_logout_uri:
        print(f"back-channel logout URI: {client.backchannel_logout_uri}")
    if done.scopes_removed:
        print(f"scopes taken away ({' '.join(done.scopes_removed)}): revoked {done.revoked} token(s), "
              f"{done.codes_deleted} unused code(s) and {done.consents_revoked} consent(s) of this client; "
              f"its users sign in to it again")
    elif done.revoked or done.codes_deleted:
        print(f"the client is stricter now: revoked {done.revoked} token(s) and {done.codes_deleted} unused "
              f"code(s) of this client; its users sign in to it again")
    if done.client_secret is not None:
        print(f"client_secret: {done.client_secret}")
        print("(shown once: authsvc keeps only its SHA-256 digest; the old secret no longer works)")
    return 0


def _at_least_one(text: str) -> int:
    """A count of workers or threads: a whole number, 1 or more (0 workers listens and never answers)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="authsvc", description="A security-hardened login service.")
    sub = parser.add_subparsers(dest="cmd", required=True)

    serve = sub.add_parser("serve", help="run the production server (gunicorn)")
    serve.add_argument("--bind", default="127.0.0.1:8000", help="HOST:PORT (default 127.0.0.1:8000)")
    serve.add_argument("--workers", type=_at_least_one, default=2)
    # gthread: a login's argon2 (which releases the GIL) holds one thread, not a whole worker, so verify
    # keeps answering while people sign in; sync answers more verify requests per core when nobody
    # does (scripts/bench, docs/performance.md).
    serve.add_argument("--worker-class", default="gthread", choices=["gthread", "sync"])
    serve.add_argument("--threads", type=_at_least_one, default=8, help="threads per worker with --worker-class gthread")
    serve.set_defaults(func=cmd_serve)

    dbp = sub.add_parser("db", help="database schema")
    dbsub = dbp.add_subparsers(dest="db_cmd", required=True)
    dbsub.add_parser("upgrade", help="create or migrate the schema").set_defaults(func=cmd_db_upgrade)

    user = sub.add_parser("user", help="manage accounts")
    usub = user.add_subparsers(dest="user_cmd", required=True)
    for name in ("add", "passwd"):
        p = usub.add_parser(name)
        p.add_argument("name")
        p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
        p.set_defaults(func=cmd_user)
    for name in ("disable", "enable", "unlock"):
        p = usub.add_parser(name)
        p.add_argument("name")
        p.set_defaults(func=cmd_user)
    usub.add_parser("list").set_defaults(func=cmd_user)
    p = usub.add_parser("mfa", help="list the account's second factors and recovery codes left")
    p.add_argument("name")
    p.set_defaults(func=cmd_user)
    p = usub.add_parser("groups", help="list the user's groups; --add/--remove change them first")
    p.add_argument("name")
    p.add_argument("--add", action="append", metavar="GROUP", help="put the user in GROUP (repeatable)")
    p.add_argument("--remove", action="append", metavar="GROUP", help="take the user out of GROUP (repeatable)")
    p.set_defaults(func=cmd_user)
    p = usub.add_parser("mfa-reset", help="remove every second factor and recovery code of the account and end "
                        "its sessions (a user who lost their factors; check who asks first)")
    p.add_argument("name")
    p.set_defaults(func=cmd_user)

    group = sub.add_parser("group", help="groups for access rules")
    gsub = group.add_subparsers(dest="group_cmd", required=True)
    for name, text in (("add", "create a group"), ("remove", "delete a group and every membership in it")):
        p = gsub.add_parser(name, help=text)
        p.add_argument("name")
        p.set_defaults(func=cmd_group)
    gsub.add_parser("list", help="every group and its number of members").set_defaults(func=cmd_group)

    access = sub.add_parser("access", help="access rules")
    asub = access.add_subparsers(dest="access_cmd", required=True)
    p = asub.add_parser("explain", help="which rule decides a request, and why")
    p.add_argument("--url", required=True, help="the original request's URL, e.g. https://app.example.com/admin")
    p.add_argument("--user", help="the signed-in user (leave out: anonymous)")
    p.add_argument("--method", default="GET")
    p.set_defaults(func=cmd_access)

    mfa = sub.add_parser("mfa", help="second factors")
    msub = mfa.add_subparsers(dest="mfa_cmd", required=True)
    msub.add_parser("reseal", help="seal every authenticator-app secret under the current secret key (after a key "
                    "rotation, before removing the old key from the fallbacks)").set_defaults(func=cmd_mfa)

    sess = sub.add_parser("sessions", help="list, revoke or purge sessions")
    ssub = sess.add_subparsers(dest="sessions_cmd", required=True)
    for name in ("list", "revoke"):
        p = ssub.add_parser(name)
        p.add_argument("name")
        p.set_defaults(func=cmd_sessions)
    ssub.add_parser("purge", help="delete ended sessions, old remember-me tokens and expired known devices "
                    "(run it daily: docs/operations.md)").set_defaults(func=cmd_sessions)

    oidc = sub.add_parser("oidc", help="the OpenID Provider: clients and signing keys (docs/oidc.md)")
    osub = oidc.add_subparsers(dest="oidc_cmd", required=True)
    clients = osub.add_parser("client", help="register, list, update and remove relying parties")
    csub = clients.add_subparsers(dest="client_cmd", required=True)
    p = csub.add_parser("add", help="register a client; prints client_id and, for a confidential client, "
                        "client_secret (once)")
    p.add_argument("name")
    p.add_argument("--redirect-uri", action="append", required=True, metavar="URI",
                   help="an exact redirect URI (repeat for several)")
    p.add_argument("--public", action="store_true", help="no secret: a single-page or native app (PKCE only)")
    p.add_argument("--trusted", action="store_true", help="first-party: no consent page")
    p.add_argument("--require-mfa", action="store_true", help="a one-factor session is stepped up first")
    p.add_argument("--post-logout-redirect-uri", action="append", default=[], metavar="URI")
    p.add_argument("--backchannel-logout-uri", metavar="URI")
    p.add_argument("--scopes", metavar="'openid ...'",
                   help="the scopes it may ask for, space-separated (default: 'openid profile'; add groups for "
                        "the groups claim, offline_access for refresh tokens)")
    p.add_argument("--json", action="store_true", help="print {client_id, client_secret} as JSON")
    p.set_defaults(func=cmd_oidc)
    p = csub.add_parser("list", help="client_id, name, kind, flags, scopes, redirect URIs (never secrets)")
    p.add_argument("--json", action="store_true", help="a JSON list of the clients")
    p.set_defaults(func=cmd_oidc)
    p = csub.add_parser("update", help="change a client's name, scopes, URIs, flags or secret; taking a scope "
                        "away revokes its tokens and consents, making it stricter its tokens")
    p.add_argument("client_id")
    p.add_argument("--scopes", metavar="'openid ...'", help="the scopes it may ask for from now on (replaces the "
                   "list; fewer than before: its tokens, unused codes and consents are revoked)")
    p.add_argument("--redirect-uri", action="append", metavar="URI",
                   help="an exact redirect URI (repeat for several; replaces the list)")
    logout = p.add_mutually_exclusive_group()
    logout.add_argument("--post-logout-redirect-uri", action="append", metavar="URI",
                        help="repeat for several; replaces the list")
    logout.add_argument("--no-post-logout-redirect-uri", action="store_true", help="empty the list")
    p.add_argument("--name", help="the name its users see on the consent page")
    p.add_argument("--trusted", action=argparse.BooleanOptionalAction, default=None,
                   help="first-party, no consent page; --no-trusted: its users consent again (its tokens and "
                        "unused codes are revoked)")
    p.add_argument("--require-mfa", action=argparse.BooleanOptionalAction, default=None,
                   help="a one-factor session is stepped up first (setting it revokes the client's tokens and "
                        "unused codes)")
    backchannel = p.add_mutually_exclusive_group()
    backchannel.add_argument("--backchannel-logout-uri", metavar="URI")
    backchannel.add_argument("--no-backchannel-logout-uri", action="store_true",
                             help="send it no more back-channel logouts")
    p.add_argument("--rotate-secret", action="store_true",
                   help="a new client_secret, printed once; the old one stops working at once")
    p.add_argument("--json", action="store_true", help="print {client_id, client_secret (when rotated), "
                   "scopes_removed, tokens_revoked} as JSON")
    p.set_defaults(func=cmd_oidc)
    p = csub.add_parser("remove", help="remove a client and every code, token and consent it holds")
    p.add_argument("client_id")
    p.set_defaults(func=cmd_oidc)
    keys = osub.add_parser("keys", help="ID token signing keys")
    ksub = keys.add_subparsers(dest="keys_cmd", required=True)
    ksub.add_parser("rotate", help="a new signing key; the old ones stay published until their ID tokens "
                    "have expired").set_defaults(func=cmd_oidc)

    sub.add_parser("gen-secret", help="print a new random secret key").set_defaults(func=cmd_gen_secret)
    sub.add_parser("check", help="audit configuration and policy for production").set_defaults(func=cmd_check)

    from authsvc.probe import command as probe  # standard library only: authsvc.probe

    p = sub.add_parser("probe", help="check a running deployment from outside over HTTPS (cookies, headers, "
                       "forged identity and forwarding headers, next, logout); exit 1 on a failure")
    probe.add_arguments(p)
    p.set_defaults(func=probe.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except config_mod.ConfigError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    finally:
        # A command that ended sessions (sessions revoke, user disable, password) queued their
        # back-channel logouts on a daemon thread: let it finish before the process goes.
        from authsvc.core.oidc.logout import drain_all

        drain_all(CLI_BACKCHANNEL_WAIT_SECONDS)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
