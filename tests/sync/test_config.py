"""Config loading: every problem at once, with file, key path and hints."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.csvfile import CsvSettings
from sync.config import load_config
from sync.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

MINIMAL = """
[crm]
type = "csv"
path = "exports"
[[segment]]
key = "all"
all = []
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "segsync.toml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    return str(caught.value)


def test_the_shipped_example_config_is_valid() -> None:
    config = load_config(REPO / "config.example.toml")
    assert len(config.segments) >= 8
    assert isinstance(config.crm, CsvSettings)
    assert config.crm.path == REPO / "sample_data"


def test_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert isinstance(config.crm, CsvSettings)
    assert config.crm.path == tmp_path / "exports"
    assert config.crm.output_dir == tmp_path / "exports" / "segsync-out"
    assert config.store.path == tmp_path / "segsync.duckdb"
    assert config.sync.max_removal_fraction == 0.25
    assert config.name_prefix == "segsync: "


def test_every_problem_is_listed_with_file_and_key_path(tmp_path: Path) -> None:
    text = problems_of(tmp_path, """
        [crm]
        type = "csv"
        batchsize = 10
        [store]
        path = 3
        [sync]
        max_removal_fraction = 1.5
        schedule = "every day"
        [[segment]]
        key = "x"
        all = [{ field = "a", op = "gt", value = "b" }]
        [extra]
    """)
    assert str(tmp_path / "segsync.toml") in text
    for expected in [
        "crm.batchsize: is not a known key (did you mean 'batch_size'?)",
        "store.path: must be a string (got an integer)",
        "sync.max_removal_fraction: must be at most 1",
        "sync.schedule: 'every day' is not a valid cron expression",
        "segment[x].all[0].value: 'gt' compares",
        "extra: is not a known key",
    ]:
        assert expected in text, text
    assert "6 problems" in text


def test_secrets_in_the_file_are_refused_with_a_hint(tmp_path: Path) -> None:
    text = problems_of(tmp_path, MINIMAL.replace('type = "csv"', 'type = "csv"\ntoken = "pat-123"'))
    assert "crm.token: secrets must not be written in the config file" in text
    assert "token_env" in text
    assert "pat-123" not in text


def test_unknown_crm_type_suggests_the_closest(tmp_path: Path) -> None:
    text = problems_of(tmp_path, MINIMAL.replace('"csv"', '"cvs"'))
    assert "crm.type: must be one of 'csv'" in text
    assert "(got 'cvs') (did you mean 'csv'?)" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[crm\n", "not valid TOML"),
        ("", "crm: is required"),
        ('[crm]\ntype = "csv"\n', "no segments are defined"),
        ('[crm]\ntype = "csv"\npath = "a"\noutput_dir = "a"\n[[segment]]\nkey = "k"\nall = []\n',
         "must not be the export folder"),
    ],
)
def test_broken_files_give_one_clear_message(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in problems_of(tmp_path, text)


def test_missing_file_points_at_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="segsync init"):
        load_config(tmp_path / "nope.toml")
