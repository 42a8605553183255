"""`./dev demo`: the plugin for real on this machine, with a link to try in a browser.

Starts a Synapse on loopback and a full maubot server running the built .mbp on SQLite,
creates an admin, a bot and a demo account, a room the bot manages, and asks the bot
for an invite link exactly as a room admin would (`!invitebot link`). Prints the link
and the account to sign in with, then runs until Ctrl-C. State lives in .demo/ and is
started afresh on every run.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
import shutil
import signal

from devtools.maubot_server import MaubotServer
from devtools.plugin import ask_for_link, build_mbp, room_managed_by_bot, start_plugin
from devtools.ports import free_port
from devtools.synapse import SynapseServer

ROOT = Path(__file__).resolve().parent.parent


async def run(state_dir: Path, password: str) -> None:
    # A fresh start every time: no stale ports or tokens.
    shutil.rmtree(state_dir, ignore_errors=True)  # before anything runs
    port = free_port()
    synapse = SynapseServer(
        state_dir / "synapse",
        port=port,
        # The invite page finds the homeserver through .well-known, as for any server.
        extra_config={"serve_client_wellknown": True},
    )
    maubot = MaubotServer(state_dir / "maubot", homeserver_url=synapse.base_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        print("Starting Synapse and maubot on 127.0.0.1 ...", flush=True)
        await synapse.start()
        await maubot.start()
        admin = await synapse.register_user("demo-admin", password)
        bot = await synapse.register_user("invitebot")
        user = await synapse.register_user("demo-user", password)
        await start_plugin(maubot, synapse, bot, [admin.user_id], "invitebot", build_mbp())
        room_id = await room_managed_by_bot(admin, bot, "Demo room")
        url, token = await ask_for_link(admin, bot, room_id, "--uses 10 --expires 1d")
        link = f"{url}#{token}"
        print(
            f"""
thirdparty_invite demo is running.

  Invite link (open it in a browser):
    {link}

  Sign in on that page with:
    Matrix ID  {user.user_id}
    Password   {password}

  Homeserver        {synapse.base_url}   (room admin: {admin.user_id}, same password)
  maubot manager    {maubot.base_url}/_matrix/maubot   (user {maubot.admin.username},
                    password {maubot.admin.password})
  Logs              {state_dir}/synapse/homeserver.log, {state_dir}/maubot/maubot.log

Press Ctrl-C to stop.""",
            flush=True,
        )
        await stop.wait()
    finally:
        print("\nStopping ...", flush=True)
        await maubot.stop()
        await synapse.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".demo")
    parser.add_argument("--password", default="demo-password-1")
    args = parser.parse_args()
    asyncio.run(run(args.state_dir, args.password))


if __name__ == "__main__":
    main()
