//! Process, cluster and connection faults (operations.md §7.2–§7.3, §7.6; record in
//! `docs/reliability.md`): configuration errors that must stop the service with a clear
//! message (T15, T16, T19), waits it must sit out (T17, T18), a silent partition it must notice
//! on its own (T08 keepalive variant), and signals, stalls, slot invalidation, a second instance,
//! a new cluster and a huge transaction against the real binary.
//!
//! Every wait is on a condition with a generous bound, never a fixed sleep that a slow machine
//! could outrun; the only numeric bound asserted is the peak RSS of T22. The §7.1 checks
//! (convergence, well-formedness, ack soundness, one slot, no orphans) come from `faults.rs`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ampere::pg::local_cluster::ClusterOptions;
use tokio::time::Instant;

use crate::fault_proxy::{FaultProxy, Mode};
use crate::faults::{
    Oracle, SCHEMA, Writer, check_hygiene, converge_all, follow_in_background, scale, seed,
    start_oracles, test_storage, tune_pg,
};
use crate::support::*;

/// Waits until `cond` holds, polling every 100 ms; panics with `what` after `bound`.
async fn wait_for(what: &str, bound: Duration, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + bound;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls health until the process exits by itself (bounded); returns its status and whether
/// health ever said `active`.
async fn until_exit(bin: &mut Binary) -> (std::process::ExitStatus, bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut saw_active = false;
    loop {
        if let Some(status) = bin.wait_exit(Duration::from_millis(50)).await {
            return (status, saw_active);
        }
        saw_active |= bin.health().await == Some(200);
        assert!(
            Instant::now() < deadline,
            "ampere kept running; log:\n{}",
            bin.log_text()
        );
    }
}

/// Starts the binary with `url` and expects it to stop by itself, non-zero, never active, with
/// every `needles` in its log and no `secret` anywhere in it. Returns the log.
async fn expect_fatal(url: &str, env: &[(&str, &str)], needles: &[&str], secret: &str) -> String {
    let (_dir, storage) = test_storage();
    let mut bin = Binary::spawn_with(url, &storage, free_port(), env);
    let (status, saw_active) = until_exit(&mut bin).await;
    let log = bin.log_text();
    assert!(!status.success(), "exit status {status:?}; log:\n{log}");
    assert!(!saw_active, "health reported active; log:\n{log}");
    for n in needles {
        assert!(log.contains(n), "log lacks {n:?}:\n{log}");
    }
    assert!(
        log.contains("ampere: fatal:"),
        "one final line says why:\n{log}"
    );
    if !secret.is_empty() {
        assert!(!log.contains(secret), "a password reached the log:\n{log}");
    }
    log
}

// ---------------------------------------------------------------------------------------------
// T15, T16: configuration errors stop the service

/// T15: `wal_level = replica`: the binary exits non-zero at once with a message naming
/// wal_level, never reports active, and leaves no slot or publication behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t15_wal_level_replica_exits_with_a_clear_message() {
    let pg = Pg::start_with(ClusterOptions {
        extra_settings: vec![("wal_level".into(), "replica".into())],
        ..ClusterOptions::default()
    })
    .await;
    let log = expect_fatal(&pg.url(), &[], &["wal_level", "logical"], "").await;
    assert_eq!(log.matches("cannot start replication; retrying").count(), 0);
    let left = pg
        .rows("SELECT (SELECT count(*) FROM pg_replication_slots) + (SELECT count(*) FROM pg_publication)")
        .await;
    assert_eq!(left[0][0].as_deref(), Some("0"), "nothing left behind");
}

