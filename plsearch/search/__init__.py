"""The hardware-aware search: space -> Optuna study -> built, retrained, scored candidates.

    summary = run_search(SearchOptions(budget="1.5x", trials=12))
    trial = choose_trial(open_for_export(out_dir="reports/default-1.5x"), best_for="1.5x")
    export_candidate(study, trial, "my-model/")

Study: directions [maximize, maximize] = [accuracy objective, predicted tokens/s]; the
budget is a constraint (constraints_func reads the ``constraint`` user attribute,
budget - predicted tokens/s, <= 0 when feasible).

Trial user attributes: arch, params, predicted_tokens_per_s, recipe, rung (highest rung reached, 0-based; -1 = not built),
rungs_total, rung_scores (objective value at each rung), kd_steps, kd_tokens, kd_curve
([step, tokens, kd_loss, ce_loss, lr] rows), scores ({task: {metric: value}}), accuracy
(weighted task score), perplexity, seconds ({build, kd, eval, total}), fail_reason (FAIL
trials), feasible, constraint, candidate_dir (top-rung candidates), duplicate_of (the
sampler re-proposed an arch already evaluated: its attributes and values are copied from
that trial, nothing is rebuilt, and it does not count as a built candidate), surplus
(PRUNED unbuilt: earlier trials of other workers already built --trials candidates).

Study user attributes (besides the run facts): ``measured_tokens_per_s/<trial number>``
for every verified Pareto candidate (a finished trial's own attributes are frozen; read
them with ``study.measured_tokens_per_s``), parent_measured_tokens_per_s, verification,
pareto_front. A FAIL trial whose worker died is named in the ``retry_history`` system
attribute of the trial that retried its arch (``study.dead_trials``).

The first objective value is accuracy - perplexity_weight * ln(perplexity) (a tie-break),
measured at the highest rung the trial reached; use rung == rungs_total - 1 for the fully
evaluated front (``pareto_front``).
"""

from plsearch.search.budget import Budget, check_reachable, parse_budget
from plsearch.search.export import choose_trial, export_candidate, model_card, open_for_export
from plsearch.search.run import SearchOptions, SearchSummary, run_search
from plsearch.search.space import SearchGrid, SearchSpace, load_space
from plsearch.search.verify import fully_evaluated, pareto_front

__all__ = [
    "Budget",
    "SearchGrid",
    "SearchOptions",
    "SearchSpace",
    "SearchSummary",
    "check_reachable",
    "choose_trial",
    "export_candidate",
    "fully_evaluated",
    "load_space",
    "model_card",
    "open_for_export",
    "pareto_front",
    "parse_budget",
    "run_search",
]
