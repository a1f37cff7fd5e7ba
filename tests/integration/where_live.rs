//! The where-clause language live: shapes with each kind of clause (indexed by equality, IN,
//! ranges, LIKE prefixes, IS NULL and array containment, or not indexable at all) follow a
//! table through inserts, updates that move rows in and out, and deletes; afterwards each
//! shape's materialised rows equal `SELECT … WHERE <the same clause>` in Postgres.

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::support::*;

/// One shape per kind of clause.
const CLAUSES: &[&str] = &[
    // equality (and key normalisation: `score = 1` must see `1.0`)
    "status = 'open'",
    "score = 1",
    "5 = priority",
    // IN lists and ORs of equalities
    "priority IN (1, 3)",
    "status = 'open' OR priority = 4",
    // ranges
    "priority BETWEEN 2 AND 4",
    "score > 1.5",
    "created >= '2024-03-01' AND created < '2024-04-01'",
    // LIKE prefix
    "title LIKE 'ab%'",
    // IS NULL
    "note IS NULL",
    // arrays: ANY, containment, overlap, equality
    "'red' = ANY(tags)",
    "tags @> '{red,blue}'",
    "'{1,2}' <@ nums",
    "nums && '{7,8}'",
    "status = 'open' AND tags @> '{red}'",
    "priority = ANY('{2,5}')",
    // json paths (indexed), jsonb containment and key tests (evaluated)
    "data->>'kind' = 'a'",
    "data->'meta'->>'owner' = 'ann'",
    "data @> '{\"flags\": [\"x\"]}'",
    "data ? 'meta'",
    // not indexable: evaluated for every change of the table
    "lower(title) = 'abc' OR priority + 1 > 5",
    "NOT ('green' = ANY(tags))",
    "nums[1] = 1",
];

const COLUMNS: &[&str] = &[
    "id", "title", "status", "priority", "tags", "nums", "note", "data",
];
const SELECT: &str = "SELECT id::text, title, status, priority::text, tags::text, nums::text, \
     note, data::text FROM items";

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

async fn assert_shapes_match(pg: &Pg, base: &str, followers: &mut [Follower], when: &str) {
    for (clause, f) in CLAUSES.iter().zip(followers.iter_mut()) {
        let want = sorted(pg.rows(&format!("{SELECT} WHERE {clause}")).await);
        f.until(base, &format!("{when}: `{clause}`"), |f| {
            f.table(COLUMNS) == want
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_where_clause_follows_inserts_updates_and_deletes() {
    let pg = Pg::start().await;
    pg.exec(
        "CREATE TABLE items (id int PRIMARY KEY, title text, status text, priority int,
           score float8, created date, tags text[], nums int[], note text, data jsonb);
         INSERT INTO items
           SELECT g,
                  (ARRAY['abc', 'ABC', 'abx', 'xyz', NULL])[g % 5 + 1],
                  (ARRAY['open', 'done', NULL])[g % 3 + 1],
                  g % 6,
                  (ARRAY[1.0, 1.5, 2, NULL])[g % 4 + 1],
                  date '2024-02-20' + g,
                  (ARRAY['{red,blue}', '{red}', '{green,NULL}', '{}', NULL])[g % 5 + 1]::text[],
                  (ARRAY['{1,2}', '{{1,2},{7,9}}', '{8}', NULL])[g % 4 + 1]::int[],
                  CASE WHEN g % 2 = 0 THEN 'n' END,
                  (ARRAY['{\"kind\": \"a\", \"flags\": [\"x\", \"y\"]}',
                         '{\"kind\": \"b\", \"meta\": {\"owner\": \"ann\"}}',
                         '[\"meta\"]', 'null', NULL])[g % 5 + 1]::jsonb
           FROM generate_series(1, 40) g",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = server.base.clone();

    let mut followers: Vec<Follower> = CLAUSES
        .iter()
        .map(|c| Follower::new(&format!("table=items&where={}", enc(c))))
        .collect();
    for f in &mut followers {
        f.sync(&base).await;
    }
    assert_shapes_match(&pg, &base, &mut followers, "initial snapshot").await;

    // Inserts, updates moving rows into and out of every shape (through each filtered
    // column, including array elements), a key change, and deletes, over several commits.
    pg.exec(
        "INSERT INTO items VALUES
           (100, 'abz', 'open', 5, 1, '2024-03-15', '{red,blue,green}', '{1,2,3}', NULL,
            '{\"kind\": \"a\", \"meta\": {\"owner\": \"ann\"}}'),
           (101, 'ABC', NULL, NULL, NULL, NULL, NULL, NULL, 'x', '{\"flags\": [\"x\"]}'),
           (102, 'q', 'done', 3, 2.5, '2024-05-01', '{blue}', '{7}', NULL, NULL)",
    )
    .await;
    pg.exec(
        "BEGIN;
         UPDATE items SET status = 'open' WHERE id BETWEEN 1 AND 6;
         UPDATE items SET status = 'done' WHERE id BETWEEN 7 AND 12;
         UPDATE items SET priority = priority + 1 WHERE id % 7 = 0;
         UPDATE items SET score = 1.0 WHERE id % 9 = 0;
         UPDATE items SET score = 1.25 WHERE id % 10 = 0;
         UPDATE items SET created = created + 20 WHERE id % 4 = 0;
         COMMIT",
    )
    .await;
    pg.exec(
        "UPDATE items SET tags = array_append(tags, 'red') WHERE id % 3 = 0;
         UPDATE items SET tags = array_remove(tags, 'red') WHERE id % 5 = 1;
         UPDATE items SET tags = '{green}' WHERE id = 100;
         UPDATE items SET nums = '{2,1}' WHERE id % 8 = 3;
         UPDATE items SET nums = NULL WHERE id % 8 = 1;
         UPDATE items SET title = 'abc' WHERE id = 102;
         UPDATE items SET title = 'zz' WHERE id % 5 = 0;
         UPDATE items SET note = NULL WHERE id % 6 = 0;
         UPDATE items SET note = 'set' WHERE id % 6 = 1;
         UPDATE items SET data = data || '{\"kind\": \"a\"}' WHERE id % 4 = 1 AND jsonb_typeof(data) = 'object';
         UPDATE items SET data = '{\"kind\": \"z\", \"kind\": \"a\"}' WHERE id = 7;
         UPDATE items SET data = data - 'meta' WHERE id % 3 = 1 AND jsonb_typeof(data) = 'object';
         UPDATE items SET data = jsonb_set(data, '{meta}', '{\"owner\": \"bob\"}') WHERE id % 5 = 1 AND data ? 'meta';
         UPDATE items SET id = 200 WHERE id = 2;",
    )
    .await;
    pg.exec("DELETE FROM items WHERE id % 11 = 0 OR id = 101")
        .await;
    assert_shapes_match(&pg, &base, &mut followers, "after changes").await;
    for f in &followers {
        assert_eq!(f.refetches, 0, "{}: no shape was invalidated", f.query);
    }
    server.stop().await;
}
