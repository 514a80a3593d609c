//! Tolerant parsing of model answers into strings, without guessing.
//!
//! [`parse_list`] accepts, in this order: JSON (an object with the expected key holding an array, or
//! an array — possibly inside ```json fences, after a preamble, with single quotes or a trailing
//! comma); then numbered or bulleted lines; then, as a last resort, two or more plain lines. Preamble
//! and closing chatter ("Sure! Here are 3 queries:", "I hope this helps!") is skipped. Anything else
//! is a [`ParseFailure`] carrying the raw answer. [`parse_single`] does the same for one-string
//! answers (paraphrases, translations).

use serde_json::Value;

/// The answer could not be read as what was asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse the model's answer: {reason}")]
pub struct ParseFailure {
    /// What was wrong.
    pub reason: String,
    /// The whole answer, as received.
    pub raw: String,
}

fn failure(reason: impl Into<String>, raw: &str) -> ParseFailure {
    ParseFailure { reason: reason.into(), raw: raw.to_string() }
}

/// One item of a list answer: its text and, when the model gave one (`{"query": …, "answer": …}`),
/// the answer span it paired with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListItem {
    /// The item (a query, a paraphrase…).
    pub text: String,
    /// The answer the model gave with it, if any.
    pub answer: Option<String>,
}

impl ListItem {
    fn plain(text: String) -> Self {
        ListItem { text, answer: None }
    }
}

/// Parse an answer that should hold a list of strings. `expected_key` is the JSON key asked for
/// (e.g. `"queries"`). Items are trimmed and unquoted; empty items are dropped; order is kept.
pub fn parse_list(content: &str, expected_key: Option<&str>) -> Result<Vec<String>, ParseFailure> {
    Ok(parse_items(content, expected_key)?.into_iter().map(|i| i.text).collect())
}

/// [`parse_list`], keeping the answer paired with each item when the JSON list holds objects such as
/// `{"query": "…", "answer": "…"}` (synthetic queries with their answer span).
pub fn parse_items(content: &str, expected_key: Option<&str>) -> Result<Vec<ListItem>, ParseFailure> {
    let text = content.trim();
    if text.is_empty() {
        return Err(failure("the answer is empty", content));
    }
    // 1. JSON: in fences first, then anywhere in the answer.
    let mut json_problem = None;
    let mut candidates = fenced_blocks(text);
    candidates.push(text);
    for c in &candidates {
        match json_list(c, expected_key) {
            Some(Ok(items)) => return Ok(items),
            Some(Err(why)) => {
                json_problem.get_or_insert(why);
            }
            None => {}
        }
    }
    // It tried to be JSON and failed: its plain lines are syntax, not items.
    let json_like = {
        let body = unfenced(text);
        (body.starts_with('{') || body.starts_with('[')) && strip_marker(body.lines().next().unwrap_or("")).is_none()
    };
    // 2. Numbered / bulleted lines; 3. plain lines.
    let mut marked = Vec::new();
    let mut plain = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with("```") || l.starts_with('#') {
            continue;
        }
        if let Some(rest) = strip_marker(l) {
            let item = clean(strip_label(rest.trim()));
            if !item.is_empty() && !item.ends_with(':') {
                marked.push(item);
            }
        } else if !is_chatter(l) && !looks_like_syntax(l) {
            plain.push(clean(l));
        }
    }
    if !marked.is_empty() {
        return Ok(marked.into_iter().map(ListItem::plain).collect());
    }
    if json_like {
        return Err(failure(json_problem.unwrap_or_else(|| "malformed JSON".into()), content));
    }
    plain.retain(|s| !s.is_empty());
    if plain.len() >= 2 {
        return Ok(plain.into_iter().map(ListItem::plain).collect());
    }
    Err(failure(
        json_problem.unwrap_or_else(|| "no JSON list, numbered or bulleted lines, or several plain lines".into()),
        content,
    ))
}

