"""Passkeys (WebAuthn): the store and the two ceremonies, around py_webauthn. No Flask.

* :class:`PasskeyStore`: each account's passkeys (table ``passkeys``) and its random WebAuthn user
  handle (table ``passkey_users``). A use is recorded with a compare-and-set on the signature
  counter, so of two requests carrying the same assertion at once only one can win.
* :class:`PasskeyService`: registration (a discoverable credential, user verification required,
  attestation ``none``, the account's passkeys excluded) and authentication (usernameless with
  an empty allow list, or as a second step for one account with its credentials), each returning
  an outcome the view renders. The decisions are :mod:`authsvc.rules.passkeys`' (relying party,
  counter, names, RFC 8176 methods); the cryptography is py_webauthn's.

Challenges are the caller's to keep: each ceremony's options come with their challenge (32 random
bytes), which the web layer keeps in the signed session under the ceremony's purpose and pops when
the answer comes back, so each is used at most once and only for the ceremony it was made for.

Reason codes of :class:`PasskeyFailed` (the ``passkey_failed`` audit event's ``reason``):

======================== ==================================================================
``no_challenge``         no challenge of this purpose pending (used already, expired, another
                         flow's, or the options were never asked for)
``malformed``            not a WebAuthn response of the expected shape
``origin``               clientDataJSON names another origin (a phishing proxy, a sibling site)
``challenge``            clientDataJSON carries another challenge (a replay, another flow's)
``rp_id``                the authenticator data is for another relying party
``user_not_verified``    the authenticator did not verify the user (no PIN or biometric)
``rejected``             py_webauthn refused it otherwise (signature, type, algorithm, format)
``unknown_credential``   no passkey has this credential id
``user_mismatch``        the credential is not the account's the user handle (or the pending
                         second step) names
``disabled``             the account is disabled
``counter_regressed``    the signature counter went backwards (a cloned authenticator)
``counter_repeated``     the same non-zero counter again (a replay)
``raced``                another request used the passkey with this counter first
``duplicate``            registration: the credential is registered already
``too_many``             registration: the account has :data:`MAX_PASSKEYS_PER_ACCOUNT`
``bad_name``             registration or rename: :func:`authsvc.rules.passkeys.passkey_name` refused
======================== ==================================================================
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    parse_attestation_object,
    parse_authenticator_data,
    parse_client_data_json,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from authsvc.core.models import passkey_users, passkeys
from authsvc.rules.passkeys import (
    RelyingParty,
    passkey_methods,
    passkey_name,
    sign_count_verdict,
)

if TYPE_CHECKING:
    from authsvc.core.accounts import Account, AccountStore
    from authsvc.core.devices import DeviceCookies, DeviceRegistry

CHALLENGE_BYTES = 32           # ASVS 6.7.2 asks for at least 64 bits
CHALLENGE_SECONDS = 300        # a ceremony's options, and its challenge, are good this long
HANDLE_BYTES = 32
MAX_PASSKEYS_PER_ACCOUNT = 20  # bounds the account page and every registration's exclude list
MAX_CREDENTIAL_ID_BYTES = 1023  # WebAuthn section 5.8.3
# ES256 (every platform authenticator), EdDSA, RS256 (Windows Hello): what browsers are offered.
ALGORITHMS = [COSEAlgorithmIdentifier.ECDSA_SHA_256, COSEAlgorithmIdentifier.EDDSA,
              COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256]
_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)
_B64URL = re.compile(r"[A-Za-z0-9_-]*\Z")


def b64url_decode(text: object, max_bytes: int) -> bytes | None:
    """Unpadded base64url (what WebAuthn's JSON uses) of at most ``max_bytes`` bytes, or None."""
    if not isinstance(text, str) or len(text) > (max_bytes * 4 + 2) // 3 or not _B64URL.match(text):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


# --- the store -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Passkey:
    id: int
    user_id: int
    credential_id: bytes
    public_key: bytes
    sign_count: int
    name: str
    transports: tuple[str, ...]
    created_at: float
    last_used_at: float | None


_COLUMNS = (passkeys.c.id, passkeys.c.user_id, passkeys.c.credential_id, passkeys.c.public_key,
            passkeys.c.sign_count, passkeys.c.name, passkeys.c.transports, passkeys.c.created_at,
            passkeys.c.last_used_at)


def _passkey(row) -> Passkey:
    transports = tuple(t for t in row.transports.split(",") if t)
    return Passkey(row.id, row.user_id, row.credential_id, row.public_key, row.sign_count, row.name, transports,
                   row.created_at, row.last_used_at)


class DuplicateCredential(Exception):
    """The credential id is registered already (to this account or another)."""


class PasskeyStore:
    """``clock`` is the app's wall clock (tests move it)."""

    def __init__(self, engine: Engine, clock: Callable[[], float]) -> None:
        self.engine = engine
        self.clock = clock

    def handle_for(self, user_id: int) -> bytes:
        """The account's WebAuthn user handle, made (random) the first time it is asked for."""
        existing = self.user_handle(user_id)
        if existing is not None:
            return existing
        handle = secrets.token_bytes(HANDLE_BYTES)
        try:
            with self.engine.begin() as conn:
                conn.execute(passkey_users.insert().values(user_id=user_id, handle=handle))
        except IntegrityError:  # another request made it first: theirs is the handle
            raced = self.user_handle(user_id)
            if raced is None:
                raise
            return raced
        return handle

    def user_handle(self, user_id: int) -> bytes | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(passkey_users.c.handle).where(passkey_users.c.user_id == user_id)).scalar()

    def add(self, user_id: int, credential_id: bytes, public_key: bytes, sign_count: int, name: str,
            transports: tuple[str, ...]) -> Passkey:
        now = self.clock()
        try:
            with self.engine.begin() as conn:
                row_id = conn.execute(passkeys.insert().values(
                    user_id=user_id, credential_id=credential_id, public_key=public_key, sign_count=sign_count,
                    name=name, transports=",".join(transports), created_at=now, last_used_at=None,
                ).returning(passkeys.c.id)).scalar_one()
        except IntegrityError:
            raise DuplicateCredential() from None
        return Passkey(row_id, user_id, credential_id, public_key, sign_count, name, transports, now, None)

    def list(self, user_id: int) -> list[Passkey]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*_COLUMNS).where(passkeys.c.user_id == user_id)
                                .order_by(passkeys.c.created_at, passkeys.c.id)).all()
        return [_passkey(r) for r in rows]

    def count(self, user_id: int) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(passkeys)
                                .where(passkeys.c.user_id == user_id)).scalar_one()

    def by_id(self, user_id: int, passkey_id: int) -> Passkey | None:
        """The account's passkey ``passkey_id``: another account's is not found."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*_COLUMNS).where(passkeys.c.id == passkey_id,
                                                          passkeys.c.user_id == user_id)).first()
        return _passkey(row) if row else None

    def find(self, credential_id: bytes) -> Passkey | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*_COLUMNS).where(passkeys.c.credential_id == credential_id)).first()
        return _passkey(row) if row else None

    def rename(self, user_id: int, passkey_id: int, name: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(passkeys.update().where(passkeys.c.id == passkey_id, passkeys.c.user_id == user_id)
                                .values(name=name)).rowcount == 1

    def remove(self, user_id: int, passkey_id: int) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(passkeys.delete().where(passkeys.c.id == passkey_id,
                                                        passkeys.c.user_id == user_id)).rowcount == 1

    def remove_all(self, user_id: int) -> int:
        """Every passkey of the account (an administrator's reset); the user handle stays, so a
        passkey registered again is for the same WebAuthn user."""
        with self.engine.begin() as conn:
            return conn.execute(passkeys.delete().where(passkeys.c.user_id == user_id)).rowcount

    def record_use(self, passkey_id: int, seen_count: int, new_count: int) -> bool:
        """Store ``new_count`` and the time of use, if the counter is still ``seen_count`` (what the
        caller judged the assertion against). False when another request got there first: the
        same assertion sent twice at once is accepted at most once (authenticators without a
        counter, always 0, are protected by the one-time challenge instead)."""
        with self.engine.begin() as conn:
            return conn.execute(passkeys.update().where(passkeys.c.id == passkey_id,
                                                        passkeys.c.sign_count == seen_count)
                                .values(sign_count=new_count, last_used_at=self.clock())).rowcount == 1


# --- outcomes --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PasskeyFailed:
    """The ceremony failed; ``reason`` is one of the module's codes (audit log only: the user is told
    that the passkey could not be used, or why a name was refused)."""

    reason: str
    detail: str = ""   # for ``bad_name``: authsvc.rules.passkeys.passkey_name's reason


@dataclass(frozen=True)
class Registered:
    passkey: Passkey


@dataclass(frozen=True)
class PasskeySignedIn:
    """A passkey proved ``account``: start its session. ``methods`` are the RFC 8176 values of this
    sign-in (:func:`authsvc.rules.passkeys.passkey_methods`); ``device_cookie`` as in
    :class:`authsvc.core.login_flow.SignedIn`."""

    account: Account
    passkey_id: int
    methods: tuple[str, ...]
    device_cookie: str | None


@dataclass(frozen=True)
class Options:
    """A ceremony's options as the JSON ``navigator.credentials`` needs (base64url for bytes), and
    the challenge in them, for the caller to keep until the answer comes back."""

    json: str
    challenge: bytes


class AuditSink(Protocol):
    def emit(self, event: str, **fields: Any) -> None: ...


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- the ceremonies --------------------------------------------------------------------------------------

class PasskeyService:
    """Registration and authentication for relying party ``rp``. Collaborators handed in by ``create_app``."""

    def __init__(self, *, store: PasskeyStore, accounts: AccountStore, rp: RelyingParty, audit: AuditSink,
                 known_devices: DeviceRegistry, device_cookies: DeviceCookies, rp_name: str = "authsvc") -> None:
        self.store = store
        self.accounts = accounts
        self.rp = rp
        self.audit = audit
        self.known_devices = known_devices
        self.device_cookies = device_cookies
        self.rp_name = rp_name

    # registration

    def registration_options(self, account: Account) -> Options:
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        options = generate_registration_options(
            rp_id=self.rp.id, rp_name=self.rp_name, user_name=account.username,
            user_id=self.store.handle_for(account.id), user_display_name=account.username, challenge=challenge,
            timeout=CHALLENGE_SECONDS * 1000, attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED, require_resident_key=True,
                user_verification=UserVerificationRequirement.REQUIRED),
            exclude_credentials=self._descriptors(account.id),
            supported_pub_key_algs=ALGORITHMS,
        )
        return Options(options_to_json(options), challenge)

    def register(self, account: Account, challenge: bytes | None, credential: object,
                 name: object, *, before_add: Callable[[], object] | None = None) -> Registered | PasskeyFailed:
        """Verify the browser's answer to :meth:`registration_options` and keep the passkey;
        ``before_add`` runs once the answer is verified, before the passkey is stored (see
        :meth:`authsvc.core.login_flow.LoginService.add_totp`'s ``before_enroll``)."""
        decided = passkey_name(name)
        if decided.name is None:
            return self._failed("register", PasskeyFailed("bad_name", decided.reason), account.id)
        try:
            if challenge is None:
                raise _Refused("no_challenge")
            body = _shape(credential, "attestationObject")
            self._inspect(body, challenge, "webauthn.create", None)
            try:
                verified = verify_registration_response(
                    credential=body, expected_challenge=challenge, expected_rp_id=self.rp.id,
                    expected_origin=self.rp.origin, require_user_verification=True,
                    supported_pub_key_algs=ALGORITHMS)
            except Exception:  # noqa: BLE001 - py_webauthn raises many types for bad input; all are a refusal
                raise _Refused("rejected") from None
            if len(verified.credential_id) > MAX_CREDENTIAL_ID_BYTES:
                raise _Refused("malformed")
            if self.store.count(account.id) >= MAX_PASSKEYS_PER_ACCOUNT:
                raise _Refused("too_many")
            if before_add is not None:
                before_add()
            try:
                added = self.store.add(account.id, verified.credential_id, verified.credential_public_key,
                                       verified.sign_count, decided.name, _transports(body))
            except DuplicateCredential:
                raise _Refused("duplicate") from None
        except _Refused as refused:
            return self._failed("register", PasskeyFailed(refused.reason), account.id)
        self.audit.emit("passkey_added", passkey_id=added.id, user_id=account.id)
        return Registered(added)

    # authentication

    def authentication_options(self, account: Account | None = None) -> Options:
        """Usernameless (``account`` None: an empty allow list, the authenticator offers its
        discoverable credentials), or the second step for ``account`` (its passkeys only)."""
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        options = generate_authentication_options(
            rp_id=self.rp.id, challenge=challenge, timeout=CHALLENGE_SECONDS * 1000,
            allow_credentials=self._descriptors(account.id) if account is not None else [],
            user_verification=UserVerificationRequirement.REQUIRED)
        return Options(options_to_json(options), challenge)

    def authenticate(self, challenge: bytes | None, credential: object, *, account_id: int | None = None,
                     device_cookie: str | None = None) -> PasskeySignedIn | PasskeyFailed:
        """Verify an assertion answering :meth:`authentication_options`.

        Usernameless (``account_id`` None): the response must carry the user handle of the account
        the credential is registered to. Second step (``account_id`` the pending account): the
        credential must be that account's, and a user handle, when sent, its handle. Either way user
        verification is required and the counter must grow (:func:`sign_count_verdict`), judged once
        the signature is verified: an unsigned counter proves nothing. ``device_cookie`` is the
        browser's known-device cookie (any account's, unverified): it counts only when it is signed
        for the account the passkey proves and registered to it, as with a password. A second step
        returns no device cookie: the password step's flow has it."""
        purpose = "login" if account_id is None else "second_step"
        user_id = account_id
        try:
            if challenge is None:
                raise _Refused("no_challenge")
            body = _shape(credential, "authenticatorData")
            raw_id = b64url_decode(body["rawId"], MAX_CREDENTIAL_ID_BYTES)
            if not raw_id or body["id"] != body["rawId"]:
                raise _Refused("malformed")
            passkey = self.store.find(raw_id)
            if passkey is None:
                raise _Refused("unknown_credential")
            handle = body["response"].get("userHandle")
            if handle is None and account_id is None:
                raise _Refused("user_mismatch")  # usernameless: nothing says whose credential this is
            if handle is not None and b64url_decode(handle, HANDLE_BYTES) != self.store.user_handle(passkey.user_id):
                raise _Refused("user_mismatch")
            if account_id is not None and passkey.user_id != account_id:
                raise _Refused("user_mismatch")
            user_id = passkey.user_id
            self._inspect(body, challenge, "webauthn.get", passkey)
            try:
                # The counter is judged below, after the signature: 0 here leaves it to that rule.
                verified = verify_authentication_response(
                    credential=body, expected_challenge=challenge, expected_rp_id=self.rp.id,
                    expected_origin=self.rp.origin, credential_public_key=passkey.public_key,
                    credential_current_sign_count=0, require_user_verification=True)
            except Exception:  # noqa: BLE001 - py_webauthn raises many types for bad input; all are a refusal
                raise _Refused("rejected") from None
            verdict = sign_count_verdict(passkey.sign_count, verified.new_sign_count)
            if verdict != "ok":
                raise _Refused(f"counter_{verdict}" if verdict != "invalid" else "malformed")
            account = self.accounts.by_id(passkey.user_id)
            if account is None or account.disabled:
                raise _Refused("disabled")
            if not self.store.record_use(passkey.id, passkey.sign_count, verified.new_sign_count):
                raise _Refused("raced")
        except _Refused as refused:
            return self._failed(purpose, PasskeyFailed(refused.reason), user_id)
        methods = passkey_methods(multi_device=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
                                  user_verified=verified.user_verified)  # required: always true here
        self.audit.emit("passkey_used", purpose=purpose, passkey_id=passkey.id, methods=",".join(methods),
                        user_id=account.id)
        if account_id is not None:  # a second step: its flow has the password step's device and events
            return PasskeySignedIn(account, passkey.id, methods, None)
        self.audit.emit("login_success", method="passkey", remembered=False, user_id=account.id)
        return PasskeySignedIn(account, passkey.id, methods, self._device_cookie(account, device_cookie))

    # management

    def rename(self, account: Account, passkey_id: int, name: object) -> Passkey | PasskeyFailed | None:
        """The renamed passkey; :class:`PasskeyFailed` (``bad_name``) for a refused name; None when
        the account has no passkey ``passkey_id``."""
        decided = passkey_name(name)
        if decided.name is None:
            return self._failed("rename", PasskeyFailed("bad_name", decided.reason), account.id)
        if not self.store.rename(account.id, passkey_id, decided.name):
            return None
        self.audit.emit("passkey_renamed", passkey_id=passkey_id, user_id=account.id)
        return self.store.by_id(account.id, passkey_id)

    def remove(self, account: Account, passkey_id: int) -> bool:
        if not self.store.remove(account.id, passkey_id):
            return False
        self.audit.emit("passkey_removed", passkey_id=passkey_id, user_id=account.id)
        return True

    # helpers

    def _descriptors(self, user_id: int) -> list[PublicKeyCredentialDescriptor]:
        return [PublicKeyCredentialDescriptor(id=p.credential_id,
                                              transports=[AuthenticatorTransport(t) for t in p.transports] or None)
                for p in self.store.list(user_id)]

    def _inspect(self, body: dict, challenge: bytes, kind: str, passkey: Passkey | None) -> None:
        """The checks whose failure an operator should tell apart (a misconfigured origin or relying
        party, a replay, a missing PIN), with py_webauthn's own parsers; py_webauthn's
        verification repeats them with everything else."""
        response = body["response"]
        client_data_json = b64url_decode(response["clientDataJSON"], 4096)
        data_field = "authenticatorData" if kind == "webauthn.get" else "attestationObject"
        raw = b64url_decode(response[data_field], 16384)
        if not client_data_json or not raw:
            raise _Refused("malformed")
        try:
            client = parse_client_data_json(client_data_json)
            if kind == "webauthn.get":
                auth_data = parse_authenticator_data(raw)
            else:
                auth_data = parse_attestation_object(raw).auth_data
        except Exception:  # noqa: BLE001 - as above: whatever the parsers raise, the input was malformed
            raise _Refused("malformed") from None
        if client.type != kind:
            raise _Refused("malformed")
        if client.origin != self.rp.origin:
            raise _Refused("origin")
        if not secrets.compare_digest(client.challenge, challenge):
            raise _Refused("challenge")
        if not secrets.compare_digest(auth_data.rp_id_hash, hashlib.sha256(self.rp.id.encode("ascii")).digest()):
            raise _Refused("rp_id")
        if not auth_data.flags.uv:
            raise _Refused("user_not_verified")

    def _device_cookie(self, account: Account, cookie: str | None) -> str | None:
        device = self.device_cookies.device_for(cookie, account.username_key)
        known = device if device is not None and self.known_devices.is_known(account.username_key, device) else None
        device_id = self.known_devices.remember(account.id, known)
        return self.device_cookies.issue(account.username_key, device_id) if device_id is not None else None

    def _failed(self, purpose: str, failed: PasskeyFailed, user_id: int | None) -> PasskeyFailed:
        fields = {"detail": failed.detail} if failed.detail else {}
        self.audit.emit("passkey_failed", purpose=purpose, reason=failed.reason, user_id=user_id, **fields)
        return failed


def _shape(credential: object, data_field: str) -> dict:
    """``credential`` as py_webauthn's JSON parser wants it: the fields it reads, each a string (a
    list for transports), nothing else kept. Anything else is ``malformed``."""
    if not isinstance(credential, dict):
        raise _Refused("malformed")
    response = credential.get("response")
    if not isinstance(response, dict) or credential.get("type") != "public-key":
        raise _Refused("malformed")
    fields = ("clientDataJSON", data_field, *(("signature",) if data_field == "authenticatorData" else ()))
    if not all(isinstance(credential.get(k), str) for k in ("id", "rawId")) or \
            not all(isinstance(response.get(k), str) for k in fields):
        raise _Refused("malformed")
    kept = {k: response[k] for k in fields}
    handle = response.get("userHandle")
    if data_field == "authenticatorData" and handle is not None:
        if not isinstance(handle, str):
            raise _Refused("malformed")
        kept["userHandle"] = handle
    transports = response.get("transports")
    if isinstance(transports, list):
        kept["transports"] = [t for t in transports[:8] if isinstance(t, str) and t in _TRANSPORTS]
    return {"id": credential["id"], "rawId": credential["rawId"], "type": "public-key", "response": kept,
            "clientExtensionResults": {}}


def _transports(body: dict) -> tuple[str, ...]:
    return tuple(dict.fromkeys(body["response"].get("transports", [])))
