"""`segsync report --html`: the numbers (SQL against Python), the page, and a real browser."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from pathlib import Path

import pytest

import sync.cli
from sync.cli import main
from sync.config import Config, parse_config
from sync.engine import run_plan, run_sync
from sync.report import collect, generator_kinds, render_html
from sync.store import Store
from tests.fakes import BASE_TIME, FakeConnector
from tests.storeview import sql

NOW = dt.datetime(2026, 6, 1)

RICH = """
[crm]
type = "csv"
[store]
path = "store.duckdb"
[sync]
max_removal_fraction = 0.9
min_removals_to_guard = 1000

[[segment]]
key = "berlin"
name = "Berlin <shop>"
all = [{ field = "city", op = "eq", value = "Berlin" }]

[[segment]]
key = "adults"
name = "Adults"
holdout_percent = 25
all = [{ field = "age", op = "gte", value = 18 }]

[[segment]]
key = "nps"
name = "NPS"
kind = "nps"
field = "nps_score"

[[segment]]
key = "rfm"
name = "RFM"
kind = "rfm"
window_days = 730

[[segment]]
key = "waterfall"
kind = "split"
children = [
  { key = "wf-berlin", all = [{ field = "city", op = "eq", value = "Berlin" }] },
  { key = "wf-rest", all = [] },
]

