"""Who else on the machine can read the password hashes (review finding 8, ASVS 13.3.1/14.2.x).

With the usual umask 022, SQLite made the default database and its WAL 0644 in a 0755 folder: any
local user could copy the argon2 hashes and guess offline. Now the instance folder and a database
folder authsvc creates are 0700 and the database, -wal and -shm 0600 whatever the umask; an existing
folder or file keeps its mode, and `authsvc check` names each one group or others can read with the
chmod that fixes it.
"""

from __future__ import annotations

import os
import stat
import subprocess

import pytest
import sqlalchemy as sa

from authsvc.core import config, db
from authsvc.core.filemodes import mode_problem
from tests.conftest import PASSWORD, build_app
from tests.security.test_cli import AUTHSVC, SHARED_STORAGE, check_in_process, cli_env

UMASKS = [pytest.param(0o022, id="umask-022"), pytest.param(0o002, id="umask-002"),
          pytest.param(0o077, id="umask-077"), pytest.param(0o000, id="umask-000")]


@pytest.fixture
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def open_database(url: str):
    """An upgraded database with a connection open and a write done: -wal and -shm exist then."""
    engine = db.make_engine(url)
    db.upgrade(engine)
    conn = engine.connect()
    conn.execute(sa.text("UPDATE users SET disabled = disabled"))
    conn.commit()
    return engine, conn


@pytest.mark.asvs("V13.3.2")
@pytest.mark.parametrize("umask", UMASKS, indirect=True)
def test_a_new_sqlite_database_its_wal_and_shm_are_owner_only_whatever_the_umask(tmp_path, umask):
    folder = tmp_path / "var" / "authsvc"
    engine, conn = open_database(f"sqlite:///{folder / 'authsvc.db'}")
    try:
        files = {p.name: mode(p) for p in folder.iterdir()}
        assert {"authsvc.db", "authsvc.db-wal", "authsvc.db-shm"} <= set(files)
        assert files == dict.fromkeys(files, 0o600), f"umask {umask:03o}: {files}"
        assert mode(folder) == 0o700
    finally:
        conn.close()
        engine.dispose()


@pytest.mark.parametrize("umask", UMASKS[:1], indirect=True)
def test_a_relative_sqlite_path_gets_the_same_modes(tmp_path, umask, monkeypatch):
    monkeypatch.chdir(tmp_path)
    engine, conn = open_database("sqlite:///data/authsvc.db")
    try:
        assert mode(tmp_path / "data") == 0o700 and mode(tmp_path / "data" / "authsvc.db") == 0o600
        assert mode(tmp_path / "data" / "authsvc.db-wal") == 0o600
    finally:
        conn.close()
        engine.dispose()


@pytest.mark.asvs("V13.3.2")
@pytest.mark.parametrize("umask", UMASKS[:1], indirect=True)
@pytest.mark.parametrize("form", ["file:{path}?uri=true", "file://{path}?uri=true", "file://localhost{path}?uri=true",
                                  "file:{path}?mode=rwc&uri=true"])
def test_a_sqlite_url_in_uri_form_gets_the_same_modes(tmp_path, umask, form):
    """``sqlite:///file:/path/authsvc.db?uri=true`` (SQLite's URI filenames) was not taken for a
    file: SQLite made it 0644 in a 0755 folder and `authsvc check` said nothing."""
    folder = tmp_path / "uri"
    folder.mkdir(mode=0o755)
    engine, conn = open_database("sqlite:///" + form.format(path=folder / "authsvc.db"))
    try:
        files = {p.name: mode(p) for p in folder.iterdir()}
        assert {"authsvc.db", "authsvc.db-wal"} <= set(files) and files == dict.fromkeys(files, 0o600), files
    finally:
        conn.close()
        engine.dispose()


@pytest.mark.parametrize("url, file", [
    ("sqlite:///file:/srv/a.db?uri=true", "/srv/a.db"), ("sqlite:///file:///srv/a.db?uri=true", "/srv/a.db"),
    ("sqlite:///file://localhost/srv/a.db?uri=true", "/srv/a.db"), ("sqlite:///file:a.db?uri=true", "a.db"),
    ("sqlite:///file:/srv/a.db?uri=true&mode=memory", None), ("sqlite:///file::memory:?uri=true", None),
    ("sqlite:///file:/srv/a.db", "file:/srv/a.db"),  # without uri=true, a file named that way (in ./file:)
    ("sqlite:////srv/a.db", "/srv/a.db"), ("sqlite://", None), ("sqlite:///:memory:", None),
    ("postgresql://u:p@h/d", None),
    # SQLite decodes its URI's path once more, and ends it at its own "?" or "#" (found by review of
    # the fix, session 14: authsvc made "auth%20data.db" owner-only, SQLite "auth data.db" 0644).
    ("sqlite:///file:/srv/auth%2520data.db?uri=true", "/srv/auth data.db"),
    ("sqlite:///file:/srv/a.db%23x?uri=true", "/srv/a.db"), ("sqlite:///file:/srv/a.db%3Fcache%3Dshared?uri=true", "/srv/a.db"),
    ("sqlite:///file:/srv/a.db%3Fmode%3Dmemory?uri=true", None),
])
def test_the_file_of_every_sqlite_url_form_is_found(url, file):
    assert db.sqlite_file(url) == file


@pytest.mark.parametrize("umask", UMASKS[:1], indirect=True)
def test_a_sqlite_uri_whose_path_sqlite_decodes_again_gets_the_real_file_owner_only(tmp_path, umask):
    url = f"sqlite:///file:{tmp_path}/auth%2520data.db?uri=true"
    engine, conn = open_database(url)
    try:
        made = {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()}
    finally:
        conn.close()
        engine.dispose()
    assert made == {"auth data.db": "0o600", "auth data.db-wal": "0o600", "auth data.db-shm": "0o600"}, made


