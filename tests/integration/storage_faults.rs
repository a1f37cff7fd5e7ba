//! Storage fault scenarios (operations.md §7.2 T04, §7.3 T09a, §7.5 T29, T30, T31): the
//! in-process server runs on a storage [`Fs`] with failpoints (and, for T04, the
//! crash-consistency recorder) while the seeded workload of `faults.rs` runs and its oracle
//! clients follow every shape. Checks: convergence against `SELECT … WHERE …` (followed and fresh
//! clients), no duplicate or out-of-order change (the oracle), no 409 where none is due, and the
//! slot's `confirmed_flush_lsn` never passing what is durable. Waits are bounded waits on
//! conditions; fault windows are durations, never assertions about timing.
//!
//! `AMPERE_LONG_TESTS=1` (or `AMPERE_SOAK=1`) lengthens the fault windows and repeats crashes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ampere::storage::crash::Recorder;
use ampere::storage::failpoints::{Action, Op};
use ampere::storage::io::{Fs, TestFs};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::faults::{
    Oracle, SCHEMA, Step, Writer, check_hygiene, converge_all, follow_in_background, seed,
    start_oracles, test_storage, tune_pg, wait_slot_passes_current_wal,
};
use crate::support::*;

const SLOT: &str = "electric_slot_test";

fn long() -> bool {
    ["AMPERE_LONG_TESTS", "AMPERE_SOAK"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|v| v == "1"))
}

fn pick<T>(fast: T, long_: T) -> T {
    if long() { long_ } else { fast }
}

fn faulty_fs() -> Fs {
    Fs::testing(TestFs::default())
}

fn config_on(pg: &Pg, storage: &Path, fs: &Fs) -> ampere::config::Config {
    let mut c = test_config(pg, storage);
    c.storage_fs = fs.clone();
    c
}

async fn health(base: &str) -> u16 {
    reqwest::get(format!("{base}/v1/health"))
        .await
        .map_or(0, |r| r.status().as_u16())
}

