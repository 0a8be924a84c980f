"""Packaging: the license is an SPDX expression (PEP 639), so installing prints no setuptools
deprecation warnings (a license table stops building after 2027-02-18)."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_license_is_an_spdx_expression_with_a_setuptools_that_reads_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert not any(c.startswith("License ::") for c in project["project"].get("classifiers", []))
    (requirement,) = [r for r in project["build-system"]["requires"] if r.startswith("setuptools")]
    assert requirement.replace(" ", "") == "setuptools>=77"  # the first setuptools with PEP 639


def test_building_the_metadata_warns_of_nothing(tmp_path):
    """What ``pip install`` runs, in a copy of the sources, with every warning an error."""
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} < 77 (pip install -e '.[test]' brings a new one)")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("fluxedge", "station", "collector", "firmware_bridge"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c",
         "import os, setuptools.build_meta as b; os.mkdir('meta'); print(b.prepare_metadata_for_build_wheel('meta'))"],
        cwd=src, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "deprecat" not in (result.stdout + result.stderr).lower()
    metadata = (src / "meta" / result.stdout.split()[-1] / "METADATA").read_text()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    entry_points = (src / "meta" / result.stdout.split()[-1] / "entry_points.txt").read_text()
    assert "fluxedge = fluxedge.cli:main" in entry_points.splitlines()
