import { useEffect, useMemo, useState } from 'react';
import { useShape } from '@electric-sql/react';
import { addTodo, deleteTodo, setCompleted } from './api.js';
import { shortWhen, timestamptzMicros } from './time.js';

// Where the page reads the shape from: Ampere itself (it sends CORS headers) or a same-origin
// path behind a proxy (a relative URL resolves against the page). Fixed at build time.
export const SHAPE_URL = new URL(
  import.meta.env.VITE_ELECTRIC_URL || 'http://localhost:3000/v1/shape',
  window.location.href,
).href;

/** Oldest first by the database's `created_at`, ties by id: the order never depends on sync order. */
function byCreation(a, b) {
  const fa = Number.isFinite(a.micros);
  const fb = Number.isFinite(b.micros);
  if (fa !== fb) return fa ? -1 : 1;
  if (fa && a.micros !== b.micros) return a.micros - b.micros;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Electric's 400s carry `{"message": "Invalid request", "errors": {field: [messages]}}`. */
function describeSyncError(error) {
  const leaves = (v) => (typeof v === 'string' ? [v] : v && typeof v === 'object' ? Object.values(v).flatMap(leaves) : []);
  const reasons = leaves(error?.json?.errors);
  const detail = [error?.json?.message ?? error?.message ?? String(error), ...reasons].join(' — ');
  return error?.status ? `HTTP ${error.status}: ${detail}` : detail;
}

/** True once `ms` have passed while `active` stayed true. */
function useTakingLong(active, ms) {
  const [long, setLong] = useState(false);
  useEffect(() => {
    setLong(false);
    if (!active) return undefined;
    const timer = setTimeout(() => setLong(true), ms);
    return () => clearTimeout(timer);
  }, [active, ms]);
  return long;
}

export default function App() {
  const { data, isLoading, error, lastSyncedAt } = useShape({
    url: SHAPE_URL,
    params: { table: 'todos' },
  });

  // Writes in flight, by todo id: the value the user asked for, until the synced row shows it.
  const [pending, setPending] = useState(() => new Map());
  const [draft, setDraft] = useState('');
  // The id of a todo we created and are waiting to see come back through the shape.
  const [adding, setAdding] = useState(null);
  const [writeError, setWriteError] = useState(null);
  const slowStart = useTakingLong(isLoading && !error, 5000);

  const todos = useMemo(
    () => data.map((t) => ({ ...t, micros: timestamptzMicros(t.created_at) })).sort(byCreation),
    [data],
  );
  const byId = useMemo(() => new Map(todos.map((t) => [t.id, t])), [todos]);

  const settled = (id, want) => {
    const row = byId.get(id);
    return want.deleted ? !row : !row || row.completed === want.completed;
  };
  useEffect(() => {
    if ([...pending].some(([id, want]) => settled(id, want))) {
      setPending((prev) => new Map([...prev].filter(([id, want]) => !settled(id, want))));
    }
    if (adding && adding !== true && byId.has(adding)) {
      setAdding(null);
      setDraft('');
    }
  });

  const write = async (id, want, action) => {
    setWriteError(null);
    setPending((prev) => new Map(prev).set(id, want));
    try {
      await action();
    } catch (e) {
      setWriteError(e.message);
      setPending((prev) => {
        const next = new Map(prev);
        next.delete(id);
        return next;
      });
    }
  };

  const onSubmit = async (event) => {
    event.preventDefault();
    const title = draft.trim();
    if (!title || adding) return;
    setWriteError(null);
    setAdding(true);
    try {
      const row = await addTodo(title);
      setAdding(row.id);
    } catch (e) {
      setWriteError(e.message);
      setAdding(null);
    }
  };

  const remaining = todos.filter((t) => !(pending.get(t.id)?.completed ?? t.completed)).length;

  let body;
  if (error) {
    body = (
      <div className="state error" role="alert">
        <strong>Can’t sync todos</strong>
        <p className="detail">{describeSyncError(error)}</p>
        <p className="hint">
          Is Ampere running at <code>{SHAPE_URL}</code>, and does the <code>todos</code> table exist
          (<code>schema.sql</code>)?
        </p>
        <button type="button" onClick={() => window.location.reload()}>
          Try again
        </button>
      </div>
    );
  } else if (isLoading) {
    body = (
      <div className="state loading" role="status">
        <span className="spinner" aria-hidden="true" />
        Loading todos…
        {slowStart && (
          <p className="hint">
            Still trying to reach Ampere at <code>{SHAPE_URL}</code>.
          </p>
        )}
      </div>
    );
  } else if (todos.length === 0) {
    body = <p className="state empty">Nothing to do. Add your first todo above.</p>;
  } else {
    body = (
      <ul className="todos" data-testid="todo-list">
        {todos.map((t) => {
          const want = pending.get(t.id);
          const completed = want?.completed ?? t.completed;
          return (
            <li
              key={t.id}
              className={`todo${completed ? ' done' : ''}${want?.deleted ? ' leaving' : ''}`}
              data-todo-id={t.id}
              aria-busy={want ? 'true' : 'false'}
            >
              <label>
                <input
                  type="checkbox"
                  checked={completed}
                  disabled={Boolean(want)}
                  onChange={() => write(t.id, { completed: !completed }, () => setCompleted(t.id, !completed))}
                />
                <span className="title">{t.title}</span>
              </label>
              <time dateTime={t.created_at}>{shortWhen(t.micros)}</time>
              <button
                type="button"
                className="delete"
                aria-label={`Delete “${t.title}”`}
                disabled={Boolean(want)}
                onClick={() => write(t.id, { deleted: true }, () => deleteTodo(t.id))}
              >
                ×
              </button>
            </li>
          );
        })}
      </ul>
    );
  }

  return (
    <main className="app">
      <header>
        <h1>Todos</h1>
        <p className="tagline">Postgres → Ampere → your browser, live.</p>
      </header>
      <section className="card">
        <form className="new-todo" onSubmit={onSubmit}>
          <input
            aria-label="New todo"
            placeholder="What needs doing?"
            value={draft}
            maxLength={200}
            disabled={Boolean(adding)}
            onChange={(e) => setDraft(e.target.value)}
          />
          <button type="submit" disabled={Boolean(adding) || !draft.trim()}>
            {adding ? 'Adding…' : 'Add'}
          </button>
        </form>
        {writeError && (
          <p className="write-error" role="alert">
            {writeError}
            <button type="button" onClick={() => setWriteError(null)} aria-label="Dismiss">
              ×
            </button>
          </p>
        )}
        {body}
        <footer>
          <span>
            {isLoading || error ? '' : todos.length === 0 ? 'No todos' : `${remaining} of ${todos.length} left`}
          </span>
          <span className={`sync ${error ? 'off' : isLoading ? 'wait' : 'live'}`} data-testid="sync-status">
            <span className="dot" aria-hidden="true" />
            {error ? 'Not syncing' : isLoading ? 'Connecting' : 'Live'}
            {lastSyncedAt && !error ? ` · synced ${new Date(lastSyncedAt).toLocaleTimeString()}` : ''}
          </span>
        </footer>
      </section>
    </main>
  );
}
