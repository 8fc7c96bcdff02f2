"""python -m pipelines.report RUN_DIR: (re)build the run's self-contained HTML report.

One file, no network: plotly.js is embedded once, every figure is inline, every string that comes
from data (file names, errors) is HTML-escaped. Sections: metrics and ROC curves (linear and
log-FPR axes, operating points at FPR = 1e-3 and 1e-2), feature importance (per feature and per
family), score distributions and calibration, confusion counts, most confident errors with
thumbnails, and the data and run provenance.
"""
from __future__ import annotations

import base64
import csv
import html
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from pipelines.options import write_text_atomic

TOP_FEATURES = 25
N_ERRORS_SHOWN = 8
THUMBNAIL_SIDE = 96
LOG_FPR_MIN = 1e-4

STYLE = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2733;background:#f5f7fa}
header{background:#1d2733;color:#fff;padding:20px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#b8c4d0}
nav{padding:8px 32px;background:#fff;border-bottom:1px solid #dde3ea}nav a{margin-right:16px;color:#2563eb;text-decoration:none}
main{padding:16px 32px;max-width:1200px}section{background:#fff;border:1px solid #dde3ea;border-radius:8px;padding:16px 20px;margin:16px 0}
h2{font-size:18px;margin:0 0 12px}table{border-collapse:collapse;margin:8px 0}
th,td{border-bottom:1px solid #e5e9ef;padding:4px 10px;text-align:left;font-variant-numeric:tabular-nums}
th{background:#f0f3f7}.warn{background:#fff4e5;border-left:4px solid #f59e0b;padding:8px 12px;margin:8px 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:12px}.grid>div{min-width:0;overflow:hidden}
.thumbs{display:flex;flex-wrap:wrap;gap:10px}.thumbs figure{margin:0;width:140px;font-size:12px;word-break:break-all}
.thumbs img{width:96px;height:96px;object-fit:cover;border:1px solid #ccd;display:block}
pre{background:#f0f3f7;padding:8px;overflow:auto;max-height:320px;font-size:12px}
"""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def read_csv_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _unquote(name: str) -> str:
    # outputs.safe_cell prefixed formula-like names with a quote; undo it to find the file.
    return name[1:] if name.startswith("'") else name


class Figures:
    """Collects plotly figures as inline <div>s; plotly.js is embedded once by the page."""

    def __init__(self):
        self.count = 0

    def html(self, figure) -> str:
        self.count += 1
        figure.update_layout(template="plotly_white", margin=dict(l=50, r=20, t=40, b=45),
                             autosize=True)
        figure.update_yaxes(automargin=True)
        if figure.layout.height is None:
            figure.update_layout(height=380)
        return figure.to_html(full_html=False, include_plotlyjs=False, default_width="100%",
                              default_height=f"{figure.layout.height}px",
                              div_id=f"figure-{self.count}",
                              config={"displaylogo": False, "responsive": True})


def roc_figures(figures: Figures, curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    import plotly.graph_objects as go
    from sklearn.metrics import roc_curve

    linear, logx = go.Figure(), go.Figure()
    for label, (y, score) in curves.items():
        fpr, tpr, _ = roc_curve(y, score)
        for figure, x in ((linear, fpr), (logx, np.maximum(fpr, LOG_FPR_MIN))):
            figure.add_trace(go.Scatter(x=x, y=tpr, mode="lines", name=label,
                                        line=dict(shape="hv")))
        for target in (1e-3, 1e-2):
            allowed = fpr <= target
            logx.add_trace(go.Scatter(
                x=[max(target, LOG_FPR_MIN)], y=[tpr[allowed].max()], mode="markers",
                marker=dict(size=10, symbol="diamond"), showlegend=False,
                name=f"{label} TPR@FPR={target:g}"))
    for target in (1e-3, 1e-2):
        logx.add_vline(x=target, line_dash="dot", line_color="#888",
                       annotation_text=f"FPR={target:g}")
    linear.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                                line=dict(dash="dash", color="#aaa")))
    linear.update_layout(title="ROC (linear FPR)", xaxis_title="false positive rate",
                         yaxis_title="true positive rate")
    logx.update_layout(title=f"ROC (log FPR from {LOG_FPR_MIN:g})", xaxis_type="log",
                       xaxis_title="false positive rate (log)", yaxis_title="true positive rate",
                       xaxis_range=[np.log10(LOG_FPR_MIN), 0])
    return f'<div class="grid"><div>{figures.html(linear)}</div><div>{figures.html(logx)}</div></div>'


def metrics_table(metrics: dict) -> str:
    rows = []
    repeats = metrics.get("repeats")
    for label, summary in metrics.get("oof", {}).items():
        auc_ci = summary.get("auc_ci")
        cells = [_esc(label), f"{summary['auc']:.4f}" +
                 _interval((auc_ci["ci_low"], auc_ci["ci_high"]) if auc_ci else None)]
        if repeats:
            found = repeats["models"][label]
            cells.append(f"{found['auc_mean']:.4f} <small>(from {found['auc_min']:.3f} to "
                         f"{found['auc_max']:.3f})</small>")
        for key in ("0.001", "0.01"):
            item = summary["tpr_at_fpr"][key]
            flag = "" if item["reliable"] else " ⚠"
            ci = (item["ci_low"], item["ci_high"]) if "ci_low" in item else None
            cells.append(f"{item['tpr']:.4f}{_interval(ci)}{flag} "
                         f"<small>(FPR {item['fpr_reached']:.2g})</small>")
        cells += [str(summary["n_negatives"]), str(summary["n_positives"])]
        if "eer" in summary:
            cells.append(f"{summary['eer']:.4f}")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = ["model", "AUC", "TPR@FPR=1e-3", "TPR@FPR=1e-2", "negatives", "positives"]
    if repeats:
        seeds = repeats["seeds"]
        header.insert(2, f"mean AUC of {repeats['n_repeats']} fold partitions (seeds "
                         f"{seeds[0]}–{seeds[-1]})")
    if any("eer" in s for s in metrics.get("oof", {}).values()):
        header.append("EER")
    warnings = "".join(f'<div class="warn">{_esc(w)}</div>' for w in metrics.get("warnings", []))
    return (f"<table><tr>{''.join(f'<th>{h}</th>' for h in header)}</tr>{''.join(rows)}</table>"
            f"{warnings}<p><small>TPR@FPR: the largest TPR among ROC points whose FPR is at most "
            "the target; ⚠ marks targets with fewer than 10/FPR negatives.</small></p>")


def _number(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def _interval(ci) -> str:
    return f" <small>[{ci[0]:.3f}, {ci[1]:.3f}]</small>" if ci else ""


def importance_figures(figures: Figures, rows: list[dict]) -> str:
    import plotly.graph_objects as go

    if not rows:
        return "<p>No importance recorded.</p>"
    parts = []
    for column, title in (("gain", "total gain"), ("mean_abs_contribution", "mean |contribution|")):
        values = np.array([float(r[column]) for r in rows])
        order = np.argsort(values)[::-1][:TOP_FEATURES][::-1]
        figure = go.Figure(go.Bar(x=values[order], y=[rows[i]["feature"] for i in order],
                                  orientation="h"))
        figure.update_layout(title=f"Top {len(order)} features by {title}", height=560)
        families: dict[str, float] = {}
        for row, value in zip(rows, values):
            families[row["family"]] = families.get(row["family"], 0.0) + value
        names = sorted(families, key=families.get)
        family_figure = go.Figure(go.Bar(x=[families[n] for n in names], y=names,
                                         orientation="h"))
        family_figure.update_layout(title=f"{title.capitalize()} summed per family")
        parts.append(f"<div>{figures.html(figure)}</div><div>{figures.html(family_figure)}</div>")
    return f'<div class="grid">{"".join(parts)}</div>'


def ablation_table(ablation: dict | None) -> str:
    if not ablation:
        return ("<p>No per-family ablation in this run (enable it at fit time).</p>")
    rows = "".join(f"<tr><td>{_esc(f)}</td><td>{v.get('n_features', '')}</td>"
                   f"<td>{_number(v['alone'])}</td><td>{_number(v['without'])}</td></tr>"
                   for f, v in ablation.items())
    return ("<table><tr><th>family</th><th>features</th><th>AUC of this family alone</th>"
            f"<th>AUC of all but it</th></tr>{rows}</table>"
            "<p><small>Out-of-fold AUC of plain LightGBM on the same folds.</small></p>")


def distribution_figures(figures: Figures, y: np.ndarray, score: np.ndarray) -> str:
    import plotly.graph_objects as go
    from sklearn.calibration import calibration_curve

    histogram = go.Figure()
    for label, value in (("real", 0), ("fake", 1)):
        histogram.add_trace(go.Histogram(x=score[y == value], name=label, opacity=0.6,
                                         xbins=dict(start=0, end=1, size=0.02)))
    histogram.update_layout(barmode="overlay", title="Out-of-fold scores per class",
                            xaxis_title="P(fake)", yaxis_title="count")
    prob_true, prob_pred = calibration_curve(y, score, n_bins=10, strategy="quantile")
    calibration = go.Figure([
        go.Scatter(x=prob_pred, y=prob_true, mode="lines+markers", name="model"),
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect",
                   line=dict(dash="dash", color="#aaa"))])
    calibration.update_layout(title="Calibration (10 quantile bins)",
                              xaxis_title="mean predicted P(fake)", yaxis_title="fraction fake")
    return (f'<div class="grid"><div>{figures.html(histogram)}</div>'
            f'<div>{figures.html(calibration)}</div></div>')


def confusion_table(y: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> str:
    predicted = score >= threshold
    tp = int(np.sum(predicted & (y == 1)))
    fp = int(np.sum(predicted & (y == 0)))
    fn = int(np.sum(~predicted & (y == 1)))
    tn = int(np.sum(~predicted & (y == 0)))
    return (f"<p>At threshold {threshold:g}:</p><table><tr><th></th><th>predicted real</th>"
            f"<th>predicted fake</th></tr><tr><th>real</th><td>{tn}</td><td>{fp}</td></tr>"
            f"<tr><th>fake</th><td>{fn}</td><td>{tp}</td></tr></table>")


def thumbnail(path: Path) -> str | None:
    """A small JPEG of ``path`` as a data URI, or None if it cannot be read."""
    import cv2

    from features.image_decode import ImageDecodeError, load_image

    try:
        rgb = load_image(path)
    except (ImageDecodeError, OSError):
        return None
    scale = THUMBNAIL_SIDE / max(rgb.shape[:2])
    small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    return "data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode() if ok else None


def errors_section(oof_rows: list[dict], name_column: str, data_root: Path | None,
                   modality: str) -> str:
    if not oof_rows:
        return "<p>No out-of-fold predictions.</p>"
    scored = [(_unquote(r[name_column]), int(r["target"]), float(r["y_pred"])) for r in oof_rows]
    false_positives = sorted((s for s in scored if s[1] == 0), key=lambda s: -s[2])[:N_ERRORS_SHOWN]
    false_negatives = sorted((s for s in scored if s[1] == 1), key=lambda s: s[2])[:N_ERRORS_SHOWN]
    parts = []
    for title, items in (("Most confident false positives (real scored as fake)", false_positives),
                         ("Most confident false negatives (fake scored as real)", false_negatives)):
        figures = []
        for name, _, score in items:
            image = None
            if modality == "image" and data_root is not None:
                from pipelines.datasets import resolve_inside
                try:
                    image = thumbnail(resolve_inside(data_root, name))
                except ValueError:
                    image = None
            picture = f'<img src="{image}" alt="">' if image else ""
            figures.append(f"<figure>{picture}<figcaption>{_esc(name)}<br>P(fake) = {score:.3f}"
                           "</figcaption></figure>")
        parts.append(f"<h3>{title}</h3><div class='thumbs'>{''.join(figures)}</div>")
    return "".join(parts)


def tuning_section(figures: Figures, tuning: dict | None) -> str:
    """Optuna's optimisation history and parameter importances, per study of the final stack."""
    import plotly.graph_objects as go

    if not tuning:
        return "<p>No tuning in this run (plain LightGBM; fit with --model stack to tune).</p>"
    parts = []
    for study, record in tuning.items():
        done = [t for t in record["trials"] if t["value"] is not None and t["state"] == "COMPLETE"]
        history = go.Figure()
        if done:
            values = np.array([t["value"] for t in done])
            history.add_trace(go.Scatter(x=[t["number"] for t in done], y=values, mode="markers",
                                         name="trial AUC"))
            history.add_trace(go.Scatter(x=[t["number"] for t in done],
                                         y=np.maximum.accumulate(values), mode="lines",
                                         name="best so far", line=dict(shape="hv")))
        history.update_layout(title=f"{study}: optimisation history ({len(record['trials'])} "
                              "trials)", xaxis_title="trial", yaxis_title="mean CV AUC", height=320)
        importances = record.get("param_importances") or {}
        names = sorted(importances, key=importances.get)
        bars = go.Figure(go.Bar(x=[importances[n] for n in names], y=names, orientation="h"))
        bars.update_layout(title=f"{study}: parameter importances (fANOVA)", height=320)
        parts.append(f"<div>{figures.html(history)}</div><div>{figures.html(bars)}</div>")
    return f'<div class="grid">{"".join(parts)}</div>'


def run_section(run_dir: Path, metrics: dict, manifest: dict, y: np.ndarray) -> str:
    run = metrics.get("run", {})
    failed = read_csv_rows(run_dir / "extract_errors.csv")
    failed_rows = "".join(f"<tr><td>{_esc(_unquote(next(iter(r.values()))))}</td>"
                          f"<td>{_esc(r.get('kind', ''))}</td><td>{_esc(r.get('error', ''))}</td></tr>"
                          for r in failed[:50])
    failed_html = (f"<table><tr><th>file</th><th>kind</th><th>error</th></tr>{failed_rows}</table>"
                   + (f"<p>... and {len(failed) - 50} more in extract_errors.csv</p>"
                      if len(failed) > 50 else "")) if failed else "<p>No file failed.</p>"
    counts = (f"<p>{len(y)} rows: {int(np.sum(y == 0))} real, {int(np.sum(y == 1))} fake. "
              f"Data fingerprint <code>{_esc(run.get('data_fingerprint', '?'))}</code>; fit took "
              f"{run.get('seconds', 0):.1f} s.</p>")
    config = json.dumps({"run": {k: v for k, v in run.items() if k != "versions"},
                         "feature_config": manifest.get("feature_config")}, indent=2)
    versions = json.dumps(run.get("versions", {}), indent=2)
    return (f"{counts}<h3>Files that failed</h3>{failed_html}<h3>Configuration</h3>"
            f"<pre>{_esc(config)}</pre><h3>Versions</h3><pre>{_esc(versions)}</pre>")


def build_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` from the files of a run folder; returns its path."""
    from plotly.offline import get_plotlyjs

    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise ValueError(f"{run_dir}: no metrics.json; not a run folder written by pipelines.fit")
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    manifest = json.loads((run_dir / "model" / "manifest.json").read_text(encoding="utf-8"))
    name_column = manifest.get("name_column", "img_name")
    oof_rows = read_csv_rows(run_dir / "oof.csv")
    y = np.array([int(r["target"]) for r in oof_rows])
    score = np.array([float(r["y_pred"]) for r in oof_rows])
    primary = metrics.get("primary", "model")
    curves = {primary: (y, score)}
    for extra in sorted(run_dir.glob("oof_*.csv")):  # per-learner predictions of a stack
        rows = read_csv_rows(extra)
        curves[extra.stem[4:]] = (np.array([int(r["target"]) for r in rows]),
                                  np.array([float(r["y_pred"]) for r in rows]))
    figures = Figures()
    modality = manifest.get("feature_config", {}).get("modality", "image")
    data_root = metrics.get("run", {}).get("data_root") or _data_root_of(manifest, metrics)
    sections = [
        ("metrics", "Metrics and ROC curves", metrics_table(metrics) + roc_figures(figures, curves)),
        ("importance", "Feature importance",
         importance_figures(figures, read_csv_rows(run_dir / "importance.csv"))
         + "<h3>Per-family ablation</h3>" + ablation_table(metrics.get("ablation"))),
        ("scores", "Scores, calibration and confusion",
         distribution_figures(figures, y, score) + confusion_table(y, score)),
        ("tuning", "Tuning", tuning_section(figures, _read_json(run_dir / "tuning.json"))),
        ("errors", "Error analysis",
         errors_section(oof_rows, name_column, Path(data_root) if data_root else None, modality)),
        ("run", "Data and run", run_section(run_dir, metrics, manifest, y)),
    ]
    robustness = run_dir / "robustness" / "robustness.json"
    if robustness.is_file():
        from pipelines.evaluate import robustness_section
        sections.insert(-1, ("robustness", "Robustness to processing", robustness_section(
            json.loads(robustness.read_text(encoding="utf-8")), figures)))
    nav = "".join(f'<a href="#{key}">{_esc(title)}</a>' for key, title, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{_esc(title)}</h2>{content}</section>'
                   for key, title, content in sections)
    auc = metrics["oof"][primary]["auc"]
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
            f"<title>Deepfake detector report: AUC {auc:.4f}</title><style>{STYLE}</style>"
            f"<script>{get_plotlyjs()}</script></head><body><header><h1>Deepfake detector "
            f"report</h1><p>{_esc(run_dir.resolve().name)}: out-of-fold AUC {auc:.4f}</p></header>"
            f"<nav>{nav}</nav><main>{body}</main></body></html>")
    out = run_dir / "report.html"
    write_text_atomic(out, page)
    return out


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _data_root_of(manifest: dict, metrics: dict) -> str | None:
    features_file = metrics.get("run", {}).get("features_file")
    if not features_file or not Path(features_file).is_file():
        return None
    from pipelines.extract import read_features_metadata
    return read_features_metadata(Path(features_file)).get("data_root")


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="pipelines.report", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="run folder written by pipelines.fit")
    args = parser.parse_args(argv)
    try:
        out = build_report(args.run_dir)
    except (ValueError, OSError, KeyError, json.JSONDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
