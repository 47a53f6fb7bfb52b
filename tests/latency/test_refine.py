"""The residual correction learns what the predictor misses on whole models."""

from __future__ import annotations

import math

import pytest

from plsearch.latency.refine import Correction, fit_correction, refinement_report


def test_no_pairs_is_the_identity():
    assert fit_correction([]).apply(123.0) == 123.0


def test_a_constant_bias_is_removed():
    pairs = [(p, p * 0.8) for p in (100.0, 150.0, 220.0)]  # predictor 25% too fast
    correction = fit_correction(pairs)
    assert correction.pairs == 3 and correction.b == 0.0
    assert correction.apply(180.0) == pytest.approx(144.0)


def test_a_speed_dependent_bias_uses_a_slope_once_there_are_enough_pairs():
    pairs = [(p, p * (p / 200.0) ** -0.2) for p in (80.0, 120.0, 160.0, 240.0, 300.0, 400.0)]
    correction = fit_correction(pairs)
    assert correction.b == pytest.approx(-0.2, abs=1e-9)
    assert correction.apply(500.0) == pytest.approx(500.0 * 2.5 ** -0.2)
    steep = fit_correction([(p, p * (p / 200.0) ** -3) for p, _ in pairs], max_slope=0.5)
    assert steep.b == -0.5  # a slope is kept within bounds


def test_report_shows_error_before_and_after_leave_one_out():
    pairs = [(p, p * 0.8 * (1 + 0.02 * (-1) ** i)) for i, p in
             enumerate((100.0, 130.0, 170.0, 210.0))]
    report = refinement_report(pairs)
    assert report["pairs"] == 4
    assert report["median_abs_before"] == pytest.approx(0.25, abs=0.03)
    assert report["median_abs_after"] < 0.05
    assert report["median_signed_before"] > 0.2


def test_correction_factor_is_exp_of_the_model():
    c = Correction(a=0.1, b=0.5, center=math.log(100.0), pairs=5)
    assert c.factor(100.0) == pytest.approx(math.exp(0.1))
    assert c.factor(400.0) == pytest.approx(math.exp(0.1 + 0.5 * math.log(4.0)))
