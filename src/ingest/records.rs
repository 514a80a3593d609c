//! Format readers: JSONL, CSV/TSV, Parquet and folders of text files, behind one record interface.
//!
//! Each reader hands every record to a callback as a [`RawRecord`] (the wanted fields, in the order
//! asked, as strings) or as a [`BadRecord`] that names the file, the line or row, and the field.
//! Problems with one record never stop the reader; only I/O and file-level problems (a Parquet file
//! without a wanted column, say) are returned as [`IngestError`].

use super::{BadRecord, IngestError, Location};
use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// One record's wanted fields; `None` where the field is absent or null.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// Where the record is.
    pub loc: Location,
    /// The wanted fields, in the order they were asked for.
    pub values: Vec<Option<String>>,
}

/// What a reader hands over for each record.
pub type Item = Result<RawRecord, BadRecord>;

/// The file formats we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated with a header row.
    Csv,
    /// Tab-separated with a header row.
    Tsv,
    /// Apache Parquet.
    Parquet,
    /// A folder of .txt / .md files, one document each.
    TextDir,
}

impl FileFormat {
    /// Guess the format from the path (a folder is a text folder).
    pub fn detect(path: &Path) -> Result<FileFormat, IngestError> {
        if path.is_dir() {
            return Ok(FileFormat::TextDir);
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "ndjson" | "json" => Ok(FileFormat::Jsonl),
            "csv" => Ok(FileFormat::Csv),
            "tsv" | "tab" => Ok(FileFormat::Tsv),
            "parquet" | "pq" => Ok(FileFormat::Parquet),
            _ => Err(IngestError::Unsupported {
                path: path.to_path_buf(),
                message: format!(
                    "unknown file type {ext:?}; expected .jsonl, .csv, .tsv, .parquet or a folder of .txt/.md files"
                ),
            }),
        }
    }
}

/// Read every record of `path`, extracting `fields`, and hand each to `sink`.
pub fn read_records(
    path: &Path,
    fields: &[&str],
    max_record_bytes: usize,
    sink: &mut dyn FnMut(Item) -> Result<(), IngestError>,
) -> Result<(), IngestError> {
    match FileFormat::detect(path)? {
        FileFormat::Jsonl => read_jsonl(path, fields, max_record_bytes, sink),
        FileFormat::Csv => read_delimited(path, b',', fields, sink),
        FileFormat::Tsv => read_delimited(path, b'\t', fields, sink),
        FileFormat::Parquet => read_parquet(path, fields, sink),
        FileFormat::TextDir => read_text_dir(path, max_record_bytes, sink),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IngestError + '_ {
    move |source| IngestError::Io { path: path.to_path_buf(), source }
}

fn bad(loc: Location, field: Option<&str>, message: impl Into<String>) -> BadRecord {
    BadRecord { loc, field: field.map(String::from), message: message.into() }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Joins the items of a JSON list of strings in a [`RawRecord`] value (ASCII unit separator).
pub const LIST_SEP: &str = "\u{1f}";

fn read_jsonl(
    path: &Path,
    fields: &[&str],
    max_record_bytes: usize,
    sink: &mut dyn FnMut(Item) -> Result<(), IngestError>,
) -> Result<(), IngestError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        buf.clear();
        line_no += 1;
        let n = (&mut reader).take(max_record_bytes as u64 + 1).read_until(b'\n', &mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        let loc = Location::line(path, line_no);
        if buf.len() > max_record_bytes && buf.last() != Some(&b'\n') {
            // Skip the rest of the oversized line without holding it in memory.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let m = (&mut reader).take(1 << 20).read_until(b'\n', &mut rest).map_err(io_err(path))?;
                if m == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            sink(Err(bad(loc, None, format!("line is longer than input.max_record_bytes ({max_record_bytes})"))))?;
            continue;
        }
        let mut line: &[u8] = &buf;
        if line_no == 1 {
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        while let Some((b'\n' | b'\r', rest)) = line.split_last() {
            line = rest;
        }
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(e) => {
                let at = e.valid_up_to();
                let field = field_before(&line[..at]);
                sink(Err(bad(loc, field.as_deref(), format!("has invalid UTF-8 at byte {} of the line", at + 1))))?;
                continue;
            }
        };
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                // Name the field being read where the JSON broke, when there is one.
                let at = text.char_indices().nth(e.column()).map_or(text.len(), |(i, _)| i);
                let field = if e.line() == 1 { field_before(&text.as_bytes()[..at]) } else { None };
                let what = if field.is_some() { "is cut short or malformed: invalid JSON" } else { "invalid JSON" };
                sink(Err(bad(loc, field.as_deref(), format!("{what}: {e}"))))?;
                continue;
            }
        };
        let Some(obj) = value.as_object() else {
            sink(Err(bad(loc, None, format!("expected a JSON object, found {}", json_kind(&value)))))?;
            continue;
        };
        let mut values = Vec::with_capacity(fields.len());
        let mut problem = None;
        for f in fields {
            match obj.get(*f) {
                None | Some(serde_json::Value::Null) => values.push(None),
                Some(serde_json::Value::String(s)) => values.push(Some(s.clone())),
                Some(serde_json::Value::Number(n)) => values.push(Some(n.to_string())),
                Some(serde_json::Value::Bool(b)) => values.push(Some(b.to_string())),
                // A list of strings (gold `answers`): kept joined by LIST_SEP; single-valued
                // fields refuse it (see `ingest::required`).
                Some(serde_json::Value::Array(items)) if items.iter().all(serde_json::Value::is_string) => {
                    let parts: Vec<&str> = items.iter().filter_map(serde_json::Value::as_str).collect();
                    values.push(Some(parts.join(LIST_SEP)))
                }
                Some(other) => {
                    problem = Some(bad(loc.clone(), Some(f), format!("must be a string, found {}", json_kind(other))));
                    break;
                }
            }
        }
        sink(match problem {
            Some(p) => Err(p),
            None => Ok(RawRecord { loc, values }),
        })?;
    }
    Ok(())
}

