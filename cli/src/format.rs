//! Output as the docker CLI prints it: Go templates (`--format '{{.ID}}'`, `{{json .}}`,
//! `table ...`), aligned tables, and human sizes and durations.

use crate::CliError;
use gtmpl::{Context, Func, FuncError, Template};
use gtmpl_value::{Number, Value};
use std::collections::HashMap;
use std::io::Write;

/// A JSON value as a template value.
pub fn to_tmpl(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Number(Number::from(i))
            } else if let Some(u) = n.as_u64() {
                Value::Number(Number::from(u))
            } else {
                Value::Number(Number::from(n.as_f64().unwrap_or(0.0)))
            }
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => Value::Array(a.iter().map(to_tmpl).collect()),
        serde_json::Value::Object(o) => {
            Value::Map(o.iter().map(|(k, v)| (k.clone(), to_tmpl(v))).collect())
        }
    }
}

/// A template value back as JSON (for `{{json .}}`).
fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil | Value::NoValue => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                serde_json::json!(i)
            } else if let Some(u) = n.as_u64() {
                serde_json::json!(u)
            } else {
                serde_json::json!(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Map(m) | Value::Object(m) => {
            let sorted: std::collections::BTreeMap<_, _> =
                m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
            serde_json::Value::Object(sorted.into_iter().collect())
        }
        Value::Function(_) => serde_json::Value::Null,
    }
}

fn arg(args: &[Value], i: usize) -> Result<&Value, FuncError> {
    args.get(i)
        .ok_or(FuncError::AtLeastXArgs("function".into(), i + 1))
}

fn string_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn f_json(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(to_json(arg(args, 0)?).to_string()))
}
fn f_upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(string_of(arg(args, 0)?).to_uppercase()))
}
fn f_lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(string_of(arg(args, 0)?).to_lowercase()))
}
fn f_title(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_of(arg(args, 0)?);
    let mut c = s.chars();
    Ok(Value::String(match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }))
}
fn f_join(args: &[Value]) -> Result<Value, FuncError> {
    let sep = string_of(arg(args, 1)?);
    let parts: Vec<String> = match arg(args, 0)? {
        Value::Array(a) => a.iter().map(string_of).collect(),
        other => vec![string_of(other)],
    };
    Ok(Value::String(parts.join(&sep)))
}
fn f_split(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_of(arg(args, 0)?);
    let sep = string_of(arg(args, 1)?);
    Ok(Value::Array(
        s.split(sep.as_str())
            .map(|p| Value::String(p.into()))
            .collect(),
    ))
}
fn f_truncate(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_of(arg(args, 0)?);
    let n = match arg(args, 1)? {
        Value::Number(n) => n.as_u64().unwrap_or(0) as usize,
        _ => 0,
    };
    Ok(Value::String(s.chars().take(n).collect()))
}
fn f_println(args: &[Value]) -> Result<Value, FuncError> {
    let parts: Vec<String> = args.iter().map(string_of).collect();
    Ok(Value::String(format!("{}\n", parts.join(" "))))
}

/// A parsed `--format` template with docker's functions.
pub struct Tmpl(Template);

impl Tmpl {
    pub fn parse(text: &str) -> Result<Tmpl, CliError> {
        let mut t = Template::default();
        for (name, f) in [
            ("json", f_json as Func),
            ("upper", f_upper as Func),
            ("lower", f_lower as Func),
            ("title", f_title as Func),
            ("join", f_join as Func),
            ("split", f_split as Func),
            ("truncate", f_truncate as Func),
            ("println", f_println as Func),
        ] {
            t.add_func(name, f);
        }
        // Docker's templates write `\t` and `\n` for tabs and newlines.
        let text = text.replace("\\t", "\t").replace("\\n", "\n");
        t.parse(&text)
            .map_err(|e| CliError::Template(format!("{text:?}: {e}")))?;
        Ok(Tmpl(t))
    }

    pub fn render(&self, v: &serde_json::Value) -> Result<String, CliError> {
        self.0
            .render(&Context::from(to_tmpl(v)))
            .map_err(|e| CliError::Template(e.to_string()))
    }
}

