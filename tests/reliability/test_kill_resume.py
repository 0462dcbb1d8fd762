"""Kill the real ``segsync sync`` process with SIGKILL at 20 points, rerun, compare.

Points are chosen (seeded) from a trace of a full first sync, spread over pull, compute
and apply (``sync.failpoints``). After each kill, one more run must leave exactly the
state of an uninterrupted run, and the change log must tell one consistent story.
Also: two processes on one store never interleave.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from sync.lock import store_lock
from sync.store import Store
from tests.conftest import REPO, SAMPLE_DATA
from tests.storeview import sql

KILLS = 20
AS_OF = ["--as-of", "2026-11-16T00:00:00"]  # every run sees the same "today"


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 250 sample contacts with their companies, purchases and activities."""
    folder = tmp_path_factory.mktemp("crm")
    contacts = pd.read_csv(SAMPLE_DATA / "contacts.csv", dtype=str, keep_default_na=False).head(250)
    contacts.to_csv(folder / "contacts.csv", index=False)
    ids = set(contacts["id"])
    companies = pd.read_csv(SAMPLE_DATA / "companies.csv", dtype=str, keep_default_na=False)
    companies[companies["id"].isin(set(contacts["company_id"]))].to_csv(
        folder / "companies.csv", index=False)
    for name in ("purchases.csv", "activities.csv"):
        frame = pd.read_csv(SAMPLE_DATA / name, dtype=str, keep_default_na=False)
        frame[frame["contact_id"].isin(ids)].to_csv(folder / name, index=False)
    return folder


def make_config(root: Path, data: Path) -> Path:
    text = (REPO / "config.example.toml").read_text(encoding="utf-8")
    text = text.replace('path = "sample_data"', f'path = "{data}"')
    text = text.replace("batch_size = 1000", "batch_size = 25")
    root.mkdir(parents=True, exist_ok=True)
    path = root / "segsync.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run_process(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sync", "sync", "--config", str(config), *AS_OF],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **env},
    )


def crm_state(root: Path) -> dict[str, object]:
    out = root / "segsync-out"
    lists = {p.name: p.read_text() for p in sorted((out / "lists").glob("*.csv"))}
    return {"lists": lists, "index": (out / "lists.csv").read_text(),
            "memberships": (out / "memberships.csv").read_text()}


def change_log_is_consistent(store_path: Path) -> None:
    """Per (segment, contact): ok changes alternate add/remove and end where ``applied`` is."""
    with Store.open(store_path) as store:
        rows = sql(store,
            "SELECT segment_key, crm_id, op FROM changes WHERE result = 'ok' AND segment_key <> '(field)' "
            "ORDER BY run_id, changed_at").fetchall()
        applied = set(sql(store,
            "SELECT s.key, a.crm_id FROM applied a JOIN segments s USING (sid)").fetchall())
    history: dict[tuple[str, str], list[str]] = defaultdict(list)
    for segment, crm_id, op in rows:
        history[(segment, crm_id)].append(op)
    for pair, ops in history.items():
        expected = ["add" if i % 2 == 0 else "remove" for i in range(len(ops))]
        assert ops == expected, (pair, ops)
        assert (ops[-1] == "add") == (pair in applied), pair


