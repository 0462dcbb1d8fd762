"""Compute benchmark: store -> memberships -> plan for 30 segments of every kind.

Generates a synthetic store (N contacts, 10 activities each, deterministic), then measures
``sync.compute.compute_plan`` (generator expansion, evaluation, diff against the previous
run's memberships with ~1% churn, guard) in a fresh process: wall time and peak RSS.

    .venv/bin/python benchmarks/compute.py --sizes 100000 1000000 [--reps 3] [--out FILE]

Results are printed as a table and written as JSON (default benchmarks/results/compute.json).
``SEGSYNC_BENCH_MEMORY_LIMIT=2GB`` runs with that ``[store].memory_limit``.
Never part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

NOW = dt.datetime(2026, 11, 15)

SEGMENTS = """
[[segment]]
key = "de-customers"
all = [{ field = "country", op = "eq", value = "DE" }, { field = "lifecycle_stage", op = "in", value = ["customer", "evangelist"] }]
[[segment]]
key = "age-25-40"
all = [{ field = "age", op = "between", value = [25, 40] }]
[[segment]]
key = "high-income"
all = [{ field = "income_band", op = "in", value = ["100k-200k", ">200k"] }]
[[segment]]
key = "golfers"
all = [{ field = "interests", op = "contains", value = "golf" }]
[[segment]]
key = "new-leads"
all = [{ field = "created_at", op = "within_last_days", value = 30 }]
[[segment]]
key = "gmail"
all = [{ field = "email", op = "ends_with", value = "@gmail.com" }]
[[segment]]
key = "near-paris"
all = [{ near = [48.8566, 2.3522], within_km = 25 }]
[[segment]]
key = "big-companies"
all = [{ field = "company.employees", op = "gte", value = 250 }, { field = "company.industry", op = "in", value = ["software", "finance"] }]
[[segment]]
key = "clickers"
all = [{ activity = "email_click", at_least = 3, within_days = 30 }]
[[segment]]
key = "inactive"
all = [{ activity = "any", none_within_days = 180 }]
[[segment]]
key = "repeat-buyers"
holdout_percent = 10
all = [{ activity = "purchase", at_least = 2, within_days = 365 }]
[[segment]]
key = "big-spenders"
all = [{ activity = "purchase", metric = "sum_amount", op = "gte", value = 300, within_days = 365 }]
[[segment]]
key = "meeting-no-purchase"
all = [{ activity = "meeting", at_least = 1, within_days = 90 }, { activity = "purchase", none_within_days = 90 }]
[[segment]]
key = "nps"
kind = "nps"
field = "nps_score"
[[segment]]
key = "rfm"
kind = "rfm"
window_days = 730
tiers = ["champions", "loyal", "at-risk", "hibernating"]
[[segment]]
key = "promoters-not-champions"
all = [{ in_segment = "nps-promoters" }, { not_in_segment = "rfm-champions" }]
[[segment]]
key = "waterfall"
kind = "split"
children = [
  { key = "wf-1", all = [{ in_segment = "rfm-champions" }] },
  { key = "wf-2", all = [{ activity = "email_click", at_least = 1, within_days = 30 }] },
  { key = "wf-3", all = [{ field = "lifecycle_stage", op = "eq", value = "lead" }] },
  { key = "wf-4", all = [] },
]
[[segment]]
key = "phone-leads"
any = [{ activity = "call", at_least = 2, within_days = 60 }, { activity = "form_submission", at_least = 1, within_days = 7 }]
[[segment]]
key = "industry"
kind = "per_value"
field = "company.industry"
top = 3
other = false
"""

COUNTRIES = ["US", "GB", "DE", "FR", "NL", "ES", "IT", "SE", "PL", "CA"]
STAGES = ["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity",
          "customer", "evangelist"]
INCOMES = ["<25k", "25k-50k", "50k-100k", "100k-200k", ">200k"]
INTERESTS = ["golf", "travel", "wine", "cooking", "fitness", "music", "books", "tech"]
INDUSTRIES = ["retail", "software", "finance", "healthcare", "manufacturing", "media"]
TYPES = ["page_view", "email_open", "email_click", "purchase", "form_submission", "call", "meeting"]


def _sql_list(values: list[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def generate(path: Path, contacts: int) -> None:
    """A store with ``contacts`` contacts, contacts/5 companies, 10 activities per contact."""
    import pandas as pd

    from sync.store import Store, contact_keys

    ids = [str(100_000 + i) for i in range(contacts)]
    keys = pd.DataFrame({"idx": range(contacts), "crm_id": ids, "cid": contact_keys(ids)})
    with Store.open(path) as store:
        conn = store._conn  # synthetic rows go straight into the store's tables
        conn.execute("SELECT setseed(0.42)")
        fields = ["country", "city", "age", "income_band", "lifecycle_stage", "nps_score",
                  "interests", "created_at", "postal_code"]
        store.keep_properties("contacts", [*fields, "email"])
        store.keep_properties("companies", ["industry", "employees"])
        conn.register("keys", keys)
        companies = max(1, contacts // 5)
        conn.execute(f"""
            INSERT INTO companies (_crm_id, _modified_at, _lat, _lon, industry, employees)
            SELECT 'co' || i, TIMESTAMP '2026-01-01', NULL, NULL,
                   {_sql_list(INDUSTRIES)}[1 + floor(random() * 6)::INT],
                   CAST(floor(exp(random() * 8)) AS VARCHAR)
            FROM range({companies}) t(i)
        """)
        conn.execute(f"""
            INSERT INTO contacts BY NAME
            SELECT k.cid AS _cid, k.crm_id AS _crm_id, 'contact' AS _kind,
                   TIMESTAMP '2026-01-01' AS _modified_at,
                   CASE WHEN random() < 0.8 THEN 'co' || floor(random() * {companies})::BIGINT END AS _company_id,
                   random() < 0.08 AS _opted_out,
                   48.8566 + (random() - 0.5) * 4 AS _lat, 2.3522 + (random() - 0.5) * 6 AS _lon,
                   'user' || k.idx || CASE WHEN random() < 0.3 THEN '@gmail.com' ELSE '@example.com' END AS email,
                   {_sql_list(COUNTRIES)}[1 + floor(random() * 10)::INT] AS country,
                   'City ' || floor(random() * 500)::INT AS city,
                   CASE WHEN random() < 0.9 THEN CAST(18 + floor(random() * 60)::INT AS VARCHAR) END AS age,
                   {_sql_list(INCOMES)}[1 + floor(random() * 5)::INT] AS income_band,
                   {_sql_list(STAGES)}[1 + floor(random() * 7)::INT] AS lifecycle_stage,
                   CASE WHEN random() < 0.6 THEN CAST(floor(random() * 11)::INT AS VARCHAR) END AS nps_score,
                   CASE WHEN random() < 0.8 THEN {_sql_list(INTERESTS)}[1 + floor(random() * 8)::INT] || ';' ||
                        {_sql_list(INTERESTS)}[1 + floor(random() * 8)::INT] END AS interests,
                   strftime(TIMESTAMP '2026-11-15' - INTERVAL (floor(random() * 1500)) DAY, '%Y-%m-%dT%H:%M:%SZ') AS created_at,
                   CAST(10000 + floor(random() * 89999)::INT AS VARCHAR) AS postal_code
            FROM keys k
        """)
        conn.execute(f"""
            INSERT INTO events BY NAME
            SELECT CASE WHEN t = 'purchase' THEN 'purchases' ELSE 'activities' END AS _stream,
                   'e' || i AS _crm_id, k.crm_id AS _contact_id, k.cid AS _cid, t AS type,
                   TIMESTAMP '2026-11-15' - INTERVAL (floor(random() * 730 * 86400)) SECOND AS ts,
                   CASE WHEN t = 'purchase' THEN round(exp(3.5 + random() * 2), 2) END AS amount,
                   TIMESTAMP '2026-11-15' AS _modified_at
            FROM (SELECT i, floor(random() * {contacts})::BIGINT AS idx,
                         {_sql_list(TYPES)}[1 + floor(random() * 7)::INT] AS t
                  FROM range({contacts * 10}) r(i)) e
            JOIN keys k USING (idx)
        """)
        conn.unregister("keys")
        # The previous run's memberships: today's result with 1% of pairs churned.
        config = _config(path)
        from sync.compute import compute_plan

        compute_plan(store, config.segments, NOW, config.sync, per_value=config.per_value)
        conn.execute("""
            INSERT INTO applied SELECT sid, cid, crm_id FROM (
                SELECT d.sid, d.cid, c._crm_id AS crm_id FROM desired d
                JOIN contacts c ON c._cid = d.cid) WHERE hash(cid, sid) % 100 <> 0
        """)
        conn.execute("CHECKPOINT")


def _config(store_path: Path):  # type: ignore[no-untyped-def]
    from sync.config import parse_config

    text = f'[crm]\ntype = "csv"\n[store]\npath = "{store_path}"\n[sync]\nmax_removal_fraction = 1.0\n'
    return parse_config(tomllib.loads(text + SEGMENTS), store_path.parent / "bench.toml")


def run_once(store_path: Path) -> dict[str, float]:
    """One measured run (called in a fresh process): open the store, compute the plan."""
    start = time.perf_counter()
    from sync.compute import compute_plan
    from sync.store import Store

    config = _config(store_path)
    imported = time.perf_counter()
    with Store.open(store_path, os.environ.get("SEGSYNC_BENCH_MEMORY_LIMIT")) as store:
        plan = compute_plan(store, config.segments, NOW, config.sync, per_value=config.per_value)
    end = time.perf_counter()
    return {
        "wall_s": end - start,
        "compute_s": end - imported,
        "segments": len(plan.segments),
        "adds": plan.adds,
        "removes": plan.removes,
        "members": sum(s.after for s in plan.segments),
    }


def measure(store_path: Path) -> dict[str, float]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--run-once", str(store_path)], stdout=subprocess.PIPE, text=True
    )
    out, _ = child.communicate()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if child.returncode != 0:
        raise SystemExit(f"benchmark run failed with exit code {child.returncode}")
    result = json.loads(out)
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "compute.json")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "segsync-bench")
    parser.add_argument("--run-once", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    if args.run_once:
        print(json.dumps(run_once(args.run_once)))
        return
    rows = []
    for size in args.sizes:
        path = args.data / f"store-{size}.duckdb"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            began = time.perf_counter()
            generate(path, size)
            print(f"generated {size:,} contacts in {time.perf_counter() - began:.1f} s", flush=True)
        # Peak RSS of children is a running maximum, so each rep runs from a fresh driver.
        reps = [json.loads(subprocess.run(
            [sys.executable, __file__, "--measure", str(path)],
            capture_output=True, text=True, check=True).stdout) for _ in range(args.reps)]
        row = {
            "contacts": size,
            "activities": size * 10,
            "segments": reps[0]["segments"],
            "members": reps[0]["members"],
            "adds": reps[0]["adds"],
            "removes": reps[0]["removes"],
            "wall_s": statistics.median(r["wall_s"] for r in reps),
            "compute_s": statistics.median(r["compute_s"] for r in reps),
            "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in reps),
            "runs": reps,
        }
        rows.append(row)
        print(f"{size:>10,} contacts  {row['segments']} segments  wall {row['wall_s']:.2f} s  "
              f"compute {row['compute_s']:.2f} s  peak {row['peak_rss_mib']:.0f} MiB", flush=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(),
               "platform": platform.platform()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "results": rows}, indent=2))
    print("\n| contacts | activities | segments | wall s (store -> plan) | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['contacts']:,} | {row['activities']:,} | {row['segments']} | "
              f"{row['wall_s']:.2f} | {row['peak_rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
