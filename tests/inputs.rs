//! Input handling: the malformed files of fixtures/bad (see fixtures/bad/README.md for the file,
//! line and field each must be reported with), the edge cases that must be accepted (BOM + CRLF,
//! CSV with a quoted newline), a folder of text files, and a pairs file.

mod common;

use common::*;
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn bad(name: &str) -> PathBuf {
    fixture("bad").join(name)
}

/// A config that reads `corpus` with the valid `queries_small.jsonl` and a one-line qrels that makes
/// `positive` (a valid document of `corpus`) the positive of q1.
fn bad_corpus_config(dir: &Path, corpus: &Path, positive: &str, extra: &str) -> PathBuf {
    let qrels = write(dir, "qrels.tsv", &format!("query-id\tcorpus-id\tscore\nq1\t{positive}\t1\n"));
    let csv_fields =
        if corpus.extension().is_some_and(|e| e == "csv") { "[input.corpus_fields]\nid = \"id\"\n" } else { "" };
    let body = format!(
        "[input]\ncorpus = {}\nqueries = {}\nqrels = {}\n{extra}\n{csv_fields}[mine]\nrelative_margin = 0.0\n[output]\ndir = {}\nformats = [\"triplet\", \"flag-jsonl\"]\n",
        tp(corpus),
        tp(&bad("queries_small.jsonl")),
        tp(&qrels),
        tp(&dir.join("out")),
    );
    write(dir, "config.toml", &body)
}

/// With `on_bad_record = "stop"`: exit 1, and stderr names the file, the line and the field.
fn assert_stops_at(file: &str, positive: &str, line: u64, field: Option<&str>) {
    let t = tmpdir();
    let corpus = bad(file);
    let cfg = bad_corpus_config(t.path(), &corpus, positive, "");
    let o = run_config(&cfg, &[]);
    o.assert_code(1);
    let at = format!("{}:{line}", corpus.display());
    o.assert_stderr_has(&[&at]);
    if let Some(f) = field {
        let quoted = format!("`{f}`");
        assert!(
            o.stderr.contains(&quoted),
            "stderr does not name the field {quoted} (fixtures/bad/README.md):\n{}",
            o.stderr
        );
    }
    assert!(!t.path().join("out/triplet.parquet").exists(), "a failed run left an output file");
}

/// With `on_bad_record = "skip"`: success; report.json counts the record and lists where it is.
fn assert_skips(file: &str, positive: &str, line: u64, field: Option<&str>, documents_left: u64) {
    require_models();
    let t = tmpdir();
    let corpus = bad(file);
    let cfg = bad_corpus_config(t.path(), &corpus, positive, "on_bad_record = \"skip\"");
    let o = run_config(&cfg, &[]);
    o.assert_ok();
    assert_eq!(o.stdout, "");
    let r = read_json(&t.path().join("out/report.json"));
    assert_eq!(num_at(&r, "/ingest/skipped"), 1.0, "{}", r["ingest"]);
    assert_eq!(num_at(&r, "/ingest/documents"), documents_left as f64, "{}", r["ingest"]);
    let listed = r["ingest"]["bad_records"].as_array().expect("ingest.bad_records");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let b = &listed[0];
    let bad_file = b.pointer("/loc/file").and_then(Value::as_str).expect("bad_records[0].loc.file");
    assert!(bad_file.ends_with(file), "{b}");
    assert_eq!(b.pointer("/loc/line").and_then(Value::as_u64), Some(line), "{b}");
    if let Some(f) = field {
        assert_eq!(b["field"].as_str(), Some(f), "bad_records[0] should name the field {f:?}: {b}");
    }
    assert!(b["message"].as_str().is_some_and(|m| !m.is_empty()), "{b}");
    let flag = read_jsonl(&t.path().join("out/flag.jsonl"));
    assert_eq!(flag.len(), 1);
    assert_eq!(strs(&flag[0]["pos_ids"]), [positive]);
}

macro_rules! bad_corpus {
    ($stop:ident, $skip:ident, $file:literal, $positive:literal, line $line:literal, field $field:expr, left $left:literal) => {
        #[test]
        fn $stop() {
            assert_stops_at($file, $positive, $line, $field);
        }
        #[test]
        fn $skip() {
            assert_skips($file, $positive, $line, $field, $left);
        }
    };
}

bad_corpus!(bad_json_stops_naming_file_line_and_field, bad_json_is_skipped_and_reported,
    "corpus_bad_json.jsonl", "bj-001", line 3, field Some("text"), left 3);
bad_corpus!(missing_text_stops_naming_file_line_and_field, missing_text_is_skipped_and_reported,
    "corpus_missing_text.jsonl", "mt-001", line 2, field Some("text"), left 2);
bad_corpus!(wrong_type_stops_naming_file_line_and_field, wrong_type_is_skipped_and_reported,
    "corpus_wrong_type.jsonl", "wt-001", line 4, field Some("text"), left 4);
bad_corpus!(empty_text_stops_naming_file_line_and_field, empty_text_is_skipped_and_reported,
    "corpus_empty_text.jsonl", "et-001", line 2, field Some("text"), left 2);
