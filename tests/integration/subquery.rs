//! Subqueries in where clauses, live: shapes on `tasks` whose clause reads `projects` (and
//! `orgs`) through `IN (SELECT …)` follow changes to both tables. After each step every
//! follower's rows equal `SELECT … WHERE <the same clause>` on Postgres; a change to the inner
//! table that moves a value into or out of the subquery's result invalidates (409) exactly the
//! shapes that use it, and changes that keep the result do not.

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use crate::support::*;

const CLAUSES: &[&str] = &[
    "project_id IN (SELECT id FROM projects WHERE org = 5)",
    "project_id NOT IN (SELECT id FROM projects WHERE org = 5)",
    "(project_id, owner) IN (SELECT id, lead FROM projects)",
    "done AND project_id IN (SELECT id FROM projects WHERE org IN (SELECT id FROM orgs WHERE region = 'eu'))",
    "project_id IN (SELECT id FROM projects WHERE org = 5) OR owner = 'zed'",
];

const COLUMNS: &[&str] = &["id", "project_id", "owner", "done"];
const SELECT: &str = "SELECT id::text, project_id::text, owner, done FROM tasks";

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

async fn setup() -> Pg {
    let pg = Pg::start().await;
    pg.exec(
        "CREATE TABLE orgs (id int PRIMARY KEY, region text);
         CREATE TABLE projects (id int PRIMARY KEY, org int, lead text);
         CREATE TABLE tasks (id int PRIMARY KEY, project_id int, owner text, done bool);
         INSERT INTO orgs VALUES (5, 'eu'), (6, 'us'), (7, 'eu');
         INSERT INTO projects VALUES (1, 5, 'ann'), (2, 5, 'bob'), (3, 6, 'ann'), (4, 7, NULL);
         INSERT INTO tasks
           SELECT g, (ARRAY[1, 2, 3, 4, NULL])[g % 5 + 1],
                  (ARRAY['ann', 'bob', 'zed', NULL])[g % 4 + 1], g % 2 = 0
           FROM generate_series(1, 30) g",
    )
    .await;
    pg
}

async fn converge(pg: &Pg, base: &str, followers: &mut [Follower], when: &str) {
    for (clause, f) in CLAUSES.iter().zip(followers.iter_mut()) {
        let want = sorted(pg.rows(&format!("{SELECT} WHERE {clause}")).await);
        f.until(base, &format!("{when}: `{clause}`"), |f| {
            f.table(COLUMNS) == want
        })
        .await;
    }
}

fn refetches(followers: &[Follower]) -> Vec<usize> {
    followers.iter().map(|f| f.refetches).collect()
}

