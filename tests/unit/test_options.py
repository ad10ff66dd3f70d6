"""Templated argv elements that render to an option are refused; literal ones are the
playbook author's and pass."""

from __future__ import annotations

from typing import Any

import pytest

from runner.options import OptionRefused, refuse_templated_options

RAW = {"argv": ["sync-engine", "--client", "{{ params.client }}", "--force"]}


@pytest.mark.parametrize("value", ["--reset", "-rf", "-"])
def test_a_templated_element_rendering_to_an_option_is_refused(value: str) -> None:
    rendered = {"argv": ["sync-engine", "--client", value, "--force"]}
    with pytest.raises(OptionRefused, match=r"argv\[2\]: .* starts with '-'"):
        refuse_templated_options(RAW, rendered)
    refuse_templated_options(RAW, rendered, allowed=True)


def test_literal_options_and_plain_values_pass() -> None:
    refuse_templated_options(RAW, {"argv": ["sync-engine", "--client", "acme", "--force"]})
    refuse_templated_options({"argv": ["ls", "-l"]}, {"argv": ["ls", "-l"]})


@pytest.mark.parametrize("raw", ["{{ steps.x.argv }}", ["{{ 'ls' }}", "{{ '-la' }}"]])
def test_every_element_of_a_templated_list_is_checked(raw: Any) -> None:
    with pytest.raises(OptionRefused, match=r"argv\[1\]"):
        refuse_templated_options({"argv": raw}, {"argv": ["ls", "-la"]})
