"""The OpenID Provider's token endpoint in /metrics: ``authsvc_oidc_token_requests_total{grant,result}``.

Threats: a client minting label values (and so unbounded series) through ``grant_type`` or an error
it provokes; a token, code or client secret showing up in a label; an attack on the token endpoint
(code replay, a wrong secret, a flood) that the counts do not show.
"""

from __future__ import annotations

import base64

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import TEST_POLICY, build_app, login, new_client
from tests.security.oidc_helpers import add_client, exchange, get_code, refresh

TOKEN = "mtk-Zq7Lw2Xc9Vb4Nm1Kj6Hg3Fd8Sa5Pt0Ry-metrics"
NAME = "authsvc_oidc_token_requests_total"


@pytest.fixture
def mapp(tmp_path, clock):
    path = tmp_path / "policy.toml"
    path.write_text(open(TEST_POLICY).read() + '\n[oidc]\ntoken_requests_per_client = ["8 per minute"]\n')
    return build_app(tmp_path, clock, AUTHSVC_METRICS_TOKEN=TOKEN, AUTHSVC_POLICY=str(path))


def scrape(app) -> tuple[dict, str]:
    resp = new_client(app).get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200
    text = resp.get_data(as_text=True)
    return {frozenset(s.labels.items()): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == NAME}, text


def count(samples: dict, grant: str, result: str) -> float:
    return samples.get(frozenset({("grant", grant), ("result", result)}), 0.0)


def basic(cid, secret):
    return {"Authorization": "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()}


@pytest.mark.asvs("V16.3.1")
def test_each_token_answer_is_counted_once_by_grant_and_result(mapp):
    from tests.conftest import add_user

    svc = mapp.extensions["authsvc"]
    add_user(mapp)
    cid, secret = add_client(svc, trusted=True)
    browser = new_client(mapp)
    assert login(browser).status_code == 303
    code, verifier = get_code(browser, cid)
    first = exchange(browser, cid, secret, code, verifier)
    assert first.status_code == 200
    assert exchange(browser, cid, secret, code, verifier).status_code == 400        # replay
    renewed = refresh(browser, cid, secret, first.get_json()["refresh_token"])
    assert renewed.status_code == 400  # the replay above revoked the family
    code, verifier = get_code(browser, cid)
    second = exchange(browser, cid, secret, code, verifier).get_json()
    assert refresh(browser, cid, secret, second["refresh_token"]).status_code == 200
    assert exchange(browser, cid, "wrong", *get_code(browser, cid)).status_code == 401  # wrong secret
    assert browser.post("/oauth/token", data={"grant_type": "password", "username": "alice", "password": "x"},
                        headers=basic(cid, secret)).status_code == 400
    assert browser.options("/oauth/token").status_code == 204  # a CORS preflight is not a token request
    samples, _ = scrape(mapp)
    assert count(samples, "authorization_code", "issued") == 2
    assert count(samples, "authorization_code", "invalid_grant") == 1
    assert count(samples, "authorization_code", "invalid_client") == 1
    assert count(samples, "refresh_token", "issued") == 1
    assert count(samples, "refresh_token", "invalid_grant") == 1
    assert count(samples, "other", "unsupported_grant_type") == 1
    assert sum(samples.values()) == 7


@pytest.mark.asvs("V16.3.1")
def test_the_throttle_is_counted_and_other_clients_are_not(mapp):
    svc = mapp.extensions["authsvc"]
    cid, secret = add_client(svc, trusted=True)
    client = new_client(mapp)
    statuses = [client.post("/oauth/token", data={"grant_type": "authorization_code", "code": "x"},
                            headers=basic(cid, secret)).status_code for _ in range(10)]
    assert statuses == [400] * 8 + [429] * 2
    samples, _ = scrape(mapp)
    assert count(samples, "authorization_code", "invalid_grant") == 8
    assert count(samples, "authorization_code", "throttled") == 2


@pytest.mark.parametrize("data", [
    {"grant_type": "x" * 5000}, {"grant_type": "AUTHORIZATION_CODE"}, {"grant_type": "refresh_token\r\nX: y"},
    {"grant_type": "urn:ietf:params:oauth:grant-type:device_code"}, {"grant_type": 'a"} 1\n# injected'},
    {"grant_type": "authorization_code", "code": "c" * 3000, "client_id": "\x00\xff"},
    {},
])
def test_client_input_never_becomes_a_label(mapp, data):
    client = new_client(mapp)
    response = client.post("/oauth/token", data=data)
    assert 400 <= response.status_code < 500
    samples, text = scrape(mapp)
    assert sum(samples.values()) == 1
    (labels,) = samples
    grant, result = dict(labels)["grant"], dict(labels)["result"]
    assert grant in {"authorization_code", "refresh_token", "other", "missing"}
    assert result in {"issued", "throttled", "other", "invalid_request", "invalid_client", "invalid_grant",
                      "unauthorized_client", "unsupported_grant_type", "invalid_scope"}
    for value in data.values():
        if value not in ("authorization_code", "refresh_token"):
            assert value[:20] not in text


def test_no_token_code_or_secret_reaches_the_metrics(mapp):
    from tests.conftest import add_user

    svc = mapp.extensions["authsvc"]
    add_user(mapp)
    cid, secret = add_client(svc, trusted=True)
    browser = new_client(mapp)
    login(browser)
    code, verifier = get_code(browser, cid)
    body = exchange(browser, cid, secret, code, verifier).get_json()
    _, text = scrape(mapp)
    for value in (secret, code, verifier, body["access_token"], body["refresh_token"], body["id_token"][:30], cid):
        assert value not in text


@pytest.mark.parametrize("grant, status, error, labels", [
    ("authorization_code", 200, None, ("authorization_code", "issued")),
    ("refresh_token", 200, None, ("refresh_token", "issued")),
    ("refresh_token", 429, "throttled", ("refresh_token", "throttled")),
    ("authorization_code", 400, "invalid_grant", ("authorization_code", "invalid_grant")),
    ("authorization_code", 401, "invalid_client", ("authorization_code", "invalid_client")),
    ("password", 400, "unsupported_grant_type", ("other", "unsupported_grant_type")),
    ("Refresh_Token", 400, "unsupported_grant_type", ("other", "unsupported_grant_type")),
    (None, 400, "unsupported_grant_type", ("missing", "unsupported_grant_type")),
    ("", 400, "invalid_request", ("missing", "invalid_request")),
    (["authorization_code"], 400, "invalid_request", ("other", "invalid_request")),
    ("authorization_code", 400, "made_up_by_someone", ("authorization_code", "other")),
    ("authorization_code", 400, ["invalid_grant"], ("authorization_code", "other")),
    ("authorization_code", 413, None, ("authorization_code", "other")),
    ("authorization_code", 503, "temporarily_unavailable", ("authorization_code", "other")),
])
def test_token_outcome_labels_are_a_fixed_set(grant, status, error, labels):
    from authsvc.web.metrics import token_outcome

    assert token_outcome(grant, status, error) == labels