/// Waits (bounded) until `/v1/health` answers `status`.
async fn wait_health(base: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while health(base).await != status {
        assert!(Instant::now() < deadline, "health never became {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn confirmed_flush(pg: &Pg) -> String {
    pg.rows(&format!(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
    ))
    .await[0][0]
        .clone()
        .unwrap_or_default()
}

async fn walsender_pid(pg: &Pg) -> Option<String> {
    pg.rows(&format!(
        "SELECT active_pid::text FROM pg_replication_slots WHERE slot_name = '{SLOT}'"
    ))
    .await
    .first()
    .and_then(|r| r[0].clone())
}

async fn lsn_le(pg: &Pg, a: &str, b: &str) -> bool {
    pg.rows(&format!("SELECT '{a}'::pg_lsn <= '{b}'::pg_lsn"))
        .await[0][0]
        .as_deref()
        == Some("t")
}

/// Followers of every shape, live in the background.
struct Following {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Oracle>>,
}

impl Following {
    fn start(oracles: Vec<Oracle>, base: &str) -> Following {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = oracles
            .into_iter()
            .map(|o| follow_in_background(o, base.to_owned(), stop.clone()))
            .collect();
        Following { stop, tasks }
    }

    async fn stop(self) -> Vec<Oracle> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for t in self.tasks {
            out.push(t.await.unwrap());
        }
        out
    }
}

async fn converge_without_409(pg: &Pg, base: &str, oracles: &mut [Oracle]) -> HashSet<String> {
    let http = reqwest::Client::new();
    let handles = converge_all(&http, base, pg, oracles).await;
    for o in oracles.iter() {
        assert_eq!(o.refetches, 0, "{}: no 409 for a storage fault", o.query);
    }
    handles
}

/// For `ms` while storage cannot be written (`why`): health stays 503 `degraded`, the slot's
/// `confirmed_flush_lsn` does not move, and `probe` is served nothing new.
async fn degraded_window(
    pg: &Pg,
    http: &reqwest::Client,
    base: &str,
    probe: &mut Oracle,
    ms: u64,
    why: &str,
) {
    let acked = confirmed_flush(pg).await;
    probe.sync(http, base).await;
    let seen = (probe.offset.clone(), probe.rows.clone());
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(health(base).await, 503, "degraded while the disk is full");
        assert_eq!(
            confirmed_flush(pg).await,
            acked,
            "nothing is acknowledged while {why}"
        );
        assert!(matches!(
            probe.step(http, base, false).await,
            Step::UpToDate
        ));
        assert_eq!(
            (probe.offset.clone(), probe.rows.clone()),
            seen,
            "nothing new is served while {why}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// T29: disk full

/// T29: ENOSPC on every write (the first one short) for a window while the workload runs.
/// Health turns 503 `degraded`; `confirmed_flush_lsn` does not move while degraded and no new
/// change is served; when space returns the server recovers by itself, and every client
/// converges with no 409, duplicate or reordering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t29_disk_full_stops_acknowledging_then_recovers_by_itself() {
    let seed = seed("t29");
    let pg = Pg::start().await;
    pg.exec(SCHEMA).await;
    tune_pg(&pg, &[]).await;
    let (_dir, storage) = test_storage();
    let fs = faulty_fs();
    let server = Server::start(config_on(&pg, &storage, &fs)).await;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let oracles = start_oracles(&http, &base).await;
    let mut probe = Oracle::new("table=items", false);
    let writer = Writer::start(pg.url(), seed, Duration::from_millis(3));
    let following = Following::start(oracles, &base);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let faults = &fs.test().unwrap().faults;
    faults.arm_with(Op::Write, Action::ShortWrite, Some("log"), Some(1));
    faults.arm(Op::Write, Action::Fail(libc::ENOSPC));
    faults.arm(Op::Create, Action::Fail(libc::ENOSPC));
    wait_health(&base, 503).await;
    // A status update for what was durable before the failure may still be on its way (the
    // client sends them within 100 ms): let it land before taking the reference.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = walsender_pid(&pg).await;
    degraded_window(
        &pg,
        &http,
        &base,
        &mut probe,
        pick(3000, 15000),
        "writes fail",
    )
    .await;
    // The walsender was not dropped meanwhile (keepalives answered).
    assert_eq!(walsender_pid(&pg).await, pid);
    faults.disarm_all();
    wait_health(&base, 200).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let committed = writer.finish().await;
    let mut oracles = following.stop().await;
    eprintln!(
        "t29: {committed} transactions; failpoints fired {}",
        faults.fired()
    );
    let handles = converge_without_409(&pg, &base, &mut oracles).await;
    check_hygiene(&pg, SLOT, &storage, &handles).await;
    server.stop().await;
}

/// A tmpfs of a given size, unmounted on drop (also when the test fails).
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(size: &str) -> SmallFs {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a {size} tmpfs (running as root)");
        SmallFs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills `fs` with a file until the disk is full, then frees `keep` bytes of it.
fn fill(fs: &Path, keep: u64) -> PathBuf {
    use std::io::Write;
    let filler = fs.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0x55u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(keep)).unwrap();
    f.sync_all().unwrap();
    filler
}

/// T29 on a real file system: the storage directory lives on a small tmpfs that the workload
/// fills up (no failpoints: the kernel's own ENOSPC). Health turns 503 `degraded`, nothing is
/// acknowledged or served beyond what was durable, the walsender stays; when space is freed the
/// server recovers by itself, and every client converges with no 409, duplicate or reordering.
/// Needs root for `mount -t tmpfs`; as another user it says so and returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t29_real_tmpfs_full_stops_acknowledging_then_recovers_when_space_returns() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("t29 (tmpfs): skipped, mounting a tmpfs needs root");
        return;
    }
    let seed = seed("t29-tmpfs");
    let pg = Pg::start().await;
    pg.exec(SCHEMA).await;
    tune_pg(&pg, &[]).await;
    let small = SmallFs::mount("8m");
    let storage = small.path().join("storage");
    let server = Server::start(test_config(&pg, &storage)).await;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let oracles = start_oracles(&http, &base).await;
    let mut probe = Oracle::new("table=items", false);
    let writer = Writer::start(pg.url(), seed, Duration::from_millis(3));
    let following = Following::start(oracles, &base);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Leave 64 KiB: the workload's next flushes run out of space.
    let filler = fill(small.path(), 64 * 1024);
    wait_health(&base, 503).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = walsender_pid(&pg).await;
    degraded_window(
        &pg,
        &http,
        &base,
        &mut probe,
        pick(2000, 10000),
        "the disk is full",
    )
    .await;
    assert_eq!(
        walsender_pid(&pg).await,
        pid,
        "keepalives answered meanwhile"
    );
    // Space returns.
    std::fs::remove_file(&filler).unwrap();
    wait_health(&base, 200).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let committed = writer.finish().await;
    let mut oracles = following.stop().await;
    eprintln!("t29 (tmpfs): {committed} transactions");
    let handles = converge_without_409(&pg, &base, &mut oracles).await;
    check_hygiene(&pg, SLOT, &storage, &handles).await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// T30: EIO on fsync

/// T30 ("fsyncgate"): fsync fails with EIO a few times under load. The server never retries
/// a failed sync: it cuts the logs back to their durable length and restarts the stream from
/// the acknowledged position (a new walsender), and the result is still exact: every client
/// converges with no 409, duplicate or reordering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_eio_on_fsync_rewinds_and_replays_exactly() {
    let seed = seed("t30");
    let pg = Pg::start().await;
    pg.exec(SCHEMA).await;
    tune_pg(&pg, &[]).await;
    let (_dir, storage) = test_storage();
    let fs = faulty_fs();
    let server = Server::start(config_on(&pg, &storage, &fs)).await;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let oracles = start_oracles(&http, &base).await;
    let writer = Writer::start(pg.url(), seed, Duration::from_millis(3));
    let following = Following::start(oracles, &base);
    let faults = &fs.test().unwrap().faults;
    let rounds = pick(3, 10);
    for round in 0..rounds {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let pid = walsender_pid(&pg).await;
        let before = faults.fired();
        faults.arm_with(Op::Sync, Action::Fail(libc::EIO), None, Some(1));
        let deadline = Instant::now() + Duration::from_secs(30);
        while faults.fired() == before {
            assert!(Instant::now() < deadline, "the sync failpoint never fired");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A log sync failure restarts the stream (a new walsender); a metadata sync failure
        // is retried whole. Either way the server comes back.
        wait_health(&base, 200).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while walsender_pid(&pg).await.is_none() {
            assert!(Instant::now() < deadline, "the stream never came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "t30: round {round}: walsender {pid:?} -> {:?}",
            walsender_pid(&pg).await
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let committed = writer.finish().await;
    let mut oracles = following.stop().await;
    eprintln!("t30: {committed} transactions, {rounds} EIO on fsync");
    let handles = converge_without_409(&pg, &base, &mut oracles).await;
    check_hygiene(&pg, SLOT, &storage, &handles).await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// T09a: storage stall before sync

/// T09a: every sync stalls for several `wal_sender_timeout`s (2 s) while a row is written.
/// The walsender survives (keepalives are answered by the replication client while the
/// pipeline waits), the row's commit is not acknowledged and not served until the stall ends;
/// then it is, and everything converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t09a_storage_stall_keeps_the_walsender_and_acknowledges_nothing_new() {
    let pg = Pg::start().await;
    pg.exec(SCHEMA).await;
    tune_pg(&pg, &[]).await;
    let (_dir, storage) = test_storage();
    let fs = faulty_fs();
    let server = Server::start(config_on(&pg, &storage, &fs)).await;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let mut oracles = start_oracles(&http, &base).await;
    let mut probe = Oracle::new("table=items", false);
    probe.sync(&http, &base).await;
    wait_slot_passes_current_wal(&pg, SLOT).await;
    let pid = walsender_pid(&pg).await;
    assert!(pid.is_some());

    let faults = &fs.test().unwrap().faults;
    let stall = faults.arm(Op::Sync, Action::Stall);
    // The commit record starts after this position: an acknowledgement of the transaction
    // would be past it.
    let before_commit = pg
        .rows("BEGIN; INSERT INTO items VALUES (7000, 1, 55, 'stalled'); SELECT pg_current_wal_insert_lsn()::text; COMMIT")
        .await[0][0]
        .clone()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while faults.fired() == 0 {
        assert!(Instant::now() < deadline, "no sync reached the stall");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let until = Instant::now() + Duration::from_millis(pick(6000, 12000));
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let acked = confirmed_flush(&pg).await;
        assert!(
            lsn_le(&pg, &acked, &before_commit).await,
            "acknowledged {acked} past the stalled commit (starts after {before_commit})"
        );
        assert_eq!(walsender_pid(&pg).await, pid, "the walsender was dropped");
        assert!(matches!(
            probe.step(&http, &base, false).await,
            Step::UpToDate
        ));
        assert!(
            !probe.rows.keys().any(|k| k.contains("\"7000\"")),
            "a row was served before it was durable"
        );
    }
    faults.disarm(stall);
    wait_slot_passes_current_wal(&pg, SLOT).await;
    assert_eq!(
        walsender_pid(&pg).await,
        pid,
        "no reconnect after the stall"
    );
    let handles = converge_without_409(&pg, &base, &mut oracles).await;
    check_hygiene(&pg, SLOT, &storage, &handles).await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// T04: power loss under load

fn recording_fs(root: &Path) -> Fs {
    std::fs::create_dir_all(root).unwrap();
    Fs::testing(TestFs {
        recorder: Some(Recorder::new(root).unwrap()),
        ..TestFs::default()
    })
}

/// T04: the server runs on the crash-consistency recorder under the seeded workload with every
/// shape followed live. At random instants the power-loss image is taken (and the old
/// server's storage frozen, so it can make nothing more durable or acknowledge it), and a new
/// server starts on the image against the same Postgres. Every follower resumes with its
/// handle and offset (nothing it saw was lost: no 409), fresh clients converge (nothing
/// acknowledged was lost), and the oracle sees no duplicate or reordered change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t04_power_loss_images_recover_every_acknowledged_change() {
    let seed = seed("t04");
    let mut rng = StdRng::seed_from_u64(seed ^ 0x7040);
    let pg = Pg::start().await;
    pg.exec(SCHEMA).await;
    tune_pg(&pg, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut storage: PathBuf = dir.path().join("storage-0");
    let mut fs = recording_fs(&storage);
    let mut server = Server::start(config_on(&pg, &storage, &fs)).await;
    let http = reqwest::Client::new();
    let mut oracles = start_oracles(&http, &server.base).await;
    let writer = Writer::start(pg.url(), seed, Duration::from_millis(3));
    let crashes = pick(2, 10);
    for i in 1..=crashes {
        let following = Following::start(oracles, &server.base);
        let wait = rng.random_range(300..1500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let image = dir.path().join(format!("storage-{i}"));
        let recorder = fs.test().and_then(|t| t.recorder.as_ref()).unwrap();
        let ops = recorder.ops();
        recorder.crash(seed.wrapping_add(i as u64), &image).unwrap();
        eprintln!("t04: power loss {i} after {wait} ms ({ops} storage operations recorded)");
        oracles = following.stop().await;
        server.stop().await;
        storage = image;
        fs = recording_fs(&storage);
        server = Server::start(config_on(&pg, &storage, &fs)).await;
    }
    let following = Following::start(oracles, &server.base);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let committed = writer.finish().await;
    let mut oracles = following.stop().await;
    eprintln!("t04: {committed} transactions, {crashes} power losses");
    let handles = converge_without_409(&pg, &server.base, &mut oracles).await;
    check_hygiene(&pg, SLOT, &storage, &handles).await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// T31: the shape index (meta.bin) and global state

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    let i = at.min(b.len() - 1);
    b[i] ^= 0x20;
    std::fs::write(path, b).unwrap();
}

/// T31 (index): while stopped, one shape's `meta.bin` gets a flipped byte, another's is cut,
/// a third's deleted, and orphan temp files are left (a crash mid-rename), and the shape index
/// (`shapes.idx`, a cache of every `meta.bin`) is deleted so that restart reads them. On
/// restart those three shapes are dropped (their clients get 409 and converge on a new handle),
/// the others continue with no 409, and the temp files are gone. Then the rewritten index gets
/// a flipped byte: every shape still restores (from its own `meta.bin`), none is dropped.
/// Then `state.bin` is corrupted: the service still starts, drops every shape (it cannot tell
/// where they came from), and every client 409-converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t31_corrupt_shape_metadata_drops_only_that_shape() {
    let pg = Pg::start().await;
    pg.exec(SCHEMA).await;
    tune_pg(&pg, &[]).await;
    let (_dir, storage) = test_storage();
    let server = Server::start(test_config(&pg, &storage)).await;
    let http = reqwest::Client::new();
    let mut oracles = start_oracles(&http, &server.base).await;
    let writer = Writer::start(pg.url(), 31, Duration::from_millis(2));
    tokio::time::sleep(Duration::from_millis(800)).await;
    writer.finish().await;
    converge_all(&http, &server.base, &pg, &mut oracles).await;
    server.stop().await;

    let dir_of = |o: &Oracle| storage.join("shapes").join(o.handle.as_ref().unwrap());
    flip(&dir_of(&oracles[0]).join("meta.bin"), 30);
    let m1 = dir_of(&oracles[1]).join("meta.bin");
    let b = std::fs::read(&m1).unwrap();
    std::fs::write(&m1, &b[..b.len() / 2]).unwrap();
    std::fs::remove_file(dir_of(&oracles[2]).join("meta.bin")).unwrap();
    let orphan = dir_of(&oracles[3]).join("meta.tmp");
    std::fs::write(&orphan, b"half a metadata file").unwrap();
    std::fs::write(storage.join("state.tmp"), b"half").unwrap();
    let index = storage.join("shapes.idx");
    assert!(index.exists(), "sealing keeps a shape index");
    std::fs::remove_file(&index).unwrap();
    pg.exec("UPDATE items SET v = (v + 7) % 100 WHERE id % 5 = 0")
        .await;

    let server = Server::start(test_config(&pg, &storage)).await;
    let handles = converge_all(&http, &server.base, &pg, &mut oracles).await;
    for (i, o) in oracles.iter().enumerate() {
        if i < 3 {
            assert_eq!(o.refetches, 1, "{}: a damaged shape is dropped", o.query);
        } else {
            assert_eq!(o.refetches, 0, "{}: other shapes are unaffected", o.query);
        }
    }
    assert!(!orphan.exists() && !storage.join("state.tmp").exists());
    check_hygiene(&pg, SLOT, &storage, &handles).await;
    server.stop().await;

    let len = std::fs::metadata(&index).unwrap().len();
    flip(&index, usize::try_from(len / 2).unwrap());
    pg.exec("UPDATE items SET v = (v + 3) % 100 WHERE id % 7 = 0")
        .await;
    let server = Server::start(test_config(&pg, &storage)).await;
    let handles = converge_all(&http, &server.base, &pg, &mut oracles).await;
    for (i, o) in oracles.iter().enumerate() {
        assert_eq!(
            o.refetches,
            usize::from(i < 3),
            "{}: a damaged index drops no shape",
            o.query
        );
    }
    check_hygiene(&pg, SLOT, &storage, &handles).await;
    server.stop().await;

    flip(&storage.join("state.bin"), 25);
    pg.exec("INSERT INTO items VALUES (9100, 2, 10, NULL)")
        .await;
    let server = Server::start(test_config(&pg, &storage)).await;
    let handles = converge_all(&http, &server.base, &pg, &mut oracles).await;
    for (i, o) in oracles.iter().enumerate() {
        let before = usize::from(i < 3);
        assert_eq!(
            o.refetches,
            before + 1,
            "{}: every shape is dropped with unreadable global state",
            o.query
        );
    }
    check_hygiene(&pg, SLOT, &storage, &handles).await;
    server.stop().await;
}

/// The stream is read while the stored shapes are restored (the restore is held up here by a
/// stalled removal of an orphan temp file, which the restore sweeps): Postgres sends the whole
/// backlog meanwhile, nothing is acknowledged before it is durable, and once the restore ends
/// every change is applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t36_the_backlog_streams_during_the_restore_and_applies_after_it() {
    let pg = Pg::start().await;
    pg.exec(
        "CREATE TABLE items (id int PRIMARY KEY, v int, pad text); \
         INSERT INTO items SELECT g, 0, 'x' FROM generate_series(1, 100) g",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let fs = faulty_fs();
    let server = Server::start(config_on(&pg, &storage, &fs)).await;
    let queries = [
        "table=items&where=v%20%3D%202",
        "table=items&where=id%20%3C%3D%205&columns=id,v",
    ];
    let mut followers: Vec<Follower> = queries.iter().map(|q| Follower::new(q)).collect();
    for f in &mut followers {
        f.sync(&server.base).await;
    }
    server.stop().await;
    // An orphan temp file: the restore removes it, and is held up there.
    std::fs::write(storage.join("orphan.tmp"), b"").unwrap();
    // More than the stream's own buffers hold (~45 MB of changes), less than the prefetch's.
    let rows = 300_000;
    for k in 0..29 {
        pg.exec(&format!(
            "INSERT INTO items SELECT g, CASE WHEN g % 10000 = 7 THEN 2 ELSE 0 END, repeat('p', 100) \
             FROM generate_series({}, {}) g",
            1_000 + k * 10_000,
            1_000 + k * 10_000 + 9_999
        ))
        .await;
    }
    let before_last_commit = pg
        .rows(&format!(
            "BEGIN; \
             INSERT INTO items SELECT g, 0, repeat('p', 100) FROM generate_series({}, {}) g; \
             UPDATE items SET v = 1 WHERE id <= 5; \
             SELECT pg_current_wal_insert_lsn()::text; COMMIT",
            1_000 + 29 * 10_000,
            1_000 + rows - 1
        ))
        .await[0][0]
        .clone()
        .unwrap();
    let acked_before = confirmed_flush(&pg).await;

    let faults = &fs.test().unwrap().faults;
    // Until disarmed (a stall armed for a number of times ends once it has fired them).
    let stall = faults.arm_with(Op::Remove, Action::Stall, Some("orphan.tmp"), None);
    let server = Server::spawn(config_on(&pg, &storage, &fs)).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while faults.fired() == 0 {
        assert!(
            Instant::now() < deadline,
            "the restore never reached the temp file"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The restore is stalled; the walsender still sends everything.
    loop {
        let sent = pg
            .rows(&format!(
                "SELECT sent_lsn::text FROM pg_stat_replication WHERE application_name <> '' \
                 AND pid = (SELECT active_pid FROM pg_replication_slots WHERE slot_name = '{SLOT}')"
            ))
            .await;
        if let Some(sent) = sent.first().and_then(|r| r[0].clone())
            && lsn_le(&pg, &before_last_commit, &sent).await
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backlog was not read during the restore (sent {sent:?}, want {before_last_commit})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        confirmed_flush(&pg).await,
        acked_before,
        "nothing acknowledged while the restore is held up"
    );
    faults.disarm(stall);
    server.wait_active().await;
    let wants = [
        sorted(
            pg.rows("SELECT id::text, v::text FROM items WHERE v = 2")
                .await,
        ),
        sorted(
            pg.rows("SELECT id::text, v::text FROM items WHERE id <= 5")
                .await,
        ),
    ];
    assert_eq!(wants[0].len(), 29);
    for (f, want) in followers.iter_mut().zip(wants) {
        let handle = f.handle.clone();
        f.until(&server.base, "applies the prefetched backlog", |f| {
            f.table(&["id", "v"]) == want
        })
        .await;
        assert_eq!(f.handle, handle);
        assert_eq!(f.refetches, 0);
    }
    wait_slot_passes_current_wal(&pg, SLOT).await;
    server.stop().await;
}
