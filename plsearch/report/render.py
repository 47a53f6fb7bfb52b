"""Render step: ReportData -> one self-contained HTML page (plotly, SVG only, no WebGL)."""

from __future__ import annotations

import html
import json
import logging
import shlex
from pathlib import Path
from typing import Any

import pandas as pd

from plsearch import atomic
from plsearch.report.data import (
    ARCH_KEYS,
    ReportData,
    ablation_summary,
    arch_label,
    as_number,
    as_text,
    load_report_data,
)
from plsearch.search.study import MEASURED_PREFIX

log = logging.getLogger(__name__)

# Figure divs in page order; a panel without data shows a note instead of its div.
FIGURE_IDS = ("fig-pareto", "fig-parallel", "fig-predictor", "fig-kd", "fig-progress")

_COLORS = {"front": "#d62728", "dominated": "#1f77b4", "measured dominated": "#ff7f0e",
           "lower rung": "#9ecae1",
           "infeasible": "#7f7f7f", "failed": "#000000", "unfinished": "#bcbd22"}
_SYMBOLS = {"front": "star", "dominated": "circle", "measured dominated": "circle-x",
            "lower rung": "circle-open",
            "infeasible": "square-open", "failed": "x-thin-open", "unfinished": "diamond-open"}
_LEGEND = {"front": "Pareto front", "dominated": "dominated (eligible)",
           "measured dominated": "dominated once measured",
           "lower rung": "stopped at a lower rung", "infeasible": "infeasible (over budget)",
           "failed": "failed", "unfinished": "no accuracy yet"}


def export_command(data: ReportData, number: int) -> str:
    """The shell command that exports trial ``number`` as an HF checkpoint."""
    facts = data.facts
    in_run_dir = facts.run_dir and facts.storage.startswith("sqlite:///") and \
        Path(facts.storage[len("sqlite:///"):]).resolve() == Path(facts.run_dir, "study.db").resolve()
    if in_run_dir:
        source = ["--run", facts.run_dir]
    else:  # a shared storage: its password, if any, shows as *** and must be filled in
        source = ["--storage", facts.storage, "--study", facts.study_name]
    parts = ["plsearch", "export", *source, "--trial", str(number),
             "--out", f"exports/{facts.study_name}-trial{number}"]
    return " ".join(shlex.quote(p) for p in parts)


def render_report(data: ReportData) -> str:
    """The whole report as one HTML string (plotly.js inlined once)."""
    from plotly.offline import get_plotlyjs

    facts = data.facts
    panels, figures = [], {}
    for fig_id, title, build in (
        ("fig-pareto", "Pareto front: accuracy vs tokens/s (measured where measured)",
         _pareto_figure),
        ("fig-parallel", "Architectures of the completed trials", _parallel_figure),
        ("fig-predictor", "Predictor check: predicted vs measured tokens/s", _predictor_figure),
        ("fig-kd", "KD loss of the front candidates", _kd_figure),
        ("fig-progress", "Search progress", _progress_figure),
    ):
        result = build(data)
        if isinstance(result, str):
            body = _no_data(result)
        else:
            figures[fig_id] = result
            body = f'<div id="{fig_id}" class="plsearch-figure"></div>'
        if fig_id == "fig-pareto":
            body += _front_note(data)
        if fig_id == "fig-predictor":
            body += _predictor_errors(data)
        panels.append(f"<section><h2>{html.escape(title)}</h2>{body}</section>")
    trials = (_trials_table_note() + _html_table(*_trial_table_rows(data), table_id="trials")
              if len(data.trials) else _no_data("the study has no trials yet"))
    panels.insert(1, f"<section><h2>Trials</h2>{trials}</section>")
    panels.append(f"<section><h2>Ablation</h2>{_ablation(data)}</section>")
    panels.append(f"<section><h2>Run facts</h2>{_run_facts(data)}</section>")
    figure_json = "{" + ",".join(f"{json.dumps(k)}:{fig.to_json()}"
                                 for k, fig in figures.items()) + "}"
    title = f"plsearch report: {facts.study_name}"
    return _PAGE.format(
        title=html.escape(title), css=_CSS, summary=_summary(data), panels="\n".join(panels),
        plotlyjs=get_plotlyjs(), figures=_script_json(figure_json), table_js=_TABLE_JS)


