"""explain agrees with membership, and says it in plain words."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from connectors import create
from segment_rules.explain import explain_contacts, render
from sync.compute import expand_segments
from sync.config import load_config
from sync.engine import run_pull
from sync.store import Store
from tests.conftest import REPO
from tests.segment_rules.helpers import members

AS_OF = dt.datetime(2026, 11, 16)  # the sample data's "today", so windows are stable


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory: pytest.TempPathFactory):
    config = load_config(REPO / "config.example.toml")
    path: Path = tmp_path_factory.mktemp("explain") / "s.duckdb"
    with Store.open(path) as store:
        run_pull(config, create(config.crm), store, clock=lambda: AS_OF)
        segments = expand_segments(store, config.segments, config.per_value)
        yield store, segments, explain_contacts(store.conn, segments, None, AS_OF)


def test_explain_agrees_with_membership_for_every_sample_contact(sample_store) -> None:
    store, segments, explained = sample_store
    expected = members(store, segments, now=AS_OF)
    assert len(explained) == 5000
    for segment in segments:
        got = {cid for cid, items in explained.items()
               for item in items if item.segment.key == segment.key and item.member}
        assert got == expected[segment.key], segment.key
    assert any(expected[s.key] for s in segments if s.key.startswith("rfm-"))
    assert expected["big-spenders-control"]


def test_one_contact_in_plain_words(sample_store) -> None:
    store, segments, everyone = sample_store
    crm_id = next(cid for cid, items in everyone.items()
                  if any(i.member and i.segment.key == "rfm-champions" for i in items))
    (items,) = explain_contacts(store.conn, segments, [crm_id], AS_OF).values()
    assert [i.member for i in items] == [i.member for i in everyone[crm_id]]
    text = render(crm_id, items)
    assert text.startswith(f"Contact {crm_id}")
    assert "IN RFM: Champions [rfm-champions]" in text
    assert "✓ RFM scores over the last 730 days: R 4-5, F 4-5, M 1-5  (actual: R" in text
    assert "in segment 'nps-promoters'" in text
    referral = next(i for i in items if i.segment.key == "referral-candidates")
    assert not referral.member
    assert "✗ not in segment 'rfm-champions'  (actual: member)" in render(crm_id, [referral])
    assert "within 10 km of (52.52, 13.405)" in text


def test_holdout_and_consent_are_explained(sample_store) -> None:
    _, _, everyone = sample_store
    control = next(items for items in everyone.values()
                   if any(i.member and i.segment.key == "big-spenders-control" for i in items))
    spender = next(i for i in control if i.segment.key == "big-spenders")
    assert spender.control is True
    assert spender.member is False
    assert "this contact is in the control group" in render("x", [spender])
    opted_out = next(items for items in everyone.values()
                     if any(i.excluded_by_consent for i in items))
    item = next(i for i in opted_out if i.excluded_by_consent)
    assert "opted out of email" in render("x", [item])
