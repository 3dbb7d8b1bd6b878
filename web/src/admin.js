// The admin page: tokens (a new token's secret is shown once, here, and
// never again), open connections, native and HTTP, and the uplinks to the
// site's central systems (connected or not, backlog, what they sent). Only offered to an
// admin token; the server refuses these calls to anyone else whatever this
// page does.

import { api, get } from './api.js';
import { el, clear, fmtTime } from './dom.js';

export function mountAdmin(root, ctx) {
  const tokens = el('tbody');
  const conns = el('tbody');
  const uplinks = el('tbody', { id: 'uplinks' });
  const secretBox = el('div', { class: 'secret', id: 'new-secret', hidden: true });
  const message = el('p', { class: 'muted', id: 'admin-message' });
  const name = el('input', { name: 'name', required: true, maxlength: 128, placeholder: 'name', 'aria-label': 'Token name' });
  const role = el('select', { name: 'role', 'aria-label': 'Role' }, ...['reader', 'device', 'admin'].map((r) => el('option', { value: r, text: r })));
  const scope = el('input', { name: 'scope', value: '*', maxlength: 256, 'aria-label': 'Scope pattern' });
  const form = el('form', { class: 'toolbar', id: 'token-form' }, name, role, scope, el('button', { type: 'submit', text: 'Create token' }));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const created = await api('POST', '/api/v1/tokens', { name: name.value, role: role.value, scope: scope.value });
      clear(secretBox).append(
        el('strong', { text: `Token “${created.token.name}” created. Copy the secret now: it is not shown again.` }),
        el('code', { text: created.secret }),
      );
      secretBox.hidden = false;
      form.reset();
      scope.value = '*';
      load();
    } catch (e) {
      message.textContent = `Could not create the token: ${e.message}`;
      ctx.failed(e, true);
    }
  });

  const table = (head, body) =>
    el('table', {}, el('thead', {}, el('tr', {}, ...head.map((h) => el('th', { text: h })))), body);

  clear(root).append(
    el(
      'section',
      { id: 'admin' },
      el('div', { class: 'toolbar' }, el('h1', { text: 'Admin' }), el('button', { type: 'button', text: 'Refresh', onclick: () => load() })),
      message,
      el('h2', { text: 'Tokens' }),
      form,
      secretBox,
      table(['id', 'name', 'role', 'scope', 'created', ''], tokens),
      el('h2', { text: 'Connections' }),
      table(['id', 'who', 'role', 'peer', 'front end', 'since', 'subs', 'bytes in', 'bytes out', ''], conns),
      el('h2', { text: 'Uplinks' }),
      table(['name', 'kind', 'state', 'confirmed seq', 'backlog rows', 'backlog age', 'batches', 'rows', 'retries', 'dropped'], uplinks),
    ),
  );

  async function act(what, run) {
    try {
      await run();
      message.textContent = what;
    } catch (e) {
      message.textContent = `Failed: ${e.message}`;
      ctx.failed(e, true);
    }
    load();
  }

  async function load() {
    try {
      const [t, c, u] = await Promise.all([get('/api/v1/tokens'), get('/api/v1/connections'), get('/api/v1/uplinks')]);
      clear(tokens).append(
        ...t.map((x) =>
          el(
            'tr',
            { class: x.revoked ? 'revoked' : '' },
            el('td', {}, el('code', { text: x.id })),
            el('td', { text: x.name }),
            el('td', { text: x.role }),
            el('td', {}, el('code', { text: x.scope })),
            el('td', { text: fmtTime(x.created_at_us) }),
            el(
              'td',
              {},
              x.revoked
                ? 'revoked'
                : el('button', { type: 'button', class: 'danger', text: 'Revoke', onclick: () => confirm(`Revoke token “${x.name}”? Its sessions end now.`) && act(`Revoked ${x.name}.`, () => api('DELETE', `/api/v1/tokens/${encodeURIComponent(x.id)}`)) }),
            ),
          ),
        ),
      );
      clear(conns).append(
        ...c.map((x) =>
          el(
            'tr',
            {},
            el('td', { text: String(x.id) }),
            el('td', { text: x.principal || '(signing in)' }),
            el('td', { text: x.role }),
            el('td', {}, el('code', { text: x.peer })),
            el('td', { text: x.frontend }),
            el('td', { text: fmtTime(x.connected_at_us) }),
            el('td', { text: String(x.subscriptions) }),
            el('td', { text: String(x.bytes_in) }),
            el('td', { text: String(x.bytes_out) }),
            el('td', {}, el('button', { type: 'button', class: 'danger', text: 'Disconnect', onclick: () => act(`Disconnected ${x.id}.`, () => api('DELETE', `/api/v1/connections/${x.id}`)) })),
          ),
        ),
      );
      clear(uplinks).append(
        ...(u.length === 0
          ? [el('tr', {}, el('td', { colspan: 10, class: 'muted', text: 'No uplink configured.' }))]
          : u.map((x) =>
              el(
                'tr',
                { class: x.connected ? '' : 'revoked' },
                el('td', { text: x.name }),
                el('td', { text: x.kind }),
                el('td', { text: x.connected ? 'connected' : 'disconnected' }),
                el('td', { text: String(x.delivered_seq) }),
                el('td', { text: String(x.backlog_rows) }),
                el('td', { text: `${x.backlog_seconds.toFixed(1)} s` }),
                el('td', { text: String(x.batches) }),
                el('td', { text: String(x.rows) }),
                el('td', { text: String(x.retries) }),
                el('td', { text: String(x.dropped) }),
              ),
            )),
      );
    } catch (e) {
      message.textContent = `Could not load: ${e.message}`;
      ctx.failed(e, true);
    }
  }

  load();
  return () => {};
}
