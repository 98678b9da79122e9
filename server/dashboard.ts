/**
 * The dashboard: one self-contained page that polls the JSON API. Nothing is rendered on the
 * server; the page writes all values with textContent, so job ids, worker names and errors
 * (all attacker-influenced) can never become markup. The script runs under a per-response
 * CSP nonce, so injected markup could not run scripts either.
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
  th { background: #f4f4f4; } .muted { color: #777; } .err { color: #b00; }
  progress { width: 8rem; }
</style>
</head>
<body>
<h1>fedpool coordinator</h1>
<p id="status" class="muted">loading…</p>
<h2>Workers</h2>
<table><thead><tr><th>id</th><th>name</th><th>backend</th><th>threads</th><th>device</th><th>scorer</th><th>state</th><th>in flight</th><th>credit</th><th>items/s</th><th>connected</th></tr></thead><tbody id="workers"></tbody></table>
<h2>Jobs</h2>
<table><thead><tr><th>id</th><th>state</th><th>progress</th><th>items</th><th>created</th><th>finished</th><th>error</th></tr></thead><tbody id="jobs"></tbody></table>
<script nonce="${nonce}">
(() => {
  const params = new URLSearchParams(location.search);
  let token = params.get('token') || sessionStorage.getItem('fedpool-token') || '';
  if (params.has('token')) { sessionStorage.setItem('fedpool-token', token); history.replaceState(null, '', location.pathname); }
  const status = document.getElementById('status');
  function cell(row, value) { const td = document.createElement('td'); td.textContent = value === undefined || value === null ? '' : String(value); row.appendChild(td); return td; }
  function time(iso) { return iso ? new Date(iso).toLocaleTimeString() : ''; }
  async function get(path) {
    const res = await fetch(path, { headers: token ? { authorization: 'Bearer ' + token } : {} });
    if (res.status === 401 || res.status === 403) {
      const t = prompt('Client token for this coordinator:');
      if (t) { token = t; sessionStorage.setItem('fedpool-token', t); }
      throw new Error('unauthorized');
    }
    if (!res.ok) throw new Error(path + ': HTTP ' + res.status);
    return res.json();
  }
  function fill(id, rows, build) {
    const body = document.getElementById(id);
    body.replaceChildren();
    for (const r of rows) { const tr = document.createElement('tr'); build(tr, r); body.appendChild(tr); }
  }
  async function refresh() {
    try {
      const [workers, jobs] = await Promise.all([get('/api/workers'), get('/api/jobs')]);
      fill('workers', workers, (tr, w) => {
        for (const v of [w.id, w.name, w.backend, w.threads, w.device, w.scorer ? w.scorer.api + ' · ' + w.scorer.model : '', w.state, w.inFlight, w.credit, Number(w.itemsPerSecond).toFixed(1), time(w.connectedAt)]) cell(tr, v);
      });
      fill('jobs', jobs.slice().reverse(), (tr, j) => {
        cell(tr, j.id); cell(tr, j.state);
        const bar = document.createElement('progress'); bar.max = j.progress.total || 1; bar.value = j.progress.done;
        const td = document.createElement('td'); td.appendChild(bar); tr.appendChild(td);
        cell(tr, j.progress.done + ' / ' + j.progress.total); cell(tr, time(j.createdAt)); cell(tr, time(j.finishedAt));
        cell(tr, j.error).className = 'err';
      });
      status.className = 'muted';
      status.textContent = workers.length + ' worker(s), ' + jobs.length + ' job(s) · updated ' + new Date().toLocaleTimeString();
    } catch (e) {
      status.className = 'err';
      status.textContent = String(e && e.message || e);
    }
  }
  refresh();
  setInterval(refresh, 2000);
})();
</script>
</body>
</html>
`;
}