@pytest.fixture(scope="module")
def reference(small_data: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("reference")
    config = make_config(root, small_data)
    trace = root / "trace.txt"
    done = run_process(config, SEGSYNC_TRACE_POINTS=str(trace))
    assert done.returncode == 0, done.stderr
    points = trace.read_text().split()
    return crm_state(root), points


def chosen_points(points: list[str]) -> list[str]:
    """KILLS points, seeded, from every phase: pull, compute and apply."""
    rng = random.Random(20261122)
    phases = {phase: [p for p in points if p.startswith(phase)] for phase in ("pull", "compute", "apply")}
    assert all(phases.values()), phases
    picked = [*phases["compute"], *rng.sample(phases["pull"], 6)]
    picked += rng.sample(phases["apply"], KILLS - len(picked))
    return picked


def test_trace_covers_every_phase(reference) -> None:
    _, points = reference
    assert len(chosen_points(points)) == KILLS
    assert len(set(chosen_points(points))) == KILLS


def kill_and_rerun(point: str, root: Path, data: Path) -> tuple[str, int, int]:
    """One scenario in its own folder: SIGKILL at ``point``, then a plain rerun."""
    config = make_config(root, data)
    killed = run_process(config, SEGSYNC_KILL_AT=point)
    rerun = run_process(config)
    assert rerun.returncode == 0, (point, rerun.stderr)
    return point, killed.returncode, rerun.returncode


def test_killed_runs_converge_on_rerun(reference, small_data: Path, tmp_path: Path) -> None:
    state, points = reference
    picked = chosen_points(points)
    with ThreadPoolExecutor(max_workers=3) as pool:  # processes: the GIL is not shared
        results = list(pool.map(
            lambda item: kill_and_rerun(item[1], tmp_path / f"kill{item[0]}", small_data),
            enumerate(picked)))
    for index, (point, killed, _) in enumerate(results):
        root = tmp_path / f"kill{index}"
        assert killed == -signal.SIGKILL, point
        assert crm_state(root) == state, point
        change_log_is_consistent(root / "segsync-demo.duckdb")
        with Store.open(root / "segsync-demo.duckdb") as store:
            statuses = [r.status for r in store.recent_runs()]
        assert statuses == ["ok", "interrupted"], point


def test_a_second_process_waits_or_exits_never_interleaves(small_data: Path, tmp_path: Path) -> None:
    config = make_config(tmp_path, small_data)
    store_path = tmp_path / "segsync-demo.duckdb"
    with store_lock(store_path):
        blocked = run_process(config)
    assert blocked.returncode == 7
    assert "another segsync run is using" in blocked.stderr
    # Two processes started together, both willing to wait: whichever takes the lock first
    # runs, the other queues behind it; their runs must not overlap.
    command = [sys.executable, "-m", "sync", "sync", "--wait", "120", "--config", str(config),
               *AS_OF]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as first:
        second = run_process_wait(config)
        _, first_err = first.communicate(timeout=150)
    assert first.returncode == 0, first_err
    assert second.returncode == 0, second.stderr
    with Store.open(store_path) as store:
        runs = sorted(store.recent_runs(), key=lambda r: r.run_id)
    assert [r.status for r in runs] == ["ok", "ok"]
    assert runs[0].finished_at is not None
    assert runs[1].started_at >= runs[0].finished_at


def run_process_wait(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sync", "sync", "--wait", "120", "--config", str(config), *AS_OF],
        capture_output=True, text=True, timeout=150, check=False,
    )


def test_a_batch_killed_between_send_and_record_is_settled_when_its_people_leave(
    small_data: Path, tmp_path: Path
) -> None:
    """The batch reached the CRM, the process died before recording it; then those people
    leave every segment. The rerun must take them out again: their state was unknown,
    never assumed absent."""
    data = tmp_path / "data"
    data.mkdir()
    for file in small_data.iterdir():
        (data / file.name).write_bytes(file.read_bytes())
    root = tmp_path / "killed"
    config = make_config(root, data)
    killed = run_process(config, SEGSYNC_KILL_AT="apply.sent:3")
    assert killed.returncode == -signal.SIGKILL
    with Store.open(root / "segsync-demo.duckdb") as store:
        unknown = {p.crm_id for p in store.unknown_pairs()}
    assert unknown, "the killed batch must be recorded as sent but unproven"
    lists = root / "segsync-out" / "lists"
    written = {i for f in lists.glob("*.csv") for i in f.read_text().split()}
    assert unknown <= written  # it did reach the "CRM"

    contacts = pd.read_csv(data / "contacts.csv", dtype=str, keep_default_na=False)
    contacts[~contacts["id"].isin(unknown)].to_csv(data / "contacts.csv", index=False)
    rerun = run_process(config)
    assert rerun.returncode == 0, rerun.stderr

    fresh = tmp_path / "reference"
    reference = run_process(make_config(fresh, data))
    assert reference.returncode == 0, reference.stderr
    assert crm_state(root) == crm_state(fresh)
    with Store.open(root / "segsync-demo.duckdb") as store:
        assert store.unknown_pairs() == []
