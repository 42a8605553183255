"""The claims of an OpenID Connect provider's rules: which claim (and which scope) each rule
word reads, and how a claim's value matches the rule's.

Config: `claims` maps a rule's word to the claim it reads (a dotted name reaches into
objects: `realm_access.roles`) and the scope that releases it: `groups: {claim: roles,
scope: ""}` makes `groups:staff` read `roles`; `department: {claim: department}` adds a
word; `sub: null` removes one.

Matching: a list claim holds when one element matches; a leading "/" is ignored on both
sides, so `groups:staff` matches Keycloak's full group path "/staff" (but not
"/staff/admins": use `groups:/staff/*` for a subtree). A value with *, ? or [ is a glob
(fnmatch). `email` compares without case; other claims with case. Booleans match
`true`/`false`.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
import re
from typing import Any

import attrs

WORD = re.compile(r"[a-z][a-z0-9_]{0,39}")
SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,100}")  # RFC 6749's scope-token characters
MISSING = object()  # what lookup_claim finds for a claim that is not there


@attrs.frozen
class ClaimSpec:
    claim: str  # the claim's name; a dotted name reaches into objects
    scope: str = ""  # the scope that releases it ("" = none beyond openid)
    ignore_case: bool = False


DEFAULT_CLAIMS = {
    "groups": ClaimSpec("groups", "groups"),
    "email": ClaimSpec("email", "email", ignore_case=True),
    "email_verified": ClaimSpec("email_verified", "email"),
    "sub": ClaimSpec("sub"),
}


def read_claims(raw: Any) -> dict[str, ClaimSpec]:
    claims = dict(DEFAULT_CLAIMS)
    if raw is None:
        return claims
    if not isinstance(raw, dict):
        raise ValueError("claims: must map rule words to claims, e.g. {groups: {claim: roles}}")
    for word, spec in raw.items():
        if not isinstance(word, str) or not WORD.fullmatch(word):
            raise ValueError(f"claims: {word!r} is not a word (lower-case letters, digits, _)")
        if spec is None:
            claims.pop(word, None)
            continue
        if isinstance(spec, str):
            spec = {"claim": spec}
        if not isinstance(spec, dict) or set(spec) - {"claim", "scope", "ignore_case"}:
            raise ValueError(
                f"claims.{word}: must be a claim name or {{claim, scope, ignore_case}}"
            )
        claim = spec.get("claim", word)
        if not isinstance(claim, str) or not 0 < len(claim) <= 200:
            raise ValueError(f"claims.{word}.claim: must be a claim name")
        scope = spec.get("scope") or ""
        if not isinstance(scope, str) or (scope and not SCOPE.fullmatch(scope)):
            raise ValueError(f"claims.{word}.scope: must be one scope name, or empty")
        ignore_case = spec.get("ignore_case", word == "email")
        if not isinstance(ignore_case, bool):
            raise ValueError(f"claims.{word}.ignore_case: must be true or false")
        claims[word] = ClaimSpec(claim, scope, ignore_case)
    return claims


def lookup_claim(claims: Mapping[str, Any], name: str) -> Any:
    """The claim `name`, or under a dotted name the value inside nested objects; MISSING
    when absent. A claim whose own name has dots (URLs do) is found first."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def group_overage(claims: Mapping[str, Any], name: str) -> bool:
    """Whether Microsoft Entra left the claim `name` out because it holds too many groups:
    it names it in `_claim_names` (a distributed claim, OpenID Connect Core 5.6.2), or
    says `hasgroups: true` for `groups`."""
    names = claims.get("_claim_names")
    top = name.split(".", 1)[0]
    if isinstance(names, dict) and (name in names or top in names):
        return True
    return top == "groups" and claims.get("hasgroups") is True


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def claim_matches(value: Any, wanted: str, ignore_case: bool) -> bool:
    if isinstance(value, list):
        return any(_scalar_matches(item, wanted, ignore_case, in_list=True) for item in value)
    return _scalar_matches(value, wanted, ignore_case, in_list=False)


def _scalar_matches(value: Any, wanted: str, ignore_case: bool, *, in_list: bool) -> bool:
    if isinstance(value, bool):
        return wanted.lower() == ("true" if value else "false")
    if isinstance(value, int | float):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        return False
    if in_list:  # Keycloak's full group paths start with "/"
        text, wanted = text.removeprefix("/"), wanted.removeprefix("/")
    if text.lower() in ("true", "false") and wanted.lower() in ("true", "false"):
        ignore_case = True  # booleans some providers send as strings
    if ignore_case:
        text, wanted = text.casefold(), wanted.casefold()
    return fnmatchcase(text, wanted) if is_glob(wanted) else text == wanted
