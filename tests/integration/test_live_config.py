"""Saving a wrong instance config in maubot's manager: the manager's answer is not a 500,
the instance stays started on its previous settings (claims still become invites), and
maubot's log names every wrong key. A good config then applies at once."""

from __future__ import annotations

import json

import pytest

from devtools.maubot_server import MaubotServer
from devtools.plugin import instance_config
from devtools.stack import RunningStack

pytestmark = pytest.mark.integration


async def test_a_wrong_config_keeps_the_running_bot(stack: RunningStack) -> None:
    maubot: MaubotServer = stack.maubot
    room_id = await stack.room("Config on the fly")
    base = json.loads(instance_config(stack.synapse, [stack.admin.user_id], **stack.base_config))
    wrong = {
        **base,
        "operators": "x",
        "invites": {"max_attempts": "many"},
        "rate_limits": {"session": {"burst": -3}},
    }
    mark = len(maubot.log_text())
    # Raises on any HTTP error, a 500 included.
    await maubot.set_instance_config(stack.instance_id, json.dumps(wrong))
    assert (await maubot.get_instance(stack.instance_id))["started"] is True
    # maubot answers after the plugin handled the config, so the log line is there now.
    log = maubot.log_text()[mark:]
    refusal = next(line for line in log.splitlines() if "NOT applied" in line)
    for key in ("operators:", "invites.max_attempts:", "rate_limits.session:"):
        assert key in refusal, refusal
    assert "Traceback" not in log

    # Still working on the old settings: the admin is still an operator, links invite.
    link = await stack.link(room_id)
    person = await stack.user("unaffected")
    async with await stack.signed_in(person) as http:
        async with http.post("api/links/claim", json={"token": link.rsplit("#", 1)[1]}) as resp:
            assert resp.status == 202, await resp.text()
    await stack.admin.wait_for_membership(room_id, person.user_id, "invite", timeout=60)

    # A good config applies without a restart.
    await stack.configure(invites={"reason": "Welcome aboard"})
    later = await stack.user("after")
    link = await stack.link(room_id)
    async with await stack.signed_in(later) as http:
        async with http.post("api/links/claim", json={"token": link.rsplit("#", 1)[1]}) as resp:
            assert resp.status == 202
    await stack.admin.wait_for_membership(room_id, later.user_id, "invite", timeout=60)
    state = await stack.admin.room_state(room_id)
    [member] = [e for e in state if e.get("state_key") == later.user_id]
    assert member["content"].get("reason") == "Welcome aboard"
    await stack.configure()
