"""The predictor recovers a known linear cost law and composes whole models from it."""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import pandas as pd
import pytest
from latency_synthetic import BASE, LAW, law_ms, row, synthetic_rows

from plsearch.config import Workload
from plsearch.errors import LatencyTableError
from plsearch.latency.predictor import (
    InModel,
    block_features,
    fit_in_model,
    fit_predictor,
    head_features,
    layer_mib,
    load_predictor,
    predict_latency,
    predict_tokens_per_s,
    save_predictor,
    validate_predictor,
)
from plsearch.latency.table import append_rows, read_table

HELD_OUT = BASE.replace(num_hidden_layers=5, hidden_size=80, num_attention_heads=6,
                        num_key_value_heads=3, intermediate_size=200)


@pytest.fixture
def table(tmp_path):
    return append_rows(tmp_path / "t.csv", synthetic_rows())


def test_fit_recovers_the_known_law(table):
    predictor = fit_predictor(table, seed=0)
    for key, law in LAW.items():
        cost = predictor.costs[key]
        for name, coef in zip(cost.features, cost.coef):
            assert coef == pytest.approx(law.get(name, 0.0), rel=1e-3, abs=1e-9), (key, name)
    # ... and predicts a shape it never saw (inside the grid's span) exactly.
    feats = block_features(HELD_OUT, 3, 1, 25, "decode", 4)
    assert float(predictor.block_ms(HELD_OUT, "decode", 3, 1, 25)) == pytest.approx(
        law_ms("block/decode", feats), rel=1e-6)


def test_composition_matches_the_law_summed_by_hand(table):
    predictor = fit_predictor(table)
    workload = Workload(batch_size=2, prompt_len=20, generated_len=6)
    pred = predict_latency(HELD_OUT, workload, predictor)
    layers = HELD_OUT.num_hidden_layers
    prefill = (layers * law_ms("block/prefill", block_features(HELD_OUT, 2, 20, 20, "prefill", 4))
               + law_ms("head/prefill", head_features(HELD_OUT, 2, 20, 4)))
    decode = sum(layers * law_ms("block/decode", block_features(HELD_OUT, 2, 1, c, "decode", 4))
                 + law_ms("head/decode", head_features(HELD_OUT, 2, 1, 4))
                 for c in range(21, 26))
    assert pred.prefill_ms == pytest.approx(prefill, rel=1e-6)
    assert pred.decode_ms == pytest.approx(decode, rel=1e-6)
    assert pred.decode_ms_per_token == pytest.approx(decode / 5, rel=1e-6)
    assert pred.tokens_per_s == pytest.approx(2 * 6 / ((prefill + decode) / 1e3), rel=1e-6)
    assert sum(pred.breakdown.values()) == pytest.approx(pred.total_ms, rel=1e-9)


def test_tokens_per_s_falls_as_layers_are_added(table):
    from plsearch.config import load_device_profile

    predictor = fit_predictor(table)
    profile = load_device_profile("cpu")
    speeds = [predict_tokens_per_s(BASE.replace(num_hidden_layers=n), profile, predictor)
              for n in range(1, 9)]
    assert all(a > b for a, b in itertools.pairwise(speeds))


def test_fit_is_deterministic_and_json_round_trips(table, tmp_path):
    first, second = fit_predictor(table, seed=3), fit_predictor(table, seed=3)
    assert first == second
    path = tmp_path / "p.json"
    save_predictor(first, path)
    data = json.loads(path.read_text())
    assert data["format"] == "plsearch-latency-predictor" and data["seed"] == 3
    loaded = load_predictor(path)
    workload = Workload(2, 16, 8)
    assert predict_latency(HELD_OUT, workload, loaded) == predict_latency(HELD_OUT, workload,
                                                                          first)


@pytest.mark.parametrize("text", ["not json", "{}", '{"format": "plsearch-latency-predictor"}'])
def test_load_rejects_other_files(tmp_path, text):
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(LatencyTableError, match="latency fit"):
        load_predictor(path)


