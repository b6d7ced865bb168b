"""Facts a newcomer reads in README.md (session 35's fresh read), pinned to the code that makes
them true, so that a change on either side fails here until the other follows."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from pipeline import serve

ROOT = Path(__file__).resolve().parents[1]
# Joined on single spaces: the pins must not break on where a line of prose wraps.
README = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_readme_says_how_a_second_stop_signal_exits_serve(
    second: signal.Signals, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user whose serve hangs in its 10 s stop presses Ctrl-C again: README must say that this
    quits at once, and with the status the handler really exits with."""
    exits: list[int] = []
    monkeypatch.setattr(serve.os, "_exit", exits.append)  # the real one would end pytest
    with serve._stop_signals():
        handler = signal.getsignal(signal.SIGINT)
        assert callable(handler)
        with pytest.raises(KeyboardInterrupt):  # the first signal starts the orderly stop
            handler(signal.SIGINT, None)
        handler(second, None)
    assert "serve: stopping now" in capsys.readouterr().err
    assert exits == [128 + second]
    statuses = f"with status {128 + signal.SIGINT} (SIGTERM: {128 + signal.SIGTERM})"
    assert f"A second Ctrl-C or SIGTERM while it stops exits at once, without waiting, {statuses}" in README


def test_readmes_serving_section_names_every_route_serve_answers() -> None:
    """A route serve answers (its health check included) is named where a newcomer reads about
    serve, so a new one cannot ship unmentioned."""
    start = README.index("## Serving")
    section = README[start : README.index("## ", start + 1)]
    assert serve.ROUTES, "serve.ROUTES is empty: the test reads the wrong table"
    unnamed = [route for route in serve.ROUTES if f"{route}`" not in section and f"{route} " not in section]
    assert not unnamed, f"README's Serving section does not name {unnamed}"
