"""The monitoring report: one self-contained HTML file with inline SVG charts (no script, no CDN).

``write_report(cfg, run_id)`` reads only the warehouse (read-only connection) and the registry and
writes ``<artifacts>/report.html`` atomically. Every section renders when its tables are missing
or empty (first run, failed run) and says so.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb

from orchestration.config import PipelineConfig
from orchestration.monitoring.policy import champion_manifest
from training.warehouse import connect_warehouse

SECTIONS = ("runs", "validation", "gates", "champion", "drift", "predictions", "features", "decisions", "simulation")
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")
W, H, L, R, T, B = 640, 240, 56, 150, 24, 40


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _query(con: duckdb.DuckDBPyConnection | None, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows, or [] when the warehouse or a table is missing (first or failed run)."""
    if con is None:
        return []
    try:
        return con.execute(sql, list(params)).fetchall()
    except duckdb.CatalogException:
        return []


def line_chart(series: dict[str, list[tuple[float, float]]], x_labels: dict[float, str], title: str, y_label: str,
               threshold: float | None = None) -> str:
    """An SVG line chart with axes, ticks, a legend and an optional dashed threshold line."""
    points = [p for s in series.values() for p in s if p[1] is not None]
    if not points:
        return f'<p class="empty">{_e(title)}: no data yet.</p>'
    xs = [p[0] for p in points]
    ys = [p[1] for p in points] + ([threshold] if threshold is not None else [])
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(0.0, min(ys)), max(ys) * 1.1 if max(ys) > 0 else 1.0
    px = lambda x: L + (x - x0) / (x1 - x0) * (W - L - R)  # noqa: E731
    py = lambda y: H - B - (y - y0) / (y1 - y0) * (H - T - B)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img" aria-label="{_e(title)}">',
           f'<text x="{L}" y="14" font-size="13" font-weight="bold">{_e(title)}</text>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="#333"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="#333"/>',
           f'<text x="12" y="{(H - B + T) / 2}" font-size="11" transform="rotate(-90 12 {(H - B + T) / 2})" '
           f'text-anchor="middle">{_e(y_label)}</text>']
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        out.append(f'<line x1="{L - 4}" y1="{py(y):.1f}" x2="{W - R}" y2="{py(y):.1f}" stroke="#eee"/>'
                   f'<text x="{L - 6}" y="{py(y) + 4:.1f}" font-size="10" text-anchor="end">{y:.3g}</text>')
    ticks = sorted(x_labels)
    step = max(1, -(-len(ticks) // 8))  # at most 8 labels, so dates never overlap
    for x in ticks[::step]:
        out.append(f'<line x1="{px(x):.1f}" y1="{H - B}" x2="{px(x):.1f}" y2="{H - B + 4}" stroke="#333"/>'
                   f'<text x="{px(x):.1f}" y="{H - B + 16}" font-size="10" text-anchor="middle">{_e(x_labels[x])}</text>')
    if threshold is not None:
        out.append(f'<line x1="{L}" y1="{py(threshold):.1f}" x2="{W - R}" y2="{py(threshold):.1f}" stroke="#d62728" '
                   f'stroke-dasharray="5,4"/><text x="{W - R + 4}" y="{py(threshold) + 4:.1f}" font-size="10" '
                   f'fill="#d62728">threshold {threshold:g}</text>')
    for k, (name, pts) in enumerate(series.items()):
        color = COLORS[k % len(COLORS)]
        pts = sorted(p for p in pts if p[1] is not None)
        if pts:
            path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{color}"/>' for x, y in pts]
        out.append(f'<rect x="{W - R + 10}" y="{T + 14 * k}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{W - R + 24}" y="{T + 9 + 14 * k}" font-size="10">{_e(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{_e(empty)}</p>'
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, bool):
            return '<span class="ok">yes</span>' if v else '<span class="bad">no</span>'
        return _e(v)
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _day_series(rows: list[tuple[Any, ...]]) -> tuple[dict[str, list[tuple[float, float]]], dict[float, str]]:
    """(series, day, value) rows -> chart series on a day axis."""
    series: dict[str, list[tuple[float, float]]] = {}
    labels: dict[float, str] = {}
    for name, day, value in rows:
        x = float(day.toordinal())
        labels[x] = day.strftime("%m-%d")
        series.setdefault(str(name), []).append((x, None if value is None else float(value)))
    return series, labels


def _sections(con: duckdb.DuckDBPyConnection | None, cfg: PipelineConfig) -> dict[str, str]:
    s: dict[str, str] = {}
    # DAG status and stage durations, from the engine's run records (ops.*).
    stage_rows = _query(con, "select run_id, min(started_at), stage, status, duration_s from ops.stage_runs "
                             "group by run_id, stage, status, duration_s order by 2")
    runs = _query(con, "select run_id, command, started_at, finished_at, status, error from ops.pipeline_runs "
                       "order by started_at desc limit 20")
    status = _table(("run", "command", "started", "finished", "status", "error"), runs, "no pipeline runs recorded yet")
    latest = _query(con, "select stage, status, reason, round(duration_s, 2), attempts, error from ops.stage_runs "
                         "where run_id = (select run_id from ops.pipeline_runs order by started_at desc limit 1) "
                         "order by started_at")
    status += "<h3>Stages of the latest run</h3>" + _table(
        ("stage", "status", "why", "seconds", "attempts", "error"), latest, "no stage recorded for it")
    order = {r: i for i, r in enumerate(dict.fromkeys(r[0] for r in stage_rows))}
    series: dict[str, list[tuple[float, float]]] = {}
    for run_id, _, stage, _, seconds in stage_rows:
        series.setdefault(stage, []).append((float(order[run_id]), seconds or 0.0))
    labels = {float(i): r[:6] for r, i in order.items()}
    s["runs"] = status + line_chart(series, labels, "Stage durations per run (x: run)", "seconds")
    alerts = _query(con, "select raised_at, run_id, stage, severity, message from validation.alerts order by raised_at desc limit 10")
    s["runs"] += "<h3>Alerts</h3>" + _table(("raised", "run", "stage", "severity", "message"),
                                            [(a, b, c, d, (e or "")[:300]) for a, b, c, d, e in alerts], "no alerts")

    last = _query(con, "select run_id from validation.check_results order by checked_at desc limit 1")
    checks = _query(con, "select check_name, table_name, column_name, severity, passed, actual_value, message "
                         "from validation.check_results where run_id = ? order by passed, check_name", [last[0][0]]) if last else []
    hist = _query(con, "select 'failed checks', checked_at::date, count(*) filter (where not passed) "
                       "from validation.check_results group by all order by 2")
    ser, lab = _day_series(hist)
    s["validation"] = (f"<p>Latest run {_e(last[0][0]) if last else '-'}: {len(checks)} checks, "
                       f"{sum(1 for c in checks if not c[4])} not passed (failures first, 12 shown; all in validation.check_results).</p>"
                       + _table(("check", "table", "column", "severity", "passed", "actual", "message"),
                                [(a, b, c, d, e, f, (g or "")[:160]) for a, b, c, d, e, f, g in checks[:12]],
                                "no data validation results yet"))
    s["gates"] = _table(("run", "bundle", "gate", "value", "comparison", "threshold", "passed"),
                        _query(con, "select run_id, left(bundle_id, 12), gate, value, comparison, threshold, passed "
                                    "from ml.gate_results order by recorded_at desc limit 30"), "no gate results yet")

    manifest = champion_manifest(cfg.registry) if (cfg.registry / "champion.json").exists() else None
    champ = manifest["bundle_id"] if manifest else None
    runs_m = _query(con, "select t.run_id, t.recorded_at, left(coalesce(t.bundle_id, ''), 12), t.status, m.value "
                         "from ml.training_runs t left join ml.run_metrics m on m.run_id = t.run_id and m.split = 'test' "
                         "and m.metric = 'roc_auc' order by t.recorded_at desc limit 10")
    promos = _query(con, "select promoted_at, left(bundle_id, 12), left(coalesce(previous_bundle_id, ''), 12), promoted_by, reason "
                         "from ml.promotions order by promoted_at desc limit 10")
    s["champion"] = (f"<p>Champion: <b>{_e(champ[:12] if champ else 'none yet')}</b>"
                     + (f", test ROC AUC {manifest.get('metrics', {}).get('test', {}).get('roc_auc', float('nan')):.4f}"
                        if manifest else "") + "</p>"
                     + "<h3>Training runs (challengers)</h3>"
                     + _table(("run", "recorded", "bundle", "status", "test ROC AUC"), runs_m, "no training runs yet")
                     + "<h3>Promotions</h3>" + _table(("promoted", "bundle", "previous", "by", "reason"), promos, "no promotions yet"))

    drift = _query(con, "select data_source || ' ' || column_name, day, psi from monitoring.monitoring_daily_drift "
                        "where psi is not null order by day")
    served = [r for r in drift if r[0].startswith("served")]
    landed = [(n, d, v) for n, d, v in drift if n.startswith("landed")]
    thr = cfg.monitoring.drift_psi_threshold
    s["drift"] = (line_chart(*_day_series(served), "Drift of served inputs vs the champion's training baseline (PSI)",
                             "PSI", threshold=thr)
                  + line_chart(*_day_series(landed), "Drift of landed data vs the champion's training baseline (PSI)",
                               "PSI", threshold=thr)
                  + line_chart(*_day_series(_query(
                      con, "select feature_name, day, psi from monitoring.monitoring_daily_feature_drift "
                           "where feature_name in (select feature_name from monitoring.monitoring_daily_feature_drift "
                           "group by all order by max(psi) desc limit 8) order by day")),
                      "Drift of the model's features in landed data, 7 days ending each day (PSI; the 8 largest)",
                      "PSI", threshold=thr)
                  + "<h3>Model features on the newest landed day</h3>" + _table(
                      ("feature", "day", "PSI (7 days)", "largest bin change", "null fraction", "baseline nulls",
                       "drifted"),
                      _query(con, "select feature_name, day, psi, max_share_change, round(null_fraction, 4), "
                                  "round(baseline_null_fraction, 4), case when is_drifted then 'DRIFTED' else 'no' end "
                                  "from monitoring.monitoring_daily_feature_drift where day = (select max(day) from "
                                  "monitoring.monitoring_daily_feature_drift) order by feature_order"),
                      "no data yet: the monitor stage builds it once a model is deployed")
                  + line_chart(*_day_series(_query(con, "select data_source || ' ' || column_name, day, unseen_share "
                                                        "from monitoring.monitoring_daily_drift where unseen_share > 0 order by day")),
                               "Unseen-category share", "share")
                  + line_chart(*_day_series(_query(con, "select data_source || ' ' || column_name, day, null_fraction "
                                                        "from monitoring.monitoring_daily_drift where null_fraction > 0 order by day")),
                               "Null rates", "fraction"))
    s["predictions"] = (
        line_chart(*_day_series(_query(con, "select 'predictions', day, sum(count_predictions) from "
                                            "monitoring.monitoring_daily_predictions group by all order by day")),
                   "Request volume (served predictions per transaction day)", "predictions")
        + line_chart(*_day_series(_query(con, "select 'score PSI ' || left(model_id, 8), day, score_psi from "
                                              "monitoring.monitoring_daily_predictions order by day")),
                     "Score drift vs the model's first served day", "PSI", threshold=thr)
        + line_chart(*_day_series(_query(con, "select m, day, v from monitoring.monitoring_daily_performance "
                                              "unpivot (v for m in (roc_auc, precision, recall)) order by day")),
                     "Real performance once labels landed", "metric")
        + line_chart(*_day_series(_query(con, "select m, day, v from monitoring.served_vs_point_in_time "
                                              "unpivot (v for m in (served_roc_auc, point_in_time_roc_auc)) order by day")),
                     "Served ROC AUC beside point in time (the same events, the warehouse's features)", "ROC AUC")
        + _table(("day", "model", "feature", "compared", "equal", "share equal", "max difference"),
                 [(d, (m or "")[:12], f, n, e, round(sh, 5), x) for d, m, f, n, e, sh, x in _query(
                     con, "select day, model_id, feature_name, count_compared, count_equal, share_equal, max_abs_diff "
                          "from monitoring.monitoring_daily_consistency where day >= (select max(day) - 6 from "
                          "monitoring.monitoring_daily_consistency) order by day desc, share_equal, feature_name")],
                 "no served prediction has landed yet: online/offline consistency is measured once it has"))
    meta = (manifest or {}).get("lineage", {}).get("feature_meta") or {}
    s["features"] = _table(("feature", "available from", "owner", "description"),
                           [(f, m.get("available_from"), m.get("owner"), m.get("description"))
                            for f, m in sorted(meta.items())] if isinstance(meta, dict) else [],
                           "no champion bundle yet: feature availability comes from its lineage")
    s["decisions"] = _table(("decided", "run", "fire", "reasons"),
                            [(a, b, c, "; ".join(d)) for a, b, c, d in _query(
                                con, "select decided_at, run_id, fire, reasons from monitoring.retrain_decisions "
                                     "order by decided_at desc limit 30")], "no retrain decisions yet")
    s["simulation"] = _table(("day", "drift", "served", "labels landed", "run", "exit", "retrain fired", "champion"),
                             [(a, ", ".join(b or []) or "none", c, ", ".join(map(str, d or [])), e, f, g, (h or "")[:12])
                              for a, b, c, d, e, f, g, h in _query(
                                 con, "select day, drift, served_rows, landed_days, run_id, exit_code, retrain_fired, "
                                      "champion_id from monitoring.simulation_days order by simulated_at")],
                             "no simulated days (python orchestrate.py simulate --days N)")
    return s


TITLES = {"runs": "DAG status and stage durations", "validation": "Data validation", "gates": "Gate results",
          "champion": "Champion and challengers", "drift": "Drift over time", "predictions": "Predictions, performance and online/offline consistency",
          "features": "Feature availability", "decisions": "Retrain decisions", "simulation": "Simulated days"}

STYLE = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}h2{border-bottom:1px solid #ccc;
padding-bottom:4px;margin-top:32px}table{border-collapse:collapse;font-size:12px;margin:8px 0}td,th{border:1px solid #ddd;
padding:3px 6px;text-align:left;vertical-align:top}th{background:#f4f4f4}.empty{color:#888;font-style:italic}.ok{color:#2ca02c}
.bad{color:#d62728;font-weight:bold}svg{display:block;margin:8px 0}nav a{margin-right:12px}"""


def render(cfg: PipelineConfig, run_id: str | None) -> str:
    """The report's HTML."""
    con = connect_warehouse(cfg.warehouse, read_only=True) if cfg.warehouse.exists() else None
    try:
        sections = _sections(con, cfg)
    finally:
        if con is not None:
            con.close()
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(f'<a href="#{k}">{TITLES[k]}</a>' for k in SECTIONS)
    body = "".join(f'<section id="{k}"><h2>{TITLES[k]}</h2>{sections[k]}</section>' for k in SECTIONS)
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>Pipeline report</title><style>{STYLE}</style></head>'
            f"<body><h1>Pipeline report</h1><p>Generated {now}; latest run {_e(run_id or '-')}; warehouse "
            f"{'present' if con is not None else 'missing'}.</p><nav>{nav}</nav>{body}</body></html>")


def write_report(cfg: PipelineConfig, run_id: str | None = None) -> Path:
    """Write ``<artifacts>/report.html`` (atomically) and return its path."""
    path = cfg.artifacts / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(render(cfg, run_id))
    os.replace(tmp, path)
    return path
