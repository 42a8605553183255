// The invite link's token: from the page's fragment (…/invite#<token>), or kept in this tab
// across a single sign-on round trip. Whatever was pasted or clicked, nothing here throws:
// the page gets a token that can be a link's, or the reason it cannot ("missing",
// "malformed") to tell the visitor.

// What the bot hands out (URL-safe base64) and what the web API accepts.
const TOKEN = /^[A-Za-z0-9_-]{16,128}$/;
// Chat apps and mail readers often take a closing bracket or a full stop into a link; a
// token never ends with one, so dropping them loses nothing.
const TRAILING_PUNCTUATION = /[\s.,;:!?)\]}>'"\u2019\u201d]+$/u;
const MAX_FRAGMENT_LENGTH = 512;

const SSO_KEY = "thirdparty_invite.sso";  // sessionStorage: where an SSO sign-in started
const SSO_MAX_AGE_MS = 30 * 60 * 1000;

export const LINK_PROBLEMS = {
  missing: "This page needs the whole invite link, including the part after #.",
  malformed: "This invite link is malformed or incomplete: part of it is missing or was " +
    "changed. Copy the whole link again, exactly as you received it.",
};

export function readLinkToken(fragment) {
  let text = String(fragment ?? "").replace(/^#/, "");
  if (text.length > MAX_FRAGMENT_LENGTH) return { problem: "malformed" };
  try {
    text = decodeURIComponent(text);  // throws URIError on "%", "%E0%A4%A", "%zz"…
  } catch {
    return { problem: "malformed" };
  }
  text = text.trim().replace(TRAILING_PUNCTUATION, "");
  if (!text) return { problem: "missing" };
  return TOKEN.test(text) ? { token: text } : { problem: "malformed" };
}

// Before leaving for the homeserver's single sign-on: what to pick up on the way back.
export function keepForSsoReturn({ token, baseUrl, userId }) {
  sessionStorage.setItem(SSO_KEY, JSON.stringify({ token, baseUrl, userId, at: Date.now() }));
}

// The homeserver sent the browser back here with ?loginToken=…: pick up where we left, or
// `lost: true` when this tab did not start it (or what it kept is stale or unreadable).
export function takeSsoReturn() {
  const loginToken = new URLSearchParams(location.search).get("loginToken");
  if (!loginToken) return null;
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(SSO_KEY) || "null");
  } catch {}  // unreadable: lost
  sessionStorage.removeItem(SSO_KEY);
  const fresh = Boolean(saved) && Date.now() - saved.at < SSO_MAX_AGE_MS &&
    typeof saved.baseUrl === "string" && readLinkToken(saved.token).token === saved.token;
  // Out of the address bar and the history: the login token must not be reused or shared.
  history.replaceState(null, "", location.pathname + (fresh ? `#${saved.token}` : location.hash));
  return fresh ? { loginToken, ...saved } : { loginToken, lost: true };
}
