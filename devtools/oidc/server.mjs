// A throw-away OpenID Connect provider for the browser tests: Synapse logs users in
// through it (SSO), and the plugin's generic OIDC provider is tested against it. TEST
// TOOL ONLY: in-memory state, a fresh signing key per run, plain http on 127.0.0.1.
//
//   node server.mjs CONFIG.json
//
// CONFIG.json (written by devtools/oidc_provider.py):
//   { "port": 8123, "issuer": "http://127.0.0.1:8123",
//     "client": { "client_id": "...", "client_secret": "...", "redirect_uris": ["..."],
//                 "client_name": "..." },
//     "clients": [ ...more clients of the same shape (the plugin's own sign-in), optionally
//                  with "token_endpoint_auth_method" ... ],
//     "accounts": [ { "sub": "...", "preferred_username": "...", "name": "...",
//                     "email": "...", "password": "...",
//                     "groups": ["..."], "email_verified": true,
//                     "group_overage": false } ] }
//
// "groups" is released by the "groups" scope (claim "groups"); "email_verified" defaults
// to whether the account has an email ("omit" leaves it out; any other value is sent as
// is, a string too). "group_overage" answers as Microsoft Entra does for someone in too
// many groups: no "groups", a distributed claim in "_claim_names" instead.
//
// "keycloak_like": true (optional, read once) answers as a Keycloak realm whose client has
// a "Group Membership" mapper on its dedicated scope: there is no "groups" scope (the
// claim comes with "openid"), and a scope the provider does not offer is refused with
// invalid_scope, as Keycloak refuses it (oidc-provider itself ignores unknown scopes).
//
// Token revocation (RFC 7009) is on, at the discovery document's revocation_endpoint.
//
// "client" and "accounts" are read again from the file whenever they are needed, so the
// harness can add accounts and redirect URIs (Synapse's port is only known once it runs)
// to a running provider by rewriting the file. "port" and "issuer" are read once.
//
// oidc-provider's own development login accepts any password; this file replaces it with
// a login form that checks the configured password, and grants consent for the configured
// client without asking, so a user sees: login form -> back to the relying party.
//
// oidc-provider 9.x prints "Unsupported runtime. Use Node.js v22.x LTS" on Node 20 (it
// only vouches for 22+); everything used here works on Node 20, which the SSO harness
// test (tests/integration/test_sso_harness.py) proves on each run.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';
// Not part of the package's documented API, but it is the store oidc-provider uses when
// given no adapter; subclassing it lets clients come from the config file (see above).
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';

const configPath = process.argv[2];
if (!configPath) {
  console.error('usage: node server.mjs CONFIG.json');
  process.exit(2);
}

function readConfig() {
  return JSON.parse(fs.readFileSync(configPath, 'utf8'));
}

const { port, issuer, keycloak_like: keycloakLike = false } = readConfig();

function findAccountByLogin(login) {
  const wanted = login.trim().toLowerCase();
  return readConfig().accounts.find(
    (account) => account.preferred_username.toLowerCase() === wanted
      || account.email?.toLowerCase() === wanted,
  );
}

function findClient(id) {
  const { client, clients = [] } = readConfig();
  return [client, ...clients].find((candidate) => candidate?.client_id === id);
}

function passwordMatches(account, password) {
  const expected = Buffer.from(account.password, 'utf8');
  const given = Buffer.from(password, 'utf8');
  return expected.length === given.length && crypto.timingSafeEqual(expected, given);
}

class ConfigFileClientAdapter extends MemoryAdapter {
  constructor(model) {
    super(model);
    this.model = model;
  }

  async find(id) {
    if (this.model !== 'Client') {
      return super.find(id);
    }
    const client = findClient(id);
    if (!client) {
      return undefined;
    }
    if (!client.redirect_uris?.length) {
      console.error('the client has no redirect URIs yet: the harness must call '
        + 'OIDCProvider.allow_redirect_uri(synapse.oidc_callback_url)');
    }
    return {
      client_name: 'Test relying party',
      ...client,
      // refresh_token: a refresh token is issued only when offline_access is granted
      // (the plugin's per-person re-checks ask for it; Synapse never does).
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: client.token_endpoint_auth_method ?? 'client_secret_basic',
    };
  }
}