/// The last `"key":` of a JSON object before a byte position: the field being read there.
fn field_before(prefix: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(prefix);
    let mut best = None;
    let mut rest = text.as_ref();
    while let Some(q) = rest.find('"') {
        let after = &rest[q + 1..];
        let Some(end) = after.find('"') else { break };
        let key = &after[..end];
        let tail = after[end + 1..].trim_start();
        if tail.starts_with(':') && !key.contains('\\') {
            best = Some(key.to_string());
            rest = tail;
        } else {
            rest = &after[end + 1..];
        }
    }
    best
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn read_delimited(
    path: &Path,
    delimiter: u8,
    fields: &[&str],
    sink: &mut dyn FnMut(Item) -> Result<(), IngestError>,
) -> Result<(), IngestError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quoting(delimiter == b',')
        .flexible(false)
        .has_headers(true)
        .from_reader(BufReader::with_capacity(1 << 16, file));
    let headers = match rdr.byte_headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(csv_fatal(path, e)),
    };
    let header_names: Vec<String> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let h = if i == 0 { h.strip_prefix(BOM).unwrap_or(h) } else { h };
            String::from_utf8_lossy(h).trim().to_string()
        })
        .collect();
    let columns: Vec<Option<usize>> = fields.iter().map(|f| header_names.iter().position(|h| h == f)).collect();
    let mut rec = csv::ByteRecord::new();
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                let line = rec.position().map(|p| p.line()).unwrap_or(0);
                let loc = Location::line(path, line);
                let mut values = Vec::with_capacity(fields.len());
                let mut problem = None;
                for (f, col) in fields.iter().zip(&columns) {
                    match col.and_then(|c| rec.get(c)) {
                        None => values.push(None),
                        Some(raw) => {
                            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                            match std::str::from_utf8(raw) {
                                Ok(s) => values.push(Some(s.to_string())),
                                Err(e) => {
                                    problem = Some(bad(
                                        loc.clone(),
                                        Some(f),
                                        format!("invalid UTF-8 at byte {} of the field", e.valid_up_to() + 1),
                                    ));
                                    break;
                                }
                            }
                        }
                    }
                }
                sink(match problem {
                    Some(p) => Err(p),
                    None => Ok(RawRecord { loc, values }),
                })?;
            }
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                match e.kind() {
                    csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                        let msg = format!("has {len} columns, the header has {expected_len}");
                        sink(Err(bad(Location::line(path, line), None, msg)))?;
                    }
                    csv::ErrorKind::Io(_) => return Err(csv_fatal(path, e)),
                    _ => sink(Err(bad(Location::line(path, line), None, e.to_string())))?,
                }
            }
        }
    }
    Ok(())
}

