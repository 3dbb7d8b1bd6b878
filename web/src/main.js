// The dashboard: sign-in with a token (kept in this tab's session storage,
// sent only in an Authorization header), then the live, history and admin
// views, routed by the URL fragment.

import 'uplot/dist/uPlot.min.css';
import './style.css';
import { get, setToken, token, ApiError } from './api.js';
import { el, clear } from './dom.js';
import { mountLive } from './live.js';
import { mountHistory } from './history.js';
import { mountAdmin } from './admin.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const navAdmin = document.getElementById('nav-admin');
const who = document.getElementById('who');
const logout = document.getElementById('logout');

let me = null;
let unmount = () => {};

const ctx = {
  // An API failure in a view: a token that stopped working ends the
  // session; anything else the view reports itself.
  failed(e, reported = false) {
    if (e instanceof ApiError && e.status === 401) {
      signOut('Your session ended: the token is no longer accepted.');
    } else if (!reported) {
      console.warn('sensegate:', e.message);
    }
  },
};

function signOut(message) {
  unmount();
  unmount = () => {};
  setToken(null);
  me = null;
  nav.hidden = true;
  logout.hidden = true;
  who.textContent = '';
  showLogin(message);
}

function showLogin(message = '') {
  const input = el('input', { type: 'password', id: 'token', autocomplete: 'off', placeholder: 'sgt_…', required: true, 'aria-label': 'Token' });
  const error = el('p', { class: 'error', id: 'login-error', text: message });
  const form = el(
    'form',
    { class: 'login', id: 'login' },
    el('h1', { text: 'Sign in' }),
    el('label', { for: 'token', text: 'Access token' }),
    input,
    el('button', { type: 'submit', text: 'Sign in' }),
    error,
    el('p', { class: 'muted', text: 'The token stays in this tab only and is sent in a header, never in the address.' }),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    setToken(input.value.trim());
    input.value = '';
    try {
      await start();
    } catch (e) {
      setToken(null);
      error.textContent =
        e instanceof ApiError && e.status === 401
          ? 'That token was not accepted.'
          : e instanceof ApiError && e.status === 429
            ? 'Too many failed attempts from this address; wait a little.'
            : `Could not sign in: ${e.message}`;
    }
  });
  clear(main).append(form);
  input.focus();
}

async function start() {
  me = await get('/api/v1/whoami');
  who.textContent = `${me.name} (${me.role})`;
  nav.hidden = false;
  logout.hidden = false;
  navAdmin.hidden = me.role !== 'admin';
  if (!location.hash || location.hash === '#/') {
    // The hashchange event routes.
    location.hash = '#/live';
  } else {
    route();
  }
}

function route() {
  if (!me) return;
  unmount();
  unmount = () => {};
  const [, view = 'live', raw] = location.hash.split('/');
  let arg = '';
  try {
    arg = raw ? decodeURIComponent(raw) : '';
  } catch {
    // A malformed escape in a hand-typed address: no sensor preselected.
  }
  for (const a of nav.querySelectorAll('a')) a.classList.toggle('active', a.dataset.view === view);
  if (view === 'history') {
    unmount = mountHistory(main, ctx, arg);
  } else if (view === 'admin') {
    if (me.role === 'admin') {
      unmount = mountAdmin(main, ctx);
    } else {
      clear(main).append(el('p', { class: 'error', id: 'not-admin', text: 'The admin page needs an admin token.' }));
      unmount = () => {};
    }
  } else if (me.role === 'device') {
    clear(main).append(el('p', { class: 'error', text: 'A device token can push readings but not read them.' }));
    unmount = () => {};
  } else {
    unmount = mountLive(main, ctx);
  }
}

window.addEventListener('hashchange', route);
logout.addEventListener('click', () => signOut(''));

if (token()) {
  start().catch((e) => signOut(e instanceof ApiError && e.status === 401 ? 'Your session ended.' : ''));
} else {
  showLogin();
}