// A signing key made for this run: nothing secret is committed, nothing outlives the run.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-run', use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  adapter: ConfigFileClientAdapter,
  jwks: { keys: [signingKey] },
  async findAccount(ctx, sub) {
    const account = readConfig().accounts.find((candidate) => candidate.sub === sub);
    if (!account) {
      return undefined;
    }
    return {
      accountId: account.sub,
      async claims() {
        const claims = {
          sub: account.sub,
          preferred_username: account.preferred_username,
          name: account.name,
          email: account.email,
          email_verified: account.email_verified ?? Boolean(account.email),
          groups: account.groups ?? [],
        };
        if (account.email_verified === 'omit') {
          delete claims.email_verified;
        }
        if (account.group_overage) {
          // Microsoft Entra's group overage: too many groups for a token, so the claim
          // is left out and named as a distributed claim to fetch from Microsoft Graph.
          delete claims.groups;
          claims._claim_names = { groups: 'src1' };
          claims._claim_sources = {
            src1: { endpoint: `https://graph.microsoft.com/v1.0/users/${account.sub}/getMemberObjects` },
          };
        }
        return claims;
      },
    };
  },
  claims: keycloakLike
    ? {
      openid: ['sub', 'groups'],
      profile: ['preferred_username', 'name'],
      email: ['email', 'email_verified'],
    }
    : {
      openid: ['sub'],
      profile: ['preferred_username', 'name'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
  // Put the profile claims into the ID token too (not only the userinfo response), as
  // most real providers do: Synapse reads them from the ID token when "openid" is asked.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false }, // it accepts any password; ours is below
    rpInitiatedLogout: { enabled: false }, // Synapse never calls it; its page loads web fonts
    revocation: { enabled: true }, // the plugin revokes each access token after its checks
  },
  interactions: {
    url: (ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  cookies: {
    // Cookies are scoped to the host, not the port (RFC 6265 8.5): on 127.0.0.1 the
    // browser sends the same jar to Synapse, maubot, the test pages and any other
    // provider a test runs. Names with the port keep two providers from overwriting
    // each other's session; Synapse's cookies are "oidc_session*", so no clash there.
    // Over plain http oidc-provider leaves the Secure flag off and uses SameSite=Lax,
    // which Chromium accepts: the redirects between 127.0.0.1 ports are same-site.
    names: {
      session: `test_op_${port}_session`,
      interaction: `test_op_${port}_interaction`,
      resume: `test_op_${port}_resume`,
    },
    keys: [crypto.randomBytes(32).toString('base64url')],
  },
  // Without these the provider logs a "you SHOULD change" hint for each default it uses.
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 3600,
    Session: 3600,
    Grant: 3600,
    RefreshToken: 3600,
  },
  async renderError(ctx, out) {
    // The default error page pulls fonts from the internet; the tests stay on loopback.
    ctx.type = 'html';
    ctx.body = page('Sign-in error', `<h1>Sign-in error</h1><pre>${escapeHtml(JSON.stringify(out, null, 2))}</pre>`);
  },
});