def write_report(data: ReportData | None = None, *, out: str | Path, storage_url: str | None = None,
                 study_name: str | None = None, run_dir: str | Path | None = None) -> Path:
    """Write the report to ``out`` atomically (temporary file, then rename); returns ``out``.

    Pass ``data`` from load_report_data, or the same arguments load_report_data takes.
    """
    if data is None:
        data = load_report_data(storage_url=storage_url, study_name=study_name, run_dir=run_dir)
    out = atomic.write_text(out, render_report(data))
    log.info("wrote %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return out


def _pareto_figure(data: ReportData):
    import plotly.graph_objects as go

    table, facts = data.trials, data.facts
    drawable = table[table["tokens_per_s"].notna()]
    if drawable.empty:
        return "no trial has a predicted tokens/s yet"

    def error_bars(rows) -> dict:
        """95% intervals of the accuracy, as plotly's asymmetric error bars."""
        return {"type": "data", "symmetric": False, "visible": True, "thickness": 1,
                "array": (rows["accuracy_ci_high"] - rows["accuracy"]).fillna(0).tolist(),
                "arrayminus": (rows["accuracy"] - rows["accuracy_ci_low"]).fillna(0).tolist()}

    known = drawable["accuracy"].dropna().tolist()
    if facts.parent_accuracy is not None:
        known.append(facts.parent_accuracy)
    low, high = (min(known), max(known)) if known else (0.0, 1.0)
    floor = low - 0.08 * ((high - low) or 1.0)  # where trials without an accuracy sit
    fig = go.Figure()
    for status in ("dominated", "measured dominated", "lower rung", "infeasible", "failed",
                   "unfinished"):
        rows = drawable[drawable["status"] == status]
        if rows.empty:
            continue
        y = rows["accuracy"].fillna(floor)
        name = _LEGEND[status] + (" (no accuracy: drawn at the bottom)"
                                  if rows["accuracy"].isna().any() else "")
        fig.add_trace(go.Scatter(
            x=rows["tokens_per_s"], y=y, mode="markers", name=name,
            error_y=error_bars(rows) if status in ("dominated", "measured dominated") else None,
            marker={"color": _COLORS[status], "symbol": _SYMBOLS[status], "size": 9},
            hovertext=[_hover(r) for _, r in rows.iterrows()], hoverinfo="text"))
    front = data.front
    if not front.empty:
        fig.add_trace(go.Scatter(
            x=front["tokens_per_s"], y=front["accuracy"], mode="lines+markers",
            error_y=error_bars(front),
            name=_LEGEND["front"], line={"color": _COLORS["front"], "shape": "vh"},
            marker={"color": _COLORS["front"], "symbol": "star", "size": 14},
            hovertext=[_hover(r) for _, r in front.iterrows()], hoverinfo="text"))
    if facts.parent_tokens_per_s is not None:
        if facts.parent_accuracy is not None:
            fig.add_trace(go.Scatter(
                x=[facts.parent_tokens_per_s], y=[facts.parent_accuracy], mode="markers+text",
                name="parent", text=["parent"], textposition="top center",
                marker={"color": "#2ca02c", "symbol": "diamond", "size": 14},
                hovertext=[_parent_hover(data)], hoverinfo="text"))
        else:
            fig.add_vline(x=facts.parent_tokens_per_s, line={"color": "#2ca02c", "dash": "dot"},
                          annotation_text="parent (accuracy not evaluated)")
    if facts.budget_tokens_per_s is not None:
        label = f"budget {facts.budget_spec or ''} = {facts.budget_tokens_per_s:,.0f} tokens/s"
        fig.add_vline(x=facts.budget_tokens_per_s, line={"color": "#d62728", "dash": "dash"},
                      annotation_text=html.escape(label), annotation_position="bottom right")
    fig.update_layout(xaxis_title="tokens/s: measured where measured, else predicted "
                      "(higher is faster)",
                      yaxis_title="accuracy (weighted task score, 95% interval)", **_LAYOUT)
    return fig


def _parallel_figure(data: ReportData):
    """Parallel coordinates drawn as SVG lines (plotly's parcoords needs WebGL)."""
    import plotly.graph_objects as go

    rows = data.trials[data.trials["accuracy"].notna()
                       & data.trials[list(ARCH_KEYS)].notna().all(axis=1)]
    if rows.empty:
        return "no completed trial with an architecture and an accuracy yet"
    axes = [k for k in ARCH_KEYS if rows[k].nunique() > 1] or list(ARCH_KEYS)
    axes += ["params", "predicted_tokens_per_s", "accuracy"]
    axes = [k for k in axes if rows[k].notna().all()]
    spans = {k: (rows[k].min(), rows[k].max()) for k in axes}
    acc_low, acc_high = spans["accuracy"]
    fig = go.Figure()
    for _, row in rows.sort_values("accuracy").iterrows():
        y = [(row[k] - lo) / (hi - lo) if hi > lo else 0.5 for k, (lo, hi) in spans.items()]
        share = (row["accuracy"] - acc_low) / (acc_high - acc_low) if acc_high > acc_low else 1
        fig.add_trace(go.Scatter(
            x=list(range(len(axes))), y=y, mode="lines", showlegend=False,
            line={"color": _viridis(share), "width": 3 if row["on_front"] else 1.5},
            opacity=1.0 if row["on_front"] else 0.6, hovertext=_hover(row), hoverinfo="text"))
    fig.add_trace(go.Scatter(  # carries the colour bar only
        x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
        marker={"color": [acc_low, acc_high], "colorscale": "Viridis", "showscale": True,
                "cmin": acc_low, "cmax": acc_high, "colorbar": {"title": {"text": "accuracy"}}}))
    for i, key in enumerate(axes):
        lo, hi = spans[key]
        fig.add_vline(x=i, line={"color": "#444", "width": 1})
        for y, value in ((1.0, hi), (0.0, lo)):
            fig.add_annotation(x=i, y=y, text=_fmt(value), showarrow=False,
                               yshift=10 if y else -10, font={"size": 10})
    fig.update_layout(
        xaxis={"tickvals": list(range(len(axes))), "ticktext": [_AXIS_NAMES.get(k, k)
                                                                  for k in axes]},
        yaxis={"visible": False, "range": [-0.12, 1.12]}, **_LAYOUT)
    return fig


def _predictor_figure(data: ReportData):
    import plotly.graph_objects as go

    pred = data.predictor
    if pred.empty:
        return ("no candidate was measured on the device (measured_tokens_per_s is set only "
                "for verified Pareto candidates)")
    top = float(max(pred["predicted_tokens_per_s"].max(), pred["measured_tokens_per_s"].max()))
    low = float(min(pred["predicted_tokens_per_s"].min(), pred["measured_tokens_per_s"].min()))
    span = [low * 0.9, top * 1.1]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=span, y=span, mode="lines", name="predicted = measured",
                             line={"color": "#888", "dash": "dash"}, hoverinfo="skip"))
    for band, dash in ((0.1, "dot"),):
        fig.add_trace(go.Scatter(x=span, y=[v * (1 + band) for v in span], mode="lines",
                                 name=f"+/-{band:.0%}", line={"color": "#bbb", "dash": dash},
                                 hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=span, y=[v * (1 - band) for v in span], mode="lines",
                                 showlegend=False, line={"color": "#bbb", "dash": dash},
                                 hoverinfo="skip"))
    hover = [f"{html.escape(r['label'])}<br>predicted {r['predicted_tokens_per_s']:,.1f}"
             f"<br>measured {r['measured_tokens_per_s']:,.1f}<br>error {r['error_pct']:+.1f}%"
             for _, r in pred.iterrows()]
    fig.add_trace(go.Scatter(
        x=pred["measured_tokens_per_s"], y=pred["predicted_tokens_per_s"],
        mode="markers+text", name="verified", text=[html.escape(v) for v in pred["label"]],
        textposition="top center", marker={"size": 10, "color": "#1f77b4"},
        hovertext=hover, hoverinfo="text"))
    fig.update_layout(xaxis_title="measured tokens/s (whole model on the device)",
                      yaxis_title="predicted tokens/s (latency table)", **_LAYOUT)
    return fig


