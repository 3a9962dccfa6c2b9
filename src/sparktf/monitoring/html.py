"""The monitor report as one self-contained HTML page (:func:`render`).

Inline CSS, charts as inline SVG drawn here, no JavaScript, and no URL of any kind (no
script, stylesheet, font or image source; not even the SVG namespace, which HTML does not
need), so the file opens the same offline, from an MLflow artifact or an e-mail. Every
string that comes from data (versions, feature labels, item ids, alert texts) is escaped.

Why our own code: a plotting library's HTML (Plotly, Bokeh, Evidently) inlines a few MB of
JavaScript per page or loads it from a CDN; matplotlib's SVG is self-contained but ~100 kB
per chart with embedded glyph paths. Bars and lines with bands are a few dozen lines of SVG.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

__all__ = ["PALETTE", "bar_chart", "line_chart", "render"]

#: Series colours (colour-blind safe, Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
_METRIC_NAMES = {"ctr": "CTR", "add_to_cart_rate": "add-to-cart rate", "purchase_rate": "purchase rate"}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1100px;
color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
h3{font-size:16px;margin-top:24px}.meta{color:#666;margin-top:0}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f5f5f5}td.l,th.l{text-align:left}.alert{color:#b00020;font-weight:600}.ok{color:#1b7f3b}
.muted{color:#888}.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #eee;padding:4px}
.legend span{display:inline-block;margin-right:12px}.sw{display:inline-block;width:10px;height:10px;
margin-right:4px;vertical-align:middle}details{margin:6px 0}summary{cursor:pointer}
code{font-size:12px;word-break:break-all}
svg text{font:11px system-ui,sans-serif;fill:#333}
"""


def _e(value: Any) -> str:
    """Escape anything from data for HTML text and attributes."""
    return html.escape(str(value), quote=True)


def _finite(x: Any) -> TypeGuard[float]:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _fmt(x: Any, digits: int = 4) -> str:
    if not _finite(x):
        return "–"
    return f"{x:.{digits}f}"


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}%" if _finite(x) else "–"


def _n(x: float) -> str:
    """A coordinate (2 decimals: small files, no precision lost on screen)."""
    return f"{x:.2f}"


# --------------------------------------------------------------------------- charts


