"""Route matchers read as Alertmanager 0.25 reads `matchers:` in alertmanager.yml: the cases of
its own parser tests (prometheus/alertmanager pkg/labels/parse_test.go, TestMatchers),
then the escapes and what a matcher written the old way (always quoted) still means."""

from __future__ import annotations

import pytest

from runner.daemon.config import Route
from runner.daemon.matchers import Matcher, parse_matcher, parse_matchers

# Alertmanager's TestMatchers, input -> the matchers it expects
ALERTMANAGER_VALID = [
    ('{foo="bar"}', [("foo", "=", "bar")]),
    ('{foo=~"bar.*"}', [("foo", "=~", "bar.*")]),
    ('{foo!="bar"}', [("foo", "!=", "bar")]),
    ('{foo!~"bar.*"}', [("foo", "!~", "bar.*")]),
    ('{foo="bar", baz!="quux"}', [("foo", "=", "bar"), ("baz", "!=", "quux")]),
    ('{foo="bar", baz!~"quux.*"}', [("foo", "=", "bar"), ("baz", "!~", "quux.*")]),
    ('{foo="bar",baz!~".*quux", derp="wat"}',
     [("foo", "=", "bar"), ("baz", "!~", ".*quux"), ("derp", "=", "wat")]),
    ('{foo="bar", baz!="quux", derp="wat"}',
     [("foo", "=", "bar"), ("baz", "!=", "quux"), ("derp", "=", "wat")]),
    ('{foo="bar", baz!~".*quux.*", derp="wat"}',
     [("foo", "=", "bar"), ("baz", "!~", ".*quux.*"), ("derp", "=", "wat")]),
    ('{foo="bar", instance=~"some-api.*"}',
     [("foo", "=", "bar"), ("instance", "=~", "some-api.*")]),
    ('{foo=""}', [("foo", "=", "")]),
    ('{foo="bar,quux", job="job1"}', [("foo", "=", "bar,quux"), ("job", "=", "job1")]),
    ('{foo = "bar", dings != "bums", }', [("foo", "=", "bar"), ("dings", "!=", "bums")]),
    ("foo=bar,dings!=bums", [("foo", "=", "bar"), ("dings", "!=", "bums")]),
    ('{quote="She said: \\"Hi, ladies! That\'s gender-neutral…\\""}',
     [("quote", "=", 'She said: "Hi, ladies! That\'s gender-neutral…"')]),
    ('statuscode=~"5.."', [("statuscode", "=~", "5..")]),
    ("tricky=~~~", [("tricky", "=~", "~~")]),
    ('trickier==\\\\=\\=\\"', [("trickier", "=", '=\\=\\="')]),
    ('contains_quote != "\\"" , contains_comma !~ "foo,bar" , ',
     [("contains_quote", "!=", '"'), ("contains_comma", "!~", "foo,bar")]),
]

# Alertmanager's failing cases (its message in the comment; ours says the same in words)
ALERTMANAGER_INVALID = [
    ("job=", "not present"),  # matcher value is not present
    ('job="value', "double quote"),  # matcher value contains unescaped double quote
    ('job=value"', "double quote"),
    ('trickier==\\\\=\\=\\""', "double quote"),
    ('contains_unescaped_quote = foo"bar', "double quote"),
    ('{invalid-name = "valid label"}', "use label="),  # bad matcher format
    ('{foo=~"invalid[regexp"}', "bad regex"),
    # double-escaped strings (a matcher quoted once too often): bad matcher format
    ('"{foo=\\"bar"}', "use label="),
    ('"foo=\\"bar"', "use label="),
    ('"foo=\\"bar\\""', "use label="),
    ('"foo=\\"bar\\"', "use label="),
    ('"{foo=\\"bar\\"}"', "use label="),
    ('"foo="bar""', "use label="),
]


@pytest.mark.parametrize("text, expected", ALERTMANAGER_VALID)
def test_alertmanagers_own_examples_parse_as_it_parses_them(
        text: str, expected: list[tuple[str, str, str]]) -> None:
    assert parse_matchers(text) == [Matcher(*m) for m in expected]


