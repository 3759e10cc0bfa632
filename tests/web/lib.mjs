// Shared by the viewer tests: Debian's chromium through playwright-core
// (no browser download), kept off the network, and DOM helpers.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { once } from 'node:events';

export const WAIT = 15000;

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: [
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-default-apps',
      '--disable-domain-reliability',
      '--disable-sync',
      '--no-first-run',
      '--no-pings',
    ],
  });
}

/** A page of the viewer; console errors and page errors fail the test. */
export async function open(browser, url, errors) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 }, acceptDownloads: true });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console error: ${m.text()}`);
  });
  await page.goto(url);
  return page;
}

export async function live(page) {
  await page.waitForSelector('#conn[data-state=live]', { timeout: WAIT });
}

/** The rows drawn (the virtualized list draws those in sight only). */
export function rows(page, text) {
  const all = page.locator('#rows .row:not([hidden])');
  return text ? all.filter({ hasText: text }) : all;
}

/** [pid, comm, kind, preview] of every row drawn, once the page has drawn
 * what it holds (it draws at the next animation frame). */
export async function drawn(page) {
  await frame(page);
  return page.$$eval('#rows .row:not([hidden])', (rs) => rs.map((r) => ({
    pid: Number(r.children[1].textContent),
    comm: r.children[2].textContent,
    kind: r.children[4].textContent,
    text: r.children[8].textContent,
  })));
}

/** Resolves after the page's next two animation frames. */
export function frame(page) {
  return page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
}

/** The page's own counters (#s-rows data attributes). */
export async function counters(page) {
  return page.$eval('#s-rows', (el) => ({
    rows: Number(el.dataset.rows),
    held: Number(el.dataset.held),
    received: Number(el.dataset.received),
    missed: Number(el.dataset.missed),
    evicted: Number(el.dataset.evicted),
  }));
}

/** What the detail pane shows: title, section titles, the HTTP start
 * line and headers, each <pre> as [class, text], notes, the field table. */
export async function detailOf(page) {
  return page.$eval('#detail', (d) => ({
    title: d.querySelector('#d-title').textContent,
    sections: Array.from(d.querySelectorAll('#d-body h3'), (h) => h.textContent),
    startline: d.querySelector('.startline') ? d.querySelector('.startline').textContent : null,
    headers: Array.from(d.querySelectorAll('table.headers tr'), (tr) => [tr.children[0].textContent, tr.children[1].textContent]),
    pres: Array.from(d.querySelectorAll('#d-body pre'), (p) => [p.className, p.textContent]),
    notes: Array.from(d.querySelectorAll('#d-body .note'), (p) => p.textContent),
    fields: Object.fromEntries(Array.from(d.querySelectorAll('#d-body > table:first-child tr'), (tr) => [tr.children[0].textContent, tr.children[1].textContent])),
  }));
}

/** Waits until `fn()` is truthy (polling), or throws `what`. */
export async function until(what, fn, ms = WAIT) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Runs a program to its end; returns its pid. */
export async function run(cmd, args) {
  const c = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  const [code] = await once(c, 'exit');
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${code}`);
  return c.pid;
}

export function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

/** Runs `body(report)` and prints the report as one JSON line; exits 1 on failure. */
export async function main(body) {
  const report = { steps: [] };
  let browser;
  try {
    browser = await launch();
    report.browser = browser.version();
    await body(browser, report);
    report.ok = true;
  } catch (e) {
    report.ok = false;
    report.error = e.stack || String(e);
  } finally {
    if (browser) await browser.close().catch(() => {});
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(report.ok ? 0 : 1);
}
