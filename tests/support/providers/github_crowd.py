"""A local GitHub alone, with one organisation of M generated members, for benchmarks:

    cd tests && python -m support.providers.github_crowd --members 10000

It prints one JSON line: the `providers.github` config section (with a re-check token of
a member) and the organisation. Then each line read from stdin is a command, answered
with one JSON line: `counts` (listing calls and 304s since the last `counts`, and the
reads of the token's membership), `remove N` (the first N generated members leave),
`leave ID` (the generated member with that id leaves), `add N` (N join). End of input
stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from support.providers.github import API, FakeGitHub


async def serve(members: int, org: str) -> None:
    async with FakeGitHub() as github:
        github.add_org(org)
        operator = github.add_account("operator").join_org(org)
        crowd = github.listings.generate(org, members - 1)
        section: dict[str, Any] = github.config_section()
        section["recheck"] = {"token": github.listings.personal_token(operator, {"read:org"})}
        first = {"operator": operator.id, "first_generated": crowd.first_id}
        print(json.dumps({"section": section, "org": org, **first}), flush=True)
        stop = asyncio.Event()

        def command() -> None:
            line = sys.stdin.readline()
            if not line:
                stop.set()
                return
            word, _, number = line.strip().partition(" ")
            answer: dict[str, Any] = {}
            if word == "counts":
                listings = github.listings
                answer = {"calls": listings.calls, "not_modified": listings.not_modified}
                reads = github.requests_to(f"{API}/user/memberships/orgs/{org}")
                answer["membership_reads"] = len(reads)
                listings.reset_counts()
                github.requests.clear()
            elif word == "remove":
                gone = crowd.ids[: int(number)]
                crowd.remove(*gone)
                answer = {"removed": gone}
            elif word == "leave":
                crowd.remove(int(number))
                answer = {"removed": [int(number)]}
            elif word == "add":
                answer = {"added": crowd.add(int(number))}
            else:
                answer = {"error": f"unknown command {word!r}"}
            print(json.dumps(answer), flush=True)

        asyncio.get_running_loop().add_reader(sys.stdin.fileno(), command)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="A local GitHub with one large organisation.")
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--org", default="crowd")
    args = parser.parse_args()
    asyncio.run(serve(args.members, args.org))


if __name__ == "__main__":
    main()