/// T16: the privilege matrix, with password authentication. Fatal (exit non-zero, clear
/// message, password never logged): a role without REPLICATION; a wrong password; a database
/// that does not exist; a REPLICATION role that may not create the publication when there is
/// none. Works: a REPLICATION role with CREATE on the database (what operations.md §1.1/§2.2
/// require); a table it may not read gets a 503 naming the missing privilege, a table it does
/// not own one naming the publication, and its own table syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t16_privilege_matrix_fatal_or_clear_503() {
    let pg = Pg::start_with(ClusterOptions {
        hba: Some(
            "host all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
                .into(),
        ),
        ..ClusterOptions::default()
    })
    .await;
    pg.exec(
        "SET password_encryption = 'scram-sha-256';
         CREATE ROLE norepl LOGIN PASSWORD 'pw-norepl-7Qx';
         CREATE ROLE repl_only LOGIN REPLICATION PASSWORD 'pw-replonly-7Qx';
         CREATE ROLE ampere_ok LOGIN REPLICATION PASSWORD 'pw-ok-7Qx';
         GRANT CREATE ON DATABASE postgres TO ampere_ok;
         CREATE TABLE theirs (id int PRIMARY KEY, v text);
         INSERT INTO theirs VALUES (1, 'a');
         CREATE TABLE mine (id int PRIMARY KEY, v text);
         INSERT INTO mine VALUES (1, 'm');
         ALTER TABLE mine OWNER TO ampere_ok;",
    )
    .await;

    expect_fatal(
        &pg.url_as("norepl", Some("pw-norepl-7Qx"), ""),
        &[],
        &["REPLICATION"],
        "pw-norepl-7Qx",
    )
    .await;
    expect_fatal(
        &pg.url_as("ampere_ok", Some("WRONG-pw-9Zk"), ""),
        &[],
        &["password authentication failed"],
        "WRONG-pw-9Zk",
    )
    .await;
    expect_fatal(
        &format!(
            "postgres://ampere_ok:pw-ok-7Qx@127.0.0.1:{}/no_such_db",
            pg.cluster.port()
        ),
        &[],
        &["does not exist"],
        "pw-ok-7Qx",
    )
    .await;
    expect_fatal(
        &pg.url_as("repl_only", Some("pw-replonly-7Qx"), ""),
        &[],
        &["may not create it"],
        "pw-replonly-7Qx",
    )
    .await;
    let none = pg.rows("SELECT count(*) FROM pg_publication").await;
    assert_eq!(none[0][0].as_deref(), Some("0"));

    // What operations.md asks for works.
    let (_dir, storage) = test_storage();
    let url = pg.url_as("ampere_ok", Some("pw-ok-7Qx"), "");
    let bin = Binary::start(&url, &storage, free_port()).await;
    let r = get(&bin.base, "table=theirs&offset=-1").await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("permission denied for table"), "{}", r.text);
    pg.exec("GRANT SELECT ON theirs TO ampere_ok").await;
    let r = get(&bin.base, "table=theirs&offset=-1").await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(
        r.text.contains("missing from the publication") && r.text.contains("lacks privileges"),
        "{}",
        r.text
    );
    let mut f = Follower::new("table=mine");
    f.sync(&bin.base).await;
    pg.exec("INSERT INTO mine VALUES (2, 'live')").await;
    f.until(&bin.base, "the live insert", |f| f.rows.len() == 2)
        .await;
    assert!(!bin.log_text().contains("pw-ok-7Qx"), "password in the log");
}

// ---------------------------------------------------------------------------------------------
// T17, T18: waits Ampere must sit out

/// T17: a transaction open while the slot is created: creation waits, Ampere says so in its
/// log (naming the open transaction) and is not active; after COMMIT it proceeds and streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t17_open_transaction_delays_slot_creation_then_streams() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')")
        .await;
    let blocker = connect(&pg.url()).await;
    blocker
        .batch_execute("BEGIN; SELECT pg_current_xact_id();")
        .await
        .unwrap();
    let pid: i32 = blocker
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let (_dir, storage) = test_storage();
    let bin = Binary::spawn(&pg.url(), &storage, free_port());
    wait_for(
        "a log line about the slot waiting for open transactions",
        Duration::from_secs(60),
        async || {
            bin.log_text()
                .contains("waiting for the replication slot to be created")
        },
    )
    .await;
    let log = bin.log_text();
    assert!(
        log.contains(&format!("oldest_open_transaction_pid={pid}")),
        "names the blocker:\n{log}"
    );
    assert_eq!(bin.health().await, Some(202), "not active while waiting");
    blocker.batch_execute("COMMIT").await.unwrap();
    // PG 15 has no pg_log_standby_snapshot(): a checkpoint writes the running-xacts record
    // slot creation waits for (PG 16+ Ampere forces one itself).
    pg.exec("CHECKPOINT").await;
    wait_active(&bin.base).await;
    let mut f = Follower::new("table=t");
    f.sync(&bin.base).await;
    pg.exec("INSERT INTO t VALUES (2, 'b')").await;
    f.until(&bin.base, "the live insert", |f| f.rows.len() == 2)
        .await;
}

/// T18: every connection slot taken: Ampere retries with backoff (one log line per attempt
/// with the next delay), is not active, does not exit; when connections free up it becomes
/// active and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t18_connection_exhaustion_retries_then_recovers() {
    let pg = Pg::start_with(ClusterOptions {
        extra_settings: vec![
            ("max_connections".into(), "8".into()),
            ("superuser_reserved_connections".into(), "0".into()),
        ],
        ..ClusterOptions::default()
    })
    .await;
    pg.exec("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await;
    // Take every remaining slot (the test's own connection holds one).
    let mut hogs = Vec::new();
    while let Ok((c, conn)) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await {
        tokio::spawn(conn);
        hogs.push(c);
        assert!(hogs.len() < 20, "max_connections not applied");
    }
    let (_dir, storage) = test_storage();
    let mut bin = Binary::spawn(&pg.url(), &storage, free_port());
    wait_for("two retries logged", Duration::from_secs(60), async || {
        bin.log_text()
            .matches("cannot start replication; retrying")
            .count()
            >= 2
    })
    .await;
    let log = bin.log_text();
    assert!(log.contains("too many clients"), "{log}");
    assert!(
        log.contains("retry_in_ms=1000") && log.contains("retry_in_ms=2000"),
        "the backoff doubles: {log}"
    );
    assert_ne!(bin.health().await, Some(200));
    assert!(bin.wait_exit(Duration::ZERO).await.is_none(), "no exit");
    drop(hogs);
    wait_active(&bin.base).await;
    let mut f = Follower::new("table=t");
    f.sync(&bin.base).await;
    pg.exec("INSERT INTO t VALUES (2)").await;
    f.until(&bin.base, "the live insert", |f| f.rows.len() == 2)
        .await;
}