def _kd_figure(data: ReportData):
    import plotly.graph_objects as go

    front = data.front["number"].tolist()
    curves = data.kd_curves[data.kd_curves["number"].isin(front)
                            & data.kd_curves["kd_loss"].notna()]
    if not front:
        return "no Pareto front yet"
    if curves.empty:
        return "the front candidates recorded no KD curve (kd_curve)"
    x_key = "tokens" if curves["tokens"].notna().all() else "step"
    fig = go.Figure()
    labels = dict(zip(data.front["number"], data.front["arch_label"]))
    for number, curve in curves.groupby("number", sort=True):
        label = html.escape(f"trial {number} {labels.get(number, '')}")
        fig.add_trace(go.Scatter(x=curve[x_key], y=curve["kd_loss"], mode="lines", name=label,
                                 hovertemplate=f"{label}<br>{x_key} %{{x:,}}<br>"
                                               "KD loss %{y:.4f}<extra></extra>"))
    fig.update_layout(xaxis_title=f"KD {x_key}", yaxis_title="KD loss (forward KL)", **_LAYOUT)
    return fig


def _progress_figure(data: ReportData):
    from plotly.subplots import make_subplots

    progress = data.progress
    if progress["best_feasible_accuracy"].isna().all():
        return "no eligible trial yet (COMPLETE, feasible, at the front rung)"
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "hypervolume (accuracy x tokens/s above the reference point)",
        "best feasible accuracy"))
    fig.add_scatter(x=progress["number"], y=progress["hypervolume"], mode="lines+markers",
                    line={"shape": "hv"}, name="hypervolume", row=1, col=1)
    fig.add_scatter(x=progress["number"], y=progress["best_feasible_accuracy"],
                    mode="lines+markers", line={"shape": "hv"}, name="best feasible accuracy",
                    row=1, col=2)
    fig.update_xaxes(title_text="trial number")
    fig.update_layout(showlegend=False, **_LAYOUT)
    return fig


