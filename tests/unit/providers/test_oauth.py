"""The shared OAuth client's small pieces, without a network: how long a rate-limited
provider asks us to wait, and HTTP Basic client authentication as RFC 6749 spells it."""

from __future__ import annotations

import base64
from email.utils import formatdate
import time
from typing import Any
from urllib.parse import unquote_plus

import pytest

from thirdparty_invite.providers.oauth import ApiResponse, basic_authorization, failure_detail


def answer(status: int = 429, body: Any = None, **headers: str) -> ApiResponse:
    return ApiResponse(status, {k.replace("_", "-").lower(): v for k, v in headers.items()}, body)


def test_retry_after_reads_the_body_then_retry_after_then_the_reset() -> None:
    both = answer(Retry_After="30", X_RateLimit_Reset=str(int(time.time()) + 600))
    assert both.retry_after(2.5) == 2.5  # the body's number is the most precise
    assert both.retry_after() == 30.0
    assert both.retry_after(True) == 30.0  # a boolean is no number of seconds
    reset_only = answer(X_RateLimit_Reset=str(int(time.time()) + 600))
    assert 590 < (reset_only.retry_after() or 0) <= 600
    assert answer().retry_after() is None
    assert answer(Retry_After="soon").retry_after() is None
    assert answer(Retry_After="nan").retry_after(float("inf")) is None


def test_retry_after_as_an_http_date() -> None:
    in_two_minutes = formatdate(time.time() + 120, usegmt=True)
    assert 110 < (answer(Retry_After=in_two_minutes).retry_after() or 0) <= 120
    passed = formatdate(time.time() - 60, usegmt=True)
    assert (answer(Retry_After=passed).retry_after() or 0) < 0


@pytest.mark.parametrize(
    ("response", "hint", "detail"),
    [
        (answer(), 64.6, "rate limited, retry in 65 s"),
        (answer(Retry_After="0.2"), None, "rate limited, retry in 1 s"),
        (answer(Retry_After="0"), None, "rate limited"),
        (answer(), None, "rate limited"),
        (answer(401), None, "it refused the sign-in it had just granted"),
        (answer(200), None, "its answer was not what its documentation describes"),
        (answer(404), None, "HTTP 404"),
    ],
)
def test_failure_detail(response: ApiResponse, hint: Any, detail: str) -> None:
    assert failure_detail(response, hint) == detail


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [("1234", "s3cret"), ("my app", "a:b+c%d/e&f=g ü")],
)
def test_basic_authorization_form_encodes_before_base64(client_id: str, secret: str) -> None:
    header = basic_authorization(client_id, secret)
    scheme, _, encoded = header.partition(" ")
    pair = base64.b64decode(encoded).decode("ascii")  # nothing but form-encoded ASCII
    given_id, colon, given_secret = pair.partition(":")
    assert scheme == "Basic" and colon and ":" not in given_secret
    assert (unquote_plus(given_id), unquote_plus(given_secret)) == (client_id, secret)
