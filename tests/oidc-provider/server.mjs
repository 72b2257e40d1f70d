// A real OpenID provider for Drover's tests: the certified `oidc-provider` package on loopback,
// with configured clients and users and a plain-HTML login (an e-mail field, no password;
// consent is granted automatically), so tests log in over HTTP without a browser.
//
//   node server.mjs [--port N] [--config FILE | --config-json JSON | --config -]
//
// Config: {"clients": [{"client_id", "client_secret"?, "redirect_uris": [...],
//          "post_logout_redirect_uris"?: [...]}], "users": [{"email", "name"?, "sub"?,
//          "email_verified"?}]}
// With `--config -` the server first listens and prints `listening <issuer>`, then reads the
// config as one JSON line on stdin (so a test can register a redirect URI it learns later).
// It prints `ready <issuer>` when it serves OpenID Connect.

import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import readline from 'node:readline';
import Provider from 'oidc-provider';

function arg(name) {
  const i = process.argv.indexOf(name);
  return i === -1 ? undefined : process.argv[i + 1];
}

const port = Number(arg('--port') ?? process.env.OIDC_PROVIDER_PORT ?? 0);

async function readConfig() {
  if (arg('--config-json')) return JSON.parse(arg('--config-json'));
  const file = arg('--config') ?? process.env.OIDC_PROVIDER_CONFIG;
  if (!file) throw new Error('give --config FILE, --config - (stdin) or --config-json JSON');
  if (file !== '-') return JSON.parse(fs.readFileSync(file, 'utf8'));
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim()) {
      lines.close();
      return JSON.parse(line);
    }
  }
  throw new Error('stdin closed before a config line');
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, status, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html><head><title>Test OpenID provider</title></head><body>${body}</body></html>`);
}

function loginForm(res, uid, error) {
  const message = error ? `<p class="error">${escape(error)}</p>` : '';
  page(res, error ? 401 : 200, `<h1>Log in</h1>${message}
<form method="post" action="/interaction/${escape(uid)}/login">
  <label>E-mail <input type="email" name="email" autofocus></label>
  <button type="submit">Log in</button>
</form>`);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

function buildProvider(issuer, config) {
  const users = new Map();
  for (const u of config.users ?? []) {
    const sub = u.sub ?? crypto.createHash('sha256').update(u.email.toLowerCase()).digest('hex').slice(0, 24);
    users.set(sub, { sub, email: u.email, name: u.name ?? '', email_verified: u.email_verified ?? true });
  }
  const byEmail = (email) => [...users.values()].find((u) => u.email.toLowerCase() === email.trim().toLowerCase());
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });

  const provider = new Provider(issuer, {
    clients: (config.clients ?? []).map((c) => ({
      client_id: c.client_id,
      ...(c.client_secret
        ? { client_secret: c.client_secret, token_endpoint_auth_method: 'client_secret_basic' }
        : { token_endpoint_auth_method: 'none' }),
      redirect_uris: c.redirect_uris,
      post_logout_redirect_uris: c.post_logout_redirect_uris ?? [],
      response_types: ['code'],
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
    })),
    async findAccount(ctx, sub) {
      const user = users.get(sub);
      if (!user) return undefined;
      return { accountId: sub, async claims() { return { ...user }; } };
    },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    scopes: ['openid', 'email', 'profile', 'offline_access'],
    // The e-mail claim in the ID token too, not only from userinfo.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: { enabled: true },
      rpInitiatedLogout: { enabled: true },
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'test', use: 'sig', alg: 'RS256' }] },
  });

  async function interaction(req, res, uid, action) {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) return page(res, 400, '<p>interaction mismatch</p>');
    const { prompt, params } = details;
    if (prompt.name === 'login') {
      if (action !== 'login') return loginForm(res, uid);
      const form = await readForm(req);
      const user = byEmail(form.get('email') ?? '');
      if (!user) return loginForm(res, uid, `no user with the e-mail ${form.get('email')}`);
      console.log(`login ${user.email}`);
      return provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
    }
    if (prompt.name === 'consent') {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
      const missing = prompt.details;
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      const grantId = await grant.save();
      const consent = details.grantId ? {} : { grantId };
      return provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
    }
    return page(res, 400, `<p>unsupported prompt ${escape(prompt.name)}</p>`);
  }

  const oidc = provider.callback();
  return async (req, res) => {
    const url = new URL(req.url, issuer);
    const m = url.pathname.match(/^\/interaction\/([^/]+)(?:\/(login))?$/);
    if (!m) return oidc(req, res);
    try {
      await interaction(req, res, m[1], req.method === 'POST' ? m[2] : undefined);
    } catch (err) {
      console.error(`interaction failed: ${err.stack ?? err}`);
      if (!res.headersSent) page(res, 400, `<p>${escape(err.message ?? err)}</p>`);
    }
  };
}

let handler = (req, res) => {
  res.writeHead(503, { 'content-type': 'text/plain' });
  res.end('not configured yet\n');
};
const server = http.createServer((req, res) => handler(req, res));
server.listen(port, '127.0.0.1', async () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  console.log(`listening ${issuer}`);
  try {
    handler = buildProvider(issuer, await readConfig());
  } catch (err) {
    console.error(`cannot start the provider: ${err.stack ?? err}`);
    process.exit(1);
  }
  console.log(`ready ${issuer}`);
});
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
