"""A pip-installed plsearch works outside the checkout: the wheel carries the shipped
spaces, device profiles and latency tables, and measured tables go to a user folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_lists_every_package_folder():
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^packages = \[(.*?)\]", text, re.DOTALL | re.MULTILINE).group(1)
    listed = set(re.findall(r'"([\w.]+)"', block))
    on_disk = {".".join(p.parent.relative_to(ROOT).parts)
               for p in (ROOT / "plsearch").rglob("__init__.py")}
    assert on_disk <= listed, f"add {sorted(on_disk - listed)} to pyproject.toml packages"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from this checkout, installed into a bare target folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy, so that setuptools' build/ stays out of the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("plsearch", "configs", "latency_db"):
        shutil.copytree(ROOT / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp / "dist"), str(source)],
        check=False, capture_output=True, text=True, cwd=tmp)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp / "dist").glob("plsearch-*.whl"))
    target = tmp / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)], check=False, capture_output=True, text=True, cwd=tmp)
    assert done.returncode == 0, done.stderr[-2000:]
    return tmp, target


def _plsearch(installed, *args):
    tmp, target = installed
    outside = tmp / "elsewhere"
    outside.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(target), "XDG_DATA_HOME": str(tmp / "data")}
    return subprocess.run([sys.executable, "-m", "plsearch", *args], check=False, capture_output=True,
                          text=True, cwd=outside, env=env, timeout=300)


def test_installed_wheel_carries_the_shipped_data(installed):
    _, target = installed
    package = target / "plsearch"
    assert (package / "configs" / "search" / "default.yaml").is_file()
    assert {p.stem for p in (package / "configs" / "devices").glob("*.yaml")} >= {
        "cpu", "h200", "ascend-910b"}
    assert list((package / "latency_db").glob("cpu-*.csv"))


def test_installed_plsearch_runs_outside_the_checkout(installed):
    tmp, target = installed
    env = {**os.environ, "PYTHONPATH": str(target)}
    origin = subprocess.run([sys.executable, "-c", "import plsearch; print(plsearch.__file__)"],
                            check=False, capture_output=True, text=True, cwd=tmp, env=env)
    assert Path(origin.stdout.strip()).is_relative_to(target)

    info = _plsearch(installed, "info", "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["family"] == "glm4"

    # The shipped table, named: without --latency-db the lookup takes this machine's own
    # table, which is shipped only for the CPU it was measured on.
    shipped = next((target / "plsearch" / "latency_db").glob("cpu-*.csv"))
    predicted = _plsearch(installed, "latency", "predict", "--json", "--device-profile", "cpu",
                          "--latency-db", str(shipped))
    assert predicted.returncode == 0, predicted.stderr
    result = json.loads(predicted.stdout)
    assert result["tokens_per_s"] > 0
    assert "plsearch/latency_db/cpu-" in result["source"].replace(os.sep, "/")


def test_measured_tables_go_to_the_user_folder(installed, tmp_path):
    tmp, target = installed
    code = ("from plsearch.config import user_latency_dir, latency_db_dirs, configs_dir\n"
            "print(user_latency_dir()); print(latency_db_dirs()[1]); print(configs_dir())")
    env = {**os.environ, "PYTHONPATH": str(target), "XDG_DATA_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                         cwd=tmp, env=env)
    user, shipped, configs = out.stdout.split()
    assert Path(user) == tmp_path / "plsearch" / "latency_db"
    assert Path(shipped) == target / "plsearch" / "latency_db"
    assert Path(configs) == target / "plsearch" / "configs"


def test_checkout_keeps_its_top_level_folders():
    from plsearch.config import configs_dir, latency_db_dirs, user_latency_dir

    assert configs_dir() == ROOT / "configs"
    assert user_latency_dir() == ROOT / "latency_db"
    assert latency_db_dirs() == [ROOT / "latency_db"]
