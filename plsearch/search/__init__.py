"""The hardware-aware search: space -> feasible archs -> Optuna study -> built, retrained,
scored candidates.

    summary = run_search(SearchOptions(budget="1.5x", trials=12))
    record = choose_trial(open_for_export(out_dir="reports/default-1.5x"), best_for="1.5x")
    export_candidate(study, record, "my-model/")

Study: directions [maximize, maximize] = [accuracy objective, predicted tokens/s]. The
latency predictor is cheap, so the archs that meet the budget are known before the first
trial (proposals.py); the sampler proposes only those, the budget band's best first (the
lowest held-out KL to the parent right after the build, band.py). An
arch that was not evaluated has no accuracy: it is never handed to a sampler with a
made-up value.

Everything a trial stores is one ``TrialRecord`` (record.py): the arch, predicted and
measured speed, rung scores and signals, scores with their standard errors, the KD curve,
seconds per stage and the fail reason; it converts to and from Optuna attributes. What is
learnt after a trial ends (measured tokens/s, dominated once measured) lives in the
study's attributes, one key per trial, and ``TrialRecord.from_trial`` folds it in. A FAIL
trial whose worker died is named in the ``retry_history`` system attribute of the trial
that retried its arch (``study.dead_trials``).

The objective is accuracy - kl_weight * KL(parent || candidate) on held-out text, at the
highest rung the trial reached, with a 95% interval propagated from the tasks' standard
errors (scoring.py). The front (``pareto_front``) is taken over fully evaluated trials on
(objective, tokens/s measured where measured, else predicted).
"""

from plsearch.search.budget import Budget, check_reachable, parse_budget
from plsearch.search.export import choose_trial, export_candidate, model_card, open_for_export
from plsearch.search.pareto import hypervolume_2d, pareto_mask, pareto_ranks
from plsearch.search.proposals import FeasibleSampler, FeasibleSet, feasible_set
from plsearch.search.record import TrialRecord
from plsearch.search.run import SearchOptions, SearchSummary, run_search
from plsearch.search.space import SearchGrid, SearchSpace, load_space
from plsearch.search.verify import fully_evaluated, pareto_front

__all__ = [
    "Budget",
    "FeasibleSampler",
    "FeasibleSet",
    "SearchGrid",
    "SearchOptions",
    "SearchSpace",
    "SearchSummary",
    "TrialRecord",
    "check_reachable",
    "choose_trial",
    "export_candidate",
    "feasible_set",
    "fully_evaluated",
    "hypervolume_2d",
    "load_space",
    "model_card",
    "open_for_export",
    "pareto_front",
    "pareto_mask",
    "pareto_ranks",
    "parse_budget",
    "run_search",
]
