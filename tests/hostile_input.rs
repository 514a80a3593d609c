//! Property-based fuzzing (proptest) of every reader — JSONL, CSV, TSV, Parquet, text folders — and of
//! the config loader, with hostile shapes: truncated files, invalid UTF-8, BOMs, CRLF, NUL bytes,
//! enormous lines, deeply nested JSON, wrong types, duplicate ids, empty and whitespace-only texts,
//! Parquet files with the wrong schema or cut short, unknown config keys and impossible values — and
//! byte-level mutations of valid files of each format.
//!
//! Properties, for every generated input:
//! - no panic, and no hang (each case runs on a thread with a deadline);
//! - every bad record names the input file and a line (or row) inside it, and — when the line is a
//!   well-formed record whose field is at fault — the field;
//! - a file-level error names the file; a config error names the file and, for a bad value, the key;
//! - `ingest::load` either succeeds or fails with one of those errors, whatever the policy.
//!
//! The default is 64 cases per property (`PROPTEST_CASES=N` for longer runs; README.md records the
//! long runs and what they found).

use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;
use tripletgen::config::{BadRecordPolicy, Config, InputConfig};
use tripletgen::ingest::{self, BadRecord, IngestError, records};

/// Longest one case may take before it counts as a hang.
const DEADLINE: Duration = Duration::from_secs(30);
/// `input.max_record_bytes` for the fuzzed readers (small, so "enormous" lines are cheap).
const MAX_RECORD: usize = 4096;

fn cfg() -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = 64;
    }
    c.failure_persistence = None;
    c
}

/// Run `f` on its own thread; fail if it panics or does not finish within [`DEADLINE`].
fn no_panic_no_hang<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => panic!("{what}: panicked"),
        Err(_) => panic!("{what}: no answer after {DEADLINE:?} (hang)"),
    }
}

fn tmp() -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new().prefix("fuzz-").tempdir_in(base).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Generators

/// Short texts, including empty, whitespace-only, NUL, control characters, quotes and non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("   \t ".to_string()),
        Just("a\0b".to_string()),
        Just("quote \" and , comma\ttab".to_string()),
        Just("line\r\nbreak".to_string()),
        Just("ünïcödé ✓ 日本語".to_string()),
        "[a-z ]{1,30}",
        any::<String>().prop_map(|s| s.chars().take(40).collect()),
    ]
}

/// A JSON value of any type (for "wrong type" fields).
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    prop_oneof![
        text().prop_map(Value::String),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|n| json!(n)),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
        Just(json!([1, "two"])),
        Just(json!({"nested": {"text": "x"}})),
    ]
}

/// One JSONL line as bytes (without its line ending).
fn jsonl_line() -> impl Strategy<Value = Vec<u8>> {
    let ids = prop_oneof![Just("d1".to_string()), Just("d2".to_string()), "[a-z0-9]{1,6}"]; // duplicates likely
    let record = (ids, json_value(), json_value(), any::<bool>()).prop_map(|(id, title, text, with_text)| {
        let mut m = serde_json::Map::new();
        m.insert("_id".into(), serde_json::Value::String(id));
        m.insert("title".into(), title);
        if with_text {
            m.insert("text".into(), text);
        }
        serde_json::Value::Object(m).to_string().into_bytes()
    });
    let good = (prop_oneof![Just("d1".to_string()), "[a-z0-9]{1,6}"], text())
        .prop_map(|(id, t)| serde_json::json!({"_id": id, "text": t}).to_string().into_bytes());
    prop_oneof![
        4 => good,
        4 => record,
        1 => Just(Vec::new()),
        1 => Just(b"   ".to_vec()),
        1 => Just(b"{\"_id\": \"x\", \"text\": \"cut".to_vec()),
        1 => Just(b"not json at all".to_vec()),
        1 => Just(b"[1, 2, 3]".to_vec()),
        1 => Just(b"{\"_id\": \"bad-utf8\", \"text\": \"\xff\xfe\xc3\"}".to_vec()),
        1 => Just(b"{\"_id\": \"nul\", \"text\": \"a\x00b\"}".to_vec()),
        1 => (1usize..20_000).prop_map(|d| format!("{{\"_id\": \"deep\", \"text\": {}{}}}", "[".repeat(d), "]".repeat(d)).into_bytes()),
        1 => (1usize..20_000).prop_map(|d| "[".repeat(d).into_bytes()),
        1 => (MAX_RECORD..3 * MAX_RECORD).prop_map(|n| format!("{{\"_id\": \"big\", \"text\": \"{}\"}}", "x".repeat(n)).into_bytes()),
        1 => Just(b"{\"_id\": \"dupkey\", \"text\": \"a\", \"text\": \"b\"}".to_vec()),
    ]
}

