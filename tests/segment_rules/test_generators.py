"""NPS buckets, RFM tiers, per-value segments, priority splits and holdouts."""

from __future__ import annotations

import random
import tomllib

from segment_rules.compile import holdout_bucket
from segment_rules.evaluate import top_values
from segment_rules.generators import RFM_TIERS, expand_per_value
from segment_rules.parse import parse_rules
from sync.store import contact_key
from tests.segment_rules.helpers import days_ago, make_store, members, segments


def test_nps_buckets_with_missing_and_unreadable_scores() -> None:
    scores = {"0": 0, "6": 6, "7": 7, "8": 8, "9": 9, "10": 10, "none": None, "junk": "n/a",
              "half": 8.5}
    people = {k: {"nps_score": v} for k, v in scores.items()}
    segs = segments('[[segment]]\nkey = "nps"\nname = "NPS"\nkind = "nps"\n')
    assert [(s.key, s.name) for s in segs] == [
        ("nps-promoters", "NPS promoters"), ("nps-passives", "NPS passives"),
        ("nps-detractors", "NPS detractors")]
    with make_store(people) as store:
        got = members(store, segs)
    assert got == {"nps-promoters": {"9", "10"}, "nps-passives": {"7", "8", "half"},
                   "nps-detractors": {"0", "6"}}


def rfm_store():
    # Buyer: (days ago of each purchase, amount each)
    buyers = {
        "champ": ([1, 5, 9, 20, 40], 200.0),
        "big-old": ([600, 610, 620, 630, 640], 500.0),
        "new": ([2], 10.0),
        "lost": ([700], 5.0),
        "mid": ([100, 200], 50.0),
        "out-of-window": ([800], 1000.0),
    }
    events = [(cid, "purchase", days_ago(d), amount) for cid, (ds, amount) in buyers.items()
              for d in ds]
    people = {cid: {"x": 1} for cid in [*buyers, "never"]}
    return make_store(people, events=events)


def test_rfm_tiers_are_exclusive_and_cover_every_buyer_in_the_window() -> None:
    segs = segments('[[segment]]\nkey = "rfm"\nname = "RFM"\nkind = "rfm"\nwindow_days = 730\n')
    assert [s.key for s in segs] == [f"rfm-{t[0]}" for t in RFM_TIERS]
    with rfm_store() as store:
        got = members(store, segs)
        scores = {
            row[0]: row[1:] for row in store.conn.execute(
                "SELECT c._crm_id, r, f, m FROM segment_r730 s JOIN contacts c ON c._cid = s.cid"
            ).fetchall()
        }
    everyone = [cid for seg in got.values() for cid in seg]
    assert sorted(everyone) == sorted(["champ", "big-old", "new", "lost", "mid"])
    assert len(everyone) == len(set(everyone)), "tiers must not overlap"
    # 5 buyers in the window: score = 1 + floor(5 * (rank - 1) / 5); ties share the lower
    # rank, so "new" and "lost" (1 purchase each) both get F=1, "champ" and "big-old" F=4.
    assert scores["champ"] == (5, 4, 4)
    assert scores["big-old"] == (2, 4, 5)
    assert scores["mid"] == (3, 3, 3)
    assert scores["new"] == (4, 1, 2)
    assert scores["lost"] == (1, 1, 1)
    assert got["rfm-champions"] == {"champ"}
    assert got["rfm-cannot-lose"] == {"big-old"}
    assert got["rfm-loyal"] == {"mid"}
    assert got["rfm-potential-loyalist"] == {"new"}
    assert got["rfm-new"] == set()
    assert got["rfm-lost"] == {"lost"}


def test_rfm_subset_of_tiers() -> None:
    segs = segments('[[segment]]\nkey = "r"\nkind = "rfm"\ntiers = ["champions", "lost"]\n')
    assert [s.key for s in segs] == ["r-champions", "r-lost"]
    problems = []
    parse_rules(tomllib.loads('[[segment]]\nkey = "r"\nkind = "rfm"\ntiers = ["champs"]\n')["segment"],
                problems)
    assert "did you mean 'champions'?" in str(problems[0])


