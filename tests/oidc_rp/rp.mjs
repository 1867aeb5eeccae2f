// A relying party built on openid-client (OpenID Certified), driven by
// tests/integration/test_oidc_relying_party.py: one JSON request per line on stdin, one JSON answer per
// line on stdout. The test plays the browser (the login form, the second step, consent); everything an
// app does with the provider happens here, with openid-client's own checks:
//
//   configure    discovery (the issuer must match), client authentication, ID token signature checks
//   authorize    an authorization URL with PKCE S256, state and nonce (kept here, as an app's session would)
//   callback     the callback URL: state and iss checked, the code exchanged, the ID token validated
//                (signature by a key from jwks_uri, iss, aud, exp, iat, nonce, at_hash)
//   userinfo     GET userinfo with the access token, sub compared with the ID token's
//   refresh      the refresh_token grant
//   revoke       RFC 7009 revocation
//   end_session  the RP-initiated logout URL (openid-client refuses when discovery has no endpoint)
//
// *.example.test resolves to 127.0.0.1 here only (openid-client's customFetch hook), and TLS is
// verified against the test CA given in NODE_EXTRA_CA_CERTS, under the real host name.

import dns from 'node:dns';
import https from 'node:https';
import readline from 'node:readline';

import * as client from 'openid-client';

const TEST_DOMAIN = '.example.test';
const NO_BODY = new Set([101, 204, 205, 304]);

let config = null;
const pending = new Map(); // state -> {verifier, nonce, maxAge}: what an app keeps in its session
let tamperNextIdToken = false; // the next token response's ID token gets a forged signature (on the wire)

function lookup(hostname, options, callback) {
  if (!hostname.endsWith(TEST_DOMAIN)) {
    return dns.lookup(hostname, options, callback);
  }
  if (options && options.all) {
    return callback(null, [{ address: '127.0.0.1', family: 4 }]);
  }
  return callback(null, '127.0.0.1', 4);
}

function forgeSignature(body) {
  // Flip one character of the ID token's signature: what an attacker on the path could send.
  const json = JSON.parse(body.toString('utf8'));
  if (typeof json.id_token === 'string') {
    const parts = json.id_token.split('.');
    const last = parts[2];
    const swap = last[5] === 'A' ? 'B' : 'A';
    parts[2] = last.slice(0, 5) + swap + last.slice(6);
    json.id_token = parts.join('.');
  }
  return Buffer.from(JSON.stringify(json));
}

function loopbackFetch(url, options) {
  // Node's https with a resolver for the test domain; TLS checks stay on (the test CA, the real name).
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const request = https.request(target, {
      method: options.method,
      headers: options.headers,
      signal: options.signal,
      lookup,
    }, (response) => {
      const chunks = [];
      response.on('data', (chunk) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () => {
        const headers = new Headers();
        for (let i = 0; i < response.rawHeaders.length; i += 2) {
          headers.append(response.rawHeaders[i], response.rawHeaders[i + 1]);
        }
        let body = Buffer.concat(chunks);
        if (tamperNextIdToken && target.pathname === new URL(config.serverMetadata().token_endpoint).pathname
            && response.statusCode === 200) {
          tamperNextIdToken = false;
          body = forgeSignature(body);
        }
        resolve(new Response(NO_BODY.has(response.statusCode) ? null : body,
          { status: response.statusCode, statusText: response.statusMessage, headers }));
      });
    });
    request.on('error', reject);
    let body = options.body;
    if (body instanceof URLSearchParams) body = body.toString();
    if (body === undefined || body === null) request.end(); else request.end(body);
  });
}

function tokensOut(tokens) {
  return {
    access_token: tokens.access_token,
    token_type: tokens.token_type,
    expires_in: tokens.expiresIn(),
    refresh_token: tokens.refresh_token ?? null,
    id_token: tokens.id_token ?? null,
    scope: tokens.scope ?? null,
    claims: tokens.claims() ?? null,
  };
}

const commands = {
  async configure({ issuer, client_id: clientId, client_secret: secret, auth }) {
    const authentication = {
      client_secret_basic: () => client.ClientSecretBasic(secret),
      client_secret_post: () => client.ClientSecretPost(secret),
      none: () => client.None(),
    }[auth];
    if (!authentication) throw new Error(`unknown client authentication ${auth}`);
    config = await client.discovery(new URL(issuer), clientId, undefined, authentication(), {
      // Verify the ID token's signature with the provider's JWKS too (off by default in
      // openid-client for a token response read over TLS straight from the provider).
      execute: [client.enableNonRepudiationChecks],
      [client.customFetch]: loopbackFetch,
      timeout: 20,
    });
    pending.clear();
    return { metadata: config.serverMetadata() };
  },

  async authorize({ redirect_uri: redirectUri, scope, max_age: maxAge, prompt }) {
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const parameters = {
      redirect_uri: redirectUri,
      scope,
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    };
    if (maxAge !== undefined) parameters.max_age = String(maxAge);
    if (prompt !== undefined) parameters.prompt = prompt;
    pending.set(state, { verifier, nonce, maxAge });
    return { url: client.buildAuthorizationUrl(config, parameters).href, state };
  },

  async callback({ url, state, nonce, keep, tamper_id_token: tamper }) {
    // ``state``: the one this browser's session started with; ``nonce`` overrides the kept one
    // (a test that the RP really compares it); ``keep`` leaves the request pending, so the same
    // callback can be replayed with the same verifier (an app that does not forget is what a code
    // replay needs).
    const kept = pending.get(state);
    if (!kept) throw new Error('no authorization request pending for this state');
    if (!keep) pending.delete(state);
    tamperNextIdToken = Boolean(tamper);
    try {
      const tokens = await client.authorizationCodeGrant(config, new URL(url), {
        pkceCodeVerifier: kept.verifier,
        expectedState: state,
        expectedNonce: nonce ?? kept.nonce,
        idTokenExpected: true,
        maxAge: kept.maxAge,
      });
      return tokensOut(tokens);
    } finally {
      tamperNextIdToken = false;
    }
  },

  async userinfo({ access_token: accessToken, sub }) {
    return { userinfo: await client.fetchUserInfo(config, accessToken, sub) };
  },

  async refresh({ refresh_token: refreshToken }) {
    return tokensOut(await client.refreshTokenGrant(config, refreshToken));
  },

  async revoke({ token, hint }) {
    await client.tokenRevocation(config, token, hint ? { token_type_hint: hint } : undefined);
    return { revoked: true };
  },

  async end_session({ id_token_hint: idTokenHint, post_logout_redirect_uri: after, state }) {
    const parameters = { id_token_hint: idTokenHint };
    if (after) parameters.post_logout_redirect_uri = after;
    if (state) parameters.state = state;
    return { url: client.buildEndSessionUrl(config, parameters).href };
  },
};

function describe(error) {
  // What the test compares: openid-client's error code, the provider's OAuth error, the status.
  return {
    name: error.name,
    code: error.code ?? null,
    message: error.message,
    error: error.error ?? null,
    error_description: error.error_description ?? null,
    status: error.status ?? null,
    cause: error.cause && typeof error.cause === 'object'
      ? { code: error.cause.code ?? null, message: error.cause.message ?? null } : null,
  };
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    const { cmd, ...args } = JSON.parse(line);
    const run = commands[cmd];
    if (!run) throw new Error(`unknown command ${cmd}`);
    answer = { ok: true, ...(await run(args)) };
  } catch (error) {
    answer = { ok: false, failure: describe(error) };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