@pytest.mark.parametrize("text, says", ALERTMANAGER_INVALID)
def test_alertmanagers_own_bad_examples_are_refused(text: str, says: str) -> None:
    with pytest.raises(ValueError, match="bad") as refused:
        parse_matchers(text)
    assert says in str(refused.value)


@pytest.mark.parametrize("text, value", [
    ('msg="a\\\\b"', "a\\b"),  # \\ is one backslash
    ('msg="line1\\nline2"', "line1\nline2"),  # \n is a line feed
    ('msg="say \\"hi\\""', 'say "hi"'),  # \" is a quote
    ('msg="a\\.b"', "a\\.b"),  # any other backslash stays: a regex's \. keeps its meaning
    ('msg="ends\\\\"', "ends\\"),
    ("msg=ends\\", "ends\\"),  # a last lone backslash is literal
    ("msg=\\n", "\n"),  # escapes work unquoted too
    ('msg="two  inner  blanks "', "two  inner  blanks "),  # kept inside quotes
    ("msg =  padded\t", "padded"),  # trimmed outside them
    ("msg=a b", "a b"),
    ("msg=\"\"", ""),
    ("namespace:metric=x", "x"),  # ':' is a valid label-name character
])
def test_escapes_and_blanks(text: str, value: str) -> None:
    (matcher,) = parse_matchers(text)
    assert matcher.value == value


@pytest.mark.parametrize("text, labels, matches", [
    ("alertname=Foo", {"alertname": "Foo"}, True),
    ("alertname=Foo", {"alertname": "Foo2"}, False),
    ('alertname="Foo"', {"alertname": "Foo"}, True),
    ("env=~prod|staging", {"env": "staging"}, True),
    ("env=~prod|staging", {"env": "prod-1"}, False),  # anchored, unquoted as well
    ('path=~"C:\\\\\\\\temp"', {"path": "C:\\temp"}, True),  # \\\\ -> regex \\ -> one '\'
    ('msg="a\\nb"', {"msg": "a\nb"}, True),
])
def test_unquoted_and_escaped_values_match_what_alertmanager_matches(
        text: str, labels: dict[str, str], matches: bool) -> None:
    assert parse_matcher(text).matches(labels) is matches


def test_a_route_entry_may_hold_several_matchers_and_all_must_match() -> None:
    route = Route.model_validate({"name": "r", "playbook": "p",
                                  "match": ['{alertname="Pool", env=~"prod|staging"}',
                                            "team!=db"]})
    assert route.matchers == [Matcher("alertname", "=", "Pool"),
                              Matcher("env", "=~", "prod|staging"), Matcher("team", "!=", "db")]
    assert all(m.matches({"alertname": "Pool", "env": "prod"}) for m in route.matchers)
    assert not all(m.matches({"alertname": "Pool", "env": "prod", "team": "db"})
                   for m in route.matchers)


@pytest.mark.parametrize("old, meaning", [
    ('env="prod"', Matcher("env", "=", "prod")),
    ('env!="prod"', Matcher("env", "!=", "prod")),
    ('env=~"prod.*"', Matcher("env", "=~", "prod.*")),
    ('env!~"a\\.b"', Matcher("env", "!~", "a\\.b")),
    (' env = "prod" ', Matcher("env", "=", "prod")),
    ('msg="say \\"hi\\""', Matcher("msg", "=", 'say "hi"')),
    ('msg="a,b"', Matcher("msg", "=", "a,b")),  # a comma inside quotes splits nothing
])
def test_matchers_written_the_old_way_keep_their_meaning(old: str, meaning: Matcher) -> None:
    assert parse_matchers(old) == [meaning]


def test_a_bad_matcher_in_a_route_fails_when_the_config_loads() -> None:
    with pytest.raises(ValueError, match="double quote"):
        _ = Route.model_validate({"name": "r", "playbook": "p",
                                  "match": ['a="b", c="d']}).matchers
