// The HTTP API as the dashboard uses it: every request carries the token
// from session storage in an Authorization header (never in a URL), and
// errors come back as ApiError with the server's stable code.

const KEY = 'sensegate.token';

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(t) {
  if (t) sessionStorage.setItem(KEY, t);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code || '';
  }
}

async function failure(r) {
  let code = '';
  let message = `HTTP ${r.status}`;
  try {
    const body = await r.json();
    code = body?.error?.code ?? '';
    message = body?.error?.message ?? message;
  } catch {
    // Not JSON: keep the status line.
  }
  return new ApiError(r.status, code, message);
}

function headers(extra = {}) {
  const h = { ...extra };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

export async function api(method, path, body) {
  const init = { method, headers: headers(), cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (!r.ok) throw await failure(r);
  if (r.status === 204) return null;
  return r.json();
}

export const get = (path) => api('GET', path);

// Largest server-sent event the dashboard accepts; the server sends at most
// 256 readings per event, far below this.
const MAX_EVENT_CHARS = 1 << 20;

// Reads /api/v1/stream with fetch (EventSource cannot send a header) and
// calls onEvent(name, data) for each event until the stream ends, the
// signal aborts it, or it fails (the returned promise rejects).
export async function stream(patterns, onEvent, signal, onOpen) {
  const q = encodeURIComponent(patterns);
  const r = await fetch(`/api/v1/stream?sensors=${q}`, {
    headers: headers({ Accept: 'text/event-stream' }),
    cache: 'no-store',
    signal,
  });
  if (!r.ok) throw await failure(r);
  onOpen?.();
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      // Lines may end in CRLF, LF or CR (the SSE format allows all three).
      buf += value.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        let name = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) name = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        if (data.length) onEvent(name, data.join('\n'));
      }
      if (buf.length > MAX_EVENT_CHARS) throw new Error('event too large');
    }
  } finally {
    // Whatever ended the loop, the response is closed, so its connection
    // goes back to the browser's pool.
    reader.cancel().catch(() => {});
  }
}