fn csv_fatal(path: &Path, e: csv::Error) -> IngestError {
    IngestError::Unsupported { path: path.to_path_buf(), message: e.to_string() }
}

/// Read a Parquet file; a panic inside the Parquet reader (parquet 60.1 divides by zero on some
/// corrupt files, found by tests/hostile_input.rs) becomes an error naming the file instead of a
/// crash. The panic message is kept for the error and not printed.
fn read_parquet(
    path: &Path,
    fields: &[&str],
    sink: &mut dyn FnMut(Item) -> Result<(), IngestError>,
) -> Result<(), IngestError> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_parquet_unguarded(path, fields, sink)));
    std::panic::set_hook(previous);
    result.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown failure");
        Err(IngestError::Unsupported {
            path: path.to_path_buf(),
            message: format!(
                "not a readable Parquet file: the Parquet reader failed ({why}); the file is probably corrupt"
            ),
        })
    })
}

fn read_parquet_unguarded(
    path: &Path,
    fields: &[&str],
    sink: &mut dyn FnMut(Item) -> Result<(), IngestError>,
) -> Result<(), IngestError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = File::open(path).map_err(io_err(path))?;
    let pq = |message: String| IngestError::Unsupported { path: path.to_path_buf(), message };
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| pq(format!("not a readable Parquet file: {e}")))?;
    let schema = builder.schema().clone();
    let mut columns = Vec::with_capacity(fields.len());
    for f in fields {
        match schema.index_of(f) {
            Ok(i) => {
                let dt = schema.field(i).data_type();
                if !matches!(
                    dt,
                    DataType::Utf8
                        | DataType::LargeUtf8
                        | DataType::Utf8View
                        | DataType::Int8
                        | DataType::Int16
                        | DataType::Int32
                        | DataType::Int64
                        | DataType::UInt8
                        | DataType::UInt16
                        | DataType::UInt32
                        | DataType::UInt64
                        | DataType::Float32
                        | DataType::Float64
                        | DataType::Boolean
                ) {
                    return Err(pq(format!("column `{f}` has type {dt}; expected a string or a number")));
                }
                columns.push(Some(i));
            }
            Err(_) => columns.push(None),
        }
    }
    let reader = builder.with_batch_size(8192).build().map_err(|e| pq(e.to_string()))?;
    let mut row = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| pq(format!("after row {row}: {e}")))?;
        let cols: Vec<Option<arrow::array::ArrayRef>> = columns
            .iter()
            .map(|c| c.map(|i| arrow::compute::cast(batch.column(i), &DataType::Utf8)).transpose())
            .collect::<Result<_, _>>()
            .map_err(|e: arrow::error::ArrowError| pq(e.to_string()))?;
        for r in 0..batch.num_rows() {
            row += 1;
            let values = cols
                .iter()
                .map(|c| {
                    c.as_ref()
                        .and_then(|a| if a.is_null(r) { None } else { Some(a.as_string::<i32>().value(r).to_string()) })
                })
                .collect();
            sink(Ok(RawRecord { loc: Location::row(path, row), values }))?;
        }
    }
    Ok(())
}

