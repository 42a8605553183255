"""`./dev demo`: the plugin for real on this machine, every path ready to try in a browser.

Starts the stack (devtools/stack.py: Synapse on loopback, open to sign-ups with a
registration token only, and a full maubot server running the built .mbp on SQLite, an
admin and the bot) and the tests' local GitHub (devtools/demo_github.py: a sign-in page
where a person picks or types the account) with two ready accounts, one in the demo's
organisation and one not. The plugin is configured for that GitHub and for registration
tokens on this Synapse. Then, exactly as a room admin would, the demo admin asks the bot
for an invite link in one room (`!invitebot link`) and binds a second room to the
organisation (`!invitebot bind github org:...`), both offering new accounts (`--register`).
Prints the links, the accounts to sign in with and the admin panel's address, then runs
until Ctrl-C. State lives in .demo/ and is started afresh on every run.

`./dev demo` puts tests/ on the path (as pytest does, pyproject.toml) for the local GitHub.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
import re
import shutil
import signal

from devtools.demo_github import DemoGitHub
from devtools.stack import RunningStack, running_stack

ROOT = Path(__file__).resolve().parent.parent
ORG = "demo-org"
MEMBER = "demo-member"  # a GitHub account in ORG
OUTSIDER = "demo-outsider"  # one that is not
# Synapse lets people sign up only with a registration token, which the bot mints for
# someone who qualified (the `registration:` section of the plugin's config).
TOKEN_REGISTRATION = {"enable_registration": True, "registration_requires_token": True}
BINDING_LINK = re.compile(r"https?://\S+/join#[A-Za-z0-9_-]{16}")


async def bind(stack: RunningStack, room_id: str, rules: str) -> str:
    """`!invitebot bind RULES` typed by the demo admin in the room: the binding's link."""
    event_id = await stack.admin.send_text(room_id, f"!invitebot bind {rules}")
    reply = await stack.admin.wait_for_message(
        room_id,
        lambda c: c.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id") == event_id,
        sender=stack.bot.user_id,
        timeout=60,
    )
    match = BINDING_LINK.search(reply["body"])
    if match is None:
        raise RuntimeError(f"the bot did not bind the room: {reply['body']}")
    return match.group(0)


async def configure(stack: RunningStack, github: DemoGitHub) -> None:
    """The plugin's github provider at the local GitHub (its OAuth app's callback is the
    plugin's), and registration tokens minted on this Synapse by a server admin."""
    operator = await stack.synapse.register_user("demo-operator", admin=True)
    section = github.config_section(callback_url=f"{stack.web_url}api/oauth/callback")
    await stack.configure(
        providers={"github": section},
        registration={
            "server_name": stack.synapse.server_name,
            "admin_api_url": stack.synapse.base_url,
            "admin_token": operator.access_token,
        },
    )
    await stack.wait_web_ready()


async def run(state_dir: Path, password: str) -> None:
    # A fresh start every time: no stale ports or tokens.
    shutil.rmtree(state_dir, ignore_errors=True)  # before anything runs
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("Starting Synapse, maubot and a local GitHub on 127.0.0.1 ...", flush=True)
    async with (
        DemoGitHub() as github,
        running_stack(
            state_dir,
            password=password,
            admin_name="demo-admin",
            bot_name="invitebot",
            instance_id="invitebot",
            synapse_config=TOKEN_REGISTRATION,
            rate_limits=True,  # the plugin as operators run it
        ) as stack,
    ):
        try:
            github.add_org(ORG)
            github.add_ready_account(MEMBER, ORG, f"(a member of {ORG})")
            github.add_ready_account(OUTSIDER, None, f"(not in {ORG})")
            await configure(stack, github)
            user = await stack.synapse.register_user("demo-user", password)
            room_id = await stack.room("Demo room")
            link = await stack.link(room_id, "--uses 10 --expires 1d --register")
            org_room = await stack.room(f"{ORG} members", topic=f"For the members of {ORG}.")
            binding = await bind(stack, org_room, f"github org:{ORG} --register")
            maubot = stack.maubot
            server = stack.synapse.server_name
            print(
                f"""
thirdparty_invite demo is running.

  Invite link to "Demo room" (open it in a browser):
    {link}
  Binding link to "{ORG} members" (members of the GitHub organisation {ORG}):
    {binding}

  Sign in on those pages with:
    Matrix ID  {user.user_id}
    Password   {password}
  or press "No Matrix account? Create one on {server}" to make a new one.

  At the local GitHub (its sign-in page asks which account; no password):
    {MEMBER:<14} a member of {ORG}: admitted
    {OUTSIDER:<14} not in {ORG}: refused
  Each GitHub account admits one Matrix account.

  Admin panel       {stack.web_url}manage
    Matrix ID       {stack.admin.user_id}
    Password        {password}

  Homeserver        {stack.synapse.base_url}   (room admin: {stack.admin.user_id})
  Local GitHub      {github.url}
  maubot manager    {maubot.base_url}/_matrix/maubot   (user {maubot.admin.username},
                    password {maubot.admin.password})
  Logs              {stack.synapse.log_path}, {maubot.log_path}

Press Ctrl-C to stop.""",
                flush=True,
            )
            await stop.wait()
        finally:
            print("\nStopping ...", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".demo")
    parser.add_argument("--password", default="demo-password-1")
    args = parser.parse_args()
    asyncio.run(run(args.state_dir, args.password))


if __name__ == "__main__":
    main()
