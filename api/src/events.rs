//! `/events`: what happened to images, as dockerd reports it; recent events are kept for
//! `since`, new ones are broadcast to every listener.

use crate::body::{stream, Query, Resp};
use crate::ApiError;
use bytes::Bytes;
use hyper::StatusCode;
use std::collections::VecDeque;
use std::sync::Mutex;

const KEEP: usize = 1024;

/// The event log and its live subscribers.
pub struct Events {
    recent: Mutex<VecDeque<serde_json::Value>>,
    live: tokio::sync::broadcast::Sender<serde_json::Value>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            recent: Mutex::new(VecDeque::new()),
            live: tokio::sync::broadcast::channel(256).0,
        }
    }
}

fn now_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

impl Events {
    /// Records an event of `typ` (e.g. "image") with `action` on `id`.
    pub fn emit(&self, typ: &str, action: &str, id: &str, attributes: serde_json::Value) {
        let ns = now_nanos();
        let e = serde_json::json!({
            "status": action, "id": id, "Type": typ, "Action": action,
            "Actor": { "ID": id, "Attributes": attributes },
            "scope": "local", "time": (ns / 1_000_000_000) as i64, "timeNano": ns as i64,
        });
        let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if r.len() == KEEP {
            r.pop_front();
        }
        r.push_back(e.clone());
        drop(r);
        let _ = self.live.send(e);
    }
}

/// A time parameter as the CLI sends it: seconds, optionally with a fraction.
fn parse_time(v: Option<&str>) -> Result<Option<i128>, ApiError> {
    match v {
        None | Some("") => Ok(None),
        Some(s) => {
            let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
            let secs: i128 = secs
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid time {s:?}")))?;
            let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
            let nanos: i128 = digits
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid time {s:?}")))?;
            Ok(Some(secs * 1_000_000_000 + nanos))
        }
    }
}

/// Whether labels match a `label` filter (`key` or `key=value`); `get` says whether a key
/// is there and, if its value is a string, which.
/// A prune's answer and event: `{KEY: [...] or null, "SpaceReclaimed": n}`, and a `prune`
/// event of `typ` with the space reclaimed, as dockerd sends them.
pub(crate) fn pruned(
    d: &crate::Daemon,
    typ: &str,
    key: &str,
    deleted: Vec<String>,
    reclaimed: i64,
) -> crate::body::Resp {
    d.events.emit(
        typ,
        "prune",
        "",
        serde_json::json!({ "reclaimed": reclaimed.to_string() }),
    );
    let deleted = if deleted.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::json!(deleted)
    };
    let mut body = serde_json::json!({ "SpaceReclaimed": reclaimed });
    body[key] = deleted;
    crate::body::json(hyper::StatusCode::OK, &body)
}

pub(crate) fn label_matches<'a>(
    filter: &str,
    get: impl Fn(&str) -> Option<Option<&'a str>>,
) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => get(k).flatten() == Some(v),
        None => get(filter).is_some(),
    }
}

/// `filters` as `{"type":{"image":true}}` or `{"type":["image"]}`: key → accepted values.
pub(crate) fn parse_filters(v: Option<&str>) -> Result<Vec<(String, Vec<String>)>, ApiError> {
    let Some(s) = v.filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    let j: serde_json::Value = serde_json::from_str(s)
        .map_err(|e| ApiError::bad_request(format!("invalid filters: {e}")))?;
    let obj = j
        .as_object()
        .ok_or_else(|| ApiError::bad_request("invalid filters"))?;
    Ok(obj
        .iter()
        .map(|(k, v)| {
            let vals = match v {
                serde_json::Value::Object(m) => m.keys().cloned().collect(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
                _ => Vec::new(),
            };
            (k.clone(), vals)
        })
        .collect())
}

fn matches(e: &serde_json::Value, filters: &[(String, Vec<String>)]) -> bool {
    filters.iter().all(|(k, vals)| {
        let attrs = &e["Actor"]["Attributes"];
        let container = e["Type"] == "container";
        let fields: Vec<Option<&str>> = match k.as_str() {
            "type" => vec![e["Type"].as_str()],
            "event" => vec![e["Action"].as_str()],
            "image" if container => vec![attrs["image"].as_str()],
            "image" => vec![e["Actor"]["ID"].as_str(), attrs["name"].as_str()],
            "container" if container => vec![e["Actor"]["ID"].as_str(), attrs["name"].as_str()],
            "container" => vec![None],
            "label" => {
                return vals
                    .iter()
                    .any(|v| label_matches(v, |k| attrs.get(k).map(|x| x.as_str())))
            }
            _ => return true,
        };
        fields.iter().flatten().any(|f| {
            vals.iter()
                .any(|v| v == f || (k == "container" && f.starts_with(v.as_str()) && v.len() >= 12))
        })
    })
}

/// `GET /events`.
pub fn get(events: &Events, q: &Query) -> Result<Resp, ApiError> {
    let since = parse_time(q.get("since"))?;
    let until = parse_time(q.get("until"))?;
    let filters = parse_filters(q.get("filters"))?;
    let mut live = events.live.subscribe();
    let backlog: Vec<serde_json::Value> = match since {
        Some(s) => events
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|e| e["timeNano"].as_i64().map(i128::from) >= Some(s))
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let in_range = |e: &serde_json::Value| {
            until.is_none_or(|u| e["timeNano"].as_i64().map(i128::from) <= Some(u))
        };
        for e in backlog
            .iter()
            .filter(|e| in_range(e) && matches(e, &filters))
        {
            if tx.send(Ok(Bytes::from(format!("{e}\n")))).await.is_err() {
                return;
            }
        }
        loop {
            let wait = match until {
                Some(u) => {
                    let left = u - now_nanos();
                    if left <= 0 {
                        return;
                    }
                    std::time::Duration::from_nanos(left as u64)
                }
                None => std::time::Duration::from_secs(3600),
            };
            match tokio::time::timeout(wait, live.recv()).await {
                Ok(Ok(e)) if in_range(&e) && matches(&e, &filters) => {
                    if tx.send(Ok(Bytes::from(format!("{e}\n")))).await.is_err() {
                        return;
                    }
                }
                Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(_)) => return,
                Err(_) if until.is_some() => return,
                Err(_) => {}
            }
        }
    });
    Ok(stream(StatusCode::OK, "application/json", rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_filters() {
        assert_eq!(parse_time(Some("12.5")).unwrap(), Some(12_500_000_000));
        assert_eq!(parse_time(Some("7")).unwrap(), Some(7_000_000_000));
        assert!(parse_time(Some("soon")).is_err());
        let f = parse_filters(Some(r#"{"type":{"image":true},"event":["tag"]}"#)).unwrap();
        let e =
            serde_json::json!({"Type":"image","Action":"tag","Actor":{"ID":"x","Attributes":{}}});
        assert!(matches(&e, &f));
        let e2 = serde_json::json!({"Type":"image","Action":"delete","Actor":{"ID":"x","Attributes":{}}});
        assert!(!matches(&e2, &f));
    }
}
