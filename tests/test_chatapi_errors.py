"""Which 400 a chat completions body with several mistakes gets: the one it got before the request
mapping was shared with the Responses API (ChatRequest.build), so a client sees the same error for
the same body. The fields were checked in this order: types (budget, sampling, seed), top_k's sign,
stream, stream_options, include_usage, stop, then the budget's and the sampling values' ranges."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.chatrequest import ChatRequest, RequestError

HELLO = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"max_tokens": 0, "stream_options": {"include_usage": "x"}}, "stream_options"),
        ({"max_completion_tokens": 0, "stop": 5}, "stop"),
        ({"temperature": float("nan"), "stop": ["a"] * 5}, "stop"),
        ({"top_p": 2, "stream_options": {"include_usage": 1}}, "stream_options"),
        ({"seed": 2**64, "top_p": 2}, "top_p"),  # the seed's range was the sampler's last check
        ({"seed": 2**64, "max_tokens": 0}, "max_tokens"),
        ({"seed": 2**64, "stop": 5}, "stop"),
        ({"max_tokens": 0, "temperature": -1}, "max_tokens"),
    ],
)
def test_a_body_with_two_mistakes_is_told_the_same_one_as_before(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(RequestError) as err:
        ChatRequest.parse({"messages": HELLO, **extra})
    assert err.value.param == param


def test_a_seed_out_of_int64_alone_still_names_the_seed() -> None:
    with pytest.raises(RequestError, match="64-bit") as err:
        ChatRequest.parse({"messages": HELLO, "seed": -(2**63) - 1})
    assert err.value.param == "seed"
    assert ChatRequest.parse({"messages": HELLO, "seed": -1}).seed == 2**63 - 1
