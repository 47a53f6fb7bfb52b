"""The shipped cpu table and its predictor JSON agree, and the fit needs no scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from plsearch.latency.lookup import measured_tables
from plsearch.latency.predictor import fit_predictor, load_predictor, nnls
from plsearch.latency.table import default_db_dir, read_table

SHIPPED = measured_tables("cpu", default_db_dir())


def test_one_cpu_table_ships_with_its_predictor():
    assert len(SHIPPED) == 1
    assert SHIPPED[0].with_suffix(".predictor.json").exists()


@pytest.mark.parametrize("csv", SHIPPED, ids=lambda p: p.name)
def test_shipped_predictor_json_is_the_fit_of_its_csv(csv):
    table = read_table(csv)
    shipped = load_predictor(csv.with_suffix(".predictor.json"))
    refit = fit_predictor(table, seed=shipped.seed)
    assert shipped.meta["fitted_rows"] == refit.meta["fitted_rows"]
    assert shipped.fingerprint == refit.fingerprint
    assert (shipped.engine, shipped.analytic, shipped.dtype) == (
        refit.engine, refit.analytic, refit.dtype)
    for key, cost in refit.costs.items():
        assert shipped.costs[key].rows == cost.rows
        np.testing.assert_allclose(shipped.costs[key].coef, cost.coef, rtol=1e-6, atol=1e-15)
    for ours, theirs in ((shipped.in_model, refit.in_model),
                         (shipped.absorbed_in_model, refit.absorbed_in_model)):
        assert (ours is None) == (theirs is None)
        if ours is not None:
            assert ours.to_dict() == pytest.approx(theirs.to_dict(), rel=1e-6)


def test_nnls_matches_scipy():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.normal(size=(40, 7))
        b = rng.normal(size=40)
        ours = nnls(a, b)
        theirs = scipy_optimize.nnls(a, b)[0]
        assert (ours >= 0).all()
        np.testing.assert_allclose(np.linalg.norm(a @ ours - b),
                                   np.linalg.norm(a @ theirs - b), rtol=1e-7)
