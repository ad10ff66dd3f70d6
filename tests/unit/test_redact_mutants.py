"""Redaction cases mutation testing found untested (scripts/mutation runner/redact.py):
stdout and stderr scrubbed once installed, the 100-character bound on a secret-named key,
and a registered secret inside the key of a masked value. The main table is
test_redact.py."""

from __future__ import annotations

import io
import sys

import pytest

from runner.redact import MASK, SECRETS, ScrubbingStream, scrub_stdio

SECRET = "s3cr3t-f0r-stdio"


def test_scrub_stdio_masks_what_both_streams_print_and_wraps_them_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    scrub_stdio()
    scrub_stdio()  # a second call does not wrap the wrapper
    assert isinstance(sys.stdout, ScrubbingStream) and sys.stdout.wrapped is out
    assert isinstance(sys.stderr, ScrubbingStream) and sys.stderr.wrapped is err
    with SECRETS.scope():
        SECRETS.register(SECRET)
        print(f"connected with {SECRET}")
        print(f"Traceback: login {SECRET} refused", file=sys.stderr)
    assert out.getvalue() == f"connected with {MASK}\n"
    assert err.getvalue() == f"Traceback: login {MASK} refused\n"


def test_scrub_stdio_leaves_a_missing_stream_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", None)
    scrub_stdio()
    assert sys.stderr is None
    assert isinstance(sys.stdout, ScrubbingStream)


def test_a_secret_named_key_of_up_to_100_characters_masks_its_value() -> None:
    at_bound, past_it = "password" + "x" * 92, "password" + "x" * 93
    assert (len(at_bound), len(past_it)) == (100, 101)
    assert SECRETS.scrub({at_bound: "hunter", past_it: "hunter"}) == {
        at_bound: MASK, past_it: "hunter"}


def test_a_registered_secret_in_the_key_of_a_masked_value_is_masked_too() -> None:
    with SECRETS.scope():
        SECRETS.register(SECRET)
        assert SECRETS.scrub({f"password of {SECRET}": "v", f"user {SECRET}": "x"}) == {
            f"password of {MASK}": MASK, f"user {MASK}": "x"}