def _hover(row) -> str:
    """Hover text of one trial; every user string escaped (plotly renders a few tags)."""
    lines = [f"<b>trial {row['number']}</b> ({_LEGEND.get(row['status'], row['status'])})"]
    if row["arch_label"]:
        lines.append(html.escape(row["arch_label"]))
    if pd.notna(row["params"]):
        lines.append(f"params {row['params'] / 1e6:.2f} M")
    if row["recipe"]:
        lines.append(f"recipe {html.escape(row['recipe'])}")
    if pd.notna(row["rung"]) and row["rung"] >= 0:
        rungs = "" if pd.isna(row["rungs_total"]) else f" of {int(row['rungs_total'])}"
        lines.append(f"rung {int(row['rung']) + 1}{rungs}")
    if pd.notna(row["accuracy"]):
        lines.append(f"accuracy {row['accuracy']:.4f}{_ci_text(row, 'accuracy')}")
    if pd.notna(row["objective"]):
        lines.append(f"objective {row['objective']:.4f}{_ci_text(row, 'objective')}")
    lines.append(f"predicted {_fmt(row['predicted_tokens_per_s'])} tokens/s")
    lines.append(f"measured {_fmt(row['measured_tokens_per_s'])} tokens/s")
    if row["fail_reason"]:
        lines.append(f"failed: {html.escape(row['fail_reason'][:200])}")
    return "<br>".join(lines)


