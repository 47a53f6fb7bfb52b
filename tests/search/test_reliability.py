"""Bad input to a search is one line before any work (issue 15, item 8)."""

from __future__ import annotations

import pytest

from plsearch.errors import ConfigError
from plsearch.search.run import SearchOptions, run_search
from plsearch.search.testing import FakeLatency, fake_pipeline


def _opts(tiny_dir, **changes):
    base = {"budget": "1.3x", "model": str(tiny_dir["model"]), "space": str(tiny_dir["space"]),
            "device_profile": str(tiny_dir["profile"]), "trials": 1, "study": "r",
            "verify": False, "command": "test"}
    return SearchOptions(**{**base, **changes})


@pytest.mark.parametrize("timeout", [-5.0, 0.0])
def test_a_timeout_must_be_positive(tiny_dir, tmp_path, timeout):
    with pytest.raises(ConfigError, match="--timeout must be a positive number of seconds"):
        run_search(_opts(tiny_dir, out=str(tmp_path / "run"), timeout=timeout),
                   latency=FakeLatency(), pipeline_factory=fake_pipeline)
    assert not (tmp_path / "run").exists()


def test_a_run_folder_that_is_a_file_is_refused(tiny_dir, tmp_path):
    path = tmp_path / "run"
    path.write_text("not a folder")
    with pytest.raises(ConfigError, match="--run .* is a file; pass a folder"):
        run_search(_opts(tiny_dir, out=str(path)), latency=FakeLatency(),
                   pipeline_factory=fake_pipeline)


def test_a_space_name_cannot_move_the_run_folder_out_of_reports(tiny_dir, tmp_path,
                                                                 monkeypatch):
    space = tmp_path / "evil.yaml"
    space.write_text(tiny_dir["space"].read_text().replace("name: tiny", "name: ../../evil"))
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    summary = run_search(_opts(tiny_dir, space=str(space), study=None), latency=FakeLatency(),
                         pipeline_factory=fake_pipeline)
    assert summary.run_dir.resolve().parent == (work / "reports").resolve()
    assert not (tmp_path / "evil").exists() and not (tmp_path / "a" / "evil").exists()


@pytest.mark.parametrize("headroom", ["-0.01", "1", "3%"])
def test_a_headroom_must_be_a_fraction(tiny_dir, tmp_path, headroom, capsys):
    from plsearch.cli import main

    out = tmp_path / "run"
    try:  # "3%" is argparse's to refuse (SystemExit), the range plan_search's
        code = main(["search", "--budget", "1.3x", "--model", str(tiny_dir["model"]),
                     "--space", str(tiny_dir["space"]), "--device-profile",
                     str(tiny_dir["profile"]), "--run", str(out), "--headroom", headroom])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--headroom" in err
    assert not out.exists()