fn followers() -> Vec<Follower> {
    CLAUSES
        .iter()
        .map(|c| Follower::new(&format!("table=tasks&where={}", enc(c))))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subquery_shapes_follow_both_tables_and_refetch_only_on_membership_changes() {
    let pg = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = server.base.clone();
    let mut fs = followers();
    converge(&pg, &base, &mut fs, "initial snapshot").await;

    // Outer-table changes only: inserts, updates moving rows across, deletes.
    pg.exec(
        "INSERT INTO tasks VALUES (100, 1, 'ann', true), (101, 3, 'zed', false), (102, NULL, 'x', true);
         UPDATE tasks SET project_id = 2 WHERE id IN (3, 4);
         UPDATE tasks SET project_id = 3 WHERE id = 5;
         UPDATE tasks SET owner = 'bob', done = true WHERE id % 7 = 0;
         DELETE FROM tasks WHERE id % 9 = 0",
    )
    .await;
    converge(&pg, &base, &mut fs, "after task changes").await;
    assert_eq!(refetches(&fs), vec![0; CLAUSES.len()]);

    // Inner-table changes that keep every subquery's result, then marker rows every shape
    // (but NOT IN's / the others') matches, so converging proves they were processed.
    pg.exec(
        "UPDATE projects SET lead = lead;
         UPDATE projects SET org = org WHERE id = 1;
         UPDATE orgs SET region = 'eu' WHERE id = 5;
         UPDATE orgs SET region = 'asia' WHERE id = 6",
    )
    .await;
    pg.exec("INSERT INTO tasks VALUES (300, 1, 'ann', true), (301, 3, 'q', false)")
        .await;
    converge(&pg, &base, &mut fs, "after neutral inner changes").await;
    assert_eq!(
        refetches(&fs),
        vec![0; CLAUSES.len()],
        "no membership change, no refetch"
    );

    // A new project outside org 5 only changes the (id, lead) set.
    pg.exec("INSERT INTO projects VALUES (10, 6, 'ann')").await;
    pg.exec("INSERT INTO tasks VALUES (302, 10, 'ann', true)")
        .await;
    converge(&pg, &base, &mut fs, "after a new project elsewhere").await;
    assert_eq!(refetches(&fs), vec![0, 0, 1, 0, 0]);

    // Project 3 moves into org 5: the org-5 shapes (IN, NOT IN, OR) must refetch; the
    // row-form one sees the same (id, lead) tuples; the nested one's inner set changes too
    // (3 becomes a project of an eu org).
    pg.exec("UPDATE projects SET org = 5 WHERE id = 3").await;
    converge(&pg, &base, &mut fs, "after a move in").await;
    assert_eq!(refetches(&fs), vec![1, 1, 1, 1, 1]);

    // A project's lead changes: only the row-form shape depends on leads.
    pg.exec("UPDATE projects SET lead = 'zed' WHERE id = 1")
        .await;
    converge(&pg, &base, &mut fs, "after a lead change").await;
    assert_eq!(refetches(&fs), vec![1, 1, 2, 1, 1]);

    // A NULL enters org 5's set: NOT IN can no longer be TRUE; the positive uses keep their
    // rows and are not invalidated.
    pg.exec(
        "ALTER TABLE projects DROP CONSTRAINT projects_pkey;
         ALTER TABLE projects ALTER COLUMN id DROP NOT NULL",
    )
    .await;
    pg.exec("INSERT INTO projects VALUES (NULL, 5, 'x')").await;
    converge(&pg, &base, &mut fs, "after a NULL in the set").await;
    assert_eq!(refetches(&fs), vec![1, 2, 2, 1, 1]);
    assert!(
        pg.rows(&format!("{SELECT} WHERE {}", CLAUSES[1]))
            .await
            .is_empty()
    );

    // Deleting the inner rows and truncating.
    pg.exec("DELETE FROM projects WHERE id = 2").await;
    converge(&pg, &base, &mut fs, "after an inner delete").await;
    pg.exec("TRUNCATE orgs").await;
    converge(&pg, &base, &mut fs, "after truncating the nested table").await;
    pg.exec("INSERT INTO orgs VALUES (5, 'eu')").await;
    converge(&pg, &base, &mut fs, "after refilling it").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subquery_shapes_stay_consistent_across_a_restart() {
    let pg = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = server.base.clone();
    let mut fs = followers();
    converge(&pg, &base, &mut fs, "initial snapshot").await;
    server.stop().await;

    // While the server is down: outer and inner changes, some moving values across.
    pg.exec(
        "INSERT INTO tasks VALUES (200, 2, 'bob', true), (201, 4, 'zed', true);
         UPDATE projects SET org = 6 WHERE id = 2;
         INSERT INTO projects VALUES (9, 5, 'bob');
         UPDATE tasks SET project_id = 9 WHERE id = 1",
    )
    .await;
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = server.base.clone();
    converge(&pg, &base, &mut fs, "after a restart").await;

    // And it keeps following afterwards.
    pg.exec(
        "UPDATE projects SET org = 5 WHERE id = 2;
         INSERT INTO tasks VALUES (202, 2, 'ann', true)",
    )
    .await;
    converge(&pg, &base, &mut fs, "after changes past the restart").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subquery_validation_errors_are_electric_400s() {
    let pg = setup().await;
    pg.exec("CREATE TABLE big (id int8 PRIMARY KEY)").await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(test_config(&pg, dir.path())).await;
    let cases: &[(&str, &str)] = &[
        (
            "project_id IN (SELECT id FROM big)",
            "At location 0: left side of `IN (SELECT ...)` has type int4 but subquery returns int8",
        ),
        (
            "EXISTS (SELECT id FROM projects)",
            "At location 0: only `value IN (SELECT ...)` sublinks are supported right now",
        ),
        (
            "project_id IN (SELECT id FROM nope)",
            "At location 30: Table \"public\".\"nope\" does not exist. If the table name contains capitals or special characters you must quote it.",
        ),
        (
            "project_id IN (SELECT id FROM projects WHERE lead = owner)",
            "At location 52: unknown reference owner",
        ),
    ];
    for (clause, message) in cases {
        let r = get(
            &server.base,
            &format!("table=tasks&offset=-1&where={}", enc(clause)),
        )
        .await;
        assert_eq!(r.status, 400, "{clause}: {}", r.text);
        assert_eq!(
            r.body,
            serde_json::json!({"message": "Invalid request", "errors": {"where": [message]}}),
            "{clause}"
        );
    }
    server.stop().await;
}
