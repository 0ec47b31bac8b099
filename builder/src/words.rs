//! Words of Dockerfile instructions as Docker's shell lexer reads them: single quotes keep
//! everything, double quotes keep all but `$` expansions and escaped `"`, `$`, and the
//! escape character itself; outside quotes the escape character (`\`, or `` ` `` with
//! `# escape=`) makes the next character literal. Variables: `$NAME`, `${NAME}`,
//! `${NAME:-word}` / `${NAME-word}` (default when unset or empty / unset),
//! `${NAME:+word}` / `${NAME+word}` (alternative when set and non-empty / set),
//! `${NAME:?msg}` / `${NAME?msg}` (an error when unset or empty / unset).

/// Errors of word processing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WordsError {
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(char),
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("missing ':' in substitution")]
    BadSubstitution,
    #[error("invalid variable name in ${{{0}}}")]
    BadName(String),
}

/// The variables words are expanded with.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

impl Env for [(String, String)] {
    fn get(&self, name: &str) -> Option<String> {
        // The last definition wins.
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

impl Env for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<String> {
        Env::get(self.as_slice(), name)
    }
}

/// Words being collected.
struct Acc {
    split: bool,
    words: Vec<String>,
    cur: String,
    /// A word has begun (an empty `""` is a word).
    in_word: bool,
}

impl Acc {
    fn end(&mut self) {
        if self.in_word {
            self.words.push(std::mem::take(&mut self.cur));
            self.in_word = false;
        }
    }

    /// An unquoted expansion: split on its whitespace when splitting.
    fn expanded(&mut self, v: &str) {
        if !self.split {
            self.cur.push_str(v);
            self.in_word = true;
            return;
        }
        for ch in v.chars() {
            if ch.is_whitespace() {
                self.end();
            } else {
                self.cur.push(ch);
                self.in_word = true;
            }
        }
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    env: &'a dyn Env,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Reads until `stop` (unquoted) or the end. With `split`, unquoted whitespace (also
    /// whitespace that an unquoted expansion brings) separates words, as the shell does.
    fn words(&mut self, split: bool, stop: Option<char>) -> Result<Vec<String>, WordsError> {
        let mut acc = Acc {
            split,
            words: Vec::new(),
            cur: String::new(),
            in_word: false,
        };
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                break;
            }
            self.pos += 1;
            match c {
                c if split && c.is_whitespace() => acc.end(),
                '\'' => {
                    acc.in_word = true;
                    loop {
                        match self.next() {
                            None => return Err(WordsError::Unterminated('\'')),
                            Some('\'') => break,
                            Some(x) => acc.cur.push(x),
                        }
                    }
                }
                '"' => {
                    acc.in_word = true;
                    loop {
                        match self.next() {
                            None => return Err(WordsError::Unterminated('"')),
                            Some('"') => break,
                            Some('$') => {
                                let v = self.dollar()?;
                                acc.cur.push_str(&v);
                            }
                            Some(x) if x == self.escape => match self.next() {
                                None => return Err(WordsError::Unterminated('"')),
                                Some(n) if n == '"' || n == '$' || n == self.escape => {
                                    acc.cur.push(n)
                                }
                                Some(n) => {
                                    acc.cur.push(x);
                                    acc.cur.push(n);
                                }
                            },
                            Some(x) => acc.cur.push(x),
                        }
                    }
                }
                '$' => {
                    let v = self.dollar()?;
                    acc.expanded(&v);
                }
                x if x == self.escape => {
                    acc.in_word = true;
                    acc.cur.push(self.next().unwrap_or(x));
                }
                x => {
                    acc.in_word = true;
                    acc.cur.push(x);
                }
            }
        }
        acc.end();
        Ok(acc.words)
    }

    /// One word up to `stop`, never split.
    fn word(&mut self, stop: Option<char>) -> Result<String, WordsError> {
        Ok(self.words(false, stop)?.concat())
    }

    /// A variable name (letters, digits, `_`), possibly empty.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|c| is_name_char(*c)) {
            name.push(c);
            self.pos += 1;
        }
        name
    }

    /// After a `$`: the expansion.
    fn dollar(&mut self) -> Result<String, WordsError> {
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                self.braced()
            }
            Some(c) if is_name_char(c) => {
                let name = self.name();
                Ok(self.env.get(&name).unwrap_or_default())
            }
            _ => Ok("$".to_string()),
        }
    }

    /// `${...}` after the `{`.
    fn braced(&mut self) -> Result<String, WordsError> {
        let name = self.name();
        if name.is_empty() {
            return Err(WordsError::BadName(String::new()));
        }
        let value = self.env.get(&name);
        match self.next() {
            None => Err(WordsError::Unterminated('}')),
            Some('}') => Ok(value.unwrap_or_default()),
            Some(op) => {
                let colon = op == ':';
                let op = if colon {
                    self.next().ok_or(WordsError::Unterminated('}'))?
                } else {
                    op
                };
                if !matches!(op, '-' | '+' | '?') {
                    return Err(if colon {
                        WordsError::BadName(format!("{name}:{op}"))
                    } else {
                        WordsError::BadSubstitution
                    });
                }
                let word = self.word(Some('}'))?;
                if self.next() != Some('}') {
                    return Err(WordsError::Unterminated('}'));
                }
                let set = value.is_some();
                let nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
                let usable = if colon { nonempty } else { set };
                Ok(match op {
                    '-' => {
                        if usable {
                            value.unwrap_or_default()
                        } else {
                            word
                        }
                    }
                    '+' => {
                        if usable {
                            word
                        } else {
                            String::new()
                        }
                    }
                    _ => {
                        if usable {
                            value.unwrap_or_default()
                        } else {
                            return Err(WordsError::Required {
                                name,
                                message: if word.is_empty() {
                                    "is not allowed to be unset".into()
                                } else {
                                    word
                                },
                            });
                        }
                    }
                })
            }
        }
    }
}