def bar_chart(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    width: int = 460,
    title: str = "",
) -> str:
    """Horizontal grouped bars of shares (one group per label, one bar per series), as SVG.

    Missing values (None, NaN) draw no bar. Every coordinate lies inside ``width`` × the
    returned height.
    """
    names = list(series)
    bar, gap, top, left, right = 11, 8, 22 if title else 6, min(170, width // 3), 48
    group = bar * max(len(names), 1) + gap
    height = top + group * max(len(labels), 1) + 6
    values = [v for s in series.values() for v in s if _finite(v)]
    vmax = max(max(values, default=0.0), 1e-12)
    span = width - left - right
    parts = [f'<svg class="bars" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    if title:
        parts.append(f'<text x="{left}" y="14" font-weight="600">{_e(title)}</text>')
    for i, label in enumerate(labels):
        y0 = top + i * group
        text = str(label) if len(str(label)) <= 26 else str(label)[:25] + "…"
        parts.append(f'<text x="{left - 4}" y="{_n(y0 + group / 2)}" text-anchor="end">{_e(text)}</text>')
        for j, name in enumerate(names):
            values_j = series[name]
            v = values_j[i] if i < len(values_j) else None
            if not _finite(v):
                continue
            w = max(0.0, min(span, span * float(v) / vmax))
            y = y0 + j * bar
            colour = PALETTE[j % len(PALETTE)]
            parts.append(
                f'<rect x="{left}" y="{_n(y)}" width="{_n(w)}" height="{bar - 1}" fill="{colour}">'
                f"<title>{_e(name)} {_e(label)}: {_pct(v)}</title></rect>"
            )
            parts.append(f'<text x="{_n(left + w + 3)}" y="{_n(y + bar - 2)}" font-size="10">{_pct(v)}</text>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - 6}" stroke="#999"/>')
    parts.append("</svg>")
    return "".join(parts)


Point = tuple[float, float | None, float | None, float | None]  # x, y, band low, band high


def line_chart(
    series: Mapping[str, Sequence[Point]],
    *,
    width: int = 520,
    height: int = 220,
    title: str = "",
    thresholds: Sequence[tuple[str, float]] = (),
    percent: bool = False,
) -> str:
    """Lines over time (x in epoch seconds) with optional interval bands and dashed
    threshold lines, as SVG. A missing y breaks the line; every coordinate is clamped to
    the plot area, so nothing is drawn outside ``width`` × ``height``."""
    left, right, top, bottom = 52, 12, 24 if title else 10, 34
    xs = [p[0] for s in series.values() for p in s if _finite(p[0])]
    ys = [p[1] for s in series.values() for p in s if _finite(p[1])]
    ys += [t for _, t in thresholds if _finite(t)]
    bands = [v for s in series.values() for p in s for v in p[2:] if _finite(v)]
    # The lines set the scale; a band (a wide interval of a sparse hour) may stretch it to
    # twice their range, and is clipped beyond.
    top_line = max(ys, default=0.0)
    ys += [min(v, 2 * top_line) if top_line > 0 else v for v in bands]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x1 <= x0:
        x0, x1 = x0 - 1800.0, x1 + 1800.0
    y0 = min(0.0, min(ys, default=0.0))
    y1 = max(ys, default=1.0)
    y1 = y0 + 1.0 if y1 <= y0 else y1 + 0.05 * (y1 - y0)
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + max(0.0, min(1.0, (x - x0) / (x1 - x0))) * pw

    def sy(y: float | None) -> float:
        if y is None:  # never: the runs hold finite values only
            return top + ph
        return top + ph - max(0.0, min(1.0, (y - y0) / (y1 - y0))) * ph

    def label(v: float) -> str:
        return f"{100 * v:.1f}%" if percent else f"{v:.3g}"

    parts = [f'<svg class="lines" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    if title:
        parts.append(f'<text x="{left}" y="14" font-weight="600">{_e(title)}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>')
    for k in range(5):
        v = y0 + (y1 - y0) * k / 4
        parts.append(f'<text x="{left - 4}" y="{_n(sy(v) + 4)}" text-anchor="end">{_e(label(v))}</text>')
        parts.append(f'<line x1="{left}" y1="{_n(sy(v))}" x2="{left + pw}" y2="{_n(sy(v))}" stroke="#f0f0f0"/>')
    ticks = sorted(set(xs))
    step = max(1, math.ceil(len(ticks) / 6))
    for x in ticks[::step]:
        text = time.strftime("%m-%d %H:%M", time.gmtime(x))
        anchor = "start" if sx(x) < left + 30 else "end" if sx(x) > left + pw - 30 else "middle"
        parts.append(f'<text x="{_n(sx(x))}" y="{height - bottom + 14}" text-anchor="{anchor}">{_e(text)}</text>')
    for name, value in thresholds:
        if _finite(value):
            parts.append(
                f'<line x1="{left}" y1="{_n(sy(value))}" x2="{left + pw}" y2="{_n(sy(value))}" stroke="#b00020" '
                f'stroke-dasharray="4 3"><title>{_e(name)} {_e(label(value))}</title></line>'
            )
    for j, (name, points) in enumerate(series.items()):
        colour = PALETTE[j % len(PALETTE)]
        pts = sorted((p for p in points if _finite(p[0])), key=lambda p: p[0])
        for run in _runs(pts, lambda p: _finite(p[2]) and _finite(p[3])):
            upper = " ".join(f"{_n(sx(p[0]))},{_n(sy(p[3]))}" for p in run)
            lower = " ".join(f"{_n(sx(p[0]))},{_n(sy(p[2]))}" for p in reversed(run))
            parts.append(f'<polygon class="band" points="{upper} {lower}" fill="{colour}" fill-opacity="0.18"/>')
        for run in _runs(pts, lambda p: _finite(p[1])):
            coords = " ".join(f"{_n(sx(p[0]))},{_n(sy(p[1]))}" for p in run)
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2"/>')
            for p in run:
                parts.append(
                    f'<circle cx="{_n(sx(p[0]))}" cy="{_n(sy(p[1]))}" r="2.5" fill="{colour}">'
                    f"<title>{_e(name)} {_e(time.strftime('%Y-%m-%d %H:%M', time.gmtime(p[0])))}: "
                    f"{_e(label(p[1] or 0.0))}</title></circle>"
                )
    parts.append("</svg>")
    return "".join(parts)


def _runs(points: Sequence[Point], keep: Any) -> list[list[Point]]:
    """Consecutive points that satisfy ``keep`` (a gap breaks a line)."""
    runs: list[list[Point]] = []
    current: list[Point] = []
    for p in points:
        if keep(p):
            current.append(p)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def _legend(names: Sequence[str]) -> str:
    items = "".join(
        f'<span><i class="sw" style="background:{PALETTE[j % len(PALETTE)]}"></i>{_e(n)}</span>'
        for j, n in enumerate(names)
    )
    return f'<div class="legend">{items}</div>'


# --------------------------------------------------------------------------- the page


def _rate_cell(r: Mapping[str, Any] | None) -> str:
    if not r or not _finite(r.get("value")):
        return "–"
    ci = f" [{_fmt(r.get('ci_low'))}, {_fmt(r.get('ci_high'))}]" if _finite(r.get("ci_low")) else ""
    return f"{_fmt(r['value'])}{_e(ci)}"


def _status(status: str | None) -> str:
    cls = "alert" if status == "alert" else "ok" if status == "ok" else "muted"
    return f'<span class="{cls}">{_e(status or "no profile")}</span>'


def _alert_text(a: Mapping[str, Any]) -> str:
    return f"{a.get('feature')} {a.get('statistic')} {_fmt(a.get('value'), 3)} > {a.get('threshold')}"


def _summary(report: Mapping[str, Any]) -> str:
    quality, drift = report.get("quality", {}), report.get("drift", {})
    rows = []
    for v in report.get("versions", []):
        q = quality.get(v, {}).get("total", {})
        d = drift.get(v)
        status = d["total"]["status"] if d else None
        alerts = "; ".join(_alert_text(a) for a in d["total"]["alerts"]) if d else ""
        rates = q.get("rates", {})
        rows.append(
            f'<tr><td class="l">{_e(v)}</td><td>{q.get("requests", 0)}</td><td>{q.get("users", 0)}</td>'
            f"<td>{q.get('impressions', 0)}</td><td>{_rate_cell(rates.get('ctr'))}</td>"
            f"<td>{_rate_cell(rates.get('add_to_cart_rate'))}</td><td>{_rate_cell(rates.get('purchase_rate'))}</td>"
            f'<td class="l">{_status(status)}</td><td class="l">{_e(alerts)}</td></tr>'
        )
    head = (
        '<tr><th class="l">version</th><th>requests</th><th>users</th><th>impressions</th><th>CTR</th>'
        '<th>add-to-cart rate</th><th>purchase rate</th><th class="l">drift</th><th class="l">alerts</th></tr>'
    )
    body = "".join(rows) or '<tr><td class="l" colspan="9">no replies in the window</td></tr>'
    return f'<section id="summary"><h2>Summary</h2><table>{head}{body}</table></section>'


def _quality(report: Mapping[str, Any]) -> str:
    quality = report.get("quality", {})
    alpha = report.get("alpha", 0.05)
    charts = []
    for metric, name in _METRIC_NAMES.items():
        series = {
            v: [
                (h["t"], h["rates"][metric]["value"], h["rates"][metric]["ci_low"], h["rates"][metric]["ci_high"])
                for h in q.get("hours", [])
            ]
            for v, q in quality.items()
        }
        charts.append(f'<div class="chart">{line_chart(series, title=f"{name} per hour", percent=True)}</div>')
    return (
        '<section id="quality"><h2>Online quality</h2>'
        f'<p class="meta">Per impression, per hour of the reply; bands: {100 * (1 - alpha):.0f}% intervals over '
        "users (delta method; a user's impressions are not independent).</p>"
        f'{_legend(list(quality))}<div class="charts">{"".join(charts)}</div></section>'
    )


def _drift_version(version: str, d: Mapping[str, Any], thresholds: Mapping[str, Any]) -> str:
    total = d["total"]
    ref = d.get("reference", {})
    out = [
        f"<h3>version {_e(version)} {_status(total['status'])}</h3>",
        f'<p class="meta">{total["requests"]} replies; reference: {_e(ref.get("model_kind", ""))} '
        f"{_e(ref.get('split', ''))} queries ({ref.get('queries', 0)}), from <code>{_e(ref.get('source', ''))}</code>"
        + (f"; {d['unreadable']} replies with an unreadable context" if d.get("unreadable") else "")
        + "</p>",
    ]
    if total["alerts"]:
        items = "".join(f"<li>{_e(_alert_text(a))}</li>" for a in total["alerts"])
        out.append(f'<ul class="alert">{items}</ul>')
    feats = total["features"]
    names = list(feats)
    hours = d.get("hours", [])
    psi_series = {f: [(h["t"], h["psi"].get(f), None, None) for h in hours] for f in names}
    js_series = {f: [(h["t"], h["js"].get(f), None, None) for h in hours] for f in names}
    out.append(_legend(names))
    psi_chart = line_chart(
        psi_series, title="PSI per hour", thresholds=[("psi_alert", thresholds.get("psi", math.nan))]
    )
    js_chart = line_chart(
        js_series, title="JS distance per hour", thresholds=[("js_alert", thresholds.get("js", math.nan))]
    )
    out.append(f'<div class="charts"><div class="chart">{psi_chart}</div><div class="chart">{js_chart}</div></div>')
    ordered = sorted(names, key=lambda f: (not feats[f]["alert"], -(feats[f]["psi"] or 0.0)))
    for f in ordered:
        info = feats[f]
        chart = bar_chart(
            info["labels"],
            {"reference": info["reference"], "current": info["current"]},
            title=f"{f} ({info['unit']}): shares",
        )
        summary = f"{_e(f)}: PSI {_fmt(info['psi'], 3)}, JS {_fmt(info['js'], 3)}, n = {info['n']}" + (
            ' <span class="alert">drifting</span>' if info["alert"] else ""
        )
        opened = " open" if info["alert"] else ""
        out.append(
            f"<details{opened}><summary>{summary}</summary>"
            f'<div class="chart">{_legend(["reference", "current"])}{chart}</div></details>'
        )
    rates = total.get("rates", {})
    rows = "".join(
        f'<tr><td class="l">{_e(name)}</td><td>{_pct(r.get("value"))}</td><td>{_pct(r.get("reference"))}</td>'
        f'<td>{_pct(r.get("threshold"))}</td><td class="l">{_status("alert" if r.get("alert") else "ok")}</td></tr>'
        for name, r in rates.items()
    )
    out.append(
        '<table><tr><th class="l">rate</th><th>current</th><th>reference</th><th>max</th><th class="l"></th></tr>'
        f"{rows}</table>"
    )
    return "".join(out)


def _drift(report: Mapping[str, Any]) -> str:
    drift = report.get("drift", {})
    thresholds = report.get("thresholds", {})
    parts = ['<section id="drift"><h2>Drift against each version\'s reference profile</h2>']
    parts.append(
        f'<p class="meta">PSI alerts above {_e(thresholds.get("psi"))}, JS distance above {_e(thresholds.get("js"))}, '
        f"with at least {_e(thresholds.get('min_requests'))} replies (per hour and for the whole window).</p>"
    )
    for version in report.get("versions", []):
        if version in drift:
            parts.append(_drift_version(version, drift[version], thresholds))
    missing = report.get("no_profile", {})
    if missing:
        items = "".join(f"<li>{_e(v)}: {_e(why)}</li>" for v, why in sorted(missing.items()))
        parts.append(f'<p class="muted">Versions without a reference profile:</p><ul class="muted">{items}</ul>')
    parts.append("</section>")
    return "".join(parts)


def _skew(report: Mapping[str, Any]) -> str:
    s = report.get("skew")
    if not s:
        return ""
    if s.get("note"):
        return f'<section id="skew"><h2>Training/serving skew</h2><p class="muted">{_e(s["note"])}</p></section>'
    head = (
        '<tr><th class="l">version</th><th>sampled replies</th><th>exact match</th><th>mean Jaccard</th>'
        "<th>mean length diff (served − batch)</th><th>mean |length diff|</th></tr>"
    )

    def row(name: str, m: Mapping[str, Any]) -> str:
        return (
            f'<tr><td class="l">{_e(name)}</td><td>{m.get("requests", 0)}</td><td>{_pct(m.get("exact_share"))}</td>'
            f"<td>{_fmt(m.get('mean_jaccard'), 3)}</td><td>{_fmt(m.get('mean_length_diff'), 2)}</td>"
            f"<td>{_fmt(m.get('mean_abs_length_diff'), 2)}</td></tr>"
        )

    rows = "".join(row(v, m) for v, m in s.get("versions", {}).items()) + row("all", s.get("overall", {}))
    examples = "".join(
        f'<tr><td class="l"><code>{_e(x["request_id"])}</code></td><td class="l">{_e(x["version"])}</td>'
        f'<td class="l">{_e(x["user_id"])}</td><td class="l">{_e(x.get("time") or "")}</td>'
        f'<td class="l"><code>{_e(" ".join(x["served"]))}</code></td>'
        f'<td class="l"><code>{_e(" ".join(x["batch"]))}</code></td><td>{_fmt(x["jaccard"], 2)}</td></tr>'
        for x in s.get("examples", [])
    )
    ex_table = (
        '<h3>Mismatches</h3><table><tr><th class="l">request</th><th class="l">version</th><th class="l">user</th>'
        '<th class="l">time</th><th class="l">served history</th><th class="l">batch history</th><th>Jaccard</th></tr>'
        f"{examples}</table>"
        if examples
        else '<p class="muted">No mismatch in the sample.</p>'
    )
    return (
        '<section id="skew"><h2>Training/serving skew</h2>'
        f'<p class="meta">{_pct(s.get("sample"))} of the replies to named users (by request id): the history the '
        f"server ranked from against the one the feature code builds from every event before the reply "
        f"(last {_e(s.get('max_history'))} steps); {s.get('unreadable', 0)} with an unreadable context.</p>"
        f"<table>{head}{rows}</table>{ex_table}</section>"
    )


def _server(report: Mapping[str, Any]) -> str:
    server = report.get("server")
    if not server:
        return ""
    if server.get("error"):
        return (
            '<section id="server"><h2>The server now</h2>'
            f'<p class="muted">{_e(server.get("url", ""))} unavailable: {_e(server["error"])}</p></section>'
        )
    rows = "".join(
        f'<tr><td class="l">{_e(v.get("model_name", ""))}</td><td class="l">{_e(v.get("version", ""))}</td>'
        f'<td class="l">{_status(v.get("status"))}</td><td>{_e(v.get("requests", ""))}</td>'
        f'<td class="l">{_e("; ".join(_alert_text(a) for a in v.get("alerts", [])))}</td></tr>'
        for v in server.get("versions", [])
    )
    return (
        '<section id="server"><h2>The server now (its sliding window)</h2>'
        '<table><tr><th class="l">model</th><th class="l">version</th><th class="l">status</th><th>requests</th>'
        f'<th class="l">alerts</th></tr>{rows}</table></section>'
    )


def render(report: Mapping[str, Any]) -> str:
    """The whole page of a :mod:`sparktf.monitoring.report` report (see ``report.json``)."""
    window = report.get("window", {})
    title = "sparktf monitor report"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>'
        f"<style>{_CSS}</style></head><body>"
        f"<h1>{title}</h1>"
        f'<p class="meta">Events from {_e(window.get("since", ""))} to {_e(window.get("until", ""))} '
        f"({_e(window.get('hours', ''))} h)"
        + (f" in <code>{_e(report['events_path'])}</code>" if report.get("events_path") else "")
        + f"; generated {_e(report.get('generated_at', ''))}.</p>"
        f"{_summary(report)}{_quality(report)}{_drift(report)}{_skew(report)}{_server(report)}"
        "</body></html>\n"
    )