// ---------------------------------------------------------------------------------------------
// T19: TLS

/// A CA, a server certificate for `localhost`/127.0.0.1 signed by it, and an unrelated CA.
struct Certs {
    dir: tempfile::TempDir,
    server_crt: Vec<u8>,
    server_key: Vec<u8>,
}

impl Certs {
    fn generate() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl CLI");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for ca in ["ca", "wrong-ca"] {
            let mut a = vec!["req", "-x509", "-days", "2", "-subj"];
            let subj = format!("/CN=ampere test {ca}");
            a.push(&subj);
            a.extend(ec);
            let (key, crt) = (format!("{ca}.key"), format!("{ca}.crt"));
            a.extend(["-keyout", &key, "-out", &crt]);
            run(&a);
        }
        let mut a = vec!["req", "-subj", "/CN=localhost"];
        a.extend(ec);
        a.extend(["-keyout", "server.key", "-out", "server.csr"]);
        run(&a);
        std::fs::write(
            dir.path().join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ]);
        Certs {
            server_crt: std::fs::read(dir.path().join("server.crt")).unwrap(),
            server_key: std::fs::read(dir.path().join("server.key")).unwrap(),
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// T19: Postgres with `ssl = on` and TLS-only access for the Ampere role (`hostnossl … reject`).
/// `sslmode=require` works for both connection kinds (checked in `pg_stat_ssl`); `verify-full`
/// with the right root certificate works; with an unrelated root certificate, and with
/// `sslmode=disable`, the binary exits non-zero with a message that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t19_tls_modes() {
    let certs = Certs::generate();
    let pg = Pg::start_with(ClusterOptions {
        extra_settings: vec![
            ("ssl".into(), "on".into()),
            ("ssl_cert_file".into(), "server.crt".into()),
            ("ssl_key_file".into(), "server.key".into()),
        ],
        // The test's own connections (user postgres) stay plain; the Ampere role must use TLS.
        hba: Some(
            "hostnossl all postgres 127.0.0.1/32 trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 127.0.0.1/32 reject\n"
                .into(),
        ),
        files: vec![
            ("server.crt".into(), certs.server_crt.clone(), 0o644),
            ("server.key".into(), certs.server_key.clone(), 0o600),
        ],
        ..ClusterOptions::default()
    })
    .await;
    pg.exec("CREATE ROLE tls_user LOGIN SUPERUSER; CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await;
    let port = pg.cluster.port();
    let url = |host: &str, q: &str| format!("postgres://tls_user@{host}:{port}/postgres?{q}");

    for (case, u) in [
        ("no sslmode (prefer)", url("127.0.0.1", "")),
        ("require", url("127.0.0.1", "sslmode=require")),
        (
            "verify-full",
            url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={}", certs.path("ca.crt")),
            ),
        ),
    ] {
        let (_dir, storage) = test_storage();
        let bin = Binary::start(&u, &storage, free_port()).await;
        let mut f = Follower::new("table=t");
        f.sync(&bin.base).await;
        pg.exec(&format!(
            "INSERT INTO t SELECT max(id) + 1 FROM t -- {case}"
        ))
        .await;
        let want = pg.rows("SELECT count(*) FROM t").await[0][0]
            .clone()
            .unwrap();
        f.until(&bin.base, case, |f| f.rows.len().to_string() == want)
            .await;
        let tls = pg
            .rows(
                "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl), \
                 count(*) FILTER (WHERE a.backend_type = 'walsender' AND s.ssl) \
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = 'tls_user'",
            )
            .await;
        assert_eq!(
            tls[0][1].as_deref(),
            Some("0"),
            "{case}: no plain connection"
        );
        assert_eq!(
            tls[0][2].as_deref(),
            Some("1"),
            "{case}: replication over TLS"
        );
        drop(bin);
        wait_for("the walsender to go", Duration::from_secs(30), async || {
            pg.rows("SELECT count(*) FROM pg_replication_slots WHERE active")
                .await[0][0]
                .as_deref()
                == Some("0")
        })
        .await;
    }

    expect_fatal(
        &url(
            "localhost",
            &format!(
                "sslmode=verify-full&sslrootcert={}",
                certs.path("wrong-ca.crt")
            ),
        ),
        &[],
        &["certificate"],
        "",
    )
    .await;
    expect_fatal(
        &url("127.0.0.1", "sslmode=disable"),
        &[],
        &["pg_hba.conf", "sslmode=require"],
        "",
    )
    .await;
    expect_fatal(
        &url(
            "localhost",
            "sslmode=verify-full&sslrootcert=/nonexistent/root.crt",
        ),
        &[],
        &["root certificate file"],
        "",
    )
    .await;
    // A CA file with sslmode=disable is refused before anything starts (exit status 2).
    let (_dir, storage) = test_storage();
    let mut bin = Binary::spawn_with(
        &url("127.0.0.1", "sslmode=disable"),
        &storage,
        free_port(),
        &[(
            "ELECTRIC_DATABASE_CA_CERTIFICATE_FILE",
            &certs.path("ca.crt"),
        )],
    );
    let status = bin.wait_exit(Duration::from_secs(60)).await.expect("exits");
    assert_eq!(status.code(), Some(2), "{}", bin.log_text());
    assert!(
        bin.log_text().contains("CA_CERTIFICATE_FILE"),
        "{}",
        bin.log_text()
    );
}

