//! Dockerfiles as Docker's parser reads them: parser directives at the top (`# escape=`,
//! `# syntax=`), comment lines (also inside continuations), line continuations with the
//! escape character, one instruction per logical line with its keyword in any case,
//! `--name=value` flags, and the JSON (exec) form where an instruction allows it. Errors name
//! the line, as dockerd's: `dockerfile parse error line N: …`.

use crate::words;

/// A parse error: the line (1-based) and what is wrong there.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("dockerfile parse error line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        message: message.into(),
    }
}

/// An instruction's arguments.
#[derive(Debug, Clone, PartialEq)]
pub enum Args {
    /// `["a", "b"]`.
    Json(Vec<String>),
    /// The rest of the line, as written.
    Shell(String),
}

/// One instruction as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Lower case: `from`, `run`, ...
    pub keyword: String,
    /// `--name=value` (or `--name` alone) before the arguments.
    pub flags: Vec<(String, Option<String>)>,
    pub args: Args,
    /// The logical line as written (continuations joined), for history and cache keys.
    pub original: String,
    /// Its first line.
    pub line: usize,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    pub escape: char,
    /// `# syntax=` (not used by the classic builder; kept to say so).
    pub syntax: Option<String>,
    pub nodes: Vec<Node>,
    /// Things worth telling the user (empty continuation lines, ignored directives).
    pub warnings: Vec<String>,
}

/// Every instruction the classic builder knows.
pub const KEYWORDS: &[&str] = &[
    "from",
    "run",
    "cmd",
    "entrypoint",
    "copy",
    "add",
    "env",
    "arg",
    "workdir",
    "user",
    "label",
    "expose",
    "volume",
    "stopsignal",
    "healthcheck",
    "shell",
    "onbuild",
    "maintainer",
];

/// Instructions whose arguments may be a JSON array.
const JSON_FORM: &[&str] = &["run", "cmd", "entrypoint", "copy", "add", "volume", "shell"];

/// Instructions that take `--flags`.
const WITH_FLAGS: &[&str] = &["from", "copy", "add", "healthcheck", "run"];

/// A directive line (`# name=value`) at the top.
fn directive(line: &str) -> Option<(String, String)> {
    let rest = line.trim().strip_prefix('#')?.trim();
    let (name, value) = rest.split_once('=')?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some((name.to_ascii_lowercase(), value.trim().to_string()))
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let lines: Vec<&str> = text.split('\n').map(|l| l.trim_end_matches('\r')).collect();
    let mut escape = '\\';
    let mut syntax = None;
    let mut warnings = Vec::new();
    let mut i = 0;
    // Directives: only before anything else (a blank line or another comment ends them).
    let mut seen = std::collections::HashSet::new();
    while i < lines.len() {
        let Some((name, value)) = directive(lines[i]) else {
            break;
        };
        if !seen.insert(name.clone()) {
            return Err(err(
                i + 1,
                format!("only one {name} parser directive can be used"),
            ));
        }
        match name.as_str() {
            "escape" => {
                escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    v => {
                        return Err(err(
                            i + 1,
                            format!("invalid escape token '{v}' does not match ` or \\"),
                        ))
                    }
                }
            }
            "syntax" => {
                warnings.push(format!(
                    "the syntax directive ({value}) is ignored: the classic builder parses the Dockerfile itself"
                ));
                syntax = Some(value);
            }
            _ => {} // unknown directives are comments
        }
        i += 1;
    }
    let mut nodes = Vec::new();
    while i < lines.len() {
        let first = i;
        let line = lines[i];
        i += 1;
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        // Join continuations: a line ending in the escape character goes on with the next
        // one that is neither a comment nor (with a warning) empty.
        let mut logical = String::new();
        let mut cur = line.to_string();
        loop {
            let trimmed = cur.trim_end();
            if let Some(body) = trimmed.strip_suffix(escape) {
                logical.push_str(body);
                let mut next = None;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    let lt = l.trim_start();
                    if lt.starts_with('#') {
                        continue;
                    }
                    if lt.is_empty() {
                        warnings.push(format!(
                            "empty continuation line found in the instruction at line {}",
                            first + 1
                        ));
                        continue;
                    }
                    next = Some(l.to_string());
                    break;
                }
                match next {
                    Some(n) => cur = n,
                    None => break,
                }
            } else {
                logical.push_str(&cur);
                break;
            }
        }
        nodes.push(node(&logical, first + 1)?);
    }
    Ok(Dockerfile {
        escape,
        syntax,
        nodes,
        warnings,
    })
}

