//! `.dockerignore` as Docker reads it: one pattern a line, `#` comments, blank lines
//! skipped, a leading `!` re-including what an earlier pattern excluded (the last matching
//! pattern decides), patterns cleaned as paths and relative to the context (a leading `/` is
//! dropped). Patterns are Go `filepath.Match` globs (`*`, `?`, `[...]` classes, `\` escapes;
//! none crosses a `/`) plus `**`, any number of directories. A pattern that matches a parent
//! directory matches everything below it.

/// One piece of a compiled pattern.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Char(char),
    /// `*`: any run of non-`/` characters.
    Star,
    /// `?`: one non-`/` character.
    One,
    /// `[...]`: ranges, negated with `^` or `!`.
    Class(Vec<(char, char)>, bool),
    /// `**/` (or `**` not at the end): any number of whole directories, even none.
    Dirs,
    /// `**` at the end: anything.
    All,
}

/// A pattern of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    /// As cleaned (without `!`).
    pub text: String,
    /// A `!` pattern.
    pub exception: bool,
    toks: Vec<Tok>,
}

/// Errors of `.dockerignore` patterns.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IgnoreError {
    #[error("syntax error in pattern {0:?}: {1}")]
    Syntax(String, &'static str),
}

/// Cleans a path as Go's `filepath.Clean` does (no leading `/` kept by the caller).
fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            x => out.push(x),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

fn compile(text: &str) -> Result<Vec<Tok>, IgnoreError> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let bad = |why| IgnoreError::Syntax(text.to_string(), why);
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                toks.push(if i >= chars.len() {
                    Tok::All
                } else {
                    Tok::Dirs
                });
            }
            '*' => toks.push(Tok::Star),
            '?' => toks.push(Tok::One),
            '\\' => {
                let n = *chars.get(i).ok_or(bad("a trailing escape"))?;
                i += 1;
                toks.push(Tok::Char(n));
            }
            '[' => {
                let mut negated = false;
                if matches!(chars.get(i), Some('^') | Some('!')) {
                    negated = true;
                    i += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let Some(&c) = chars.get(i) else {
                        return Err(bad("an unclosed character class"));
                    };
                    i += 1;
                    if c == ']' && !first {
                        break;
                    }
                    first = false;
                    let lo = if c == '\\' {
                        let n = *chars.get(i).ok_or(bad("a trailing escape"))?;
                        i += 1;
                        n
                    } else {
                        c
                    };
                    let hi = if chars.get(i) == Some(&'-')
                        && chars.get(i + 1).is_some_and(|c| *c != ']')
                    {
                        let h = chars[i + 1];
                        i += 2;
                        h
                    } else {
                        lo
                    };
                    ranges.push((lo, hi));
                }
                toks.push(Tok::Class(ranges, negated));
            }
            c => toks.push(Tok::Char(c)),
        }
    }
    Ok(toks)
}

/// Whether `toks` match all of `s`.
fn matches(toks: &[Tok], s: &[char]) -> bool {
    let Some((t, rest)) = toks.split_first() else {
        return s.is_empty();
    };
    match t {
        Tok::Char(c) => s.first() == Some(c) && matches(rest, &s[1..]),
        Tok::One => s.first().is_some_and(|c| *c != '/') && matches(rest, &s[1..]),
        Tok::Class(ranges, negated) => match s.first() {
            Some(c) if *c != '/' => {
                let inside = ranges.iter().any(|(lo, hi)| lo <= c && c <= hi);
                inside != *negated && matches(rest, &s[1..])
            }
            _ => false,
        },
        Tok::Star => {
            let mut k = 0;
            loop {
                if matches(rest, &s[k..]) {
                    return true;
                }
                if k >= s.len() || s[k] == '/' {
                    return false;
                }
                k += 1;
            }
        }
        Tok::All => true,
        Tok::Dirs => {
            // Nothing, or any prefix ending at a '/'.
            if matches(rest, s) {
                return true;
            }
            (0..s.len()).any(|k| s[k] == '/' && matches(rest, &s[k + 1..]))
        }
    }
}