def test_per_value_top_n_plus_other() -> None:
    people = {str(i): {"industry": v} for i, v in enumerate(
        ["retail"] * 4 + ["software"] * 3 + ["Health Care"] * 3 + ["mining"] + [None, ""])}
    problems = []
    rules = parse_rules(tomllib.loads(
        '[[segment]]\nkey = "ind"\nname = "Industry"\nkind = "per_value"\nfield = "industry"\ntop = 2\n'
    )["segment"], problems)
    (generator,) = rules.per_value
    with make_store(people) as store:
        values = top_values(store.conn, generator.field, generator.top)
        assert values == ["retail", "Health Care"]  # ties broken by value
        segs = expand_per_value(generator, values)
        got = members(store, segs)
    keys = [s.key for s in segs]
    assert keys[0] == "ind-retail"
    assert keys[1].startswith("ind-health-care-")
    assert keys[2] == "ind-other"
    assert [len(got[k]) for k in keys] == [4, 3, 4]


def test_priority_split_puts_each_contact_in_the_first_match_only() -> None:
    people = {str(i): {"age": i * 10} for i in range(1, 8)}
    segs = segments("""
        [[segment]]
        key = "waterfall"
        kind = "split"
        children = [
          { key = "old", all = [{ field = "age", op = "gte", value = 50 }] },
          { key = "mid", all = [{ field = "age", op = "gte", value = 30 }] },
          { key = "rest", all = [] },
        ]
    """)
    assert [s.generator for s in segs] == ["waterfall"] * 3
    with make_store(people) as store:
        got = members(store, segs)
    assert got == {"old": {"5", "6", "7"}, "mid": {"3", "4"}, "rest": {"1", "2"}}


HOLDOUT = """
[[segment]]
key = "all"
holdout_percent = 10
holdout_salt = "q4"
all = []
"""


def test_holdout_is_the_python_twin_and_splits_members() -> None:
    people = {str(i): {"x": 1} for i in range(2000)}
    segs = segments(HOLDOUT)
    assert [s.key for s in segs] == ["all", "all-control"]
    assert segs[1].store_only
    assert segs[1].control_of == "all"
    with make_store(people) as store:
        got = members(store, segs)
    expected = {i for i in people if holdout_bucket(contact_key(i), "all", "q4") < 1000}
    assert got["all-control"] == expected
    assert got["all"] == set(people) - expected


def test_holdout_is_stable_across_order_and_unrelated_contacts() -> None:
    ids = [str(i) for i in range(3000)]
    segs = segments(HOLDOUT)
    with make_store({i: {"x": 1} for i in ids}) as store:
        first = members(store, segs)["all-control"]
    shuffled = ids[:] + [f"new{i}" for i in range(500)]
    random.Random(7).shuffle(shuffled)
    with make_store({i: {"x": 1} for i in shuffled}) as store:
        second = members(store, segs)["all-control"]
    assert {c for c in second if not c.startswith("new")} == first


def test_holdout_share_is_close_to_the_percent_on_a_large_segment() -> None:
    buckets = [holdout_bucket(contact_key(str(i)), "big", "") for i in range(100_000)]
    share = sum(b < 1000 for b in buckets) / len(buckets)
    assert abs(share - 0.10) < 0.005
    other = [holdout_bucket(contact_key(str(i)), "other-segment", "") < 1000 for i in range(100_000)]
    overlap = sum(a < 1000 and b for a, b in zip(buckets, other, strict=True)) / 100_000
    assert abs(overlap - 0.01) < 0.003, "control groups of different segments must be independent"


def test_holdout_target_writes_the_control_group_too() -> None:
    segs = segments(HOLDOUT + "holdout_target = true\n")
    assert segs[1].store_only is False
