//! The OCI process of an `exec`: the container's own process (capabilities, rlimits,
//! no-new-privileges, environment) with the exec's command, and its user, environment,
//! working directory, terminal and privileges on top, as dockerd builds it.

use super::user::ResolvedUser;
use serde_json::{json, Value};

/// What an exec asks for.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    pub cmd: Vec<String>,
    /// `KEY=VALUE` entries that override the container's.
    pub env: Vec<String>,
    /// The resolved `--user`, when one was given.
    pub user: Option<ResolvedUser>,
    /// Empty: the container's working directory.
    pub working_dir: String,
    pub tty: bool,
    pub privileged: bool,
    /// (rows, columns) of the terminal at start.
    pub console_size: Option<(u16, u16)>,
}

/// A `ConsoleSize` (`[rows, columns]`) as the API sends it.
pub fn console_size(v: &Value) -> Option<(u16, u16)> {
    let a = v.as_array()?;
    Some((a.first()?.as_u64()? as u16, a.get(1)?.as_u64()? as u16))
}

/// The exec's process from the container's (`process` of its spec).
pub fn exec_process(container: &Value, e: &ExecSpec) -> Value {
    let mut p = container.clone();
    p["args"] = json!(e.cmd);
    let mut env: Vec<String> = p["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let mut extra = e.env.clone();
    if e.tty
        && !env
            .iter()
            .chain(extra.iter())
            .any(|v| v.starts_with("TERM="))
    {
        extra.push("TERM=xterm".into());
    }
    for kv in extra {
        let key = kv.split('=').next().unwrap_or_default().to_string();
        env.retain(|old| old.split('=').next() != Some(key.as_str()));
        env.push(kv);
    }
    if let Some(u) = &e.user {
        p["user"] = json!({ "uid": u.uid, "gid": u.gid, "additionalGids": u.additional_gids });
        let home = format!("HOME={}", u.home);
        env.retain(|v| !v.starts_with("HOME="));
        env.push(home);
    }
    p["env"] = json!(env);
    if !e.working_dir.is_empty() {
        p["cwd"] = json!(e.working_dir);
    }
    p["terminal"] = json!(e.tty);
    match e.console_size {
        Some((h, w)) if e.tty && h > 0 && w > 0 => {
            p["consoleSize"] = json!({ "height": h, "width": w });
        }
        _ => {
            if let Some(o) = p.as_object_mut() {
                o.remove("consoleSize");
            }
        }
    }
    if e.privileged {
        let all = json!(super::builder::all_capabilities());
        p["capabilities"] = json!({ "bounding": all, "effective": all, "permitted": all });
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_over_the_container_process() {
        let base = json!({
            "args": ["sleep", "100"], "env": ["PATH=/bin", "A=1", "HOME=/root"], "cwd": "/srv",
            "user": {"uid": 0, "gid": 0}, "terminal": false,
            "capabilities": {"bounding": ["CAP_CHOWN"]},
        });
        let p = exec_process(
            &base,
            &ExecSpec {
                cmd: vec!["sh".into(), "-c".into(), "id".into()],
                env: vec!["A=2".into(), "B=3".into()],
                user: Some(ResolvedUser {
                    uid: 1000,
                    gid: 100,
                    additional_gids: vec![5],
                    home: "/home/u".into(),
                }),
                working_dir: String::new(),
                tty: true,
                privileged: true,
                console_size: Some((24, 80)),
            },
        );
        assert_eq!(p["args"], json!(["sh", "-c", "id"]));
        let env = p["env"].as_array().unwrap();
        assert!(env.contains(&json!("A=2")) && !env.contains(&json!("A=1")));
        assert!(env.contains(&json!("B=3")) && env.contains(&json!("TERM=xterm")));
        assert!(env.contains(&json!("HOME=/home/u")) && !env.contains(&json!("HOME=/root")));
        assert_eq!(p["cwd"], "/srv");
        assert_eq!(p["user"]["uid"], 1000);
        assert_eq!(p["terminal"], true);
        assert_eq!(p["consoleSize"]["width"], 80);
        assert!(p["capabilities"]["bounding"].as_array().unwrap().len() > 30);
    }
}
