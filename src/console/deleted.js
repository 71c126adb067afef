/* certvault console: the Deleted screen (issue 18 part 2). Certificates a delete put aside
 * for the retention period: when, by whom, when the background purge destroys them; recover
 * (write roles) and purge now (admin). Drawn with app.js's helpers (window.cvConsole), text
 * from the server through textContent only. */
'use strict';

(() => {
  const c = window.cvConsole;
  if (!c) return;
  const { h, api, page, link, button, table, empty, when, toast, errorDialog, confirmTyped, can, query } = c;

  async function deleted(params, q) {
    const cursor = q.get('cursor') || '';
    c.loading('Deleted certificates');
    const list = await api('GET', '/v1/deleted-certificates' + query({ cursor, limit: 50 }));
    const rows = list.items.map((d) => h('tr', {},
      h('td', { text: d.name }),
      h('td', { class: 'opt', text: d.domain || '—' }),
      h('td', { class: 'opt', text: String(d.version) }),
      h('td', {}, when(d.deleted_at)),
      h('td', { class: 'opt', text: d.deleted_by || '—' }),
      h('td', {}, when(d.purge_after)),
      h('td', {},
        can('write') ? button('Recover', () => recover(d), 'small') : null, ' ',
        can('admin') ? button('Purge', () => purge(d), 'small danger') : null)));
    const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' },
      cursor ? link('#/deleted', '← First page') : null, ' ',
      list.next_cursor ? link('#/deleted' + query({ cursor: list.next_cursor }), 'Next page →') : null);
    page('Deleted certificates',
      h('p', { text: 'A deleted certificate is hidden and its name stays reserved; its keys stay in the token, unusable, until the background purge destroys them when its retention ends. Recover brings it back as it was, with its versions, tags and JWKs.' }),
      list.items.length
        ? table(['Name', '~Domain', '~Version', 'Deleted', '~By', 'Purge after', ''], rows, 'Deleted certificates')
        : empty('No deleted certificate.'),
      pager);
  }

  async function recover(d) {
    try {
      const r = await api('POST', `/v1/deleted-certificates/${encodeURIComponent(d.name)}/recover`);
      const lost = (r.jwks_not_relinked || []).map((j) => `${j.kid}: ${j.reason}`);
      toast(lost.length ? `Recovered ${r.name}; not linked again: ${lost.join('; ')}` : `Recovered ${r.name}.`);
      location.hash = '#/certificates/' + encodeURIComponent(r.name);
    } catch (e) { errorDialog('Not recovered', e); }
  }

  async function purge(d) {
    if (!(await confirmTyped(`Purge ${d.name}`, `This destroys the keys of every version of ${d.name} in the token and removes it for good. It cannot be undone.`, 'purge', 'Purge'))) return;
    try {
      await api('DELETE', `/v1/deleted-certificates/${encodeURIComponent(d.name)}?confirm=purge`);
      toast(`Purged ${d.name}.`);
      c.route();
    } catch (e) { errorDialog('Not purged', e); }
  }

  c.register({ re: /^\/deleted$/, fn: deleted, href: '#/deleted', nav: 'Deleted' });
})();