/// Lines joined with LF or CRLF, maybe with a BOM, maybe cut short at some byte.
fn file_bytes(line: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = (Vec<u8>, Vec<Vec<u8>>)> {
    (prop::collection::vec(line, 0..24), any::<bool>(), any::<bool>(), prop::option::of(any::<prop::sample::Index>()))
        .prop_map(|(lines, crlf, bom, cut)| {
            let mut bytes = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
            for l in &lines {
                bytes.extend_from_slice(l);
                bytes.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            }
            if let Some(i) = cut.filter(|_| !bytes.is_empty()) {
                bytes.truncate(i.index(bytes.len()));
            }
            (bytes, lines)
        })
}

/// One CSV/TSV row (fields joined by the delimiter later), including quotes, ragged rows, NULs.
fn delimited_row() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        text().prop_map(|t| t.into_bytes()),
        text().prop_map(|t| format!("\"{}\"", t.replace('"', "\"\"")).into_bytes()),
        Just(b"\"unbalanced".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        Just(b"a\x00b".to_vec()),
        (MAX_RECORD..2 * MAX_RECORD).prop_map(|n| vec![b'y'; n]),
    ];
    prop::collection::vec(field, 0..5).prop_map(|fs| fs.join(&b"\x01"[..])) // \x01 = delimiter placeholder
}

// ---------------------------------------------------------------------------------------------
// Checks

/// Read `path` with the corpus fields; check every bad record. Returns (records, bad records).
fn check_reader(path: &Path, lines: usize) -> (usize, Vec<BadRecord>) {
    let p = path.to_path_buf();
    let (ok, bad, res) = no_panic_no_hang("read_records", move || {
        let (mut ok, mut bad) = (0usize, Vec::new());
        let res = records::read_records(&p, &["_id", "title", "text"], MAX_RECORD, &mut |item| {
            match item {
                Ok(_) => ok += 1,
                Err(b) => bad.push(b),
            }
            Ok(())
        });
        (ok, bad, res.map_err(|e| e.to_string()))
    });
    if let Err(e) = &res {
        assert!(e.contains(&path.display().to_string()), "a file-level error must name the file: {e}");
    }
    for b in &bad {
        assert!(b.loc.file.starts_with(path), "bad record names another file: {b}");
        assert!(
            b.loc.line >= 1 && b.loc.line as usize <= lines + 1,
            "line {} outside the file ({lines} lines): {b}",
            b.loc.line
        );
        assert!(!b.message.is_empty(), "{b}");
        let shown = b.to_string();
        assert!(shown.contains(&path.display().to_string()), "{shown}");
    }
    (ok, bad)
}