// ---------------------------------------------------------------------------------------------
// T08, keepalive variant: a silent partition noticed by Ampere itself

/// T08 (keepalive variant): every connection through the fault proxy, which blackholes
/// (forwards nothing, closes nothing). Postgres' `wal_sender_timeout` is 60 s and its close
/// could not pass the blackhole anyway: Ampere must notice the dead replication connection on
/// its own (receive timeout + TCP keepalive from `keepalives_*` in the URL) and stop reporting
/// active during the partition; after it heals it reconnects and every client converges
/// without a 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t08_keepalive_detects_a_silent_partition() {
    let seed = seed("t08k");
    let pg = Pg::start().await;
    pg.exec(SCHEMA).await;
    pg.exec("ALTER SYSTEM SET wal_sender_timeout = '60s'").await;
    pg.exec("SELECT pg_reload_conf()").await;
    let upstream: std::net::SocketAddr =
        format!("127.0.0.1:{}", pg.cluster.port()).parse().unwrap();
    let proxy = FaultProxy::start(upstream).await;
    let (_dir, storage) = test_storage();
    let mut config = test_config(&pg, &storage);
    config.database_url = Some(format!(
        "{}?keepalives_idle=1&keepalives_interval=1&keepalives_count=2&connect_timeout=2",
        proxy.url(&pg.url())
    ));
    let server = Server::start(config).await;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let oracles = start_oracles(&http, &base).await;
    let writer = Writer::start(pg.url(), seed, Duration::from_millis(5));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = oracles
        .into_iter()
        .map(|o| follow_in_background(o, base.clone(), stop.clone()))
        .collect();

    for _ in 0..scale(1, 3) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        proxy.set(Mode::Blackhole);
        let health = || async {
            reqwest::get(format!("{base}/v1/health"))
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        };
        wait_for(
            "health to leave active during the partition",
            Duration::from_secs(40),
            async || health().await != 200,
        )
        .await;
        proxy.set(Mode::Pass);
        server.wait_active().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    writer.finish().await;
    stop.store(true, Ordering::Relaxed);
    let mut oracles = Vec::new();
    for t in tasks {
        oracles.push(t.await.unwrap());
    }
    let handles = converge_all(&http, &base, &pg, &mut oracles).await;
    for o in &oracles {
        assert_eq!(o.refetches, 0, "{}", o.query);
    }
    check_hygiene(&pg, "electric_slot_test", &storage, &handles).await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Helpers for the real-binary scenarios

/// The followed shapes' oracles, restarted against `base` after a restart (no state lost).
fn resume(
    oracles: Vec<Oracle>,
    base: &str,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Oracle>> {
    oracles
        .into_iter()
        .map(|o| follow_in_background(o, base.to_owned(), stop.clone()))
        .collect()
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<Oracle>>,
    stop: &Arc<AtomicBool>,
) -> Vec<Oracle> {
    stop.store(true, Ordering::Relaxed);
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    stop.store(false, Ordering::Relaxed);
    out
}

/// The size of a shape's log file (0 while it does not exist).
fn log_size(storage: &Path, handle: &str) -> u64 {
    std::fs::metadata(storage.join("shapes").join(handle).join("log")).map_or(0, |m| m.len())
}

/// Follows a shape with many rows without keeping them: counts inserts (and checks that no
/// key is inserted twice while the handle stays the same) until up-to-date with `want` rows.
/// Returns the handle.
async fn count_until(base: &str, query: &str, want: usize) -> String {
    let http = reqwest::Client::new();
    let mut handle: Option<String> = None;
    let mut offset = "-1".to_owned();
    let mut keys = std::collections::HashSet::new();
    let mut caught_up = false;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(
            Instant::now() < deadline,
            "{query}: never reached {want} rows (have {})",
            keys.len()
        );
        let mut url = format!("{base}/v1/shape?{query}&offset={offset}");
        if let Some(h) = &handle {
            url.push_str(&format!("&handle={h}"));
            if caught_up && offset != "-1" {
                url.push_str("&live=true");
            }
        }
        let Ok(r) = http.get(&url).timeout(Duration::from_secs(60)).send().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        match r.status().as_u16() {
            200 => {}
            409 => {
                handle = r
                    .headers()
                    .get("electric-handle")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                offset = "-1".into();
                keys.clear();
                caught_up = false;
                continue;
            }
            503 => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            s => panic!("{query}: status {s}"),
        }
        let h = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        handle = h("electric-handle");
        offset = h("electric-offset").unwrap();
        let Ok(body) = r.json::<serde_json::Value>().await else {
            continue;
        };
        let mut up_to_date = false;
        for m in body.as_array().into_iter().flatten() {
            if let Some(key) = m.get("key").and_then(serde_json::Value::as_str) {
                match m["headers"]["operation"].as_str() {
                    Some("insert") => {
                        assert!(keys.insert(key.to_owned()), "{query}: {key} inserted twice")
                    }
                    Some("delete") => assert!(keys.remove(key), "{query}: delete of absent {key}"),
                    _ => {}
                }
            } else if m["headers"]["control"] == "up-to-date" {
                up_to_date = true;
            }
        }
        if up_to_date && keys.len() == want {
            return handle.unwrap();
        }
        caught_up = up_to_date;
        assert!(
            !up_to_date || keys.len() < want,
            "{query}: {} rows > {want}",
            keys.len()
        );
    }
}

