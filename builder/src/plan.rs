//! A build's plan: the stages of a Dockerfile, what each starts from (an image, an earlier
//! stage, or `scratch`), the ARGs declared before the first FROM (the only variables FROM
//! lines see), and the stages a target needs: `--target` (else the last stage) and, in turn,
//! the stages they start from or `COPY --from`. Stages nobody needs are skipped, as the
//! classic builder skips them.

use crate::instructions::{Instruction, Step};
use crate::parser::ParseError;
use crate::words;
use std::collections::{BTreeMap, BTreeSet};

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq)]
pub enum Base {
    Scratch,
    /// An image reference (FROM's variables expanded).
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
}

/// One stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub index: usize,
    /// `AS name`, lower case.
    pub name: Option<String>,
    pub base: Base,
    pub platform: Option<String>,
    /// The FROM step, then the stage's own steps.
    pub from: Step,
    pub steps: Vec<Step>,
}

/// Where `COPY --from` takes its files from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Stage(usize),
    Image(String),
}

/// The plan of a build.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub stages: Vec<Stage>,
    /// The stages to build, in order (the last is the target).
    pub needed: Vec<usize>,
    /// ARGs before the first FROM, with their values (build args over defaults).
    pub meta_args: Vec<(String, String)>,
    /// Build args no ARG declared (dockerd warns about them).
    pub unused_args: Vec<String>,
}

fn err(line: usize, m: impl Into<String>) -> ParseError {
    ParseError {
        line,
        message: m.into(),
    }
}

/// Resolves a stage name or index written before stage `before`.
fn stage_ref(stages: &[Stage], name: &str, before: usize) -> Option<usize> {
    let lower = name.to_lowercase();
    if let Some(s) = stages[..before]
        .iter()
        .find(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        return Some(s.index);
    }
    match name.parse::<usize>() {
        Ok(i) if i < before => Some(i),
        _ => None,
    }
}

/// `COPY --from`'s source for a step of stage `at`.
pub fn copy_source(stages: &[Stage], from: &str, at: usize) -> Source {
    match stage_ref(stages, from, at) {
        Some(i) => Source::Stage(i),
        None => Source::Image(from.to_string()),
    }
}

/// Makes the plan of `steps` for `target` with `build_args` and `escape`.
pub fn plan(
    steps: &[Step],
    build_args: &BTreeMap<String, Option<String>>,
    target: Option<&str>,
    escape: char,
) -> Result<Plan, ParseError> {
    let mut meta: Vec<(String, String)> = Vec::new();
    let mut declared: BTreeSet<String> = BTreeSet::new();
    let mut stages: Vec<Stage> = Vec::new();
    for s in steps {
        match &s.instruction {
            Instruction::Arg(args) if stages.is_empty() => {
                for (name, default) in args {
                    declared.insert(name.clone());
                    let value = match build_args.get(name) {
                        Some(Some(v)) => Some(v.clone()),
                        _ => match default {
                            Some(d) => Some(
                                words::expand(d, escape, &meta)
                                    .map_err(|e| err(s.line, e.to_string()))?,
                            ),
                            None => None,
                        },
                    };
                    if let Some(v) = value {
                        meta.push((name.clone(), v));
                    }
                }
            }
            Instruction::From {
                image,
                name,
                platform,
            } => {
                let index = stages.len();
                let expanded =
                    words::expand(image, escape, &meta).map_err(|e| err(s.line, e.to_string()))?;
                if expanded.is_empty() {
                    return Err(err(s.line, "base name (${…}) should not be blank"));
                }
                let base = if expanded.eq_ignore_ascii_case("scratch") {
                    Base::Scratch
                } else {
                    match stage_ref(&stages, &expanded, index).filter(|_| {
                        // A name, not an index: `FROM 0` is an image called 0.
                        stages
                            .iter()
                            .any(|st| st.name.as_deref() == Some(&expanded.to_lowercase()))
                    }) {
                        Some(i) => Base::Stage(i),
                        None => Base::Image(expanded),
                    }
                };
                if let Some(n) = name {
                    if stages
                        .iter()
                        .any(|st| st.name.as_deref() == Some(n.as_str()))
                    {
                        return Err(err(s.line, format!("duplicate name {n}")));
                    }
                }
                let platform = match platform {
                    Some(p) => Some(
                        words::expand(p, escape, &meta).map_err(|e| err(s.line, e.to_string()))?,
                    ),
                    None => None,
                };
                stages.push(Stage {
                    index,
                    name: name.clone(),
                    base,
                    platform,
                    from: s.clone(),
                    steps: Vec::new(),
                });
            }
            _ => {
                let Some(cur) = stages.last_mut() else {
                    return Err(err(
                        s.line,
                        "no build stage in current context: the first instruction must be FROM",
                    ));
                };
                if let Instruction::Arg(args) = &s.instruction {
                    declared.extend(args.iter().map(|(n, _)| n.clone()));
                }
                cur.steps.push(s.clone());
            }
        }
    }
    if stages.is_empty() {
        return Err(err(1, "the Dockerfile has no FROM instruction"));
    }
    let target_index = match target.filter(|t| !t.is_empty()) {
        None => stages.len() - 1,
        Some(t) => stages
            .iter()
            .find(|s| s.name.as_deref() == Some(t.to_lowercase().as_str()))
            .map(|s| s.index)
            .ok_or_else(|| err(0, format!("failed to reach build target {t} in Dockerfile")))?,
    };
    // The stages the target needs, through FROM and COPY --from.
    let mut needed = BTreeSet::new();
    let mut todo = vec![target_index];
    while let Some(i) = todo.pop() {
        if !needed.insert(i) {
            continue;
        }
        if let Base::Stage(b) = stages[i].base {
            todo.push(b);
        }
        for s in &stages[i].steps {
            if let Instruction::Copy(c) = &s.instruction {
                if let Some(from) = &c.from {
                    let from = words::expand(from, escape, &meta)
                        .map_err(|e| err(s.line, e.to_string()))?;
                    if let Source::Stage(j) = copy_source(&stages, &from, i) {
                        todo.push(j);
                    } else if stage_ref(&stages, &from, stages.len()).is_some() {
                        return Err(err(
                            s.line,
                            format!("COPY --from={from} names a stage that is not built before this one"),
                        ));
                    }
                }
            }
        }
    }
    let unused_args = build_args
        .keys()
        .filter(|k| !declared.contains(*k) && !PREDEFINED_ARGS.contains(&k.as_str()))
        .cloned()
        .collect();
    Ok(Plan {
        stages,
        needed: needed.into_iter().collect(),
        meta_args: meta,
        unused_args,
    })
}