/// `ingest::load` with both policies: no panic; an error names the file (and, for a bad record, the
/// line).
fn check_load(corpus: &Path) {
    for policy in [BadRecordPolicy::Stop, BadRecordPolicy::Skip] {
        let input = InputConfig {
            corpus: Some(corpus.to_path_buf()),
            on_bad_record: policy,
            max_record_bytes: MAX_RECORD,
            ..InputConfig::default()
        };
        let res = no_panic_no_hang("ingest::load", move || {
            ingest::load(&input, true)
                .map(|ds| ds.report)
                .map_err(|e| (e.to_string(), matches!(e, IngestError::Empty(_))))
        });
        match res {
            Ok(report) => {
                for b in &report.bad_records {
                    assert!(b.loc.file.starts_with(corpus), "{b}");
                }
            }
            Err((msg, _)) => {
                assert!(msg.contains(&corpus.display().to_string()), "the error does not name the file: {msg}")
            }
        }
    }
}

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn jsonl_reader_survives_hostile_files((bytes, lines) in file_bytes(jsonl_line())) {
        let t = tmp();
        let path = t.path().join("corpus.jsonl");
        std::fs::write(&path, &bytes).unwrap();
        let (_, bad) = check_reader(&path, bytes.split(|&b| b == b'\n').count());
        // A line that is a whole JSON object (not cut by the truncation) with a bad field names that
        // field.
        let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let in_file: Vec<&[u8]> = body.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).collect();
        for b in &bad {
            let i = b.loc.line as usize - 1;
            let (Some(line), Some(actual)) = (lines.get(i), in_file.get(i)) else { continue };
            let whole = line == actual && i + 1 < in_file.len();
            let object = serde_json::from_slice::<serde_json::Value>(line).is_ok_and(|v| v.is_object());
            if whole && object && line.len() <= MAX_RECORD {
                prop_assert!(b.field.is_some(), "a well-formed record's error must name the field: {}", b);
            }
        }
        check_load(&path);
    }

    #[test]
    fn csv_and_tsv_readers_survive_hostile_files(
        (rows, _) in file_bytes(delimited_row()),
        tsv in any::<bool>(),
        header in prop_oneof![Just("_id,title,text"), Just("_id,text"), Just("id,body"), Just("")],
    ) {
        let t = tmp();
        let (ext, delim) = if tsv { ("tsv", b'\t') } else { ("csv", b',') };
        let mut bytes: Vec<u8> = header.replace(',', &(delim as char).to_string()).into_bytes();
        bytes.push(b'\n');
        bytes.extend(rows.iter().map(|&b| if b == 1 { delim } else { b }));
        let path = t.path().join(format!("corpus.{ext}"));
        std::fs::write(&path, &bytes).unwrap();
        check_reader(&path, bytes.split(|&b| b == b'\n').count());
        check_load(&path);
    }

    #[test]
    fn parquet_reader_survives_wrong_schemas_nulls_and_cut_files(
        id_type in 0..4u8,
        text_type in 0..5u8,
        texts in prop::collection::vec(prop::option::of(text()), 0..20),
        drop_text in any::<bool>(),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, ListBuilder, StringArray, StringBuilder};
        use std::sync::Arc;
        let n = texts.len();
        let ids: ArrayRef = match id_type {
            0 => Arc::new(StringArray::from((0..n).map(|i| Some(format!("d{}", i % 7))).collect::<Vec<_>>())),
            1 => Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())),
            2 => Arc::new(Float64Array::from((0..n).map(|i| i as f64 / 3.0).collect::<Vec<_>>())),
            _ => Arc::new(StringArray::from(vec![None::<String>; n])),
        };
        let text_col: ArrayRef = match text_type {
            0 => Arc::new(StringArray::from(texts.clone())),
            1 => Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())),
            2 => Arc::new(BooleanArray::from((0..n).map(|i| i % 2 == 0).collect::<Vec<_>>())),
            3 => {
                let mut b = ListBuilder::new(StringBuilder::new());
                for t in &texts {
                    b.values().append_option(t.as_deref());
                    b.append(true);
                }
                Arc::new(b.finish())
            }
            _ => Arc::new(arrow::array::BinaryArray::from(texts.iter().map(|t| t.as_deref().map(str::as_bytes)).collect::<Vec<_>>())),
        };
        let mut cols: Vec<(&str, ArrayRef)> = vec![("_id", ids)];
        if !drop_text {
            cols.push(("text", text_col));
        }
        let batch = arrow::array::RecordBatch::try_from_iter(cols).unwrap();
        let mut bytes = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        if let Some(i) = cut {
            bytes.truncate(i.index(bytes.len()));
        }
        let t = tmp();
        let path = t.path().join("corpus.parquet");
        std::fs::write(&path, &bytes).unwrap();
        let (_, bad) = check_reader(&path, n);
        for b in &bad {
            prop_assert!(b.loc.is_row, "Parquet records are rows: {}", b);
        }
        check_load(&path);
    }

    #[test]
    fn text_folder_reader_survives_hostile_files(
        files in prop::collection::vec(
            (
                prop_oneof![Just("a.txt"), Just("b.md"), Just("sub/c.txt"), Just("sub/deeper/d.markdown"), Just("e.bin"), Just("F.TXT")],
                prop_oneof![
                    text().prop_map(String::into_bytes),
                    Just(b"\xEF\xBB\xBFwith a BOM\r\nand CRLF".to_vec()),
                    Just(b"valid\n\xff\xfe invalid on line 2".to_vec()),
                    Just(b"nul \x00 byte".to_vec()),
                    (MAX_RECORD..2 * MAX_RECORD).prop_map(|n| vec![b'z'; n]),
                ],
            ),
            0..8,
        ),
    ) {
        let t = tmp();
        let root = t.path().join("docs");
        std::fs::create_dir_all(&root).unwrap();
        for (name, body) in &files {
            let p = root.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, body).unwrap();
        }
        let max_lines = files.iter().map(|(_, b)| b.split(|&c| c == b'\n').count()).max().unwrap_or(1);
        check_reader(&root, max_lines);
        check_load(&root);
    }
}

