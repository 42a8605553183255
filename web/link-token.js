// What a link carries in its fragment, and what a tab keeps across a round trip to another
// site: an invite link's token (…/invite#<token>); a binding's id (…/join#<binding>), with
// the one-time ticket from the bot's direct chat (#<binding>.<ticket>) or a problem the
// OAuth callback sends back (#problem=<code>); what to pick up after a single sign-on or a
// provider's sign-in. Whatever was pasted or clicked, nothing here throws: the page gets
// what the link holds, or the reason it cannot ("missing", "malformed") to tell the visitor.

// What the bot hands out (URL-safe base64) and what the web API accepts.
const TOKEN = /^[A-Za-z0-9_-]{16,128}$/;
const BINDING = /^[A-Za-z0-9_-]{8,64}$/;
const CALLBACK_PROBLEM = /^problem=([a-z_]{1,40})$/;
// Chat apps and mail readers often take a closing bracket or a full stop into a link; a
// token never ends with one, so dropping them loses nothing.
const TRAILING_PUNCTUATION = /[\s.,;:!?)\]}>'"\u2019\u201d]+$/u;
const MAX_FRAGMENT_LENGTH = 512;

const SSO_KEY = "thirdparty_invite.sso";  // sessionStorage: where an SSO sign-in started
const SSO_MAX_AGE_MS = 30 * 60 * 1000;
const PROVIDER_KEY = "thirdparty_invite.provider";  // sessionStorage: a provider sign-in
const PROVIDER_MAX_AGE_MS = 30 * 60 * 1000;

export const LINK_PROBLEMS = {
  missing: "This page needs the whole invite link, including the part after #.",
  malformed: "This invite link is malformed or incomplete: part of it is missing or was " +
    "changed. Copy the whole link again, exactly as you received it.",
};

// The fragment as a person meant it, or null when it cannot be read at all.
function fragmentText(fragment) {
  let text = String(fragment ?? "").replace(/^#/, "");
  if (text.length > MAX_FRAGMENT_LENGTH) return null;
  try {
    text = decodeURIComponent(text);  // throws URIError on "%", "%E0%A4%A", "%zz"…
  } catch {
    return null;
  }
  return text.trim().replace(TRAILING_PUNCTUATION, "");
}

export function readLinkToken(fragment) {
  const text = fragmentText(fragment);
  if (text === null) return { problem: "malformed" };
  if (!text) return { problem: "missing" };
  return TOKEN.test(text) ? { token: text } : { problem: "malformed" };
}

// A binding's page: { binding, ticket? }, { callbackProblem } or { problem }.
export function readJoinFragment(fragment) {
  const text = fragmentText(fragment);
  if (text === null) return { problem: "malformed" };
  if (!text) return { problem: "missing" };
  const problem = CALLBACK_PROBLEM.exec(text);
  if (problem) return { callbackProblem: problem[1] };
  const [binding, ticket, ...more] = text.split(".");
  if (more.length || !BINDING.test(binding) || (ticket !== undefined && !TOKEN.test(ticket))) {
    return { problem: "malformed" };
  }
  return ticket === undefined ? { binding } : { binding, ticket };
}

// Before leaving for the homeserver's single sign-on: what to pick up on the way back;
// `token` is the fragment to put back (an invite link's token, a binding's id).
export function keepForSsoReturn({ token, baseUrl, userId }) {
  sessionStorage.setItem(SSO_KEY, JSON.stringify({ token, baseUrl, userId, at: Date.now() }));
}

// The homeserver sent the browser back here with ?loginToken=…: pick up where we left, or
// `lost: true` when this tab did not start it (or what it kept is stale or unreadable).
// `accepts`: which kept fragments are this page's (the admin panel keeps a room ID or "").
const isLinkFragment = (token) => TOKEN.test(token) || BINDING.test(token);

export function takeSsoReturn({ accepts = isLinkFragment } = {}) {
  const loginToken = new URLSearchParams(location.search).get("loginToken");
  if (!loginToken) return null;
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(SSO_KEY) || "null");
  } catch {}  // unreadable: lost
  sessionStorage.removeItem(SSO_KEY);
  const fresh = Boolean(saved) && Date.now() - saved.at < SSO_MAX_AGE_MS &&
    typeof saved.baseUrl === "string" && typeof saved.token === "string" &&
    accepts(saved.token);
  // Out of the address bar and the history: the login token must not be reused or shared.
  const back = fresh ? (saved.token && `#${saved.token}`) : location.hash;
  history.replaceState(null, "", location.pathname + back);
  return fresh ? { loginToken, ...saved } : { loginToken, lost: true };
}

// Before leaving for a provider's sign-in: which binding and provider, so the page that
// the callback sends back knows where the person was (and a problem can offer a restart).
export function keepForProviderReturn(binding, provider) {
  sessionStorage.setItem(PROVIDER_KEY, JSON.stringify({ binding, provider, at: Date.now() }));
}

// { binding, provider } of a provider sign-in this tab started lately, or null; `take`
// forgets it (the page has dealt with the return).
export function providerReturn({ take = false } = {}) {
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(PROVIDER_KEY) || "null");
  } catch {}  // unreadable: nothing started here
  if (take) sessionStorage.removeItem(PROVIDER_KEY);
  const fresh = Boolean(saved) && Date.now() - saved.at < PROVIDER_MAX_AGE_MS &&
    typeof saved.binding === "string" && BINDING.test(saved.binding) &&
    typeof saved.provider === "string";
  return fresh ? { binding: saved.binding, provider: saved.provider } : null;
}