bad_corpus!(invalid_utf8_stops_naming_file_line_and_field, invalid_utf8_is_skipped_and_reported,
    "corpus_invalid_utf8.jsonl", "u8-001", line 3, field Some("text"), left 3);
bad_corpus!(ragged_csv_stops_naming_file_and_line, ragged_csv_is_skipped_and_reported,
    "corpus_bad.csv", "c1", line 4, field None, left 4);
bad_corpus!(duplicate_id_stops_naming_both_lines, duplicate_id_is_skipped_and_reported,
    "corpus_dup_id.jsonl", "dup-002", line 5, field Some("_id"), left 4);

#[test]
fn duplicate_id_message_names_the_first_occurrence_too() {
    let t = tmpdir();
    let corpus = bad("corpus_dup_id.jsonl");
    let o = run_config(&bad_corpus_config(t.path(), &corpus, "dup-002", ""), &[]);
    o.assert_code(1);
    o.assert_stderr_has(&[&format!("{}:5", corpus.display()), &format!("{}:1", corpus.display()), "dup-001"]);
}

#[test]
fn qrels_naming_an_unknown_document_stops_with_file_line_and_field() {
    let t = tmpdir();
    let qrels = bad("qrels_unknown_doc.tsv");
    let body = format!(
        "[input]\ncorpus = {}\nqueries = {}\nqrels = {}\n[output]\ndir = {}\n",
        tp(&bad("corpus_bom_crlf.jsonl")),
        tp(&bad("queries_small.jsonl")),
        tp(&qrels),
        tp(&t.path().join("out"))
    );
    let cfg = write(t.path(), "c.toml", &body);
    let o = run_config(&cfg, &[]);
    o.assert_code(1);
    o.assert_stderr_has(&[&format!("{}:3", qrels.display()), "`corpus-id`", "d9"]);

    // Skipped: the two other qrels lines are mined.
    require_models();
    let body = body.replace("[input]\n", "[input]\non_bad_record = \"skip\"\n")
        + "formats = [\"flag-jsonl\"]\n[mine]\nrelative_margin = 0.0\n";
    let cfg = write(t.path(), "c2.toml", &body);
    run_config(&cfg, &[]).assert_ok();
    let r = read_json(&t.path().join("out/report.json"));
    assert_eq!(num_at(&r, "/ingest/skipped"), 1.0);
    assert_eq!(num_at(&r, "/ingest/pairs"), 2.0);
    assert_eq!(r.pointer("/ingest/bad_records/0/loc/line").and_then(Value::as_u64), Some(3));
    assert_eq!(r.pointer("/ingest/bad_records/0/field").and_then(Value::as_str), Some("corpus-id"));
}

#[test]
fn bom_and_crlf_jsonl_is_accepted_as_is() {
    require_models();
    let t = tmpdir();
    let qrels = write(t.path(), "qrels.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td3\t1\n");
    let body = format!(
        "[input]\ncorpus = {}\nqueries = {}\nqrels = {}\n[mine]\nrelative_margin = 0.0\n[output]\ndir = {}\nformats = [\"flag-jsonl\"]\n",
        tp(&bad("corpus_bom_crlf.jsonl")),
        tp(&bad("queries_small.jsonl")),
        tp(&qrels),
        tp(&t.path().join("out"))
    );
    let o = run_config(&write(t.path(), "c.toml", &body), &[]);
    o.assert_ok();
    let r = read_json(&t.path().join("out/report.json"));
    assert_eq!(num_at(&r, "/ingest/documents"), 3.0);
    assert_eq!(num_at(&r, "/ingest/pairs"), 3.0);
    assert_eq!(num_at(&r, "/ingest/skipped"), 0.0);
    let flag = read_jsonl(&t.path().join("out/flag.jsonl"));
    let ids: Vec<String> = flag.iter().flat_map(|l| strs(&l["pos_ids"])).collect();
    assert_eq!(ids, ["d1", "d2", "d3"], "ids must not keep the BOM");
    assert_eq!(strs(&flag[1]["pos"]), ["Shinkansen The Shinkansen (新幹線) opened in 1964 between Tokyo and Osaka."]);
    for l in &flag {
        for text in strs(&l["pos"]).iter().chain(&strs(&l["neg"])) {
            assert!(!text.contains('\r') && !text.contains('\u{feff}'), "CR or BOM kept in {text:?}");
        }
    }
}

#[test]
fn csv_corpus_with_a_quoted_newline_is_read() {
    require_models();
    let t = tmpdir();
    let cfg = bad_corpus_config(t.path(), &bad("corpus.csv"), "c3", "");
    run_config(&cfg, &[]).assert_ok();
    let r = read_json(&t.path().join("out/report.json"));
    assert_eq!(num_at(&r, "/ingest/documents"), 5.0, "{}", r["ingest"]);
    assert_eq!(num_at(&r, "/ingest/skipped"), 0.0);
    let flag = read_jsonl(&t.path().join("out/flag.jsonl"));
    assert_eq!(
        strs(&flag[0]["pos"]),
        ["ISO Raising the ISO brightens the image, but it adds noise.\nKeep it as low as the light allows."]
    );
    let ids: HashSet<String> =
        flag.iter().flat_map(|l| strs(&l["neg_ids"]).into_iter().chain(strs(&l["pos_ids"]))).collect();
    assert!(ids.iter().all(|i| ["c1", "c2", "c3", "c4", "c5"].contains(&i.as_str())), "{ids:?}");
}

