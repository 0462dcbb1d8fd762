"""Tests for scripts/make_sample_data.py and the committed sample_data/ CRM export."""

from __future__ import annotations

import csv
import importlib.util
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "make_sample_data.py"
SAMPLE = REPO / "sample_data"
FILES = ("companies.csv", "contacts.csv", "purchases.csv", "activities.csv")
AS_OF = datetime(2026, 11, 15, tzinfo=UTC)

HEADERS = {
    "companies.csv": ["id", "name", "industry", "employees", "annual_revenue", "country", "city",
                      "latitude", "longitude", "modified_at"],
    "contacts.csv": ["id", "email", "first_name", "last_name", "company_id", "country", "region",
                     "city", "postal_code", "latitude", "longitude", "age", "gender",
                     "income_band", "job_title", "lifecycle_stage", "nps_score", "email_opt_out",
                     "interests", "created_at", "modified_at"],
    "purchases.csv": ["id", "contact_id", "amount", "purchased_at", "modified_at"],
    "activities.csv": ["id", "contact_id", "type", "occurred_at", "modified_at"],
}
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
COORD = re.compile(r"-?\d{1,3}\.\d{6}")
LIFECYCLE = {"subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity",
             "customer", "evangelist"}
INCOME_BANDS = {"", "<25k", "25k-50k", "50k-100k", "100k-200k", ">200k"}
INTERESTS = {"golf", "travel", "wine", "cooking", "fitness", "running", "cycling", "gardening",
             "photography", "music", "books", "fashion", "tech", "outdoors", "pets"}
ACTIVITY_TYPES = {"email_open", "email_click", "call", "meeting", "form_submission"}
CITY_CENTRES = {"Berlin": (52.52, 13.405), "Munich": (48.1351, 11.582),
                "Hamburg": (53.5511, 9.9937), "London": (51.5074, -0.1278),
                "Manchester": (53.4808, -2.2426), "Paris": (48.8566, 2.3522)}
CITY_COUNTRY = {"Berlin": "DE", "Munich": "DE", "Hamburg": "DE", "London": "GB",
                "Manchester": "GB", "Paris": "FR"}
POSTAL = {"Berlin": re.compile(r"1[0-4]\d{3}"), "Munich": re.compile(r"8[01]\d{3}"),
          "Hamburg": re.compile(r"2[0-2]\d{3}"), "Paris": re.compile(r"750(0[1-9]|1\d|20)"),
          "London": re.compile(r"(E|EC|N|NW|SE|SW|W|WC)\d{1,2}[A-Z]? \d[A-Z]{2}"),
          "Manchester": re.compile(r"M\d{1,2} \d[A-Z]{2}")}

Table = list[dict[str, str]]


@pytest.fixture(scope="module")
def msd() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sample_data", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data() -> dict[str, Table]:
    tables: dict[str, Table] = {}
    for name in FILES:
        with (SAMPLE / name).open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            assert reader.fieldnames == HEADERS[name], name
            tables[name] = list(reader)
    return tables


def _ts(value: str) -> datetime:
    assert TIMESTAMP.fullmatch(value), value
    return datetime.fromisoformat(value)


def _within(value: str, days: int) -> datetime:
    moment = _ts(value)
    assert AS_OF - timedelta(days=days) <= moment < AS_OF, value
    return moment


def test_regenerating_gives_byte_identical_files(msd: ModuleType, tmp_path: Path) -> None:
    counts = msd.generate(tmp_path)
    assert sorted(counts) == sorted(FILES)
    assert sorted(p.name for p in SAMPLE.glob("*.csv")) == sorted(FILES)
    for name in FILES:
        committed = (SAMPLE / name).read_bytes()
        assert (tmp_path / name).read_bytes() == committed, f"{name} differs; regenerate it"
        assert committed.count(b"\n") == counts[name] + 1