/// Waits until no walsender serves our slot (the process that had it is gone).
async fn wait_walsender_gone(pg: &Pg) {
    wait_for(
        "the walsender to exit",
        Duration::from_secs(60),
        async || {
            pg.rows("SELECT count(*) FROM pg_stat_replication").await[0][0].as_deref() == Some("0")
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// T05: SIGTERM

/// T05: SIGTERM while every shape has a live long-poll parked (plus extra parked clients) and
/// a large snapshot is being written: the process exits 0 within the drain bound (the polls
/// would otherwise be held for 20 s), every parked client gets a response, the walsender is
/// gone and the permanent slot kept; after a restart the followers resume without 409 and
/// converge, and the interrupted snapshot's shape is either complete or gone (never partial).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t05_sigterm_drains_and_restart_resumes_without_409() {
    let seed = seed("t05");
    let pg = Pg::start().await;
    pg.exec(SCHEMA).await;
    let big_rows = scale(100_000, 400_000);
    pg.exec(&format!("CREATE TABLE big (id int PRIMARY KEY, pad text); INSERT INTO big SELECT g, repeat('p', 100) FROM generate_series(1, {big_rows}) g")).await;
    tune_pg(&pg, &[]).await;
    let (_dir, storage) = test_storage();
    let port = free_port();
    let env = [("ELECTRIC_LONG_POLL_TIMEOUT", "20000")];
    let mut bin = Binary::spawn_with(&pg.url(), &storage, port, &env);
    wait_active(&bin.base).await;
    let base = bin.base.clone();
    let http = reqwest::Client::new();
    let mut oracles = start_oracles(&http, &base).await;
    let writer = Writer::start(pg.url(), seed, Duration::from_millis(3));
    tokio::time::sleep(Duration::from_millis(800)).await;
    writer.finish().await;
    for o in &mut oracles {
        o.sync(&http, &base).await;
    }
    // Parked long-polls: every shape at its head, several clients each.
    let mut parked = Vec::new();
    for o in &oracles {
        for _ in 0..scale(8, 40) {
            let url = format!(
                "{base}/v1/shape?{}&offset={}&handle={}&live=true",
                o.query,
                o.offset,
                o.handle.clone().unwrap()
            );
            let http = http.clone();
            parked.push(tokio::spawn(async move {
                match http.get(url).send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let _ = r.bytes().await;
                        Some(status)
                    }
                    Err(_) => None,
                }
            }));
        }
    }
    // A large snapshot in flight: headers received, body not read yet.
    let snap = http
        .get(format!("{base}/v1/shape?table=big&offset=-1"))
        .send()
        .await
        .unwrap();
    let big_handle = snap.headers()["electric-handle"]
        .to_str()
        .unwrap()
        .to_owned();
    let reader = tokio::spawn(async move { snap.bytes().await.map(|b| b.len()) });

    let status = bin.terminate(Duration::from_secs(15)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit 0 within the drain bound: {status:?}\n{}",
        bin.log_text()
    );
    for p in parked {
        let got = tokio::time::timeout(Duration::from_secs(5), p)
            .await
            .expect("answered")
            .unwrap();
        assert!(
            matches!(got, Some(200 | 503) | None),
            "parked client: {got:?}"
        );
    }
    let _ = reader.await;
    wait_walsender_gone(&pg).await;
    let slots = pg.rows("SELECT slot_name FROM pg_replication_slots").await;
    assert_eq!(slots.len(), 1, "the permanent slot is kept");

    // Restart: resume without 409, converge; writes made while stopped arrive.
    let writer = Writer::start(pg.url(), seed + 1, Duration::from_millis(3));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bin = Binary::start(&pg.url(), &storage, port).await;
    writer.finish().await;
    let mut handles = converge_all(&http, &base, &pg, &mut oracles).await;
    for o in &oracles {
        assert_eq!(o.refetches, 0, "{}: no 409 after a graceful stop", o.query);
    }
    let r = get(&base, &format!("table=big&offset=-1&handle={big_handle}")).await;
    assert!(matches!(r.status, 200 | 409), "{}", r.status);
    handles.insert(count_until(&base, "table=big", big_rows).await);
    check_hygiene(&pg, "electric_slot_default", &storage, &handles).await;
    drop(bin);
}

// ---------------------------------------------------------------------------------------------
// T02, T03: SIGKILL around snapshots and large commits

