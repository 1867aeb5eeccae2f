"""Static scan, part 3: authsvc's own rules over the package's syntax trees (tests/security/astrules.py).

The real tree must pass every rule; and each rule is shown to catch a planted violation written
the way it would really appear in a view, next to the safe pattern authsvc actually uses (so a
rule that flags everything fails too).
"""

from __future__ import annotations

import textwrap

import pytest

from tests.security import astrules

FLASK = "from flask import redirect, request, url_for, render_template, Response\n"


def rules_hit(source: str, **others: str) -> list[str]:
    sources = {"authsvc/web/views/planted.py": FLASK + textwrap.dedent(source)}
    sources.update({f"authsvc/{name}.py": textwrap.dedent(text) for name, text in others.items()})
    return [f.rule for f in astrules.check_sources(sources)]


# --- the real tree -------------------------------------------------------------------------------


def assert_obeyed(real_scan, *rules: str) -> None:
    found = [i for i in real_scan["authsvc-astrules"].issues if i.rule in rules]
    assert not found, "\n".join(map(str, found))


@pytest.mark.asvs("V3.7.2")
def test_no_redirect_or_location_in_authsvc_takes_an_unvalidated_target(real_scan):
    assert_obeyed(real_scan, "AUTHSVC001", "AUTHSVC002")


@pytest.mark.asvs("V1.2.4")
def test_no_sql_text_in_authsvc_is_built_from_strings(real_scan):
    assert_obeyed(real_scan, "AUTHSVC003")


def test_authsvc_never_renders_a_template_from_a_string(real_scan):
    assert_obeyed(real_scan, "AUTHSVC004")


@pytest.mark.asvs("V16.2.5")
def test_no_logging_call_in_authsvc_gets_a_secret_named_value(real_scan):
    assert_obeyed(real_scan, "AUTHSVC005")


def test_every_rule_has_a_real_tree_test():
    assert sorted(astrules.RULES) == ["AUTHSVC001", "AUTHSVC002", "AUTHSVC003", "AUTHSVC004", "AUTHSVC005"]