/// One word, expanded and unquoted (`COPY`'s paths, `WORKDIR`, `USER`, ...).
pub fn expand(text: &str, escape: char, env: &dyn Env) -> Result<String, WordsError> {
    let mut l = Lexer {
        chars: text.chars().collect(),
        pos: 0,
        escape,
        env,
    };
    l.word(None)
}

/// Words split on unquoted whitespace, each expanded and unquoted (`EXPOSE`, `VOLUME`, ...).
pub fn expand_words(text: &str, escape: char, env: &dyn Env) -> Result<Vec<String>, WordsError> {
    let mut l = Lexer {
        chars: text.chars().collect(),
        pos: 0,
        escape,
        env,
    };
    l.words(true, None)
}

/// Splits raw text into words on unquoted whitespace without expanding or unquoting them
/// (`ENV`/`LABEL` pairs are split first, then each part is expanded).
pub fn split_raw(text: &str, escape: char) -> Result<Vec<String>, WordsError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) => {
                cur.push(c);
                if c == escape && q == '"' && i + 1 < chars.len() {
                    cur.push(chars[i + 1]);
                    i += 1;
                } else if c == q {
                    quote = None;
                }
            }
            None => {
                if c.is_whitespace() {
                    if !cur.is_empty() {
                        out.push(std::mem::take(&mut cur));
                    }
                } else {
                    cur.push(c);
                    if c == escape && i + 1 < chars.len() {
                        cur.push(chars[i + 1]);
                        i += 1;
                    } else if c == '"' || c == '\'' {
                        quote = Some(c);
                    }
                }
            }
        }
        i += 1;
    }
    if let Some(q) = quote {
        return Err(WordsError::Unterminated(q));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// A character of a variable name.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        vec![
            ("A".into(), "apple".into()),
            ("EMPTY".into(), String::new()),
            ("SP".into(), "a b".into()),
        ]
    }

    fn x(s: &str) -> String {
        expand(s, '\\', &env()).expect("expand")
    }

    #[test]
    fn variables() {
        assert_eq!(x("$A"), "apple");
        assert_eq!(x("${A}s"), "apples");
        assert_eq!(x("$A-$NOPE-"), "apple--");
        assert_eq!(x("${NOPE:-pear}"), "pear");
        assert_eq!(x("${EMPTY:-pear}"), "pear");
        assert_eq!(x("${EMPTY-pear}"), "");
        assert_eq!(x("${A:-pear}"), "apple");
        assert_eq!(x("${A:+set}"), "set");
        assert_eq!(x("${EMPTY:+set}"), "");
        assert_eq!(x("${EMPTY+set}"), "set");
        assert_eq!(x("${NOPE:+set}"), "");
        assert_eq!(x("${NOPE:-$A}"), "apple");
        assert_eq!(x("cost: $"), "cost: $");
        assert!(matches!(
            expand("${NOPE:?needed}", '\\', &env()),
            Err(WordsError::Required { .. })
        ));
        assert!(expand("${A", '\\', &env()).is_err());
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(x("'$A'"), "$A");
        assert_eq!(x("\"$A b\""), "apple b");
        assert_eq!(x("\\$A"), "$A");
        assert_eq!(x("\"a\\\"b\""), "a\"b");
        assert_eq!(x("\"a\\nb\""), "a\\nb");
        assert_eq!(x("a\\ b"), "a b");
        assert_eq!(expand("a`$b", '`', &env()).expect("backtick"), "a$b");
        assert!(expand("'open", '\\', &env()).is_err());
    }

    #[test]
    fn word_splitting() {
        assert_eq!(
            expand_words("80/tcp  $A \"x y\" $SP", '\\', &env()).expect("words"),
            vec!["80/tcp", "apple", "x y", "a", "b"]
        );
        assert_eq!(
            split_raw(r#"a=1 b="x y" c=d\ e 'q r'"#, '\\').expect("split"),
            vec!["a=1", r#"b="x y""#, r"c=d\ e", "'q r'"]
        );
    }
}