/// Parse an answer that should be one string: a JSON `{"text": …}` (or any object with exactly one
/// string field), a JSON string, or plain text with a leading label ("Translation:", "Paraphrase:",
/// …), surrounding quotes, and preamble/closing lines removed.
pub fn parse_single(content: &str) -> Result<String, ParseFailure> {
    let text = unfenced(content.trim());
    if text.starts_with('{') {
        let Ok(Value::Object(o)) = serde_json::from_str::<Value>(text) else {
            return Err(failure("malformed JSON object", content));
        };
        let s = match o.get("text").and_then(Value::as_str) {
            Some(s) => Some(s),
            None => {
                let strings: Vec<&str> = o.values().filter_map(Value::as_str).collect();
                if strings.len() == 1 { Some(strings[0]) } else { None }
            }
        };
        let s = s.map(clean).unwrap_or_default();
        return if s.is_empty() {
            Err(failure("no non-empty `text` field in the JSON object", content))
        } else {
            Ok(s)
        };
    }
    if text.starts_with('"')
        && let Ok(s) = serde_json::from_str::<String>(text)
    {
        let s = clean(&s);
        return if s.is_empty() { Err(failure("the answer is an empty string", content)) } else { Ok(s) };
    }
    let mut kept = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with("```") {
            continue;
        }
        let lower = l.to_lowercase();
        if lower.starts_with("note:") || lower.starts_with("(note") || lower.starts_with("explanation:") {
            break; // what follows explains the answer
        }
        let l = strip_label(l);
        if l.is_empty() || is_chatter(l) {
            continue;
        }
        kept.push(clean(l));
    }
    let s = kept.join("\n").trim().to_string();
    if s.is_empty() { Err(failure("no text in the answer", content)) } else { Ok(s) }
}

/// Contents of ``` fenced blocks (language tag dropped).
fn fenced_blocks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let body_start = after.find('\n').map_or(after.len(), |i| i + 1);
        let body = &after[body_start..];
        match body.find("```") {
            Some(end) => {
                out.push(body[..end].trim());
                rest = &body[end + 3..];
            }
            None => {
                out.push(body.trim()); // unclosed fence (truncated answer)
                break;
            }
        }
    }
    out
}

/// The text without one surrounding fence.
fn unfenced(text: &str) -> &str {
    fenced_blocks(text).into_iter().next().filter(|_| text.starts_with("```")).unwrap_or(text)
}

/// `None`: no JSON here. `Some(Err)`: JSON of the wrong shape.
fn json_list(text: &str, key: Option<&str>) -> Option<Result<Vec<ListItem>, String>> {
    let start = text.find(['{', '['])?;
    let open = text.as_bytes()[start];
    let close = if open == b'{' { '}' } else { ']' };
    let end = text.rfind(close).filter(|&e| e > start);
    if let Some(end) = end
        && let Ok(v) = serde_json::from_str::<Value>(&text[start..=end])
    {
        return Some(value_list(&v, key));
    }
    // Python-style or trailing-comma arrays: ['a', "b",]
    let from = text.find('[')?;
    match lenient_array(&text[from..]) {
        Some(items) => Some(nonempty(items.iter().map(|s| ListItem::plain(clean(s))).collect())),
        None if open == b'{' || end.is_some() => Some(Err("malformed JSON".into())),
        None => None,
    }
}

fn nonempty(items: Vec<ListItem>) -> Result<Vec<ListItem>, String> {
    let items: Vec<ListItem> = items.into_iter().filter(|i| !i.text.is_empty()).collect();
    if items.is_empty() { Err("the JSON list is empty".into()) } else { Ok(items) }
}

fn value_list(v: &Value, key: Option<&str>) -> Result<Vec<ListItem>, String> {
    match v {
        Value::Array(a) => strings_of(a),
        Value::Object(o) => {
            if let Some(k) = key
                && let Some(found) = find_key(v, k, 3)
            {
                return match found {
                    Value::Array(a) => strings_of(a),
                    Value::String(s) => nonempty(vec![ListItem::plain(clean(s))]),
                    _ => Err(format!("`{k}` is not a list of strings")),
                };
            }
            let arrays: Vec<&Vec<Value>> = o.values().filter_map(Value::as_array).collect();
            match (arrays.len(), key) {
                (1, _) => strings_of(arrays[0]),
                (_, Some(k)) => Err(format!("the JSON object has no `{k}` list")),
                (_, None) => Err("the JSON object does not hold exactly one list".into()),
            }
        }
        _ => Err("the JSON is neither a list nor an object".into()),
    }
}

fn find_key<'a>(v: &'a Value, key: &str, depth: u32) -> Option<&'a Value> {
    let o = v.as_object()?;
    if let Some(found) = o.get(key) {
        return Some(found);
    }
    if depth == 0 {
        return None;
    }
    o.values().find_map(|c| find_key(c, key, depth - 1))
}

