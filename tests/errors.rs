//! Config errors (exit code 2, naming the key and the file) and model errors (exit code 1, a clear
//! message, never a panic).

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// A config for the quickstart fixture with `extra` appended; returns its path.
fn config_with(dir: &Path, extra: &str) -> PathBuf {
    let body =
        format!("[input]\nbeir = {}\n[output]\ndir = {}\n{extra}\n", tp(&fixture("quickstart")), tp(&dir.join("out")));
    write(dir, "my-config.toml", &body)
}

fn assert_config_error(extra: &str, needles: &[&str]) -> Out {
    let t = tmpdir();
    let cfg = config_with(t.path(), extra);
    let o = run_config(&cfg, &[]);
    o.assert_code(2);
    o.assert_stderr_has(&["my-config.toml"]);
    o.assert_stderr_has(needles);
    assert_eq!(o.stdout, "");
    assert!(!t.path().join("out").exists(), "a config error must stop before writing anything");
    o
}

#[test]
fn unknown_key_is_a_config_error_naming_the_key_and_file() {
    let o = assert_config_error("[index]\nmm = 3", &["mm"]);
    assert!(o.stderr.contains("unknown"), "{}", o.stderr);
}

#[test]
fn unknown_table_is_a_config_error() {
    assert_config_error("[minning]\nseed = 3", &["minning"]);
}

#[test]
fn wrong_type_is_a_config_error_naming_the_key_and_file() {
    let o = assert_config_error("[index]\nm = \"sixteen\"", &["sixteen"]);
    // The key is named either as `index.m` or by the offending line of the file.
    assert!(
        o.stderr.contains("index.m") || (o.stderr.contains("m = \"sixteen\"") && o.stderr.contains("line 6")),
        "the key is not named:\n{}",
        o.stderr
    );
}

#[test]
fn hnsw_m_above_256_is_a_config_error() {
    assert_config_error("[index]\nm = 300", &["index.m", "300", "256"]);
}

#[test]
fn hnsw_m_just_above_the_limit_is_refused_and_the_limit_accepted_by_validation() {
    // hnsw_rs calls process::exit above 256: validation must stop 257 with the valid range.
    assert_config_error("[index]\nm = 257", &["index.m", "257", "256"]);
    let mut cfg = tripletgen::config::Config::default();
    cfg.input.beir = Some(fixture("quickstart"));
    cfg.index.m = 256;
    cfg.validate("test").expect("m = 256 is valid");
}

#[test]
fn range_min_above_range_max_is_a_config_error() {
    assert_config_error("[mine]\nrange_min = 60\nrange_max = 50", &["mine.range_min", "60", "50"]);
}

#[test]
fn a_model_folder_missing_a_file_is_refused_at_load_time() {
    let t = tmpdir();
    let dir = t.path().join("my-model");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.onnx"), b"not really").unwrap();
    std::fs::write(dir.join("config.json"), b"{}").unwrap();
    let o = assert_config_error(
        &format!("[model]\ndir = {}", tp(&dir)),
        &["model.dir", "my-model", "tokenizer.json", "special_tokens_map.json", "a model folder needs model.onnx"],
    );
    assert!(!o.stderr.contains("has no model.onnx"), "model.onnx is there: {}", o.stderr);
}

#[test]
fn a_missing_onnxruntime_file_is_refused_at_load_time() {
    assert_config_error(
        "[model]\nonnxruntime = '/nonexistent/libonnxruntime.so'",
        &["model.onnxruntime", "/nonexistent/libonnxruntime.so", "fetch-models"],
    );
}

#[test]
fn range_min_not_below_range_max_is_a_config_error() {
    assert_config_error("[mine]\nrange_min = 50\nrange_max = 50", &["mine.range_min", "50"]);
    assert_config_error("[mine]\nrange_min = 60", &["mine.range_min", "60"]);
}

#[test]
fn review_margin_out_of_range_is_a_config_error() {
    assert_config_error("[mine]\nreview = true\nreview_margin = -0.5", &["mine.review_margin", "0 to 2"]);
    assert_config_error("[mine]\nreview = \"yes\"", &["review"]);
    let t = tmpdir();
    let o = run(tripletgen().arg("mine").arg(fixture("quickstart")).arg("--out").arg(t.path().join("out")).args([
        "--review",
        "--review-margin",
        "3",
    ]));
    o.assert_code(2).assert_stderr_has(&["mine.review_margin", "command line"]);
}

#[test]
fn command_line_values_are_validated_too() {
    let t = tmpdir();
    let o = run(tripletgen().arg("mine").arg(fixture("quickstart")).arg("--out").arg(t.path().join("out")).args([
        "--range-min",
        "30",
        "--range-max",
        "30",
    ]));
    o.assert_code(2);
    o.assert_stderr_has(&["mine.range_min", "command line"]);
}

#[test]
fn missing_config_file_is_a_config_error() {
    let t = tmpdir();
    let o = run_config(&t.path().join("nope.toml"), &[]);
    o.assert_code(2);
    o.assert_stderr_has(&["nope.toml"]);
}

