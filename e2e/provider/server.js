// Test OpenID Provider for the oidc-authz end-to-end tests (node-oidc-provider).
//
// Issues JWT access tokens (RFC 9068, typ at+jwt) by the OAuth 2.0 client_credentials grant, with a
// resource indicator (RFC 8707) choosing the audience, exactly the way a real confidential client gets
// them:
//
//   POST {issuer}/token
//   Authorization: Basic base64(client_id:client_secret)
//   grant_type=client_credentials&resource=https://api.example/orders
//
// Usage:
//   node server.js --port 4444 --keys keys.json [--ttl 300] [--host 127.0.0.1]
//   (or E2E_PROVIDER_PORT / E2E_PROVIDER_KEYS / E2E_PROVIDER_TTL / E2E_PROVIDER_HOST)
//
//   --keys  a JWKS with PRIVATE keys ({"keys": [...]}; make one with `node genkey.js --kid k1`). The FIRST
//           RS256 key signs; every key is published (public part) at {issuer}/jwks. Key rotation = restart
//           with the new key first and the old one second.
//   --ttl   access token lifetime in seconds (short for expiry tests).
//
// Issuer: http://<host>:<port> (plain http: oidc-authz accepts it for loopback hosts only).
// Discovery: {issuer}/.well-known/openid-configuration (issuer, jwks_uri, token_endpoint).
//
// Resources (resource indicator -> token `aud`):
//   https://api.example/orders  -> aud "orders-api"
//   https://api.example/billing -> aud "billing-api"
// A request without `resource` gets the client's first allowed resource.
//
// Clients (client_secret_basic; secret = "<client_id>-secret"):
//   orders-editor  roles [names_editor, orders_reader]  resources: orders, billing
//   orders-reader  roles [orders_reader]                resources: orders, billing
//   billing-app    roles [billing_user]                 resources: billing
//   dpop-app       roles [orders_reader]                resources: orders   DPoP-bound tokens only
//   dpop-nonce-app roles [orders_reader]                resources: orders   DPoP-bound, token endpoint demands nonces
//   mtls-app       roles [orders_reader]                resources: orders, billing   certificate-bound tokens
//
// Sender-constrained tokens (RFC 9449, RFC 8705; features.dPoP and features.mTLS):
//   * DPoP: a token request carrying a valid `DPoP` proof header gets `token_type: DPoP` and a JWT with
//     `cnf: {jkt: <RFC 7638 thumbprint of the proof's jwk>}` (any client; dpop-app and dpop-nonce-app
//     must send one: dpop_bound_access_tokens). Proof algs: ES256, EdDSA. For dpop-nonce-app the token
//     endpoint answers 400 use_dpop_nonce with a `DPoP-Nonce` header until the proof carries that nonce.
//   * mTLS: this provider listens on plain HTTP, so the client certificate of the token request is
//     passed in the `x-e2e-client-cert` header (URL-encoded PEM, the encoding of Envoy's XFCC `Cert=`).
//     That header is trusted blindly: THIS IS A TEST PROVIDER ON LOOPBACK, never expose it. mtls-app
//     (tls_client_certificate_bound_access_tokens) must send one and gets a JWT with
//     `cnf: {"x5t#S256": base64url(SHA-256(certificate DER))}`, token_type Bearer.
// Every access token carries `realm_access: {roles: [...]}` (Keycloak style), `client_roles` (same list,
// flat), `azp` (= client_id) and `email` (<client_id>@clients.example); `sub` is the client_id.
//
// On startup it prints one line `READY <issuer>` to stdout once it is listening.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.E2E_PROVIDER_PORT ?? '4444' },
    host: { type: 'string', default: process.env.E2E_PROVIDER_HOST ?? '127.0.0.1' },
    keys: { type: 'string', default: process.env.E2E_PROVIDER_KEYS },
    ttl: { type: 'string', default: process.env.E2E_PROVIDER_TTL ?? '300' },
  },
});

if (!args.keys) {
  console.error('missing --keys FILE (a JWKS with private keys; see genkey.js)');
  process.exit(2);
}
const port = Number.parseInt(args.port, 10);
const ttl = Number.parseInt(args.ttl, 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`invalid --port ${args.port}`);
  process.exit(2);
}
if (!Number.isInteger(ttl) || ttl <= 0) {
  console.error(`invalid --ttl ${args.ttl}`);
  process.exit(2);
}
const jwks = JSON.parse(fs.readFileSync(args.keys, 'utf8'));
if (!Array.isArray(jwks.keys) || jwks.keys.length === 0) {
  console.error(`${args.keys}: not a JWKS with at least one key`);
  process.exit(2);
}

