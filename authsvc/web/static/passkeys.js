// Passkeys: the WebAuthn ceremonies behind the account page's "Add a passkey" (#add-passkey), the
// login page's "Sign in with a passkey" (#passkey-login) and the second step's (#passkey-verify).
// A static file because the CSP allows no inline script; the buttons stay hidden where WebAuthn is
// missing (or this script does not run), and the pages work without them. Endpoints are read from the buttons' data-* attributes, the CSRF token
// from the page's forms (sent as X-CSRF-Token); the server decides everything, including where to go.
"use strict";

(function () {
  function toBuffer(base64url) {
    const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) {
      bytes[i] = binary.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 1) {
      binary += String.fromCharCode(bytes[i]);
    }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function csrfToken() {
    const input = document.querySelector('input[name="csrf_token"]');
    return input ? input.value : "";
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
      body: JSON.stringify(body || {}),
    });
    let data = null;
    if ((response.headers.get("Content-Type") || "").startsWith("application/json")) {
      data = await response.json();
    }
    if (!response.ok) {
      const message = data && typeof data.message === "string" ? data.message : "The request failed. Reload the page and try again.";
      throw new Error(message);
    }
    return data;
  }

  function creationOptions(options) {
    options.challenge = toBuffer(options.challenge);
    options.user.id = toBuffer(options.user.id);
    (options.excludeCredentials || []).forEach(function (c) { c.id = toBuffer(c.id); });
    return options;
  }

  function requestOptions(options) {
    options.challenge = toBuffer(options.challenge);
    (options.allowCredentials || []).forEach(function (c) { c.id = toBuffer(c.id); });
    return options;
  }

  function registrationJSON(credential) {
    const r = credential.response;
    return {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response: {
        clientDataJSON: toBase64url(r.clientDataJSON),
        attestationObject: toBase64url(r.attestationObject),
        transports: typeof r.getTransports === "function" ? r.getTransports() : [],
      },
      clientExtensionResults: {},
    };
  }

  function assertionJSON(credential) {
    const r = credential.response;
    return {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response: {
        clientDataJSON: toBase64url(r.clientDataJSON),
        authenticatorData: toBase64url(r.authenticatorData),
        signature: toBase64url(r.signature),
        userHandle: r.userHandle ? toBase64url(r.userHandle) : null,
      },
      clientExtensionResults: {},
    };
  }

  function say(text, isError) {
    const status = document.getElementById("passkey-status");
    if (status) {
      status.textContent = text;
      status.className = isError ? "error" : "notice";
    }
  }

  function explain(error) {
    if (error && (error.name === "NotAllowedError" || error.name === "AbortError")) {
      return "The passkey request was cancelled or timed out.";
    }
    if (error && error.name === "InvalidStateError") {
      return "This authenticator already holds a passkey for this account.";
    }
    return error && error.message ? error.message : "The passkey could not be used.";
  }

  async function addPasskey(button) {
    const nameInput = document.getElementById("passkey-name");
    const name = nameInput ? nameInput.value : "";
    const options = await post(button.dataset.options, { name: name });
    const credential = await navigator.credentials.create({ publicKey: creationOptions(options) });
    await post(button.dataset.finish, { credential: registrationJSON(credential), name: name });
    window.location.assign(button.dataset.done);
  }

  async function signIn(button) {
    const options = await post(button.dataset.options, {});
    const credential = await navigator.credentials.get({ publicKey: requestOptions(options) });
    const next = document.querySelector('input[name="next"]');
    const answer = await post(button.dataset.finish, {
      credential: assertionJSON(credential),
      next: next ? next.value : "",
    });
    window.location.assign(answer.redirect);
  }

  function wire(id, ceremony) {
    const button = document.getElementById(id);
    if (!button || !window.PublicKeyCredential || !navigator.credentials) {
      return;
    }
    button.hidden = false;
    button.addEventListener("click", async function () {
      button.disabled = true;
      say("", false);
      try {
        await ceremony(button);
      } catch (error) {
        say(explain(error), true);
      } finally {
        button.disabled = false;
      }
    });
  }

  wire("add-passkey", addPasskey);
  wire("passkey-login", signIn);
  wire("passkey-verify", signIn);   // the second step: the same ceremony, for the pending account
})();
