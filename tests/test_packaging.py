"""The installed wheel: its top-level packages are segsync's, and a clash is caught.

``connectors``, ``sync`` and ``segment_rules`` are names other distributions use too
(PyPI's ``connectors``, elastic's connectors). These tests build segsync's wheel offline
(no build isolation: the test extra brings setuptools and wheel), install it into a fresh
virtual environment whose only other content is a path to the test environment's
dependencies, prove the modules come from that wheel, then install a foreign
``connectors`` distribution over it and expect one clear sentence, not a traceback.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from sync import provenance
from tests.conftest import REPO

SOURCES = ("pyproject.toml", "README.md", "connectors", "sync", "segment_rules")


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; the test run's PYTHONPATH must not leak into the fresh venv."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False, env=env)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def pip(*args: str | Path, cwd: Path) -> None:
    """The test environment's pip, offline."""
    run(sys.executable, "-m", "pip", "--disable-pip-version-check", *args, "--no-index",
        cwd=cwd)


def foreign_wheel(folder: Path) -> Path:
    """A minimal wheel of another distribution that ships a top-level ``connectors``."""
    files = {
        "connectors/__init__.py": b'"""Somebody else\'s connectors framework."""\n',
        "connectors-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: connectors\n"
                                             b"Version: 1.0\n",
        "connectors-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\n"
                                          b"Root-Is-Purelib: true\nTag: py3-none-any\n",
        "connectors-1.0.dist-info/top_level.txt": b"connectors\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("connectors-1.0.dist-info/RECORD,,")
    path = folder / "connectors-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr("connectors-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with segsync's wheel installed (dependencies borrowed by a .pth)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        target = source / name
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, target,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, target)
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", root / "dist", source, cwd=root)
    (wheel,) = (root / "dist").glob("segsync-*.whl")
    venv = root / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=root)
    python = venv / "bin" / "python"
    pip("--python", python, "install", "--no-deps", wheel, cwd=root)
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
               cwd=root).stdout.strip()
    (Path(site) / "borrowed_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv


def test_installed_modules_belong_to_the_segsync_wheel(fresh: Path, tmp_path: Path) -> None:
    python = fresh / "bin" / "python"
    done = run(python, "-c",
               "import connectors.base, sync.engine, segment_rules.compile, sysconfig\n"
               "import importlib.metadata as md\n"
               "print(sysconfig.get_path('purelib'))\n"
               "for m in (connectors.base, sync.engine, segment_rules.compile):\n"
               "    print(m.__file__)\n"
               "print(sorted(set(md.packages_distributions()['connectors'])))",
               cwd=tmp_path)
    site, *files, owners = done.stdout.split("\n")[:5]
    assert all(f.startswith(site + os.sep) for f in files), (site, files)
    assert owners == "['segsync']"
    assert run(fresh / "bin" / "segsync", "--help", cwd=tmp_path).stdout.startswith("usage:")


def test_a_foreign_connectors_package_fails_with_one_sentence(fresh: Path, tmp_path: Path) -> None:
    clash = tmp_path / "clash"
    shutil.copytree(fresh, clash, symlinks=True)
    python = clash / "bin" / "python"
    # The copied venv's scripts name the original interpreter path: run through its python.
    pip("--python", python, "install", "--no-deps", foreign_wheel(tmp_path), cwd=tmp_path)
    done = run(python, "-c", "from sync.entry import main; raise SystemExit(main(['--help']))",
               cwd=tmp_path, check=False)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "'connectors' (from connectors)" in lines[0]
    assert "pipx install segsync" in lines[0]
    assert "Traceback" not in done.stderr


def test_a_shadowing_package_earlier_on_the_path_is_named(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "segment_rules"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": str(shadow.parent)}
    done = run(sys.executable, "-c", "from sync import provenance; print(provenance.clashes())",
               cwd=tmp_path, env=env)
    assert done.stdout.strip() == "['segment_rules']"


def test_this_checkout_is_segsyncs_own() -> None:
    assert provenance.clashes() == []
    assert provenance.problem() is None
