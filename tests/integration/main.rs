//! Integration tests: the real server (in-process on port 0, or the real binary for crash tests)
//! against a throwaway Postgres per test.

mod checklist;
mod cli;
mod fault_proxy;
mod faults;
mod http_framing;
mod http_hostile;
mod metrics;
mod process_faults;
mod storage_faults;
mod subquery;
mod support;
mod where_live;

use std::time::Duration;

use serde_json::Value;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_syncs_the_initial_rows_then_sees_live_changes() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE items (id int PRIMARY KEY, title text); INSERT INTO items VALUES (1, 'a'), (2, 'b/c'), (3, NULL)").await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = &server.base;

    let r = get(base, "table=items&offset=-1").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let handle = r.h("electric-handle").unwrap().to_owned();
    assert!(
        handle
            .split_once('-')
            .is_some_and(|(a, b)| a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok())
    );
    assert_eq!(r.h("electric-offset"), Some("0_0"));
    assert_eq!(r.h("electric-has-data"), Some("true"));
    assert_eq!(r.h("electric-up-to-date"), None);
    assert_eq!(r.h("etag"), Some(format!("\"{handle}:-1:0_0\"").as_str()));
    assert_eq!(
        r.h("cache-control"),
        Some("public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746")
    );
    assert_eq!(
        r.h("electric-schema"),
        Some(r#"{"id":{"type":"int4","pk_index":0,"not_null":true},"title":{"type":"text"}}"#)
    );
    let msgs = r.messages();
    assert_eq!(msgs.len(), 4);
    assert_eq!(msgs[0]["key"], r#""public"."items"/"1""#);
    assert_eq!(msgs[1]["key"], r#""public"."items"/"2""#);
    assert_eq!(
        msgs[1]["value"],
        serde_json::json!({"id": "2", "title": "b/c"})
    );
    assert_eq!(msgs[2]["value"]["title"], Value::Null);
    assert_eq!(
        msgs[0]["headers"],
        serde_json::json!({"operation": "insert", "relation": ["public", "items"]})
    );
    let end = &msgs[3]["headers"];
    assert_eq!(end["control"], "snapshot-end");
    assert!(end["xmin"].is_string() && end["xmax"].is_string() && end["xip_list"].is_array());

    // Same definition (columns in any order) → same handle.
    let again = get(base, "table=items&offset=-1&columns=title,id").await;
    assert_ne!(
        again.h("electric-handle"),
        Some(handle.as_str()),
        "explicit columns are a different shape"
    );
    let same = get(base, "table=Items&offset=-1&cursor=5&foo=bar").await;
    assert_eq!(same.h("electric-handle"), Some(handle.as_str()));

    let r = get(base, &format!("table=items&offset=0_0&handle={handle}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.h("electric-offset"), Some("0_inf"));
    assert_eq!(r.h("electric-up-to-date"), Some(""));
    assert_eq!(
        r.h("cache-control"),
        Some("public, max-age=60, stale-while-revalidate=300")
    );
    assert_eq!(r.messages().len(), 1);
    assert!(
        r.messages()[0]["headers"]["global_last_seen_lsn"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );

    // A live request parks, then returns promptly after a commit.
    let live_url = format!("table=items&offset=0_inf&handle={handle}&live=true&cursor=");
    let b = base.clone();
    let parked = tokio::spawn(async move { get(&b, &live_url).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.exec("BEGIN; INSERT INTO items VALUES (10, 'x'); INSERT INTO items VALUES (11, 'y'); INSERT INTO items VALUES (12, 'z'); COMMIT").await;
    let r = parked.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    let msgs = r.messages();
    assert_eq!(msgs.len(), 4, "{}", r.text);
    let lsn = msgs[0]["headers"]["lsn"].as_str().unwrap().to_owned();
    let positions: Vec<u64> = msgs[..3]
        .iter()
        .map(|m| m["headers"]["op_position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions, vec![0, 2, 4]);
    assert!(msgs[0]["headers"]["txids"][0].is_u64());
    assert_eq!(msgs[0]["headers"].get("last"), None);
    assert_eq!(msgs[2]["headers"]["last"], true);
    assert_eq!(msgs[3]["headers"]["global_last_seen_lsn"], lsn.as_str());
    assert!(
        lsn.parse::<u64>().unwrap() > u64::from(u32::MAX),
        "the test cluster has LSNs above 2^32"
    );
    assert_eq!(r.h("electric-offset"), Some(format!("{lsn}_4").as_str()));
    assert!(
        r.h("electric-cursor")
            .is_some_and(|c| c.parse::<u64>().is_ok())
    );
    assert_eq!(r.h("electric-schema"), None);
    assert_eq!(
        r.h("cache-control"),
        Some("public, max-age=5, stale-while-revalidate=5")
    );

    // An unrelated change first shifts op positions; updates carry only changed columns.
    pg.exec("CREATE TABLE other (id int PRIMARY KEY)").await;
    assert_eq!(get(base, "table=other&offset=-1").await.status, 200); // publishes `other`
    pg.exec("BEGIN; INSERT INTO other VALUES (1); UPDATE items SET title = 'A' WHERE id = 1; DELETE FROM items WHERE id = 2; COMMIT").await;
    let r = get(
        base,
        &format!("table=items&offset={lsn}_4&handle={handle}&live=true"),
    )
    .await;
    let msgs = r.messages();
    assert_eq!(msgs[0]["headers"]["operation"], "update");
    assert_eq!(msgs[0]["headers"]["op_position"], 2);
    assert_eq!(
        msgs[0]["value"],
        serde_json::json!({"id": "1", "title": "A"})
    );
    assert_eq!(msgs[1]["headers"]["operation"], "delete");
    assert_eq!(msgs[1]["value"], serde_json::json!({"id": "2"}));
    assert_eq!(msgs[1]["headers"]["last"], true);

    // Live at the end with nothing happening: after the timeout, 200 [up-to-date], offset unchanged.
    let at = r.h("electric-offset").unwrap().to_owned();
    let r = get(
        base,
        &format!("table=items&offset={at}&handle={handle}&live=true"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.h("electric-offset"), Some(at.as_str()));
    assert_eq!(r.h("electric-has-data"), Some("false"));
    assert_eq!(r.messages().len(), 1);
    assert_eq!(r.h("etag").unwrap().matches(':').count(), 3);

    // A full follower converges to the table.
    let mut f = Follower::new("table=items");
    f.sync(base).await;
    let expected = pg.rows("SELECT id::text, title FROM items").await;
    assert_eq!(f.table(&["id", "title"]), sorted(expected));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_columns_and_replica_modes_follow_rows_in_and_out() {
    let pg = Pg::start().await;
    pg.exec(
        "CREATE TABLE tasks (id int PRIMARY KEY, title text, status text, priority int, note text);
         INSERT INTO tasks SELECT g, 't' || g, CASE WHEN g % 2 = 0 THEN 'open' ELSE 'done' END, g % 5, 'n' FROM generate_series(1, 20) g",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = &server.base;
    let q_open = "table=tasks&where=status%20%3D%20%27open%27&columns=id,title,status";
    let q_prio = "table=tasks&where=priority%20%3E%20%241&params%5B1%5D=2&replica=full";
    let mut open = Follower::new(q_open);
    let mut prio = Follower::new(q_prio);
    open.sync(base).await;
    prio.sync(base).await;
    assert_eq!(open.rows.len(), 10);
    assert!(
        open.rows
            .values()
            .all(|r| r.len() == 3 && r["status"] == "open")
    );
    assert_eq!(prio.rows.len(), 8);

    pg.exec("UPDATE tasks SET status = 'done' WHERE id = 2")
        .await; // moves out of `open`
    pg.exec("UPDATE tasks SET status = 'open' WHERE id = 1")
        .await; // moves in
    pg.exec("UPDATE tasks SET note = 'changed' WHERE id = 4")
        .await; // unselected column only
    pg.exec("UPDATE tasks SET id = 100 WHERE id = 6").await; // key change
    pg.exec("UPDATE tasks SET priority = 4, title = 'T3' WHERE id = 3")
        .await;
    pg.exec("DELETE FROM tasks WHERE id = 8").await;
    pg.exec("INSERT INTO tasks VALUES (200, 'new', 'open', 9, 'n')")
        .await;

    let want_open = sorted(
        pg.rows("SELECT id::text, title, status FROM tasks WHERE status = 'open'")
            .await,
    );
    open.until(base, "open shape converges", |f| {
        f.table(&["id", "title", "status"]) == want_open
    })
    .await;
    let want_prio = sorted(
        pg.rows(
            "SELECT id::text, title, status, priority::text, note FROM tasks WHERE priority > 2",
        )
        .await,
    );
    prio.until(base, "priority shape converges", |f| {
        f.table(&["id", "title", "status", "priority", "note"]) == want_prio
    })
    .await;

    // The update of an unselected column produced nothing for `open`; the key change was a
    // delete + insert pair; replica=full updates carry the whole row and old values.
    let h = open.handle.clone().unwrap();
    let r = get(base, &format!("{q_open}&offset=0_inf&handle={h}")).await;
    let msgs: Vec<&Value> = r
        .messages()
        .iter()
        .filter(|m| m.get("key").is_some())
        .collect();
    assert!(
        msgs.iter().all(|m| m["key"] != r#""public"."tasks"/"4""#),
        "no message for an unselected change"
    );
    let kc: Vec<&&Value> = msgs
        .iter()
        .filter(|m| m["headers"].get("key_change_to").is_some())
        .collect();
    assert_eq!(kc.len(), 1);
    assert_eq!(
        kc[0]["headers"]["key_change_to"],
        r#""public"."tasks"/"100""#
    );
    let ph = prio.handle.clone().unwrap();
    let r = get(base, &format!("{q_prio}&offset=0_inf&handle={ph}")).await;
    let upd = r
        .messages()
        .iter()
        .find(|m| m["headers"]["operation"] == "update" && m["key"] == r#""public"."tasks"/"3""#)
        .expect("the update of row 3");
    assert_eq!(upd["value"].as_object().unwrap().len(), 5);
    assert_eq!(
        upd["old_value"],
        serde_json::json!({"priority": "3", "title": "t3"})
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_electrics_error_bodies() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE items (id int PRIMARY KEY, title text)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = &server.base;
    let cases = [
        ("table=items", "offset", "can't be blank"),
        ("table=items&offset=abc", "offset", "has invalid format"),
        (
            "table=items&offset=0_0",
            "handle",
            "can't be blank when offset != -1",
        ),
        (
            "table=items&offset=-1&live=true",
            "live",
            "can't be true when offset == -1",
        ),
        ("offset=-1", "table", "can't be blank"),
        (
            "table=items&offset=-1&replica=bogus",
            "replica",
            "is invalid",
        ),
        (
            "table=nonexistent&offset=-1",
            "table",
            "Table \"public\".\"nonexistent\" does not exist. If the table name contains capitals or special characters you must quote it.",
        ),
        (
            "table=items&offset=-1&columns=title",
            "columns",
            "The list of columns must include all primary key columns, missing: id",
        ),
        (
            "table=items&offset=-1&columns=id,foo",
            "columns",
            "The following columns are not found on the table: foo",
        ),
    ];
    for (q, key, msg) in cases {
        let r = get(base, q).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert_eq!(r.body["message"], "Invalid request");
        assert_eq!(r.body["errors"][key], serde_json::json!([msg]), "{q}");
        assert_eq!(r.h("cache-control"), Some("no-store"));
        assert_eq!(r.h("surrogate-control"), Some("no-store"));
        assert_eq!(r.h("electric-handle"), None);
    }
    for q in [
        "table=items&offset=-1&where=nope%20%3D%201",
        "table=items&offset=-1&where=id%20%3D%201%3B%20drop%20table%20items",
    ] {
        let r = get(base, q).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert!(r.body["errors"]["where"][0].is_string(), "{}", r.text);
    }
    // 409 for an unknown handle, with the current handle of the definition.
    let r = get(base, "table=items&offset=0_0&handle=123-456").await;
    assert_eq!(r.status, 409);
    assert_eq!(r.text, r#"[{"headers":{"control":"must-refetch"}}]"#);
    assert_eq!(
        r.h("cache-control"),
        Some("public, max-age=60, must-revalidate")
    );
    let current = r.h("electric-handle").unwrap().to_owned();
    assert_ne!(current, "123-456");
    // A known handle with another where → 409 with that definition's handle.
    let r = get(
        base,
        &format!("table=items&offset=0_0&handle={current}&where=id%20%3E%201"),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_ne!(r.h("electric-handle"), Some(current.as_str()));
    // Routing, CORS, health.
    let http = reqwest::Client::new();
    let r = http.get(format!("{base}/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.text().await.unwrap(), "Not found");
    let r = http.get(format!("{base}/v1/health")).send().await.unwrap();
    assert_eq!(
        r.headers()["cache-control"],
        "no-cache, no-store, must-revalidate"
    );
    assert_eq!(r.text().await.unwrap(), r#"{"status":"active"}"#);
    let r = http
        .request(reqwest::Method::OPTIONS, format!("{base}/v1/shape"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(r.headers()["access-control-max-age"], "86400");
    assert!(r.headers().get("cache-control").is_none());
    let r = get(base, "table=items&offset=-1").await;
    assert_eq!(
        r.h("access-control-expose-headers"),
        Some(
            "electric-cursor,electric-handle,electric-has-data,electric-offset,electric-schema,electric-up-to-date,electric-internal-known-error,retry-after"
        )
    );
    assert_eq!(
        r.h("access-control-allow-methods"),
        Some("GET, POST, HEAD, DELETE, OPTIONS")
    );
    assert!(
        r.h("electric-server")
            .is_some_and(|v| v.starts_with("ElectricSQL/"))
    );
    // If-None-Match → 304.
    let etag = r.h("etag").unwrap().to_owned();
    let r2 = get_with(base, "table=items&offset=-1", &[("if-none-match", &etag)]).await;
    assert_eq!(r2.status, 304);
    // Also for a caught-up response ([up-to-date] at the end of the log).
    let h = r.h("electric-handle").unwrap().to_owned();
    let q = format!("table=items&offset=0_0&handle={h}");
    let r3 = get(base, &q).await;
    let etag = r3.h("etag").unwrap().to_owned();
    let r4 = get_with(base, &q, &[("if-none-match", &etag)]).await;
    assert_eq!(r4.status, 304);
    assert_eq!(r4.h("electric-up-to-date"), Some(""));
    assert_eq!(r4.h("electric-schema"), None);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_protects_every_path_variant() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE items (id int PRIMARY KEY)").await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&pg, dir.path());
    config.secret = Some("s3cret".into());
    let server = Server::start(config).await;
    let http = reqwest::Client::new();
    for path in ["/v1/shape", "/v1/shape/", "/v1//shape", "/v1/%73hape"] {
        let r = http
            .get(format!("{}{path}?table=items&offset=-1", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(
            r.text().await.unwrap(),
            r#"{"message":"Unauthorized - Invalid API secret"}"#
        );
        let r = http
            .get(format!(
                "{}{path}?table=items&offset=-1&secret=s3cret",
                server.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = http
        .get(format!(
            "{}/v1/shape?table=items&offset=-1&api_secret=s3cret",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_and_delete_rotate_the_handle() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1), (2)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = &server.base;
    let mut f = Follower::new("table=items");
    f.sync(base).await;
    let h1 = f.handle.clone().unwrap();
    pg.exec("TRUNCATE items; INSERT INTO items VALUES (3)")
        .await;
    f.until(base, "refetch after truncate", |f| {
        f.refetches > 0 && f.rows.len() == 1 && f.rows.contains_key(r#""public"."items"/"3""#)
    })
    .await;
    let h2 = f.handle.clone().unwrap();
    assert_ne!(h1, h2);

    let http = reqwest::Client::new();
    let r = http
        .delete(format!("{base}/v1/shape?handle={h2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = get(base, &format!("table=items&offset=0_inf&handle={h2}")).await;
    assert_eq!(r.status, 409);
    let h3 = r.h("electric-handle").unwrap().to_owned();
    assert!(h3 != h1 && h3 != h2);
    let r = http
        .delete(format!("{base}/v1/shape?handle=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    server.stop().await;
}

/// Shapes created while writers are busy agree with Postgres (snapshot/stream handover).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shapes_created_under_concurrent_writes_converge() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE acc (id int PRIMARY KEY, grp int, balance int); INSERT INTO acc SELECT g, g % 4, 100 FROM generate_series(1, 200) g").await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = server.base.clone();
    let url = pg.url();
    let writer = tokio::spawn(async move {
        let c = connect(&url).await;
        for i in 0..300u32 {
            let a = 1 + (i * 7) % 200;
            let b = 1 + (i * 13) % 200;
            c.batch_execute(&format!(
                "BEGIN; UPDATE acc SET balance = balance - 1 WHERE id = {a}; UPDATE acc SET balance = balance + 1 WHERE id = {b}; UPDATE acc SET grp = (grp + 1) % 4 WHERE id = {a}; COMMIT"
            ))
            .await
            .unwrap();
        }
    });
    let mut followers = Vec::new();
    for g in 0..4 {
        let mut f = Follower::new(&format!("table=acc&where=grp%20%3D%20{g}"));
        f.sync(&base).await;
        followers.push(f);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut all = Follower::new("table=acc");
    all.sync(&base).await;
    writer.await.unwrap();
    for (g, f) in followers.iter_mut().enumerate() {
        let want = sorted(
            pg.rows(&format!(
                "SELECT id::text, grp::text, balance::text FROM acc WHERE grp = {g}"
            ))
            .await,
        );
        f.until(&base, "group shape converges", |f| {
            f.table(&["id", "grp", "balance"]) == want
        })
        .await;
    }
    let want = sorted(
        pg.rows("SELECT id::text, grp::text, balance::text FROM acc")
            .await,
    );
    all.until(&base, "full shape converges", |f| {
        f.table(&["id", "grp", "balance"]) == want
    })
    .await;
    let total: i64 = all
        .rows
        .values()
        .map(|r| r["balance"].as_str().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(total, 200 * 100);
    server.stop().await;
}

/// SIGKILL of the real binary under load: every shape resumes with its handle and offset, no
/// 409, nothing lost or repeated; a fresh client agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_resumes_every_shape_without_loss() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE items (id int PRIMARY KEY, v int); INSERT INTO items SELECT g, 0 FROM generate_series(1, 50) g").await;
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let port = free_port();
    let mut bin = Binary::start(&pg.url(), &storage, port).await;
    let base = bin.base.clone();
    let queries = [
        "table=items",
        "table=items&where=v%20%3E%3D%202",
        "table=items&where=id%20%3C%3D%2010&columns=id",
    ];
    let mut followers: Vec<Follower> = queries.iter().map(|q| Follower::new(q)).collect();
    for f in &mut followers {
        f.sync(&base).await;
    }
    let url = pg.url();
    let writer = tokio::spawn(async move {
        let c = connect(&url).await;
        for i in 0..400u32 {
            let id = 1 + i % 60;
            c.batch_execute(&format!(
                "INSERT INTO items VALUES ({id}, 1) ON CONFLICT (id) DO UPDATE SET v = items.v + 1"
            ))
            .await
            .unwrap();
            if i % 50 == 49 {
                c.batch_execute(&format!(
                    "DELETE FROM items WHERE id = {}",
                    1 + (i / 50) % 60
                ))
                .await
                .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    // Kill mid-stream, three times, following in between.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        for f in &mut followers {
            f.sync(&base).await;
        }
        bin.kill9();
        drop(bin);
        bin = Binary::start(&pg.url(), &storage, port).await;
    }
    writer.await.unwrap();
    let wants = [
        sorted(pg.rows("SELECT id::text, v::text FROM items").await),
        sorted(
            pg.rows("SELECT id::text, v::text FROM items WHERE v >= 2")
                .await,
        ),
    ];
    for (i, f) in followers.iter_mut().enumerate() {
        let handle_before = f.handle.clone();
        if i < 2 {
            let want = wants[i].clone();
            f.until(&base, "converges after restarts", |f| {
                f.table(&["id", "v"]) == want
            })
            .await;
        } else {
            let want = sorted(pg.rows("SELECT id::text FROM items WHERE id <= 10").await);
            f.until(&base, "converges after restarts", |f| {
                f.table(&["id"]) == want
            })
            .await;
        }
        assert_eq!(f.refetches, 0, "no 409 after a restart");
        assert_eq!(f.handle, handle_before);
    }
    let mut fresh = Follower::new("table=items");
    fresh.sync(&base).await;
    assert_eq!(fresh.table(&["id", "v"]), wants[0]);
    assert_eq!(
        fresh.handle, followers[0].handle,
        "the shape survived the restarts"
    );
    drop(bin);
}

/// A graceful restart keeps shapes; new shapes get new handles, never reused ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_shapes_and_never_reuses_handles() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(test_config(&pg, dir.path())).await;
    let mut f = Follower::new("table=items");
    f.sync(&server.base).await;
    let h = f.handle.clone().unwrap();
    let http = reqwest::Client::new();
    assert_eq!(
        http.delete(format!("{}/v1/shape?handle={h}", server.base))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    let mut g = Follower::new("table=items");
    g.sync(&server.base).await;
    let h2 = g.handle.clone().unwrap();
    server.stop().await;
    pg.exec("INSERT INTO items VALUES (2)").await;
    let server = Server::start(test_config(&pg, dir.path())).await;
    g.until(&server.base, "sees the write made while down", |g| {
        g.rows.len() == 2
    })
    .await;
    assert_eq!(g.handle.as_deref(), Some(h2.as_str()));
    assert_eq!(g.refetches, 0);
    let r = get(
        &server.base,
        &format!("table=items&offset=0_inf&handle={h}"),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.h("electric-handle"), Some(h2.as_str()));
    server.stop().await;
}

#[test]
fn the_binary_refuses_to_start_without_a_secret_or_insecure_mode() {
    for (env, needle) in [
        (vec![], "ELECTRIC_SECRET"),
        (
            vec![("ELECTRIC_SECRET", "x"), ("ELECTRIC_INSECURE", "true")],
            "not both",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ampere"))
            .env_clear()
            .envs(env)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
    }
}

/// The walsender is killed mid-stream: Ampere reconnects, Postgres replays from the
/// acknowledged position, and nothing is applied twice or lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_replication_connection_replays_without_duplicates() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE items (id int PRIMARY KEY, v int)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = server.base.clone();
    let mut f = Follower::new("table=items");
    f.sync(&base).await;
    let url = pg.url();
    let writer = tokio::spawn(async move {
        let c = connect(&url).await;
        for i in 0..300u32 {
            c.batch_execute(&format!(
                "INSERT INTO items VALUES ({i}, {i}); UPDATE items SET v = v + 1 WHERE id = {}",
                i / 2
            ))
            .await
            .unwrap();
        }
    });
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        pg.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_replication")
            .await;
    }
    writer.await.unwrap();
    let want = sorted(pg.rows("SELECT id::text, v::text FROM items").await);
    f.until(&base, "converges across reconnects", |f| {
        f.table(&["id", "v"]) == want
    })
    .await;
    assert_eq!(f.refetches, 0);
    server.stop().await;
}

/// Small chunks: the snapshot is served as 0_0, 0_1, …, the log in chunk-sized responses, and
/// only the last response of the walk is up-to-date. Also `offset=now`, `log=changes_only`
/// and out-of-bounds offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_now_changes_only_and_out_of_bounds() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE items (id int PRIMARY KEY, title text); INSERT INTO items SELECT g, repeat('x', 50) FROM generate_series(1, 40) g").await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&pg, dir.path());
    config.chunk_bytes_threshold = 1000;
    config.long_poll_timeout = Duration::from_secs(2);
    let server = Server::start(config).await;
    let base = &server.base;

    let mut offsets = Vec::new();
    let mut f = Follower::new("table=items");
    loop {
        let done = f.step(base, false).await;
        offsets.push(f.offset.clone());
        if done {
            break;
        }
    }
    assert!(offsets.len() > 4, "several snapshot chunks: {offsets:?}");
    assert_eq!(offsets[0], "0_0");
    assert_eq!(offsets[1], "0_1");
    assert_eq!(f.rows.len(), 40);
    for i in 0..40 {
        pg.exec(&format!(
            "UPDATE items SET title = 'y{i}' WHERE id = {}",
            i + 1
        ))
        .await;
    }
    let handle = f.handle.clone().unwrap();
    let mut responses = 0;
    let want = sorted(pg.rows("SELECT id::text, title FROM items").await);
    f.until(base, "log chunks converge", |f| {
        f.table(&["id", "title"]) == want
    })
    .await;
    let mut at = "0_inf".to_owned();
    loop {
        let r = get(base, &format!("table=items&offset={at}&handle={handle}")).await;
        assert_eq!(r.status, 200);
        responses += 1;
        if r.up_to_date() {
            break;
        }
        assert!(r.h("electric-up-to-date").is_none());
        at = r.h("electric-offset").unwrap().to_owned();
    }
    assert!(responses >= 3, "the log walk takes several chunk responses");

    // offset=now: immediate up-to-date at the latest offset, no data.
    let r = get(base, "table=items&offset=now").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.h("electric-handle"), Some(handle.as_str()));
    assert_eq!(r.h("electric-offset"), Some(f.offset.as_str()));
    assert_eq!(r.h("electric-has-data"), Some("false"));
    assert!(r.h("electric-schema").is_some() && r.h("electric-up-to-date").is_some());
    assert_eq!(r.messages().len(), 1);

    // log=changes_only: the snapshot is just snapshot-end.
    let r = get(base, "table=items&offset=-1&log=changes_only").await;
    assert_eq!(r.messages().len(), 1, "{}", r.text);
    assert_eq!(r.messages()[0]["headers"]["control"], "snapshot-end");
    assert_ne!(r.h("electric-handle"), Some(handle.as_str()));

    // An offset beyond the end: 400 after half the long-poll timeout.
    let r = get(
        base,
        &format!("table=items&offset=99999999999999_0&handle={handle}"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body["errors"]["offset"],
        serde_json::json!(["out of bounds for this shape"])
    );
    server.stop().await;
}

/// One write wakes several long-polls at the same offset: they get the same response (body,
/// ETag, offset, cursor), which the server builds once, each with its own request id and CORS
/// grant; a request whose cursor is ahead of the clock gets the same changes under its own
/// cursor; the next write's long-polls get the next change, not the kept response. Then, with
/// requests parked again, the service stops: each answers at once with no change (its timeout is
/// far off, and the drain bound would otherwise cut the connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_woken_by_one_write_share_the_response_not_their_request_headers() {
    let pg = Pg::start().await;
    pg.exec(
        "CREATE TABLE items (id int PRIMARY KEY, title text); INSERT INTO items VALUES (1, 'a')",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&pg, dir.path());
    config.long_poll_timeout = Duration::from_secs(60);
    let server = Server::start(config).await;
    let base = server.base.clone();
    let mut f = Follower::new("table=items");
    f.sync(&base).await;
    let h = f.handle.clone().unwrap();

    for (round, id) in [(0, 2), (1, 3)] {
        let live = format!("table=items&handle={h}&offset={}&live=true", f.offset);
        let ahead = "&cursor=99999999999";
        let asks: [(&str, Option<&str>); 4] = [
            ("", None),
            ("", Some("https://a.example")),
            ("", Some("https://b.example")),
            (ahead, None),
        ];
        let parked: Vec<_> = asks
            .iter()
            .map(|&(extra, origin)| {
                let (b, q) = (base.clone(), format!("{live}{extra}"));
                tokio::spawn(async move {
                    let hs: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
                    get_with(&b, &q, &hs).await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        pg.exec(&format!("INSERT INTO items VALUES ({id}, 'r{round}')"))
            .await;
        let mut rs = Vec::new();
        for p in parked {
            rs.push(p.await.unwrap());
        }
        for r in &rs {
            assert_eq!(r.status, 200, "{}", r.text);
            let msgs = r.messages();
            assert_eq!(msgs.len(), 2, "{}", r.text);
            assert_eq!(msgs[0]["value"]["id"], id.to_string(), "{}", r.text);
            assert!(r.up_to_date());
            assert_eq!(r.text, rs[0].text);
            assert_eq!(r.h("etag"), rs[0].h("etag"));
            assert_eq!(r.h("electric-offset"), rs[0].h("electric-offset"));
            assert_eq!(
                r.h("cache-control"),
                Some("public, max-age=5, stale-while-revalidate=5")
            );
            assert_eq!(r.h("content-type"), Some("application/json; charset=utf-8"));
        }
        let cursor = |r: &Resp| r.h("electric-cursor").unwrap().parse::<u64>().unwrap();
        assert_eq!(cursor(&rs[1]), cursor(&rs[0]));
        assert_eq!(cursor(&rs[2]), cursor(&rs[0]));
        assert!(
            cursor(&rs[3]) > 99_999_999_999,
            "a cursor ahead of the clock moves on"
        );
        let ids: std::collections::HashSet<_> = rs.iter().map(|r| r.h("x-request-id")).collect();
        assert_eq!(ids.len(), rs.len(), "each response has its own request id");
        assert!(ids.iter().all(Option::is_some));
        let grants: Vec<_> = rs
            .iter()
            .map(|r| (r.h("access-control-allow-origin"), r.h("vary")))
            .collect();
        assert_eq!(
            grants,
            [
                (Some("*"), None),
                (Some("https://a.example"), Some("Origin")),
                (Some("https://b.example"), Some("Origin")),
                (Some("*"), None),
            ]
        );
        for name in ["etag", "electric-handle", "electric-cursor", "x-request-id"] {
            assert_eq!(rs[1].headers.get_all(name).iter().count(), 1, "one {name}");
        }
        f.offset = rs[0].h("electric-offset").unwrap().to_owned();
    }

    let live = format!("table=items&handle={h}&offset={}&live=true", f.offset);
    let parked: Vec<_> = (0..3)
        .map(|_| {
            let (b, q) = (base.clone(), live.clone());
            tokio::spawn(async move { get(&b, &q).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = std::time::Instant::now();
    server.stop().await;
    for p in parked {
        let r = p.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.up_to_date() && r.messages().len() == 1, "{}", r.text);
        assert_eq!(r.h("electric-offset"), Some(f.offset.as_str()));
    }
    // Far inside the 10 s drain bound (and the 60 s long-poll timeout).
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "{:?}",
        stopping.elapsed()
    );
}

/// SSE live mode: a stream at the tail delivers new commits as `data:` events followed by an
/// up-to-date event; a request with pending data gets those events and the response ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_delivers_commits_as_events() {
    let pg = Pg::start().await;
    pg.exec(
        "CREATE TABLE items (id int PRIMARY KEY, title text); INSERT INTO items VALUES (1, 'a')",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&pg, dir.path());
    config.sse_keepalive = Duration::from_millis(300);
    config.sse_timeout = Duration::from_secs(3);
    let server = Server::start(config).await;
    let base = &server.base;
    let mut f = Follower::new("table=items");
    f.sync(base).await;
    let h = f.handle.clone().unwrap();
    let http = reqwest::Client::new();
    let mut resp = http
        .get(format!(
            "{base}/v1/shape?table=items&handle={h}&offset={}&live=true&live_sse=true&cursor=",
            f.offset
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["cache-control"], "public, max-age=59");
    assert!(resp.headers().get("electric-cursor").is_some());
    assert!(resp.headers().get("electric-schema").is_none());
    pg.exec("INSERT INTO items VALUES (2, 'b')").await;
    let mut text = String::new();
    while !text.contains("up-to-date") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .unwrap()
            .unwrap()
            .expect("more events");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|e| e.starts_with("data: "))
        .collect();
    let first: Value = serde_json::from_str(&events[0]["data: ".len()..]).unwrap();
    assert_eq!(first["key"], r#""public"."items"/"2""#);
    let utd: Value = serde_json::from_str(&events[1]["data: ".len()..]).unwrap();
    assert_eq!(
        utd["headers"]["global_last_seen_lsn"],
        first["headers"]["lsn"]
    );
    // Idle: keep-alive comments, then the stream ends at the SSE timeout.
    let mut rest = String::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
        .await
        .unwrap()
        .unwrap()
    {
        rest.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(rest.contains(": keep-alive\n\n"), "{rest}");

    // Pending data: the events and an immediate end.
    let r = http
        .get(format!(
            "{base}/v1/shape?table=items&handle={h}&offset={}&live=true&experimental_live_sse=true",
            f.offset
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let body = tokio::time::timeout(Duration::from_secs(5), r.text())
        .await
        .unwrap()
        .unwrap();
    assert!(body.starts_with("data: {\"key\""), "{body}");
    assert!(body.ends_with("\n\n") && body.contains("up-to-date"));
    server.stop().await;
}

/// Subset snapshots on GET (`subset__*`) and POST (JSON body), as `requestSnapshot` and
/// TanStack DB's on-demand mode use them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subset_snapshots_on_get_and_post() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE items (id int PRIMARY KEY, title text, status text); INSERT INTO items SELECT g, 't' || g, CASE WHEN g % 2 = 0 THEN 'open' ELSE 'done' END FROM generate_series(1, 10) g").await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = &server.base;
    let r = get(
        base,
        "table=items&offset=now&log=changes_only&subset__where=id%20%3E%208",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.h("cache-control"), Some("no-cache"));
    assert_eq!(r.h("electric-snapshot"), Some("true"));
    assert!(
        r.h("electric-handle").is_some()
            && r.h("electric-offset").is_some()
            && r.h("electric-schema").is_some()
    );
    let meta = &r.body["metadata"];
    for k in ["xmin", "xmax", "database_lsn"] {
        assert!(meta[k].as_str().unwrap().parse::<u64>().is_ok(), "{k}");
    }
    assert!(meta["xip_list"].is_array() && meta["snapshot_mark"].is_u64());
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["headers"]["snapshot_mark"], meta["snapshot_mark"]);

    let http = reqwest::Client::new();
    let post = |body: &'static str| {
        http.post(format!(
            "{base}/v1/shape?table=items&offset=now&log=changes_only&where=status%3D%27open%27"
        ))
        .header("content-type", "application/json")
        .body(body)
        .send()
    };
    let r = post(r#"{"where":"id > $1","params":{"1":"3"},"order_by":"id DESC","limit":2}"#)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let v: Value = r.json().await.unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["10", "8"]);
    let r = post("[1]").await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"error":"Request body must be a JSON object"}"#
    );
    let r = post("{nope").await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Invalid JSON in request body")
    );
    let r = get(
        base,
        "table=items&offset=now&log=changes_only&subset__limit=10",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body["errors"]["subset"]["order_by"],
        serde_json::json!(["order_by is required when limit or offset is present"])
    );
    // An empty POST body is a plain log read.
    let r = http
        .post(format!("{base}/v1/shape?table=items&offset=-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-cache");
    server.stop().await;
}

/// Admission control answers 503 with Electric's body past the limit; `ELECTRIC_MAX_SHAPES`
/// evicts the least recently read shapes (their clients get 409).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_control_and_shape_eviction() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE items (id int PRIMARY KEY, g int); INSERT INTO items VALUES (1, 1), (2, 2), (3, 3)").await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&pg, dir.path());
    config.max_existing_requests = 1;
    config.max_shapes = Some(2);
    config.eviction_interval = Duration::from_millis(500);
    let server = Server::start(config).await;
    let base = server.base.clone();
    let mut shapes = Vec::new();
    for g in 1..=3 {
        let mut f = Follower::new(&format!("table=items&where=g%20%3D%20{g}"));
        f.sync(&base).await;
        shapes.push(f);
        tokio::time::sleep(Duration::from_millis(1100)).await; // distinct last-read seconds
    }
    // One live request holds the only "existing" permit.
    let held = shapes[2].clone();
    let b = base.clone();
    let parked = tokio::spawn(async move {
        get(
            &b,
            &format!(
                "{}&offset={}&handle={}&live=true",
                held.query,
                held.offset,
                held.handle.unwrap()
            ),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let f = &shapes[1];
    let r = get(
        &base,
        &format!(
            "{}&offset={}&handle={}",
            f.query,
            f.offset,
            f.handle.clone().unwrap()
        ),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.body["code"], "concurrent_request_limit_exceeded");
    assert_eq!(r.h("electric-internal-known-error"), Some("true"));
    assert_eq!(r.h("cache-control"), Some("no-store"));
    let retry: u32 = r.h("retry-after").unwrap().parse().unwrap();
    assert!((5..=10).contains(&retry));
    assert_eq!(parked.await.unwrap().status, 200);
    // The least recently read shape (the first) was evicted.
    let f = &shapes[0];
    let r = get(
        &base,
        &format!(
            "{}&offset={}&handle={}",
            f.query,
            f.offset,
            f.handle.clone().unwrap()
        ),
    )
    .await;
    assert_eq!(r.status, 409);
    server.stop().await;
}

/// A transaction bigger than the in-memory budget is spilled to the log while it streams and
/// becomes visible only at its commit; tables without a primary key key rows by every column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transactions_and_tables_without_a_primary_key() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE big (id int PRIMARY KEY, title text); CREATE TABLE nopk (a int, b text)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = &server.base;
    let mut big = Follower::new("table=big");
    big.sync(base).await;
    let mut nopk = Follower::new("table=nopk");
    nopk.sync(base).await;
    pg.exec("INSERT INTO big SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 40000) g")
        .await;
    big.until(base, "the large transaction arrives whole", |f| {
        f.rows.len() == 40_000
    })
    .await;

    pg.exec("INSERT INTO nopk VALUES (1, 'x'), (2, NULL); UPDATE nopk SET b = 'y' WHERE a = 1; DELETE FROM nopk WHERE a = 2").await;
    nopk.until(base, "pk-less table converges", |f| {
        f.table(&["a", "b"]) == vec![vec![Some("1".into()), Some("y".into())]]
    })
    .await;
    assert!(
        nopk.rows.contains_key(r#""public"."nopk"/"1"/"y""#),
        "{:?}",
        nopk.rows.keys()
    );
    let r = get(base, "table=nopk&offset=-1").await;
    assert!(!r.h("electric-schema").unwrap().contains("pk_index"));
    server.stop().await;
}

/// A shape on a partitioned table sees changes to every partition, keyed by the root table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_tables_route_partition_changes_to_the_root() {
    let pg = Pg::start().await;
    pg.exec(
        "CREATE TABLE m (id int, region text, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
         CREATE TABLE m_eu PARTITION OF m FOR VALUES IN ('eu');
         CREATE TABLE m_us PARTITION OF m FOR VALUES IN ('us');
         INSERT INTO m VALUES (1, 'eu', 1), (2, 'us', 2)",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = &server.base;
    let mut f = Follower::new("table=m");
    f.sync(base).await;
    assert_eq!(f.rows.len(), 2);
    pg.exec("INSERT INTO m VALUES (3, 'us', 3); UPDATE m SET v = 10 WHERE id = 1; DELETE FROM m WHERE id = 2").await;
    let want = sorted(pg.rows("SELECT id::text, region, v::text FROM m").await);
    f.until(base, "partitioned shape converges", |f| {
        f.table(&["id", "region", "v"]) == want
    })
    .await;
    assert!(
        f.rows.contains_key(r#""public"."m"/"3"/"us""#),
        "{:?}",
        f.rows.keys()
    );
    server.stop().await;
}

/// Rolling deploy: a second instance with the same stream id and storage waits on the
/// advisory lock (health 202, no shape served), then takes over within seconds of the first
/// dying, serving the same handles without a 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_waits_for_the_lock_then_takes_over() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let mut a = Binary::start(&pg.url(), &storage, free_port()).await;
    let mut f = Follower::new("table=items");
    f.sync(&a.base).await;
    let b = Binary::spawn(&pg.url(), &storage, free_port());
    let mut waited = false;
    for _ in 0..100 {
        if b.health().await == Some(202) {
            waited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(waited, "the second instance reports waiting");
    let r = get(
        &b.base,
        &format!(
            "table=items&offset={}&handle={}",
            f.offset,
            f.handle.clone().unwrap()
        ),
    )
    .await;
    assert_eq!(
        r.status, 503,
        "a waiting instance serves nothing: {}",
        r.text
    );
    pg.exec("INSERT INTO items VALUES (2)").await;
    a.kill9();
    let started = std::time::Instant::now();
    wait_active(&b.base).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took over in {:?}",
        started.elapsed()
    );
    pg.exec("INSERT INTO items VALUES (3)").await;
    f.until(&b.base, "follows on the new instance", |f| {
        f.rows.len() == 3
    })
    .await;
    assert_eq!(f.refetches, 0);
    drop(b);
}

/// `DROP TABLE` is invisible in the stream: the periodic catalog check removes its shapes, so
/// their clients get an answer instead of long-polling a dead shape forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_tables_lose_their_shapes() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE gone (id int PRIMARY KEY); INSERT INTO gone VALUES (1)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&pg, dir.path());
    config.schema_reconciler_period = Duration::from_millis(300);
    let server = Server::start(config).await;
    let mut f = Follower::new("table=gone");
    f.sync(&server.base).await;
    pg.exec("DROP TABLE gone").await;
    let q = format!(
        "table=gone&offset={}&handle={}",
        f.offset,
        f.handle.clone().unwrap()
    );
    // Once the shape is gone, the request is validated afresh: the table no longer exists.
    let mut r = get(&server.base, &q).await;
    for _ in 0..50 {
        if r.status != 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        r = get(&server.base, &q).await;
    }
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.body["errors"]["table"][0]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    server.stop().await;
}

/// ALTER TABLE invalidates only the shapes that use an altered column: a shape with an explicit
/// column list keeps its handle across ADD/DROP COLUMN of other columns, one selecting every
/// column is rotated, and one filtering on an altered column is rotated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alter_table_rotates_only_affected_shapes() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE t (id int PRIMARY KEY, a text, b int, c text); INSERT INTO t VALUES (1, 'x', 1, 'c')").await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = &server.base;
    let mut narrow = Follower::new("table=t&columns=id,a");
    let mut all = Follower::new("table=t");
    let mut on_b = Follower::new("table=t&columns=id,a&where=b%20%3E%200");
    for f in [&mut narrow, &mut all, &mut on_b] {
        f.sync(base).await;
    }
    pg.exec("ALTER TABLE t ADD COLUMN d int; ALTER TABLE t DROP COLUMN c; INSERT INTO t VALUES (2, 'y', 2, 5)").await;
    pg.exec("ALTER TABLE t ALTER COLUMN b TYPE bigint; INSERT INTO t VALUES (3, 'z', 3, 6)")
        .await;
    let want = sorted(pg.rows("SELECT id::text, a FROM t").await);
    narrow
        .until(base, "narrow shape keeps going", |f| {
            f.table(&["id", "a"]) == want
        })
        .await;
    assert_eq!(
        narrow.refetches, 0,
        "unaffected by changes to other columns"
    );
    let want_all = sorted(pg.rows("SELECT id::text, a, b::text, d::text FROM t").await);
    all.until(base, "all-columns shape rotates", |f| {
        f.refetches > 0 && f.table(&["id", "a", "b", "d"]) == want_all
    })
    .await;
    on_b.until(base, "shape on an altered column rotates", |f| {
        f.refetches > 0 && f.table(&["id", "a"]) == want
    })
    .await;
    server.stop().await;
}

/// The shipped container files agree with the binary: the Dockerfile builds and runs the
/// `ampere` binary on Electric's port and storage path, and the compose file's environment is
/// accepted as-is (an Electric deployment's env works unchanged).
#[test]
fn the_dockerfile_and_compose_file_match_the_binary() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("cargo build --release --locked --bin ampere"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/ampere\"]"));
    assert!(dockerfile.contains("ELECTRIC_PORT=3000") && dockerfile.contains("EXPOSE 3000"));
    let compose = std::fs::read_to_string(root.join("compose.yaml")).unwrap();
    let env: Vec<(String, String)> = compose
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("DATABASE_URL:") || l.starts_with("ELECTRIC_"))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
        .collect();
    assert!(env.iter().any(|(k, _)| k == "DATABASE_URL"));
    let storage = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ampere"))
        .env_clear()
        .envs(env)
        .env("ELECTRIC_PORT", port.to_string())
        .env("ELECTRIC_STORAGE_DIR", storage.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // A configuration error exits at once with status 2; an accepted one serves health as
    // "starting" while it retries the compose network's (here unreachable) `postgres` host.
    let mut answered = None;
    for _ in 0..200 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the compose environment was refused: {status}");
        }
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.write_all(b"GET /v1/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .unwrap();
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            answered = buf.lines().next().map(str::to_owned);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answered.as_deref(), Some("HTTP/1.1 202 Accepted"));
}
