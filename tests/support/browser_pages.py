"""Browser test helpers: screenshots, a watch on what a page did, and the invite page as a
person uses it (what they see, type and click)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
import re
import shutil
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.test_utils import TestServer
import attrs
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    Request,
    Route,
    expect,
)

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class Screenshots:
    """Numbered full-page screenshots of one test, in the order the states were reached."""

    def __init__(self, directory: Path) -> None:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        self.directory = directory
        self.count = 0

    async def take(self, page: Page, state: str) -> Path:
        self.count += 1
        path = self.directory / f"{self.count:02d}-{state}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path


# Not slotted: Playwright stores its wrappers on the objects whose methods it calls back.
@attrs.define(slots=False)
class PageWatch:
    """What our pages (those under `own_origin`) did that they must not: load anything from
    beyond loopback, throw, or break their CSP. Other sites' pages (the homeserver's SSO
    confirmation, the OpenID provider) are theirs to judge, not ours."""

    own_origin: str
    foreign_requests: list[str] = attrs.Factory(list)
    errors: list[str] = attrs.Factory(list)

    def attach(self, page: Page) -> None:
        page.on("request", self._on_request)
        page.on("pageerror", self._on_page_error)
        page.on("console", self._on_console)

    def _ours(self, page_or_frame_url: str) -> bool:
        return page_or_frame_url.startswith(self.own_origin + "/")

    def _on_request(self, request: Request) -> None:
        parts = urlsplit(request.url)
        foreign = parts.scheme in ("http", "https") and parts.hostname not in LOOPBACK_HOSTS
        if foreign and self._ours(request.frame.url):
            self.foreign_requests.append(request.url)

    def _on_page_error(self, error: Exception) -> None:
        self.errors.append(f"script error: {error}")

    def _on_console(self, message: ConsoleMessage) -> None:
        # Failed loads (the 401 of "am I signed in?") and CORS refusals (a server that is no
        # Matrix homeserver) are expected; CSP violations and anything else are not.
        text = message.text
        expected = text.startswith("Failed to load resource") or "blocked by CORS policy" in text
        page_url = message.page.url if message.page else ""
        if message.type == "error" and not expected and self._ours(page_url):
            self.errors.append(f"console: {text}")

    def assert_clean(self) -> None:
        assert not self.foreign_requests, f"left loopback: {self.foreign_requests}"
        assert not self.errors, self.errors


STATES = (
    "state-link-problem",
    "state-session",
    "state-mxid",
    "state-signin",
    "state-progress",
    "state-done",
    "state-problem",
)


class InvitePage:
    states = STATES
    submit_label = "Sign in and join"  # the password form's button

    def __init__(self, page: Page, shots: Screenshots) -> None:
        self.page = page
        self.shots = shots

    async def open(self, url: str) -> None:
        await self.page.goto(url)

    async def shot(self, name: str) -> None:
        await self.shots.take(self.page, name)

    def state(self, state_id: str) -> Locator:
        return self.page.locator(f"#{state_id}")

    async def wait_for(self, state_id: str, timeout: float = 60_000) -> Locator:
        """Wait until `state_id` is the one visible state; returns it."""
        locator = self.state(state_id)
        await expect(locator).to_be_visible(timeout=timeout)
        for other in self.states:
            if other != state_id:
                await expect(self.state(other)).to_be_hidden()
        return locator

    async def enter_matrix_id(self, user_id: str, homeserver: str = "") -> None:
        await self.wait_for("state-mxid")
        await self.page.get_by_label("Your Matrix ID").fill(user_id)
        if homeserver:
            await self.page.get_by_text("My homeserver has a different address").click()
            await self.page.get_by_label("Homeserver address").fill(homeserver)
        await self.page.get_by_role("button", name="Continue").click()

    async def sign_in_with_password(self, password: str) -> None:
        form = await self.wait_for("state-signin")
        # Within the sign-in step: a page that offers new accounts has password fields too.
        await form.get_by_label("Password", exact=True).fill(password)
        await self.page.get_by_role("button", name=self.submit_label).click()

    async def problem(self) -> tuple[str, str]:
        state = await self.wait_for("state-problem")
        return (
            await state.locator("#problem-title").inner_text(),
            await state.locator("#problem-text").inner_text(),
        )

    async def focused_id(self) -> str:
        return await self.page.evaluate("document.activeElement && document.activeElement.id")


class JoinPage(InvitePage):
    """A binding's page (…/join#<binding>): the invite page's states, and the providers'
    step; `sign_in_at` walks one provider's consent page as a person does."""

    states = (*STATES, "state-providers")
    submit_label = "Sign in and continue"

    async def provider_step(self, provider_name: str, title: str | None = None) -> Locator:
        """The providers' step with the list item of `provider_name`; `title` when given."""
        state = await self.wait_for("state-providers")
        if title is not None:
            await expect(state.locator("#providers-title")).to_have_text(title)
        return state.locator(".provider-step", has_text=provider_name)

    async def sign_in_at(
        self, provider_name: str, button: str | None = None, *, decision: str = "Authorize"
    ) -> None:
        """Press the step's button ("Continue with GitHub" unless told), then `decision` on
        the provider's consent page; the callback brings the browser back here."""
        await self.wait_for("state-providers")
        action = self.page.locator("#provider-action")
        await expect(action).to_have_text(button or f"Continue with {provider_name}")
        await action.click()
        await self.page.get_by_role("button", name=decision).click()

    async def at_consent(self, provider_name: str) -> None:
        """Press "Continue with …" and stop on the provider's consent page."""
        await self.wait_for("state-providers")
        await self.page.locator("#provider-action").click()
        await expect(self.page.get_by_role("button", name="Authorize")).to_be_visible()