/// A valid file of each format, built from the first documents of the quickstart corpus.
fn seed_file(ext: &str) -> Vec<u8> {
    let corpus =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/quickstart/corpus.jsonl"))
            .unwrap();
    let docs: Vec<serde_json::Value> = corpus.lines().take(12).map(|l| serde_json::from_str(l).unwrap()).collect();
    let field = |d: &serde_json::Value, k: &str| d[k].as_str().unwrap_or("").to_string();
    match ext {
        "jsonl" => docs.iter().map(|d| format!("{d}\n")).collect::<String>().into_bytes(),
        "csv" | "tsv" => {
            let mut w =
                csv::WriterBuilder::new().delimiter(if ext == "csv" { b',' } else { b'\t' }).from_writer(Vec::new());
            w.write_record(["_id", "title", "text"]).unwrap();
            for d in &docs {
                w.write_record([field(d, "_id"), field(d, "title"), field(d, "text")]).unwrap();
            }
            w.into_inner().unwrap()
        }
        _ => {
            use arrow::array::{ArrayRef, StringArray};
            let col = |k: &str| -> ArrayRef {
                std::sync::Arc::new(StringArray::from(docs.iter().map(|d| field(d, k)).collect::<Vec<_>>()))
            };
            let batch = arrow::array::RecordBatch::try_from_iter([
                ("_id", col("_id")),
                ("title", col("title")),
                ("text", col("text")),
            ])
            .unwrap();
            let mut bytes = Vec::new();
            let props =
                parquet::file::properties::WriterProperties::builder().set_max_row_group_row_count(Some(4)).build();
            let mut w = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props)).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            bytes
        }
    }
}

/// Byte-level mutations of a valid file (set, insert, delete, duplicate a range), as a coverage-less
/// fuzzer would make them.
/// Positions are fractions of the file's length (`at`), so a mutation means the same thing however
/// the earlier ones changed the length.
#[derive(Debug, Clone)]
enum Mutation {
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize, usize),
    Duplicate(usize, usize),
}

