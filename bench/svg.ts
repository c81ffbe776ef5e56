import type { Series } from "./stats.js";

/**
 * A line chart of recovery point age over the day, hand-written SVG (no dependency). Lines that
 * would squash the others (an unbounded policy) are clipped at the top and say how high they went.
 */
export interface Line {
  label: string;
  color: string;
  dashed?: boolean;
  series: Series;
}

const W = 940;
const H = 420;
const M = { left: 64, right: 220, top: 40, bottom: 48 };

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function chart(o: { title: string; hours: number; warmupHours: number; lines: Line[] }): string {
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  // Peaks (scale and legend) over the measured hours, as the statistics are.
  const from = o.warmupHours * 3_600_000;
  const peak = (s: Series) =>
    s.value.reduce((a, b, i) => ((s.t[i] ?? 0) >= from ? Math.max(a, b) : a), 0) / 60;
  const peaks = o.lines.map((l) => peak(l.series)).sort((a, b) => a - b);
  // Scale to the second-highest line (x1.5) so one runaway line does not flatten the rest.
  const second = peaks.length > 1 ? (peaks[peaks.length - 2] as number) : (peaks[0] ?? 1);
  const top = niceCeil(Math.min(peaks[peaks.length - 1] ?? 1, Math.max(second * 1.5, 1)));
  const x = (ms: number) => M.left + (ms / 3_600_000 / o.hours) * pw;
  const y = (minutes: number) => M.top + ph - (Math.min(minutes, top) / top) * ph;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<title>${esc(o.title)}</title>`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${M.left}" y="22" font-size="15" font-weight="bold">${esc(o.title)}</text>`,
    `<rect x="${M.left}" y="${M.top}" width="${x(o.warmupHours * 3_600_000) - M.left}" height="${ph}" fill="#eee"/>`,
    `<text x="${M.left + 4}" y="${M.top + 14}" fill="#777">warm-up (excluded)</text>`,
  );
  const yStep = niceCeil(top / 6);
  for (let v = 0; v <= top + 1e-9; v += yStep) {
    parts.push(
      `<line x1="${M.left}" x2="${M.left + pw}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`,
      `<text x="${M.left - 6}" y="${y(v) + 4}" text-anchor="end">${v}</text>`,
    );
  }
  const xStep = o.hours <= 6 ? 1 : o.hours <= 24 ? 2 : 6;
  for (let h = 0; h <= o.hours; h += xStep) {
    parts.push(
      `<line x1="${x(h * 3_600_000)}" x2="${x(h * 3_600_000)}" y1="${M.top + ph}" y2="${M.top + ph + 4}" stroke="#333"/>`,
      `<text x="${x(h * 3_600_000)}" y="${M.top + ph + 18}" text-anchor="middle">${h}</text>`,
    );
  }
  parts.push(
    `<line x1="${M.left}" x2="${M.left + pw}" y1="${M.top + ph}" y2="${M.top + ph}" stroke="#333"/>`,
    `<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${M.top + ph}" stroke="#333"/>`,
    `<text x="${M.left + pw / 2}" y="${H - 10}" text-anchor="middle">hours of simulated day</text>`,
    `<text transform="translate(16 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">recovery point age (minutes)</text>`,
  );
  o.lines.forEach((l, i) => {
    // One point a minute is plenty for 900 px.
    const pts: string[] = [];
    const every = Math.max(1, Math.round(l.series.t.length / (o.hours * 60)));
    for (let k = 0; k < l.series.t.length; k += every) {
      pts.push(
        `${x(l.series.t[k] as number).toFixed(1)},${y((l.series.value[k] as number) / 60).toFixed(1)}`,
      );
    }
    parts.push(
      `<polyline fill="none" stroke="${l.color}" stroke-width="1.5"${l.dashed ? ' stroke-dasharray="5 3"' : ""} points="${pts.join(" ")}"/>`,
    );
    const ly = M.top + 10 + i * 34;
    const p = peak(l.series);
    parts.push(
      `<line x1="${M.left + pw + 12}" x2="${M.left + pw + 36}" y1="${ly}" y2="${ly}" stroke="${l.color}" stroke-width="2"${l.dashed ? ' stroke-dasharray="5 3"' : ""}/>`,
      `<text x="${M.left + pw + 42}" y="${ly + 4}">${esc(l.label)}</text>`,
      `<text x="${M.left + pw + 42}" y="${ly + 18}" fill="#777">max ${Math.round(p)} min${p > top ? " (clipped)" : ""}</text>`,
    );
  });
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}

function niceCeil(x: number): number {
  if (x <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}