[[segment]]
key = "city"
name = "City"
kind = "per_value"
field = "city"
top = 2
"""

CITIES = ["Berlin", "Rome", "Paris", "Oslo"]


def contact(crm: FakeConnector, i: int, step: int) -> None:
    crm.put_contact(f"c{i:03d}", city=CITIES[(i + step * (i % 3 == 0)) % 4], age=10 + i % 50,
                    nps_score=(i * 7 + step) % 11, email=f"c{i}@example.com")


def build(tmp_path: Path, runs: int = 3) -> tuple[Config, FakeConnector]:
    """A store with history: ``runs`` syncs, the data changing between them."""
    path = tmp_path / "segsync.toml"
    path.write_text(RICH, encoding="utf-8")
    config = parse_config(tomllib.loads(RICH), path)
    crm = FakeConnector(max_batch=40)
    for i in range(80):
        contact(crm, i, 0)
    crm.events = [
        {"stream": "purchases", "_crm_id": f"d{i}-{n}", "_contact_id": f"c{i:03d}",
         "type": "purchase", "ts": NOW - dt.timedelta(days=(i * 13) % 600 + n * 20),
         "amount": float(10 + i * 3), "_modified_at": BASE_TIME}
        for i in range(60) for n in range(1 + i % 4)
    ]
    for step in range(runs):
        if step:
            for i in range(0, 80, 2):
                contact(crm, i, step)
        if step == runs - 1:
            crm.reject = {"c000": "INVALID_EMAIL c0@example.com"}
            crm.contacts.pop("c079")
        with Store.open(config.store.path) as store:
            run_sync(config, crm, store, clock=lambda step=step: NOW + dt.timedelta(days=step))
    return config, crm


def report_data(config: Config):  # type: ignore[no-untyped-def]
    from sync.compute import expand_segments

    with Store.open(config.store.path) as store:
        run_plan(config, store, clock=lambda: NOW + dt.timedelta(days=3))
        segments = expand_segments(store, config.segments, config.per_value)
        memberships = {
            key: {cid for (cid,) in sql(store,
                "SELECT cid FROM applied JOIN segments USING (sid) WHERE key = ?", [key]
            ).fetchall()}
            for key in [s.key for s in segments]
        }
        return collect(store, segments, "rich.toml", now=NOW), segments, memberships


def test_report_numbers_match_the_store(tmp_path: Path) -> None:
    config, _ = build(tmp_path)
    data, segments, members = report_data(config)
    assert generator_kinds(segments) == {"nps": "nps", "rfm": "rfm", "waterfall": "other",
                                         "city": "other"}
    # sizes over time: one value per sync run, oldest first
    assert [r for r, _ in data.history_runs] == [1, 2, 3]
    assert data.history["berlin"][-1] == len(members["berlin"])
    # the overlap matrix (SQL) equals set intersections (Python)
    keys = list(data.overlap_keys)
    assert "adults-control" not in keys
    for i, a in enumerate(keys):
        for j, b in enumerate(keys):
            assert data.overlap[i][j] == len(members[a] & members[b]), (a, b)
    # holdout vs treated
    (holdout,) = data.holdouts
    assert (holdout.key, holdout.treated, holdout.control) == (
        "adults", len(members["adults"]), len(members["adults-control"]))
    assert holdout.control > 0
    # RFM tiers and the NPS mix, in their canonical order
    (rfm,) = data.rfm
    assert rfm.name == "RFM"
    assert [label for _, label, _ in rfm.parts][:3] == ["Champions", "Cannot lose them", "Loyal"]
    assert rfm.total == sum(len(members[k]) for k, _, _ in rfm.parts) > 0
    (nps,) = data.nps
    assert nps.name == "NPS"
    assert [(k, n) for k, _, n in nps.parts] == [
        (k, len(members[k])) for k in ("nps-promoters", "nps-passives", "nps-detractors")]
    # the last run's changes and the failure waiting for retry
    assert data.last_run == 3
    assert any(removes for _, _, removes, _, _ in data.last_changes)
    with Store.open(config.store.path) as store:
        failed = sql(store,
            "SELECT segment_key, crm_id, op FROM changes WHERE run_id = 3 AND result = 'failed' "
            "ORDER BY segment_key").fetchall()
    assert failed
    assert {c for _, c, _ in failed} == {"c000"}
    assert [(s, c, op) for s, c, op, _ in data.failures] == failed


def test_page_is_self_contained_and_escapes_names(tmp_path: Path) -> None:
    config, _ = build(tmp_path, runs=2)
    data, _, _ = report_data(config)
    page = render_html(data)
    assert "Berlin &lt;shop&gt;" in page
    assert "<shop>" not in page
    assert "<script" not in page
    # nothing is fetched: no src/href other than inline data, no @import or url()
    assert re.findall(r'(?:src|href)="(?!data:|#)[^"]*"', page) == []
    assert "url(" not in page
    assert "@import" not in page
    assert "http://www.w3.org/2000/svg" in page  # the SVG namespace, not a fetch


def test_report_command_writes_an_owner_only_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, crm = build(tmp_path, runs=2)
    monkeypatch.setattr(sync.cli, "create", lambda settings: crm)
    out = tmp_path / "site" / "report.html"
    assert main(["report", "--html", str(out), "--config", str(config.source)]) == 0
    assert f"Wrote {out}: " in capsys.readouterr().out
    assert out.stat().st_mode & 0o777 == 0o600
    assert "Segment sizes over time" in out.read_text(encoding="utf-8")


def test_empty_store_renders_placeholders(tmp_path: Path) -> None:
    store = Store.in_memory()
    data = collect(store, [], "empty.toml", now=NOW, plan=None)
    page = render_html(data)
    assert "No sync has run yet." in page
    assert "No runs yet." in page


# -- in a real browser ----------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic",
                 "--disable-default-apps", "--disable-extensions")


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: the browser test needs the Debian packages "
                    "chromium and chromium-driver (bash scripts/test.sh installs them as root: "
                    "apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.common.by import By

    config, _ = build(tmp_path)
    data, _, _ = report_data(config)
    page = tmp_path / "report.html"
    page.write_text(render_html(data), encoding="utf-8")

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in BROWSER_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.add_argument("--window-size=1280,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))
    try:
        driver.get(page.as_uri())
        assert driver.title == "segsync report: rich.toml"
        charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart")
        kinds = {c.get_attribute("class") for c in charts}
        assert kinds >= {"chart line", "chart heatmap", "chart diverging", "chart bars",
                         "chart stacked"}
        for chart in charts:
            size = chart.size
            assert size["width"] > 0, chart.get_attribute("aria-label")
            assert size["height"] > 0, chart.get_attribute("aria-label")
        # the drawn shapes have real geometry, not just their boxes
        drawn = driver.execute_script(
            "return Array.from(document.querySelectorAll("
            "'svg.chart polyline, svg.chart rect')).filter(e => {"
            "  const b = e.getBBox(); return b.width > 0 && b.height > 0; }).length")
        assert drawn > 100
        keys = len(data.overlap_keys)
        cells = driver.find_elements(By.CSS_SELECTOR, "svg.heatmap rect")
        assert len(cells) == keys * keys
        text = driver.find_element(By.TAG_NAME, "body").text
        for label in ("nps-promoters", "rfm-champions", "Berlin <shop>", "Holdout vs treated",
                      "Champions", "promoters", "Records waiting for retry", "c000"):
            assert label in text, label
        assert driver.execute_script(
            "return performance.getEntriesByType('resource').length") == 0  # nothing fetched
        severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert severe == []
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(int(height) + 100, 8000))
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        # the console check is live: an error on the page does show up
        driver.execute_script("console.error('probe')")
        assert any("probe" in e["message"] for e in driver.get_log("browser")
                   if e["level"] == "SEVERE")
    finally:
        driver.quit()
