"""A slice of the web API fuzz (tests/support/web_fuzz.py) against the plugin in a real
maubot: its server, its path rewriting and its aiohttp settings, not the tests' copy of
them. And a client hanging up mid-body, with maubot's own log as the witness."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
import time

import pytest
import pytest_asyncio
from support.raw_http import build_request, send_and_hang_up, send_raw
from support.web_fuzz import Context, check_answer, fuzz_cases, load_openapi
from yarl import URL

from devtools.maubot_server import MaubotServer
from devtools.stack import RunningStack, running_stack
from devtools.synapse import SynapseServer

pytestmark = pytest.mark.integration

SLICE = 4  # every 4th case: about 150 requests


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fuzz_stack(
    tmp_path_factory: pytest.TempPathFactory,
    synapse: SynapseServer,
    maubot_server: MaubotServer,
    mbp: Path,
) -> AsyncIterator[RunningStack]:
    config = {
        "identity": {
            "server_urls": {synapse.server_name: synapse.base_url},
            "homeserver_allow": [synapse.server_name],
        },
        "rate_limits": {n: {"burst": 0} for n in ("session", "link_inspect", "link_claim")},
    }
    async with running_stack(
        tmp_path_factory.mktemp("fuzz"),
        synapse=synapse,
        maubot=maubot_server,
        mbp=mbp,
        instance_config=config,
    ) as stack:
        await stack.wait_web_ready()
        yield stack


def log_size(maubot: MaubotServer) -> int:
    return maubot.log_path.stat().st_size


def log_since(maubot: MaubotServer, offset: int) -> str:
    with maubot.log_path.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


async def test_fuzz_slice_in_maubot(fuzz_stack: RunningStack) -> None:
    stack = fuzz_stack
    base = URL(stack.web_url)
    visitor = await stack.user("fuzz")
    async with await stack.signed_in(visitor) as http:
        cookie = next(c.value for c in http.cookie_jar if c.key == "tpi_session")
    room_id = await stack.room("Fuzzed")
    token = (await stack.link(room_id, "--uses 100")).rsplit("#", 1)[1]
    ctx = Context(
        origin=stack.origin,
        cookie=cookie,
        max_body=16384,
        plausible={
            "token": [token, "A" * 32],
            "access_token": ["not-a-token"],
            "matrix_server_name": [stack.synapse.server_name, "evil.example"],
        },
    )
    cases = fuzz_cases(load_openapi(), ctx)[::SLICE]
    offset = log_size(stack.maubot)
    problems, statuses = [], {}
    for case in cases:
        try:
            response = await send_raw(base.port, case.request(base.path, base.raw_authority))
        except (OSError, ValueError, IndexError) as e:
            problems.append(f"{case.name}: no answer ({e!r})")
            continue
        statuses[response.status] = statuses.get(response.status, 0) + 1
        if (problem := check_answer(case, response)) is not None:
            problems.append(f"{case.name}: {problem}")
    assert not problems, "\n".join(problems[:40])
    assert {200, 400, 401, 403, 404, 405} <= set(statuses), statuses
    log = log_since(stack.maubot, offset)
    assert "Database unavailable" not in log
    assert "Unexpected error handling" not in log


async def test_client_hanging_up_mid_body_in_maubot(fuzz_stack: RunningStack) -> None:
    stack = fuzz_stack
    base = URL(stack.web_url)
    offset = log_size(stack.maubot)
    request = build_request(
        "POST",
        f"{base.path}api/links/inspect",
        base.raw_authority,
        [("Origin", stack.origin), ("Content-Length", "1000")],
        b'{"token": "',
        content_length=False,
    )
    await send_and_hang_up(base.port, request)
    deadline = time.monotonic() + 60  # maubot notices in its own time, later when busy
    while "went away" not in (log := log_since(stack.maubot, offset)):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert "Client went away while sending its request to /api/links/inspect" in log
    assert "Database unavailable" not in log
    assert "Traceback" not in log
    # And the plugin still answers.
    response = await send_raw(
        base.port,
        build_request("GET", f"{base.path}api/session", base.raw_authority),
    )
    assert response.status == 401
