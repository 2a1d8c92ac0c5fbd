"""The wheel: every stage installs as a clauditor.* subpackage and the CLI runs from it, the
demo included (its sample ships as package data)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUBPACKAGES = ["instrumentation", "ingest", "analytics", "dashboards", "alerts", "simulator"]


@pytest.mark.slow
def test_wheel_installs_into_a_clean_venv_and_runs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(dist)],
        check=True,
    )
    (wheel,) = dist.glob("clauditor-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"clauditor"}, f"only clauditor/ may land in site-packages, got {tops}"
    assert "clauditor/prices.toml" in names
    assert "clauditor/sample_logs/sample-30d.jsonl.gz" in names
    assert "clauditor/sample_logs/clauditor.toml" in names  # the demo's budget
    for sub in SUBPACKAGES:
        assert f"clauditor/{sub}/__init__.py" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], check=True)
    imports = "; ".join(f"import clauditor.{sub}" for sub in SUBPACKAGES)
    code = f"{imports}; import clauditor, clauditor.cli; print(clauditor.__file__)"
    where = subprocess.run(
        [str(py), "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout
    assert str(venv) in where, "imported from the checkout instead of the installed wheel"
    help_text = subprocess.run(
        [str(venv / "bin" / "clauditor"), "--help"], check=True, capture_output=True, text=True
    ).stdout
    for command in ("ingest", "costs", "query", "report", "demo", "prices", "simulate"):
        assert command in help_text
    prices = subprocess.run(
        [str(venv / "bin" / "clauditor"), "prices", "-f", "csv"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout
    assert "claude-sonnet-4-5" in prices

    # The demo from an unrelated folder finds the sample inside the installed package and shows
    # what the checkout's demo shows; only the paths and the elapsed time differ.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    installed = _demo([str(venv / "bin" / "clauditor")], elsewhere, tmp_path / "installed")
    clone = _demo([sys.executable, "-m", "clauditor.cli"], ROOT, tmp_path / "clone")
    assert any("50,140 spans read" in line for line in installed), installed
    assert installed == clone
    assert (tmp_path / "installed" / "report.html").is_file()


def _demo(clauditor: list[str], cwd: Path, out: Path) -> list[str]:
    """``clauditor demo --out OUT`` run in ``cwd``: its output lines, paths made placeholders
    and the elapsed time left out."""
    done = subprocess.run(
        [*clauditor, "demo", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        env={**os.environ, "COLUMNS": "240"},
    )
    assert done.returncode == 0, done.stderr + done.stdout
    lines = done.stdout.splitlines()
    (ingesting,) = (line for line in lines if line.startswith("1/4 ingesting "))
    sample_dir = str(Path(ingesting.removeprefix("1/4 ingesting ").rstrip(" …")).parent)
    # The alerts' suggested commands name the demo's database and the sample's config.
    return [
        line.replace(str(out), "OUT").replace(sample_dir, "SAMPLE")
        for line in lines
        if not line.startswith(("1/4 ingesting", "(done in"))
    ]
