/**
 * The drill's HTML report: one self-contained page (no network, no external scripts) with the
 * recovery point age over the drill drawn by the browser from the embedded data, against the RPO
 * target, and the backups' verdicts.
 */

export interface AgeSample {
  /** Simulated time of the sample (ISO). */
  t: string;
  /** Recovery point age in seconds, or null when no backup was DR-ready yet. */
  ageSeconds: number | null;
  backup: string | null;
}

export interface ReportData {
  title: string;
  rpoTargetSeconds: number;
  samples: AgeSample[];
  backups: Array<{ name: string; verdict: string; reason: string }>;
  summary: Record<string, unknown>;
}

const escapeHtml = (s: string) =>
  s.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] ?? c,
  );

/** JSON inside <script>: `<` escaped so no value can close the element. */
const scriptJson = (v: unknown) => JSON.stringify(v).replace(/</g, "\\u003c");

/** Draws the chart in the browser: a polyline of the samples, a dashed line at the target. */
const DRAW = `
(function () {
  var data = JSON.parse(document.getElementById("drill-data").textContent);
  var svg = document.getElementById("rpo-chart");
  var W = 720, H = 260, L = 60, R = 20, T = 20, B = 40;
  var ns = "http://www.w3.org/2000/svg";
  var pts = data.samples.filter(function (s) { return s.ageSeconds !== null; });
  var t0 = Date.parse(data.samples[0].t), t1 = Date.parse(data.samples[data.samples.length - 1].t);
  var maxAge = Math.max(data.rpoTargetSeconds * 1.2, Math.max.apply(null, pts.map(function (s) { return s.ageSeconds; }).concat([1])));
  function x(t) { return L + (W - L - R) * (t1 > t0 ? (Date.parse(t) - t0) / (t1 - t0) : 0); }
  function y(a) { return H - B - (H - T - B) * (a / maxAge); }
  function el(name, attrs, text) {
    var e = document.createElementNS(ns, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text) e.textContent = text;
    svg.appendChild(e);
    return e;
  }
  el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#333" });
  el("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#333" });
  el("line", { id: "rpo-target", x1: L, y1: y(data.rpoTargetSeconds), x2: W - R, y2: y(data.rpoTargetSeconds), stroke: "#c00", "stroke-dasharray": "6 4" });
  el("text", { x: W - R - 4, y: y(data.rpoTargetSeconds) - 6, "text-anchor": "end", fill: "#c00", "font-size": 12 }, "RPO target " + Math.round(data.rpoTargetSeconds / 60) + " min");
  el("text", { x: 8, y: T + 10, "font-size": 12 }, Math.round(maxAge / 60) + " min");
  el("text", { x: 8, y: H - B, "font-size": 12 }, "0");
  el("text", { x: L, y: H - 10, "font-size": 12 }, new Date(t0).toISOString().slice(11, 16) + " UTC");
  el("text", { x: W - R, y: H - 10, "text-anchor": "end", "font-size": 12 }, new Date(t1).toISOString().slice(11, 16) + " UTC");
  el("polyline", {
    id: "rpo-age",
    fill: "none",
    stroke: "#06c",
    "stroke-width": 2,
    points: pts.map(function (s) { return x(s.t).toFixed(1) + "," + y(s.ageSeconds).toFixed(1); }).join(" ")
  });
  svg.setAttribute("data-points", String(pts.length));
  svg.setAttribute("data-rendered", "true");
})();
`;

export function renderReport(d: ReportData): string {
  const rows = d.backups
    .map(
      (b) =>
        `<tr><td>${escapeHtml(b.name)}</td><td class="${escapeHtml(b.verdict)}">${escapeHtml(b.verdict)}</td><td>${escapeHtml(b.reason)}</td></tr>`,
    )
    .join("\n");
  const summary = Object.entries(d.summary)
    .filter(([, v]) => typeof v !== "object")
    .map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(String(v))}</td></tr>`)
    .join("\n");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'">
<title>${escapeHtml(d.title)}</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
td, th { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
.dr-ready { color: #070; } .not-ready { color: #c00; } .pending { color: #a60; }
</style>
</head>
<body>
<h1>${escapeHtml(d.title)}</h1>
<h2>Recovery point age over the drill</h2>
<svg id="rpo-chart" width="720" height="260" role="img" aria-label="Recovery point age over the drill"></svg>
<h2>Backups</h2>
<table id="backups"><tr><th>backup</th><th>verdict</th><th>reason</th></tr>
${rows}
</table>
<h2>Summary</h2>
<table id="summary">
${summary}
</table>
<script type="application/json" id="drill-data">${scriptJson(d)}</script>
<script>${DRAW}</script>
</body>
</html>
`;
}