@pytest.mark.parametrize("umask", UMASKS[:1], indirect=True)
def test_in_an_existing_open_folder_the_new_database_is_still_owner_only_and_check_names_the_folder(
        tmp_path, umask, monkeypatch, capsys):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    url = f"sqlite:///{folder / 'authsvc.db'}"
    engine, conn = open_database(url)
    conn.close()
    engine.dispose()
    assert mode(folder) == 0o755, "an existing folder's mode is the operator's choice"
    assert mode(folder / "authsvc.db") == 0o600
    code, shown = check_in_process(tmp_path, monkeypatch, capsys, AUTHSVC_DATABASE_URL=url)
    assert code == 1
    assert f"warning: the database folder {folder} has mode 0755" in shown and f"Fix: chmod 700 {folder}" in shown
    assert "authsvc.db has mode" not in shown


@pytest.mark.parametrize("umask", UMASKS, indirect=True)
def test_the_instance_folder_is_owner_only_whatever_the_umask(tmp_path, umask):
    # The embedded default keeps its database in the instance folder, which the app creates.
    app = build_app(tmp_path, AUTHSVC_DATABASE_URL=f"sqlite:///{tmp_path / 'instance' / 'authsvc.db'}")
    app.extensions["authsvc"].engine.dispose()
    assert mode(tmp_path / "instance") == 0o700
    assert mode(tmp_path / "instance" / "authsvc.db") == 0o600
    # development keeps a generated key there
    config.from_env({"AUTHSVC_ENV": "development"}, instance_path=str(tmp_path / "dev" / "instance"))
    assert mode(tmp_path / "dev" / "instance") == 0o700
    assert mode(tmp_path / "dev" / "instance" / "secret_key") == 0o600


@pytest.mark.asvs("V13.3.2")
@pytest.mark.parametrize(("db_mode", "wal_mode"), [
    pytest.param(0o644, 0o644, id="db-0644-wal-0644"), pytest.param(0o640, 0o600, id="db-0640"),
    pytest.param(0o604, 0o600, id="db-0604"), pytest.param(0o600, 0o644, id="wal-0644")])
def test_check_reports_a_database_or_wal_file_others_can_read_with_the_chmod_that_fixes_it(
        tmp_path, monkeypatch, capsys, db_mode, wal_mode):
    url = f"sqlite:///{tmp_path / 'authsvc.db'}"
    engine, conn = open_database(url)
    try:
        database, wal = tmp_path / "authsvc.db", tmp_path / "authsvc.db-wal"
        os.chmod(database, db_mode)
        os.chmod(wal, wal_mode)
        code, shown = check_in_process(tmp_path, monkeypatch, capsys, AUTHSVC_DATABASE_URL=url)
    finally:
        conn.close()
        engine.dispose()
    assert code == 1, shown
    for path, bits in ((database, db_mode), (wal, wal_mode)):
        reported = f"has mode {bits:04o}" in shown and f"Fix: chmod 600 {path}" in shown
        assert reported == bool(bits & 0o077), shown


def test_check_reports_an_open_instance_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "instance").mkdir(mode=0o755)
    os.chmod(tmp_path / "instance", 0o755)
    code, shown = check_in_process(tmp_path, monkeypatch, capsys, AUTHSVC_DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
    assert code == 1
    assert f"warning: the instance folder {tmp_path / 'instance'} has mode 0755" in shown
    assert f"Fix: chmod 700 {tmp_path / 'instance'}" in shown


@pytest.mark.parametrize(("path", "mode_", "folder", "fix"), [
    ("/d", 0o40700, True, None), ("/d", 0o40750, True, "chmod 700 /d"), ("/d", 0o40701, True, "chmod 700 /d"),
    ("/f", 0o100600, False, None), ("/f", 0o100400, False, None), ("/f", 0o100644, False, "chmod 600 /f"),
    ("/f", 0o100620, False, "chmod 600 /f"), ("/f", 0o100602, False, "chmod 600 /f"),
])
def test_mode_problem_flags_any_group_or_other_bit(path, mode_, folder, fix):
    problem = mode_problem(path, mode_, folder=folder, what="x")
    assert (problem is None) == (fix is None)
    if fix:
        assert problem.endswith(f"Fix: {fix}")


@pytest.mark.parametrize("umask", [pytest.param(0o022, id="umask-022"), pytest.param(0o077, id="umask-077")])
def test_the_installed_cli_makes_owner_only_files_under_the_umask_it_is_given(tmp_path, umask):
    """`authsvc db upgrade`, `user add` and `check`, as an operator runs them."""
    folder = tmp_path / "var"
    env = cli_env(tmp_path, AUTHSVC_DATABASE_URL=f"sqlite:///{folder / 'authsvc.db'}",
                  AUTHSVC_RATELIMIT_STORAGE_URI=SHARED_STORAGE)
    env["AUTHSVC_INSTANCE_PATH"] = str(tmp_path / "instance")

    def run(*args, input=None):
        return subprocess.run([str(AUTHSVC), *args], cwd=tmp_path, env=env, input=input, capture_output=True,
                              text=True, timeout=120, umask=umask, check=False)

    assert run("db", "upgrade").returncode == 0
    added = run("user", "add", "alice", "--password-stdin", input=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert mode(folder) == 0o700 and mode(folder / "authsvc.db") == 0o600
    assert [p for p in folder.iterdir() if mode(p) != 0o600] == []
    checked = run("check")
    assert checked.returncode == 0 and "has mode" not in checked.stdout, checked.stdout
