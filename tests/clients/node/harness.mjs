// A partner app written with the OpenID Foundation's certified client libraries
// (openid-client 6, built on oauth4webapi 3), driven by pytest (tests/clients/harness.py).
//
// One JSON command per line on stdin, one JSON answer per line on stdout. The process keeps
// what an app keeps between steps (its configuration, PKCE verifier, state, nonce, DPoP key,
// tokens), so a test walks a flow step by step while the browser part stays in Python.
// A failed step answers {"ok": false, "error": {...}} with what the library reported.
import * as client from 'openid-client'
import * as oauth from 'oauth4webapi'
import { createInterface } from 'node:readline'

const app = {}

function options () {
  return { execute: [client.allowInsecureRequests] }
}

async function clientAuth (command) {
  switch (command.auth) {
    case 'none': return client.None()
    case 'client_secret_basic': return client.ClientSecretBasic(command.client_secret)
    case 'client_secret_post': return client.ClientSecretPost(command.client_secret)
    case 'private_key_jwt': {
      const key = await crypto.subtle.importKey(
        'jwk', command.private_jwk, importAlgorithm(command.private_jwk), false, ['sign'])
      return client.PrivateKeyJwt({ key, kid: command.private_jwk.kid })
    }
    default: throw new Error(`unknown client authentication ${command.auth}`)
  }
}

function importAlgorithm (jwk) {
  if (jwk.kty === 'EC') return { name: 'ECDSA', namedCurve: jwk.crv }
  if (jwk.kty === 'OKP') return { name: 'Ed25519' }
  return { name: 'RSA-PSS', hash: 'SHA-256' }
}

// RFC 7638 SHA-256 thumbprint of a public JWK (neither package exports one).
const THUMBPRINT_MEMBERS = { EC: ['crv', 'kty', 'x', 'y'], OKP: ['crv', 'kty', 'x'], RSA: ['e', 'kty', 'n'] }

async function thumbprint (jwk) {
  const members = Object.fromEntries(THUMBPRINT_MEMBERS[jwk.kty].map((name) => [name, jwk[name]]))
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(JSON.stringify(members)))
  return Buffer.from(digest).toString('base64url')
}

function grantSummary (tokens) {
  return {
    access_token: tokens.access_token,
    token_type: tokens.token_type,
    expires_in: tokens.expires_in,
    refresh_token: tokens.refresh_token ?? null,
    scope: tokens.scope ?? null,
    grant_id: tokens.grant_id ?? null,
    id_token: tokens.id_token ?? null,
    id_token_claims: tokens.claims() ?? null
  }
}

function dpopOptions () {
  return app.dpop ? { DPoP: app.dpop } : {}
}

