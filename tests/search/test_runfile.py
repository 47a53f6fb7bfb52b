"""A whole search in one run file (`plsearch search --config`), and replays of run.json."""

from __future__ import annotations

import json

import optuna
import pytest
import yaml

from plsearch.cli import main
from plsearch.errors import ConfigError
from plsearch.search.run import SearchOptions, run_search
from plsearch.search.runfile import read_run_file
from plsearch.search.study import storage_url
from plsearch.search.testing import FakeLatency, fake_pipeline


def _run_file(tmp_path, tiny_dir, **changes) -> dict:
    data = {"budget": "1.3x", "model": str(tiny_dir["model"]),
            "device_profile": str(tiny_dir["profile"]), "trials": 2, "sampler": "tpe",
            "seed": 3, "verify": False, "screen": False,
            "space": yaml.safe_load(tiny_dir["space"].read_text(encoding="utf-8"))}
    data.update(changes)
    return data


def _write(path, data) -> str:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def _built(out, study):
    trials = optuna.load_study(study_name=study, storage=storage_url(None, out)).get_trials()
    return [(t.user_attrs["arch"], t.user_attrs.get("accuracy"))
            for t in trials if "kd_curve" in t.user_attrs]


def test_a_run_file_holds_options_and_an_inline_space(tmp_path, tiny_dir):
    path = _write(tmp_path / "run.yaml", _run_file(tmp_path, tiny_dir, run="reports/x",
                                                  storage="sqlite:///x.db"))
    values, replay = read_run_file(path)
    assert not replay
    assert values["budget"] == "1.3x" and values["trials"] == 2 and values["seed"] == 3
    assert values["sampler"] == "tpe" and values["out"] == "reports/x"
    assert values["storage"] == "sqlite:///x.db" and values["screen"] is False
    assert values["space"]["name"] == "tiny" and "axes" in values["space"]
    SearchOptions(**values)  # every key is a SearchOptions field


def test_a_space_path_is_read_next_to_the_run_file(tmp_path, tiny_dir):
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "mine.yaml").write_text(tiny_dir["space"].read_text("utf-8"), "utf-8")
    values, _ = read_run_file(_write(tmp_path / "run.yaml",
                                     _run_file(tmp_path, tiny_dir, space="spaces/mine.yaml")))
    assert values["space"] == str(tmp_path / "spaces" / "mine.yaml")
    values, _ = read_run_file(_write(tmp_path / "run.yaml",
                                     _run_file(tmp_path, tiny_dir, space="default")))
    assert values["space"] == "default"  # a shipped name stays a name


@pytest.mark.parametrize(("change", "message"), [
    ({"budjet": "1.5x"}, "unknown key(s) ['budjet']"),
    ({"budget": 1.5}, "budget must be str, got 1.5 (quote it"),
    ({"trials": "many"}, "trials must be int, got 'many'"),
    ({"verify": "no"}, "verify must be bool"),
    ({"seed": True}, "seed must be int, got True"),
])
def test_a_bad_run_file_names_every_problem(tmp_path, tiny_dir, change, message):
    path = _write(tmp_path / "run.yaml", _run_file(tmp_path, tiny_dir, **change))
    with pytest.raises(ConfigError) as info:
        read_run_file(path)
    assert message in str(info.value) and "fix the file" in str(info.value)


def test_run_json_replays_the_same_search_into_a_new_folder(tmp_path, tiny_dir):
    values, _ = read_run_file(_write(tmp_path / "run.yaml",
                                     _run_file(tmp_path, tiny_dir, trials=4)))
    first = tmp_path / "first"
    run_search(SearchOptions(**values, out=str(first), study="s"),
               latency=FakeLatency(), pipeline_factory=fake_pipeline)
    run_json = first / "run.json"
    replayed, replay = read_run_file(run_json)
    assert replay
    assert "out" not in replayed and "study" not in replayed  # where the original lives
    assert replayed["space"] == json.loads(run_json.read_text())["space"]
    second = tmp_path / "second"
    run_search(SearchOptions(**replayed, out=str(second), study="s"),
               latency=FakeLatency(), pipeline_factory=fake_pipeline)
    assert _built(second, "s") == _built(first, "s") and len(_built(first, "s")) == 4


def test_cli_search_from_a_run_file_then_its_replay(tmp_path, tiny_dir, cache_dir, capsys):
    """The real pipeline on the tiny parent: one candidate, then the replay builds the same
    arch and scores it the same."""
    data = _run_file(tmp_path, tiny_dir, trials=1, latency_db=str(tiny_dir["table"]),
                     budget=tiny_dir["budget"])
    path = _write(tmp_path / "run.yaml", data)
    first = tmp_path / "first"
    assert main(["search", "--config", path, "--run", str(first), "--no-report"]) == 0
    capsys.readouterr()
    run = json.loads((first / "run.json").read_text())
    assert run["options"]["sampler"] == "tpe" and run["options"]["seed"] == 3
    assert run["options"]["command"].startswith(f"plsearch search --config {path}")
    study = run["study"]
    second = tmp_path / "second"
    assert main(["search", "--config", str(first / "run.json"), "--run", str(second),
                 "--no-report", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["built"] == 1
    built = _built(first, study)
    assert len(built) == 1 and _built(second, study) == built


def test_cli_run_file_errors_are_one_line(tmp_path, tiny_dir, capsys):
    data = _run_file(tmp_path, tiny_dir)
    del data["budget"]
    path = _write(tmp_path / "run.yaml", data)
    assert main(["search", "--config", path]) == 2
    err = capsys.readouterr().err.strip()
    assert "--budget is required (or budget: in the --config file)" in err
    assert len(err.splitlines()) == 1
    run_json = tmp_path / "run.json"
    run_json.write_text(json.dumps({"options": {"budget": "1.3x"}, "space": {},
                                    "versions": {}}))
    assert main(["search", "--config", str(run_json)]) == 2
    assert "needs --run NEWDIR" in capsys.readouterr().err