for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error']) {
  provider.on(event, (ctx, error) => console.error(`${event}: ${error?.message} ${error?.error_description ?? ''}`));
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>${escapeHtml(title)}</title>
  <style>
    body { font-family: sans-serif; max-width: 24rem; margin: 3rem auto; padding: 0 1rem; }
    label, input, button { display: block; width: 100%; box-sizing: border-box; }
    input { margin: 0.25rem 0 1rem; padding: 0.5rem; }
    button { padding: 0.6rem; }
    .error { color: #b00020; }
    .note { color: #666; font-size: 0.9rem; }
  </style>
</head>
<body>
${body}
</body>
</html>`;
}

function loginPage({ uid, clientName, login = '', error = '' }) {
  return page('Sign in – Test OpenID Provider', `
  <h1>Sign in</h1>
  <p>to continue to <strong>${escapeHtml(clientName)}</strong></p>
  ${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
  <form method="post" action="/interaction/${escapeHtml(uid)}/login">
    <label for="login">Username</label>
    <input id="login" name="login" autocomplete="username" required autofocus value="${escapeHtml(login)}">
    <label for="password">Password</label>
    <input id="password" name="password" type="password" autocomplete="current-password" required>
    <button type="submit">Sign in</button>
  </form>
  <p class="note">Test OpenID Provider (a local test tool).</p>`);
}

function sendHtml(res, status, html) {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(html);
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function grantConsent(interaction) {
  // Every configured client is trusted: consent to whatever it asked.
  const { prompt: { details }, params, session } = interaction;
  const grant = interaction.grantId
    ? await provider.Grant.find(interaction.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (details.missingOIDCScope) {
    grant.addOIDCScope(details.missingOIDCScope.join(' '));
  }
  if (details.missingOIDCClaims) {
    grant.addOIDCClaims(details.missingOIDCClaims);
  }
  for (const [indicator, scopes] of Object.entries(details.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  return { consent: { grantId: await grant.save() } };
}

async function handleInteraction(req, res, uid, action) {
  const interaction = await provider.interactionDetails(req, res);
  if (interaction.uid !== uid) {
    sendHtml(res, 400, page('Sign-in error', '<h1>This sign-in page has expired.</h1>'));
    return;
  }
  const clientName = findClient(interaction.params.client_id)?.client_name
    ?? interaction.params.client_id;

  if (req.method === 'GET' && action === undefined) {
    if (interaction.prompt.name === 'login') {
      sendHtml(res, 200, loginPage({ uid, clientName }));
    } else if (interaction.prompt.name === 'consent') {
      await provider.interactionFinished(req, res, await grantConsent(interaction), {
        mergeWithLastSubmission: true,
      });
    } else {
      sendHtml(res, 400, page('Sign-in error', `<h1>Unsupported prompt ${escapeHtml(interaction.prompt.name)}</h1>`));
    }
    return;
  }

  if (req.method === 'POST' && action === 'login' && interaction.prompt.name === 'login') {
    const form = await readForm(req);
    const login = form.get('login') ?? '';
    const account = findAccountByLogin(login);
    if (!account || !passwordMatches(account, form.get('password') ?? '')) {
      console.log(`login failed for ${JSON.stringify(login)}`);
      sendHtml(res, 401, loginPage({ uid, clientName, login, error: 'Wrong username or password.' }));
      return;
    }
    console.log(`login ok: ${account.preferred_username} (sub ${account.sub})`);
    await provider.interactionFinished(req, res, { login: { accountId: account.sub } }, {
      mergeWithLastSubmission: false,
    });
    return;
  }

  res.writeHead(405, { Allow: 'GET, POST' });
  res.end();
}

const providerCallback = provider.callback();
const interactionPath = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login))?$/;

// Keycloak's answer to a scope it does not offer: back to the client with invalid_scope
// (only to a redirect URI the client registered; otherwise oidc-provider's own error page).
function refusedScope(url) {
  if (!keycloakLike || url.pathname !== '/auth') {
    return false;
  }
  const params = url.searchParams;
  // What discovery lists as scopes_supported: the claims' scopes and offline_access.
  const offered = new Set(['openid', 'offline_access', 'profile', 'email']);
  const unknown = (params.get('scope') ?? '').split(' ').filter((s) => s && !offered.has(s));
  const client = findClient(params.get('client_id'));
  const redirectUri = params.get('redirect_uri');
  if (!unknown.length || !client?.redirect_uris?.includes(redirectUri)) {
    return false;
  }
  const back = new URL(redirectUri);
  back.searchParams.set('error', 'invalid_scope');
  back.searchParams.set('error_description', `Invalid scopes: ${unknown.join(' ')}`);
  if (params.get('state')) {
    back.searchParams.set('state', params.get('state'));
  }
  return back.href;
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, issuer);
  const refusal = refusedScope(url);
  if (refusal) {
    res.writeHead(302, { Location: refusal });
    res.end();
    return;
  }
  const match = interactionPath.exec(url.pathname);
  if (!match) {
    providerCallback(req, res);
    return;
  }
  handleInteraction(req, res, match[1], match[2]).catch((error) => {
    console.error(`interaction ${match[1]}: ${error.stack ?? error}`);
    if (!res.headersSent) {
      sendHtml(res, 400, page('Sign-in error', `<h1>Sign-in error</h1><p>${escapeHtml(error.message)}</p>`));
    }
  });
});

server.on('error', (error) => {
  console.error(`cannot listen on 127.0.0.1:${port}: ${error.message}`);
  process.exit(1);
});

server.listen(port, '127.0.0.1', () => {
  console.log(`test OpenID provider ${issuer} listening on 127.0.0.1:${port}`);
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections(); // keep-alive browser connections would hold close() open
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