/// T02: SIGKILL while a large initial snapshot is written, at several fractions of its final
/// log size (measured on an identical shape first): after a restart the interrupted handle is
/// 409 or complete, a fresh client gets every row exactly once (a partial snapshot is never
/// served as complete), and no orphan directory remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t02_sigkill_during_a_large_snapshot() {
    let pg = Pg::start().await;
    let rows = scale(60_000, 500_000);
    pg.exec(&format!("CREATE TABLE big (id int PRIMARY KEY, pad text); INSERT INTO big SELECT g, md5(g::text) || repeat('s', 200) FROM generate_series(1, {rows}) g")).await;
    let (_dir, storage) = test_storage();
    let port = free_port();
    let mut bin = Binary::start(&pg.url(), &storage, port).await;
    let base = bin.base.clone();
    // Identical content, distinct shapes: `id > -k` selects every row.
    let query = |k: usize| format!("table=big&where=id%20%3E%20-{k}");
    let full_handle = count_until(&base, &query(0), rows).await;
    let full = log_size(&storage, &full_handle);
    let mut live = std::collections::HashSet::from([full_handle]);
    for (k, fraction) in [(1, 0.05), (2, 0.4), (3, 0.8)] {
        // The response starts only with the first full chunk (10 MiB), so the request runs in
        // the background and the new shape is found by its directory.
        let url = format!("{base}/v1/shape?{}&offset=-1", query(k));
        let request = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status()) });
        let mut handle = String::new();
        wait_for(
            "the new shape's directory",
            Duration::from_secs(60),
            async || {
                let found = std::fs::read_dir(storage.join("shapes"))
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .find(|h| !live.contains(h));
                if let Some(h) = found {
                    handle = h;
                }
                !handle.is_empty()
            },
        )
        .await;
        let target = (full as f64 * fraction) as u64;
        // A tight poll: the snapshot grows by megabytes per 100 ms.
        let deadline = Instant::now() + Duration::from_secs(120);
        while log_size(&storage, &handle) < target
            && !storage
                .join("shapes")
                .join(&handle)
                .join("meta.bin")
                .exists()
        {
            assert!(
                Instant::now() < deadline,
                "the snapshot never reached the kill point"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        bin.kill9();
        eprintln!(
            "t02: killed at {} of {full} bytes",
            log_size(&storage, &handle)
        );
        request.abort();
        bin = Binary::start(&pg.url(), &storage, port).await;
        let again = get(&base, &format!("{}&offset=-1&handle={handle}", query(k))).await;
        assert!(
            matches!(again.status, 200 | 409),
            "{}: {}",
            again.status,
            again.text
        );
        live.insert(count_until(&base, &query(k), rows).await);
    }
    check_hygiene(&pg, "electric_slot_default", &storage, &live).await;
    drop(bin);
}

/// T03(b): a small transaction on `a`, then a ~1 MiB one on `b`, SIGKILL 50–900 ms after its
/// COMMIT returned, restart; repeated. The followers resume with their handles (no 409) and
/// converge, and so do fresh clients: nothing lost or duplicated at the ack/dedupe boundary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t03_sigkill_just_after_large_commits() {
    use rand::{Rng, SeedableRng};
    let seed = seed("t03");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let pg = Pg::start().await;
    pg.exec(
        "CREATE TABLE a (id int PRIMARY KEY, v int); CREATE TABLE b (id int PRIMARY KEY, pad text)",
    )
    .await;
    let (_dir, storage) = test_storage();
    let port = free_port();
    let mut bin = Binary::start(&pg.url(), &storage, port).await;
    let base = bin.base.clone();
    let http = reqwest::Client::new();
    let specs = [
        (
            "table=a",
            "SELECT id::text, v::text FROM a",
            &["id", "v"][..],
        ),
        ("table=b", "SELECT id::text, pad FROM b", &["id", "pad"][..]),
    ];
    let mut oracles: Vec<Oracle> = specs
        .iter()
        .map(|(q, _, _)| Oracle::new(q, false))
        .collect();
    for o in &mut oracles {
        o.sync(&http, &base).await;
    }
    let per_txn = 4000;
    for i in 0..scale(5, 50) {
        pg.exec(&format!("INSERT INTO a VALUES ({i}, {i})")).await;
        pg.exec(&format!(
            "INSERT INTO b SELECT g, md5(g::text) || repeat('b', 220) FROM generate_series({}, {}) g",
            i * per_txn,
            (i + 1) * per_txn - 1
        ))
        .await;
        let wait = rng.random_range(50..900);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        bin.kill9();
        bin = Binary::start(&pg.url(), &storage, port).await;
        for o in &mut oracles {
            o.sync(&http, &base).await;
        }
    }
    let mut live = std::collections::HashSet::new();
    for (o, (q, sql, cols)) in oracles.iter_mut().zip(specs) {
        o.converge(&http, &base, &pg, sql, cols).await;
        assert_eq!(o.refetches, 0, "{q}: no 409 after SIGKILL");
        let mut fresh = Oracle::new(q, false);
        fresh.converge(&http, &base, &pg, sql, cols).await;
        assert_eq!(fresh.handle, o.handle);
        live.extend(o.handle.clone());
    }
    check_hygiene(&pg, "electric_slot_default", &storage, &live).await;
    drop(bin);
}

// ---------------------------------------------------------------------------------------------
// T09b, T10: a frozen process

