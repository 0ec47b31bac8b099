//! The `zfs` and `zpool` commands (Debian's `zfsutils-linux`), run with `-H -p` so their
//! output is tab-separated machine values: the driver's only way into ZFS, as dockerd's.

use std::process::Command;

/// Errors of a `zfs`/`zpool` command.
#[derive(Debug, thiserror::Error)]
pub enum ZfsError {
    #[error("running {program}: {source}")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
    #[error("{program} {args} failed: {stderr}")]
    Failed {
        program: &'static str,
        args: String,
        stderr: String,
    },
    #[error("{program} {args}: unexpected output {line:?}")]
    Parse {
        program: &'static str,
        args: String,
        line: String,
    },
}

impl ZfsError {
    /// What the command said on stderr, when it ran and failed.
    pub fn stderr(&self) -> &str {
        match self {
            ZfsError::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }
}

/// Runs `program args`, returning stdout.
fn run(program: &'static str, args: &[&str]) -> Result<String, ZfsError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| ZfsError::Spawn { program, source })?;
    if !out.status.success() {
        return Err(ZfsError::Failed {
            program,
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    tracing::debug!(program, ?args, "ran");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Splits `-H` output into rows of `columns` tab-separated fields.
pub fn rows(
    program: &'static str,
    args: &[&str],
    text: &str,
    columns: usize,
) -> Result<Vec<Vec<String>>, ZfsError> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<String> = l.split('\t').map(str::to_string).collect();
            if f.len() == columns {
                Ok(f)
            } else {
                Err(ZfsError::Parse {
                    program,
                    args: args.join(" "),
                    line: l.to_string(),
                })
            }
        })
        .collect()
}

/// `zfs ARGS`.
pub fn zfs(args: &[&str]) -> Result<String, ZfsError> {
    run("zfs", args)
}

/// `zpool ARGS`.
pub fn zpool(args: &[&str]) -> Result<String, ZfsError> {
    run("zpool", args)
}

/// `zfs list -H -p -o PROPS ARGS`, as rows of the properties' values.
pub fn list(props: &[&str], args: &[&str]) -> Result<Vec<Vec<String>>, ZfsError> {
    let o = props.join(",");
    let mut a = vec!["list", "-H", "-p", "-o", &o];
    a.extend_from_slice(args);
    let text = zfs(&a)?;
    rows("zfs", &a, &text, props.len())
}

/// The values of `props` of `dataset` (`zfs get -H -p -o value`), in the order asked.
pub fn get(dataset: &str, props: &[&str]) -> Result<Vec<String>, ZfsError> {
    let p = props.join(",");
    let a = ["get", "-H", "-p", "-o", "property,value", &p, dataset];
    let text = zfs(&a)?;
    let rows = rows("zfs", &a, &text, 2)?;
    props
        .iter()
        .map(|want| {
            rows.iter()
                .find(|r| r[0] == *want)
                .map(|r| r[1].clone())
                .ok_or_else(|| ZfsError::Parse {
                    program: "zfs",
                    args: a.join(" "),
                    line: format!("no value for {want}"),
                })
        })
        .collect()
}

/// Whether `zfs` can be run at all.
pub fn available() -> bool {
    Command::new("zfs")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_split_tabs_and_reject_short_lines() {
        let r = rows("zfs", &["list"], "tank/a\t123\ntank/b\t-\n\n", 2).unwrap();
        assert_eq!(r, vec![vec!["tank/a", "123"], vec!["tank/b", "-"]]);
        let e = rows("zfs", &["list"], "tank/a 123\n", 2).unwrap_err();
        assert!(e.to_string().contains("unexpected output"), "{e}");
    }

    #[test]
    fn a_failed_command_says_what_it_ran() {
        // `false` exits 1 without output: the error names the program and arguments.
        let e = run("false", &["x", "y"]).unwrap_err();
        assert!(e.to_string().starts_with("false x y failed"), "{e}");
        let e = run("/nonexistent/zfs-binary", &[]).unwrap_err();
        assert!(matches!(e, ZfsError::Spawn { .. }), "{e}");
    }
}
