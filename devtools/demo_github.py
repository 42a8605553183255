"""The demo's GitHub: the tests' local GitHub (tests/support/providers/github.py), where a
person signs in by picking or typing an account on a "Sign in to GitHub" page, as they would
at github.com, before its consent page; nobody is signed in ahead of time.

The tests script who is signed in (``sign_in_as``) because each test is one person; the demo
serves whoever opens it, so the account chosen travels with each sign-in (the authorize
request, then the consent form's ticket) and two people can sign in at once as different
accounts. Everything else (codes, tokens, the API, the organisation's members) is the
tests' fake unchanged.
"""

from __future__ import annotations

import html

from aiohttp import web
from support.providers.github import Account, FakeGitHub

# The sign-in page's field and buttons: query parameters of the authorize URL that GitHub
# does not use, so the OAuth request passes through unchanged.
TYPED = "demo_login"
PICKED = "demo_pick"


class DemoGitHub(FakeGitHub):
    """FakeGitHub with a sign-in page; `ready` lists the accounts it offers as buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.ready: list[tuple[Account, str]] = []  # (account, what it is, in words)

    def add_ready_account(self, login: str, org: str | None, words: str) -> Account:
        account = self.add_account(login, name=login)
        if org is not None:
            account.join_org(org)
        self.ready.append((account, words))
        return account

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        """Without a chosen account, the sign-in page; with one, GitHub's own answer (the
        consent page, or an error for a bad request) as that account."""
        wanted = (request.query.get(PICKED) or request.query.get(TYPED) or "").strip()
        account = self.accounts.get(wanted.lower()) if wanted else None
        if account is None:
            error = "Incorrect username." if wanted else ""
            page = self._sign_in_page(request, error)
            return web.Response(text=page, content_type="text/html", status=401 if error else 200)
        self.signed_in = account  # for this request only: the next one names its own
        return await super()._authorize(request)

    async def _consent(self, request: web.Request) -> web.StreamResponse:
        """The consent form's answer, as the account its ticket was shown to."""
        form = await request.post()
        pending = self._pending.get(str(form.get("ticket", "")))
        if pending is not None:
            _, params, _ = pending
            wanted = params.get(PICKED) or params.get(TYPED) or ""
            self.signed_in = self.accounts.get(wanted.strip().lower())
        return await super()._consent(request)

    def _sign_in_page(self, request: web.Request, error: str) -> str:
        keep = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in request.query.items()
            if k not in (TYPED, PICKED)
        )
        buttons = "".join(
            f'<li><button type="submit" name="{PICKED}" value="{html.escape(a.login)}">'
            f"Sign in as {html.escape(a.login)}</button> {html.escape(words)}</li>"
            for a, words in self.ready
        )
        alert = f'<p role="alert"><strong>{html.escape(error)}</strong></p>' if error else ""
        action = html.escape(self.authorize_path)
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in to GitHub</title></head>
<body><main>
<h1>Sign in to GitHub</h1>
<p>This is the demo's local stand-in for GitHub: no password is asked.</p>
{alert}
<form method="get" action="{action}">{keep}
<p><label for="{TYPED}">Username</label>
<input id="{TYPED}" name="{TYPED}" autocomplete="username" autofocus>
<button type="submit">Sign in</button></p>
</form>
<form method="get" action="{action}">{keep}
<p>Or pick one of the demo's accounts:</p>
<ul>{buttons}</ul>
</form>
</main></body></html>"""