const commands = {
  // Discovery, and the client's configuration; `dpop_alg` makes a DPoP key of that algorithm.
  async configure (command) {
    app.config = await client.discovery(
      new URL(command.issuer), command.client_id, command.metadata ?? {},
      await clientAuth(command), options())
    app.dpop = null
    if (command.dpop_alg) {
      app.dpopKey = await client.randomDPoPKeyPair(command.dpop_alg)
      app.dpop = client.getDPoPHandle(app.config, app.dpopKey)
      const jwk = await crypto.subtle.exportKey('jwk', app.dpopKey.publicKey)
      return { metadata: app.config.serverMetadata(), dpop_jkt: await thumbprint(jwk) }
    }
    return { metadata: app.config.serverMetadata() }
  },

  // RFC 7591 registration through discovery's registration_endpoint.
  async register (command) {
    const config = await client.dynamicClientRegistration(
      new URL(command.issuer), command.metadata, client.None(),
      { ...options(), initialAccessToken: command.initial_access_token })
    return { client: config.clientMetadata() }
  },

  // The authorization request: plain (a URL), or pushed first (RFC 9126) when `par` is set;
  // with DPoP the pushed request carries the key (dpop_jkt, RFC 9449 section 10).
  async authorize (command) {
    app.verifier = client.randomPKCECodeVerifier()
    app.state = client.randomState()
    app.nonce = command.scope.split(' ').includes('openid') ? client.randomNonce() : undefined
    const parameters = {
      redirect_uri: command.redirect_uri,
      scope: command.scope,
      state: app.state,
      code_challenge: await client.calculatePKCECodeChallenge(app.verifier),
      code_challenge_method: 'S256',
      ...(app.nonce ? { nonce: app.nonce } : {}),
      ...(command.extra ?? {})
    }
    const url = command.par
      ? await client.buildAuthorizationUrlWithPAR(app.config, parameters, dpopOptions())
      : client.buildAuthorizationUrl(app.config, parameters)
    return { url: url.href }
  },

  // The browser came back to the redirect URI: check it and exchange the code.
  async callback (command) {
    const tokens = await client.authorizationCodeGrant(app.config, new URL(command.url), {
      pkceCodeVerifier: app.verifier,
      expectedState: app.state,
      expectedNonce: app.nonce,
      idTokenExpected: app.nonce !== undefined
    }, undefined, dpopOptions())
    app.tokens = tokens
    app.idToken = tokens.id_token
    app.sub = tokens.claims()?.sub
    return grantSummary(tokens)
  },

  // `refresh_token` picks an earlier one (a server that does not rotate keeps it valid).
  async refresh (command) {
    const refreshToken = command.refresh_token ?? app.tokens.refresh_token
    const tokens = await client.refreshTokenGrant(
      app.config, refreshToken, undefined, dpopOptions())
    tokens.refresh_token ??= refreshToken
    app.tokens = tokens
    app.idToken = tokens.id_token ?? app.idToken
    return grantSummary(tokens)
  },

  async client_credentials (command) {
    const tokens = await client.clientCredentialsGrant(
      app.config, { scope: command.scope }, dpopOptions())
    app.tokens = tokens
    return grantSummary(tokens)
  },

  // oauth4webapi on its own (no openid-client): a client_secret_basic client's
  // client-credentials grant with a fresh DPoP key of `dpop_alg`.
  async oauth4webapi_client_credentials (command) {
    const issuer = new URL(command.issuer)
    const insecure = { [oauth.allowInsecureRequests]: true }
    const as = await oauth.processDiscoveryResponse(
      issuer, await oauth.discoveryRequest(issuer, insecure))
    const oauthClient = { client_id: command.client_id }
    const keyPair = await oauth.generateKeyPair(command.dpop_alg)
    const DPoP = oauth.DPoP(oauthClient, keyPair)
    const request = () => oauth.clientCredentialsGrantRequest(
      as, oauthClient, oauth.ClientSecretBasic(command.client_secret),
      new URLSearchParams({ scope: command.scope }), { ...insecure, DPoP })
    let result
    try {
      result = await oauth.processClientCredentialsResponse(as, oauthClient, await request())
    } catch (error) {
      if (!oauth.isDPoPNonceError(error)) throw error
      result = await oauth.processClientCredentialsResponse(as, oauthClient, await request())
    }
    const jwk = await crypto.subtle.exportKey('jwk', keyPair.publicKey)
    return {
      access_token: result.access_token,
      token_type: result.token_type,
      scope: result.scope ?? null,
      dpop_jkt: await thumbprint(jwk)
    }
  },

  async userinfo () {
    return { userinfo: await client.fetchUserInfo(app.config, app.tokens.access_token, app.sub, dpopOptions()) }
  },

  // A call to a resource server with the current access token (DPoP-bound when configured).
  async fetch (command) {
    const response = await client.fetchProtectedResource(
      app.config, app.tokens.access_token, new URL(command.url), command.method ?? 'GET',
      undefined, undefined, dpopOptions())
    const text = await response.text()
    return { status: response.status, body: text ? JSON.parse(text) : null }
  },

  async end_session (command) {
    const url = client.buildEndSessionUrl(app.config, {
      id_token_hint: app.idToken,
      post_logout_redirect_uri: command.post_logout_redirect_uri,
      state: command.state
    })
    return { url: url.href }
  }
}

function describe (error) {
  return {
    name: error.name,
    message: error.message,
    code: error.code ?? null,
    error: error.error ?? null,
    error_description: error.error_description ?? null,
    status: error.status ?? null,
    cause: error.cause ? String(error.cause.message ?? error.cause) : null
  }
}

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  if (!line.trim()) continue
  let answer
  try {
    const command = JSON.parse(line)
    const run = commands[command.op]
    if (!run) throw new Error(`unknown op ${command.op}`)
    answer = { ok: true, ...(await run(command)) }
  } catch (error) {
    answer = { ok: false, error: describe(error) }
  }
  process.stdout.write(JSON.stringify(answer) + '\n')
}