/// T09(b): the binary is frozen (SIGSTOP) until Postgres has dropped its walsender
/// (`wal_sender_timeout = 2s`), writes continue meanwhile, then SIGCONT: it notices, reconnects,
/// and every follower converges without a 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t09b_sigstop_past_wal_sender_timeout_then_continue() {
    let seed = seed("t09b");
    let pg = Pg::start().await;
    pg.exec(SCHEMA).await;
    tune_pg(&pg, &[]).await;
    let (_dir, storage) = test_storage();
    let port = free_port();
    let bin = Binary::start(&pg.url(), &storage, port).await;
    let base = bin.base.clone();
    let http = reqwest::Client::new();
    let oracles = start_oracles(&http, &base).await;
    let writer = Writer::start(pg.url(), seed, Duration::from_millis(3));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = resume(oracles, &base, &stop);
    for _ in 0..scale(1, 3) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        bin.signal(libc::SIGSTOP);
        wait_walsender_gone(&pg).await;
        bin.signal(libc::SIGCONT);
        wait_for(
            "a new walsender on the slot",
            Duration::from_secs(60),
            async || {
                pg.rows("SELECT count(*) FROM pg_replication_slots WHERE active")
                    .await[0][0]
                    .as_deref()
                    == Some("1")
            },
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    writer.finish().await;
    let mut oracles = collect(tasks, &stop).await;
    let handles = converge_all(&http, &base, &pg, &mut oracles).await;
    for o in &oracles {
        assert_eq!(o.refetches, 0, "{}", o.query);
    }
    assert!(
        bin.log_text()
            .contains("replication stream failed; reconnecting")
    );
    check_hygiene(&pg, "electric_slot_default", &storage, &handles).await;
    drop(bin);
}

/// T10: the slot is invalidated by `max_slot_wal_keep_size` while the binary is frozen
/// (1 MiB WAL segments, ~20 MB of WAL, CHECKPOINT): after SIGCONT Ampere logs the invalidation,
/// drops and recreates the slot, purges every shape, and every client 409-converges, including
/// rows written while it was frozen; exactly one slot remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_slot_invalidated_by_max_slot_wal_keep_size_purges_and_409_converges() {
    let pg = Pg::start_with(ClusterOptions {
        initdb_args: vec!["--wal-segsize=1".into()],
        extra_settings: vec![
            ("max_slot_wal_keep_size".into(), "1MB".into()),
            ("min_wal_size".into(), "2MB".into()),
            ("max_wal_size".into(), "2MB".into()),
        ],
        ..ClusterOptions::default()
    })
    .await;
    pg.exec(SCHEMA).await;
    let (_dir, storage) = test_storage();
    let port = free_port();
    let bin = Binary::start(&pg.url(), &storage, port).await;
    let base = bin.base.clone();
    let http = reqwest::Client::new();
    let mut oracles = start_oracles(&http, &base).await;
    bin.signal(libc::SIGSTOP);
    pg.exec("INSERT INTO items VALUES (5001, 1, 1, 'while frozen'); UPDATE acc SET balance = balance - 5 WHERE id = 1; UPDATE acc SET balance = balance + 5 WHERE id = 2").await;
    wait_for("the slot to be invalidated", Duration::from_secs(120), async || {
        pg.exec("CREATE TABLE IF NOT EXISTS filler (pad text); INSERT INTO filler SELECT repeat(md5(g::text), 32) FROM generate_series(1, 4000) g; CHECKPOINT").await;
        pg.rows("SELECT wal_status FROM pg_replication_slots").await[0][0].as_deref() == Some("lost")
    })
    .await;
    bin.signal(libc::SIGCONT);
    // Changes already in the socket buffer may still arrive on the old handles first: wait
    // for the purge itself (an old handle answers 409).
    let probe = format!(
        "{}&offset={}&handle={}",
        oracles[0].query,
        oracles[0].offset,
        oracles[0].handle.clone().unwrap()
    );
    wait_for("the purge", Duration::from_secs(60), async || {
        get(&base, &probe).await.status == 409
    })
    .await;
    assert!(
        bin.log_text().contains("replication slot invalidated"),
        "{}",
        bin.log_text()
    );
    let old: Vec<Option<String>> = oracles.iter().map(|o| o.handle.clone()).collect();
    let handles = converge_all(&http, &base, &pg, &mut oracles).await;
    for (o, h) in oracles.iter().zip(&old) {
        assert!(
            o.refetches > 0 && &o.handle != h,
            "{}: purged and refetched",
            o.query
        );
    }
    check_hygiene(&pg, "electric_slot_default", &storage, &handles).await;
    drop(bin);
}

// ---------------------------------------------------------------------------------------------
// T33, T20

