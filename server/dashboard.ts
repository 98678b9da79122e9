/**
 * The dashboard: one self-contained page fed by the coordinator's dashboard socket (server/dashboard-feed.ts), which
 * pushes a snapshot a second — no polling. Nothing is rendered on the server; the page writes every value with
 * textContent (and SVG points as numbers), so job ids, worker names and errors (all attacker-influenced) can never
 * become markup. Scripts run under a per-response CSP nonce, so injected markup could not run scripts either; the
 * socket.io client is served by the coordinator itself (no CDN).
 */
export function dashboardHtml(nonce: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fedpool coordinator</title>
<style nonce="${nonce}">
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }
  h1 { font-size: 1.3rem; } h2 { font-size: 1.05rem; margin-top: 1.5rem; }
  table { border-collapse: collapse; min-width: 40rem; }
  th, td { text-align: left; padding: .25rem .6rem; border-bottom: 1px solid #ddd; font-variant-numeric: tabular-nums; }
  th { background: #f4f4f4; } .muted { color: #777; } .err { color: #b00; } .warn { color: #a60; }
  progress { width: 8rem; }
  .charts { display: flex; flex-wrap: wrap; gap: 1rem; }
  figure { margin: 0; border: 1px solid #ddd; padding: .5rem; }
  figcaption { font-size: .85rem; color: #555; }
  svg { display: block; background: #fafafa; }
  .loss { fill: none; stroke: #c33; stroke-width: 1.5; } .accuracy { fill: none; stroke: #36c; stroke-width: 1.5; }
  .axis { font: 10px system-ui, sans-serif; fill: #666; } .axis.loss-label { fill: #c33; } .axis.accuracy-label { fill: #36c; }
</style>
</head>
<body>
<h1>fedpool coordinator</h1>
<p id="status" class="muted">connecting…</p>
<h2>Workers</h2>
<table><thead><tr><th>name</th><th>serves</th><th>device</th><th>state</th><th>items/s</th><th>shards</th><th>accepted</th><th>lost</th><th>refused</th><th>rejected</th><th>connected</th></tr></thead><tbody id="workers"></tbody></table>
<h2>Jobs</h2>
<table><thead><tr><th>id</th><th>kind</th><th>owner</th><th>state</th><th>progress</th><th>done</th><th>rate</th><th>ETA</th><th>note</th></tr></thead><tbody id="jobs"></tbody></table>
<h2>Training</h2>
<p class="muted">Per training job: loss (red) and held-out accuracy (blue) per server step.</p>
<div id="charts" class="charts"></div>
<script nonce="${nonce}" src="/dashboard/socket.io.min.js"></script>
<script nonce="${nonce}">
(() => {
  const params = new URLSearchParams(location.search);
  let token = params.get('token') || sessionStorage.getItem('fedpool-token') || '';
  if (params.has('token')) { sessionStorage.setItem('fedpool-token', token); history.replaceState(null, '', location.pathname); }
  const status = document.getElementById('status');
  const SVG = 'http://www.w3.org/2000/svg';
  function cell(row, value) { const td = document.createElement('td'); td.textContent = value === undefined || value === null ? '' : String(value); row.appendChild(td); return td; }
  function time(iso) { return iso ? new Date(iso).toLocaleTimeString() : ''; }
  function duration(s) { if (s === null || s === undefined || !isFinite(s)) return ''; s = Math.round(s); return s < 120 ? s + ' s' : s < 7200 ? Math.round(s / 60) + ' min' : Math.round(s / 3600) + ' h'; }
  function fill(id, rows, build) {
    const body = document.getElementById(id);
    body.replaceChildren();
    for (const r of rows) { const tr = document.createElement('tr'); build(tr, r); body.appendChild(tr); }
  }
  /** A polyline of (step, value) scaled into the box; values in [lo, hi]. */
  function line(points, cls, lo, hi, w, h) {
    const steps = points.map((p) => p[0]);
    const x0 = Math.min(...steps), x1 = Math.max(...steps);
    const el = document.createElementNS(SVG, 'polyline');
    el.setAttribute('class', cls);
    el.setAttribute('points', points.map((p) => {
      const x = x1 === x0 ? w / 2 : ((p[0] - x0) / (x1 - x0)) * (w - 10) + 5;
      const y = hi === lo ? h / 2 : h - 5 - ((p[1] - lo) / (hi - lo)) * (h - 10);
      return x.toFixed(1) + ',' + y.toFixed(1);
    }).join(' '));
    return el;
  }
  function label(text, x, y, anchor, cls) {
    const el = document.createElementNS(SVG, 'text');
    el.setAttribute('x', String(x)); el.setAttribute('y', String(y)); el.setAttribute('text-anchor', anchor);
    el.setAttribute('class', 'axis' + (cls ? ' ' + cls : ''));
    el.textContent = text;
    return el;
  }
  function chart(id, lines) {
    const w = 320, h = 140;
    const fig = document.createElement('figure');
    fig.dataset.job = id;
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('width', String(w)); svg.setAttribute('height', String(h)); svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
    const loss = lines.filter((l) => typeof l.loss === 'number').map((l) => [l.step, l.loss]);
    const acc = lines.filter((l) => typeof l.accuracy === 'number').map((l) => [l.step, l.accuracy]);
    if (loss.length > 0) {
      const lo = Math.min(...loss.map((p) => p[1])), hi = Math.max(...loss.map((p) => p[1]));
      svg.appendChild(line(loss, 'loss', lo, hi, w, h));
      // The loss axis's range on the left; accuracy is always 0 to 1 (right).
      svg.append(label(hi.toPrecision(3), 4, 12, 'start', 'loss-label'), label(lo.toPrecision(3), 4, h - 4, 'start', 'loss-label'));
    }
    if (acc.length > 0) {
      svg.appendChild(line(acc, 'accuracy', 0, 1, w, h));
      svg.append(label('1', w - 4, 12, 'end', 'accuracy-label'), label('0', w - 4, h - 4, 'end', 'accuracy-label'));
    }
    if (lines.length > 0) svg.append(label('step ' + lines[0].step + '–' + lines[lines.length - 1].step, w / 2, h - 4, 'middle'));
    const last = lines[lines.length - 1];
    const cap = document.createElement('figcaption');
    cap.textContent = 'job ' + id + ' · step ' + (last ? last.step : 0)
      + (last && typeof last.loss === 'number' ? ' · loss ' + last.loss.toFixed(4) : '')
      + (acc.length > 0 ? ' · accuracy ' + acc[acc.length - 1][1].toFixed(3) : '')
      + (last ? ' · ' + last.participants + ' participants' + (typeof last.staleness_mean === 'number' ? ' · staleness ' + last.staleness_mean.toFixed(2) : '') : '');
    fig.append(svg, cap);
    return fig;
  }
  function render(s) {
    fill('workers', s.workers, (tr, w) => {
      for (const v of [w.name, w.scorer ? w.scorer.api + ' · ' + w.scorer.model : w.backend, w.device, w.state, Number(w.itemsPerSecond).toFixed(1), w.shardsDone + w.trainShardsDone, w.record.accepted, w.record.lost, w.record.refused, w.record.rejected, time(w.connectedAt)]) cell(tr, v);
      if (w.state === 'quarantined') tr.className = 'err';
    });
    fill('jobs', s.jobs.slice().reverse(), (tr, j) => {
      cell(tr, j.id); cell(tr, j.kind); cell(tr, j.owner === null ? '' : j.owner); cell(tr, j.state);
      const bar = document.createElement('progress'); bar.max = j.progress.total || 1; bar.value = j.progress.done;
      const td = document.createElement('td'); td.appendChild(bar); tr.appendChild(td);
      cell(tr, j.progress.done + ' / ' + j.progress.total + (j.kind === 'train' ? ' steps' : ' items'));
      cell(tr, j.rate === null ? '' : (j.rate >= 100 ? Math.round(j.rate) : j.rate.toPrecision(2)) + (j.kind === 'train' ? ' steps/s' : ' items/s'));
      cell(tr, duration(j.etaSeconds));
      const note = cell(tr, j.error || j.waiting || '');
      note.className = j.error ? 'err' : 'warn';
    });
    const charts = document.getElementById('charts');
    charts.replaceChildren();
    for (const [id, lines] of Object.entries(s.training)) charts.appendChild(chart(id, lines));
    status.className = 'muted';
    status.textContent = s.workerCount + ' worker(s)' + (s.workerCount > s.workers.length ? ' (the first ' + s.workers.length + ' shown)' : '')
      + ', ' + s.jobCount + ' job(s)' + (s.jobCount > s.jobs.length ? ' (unfinished and the latest ended shown)' : '') + ' · live, ' + time(s.time);
  }
  function connect() {
    const socket = io({ path: '/dashboard.io', transports: ['websocket'], query: token ? { token } : {} });
    socket.on('snapshot', render);
    socket.on('connect_error', () => {
      status.className = 'err';
      status.textContent = 'cannot connect to the coordinator (a client token is needed: open this page with ?token=…)';
    });
    socket.on('disconnect', () => { status.className = 'err'; status.textContent = 'disconnected; reconnecting…'; });
  }
  connect();
})();
</script>
</body>
</html>
`;
}