def _ci_text(row, column: str) -> str:
    low, high = row.get(f"{column}_ci_low"), row.get(f"{column}_ci_high")
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return ""
    return f" (95% {low:.4f} to {high:.4f})"


def _parent_hover(data: ReportData) -> str:
    facts, attrs = data.facts, data.study_attrs
    arch = attrs.get("parent_arch") if isinstance(attrs.get("parent_arch"), dict) else {}
    lines = [f"<b>parent</b> {html.escape(as_text(attrs.get('parent')))}"]
    if arch_label(arch):
        lines.append(html.escape(arch_label(arch)))
    if as_number(attrs.get("parent_params")) is not None:
        lines.append(f"params {as_number(attrs['parent_params']) / 1e6:.2f} M")
    lines.append(f"accuracy {_fmt(facts.parent_accuracy)}")
    lines.append(f"predicted {_fmt(facts.parent_tokens_per_s)} tokens/s")
    lines.append(f"measured {_fmt(facts.parent_measured_tokens_per_s)} tokens/s")
    return "<br>".join(lines)


_TABLE_COLUMNS = (  # (header, trials column, format)
    ("trial", "number", "int"), ("status", "status", "text"),
    ("accuracy", "accuracy", "acc"), ("95% interval", "accuracy", "ci"),
    ("predicted tok/s", "predicted_tokens_per_s", "num"),
    ("measured tok/s", "measured_tokens_per_s", "num"), ("params (M)", "params", "mega"),
    ("objective", "objective", "acc"), ("objective 95%", "objective", "ci"),
    ("KL to parent", "kl", "num4"), ("arch", "arch_label", "text"),
    ("recipe", "recipe", "text"), ("rung", "rung", "rung"),
    ("perplexity", "perplexity", "num2"), ("KD tokens", "kd_tokens", "num"),
    ("time (s)", "seconds_total", "num"), ("note", "fail_reason", "text"),
)


def _trial_table_rows(data: ReportData):
    headers = [h for h, _, _ in _TABLE_COLUMNS] + ["export (front candidates)"]
    rows = []
    for _, row in data.trials.iterrows():
        cells = []
        for _, key, kind in _TABLE_COLUMNS:
            value = row[key]
            if kind == "text":
                text = _LEGEND.get(value, value) if key == "status" else as_text(value)
                cells.append((text, text))
            elif kind == "ci":
                text = _ci_text(row, key).strip(" ()").replace("95% ", "")
                cells.append((text, float(row[f"{key}_ci_low"]) if text else None))
            elif value is None or pd.isna(value) or (kind == "rung" and value < 0):
                cells.append(("", None))
            elif kind == "rung":
                total = "" if pd.isna(row["rungs_total"]) else f"/{int(row['rungs_total'])}"
                cells.append((f"{int(value) + 1}{total}", float(value)))
            else:
                cells.append((_format(value, kind), float(value)))
        command = export_command(data, int(row["number"])) if row["on_front"] else ""
        cells.append((command, command))
        rows.append(cells)
    return headers, rows


def _trials_table_note() -> str:
    return ("<p class='note'>Click a column header to sort. Only eligible trials (COMPLETE, "
            "feasible, and at the top rung of the KD ladder) can be on the front; the "
            "objective column is what the search maximized (accuracy less a weighted "
            "held-out KL to the parent). Intervals are 95% (normal approximation from the "
            "tasks' standard errors); two trials are told apart only when their intervals "
            "do not overlap.</p>")