/// T33: a second instance on the same storage and slot (a rolling deploy) waits on the
/// advisory lock: health 202 `waiting`, shape requests 503 (nothing stale is served), never two
/// walsenders. When the first is killed it takes over within seconds and the followers continue
/// on it with the same handles, without a 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t33_second_instance_waits_then_takes_over() {
    let seed = seed("t33");
    let pg = Pg::start().await;
    pg.exec(SCHEMA).await;
    tune_pg(&pg, &[]).await;
    let (_dir, storage) = test_storage();
    let mut a = Binary::start(&pg.url(), &storage, free_port()).await;
    let http = reqwest::Client::new();
    let mut oracles = start_oracles(&http, &a.base).await;
    let b = Binary::spawn(&pg.url(), &storage, free_port());
    let writer = Writer::start(pg.url(), seed, Duration::from_millis(3));
    wait_for("B to report waiting", Duration::from_secs(60), async || {
        reqwest::get(format!("{}/v1/health", b.base))
            .await
            .ok()
            .is_some_and(|r| r.status() == 202)
            && b.log_text().contains("waiting for the replication lock")
    })
    .await;
    let body = reqwest::get(format!("{}/v1/health", b.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("waiting"), "{body}");
    for o in &oracles {
        let r = get(
            &b.base,
            &format!(
                "{}&offset={}&handle={}",
                o.query,
                o.offset,
                o.handle.clone().unwrap()
            ),
        )
        .await;
        assert_eq!(r.status, 503, "B serves nothing while waiting: {}", r.text);
    }
    // B's replication session is open (it is a walsender too) but never streams the slot.
    let senders = pg
        .rows("SELECT (SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'), (SELECT count(*) FROM pg_replication_slots WHERE active)")
        .await;
    assert_eq!(
        senders[0],
        vec![Some("1".into()), Some("1".into())],
        "one streaming walsender"
    );
    for o in &mut oracles {
        o.sync(&http, &a.base).await;
    }
    a.kill9();
    wait_active(&b.base).await;
    writer.finish().await;
    let handles = converge_all(&http, &b.base, &pg, &mut oracles).await;
    for o in &oracles {
        assert_eq!(
            o.refetches, 0,
            "{}: same handle on the new instance",
            o.query
        );
    }
    check_hygiene(&pg, "electric_slot_default", &storage, &handles).await;
    drop(b);
}

/// T20(a): another cluster at the same URL (re-initialised data directory: new system
/// identifier): on restart every shape is purged and clients 409-converge on the new data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_new_system_identifier_purges_and_409_converges() {
    let mut pg = Pg::start().await;
    pg.exec(SCHEMA).await;
    let (_dir, storage) = test_storage();
    let port = free_port();
    let mut bin = Binary::start(&pg.url(), &storage, port).await;
    let base = bin.base.clone();
    let http = reqwest::Client::new();
    let mut oracles = start_oracles(&http, &base).await;
    let sysid = pg
        .rows("SELECT system_identifier::text FROM pg_control_system()")
        .await;
    assert!(
        bin.terminate(Duration::from_secs(15))
            .await
            .is_some_and(|s| s.success())
    );
    tokio::task::block_in_place(|| pg.cluster.reinitialize()).unwrap();
    pg.client = connect(&pg.url()).await;
    assert_ne!(
        pg.rows("SELECT system_identifier::text FROM pg_control_system()")
            .await,
        sysid
    );
    pg.exec(SCHEMA).await;
    pg.exec(
        "INSERT INTO items VALUES (7001, 1, 2, 'new cluster'); DELETE FROM items WHERE id < 10",
    )
    .await;
    let bin = Binary::start(&pg.url(), &storage, port).await;
    let old: Vec<Option<String>> = oracles.iter().map(|o| o.handle.clone()).collect();
    let handles = converge_all(&http, &base, &pg, &mut oracles).await;
    for (o, h) in oracles.iter().zip(&old) {
        assert!(o.refetches > 0 && &o.handle != h, "{}: purged", o.query);
    }
    check_hygiene(&pg, "electric_slot_default", &storage, &handles).await;
    drop(bin);
}

// ---------------------------------------------------------------------------------------------
// T22

/// T22(a): one transaction of many rows (1 M in the long tier) with
/// `logical_decoding_work_mem = 64kB` (Postgres spills it): the binary's peak RSS stays under a
/// generous bound independent of the transaction's size, and the client gets every row exactly
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t22_huge_transaction_streams_in_bounded_memory() {
    let pg = Pg::start().await;
    pg.exec("CREATE TABLE big (id int PRIMARY KEY, pad text)")
        .await;
    tune_pg(
        &pg,
        &["ALTER SYSTEM SET logical_decoding_work_mem = '64kB'"],
    )
    .await;
    let (_dir, storage) = test_storage();
    let bin = Binary::start(&pg.url(), &storage, free_port()).await;
    let base = bin.base.clone();
    let rows = scale(100_000, 1_000_000);
    count_until(&base, "table=big", 0).await;
    let rss_before = bin.peak_rss();
    pg.exec(&format!(
        "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, {rows}) g"
    ))
    .await;
    let handle = count_until(&base, "table=big", rows).await;
    let peak = bin.peak_rss();
    // Slot statistics reach the shared stats a little after the decoding.
    wait_for(
        "Postgres to report the spill",
        Duration::from_secs(60),
        async || {
            pg.rows("SELECT spill_txns FROM pg_stat_replication_slots")
                .await[0][0]
                .as_deref()
                .is_some_and(|n| n != "0")
        },
    )
    .await;
    let spilled = pg
        .rows("SELECT spill_txns FROM pg_stat_replication_slots")
        .await;
    eprintln!(
        "t22: {rows} rows in one transaction; peak RSS {} MiB (before {} MiB); log {} MiB; spill_txns {:?}",
        peak >> 20,
        rss_before >> 20,
        log_size(&storage, &handle) >> 20,
        spilled
    );
    assert!(
        spilled[0][0].as_deref().is_some_and(|n| n != "0"),
        "Postgres spilled"
    );
    assert!(peak < 300 << 20, "peak RSS {} MiB >= 300 MiB", peak >> 20);
    check_hygiene(&pg, "electric_slot_default", &storage, &[handle].into()).await;
}
