//! The operator CLI and the admin API it talks to: the server in-process against a real
//! Postgres, the real `ampere` binary run as a process against it.

use std::process::Output;

use serde_json::Value;

use crate::support::*;

/// Runs the real binary with a clean environment (plus `env`), returning its output.
async fn ampere(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ampere"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args)
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("the CLI finishes")
        .expect("the CLI runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

struct Admin {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn admin(method: reqwest::Method, url: &str, bearer: Option<&str>) -> Admin {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let r = req.send().await.expect("admin request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    Admin {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_and_the_cli_list_delete_and_report() {
    let pg = Pg::start().await;
    pg.exec(
        "CREATE TABLE items (id int PRIMARY KEY, title text);
         INSERT INTO items SELECT g, 't' || g FROM generate_series(1, 50) g",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(test_config(&pg, dir.path())).await;
    let base = server.base.clone();

    let mut all = Follower::new("table=items");
    let q_some = "table=items&where=id%20%3E%20%241&params%5B1%5D=40&columns=id,title&replica=full";
    let mut some = Follower::new(q_some);
    all.sync(&base).await;
    some.sync(&base).await;
    pg.exec("INSERT INTO items VALUES (100, 'new')").await;
    all.until(&base, "the insert arrives", |f| f.rows.len() == 51)
        .await;
    some.until(&base, "the insert arrives", |f| f.rows.len() == 11)
        .await;
    let h_all = all.handle.clone().unwrap();
    let h_some = some.handle.clone().unwrap();

    // (a) The admin API's JSON.
    let r = admin(
        reqwest::Method::GET,
        &format!("{base}/v1/admin/shapes"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert!(r.headers.get("access-control-allow-origin").is_none());
    let shapes = r.body["shapes"].as_array().unwrap();
    assert_eq!(shapes.len(), 2, "{}", r.body);
    let durable = r.body["durable_lsn"].as_str().expect("a durable position");
    let durable = ampere::http::admin::parse_lsn(durable).unwrap();
    let find = |h: &str| shapes.iter().find(|s| s["handle"] == h).unwrap().clone();
    let s_all = find(&h_all);
    assert_eq!(s_all["schema"], "public");
    assert_eq!(s_all["table"], "items");
    assert_eq!(s_all["where"], Value::Null);
    assert_eq!(s_all["columns"], Value::Null);
    assert_eq!(s_all["replica"], "default");
    assert_eq!(s_all["status"], "ready");
    assert_eq!(s_all["latest_offset"], all.offset.as_str());
    assert!(s_all["log_bytes"].as_u64().unwrap() > 50 * 20);
    let changed =
        ampere::http::admin::parse_lsn(s_all["last_change_lsn"].as_str().unwrap()).unwrap();
    assert_eq!(
        s_all["lag_bytes"].as_u64().unwrap(),
        durable - changed,
        "lag is durable − last change"
    );
    assert!(s_all["last_change_at"].as_u64().unwrap() <= r.body["now"].as_u64().unwrap());
    assert!(s_all["last_read_at"].is_u64());
    let s_some = find(&h_some);
    assert_eq!(s_some["where"], "id > $1");
    assert_eq!(s_some["params"], serde_json::json!(["40"]));
    assert_eq!(s_some["columns"], serde_json::json!(["id", "title"]));
    assert_eq!(s_some["replica"], "full");

    // Path variants reach the same handler; unknown admin paths and methods are refused.
    let r = admin(
        reqwest::Method::GET,
        &format!("{base}/v1//admin/shapes/"),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let r = admin(reqwest::Method::GET, &format!("{base}/v1/admin/nope"), None).await;
    assert_eq!(r.status, 404);
    let r = admin(
        reqwest::Method::POST,
        &format!("{base}/v1/admin/shapes"),
        None,
    )
    .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "GET, HEAD");

    // The acknowledged position is what the last status update told Postgres: the next one
    // goes out within the status interval.
    let mut r = admin(
        reqwest::Method::GET,
        &format!("{base}/v1/admin/replication"),
        None,
    )
    .await;
    for _ in 0..100 {
        if r.body["acknowledged_lsn"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        r = admin(
            reqwest::Method::GET,
            &format!("{base}/v1/admin/replication"),
            None,
        )
        .await;
    }
    assert_eq!(r.status, 200, "{}", r.body);
    let rep = &r.body;
    assert_eq!(rep["slot"], "electric_slot_test");
    assert_eq!(rep["publication"], "electric_publication_test");
    assert_eq!(rep["state"], "active");
    assert!(rep["received_lsn"].is_string() && rep["durable_lsn"].is_string());
    assert!(rep["acknowledged_lsn"].is_string(), "{rep}");
    let pgr = &rep["postgres"];
    assert_eq!(pgr["slot_exists"], true);
    assert_eq!(pgr["slot_active"], true, "{rep}");
    assert!(pgr["lag_bytes"].is_u64() && pgr["retained_wal_bytes"].is_u64());
    assert_eq!(pgr["tables"], serde_json::json!(["public.items"]));
    assert_eq!(rep["postgres_error"], Value::Null);

    // (b) The binary.
    let url = ["--url", base.as_str()];
    let o = ampere(&["shapes", "list", "--json", url[0], url[1]], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let listed: Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    let mut handles: Vec<&str> = listed["shapes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["handle"].as_str().unwrap())
        .collect();
    handles.sort_unstable();
    let mut want = vec![h_all.as_str(), h_some.as_str()];
    want.sort_unstable();
    assert_eq!(handles, want);

    let o = ampere(&["shapes", "list", "--sort", "size", url[0], url[1]], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("HANDLE"), "{table}");
    assert!(
        lines[1].starts_with(&h_all),
        "the largest log first: {table}"
    );
    assert!(lines[2].contains("id > $1 [$1=40]") && lines[2].contains("replica=full"));
    assert!(table.contains("2 shapes"), "{table}");

    let o = ampere(&["replication", "status", url[0], url[1]], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("electric_slot_test active"), "{text}");
    assert!(text.contains("public.items"), "{text}");
    let o = ampere(&["replication", "status", "--json", url[0], url[1]], &[]).await;
    let json: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["state"], "active");

    // `health` finds the service through ELECTRIC_PORT, as in a container.
    let port = base.rsplit(':').next().unwrap();
    let o = ampere(&["health"], &[("ELECTRIC_PORT", port)]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "active\n");

    // Deleting: the client holding the handle gets 409 must-refetch, then resyncs.
    let o = ampere(&["shapes", "delete", &h_all, url[0], url[1]], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("deleted {h_all}\n"));
    let r = get(
        &base,
        &format!("table=items&offset={}&handle={h_all}", all.offset),
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.text, r#"[{"headers":{"control":"must-refetch"}}]"#);
    let before = all.refetches;
    all.until(&base, "resync after the delete", |f| {
        f.refetches > before && f.rows.len() == 51
    })
    .await;
    assert_ne!(all.handle.as_deref(), Some(h_all.as_str()));

    let o = ampere(&["shapes", "delete", &h_all, url[0], url[1]], &[]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no such shape"), "{}", stderr(&o));

    let o = ampere(
        &["shapes", "delete", "--all", "--json", url[0], url[1]],
        &[],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    let json: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["deleted"].as_array().unwrap().len(), 2, "{json}");
    let r = admin(
        reqwest::Method::GET,
        &format!("{base}/v1/admin/shapes"),
        None,
    )
    .await;
    assert_eq!(r.body["shapes"], serde_json::json!([]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_requires_the_secret_on_every_path_variant() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE items (id int PRIMARY KEY)").await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&pg, dir.path());
    config.secret = Some("s3cret".into());
    let server = Server::start(config).await;
    let base = server.base.clone();
    let r = get(&base, "table=items&offset=-1&secret=s3cret").await;
    assert_eq!(r.status, 200);
    let handle = r.h("electric-handle").unwrap().to_owned();

    for path in [
        "/v1/admin/shapes",
        "/v1//admin/shapes",
        "/v1/admin/shapes/",
        "//v1/admin//shapes",
        "/v1/%61dmin/shapes",
        "/v1/admin/replication",
        "/v1/admin/anything",
        "/v1/admin",
    ] {
        let r = admin(reqwest::Method::GET, &format!("{base}{path}"), None).await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.headers["cache-control"], "no-store");
        let r = admin(
            reqwest::Method::GET,
            &format!("{base}{path}?secret=wrong"),
            Some("wrong"),
        )
        .await;
        assert_eq!(r.status, 401, "{path} with a wrong secret");
    }
    let r = admin(
        reqwest::Method::DELETE,
        &format!("{base}/v1/admin/shapes/{handle}"),
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    let r = admin(
        reqwest::Method::DELETE,
        &format!("{base}/v1//admin/shapes/{handle}/"),
        Some("nope"),
    )
    .await;
    assert_eq!(r.status, 401);

    let r = admin(
        reqwest::Method::GET,
        &format!("{base}/v1/admin/shapes?secret=s3cret"),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let r = admin(
        reqwest::Method::GET,
        &format!("{base}/v1/admin/shapes"),
        Some("s3cret"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["shapes"][0]["handle"], handle.as_str());

    let url = ["--url", base.as_str()];
    let o = ampere(&["shapes", "list", url[0], url[1]], &[]).await;
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("401") && err.contains("ELECTRIC_SECRET"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let o = ampere(
        &["shapes", "list", "--json", url[0], url[1]],
        &[("ELECTRIC_SECRET", "s3cret")],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    // Health needs no secret (load balancers and HEALTHCHECK have none).
    let o = ampere(&["health", url[0], url[1]], &[]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    server.stop().await;
}

#[tokio::test]
async fn health_fails_when_the_service_is_unreachable() {
    let port = free_port();
    let o = ampere(&["health"], &[("ELECTRIC_PORT", &port.to_string())]).await;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!("ampere: cannot reach Ampere at http://127.0.0.1:{port}: connection refused\n")
    );
    let o = ampere(&["shapes", "list", "--url", "not a url"], &[]).await;
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid service URL"));
}

#[tokio::test]
async fn help_lists_the_subcommands() {
    let o = ampere(&["--help"], &[]).await;
    assert!(o.status.success());
    let help = stdout(&o);
    for sub in ["serve", "dev", "shapes", "replication", "health"] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{sub} "))),
            "{sub} missing from:\n{help}"
        );
    }
    assert!(help.contains("ELECTRIC_PORT") && help.contains("DATABASE_URL"));
    let o = ampere(&["shapes", "--help"], &[]).await;
    let help = stdout(&o);
    assert!(help.contains("list") && help.contains("delete"), "{help}");
    // Secrets given through the environment never show in the help.
    let o = ampere(
        &["--help"],
        &[
            ("ELECTRIC_SECRET", "topsecret"),
            ("DATABASE_URL", "postgres://u:pw1234@h/db"),
        ],
    )
    .await;
    let help = stdout(&o);
    assert!(!help.contains("topsecret") && !help.contains("pw1234"));
    let o = ampere(
        &["shapes", "list", "--help"],
        &[("ELECTRIC_SECRET", "topsecret")],
    )
    .await;
    assert!(!stdout(&o).contains("topsecret"));
}
