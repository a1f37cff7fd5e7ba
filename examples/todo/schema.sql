-- The todo example's one table. Ampere syncs it to the page; the example's server writes to it.
-- Needs Postgres 13+ (gen_random_uuid() is built in from 13 on).
CREATE TABLE IF NOT EXISTS todos (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  title text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
  completed boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now()
);
