"""The analytic table: a roofline of published peaks, marked analytic, replaced by measurements."""

from __future__ import annotations

import dataclasses

import pytest
from latency_synthetic import synthetic_rows

from plsearch.config import load_device_profile
from plsearch.errors import ConfigError
from plsearch.families import get_family
from plsearch.latency import lookup
from plsearch.latency.analytic import analytic_table, block_ms, head_ms, model_ms
from plsearch.latency.predictor import fit_predictor, validate_predictor
from plsearch.latency.table import append_rows, is_analytic, read_table
from plsearch.models import read_config, resolve_model_dir


@pytest.fixture(scope="module")
def parent_config():
    return read_config(resolve_model_dir(None))


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.setattr(lookup, "db_folder", lambda: tmp_path)
    return tmp_path


def test_shipped_accelerator_profiles_carry_peaks_with_a_source():
    for name in ("h200", "ascend-910b"):
        peak = load_device_profile(name).peak
        assert peak.compute_tflops > 100 and peak.memory_bandwidth_gbs > 1000 and peak.source
    assert load_device_profile("cpu").peak is None


def test_roofline_per_op(parent_config):
    h200 = load_device_profile("h200")
    arch = get_family(parent_config).arch_from_config(parent_config)
    # decode of one token is memory bound: at least the weights over the bandwidth
    weights = 2 * (arch.hidden_size * 32 * (8 + 2 + 2 + 8) + 3 * 256 * 768)
    assert block_ms(arch, 1, 1, 10, "decode", h200) >= 1e3 * weights / 4800e9
    bf16_half_peak = dataclasses.replace(h200, peak=dataclasses.replace(
        h200.peak, compute_tflops=h200.peak.compute_tflops / 2,
        memory_bandwidth_gbs=h200.peak.memory_bandwidth_gbs / 2))
    assert model_ms(arch, 16, 1024, 4, bf16_half_peak) == pytest.approx(
        2 * model_ms(arch, 16, 1024, 4, h200))
    smaller = arch.replace(num_hidden_layers=4, intermediate_size=256)
    assert model_ms(smaller, 16, 1024, 4, h200) < model_ms(arch, 16, 1024, 4, h200)
    assert head_ms(arch, 16, 1, h200) > 0


def test_analytic_table_is_marked_and_the_predictor_follows_the_roofline(parent_config):
    table = analytic_table(parent_config, load_device_profile("h200"))
    assert (table["clock"] == "analytic").all() and is_analytic(table)
    assert (table["engine"] == "hf-generate").all() and (table["backend"] == "cuda").all()
    predictor = fit_predictor(table)
    assert predictor.analytic and predictor.engine == "hf-generate"
    report = validate_predictor(predictor, table)
    assert report.count() >= 2 and report.median_ape() < 0.05


def test_a_profile_without_peaks_has_no_analytic_table(parent_config):
    with pytest.raises(ConfigError, match="no peak figures"):
        analytic_table(parent_config, load_device_profile("cpu"))


def test_search_on_a_laptop_plans_with_the_analytic_table(db, parent_config):
    profile = load_device_profile("ascend-910b")  # no NPU on this machine
    latency = lookup.load_latency(profile, parent_config=parent_config)
    assert latency.analytic and not latency.local and latency.predictor.analytic
    assert latency.table_path == db / "ascend-910b-analytic.csv"
    assert is_analytic(read_table(latency.table_path))
    assert latency.to_dict()["analytic"] is True
    arch = get_family(parent_config).arch_from_config(parent_config)
    assert latency.tokens_per_s(arch, profile) > 0


def test_measured_rows_replace_the_analytic_ones(db, parent_config):
    profile = load_device_profile("ascend-910b")
    analytic_path = lookup.load_latency(profile, parent_config=parent_config).table_path
    # profile-npu on the device appends measured rows (a later run) to the table
    measured = [dict(r, backend="npu", dtype="bfloat16", device_name="Ascend910B2",
                     run_id="2026-12-01T00:00:00", device_tag="ascend-910b-ascend910b2")
                for r in synthetic_rows()]
    table = append_rows(analytic_path, measured)
    assert not is_analytic(table) and not fit_predictor(table).analytic
    # a measured table of the profile in latency_db/ wins over the analytic one
    append_rows(db / "ascend-910b-ascend910b2.csv", measured)
    latency = lookup.load_latency(profile, parent_config=parent_config)
    assert not latency.analytic and latency.table_path.name == "ascend-910b-ascend910b2.csv"


def test_bad_peaks_and_a_profile_without_them_fail_in_one_line(tmp_path, db):
    from plsearch.errors import LatencyTableError

    path = tmp_path / "p.yaml"
    path.write_text("name: p\nkind: cuda\npeak: {compute_tflops: 0, memory_bandwidth_gbs: x, "
                    "source: s}\n")
    with pytest.raises(ConfigError) as info:
        load_device_profile(path)
    assert "peak.compute_tflops must be a positive number" in str(info.value)
    assert "peak.memory_bandwidth_gbs" in str(info.value)
    with pytest.raises(LatencyTableError, match="no peak figures for an analytic one"):
        lookup.load_latency(load_device_profile("cpu"), "analytic")
