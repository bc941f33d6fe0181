// Print a fresh private RSA signing JWK (2048 bits, alg RS256, use sig) as JSON on stdout.
//
//   node genkey.js --kid k1            -> {"kty":"RSA",...,"kid":"k1","alg":"RS256","use":"sig"}
//   node genkey.js --kid k1 --jwks     -> {"keys":[{...}]}
//
// The e2e tests build the provider's --keys file from these (new key first for rotation).

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    kid: { type: 'string', default: randomUUID() },
    jwks: { type: 'boolean', default: false },
  },
});

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: args.kid, alg: 'RS256', use: 'sig' };
process.stdout.write(`${JSON.stringify(args.jwks ? { keys: [jwk] } : jwk)}\n`);