def test_validation_uses_only_model_rows(tmp_path):
    rows = synthetic_rows()
    predictor = fit_predictor(pd.DataFrame(rows).pipe(_typed))
    arch = HELD_OUT
    exact = predict_latency(arch, Workload(2, 20, 6), predictor).total_ms
    rows.append(row("model", "workload", arch, arch.num_hidden_layers, 2, 20, 25,
                    exact * 1.2, generated=6))
    rows.append(row("model", "prefill", arch, arch.num_hidden_layers, 2, 20, 20,
                    predict_latency(arch, Workload(2, 20, 1), predictor).total_ms))
    table = append_rows(tmp_path / "t.csv", rows)
    refit = fit_predictor(table)
    assert [c.rows for c in refit.costs.values()] == [c.rows for c in predictor.costs.values()]
    report = validate_predictor(refit, table)
    assert report.count("workload") == 1
    assert report.median_ape("workload") == pytest.approx(1 - 1 / 1.2, rel=1e-6)
    assert report.share_within(0.10, "workload") == 0.0
    assert report.median_ape("prefill") == pytest.approx(0.0, abs=1e-5)


def test_too_few_rows_is_a_clear_error(tmp_path):
    rows = [r for r in synthetic_rows() if r["part"] == "block"]
    table = append_rows(tmp_path / "t.csv", rows)
    with pytest.raises(LatencyTableError, match="head prefill rows"):
        fit_predictor(table)