fn strings_of(a: &[Value]) -> Result<Vec<ListItem>, String> {
    let mut out = Vec::with_capacity(a.len());
    for e in a {
        match e {
            Value::String(s) => out.push(ListItem::plain(clean(s))),
            // [{"query": "...", "answer": "..."}], or an object with one string field.
            Value::Object(o) => {
                let field = |k: &str| o.get(k).and_then(Value::as_str);
                let strings: Vec<&str> = o.values().filter_map(Value::as_str).collect();
                let text = match ["query", "question", "text"].into_iter().find_map(field) {
                    Some(t) => t,
                    None if strings.len() == 1 => strings[0],
                    None => return Err("a list element is an object without a `query` or a single string field".into()),
                };
                let answer = match o.get("answer") {
                    Some(Value::String(a)) => Some(clean(a)),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                }
                .filter(|a| !a.is_empty());
                out.push(ListItem { text: clean(text), answer });
            }
            _ => return Err("a list element is not a string".into()),
        }
    }
    nonempty(out)
}

/// `[` quoted strings separated by commas `]`, single or double quotes, trailing comma allowed.
fn lenient_array(s: &str) -> Option<Vec<String>> {
    let mut chars = s.chars().peekable();
    if chars.next()? != '[' {
        return None;
    }
    let mut items = Vec::new();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next()? {
            ']' => return Some(items),
            q @ ('"' | '\'') => {
                let mut item = String::new();
                loop {
                    match chars.next()? {
                        '\\' => match chars.next()? {
                            'n' => item.push('\n'),
                            't' => item.push('\t'),
                            c => item.push(c),
                        },
                        c if c == q => break,
                        c => item.push(c),
                    }
                }
                items.push(item);
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                match chars.next()? {
                    ',' => {}
                    ']' => return Some(items),
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
}

/// The item after a list marker: `1.`, `1)`, `(1)`, `1:`, `-`, `*`, `•`, `+`, `Query 1:`, `Q1.`.
fn strip_marker(line: &str) -> Option<&str> {
    let l = line.trim_start_matches("**").trim_start();
    for bullet in ['-', '*', '•', '+', '–', '·'] {
        if let Some(rest) = l.strip_prefix(bullet)
            && rest.starts_with(char::is_whitespace)
        {
            return Some(rest);
        }
    }
    let numbered = |s: &str| -> Option<usize> {
        let digits = s.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 || digits > 3 {
            return None;
        }
        let rest = &s[digits..];
        let mut it = rest.chars();
        match (it.next(), it.next()) {
            (Some('.' | ')' | ':'), Some(c)) if c.is_whitespace() => Some(digits + 1),
            (Some('.' | ')' | ':'), Some('*')) if rest[1..].starts_with("**") => Some(digits + 3),
            _ => None,
        }
    };
    if let Some(n) = numbered(l) {
        return Some(&l[n..]);
    }
    for (open, close) in [('(', ')'), ('[', ']')] {
        let Some(inner) = l.strip_prefix(open) else { continue };
        let digits = inner.chars().take_while(char::is_ascii_digit).count();
        if (1..=3).contains(&digits) && inner[digits..].starts_with(close) {
            let rest = &inner[digits + 1..];
            if rest.starts_with(char::is_whitespace) {
                return Some(rest);
            }
        }
    }
    let lower = l.to_ascii_lowercase();
    for word in ["query", "question", "q"] {
        if lower.starts_with(word) {
            let rest = l[word.len()..].trim_start();
            if rest.starts_with(|c: char| c.is_ascii_digit())
                && let Some(n) = numbered(rest)
            {
                return Some(&rest[n..]);
            }
        }
    }
    None
}

/// Preamble, closing and refusal lines.
fn is_chatter(line: &str) -> bool {
    let l = line.trim().trim_matches('*').trim().to_lowercase();
    if l.ends_with(':') {
        return true;
    }
    const OPENERS: [&str; 26] = [
        "here are",
        "here is",
        "here's",
        "sure",
        "certainly",
        "of course",
        "okay",
        "ok,",
        "ok.",
        "i hope",
        "hope this",
        "let me know",
        "note:",
        "i cannot",
        "i can't",
        "i can not",
        "i'm sorry",
        "i am sorry",
        "sorry",
        "as an ai",
        "i apologize",
        "feel free",
        "below are",
        "these queries",
        "these questions",
        "the following",
    ];
    OPENERS.iter().any(|o| l.starts_with(o))
}

/// Lines of broken JSON or code.
fn looks_like_syntax(line: &str) -> bool {
    line.starts_with(['{', '}', '[', ']']) || line.ends_with(['{', '[']) || !line.chars().any(char::is_alphanumeric)
}

/// Trim, drop a trailing comma after a quoted item, bold markers and one pair of surrounding quotes.
fn clean(s: &str) -> String {
    let mut t = s.trim();
    if t.ends_with(',') && t[..t.len() - 1].trim_end().ends_with(['"', '\'', '”', '’']) {
        t = t[..t.len() - 1].trim_end();
    }
    if t.len() > 4 && t.starts_with("**") && t.ends_with("**") {
        t = t[2..t.len() - 2].trim();
    }
    for (open, close) in [('"', '"'), ('\'', '\''), ('“', '”'), ('‘', '’'), ('`', '`'), ('«', '»')] {
        if t.chars().count() >= 2 && t.starts_with(open) && t.ends_with(close) {
            let inner = &t[open.len_utf8()..t.len() - close.len_utf8()];
            // Only one pair: "a" and "b" stays as it is.
            if !inner.contains(open) && !inner.contains(close) {
                t = inner.trim();
            }
            break;
        }
    }
    t.to_string()
}

/// Remove a leading "Translation:" style label (optionally in bold).
fn strip_label(line: &str) -> &str {
    const LABELS: [&str; 12] = [
        "translation",
        "translated text",
        "translated query",
        "paraphrase",
        "paraphrased query",
        "paraphrased",
        "rewritten query",
        "rewrite",
        "query",
        "output",
        "answer",
        "result",
    ];
    let l = line.trim_start_matches("**").trim_start();
    let lower = l.to_lowercase();
    for label in LABELS {
        if lower.starts_with(label) {
            let rest = l[label.len()..].trim_start_matches("**").trim_start();
            if let Some(after) = rest.strip_prefix(':') {
                let after = after.trim_start().trim_start_matches("**").trim_start();
                return after;
            }
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &str) -> Vec<String> {
        parse_list(s, Some("queries")).unwrap_or_else(|e| panic!("{e}\n{s}"))
    }

    fn fails(s: &str) {
        let e = parse_list(s, Some("queries")).expect_err(s);
        assert_eq!(e.raw, s);
    }

    #[test]
    fn query_answer_objects() {
        let items = parse_items(
            r#"{"queries": [{"query": "who won", "answer": "Ann"}, {"question": "when", "answer": 1901}, {"query": "x y"}, "plain"]}"#,
            Some("queries"),
        )
        .unwrap();
        let pairs: Vec<(&str, Option<&str>)> = items.iter().map(|i| (i.text.as_str(), i.answer.as_deref())).collect();
        assert_eq!(pairs, [("who won", Some("Ann")), ("when", Some("1901")), ("x y", None), ("plain", None)]);
        assert_eq!(list(r#"{"queries": [{"query": "a", "answer": "b"}]}"#), ["a"]);
        fails(r#"{"queries": [{"q": "a", "a": "b"}]}"#);
    }

    #[test]
    fn json_forms() {
        assert_eq!(list(r#"{"queries": ["a b", " c "]}"#), ["a b", "c"]);
        assert_eq!(list("```json\n{\"queries\": [\"a\", \"b\"]}\n```"), ["a", "b"]);
        assert_eq!(
            list("Sure! Here are 2 queries:\n[\"what is x\", \"why y\"]\nHope this helps."),
            ["what is x", "why y"]
        );
        assert_eq!(list(r#"{"questions": ["a", "b"]}"#), ["a", "b"], "one list under another key");
        assert_eq!(list(r#"{"result": {"queries": ["a"]}}"#), ["a"]);
        assert_eq!(list(r#"{"queries": "only one"}"#), ["only one"]);
        assert_eq!(list(r#"[{"query": "a"}, {"query": "b"}]"#), ["a", "b"]);
        assert_eq!(list("['a', 'b\\'s',]"), ["a", "b's"], "python list with a trailing comma");
        assert_eq!(list("```\n[\"a\",\n \"b\",\n]\n```"), ["a", "b"]);
        assert_eq!(list(r#"{"queries": ["a", "", "  "]}"#), ["a"]);
        assert_eq!(parse_list(r#"["x"]"#, None).unwrap(), ["x"]);
    }

    #[test]
    fn line_forms() {
        let answer =
            "Sure! Here are 3 queries:\n\n1. What is X?\n2) \"How does Y work?\"\n3. **Why Z?**\n\nI hope this helps!";
        assert_eq!(list(answer), ["What is X?", "How does Y work?", "Why Z?"]);
        assert_eq!(list("- alpha\n* beta\n• gamma"), ["alpha", "beta", "gamma"]);
        assert_eq!(list("Queries:\n(1) a\n(2) b"), ["a", "b"]);
        assert_eq!(
            list("Query 1: cheap flights to oslo\nQuery 2: oslo hotels"),
            ["cheap flights to oslo", "oslo hotels"]
        );
        assert_eq!(list("Q1. a\nQ2. b"), ["a", "b"]);
        assert_eq!(list("[1] first query\n[2] second query"), ["first query", "second query"]);
        assert_eq!(
            list("1. **Query:** cheap flights\n2. **Query:** \"oslo hotels\""),
            ["cheap flights", "oslo hotels"]
        );
        assert_eq!(
            list("1. 1.5 million people live where?\n2. 2024 results"),
            ["1.5 million people live where?", "2024 results"]
        );
        assert_eq!(
            list("what is rust ownership\nhow do lifetimes work"),
            ["what is rust ownership", "how do lifetimes work"]
        );
        assert_eq!(list("Here are the queries:\n\"a b\",\n\"c d\","), ["a b", "c d"]);
        assert_eq!(list("## Queries\n1. a\nNote: these are diverse."), ["a"]);
    }

    #[test]
    fn garbage_fails_with_the_raw_text() {
        fails("");
        fails("   \n ");
        fails("I'm sorry, but I can't help with that.");
        fails("asdf qwerty");
        fails("Sure! Here are some queries:");
        fails("{\"queries\": [\"a\", \"b\", \"c");
        fails("{\n  \"queries\": [\n    \"a\",\n    \"b\",");
        fails("{\"queries\": [1, 2]}");
        fails("{\"answer\": \"none\"}");
        fails("<|im_end|>");
        fails("[]");
        fails("{\"a\": [\"x\"], \"b\": [\"y\"]}");
        let e = parse_list("{\"queries\": [1]}", Some("queries")).unwrap_err();
        assert!(e.to_string().contains("not a string"), "{e}");
    }

    #[test]
    fn single_forms() {
        assert_eq!(parse_single("  \"Wie spät ist es?\"  ").unwrap(), "Wie spät ist es?");
        assert_eq!(parse_single("Translation: Wie spät ist es?").unwrap(), "Wie spät ist es?");
        assert_eq!(parse_single("**Paraphrase:** \"how late is it\"").unwrap(), "how late is it");
        assert_eq!(parse_single("{\"text\": \"abc\"}").unwrap(), "abc");
        assert_eq!(parse_single("```json\n{\"paraphrase\": \"abc\"}\n```").unwrap(), "abc");
        assert_eq!(
            parse_single("Sure! Here is the paraphrase:\nwhat time is it\n\nNote: I kept the meaning.").unwrap(),
            "what time is it"
        );
        assert_eq!(parse_single("\"quoted \\\"inner\\\"\"").unwrap(), "quoted \"inner\"");
        assert_eq!(parse_single("what's the time").unwrap(), "what's the time");
        assert!(parse_single("").is_err());
        assert!(parse_single("\"\"").is_err());
        assert!(parse_single("Translation:").is_err());
        assert!(parse_single("{\"text\": \"\"}").is_err());
        assert!(parse_single("{\"text\": ").is_err());
        assert!(parse_single("Sure! Here you go:").is_err());
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in [
            "```", "```json", "[", "{", "]", "[\"", "['a'", "(", "1.", "-", "**", "\"", "“", "1)\u{0}", "é:", "Q",
            "[1,", "{]",
        ] {
            let _ = parse_list(s, Some("queries"));
            let _ = parse_list(s, None);
            let _ = parse_single(s);
        }
    }
}