def _front_note(data: ReportData) -> str:
    facts = data.facts
    rung = "" if facts.rungs_total is None else f" (reached rung {facts.rungs_total} of " \
        f"{facts.rungs_total})"
    return (f"<p class='note'>{facts.n_trials} trials: {facts.n_complete} complete, "
            f"{facts.n_failed} failed, {facts.n_eligible} fully evaluated{rung}, "
            f"{len(data.front)} of them on the front (red stars, joined by the edge of the "
            "region they dominate). Trials without an accuracy (failed, infeasible, "
            "unfinished) sit at the bottom. Hover a point for its details.</p>")


def _predictor_errors(data: ReportData) -> str:
    facts = data.facts
    if not facts.predictor_n:
        return ""
    pred = data.predictor
    headers = ["point", "predicted tok/s", "measured tok/s", "error %"]
    rows = [[(r["label"], r["label"]),
             (_fmt(r["predicted_tokens_per_s"]), r["predicted_tokens_per_s"]),
             (_fmt(r["measured_tokens_per_s"]), r["measured_tokens_per_s"]),
             (f"{r['error_pct']:+.1f}", r["error_pct"])] for _, r in pred.iterrows()]
    summary = (f"<p class='note'>{facts.predictor_n} verified points: mean absolute error "
               f"{facts.predictor_mean_abs_error_pct:.1f}%, max {facts.predictor_max_abs_error_pct:.1f}%, "
               f"mean signed error {facts.predictor_mean_error_pct:+.1f}% "
               "(positive: the predictor promises more tokens/s than the device gives).</p>")
    return summary + _html_table(headers, rows, table_id="predictor")


def _ablation(data: ReportData) -> str:
    source = _ablation_source(data.ablation_text)
    if data.ablation is not None and not data.ablation.empty:
        summary = ablation_summary(data.ablation)
        if summary is None:  # not the ablation bench's columns: the file as it is
            frame = data.ablation
            rows = [[_cell(v) for v in record] for record in frame.itertuples(index=False)]
            return source + _html_table([str(c) for c in frame.columns], rows,
                                        table_id="ablation")
        headers = ["shape", "recipe", "params (M)", "seeds", "KD loss (final)",
                   "KD loss / minitron", "skills acc (final)", "skills / minitron"]
        rows = []
        for r in summary.to_dict("records"):
            rows.append([_cell(r["shape"]), _cell(r["recipe"]),
                         (_fmt(r.get("params", 0) / 1e6), r.get("params")),
                         (str(r["seeds"]), r["seeds"]),
                         _mean_sd(r, "kd_loss_final"), _ratio(r.get("kd_loss_final_ratio")),
                         _mean_sd(r, "skills_acc_final"),
                         _ratio(r.get("skills_acc_final_ratio"))])
        return (source + "<p class='note'>Mean +- sd over seeds; a ratio is the recipe over "
                "minitron's on the same shape (lower KD loss and higher skills are better)."
                "</p>" + _html_table(headers, rows, table_id="ablation"))
    if data.ablation_text:
        return f"<pre>{html.escape(data.ablation_text)}</pre>"
    return _no_data("the run folder has no ablation.csv or ablation.md "
                    "(bench/reinit_ablation.py writes them)")


def _ablation_source(text: str | None) -> str:
    """The ablation.md line naming the command that measured the table, when there is one."""
    for line in (text or "").splitlines():
        if line.lower().startswith("command:"):
            return f"<p class='note'>{html.escape(line.strip())}</p>"
    return ""


def _cell(value: Any) -> tuple[str, Any]:
    number = as_number(value)
    return (_fmt(number), number) if number is not None else (as_text(value), as_text(value))


def _ratio(value: Any) -> tuple[str, Any]:
    number = as_number(value)
    return (f"{number:.3f}", number) if number is not None else ("-", None)


def _mean_sd(row: dict[str, Any], metric: str) -> tuple[str, Any]:
    mean, sd = as_number(row.get(metric)), as_number(row.get(f"{metric}_sd"))
    if mean is None:
        return ("", None)
    return (f"{mean:.3f} +- {sd:.3f}" if sd is not None else f"{mean:.3f}", mean)


