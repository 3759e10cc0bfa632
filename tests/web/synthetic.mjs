// The viewer against the net crate's test server and its synthetic events.
//
// usage: node synthetic.mjs '{"url": URL, "mode": "kinds"|"load", "artifacts": DIR, ...}'
// Prints `ready` once the page is connected (the test then publishes), and
// one JSON report as its last line; exits 1 when a check fails.
//
// kinds: {"count": N}: waits for N rows, opens each, exports NDJSON and
//   pcapng (every row, then two selected ones), tries the text search and
//   the module filter; reports what each row and detail pane showed.
// load:  {"seconds": S}: while the test publishes, counts the frames the
//   page draws per second and samples its JS heap (after a collection).
// reconnect: {"marker": M}: prints `down` once the server has gone, `live`
//   once the page is connected again, then waits for a row with M.
import { check, counters, detailOf, drawn, frame, live, main, open, rows, until } from './lib.mjs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const cfg = JSON.parse(process.argv[2]);

async function save(page, button, file) {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click(button)]);
  const path = join(cfg.artifacts, file);
  await dl.saveAs(path);
  return path;
}

async function kinds(browser, report, errors) {
  const page = await open(browser, cfg.url, errors);
  await live(page);
  // Packet events come only to a client that asks for them.
  await page.check('#f-packets');
  await until('the server confirms the packet types', async () => (await page.textContent('#f-server')).includes('packet'));
  console.log('ready');
  await until(`${cfg.count} rows`, async () => (await counters(page)).held >= cfg.count);
  report.rows = [];
  const n = await rows(page).count();
  for (let i = 0; i < n; i++) {
    const row = rows(page).nth(i);
    const cells = await row.locator('span').allTextContents();
    await row.click();
    await page.waitForSelector('#detail:not([hidden])');
    // An encoded body is decoded asynchronously.
    await until('bodies decoded', async () => !(await page.textContent('#d-body')).includes('decoding…'));
    const d = await detailOf(page);
    if (d.notes.some((t) => t.includes('gzip-encoded'))) {
      await page.screenshot({ path: join(cfg.artifacts, 'synthetic-http-response.png') });
    }
    report.rows.push({ cells, ...d });
  }
  report.ndjson = await save(page, '#export-ndjson', 'synthetic.ndjson');
  report.pcapng = await save(page, '#export-pcapng', 'synthetic.pcapng');
  await rows(page).nth(0).click();
  await rows(page).nth(2).click({ modifiers: ['Control'] });
  await page.selectOption('#export-scope', 'selected');
  await frame(page);
  report.selected_pids = (await page.$$eval('#rows .row.sel', (rs) => rs.map((r) => Number(r.children[1].textContent))));
  report.ndjson_selected = await save(page, '#export-ndjson', 'synthetic-selected.ndjson');

  await page.fill('#f-text', 'from USERS');
  await page.press('#f-text', 'Enter');
  await until('the search applied', async () => (await drawn(page)).length < cfg.count);
  report.search = await drawn(page);
  await page.fill('#f-text', '');
  await page.press('#f-text', 'Enter');
  await page.selectOption('#f-module', 'bash');
  await until('the server confirms the module filter', async () => (await page.textContent('#f-server')).startsWith('server filter: modules=bash '));
  await until('the module filter drawn', async () => (await drawn(page)).length < cfg.count);
  report.module_filter = await drawn(page);
  await page.selectOption('#f-module', '');
  await until('the module filter lifted', async () => (await counters(page)).rows === cfg.count);
  check(!errors.length, errors.join('\n'));
}

async function load(browser, report, errors) {
  const page = await open(browser, cfg.url, errors);
  await live(page);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Performance.enable');
  // The JS heap after a collection, and the ArrayBuffers' bytes outside it
  // (the frames the kept events point into).
  const heap = async () => {
    await cdp.send('HeapProfiler.collectGarbage');
    const u = await cdp.send('Runtime.getHeapUsage');
    return { used: u.usedSize, buffers: u.backingStorageSize ?? null };
  };
  // Frames the browser draws (requestAnimationFrame callbacks), and the
  // main thread's long tasks (over 50 ms).
  await page.evaluate(() => {
    window.__frames = 0;
    window.__long = 0;
    const tick = () => {
      window.__frames++;
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
    new PerformanceObserver((l) => {
      for (const e of l.getEntries()) window.__long += e.duration;
    }).observe({ type: 'longtask', buffered: false });
  });
  report.heap_idle = await heap();
  if (cfg.profile) {
    await cdp.send('Profiler.enable');
    await cdp.send('Profiler.start');
  }
  console.log('ready');
  await until('the first events', async () => (await counters(page)).received > 0, 10000);
  const samples = [];
  const t0 = Date.now();
  let last = { t: t0, frames: await page.evaluate(() => window.__frames), received: (await counters(page)).received };
  while (Date.now() - t0 < cfg.seconds * 1000) {
    await page.waitForTimeout(1000);
    const now = Date.now();
    const frames = await page.evaluate(() => window.__frames);
    const c = await counters(page);
    const s = {
      t: (now - t0) / 1000,
      fps: Math.round(((frames - last.frames) * 1000) / (now - last.t)),
      events_per_sec: Math.round(((c.received - last.received) * 1000) / (now - last.t)),
      held: c.held,
    };
    if (samples.length % 3 === 2) s.heap = await heap();
    samples.push(s);
    last = { t: Date.now(), frames: await page.evaluate(() => window.__frames), received: c.received };
  }
  report.samples = samples;
  if (cfg.profile) {
    // Self time per function over the run (where the page's CPU went).
    const { profile } = await cdp.send('Profiler.stop');
    const dt = profile.timeDeltas;
    const self = new Map();
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    profile.samples.forEach((id, i) => {
      const f = byId.get(id).callFrame;
      const k = `${f.functionName || '(anonymous)'} ${f.url.split('/').pop()}:${f.lineNumber + 1}`;
      self.set(k, (self.get(k) || 0) + (dt[i] || 0));
    });
    report.profile_ms = Object.fromEntries([...self].sort((x, y) => y[1] - x[1]).slice(0, 25)
      .map(([k, v]) => [k, Math.round(v / 1000)]));
  }
  report.long_task_ms = Math.round(await page.evaluate(() => window.__long));
  report.heap_end = await heap();
  report.counters = await counters(page);
  report.gaps = await page.$eval('#s-drops', (d) => d.textContent);
  await page.screenshot({ path: join(cfg.artifacts, 'load.png') });
  check(!errors.length, errors.join('\n'));
}

async function reconnect(browser, report, errors) {
  const page = await open(browser, cfg.url, errors);
  await live(page);
  console.log('ready');
  await page.waitForSelector('#conn[data-state=down]', { timeout: 15000 });
  report.down = await page.textContent('#conn-text');
  console.log('down');
  await live(page);
  console.log('live');
  await rows(page, cfg.marker).first().waitFor({ timeout: 15000 });
  report.steps.push('the page reconnects by itself and shows the new events');
  // While the server was away Chromium logged the refused connections.
  const others = errors.filter((e) => !/ERR_CONNECTION_REFUSED|WebSocket connection/.test(e));
  check(!others.length, others.join('\n'));
}

main(async (browser, report) => {
  mkdirSync(cfg.artifacts, { recursive: true });
  const errors = [];
  if (cfg.mode === 'kinds') await kinds(browser, report, errors);
  else if (cfg.mode === 'load') await load(browser, report, errors);
  else if (cfg.mode === 'reconnect') await reconnect(browser, report, errors);
  else throw new Error(`unknown mode ${cfg.mode}`);
});
