"""A real browser through nginx: headless Chromium (Debian's chromium + chromedriver via Selenium).

What only a browser proves: the login form works as plain HTML (JavaScript off), the CSP
form-action does not block the redirect after the form post to an allowed app, Secure/__Secure-
cookies are kept over TLS and sent to the app's host, remember-me survives a browser restart
(session cookie gone, the remember cookie restores the session via /login), and an off-list next
leads to the default page. Screenshots of the login page (plain and with an error) are saved to
artifacts/login-page.png and artifacts/login-page-error.png.

No browser is downloaded: Selenium gets the paths of /usr/bin/chromium and /usr/bin/chromedriver,
so Selenium Manager never runs.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.conftest import PASSWORD, ROOT, csrf_in
from tests.integration.conftest import (
    APP_NAME,
    AUTH_HOST,
    USERNAME,
    example_test_resolves_to_loopback,
    require_binary,
    require_module,
    tls_site,
)

pytestmark = pytest.mark.integration

ARTIFACTS = ROOT / "artifacts"
# Only the session is shared under the cookie domain; remember-me and device stay on the login host.
SESSION, REMEMBER, DEVICE = "__Secure-authsvc_session", "__Host-authsvc_remember", "__Host-authsvc_device"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
         "--no-default-browser-check", "--password-store=basic", "--window-size=1000,900",
         "--host-resolver-rules=MAP *.example.test 127.0.0.1",
         # The test CA is not in Chromium's store; the origins stay https (Secure cookies work).
         "--ignore-certificate-errors"]


@pytest.fixture(scope="module")
def launch(stack, tmp_path_factory):
    """``launch(profile=None, javascript=True)``: a context manager giving a WebDriver. The same
    ``profile`` folder again is the same browser profile after a restart."""
    chromium = require_binary("chromium")
    chromedriver = require_binary("chromedriver", "chromium-driver")
    require_module("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    logs = tmp_path_factory.mktemp("chromium")

    @contextlib.contextmanager
    def start(profile: Path | None = None, javascript: bool = True):
        options = Options()
        options.binary_location = chromium
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile or tmp_path_factory.mktemp('profile')}")
        if not javascript:
            options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        driver = webdriver.Chrome(service=Service(chromedriver, log_output=str(logs / "chromedriver.log")),
                                  options=options)
        driver.set_page_load_timeout(20)
        driver.implicitly_wait(5)
        try:
            yield driver
        finally:
            driver.quit()

    return start


def by_css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def focused_id(driver, expected: str) -> str:
    """The id of the focused element, read again until it is ``expected`` or 5 s pass: right after a
    navigation Chromium can answer with a node of the page being left ("does not belong to the
    document"), which is not a finding about the page."""
    from selenium.common.exceptions import (
        StaleElementReferenceException,
        WebDriverException,
    )
    from selenium.webdriver.support.wait import WebDriverWait

    seen = {"id": None}

    def read(d) -> bool:
        try:
            seen["id"] = d.switch_to.active_element.get_attribute("id")
        except (StaleElementReferenceException, WebDriverException):
            return False
        return seen["id"] == expected
    with contextlib.suppress(Exception):
        WebDriverWait(driver, 5, poll_frequency=0.1).until(read)
    return seen["id"]


def submit(driver) -> None:
    """Click the form's button and wait until the next page has replaced this one."""
    click_and_leave(driver, by_css(driver, "button[type=submit]"))


def click_and_leave(driver, button) -> None:
    """Click ``button`` and wait until the page it sends the browser to has replaced this one."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    button.click()

    def left(d) -> bool:
        try:
            return expected_conditions.staleness_of(button)(d)
        except WebDriverException as exc:  # Chromium mid-navigation: the node is of the page being left
            return "does not belong to the document" in str(exc)
    WebDriverWait(driver, 15).until(left)
    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete")


def submit_login(driver, *, remember: bool = False) -> None:
    by_css(driver, "#username").send_keys(USERNAME)
    by_css(driver, "#password").send_keys(PASSWORD)
    if remember:
        by_css(driver, "#remember").click()
    submit(driver)


def app_answer(driver) -> dict:
    """The echo app's JSON (Chromium shows it as text)."""
    return json.loads(by_css(driver, "body").text)


def all_cookies(driver) -> dict[str, dict]:
    return {c["name"]: c for c in driver.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]}


