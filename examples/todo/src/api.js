// The write path. Writes never go to Ampere (it only reads from Postgres' replication stream):
// they go to the example's own server (server.mjs), which writes to Postgres; the change then
// comes back to every open page through the shape.

async function call(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) {
    let message = `${method} ${path} failed with HTTP ${res.status}`;
    try {
      const json = await res.json();
      if (json?.error) message = json.error;
    } catch {
      // not JSON: keep the status line
    }
    throw new Error(message);
  }
  return res.status === 204 ? null : res.json();
}

export const addTodo = (title) => call('POST', '/api/todos', { title });
export const setCompleted = (id, completed) => call('PATCH', `/api/todos/${encodeURIComponent(id)}`, { completed });
export const deleteTodo = (id) => call('DELETE', `/api/todos/${encodeURIComponent(id)}`);