#[test]
fn text_folder_corpus_uses_relative_paths_as_ids() {
    require_models();
    let t = tmpdir();
    let queries = write(
        t.path(),
        "q.jsonl",
        "{\"_id\":\"t1\",\"text\":\"how do I pull an espresso shot\"}\n{\"_id\":\"t2\",\"text\":\"moons of jupiter in binoculars\"}\n",
    );
    let qrels = write(
        t.path(),
        "r.tsv",
        "query-id\tcorpus-id\tscore\nt1\tnotes/espresso.md\t1\nt2\tnotes/astronomy/jupiter-moons.md\t1\n",
    );
    let body = format!(
        "[input]\ncorpus = {}\nqueries = {}\nqrels = {}\n[mine]\nrelative_margin = 0.0\n[output]\ndir = {}\nformats = [\"flag-jsonl\"]\n",
        tp(&fixture("textdir")),
        tp(&queries),
        tp(&qrels),
        tp(&t.path().join("out"))
    );
    run_config(&write(t.path(), "c.toml", &body), &[]).assert_ok();
    let r = read_json(&t.path().join("out/report.json"));
    assert_eq!(num_at(&r, "/ingest/documents"), 6.0, "{}", r["ingest"]);
    assert_eq!(num_at(&r, "/ingest/pairs"), 2.0, "{}", r["ingest"]);
    let expected: HashSet<&str> = [
        "guides/backups.md",
        "guides/rail/night-trains.txt",
        "notes/astronomy/jupiter-moons.md",
        "notes/astronomy/observing-log.txt",
        "notes/espresso.md",
        "notes/hiking.txt",
    ]
    .into();
    let flag = read_jsonl(&t.path().join("out/flag.jsonl"));
    assert_eq!(strs(&flag[0]["pos_ids"]), ["notes/espresso.md"]);
    let espresso = std::fs::read_to_string(fixture("textdir/notes/espresso.md")).unwrap();
    assert_eq!(strs(&flag[0]["pos"])[0].trim(), espresso.trim());
    let seen: HashSet<String> =
        flag.iter().flat_map(|l| strs(&l["neg_ids"]).into_iter().chain(strs(&l["pos_ids"]))).collect();
    for id in &seen {
        assert!(expected.contains(id.as_str()), "id {id:?} is not a relative path of textdir/");
    }
    assert!(seen.len() >= 4, "{seen:?}");
}

/// fixtures/pairs.jsonl: lines 1-7 have positives copied byte for byte from the `text` field of seven
/// quickstart documents; they must be matched to those documents (not added again), so the document
/// cannot come back as a hard negative of its own query.
#[test]
fn pairs_input_matches_positives_to_corpus_documents() {
    require_models();
    let t = tmpdir();
    let body = format!(
        "[input]\ncorpus = {}\npairs = {}\n[output]\ndir = {}\nformats = [\"triplet\", \"flag-jsonl\"]\n",
        tp(&fixture("quickstart/corpus.jsonl")),
        tp(&fixture("pairs.jsonl")),
        tp(&t.path().join("out"))
    );
    let o = run_config(&write(t.path(), "c.toml", &body), &[]);
    o.assert_ok();
    let r = read_json(&t.path().join("out/report.json"));
    assert_eq!(num_at(&r, "/ingest/pairs"), 10.0, "{}", r["ingest"]);
    assert_eq!(num_at(&r, "/ingest/queries_with_positives"), 10.0, "{}", r["ingest"]);
    let flag = read_jsonl(&t.path().join("out/flag.jsonl"));
    assert_eq!(flag.len(), 10);
    let pairs = read_jsonl(&fixture("pairs.jsonl"));
    // Whatever the ids, a pair's negatives never carry its positive text.
    for (i, (l, p)) in flag.iter().zip(&pairs).enumerate() {
        assert_eq!(l["query"], p["query"], "line {}", i + 1);
        let positive = p["positive"].as_str().unwrap();
        for (id, text) in strs(&l["neg_ids"]).iter().zip(strs(&l["neg"])) {
            assert!(!text.contains(positive), "line {}: negative {id} is the pair's own positive document", i + 1);
        }
    }
    let expected = ["astro-006", "cook-006", "rust-006", "garden-004", "med-011", "rail-004", "photo-008"];
    let got: Vec<String> = flag.iter().take(7).map(|l| strs(&l["pos_ids"])[0].clone()).collect();
    assert_eq!(got, expected, "pairs lines 1-7 should resolve to the corpus documents they were copied from");
    assert_eq!(num_at(&r, "/ingest/documents_from_pairs"), 3.0, "{}", r["ingest"]);
    assert_eq!(num_at(&r, "/ingest/documents"), 313.0, "{}", r["ingest"]);
}