def response_headers(driver, url: str) -> dict[str, str]:
    """Headers of the document response for ``url``, from Chromium's own network log."""
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.responseReceived" and message["params"]["response"]["url"] == url:
            return {k.lower(): v for k, v in message["params"]["response"]["headers"].items()}
    raise AssertionError(f"no response for {url} in the network log")


def test_login_form_without_javascript_returns_to_the_allowed_app(stack, launch):
    wanted = stack.protected("/today?tab=open")
    with launch(javascript=False) as driver:
        driver.get(wanted)
        login_page = f"{stack.auth}/login?next={quote(wanted, safe=':/')}"
        assert driver.current_url == login_page
        assert f"to continue to {APP_NAME}" in by_css(driver, "main").text
        assert driver.title == f"Sign in to {APP_NAME} · authsvc"
        csp = response_headers(driver, login_page)["content-security-policy"]
        assert f"form-action 'self' {stack.app}" in csp, csp
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "login-page.png"))

        submit_login(driver)

        # The 303 after the post goes to another origin: only form-action's list lets it through.
        assert driver.current_url == wanted, driver.page_source[:500]
        answer = app_answer(driver)
        assert answer["user"] == [USERNAME] and answer["path"] == "/notes/today?tab=open"
        cookies = all_cookies(driver)
        assert cookies[SESSION]["secure"] and cookies[SESSION]["httpOnly"]
        assert cookies[SESSION]["domain"] == ".example.test"


def test_login_page_focus_and_error_announcement(stack, launch):
    with launch() as driver:
        driver.get(f"{stack.auth}/login")
        assert focused_id(driver, "username") == "username"
        by_css(driver, "#username").send_keys(USERNAME)
        by_css(driver, "#password").send_keys("not the password at all, sorry")
        submit(driver)
        alert = by_css(driver, "[role=alert]")
        assert "not correct" in alert.text
        assert focused_id(driver, "password") == "password"
        assert by_css(driver, "#password").get_attribute("aria-describedby") == alert.get_attribute("id")
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "login-page-error.png"))


def test_remember_me_restores_the_session_after_a_browser_restart(stack, launch, tmp_path):
    profile = tmp_path / "profile"
    first, second = stack.protected("/first"), stack.protected("/second")
    with launch(profile) as driver:
        driver.get(first)
        submit_login(driver, remember=True)
        assert driver.current_url == first
        assert app_answer(driver)["user"] == [USERNAME]
        remembered = all_cookies(driver)[REMEMBER]["value"]

    with launch(profile) as driver:   # same profile, new browser process
        cookies = all_cookies(driver)
        assert SESSION not in cookies, "a browser-session cookie must not survive the restart"
        assert cookies[REMEMBER]["value"] == remembered

        driver.get(second)   # verify: no session -> /login -> remember cookie -> session -> back
        assert driver.current_url == second
        assert app_answer(driver)["user"] == [USERNAME]
        cookies = all_cookies(driver)
        assert SESSION in cookies
        assert cookies[REMEMBER]["value"] != remembered, "the remember cookie is rotated on use"


def test_off_list_next_lands_on_the_default_page(stack, launch):
    evil = f"https://evil.example.test:{stack.port}/notes"
    with launch() as driver:
        driver.get(f"{stack.auth}/login?next={quote(evil, safe='')}")
        assert "to continue to" not in by_css(driver, "main").text
        submit_login(driver)
        assert driver.current_url == f"{stack.auth}/"
        assert f"Signed in as {USERNAME}" in by_css(driver, "h1").text


def sign_in_at(driver, url: str, *, remember: bool = False) -> None:
    """Load the login page at ``url`` and sign in. Right after a navigation (the same URL again,
    above all) Chromium can hand out a node of the page being left ("does not belong to the
    document"): nothing was typed or sent then, so the page is loaded again."""
    from selenium.common.exceptions import (
        StaleElementReferenceException,
        WebDriverException,
    )
    from selenium.webdriver.common.by import By

    for attempt in range(3):
        driver.get(url)
        if attempt and not driver.find_elements(By.CSS_SELECTOR, "#username"):
            return  # the attempt that failed had sent the form: the login page now sends us on
        try:
            submit_login(driver, remember=remember)
            return
        except (StaleElementReferenceException, WebDriverException) as exc:
            stale = isinstance(exc, StaleElementReferenceException) or "does not belong to the document" in str(exc)
            if not stale or attempt == 2:
                raise


def cookie_jar(driver) -> list[dict]:
    """Every cookie the browser holds (two of one name are two entries)."""
    return driver.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]


