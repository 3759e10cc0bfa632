// Waits for the row of one marker, opens it and reports what it shows.
//
// usage: node watch.mjs '{"url": URL, "marker": M, "artifacts": DIR, "shot": FILE}'
// Prints `ready` once the page is connected (the test then makes the
// traffic), and one JSON report: the row's cells and its detail pane.
import { check, detailOf, live, main, open, rows } from './lib.mjs';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const cfg = JSON.parse(process.argv[2]);

main(async (browser, report) => {
  mkdirSync(cfg.artifacts, { recursive: true });
  const errors = [];
  const page = await open(browser, cfg.url, errors);
  await live(page);
  console.log('ready');
  const row = rows(page, cfg.marker).first();
  await row.waitFor({ timeout: 15000 });
  report.cells = await row.locator('span').allTextContents();
  await row.click();
  await page.waitForSelector('#detail:not([hidden])');
  Object.assign(report, await detailOf(page));
  await page.screenshot({ path: join(cfg.artifacts, cfg.shot) });
  check(!errors.length, errors.join('\n'));
});