_FACT_KEYS = ("parent", "parent_arch", "parent_params", "parent_tokens_per_s",
              "parent_measured_tokens_per_s", "parent_accuracy", "budget", "device_fingerprint",
              "device_profile", "workload", "latency_db", "sampler", "seed", "versions",
              "command", "space", "run_dir")


def _run_facts(data: ReportData) -> str:
    facts, attrs = data.facts, data.study_attrs
    items = [("study", facts.study_name), ("storage", facts.storage)]
    items += [(k, attrs[k]) for k in _FACT_KEYS if k in attrs]
    items += [(k, v) for k, v in sorted(attrs.items())  # measurements: in the tables above
              if k not in _FACT_KEYS and not k.startswith(MEASURED_PREFIX)]
    if data.run_config:
        items.append(("run.json", data.run_config))
    stages = data.stage_seconds
    if not stages.empty:
        items.append(("time per stage (s, summed over trials)",
                      {r["stage"]: round(r["seconds"], 1) for _, r in stages.iterrows()}))
    if facts.wall_seconds is not None:
        items.append(("wall time (s, first trial start to last trial end)",
                      round(facts.wall_seconds, 1)))
    rows = []
    for key, value in items:
        if isinstance(value, (dict, list)):
            text = json.dumps(value, indent=1, default=str)
            shown = f"<pre>{html.escape(text)}</pre>"
            if text.count("\n") > 12:  # long: folded, one click away
                shown = f"<details><summary>{len(value)} entries</summary>{shown}</details>"
        else:
            shown = html.escape(as_text(value))
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td>{shown}</td></tr>")
    return f"<table class='facts'>{''.join(rows)}</table>"


def _with_ci(value: float, se: float | None) -> str:
    from plsearch.search.scoring import interval

    ci = interval(value, se)
    return f"{value:.4f}" + (f" [95% {ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")


def _summary(data: ReportData) -> str:
    f = data.facts
    parts = [f"study <b>{html.escape(f.study_name)}</b>", f"{f.n_trials} trials"]
    if f.budget_tokens_per_s is not None:
        parts.append(f"budget {html.escape(f.budget_spec or '')} = "
                     f"{f.budget_tokens_per_s:,.0f} tokens/s")
    if f.best_feasible_accuracy is not None:
        parts.append(f"best feasible accuracy {_with_ci(f.best_feasible_accuracy, f.best_feasible_accuracy_stderr)} "
                     f"(trial {f.best_feasible_trial})")
        if f.parent_accuracy is not None:
            from plsearch.search.scoring import separated

            apart = separated(f.best_feasible_accuracy, f.best_feasible_accuracy_stderr,
                              f.parent_accuracy, f.parent_accuracy_stderr)
            parts.append(f"parent {_with_ci(f.parent_accuracy, f.parent_accuracy_stderr)}: "
                         + ("the intervals separate" if apart else "the intervals overlap "
                            "(not told apart)"))
    parts.append(f"hypervolume {f.hypervolume:,.4g} (reference accuracy "
                 f"{f.reference_point[0]:g}, {f.reference_point[1]:,.0f} tokens/s)")
    if f.predictor_mean_abs_error_pct is not None:
        parts.append(f"predictor error {f.predictor_mean_abs_error_pct:.1f}% mean abs")
    return " &middot; ".join(parts)