def test_the_checker_sees_the_views_it_is_meant_to_check():
    """Guards against a checker that passes because it parses nothing: the real tree has
    redirects, request reads and audit calls, and the analysis finds them."""
    import ast

    root = astrules.Path(__file__).resolve().parents[2]
    tree = ast.parse((root / "authsvc/web/views/login.py").read_text(encoding="utf-8"))
    calls = [astrules.call_name(n) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert "redirect" in calls and "emit" in calls and "validate_next" in calls
    facts = astrules.package_facts({"login": tree})
    assert facts.tainted_returns  # a helper that returns request.form / request.args data (_raw_next)
    assert facts.decision_producers - {"validate_next"}  # a function annotated -> RedirectDecision


# --- AUTHSVC001 / 002: redirect targets ------------------------------------------------------------


@pytest.mark.parametrize("source", [
    # The patterns authsvc uses (views/login.py, views/account.py, views/verify.py).
    """
    from authsvc.rules.redirects import RedirectDecision, validate_next
    def next_decision(raw) -> RedirectDecision:
        return validate_next(raw, RULES)
    def login():
        decision = next_decision(request.form.get("next") or request.args.get("next"))
        return redirect(decision.target, 303)
    """,
    "def logout():\n    return redirect(url_for('login.login_form'), 303)\n",
    "def home():\n    return redirect('/', 302)\n",
    "def f(raw):\n    return redirect(validate_next(raw, RULES).target)\n",
    "def f():\n    target = validate_next(request.args.get('next'), RULES).target\n    return redirect(target)\n",
    "def f(decision: RedirectDecision):\n    return redirect(decision.target)\n",
    "def f(ok):\n    return redirect(url_for('a') if ok else url_for('b'))\n",
    """
    def verify():
        original = original_request(request.headers, request.scheme, 1)
        location, decision = login_location(REDIRECT, original)
        return Response(status=302, headers={"Location": location})
    """,
])
def test_safe_redirect_patterns_pass(source):
    assert rules_hit(source) == []


@pytest.mark.parametrize("source, rule", [
    ("def f():\n    return redirect(request.args.get('next'))\n", "AUTHSVC002"),
    ("def f():\n    return redirect(request.form['next'], 303)\n", "AUTHSVC002"),
    ("def f():\n    nxt = request.values.get('next', '/')\n    return redirect(nxt)\n", "AUTHSVC002"),
    ("def f():\n    return redirect('/app' + request.args['path'])\n", "AUTHSVC002"),
    ("def f():\n    return redirect(f\"https://{request.headers['Host']}/\")\n", "AUTHSVC002"),
    ("def f():\n    d = validate_next(request.args['next'], R)\n    return redirect(d.target or request.args['next'])\n",
     "AUTHSVC002"),
    ("def f():\n    return Response(status=302, headers={'Location': request.args['next']})\n", "AUTHSVC002"),
    ("def f(resp):\n    resp.headers['Location'] = request.cookies.get('back')\n    return resp\n", "AUTHSVC002"),
    ("def f(target):\n    return redirect(target)\n", "AUTHSVC001"),
    ("def f(settings):\n    return redirect(settings.home_url)\n", "AUTHSVC001"),
    ("def f(d):\n    return redirect(d.target)\n", "AUTHSVC001"),  # d is not known to be a decision
    ("def f(u):\n    return Response(status=302, headers={'Location': u})\n", "AUTHSVC001"),
    ("def f(ok, u):\n    t = url_for('a')\n    if not ok:\n        t = u\n    return redirect(t)\n", "AUTHSVC001"),
    ("def f(ok):\n    t = url_for('a')\n    if not ok:\n        t = request.args['n']\n    return redirect(t)\n",
     "AUTHSVC002"),
], ids=["args", "form", "values-variable", "concatenated", "f-string-header", "or-fallback-to-raw",
        "location-dict", "location-assignment", "parameter", "attribute", "unknown-target", "location-parameter",
        "one-branch-unknown", "one-branch-request"])
def test_unvalidated_redirect_targets_are_caught(source, rule):
    assert rule in rules_hit(source)


def test_request_data_returned_by_a_helper_in_another_module_is_still_request_data():
    forms = "from flask import request\n\ndef field(name, limit):\n    return request.form.get(name, '')[:limit]\n"
    view = "from authsvc.web.forms import field\n\ndef f():\n    return redirect(field('next', 100))\n"
    assert "AUTHSVC002" in rules_hit(view, forms=forms)
    # ... also through a second helper.
    relay = "from authsvc.web.forms import field\n\ndef back():\n    return field('back', 10).strip()\n"
    assert "AUTHSVC002" in rules_hit("def f():\n    return redirect(back())\n", forms=forms, relay=relay)


# --- AUTHSVC002 / 003: SQL text and template strings -------------------------------------------------


@pytest.mark.asvs("V1.2.4")
@pytest.mark.parametrize("source, rule", [
    ("def f(conn):\n    conn.execute(sa.text(f\"SELECT * FROM users WHERE name = '{request.form['u']}'\"))\n",
     "AUTHSVC002"),
    ("def f(conn):\n    name = request.args['u']\n    conn.execute('SELECT * FROM users WHERE name = ' + name)\n",
     "AUTHSVC002"),
    ("def f(conn, name):\n    conn.execute(text(f'SELECT * FROM users WHERE name = {name}'))\n", "AUTHSVC003"),
    ("def f(conn, n):\n    conn.execute(sa.text('SELECT * FROM t LIMIT %d' % n))\n", "AUTHSVC003"),
    ("def f(cur, t):\n    cur.execute('DELETE FROM {}'.format(t))\n", "AUTHSVC003"),
    ("def f(conn, n):\n    q = 'SELECT ' + n\n    conn.exec_driver_sql(q)\n", "AUTHSVC003"),
], ids=["request-in-fstring", "request-concatenated", "fstring", "percent", "format", "built-variable"])
def test_sql_text_from_request_data_or_string_building_is_caught(source, rule):
    assert rule in rules_hit(source)


@pytest.mark.parametrize("source", [
    "def f(conn):\n    conn.execute(sa.text('SELECT 1'))\n",
    "def f(cur):\n    cur.execute('PRAGMA foreign_keys=ON')\n",
    "def f(conn, key):\n    conn.execute(sa.text('SELECT id FROM users WHERE username_key = :k'), {'k': key})\n",
    "def f(conn, users, key):\n    conn.execute(sa.select(users).where(users.c.username_key == key))\n",
    "def f(conn):\n    conn.execute(QUERY)\n",
])
def test_constant_sql_and_bound_parameters_pass(source):
    assert rules_hit(source) == []


@pytest.mark.parametrize("source", [
    "from flask import render_template_string\n",
    "import flask\n\ndef f():\n    return flask.render_template_string('<p>hi</p>')\n",
    "def f():\n    return render_template_string(request.args['t'])\n",
])
def test_render_template_string_is_caught_wherever_it_appears(source):
    assert "AUTHSVC004" in rules_hit(source)


@pytest.mark.parametrize("source", [
    "from markupsafe import Markup\n\ndef f():\n    return Markup(request.args['name'])\n",
    "def f(app):\n    return app.jinja_env.from_string(request.form['tpl']).render()\n",
    "from jinja2 import Template\n\ndef f():\n    return Template('Hi ' + request.args['n']).render()\n",
])
def test_request_data_in_a_template_string_is_caught(source):
    assert "AUTHSVC002" in rules_hit(source)


def test_request_data_in_a_template_file_context_is_fine():
    assert rules_hit("def f():\n    return render_template('login.html', username=request.form['u'])\n") == []


# --- AUTHSVC005: secrets in logs ------------------------------------------------------------------


@pytest.mark.asvs("V16.2.5")
@pytest.mark.parametrize("source", [
    "import logging\nlog = logging.getLogger('a')\n\ndef f(password):\n    log.info('login %s', password)\n",
    "def f(logger, token):\n    logger.warning(f'bad token {token}')\n",
    "import logging\n\ndef f(session_token):\n    logging.error('x %s', session_token[:8])\n",
    "def f(svc, value):\n    svc.audit.emit('login_failure', password=value)\n",
    "def f(svc, user):\n    svc.audit.emit('x', reason=user.remember_cookie)\n",
    "def f(audit, c):\n    audit.emit('csrf_failed', csrf_token=c)\n",
    "def f(svc, secret_key):\n    svc.audit.emit('config_refused', detail=str(secret_key))\n",
    "def f(log, parts):\n    validator = parts[1]\n    log.debug('remember %s', validator)\n",
    "def f(log, apiKey):\n    log.info('k=%s', apiKey)\n",
    "def f(log, new_passwd):\n    log.info('%s', new_passwd)\n",
    "def f(log, tokens):\n    log.info('%s', tokens)\n",
    "def _audit(event, **fields):\n    pass\n\ndef f(cookie):\n    _audit('x', value=cookie)\n",
], ids=["password-arg", "token-fstring", "token-slice", "password-kw", "cookie-attr", "csrf-kw", "secret-key-str",
        "validator", "camel-key", "passwd", "plural", "helper"])
def test_a_secret_named_value_reaching_a_logging_call_is_caught(source):
    assert "AUTHSVC005" in rules_hit(source)


@pytest.mark.parametrize("source", [
    "def f(svc, decision):\n    svc.audit.emit('redirect_rejected', reason=decision.reason)\n",
    "def f(log, exc):\n    log.error('database unavailable: %s', type(exc).__name__)\n",
    "def f(log, key):\n    log.info('key fingerprint %s', fingerprint(key))\n",
    "def f(log, password):\n    log.info('password length %d', len(password))\n",
    "def f(svc, session_id, monkey):\n    svc.audit.emit('logout', session_id=session_id, animal=monkey)\n",
    "def f(print_token):\n    print(print_token)\n",  # not a logging call (the CLI prints to its operator)
    "def f(cache, token):\n    cache.set(token, 1)\n",
])
def test_ordinary_log_fields_pass(source):
    assert rules_hit(source) == []


def test_words_split_identifiers_as_the_rule_says():
    assert astrules.words("sessionToken") == ["session", "token"]
    assert astrules.is_sensitive("remember_tokens") and astrules.is_sensitive("CSRF_TOKEN")
    assert not astrules.is_sensitive("monkey") and not astrules.is_sensitive("tokenizer")
    assert not astrules.is_sensitive("session_id") and not astrules.is_sensitive("keyboard")


def test_findings_name_file_line_and_rule():
    [finding] = astrules.check_source(FLASK + "\ndef f():\n    return redirect(request.args['n'])\n", "views/x.py")
    assert (finding.path, finding.line, finding.rule) == ("views/x.py", 4, "AUTHSVC002")
    assert str(finding).startswith("views/x.py:4:12: AUTHSVC002 request-to-sink:")