/// One logical line into a node.
pub fn node(logical: &str, line: usize) -> Result<Node, ParseError> {
    let t = logical.trim();
    let (kw, rest) = match t.find(char::is_whitespace) {
        Some(k) => (&t[..k], t[k..].trim_start()),
        None => (t, ""),
    };
    let keyword = kw.to_ascii_lowercase();
    if !KEYWORDS.contains(&keyword.as_str()) {
        return Err(err(
            line,
            format!("unknown instruction: {}", kw.to_uppercase()),
        ));
    }
    let mut rest = rest;
    let mut flags = Vec::new();
    if WITH_FLAGS.contains(&keyword.as_str()) {
        while let Some(f) = rest.strip_prefix("--") {
            let end = f.find(char::is_whitespace).unwrap_or(f.len());
            let word = &f[..end];
            if word.is_empty() {
                break; // `--` alone ends the flags
            }
            let (name, value) = match word.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (word.to_string(), None),
            };
            flags.push((name, value));
            rest = f[end..].trim_start();
        }
    }
    let args = if JSON_FORM.contains(&keyword.as_str()) && rest.starts_with('[') {
        match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) => Args::Json(v),
            Err(_) => Args::Shell(rest.to_string()),
        }
    } else {
        Args::Shell(rest.to_string())
    };
    Ok(Node {
        keyword,
        flags,
        args,
        original: t.to_string(),
        line,
    })
}

/// `ENV`/`LABEL` arguments into (name, raw value) pairs: `a=1 b="x y"`, or the old form
/// `ENV name value with spaces`. Values are still to be expanded (see [`words::expand`]).
pub fn name_values(
    keyword: &str,
    text: &str,
    escape: char,
    line: usize,
) -> Result<Vec<(String, String)>, ParseError> {
    let parts = words::split_raw(text, escape).map_err(|e| err(line, e.to_string()))?;
    if parts.is_empty() {
        return Err(err(
            line,
            format!("{} requires at least one argument", keyword.to_uppercase()),
        ));
    }
    if !parts[0].contains('=') {
        if keyword == "label" {
            return Err(err(
                line,
                format!(
                    "Syntax error - can't find = in \"{}\". Must be of the form: name=value",
                    parts[0]
                ),
            ));
        }
        // The old form: the name, then the rest of the line as the value.
        let t = text.trim_start();
        let name = &parts[0];
        let value = t[name.len()..].trim();
        if value.is_empty() {
            return Err(err(
                line,
                format!("{} must have two arguments", keyword.to_uppercase()),
            ));
        }
        return Ok(vec![(name.clone(), value.to_string())]);
    }
    let mut out = Vec::new();
    for p in parts {
        let Some((n, v)) = p.split_once('=') else {
            return Err(err(
                line,
                format!("Syntax error - can't find = in \"{p}\". Must be of the form: name=value"),
            ));
        };
        if n.is_empty() {
            return Err(err(
                line,
                format!("{} names can not be blank", keyword.to_uppercase()),
            ));
        }
        out.push((n.to_string(), v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_continuations_and_comments() {
        let df = parse(
            "# syntax=docker/dockerfile:1\n# escape=\\\n\nFROM busybox AS base\n# a comment\nrun echo a \\\n  # inside\n  && echo b\nCMD [\"sh\", \"-c\", \"echo hi\"]\nCOPY --from=base --chown=1:1 /a /b\nENTRYPOINT [not json\n",
        )
        .expect("parse");
        assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(df.nodes.len(), 5);
        assert_eq!(df.nodes[0].keyword, "from");
        assert_eq!(df.nodes[0].line, 4);
        assert_eq!(df.nodes[1].keyword, "run");
        assert_eq!(df.nodes[1].args, Args::Shell("echo a   && echo b".into()));
        assert_eq!(df.nodes[1].line, 6);
        assert_eq!(
            df.nodes[2].args,
            Args::Json(vec!["sh".into(), "-c".into(), "echo hi".into()])
        );
        assert_eq!(
            df.nodes[3].flags,
            vec![
                ("from".into(), Some("base".into())),
                ("chown".into(), Some("1:1".into()))
            ]
        );
        assert_eq!(df.nodes[3].args, Args::Shell("/a /b".into()));
        assert_eq!(df.nodes[4].args, Args::Shell("[not json".into()));
    }

    #[test]
    fn escape_directive_and_errors() {
        let df = parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo done\n").expect("parse");
        assert_eq!(df.escape, '`');
        assert_eq!(
            df.nodes[1].args,
            Args::Shell("dir c:\\   && echo done".into())
        );
        let e = parse("FROM x\n\nFOO bar\n").expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "dockerfile parse error line 3: unknown instruction: FOO"
        );
        assert!(parse("# escape=x\nFROM x").is_err());
        // A directive after an instruction is a comment.
        let df = parse("FROM x\n# escape=`\nRUN a \\\n b").expect("parse");
        assert_eq!(df.escape, '\\');
        assert_eq!(df.nodes[1].args, Args::Shell("a  b".into()));
        let df = parse("FROM x\nRUN a \\\n\n b").expect("parse");
        assert_eq!(df.warnings.len(), 1);
    }

    #[test]
    fn env_and_label_pairs() {
        assert_eq!(
            name_values("env", r#"A=1 B="x y" C=$A"#, '\\', 1).expect("pairs"),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "\"x y\"".into()),
                ("C".into(), "$A".into())
            ]
        );
        assert_eq!(
            name_values("env", "PATH /usr/bin:/bin and more", '\\', 1).expect("old form"),
            vec![("PATH".into(), "/usr/bin:/bin and more".into())]
        );
        assert!(name_values("label", "nokey", '\\', 2).is_err());
        assert!(name_values("env", "A=1 B", '\\', 2).is_err());
        assert!(name_values("env", "", '\\', 2).is_err());
    }
}
