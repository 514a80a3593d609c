//! The PostgreSQL workspace against a real server (a private cluster started by the harness):
//! - the store returns what the SQLite store returns, for every table (ids that sort differently
//!   under a collation, NUL inside texts, batch jobs in save order, files of several chunks);
//! - a run on PostgreSQL writes the same files, byte for byte, as a run on SQLite, and a rerun from
//!   another machine's folder (an empty local cache) embeds nothing and loads the saved graph;
//! - a server restarted under a live connection, and a network cut for seconds, are reconnected and
//!   nothing written is lost; a server restarted mid-run is reconnected by the coordinator and its
//!   two workers, and the run writes what a run alone writes;
//! - a database of a newer schema is refused; opening again applies nothing twice;
//! - the work queue: a run with three `tripletgen worker` processes writes what a run alone writes,
//!   each unit completed once and some by the workers; LLM generation (a real llama.cpp server) and a
//!   judge stage through one worker store every answer under the keys a run alone reads (a
//!   rerun on a copy of the workspace sends nothing and writes the same files); a worker SIGKILLed
//!   mid-unit (embedding, or after storing an LLM answer) loses the unit to the next claimer once
//!   its lease expires, which sends only the calls with no stored answer; a second coordinator on
//!   one database is refused; a coordinator cut off from the database takes its lock again when it
//!   reconnects, and stops if another coordinator took it meanwhile;
//! - examples/: the Slurm scripts run a coordinator and an array of workers; the Kubernetes jobs
//!   pass only flags that exist;
//! - TLS: `sslmode=verify-full` with `sslrootcert` connects to a server that serves TLS only (the
//!   connection is encrypted); `require` verifies the certificate too and refuses an unknown CA; a
//!   plain connection is refused by the server; a missing CA file is named;
//! - the password comes from PGPASSWORD only and appears in no output, log or error.

mod common;
#[path = "common/llama.rs"]
mod llama;
#[path = "common/pg.rs"]
mod pg;
#[path = "common/tcp_proxy.rs"]
mod tcp_proxy;

use common::*;
use pg::PgCluster;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;
use tripletgen::hash::ContentHash;
use tripletgen::workspace::{Location, Produced, Scored, Store};

const PASSWORD: &str = "pg-canary-Zr8Kq2Wn5Tx7";

/// The cluster shared by the tests of this file (one database each), or `None` when skipped.
fn cluster() -> Option<&'static PgCluster> {
    static C: OnceLock<Option<PgCluster>> = OnceLock::new();
    C.get_or_init(|| PgCluster::start(PASSWORD)).as_ref()
}

/// Open `url` with the cluster's password in the environment (the store reads PGPASSWORD).
fn connect(url: &str) -> Store {
    // SAFETY: tests set the same value in every thread that sets it.
    unsafe { std::env::set_var("PGPASSWORD", PASSWORD) };
    Store::connect(&Location::parse(url)).unwrap_or_else(|e| panic!("{e}"))
}

/// The same writes on a store, and everything read back.
fn exercise(s: &mut Store) -> String {
    let k = |t: &str| ContentHash::of(t);
    s.put_embeddings("m", &[(k("a"), &[1.0, -2.5, f32::MIN_POSITIVE]), (k("b"), &[0.0, 3.0, 1e-30])]).unwrap();
    s.put_embeddings("m", &[(k("a"), &[4.0, 5.0, 6.0]), (k("a"), &[7.0, 8.0, 9.0])]).unwrap();
    s.put_llm(&k("call"), "paraphrase", "qwen", "{\"content\":\"a\\u0000b\"}").unwrap();
    s.put_llm(&k("call"), "paraphrase", "qwen", "{\"content\":\"second\"}").unwrap();
    let verdict = |score: f32, label, detail: Option<&str>| Scored { score, label, detail: detail.map(String::from) };
    s.put_judgements(
        "llm:x",
        &[
            (k("q1"), verdict(0.1f32, Some(1), Some("replaced"))),
            (k("q2"), verdict(0.7, None, Some("yes\0 with a NUL"))),
            (k("q3"), verdict(0.5, None, None)),
            (k("q1"), verdict(0.3, Some(0), Some("no"))),
        ],
    )
    .unwrap();
    let ids = ["b", "B", "_z", "Z", "a", "é", "x\0y", "10", "9"];
    let produced: Vec<Produced> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Produced { id: id.to_string(), hash: k(id), generated: i, negatives: 2 * i })
        .collect();
    s.save_snapshot("document", &produced).unwrap();
    s.save_snapshot("document", &produced[1..]).unwrap();
    let changes = s.compare_snapshot("document", &[("a".into(), k("a")), ("new".into(), k("n"))]).unwrap();
    use tripletgen::llm::{BatchJournal, BatchRecord};
    let rec = |f: &str, done| BatchRecord {
        input_file: f.into(),
        endpoint: "e".into(),
        batch_id: Some(format!("batch-{f}")),
        custom_ids: vec!["1".into(), "2".into()],
        done,
    };
    for r in [rec("f2", false), rec("f1", false), rec("f3", false), rec("f2", false), rec("f3", true)] {
        s.save_batch(&r).unwrap();
    }
    let batches: Vec<String> = s.open_batches("e").unwrap().into_iter().map(|r| r.input_file).collect();
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{}/{}/{}",
        s.get_embeddings("m", &[k("a"), k("b"), k("c")], 3).unwrap(),
        s.get_llm(&k("call")).unwrap(),
        s.get_judgements("llm:x", &[k("q1"), k("q2"), k("q3"), k("q4")]).unwrap(),
        s.snapshot("document").unwrap(),
        changes,
        batches,
        s.get_embeddings("other", &[k("a")], 3).unwrap(),
        s.count_embeddings("m").unwrap(),
        s.count_llm().unwrap(),
        s.count_judgements("llm:x").unwrap(),
    )
}

