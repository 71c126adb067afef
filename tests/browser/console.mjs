// End-to-end tests of the certvault console in Debian's chromium, driven by playwright-core.
// Run by tests/integration/test_console.py, which starts certvaultd, makes the certificates and
// files, and passes them in a JSON file: node console.mjs CONFIG.json
// Every step watches the browser: a JavaScript error, a CSP violation, a request to another
// origin, or an HTTP error the step did not expect fails it. One browser, one page per role.
import { readFileSync, renameSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');
const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const base = cfg.base;
const origin = new URL(base).origin;
let passed = 0;
let failed = 0;

/* ---------- the API from outside the browser, to compare with what the page shows ---------- */
async function api(method, path, body, token = cfg.tokens.admin) {
  const headers = { Authorization: 'Bearer ' + token };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const type = r.headers.get('content-type') || '';
  return { status: r.status, body: type.startsWith('application/json') ? await r.json() : await r.text() };
}
function assert(cond, msg) { if (!cond) throw new Error(msg); }
function eq(a, b, msg) { if (a !== b) throw new Error(`${msg}: ${JSON.stringify(a)} != ${JSON.stringify(b)}`); }

/* ---------- watching a page ---------- */
function watch(page) {
  const w = { problems: [], expected: [], page };
  page.on('pageerror', (e) => w.problems.push('JavaScript error: ' + e.message));
  page.on('dialog', (d) => { w.problems.push('a JavaScript dialog opened (XSS?): ' + d.message()); d.dismiss(); });
  page.on('console', (m) => {
    const t = m.text();
    if (/Content.Security.Policy|CSP violation/i.test(t)) w.problems.push('CSP: ' + t);
    else if (m.type() === 'error' && !/^Failed to load resource: the server responded with a status of \d+/.test(t)) w.problems.push('console error: ' + t);
  });
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (!['data:', 'blob:'].includes(u.protocol) && u.origin !== origin) w.problems.push('request to another origin: ' + r.url());
  });
  page.on('requestfailed', (r) => {
    if (!/ERR_ABORTED/.test(r.failure()?.errorText || '')) w.problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`);
  });
  page.on('response', (r) => {
    if (r.status() < 400) return;
    const i = w.expected.indexOf(r.status());
    if (i >= 0) w.expected.splice(i, 1); else w.problems.push(`unexpected HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  page.addInitScript(() => document.addEventListener('securitypolicyviolation',
    (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`)));
  return w;
}
let stepNo = 0;
async function step(name, w, fn, page) {
  stepNo++;
  w.problems.length = 0;
  w.expected.length = 0;
  try {
    await fn();
    await new Promise((r) => setTimeout(r, 50));
    if (w.problems.length) throw new Error(w.problems.join('\n  '));
    passed++;
    console.log('ok   ' + name);
  } catch (e) {
    failed++;
    await w.page?.screenshot({ path: `${cfg.shots}/FAILED-step-${stepNo}.png` }).catch(() => {});
    console.log('FAIL ' + name + '\n  ' + (e.stack || e).toString().split('\n').slice(0, 4).join('\n  '));
  }
}
const expect = (w, ...statuses) => w.expected.push(...statuses);

/* ---------- helpers on the page ---------- */
const go = async (page, hash) => { await page.goto(`${base}/console/${hash}`); };
const shot = (page, name, full = true) => page.screenshot({ path: `${cfg.shots}/${name}.png`, fullPage: full });
const dlg = (page) => page.locator('dialog[open]').last();
async function fieldError(page, name) {
  const e = dlg(page).locator(`.field[data-field="${name}"] .field-error`);
  await e.waitFor({ state: 'visible', timeout: 10000 });
  return e.textContent();
}
async function signIn(page, token) {
  await page.goto(base + '/');
  eq(new URL(page.url()).pathname, '/console/', '/ redirects to the console');
  const input = page.getByLabel('API token');
  await input.waitFor();
  // Keyboard only: the field has the focus, Enter submits.
  await page.keyboard.type(token);
  await page.keyboard.press('Enter');
  await page.locator('#top:not([hidden])').waitFor();
}
async function importPaste(page, name, m, extra = {}) {
  await go(page, '#/import');
  const d = dlg(page);
  await d.getByLabel('Name', { exact: true }).fill(name);
  if (extra.description) await d.getByLabel('Description').fill(extra.description);
  if (extra.tags) await d.getByLabel('Tags').fill(extra.tags);
  if (extra.encoding) await d.getByLabel('Encoding').selectOption(extra.encoding);
  await d.getByLabel('Certificate', { exact: true }).fill(m.cert);
  if (m.key) await d.getByLabel('Private key', { exact: true }).fill(m.key);
  if (extra.chain) await d.getByLabel('Chain (optional)').fill(extra.chain);
}
async function submit(page) { await dlg(page).locator('button[type=submit]').click(); }
async function typeConfirm(page, word) {
  const d = dlg(page);
  await d.getByLabel(`Type ${word} to confirm`).fill(word);
  await d.locator('button[type=submit]').click();
}
const b64 = (s) => Buffer.from(s).toString('base64');
const derB64 = (pem) => pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');

const browser = await chromium.launch({
  executablePath: cfg.chromium,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
});
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  ctx.setDefaultTimeout(8000);
  const page = await ctx.newPage();
  const w = watch(page);
  const m = cfg.m;
  const xss = '<script>alert(1)</script><img src=x onerror=alert(2)>';

  await step('sign-in page, then sign in as admin with the keyboard', w, async () => {
    await page.goto(base + '/');
    await page.getByLabel('API token').waitFor();
    await shot(page, '00-sign-in');
    expect(w, 401);
    await page.getByLabel('API token').fill('cvt_0000000000000000_' + 'A'.repeat(43));
    await page.getByRole('button', { name: 'Sign in' }).click();
    const e = page.locator('.field[data-field=token] .field-error');
    await e.waitFor({ state: 'visible' });
    assert(/not valid/.test(await e.textContent()), 'refused sign-in explained');
    await page.getByLabel('API token').fill('');
    await page.getByLabel('API token').focus();
    await page.keyboard.type(cfg.tokens.admin);
    await page.keyboard.press('Enter');
    await page.locator('.cards').waitFor();
    assert(/admin \(admin\)/.test(await page.locator('#who').textContent()), 'who is signed in');
  });

  await step('the token is never in storage, the cookie never readable by the page', w, async () => {
    const dump = await page.evaluate(() => JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage), document.cookie]));
    assert(!dump.includes(cfg.tokens.admin.slice(-43)), 'the API token is in storage: ' + dump);
    assert(!dump.includes('cvs_'), 'the session cookie is readable by scripts');
    const cookies = await ctx.cookies();
    const c = cookies.find((x) => x.name === 'cv_session');
    assert(c && c.httpOnly && c.sameSite === 'Strict' && c.path === '/', 'cookie flags ' + JSON.stringify(c));
  });

  await step('import by paste (PEM) with HTML in the description, shown as text', w, async () => {
    // Tags as the edit form takes them: a line that does not read is refused at its field
    // before anything is sent; then sent as the JSON's tags.
    await importPaste(page, 'ok-pem', m.ok, { description: xss, tags: 'team=identity\nbad key' });
    await submit(page);
    assert(/Line 2/.test(await fieldError(page, 'tags')), 'a bad tag line is shown at the tags');
    eq((await api('GET', '/v1/certificates/ok-pem')).status, 404, 'nothing sent');
    await dlg(page).getByLabel('Tags').fill('team=identity\nticket=OPS-1');
    await submit(page);
    await page.waitForURL(/#\/certificates\/ok-pem$/);
    eq(JSON.stringify((await api('GET', '/v1/certificates/ok-pem')).body.tags), '{"team":"identity","ticket":"OPS-1"}', 'the import sent the tags');
    await page.locator('h1', { hasText: 'ok-pem' }).waitFor();
    const dd = page.locator('dl.details dt:text-is("Description") + dd');
    eq(await dd.textContent(), xss, 'the description is shown as the text it is');
    eq(await page.locator('main img').count(), 0, 'no element made from the description');
  });

  await step('import by paste: BASE64 and BASE64PEM encodings', w, async () => {
    await importPaste(page, 'other-b64', { cert: derB64(m.b64a.cert), key: derB64(m.b64a.key) }, { encoding: 'base64' });
    await submit(page);
    await page.waitForURL(/other-b64$/);
    await importPaste(page, 'www-b64pem', { cert: b64(m.b64b.cert), key: b64(m.b64b.key) }, { encoding: 'base64pem' });
    await submit(page);
    await page.waitForURL(/www-b64pem$/);
    eq((await api('GET', '/v1/certificates/www-b64pem')).status, 200, 'stored');
  });

  await step('import by file: PEM bundle, DER with a key file, PKCS#12 with its password', w, async () => {
    const upload = async (name, files, password, tags) => {
      await go(page, '#/import');
      const d = dlg(page);
      await d.getByLabel('Name', { exact: true }).fill(name);
      if (tags) await d.getByLabel('Tags').fill(tags);
      await d.locator('input[name=source][value=file]').check();
      await d.getByLabel('Certificate file').setInputFiles(files.cert);
      if (files.key) await d.getByLabel(/Private key file/).setInputFiles(files.key);
      if (password) await d.getByLabel(/^Password/).fill(password);
      await submit(page);
    };
    await upload('bundle', { cert: cfg.files.bundle }, null, 'team=web');
    await page.waitForURL(/#\/certificates\/bundle$/);
    eq(JSON.stringify((await api('GET', '/v1/certificates/bundle')).body.tags), '{"team":"web"}', 'an upload sends its tags as tags.KEY fields');
    await upload('der', { cert: cfg.files.der, key: cfg.files.der_key });
    await page.waitForURL(/#\/certificates\/der$/);
    expect(w, 422);
    await upload('p12', { cert: cfg.files.p12 }, 'wrong');
    assert(/password/i.test(await fieldError(page, 'password')), 'a wrong PKCS#12 password is shown at the password');
    await dlg(page).getByLabel(/^Password/).fill('s3cret');
    await submit(page);
    await page.waitForURL(/#\/certificates\/p12$/);
    const d = (await api('GET', '/v1/certificates/p12')).body;
    eq(d.chain_length, 1, 'the PKCS#12 chain is stored');
  });

  await step('every import refusal is shown at its field, the form keeps its content', w, async () => {
    const cases = [
      ['expired', m.expired, 'certificate', /expired/i, 422],
      ['future', m.future, 'certificate', /not valid yet/i, 422],
      ['weak', m.weak, 'certificate', /weak/i, 422],
      ['small', m.small, 'certificate', /not taken|key/i, 422],
      ['mismatch', { cert: m.www2.cert, key: m.www3.key }, 'private_key', /does not match/i, 422],
      ['garbage', { cert: '-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n', key: m.ok.key }, 'certificate', /could not be read/i, 400],
      ['ok-pem', m.ok, 'name', /taken/i, 409],
      ['badchain', { cert: m.www2.cert, key: m.www2.key }, 'chain', /not a CA/i, 422],
    ];
    for (const [name, mat, fieldName, re, status] of cases) {
      expect(w, status);
      await importPaste(page, name, mat, name === 'badchain' ? { chain: m.ok.cert } : {});
      await submit(page);
      const text = await fieldError(page, fieldName);
      assert(re.test(text), `${name}: "${text}" at ${fieldName}`);
      eq(await dlg(page).getByLabel('Name', { exact: true }).inputValue(), name, `${name}: the name is kept`);
      eq(await dlg(page).getByLabel('Certificate', { exact: true }).inputValue(), mat.cert, `${name}: the certificate is kept`);
      if (name !== 'ok-pem') eq((await api('GET', '/v1/certificates/' + name)).status, 404, `${name}: nothing stored`);
      await page.keyboard.press('Escape');
    }
    // The name rule is checked before anything is sent.
    await importPaste(page, 'bad name!', m.ok);
    assert(/letters, digits or hyphens/.test(await fieldError(page, 'name')), 'name checked as typed');
    await submit(page);
    assert(await dlg(page).isVisible(), 'not sent');
    await page.keyboard.press('Escape');
    await importPaste(page, 'expired', m.expired);
    await shot(page, '03-import-dialog', false);
    const check = dlg(page).getByRole('button', { name: 'Check first' });
    if (await check.count()) {
      await check.click();
      assert(/expired/i.test(await fieldError(page, 'certificate')), 'the preview names the problem at its field');
      eq((await api('GET', '/v1/certificates/expired')).status, 404, 'a preview stores nothing');
      await shot(page, '03-import-refusal', false);
    }
    await page.keyboard.press('Escape');
  });

  await step('certificates list: filters, search, paging, the row actions', w, async () => {
    await go(page, '#/certificates');
    await page.locator('table tbody tr').first().waitFor();
    const list = (await api('GET', '/v1/certificates?limit=50')).body.items;
    eq(await page.locator('main table tbody tr').count(), list.length, 'one row per certificate');
    await shot(page, '02-certificates');
    await page.getByLabel('Search').fill('b64');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/q=b64/);
    await page.waitForFunction(() => document.querySelectorAll('main table tbody tr').length === 2);
    // Keyset paging through the API's cursor, 2 a page: every row once.
    await go(page, '#/certificates?limit=2');
    const seen = [];
    for (;;) {
      await page.locator('main table').waitFor();
      await page.waitForFunction(() => !document.querySelector('main .loading'));
      seen.push(...await page.locator('main tbody tr td:first-child > a').allTextContents());
      const next = page.getByRole('button', { name: 'Next page →' });
      if (!(await next.count())) break;
      const url = page.url();
      await next.click();
      await page.waitForFunction((u) => location.href !== u, url);
    }
    eq(JSON.stringify(seen), JSON.stringify(list.map((c) => c.name)), 'paging walks every row once, in order');
    // Sorted by the server: the order the API gives.
    const byEnd = (await api('GET', '/v1/certificates?sort=valid_to&order=desc')).body.items.map((c) => c.name);
    await go(page, '#/certificates');
    await page.getByLabel('Sort').selectOption('valid_to:desc');
    await page.waitForURL(/sort=valid_to&order=desc/);
    await page.waitForFunction((n) => document.querySelectorAll('main tbody tr').length === n && !document.querySelector('main .loading'), byEnd.length);
    eq(JSON.stringify(await page.locator('main tbody tr td:first-child > a').allTextContents()), JSON.stringify(byEnd), 'sorted as the API sorts');
    await go(page, '#/certificates');
    await page.locator('main table').waitFor();
    const row = page.locator('main tr', { hasText: 'ok-pem' });
    await row.getByText('Actions').click();
    const menu = row.locator('details.menu ul');
    for (const item of ['Details', 'Edit', 'Replace', 'Export PEM', 'Export chain', 'Create JWK', 'Delete'])
      assert(await menu.getByText(item, { exact: true }).count() === 1, 'menu has ' + item);
    assert(/not in use/.test(await menu.textContent()), 'renew is explained as unavailable while not in use');
    await shot(page, '02-certificates-actions');
    await page.keyboard.press('Escape');
  });

  await step('details equal to the API', w, async () => {
    await go(page, '#/certificates/bundle');
    await page.locator('dl.details').waitFor();
    const d = (await api('GET', '/v1/certificates/bundle')).body;
    const dd = async (label) => (await page.locator(`dl.details dt:text-is("${label}") + dd`).textContent()).trim();
    eq(await dd('Serial number'), d.serial_number, 'serial');
    eq(await dd('SHA-256 fingerprint'), d.fingerprints.sha256, 'sha256');
    eq(await dd('Public key'), d.public_key.description, 'key type');
    eq(await dd('Signature algorithm'), d.signature_algorithm_name || d.signature_algorithm, 'signature');
    eq(await dd('Domain names'), d.domains.join(''), 'domains');
    eq(await dd('Expires in'), `${d.expires_in_days} days`, 'expires in');
    eq(await page.locator('dl.details dt:text-is("Valid to") + dd time').getAttribute('datetime'), d.valid_to, 'valid to');
    assert(/\(UTC\)/.test(await page.locator('dl.details dt:text-is("Valid to") + dd time').getAttribute('title')), 'UTC on hover');
    eq(await page.getByLabel('PKCS#11 URI').inputValue(), d.key.pkcs11_uri, 'PKCS#11 URI');
    assert(/sensitive, not extractable/.test(await dd('Key protection')), 'key protection');
    eq(await page.locator('section', { hasText: 'Versions' }).locator('tbody tr').count(), 1, 'one version');
    await shot(page, '04-details');
  });

  await step('services: create, bind with a coverage refusal per domain, bind from the picker', w, async () => {
    await importPaste(page, 'shop', m.www);
    await submit(page);
    await page.waitForURL(/#\/certificates\/shop$/);
    await go(page, '#/services');
    await page.getByRole('button', { name: 'New service' }).click();
    const d = dlg(page);
    await d.getByLabel('Name').fill('storefront');
    // Services name an existing environment: picked from those there are.
    await d.getByLabel('Environment').selectOption('production');
    await d.getByLabel('Domains').fill('www.shop.example\nshop.example');
    await submit(page);
    await page.locator('main tr', { hasText: 'storefront' }).waitFor();
    await page.locator('main tr', { hasText: 'storefront' }).getByRole('button', { name: 'Bind' }).click();
    await dlg(page).locator('table').waitFor();
    assert(/every domain/.test(await dlg(page).locator('tr', { hasText: 'shop' }).first().textContent()), 'the picker shows who covers every domain');
    await shot(page, '07-bind-picker', false);
    expect(w, 422);
    await dlg(page).getByLabel('Certificate', { exact: true }).fill('ok-pem');
    await submit(page);
    const text = await fieldError(page, 'certificate');
    assert(/does not cover/.test(text), 'coverage refusal: ' + text);
    eq(await dlg(page).locator('.coverage-detail li.bad').count(), 2, 'each domain not covered is named');
    await dlg(page).getByLabel('Pick shop').check();
    await submit(page);
    await page.locator('main tr', { hasText: 'storefront' }).getByRole('link', { name: 'shop' }).waitFor();
    eq((await api('GET', '/v1/services/storefront')).body.certificate.name, 'shop', 'bound');
    await go(page, '#/services?environment=production');
    await page.locator('main tr', { hasText: 'storefront' }).waitFor();
    await shot(page, '07-services');
  });

  await step('JWKs: create from a certificate, listed with its link', w, async () => {
    await go(page, '#/certificates/shop');
    await page.getByRole('button', { name: 'Create JWK' }).click();
    await submit(page);
    await page.waitForURL(/#\/jwks$/);
    await page.locator('main tr', { hasText: 'shop' }).waitFor();
    await shot(page, '08-jwks');
  });

  await step('renew with the JWK dialog and the name confirmation', w, async () => {
    await go(page, '#/certificates/shop');
    await page.getByRole('button', { name: 'Import to renew' }).click();
    const d = dlg(page);
    await d.getByLabel('Certificate', { exact: true }).fill(m.www2.cert);
    await d.getByLabel('Private key', { exact: true }).fill(m.www2.key);
    await submit(page);
    await page.getByText('This certificate is used in 1 JWK(s). What would you like to do?').waitFor();
    await shot(page, '05-jwk-connection', false);
    await page.getByRole('button', { name: 'Update related JWKs' }).click();
    await shot(page, '05-confirm-name', false);
    await typeConfirm(page, 'shop');
    await page.getByText(/now version 2.* JWKs: .* superseded, .* created\./).waitFor();
    await page.locator('dl.details dt:text-is("Version") + dd', { hasText: '2' }).waitFor();
    const d2 = (await api('GET', '/v1/certificates/shop')).body;
    eq(d2.version, 2, 'renewed');
    eq((await api('GET', '/v1/services/storefront')).body.certificate.version, 2, 'the service uses it');
  });

  await step('JWKs screen: the superseded JWK of a renewal with a new key, beside the new one', w, async () => {
    const all = (await api('GET', '/v1/jwks/all?certificate=shop')).body.items;
    const old = all.find((j) => j.state === 'superseded');
    const cur = all.find((j) => j.state === 'active');
    assert(old && cur, 'the API has both: ' + JSON.stringify(all));
    await go(page, '#/jwks');
    const oldRow = page.locator(`main tr[data-kid="${old.kid}"]`);
    await oldRow.waitFor();
    assert(/Superseded/.test(await oldRow.textContent()), 'the old JWK is shown superseded');
    assert(/v1/.test(await oldRow.textContent()) && /v2/.test(await page.locator(`main tr[data-kid="${cur.kid}"]`).textContent()), 'made from v1 and v2');
    eq(await oldRow.locator('td.published time').getAttribute('datetime'), old.published_until, 'published until its retention ends');
    eq(await oldRow.getByRole('link', { name: 'shop' }).count(), 1, 'its certificate');
    await shot(page, '08-jwks-superseded');
    await oldRow.getByRole('button', { name: 'View' }).click();
    assert(JSON.parse(await dlg(page).getByLabel('Public JWK').inputValue()).kid === old.kid, 'the public JWK');
    await page.keyboard.press('Escape');
    // Several JWKs in the certificate's details, each with the version it was made from.
    await go(page, '#/certificates/shop');
    const linked = page.locator('section', { hasText: 'Linked JWKs' }).locator('tbody tr');
    await linked.first().waitFor();
    eq(await linked.count(), 2, 'both JWKs in the details');
    assert(/version 1/.test(await linked.filter({ hasText: old.kid }).textContent()), 'made from version 1');
  });

  await step('environments: create, create from the service form, edit, a refused delete, delete', w, async () => {
    await go(page, '#/environments');
    await page.locator('main tr[data-env=production]').waitFor();
    await page.getByRole('button', { name: 'New environment' }).click();
    let d = dlg(page);
    await d.getByLabel('Name', { exact: true }).fill('eu west');
    await submit(page);
    assert(/letters, digits or hyphens/.test(await fieldError(page, 'name')), 'the name is checked before sending');
    await d.getByLabel('Name', { exact: true }).fill('eu-west');
    await d.getByLabel('Display name (optional)').fill('EU West');
    await d.getByLabel('Description').fill('Frankfurt');
    await submit(page);
    await page.locator('main tr[data-env=eu-west]', { hasText: 'EU West' }).waitFor();
    eq((await api('GET', '/v1/environments/eu-west')).body.display_name, 'EU West', 'created');
    await page.locator('main tr[data-env=eu-west]').getByRole('button', { name: 'Edit' }).click();
    await dlg(page).getByLabel('Description').fill('Frankfurt and Paris');
    await submit(page);
    await page.locator('main tr[data-env=eu-west]', { hasText: 'Frankfurt and Paris' }).waitFor();
    eq((await api('GET', '/v1/environments/eu-west')).body.description, 'Frankfurt and Paris', 'edited');
    await shot(page, '14-environments');
    // In use: the API's refusal, naming the service, and nothing deleted.
    expect(w, 409);
    await page.locator('main tr[data-env=production]').getByRole('button', { name: 'Delete' }).click();
    await typeConfirm(page, 'delete');
    await dlg(page).getByText('storefront').waitFor();
    assert(/cannot be deleted/.test(await dlg(page).locator('h2').textContent()), 'the refusal is explained');
    await shot(page, '14-environment-in-use', false);
    await page.keyboard.press('Escape');
    eq((await api('GET', '/v1/environments/production')).status, 200, 'not deleted');
    await page.locator('main tr[data-env=eu-west]').getByRole('button', { name: 'Delete' }).click();
    await typeConfirm(page, 'delete');
    await page.locator('main tr[data-env=eu-west]').waitFor({ state: 'detached' });
    eq((await api('GET', '/v1/environments/eu-west')).status, 404, 'deleted');
    // The service form offers the environments there are, and makes a new one over itself.
    await go(page, '#/services');
    await page.getByRole('button', { name: 'New service' }).click();
    d = dlg(page);
    await d.getByLabel('Name', { exact: true }).fill('edge-proxy');
    await d.getByRole('button', { name: 'New environment…' }).click();
    await dlg(page).getByLabel('Name', { exact: true }).fill('edge');
    await submit(page);
    await page.waitForFunction(() => document.querySelector('dialog[open] select[name=environment]')?.value === 'edge');
    eq(await dlg(page).getByLabel('Name', { exact: true }).inputValue(), 'edge-proxy', 'the service form kept what was typed');
    await shot(page, '07-service-environment', false);
    await dlg(page).getByLabel('Domains').fill('edge.shop.example');
    await submit(page);
    await page.locator('main tr', { hasText: 'edge-proxy' }).waitFor();
    eq((await api('GET', '/v1/services/edge-proxy')).body.environment, 'edge', 'the service is in the new environment');
  });

  await step('edit: tags (checked as typed, filtered in the list) and a rename', w, async () => {
    await go(page, '#/certificates/www-b64pem');
    await page.getByRole('button', { name: 'Edit' }).click();
    let d = dlg(page);
    await d.getByLabel('Tags').fill('bad key!=x');
    await submit(page);
    assert(/letters, digits/.test(await fieldError(page, 'tags')), 'a bad tag key is named before sending');
    await d.getByLabel('Tags').fill('team=payments\nowner=alice');
    expect(w, 409);
    await d.getByLabel('Name', { exact: true }).fill('bundle');
    await submit(page);
    assert(/taken/i.test(await fieldError(page, 'name')), 'a taken name is refused at the name');
    eq((await api('GET', '/v1/certificates/www-b64pem')).body.tags.team, undefined, 'nothing changed');
    await d.getByLabel('Name', { exact: true }).fill('www-renamed');
    await shot(page, '15-edit-tags-rename', false);
    await submit(page);
    await page.waitForURL(/#\/certificates\/www-renamed$/);
    await page.locator('dl.details dt:text-is("Tags") + dd a.tag', { hasText: 'team: payments' }).waitFor();
    const r = (await api('GET', '/v1/certificates/www-renamed')).body;
    eq(JSON.stringify(r.tags), JSON.stringify({ owner: 'alice', team: 'payments' }), 'tags stored');
    eq((await api('GET', '/v1/certificates/www-b64pem')).status, 404, 'the old name is gone');
    // A tag is a link to the list filtered by it.
    await page.locator('dl.details a.tag', { hasText: 'team: payments' }).click();
    await page.waitForURL(/tag=team%3Apayments/);
    await page.waitForFunction(() => document.querySelectorAll('main tbody tr').length === 1 && !document.querySelector('main .loading'));
    eq(await page.locator('main tbody tr td:first-child > a').textContent(), 'www-renamed', 'the list filtered by the tag');
    eq(await page.getByLabel('Tag', { exact: true }).inputValue(), 'team:payments', 'the filter shows it');
  });

  await step('a public certificate (no key) and an upcoming one', w, async () => {
    await importPaste(page, 'partner', { cert: m.pub.cert });
    await submit(page);
    await page.waitForURL(/#\/certificates\/partner$/);
    await page.locator('dl.details dt:text-is("Kind") + dd', { hasText: 'Public certificate' }).waitFor();
    eq(await page.getByLabel('PKCS#11 URI').count(), 0, 'no key URI');
    eq(await page.locator('dl.details dt:text-is("Key protection")').count(), 0, 'no key protection');
    assert(/none/.test(await page.locator('dl.details dt:text-is("Key") + dd').textContent()), 'no key, said so');
    await shot(page, '16-public-certificate');
    // Its renewal asks for no key.
    await page.getByRole('button', { name: 'Import to renew' }).click();
    eq(await dlg(page).getByLabel('Private key', { exact: true }).count(), 0, 'no private key field');
    await page.keyboard.press('Escape');
    eq((await api('GET', '/v1/certificates/partner')).body.kind, 'public', 'stored as public');
    await go(page, '#/certificates?q=partner');
    await page.locator('main tr', { hasText: 'partner' }).getByText('public: no key').waitFor();
    // It cannot serve a service: binding it is refused, and said why.
    await go(page, '#/services');
    await page.locator('main tr', { hasText: 'edge-proxy' }).getByRole('button', { name: 'Bind' }).click();
    await dlg(page).getByLabel('Certificate', { exact: true }).fill('partner');
    expect(w, 422);
    await submit(page);
    assert(/key/i.test(await fieldError(page, 'certificate')), 'no private key, at the certificate');
    await page.keyboard.press('Escape');
    eq((await api('GET', '/v1/services/edge-proxy')).body.certificate, null, 'not bound');
    // Not yet valid: refused, then accepted as Upcoming when asked for.
    expect(w, 422);
    await importPaste(page, 'soon', m.future);
    await submit(page);
    assert(/start date is still ahead/.test(await fieldError(page, 'certificate')), 'the refusal names the way to take it');
    await dlg(page).getByLabel(/Accept a certificate whose start date/).check();
    await submit(page);
    await page.waitForURL(/#\/certificates\/soon$/);
    await page.locator('dl.details dt:text-is("Status") + dd', { hasText: 'Upcoming' }).waitFor();
    await page.locator('dl.details dt:text-is("Starts in")').waitFor();
    eq((await api('GET', '/v1/certificates/soon')).body.status, 'upcoming', 'stored as upcoming');
    // From a server (an admin's import): the certificate it presents, as a public one.
    await go(page, '#/import');
    await dlg(page).getByLabel('Name', { exact: true }).fill('from-server');
    await dlg(page).locator('input[name=source][value=url]').check();
    await dlg(page).getByLabel('URL').fill(cfg.tls_url);
    await submit(page);
    await page.waitForURL(/#\/certificates\/from-server$/);
    await page.locator('dl.details dt:text-is("Kind") + dd', { hasText: 'Public certificate' }).waitFor();
    const fs = (await api('GET', '/v1/certificates/from-server')).body;
    eq(JSON.stringify([fs.kind, fs.domains, fs.chain_length]), JSON.stringify(['public', ['localhost'], 1]), 'the server\'s own certificate, its chain after it');
  });

  await step('a stale renew is explained', w, async () => {
    await go(page, '#/certificates/shop');
    await page.getByRole('button', { name: 'Replace' }).click();
    const d = dlg(page);
    await d.getByLabel('Certificate', { exact: true }).fill(m.www3.cert);
    await d.getByLabel('Private key', { exact: true }).fill(m.www3.key);
    // Someone else renews meanwhile.
    const r = await api('POST', '/v1/certificates/shop/replace', { certificate: m.www4.cert, private_key: m.www4.key, jwk_action: 'update', confirm: 'shop' });
    eq(r.status, 200, JSON.stringify(r.body));
    expect(w, 409);
    await submit(page);
    await page.getByRole('button', { name: 'Update certificate only and disconnect' }).click();
    await typeConfirm(page, 'shop');
    await dlg(page).locator('.form-error', { hasText: 'while this dialog was open' }).waitFor();
    await page.keyboard.press('Escape');
  });

  await step('delete: refused while in use, naming the service; the keyword; JWK choice then the name', w, async () => {
    await go(page, '#/certificates/shop');
    await page.getByRole('button', { name: 'Delete' }).click();
    await dlg(page).getByText('storefront').waitFor();
    assert(/cannot be deleted/.test(await dlg(page).locator('h2').textContent()), 'in use explained');
    await shot(page, '06-delete-in-use', false);
    await page.keyboard.press('Escape');
    await go(page, '#/certificates/der');
    await page.getByRole('button', { name: 'Delete' }).click();
    const go1 = dlg(page).locator('button[type=submit]');
    assert(await go1.isDisabled(), 'disabled until the keyword is typed');
    await shot(page, '06-delete-keyword', false);
    await typeConfirm(page, 'delete');
    await page.waitForURL(/#\/certificates$/);
    eq((await api('GET', '/v1/certificates/der')).status, 404, 'deleted');
    eq((await api('POST', '/v1/jwks', { certificate: 'other-b64' })).status, 201, 'a JWK for other-b64');
    await go(page, '#/certificates/other-b64');
    await page.getByRole('button', { name: 'Delete' }).click();
    await page.getByRole('button', { name: 'Delete JWKs' }).click();
    await typeConfirm(page, 'other-b64');
    await page.waitForURL(/#\/certificates$/);
    eq((await api('GET', '/v1/certificates/other-b64')).status, 404, 'deleted with its JWKs');
  });

  await step('deleted (issue 18): listed with who and when, recover brings one back, purge after the word', w, async () => {
    await go(page, '#/deleted');
    const row = (name) => page.locator('tbody tr').filter({ has: page.getByRole('cell', { name, exact: true }) });
    await row('der').waitFor();
    await row('other-b64').waitFor();
    assert(/admin/.test(await row('der').textContent()), 'who deleted it');
    await page.getByRole('columnheader', { name: 'Purge after' }).waitFor();
    await shot(page, '06-deleted');
    await row('der').getByRole('button', { name: 'Recover' }).click();
    await page.waitForURL(/#\/certificates\/der$/);
    eq((await api('GET', '/v1/certificates/der')).status, 200, 'recovered');
    await go(page, '#/deleted');
    await row('other-b64').getByRole('button', { name: 'Purge' }).click();
    const purge = dlg(page).locator('button[type=submit]');
    assert(await purge.isDisabled(), 'disabled until the word is typed');
    await typeConfirm(page, 'purge');
    await page.getByText('No deleted certificate.').waitFor();
    eq((await api('GET', '/v1/deleted-certificates')).body.items.length, 0, 'purged');
  });

  await step('truststore: by URL from openssl s_server, by paste, a bundle file; exports', w, async () => {
    await go(page, '#/truststore');
    await page.getByRole('button', { name: 'Add CA certificates' }).click();
    let d = dlg(page);
    await d.getByLabel('Alias', { exact: true }).fill('fetched');
    await d.locator('input[name=source][value=url]').check();
    await d.getByLabel('URL').fill(cfg.tls_url);
    const preview = d.getByRole('button', { name: 'Preview' });
    if (await preview.isVisible()) {
      await preview.click();
      await d.locator('.preview table').waitFor();
      eq((await api('GET', '/v1/truststore/fetched')).status, 404, 'a preview stores nothing');
    }
    await shot(page, '09-truststore-url', false);
    await submit(page);
    await page.locator('main tr', { hasText: 'Console Intermediate CA' }).waitFor();
    await page.getByRole('button', { name: 'Add CA certificates' }).click();
    d = dlg(page);
    await d.getByLabel('Alias', { exact: true }).fill('roots');
    await d.getByLabel(/^Certificates \(PEM/).fill(m.root.cert + m.inter.cert);
    expect(w, 409);
    await submit(page);
    assert(/already|same/i.test(await fieldError(page, 'certificate')), 'a CA trusted already is refused at its field');
    await d.getByLabel(/^Certificates \(PEM/).fill(m.root.cert);
    await submit(page);
    await page.locator('main tr', { hasText: 'roots' }).waitFor();
    await page.getByRole('button', { name: 'Add CA certificates' }).click();
    d = dlg(page);
    await d.getByLabel('Alias', { exact: true }).fill('leafy');
    await d.locator('input[name=source][value=file]').check();
    await d.getByLabel('File (PEM bundle or DER)').setInputFiles(cfg.files.not_a_ca);
    expect(w, 422);
    await submit(page);
    assert(/not a CA/i.test(await fieldError(page, 'file')), 'not a CA, at the file');
    await page.keyboard.press('Escape');
    await page.locator('main tr', { hasText: 'fetched' }).getByRole('button', { name: 'fetched' }).click();
    await dlg(page).getByText('Console Intermediate CA').first().waitFor();
    await page.keyboard.press('Escape');
    await shot(page, '09-truststore');
    const [pem] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Export PEM' }).click()]);
    assert(/BEGIN CERTIFICATE/.test(readFileSync(await pem.path(), 'utf8')), 'PEM bundle downloaded');
    await page.getByRole('button', { name: 'Export PKCS#12' }).click();
    await dlg(page).getByLabel('Password for the file').fill('changeit');
    const before = await page.evaluate(() => history.length);
    const [p12] = await Promise.all([page.waitForEvent('download'), submit(page)]);
    assert(readFileSync(await p12.path()).length > 100, 'PKCS#12 downloaded');
    eq(await page.evaluate(() => history.length), before, 'no navigation: the password is in no history entry');
    assert(!page.url().includes('changeit'), 'the password is not in the address');
  });

  await step('audit: filters, paging, verify', w, async () => {
    await go(page, '#/audit?action=certificate.import');
    await page.locator('main table tbody tr').first().waitFor();
    const rows = await page.locator('main table tbody tr td:nth-child(4)').allTextContents();
    assert(rows.length > 0 && rows.every((a) => a === 'certificate.import'), 'filtered by action');
    await page.getByRole('button', { name: 'Verify the chain' }).click();
    await page.locator('.verdict .ok', { hasText: 'Intact' }).waitFor();
    const v = (await api('GET', '/v1/audit/verify')).body;
    assert((await page.locator('.verdict code').textContent()) === v.head, 'the head hash shown');
    await shot(page, '10-audit');
  });

  await step('inventory: CSV and JSON downloads', w, async () => {
    await go(page, '#/inventory');
    const [csv] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Download CSV' }).click()]);
    assert(/\bname\b/.test(readFileSync(await csv.path(), 'utf8').split('\n')[0]), 'CSV header');
    const [js] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Download JSON' }).click()]);
    assert(JSON.parse(readFileSync(await js.path(), 'utf8')).count > 0, 'JSON inventory');
    await shot(page, '11-inventory');
  });

  let made;
  await step('API tokens: create (shown once, copy), revoke with confirmation', w, async () => {
    await go(page, '#/tokens');
    await page.getByRole('button', { name: 'New token' }).click();
    await dlg(page).getByLabel('Name').fill('deploy');
    await dlg(page).getByLabel('Role').selectOption('operator');
    await dlg(page).getByLabel('Scope').fill('actions=read,bind environments=production');
    await submit(page);
    const secret = dlg(page).getByLabel('The new token');
    await secret.waitFor();
    made = await secret.inputValue();
    assert(/^cvt_/.test(made), 'the token is shown');
    assert(await dlg(page).getByRole('button', { name: 'Copy' }).count() === 1, 'with a copy button');
    assert(/shown this once/.test(await dlg(page).textContent()), 'and a warning');
    await shot(page, '12-token-created', false);
    eq((await api('GET', '/v1/certificates', undefined, made)).status, 200, 'the new token works');
    await dlg(page).getByRole('button', { name: 'Done' }).click();
    await page.locator('main tr', { hasText: 'deploy' }).getByText('read, bind · environments production').waitFor();
    await page.locator('main tr', { hasText: 'deploy' }).getByRole('button', { name: 'Revoke' }).click();
    await typeConfirm(page, 'deploy');
    await page.locator('main tr', { hasText: 'deploy' }).getByText('revoked').waitFor();
    eq((await api('GET', '/v1/certificates', undefined, made)).status, 401, 'revoked');
    await shot(page, '12-tokens');
  });

  await step('overview: the summary links, expiring soonest, token state', w, async () => {
    await go(page, '#/');
    await page.locator('.cards').waitFor();
    const s = (await api('GET', '/v1/certificates/summary')).body;
    eq(await page.locator('.card', { hasText: 'Total' }).locator('.n').textContent(), String(s.total), 'total');
    eq(await page.locator('.card', { hasText: 'In use' }).first().getAttribute('href'), '#/certificates?in_use=true', 'in use links to the list');
    assert(/yes/.test(await page.locator('dt:text-is("Reachable") + dd').textContent()), 'token reachable');
    await shot(page, '01-overview');
  });

  await step('a narrow window: nothing wider than the screen', w, async () => {
    await page.setViewportSize({ width: 390, height: 800 });
    for (const [hash, name] of [['#/', '01-overview-narrow'], ['#/certificates/bundle', '04-details-narrow'], ['#/certificates', '02-certificates-narrow'], ['#/jwks', '08-jwks-narrow']]) {
      await go(page, hash);
      await page.locator('main h1').waitFor();
      await page.locator('main .loading').waitFor({ state: 'detached' }).catch(() => {});
      const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert(over <= 1, `${hash} is ${over}px wider than the window`);
      await shot(page, name);
    }
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  await step('a cross-site form post is refused and changes nothing', w, async () => {
    const evil = await ctx.newPage();
    await evil.goto(cfg.evil);
    await evil.waitForURL(base + '/v1/certificates');
    assert(/X-CSRF-Token/.test(await evil.textContent('body')), 'refused for want of the CSRF token');
    await evil.close();
    eq((await api('GET', '/v1/certificates/evil-csrf')).status, 404, 'nothing created');
  });

  await step('sign out ends the session on the server', w, async () => {
    const cookie = (await ctx.cookies()).find((x) => x.name === 'cv_session');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API token').waitFor();
    const r = await fetch(base + '/v1/certificates', { headers: { Cookie: `cv_session=${cookie.value}` } });
    eq(r.status, 401, 'the old cookie is refused');
  });

  // The other roles, each in its own context.
  for (const role of ['operator', 'auditor']) {
    const c = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    c.setDefaultTimeout(8000);
    const p = await c.newPage();
    const pw = watch(p);
    await step(`${role}: what the role may do, and nothing else`, pw, async () => {
      await signIn(p, cfg.tokens[role]);
      const nav = await p.locator('#nav').textContent();
      eq(/Audit/.test(nav), role === 'auditor', 'audit page offered');
      eq(/API tokens/.test(nav), false, 'no admin pages');
      const changeWords = /^(Import certificate|Edit|Import to renew|Replace|Create JWK|Delete|New service|Bind|Unbind|Add CA certificates|Add a CRL|New token|Revoke|New environment|New environment…)$/;
      for (const hash of ['#/', '#/certificates', '#/certificates/bundle', '#/services', '#/environments', '#/jwks', '#/truststore', ...(role === 'auditor' ? ['#/audit', '#/inventory'] : [])]) {
        await go(p, hash);
        await p.locator('main h1').waitFor();
        await p.locator('main .loading').waitFor({ state: 'detached' }).catch(() => {});
        await p.waitForTimeout(100);
        if (hash === '#/certificates') await p.locator('main tr', { hasText: 'bundle' }).getByText('Actions').click();
        const buttons = (await p.locator('main button, main a').allTextContents()).map((t) => t.trim());
        const changes = buttons.filter((t) => changeWords.test(t));
        if (role === 'auditor') eq(changes.length, 0, `${hash}: change buttons shown to an auditor: ${changes}`);
        if (role === 'auditor') await shot(p, 'auditor-' + (hash.replace(/[#/]+/g, '-').replace(/^-|-$/g, '') || 'overview'));
      }
      if (role === 'operator') {
        await go(p, '#/tokens');
        await p.getByText('Only an admin manages API tokens.').waitFor();
      } else {
        // Crafted requests with the session's own CSRF token: still refused by role.
        const results = await p.evaluate(async (pem) => {
          const s = await (await fetch('/v1/session')).json();
          const h = { 'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf_token };
          const out = [];
          out.push((await fetch('/v1/certificates', { method: 'POST', headers: h, body: JSON.stringify({ name: 'au', certificate: pem.cert, private_key: pem.key }) })).status);
          out.push((await fetch('/v1/certificates/bundle?confirm=delete', { method: 'DELETE', headers: h })).status);
          out.push((await fetch('/v1/services/storefront/certificate', { method: 'DELETE', headers: h })).status);
          out.push((await fetch('/v1/tokens', { method: 'POST', headers: h, body: '{"name":"x","role":"admin"}' })).status);
          return out;
        }, m.www3);
        pw.expected.length = 0;
        pw.problems = pw.problems.filter((x) => !/unexpected HTTP 403/.test(x));
        eq(JSON.stringify(results), '[403,403,403,403]', 'every crafted change refused');
        eq((await api('GET', '/v1/certificates/bundle')).status, 200, 'nothing deleted');
        eq((await api('GET', '/v1/services/storefront')).body.certificate.name, 'shop', 'nothing unbound');
      }
    });
    await c.close();
  }

  {
    // A scoped token: shop is inside its scope, storefront (which uses shop) is not.
    const made = await api('POST', '/v1/tokens', { name: 'scoped-reader', role: 'operator',
      scope: { actions: ['read'], certificates: ['shop'], services: ['nothing-*'] } });
    eq(made.status, 201, 'scoped token made');
    const c = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    c.setDefaultTimeout(8000);
    const p = await c.newPage();
    const pw = watch(p);
    await step('scoped: a service outside the scope is shown as such, never named', pw, async () => {
      await signIn(p, made.body.token);
      await go(p, '#/certificates/shop');
      await p.getByText('a service outside your scope').waitFor();
      let text = await p.locator('main').textContent();
      assert(!/storefront|undefined/.test(text), 'details name no service outside the scope: ' + text);
      // A read-only scope: no change is offered (the API would refuse each with 403).
      await p.locator('#who', { hasText: 'read-only' }).waitFor();
      for (const name of ['Edit', 'Replace', 'Create JWK', 'Delete', 'Import to renew']) {
        eq(await p.locator('main').getByRole('button', { name, exact: true }).count(), 0,
          `no ${name} button for a read-only scope`);
      }
      // ... nor an export, which its scope does not hold either.
      eq(await p.locator('main').getByRole('link', { name: /^Export/ }).count(), 0,
        'no export link for a scope without "export"');
      await shot(p, 'scoped-details-out-of-scope');
      await go(p, '#/certificates');
      const row = p.locator('main tr', { hasText: 'shop' }).first();
      await row.getByText('one outside your scope').waitFor();
      text = await p.locator('main').textContent();
      assert(!/storefront|undefined/.test(text), 'the list names no service outside the scope');
      eq(await p.getByRole('button', { name: 'Import certificate' }).count(), 0,
        'no Import button for a read-only scope');
      await shot(p, 'scoped-list-out-of-scope');
    });
    await c.close();
  }

  await step('a token outage shows the writes-paused banner', w, async () => {
    const c = await browser.newContext();
    c.setDefaultTimeout(8000);
    const p = await c.newPage();
    const pw = watch(p);
    await signIn(p, cfg.tokens.admin);
    await go(p, '#/certificates/bundle');
    await p.locator('main dl.details').waitFor();
    // The token goes away as in test_token_faults: SoftHSM's directory moved.
    renameSync(cfg.token_dir, cfg.token_dir + '.away');
    await p.getByRole('button', { name: 'Replace' }).click();
    await dlg(p).getByLabel('Certificate', { exact: true }).fill(m.www3.cert);
    await dlg(p).getByLabel('Private key', { exact: true }).fill(m.www3.key);
    pw.expected.push(503);
    await submit(p);
    await p.locator('#banner', { hasText: 'writes' }).waitFor();
    await dlg(p).locator('.form-error', { hasText: 'writes are paused' }).waitFor();
    await shot(p, '13-token-unavailable', false);
    renameSync(cfg.token_dir + '.away', cfg.token_dir);
    eq((await api('GET', '/v1/certificates/bundle')).body.version, 1, 'nothing changed');
    if (pw.problems.length) throw new Error(pw.problems.join('\n'));
    await c.close();
  });
} finally {
  await browser.close();
}
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