def wait_for_url(driver, prefix: str) -> None:
    from selenium.webdriver.support.wait import WebDriverWait

    WebDriverWait(driver, 15).until(lambda d: d.current_url.startswith(prefix)
                                    and d.execute_script("return document.readyState") == "complete")


def signed_in_as(driver, stack) -> str | None:
    """Who the login service says this browser is (its account page), or None."""
    driver.get(f"{stack.auth}/")
    if driver.current_url.startswith(f"{stack.auth}/login"):
        return None
    match = re.search(r"Signed in as (\S+)", by_css(driver, "h1").text)
    return match.group(1) if match else None


# --- review finding 3: the app never sees authsvc's cookies --------------------------------------


@pytest.mark.asvs("V3.3.1", "V3.3.3")
def test_remember_and_device_cookies_stay_on_the_login_host_and_the_app_sees_none(stack, launch):
    wanted = stack.protected("/cookies")
    with launch() as driver:
        driver.get(wanted)
        submit_login(driver, remember=True)
        assert driver.current_url == wanted
        answer = app_answer(driver)
        assert answer["user"] == [USERNAME]
        assert not any("authsvc_" in header for header in answer["cookie"]), answer["cookie"]
        jar = all_cookies(driver)
        assert jar[SESSION]["domain"] == ".example.test"
        for name in (REMEMBER, DEVICE):
            assert jar[name]["domain"] == AUTH_HOST, jar[name]   # host-only: no leading dot
            assert jar[name]["secure"] and jar[name]["httpOnly"] and jar[name]["path"] == "/"


def posted_headers(driver, url: str) -> dict[str, str]:
    """The headers Chromium sent with its (first) POST to ``url``, from its network log."""
    messages = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    posts = [m["params"]["requestId"] for m in messages if m["method"] == "Network.requestWillBeSent"
             and m["params"]["request"]["method"] == "POST" and m["params"]["request"]["url"] == url]
    assert posts, f"no POST to {url} in the network log"
    for m in messages:
        if m["method"] == "Network.requestWillBeSentExtraInfo" and m["params"]["requestId"] == posts[0]:
            return {k.lower(): v for k, v in m["params"]["headers"].items()}
    raise AssertionError(f"the headers of the POST to {url} are not in the network log")


@pytest.mark.asvs("V3.5.1")
def test_the_login_form_posts_the_services_own_origin(stack, launch):
    """Referrer-Policy same-origin: the form post carries the real Origin (under no-referrer it
    would be "null", which a browser without Sec-Fetch-Site could not get past)."""
    with launch() as driver:
        sign_in_at(driver, f"{stack.auth}/login")
        sent = posted_headers(driver, f"{stack.auth}/login")
        assert sent.get("origin") == stack.auth, sent
        assert sent.get("sec-fetch-site") == "same-origin", sent
        assert signed_in_as(driver, stack) == USERNAME


# --- review finding 2: sign-out deletes what authsvc owns, nothing else -------------------------


@pytest.mark.asvs("V7.4.1")
def test_logout_keeps_the_device_cookie_and_sibling_sites_cookies(stack, launch):
    with launch() as driver:
        sign_in_at(driver, f"{stack.auth}/login", remember=True)
        # A sibling site's cookies: one of its own host, one it shares under the domain.
        driver.execute_cdp_cmd("Network.setCookie", {"name": "sibling", "value": "keep", "secure": True,
                                                     "url": f"https://evil.example.test:{stack.port}/"})
        driver.execute_cdp_cmd("Network.setCookie", {"name": "shared_pref", "value": "keep", "secure": True,
                                                     "domain": ".example.test", "path": "/"})
        # By what they are, not their exact names: the point is what sign-out wipes.
        device, remember = (next(c["name"] for c in cookie_jar(driver) if c["name"].endswith(kind))
                            for kind in ("authsvc_device", "authsvc_remember"))
        before = {c["name"]: c["value"] for c in cookie_jar(driver)}
        assert {SESSION, remember, device, "sibling", "shared_pref"} <= set(before), before

        driver.get(f"{stack.auth}/")
        click_and_leave(driver, by_css(driver, 'form[action="/logout"] button'))
        wait_for_url(driver, f"{stack.auth}/login")

        after = {c["name"]: c["value"] for c in cookie_jar(driver)}
        # (The login page the browser lands on starts a new, anonymous session cookie.)
        assert after.get(SESSION) != before[SESSION] and remember not in after, after
        assert {device, "sibling", "shared_pref"} <= set(after), f"sign-out wiped the registrable domain: {after}"
        assert after[device] == before[device]
        assert signed_in_as(driver, stack) is None