const issuer = `http://${args.host}:${port}`;

const RESOURCES = {
  'https://api.example/orders': { audience: 'orders-api', scope: 'orders:read orders:write' },
  'https://api.example/billing': { audience: 'billing-api', scope: 'billing:read' },
};

const CLIENTS = {
  'orders-editor': {
    roles: ['names_editor', 'orders_reader'],
    resources: ['https://api.example/orders', 'https://api.example/billing'],
  },
  'orders-reader': {
    roles: ['orders_reader'],
    resources: ['https://api.example/orders', 'https://api.example/billing'],
  },
  'billing-app': {
    roles: ['billing_user'],
    resources: ['https://api.example/billing'],
  },
  'dpop-app': {
    roles: ['orders_reader'],
    resources: ['https://api.example/orders'],
    metadata: { dpop_bound_access_tokens: true },
  },
  'dpop-nonce-app': {
    roles: ['orders_reader'],
    resources: ['https://api.example/orders'],
    metadata: { dpop_bound_access_tokens: true },
    requireDpopNonce: true,
  },
  'mtls-app': {
    roles: ['orders_reader'],
    resources: ['https://api.example/orders', 'https://api.example/billing'],
    metadata: { tls_client_certificate_bound_access_tokens: true },
  },
};

// The test client certificate of a token request (see the header comment): URL-encoded PEM or nothing.
const CLIENT_CERT_HEADER = 'x-e2e-client-cert';
function clientCertificate(ctx) {
  const raw = ctx.get(CLIENT_CERT_HEADER);
  if (!raw) return undefined;
  const pem = decodeURIComponent(raw);
  return pem.includes('-----BEGIN CERTIFICATE-----') ? pem : undefined;
}

const configuration = {
  jwks,
  scopes: [...new Set(Object.values(RESOURCES).flatMap((r) => r.scope.split(' ')))],
  clients: Object.keys(CLIENTS).map((clientId) => ({
    client_id: clientId,
    client_secret: `${clientId}-secret`,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: Object.values(RESOURCES).map((r) => r.scope).join(' '),
    ...CLIENTS[clientId].metadata,
  })),
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    introspection: { enabled: false },
    revocation: { enabled: false },
    dPoP: {
      enabled: true,
      nonceSecret: crypto.randomBytes(32),
      requireNonce: (ctx) => CLIENTS[ctx.oidc?.client?.clientId]?.requireDpopNonce === true,
      allowReplay: false,
    },
    mTLS: {
      enabled: true,
      certificateBoundAccessTokens: true,
      selfSignedTlsClientAuth: false,
      tlsClientAuth: false,
      getCertificate: clientCertificate,
      // only used by tls_client_auth / self_signed_tls_client_auth, which no client here uses
      certificateAuthorized: () => false,
      certificateSubjectMatches: () => false,
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (ctx, client, oneOf) => {
        if (oneOf) return oneOf;
        return CLIENTS[client.clientId]?.resources[0];
      },
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator, client) => {
        const rs = RESOURCES[resourceIndicator];
        const allowed = CLIENTS[client.clientId]?.resources ?? [];
        if (!rs || !allowed.includes(resourceIndicator)) {
          throw new errors.InvalidTarget(`resource ${resourceIndicator} is not available to ${client.clientId}`);
        }
        return {
          audience: rs.audience,
          scope: rs.scope,
          accessTokenTTL: ttl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  extraTokenClaims: async (ctx, token) => {
    const clientId = token.clientId ?? token.client?.clientId;
    const c = CLIENTS[clientId];
    if (!c) return undefined;
    return {
      azp: clientId,
      email: `${clientId}@clients.example`,
      realm_access: { roles: [...c.roles] },
      client_roles: [...c.roles],
    };
  },
  ttl: { ClientCredentials: ttl },
  // Test provider: quiet about missing cookie keys etc. (no browser flows are used).
  cookies: { keys: ['e2e-only-cookie-key'] },
  renderError: async (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  },
};

const provider = new Provider(issuer, configuration);
provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.on('grant.error', (ctx, err) => console.error('grant.error', err.message, err.error_description ?? ''));

const server = http.createServer(provider.callback());
server.listen(port, args.host, () => {
  console.log(`READY ${issuer}`);
});

// Stop at once, also with keep-alive connections open (oidc-authz keeps one to fetch the JWKS): the tests
// restart the provider on the same port to rotate keys.
const stop = () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
