"""The RPC client against a real broker: calls to a service that has never started must fail
fast instead of waiting out the timeout (found when a fresh broker hung a consumer's
catch-up for 30 s)."""

from __future__ import annotations

import time

import pytest

from tuoyu_shared.rpc import RpcClient, UnknownService


def test_call_to_a_service_with_no_queue_fails_fast(servers, unique):
    client = RpcClient(servers.amqp_uri, timeout=20)
    started = time.monotonic()
    with pytest.raises(UnknownService):
        client.call(f"nobody-{unique}", "log_head")
    assert time.monotonic() - started < 5
    client.close()