# --- review finding 6: login CSRF by cookie tossing from a sibling subdomain ----------------------


def attacker_login_form(stack) -> tuple[str, str]:
    """The attacker's own anonymous session cookie at the login page and the CSRF token bound to it."""
    import requests

    with example_test_resolves_to_loopback(), requests.Session() as attacker:
        attacker.trust_env = False
        attacker.verify = str(stack.tls.ca)
        page = attacker.get(f"{stack.auth}/login", timeout=10)
        token = csrf_in(page.text)
        return attacker.cookies.get(SESSION), token


TOSSING_PAGE = """<!doctype html><title>cat pictures</title>
<form method="post" action="{auth}/login">
<input name="csrf_token" value="{token}"><input name="username" value="{username}">
<input name="password" value="{password}"></form>
<script>
document.cookie = "{session}={planted}; Domain=example.test; Path=/login; Secure";
document.forms[0].submit();
</script>"""


@pytest.mark.asvs("V3.5.1")
@pytest.mark.parametrize("victim_has_a_session_cookie", [False, True], ids=["fresh-browser", "visited-login"])
def test_login_csrf_by_cookie_tossing_from_a_sibling_subdomain(stack, launch, victim_has_a_session_cookie):
    """evil.example.test plants the attacker's anonymous session for /login under the shared domain,
    then posts the login form with the token bound to it and the attacker's credentials. The victim
    must not end up signed in as the attacker, here or in the app."""
    planted, token = attacker_login_form(stack)
    page = TOSSING_PAGE.format(auth=stack.auth, token=token, username=USERNAME, password=PASSWORD,
                               session=SESSION, planted=planted)
    with tls_site(stack.tls, {"/": page}) as port, launch() as driver:
        if victim_has_a_session_cookie:
            driver.get(f"{stack.auth}/login")   # an anonymous session cookie of the victim's own, Path=/
        driver.get(f"https://evil.example.test:{port}/")
        wait_for_url(driver, f"{stack.auth}/")
        # The plant is in the jar, or authsvc saw it beside the victim's own and had it removed.
        tossed = [c["value"] for c in cookie_jar(driver) if c["name"] == SESSION and c["path"] == "/login"]
        seen = "two sign-in cookies" in by_css(driver, "body").text
        assert tossed == [planted] or seen, "the attack did not plant its cookie: the test proves nothing"

        assert signed_in_as(driver, stack) is None
        driver.get(stack.protected("/after-the-attack"))
        assert driver.current_url.startswith(f"{stack.auth}/login"), "the app let the victim in as the attacker"

        # The victim can still sign in as themselves: a refused request has the browser drop the
        # planted copy, so at worst one page asks for a reload.
        driver.get(f"{stack.auth}/login")
        if "two sign-in cookies" in by_css(driver, "body").text:
            assert not [c for c in cookie_jar(driver) if c["name"] == SESSION and c["path"] == "/login"]
        sign_in_at(driver, f"{stack.auth}/login")
        assert signed_in_as(driver, stack) == USERNAME


PLANT_PAGE = """<!doctype html><title>cat pictures</title>
<script>document.cookie = "{session}={planted}; Domain=example.test; Path=/notes; Secure";</script>"""


@pytest.mark.asvs("V3.3.1")
def test_a_session_planted_on_the_apps_path_neither_decides_who_the_app_sees_nor_locks_the_user_out(stack, launch):
    """evil.example.test plants another session cookie for the app's path (Path=/notes). The app
    must not see anyone but the victim, and one bounce via the login page removes the plant."""
    planted, _ = attacker_login_form(stack)
    wanted = stack.protected("/after-the-plant")
    with tls_site(stack.tls, {"/": PLANT_PAGE.format(session=SESSION, planted=planted)}) as port, launch() as driver:
        sign_in_at(driver, f"{stack.auth}/login")
        driver.get(f"https://evil.example.test:{port}/")
        assert [c["value"] for c in cookie_jar(driver) if c["name"] == SESSION and c["path"] == "/notes"] == [planted]

        driver.get(wanted)
        assert driver.current_url == wanted, driver.page_source[:300]
        assert app_answer(driver)["user"] == [USERNAME]
        assert not [c for c in cookie_jar(driver) if c["name"] == SESSION and c["path"] != "/"]