/// Build args Docker knows without an ARG (proxies).
pub const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instructions::steps;
    use crate::parser::parse;

    fn make(text: &str, args: &[(&str, &str)], target: Option<&str>) -> Result<Plan, ParseError> {
        let df = parse(text)?;
        let st = steps(&df)?;
        let a: BTreeMap<String, Option<String>> = args
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect();
        plan(&st, &a, target, df.escape)
    }

    const MULTI: &str = "ARG BASE=busybox\nARG TAG\nFROM ${BASE}:${TAG:-1} AS build\nRUN echo build\nFROM build AS test\nRUN echo test\nFROM scratch AS unused\nCOPY x /\nFROM busybox AS final\nARG LATE\nCOPY --from=build /out /out\nCOPY --from=other/image:1 /x /x\n";

    #[test]
    fn stages_bases_and_what_a_target_needs() {
        let p = make(MULTI, &[("TAG", "2"), ("EXTRA", "1")], None).expect("plan");
        assert_eq!(p.stages.len(), 4);
        assert_eq!(p.stages[0].base, Base::Image("busybox:2".into()));
        assert_eq!(p.stages[1].base, Base::Stage(0));
        assert_eq!(p.stages[2].base, Base::Scratch);
        assert_eq!(p.needed, vec![0, 3], "test and unused are skipped");
        assert_eq!(p.unused_args, vec!["EXTRA"]);
        assert_eq!(
            copy_source(&p.stages, "other/image:1", 3),
            Source::Image("other/image:1".into())
        );
        assert_eq!(copy_source(&p.stages, "0", 3), Source::Stage(0));
        let p = make(MULTI, &[], Some("TEST")).expect("plan");
        assert_eq!(p.needed, vec![0, 1]);
        assert_eq!(p.stages[0].base, Base::Image("busybox:1".into()));
        let e = make(MULTI, &[], Some("nope")).expect_err("no target");
        assert!(e.message.contains("failed to reach build target nope"));
    }

    #[test]
    fn bad_plans() {
        assert!(make("FROM a AS x\nFROM b AS x\n", &[], None)
            .expect_err("dup")
            .message
            .contains("duplicate name x"));
        assert!(make(
            "FROM a AS first\nCOPY --from=later /a /b\nFROM b AS later\n",
            &[],
            Some("first")
        )
        .expect_err("a later stage")
        .message
        .contains("not built before"));
        assert!(make("ARG E\nFROM $E\n", &[], None).is_err(), "blank base");
    }
}
