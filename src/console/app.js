/* certvault console: one page over the public API, no build step, no library.
 * Every piece of text from the server is put in the page with textContent (never parsed as HTML),
 * so a name or description holding HTML is shown as text. The API token typed at sign-in is
 * sent once to POST /v1/session and never kept: the session is an HttpOnly cookie the page
 * cannot read; changes carry the session's CSRF token in X-CSRF-Token. */
'use strict';

(() => {
  const NAME_RE = /^[A-Za-z0-9-]{1,64}$/;
  const STATUS = {
    valid: 'Valid', expires_soon: 'Expires soon', expired: 'Expired', upcoming: 'Upcoming',
  };
  // What each refusal of the API means to a person, and which field it concerns.
  const REFUSALS = {
    invalid_name: ['name', 'A name has 1 to 64 letters, digits or hyphens (and "summary" is reserved).'],
    name_taken: ['name', 'That name is taken already.'],
    bad_encoding: ['certificate', 'This could not be read as a certificate, key or chain in the chosen encoding.'],
    bad_password: ['password', 'The password is missing or wrong.'],
    expired: ['certificate', 'This certificate has expired.'],
    not_yet_valid: ['certificate', 'This certificate is not valid yet.'],
    revoked: ['certificate', 'This certificate is revoked.'],
    revocation_unknown: ['certificate', 'Whether this certificate is revoked could not be told.'],
    key_mismatch: ['private_key', 'The private key does not match the certificate.'],
    unsupported_key: ['certificate', 'This key type or size is not taken (RSA 2048-4096, ECDSA P-256/384/521, Ed25519).'],
    weak_signature: ['certificate', 'The certificate is signed with a weak algorithm (MD5 or SHA-1).'],
    bad_chain: ['chain', 'An entry of the chain is not a CA certificate.'],
    limit_exceeded: ['certificate', 'The certificate names more than certvault takes.'],
    same_certificate: ['certificate', 'This is the certificate already stored.'],
    domain_not_covered: ['certificate', 'The certificate does not cover every domain of the services using it.'],
    not_a_ca: ['certificate', 'This is not a CA certificate.'],
    unknown_issuer: ['crl', 'No CA of the truststore issued this CRL.'],
    endpoint_unreachable: ['url', 'The endpoint could not be reached, or spoke no TLS.'],
    unknown_environment: ['environments', 'No environment has that name.'],
    environment_not_allowed: ['environments', 'A service using it is in an environment this would leave out.'],
    too_large: ['certificate', 'This is larger than the server takes.'],
  };

  const state = { me: null, csrf: null, cursors: [], route: null };
  const main = document.getElementById('main');

  /* ---------- small DOM helpers ---------- */
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'for') el.htmlFor = v;
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, v);
    }
    for (const kid of kids.flat()) {
      if (kid === undefined || kid === null || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  /* Replaces el's content with kids, leaving out the absent ones (null would become text). */
  function put(el, ...kids) {
    el.replaceChildren(...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));
  }
  let uid = 0;
  function field(label, input, hint) {
    input.id = input.id || 'f' + (++uid);
    const err = h('p', { class: 'field-error', id: input.id + '-err', hidden: true, role: 'alert' });
    input.setAttribute('aria-describedby', err.id);
    return h('div', { class: 'field', 'data-field': input.name || '' },
      h('label', { for: input.id, text: label }), input,
      hint ? h('p', { class: 'hint', text: hint }) : null, err);
  }
  function setFieldError(form, name, text) {
    const box = form.querySelector(`.field[data-field="${name}"]`);
    if (!box) return false;
    const err = box.querySelector('.field-error');
    err.textContent = text;
    err.hidden = false;
    box.classList.add('invalid');
    const input = box.querySelector('input, textarea, select');
    if (input) input.setAttribute('aria-invalid', 'true');
    return true;
  }
  function clearErrors(form) {
    for (const e of form.querySelectorAll('.field-error, .form-error')) { e.hidden = true; e.textContent = ''; }
    for (const b of form.querySelectorAll('.invalid')) b.classList.remove('invalid');
    for (const i of form.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
  }
  function formError(form, text) {
    let e = form.querySelector(':scope > .form-error');
    if (!e) {
      // Beside the buttons, where the eye is after pressing one.
      e = h('p', { class: 'form-error', role: 'alert' });
      const act = form.querySelector(':scope > .actions');
      if (act) act.before(e); else form.prepend(e);
    }
    e.textContent = text;
    e.hidden = false;
    e.scrollIntoView({ block: 'nearest' });
  }
  function toast(text) {
    const t = document.getElementById('toast');
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
  }
  function when(iso) {
    if (!iso) return h('span', { text: '—' });
    const d = new Date(iso);
    // One formatter for the page: making one costs more than formatting a whole list.
    when.fmt = when.fmt || new Intl.DateTimeFormat(undefined, {
      year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', timeZoneName: 'short',
    });
    const local = when.fmt.format(d);
    return h('time', { datetime: iso, title: d.toISOString().replace('.000Z', 'Z') + ' (UTC)', text: local });
  }
  function badge(status) {
    return h('span', { class: 'badge ' + (status || ''), text: STATUS[status] || status || '—' });
  }
  function link(href, text) { return h('a', { href, text }); }
  function tagList(tags) {
    const entries = Object.entries(tags || {});
    if (!entries.length) return null;
    return h('ul', { class: 'tags', 'aria-label': 'Tags' }, entries.map(([k, v]) =>
      h('li', {}, h('a', { class: 'tag', href: '#/certificates' + query({ tag: `${k}:${v}` }), title: 'Certificates tagged ' + `${k}: ${v}`, text: v === '' ? k : `${k}: ${v}` }))));
  }
  function isPublic(c) { return c.kind === 'public'; }
  function certHref(name) { return '#/certificates/' + encodeURIComponent(name); }
  function button(text, onclick, cls) {
    return h('button', { type: 'button', class: cls || '', onclick, text });
  }
  function copyButton(text, label) {
    return button(label || 'Copy', async (ev) => {
      try { await navigator.clipboard.writeText(text); toast('Copied.'); }
      catch (e) { ev.target.previousElementSibling?.select?.(); toast('Select and copy with Ctrl+C.'); }
    }, 'small');
  }
  function days(n) {
    if (n === null || n === undefined) return '—';
    if (n < 0) return `${-n} day${n === -1 ? '' : 's'} ago`;
    return `${n} day${n === 1 ? '' : 's'}`;
  }
  function empty(text) { return h('p', { class: 'empty', text }); }
  function table(headers, rows, caption) {
    return h('div', { class: 'table-wrap' },
      h('table', {},
        caption ? h('caption', { class: 'sr-only', text: caption }) : null,
        // A header starting with "~" names a column a narrow window leaves out (its cells
        // are class "opt" too).
        h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col', text: x.replace(/^~/, ''), class: x.startsWith('~') ? 'opt' : null })))),
        h('tbody', {}, rows)));
  }
  function page(title, ...kids) {
    main.replaceChildren(h('h1', { text: title }), ...kids.flat().filter((k) => k !== null && k !== undefined && k !== false));
    document.title = title + ' · certvault';
    // Focus moves to the new screen (a screen reader reads it) after a navigation, once; not
    // on the first load, where it would only force a layout before the first rows.
    if (state.focusOnDraw) { state.focusOnDraw = false; main.focus({ preventScroll: true }); }
  }
  /* Whether this certvaultd serves a route to this role (GET /v1/me lists them): the console
   * offers what the server has, and asks nothing it would refuse. */
  function hasRoute(method, path) {
    const list = state.me?.allowed;
    return Array.isArray(list) && list.some((r) => r.method === method && r.path === path);
  }
  /* Whether a change's button is drawn: the route is among those GET /v1/me allows (the role
   * and, for a scoped token, its scope's actions), or, from an older certvaultd that does not
   * list them, the role may write. */
  function may(method, path) {
    return Array.isArray(state.me?.allowed) ? hasRoute(method, path) : can('write');
  }
  function can(what) {
    const me = state.me || {};
    if (what === 'write') return me.can_write ?? (me.role === 'admin' || me.role === 'operator');
    if (what === 'audit') return me.can_audit ?? (me.role === 'admin' || me.role === 'auditor');
    if (what === 'admin') return me.can_admin ?? me.role === 'admin';
    return false;
  }

  /* ---------- the API ---------- */
  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }
  async function api(method, path, opts = {}) {
    const headers = {};
    let body;
    if (opts.json !== undefined) { headers['Content-Type'] = 'application/json'; body = JSON.stringify(opts.json); }
    if (opts.form) body = opts.form;
    if (method !== 'GET' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
    let resp;
    try {
      const early = method === 'GET' ? takePrefetched(path) : null;
      resp = (early && await early) || await fetch(path, { method, headers, body, credentials: 'same-origin', cache: 'no-store' });
    } catch (e) {
      throw new ApiError(0, 'network', 'certvaultd could not be reached.');
    }
    const type = resp.headers.get('Content-Type') || '';
    const data = type.startsWith('application/json') && resp.status !== 204 ? await resp.json()
      : opts.blob ? await resp.blob() : await resp.text();
    if (resp.ok) {
      if (path !== '/v1/health') banner(null);
      return data;
    }
    const err = data && data.error ? data.error : { code: 'error', message: resp.statusText };
    if (err.code === 'token_unavailable') banner('The key token is unavailable: writes (import, renew, replace, delete) are paused until it is back. Everything else keeps working.');
    if (resp.status === 401 && !opts.signin) {
      state.me = null;
      state.csrf = null;
      signIn('Your session has ended. Sign in again.');
    }
    throw new ApiError(resp.status, err.code, err.message);
  }
  /* The first screen's data is asked for at once, beside GET /v1/session rather than after
   * it: the cookie goes with it either way, and when there is no session its answer is
   * dropped. That takes a round trip and the page's first layout off the time to the first
   * rows. A prefetched answer serves one api() call for the same path. */
  const prefetched = new Map();
  function prefetch(path) {
    prefetched.set(path, fetch(path, { credentials: 'same-origin', cache: 'no-store' }).catch(() => null));
  }
  function takePrefetched(path) {
    const p = prefetched.get(path);
    prefetched.delete(path);
    return p || null;
  }
  /* The data path the screen at this address asks for first, when it is worth asking early. */
  function firstDataPath() {
    const [path, qs] = (location.hash.replace(/^#/, '') || '/').split('?');
    if (path === '/certificates') return certListPath(new URLSearchParams(qs || ''));
    return null;
  }
  /* A server message after a sentence of the console's: a sentence of its own. */
  function sentence(m) { return m ? m[0].toUpperCase() + m.slice(1) + (/[.!?)]$/.test(m) ? '' : '.') : ''; }
  function explain(e) {
    if (e.status === 403) return `Your role (${state.me?.role || 'none'}) may not do this: ${e.message}`;
    if (e.code === 'token_unavailable') return 'The key token is unavailable: writes are paused. ' + e.message;
    return e.message || String(e);
  }
  function banner(text) {
    const b = document.getElementById('banner');
    b.textContent = text || '';
    b.hidden = !text;
  }
  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
    const s = q.toString();
    return s ? '?' + s : '';
  }

  /* ---------- dialogs ---------- */
  function dialog(title, body, opts = {}) {
    const dlg = h('dialog', { class: 'dlg' + (opts.wide ? ' wide' : ''), 'aria-labelledby': 'dlg-title' },
      h('h2', { id: 'dlg-title', text: title }), body);
    // Appended, not replacing: a choice or a confirmation opens over the dialog that asked
    // for it, which keeps what was typed in it.
    document.getElementById('dialog-host').append(dlg);
    dlg.addEventListener('close', () => { dlg.remove(); opts.onclose?.(); });
    dlg.showModal();
    const first = dlg.querySelector('input:not([type=hidden]):not([readonly]), textarea, select, button.primary');
    first?.focus();
    return dlg;
  }
  function actions(...buttons) { return h('div', { class: 'actions' }, buttons); }
  /* A dialog of choices; resolves to the value of the one chosen, or null on Cancel / Esc. */
  function choose(title, text, choices) {
    return new Promise((resolve) => {
      let chosen = null;
      const dlg = dialog(title, h('div', {}, h('p', { text }),
        actions(...choices.map(([label, value, cls]) => button(label, () => { chosen = value; dlg.close(); }, cls)),
          button('Cancel', () => dlg.close()))), { onclose: () => resolve(chosen) });
    });
  }
  /* Asks the person to type word; resolves true when they did and confirmed. */
  function confirmTyped(title, text, word, action) {
    return new Promise((resolve) => {
      let ok = false;
      const input = h('input', { name: 'confirm', autocomplete: 'off', spellcheck: 'false' });
      const go = h('button', { type: 'submit', class: 'primary danger', disabled: true, text: action });
      input.addEventListener('input', () => { go.disabled = input.value !== word; });
      const form = h('form', {
        onsubmit: (ev) => { ev.preventDefault(); if (input.value === word) { ok = true; dlg.close(); } },
      }, h('p', { text }), field(`Type ${word} to confirm`, input),
      actions(go, button('Cancel', () => dlg.close())));
      const dlg = dialog(title, form, { onclose: () => resolve(ok) });
    });
  }

  /* ---------- sign-in ---------- */
  function signIn(message) {
    document.getElementById('top').hidden = true;
    const input = h('input', { name: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
    const form = h('form', { class: 'signin', onsubmit: async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const token = input.value.trim();
      try {
        const s = await api('POST', '/v1/session', { json: { token }, signin: true });
        input.value = '';
        state.csrf = s.csrf_token;
        await loadMe(s);
        route();
      } catch (e) {
        setFieldError(form, 'token', e.status === 401 ? 'This API token is not valid (unknown, revoked or expired).' : explain(e));
      }
    } }, message ? h('p', { class: 'notice', text: message }) : null,
    field('API token', input, 'The token is sent once to open a session and never kept by this page.'),
    actions(h('button', { type: 'submit', class: 'primary', text: 'Sign in' })));
    main.replaceChildren(h('div', { class: 'signin-box' }, h('h1', { text: 'Sign in to certvault' }), form));
    document.title = 'Sign in · certvault';
    input.focus();
  }
  /* The session names the role, which is enough to draw the screen at once; GET /v1/me,
   * asked meanwhile, adds the routes this certvaultd serves (for what dialogs offer). A
   * scoped token may do less than its role: its screen is drawn again with the buttons
   * its scope allows. */
  async function loadMe(session) {
    state.me = { name: session.name, role: session.role, id: session.id };
    drawNav();
    api('GET', '/v1/me').then((me) => {
      if (!state.me || state.me.id !== me.id) return;
      Object.assign(state.me, me);
      drawNav();
      if (me.scope) route();
    }).catch(() => { /* an older certvaultd without /v1/me: the role says enough */ });
  }
  function drawNav() {
    const items = [['#/', 'Overview'], ['#/certificates', 'Certificates'], ['#/services', 'Services'],
      ['#/environments', 'Environments'], ['#/jwks', 'JWKs'], ['#/truststore', 'Truststore']];
    // Screens of their own files (deleted.js), registered through window.cvConsole.
    for (const s of screens) if (!s.can || can(s.can)) items.push([s.href, s.nav]);
    if (can('audit')) items.push(['#/audit', 'Audit'], ['#/inventory', 'Inventory']);
    if (can('admin')) items.push(['#/tokens', 'API tokens']);
    document.getElementById('nav').replaceChildren(h('ul', {}, items.map(([href, text]) => h('li', {}, link(href, text)))));
    document.getElementById('who').textContent = `${state.me.name} (${state.me.role}${can('write') ? '' : ', read-only'})`;
    document.getElementById('top').hidden = false;
    markNav();
  }
  function markNav() {
    const hash = location.hash || '#/';
    for (const a of document.querySelectorAll('#nav a')) {
      const target = a.getAttribute('href');
      const on = target === '#/' ? hash === '#/' || hash === '#' : hash.startsWith(target);
      if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
  }

  /* ---------- router ---------- */
  const routes = [
    [/^\/$/, overview],
    [/^\/certificates$/, certificates],
    [/^\/import$/, (p, q) => {
      // The dialog opens over the list, which is then the address (closing it goes nowhere).
      history.replaceState(null, '', '#/certificates');
      state.routed = location.hash;
      markNav();
      certificates(p, q);
      importDialog();
    }],
    [/^\/certificates\/([^/]+)$/, details],
    [/^\/services$/, services],
    [/^\/environments$/, environments],
    [/^\/jwks$/, jwks],
    [/^\/truststore$/, truststore],
    [/^\/audit$/, audit],
    [/^\/inventory$/, inventory],
    [/^\/tokens$/, tokens],
  ];
  /* Screens kept in files of their own register here (after app.js, in the order
   * index.html loads them): a route and, with nav, a menu entry. */
  const screens = [];
  function register(screen) {
    routes.push([screen.re, screen.fn]);
    if (screen.nav) screens.push(screen);
    if (state.me) { drawNav(); route(); }
  }
  function route() {
    if (!state.me) return;
    state.routed = location.hash;
    const hash = location.hash.replace(/^#/, '') || '/';
    const [path, qs] = hash.split('?');
    const q = new URLSearchParams(qs || '');
    state.seq = (state.seq || 0) + 1; // a screen still loading for an older address draws nothing
    // A prefetched answer is for the first screen only: a later one asks afresh.
    if (state.seq > 1) prefetched.clear();
    state.focusOnDraw = state.seq > 1;
    // A new address is a new screen: a dialog of the old one goes with it.
    for (const d of document.querySelectorAll('#dialog-host dialog')) { d.close(); d.remove(); }
    markNav();
    for (const [re, fn] of routes) {
      const m = path.match(re);
      if (m) {
        Promise.resolve(fn(m.slice(1).map(decodeURIComponent), q)).catch((e) => {
          if (e.status !== 401) page('Something went wrong', h('p', { class: 'error', text: explain(e) }));
        });
        return;
      }
    }
    page('Not found', h('p', { text: 'No screen has this address. ' }), link('#/', 'Go to the overview'));
  }
  function loading(title) { page(title, h('p', { class: 'loading', text: 'Loading…' })); }

  /* ---------- 1. overview ---------- */
  async function overview() {
    const seq = state.seq;
    loading('Overview');
    const [sum, health] = await Promise.all([api('GET', '/v1/certificates/summary'),
      api('GET', '/v1/health').catch((e) => ({ error: e }))]);
    // The five that end first (those that ended included), by the list's own sort.
    const soon = (await api('GET', '/v1/certificates' + query({ sort: 'valid_to', order: 'asc', limit: 5 }))).items;
    if (seq !== state.seq) return;
    const cards = [['In use', sum.in_use, 'in_use=true'], ['Not in use', sum.not_in_use, 'in_use=false'],
      ['Expired', sum.expired, 'status=expired'], ['Expiring soon', sum.expires_soon, 'status=expires_soon'],
      ['Upcoming', sum.upcoming, 'status=upcoming'], ['Total', sum.total, '']];
    const tok = health.token || {};
    if (health.error || tok.state === 'unavailable') banner('The key token is unavailable: writes (import, renew, replace, delete) are paused until it is back. Everything else keeps working.');
    page('Overview',
      h('ul', { class: 'cards' }, cards.map(([label, n, qs]) => h('li', {},
        h('a', { href: '#/certificates' + (qs ? '?' + qs : ''), class: 'card' },
          h('span', { class: 'n', text: String(n ?? 0) }), h('span', { text: label }))))),
      h('section', {}, h('h2', { text: 'Ending soonest' }),
        soon.length ? table(['Name', 'Status', 'Expires in', 'Valid to'], soon.map((c) => h('tr', {},
          h('td', {}, link(certHref(c.name), c.name)), h('td', {}, badge(c.status)),
          h('td', { text: days(c.expires_in_days) }), h('td', {}, when(c.valid_to)))), 'Ending soonest')
          : empty('No certificates yet.')),
      h('section', { class: 'state' }, h('h2', { text: 'Token and database' }),
        h('dl', { class: 'kv' },
          h('dt', { text: 'Token' }), h('dd', { text: `${tok.label || '—'} (serial ${tok.serial || '—'}, ${tok.manufacturer || ''} ${tok.model || ''})` }),
          h('dt', { text: 'Reachable' }), h('dd', { class: tok.reachable ? 'ok' : 'bad', text: tok.reachable ? 'yes, logged in' : 'no' + (tok.reason ? ': ' + tok.reason : '') }),
          h('dt', { text: 'Keys in the token' }), h('dd', { text: String(tok.keys ?? '—') }),
          h('dt', { text: 'Database' }), h('dd', { class: health.database?.ok ? 'ok' : 'bad', text: health.database?.ok ? 'ok' : 'failing' }))));
  }

  /* ---------- 2. certificates ---------- */
  function certFilter(q) {
    return { status: q.get('status') || '', q: q.get('q') || '', in_use: q.get('in_use') || '',
      tag: q.get('tag') || '', sort: q.get('sort') || '', order: q.get('order') || '' };
  }
  function certListPath(q) {
    const limit = Math.min(Math.max(parseInt(q.get('limit') || '50', 10) || 50, 1), 1000);
    return '/v1/certificates' + query({ ...certFilter(q), limit, cursor: q.get('cursor') || '' });
  }
  async function certificates(params, q) {
    const seq = state.seq;
    const filter = certFilter(q);
    const SORTS = [['', 'Name (A-Z)'], ['valid_to:asc', 'Ending first'], ['valid_to:desc', 'Ending last'],
      ['updated_at:desc', 'Recently updated'], ['status:asc', 'Status (expired first)']];
    const cursor = q.get('cursor') || '';
    const setQ = (changes) => {
      const n = new URLSearchParams(q);
      for (const [k, v] of Object.entries(changes)) { if (v) n.set(k, v); else n.delete(k); }
      location.hash = '#/certificates' + (n.toString() ? '?' + n : '');
    };
    const search = h('input', { type: 'search', name: 'q', value: filter.q, placeholder: 'name or domain' });
    const tag = h('input', { type: 'search', name: 'tag', value: filter.tag, placeholder: 'team:payments', size: 14 });
    const status = h('select', { name: 'status' }, h('option', { value: '', text: 'Any status' }),
      Object.entries(STATUS).map(([v, t]) => h('option', { value: v, text: t, selected: v === filter.status })));
    const inUse = h('select', { name: 'in_use' }, h('option', { value: '', text: 'In use or not' }),
      h('option', { value: 'true', text: 'In use', selected: filter.in_use === 'true' }),
      h('option', { value: 'false', text: 'Not in use', selected: filter.in_use === 'false' }));
    const current = filter.sort ? `${filter.sort}:${filter.order || 'asc'}` : '';
    const sort = h('select', { name: 'sort' }, SORTS.map(([v, t]) => h('option', { value: v, text: t, selected: v === current })));
    const filters = h('form', { class: 'filters', role: 'search', onsubmit: (ev) => {
      ev.preventDefault();
      state.cursors = [];
      const [by, order] = sort.value ? sort.value.split(':') : ['', ''];
      setQ({ q: search.value.trim(), status: status.value, in_use: inUse.value, tag: tag.value.trim(), sort: by, order, cursor: '' });
    } }, field('Search', search), field('Status', status), field('Usage', inUse), field('Tag', tag), field('Sort', sort),
    h('button', { type: 'submit', text: 'Filter' }));
    for (const sel of [status, inUse, sort]) sel.addEventListener('change', () => filters.requestSubmit());
    const head = h('div', { class: 'head-actions' },
      may('POST', '/v1/certificates') ? button('Import certificate', () => importDialog(), 'primary') : null);
    const body = h('div', {}, h('p', { class: 'loading', text: 'Loading…' }));
    // The first screen's list was asked for beside the session: drawn once when it is here,
    // which spares a layout and a paint of the empty screen before the rows.
    const path = certListPath(q);
    const early = prefetched.has(path);
    let list = early ? await api('GET', path) : null;
    if (seq !== state.seq) return;
    page('Certificates', head, filters, body);
    if (!early) list = await api('GET', path);
    if (seq !== state.seq) return;
    performance.mark?.('cv:list-data');
    const rows = list.items.map((c) => h('tr', {},
      h('td', { class: 'name' }, link(certHref(c.name), c.name), tagList(c.tags)),
      h('td', { class: 'domains', text: (c.domains || [c.domain]).filter(Boolean).join(', ') || '—' }),
      h('td', { text: (c.used_by || []).map((u) => u.out_of_scope ? 'one outside your scope' : `${u.service} (${u.environment})`).join(', ') || '—' }),
      h('td', { class: 'num opt', text: String(c.custom_domains ?? 0) }),
      h('td', { class: 'opt' }, when(c.updated_at)),
      h('td', {}, badge(c.status)),
      h('td', { class: 'num', text: days(c.expires_in_days) }),
      h('td', { class: 'opt key' }, c.key_type || '—', isPublic(c) ? h('span', { class: 'hint block', text: 'public: no key' }) : null),
      h('td', {}, rowMenuButton(c))));
    const nav = h('nav', { class: 'pager', 'aria-label': 'Pages' },
      cursor ? button('← First page', () => { state.cursors = []; setQ({ cursor: '' }); }) : null,
      list.next_cursor ? button('Next page →', () => { state.cursors.push(cursor); setQ({ cursor: list.next_cursor }); }) : null);
    put(body, rows.length ? table(['Name', 'Domains', 'Used by', '~Custom domains', '~Updated',
      'Status', 'Expires in', '~Key', 'Actions'], rows, 'Certificates') :
      empty(filter.q || filter.status || filter.in_use || filter.tag ? 'No certificate matches these filters.' :
        'No certificates yet.' + (may('POST', '/v1/certificates') ? ' Import the first one.' : '')), nav);
    if (list.items.length && typeof list.total === 'number') {
      const n = list.total;
      const filtered = filter.q || filter.status || filter.in_use || filter.tag;
      body.prepend(h('p', { class: 'muted', text: filtered ? `${n} certificate${n === 1 ? ' matches' : 's match'}` : `${n} certificate${n === 1 ? '' : 's'}` }));
    }
    performance.mark?.('cv:list-drawn');
  }
  function rowMenu(c) {
    const inUse = (c.used_by || []).length > 0;
    const pub = isPublic(c);
    const items = [link(certHref(c.name), 'Details')];
    const exp = (fmt, text) => h('a', { href: `/v1/certificates/${encodeURIComponent(c.name)}/export?format=${fmt}`, download: '', text });
    if (may('PATCH', '/v1/certificates/{}')) items.push(button('Edit', () => editDialog(c.name)));
    // A public certificate is renewed in use or not (it can serve no service anyway).
    if (may('POST', '/v1/certificates/{}/renew')) {
      items.push(inUse || pub ? button('Import to renew', () => renewDialog(c.name, 'renew'))
        : h('span', { class: 'disabled', title: 'Renewal is for a certificate in use: replace it instead', text: 'Import to renew (not in use: use Replace)' }));
    }
    if (may('POST', '/v1/certificates/{}/replace')) items.push(button('Replace', () => renewDialog(c.name, 'replace')));
    if (may('GET', '/v1/certificates/{}/export')) {
      items.push(exp('pem', 'Export PEM'), exp('der', 'Export DER'), exp('chain', 'Export chain'),
        exp('public-key', 'Export public key'), exp('jwk', 'Export JWK'));
    }
    if (may('POST', '/v1/jwks')) items.push(button('Create JWK', () => jwkDialog(c.name)));
    if (may('DELETE', '/v1/certificates/{}')) items.push(button('Delete', () => deleteFlow(c.name), 'danger'));
    return h('ul', {}, items.map((x) => h('li', {}, x)));
  }
  /* A row's actions menu is built when it is first opened: fifty rows of ten items each
   * would be most of the list's elements, and most menus are never opened. The summary's
   * click (mouse, Enter or Space) comes before the menu opens. */
  function rowMenuButton(c) {
    const d = h('details', { class: 'menu' });
    d.append(h('summary', { text: 'Actions', 'aria-label': 'Actions for ' + c.name,
      onclick: () => { if (!d.querySelector('ul')) d.append(rowMenu(c)); } }));
    return d;
  }

  /* ---------- 3. import (and 5. renew / replace) ---------- */
  /* The certificate sources of an import, renew or replace. opts.url: offer "from a server"
   * (an import by an admin); opts.publicOnly: a public certificate's renewal, which takes no
   * private key (an entry keeps its kind). */
  function sourceFields(form, opts = {}) {
    const modes = [['paste', ' Paste'], ['file', ' Upload files']];
    if (opts.url) modes.push(['url', ' From a server (https/ldaps)']);
    const mode = h('fieldset', { class: 'source' }, h('legend', { text: 'Source' }),
      modes.map(([v, t]) => h('label', { class: 'inline' },
        h('input', { type: 'radio', name: 'source', value: v, checked: v === 'paste' }), t)));
    const keyHint = opts.publicOnly ? null : 'Goes into the token as a sensitive, non-extractable key; never stored in the database. Leave it empty for a public certificate (no key: it can be exported and make JWKs, not serve a service).';
    const paste = h('div', { class: 'paste' },
      field('Encoding', h('select', { name: 'encoding' }, h('option', { value: 'pem', text: 'PEM' }),
        h('option', { value: 'base64', text: 'BASE64 (DER)' }), h('option', { value: 'base64pem', text: 'BASE64PEM' }))),
      field('Certificate', h('textarea', { name: 'certificate', rows: 6, spellcheck: 'false', placeholder: '-----BEGIN CERTIFICATE-----' })),
      opts.publicOnly ? null : field('Private key', h('textarea', { name: 'private_key', rows: 5, spellcheck: 'false', placeholder: '-----BEGIN PRIVATE KEY-----' }), keyHint),
      field('Chain (optional)', h('textarea', { name: 'chain', rows: 4, spellcheck: 'false' })));
    const file = h('div', { class: 'file', hidden: true },
      field('Certificate file', h('input', { type: 'file', name: 'certificate_file', accept: '.pem,.crt,.cer,.der,.p12,.pfx' }),
        opts.publicOnly ? 'A PEM or DER certificate (and its chain).' : 'A PEM bundle (certificate, chain and key in any order), a DER certificate, or PKCS#12.'),
      opts.publicOnly ? null : field('Private key file (if not in the file above)', h('input', { type: 'file', name: 'private_key_file', accept: '.pem,.key,.der' })),
      field('Chain file (optional)', h('input', { type: 'file', name: 'chain_file', accept: '.pem,.crt' })));
    const url = h('div', { class: 'url', hidden: true },
      field('URL', h('input', { name: 'url', type: 'url', placeholder: 'https://host:443 or ldaps://host:636', autocomplete: 'off' }),
        'certvaultd connects and keeps the certificate the server presents as a public certificate (no key), with the entries after it as its chain.'),
      field('Position in the chain', h('input', { name: 'position', type: 'number', min: 0, max: 9, value: 0 }), "0: the server's own certificate; 1: its issuer…"));
    const pw = field('Password (PKCS#12 or encrypted key)', h('input', { type: 'password', name: 'password', autocomplete: 'off' }));
    const check = h('div', { class: 'field' }, h('label', { class: 'inline' },
      h('input', { type: 'checkbox', name: 'check_chain' }), ' Check the chain against the truststore'));
    const upcoming = h('div', { class: 'field', 'data-field': 'allow_upcoming' }, h('label', { class: 'inline' },
      h('input', { type: 'checkbox', name: 'allow_upcoming' }), ' Accept a certificate whose start date is still ahead (it is listed as Upcoming until then)'));
    mode.addEventListener('change', () => {
      const m = form.querySelector('input[name=source]:checked').value;
      paste.hidden = m !== 'paste';
      file.hidden = m !== 'file';
      url.hidden = m !== 'url';
      pw.hidden = m === 'url' || !!opts.publicOnly;
      check.hidden = m === 'url';
    });
    if (opts.publicOnly) pw.hidden = true;
    return [mode, paste, file, url, pw, check, upcoming];
  }
  /* The request body from a form with sourceFields: JSON for pasted text and a URL, multipart
   * for files. */
  function sourceBody(form, extra) {
    const f = form.elements;
    const m = form.querySelector('input[name=source]:checked').value;
    const upcoming = f.allow_upcoming?.checked;
    if (m === 'file') {
      const fd = new FormData();
      for (const [k, v] of Object.entries(extra)) {
        if (v === undefined || v === '') continue;
        // An object member (tags) as "tags.KEY" fields, which the API reads as the JSON.
        if (typeof v === 'object') for (const [sk, sv] of Object.entries(v)) fd.append(`${k}.${sk}`, String(sv));
        else fd.append(k, String(v));
      }
      const files = [['certificate', f.certificate_file], ['private_key', f.private_key_file], ['chain', f.chain_file]];
      for (const [k, input] of files) if (input?.files[0]) fd.append(k, input.files[0], input.files[0].name);
      if (f.password.value) fd.append('password', f.password.value);
      if (f.check_chain.checked) fd.append('check_chain', 'true');
      if (upcoming) fd.append('allow_upcoming', 'true');
      if (!f.certificate_file.files[0]) return { missing: 'certificate_file' };
      return { form: fd };
    }
    const body = Object.assign({}, extra);
    if (upcoming) body.allow_upcoming = true;
    if (m === 'url') {
      body.url = f.url.value.trim();
      if (!body.url) return { missing: 'url' };
      body.position = Number(f.position.value || 0);
      for (const k of Object.keys(body)) if (body[k] === undefined || body[k] === '') delete body[k];
      return { json: body };
    }
    body.certificate = f.certificate.value;
    if (!body.certificate.trim()) return { missing: 'certificate' };
    if (f.private_key?.value.trim()) body.private_key = f.private_key.value;
    if (f.chain.value.trim()) body.chain = f.chain.value;
    if (f.password.value) body.password = f.password.value;
    if (f.encoding.value !== 'pem') body.encoding = f.encoding.value;
    if (f.check_chain.checked) body.check_chain = true;
    for (const k of Object.keys(body)) if (body[k] === undefined || body[k] === '') delete body[k];
    return { json: body };
  }
  /* Shows an API refusal next to the field it concerns; the form keeps what was typed. */
  function showRefusal(form, e, keep) {
    const isFile = form.querySelector('input[name=source]:checked')?.value === 'file';
    const known = REFUSALS[e.code];
    let fieldName = known ? known[0] : null;
    const msg = e.message || '';
    if (!fieldName && e.code === 'bad_request' && /\btags?\b/i.test(msg) && form.elements.tags) fieldName = 'tags';
    if (e.code === 'bad_encoding' || e.code === 'bad_password') {
      if (/chain/i.test(msg)) fieldName = 'chain';
      else if (/key/i.test(msg) && !/pkcs ?#?12/i.test(msg)) fieldName = 'private_key';
    }
    const isUrl = form.querySelector('input[name=source]:checked')?.value === 'url';
    if (fieldName && isFile && ['certificate', 'private_key', 'chain'].includes(fieldName)) fieldName += '_file';
    if (isUrl && (['certificate', 'chain'].includes(fieldName) || /url|position/i.test(msg))) fieldName = /position/i.test(msg) ? 'position' : 'url';
    let text = known ? `${known[1]} ${sentence(msg)}` : explain(e);
    if (e.code === 'not_yet_valid' && form.elements.allow_upcoming && !form.elements.allow_upcoming.checked)
      text += ' To store it now as Upcoming, tick "Accept a certificate whose start date is still ahead".';
    if (fieldName) {
      const box = form.querySelector(`.field[data-field="${fieldName}"] .field-error`);
      if (keep && box && !box.hidden) { box.textContent += ' ' + text; return; }
    }
    if (!fieldName || !setFieldError(form, fieldName, text)) formError(form, text);
    form.querySelector('[aria-invalid=true]')?.focus();
  }
  function importDialog() {
    const name = h('input', { name: 'name', required: true, autocomplete: 'off', maxlength: 64, pattern: '[A-Za-z0-9\\-]{1,64}' });
    const tags = h('textarea', { name: 'tags', rows: 2, spellcheck: 'false', placeholder: 'team=payments' });
    const form = h('form', { novalidate: true }, field('Name', name, 'Letters, digits and hyphens, up to 64.'),
      field('Description', h('input', { name: 'description', maxlength: 1024 })),
      field('Tags', tags, 'One per line: key=value (letters, digits, . _ - in keys).'));
    // What every import (and its check) sends besides the source, as Edit sends it; null
    // when the tags do not read (said at their field).
    function extra() {
      const t = parseTags(tags.value);
      if (t.error) { setFieldError(form, 'tags', t.error); tags.focus(); return null; }
      return { name: name.value, description: form.elements.description.value || undefined,
        tags: Object.keys(t.tags).length ? t.tags : undefined };
    }
    const verdict = h('div', { class: 'preview', 'aria-live': 'polite' });
    form.append(...sourceFields(form, { url: can('admin') }), verdict, actions(h('button', { type: 'submit', class: 'primary', text: 'Import' }),
      hasRoute('POST', '/v1/certificates/preview') ? button('Check first', () => check()) : null,
      button('Cancel', () => dlg.close())));
    // Every check of an import, run by the server without storing anything: each problem is
    // shown at its field, and what would be stored is shown when there is none.
    async function check() {
      clearErrors(form);
      put(verdict);
      const x = extra();
      if (!x) return;
      const b = sourceBody(form, x);
      if (b.missing) { setFieldError(form, b.missing, b.missing === 'url' ? 'A URL is needed.' : 'A certificate is needed.'); return; }
      try {
        const r = await api('POST', '/v1/certificates/preview', b);
        for (const p of r.problems || []) showRefusal(form, new ApiError(p.status, p.code, p.message), true);
        const c = r.certificate;
        put(verdict, r.ok ? h('p', { class: 'notice ok-note', text: 'Every check passed: nothing is stored until you import.' })
          : h('p', { class: 'form-error', text: `${(r.problems || []).length} problem(s) found: see the fields above.` }),
        c ? h('p', { class: 'hint', text: `${(c.domains || []).join(', ') || c.subject || 'no domain'} · ${c.public_key?.description || ''} · valid to ${c.valid_to}` }) : null);
      } catch (e) { showRefusal(form, e); }
    }
    name.addEventListener('input', () => {
      clearErrors(form);
      if (name.value && !validName(name.value)) setFieldError(form, 'name', REFUSALS.invalid_name[1]);
    });
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      if (!validName(name.value)) { setFieldError(form, 'name', REFUSALS.invalid_name[1]); name.focus(); return; }
      const x = extra();
      if (!x) return;
      const b = sourceBody(form, x);
      if (b.missing) { setFieldError(form, b.missing, b.missing === 'url' ? 'A URL is needed.' : 'A certificate is needed.'); return; }
      const go = form.querySelector('button[type=submit]');
      go.disabled = true;
      try {
        const c = await api('POST', '/v1/certificates', b);
        dlg.close();
        toast(`Imported ${c.name}.`);
        location.hash = certHref(c.name);
      } catch (e) { showRefusal(form, e); } finally { go.disabled = false; }
    });
    const dlg = dialog('Import a certificate', form, { wide: true });
  }
  function validName(s) { return NAME_RE.test(s) && s !== 'summary'; }

  async function linkedJwks(d) {
    if (Array.isArray(d.jwks)) return d.jwks;
    if (typeof d.jwk_count === 'number') return new Array(d.jwk_count).fill({});
    return null; // not told: the API's 409 jwk_choice_required will say
  }
  function kidsOf(message) {
    const m = /\(([^)]*)\)/.exec(message || '');
    return m ? m[1].split(/[ ,]+/).filter(Boolean) : [];
  }
  async function renewDialog(name, kind) {
    const d = await api('GET', '/v1/certificates/' + encodeURIComponent(name));
    const pub = isPublic(d);
    const form = h('form', { novalidate: true },
      h('p', { text: pub ? `A new public certificate for ${name} (version ${d.version}): it holds no key, so none is asked.`
        : kind === 'renew' ? `A new certificate and key for ${name} (version ${d.version}); every service using it switches at once.`
          : `New content for ${name} (version ${d.version}), in use or not.` }));
    form.append(...sourceFields(form, { publicOnly: pub }), actions(h('button', { type: 'submit', class: 'primary', text: kind === 'renew' ? 'Renew' : 'Replace' }),
      button('Cancel', () => dlg.close())));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const jwks = await linkedJwks(d);
      let choice = null;
      if (jwks && jwks.length) {
        choice = await jwkChoice(name, jwks.length, 'update');
        if (!choice) return;
      }
      await send(choice);
    });
    async function send(choice) {
      const extra = { version: d.version };
      if (choice) { extra.jwk_action = choice; extra.confirm = name; }
      const b = sourceBody(form, extra);
      if (b.missing) { setFieldError(form, b.missing, b.missing === 'url' ? 'A URL is needed.' : 'A certificate is needed.'); return; }
      try {
        const r = await api('POST', `/v1/certificates/${encodeURIComponent(name)}/${kind}`, b);
        dlg.close();
        toast(`${name} is now version ${r.version}` + ((r.applied_to || []).length ? `, used by ${r.applied_to.map((u) => u.out_of_scope ? 'one outside your scope' : u.service).join(', ')}.` : '.')
          + jwkOutcomeText(r));
        route();
      } catch (e) {
        if (e.code === 'jwk_choice_required' && !choice) {
          const c = await jwkChoice(name, kidsOf(e.message).length || 1, 'update');
          if (c) await send(c);
          return;
        }
        if (e.code === 'already_renewed' || e.code === 'precondition_failed') {
          formError(form, `Someone renewed or replaced ${name} while this dialog was open: version ${d.version} is no longer current. Close this dialog, look at the new version, and start again if it is still needed.`);
          return;
        }
        showRefusal(form, e);
      }
    }
    const dlg = dialog(kind === 'renew' ? `Import to renew ${name}` : `Replace ${name}`, form, { wide: true });
  }
  /* What a renew or replace did to the JWKs, from the answer's jwk_changes (one entry per
   * JWK touched, with its change). */
  function jwkOutcomeText(r) {
    const jc = (r.jwk_changes?.jwks || []).map((j) => `${String(j.kid).slice(0, 12)}… ${j.change}`);
    return jc.length ? ` JWKs: ${jc.join(', ')}.` : '';
  }
  /* The JWK connection dialog, then the name confirmation. Resolves to the jwk_action or null. */
  async function jwkChoice(name, n, verb) {
    const choices = verb === 'update'
      ? [['Update related JWKs', 'update', 'primary'], ['Update certificate only and disconnect', 'disconnect']]
      : [['Delete JWKs', 'delete', 'danger'], ['Delete and disconnect', 'disconnect']];
    const c = await choose('Linked JWKs', `This certificate is used in ${n} JWK(s). What would you like to do?`, choices);
    if (!c) return null;
    const ok = await confirmTyped('Confirm with the name', `This changes ${n} JWK(s) linked to ${name}.`, name,
      verb === 'update' ? 'Continue' : 'Delete');
    return ok ? c : null;
  }

  /* ---------- 4. details ---------- */
  async function details([name]) {
    const seq = state.seq;
    loading(name);
    const enc = encodeURIComponent(name);
    const [d, versions] = await Promise.all([api('GET', '/v1/certificates/' + enc),
      api('GET', `/v1/certificates/${enc}/versions`).catch(() => null)]);
    if (seq !== state.seq) return;
    const used = d.used_by || [];
    const key = d.key || {};
    const prot = key.attributes || key;
    const protection = 'sensitive' in prot || 'extractable' in prot
      ? `${prot.sensitive ? 'sensitive' : 'NOT sensitive'}, ${prot.extractable ? 'EXTRACTABLE' : 'not extractable'} (as the token reports it)`
      : 'sensitive, not extractable (as certvault created it; the inventory reads it back from the token)';
    const kv = (label, value) => [h('dt', { text: label }), h('dd', {}, value)];
    const jwks = Array.isArray(d.jwks) ? d.jwks : null;
    const pub = isPublic(d);
    const head = h('div', { class: 'head-actions' },
      may('PATCH', '/v1/certificates/{}') ? button('Edit', () => editDialog(name)) : null,
      !may('POST', '/v1/certificates/{}/renew') ? null
        : used.length || pub ? button('Import to renew', () => renewDialog(name, 'renew'))
          : h('span', { class: 'disabled', text: 'Renew: only while in use' }),
      may('POST', '/v1/certificates/{}/replace') ? button('Replace', () => renewDialog(name, 'replace')) : null,
      may('POST', '/v1/jwks') ? button('Create JWK', () => jwkDialog(name)) : null,
      may('DELETE', '/v1/certificates/{}') ? button('Delete', () => deleteFlow(name), 'danger') : null,
      may('GET', '/v1/certificates/{}/export') ? [
        h('a', { class: 'button', href: `/v1/certificates/${enc}/export?format=pem`, download: '', text: 'Export PEM' }),
        h('a', { class: 'button', href: `/v1/certificates/${enc}/export?format=chain`, download: '', text: 'Export chain' })] : null);
    page(name, h('p', { class: 'crumbs' }, link('#/certificates', '← Certificates')), head,
      h('dl', { class: 'kv details' },
        kv('Name', d.name), kv('Description', d.description || '—'), kv('Status', badge(d.status)),
        kv('Kind', pub ? 'Public certificate: certvault holds no private key for it (it can be exported and make JWKs; it cannot serve a service)'
          : 'Key pair: the private key is in the token'),
        kv('Tags', tagList(d.tags) || '—'),
        kv('Environments', (d.environments || []).length ? d.environments.join(', ') : 'any'),
        kv('Domain names', (d.domains || []).length ? h('ul', { class: 'plain' }, d.domains.map((x) => h('li', { text: x }))) : '—'),
        (d.ip_addresses || []).length ? kv('IP addresses', d.ip_addresses.join(', ')) : null,
        kv('Subject', d.subject || '—'), kv('Issuer', d.issuer || '—'),
        kv('Public key', d.public_key?.description || '—'),
        kv('Valid from', when(d.valid_from)), kv('Valid to', when(d.valid_to)),
        kv('Expires in', days(d.expires_in_days)),
        d.status === 'upcoming' ? kv('Starts in', days(Math.ceil((Date.parse(d.valid_from) - Date.now()) / 86400000)) + ' (listed as Upcoming until then; a service cannot use it before)') : null,
        used.length ? kv('Used by', h('ul', { class: 'plain' }, used.map((u) => u.out_of_scope
          ? h('li', { class: 'muted', text: 'a service outside your scope' })
          : h('li', {}, link('#/services?environment=' + encodeURIComponent(u.environment), u.service), ` (${u.environment}) `,
            (u.domains || []).join(', '))))) : null,
        kv('Serial number', h('code', { text: d.serial_number })),
        kv('Signature algorithm', d.signature_algorithm_name || d.signature_algorithm),
        kv('SHA-256 fingerprint', h('code', { class: 'wrap', text: d.fingerprints?.sha256 })),
        kv('SHA-1 fingerprint', h('code', { class: 'wrap', text: d.fingerprints?.sha1 })),
        pub ? kv('Key', 'none (a public certificate)') : null,
        pub ? null : kv('Key (PKCS#11 URI)', h('span', { class: 'copyable' }, h('input', { readonly: true, value: key.pkcs11_uri || '', 'aria-label': 'PKCS#11 URI' }), copyButton(key.pkcs11_uri || ''))),
        pub ? null : kv('Key protection', protection),
        pub || !key.origin ? null : kv('Key origin', { generated: 'generated in the token', imported: 'imported', unwrapped: 'unwrapped in the token (bring your own key)' }[key.origin] || key.origin),
        kv('Version', String(d.version)), kv('Updated at', when(d.updated_at)),
        d.created_by ? kv('Created by', d.created_by) : null, d.updated_by ? kv('Updated by', d.updated_by) : null),
      h('section', {}, h('h2', { text: 'Linked JWKs' }),
        jwks ? (jwks.length ? [table(['kid', 'alg', 'use', 'Made from', 'State'], jwks.map((j) => h('tr', { class: j.state === 'active' ? '' : 'muted-row' },
          h('td', {}, h('code', { class: 'wrap', text: j.kid })), h('td', { text: j.alg }), h('td', { text: j.use }),
          h('td', { text: j.made_from_version ? 'version ' + j.made_from_version : '—' }),
          h('td', {}, h('span', { class: 'badge jwk-' + (j.state || 'active'), text: JWK_STATES[j.state || 'active'] || j.state })))), 'Linked JWKs'),
          h('p', {}, link('#/jwks?certificate=' + encodeURIComponent(name), 'These JWKs on the JWKs screen'), ' (published until when, superseded by which).')]
          : empty('No JWK is linked to this certificate.')) : h('p', {}, 'See ', link('#/jwks', 'JWKs'), ' for the JWKs made from it.')),
      h('section', {}, h('h2', { text: 'Chain' }),
        Array.isArray(d.chain) && d.chain.length ? table(['Subject', 'Issuer', 'Valid to'], d.chain.map((c) => h('tr', {},
          h('td', { text: c.subject }), h('td', { text: c.issuer }), h('td', {}, when(c.valid_to)))), 'Chain')
          : empty(d.chain_length ? `${d.chain_length} certificate(s) stored with it: export the chain to see them.` : 'No chain was stored with this certificate.')),
      h('section', {}, h('h2', { text: 'Versions' }),
        versions ? table(['Version', 'Serial', 'Valid to', 'Current from', 'Until', 'Ended by', 'Key in token'],
          versions.versions.map((v) => h('tr', {}, h('td', { text: String(v.version) + (v.current ? ' (current)' : '') }),
            h('td', {}, h('code', { text: v.serial_number })), h('td', {}, when(v.valid_to)), h('td', {}, when(v.current_from)),
            h('td', {}, when(v.current_until)), h('td', { text: v.ended_by || '—' }), h('td', { text: pub ? '— (public)' : v.key?.in_token ? 'yes' : 'no' }))), 'Versions')
          : empty('The version history could not be read.')));
  }
  /* Tags as the edit form shows them: one "key=value" a line. */
  function tagsText(tags) { return Object.entries(tags || {}).map(([k, v]) => `${k}=${v}`).join('\n'); }
  function parseTags(text) {
    const out = {};
    const lines = text.split('\n').map((l) => l.trim()).filter(Boolean);
    for (const [i, line] of lines.entries()) {
      const eq = line.indexOf('=');
      const k = (eq < 0 ? line : line.slice(0, eq)).trim();
      const v = eq < 0 ? '' : line.slice(eq + 1).trim();
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(k)) return { error: `Line ${i + 1}: a key has 1 to 64 letters, digits, dots, underscores or hyphens.` };
      if (k in out) return { error: `Line ${i + 1}: the key ${k} is there twice.` };
      if (new TextEncoder().encode(v).length > 256) return { error: `Line ${i + 1}: a value is 256 bytes at most.` };
      out[k] = v;
    }
    if (Object.keys(out).length > 32) return { error: '32 tags at most.' };
    return { tags: out };
  }
  /* Name (a rename), description, tags and the environments it may serve; only what changed
   * is sent. */
  async function editDialog(name) {
    const [d, envs] = await Promise.all([api('GET', '/v1/certificates/' + encodeURIComponent(name)), allEnvironments().catch(() => null)]);
    const newName = h('input', { name: 'name', value: d.name, required: true, autocomplete: 'off', maxlength: 64 });
    const desc = h('textarea', { name: 'description', rows: 3, maxlength: 1024 });
    desc.value = d.description || '';
    const tags = h('textarea', { name: 'tags', rows: 3, spellcheck: 'false', placeholder: 'team=payments' });
    tags.value = tagsText(d.tags);
    const current = new Set((d.environments || []).map((e) => e.toLowerCase()));
    const envBox = h('fieldset', { class: 'field source', 'data-field': 'environments' }, h('legend', { text: 'Environments it may serve (none ticked: any)' }),
      envs ? envs.map((e) => h('label', { class: 'inline' }, h('input', { type: 'checkbox', name: 'env', value: e.name, checked: current.has(e.name.toLowerCase()) }), ' ' + envLabel(e)))
        : h('p', { class: 'hint', text: 'The environments could not be read: they are left as they are.' }),
      h('p', { class: 'field-error', hidden: true, role: 'alert' }));
    const form = h('form', { novalidate: true, onsubmit: async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const body = {};
      if (newName.value !== d.name) {
        if (!validName(newName.value)) { setFieldError(form, 'name', REFUSALS.invalid_name[1]); return; }
        body.name = newName.value;
      }
      if (desc.value !== (d.description || '')) body.description = desc.value;
      const t = parseTags(tags.value);
      if (t.error) { setFieldError(form, 'tags', t.error); return; }
      if (JSON.stringify(t.tags) !== JSON.stringify(d.tags || {})) body.tags = t.tags;
      if (envs) {
        const picked = [...form.querySelectorAll('input[name=env]:checked')].map((i) => i.value);
        if (picked.map((x) => x.toLowerCase()).sort().join(',') !== [...current].sort().join(',')) body.environments = picked;
      }
      if (!Object.keys(body).length) { dlg.close(); return; }
      try {
        const r = await api('PATCH', '/v1/certificates/' + encodeURIComponent(name), { json: body });
        dlg.close();
        toast(body.name ? `Renamed ${name} to ${r.name}.` : 'Saved.');
        if (body.name && location.hash.startsWith(certHref(name))) location.hash = certHref(r.name); else route();
      } catch (e) {
        const f = e.code === 'invalid_name' || e.code === 'name_taken' ? 'name' : REFUSALS[e.code]?.[0] === 'environments' ? 'environments'
          : /tag/i.test(e.message) ? 'tags' : /environment/i.test(e.message) ? 'environments' : /description/i.test(e.message) ? 'description' : null;
        if (!f || !setFieldError(form, f, e.code === 'name_taken' ? `${REFUSALS.name_taken[1]} ${sentence(e.message)}` : explain(e))) formError(form, explain(e));
      }
    } }, field('Name', newName, 'Changing it renames the certificate: its history, JWKs and services follow.'),
    field('Description', desc), field('Tags', tags, 'One per line: key=value (letters, digits, . _ - in keys).'), envBox,
    actions(h('button', { type: 'submit', class: 'primary', text: 'Save' }), button('Cancel', () => dlg.close())));
    const dlg = dialog(`Edit ${name}`, form, { wide: true });
  }

  /* ---------- 6. delete ---------- */
  async function deleteFlow(name) {
    const enc = encodeURIComponent(name);
    const d = await api('GET', '/v1/certificates/' + enc);
    const used = d.used_by || [];
    if (used.length || d.delete_allowed === false) {
      const dlg = dialog(`${name} cannot be deleted`, h('div', {},
        h('p', { text: 'A certificate in use cannot be deleted. These services use it: unbind it from them (or bind them to another certificate) first.' }),
        h('ul', {}, used.map((u) => u.out_of_scope ? h('li', { class: 'muted', text: 'a service outside your scope' })
          : h('li', {}, link('#/services?environment=' + encodeURIComponent(u.environment), u.service), ` (${u.environment})`))),
        actions(button('Close', () => dlg.close(), 'primary'))));
      return;
    }
    const jwks = await linkedJwks(d);
    let choice = null;
    if (jwks && jwks.length) choice = await jwkChoice(name, jwks.length, 'delete');
    else if (!(await confirmTyped(`Delete ${name}`, `This deletes ${name}. While the vault keeps deleted certificates (lifecycle.deleted_retention_days), it can be recovered from Deleted until it is purged; otherwise every version and its keys are destroyed at once.`, 'delete', 'Delete'))) return;
    if (jwks && jwks.length && !choice) return;
    const go = async (ch) => {
      const qs = ch ? query({ jwk_action: ch, confirm: name }) : '?confirm=delete';
      const r = await api('DELETE', `/v1/certificates/${enc}${qs}`);
      toast(r && r.recoverable ? `Deleted ${name}: it can be recovered from Deleted until it is purged.` : `Deleted ${name}.`);
      location.hash = '#/certificates';
      route();
    };
    try { await go(choice); } catch (e) {
      if (e.code === 'jwk_choice_required' && !choice) {
        const c = await jwkChoice(name, kidsOf(e.message).length || 1, 'delete');
        if (c) await go(c).catch((e2) => errorDialog('Not deleted', e2));
        return;
      }
      errorDialog('Not deleted', e);
    }
  }
  function errorDialog(title, e) {
    const dlg = dialog(title, h('div', {}, h('p', { class: 'error', text: explain(e) }), actions(button('Close', () => dlg.close(), 'primary'))));
  }

  /* ---------- 7. services ---------- */
  /* Every environment, for the pickers (a handful in practice: pages of 1000 until done). */
  async function allEnvironments() {
    const out = [];
    let cursor = '';
    do {
      const r = await api('GET', '/v1/environments' + query({ limit: 1000, cursor }));
      out.push(...r.items);
      cursor = r.next_cursor || '';
    } while (cursor);
    return out;
  }
  function envLabel(e) { return e.display_name && e.display_name !== e.name ? `${e.display_name} (${e.name})` : e.name; }
  async function services(params, q) {
    const seq = state.seq;
    const env = q.get('environment') || '';
    const cursor = q.get('cursor') || '';
    loading('Services');
    const [list, envs] = await Promise.all([api('GET', '/v1/services' + query({ environment: env, cursor, limit: 50 })),
      allEnvironments().catch(() => [])]);
    if (seq !== state.seq) return;
    const envSelect = h('select', { name: 'environment' }, h('option', { value: '', text: 'Every environment' }),
      envs.map((e) => h('option', { value: e.name, text: envLabel(e), selected: e.name.toLowerCase() === env.toLowerCase() })));
    envSelect.addEventListener('change', () => { location.hash = '#/services' + query({ environment: envSelect.value }); });
    const filters = h('form', { class: 'filters', onsubmit: (ev) => {
      ev.preventDefault();
      location.hash = '#/services' + query({ environment: envSelect.value });
    } }, field('Environment', envSelect), h('button', { type: 'submit', text: 'Filter' }));
    const rows = list.items.map((s) => h('tr', {},
      h('td', { text: s.name }), h('td', {}, link('#/services?environment=' + encodeURIComponent(s.environment), s.environment)),
      h('td', { class: 'domains', text: s.domains.join(', ') }),
      h('td', {}, s.certificate?.out_of_scope ? h('span', { class: 'muted', text: 'one outside your scope' })
        : s.certificate ? [link(certHref(s.certificate.name), s.certificate.name), ' ', badge(s.certificate.status)] : h('span', { class: 'muted', text: 'none' })),
      h('td', { class: 'row-actions' },
        may('PUT', '/v1/services/{}') ? button('Edit', () => serviceDialog(s), 'small') : null,
        may('PUT', '/v1/services/{}/certificate') ? button('Bind', () => bindDialog(s), 'small') : null,
        s.certificate && may('DELETE', '/v1/services/{}/certificate') ? button('Unbind', () => unbind(s), 'small') : null,
        may('DELETE', '/v1/services/{}') ? button('Delete', () => deleteService(s), 'small danger') : null)));
    page('Services', h('div', { class: 'head-actions' }, may('PUT', '/v1/services/{}') ? button('New service', () => serviceDialog(null), 'primary') : null,
      link('#/environments', 'Environments')), filters,
    rows.length ? table(['Service', 'Environment', 'Domains', 'Certificate', ''], rows, 'Services')
      : empty(env ? `No service in ${env}.` : 'No services yet.'),
    list.next_cursor ? h('nav', { class: 'pager' }, link('#/services' + query({ environment: env, cursor: list.next_cursor }), 'Next page →')) : null);
  }
  /* A service names an existing environment: the form picks one, and offers to create one
   * (over the form, which keeps what was typed) when none fits. */
  async function serviceDialog(s) {
    const name = h('input', { name: 'name', required: true, value: s?.name || '', readonly: !!s, autocomplete: 'off' });
    const env = h('select', { name: 'environment', required: true });
    const desc = h('input', { name: 'description', value: s?.description || '' });
    const doms = h('textarea', { name: 'domains', rows: 4, spellcheck: 'false' });
    doms.value = (s?.domains || []).join('\n');
    const none = h('p', { class: 'notice', hidden: true, text: 'No environment exists yet: a service belongs to one. Create the first one.' });
    const newEnv = button('New environment…', () => environmentDialog(null, (e) => fill(e.name)), 'small');
    async function fill(pick) {
      const envs = await allEnvironments();
      const want = (pick || env.value || s?.environment || '').toLowerCase();
      put(env, h('option', { value: '', text: envs.length ? 'Choose an environment' : 'none yet', disabled: true, selected: !want }),
        envs.map((e) => h('option', { value: e.name, text: envLabel(e), selected: e.name.toLowerCase() === want })));
      none.hidden = envs.length > 0;
      if (pick) env.focus();
    }
    const form = h('form', { novalidate: true, onsubmit: async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      if (!validName(name.value)) { setFieldError(form, 'name', REFUSALS.invalid_name[1]); return; }
      if (!env.value) { setFieldError(form, 'environment', 'Choose the environment this service runs in (or create one).'); return; }
      const domains = doms.value.split(/[\s,]+/).filter(Boolean);
      try {
        await api('PUT', '/v1/services/' + encodeURIComponent(name.value), { json: { environment: env.value, domains, description: desc.value } });
        dlg.close();
        toast('Saved ' + name.value + '.');
        route();
      } catch (e) {
        const f = e.code === 'unknown_environment' || /environment/i.test(e.message) ? 'environment'
          : /domain/i.test(e.message) || e.code === 'domain_not_covered' ? 'domains' : e.code === 'invalid_name' ? 'name' : null;
        if (!f || !setFieldError(form, f, explain(e))) formError(form, explain(e));
      }
    } }, field('Name', name), none, h('div', { class: 'with-button' }, field('Environment', env), may('PUT', '/v1/environments/{}') ? newEnv : null),
    field('Description', desc),
    field('Domains', doms, 'One per line. The certificate it uses must cover every one.'),
    actions(h('button', { type: 'submit', class: 'primary', text: 'Save' }), button('Cancel', () => dlg.close())));
    const dlg = dialog(s ? `Edit ${s.name}` : 'New service', form);
    try { await fill(''); } catch (e) { setFieldError(form, 'environment', 'The environments could not be read: ' + explain(e)); }
  }
  async function bindDialog(s) {
    const list = h('div', {}, h('p', { class: 'loading', text: 'Finding certificates that cover every domain…' }));
    const pick = h('input', { name: 'certificate', autocomplete: 'off', value: s.certificate?.name || '' });
    const form = h('form', { onsubmit: async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      try {
        await api('PUT', `/v1/services/${encodeURIComponent(s.name)}/certificate`, { json: { certificate: pick.value } });
        dlg.close();
        toast(`${s.name} now uses ${pick.value}.`);
        route();
      } catch (e) {
        if (e.code === 'domain_not_covered') {
          setFieldError(form, 'certificate', `${pick.value} does not cover every domain of ${s.name}: ${e.message}`);
          markCoverage(pick.value);
        } else setFieldError(form, 'certificate', explain(e));
      }
    } }, h('p', { text: `Domains of ${s.name}: ${s.domains.join(', ')}` }), list,
    field('Certificate', pick, 'Pick one above, or type a name.'),
    actions(h('button', { type: 'submit', class: 'primary', text: 'Bind' }), button('Cancel', () => dlg.close())));
    const dlg = dialog(`Bind a certificate to ${s.name}`, form, { wide: true });
    // The server says which certificates cover each domain (?domain=): the picker shows who covers all.
    const covers = new Map();
    const perDomain = await Promise.all(s.domains.map((d) => api('GET', '/v1/certificates' + query({ domain: d, limit: 100 })).then((r) => [d, r.items]).catch(() => [d, []])));
    for (const [d, items] of perDomain) for (const c of items) {
      if (!covers.has(c.name)) covers.set(c.name, { cert: c, domains: new Set() });
      covers.get(c.name).domains.add(d);
    }
    const cands = [...covers.values()].sort((a, b) => isPublic(a.cert) - isPublic(b.cert) || b.domains.size - a.domains.size || a.cert.name.localeCompare(b.cert.name));
    function markCoverage(name) {
      const c = covers.get(name);
      const missing = s.domains.filter((d) => !c || !c.domains.has(d));
      const box = form.querySelector('.coverage-detail') || h('ul', { class: 'coverage-detail' });
      box.replaceChildren(...s.domains.map((d) => h('li', { class: missing.includes(d) ? 'bad' : 'ok', text: `${d}: ${missing.includes(d) ? 'not covered' : 'covered'}` })));
      form.querySelector('.field[data-field=certificate]').append(box);
    }
    put(list, cands.length ? table(['', 'Certificate', 'Covers', 'Status', 'Expires in'], cands.map((c) => {
      const all = c.domains.size === s.domains.length;
      const missing = s.domains.filter((d) => !c.domains.has(d));
      // A public certificate has no key to serve with: shown, not offered.
      const pub = isPublic(c.cert);
      return h('tr', { class: all && !pub ? '' : 'partial' },
        h('td', {}, h('input', { type: 'radio', name: 'pick', value: c.cert.name, 'aria-label': 'Pick ' + c.cert.name, disabled: pub,
          onchange: () => { pick.value = c.cert.name; } })),
        h('td', { text: c.cert.name }),
        h('td', { text: pub ? 'public certificate: no key to serve with' : all ? 'every domain' : `not ${missing.join(', ')}` }),
        h('td', {}, badge(c.cert.status)), h('td', { text: days(c.cert.expires_in_days) }));
    }), 'Candidates') : empty('No certificate covers any of these domains.'));
  }
  async function unbind(s) {
    const ok = await choose(`Unbind ${s.name}`, `${s.name} stops using ${s.certificate.name || 'its certificate'}.`, [['Unbind', true, 'primary']]);
    if (!ok) return;
    try { await api('DELETE', `/v1/services/${encodeURIComponent(s.name)}/certificate`); toast('Unbound.'); route(); } catch (e) { errorDialog('Not unbound', e); }
  }
  async function deleteService(s) {
    if (!(await confirmTyped(`Delete ${s.name}`, `The service ${s.name} is removed (its certificate stays).`, 'delete', 'Delete'))) return;
    try { await api('DELETE', '/v1/services/' + encodeURIComponent(s.name)); toast('Deleted.'); route(); } catch (e) { errorDialog('Not deleted', e); }
  }

  /* ---------- 7b. environments ---------- */
  async function environments(params, q) {
    const seq = state.seq;
    const cursor = q.get('cursor') || '';
    loading('Environments');
    const list = await api('GET', '/v1/environments' + query({ cursor, limit: 50 }));
    if (seq !== state.seq) return;
    const rows = list.items.map((e) => h('tr', { 'data-env': e.name },
      h('td', {}, h('strong', { text: e.name })), h('td', { text: e.display_name || e.name }),
      h('td', { text: e.description || '—' }),
      h('td', { class: 'num' }, e.services ? link('#/services?environment=' + encodeURIComponent(e.name), String(e.services)) : '0'),
      h('td', { class: 'num', text: String(e.certificates ?? 0) }),
      h('td', { class: 'opt' }, when(e.updated_at)),
      h('td', { class: 'row-actions' },
        may('PUT', '/v1/environments/{}') ? button('Edit', () => environmentDialog(e, () => route()), 'small') : null,
        may('DELETE', '/v1/environments/{}') ? button('Delete', () => deleteEnvironment(e), 'small danger') : null)));
    page('Environments', h('div', { class: 'head-actions' },
      may('PUT', '/v1/environments/{}') ? button('New environment', () => environmentDialog(null, () => route()), 'primary') : null),
    h('p', { class: 'hint lead', text: 'Every service runs in one environment; a certificate may be limited to some. An environment in use cannot be deleted.' }),
    rows.length ? table(['Name', 'Display name', 'Description', 'Services', 'Certificates limited to it', '~Updated', ''], rows, 'Environments')
      : empty('No environments yet.' + (may('PUT', '/v1/environments/{}') ? ' Create one: services need it.' : '')),
    h('nav', { class: 'pager', 'aria-label': 'Pages' }, cursor ? link('#/environments', '← First page') : null,
      list.next_cursor ? link('#/environments' + query({ cursor: list.next_cursor }), 'Next page →') : null));
  }
  /* Creates (e null) or edits an environment; done(environment) after it is saved. */
  function environmentDialog(e, done) {
    const name = h('input', { name: 'name', required: true, value: e?.name || '', readonly: !!e, autocomplete: 'off', maxlength: 64 });
    const display = h('input', { name: 'display_name', value: e?.display_name || '', maxlength: 100, placeholder: 'e.g. Production (EU)' });
    const desc = h('input', { name: 'description', value: e?.description || '', maxlength: 1024 });
    const form = h('form', { novalidate: true, onsubmit: async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      if (!validName(name.value)) { setFieldError(form, 'name', REFUSALS.invalid_name[1]); return; }
      const body = { description: desc.value };
      if (display.value.trim()) body.display_name = display.value.trim();
      try {
        const r = await api('PUT', '/v1/environments/' + encodeURIComponent(name.value), { json: body });
        dlg.close();
        toast((e ? 'Saved ' : 'Created ') + r.name + '.');
        done?.(r);
      } catch (err) {
        const f = err.code === 'invalid_name' && !/display|description/i.test(err.message) ? 'name'
          : /display/i.test(err.message) ? 'display_name' : /description/i.test(err.message) ? 'description' : null;
        if (!f || !setFieldError(form, f, explain(err))) formError(form, explain(err));
      }
    } }, field('Name', name, e ? 'The name cannot change.' : 'Letters, digits and hyphens; unique ignoring case.'),
    field('Display name (optional)', display), field('Description', desc),
    actions(h('button', { type: 'submit', class: 'primary', text: e ? 'Save' : 'Create' }), button('Cancel', () => dlg.close())));
    const dlg = dialog(e ? `Edit environment ${e.name}` : 'New environment', form);
  }
  async function deleteEnvironment(e) {
    if (!(await confirmTyped(`Delete environment ${e.name}`, `The environment ${e.name} is removed.`, 'delete', 'Delete'))) return;
    try {
      await api('DELETE', '/v1/environments/' + encodeURIComponent(e.name));
      toast('Deleted.');
      route();
    } catch (err) {
      if (err.code === 'in_use') {
        const dlg = dialog(`${e.name} cannot be deleted`, h('div', {},
          h('p', { class: 'error', text: err.message }),
          h('p', { text: 'Move those services to another environment (Edit on the Services screen) or delete them, and take the environment off the certificates limited to it, first.' }),
          actions(e.services ? link('#/services?environment=' + encodeURIComponent(e.name), 'Its services') : null,
            button('Close', () => dlg.close(), 'primary'))));
        return;
      }
      errorDialog('Not deleted', err);
    }
  }

  /* ---------- 8. JWKs ---------- */
  const JWK_STATES = { active: 'Active', superseded: 'Superseded', disconnected: 'Disconnected' };
  /* Every JWK from the management listing (GET /v1/jwks/all): active, superseded by a
   * renewal (still published until its retention ends) and disconnected, with the
   * certificate each belongs to and the version it was made from. */
  async function jwks(params, q) {
    const seq = state.seq;
    const cert = q.get('certificate') || '';
    const cursor = q.get('cursor') || '';
    loading('JWKs');
    const list = await api('GET', '/v1/jwks/all' + query({ certificate: cert, cursor, limit: 50 }));
    if (seq !== state.seq) return;
    const certInput = h('input', { name: 'certificate', value: cert, placeholder: 'certificate name', autocomplete: 'off' });
    const filters = h('form', { class: 'filters', role: 'search', onsubmit: (ev) => {
      ev.preventDefault();
      location.hash = '#/jwks' + query({ certificate: certInput.value.trim() });
    } }, field('Certificate', certInput), h('button', { type: 'submit', text: 'Filter' }),
    cert ? link('#/jwks', 'Every JWK') : null);
    const rows = list.items.map((j) => {
      const owner = j.link?.certificate;
      const made = j.made_from || {};
      const published = j.published
        ? (j.state === 'superseded' && j.published_until ? h('span', {}, 'until ', when(j.published_until)) : 'yes')
        : h('span', { class: 'muted', text: 'no' });
      return h('tr', { class: j.state === 'active' ? '' : 'muted-row', 'data-kid': j.kid },
        h('td', { class: 'kid' }, h('code', { class: 'wrap', text: j.kid })),
        h('td', { text: j.alg || '—' }), h('td', { text: j.use || '—' }), h('td', { class: 'opt', text: j.kty || '—' }),
        h('td', {}, owner ? link(certHref(owner), owner) : h('span', { class: 'muted', text: `none (was ${made.certificate || '—'})` })),
        h('td', { class: 'num', text: made.version ? 'v' + made.version : '—' }),
        h('td', {}, h('span', { class: 'badge jwk-' + j.state, text: JWK_STATES[j.state] || j.state }),
          j.superseded_by ? h('span', { class: 'hint block', text: 'by ' + j.superseded_by.slice(0, 12) + '…', title: j.superseded_by }) : null),
        h('td', { class: 'published' }, published),
        h('td', { class: 'row-actions' }, button('View', () => jwkView(j.kid), 'small'),
          may('DELETE', '/v1/jwks/{}') ? button('Delete', () => deleteJwk(j), 'small danger') : null));
    });
    const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' },
      cursor ? link('#/jwks' + query({ certificate: cert }), '← First page') : null,
      list.next_cursor ? link('#/jwks' + query({ certificate: cert, cursor: list.next_cursor }), 'Next page →') : null);
    page('JWKs', h('div', { class: 'head-actions' }, may('POST', '/v1/jwks') ? button('Create JWK', () => jwkDialog(cert), 'primary') : null,
      h('a', { class: 'button', href: '/.well-known/jwks.json', target: '_blank', rel: 'noopener', text: 'Public JWKS document' })),
    h('p', { class: 'hint lead', text: 'Active JWKs are in the public JWKS document. A renewal with a new key supersedes the old JWK: it stays published until its retention ends, so tokens it signed keep verifying. A disconnected JWK stays published, linked to no certificate.' }),
    filters,
    rows.length ? table(['kid', 'alg', 'use', '~kty', 'Certificate', 'Made from', 'State', 'Published', ''], rows, 'JWKs')
      : empty(cert ? `No JWK is linked to ${cert}.` : 'No JWKs yet. Create one from a certificate.'), pager);
  }
  async function jwkView(kid) {
    const j = await api('GET', '/v1/jwks/' + encodeURIComponent(kid));
    const made = j.made_from || {};
    const text = JSON.stringify(j.jwk, null, 2);
    const area = h('textarea', { readonly: true, rows: 12, spellcheck: 'false', 'aria-label': 'Public JWK' });
    area.value = text;
    const dlg = dialog('JWK ' + kid.slice(0, 16) + '…', h('div', {},
      h('p', { class: 'hint', text: `Made from ${made.certificate || '—'} version ${made.version ?? '—'}; created ` }, when(j.created_at), '.'),
      h('p', { class: 'hint', text: 'The public members only: the private key stays in the token.' }),
      area, actions(copyButton(text, 'Copy JSON'), button('Close', () => dlg.close(), 'primary'))), { wide: true });
  }
  function jwkDialog(certificate) {
    const cert = h('input', { name: 'certificate', value: certificate, required: true, autocomplete: 'off' });
    const use = h('select', { name: 'use' }, h('option', { value: 'sig', text: 'sig (signatures)' }), h('option', { value: 'enc', text: 'enc (encryption)' }));
    const alg = h('select', { name: 'alg' }, h('option', { value: '', text: 'From the key' }),
      ['RS256', 'PS256', 'ES256', 'ES384', 'ES512', 'EdDSA'].map((a) => h('option', { value: a, text: a })));
    const form = h('form', { onsubmit: async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      const body = { certificate: cert.value, use: use.value };
      if (alg.value) body.alg = alg.value;
      try {
        const j = await api('POST', '/v1/jwks', { json: body });
        dlg.close();
        toast('JWK created: ' + (j.kid || ''));
        if (location.hash.startsWith('#/jwks')) route(); else location.hash = '#/jwks';
      } catch (e) {
        const f = /alg/i.test(e.message) ? 'alg' : /use/i.test(e.message) ? 'use' : 'certificate';
        setFieldError(form, f, explain(e));
      }
    } }, field('Certificate', cert), field('Use', use), field('Algorithm', alg),
    actions(h('button', { type: 'submit', class: 'primary', text: 'Create' }), button('Cancel', () => dlg.close())));
    const dlg = dialog('Create a JWK', form);
  }
  async function deleteJwk(j) {
    const what = j.state === 'active' || j.published
      ? `The JWK ${j.kid} leaves the public JWKS document at once: tokens it signed stop verifying.`
      : `The JWK ${j.kid} is removed (it is no longer in the public JWKS document).`;
    if (!(await confirmTyped('Delete JWK', what, 'delete', 'Delete'))) return;
    try { await api('DELETE', '/v1/jwks/' + encodeURIComponent(j.kid)); toast('Deleted.'); route(); } catch (e) { errorDialog('Not deleted', e); }
  }

  /* ---------- 9. truststore ---------- */
  async function truststore(params, q) {
    const seq = state.seq;
    const search = q.get('q') || '';
    const cursor = q.get('cursor') || '';
    loading('Truststore');
    const [list, crls] = await Promise.all([api('GET', '/v1/truststore' + query({ q: search, cursor })),
      api('GET', '/v1/truststore/crls')]);
    if (seq !== state.seq) return;
    const searchInput = h('input', { type: 'search', name: 'q', value: search, placeholder: 'alias, subject, issuer, serial' });
    const filters = h('form', { class: 'filters', role: 'search', onsubmit: (ev) => {
      ev.preventDefault();
      location.hash = '#/truststore' + query({ q: searchInput.value.trim() });
    } }, field('Search', searchInput), h('button', { type: 'submit', text: 'Search' }));
    const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' },
      cursor ? link('#/truststore' + query({ q: search }), '← First page') : null,
      list.next_cursor ? link('#/truststore' + query({ q: search, cursor: list.next_cursor }), 'Next page →') : null,
      typeof list.total === 'number' ? h('span', { class: 'total', text: `${list.total} in all` }) : null);
    const rows = list.items.map((t) => h('tr', {},
      h('td', {}, button(t.alias, () => trustDetails(t.alias), 'link')), h('td', { text: t.subject || '—' }), h('td', { text: t.issuer || '—' }),
      h('td', {}, when(t.valid_to)), h('td', {}, badge(t.status)),
      h('td', {}, may('DELETE', '/v1/truststore/{}') ? button('Delete', () => deleteTrust(t.alias), 'small danger') : null)));
    const crlRows = crls.items.map((c) => h('tr', {}, h('td', { text: c.alias }), h('td', { text: c.issuer }),
      h('td', {}, when(c.this_update)), h('td', {}, when(c.next_update)), h('td', { text: String(c.revoked_count) }),
      h('td', { text: c.status }), h('td', {}, may('DELETE', '/v1/truststore/crls/{}') ? button('Delete', () => deleteCrl(c.alias), 'small danger') : null)));
    page('Truststore', h('div', { class: 'head-actions' },
      may('POST', '/v1/truststore') ? button('Add CA certificates', () => trustDialog(), 'primary') : null,
      may('POST', '/v1/truststore/crls') ? button('Add a CRL', () => crlDialog()) : null,
      h('a', { class: 'button', href: '/v1/truststore/export?format=pem', download: 'truststore.pem', text: 'Export PEM' }),
      button('Export PKCS#12', () => p12Dialog())), filters,
    rows.length ? table(['Alias', 'Subject', 'Issuer', 'Valid to', 'Status', ''], rows, 'Truststore') : empty(search ? 'No trusted CA matches.' : 'No trusted CA yet.'),
    pager,
    h('section', {}, h('h2', { text: 'CRLs' }), crlRows.length ? table(['CA', 'Issuer', 'This update', 'Next update', 'Revoked', 'State', ''], crlRows, 'CRLs') : empty('No CRLs.')));
  }
  async function trustDetails(alias) {
    const t = await api('GET', '/v1/truststore/' + encodeURIComponent(alias));
    const kv = (l, v) => [h('dt', { text: l }), h('dd', {}, v)];
    const dlg = dialog(alias, h('div', {}, h('dl', { class: 'kv' }, kv('Subject', t.subject || '—'), kv('Issuer', t.issuer || '—'),
      kv('Serial', h('code', { text: t.serial_number || '—' })), kv('Valid from', when(t.valid_from)), kv('Valid to', when(t.valid_to)),
      kv('Status', badge(t.status)), kv('Public key', t.public_key?.description || t.key_description || '—'),
      kv('SHA-256', h('code', { class: 'wrap', text: t.fingerprints?.sha256 || t.sha256_fingerprint || '—' })), kv('Source', t.source || '—')),
    actions(button('Close', () => dlg.close(), 'primary'))), { wide: true });
  }
  function readFile(file) {
    return new Promise((resolve, reject) => {
      const r = new FileReader();
      r.onload = () => resolve(new Uint8Array(r.result));
      r.onerror = () => reject(r.error);
      r.readAsArrayBuffer(file);
    });
  }
  function b64(bytes) {
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }
  async function fileAsCertificate(file) {
    const bytes = await readFile(file);
    const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
    return text.includes('-----BEGIN') ? { certificate: text } : { certificate: b64(bytes), encoding: 'base64' };
  }
  function trustDialog() {
    const alias = h('input', { name: 'alias', required: true, autocomplete: 'off' });
    const mode = h('fieldset', { class: 'source' }, h('legend', { text: 'Source' }),
      [['paste', 'Paste'], ['file', 'File'], ['url', 'From a server (https/ldaps)']].map(([v, t]) => h('label', { class: 'inline' },
        h('input', { type: 'radio', name: 'source', value: v, checked: v === 'paste' }), ' ' + t)));
    const paste = field('Certificates (PEM; a bundle becomes alias-1, alias-2…)', h('textarea', { name: 'certificate', rows: 6, spellcheck: 'false' }));
    const file = field('File (PEM bundle or DER)', h('input', { type: 'file', name: 'file', accept: '.pem,.crt,.cer,.der' }));
    const url = field('URL', h('input', { name: 'url', type: 'url', placeholder: 'https://host:443 or ldaps://host:636' }));
    const keep = field('Keep', h('select', { name: 'keep' }, h('option', { value: 'top', text: 'the top-most CA presented' }),
      h('option', { value: 'all', text: 'every CA presented' }), [0, 1, 2, 3].map((i) => h('option', { value: String(i), text: `position ${i}${i === 0 ? " (the server's own)" : ''}` }))));
    const preview = h('div', { class: 'preview', 'aria-live': 'polite' });
    const previewBtn = button('Preview', () => doPreview());
    const canPreview = hasRoute('POST', '/v1/truststore/preview');
    const show = () => {
      const m = form.querySelector('input[name=source]:checked').value;
      paste.hidden = m !== 'paste'; file.hidden = m !== 'file'; url.hidden = m !== 'url'; keep.hidden = m !== 'url';
      previewBtn.hidden = m !== 'url' || !canPreview;
    };
    mode.addEventListener('change', show);
    async function body() {
      const m = form.querySelector('input[name=source]:checked').value;
      const b = { alias: alias.value };
      if (m === 'paste') b.certificate = form.elements.certificate.value;
      else if (m === 'file') {
        const f = form.elements.file.files[0];
        if (!f) return { missing: 'file' };
        Object.assign(b, await fileAsCertificate(f));
      } else { b.url = form.elements.url.value; b.keep = form.elements.keep.value; }
      return b;
    }
    function fieldOf(e) {
      const m = form.querySelector('input[name=source]:checked').value;
      if (e.code === 'name_taken' || e.code === 'invalid_name' || /alias/i.test(e.message)) return 'alias';
      if (m === 'url') return /keep/i.test(e.message) ? 'keep' : 'url';
      return m === 'file' ? 'file' : 'certificate';
    }
    async function doPreview() {
      clearErrors(form);
      const b = await body();
      put(preview, h('p', { class: 'loading', text: 'Fetching the chain…' }));
      try {
        const r = await api('POST', '/v1/truststore/preview', { json: b });
        const items = r.items || r.chain || [];
        put(preview, h('h3', { text: 'Would be added' }), table(['Alias', 'Subject', 'Issuer', 'Valid to'], items.map((t) => h('tr', {},
          h('td', { text: t.alias || '—' }), h('td', { text: t.subject || '—' }), h('td', { text: t.issuer || '—' }), h('td', {}, when(t.valid_to)))), 'Preview'));
      } catch (e) {
        put(preview);
        if (!setFieldError(form, fieldOf(e), (REFUSALS[e.code]?.[1] || '') + ' ' + e.message)) formError(form, explain(e));
      }
    }
    const form = h('form', { novalidate: true, onsubmit: async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      if (!validName(alias.value)) { setFieldError(form, 'alias', REFUSALS.invalid_name[1]); return; }
      const b = await body();
      if (b.missing) { setFieldError(form, b.missing, 'Choose a file.'); return; }
      try {
        const r = await api('POST', '/v1/truststore', { json: b });
        dlg.close();
        toast('Added ' + (r.items || []).map((t) => t.alias).join(', '));
        route();
      } catch (e) {
        const text = (REFUSALS[e.code] ? REFUSALS[e.code][1] + ' ' : '') + e.message;
        if (!setFieldError(form, fieldOf(e), text)) formError(form, explain(e));
      }
    } }, field('Alias', alias), mode, paste, file, url, keep, preview,
    actions(previewBtn, h('button', { type: 'submit', class: 'primary', text: 'Add' }), button('Cancel', () => dlg.close())));
    show();
    const dlg = dialog('Add CA certificates', form, { wide: true });
  }
  function crlDialog() {
    const text = h('textarea', { name: 'crl', rows: 6, spellcheck: 'false', placeholder: '-----BEGIN X509 CRL-----' });
    const file = h('input', { type: 'file', name: 'crl_file', accept: '.pem,.crl,.der' });
    const form = h('form', { onsubmit: async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      let b = { crl: text.value };
      if (file.files[0]) {
        const bytes = await readFile(file.files[0]);
        const t = new TextDecoder().decode(bytes);
        b = t.includes('-----BEGIN') ? { crl: t } : { crl: b64(bytes), encoding: 'base64' };
      }
      try { await api('POST', '/v1/truststore/crls', { json: b }); dlg.close(); toast('CRL added.'); route(); } catch (e) {
        setFieldError(form, 'crl', (REFUSALS[e.code]?.[0] === 'crl' ? REFUSALS[e.code][1] + ' ' : '') + explain(e));
      }
    } }, field('CRL (PEM)', text), field('or a CRL file', file),
    actions(h('button', { type: 'submit', class: 'primary', text: 'Add' }), button('Cancel', () => dlg.close())));
    const dlg = dialog('Add a CRL', form);
  }
  async function deleteTrust(alias) {
    if (!(await confirmTyped(`Delete ${alias}`, `The CA ${alias} is no longer trusted (its CRL goes with it).`, 'delete', 'Delete'))) return;
    try { await api('DELETE', '/v1/truststore/' + encodeURIComponent(alias)); toast('Deleted.'); route(); } catch (e) { errorDialog('Not deleted', e); }
  }
  async function deleteCrl(alias) {
    if (!(await confirmTyped('Delete CRL', `The CRL of ${alias} is removed.`, 'delete', 'Delete'))) return;
    try { await api('DELETE', '/v1/truststore/crls/' + encodeURIComponent(alias)); toast('Deleted.'); route(); } catch (e) { errorDialog('Not deleted', e); }
  }
  function download(blob, name) {
    const a = h('a', { href: URL.createObjectURL(blob), download: name });
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }
  function p12Dialog() {
    const pw = h('input', { type: 'password', name: 'password', required: true, autocomplete: 'new-password', maxlength: 128 });
    const form = h('form', { onsubmit: async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      // Fetched, not navigated to: the password is in no URL the browser keeps in its history.
      try {
        const blob = await api('GET', '/v1/truststore/export' + query({ format: 'pkcs12', password: pw.value }), { blob: true });
        pw.value = '';
        download(blob, 'truststore.p12');
        dlg.close();
      } catch (e) { setFieldError(form, 'password', explain(e)); }
    } }, field('Password for the file', pw, '1-128 printable characters; Java\'s usual one is changeit.'),
    actions(h('button', { type: 'submit', class: 'primary', text: 'Download' }), button('Cancel', () => dlg.close())));
    const dlg = dialog('Export the truststore as PKCS#12', form);
  }

  /* ---------- 10. audit ---------- */
  async function audit(params, q) {
    const f = {};
    for (const k of ['actor', 'action', 'target', 'from', 'until', 'cursor']) f[k] = q.get(k) || '';
    const inputs = {
      actor: h('input', { name: 'actor', value: f.actor }), action: h('input', { name: 'action', value: f.action, placeholder: 'e.g. certificate.import' }),
      target: h('input', { name: 'target', value: f.target }),
      from: h('input', { name: 'from', type: 'date', value: f.from.slice(0, 10) }), until: h('input', { name: 'until', type: 'date', value: f.until.slice(0, 10) }),
    };
    const filters = h('form', { class: 'filters', onsubmit: (ev) => {
      ev.preventDefault();
      const n = {};
      for (const [k, i] of Object.entries(inputs)) if (i.value) n[k] = (k === 'from' || k === 'until') ? i.value + 'T00:00:00Z' : i.value.trim();
      location.hash = '#/audit' + query(n);
    } }, field('Actor', inputs.actor), field('Action', inputs.action), field('Target', inputs.target),
    field('From (UTC)', inputs.from), field('Until (UTC)', inputs.until), h('button', { type: 'submit', text: 'Filter' }));
    const verdict = h('div', { class: 'verdict', 'aria-live': 'polite' });
    const body = h('div', {}, h('p', { class: 'loading', text: 'Loading…' }));
    page('Audit trail', h('div', { class: 'head-actions' }, button('Verify the chain', async () => {
      put(verdict, h('p', { class: 'loading', text: 'Walking the chain…' }));
      try {
        const v = await api('GET', '/v1/audit/verify');
        put(verdict, h('p', { class: v.intact ? 'ok' : 'bad', text: v.intact ? `Intact: ${v.records} records.`
          : `Broken at record ${v.first_bad}: ${v.reason || ''}` }), h('p', {}, 'Head hash: ', h('code', { class: 'wrap', text: v.head || '—' }),
          ' ', copyButton(v.head || '')));
      } catch (e) { put(verdict, h('p', { class: 'error', text: explain(e) })); }
    }, 'primary')), verdict, filters, body);
    const list = await api('GET', '/v1/audit' + query({ ...f, limit: 50 }));
    const rows = list.items.map((r) => h('tr', { class: r.outcome === 'done' ? '' : 'refused' },
      h('td', { class: 'num', text: String(r.seq) }), h('td', {}, when(r.at)), h('td', { text: r.actor?.name || '—' }),
      h('td', { text: r.action }), h('td', { text: r.target || '—' }), h('td', { text: r.outcome + (r.error ? ` (${r.error})` : '') }),
      h('td', {}, h('code', { text: r.request_id || '' }))));
    const next = { ...Object.fromEntries(Object.entries(f).filter(([k]) => k !== 'cursor')), cursor: list.next_cursor };
    put(body, rows.length ? table(['#', 'When', 'Actor', 'Action', 'Target', 'Outcome', 'Request'], rows, 'Audit records') : empty('No record matches.'),
      h('nav', { class: 'pager' }, f.cursor ? link('#/audit' + query({ ...next, cursor: '' }), '← First page') : null, ' ',
        list.next_cursor && rows.length === 50 ? link('#/audit' + query(next), 'Next page →') : null));
  }

  /* ---------- 11. inventory ---------- */
  function inventory() {
    page('Inventory', h('p', { text: 'Every certificate and truststore CA, with where its key lives and the key\'s attributes as the token reports them now.' }),
      h('div', { class: 'head-actions' },
        h('a', { class: 'button primary', href: '/v1/inventory?format=csv', download: '', text: 'Download CSV' }),
        h('a', { class: 'button', href: '/v1/inventory?format=json', download: '', text: 'Download JSON' })));
  }

  /* ---------- 12. API tokens ---------- */
  async function tokens() {
    if (!can('admin')) { page('API tokens', h('p', { class: 'error', text: 'Only an admin manages API tokens.' })); return; }
    const seq = state.seq;
    loading('API tokens');
    const list = await api('GET', '/v1/tokens');
    if (seq !== state.seq) return;
    const rows = list.items.map((t) => h('tr', { class: t.state === 'active' ? '' : 'muted' },
      h('td', { text: t.name }), h('td', {}, h('code', { text: t.id })), h('td', { text: t.role }), h('td', { text: t.state }),
      h('td', {}, when(t.created_at)), h('td', {}, t.expires_at ? when(t.expires_at) : 'never'),
      h('td', {}, t.last_used_at ? when(t.last_used_at) : 'never', t.last_used_from ? ' from ' + t.last_used_from : '', t.unused ? h('span', { class: 'warning', text: ' unused' }) : null),
      h('td', { text: scopeText(t.scope) }),
      h('td', {}, t.state === 'active' ? button('Revoke', () => revoke(t), 'small danger') : null)));
    page('API tokens', h('div', { class: 'head-actions' }, button('New token', () => tokenDialog(), 'primary')),
      rows.length ? table(['Name', 'Id', 'Role', 'State', 'Created', 'Expires', 'Last used', 'Scope', ''], rows, 'API tokens') : empty('No tokens.'));
  }
  /* A scope (issue 18 part 3) in one line: "read, bind · certificates shop-* · environments production". */
  function scopeText(s) {
    if (!s) return 'none (the role decides)';
    return [s.actions.join(', ')].concat(['certificates', 'services', 'environments'].filter((k) => s[k]).map((k) => k + ' ' + s[k].join(', '))).join(' · ');
  }
  function tokenDialog() {
    const name = h('input', { name: 'name', required: true, autocomplete: 'off' });
    const role = h('select', { name: 'role' }, ['operator', 'auditor', 'admin'].map((r) => h('option', { value: r, text: r })));
    const exp = h('input', { name: 'expires_in_days', type: 'number', min: 1, max: 3650, placeholder: 'never' });
    const scope = h('input', { name: 'scope', autocomplete: 'off', spellcheck: 'false', placeholder: 'actions=read,bind environments=production certificates=shop-*' });
    const form = h('form', { novalidate: true, onsubmit: async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      if (!validName(name.value)) { setFieldError(form, 'name', REFUSALS.invalid_name[1]); return; }
      const body = { name: name.value, role: role.value };
      if (exp.value) body.expires_in_days = Number(exp.value);
      /* KEY=V1,V2 words, as the command line's --scope; certvault judges the values. */
      if (scope.value.trim()) {
        body.scope = {};
        for (const w of scope.value.trim().split(/\s+/)) {
          const [k, v] = w.split('=');
          if (!['actions', 'certificates', 'services', 'environments'].includes(k) || !v) { setFieldError(form, 'scope', 'Each word is KEY=V1,V2 with KEY one of actions, certificates, services, environments.'); return; }
          body.scope[k] = v.split(',');
        }
      }
      try {
        const t = await api('POST', '/v1/tokens', { json: body });
        const secret = h('input', { readonly: true, value: t.token, class: 'secret', 'aria-label': 'The new token' });
        form.replaceChildren(h('p', { class: 'warning', text: 'Copy this token now: it is shown this once and certvault keeps only its hash.' }),
          h('div', { class: 'copyable' }, secret, copyButton(t.token)),
          actions(button('Done', () => dlg.close(), 'primary')));
        secret.select();
      } catch (e) {
        const f = e.code === 'name_taken' || e.code === 'invalid_name' ? 'name' : /expires/.test(e.message) ? 'expires_in_days' : /scope|environment/.test(e.message) ? 'scope' : 'role';
        setFieldError(form, f, explain(e));
      }
    } }, field('Name', name), field('Role', role), field('Expires in days (empty: never)', exp),
    field('Scope (leave empty for none)', scope, 'Least privilege: actions=read,bind and, to limit what it touches, certificates=GLOB,… services=GLOB,… environments=NAME,…'),
    actions(h('button', { type: 'submit', class: 'primary', text: 'Create' }), button('Cancel', () => dlg.close())));
    const dlg = dialog('New API token', form, { onclose: () => route() });
  }
  async function revoke(t) {
    if (!(await confirmTyped(`Revoke ${t.name}`, `Every request with ${t.name}, and every console session opened with it, stops working at once.`, t.name, 'Revoke'))) return;
    try { await api('DELETE', '/v1/tokens/' + encodeURIComponent(t.id)); toast('Revoked.'); route(); } catch (e) { errorDialog('Not revoked', e); }
  }

  window.cvConsole = Object.freeze({
    register, h, put, api, page, loading, link, certHref, button, actions, dialog, table, empty,
    when, toast, errorDialog, confirmTyped, can, hasRoute, query, explain, route,
  });

  /* ---------- start ---------- */
  document.getElementById('signout').addEventListener('click', async () => {
    try { await api('DELETE', '/v1/session', { signin: true }); } catch (e) { /* ended already */ }
    state.me = null;
    state.csrf = null;
    location.hash = '#/';
    signIn('Signed out.');
  });
  // Two quick changes of address queue two events that both see the last address: it is
  // drawn once.
  window.addEventListener('hashchange', () => { if (location.hash !== state.routed) route(); });
  // Close an open actions menu when another is opened or on a click elsewhere.
  document.addEventListener('click', (ev) => {
    for (const d of document.querySelectorAll('details.menu[open]')) if (!d.contains(ev.target)) d.open = false;
  });
  (async () => {
    try {
      const first = firstDataPath();
      if (first) prefetch(first);
      const s = await api('GET', '/v1/session', { signin: true });
      performance.mark?.('cv:session');
      if (!s.signed_in) { prefetched.clear(); signIn(''); return; }
      state.csrf = s.csrf_token;
      await loadMe(s);
      route();
    } catch (e) {
      signIn(e.status === 401 ? '' : explain(e));
    }
  })();
})();