def _html_table(headers: list[str], rows: list[list[tuple[str, Any]]], table_id: str) -> str:
    """A sortable table; each cell is (shown text, numeric sort key or None: sort by text)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for cells in rows:
        tds = []
        for text, key in cells:
            attr = "" if as_number(key) is None else f' data-v="{as_number(key)!r}"'
            tds.append(f"<td{attr}>{html.escape(as_text(text))}</td>")
        body.append(f"<tr>{''.join(tds)}</tr>")
    return (f"<div class='scroll'><table class='sortable' id='{table_id}'><thead><tr>{head}"
            f"</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def _no_data(reason: str) -> str:
    return f"<p class='nodata'>No data: {html.escape(reason)}.</p>"


def _script_json(text: str) -> str:
    """JSON that is safe inside <script>: no '</script>', no HTML comment or CDATA openers."""
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _format(value: float, kind: str) -> str:
    if kind == "int":
        return str(int(value))
    if kind == "acc":
        return f"{value:.4f}"
    if kind == "mega":
        return f"{value / 1e6:.3f}"
    if kind == "num2":
        return f"{value:.2f}"
    return _fmt(value)


def _fmt(value: Any) -> str:
    number = as_number(value)
    if number is None:
        return "-"
    if number == int(number) and abs(number) < 1e15:
        return f"{int(number):,}"
    return f"{number:,.1f}" if abs(number) >= 100 else f"{number:.4g}"


def _viridis(share: float) -> str:
    stops = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
    share = min(max(float(share), 0.0), 1.0) * (len(stops) - 1)
    i = min(int(share), len(stops) - 2)
    t = share - i
    r, g, b = (round(a + (b - a) * t) for a, b in zip(stops[i], stops[i + 1]))
    return f"rgb({r},{g},{b})"


_AXIS_NAMES = {"num_hidden_layers": "layers", "hidden_size": "hidden",
               "num_attention_heads": "query heads", "num_key_value_heads": "KV groups",
               "head_dim": "head dim", "intermediate_size": "FFN", "params": "params",
               "predicted_tokens_per_s": "pred. tok/s", "accuracy": "accuracy"}
_LAYOUT = {"template": "plotly_white", "height": 460, "margin": {"l": 60, "r": 30, "t": 40,
                                                                 "b": 50},
           "hoverlabel": {"align": "left"}}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 6px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.summary{color:#444;margin-bottom:12px} .note{color:#555;font-size:13px}
.nodata{color:#8a6d3b;background:#fcf8e3;border:1px solid #faebcc;padding:10px;border-radius:4px}
.scroll{overflow-x:auto;max-height:520px;overflow-y:auto}
table{border-collapse:collapse;font-size:12.5px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
table.sortable th{cursor:pointer;background:#f5f5f5;position:sticky;top:0}
table.sortable th.asc:after{content:" \\25B2"} table.sortable th.desc:after{content:" \\25BC"}
td{font-variant-numeric:tabular-nums;white-space:nowrap}
table.facts th{background:#f5f5f5;white-space:nowrap} table.facts td{white-space:normal}
pre{margin:0;font-size:12px;white-space:pre-wrap;max-height:260px;overflow:auto}
summary{cursor:pointer;color:#1f4e8c}
"""

_TABLE_JS = r"""
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var desc = !th.classList.contains("desc");
      table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
      th.classList.add(desc ? "desc" : "asc");
      function key(row) {
        var cell = row.cells[col], v = cell.getAttribute("data-v");
        if (v === null) v = cell.textContent;
        if (v === "") return null;
        var n = Number(v);
        return isNaN(n) ? v.toLowerCase() : n;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null) return y === null ? 0 : 1;  // blanks last either way
        if (y === null) return -1;
        var c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
        return desc ? -c : c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{css}</style>
<script>{plotlyjs}</script>
</head><body>
<h1>{title}</h1><div class="summary">{summary}</div>
{panels}
<script id="plsearch-figures" type="application/json">{figures}</script>
<script>
(function () {{
  var figures = JSON.parse(document.getElementById("plsearch-figures").textContent);
  var config = {{responsive: true, displaylogo: false}};
  var drawn = Object.keys(figures).map(function (id) {{
    return Plotly.newPlot(id, figures[id].data, figures[id].layout || {{}}, config);
  }});
  Promise.all(drawn).then(function () {{ window.plsearchReady = true; }});
}})();
{table_js}
</script>
</body></html>
"""