def test_same_seed_repeats_and_other_seed_differs(msd: ModuleType, tmp_path: Path) -> None:
    for folder, seed in (("a", 1), ("b", 1), ("c", 2)):
        msd.generate(tmp_path / folder, contacts=200, seed=seed, as_of=date(2026, 11, 15))
    for name in FILES:
        first = (tmp_path / "a" / name).read_bytes()
        assert (tmp_path / "b" / name).read_bytes() == first, name
        assert (tmp_path / "c" / name).read_bytes() != first, name


def test_small_cli_run_is_fast(tmp_path: Path) -> None:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--contacts", "200",
         "--seed", "7", "--as-of", "2025-01-31"],
        capture_output=True, text=True, check=False, timeout=60,
    )
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    assert elapsed < 3.0, f"--contacts 200 took {elapsed:.2f} s (interpreter start included)"
    with (tmp_path / "contacts.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 200
    assert max(row["modified_at"] for row in rows) < "2025-01-31T00:00:00Z"


def test_files_are_utf8_with_lf_line_endings() -> None:
    for name in FILES:
        raw = (SAMPLE / name).read_bytes()
        raw.decode("utf-8")
        assert b"\r" not in raw, name
        assert raw.endswith(b"\n"), name
        assert raw.startswith(",".join(HEADERS[name]).encode() + b"\n"), name
    total = sum((SAMPLE / name).stat().st_size for name in FILES)
    assert total < 8 * 1024 * 1024


def test_ids_are_unique_and_well_formed(data: dict[str, Table]) -> None:
    patterns = {"companies.csv": r"\d+", "contacts.csv": r"\d+", "purchases.csv": r"p\d{6,}",
                "activities.csv": r"a\d{7,}"}
    for name, pattern in patterns.items():
        ids = [row["id"] for row in data[name]]
        assert len(set(ids)) == len(ids), name
        assert all(re.fullmatch(pattern, i) for i in ids), name
    contact_ids = {row["id"] for row in data["contacts.csv"]}
    company_ids = {row["id"] for row in data["companies.csv"]}
    assert not contact_ids & company_ids
    emails = [row["email"] for row in data["contacts.csv"]]
    assert len(set(emails)) == len(emails)
    assert all(re.fullmatch(r"[a-z0-9.]+@[a-z0-9.-]+\.[a-z]{2,}", e) for e in emails)


def test_referential_integrity(data: dict[str, Table]) -> None:
    contact_ids = {row["id"] for row in data["contacts.csv"]}
    company_ids = {row["id"] for row in data["companies.csv"]}
    assert {row["contact_id"] for row in data["purchases.csv"]} <= contact_ids
    assert {row["contact_id"] for row in data["activities.csv"]} <= contact_ids
    assert {row["company_id"] for row in data["contacts.csv"]} <= company_ids | {""}


def test_contact_value_domains(data: dict[str, Table]) -> None:
    contacts = data["contacts.csv"]
    for row in contacts:
        city = row["city"]
        assert row["country"] == CITY_COUNTRY[city]
        assert POSTAL[city].fullmatch(row["postal_code"]), row["postal_code"]
        assert (row["latitude"] == "") == (row["longitude"] == "")
        if row["latitude"]:
            assert COORD.fullmatch(row["latitude"])
            assert COORD.fullmatch(row["longitude"])
            lat, lon = CITY_CENTRES[city]
            assert abs(float(row["latitude"]) - lat) < 0.6
            assert abs(float(row["longitude"]) - lon) < 1.0
        assert row["age"] == "" or 18 <= int(row["age"]) <= 85
        assert row["gender"] in {"", "female", "male", "nonbinary"}
        assert row["income_band"] in INCOME_BANDS
        assert row["lifecycle_stage"] in LIFECYCLE
        assert row["nps_score"] == "" or 0 <= int(row["nps_score"]) <= 10
        assert row["email_opt_out"] in {"true", "false"}
        if row["interests"]:
            values = row["interests"].split(";")
            assert 1 <= len(values) <= 5
            assert len(set(values)) == len(values)
            assert set(values) <= INTERESTS
    scores = [int(r["nps_score"]) for r in contacts if r["nps_score"]]
    assert min(scores) <= 6  # detractors
    assert any(s in (7, 8) for s in scores)  # passives
    assert max(scores) >= 9  # promoters
    assert {r["lifecycle_stage"] for r in contacts} == LIFECYCLE
    assert {r["email_opt_out"] for r in contacts} == {"true", "false"}


def test_company_value_domains(data: dict[str, Table]) -> None:
    for row in data["companies.csv"]:
        assert row["name"]
        assert row["country"] == CITY_COUNTRY[row["city"]]
        assert 1 <= int(row["employees"]) <= 5000
        assert int(row["annual_revenue"]) > 0
        assert COORD.fullmatch(row["latitude"])
        assert COORD.fullmatch(row["longitude"])
        _within(row["modified_at"], 3 * 365)
    assert len({row["industry"] for row in data["companies.csv"]}) == 12


def test_timestamps_lie_in_documented_windows(data: dict[str, Table]) -> None:
    created: dict[str, datetime] = {}
    modified: dict[str, datetime] = {}
    for row in data["contacts.csv"]:
        created[row["id"]] = _within(row["created_at"], 5 * 365)
        modified[row["id"]] = _within(row["modified_at"], 5 * 365)
        assert created[row["id"]] <= modified[row["id"]]
    for row in data["purchases.csv"]:
        amount = row["amount"]
        assert re.fullmatch(r"\d+\.\d{2}", amount)
        assert float(amount) > 0
        bought = _within(row["purchased_at"], 3 * 365)
        assert created[row["contact_id"]] <= bought <= modified[row["contact_id"]]
        assert bought <= _within(row["modified_at"], 3 * 365)
    for row in data["activities.csv"]:
        assert row["type"] in ACTIVITY_TYPES
        assert row["modified_at"] == row["occurred_at"]
        occurred = _within(row["occurred_at"], 2 * 365)
        assert created[row["contact_id"]] <= occurred <= modified[row["contact_id"]]


def test_activities_sorted_and_clicks_follow_opens(data: dict[str, Table]) -> None:
    activities = data["activities.csv"]
    keys = [(row["occurred_at"], row["id"]) for row in activities]
    assert keys == sorted(keys)
    first_open: dict[str, str] = {}
    for row in activities:
        if row["type"] == "email_open":
            first_open.setdefault(row["contact_id"], row["occurred_at"])
        elif row["type"] == "email_click":
            assert first_open.get(row["contact_id"], "~") <= row["occurred_at"], row["id"]


def test_shape_matches_readme(data: dict[str, Table]) -> None:
    contacts = data["contacts.csv"]
    n = len(contacts)
    assert len(data["companies.csv"]) == round(n * 0.24)
    share = {
        "b2c": sum(r["company_id"] == "" for r in contacts) / n,
        "no_geo": sum(r["latitude"] == "" for r in contacts) / n,
        "no_nps": sum(r["nps_score"] == "" for r in contacts) / n,
        "opt_out": sum(r["email_opt_out"] == "true" for r in contacts) / n,
        "buyers": len({r["contact_id"] for r in data["purchases.csv"]}) / n,
        "inactive": 1 - len({r["contact_id"] for r in data["activities.csv"]}) / n,
    }
    expected = {"b2c": 0.20, "no_geo": 0.03, "no_nps": 0.40, "opt_out": 0.08, "buyers": 0.45,
                "inactive": 0.10}
    for key, target in expected.items():
        assert abs(share[key] - target) < 0.03, (key, share[key])
    assert 12 <= len(data["activities.csv"]) / n <= 18
    types = Counter(r["type"] for r in data["activities.csv"])
    assert abs(types["email_open"] / sum(types.values()) - 0.50) < 0.03
    amounts = [float(r["amount"]) for r in data["purchases.csv"]]
    assert 75 <= sum(amounts) / len(amounts) <= 105