#[test]
fn a_database_workspace_returns_what_a_folder_workspace_returns() {
    let Some(c) = cluster() else { return };
    let t = tmpdir();
    let on_sqlite = exercise(&mut Store::open(&t.path().join("ws")).unwrap());
    let url = c.create_db("conformance");
    let on_pg = exercise(&mut connect(&url));
    assert_eq!(on_pg, on_sqlite);
    for stored in ["yes\\0 with a NUL", "second", "[7.0, 8.0, 9.0]", "x\\0y", "[\"f1\", \"f2\"]", "2/1/3"] {
        assert!(on_sqlite.contains(stored), "{stored} in {on_sqlite}");
    }
    // Reopened, it still holds the same (and opening applies no migration twice).
    let again = connect(&url);
    assert_eq!(again.count_embeddings("m").unwrap(), 2);
    assert_eq!(c.psql("conformance", "SELECT count(*) FROM schema_migrations"), "3");

    // Files (the saved graph) go in and out in chunks of 16 MiB, checked by SHA-256.
    let mut s = connect(&url);
    let big: Vec<u8> = (0..(40u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let local = t.path().join("a/index/hnsw.bin");
    std::fs::create_dir_all(local.parent().unwrap()).unwrap();
    std::fs::write(&local, &big).unwrap();
    s.save_file("index/hnsw.bin", &local).unwrap();
    assert_eq!(c.psql("conformance", "SELECT count(*) FROM artifacts"), "3");
    let elsewhere = t.path().join("b/index/hnsw.bin");
    s.fetch_file("index/hnsw.bin", &elsewhere).unwrap();
    assert!(std::fs::read(&elsewhere).unwrap() == big, "the fetched file equals the saved one");
    // A changed file replaces the stored one; an unchanged one is not sent again.
    std::fs::write(&local, b"small").unwrap();
    s.save_file("index/hnsw.bin", &local).unwrap();
    assert_eq!(c.psql("conformance", "SELECT count(*) || ' ' || max(generation) FROM artifacts"), "1 2");
    s.save_file("index/hnsw.bin", &local).unwrap();
    assert_eq!(c.psql("conformance", "SELECT generation FROM artifact_heads"), "2");
    s.fetch_file("index/hnsw.bin", &elsewhere).unwrap();
    assert_eq!(std::fs::read(&elsewhere).unwrap(), b"small");
}

#[test]
fn a_database_of_a_newer_schema_is_refused() {
    let Some(c) = cluster() else { return };
    let url = c.create_db("newer");
    drop(connect(&url));
    c.psql("newer", "INSERT INTO schema_migrations (version, checksum, tool_version) VALUES (99, 'x', '9.9.9')");
    let e = Store::connect(&Location::parse(&url)).err().expect("refused").to_string();
    assert!(e.contains("newer tripletgen") && e.contains("99") && e.contains(&url), "{e}");
    c.psql(
        "newer",
        "DELETE FROM schema_migrations WHERE version = 99; UPDATE schema_migrations SET checksum = 'edited'",
    );
    let e = Store::connect(&Location::parse(&url)).err().expect("refused").to_string();
    assert!(e.contains("differs"), "{e}");
}

#[test]
fn a_restarted_server_is_reconnected_and_nothing_written_is_lost() {
    let Some(c) = PgCluster::start(PASSWORD) else { return };
    let url = c.create_db("restart");
    let mut s = connect(&url);
    let k = |i: usize| ContentHash::of(&i.to_string());
    s.put_llm(&k(0), "s", "m", "before").unwrap();
    std::thread::scope(|scope| {
        scope.spawn(|| c.restart_after(Duration::from_secs(2)));
        // Writes go on while the server goes down and comes back: each one waits, then lands.
        for i in 1..40 {
            s.put_llm(&k(i), "s", "m", &format!("answer {i}")).unwrap_or_else(|e| panic!("{e}\n{}", c.log()));
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    assert_eq!(s.count_llm().unwrap(), 40);
    assert_eq!(s.get_llm(&k(0)).unwrap().as_deref(), Some("before"));
    assert!(c.log().matches("database system is ready").count() >= 2, "the server really restarted: {}", c.log());
}

#[test]
fn tls_with_a_verified_certificate_connects_and_an_unverified_or_plain_connection_is_refused() {
    // A private cluster: it serves TLS only.
    let Some(c) = PgCluster::start(PASSWORD) else { return };
    let url = c.create_db("tls");
    let ca = c.require_tls();
    let verified = format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display());
    let mut s = connect(&verified);
    s.put_llm(&ContentHash::of("k"), "s", "m", "over TLS").unwrap();
    assert_eq!(s.get_llm(&ContentHash::of("k")).unwrap().as_deref(), Some("over TLS"));
    let encrypted = c.psql(
        "tls",
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname = 'tls' AND s.ssl",
    );
    assert_ne!(encrypted, "0", "the store's connection is encrypted");
    // sslmode=require verifies too: against the system's CAs, which do not know this server's.
    let err = Store::connect(&Location::parse(&format!("{url}?sslmode=require"))).err().expect("refused").to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // Without TLS the server refuses (hostssl only), and says why.
    let err = Store::connect(&Location::parse(&url)).err().expect("refused").to_string();
    assert!(err.contains("no encryption") || err.contains("SSL off"), "{err}");
    // A CA file that does not exist is named when the config is checked.
    let missing = format!("{url}?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem");
    let why = Location::parse(&missing).check().expect_err("refused");
    assert!(why.contains("/nonexistent/ca.pem"), "{why}");
    assert!(!why.contains("127.0.0.1"), "the URL is not repeated: {why}");
}

#[test]
fn a_network_cut_for_seconds_is_reconnected_and_nothing_written_is_lost() {
    let Some(c) = cluster() else { return };
    let url = c.create_db("network");
    let proxy = tcp_proxy::TcpProxy::start(format!("127.0.0.1:{}", c.port).parse().unwrap());
    let mut s = connect(&url.replace(&format!(":{}/", c.port), &format!(":{}/", proxy.port)));
    let k = |i: usize| ContentHash::of(&format!("n{i}"));
    let t = std::time::Instant::now();
    for i in 0..30 {
        if i == 5 {
            proxy.cut_for(Duration::from_secs(3));
        }
        s.put_llm(&k(i), "s", "m", &format!("answer {i}")).unwrap_or_else(|e| panic!("{e}"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(t.elapsed() >= Duration::from_secs(3), "the writes waited out the cut: {:?}", t.elapsed());
    let direct = connect(&url);
    assert_eq!(direct.count_llm().unwrap(), 30);
    assert_eq!(direct.get_llm(&k(5)).unwrap().as_deref(), Some("answer 5"));
}

/// A quickstart config with an HNSW graph kept in the workspace.
fn config(dir: &Path, name: &str, workspace: &str) -> PathBuf {
    config_with(dir, name, workspace, "")
}

/// The same, with `[queue]` settings.
fn config_with(dir: &Path, name: &str, workspace: &str, queue: &str) -> PathBuf {
    write(
        dir,
        &format!("{name}.toml"),
        &format!(
            "workspace = \"{workspace}\"\n\n[input]\nbeir = {}\n\n[index]\nkind = \"hnsw\"\n\n[queue]\n{queue}\n\n[output]\ndir = {}\nformats = [\"triplet\", \"flag-jsonl\"]\n",
            tp(&fixture("quickstart")),
            tp(&dir.join(name))
        ),
    )
}

/// A `tripletgen worker` process on `cfg`.
fn worker(cfg: &Path, name: &str, kill_at: Option<&str>) -> std::process::Child {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tripletgen"));
    c.env("PGPASSWORD", PASSWORD)
        .env_remove("TRIPLETGEN_LOG")
        .env_remove("RUST_LOG")
        .args(["worker", "--config"])
        .arg(cfg)
        .args(["--name", name, "--idle-exit", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(k) = kill_at {
        c.env("TRIPLETGEN_KILL_AT", k);
    }
    c.spawn().unwrap()
}

#[test]
fn a_run_with_three_workers_writes_what_a_run_alone_writes() {
    require_models();
    let Some(c) = cluster() else { return };
    let t = tmpdir();
    let url = c.create_db("workers");
    let cfg = config_with(t.path(), "with-workers", &url, "embed_unit = 16");
    let workers: Vec<_> = (0..3).map(|i| worker(&cfg, &format!("w{i}"), None)).collect();
    run_with_password(&cfg, PASSWORD, &[]).assert_ok();
    for w in workers {
        let o = w.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        assert!(err.contains("exiting after"), "{err}");
        assert!(o.stdout.is_empty(), "a worker prints nothing on stdout");
    }
    run_config(&config(t.path(), "alone", &t.path().join("ws").display().to_string()), &[]).assert_ok();
    let diff = differing_files(&t.path().join("alone"), &t.path().join("with-workers"), DATA_FILES);
    assert!(diff.is_empty(), "the run with workers differs in {diff:?}");

    // 310 documents and 82 queries in units of 16: every unit done once, some by the workers.
    let units = c.psql("workers", "SELECT count(*) || ' ' || sum(items) FROM units WHERE state = 'done'");
    assert_eq!(units, format!("{} {}", 310_usize.div_ceil(16) + 82_usize.div_ceil(16), 310 + 82));
    let by_worker: i64 =
        c.psql("workers", "SELECT coalesce(sum(units_done), 0) FROM workers WHERE name LIKE 'w%'").parse().unwrap();
    let all: i64 = c.psql("workers", "SELECT sum(units_done) FROM workers").parse().unwrap();
    assert!(by_worker > 0, "the workers did some of the units");
    assert_eq!(all, 26, "each unit was completed once: {}", c.psql("workers", "SELECT name, units_done FROM workers"));
    assert_eq!(c.psql("workers", "SELECT state FROM runs"), "done");

    // `status` shows it from anywhere.
    let o = run(tripletgen().env("PGPASSWORD", PASSWORD).args(["status", "--workspace", &url]));
    o.assert_ok();
    assert!(o.stdout.contains("run      1 (done)") && o.stdout.contains("26 done (392 items)"), "{}", o.stdout);
    assert!(o.stdout.contains("worker   w0") || o.stdout.contains("worker   w1"), "{}", o.stdout);
}

#[test]
fn a_worker_killed_mid_unit_loses_it_to_the_next_claimer_after_its_lease() {
    require_models();
    let Some(c) = cluster() else { return };
    let t = tmpdir();
    let url = c.create_db("killedworker");
    let cfg = config_with(t.path(), "killed-worker", &url, "embed_unit = 16\nlease_seconds = 2");
    let doomed = worker(&cfg, "doomed", Some("embed-batch:1"));
    run_with_password(&cfg, PASSWORD, &[]).assert_ok();
    let o = doomed.wait_with_output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(9), "the worker was killed mid-unit: {}", String::from_utf8_lossy(&o.stderr));
    // Its unit's vectors were stored before the kill; the unit went to another claimer later.
    assert_eq!(c.psql("killedworker", "SELECT count(*) FROM units WHERE attempts >= 2 AND state = 'done'"), "1");
    assert_eq!(c.psql("killedworker", "SELECT count(*) FROM units WHERE state <> 'done'"), "0");
    run_config(&config(t.path(), "alone", &t.path().join("ws").display().to_string()), &[]).assert_ok();
    let diff = differing_files(&t.path().join("alone"), &t.path().join("killed-worker"), DATA_FILES);
    assert!(diff.is_empty(), "the run differs in {diff:?}");
}

#[test]
fn a_server_restarted_mid_run_is_reconnected_by_the_coordinator_and_its_workers() {
    require_models();
    // A private cluster: the restart must not disturb the other tests' databases.
    let Some(c) = PgCluster::start(PASSWORD) else { return };
    let t = tmpdir();
    let url = c.create_db("midrun");
    let cfg = config_with(t.path(), "restarted", &url, "embed_unit = 8");
    let workers: Vec<_> = (0..2).map(|i| worker(&cfg, &format!("w{i}"), None)).collect();
    let coordinator = std::process::Command::new(env!("CARGO_BIN_EXE_tripletgen"))
        .env("PGPASSWORD", PASSWORD)
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let units_done = || match c.psql("midrun", "SELECT to_regclass('units') IS NULL").as_str() {
        "t" => 0,
        _ => c.psql("midrun", "SELECT count(*) FROM units WHERE state = 'done'").parse::<usize>().unwrap(),
    };
    while units_done() < 3 {
        assert!(start.elapsed() < Duration::from_secs(300), "no unit done after 5 minutes");
        std::thread::sleep(Duration::from_millis(100));
    }
    c.restart_after(Duration::from_secs(2));
    assert!(units_done() < 49, "the restart came mid-run, before the last of the 49 units");
    let o = coordinator.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}\n{}", c.log());
    assert!(err.contains("reconnected"), "the coordinator reconnected: {err}");
    for w in workers {
        let o = w.wait_with_output().unwrap();
        assert!(o.status.success(), "a worker survives the restart: {}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(c.log().matches("database system is ready").count() >= 2, "the server really restarted: {}", c.log());
    assert_eq!(c.psql("midrun", "SELECT count(*) FROM units WHERE state <> 'done'"), "0");
    run_config(&config(t.path(), "alone", &t.path().join("ws").display().to_string()), &[]).assert_ok();
    let diff = differing_files(&t.path().join("alone"), &t.path().join("restarted"), DATA_FILES);
    assert!(diff.is_empty(), "the restarted run differs in {diff:?}");
}

/// The quickstart plus synthetic queries for `docs` documents and a judge stage (the embedding
/// teacher: deterministic, so that two runs judge the same candidates), on `workspace`.
fn llm_config(
    dir: &Path,
    name: &str,
    workspace: &str,
    server: &llama::LlamaServer,
    docs: usize,
    queue: &str,
) -> PathBuf {
    let mut llm = server.config();
    llm.max_tokens = 48;
    write(
        dir,
        &format!("{name}.toml"),
        &format!(
            "workspace = \"{workspace}\"\n\n[input]\nbeir = {}\n\n[generate.llm]\nstrategies = [\"synthetic\"]\n\
             queries_per_document = 1\nmax_documents = {docs}\n\n[filter]\ndocument_fidelity_min = 0.0\nfidelity_min = 0.0\n\
             round_trip_k = 0\n\n[judge]\n[[judge.stages]]\nkind = \"embedding\"\ndir = {}\nthreshold = 0.6\n\n[queue]\n{queue}\n\n\
             [output]\ndir = {}\nformats = [\"triplet\", \"flag-jsonl\"]\n\n{}",
            tp(&fixture("quickstart")),
            tp(&models_cache().join("all-minilm-l6-v2")),
            tp(&dir.join(name)),
            toml::to_string(&std::collections::BTreeMap::from([("llm", llm)])).unwrap(),
        ),
    )
}

/// Completion tasks a private llama-server has served so far.
fn requests_seen(server: &llama::LlamaServer) -> usize {
    server.log().matches("processing task").count()
}

#[test]
fn llm_and_judge_calls_go_through_a_worker_and_a_run_alone_on_a_copy_sends_nothing_and_writes_the_same() {
    require_models();
    let Some(c) = cluster() else { return };
    let Some(server) = llama::LlamaServer::start() else { return llama::skipped("llm_through_a_worker") };
    let t = tmpdir();
    let url = c.create_db("llmqueue");
    let cfg = llm_config(t.path(), "queued", &url, &server, 6, "llm_unit = 1\njudge_unit = 16");
    let w = worker(&cfg, "w0", None);
    run_with_password(&cfg, PASSWORD, &[]).assert_ok();
    let o = w.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sent_first = requests_seen(&server);

    // Every LLM and judge unit done once; the worker did some; the report sums the units' counts.
    let units = c
        .psql("llmqueue", "SELECT kind || ' ' || count(*) FROM units WHERE state = 'done' GROUP BY kind ORDER BY kind");
    assert!(units.contains("llm 6") && units.contains("judge "), "{units}");
    assert_eq!(c.psql("llmqueue", "SELECT count(*) FROM units WHERE state <> 'done'"), "0");
    let by_worker = c.psql("llmqueue", "SELECT count(*) FROM units WHERE worker = 'w0' AND kind IN ('llm', 'judge')");
    assert_ne!(by_worker, "0", "the worker took LLM or judge units");
    let report = read_json(&t.path().join("queued/report.json"));
    assert_eq!(num_at(&report, "/llm/planned"), 6.0, "{}", report["llm"]);
    assert_eq!(num_at(&report, "/llm/sent"), 6.0, "{}", report["llm"]);
    assert!(num_at(&report, "/llm/prompt_tokens") > 0.0, "token counts come back from the units: {}", report["llm"]);
    let judged = num_at(&report, "/judge/stages/0/sent");
    assert!(judged > 0.0, "the judge was asked: {}", report["judge"]);
    let stored: f64 = c.psql("llmqueue", "SELECT count(*) FROM judgements").parse().unwrap();
    assert_eq!(stored, judged, "every verdict stored: {}", report["judge"]);
    assert_eq!(sent_first, 6, "each generation call sent once");

    // A run alone, on a folder copy of that workspace, finds every answer under its own keys.
    let folder = t.path().join("copied");
    run(tripletgen().env("PGPASSWORD", PASSWORD).args(["workspace", "copy", &url]).arg(&folder)).assert_ok();
    let alone = llm_config(t.path(), "alone", &folder.display().to_string(), &server, 6, "");
    run_config(&alone, &[]).assert_ok();
    assert_eq!(requests_seen(&server), sent_first, "the run alone sent nothing");
    let diff = differing_files(&t.path().join("alone"), &t.path().join("queued"), DATA_FILES);
    assert!(diff.is_empty(), "the run alone differs in {diff:?}");
}

#[test]
fn a_worker_killed_after_storing_an_llm_answer_loses_its_unit_and_no_call_is_paid_twice() {
    require_models();
    let Some(c) = cluster() else { return };
    let Some(server) = llama::LlamaServer::start() else { return llama::skipped("killed_llm_worker") };
    let t = tmpdir();
    let url = c.create_db("llmkilled");
    let cfg = llm_config(t.path(), "killed", &url, &server, 8, "llm_unit = 4\nlease_seconds = 2");
    let cfg_text =
        std::fs::read_to_string(&cfg).unwrap().replace("max_calls = 16\n[[judge.stages]]\nkind = \"llm\"\n", "");
    std::fs::write(&cfg, cfg_text).unwrap();
    let doomed = worker(&cfg, "doomed", Some("llm-answer:1"));
    run_with_password(&cfg, PASSWORD, &[]).assert_ok();
    let o = doomed.wait_with_output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(9), "the worker was killed mid-unit: {}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        c.psql("llmkilled", "SELECT count(*) FROM units WHERE kind = 'llm' AND attempts >= 2 AND state = 'done'"),
        "1"
    );
    assert_eq!(c.psql("llmkilled", "SELECT count(*) FROM llm_cache"), "8");
    // The next claimer found the dead worker's stored answer and sent only the other 3 calls.
    let resent = c.psql(
        "llmkilled",
        "SELECT convert_from(result, 'UTF8')::json->>'sent' FROM units WHERE kind = 'llm' AND attempts >= 2",
    );
    assert_eq!(resent, "3", "the unit taken over sent only what was not stored");
    // 8 calls, plus at most the one in flight when the worker died (its answer never arrived).
    let seen = requests_seen(&server);
    assert!((8..=9).contains(&seen), "{seen} requests for 8 calls");
}

#[test]
fn the_slurm_scripts_run_a_coordinator_and_workers_and_the_kubernetes_jobs_use_real_flags() {
    require_models();
    let Some(c) = cluster() else { return };
    let t = tmpdir();
    let url = c.create_db("slurm");
    let cfg = config_with(t.path(), "slurm", "ws-unused", "embed_unit = 16");
    let script = |name: &str| {
        let mut cmd = std::process::Command::new("bash");
        cmd.arg(repo().join("examples/slurm").join(name))
            .env("TRIPLETGEN", env!("CARGO_BIN_EXE_tripletgen"))
            .env("CONFIG", &cfg)
            .env("WORKSPACE", &url)
            .env("PGPASSWORD", PASSWORD)
            .env("IDLE_EXIT", "3")
            .env("OUT", t.path().join("slurm-out"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    };
    let workers: Vec<_> =
        (0..2).map(|i| script("workers.sbatch").env("SLURM_ARRAY_TASK_ID", i.to_string()).spawn().unwrap()).collect();
    let o = script("coordinator.sbatch").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for w in workers {
        let o = w.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(t.path().join("slurm-out/triplet.parquet").is_file());
    assert!(!t.path().join("ws-unused").exists(), "the script's WORKSPACE wins over the config's");
    let names =
        c.psql("slurm", "SELECT string_agg(name, ',' ORDER BY name) FROM workers WHERE name NOT LIKE 'coordinator%'");
    assert!(
        names.split(',').filter(|n| !n.is_empty()).all(|n| n == "w0" || n == "w1"),
        "array tasks name themselves: {names}"
    );

    // Every flag the Kubernetes jobs pass exists on their subcommand.
    for yaml in ["coordinator-job.yaml", "workers-indexed-job.yaml"] {
        let text = std::fs::read_to_string(repo().join("examples/kubernetes").join(yaml)).unwrap();
        let line = text.lines().find(|l| l.trim_start().starts_with("args:")).expect("an args line");
        let args: Vec<String> = serde_json::from_str(line.trim_start().trim_start_matches("args:").trim()).unwrap();
        let help = run(tripletgen().arg(&args[0]).arg("--help"));
        help.assert_ok();
        for flag in args.iter().filter(|a| a.starts_with("--")) {
            assert!(help.stdout.contains(flag.as_str()), "{yaml}: `tripletgen {} {flag}` does not exist", args[0]);
        }
    }
}

#[test]
fn a_coordinator_takes_its_lock_again_after_a_reconnect_and_stops_if_another_took_it() {
    use tripletgen::config::QueueConfig;
    use tripletgen::workspace::queue::{Payload, Queue};
    let Some(c) = cluster() else { return };
    let url = c.create_db("lockretake");
    connect(&url); // PGPASSWORD set, schema created
    let queue =
        |name: &str| Queue::connect(&url, name.into(), &QueueConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let cut = || {
        c.psql("postgres", "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = 'lockretake'")
    };
    // Cut off, reconnected: the lock is taken again, so a second coordinator is still refused.
    let mut a = queue("a");
    a.coordinate().unwrap();
    assert_ne!(cut(), "0", "the coordinator's connections were cut");
    a.work_pending().unwrap_or_else(|e| panic!("reconnects: {e}"));
    let err = queue("b").coordinate().expect_err("the lock is held again").to_string();
    assert!(err.contains("is coordinated by another `tripletgen run`"), "{err}");
    // Cut off, and another coordinator takes the lock before it is back: it stops, with a reason.
    cut();
    let mut b = queue("b");
    b.coordinate().unwrap_or_else(|e| panic!("the lock went with the cut connection: {e}"));
    let err = a
        .run_units("x", &[Payload::Llm { calls: Vec::new() }], "x", false, |_| Ok(None))
        .expect_err("the first coordinator lost its lock")
        .to_string();
    assert!(err.contains("lost its coordinator lock"), "{err}");
}

#[test]
fn a_second_coordinator_on_one_database_is_refused_and_a_worker_needs_a_database() {
    require_models();
    let Some(c) = cluster() else { return };
    let t = tmpdir();
    let url = c.create_db("twocoordinators");
    // The first coordinator holds the lock while it runs; a second one started meanwhile refuses.
    let cfg = config_with(t.path(), "first", &url, "embed_unit = 8");
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_tripletgen"));
    let first = first
        .env("PGPASSWORD", PASSWORD)
        .args(["run", "--config"])
        .arg(&cfg)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while c.psql("twocoordinators", "SELECT count(*) FROM pg_tables WHERE tablename = 'runs'") != "1"
        || c.psql("twocoordinators", "SELECT count(*) FROM runs WHERE state = 'running'") != "1"
    {
        assert!(std::time::Instant::now() < deadline, "the first run never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = run_with_password(&config_with(t.path(), "second", &url, ""), PASSWORD, &[]);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("is coordinated by another `tripletgen run` (run 1, host"), "{}", o.stderr);
    assert!(first.wait_with_output().unwrap().status.success());

    let o = run(tripletgen().args(["worker", "--config"]).arg(config(t.path(), "folder", "ws")));
    o.assert_code(2);
    assert!(o.stderr.contains("workers share a PostgreSQL workspace"), "{}", o.stderr);
}

const DATA_FILES: &[&str] = &["triplet.parquet", "triplet.provenance.parquet", "flag.jsonl"];

fn run_with_password(cfg: &Path, password: &str, extra: &[&str]) -> Out {
    run(tripletgen().env("PGPASSWORD", password).arg("run").arg("--config").arg(cfg).args(extra))
}

#[test]
fn a_run_on_postgres_writes_what_a_run_on_sqlite_writes_and_a_rerun_elsewhere_redoes_nothing() {
    require_models();
    let Some(c) = cluster() else { return };
    let t = tmpdir();
    let url = c.create_db("runs");
    let ws = t.path().join("ws");
    run_config(&config(t.path(), "sqlite", &ws.display().to_string()), &[]).assert_ok();
    let first = run_with_password(&config(t.path(), "pg", &url), PASSWORD, &["-vv"]);
    first.assert_ok();
    let diff = differing_files(&t.path().join("sqlite"), &t.path().join("pg"), DATA_FILES);
    assert!(diff.is_empty(), "SQLite and PostgreSQL runs differ in {diff:?}");
    let r = read_json(&t.path().join("pg/report.json"));
    assert_eq!(r["index"]["graph"]["mode"], "built", "{}", r["index"]);
    assert_eq!(c.psql("runs", "SELECT count(*) FROM artifact_heads WHERE name = 'index/hnsw.bin'"), "1");

    // Another output folder, as on another machine: its local cache is empty, yet nothing is
    // embedded and the graph comes from the database.
    let again = run_with_password(&config(t.path(), "elsewhere", &url), PASSWORD, &[]);
    again.assert_ok();
    let r = read_json(&t.path().join("elsewhere/report.json"));
    assert_eq!(num_at(&r, "/embed_documents/embedded") + num_at(&r, "/embed_queries/embedded"), 0.0, "{r}");
    assert_eq!(
        (r["index"]["graph"]["mode"].as_str(), r["index"]["graph"]["inserted"].as_u64()),
        (Some("updated"), Some(0)),
        "{}",
        r["index"]
    );
    let diff = differing_files(&t.path().join("sqlite"), &t.path().join("elsewhere"), DATA_FILES);
    assert!(diff.is_empty(), "the rerun differs in {diff:?}");

    // The password is in no output, log or local file.
    for (what, text) in [("stdout", &first.stdout), ("stderr at -vv", &first.stderr), ("rerun stderr", &again.stderr)] {
        assert!(!text.contains(PASSWORD), "the password leaked into {what}");
    }
    for dir in ["pg", "elsewhere"] {
        let leaked = files_containing(&t.path().join(dir), PASSWORD);
        assert!(leaked.is_empty(), "the password leaked into {leaked:?}");
    }
}

#[test]
fn a_workspace_copied_to_postgres_and_back_is_whole_and_verified() {
    require_models();
    let Some(c) = cluster() else { return };
    let t = tmpdir();
    let ws = t.path().join("ws");
    run_config(&config(t.path(), "sqlite", &ws.display().to_string()), &[]).assert_ok();
    let url = c.create_db("copied");
    let copy =
        |from: &str, to: &str| run(tripletgen().env("PGPASSWORD", PASSWORD).args(["workspace", "copy", from, to]));
    let o = copy(&ws.display().to_string(), &url);
    o.assert_ok();
    assert!(o.stderr.contains("verified: both sides digest to"), "{}", o.stderr);
    assert!(o.stderr.contains("the saved graph ("), "{}", o.stderr);
    assert_eq!(o.stdout, "");

    // A run on the copy embeds nothing and mines from the copied graph: the same files.
    run_with_password(&config(t.path(), "on-copy", &url), PASSWORD, &[]).assert_ok();
    let r = read_json(&t.path().join("on-copy/report.json"));
    assert_eq!(num_at(&r, "/embed_documents/embedded") + num_at(&r, "/embed_queries/embedded"), 0.0, "{r}");
    assert_eq!(r["index"]["graph"]["inserted"].as_u64(), Some(0), "{}", r["index"]);
    let diff = differing_files(&t.path().join("sqlite"), &t.path().join("on-copy"), DATA_FILES);
    assert!(diff.is_empty(), "the run on the copy differs in {diff:?}");

    // And back into a new folder: the same digest, and a run there embeds nothing either.
    let back = t.path().join("ws-back");
    let o = copy(&url, &back.display().to_string());
    o.assert_ok();
    let digest = |s: &str| s.split("digest to ").nth(1).map(|d| d.trim().to_string());
    assert_eq!(digest(&o.stderr), digest(&copy(&ws.display().to_string(), &c.create_db("again")).stderr));
    run_config(&config(t.path(), "on-back", &back.display().to_string()), &[]).assert_ok();
    let r = read_json(&t.path().join("on-back/report.json"));
    assert_eq!(num_at(&r, "/embed_documents/embedded") + num_at(&r, "/embed_queries/embedded"), 0.0, "{r}");

    // A destination that holds a workspace is refused, and left as it was.
    let o = copy(&ws.display().to_string(), &url);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("already holds a workspace"), "{}", o.stderr);
}

#[test]
fn a_run_killed_mid_embedding_resumes_from_the_database_and_writes_the_same_files() {
    require_models();
    let Some(c) = cluster() else { return };
    let t = tmpdir();
    let url = c.create_db("killed");
    let cfg = config(t.path(), "killed", &url);
    let o = run(tripletgen()
        .env("PGPASSWORD", PASSWORD)
        .env("TRIPLETGEN_KILL_AT", "embed-batch:3")
        .arg("run")
        .arg("--config")
        .arg(&cfg));
    assert_eq!(o.code, None, "killed by SIGKILL: {}", o.stderr);
    let stored: f64 = c.psql("killed", "SELECT count(*) FROM embeddings").parse().unwrap();
    assert!(stored > 0.0 && stored < 310.0, "{stored} embeddings were committed before the kill");

    run_with_password(&cfg, PASSWORD, &[]).assert_ok();
    let r = read_json(&t.path().join("killed/report.json"));
    assert_eq!(num_at(&r, "/embed_documents/cached"), stored, "what was committed is reused: {}", r["embed_documents"]);
    assert_eq!(num_at(&r, "/embed_documents/embedded"), 310.0 - stored, "{}", r["embed_documents"]);
    run_config(&config(t.path(), "reference", &t.path().join("ws").display().to_string()), &[]).assert_ok();
    let diff = differing_files(&t.path().join("reference"), &t.path().join("killed"), DATA_FILES);
    assert!(diff.is_empty(), "the resumed run differs in {diff:?}");
}

#[test]
fn a_wrong_or_misplaced_password_is_refused_without_being_repeated() {
    require_models();
    let Some(c) = cluster() else { return };
    let t = tmpdir();
    let url = c.create_db("auth");
    let o = run_with_password(&config(t.path(), "wrong", &url), "not-the-password-Qm4", &[]);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("password authentication failed") && o.stderr.contains("PGPASSWORD"), "{}", o.stderr);
    assert!(!o.stderr.contains("not-the-password-Qm4"), "{}", o.stderr);

    let with_password = url.replace("tripletgen@", &format!("tripletgen:{PASSWORD}@"));
    let o = run_with_password(&config(t.path(), "in-url", &with_password), PASSWORD, &[]);
    o.assert_code(2);
    assert!(o.stderr.contains("PGPASSWORD") && o.stderr.contains("workspace"), "{}", o.stderr);
    assert!(!o.stderr.contains(PASSWORD), "{}", o.stderr);
}
