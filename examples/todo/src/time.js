// Postgres `timestamptz` text (what Electric's protocol carries, e.g.
// "2026-05-01 09:30:12.345678+00" or "2026-05-01 09:30:12+05:30") → microseconds since the Unix
// epoch, so todos sort by the database's own clock with microsecond ties kept apart.
// Returns NaN for anything else (e.g. 'infinity'); callers sort those last.

const TIMESTAMPTZ = /^(\d{4,})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?:([+-])(\d{2})(?::?(\d{2}))?(?::?(\d{2}))?|Z)?$/;

export function timestamptzMicros(text) {
  const m = typeof text === 'string' ? TIMESTAMPTZ.exec(text) : null;
  if (!m) return NaN;
  const [, y, mo, d, h, mi, s, frac = '', sign, oh = '0', om = '0', os = '0'] = m;
  const ms = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  const offsetSeconds = (sign === '-' ? -1 : 1) * (Number(oh) * 3600 + Number(om) * 60 + Number(os));
  return (ms / 1000 - offsetSeconds) * 1e6 + Number(frac.padEnd(6, '0'));
}

/** "Today 09:30", "Yesterday 18:02" or "3 May 2026" in the browser's locale and time zone. */
export function shortWhen(micros, now = new Date()) {
  if (!Number.isFinite(micros)) return '';
  const when = new Date(micros / 1000);
  const dayStart = (t) => new Date(t.getFullYear(), t.getMonth(), t.getDate()).getTime();
  const days = Math.round((dayStart(now) - dayStart(when)) / 86400000);
  const time = when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (days === 0) return `Today ${time}`;
  if (days === 1) return `Yesterday ${time}`;
  return when.toLocaleDateString([], { day: 'numeric', month: 'short', year: 'numeric' });
}
