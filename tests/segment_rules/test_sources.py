"""Activity rules on CRMs that keep some activity only as roll-ups, or not at all.

``adapt`` rewrites what a CRM's roll-ups answer exactly and refuses the rest; the
rewritten rules are evaluated here on hand-built stores whose contacts carry roll-up
fields (last dates as ISO 8601 with and without an offset, and as epoch milliseconds).
"""

from __future__ import annotations

import datetime as dt

import pytest

from segment_rules.kinds.rollup import RollupCondition, rollup_field
from segment_rules.schema import Group
from segment_rules.sources import EVENTS_EVERYWHERE, adapt, describe_sources
from tests.segment_rules.helpers import NOW, days_ago, make_store, members, segments

HUBSPOT = {**EVENTS_EVERYWHERE, "email_open": "rollup", "email_click": "rollup",
           "page_view": "rollup", "form_submission": "rollup"}
SALESFORCE = {**EVENTS_EVERYWHERE, "email_open": "none", "email_click": "none",
              "page_view": "none", "form_submission": "none", "note": "none"}
LAST = rollup_field("email_open", "last")
COUNT = rollup_field("email_open", "count")


def ms(moment: dt.datetime) -> str:
    return str(int(moment.replace(tzinfo=dt.UTC).timestamp() * 1000))


@pytest.fixture
def store():  # type: ignore[no-untyped-def]
    people = {
        # opened 5 days ago (ISO, UTC), 4 opens in all
        "recent": {LAST: days_ago(5).isoformat() + "Z", COUNT: "4"},
        # opened 40 days ago (epoch ms), once
        "older": {LAST: ms(days_ago(40)), COUNT: "1"},
        # 29.5 days ago at +02:00 local time: 29.58 days ago in UTC, inside 30 days
        "offset": {LAST: (days_ago(29.5) + dt.timedelta(hours=2)).isoformat() + "+02:00",
                   COUNT: "2"},
        "never": {LAST: None, COUNT: "0"},
        "caller": {LAST: None, COUNT: None},
    }
    others = {rollup_field(kind, part): None for kind in ("email_click", "page_view",
                                                          "form_submission")
              for part in ("last", "count")}
    events = [("caller", "call", days_ago(3), None)]
    with make_store({k: {**others, **v} for k, v in people.items()}, events=events) as built:
        yield built


def rules(text: str, sources=HUBSPOT):  # type: ignore[no-untyped-def]
    adapted = adapt(segments(text), sources, "HubSpot")
    return adapted


def seg(condition: str) -> str:
    return f'[[segment]]\nkey = "s"\nexclude_opted_out = false\nall = [{condition}]\n'


def test_events_everywhere_changes_nothing() -> None:
    text = seg('{ activity = "email_open", at_least = 3, within_days = 90 }')
    assert adapt(segments(text), EVENTS_EVERYWHERE, "the CSV export").segments == tuple(
        segments(text))


@pytest.mark.parametrize(("condition", "expected"), [
    ('{ activity = "email_open", at_least = 1, within_days = 30 }', {"recent", "offset"}),
    ('{ activity = "email_open", none_within_days = 30 }', {"older", "never", "caller"}),
    ('{ activity = "email_open", at_most = 0 }', {"never", "caller"}),
    ('{ activity = "email_open", at_least = 1 }', {"recent", "older", "offset"}),
    ('{ activity = "email_open", at_least = 2 }', {"recent", "offset"}),
    ('{ activity = "email_open", metric = "days_since_last", op = "gt", value = 30 }',
     {"older"}),
    ('{ activity = ["call", "email_open"], at_least = 1, within_days = 4 }', {"caller"}),
    ('{ activity = ["call", "email_open"], at_least = 1, within_days = 6 }',
     {"caller", "recent"}),
    ('{ activity = "any", none_within_days = 10 }', {"older", "offset", "never"}),
])
def test_roll_ups_answer_what_they_can_exactly(store, condition: str,  # type: ignore[no-untyped-def]
                                                expected: set[str]) -> None:
    adapted = rules(seg(condition))
    assert adapted.problems == ()
    assert members(store, list(adapted.segments))["s"] == expected


def test_the_rewrite_is_a_roll_up_condition_or_its_negation() -> None:
    (opened,) = rules(seg('{ activity = "email_open", at_least = 1, within_days = 30 }')).segments
    (leaf,) = opened.rule.children  # type: ignore[attr-defined]
    assert leaf == RollupCondition(("email_open",), "exists", within_days=30)
    (quiet,) = rules(seg('{ activity = "email_open", none_within_days = 30 }')).segments
    (negated,) = quiet.rule.children  # type: ignore[attr-defined]
    assert isinstance(negated, Group)
    assert negated.kind == "not"


def test_counts_in_a_window_are_refused_with_the_closest_rule() -> None:
    adapted = rules(seg('{ activity = "email_click", at_least = 3, within_days = 90 }'))
    (problem,) = adapted.problems
    assert problem.path == "segment[s].all[0]"
    assert "HubSpot keeps email_click only as a last date and a lifetime count" in (
        problem.message)
    assert "how many there were within 90 days" in problem.message
    assert '{ activity = "email_click", at_least = 1, within_days = 90 }' in problem.hint
    assert '{ activity = "email_click", at_least = 3 }' in problem.hint


def test_an_all_time_count_is_answered_and_noted() -> None:
    adapted = rules(seg('{ activity = "email_open", at_least = 2 }'))
    assert adapted.problems == ()
    assert any("counted over all time" in note for note in adapted.notes)


def test_activity_a_crm_does_not_keep_is_refused_when_named() -> None:
    adapted = rules(seg('{ activity = ["email_open", "call"], at_least = 1 }'), SALESFORCE)
    (problem,) = adapted.problems
    assert "does not record email_open activity" in problem.message
    assert "use call" in problem.hint
    assert rules(seg('{ activity = "any", none_within_days = 30 }'), SALESFORCE).problems == ()


def test_check_describes_each_crm() -> None:
    lines = describe_sources(HUBSPOT, "HubSpot")
    assert any(line.startswith("activity on HubSpot: roll-ups") and "email_open" in line
               for line in lines)
    assert any('"any" on HubSpot covers' in line and "email_open (roll-up)" in line
               for line in lines)
    sf = describe_sources(SALESFORCE, "Salesforce")
    assert any("not available for email_open" in line for line in sf)


def test_a_refused_rule_stops_the_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import tomllib

    from sync.config import parse_config
    from sync.errors import ConfigError

    text = ('[crm]\ntype = "hubspot"\n[store]\npath = "s.duckdb"\n'
            + seg('{ activity = "email_open", at_least = 3, within_days = 90 }'))
    with pytest.raises(ConfigError, match="only as a last date and a lifetime count"):
        parse_config(tomllib.loads(text), tmp_path / "segsync.toml")
    fine = ('[crm]\ntype = "hubspot"\n[store]\npath = "s.duckdb"\n'
            + seg('{ activity = "email_open", at_least = 1, within_days = 90 }'))
    config = parse_config(tomllib.loads(fine), tmp_path / "segsync.toml")
    assert config.activity_sources["email_open"] == "rollup"
    assert NOW  # the store-less path needs no clock