fn read_text_dir(
    root: &Path,
    max_record_bytes: usize,
    sink: &mut dyn FnMut(Item) -> Result<(), IngestError>,
) -> Result<(), IngestError> {
    let mut files = Vec::new();
    collect_text_files(root, &mut files)?;
    files.sort();
    for file in files {
        let rel = file.strip_prefix(root).unwrap_or(&file);
        let id = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
        let loc = Location::line(&file, 1);
        let meta = std::fs::metadata(&file).map_err(io_err(&file))?;
        if meta.len() > max_record_bytes as u64 {
            sink(Err(bad(
                loc,
                Some("text"),
                format!("file is larger than input.max_record_bytes ({max_record_bytes})"),
            )))?;
            continue;
        }
        let bytes = std::fs::read(&file).map_err(io_err(&file))?;
        let bytes = bytes.strip_prefix(BOM).unwrap_or(&bytes);
        match std::str::from_utf8(bytes) {
            Ok(text) => sink(Ok(RawRecord { loc, values: vec![Some(id), None, Some(text.replace("\r\n", "\n"))] }))?,
            Err(e) => {
                let line = 1 + bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() as u64;
                sink(Err(bad(Location::line(&file, line), Some("text"), "invalid UTF-8")))?;
            }
        }
    }
    Ok(())
}

fn collect_text_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), IngestError> {
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let ft = entry.file_type().map_err(io_err(&path))?;
        if ft.is_dir() {
            collect_text_files(&path, out)?;
        } else if ft.is_file() {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
            if matches!(ext.as_str(), "txt" | "md" | "markdown") {
                out.push(path);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(path: &Path, fields: &[&str]) -> Vec<Item> {
        let mut v = Vec::new();
        read_records(path, fields, 1 << 20, &mut |it| {
            v.push(it);
            Ok(())
        })
        .unwrap();
        v
    }

    #[test]
    fn jsonl_bom_crlf_types_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        std::fs::write(
            &p,
            b"\xEF\xBB\xBF{\"_id\": 1, \"text\": \"a\"}\r\n\n{\"_id\": \"2\", \"text\": {\"x\": 1}}\r\n{\"_id\": \"3\", \"text\": \"b\xff\"}\n{\"_id\":\n[1]\n",
        )
        .unwrap();
        let items = collect(&p, &["_id", "text"]);
        assert_eq!(items.len(), 5);
        let r0 = items[0].as_ref().unwrap();
        assert_eq!(r0.values, vec![Some("1".into()), Some("a".into())]);
        let e = items[1].as_ref().unwrap_err();
        assert_eq!(e.loc.line, 3);
        assert_eq!(e.field.as_deref(), Some("text"));
        assert!(e.message.contains("object"));
        let utf = items[2].as_ref().unwrap_err();
        assert!(utf.message.contains("UTF-8") && utf.field.as_deref() == Some("text"), "{utf}");
        let js = items[3].as_ref().unwrap_err();
        assert!(js.message.contains("JSON") && js.field.as_deref() == Some("_id"), "{js}");
        assert!(items[4].as_ref().unwrap_err().message.contains("object"));
    }

    #[test]
    fn jsonl_oversized_line_is_skipped_and_reading_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        let long =
            format!("{{\"_id\": \"1\", \"text\": \"{}\"}}\n{{\"_id\": \"2\", \"text\": \"ok\"}}\n", "x".repeat(5000));
        std::fs::write(&p, long).unwrap();
        let mut v = Vec::new();
        read_records(&p, &["_id", "text"], 1024, &mut |it| {
            v.push(it);
            Ok(())
        })
        .unwrap();
        assert_eq!(v.len(), 2);
        assert!(v[0].as_ref().unwrap_err().message.contains("max_record_bytes"));
        assert_eq!(v[1].as_ref().unwrap().loc.line, 2);
    }

    #[test]
    fn csv_quotes_and_ragged_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        std::fs::write(&p, "id,text\n1,\"a, b\nc\"\n2\n3,d\n").unwrap();
        let items = collect(&p, &["id", "text", "title"]);
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].as_ref().unwrap().values, vec![Some("1".into()), Some("a, b\nc".into()), None]);
        let e = items[1].as_ref().unwrap_err();
        assert_eq!(e.loc.line, 4);
        assert!(e.message.contains("columns"));
        assert_eq!(items[2].as_ref().unwrap().loc.line, 5);
    }
}
