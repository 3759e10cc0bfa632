// The viewer against a real rcapture and real curl traffic.
//
// usage: node viewer.mjs '{"url": "http://127.0.0.1:PORT/", "tlsPort": N,
//                          "artifacts": DIR, "token": "…"?, "tag": "…"}'
// With "token" the page must ask for it (a wrong one is refused) before it
// connects. Prints one JSON line: what was seen; exits 1 when a check fails.
import { check, counters, drawn, live, main, open, rows, run, until } from './lib.mjs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const cfg = JSON.parse(process.argv[2]);
const tag = `${cfg.tag}-${process.pid}-${Date.now()}`;

/** curl sends one HTTP/1.1 request with the marker in its path and a header. */
function curl(marker) {
  return run('curl', ['-sk', '--http1.1', '-o', '/dev/null', '-H', `X-Marker: ${marker}`,
    `https://127.0.0.1:${cfg.tlsPort}/web-e2e/${marker}`]);
}

async function login(page, report) {
  await page.waitForSelector('#auth[open]', { timeout: 15000 });
  check(await page.$eval('#conn', (c) => c.dataset.state) === 'down', 'not connected before the token');
  await page.fill('#auth-token', `${cfg.token}-wrong`);
  await page.click('#auth-ok');
  await until('the wrong token refused', async () => (await page.textContent('#auth-error')) === 'invalid token');
  check(await page.$('#auth[open]'), 'the dialog stays open after a wrong token');
  report.steps.push('a wrong token is refused');
  await page.fill('#auth-token', cfg.token);
  await page.click('#auth-ok');
  await live(page);
  check(!(await page.$('#auth[open]')), 'the dialog closes');
  report.steps.push('the right token connects');
}

main(async (browser, report) => {
  mkdirSync(cfg.artifacts, { recursive: true });
  const errors = [];
  const a = await open(browser, cfg.url, errors);
  if (cfg.token) await login(a, report);
  await live(a);
  report.steps.push('the page loads and connects');

  const m1 = `${tag}-first`;
  const pid1 = await curl(m1);
  await rows(a, m1).first().waitFor({ timeout: 15000 });
  report.steps.push('curl traffic appears as a row');
  await rows(a, m1).first().click();
  await a.waitForSelector('#detail:not([hidden])');
  const detail = await a.textContent('#d-body');
  check(detail.includes('HTTP request'), `the detail pane shows an HTTP request: ${detail.slice(0, 400)}`);
  const headers = await a.$$eval('#d-body table.headers tr', (trs) => trs.map((tr) => [tr.children[0].textContent, tr.children[1].textContent]));
  check(headers.some(([k, v]) => k === 'X-Marker' && v === m1), `the X-Marker header in the detail: ${JSON.stringify(headers)}`);
  report.request_line = await a.textContent('#d-body .startline');
  check(report.request_line === `GET /web-e2e/${m1} HTTP/1.1`, `request line ${report.request_line}`);
  check((await a.textContent('#d-body pre.hex')).includes('47 45 54 20'), 'the hex dump starts with "GET "');
  report.headers = headers;
  report.steps.push('a click shows the request line and headers');
  await a.screenshot({ path: join(cfg.artifacts, cfg.token ? 'viewer-auth.png' : 'viewer.png') });

  if (cfg.token) {
    check((await a.textContent('#s-rate')).includes('captured'), 'the /status counters with the bearer token');
    // A link that carries the token in its fragment (never sent to the server) connects at once.
    const b = await open(browser, `${cfg.url}#token=${encodeURIComponent(cfg.token)}`, errors);
    await live(b);
    check(!(await b.$('#auth[open]')), 'no token dialog with #token=');
    check(!(await b.evaluate(() => location.hash)), 'the token leaves the address bar');
    report.steps.push('#token= in the address connects without asking');
    // Chromium logs the 401s of /status before the token as console errors.
    const others = errors.filter((e) => !e.includes('status of 401 (Unauthorized)'));
    check(errors.length > others.length, 'GET /status was refused without the token');
    check(!others.length, others.join('\n'));
    return;
  }

  // The /status counters: captured events and drops per stage.
  await until('counters from /status', async () => /captured \d/.test(await a.textContent('#s-rate')));
  report.stats = await a.textContent('#stats');
  check(report.stats.includes('kernel') && report.stats.includes('websocket'), `drops per stage: ${report.stats}`);

  // A second page without a filter: it sees what the first one must not.
  const ref = await open(browser, cfg.url, errors);
  await live(ref);

  const before = await drawn(a);
  report.pids_before_filter = [...new Set(before.map((r) => r.pid))];
  check(before.some((r) => r.pid !== pid1), `another process (the TLS server) is shown before the filter: ${JSON.stringify(before)}`);
  await a.fill('#f-pid', String(pid1));
  await a.press('#f-pid', 'Enter');
  await until('the server confirms the pid filter', async () => (await a.textContent('#f-server')) === `server filter: pids=${pid1}`);
  const after = await drawn(a);
  check(after.length > 0 && after.every((r) => r.pid === pid1), `only pid ${pid1} after the filter: ${JSON.stringify(after)}`);
  const m2 = `${tag}-other-pid`;
  const pid2 = await curl(m2);
  await rows(ref, m2).first().waitFor({ timeout: 15000 });
  await a.waitForTimeout(500);
  check(await rows(a, m2).count() === 0, `curl ${pid2} is hidden by the filter pid=${pid1}`);
  check((await drawn(a)).every((r) => r.pid === pid1), 'no other process appears');
  report.steps.push('a pid filter hides other processes');
  await a.fill('#f-pid', '');
  await a.press('#f-pid', 'Enter');
  await until('the filter is lifted', async () => (await a.textContent('#f-server')) === 'server filter: everything');
  check((await drawn(a)).some((r) => r.pid !== pid1), 'the other processes come back');

  await a.click('#pause');
  check((await a.textContent('#pause')) === 'Resume', 'the button says Resume');
  const paused = await counters(a);
  const m3 = `${tag}-paused`;
  await curl(m3);
  await rows(ref, m3).first().waitFor({ timeout: 15000 });
  await until('events counted while paused', async () => (await counters(a)).missed > paused.missed);
  const during = await counters(a);
  check(during.held === paused.held, `no event kept while paused: ${JSON.stringify([paused, during])}`);
  check(await rows(a, m3).count() === 0, 'no new row while paused');
  report.missed_while_paused = during.missed;
  await a.click('#pause');
  const m4 = `${tag}-resumed`;
  await curl(m4);
  await rows(a, m4).first().waitFor({ timeout: 15000 });
  check(await rows(a, m3).count() === 0, 'what came while paused stays out');
  report.steps.push('pause stops new rows, resume brings them back');

  await a.click('#clear');
  await until('cleared', async () => (await counters(a)).held === 0);
  report.steps.push('clear empties the table');
  check(!errors.length, errors.join('\n'));
});