/// Aligns tab-separated cells as Go's tabwriter does for docker (min width 10, padding 3).
pub fn align(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for r in &rows {
        for (i, c) in r.iter().enumerate().take(r.len().saturating_sub(1)) {
            let w = (c.chars().count() + 3).max(10);
            if widths.len() <= i {
                widths.push(w);
            } else {
                widths[i] = widths[i].max(w);
            }
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                let pad = widths[i] - c.chars().count();
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Splits `Field` names into a header (`CreatedSince` → `CREATED SINCE`) when a command has
/// no header of its own for them.
fn derived_header(field: &str) -> String {
    let mut out = String::new();
    let mut prev_upper = true;
    for c in field.chars() {
        if c.is_uppercase() && !prev_upper {
            out.push(' ');
        }
        prev_upper = c.is_uppercase();
        out.extend(c.to_uppercase());
    }
    out
}

/// Prints rows (display contexts) with `--format`: `table TEMPLATE`, `json`, a plain
/// template, or the command's default table.
pub fn print_rows(
    format: Option<&str>,
    default_table: &str,
    headers: &[(&str, &str)],
    rows: &[serde_json::Value],
) -> Result<(), CliError> {
    let format = format.filter(|f| !f.is_empty()).unwrap_or(default_table);
    let mut out = std::io::stdout().lock();
    if format == "json" {
        for r in rows {
            writeln!(out, "{r}").map_err(CliError::Stdout)?;
        }
        return Ok(());
    }
    if let Some(rest) = format.strip_prefix("table") {
        let body = if rest.trim().is_empty() {
            default_table.trim_start_matches("table").trim()
        } else {
            rest.trim_start()
        };
        let t = Tmpl::parse(body)?;
        let header_ctx: HashMap<String, String> = {
            let mut m = HashMap::new();
            let text = body.replace("\\t", "\t");
            for part in text.split("{{").skip(1) {
                let inner = part.split("}}").next().unwrap_or("");
                for word in inner.split_whitespace() {
                    if let Some(f) = word.strip_prefix('.') {
                        let f = f.split('.').next().unwrap_or(f);
                        let h = headers
                            .iter()
                            .find(|(k, _)| *k == f)
                            .map(|(_, h)| h.to_string())
                            .unwrap_or_else(|| derived_header(f));
                        m.insert(f.to_string(), h);
                    }
                }
            }
            m
        };
        let mut lines = vec![t.render(&serde_json::to_value(&header_ctx).unwrap_or_default())?];
        for r in rows {
            lines.push(t.render(r)?);
        }
        write!(out, "{}", align(&lines)).map_err(CliError::Stdout)?;
        return Ok(());
    }
    let t = Tmpl::parse(format)?;
    for r in rows {
        writeln!(out, "{}", t.render(r)?).map_err(CliError::Stdout)?;
    }
    Ok(())
}

/// Sizes as docker prints them: decimal units, 3 significant digits (`4.87MB`, `0B`).
pub fn human_size(bytes: f64) -> String {
    strata_graph::options::human_size(bytes, 3)
}

/// A duration as docker's `HumanDuration` words it ("3 minutes", "About an hour").
pub use strata_runtime::container::record::human_duration;

/// "N units ago" for a Unix time.
pub fn ago(unix: i64) -> String {
    format!("{} ago", human_duration(now() - unix))
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    strata_graph::time::now_secs()
}

/// A Unix time as Go prints a `time.Time` in UTC (`2024-01-02 03:04:05 +0000 UTC`).
pub fn go_time(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    let s = strata_graph::time::rfc3339(t);
    format!("{} {} +0000 UTC", &s[..10], &s[11..19])
}

/// Shortens an ID as docker does (12 hex digits, `sha256:` dropped).
pub fn short_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(12).collect()
}

/// Cuts a string to `n` characters with an ellipsis, as docker's tables do.
pub fn ellipsis(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let v = serde_json::json!({"ID": "abc", "Labels": {"a": "b"}, "List": ["x", "y"], "N": 3});
        let t = Tmpl::parse("{{.ID}}\\t{{json .Labels}} {{join .List \",\"}} {{upper .ID}} {{.N}} {{index .Labels \"a\"}}").unwrap();
        assert_eq!(t.render(&v).unwrap(), "abc\t{\"a\":\"b\"} x,y ABC 3 b");
        assert_eq!(
            Tmpl::parse("{{json .}}").unwrap().render(&v).unwrap(),
            v.to_string()
        );
        assert!(Tmpl::parse("{{.ID").is_err());
    }

    #[test]
    fn tables_align_like_tabwriter() {
        let out = align(&["A\tLONGER HEADER\tX".into(), "aaaaaaaaaaaaa\tb\tc".into()]);
        assert_eq!(
            out,
            "A               LONGER HEADER   X\naaaaaaaaaaaaa   b               c\n"
        );
        assert_eq!(derived_header("CreatedSince"), "CREATED SINCE");
        assert_eq!(derived_header("ID"), "ID");
    }

    #[test]
    fn humans() {
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(4_870_000.0), "4.87MB");
        assert_eq!(human_size(1_234_567_890.0), "1.23GB");
        assert_eq!(human_size(123_000.0), "123kB");
        assert_eq!(human_size(1200.0), "1.2kB");
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(go_time(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(ellipsis("abcdef", 4), "abc…");
    }
}
