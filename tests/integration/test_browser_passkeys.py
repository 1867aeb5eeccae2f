"""Passkeys in a real browser: headless Chromium with a virtual authenticator (Selenium's
``add_virtual_authenticator``: CTAP2, internal transport, resident keys, user verification) against
the nginx + authsvc + app stack of tests/integration/conftest.py.

What only a browser proves: static/passkeys.js runs under the CSP (no inline script, ``fetch`` to
the service only), its base64url conversions match what py_webauthn sends and expects, the relying
party the settings give (the cookie domain ``example.test`` with single sign-on) is one Chromium
accepts for the origin ``https://auth.example.test:<port>``, and a usernameless sign-in lands on
``next`` in the app.

WebAuthn refuses pages with certificate errors, so this module trusts the test certificate by its
public key (``--ignore-certificate-errors-spki-list``) instead of ignoring every error.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.integration.conftest import USERNAME, require_binary, require_module
from tests.integration.test_browser import (
    FLAGS,
    app_answer,
    by_css,
    click_and_leave,
    sign_in_at,
    signed_in_as,
    wait_for_url,
)

pytestmark = pytest.mark.integration


def spki_hash(cert: Path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.fixture(scope="module")
def launch(stack, tmp_path_factory):
    """``launch()``: a WebDriver whose Chromium trusts the stack's certificate and holds a virtual
    platform authenticator that verifies the user."""
    chromium = require_binary("chromium")
    chromedriver = require_binary("chromedriver", "chromium-driver")
    require_module("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.virtual_authenticator import (
        Protocol,
        Transport,
        VirtualAuthenticatorOptions,
    )

    logs = tmp_path_factory.mktemp("chromium")
    trusted = spki_hash(stack.tls.cert)

    @contextlib.contextmanager
    def start():
        options = Options()
        options.binary_location = chromium
        for flag in FLAGS:
            if flag != "--ignore-certificate-errors":
                options.add_argument(flag)
        options.add_argument(f"--ignore-certificate-errors-spki-list={trusted}")
        options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('profile')}")
        driver = webdriver.Chrome(service=Service(chromedriver, log_output=str(logs / "chromedriver.log")),
                                  options=options)
        driver.set_page_load_timeout(20)
        driver.implicitly_wait(5)
        try:
            driver.add_virtual_authenticator(VirtualAuthenticatorOptions(
                protocol=Protocol.CTAP2, transport=Transport.INTERNAL, has_resident_key=True,
                has_user_verification=True, is_user_verified=True))
            yield driver
        finally:
            driver.quit()

    return start


def click_and_wait(driver, selector: str, until) -> None:
    """Click a passkey button (its script then navigates) and wait for ``until(driver)``, showing
    the page's own status message if it never comes."""
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    WebDriverWait(driver, 10).until(expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, selector)))
    by_css(driver, selector).click()

    def done(d) -> bool:
        try:
            return bool(until(d))
        except WebDriverException:  # mid-navigation the page may be either one
            return False
    try:
        WebDriverWait(driver, 15).until(done)
    except TimeoutException:
        status = driver.find_elements(By.CSS_SELECTOR, "#passkey-status")
        shown = status[0].text if status else driver.page_source[:500]
        raise AssertionError(f"passkey ceremony did not finish: {shown}") from None


def passkey_names(driver) -> list[str]:
    """The names in the account page's passkey list (each in its rename field)."""
    from selenium.webdriver.common.by import By

    return [field.get_attribute("value") for field in driver.find_elements(By.CSS_SELECTOR, 'form.rename input[name="name"]')]


