"""The report page's template and style sheet: no external script, stylesheet, font or image.

Kept apart from :mod:`clauditor.dashboards.report` so the code that fills the page reads on its
own. Placeholders are :meth:`str.format` fields; every value put into them is HTML already.
"""

from __future__ import annotations

__all__ = ["CSS", "PAGE"]

CSS = """
:root { --ink:#212529; --muted:#6c757d; --line:#e9ecef; --bg:#f4f6fb; --accent:#4c6ef5;
        --up:#c92a2a; --down:#2b8a3e; --warn:#f08c00; --navy:#1b2a4e; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
header { background:linear-gradient(120deg, #1b2a4e, #364fc7); color:#fff;
         padding:28px 32px 64px; }
header .inner, main { max-width:1280px; margin:0 auto; }
header h1 { margin:0 0 6px; font-size:24px; font-weight:650; }
header .meta { opacity:.9; font-size:13px; }
header .meta span.stale { color:#ffd43b; font-weight:600; }
main { padding:24px 32px 40px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(170px, 1fr)); gap:16px;
         margin-top:-44px; }
.cards.health { margin-top:16px; }
.card { background:#fff; border-radius:10px; padding:16px 18px;
        box-shadow:0 1px 3px rgba(0,0,0,.08); border-top:4px solid var(--accent); }
.card.ok { border-top-color:var(--down); }
.card.warn { border-top-color:var(--warn); }
.card.alert { border-top-color:var(--up); }
.card-title { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.05em; }
.card-value { font-size:28px; font-weight:650; margin:2px 0; font-variant-numeric:tabular-nums; }
.health .card-value { font-size:22px; }
.card.headline .card-value { color:var(--navy); }
.card-detail { color:var(--muted); font-size:12.5px; }
.meter { height:6px; background:#edf2ff; border-radius:3px; margin:6px 0 4px; overflow:hidden; }
.meter span { display:block; height:100%; background:var(--accent); }
.card.warn .meter span { background:var(--warn); } .card.alert .meter span { background:var(--up); }
.up { color:var(--up); font-weight:600; } .down { color:var(--down); font-weight:600; }
.flat { font-weight:600; }
.notice { margin:20px 0 0; padding:12px 16px; border-radius:8px; border-left:5px solid; }
.notice.ok { background:#ebfbee; border-color:#2b8a3e; }
.notice.warn { background:#fff4e6; border-color:var(--warn); }
.notice.info { background:#e7f5ff; border-color:#1c7ed6; }
.notice ul { margin:6px 0 0; padding-left:20px; }
.grid { display:grid; grid-template-columns:repeat(2, minmax(0, 1fr)); gap:16px; margin-top:20px; }
.panel { background:#fff; border-radius:10px; padding:14px 18px;
         box-shadow:0 1px 3px rgba(0,0,0,.08); min-width:0; }
.panel.wide { grid-column:1 / -1; }
.panel h2 { font-size:15px; margin:0 0 2px; font-weight:650; color:var(--navy); }
.panel .lede { color:var(--muted); font-size:12.5px; margin:0 0 8px; }
.panel h3 { font-size:12px; text-transform:uppercase; letter-spacing:.05em; color:var(--muted);
            margin:14px 0 4px; font-weight:600; }
h2.group { grid-column:1 / -1; margin:18px 0 -6px; font-size:13px; text-transform:uppercase;
           letter-spacing:.08em; color:var(--muted); font-weight:650; }
table { width:100%; border-collapse:collapse; font-variant-numeric:tabular-nums; }
.table-wrap { overflow-x:auto; }
th, td { padding:6px 10px; border-bottom:1px solid var(--line); text-align:left;
         overflow-wrap:anywhere; vertical-align:top; }
th { color:var(--muted); font-weight:600; font-size:11.5px; text-transform:uppercase;
     white-space:nowrap; }
td.num, th.num { text-align:right; white-space:nowrap; }
tbody tr:hover { background:#f8f9fa; }
.muted { color:var(--muted); } .small { font-size:11.5px; }
.note { color:var(--muted); font-size:12px; margin:6px 0 0; }
ul.alerts { margin:0 0 6px; padding:8px 12px 8px 28px; background:#fff5f5; border-radius:6px;
            color:#a61e1e; }
.badge { display:inline-block; white-space:nowrap; min-width:44px; text-align:center;
         padding:1px 8px; border-radius:10px; font-size:11.5px; font-weight:650;
         text-transform:uppercase; }
.badge.pass { background:#d3f9d8; color:#2b8a3e; }
.badge.warn { background:#fff3bf; color:#e67700; }
.badge.fail { background:#ffe3e3; color:#c92a2a; } .badge.na { background:#f1f3f5; color:#868e96; }
code { background:#f1f3f5; padding:1px 5px; border-radius:4px; font-size:12px; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:0 16px 28px; }
@media (max-width: 900px) { .grid { grid-template-columns:minmax(0, 1fr); }
                            main { padding:20px 16px; } header { padding:22px 16px 56px; } }
@media print { header { padding-bottom:24px; } .cards { margin-top:12px; }
               .panel { break-inside:avoid; box-shadow:none; border:1px solid var(--line); } }
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
<script>window.PlotlyConfig = {{MathJaxConfig: 'local'}};</script>
<script>{plotlyjs}</script>
</head>
<body>
<header><div class="inner">
  <h1>{heading}</h1>
  <div class="meta">{bounds} &middot; {freshness} &middot; as of {as_of} ({tz})</div>
</div></header>
<main>
  <div class="cards">{cards}</div>
  <div class="cards health">{health}</div>
  {notices}
  <div class="grid">{panels}</div>
</main>
<footer>Generated by clauditor {version} &middot; period {bounds} &middot; {freshness}.
Spend excludes unpriced calls. All times in {tz}.</footer>
</body>
</html>
"""