@asynccontextmanager
async def serve_login_flows(flows: list[dict]) -> AsyncIterator[str]:
    """A homeserver's client API reduced to `/versions` and these login flows, answering
    browsers from any origin as homeservers do; yields its server name (localhost:port)."""

    async def versions(_: web.Request) -> web.Response:
        return web.json_response({"versions": ["v1.11"]})

    async def login(_: web.Request) -> web.Response:
        return web.json_response({"flows": flows})

    @web.middleware
    async def cors(request: web.Request, handler) -> web.StreamResponse:
        response = web.Response() if request.method == "OPTIONS" else await handler(request)
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
        return response

    app = web.Application(middlewares=[cors])
    app.router.add_get("/_matrix/client/versions", versions)
    app.router.add_get("/_matrix/client/v3/login", login)
    async with serve_on_loopback(app) as server_name:
        yield server_name


@asynccontextmanager
async def serve_on_loopback(app: web.Application) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 for one test; yields its name as a page sees it
    (localhost:port)."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield f"localhost:{server.port}"
    finally:
        await server.close()


# Every wait on a page: a sign-in through Synapse can take this long on a busy machine.
PAGE_TIMEOUT_MS = 30_000
_BEYOND_LOOPBACK = re.compile(r"^https?://(?!(127\.0\.0\.1|localhost)[:/])")


async def _abort(route: Route) -> None:
    await route.abort()


@asynccontextmanager
async def page_opener(
    chromium: Browser, origin: str
) -> AsyncIterator[Callable[..., Awaitable[Page]]]:
    """``await open_page(origin=None, **context_options)``: a page in a fresh context (no
    cookies), watched as the plugin's pages of ``origin`` (default: the one given here).
    Nothing beyond loopback is reachable from here anyway: such loads fail at once. Every
    page must have stayed clean when the block ends."""
    contexts: list[BrowserContext] = []
    watches: list[PageWatch] = []

    async def open_page(origin_of_page: str | None = None, **options: object) -> Page:
        context = await chromium.new_context(
            **({"viewport": {"width": 1024, "height": 800}} | options)
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        await context.route(_BEYOND_LOOPBACK, _abort)
        contexts.append(context)
        page = await context.new_page()
        watch = PageWatch(origin_of_page or origin)
        watch.attach(page)
        watches.append(watch)
        return page

    try:
        yield open_page
    finally:
        for context in contexts:
            await context.close()
    for watch in watches:
        watch.assert_clean()
