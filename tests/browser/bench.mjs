// The console's figures for scripts/bench (issue 12): what a first load transfers (raw and
// gzip-compressed, as a compressing proxy would send it), and the time from navigation to
// the certificate list drawn with 50 rows, in headless chromium on loopback. Also counts the
// list requests a page, a next page and a search make (one each, 50 rows at most).
//   CV_BENCH_TOKEN=<admin token> node bench.mjs BASE_URL [CHROMIUM]   prints one JSON line
import { createRequire } from 'node:module';
import { gzipSync } from 'node:zlib';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const [base, exe = '/usr/bin/chromium'] = process.argv.slice(2);
const token = process.env.CV_BENCH_TOKEN;
const browser = await chromium.launch({
  executablePath: exe,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
const out = {};
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const r = await ctx.request.post(base + '/v1/session', { data: { token } });
  if (r.status() !== 201) throw new Error('sign-in: ' + r.status());
  const page = await ctx.newPage();
  const files = [];
  page.on('response', async (resp) => {
    const u = new URL(resp.url());
    if (u.pathname.startsWith('/console/') && resp.status() === 200) files.push(resp.body().then((b) => b.length ? [b.length, gzipSync(b, { level: 6 }).length] : [0, 0]));
  });
  const lists = [];
  page.on('request', (q) => { if (new URL(q.url()).pathname === '/v1/certificates') lists.push(q.url()); });
  // Looked at in every frame (polling 'raf': before the frame's layout and paint): the
  // first frame with the 50 rows in the page paints them, and a task queued from its
  // animation-frame callback runs after that paint. Its performance.now() is the time to
  // the rows on screen, measured in the page. (A round trip to node after it, as the first
  // version of this bench measured, adds the driver's latency: kept as *_evaluate.)
  const painted = () => {
    if (window.__cvPainted) return window.__cvPainted;
    if (!window.__cvSeen && document.querySelectorAll('main table tbody tr').length === 50) {
      window.__cvSeen = true;
      setTimeout(() => { window.__cvPainted = performance.now(); }, 0);
    }
    return false;
  };
  const ms = [];
  const msEval = [];
  // The first load (nothing cached), then warm loads: navigation start to 50 rows drawn.
  // Each load is a new document (a reload for the warm ones), so performance.now() counts
  // from its navigation's start.
  for (let i = 0; i < 6; i++) {
    if (i === 0) await page.goto(base + '/console/#/certificates');
    else await page.reload();
    ms.push(await (await page.waitForFunction(painted, null, { polling: 'raf', timeout: 30000 })).jsonValue());
    msEval.push(await page.evaluate(() => performance.now()));
    if (i === 5) {
      // Where the time went (the console's own marks): its session answer, the list's data
      // in hand, the rows built; and first paint.
      out.marks = await page.evaluate(() => Object.fromEntries([...performance.getEntriesByType('mark'), ...performance.getEntriesByType('paint')]
        .map((m) => [m.name, Math.round(m.startTime)])));
      out.breakdown = await page.evaluate(() => performance.getEntriesByType('resource').map((e) => [new URL(e.name).pathname, Math.round(e.startTime), Math.round(e.duration)]));
    }
    if (i === 0) {
      const sizes = await Promise.all(files);
      out.first_load_bytes = sizes.reduce((a, [raw]) => a + raw, 0);
      out.first_load_gzip_bytes = sizes.reduce((a, [, gz]) => a + gz, 0);
      out.first_load_files = sizes.length;
    }
  }
  out.list_ms_first = ms[0];
  out.list_ms_warm = Math.min(...ms.slice(1));
  out.list_ms_warm_median = ms.slice(1).sort((a, b) => a - b)[2];
  out.list_ms_first_evaluate = msEval[0];
  out.list_ms_warm_evaluate = Math.min(...msEval.slice(1));
  out.list_ms_warm_median_evaluate = msEval.slice(1).sort((a, b) => a - b)[2];
  // The API requests made before the rows of the last warm load were on screen.
  out.requests_before_rows = out.breakdown.filter(([p, start]) => p.startsWith('/v1/') && start < ms[5]).map(([p]) => p);
  // One request a page, a next page and a search, never more than the page.
  lists.length = 0;
  await page.getByRole('button', { name: 'Next page →' }).click();
  await page.waitForFunction(() => location.hash.includes('cursor='));
  await page.waitForFunction(() => document.querySelector('main table') && !document.querySelector('main .loading'));
  // Search for the first row's name less its last character: a prefix many names share.
  const term = (await page.locator('main tbody tr td:first-child > a').first().textContent()).slice(0, -1);
  await page.getByLabel('Search').fill(term);
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForFunction((t) => location.hash.includes('q=' + encodeURIComponent(t)), term);
  await page.waitForFunction(() => document.querySelector('main table, main .empty') && !document.querySelector('main .loading'));
  await page.waitForTimeout(200);
  out.list_requests_for_next_and_search = lists.length;
  out.list_limits = lists.map((u) => new URL(u).searchParams.get('limit'));
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
