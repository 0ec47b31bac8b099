//! `--ulimit name=soft[:hard]` and the daemon's `--default-ulimit`, as dockerd reads them.

use serde_json::{json, Value};

/// Resource names `--ulimit` takes (the `RLIMIT_` suffixes).
const NAMES: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
    "as",
];

/// Parses `name=soft[:hard]` into a HostConfig `Ulimits` entry.
pub fn parse(s: &str) -> Result<Value, String> {
    let (name, vals) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid ulimit argument: {s}"))?;
    if !NAMES.contains(&name) {
        return Err(format!("invalid ulimit type: {name}"));
    }
    let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
    let num = |v: &str| {
        v.parse::<i64>()
            .map_err(|_| format!("invalid ulimit argument: {s}"))
    };
    let (soft, hard) = (num(soft)?, num(hard)?);
    if soft > hard {
        return Err(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        ));
    }
    Ok(json!({ "Name": name, "Soft": soft, "Hard": hard }))
}

/// Adds the daemon's default ulimits a container does not set itself (dockerd merges them
/// at each start, so a reloaded default applies to the next start).
pub fn merge_defaults(host_config: &mut Value, defaults: &[Value]) {
    let mut list: Vec<Value> = host_config["Ulimits"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for d in defaults {
        if !list.iter().any(|u| u["Name"] == d["Name"]) {
            list.push(d.clone());
        }
    }
    if !list.is_empty() {
        host_config["Ulimits"] = Value::Array(list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_merge() {
        assert_eq!(
            parse("nofile=1024:2048").unwrap(),
            json!({"Name": "nofile", "Soft": 1024, "Hard": 2048})
        );
        assert_eq!(parse("nproc=50").unwrap()["Hard"], 50);
        assert!(parse("bogus=1")
            .unwrap_err()
            .contains("invalid ulimit type"));
        assert!(parse("nofile=2:1").is_err());
        assert!(parse("nofile").is_err());
        let mut hc = json!({"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 10}]});
        merge_defaults(
            &mut hc,
            &[parse("nofile=99").unwrap(), parse("nproc=7").unwrap()],
        );
        assert_eq!(hc["Ulimits"][0]["Soft"], 10, "the container's own wins");
        assert_eq!(hc["Ulimits"][1]["Name"], "nproc");
    }
}