def press_on_the_account_page(driver, stack, button: str, lands_on: str) -> None:
    """Load the account page, press ``button`` (a CSS selector) and wait until the page it posts to
    has replaced this one, then for the URL ``lands_on``. Waiting for the page, not the URL: a
    removal lands on the same URL. Right after a script's navigation Chromium can hand out a node of
    the page being left ("does not belong to the document", as in test_browser.sign_in_at):
    nothing was pressed then, so the page is loaded again."""
    from selenium.common.exceptions import (
        StaleElementReferenceException,
        WebDriverException,
    )

    for attempt in range(3):
        driver.get(f"{stack.auth}/")
        try:
            click_and_leave(driver, by_css(driver, button))
            break
        except (StaleElementReferenceException, WebDriverException) as exc:
            stale = isinstance(exc, StaleElementReferenceException) or "does not belong to the document" in str(exc)
            if not stale or attempt == 2:
                raise
    wait_for_url(driver, lands_on)


def sign_out(driver, stack) -> None:
    press_on_the_account_page(driver, stack, 'form[action="/logout"] button', f"{stack.auth}/login")


def remove_the_passkey(driver, stack) -> None:
    """The account page's (only) "Remove"."""
    press_on_the_account_page(driver, stack, 'form[action$="/delete"] button', f"{stack.auth}/")


@pytest.mark.asvs("V6.3.3", "V6.5.6")
def test_register_sign_out_sign_in_usernameless_and_remove_a_passkey(stack, launch):
    wanted = stack.protected("/with-a-passkey?x=1")
    with launch() as driver:
        sign_in_at(driver, f"{stack.auth}/login")
        driver.get(f"{stack.auth}/")
        by_css(driver, "#passkey-name").send_keys("Virtual key")
        click_and_wait(driver, "#add-passkey", lambda d: passkey_names(d) == ["Virtual key"])
        assert "never" in by_css(driver, "main").text   # not used yet

        sign_out(driver, stack)
        assert signed_in_as(driver, stack) is None

        driver.get(wanted)   # the app sends the browser to the login page with next
        assert driver.current_url == f"{stack.auth}/login?next={quote(wanted, safe=':/')}"
        click_and_wait(driver, "#passkey-login", lambda d: d.current_url == wanted)
        assert app_answer(driver)["user"] == [USERNAME]
        assert signed_in_as(driver, stack) == USERNAME

        driver.get(f"{stack.auth}/")
        assert "never" not in by_css(driver, "main").text   # last used is shown
        remove_the_passkey(driver, stack)
        assert "No passkeys yet" in by_css(driver, "main").text

        # The authenticator still holds the credential; the service no longer knows it.
        sign_out(driver, stack)
        click_and_wait(driver, "#passkey-login", lambda d: by_css(d, "#passkey-status").text)
        assert "could not be used" in by_css(driver, "#passkey-status").text
        assert signed_in_as(driver, stack) is None


@pytest.mark.asvs("V6.3.3")
def test_password_then_the_passkey_as_second_step(stack, launch):
    """An account with a passkey: the password leads to /login/mfa, whose "Use a passkey instead"
    (#passkey-verify) finishes the sign-in on ``next`` with both methods."""
    wanted = stack.protected("/second-step?y=2")
    with launch() as driver:
        sign_in_at(driver, f"{stack.auth}/login")
        driver.get(f"{stack.auth}/")
        by_css(driver, "#passkey-name").send_keys("Second step")
        click_and_wait(driver, "#add-passkey", lambda d: passkey_names(d) == ["Second step"])
        sign_out(driver, stack)

        driver.get(wanted)
        sign_in_at(driver, driver.current_url)   # the password of the login page with next
        wait_for_url(driver, f"{stack.auth}/login/mfa")
        second_step = driver.current_url
        assert signed_in_as(driver, stack) is None   # no session before the second step (it navigates)
        driver.get(second_step)
        click_and_wait(driver, "#passkey-verify", lambda d: d.current_url == wanted)
        answer = app_answer(driver)
        assert answer["user"] == [USERNAME]
        assert answer["methods"][-1].split(",")[0] == "pwd" and "mfa" in answer["methods"][-1].split(",")

        # Leave the account as it was: no passkey (removing it right after signing in needs no step-up).
        remove_the_passkey(driver, stack)
        assert "No passkeys yet" in by_css(driver, "main").text
