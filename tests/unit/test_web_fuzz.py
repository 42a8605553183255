"""Every route in web/openapi.json under a seeded barrage of hostile requests, over raw
sockets: nothing answers 5xx (except a documented 502/503), everything else is a JSON
`{errcode, error}` 4xx or a 2xx, and nothing is logged as a bug or a database outage."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.test_utils import TestServer
import pytest
from support import plugin_web
from support.fakehomeserver import FakeHomeserver
from support.raw_http import send_raw
from support.web_fuzz import Context, check_answer, fuzz_cases, load_openapi

from thirdparty_invite.config import RateLimit
from thirdparty_invite.storage import Storage
from thirdparty_invite.webapp import app as web_app


class MaubotLikeServer(TestServer):
    """Handlers keep running when their client disconnects, as under maubot."""

    async def _make_runner(self, **kwargs):
        kwargs["handler_cancellation"] = False
        return web.AppRunner(self.app, **kwargs)


async def test_every_api_route_is_described(storage: Storage, monkeypatch) -> None:
    """The fuzz covers what web/openapi.json lists: so it must list every API route."""
    apps = []
    install = plugin_web.install_web_app
    monkeypatch.setattr(
        plugin_web, "install_web_app", lambda app, *a: (apps.append(app), install(app, *a))
    )
    async with plugin_web.serve_plugin_web(storage):
        pass
    served = {
        (resource.canonical, route.method.lower())
        for resource in apps[0].resources()
        for route in resource
        if resource.canonical.startswith("/api/") and route.method != "HEAD"
    }
    served.discard(("/api/openapi.json", "get"))  # the description itself
    paths = load_openapi()["paths"]
    described = {(path, method) for path, item in paths.items() for method in item}
    assert served == described, f"served, not described: {served - described}"


async def test_fuzz_every_route(storage: Storage, monkeypatch, caplog) -> None:
    monkeypatch.setattr(plugin_web, "TestServer", MaubotLikeServer)
    # The panel's bucket is not in the config: off here too, so the fuzz reaches its routes.
    monkeypatch.setattr(web_app, "MANAGE_LIMIT", RateLimit(burst=0, refill=1))
    caplog.set_level(logging.INFO)
    async with FakeHomeserver() as homeserver:
        homeserver.sub = "@fuzz:hs.test"
        overrides = {
            "identity": {
                "server_urls": {"hs.test": homeserver.url},
                # Random server names must not send the bot looking across the internet.
                "homeserver_allow": ["hs.test"],
            },
            "rate_limits": {n: {"burst": 0} for n in ("session", "link_inspect", "link_claim")},
        }
        async with plugin_web.serve_plugin_web(storage, overrides) as (http, services, base):
            _, token = await services.links.create("@admin:hs.test", ("!r:hs.test",), 1000, 3600)
            async with http.post(
                "api/session", json={"access_token": "fuzz-0", "matrix_server_name": "hs.test"}
            ) as resp:
                cookie = resp.cookies["tpi_session"].value
            ctx = Context(
                origin=f"http://127.0.0.1:{base.port}",
                cookie=cookie,
                max_body=services.settings.web.max_body_bytes,
                plausible={
                    "token": [token, "A" * 32],
                    "access_token": [f"fuzz-{i}" for i in range(1, 200)],
                    "matrix_server_name": ["hs.test", "evil.example"],
                },
            )
            cases = fuzz_cases(load_openapi(), ctx)
            assert 400 < len(cases) < 8000  # bounded, and not trivially small
            host = f"127.0.0.1:{base.port}"
            problems, statuses = [], {}
            started = time.monotonic()
            for case in cases:
                try:
                    response = await send_raw(base.port, case.request(base.path, host))
                except (OSError, ValueError, IndexError) as e:  # no answer at all
                    problems.append(f"{case.name}: no answer ({e!r})")
                    continue
                statuses[response.status] = statuses.get(response.status, 0) + 1
                if (problem := check_answer(case, response)) is not None:
                    problems.append(f"{case.name}: {problem}")
            elapsed = time.monotonic() - started
    assert not problems, "\n".join(problems[:40])
    # The fuzz reached the services, not only the parsers.
    assert {200, 202, 400, 401, 403, 404, 405, 413} <= set(statuses), statuses
    ours = [r for r in caplog.records if r.name.startswith("test.web")]
    assert not [r.getMessage() for r in ours if r.levelno >= logging.ERROR]
    assert "Database unavailable" not in caplog.text
    print(f"{len(cases)} requests in {elapsed:.1f} s: {dict(sorted(statuses.items()))}")


@pytest.mark.parametrize("seed", [1, 2])
def test_the_cases_are_deterministic(seed: int) -> None:
    ctx = Context("http://h:1", "c", 1024, {"token": ["t"]})
    first = fuzz_cases(load_openapi(), ctx, seed)
    assert first == fuzz_cases(load_openapi(), ctx, seed)