def test_real_rows_fit_within_noise():
    """Block rows with 5% multiplicative noise still predict within a few percent."""
    rng = np.random.default_rng(0)
    rows = synthetic_rows()
    for r in rows:
        r["median_ms"] *= float(np.exp(rng.normal(0, 0.05)))
    predictor = fit_predictor(pd.DataFrame(rows).pipe(_typed))
    truth = predict_latency(HELD_OUT, Workload(2, 20, 6), fit_predictor(
        pd.DataFrame(synthetic_rows()).pipe(_typed))).total_ms
    noisy = predict_latency(HELD_OUT, Workload(2, 20, 6), predictor).total_ms
    assert noisy == pytest.approx(truth, rel=0.05)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """What read_table returns for these rows (validated, typed)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.csv"
        append_rows(path, frame.to_dict("records"))
        return read_table(path)


def test_in_model_cost_recovers_how_layers_run_inside_a_model(tmp_path):
    rows = synthetic_rows()
    unit = fit_predictor(append_rows(tmp_path / "blocks.csv", rows))
    in_model = InModel(prefill_scale=1.12, decode_overhead_ms=0.004)
    table = append_rows(tmp_path / "t.csv", rows + _model_rows(unit, in_model))
    predictor = fit_predictor(table)
    assert predictor.in_model.prefill_scale == pytest.approx(1.12)
    assert predictor.in_model.decode_overhead_ms == pytest.approx(0.004)
    assert predictor.absorbed_in_model is None
    report = validate_predictor(predictor, table)  # leave one arch out: still exact here
    assert report.count("prefill") == report.count("workload") == 4
    assert report.median_ape(None) < 1e-9
    assert unit.in_model == InModel(1.0, 0.0)  # no model rows: neutral


def test_the_decode_overhead_is_a_constant_per_layer_step_not_a_factor(tmp_path):
    # a fixed cost per layer step weighs more on a small arch than on a large one: a
    # constant fitted on mid-sized archs predicts both ends exactly
    rows = synthetic_rows()
    unit = fit_predictor(append_rows(tmp_path / "blocks.csv", rows))
    in_model = InModel(1.0, 0.004)
    predictor = fit_predictor(append_rows(tmp_path / "t.csv", rows + _model_rows(unit, in_model)))
    w = Workload(2, 16, 5)
    for arch in (BASE.replace(num_hidden_layers=2, hidden_size=32, intermediate_size=64),
                 BASE.replace(num_hidden_layers=8, hidden_size=128, intermediate_size=512)):
        b = predict_latency(arch, w, unit).breakdown
        truth = sum(b.values()) + arch.num_hidden_layers * (w.generated_len - 1) * 0.004
        assert predict_latency(arch, w, predictor).total_ms == pytest.approx(truth, rel=1e-9)


def test_a_broken_tables_in_model_cost_is_clipped(tmp_path):
    rows = synthetic_rows()
    unit = fit_predictor(append_rows(tmp_path / "blocks.csv", rows))
    wild = InModel(prefill_scale=7.0, decode_overhead_ms=50.0)
    table = append_rows(tmp_path / "t.csv", rows + _model_rows(unit, wild))
    for per_mib in (False, True):  # o at the top of its range: the median layer's decode step
        predictor = fit_predictor(table, per_weight_mib=per_mib)
        assert predictor.in_model.prefill_scale == 2.0
        archs = [BASE.replace(num_hidden_layers=n, hidden_size=h) for n, h in MODEL_ARCHS]
        step = np.median([predict_latency(a, Workload(2, 16, 5), unit).breakdown[
            "decode_blocks_ms"] / (a.num_hidden_layers * 4) / (layer_mib(a, 4) if per_mib else 1)
            for a in archs])
        assert predictor.in_model.decode_overhead_ms == pytest.approx(step, rel=1e-9)


MODEL_ARCHS = ((2, 64), (4, 96), (6, 128), (3, 80))  # (layers, hidden) of the model rows


def _model_rows(unit, in_model: InModel, model_type="glm4", archs=MODEL_ARCHS,
                errors=None) -> list[dict]:
    """Whole-model rows of ``archs`` whose layers cost ``in_model`` against their block rows;
    ``errors``: (layers, hidden) -> ms more each layer and decode step (the arch's blocks
    predicted that much fast)."""
    rows = []
    for layers, hidden in archs:
        error = (errors or {}).get((layers, hidden), 0.0)
        arch = BASE.replace(num_hidden_layers=layers, hidden_size=hidden)
        pre = predict_latency(arch, Workload(2, 16, 1), unit).breakdown
        rows.append(row("model", "prefill", arch, layers, 2, 16, 16,
                        in_model.prefill_scale * pre["prefill_blocks_ms"]
                        + pre["prefill_head_ms"]))
        b = predict_latency(arch, Workload(2, 16, 5), unit).breakdown
        ms = (in_model.prefill_scale * b["prefill_blocks_ms"] + b["prefill_head_ms"]
              + b["decode_blocks_ms"] + layers * 4 * (in_model.layer_ms(arch, 4) + error)
              + 4 * in_model.step_ms(arch, 4) + b["decode_head_ms"])
        rows.append(row("model", "workload", arch, layers, 2, 16, 20, ms, generated=5))
    for r in rows:
        r["model_type"] = model_type
    return rows


def test_absorbed_model_rows_give_the_absorbed_types_own_in_model_cost(tmp_path):
    # glm4 blocks (with post-norms) timed alone; whole models timed as glm4 and as glm (the
    # type pangu exports once the post-norms are absorbed), whose layers run faster
    rows = synthetic_rows()
    unit = fit_predictor(append_rows(tmp_path / "blocks.csv", rows))
    plain, absorbed = InModel(1.12, 0.004), InModel(1.02, -0.001)
    rows += _model_rows(unit, plain) + _model_rows(unit, absorbed, model_type="glm")
    predictor = fit_predictor(append_rows(tmp_path / "t.csv", rows))
    assert predictor.model_type == "glm4"  # the family of the block rows
    assert predictor.in_model.prefill_scale == pytest.approx(plain.prefill_scale)
    assert predictor.in_model.decode_overhead_ms == pytest.approx(plain.decode_overhead_ms)
    assert predictor.absorbed_in_model.prefill_scale == pytest.approx(absorbed.prefill_scale)
    assert predictor.absorbed_in_model.decode_overhead_ms == pytest.approx(
        absorbed.decode_overhead_ms)
    arch, w = BASE.replace(num_hidden_layers=5), Workload(2, 16, 5)
    faster = predict_latency(arch, w, predictor, absorbed=True).tokens_per_s
    assert faster > predict_latency(arch, w, predictor).tokens_per_s
    assert predict_latency(arch, w, unit, absorbed=True).tokens_per_s == pytest.approx(
        predict_latency(arch, w, unit).tokens_per_s)  # not measured: the plain cost serves
    save_predictor(predictor, tmp_path / "p.json")
    assert load_predictor(tmp_path / "p.json") == predictor


LADDER = tuple((n, BASE.hidden_size) for n in (2, 4, 8))  # the parent's widths at 3 depths


def test_the_absorbed_types_cost_is_the_parent_types_plus_their_paired_difference(tmp_path):
    # each arch's blocks are predicted a little off, alike for both types; the parent type
    # has the ladder's rows too. Paired arch by arch, the fitted absorbed cost differs from
    # the parent type's by exactly what absorption saves; the absorbed rows alone did not.
    rows = synthetic_rows()
    unit = fit_predictor(append_rows(tmp_path / "blocks.csv", rows))
    plain, saving = InModel(1.05, 0.004, 0.03), -0.0015
    absorbed = dataclasses.replace(plain, decode_overhead_ms=plain.decode_overhead_ms + saving)
    errors = dict(zip(MODEL_ARCHS + LADDER, (0.002, 0.003, -0.001, 0.004, 0.0, 0.0, 0.0)))
    glm = _model_rows(unit, absorbed, model_type="glm", errors=errors)
    table = append_rows(tmp_path / "t.csv", rows + _model_rows(
        unit, plain, archs=MODEL_ARCHS + LADDER, errors=errors) + glm)
    predictor = fit_predictor(table)
    fitted = predictor.absorbed_in_model
    assert fitted.decode_overhead_ms - predictor.in_model.decode_overhead_ms == pytest.approx(
        saving, rel=1e-6)
    assert fitted.step_overhead_ms == predictor.in_model.step_overhead_ms
    alone = fit_in_model(predictor, read_table(tmp_path / "t.csv").query("model_type == 'glm'"),
                         predictor.in_model.step_overhead_ms)
    assert abs(alone.decode_overhead_ms - predictor.in_model.decode_overhead_ms - saving) > 1e-4


def test_the_depth_ladder_separates_the_steps_cost_from_each_layers(tmp_path):
    # a decode step costs c more once any layer runs before the head, each layer o more:
    # the ladder (one width, several depths) pins c; the other archs' o follows with c out
    rows = synthetic_rows()
    unit = fit_predictor(append_rows(tmp_path / "blocks.csv", rows))
    truth = InModel(1.05, 0.004, 0.03)
    absorbed = InModel(1.0, 0.001, 0.03)  # the engine's step costs the same for either type
    table = append_rows(tmp_path / "t.csv", rows + _model_rows(unit, truth, archs=MODEL_ARCHS
                                                               + LADDER)
                        + _model_rows(unit, absorbed, model_type="glm"))
    predictor = fit_predictor(table)
    for fitted, want in ((predictor.in_model, truth), (predictor.absorbed_in_model, absorbed)):
        assert not fitted.per_weight_mib  # fixed costs: the ms form fits them exactly
        assert fitted.prefill_scale == pytest.approx(want.prefill_scale)
        assert fitted.decode_overhead_ms == pytest.approx(want.decode_overhead_ms)
        assert fitted.step_overhead_ms == pytest.approx(want.step_overhead_ms)
    report = validate_predictor(predictor, table)  # leave one arch out: two depths remain
    assert report.count("workload") == len(MODEL_ARCHS + LADDER)
    assert report.median_ape(None) < 1e-9
    save_predictor(predictor, tmp_path / "p.json")
    assert load_predictor(tmp_path / "p.json") == predictor


def test_without_the_ladder_a_shallow_model_comes_out_too_fast(tmp_path):
    # what the ladder fixes: fitted into o alone, c goes to the deep models the rows were
    rows = synthetic_rows()
    unit = fit_predictor(append_rows(tmp_path / "blocks.csv", rows))
    truth = InModel(1.0, 0.004, 0.03)
    w, shallow, deep = Workload(2, 16, 5), BASE.replace(num_hidden_layers=1), BASE
    ladder = fit_predictor(append_rows(tmp_path / "l.csv", rows + _model_rows(
        unit, truth, archs=LADDER)))
    spread = fit_predictor(append_rows(tmp_path / "s.csv", rows + _model_rows(
        unit, truth, archs=((6, 64), (8, 96)))))  # one depth per width: no ladder
    assert spread.in_model.step_overhead_ms == 0.0
    for arch in (shallow, deep):
        b = predict_latency(arch, w, unit).breakdown
        ms = sum(b.values()) + 4 * (arch.num_hidden_layers * 0.004 + 0.03)
        assert predict_latency(arch, w, ladder).total_ms == pytest.approx(ms, rel=1e-9)
    b = predict_latency(shallow, w, unit).breakdown
    assert predict_latency(shallow, w, spread).total_ms < sum(b.values()) + 4 * (0.004 + 0.03)


def test_overheads_that_grow_with_the_weights_read_are_fitted_per_mib(tmp_path):
    # each step inside the model reads its weights again (a block timed alone finds them in
    # cache): c grows with the lm_head's MiB, o with the layer's. The per-MiB form fits the
    # rows exactly and is kept; the ms form, fitted on the same rows, predicts a narrow
    # shallow arch too slow
    rows = synthetic_rows()
    unit = fit_predictor(append_rows(tmp_path / "blocks.csv", rows))
    truth = InModel(1.05, 0.02, 0.05, per_weight_mib=True)
    absorbed = InModel(1.0, 0.01, 0.05, per_weight_mib=True)
    table = append_rows(tmp_path / "t.csv", rows + _model_rows(unit, truth, archs=MODEL_ARCHS
                                                               + LADDER)
                        + _model_rows(unit, absorbed, model_type="glm"))
    predictor = fit_predictor(table)
    for fitted, want in ((predictor.in_model, truth), (predictor.absorbed_in_model, absorbed)):
        assert fitted.per_weight_mib
        assert fitted.decode_overhead_ms == pytest.approx(want.decode_overhead_ms)
        assert fitted.step_overhead_ms == pytest.approx(want.step_overhead_ms)
    assert validate_predictor(predictor, table).median_ape(None) < 1e-9  # leave one arch out
    save_predictor(predictor, tmp_path / "p.json")
    assert load_predictor(tmp_path / "p.json") == predictor
    in_ms = fit_predictor(table, per_weight_mib=False)
    assert not in_ms.in_model.per_weight_mib
    narrow, w = BASE.replace(num_hidden_layers=2, hidden_size=32), Workload(2, 16, 5)
    b = predict_latency(narrow, w, unit).breakdown
    ms = (sum(b.values()) + (truth.prefill_scale - 1) * b["prefill_blocks_ms"]
          + 4 * (truth.step_ms(narrow, 4) + 2 * truth.layer_ms(narrow, 4)))
    assert predict_latency(narrow, w, predictor).total_ms == pytest.approx(ms, rel=1e-9)
    assert predict_latency(narrow, w, in_ms).total_ms > 1.03 * ms  # 4.3% too slow


def test_a_predictor_saved_before_the_per_mib_form_loads_in_ms(table, tmp_path):
    predictor = dataclasses.replace(fit_predictor(table), in_model=InModel(1.1, 0.2, 0.3))
    save_predictor(predictor, tmp_path / "p.json")
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["version"] == 5 and data["in_model"]["per_weight_mib"] is False
    data["version"] = 4  # as written before: overheads in ms, no per_weight_mib
    del data["in_model"]["per_weight_mib"]
    (tmp_path / "p.json").write_text(json.dumps(data))
    assert load_predictor(tmp_path / "p.json") == predictor


def test_a_predictor_saved_before_the_step_cost_loads_with_none(table, tmp_path):
    predictor = dataclasses.replace(fit_predictor(table), in_model=InModel(1.1, 0.2, 0.0))
    save_predictor(predictor, tmp_path / "p.json")
    data = json.loads((tmp_path / "p.json").read_text())
    data["version"] = 3  # as written before: no step_overhead_ms
    del data["in_model"]["step_overhead_ms"]
    del data["in_model"]["per_weight_mib"]
    (tmp_path / "p.json").write_text(json.dumps(data))
    assert load_predictor(tmp_path / "p.json") == predictor