/// The position `raw / 2^64` of the way into a file of `len` bytes.
fn at(raw: usize, len: usize) -> usize {
    ((len as u128 * raw as u128) >> 64) as usize
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(vec![0u8, b'\n', b'\r', b'"', b'{', b'[', b',', b'\t', 0xff, 0x80])
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), byte).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn mutate(mut b: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
    for m in ms {
        if b.is_empty() {
            break;
        }
        match m {
            Mutation::Set(i, v) => {
                let i = at(*i, b.len());
                b[i] = *v;
            }
            Mutation::Insert(i, v) => b.insert(at(*i, b.len()), *v),
            Mutation::Delete(i, n) => {
                let i = at(*i, b.len());
                b.drain(i..(i + n).min(b.len()));
            }
            Mutation::Duplicate(i, n) => {
                let i = at(*i, b.len());
                let piece = b[i..(i + n).min(b.len())].to_vec();
                b.splice(i..i, piece);
            }
        }
    }
    b
}

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn every_reader_survives_mutated_valid_files(
        ext in prop::sample::select(vec!["jsonl", "csv", "tsv", "parquet"]),
        ms in prop::collection::vec(mutation(), 1..8),
    ) {
        let bytes = mutate(seed_file(ext), &ms);
        let t = tmp();
        let path = t.path().join(format!("corpus.{ext}"));
        std::fs::write(&path, &bytes).unwrap();
        let lines = bytes.split(|&b| b == b'\n').count().max(12);
        check_reader(&path, lines);
        check_load(&path);
    }
}

/// Found by `every_reader_survives_mutated_valid_files` (after 2,819 cases): 19 bytes deleted and
/// one zeroed in a valid Parquet file make parquet 60.1 divide by zero while decoding a string
/// column. It must be an error naming the file, not a crash.
#[test]
fn a_parquet_file_that_crashes_the_parquet_reader_is_an_error_naming_the_file() {
    let bytes = mutate(
        seed_file("parquet"),
        &[Mutation::Delete(7781616742887246303, 19), Mutation::Set(4271843586472560264, 0)],
    );
    let t = tmp();
    let path = t.path().join("corpus.parquet");
    std::fs::write(&path, &bytes).unwrap();
    let p = path.clone();
    let err = no_panic_no_hang("read_records", move || {
        records::read_records(&p, &["_id", "title", "text"], MAX_RECORD, &mut |_| Ok(())).map_err(|e| e.to_string())
    })
    .expect_err("a corrupt file is an error");
    assert!(err.contains(&path.display().to_string()) && err.contains("the file is probably corrupt"), "{err}");
    check_load(&path);
}

// ---------------------------------------------------------------------------------------------
// The config loader

/// (dotted key, kind of value it wants) for a sample of the config's keys.
const KEYS: &[&str] = &[
    "index.m",
    "index.ef_construction",
    "index.ef_search",
    "index.exact_below",
    "index.kind",
    "index.recall_sample",
    "mine.range_min",
    "mine.range_max",
    "mine.num_negatives",
    "mine.relative_margin",
    "mine.absolute_margin",
    "mine.max_score",
    "mine.min_score",
    "mine.sampling",
    "mine.seed",
    "embed.batch_size",
    "embed.threads",
    "model.max_length",
    "model.dir",
    "model.onnxruntime",
    "model.pooling",
    "input.on_bad_record",
    "input.max_record_bytes",
    "input.include_title",
    "output.formats",
    "output.row_group_size",
    "filter.fidelity_min",
    "filter.fidelity_max",
    "filter.round_trip_k",
    "filter.dedup_cosine",
    "filter.min_words",
    "filter.max_words",
    "generate.llm.strategies",
    "generate.llm.queries_per_document",
    "generate.lexical.replace_rate",
    "generate.lexical.strategies",
    "llm.base_url",
    "llm.model",
    "llm.concurrency",
    "llm.timeout_secs",
    "llm.temperature",
    "llm.max_tokens",
    "index.no_such_key",
    "mine.rangemax",
    "unknown_table.x",
];

fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop_oneof![
            Just(-1i64),
            Just(0),
            Just(1),
            Just(2),
            Just(50),
            Just(256),
            Just(257),
            Just(100_000),
            Just(i64::MAX)
        ]
        .prop_map(|n| n.to_string()),
        prop_oneof![
            Just("-0.5"),
            Just("0.0"),
            Just("0.5"),
            Just("1.0"),
            Just("1.5"),
            Just("nan"),
            Just("inf"),
            Just("-inf")
        ]
        .prop_map(String::from),
        prop_oneof![
            Just(""),
            Just("top"),
            Just("hnsw"),
            Just("exact"),
            Just("x"),
            Just("/nonexistent/file"),
            Just("synthetic"),
            Just("mean")
        ]
        .prop_map(|s| format!("\"{s}\"")),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("[\"triplet\", \"nope\"]".to_string()),
        Just("[]".to_string()),
        Just("[1, 2]".to_string()),
        Just("{ a = 1 }".to_string()),
    ]
}

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn config_loader_refuses_what_cannot_work_naming_file_and_key(
        entries in prop::collection::vec((prop::sample::select(KEYS), toml_value()), 0..6),
        garbage in prop::option::of(prop_oneof![Just(&b"\xff\xfe"[..]), Just(&b"[index"[..]), Just(&b"m = = 3"[..]), Just(&b"\x00"[..])]),
    ) {
        let t = tmp();
        let corpus = t.path().join("corpus.jsonl");
        std::fs::write(&corpus, "{\"_id\": \"a\", \"text\": \"x\"}\n").unwrap();
        // Group keys by table (TOML forbids defining a table twice); the last value of a key wins.
        let mut tables: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> = Default::default();
        tables.entry("input".into()).or_default().insert("corpus".into(), format!("'{}'", corpus.display()));
        tables.entry("generate.llm".into()).or_default().insert("strategies".into(), "[\"synthetic\"]".into());
        tables.entry("llm".into()).or_default().insert("base_url".into(), "\"http://127.0.0.1:9/v1\"".into());
        for (key, value) in &entries {
            let (table, k) = key.rsplit_once('.').unwrap();
            tables.entry(table.to_string()).or_default().insert(k.to_string(), value.clone());
        }
        let mut body = Vec::new();
        for (table, kv) in &tables {
            body.extend_from_slice(format!("[{table}]\n").as_bytes());
            for (k, v) in kv {
                body.extend_from_slice(format!("{k} = {v}\n").as_bytes());
            }
        }
        if let Some(g) = garbage {
            body.extend_from_slice(g);
        }
        let path = t.path().join("fuzz.toml");
        std::fs::write(&path, &body).unwrap();
        let p = path.clone();
        let res = no_panic_no_hang("Config::load + validate", move || {
            let mut cfg = Config::load(&p)?;
            let origin = p.display().to_string();
            cfg.validate(&origin)?;
            Ok::<_, tripletgen::config::ConfigError>(cfg)
        });
        let file = path.display().to_string();
        match res {
            Ok(cfg) => {
                // What validation lets through cannot crash a stage.
                prop_assert!((1..=256).contains(&cfg.index.m), "index.m = {} accepted", cfg.index.m);
                prop_assert!(cfg.mine.range_min < cfg.mine.range_max);
                prop_assert!(cfg.mine.num_negatives > 0 && cfg.embed.batch_size > 0 && cfg.output.row_group_size > 0);
                prop_assert!(cfg.filter.fidelity_min <= cfg.filter.fidelity_max);
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains(&file), "the error does not name the file: {}", msg);
                match &e {
                    tripletgen::config::ConfigError::Invalid { key, message, .. } => {
                        prop_assert!(!key.is_empty() && msg.contains(key.as_str()) && !message.is_empty(), "{}", msg);
                    }
                    tripletgen::config::ConfigError::Parse { message, .. } => {
                        prop_assert!(message.contains("line") || message.contains("UTF-8") || message.contains("utf-8"), "no line: {}", msg);
                    }
                    tripletgen::config::ConfigError::Read { .. } => {
                        prop_assert!(garbage.is_some(), "only invalid UTF-8 makes the file unreadable: {}", msg);
                    }
                }
            }
        }
    }
}
