"""The shared retrying session (connectors.http): one retry policy, instant in tests."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest
import requests
import responses
from responses.registries import OrderedRegistry

from connectors.errors import CrmDataError, RetriableAPIError
from connectors.http import (
    RetriesExhausted,
    RetryPolicy,
    describe,
    make_session,
    parse_retry_after,
    read_json,
)
from connectors.redact import register_secret

URL = "https://crm.example.test/api/things"


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(
        assert_all_requests_are_fired=True, registry=OrderedRegistry
    ) as mock:
        yield mock


def test_retries_5xx_then_succeeds_with_backoff_and_jitter(mocked: responses.RequestsMock) -> None:
    slept: list[float] = []
    mocked.get(URL, status=503)
    mocked.get(URL, status=502)
    mocked.get(URL, json={"ok": True})
    session = make_session(sleep=slept.append, rng=random.Random(7),
                           retry=RetryPolicy(base_delay=1.0, jitter=0.5))
    assert session.get(URL).json() == {"ok": True}
    assert len(slept) == 2
    assert 1.0 <= slept[0] <= 1.5
    assert 2.0 <= slept[1] <= 2.5
    assert session.attempts == 3


def test_429_waits_what_retry_after_asks(mocked: responses.RequestsMock) -> None:
    slept: list[float] = []
    mocked.post(URL, status=429, headers={"Retry-After": "7"})
    mocked.post(URL, json={})
    session = make_session(sleep=slept.append, retry=RetryPolicy(jitter=0.0))
    assert session.post(URL, json={"a": 1}).status_code == 200
    assert slept == [7.0]


def test_retry_after_callback_overrides_the_header(mocked: responses.RequestsMock) -> None:
    slept: list[float] = []
    mocked.get(URL, status=429)
    mocked.get(URL, json={})
    session = make_session(sleep=slept.append, retry=RetryPolicy(jitter=0.0),
                           retry_after=lambda response: 10.0)
    session.get(URL)
    assert slept == [10.0]


def test_too_long_retry_after_gives_up_at_once(mocked: responses.RequestsMock) -> None:
    mocked.get(URL, status=477, headers={"Retry-After": "7200"})
    session = make_session(sleep=pytest.fail, retry=RetryPolicy(max_retry_after=60))
    with pytest.raises(RetriesExhausted, match="7200 s"):
        session.get(URL)


def test_exhausted_retries_raise_a_redacted_error(mocked: responses.RequestsMock) -> None:
    register_secret("sk-very-secret-value")
    for _ in range(3):
        mocked.get(URL, status=500, body="oops sk-very-secret-value")
    session = make_session(sleep=lambda s: None, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(RetriableAPIError) as caught:
        session.get(URL, params={"token": "abc123"}, headers={"Authorization": "Bearer xyz"})
    text = str(caught.value)
    assert "HTTP 500" in text
    assert "gave up after 3 attempts" in text
    assert "sk-very-secret-value" not in text
    assert "abc123" not in text
    assert "Bearer" not in text
    assert caught.value.status == 500  # type: ignore[attr-defined]


def test_connection_errors_and_timeouts_are_retried(mocked: responses.RequestsMock) -> None:
    mocked.get(URL, body=requests.ConnectionError("reset"))
    mocked.get(URL, body=requests.Timeout("slow"))
    mocked.get(URL, json=[1])
    seen: list[int | None] = []
    session = make_session(
        sleep=lambda s: None,
        on_request=lambda req, resp: seen.append(None if resp is None else resp.status_code),
    )
    assert session.get(URL).json() == [1]
    assert seen == [None, None, 200]


def test_not_retryable_statuses_are_returned_untouched(mocked: responses.RequestsMock) -> None:
    mocked.get(URL, status=404, json={"message": "nope"})
    session = make_session(sleep=pytest.fail)
    assert session.get(URL).status_code == 404


def test_custom_is_retryable(mocked: responses.RequestsMock) -> None:
    mocked.get(URL, status=429, json={"policyName": "DAILY"})
    session = make_session(sleep=pytest.fail, is_retryable=lambda r: r.status_code != 429)
    assert session.get(URL).status_code == 429


def test_limiter_runs_before_every_attempt(mocked: responses.RequestsMock) -> None:
    mocked.get(URL, status=503)
    mocked.get(URL, json={})
    calls: list[str] = []
    session = make_session(sleep=lambda s: None, limiter=lambda req: calls.append(str(req.url)))
    session.get(URL)
    assert calls == [URL, URL]


def test_default_timeout_is_applied(mocked: responses.RequestsMock) -> None:
    mocked.get(URL, json={})
    session = make_session(timeout=12.5)
    session.get(URL)
    assert mocked.calls[0].request.req_kwargs["timeout"] == 12.5


def test_environment_is_ignored_and_proxies_are_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:1")
    session = make_session()
    assert session.trust_env is False
    settings = session.merge_environment_settings(URL, {}, None, True, None)
    assert settings["verify"] is True
    assert settings["proxies"] == {}
    explicit = make_session(proxies={"https": "http://proxy.example:3128"})
    assert explicit.proxies == {"https": "http://proxy.example:3128"}


def test_read_json_turns_html_and_bad_json_into_one_clear_error(
    mocked: responses.RequestsMock,
) -> None:
    mocked.get(URL, body="<!DOCTYPE html><html>502</html>", content_type="text/html")
    mocked.get(URL, body='{"results": [', content_type="application/json")
    session = make_session()
    with pytest.raises(CrmDataError, match="an HTML page"):
        read_json(session.get(URL), "things")
    with pytest.raises(CrmDataError, match="expected JSON"):
        read_json(session.get(URL), "things")


def test_error_excerpts_mask_email_addresses(mocked: responses.RequestsMock) -> None:
    mocked.get(URL, body='{"results": [{"email": "jane.doe+x@example.co.uk"', status=200,
               content_type="application/json")
    with pytest.raises(CrmDataError) as caught:
        read_json(make_session().get(URL), "contacts")
    assert "jane.doe" not in str(caught.value)
    assert '"email": "[email]"' in str(caught.value)


def test_describe_never_shows_headers(mocked: responses.RequestsMock) -> None:
    mocked.get(URL, status=400, json={"message": "bad"})
    response = make_session().get(URL, headers={"Authorization": "Bearer top-secret-123"})
    text = describe(response)
    assert text.startswith("HTTP 400 from GET https://crm.example.test/api/things")
    assert "top-secret" not in text


def test_parse_retry_after_forms() -> None:
    def response(value: str | None) -> requests.Response:
        r = requests.Response()
        if value is not None:
            r.headers["Retry-After"] = value
        return r

    assert parse_retry_after(response("3")) == 3.0
    assert parse_retry_after(response(None)) is None
    assert parse_retry_after(response("soon")) is None
    http_date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert parse_retry_after(response(http_date), now=1445412480.0 - 60) == 60.0


def test_retry_policy_validates() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    assert RetryPolicy(base_delay=2, max_delay=5, jitter=0).backoff(10) == 5