impl Pattern {
    /// Whether the pattern matches `path` itself (relative, `/`-separated).
    pub fn matches(&self, path: &str) -> bool {
        let chars: Vec<char> = path.chars().collect();
        matches(&self.toks, &chars)
    }
}

/// The patterns of a `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ignore {
    pub patterns: Vec<Pattern>,
}

impl Ignore {
    /// Reads the file's text.
    pub fn parse(text: &str) -> Result<Ignore, IgnoreError> {
        let mut patterns = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let exception = p.starts_with('!');
            if exception {
                p = p[1..].trim();
            }
            let mut text = p.to_string();
            if !text.is_empty() {
                text = clean(&text);
                if text.len() > 1 && text.starts_with('/') {
                    text = text[1..].to_string();
                }
            }
            let toks = compile(&text)?;
            patterns.push(Pattern {
                text,
                exception,
                toks,
            });
        }
        Ok(Ignore { patterns })
    }

    /// Whether `path` (relative to the context, `/`-separated) is left out of the build:
    /// the last pattern matching it or one of its parent directories decides.
    pub fn excludes(&self, path: &str) -> bool {
        let path = clean(path.trim_start_matches('/'));
        let parents: Vec<&str> = match path.rfind('/') {
            Some(i) => path[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut excluded = false;
        for p in &self.patterns {
            // Only a pattern that could change the answer is looked at.
            if p.exception != excluded {
                continue;
            }
            let mut hit = p.matches(&path);
            if !hit {
                for k in 1..=parents.len() {
                    if p.matches(&parents[..k].join("/")) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// Whether any pattern re-includes something (then an excluded directory must still be
    /// walked into).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_as_go_matches_them() {
        let i =
            Ignore::parse("*.log\nbuild/\n/tmp/*.o\n# comment\n\n  docs/**/*.md  \n[a-c]?.txt\n")
                .expect("parse");
        assert!(i.excludes("x.log"));
        assert!(!i.excludes("sub/x.log"), "* does not cross /");
        assert!(
            i.excludes("build/out/bin"),
            "a matched parent excludes its contents"
        );
        assert!(i.excludes("tmp/a.o"));
        assert!(!i.excludes("tmp/sub/a.o"));
        assert!(i.excludes("docs/a.md"));
        assert!(i.excludes("docs/x/y/a.md"));
        assert!(!i.excludes("docs/a.txt"));
        assert!(i.excludes("b1.txt"));
        assert!(!i.excludes("d1.txt"));
        assert!(!i.excludes("src/main.rs"));
    }

    #[test]
    fn exceptions_re_include() {
        let i = Ignore::parse("*.md\n!README.md\nREADME*.md\n!keep/\ndata\n!data/keep.txt\n")
            .expect("parse");
        assert!(i.excludes("CHANGES.md"));
        assert!(i.excludes("README.md"), "a later pattern excludes it again");
        let i =
            Ignore::parse("*.md\n!README.md\ndata\n!data/keep.txt\n**/secret\n").expect("parse");
        assert!(!i.excludes("README.md"));
        assert!(i.excludes("data/other"));
        assert!(!i.excludes("data/keep.txt"));
        assert!(i.excludes("a/b/secret"));
        assert!(i.excludes("secret"));
        assert!(i.has_exceptions());
        let all = Ignore::parse("**\n!src\n").expect("parse");
        assert!(all.excludes("anything/at/all"));
        assert!(!all.excludes("src/lib.rs"));
    }

    #[test]
    fn patterns_are_cleaned() {
        let i = Ignore::parse("./a/../b\n/c//d/\n").expect("parse");
        assert_eq!(i.patterns[0].text, "b");
        assert_eq!(i.patterns[1].text, "c/d");
        assert!(i.excludes("c/d/e"));
        assert!(Ignore::parse("[ab").is_err());
    }
}