/// `run --config configs/quickstart.toml` with `cache` as the model cache and `ort` as
/// $ORT_DYLIB_PATH (unset when `None`).
fn quickstart_with_cache(cache: &Path, ort: Option<&Path>, out: &Path) -> Out {
    let mut cmd = tripletgen();
    cmd.env("TRIPLETGEN_CACHE", cache);
    match ort {
        Some(p) => cmd.env("ORT_DYLIB_PATH", p),
        None => cmd.env_remove("ORT_DYLIB_PATH"),
    };
    run(cmd.arg("run").arg("--config").arg(repo().join("configs/quickstart.toml")).arg("--out").arg(out))
}

/// No runtime and no model in the cache: an error that says which command fixes it.
#[test]
fn missing_runtime_says_run_fetch_models() {
    let t = tmpdir();
    let cache = t.path().join("empty-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let o = quickstart_with_cache(&cache, None, &t.path().join("out"));
    o.assert_code(1);
    o.assert_stderr_has(&["tripletgen fetch-models"]);
    assert_eq!(o.stdout, "");
}

/// The runtime is there (through $ORT_DYLIB_PATH) but the model files are not.
#[test]
fn missing_model_files_say_run_fetch_models() {
    let ort = ort_lib();
    let t = tmpdir();
    let cache = t.path().join("empty-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let quickstart = || {
        let o = quickstart_with_cache(&cache, Some(&ort), &t.path().join("out"));
        o.assert_code(1);
        o.assert_stderr_has(&["tripletgen fetch-models", "all-minilm-l6-v2"]);
    };
    quickstart();

    // A model.onnx from an older tripletgen (not the pinned build) is stale, not silently used.
    let dir = cache.join("all-minilm-l6-v2");
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(models_cache().join("all-minilm-l6-v2")).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "json") {
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(dir.join("model.safetensors"), b"weights").unwrap();
    std::fs::write(dir.join("model.onnx"), b"an older model").unwrap();
    quickstart();
}

/// A hub model on a machine without internet access: a clear error about the hub, not a panic.
fn hub_model_fails_cleanly(name: &str) {
    let ort = ort_lib();
    let t = tmpdir();
    let cache = t.path().join("empty-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let cfg = config_with(t.path(), &format!("[model]\nname = \"{name}\"\nonnxruntime = {}\n", tp(&ort)));
    let o = run(tripletgen().env("TRIPLETGEN_CACHE", &cache).arg("run").arg("--config").arg(&cfg));
    o.assert_code(1);
    let lower = o.stderr.to_lowercase();
    assert!(
        lower.contains("internet") || lower.contains("hugging face hub"),
        "the error for hub model {name:?} should say it needs the Hugging Face hub / internet:\n{}",
        o.stderr
    );
    o.assert_stderr_has(&[name]);
}

#[test]
fn hub_model_by_hub_name_fails_with_a_message_about_the_hub() {
    hub_model_fails_cleanly("BAAI/bge-small-en-v1.5");
}

#[test]
fn hub_model_by_fastembed_name_fails_with_a_message_about_the_hub() {
    hub_model_fails_cleanly("BGESmallENV15");
}

#[test]
fn fetch_models_is_idempotent_when_cached() {
    require_models();
    let o = run(tripletgen().arg("fetch-models"));
    o.assert_ok();
    assert_eq!(o.stdout, "");
    assert!(o.stderr.contains("already"), "expected 'already ... (checksums verified)':\n{}", o.stderr);
}

/// A bad value for a mining flag is a usage error like a bad value in the config file (exit 2), as
/// clap already does for `--num-negatives abc`.
#[test]
fn bad_flag_values_exit_2_like_config_errors() {
    let t = tmpdir();
    let base = || {
        let mut c = tripletgen();
        c.arg("mine").arg(fixture("quickstart")).arg("--out").arg(t.path().join("out"));
        c
    };
    let o = run(base().args(["--num-negatives", "abc"]));
    o.assert_code(2);
    for (flag, value) in
        [("--sampling", "best"), ("--index", "faiss"), ("--format", "csv"), ("--relative-margin", "lots")]
    {
        let o = run(base().args([flag, value]));
        o.assert_no_panic();
        o.assert_stderr_has(&[flag, value]);
        assert_eq!(o.code, Some(2), "{flag} {value}: expected exit code 2 (usage/config error)\n{}", o.stderr);
    }
    assert!(!t.path().join("out").exists());
}

#[test]
fn mine_refuses_a_config_file_that_names_another_input() {
    let t = tmpdir();
    // The folder argument names the input; the file names another corpus: refused, both named.
    let o = run(tripletgen()
        .arg("mine")
        .arg(fixture("quickstart"))
        .arg("--out")
        .arg(t.path().join("out"))
        .arg("--config")
        .arg(repo().join("configs/llm-example.toml")));
    o.assert_no_panic();
    o.assert_code(2).assert_stderr_has(&["llm-example.toml", "input.corpus", "fixtures/quickstart"]);
    assert!(!t.path().join("out").exists(), "a config error must stop before writing anything");
    // The same folder in the file and on the command line is no conflict (validation passes; the run
    // itself is not needed here, so an impossible value stops it right after).
    let cfg = write(
        t.path(),
        "same.toml",
        &format!("[input]\nbeir = {}\n[mine]\nnum_negatives = 0\n", tp(&fixture("quickstart"))),
    );
    let o = run(tripletgen()
        .arg("mine")
        .arg(fixture("quickstart"))
        .arg("--out")
        .arg(t.path().join("out"))
        .arg("--config")
        .arg(&cfg));
    o.assert_code(2).assert_stderr_has(&["mine.num_negatives"]);
}
