//! How the CLI prints an answer: aligned tables for people (the default), the API's own JSON
//! for scripts (`--format json`), or one value (`--field KEY`).
//!
//! Invariants:
//! - `--format json` prints the body the API sent, pretty-printed, and nothing else on stdout
//!   (notes and progress go to stderr), so `raftsafe … --format json | jq` always parses.
//! - A table is a view of the same body: it leaves nothing out that a person asked for, but
//!   `put` shows the new version's metadata, not the data it just wrote (as `vault kv put`).
//! - Nothing here prints a token: no answer the CLI asks for carries one.

use std::time::Duration;

use serde_json::{Map, Value};

/// How to print answers (`--format`, env `RAFTSAFE_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// The API's JSON, for scripts.
    Json,
}

/// What an answer is, which decides its table.
#[derive(Debug, Clone)]
pub enum View {
    /// `GET /secrets/{path}`: path, metadata block, data block.
    Secret(String),
    /// `PUT /secrets/{path}`: path and the new version's metadata (the data is not echoed).
    Written(String),
    /// `{"data": {...}}` (encrypt, decrypt, rewrap): the data block.
    Data,
    /// `GET /secrets?prefix=`: one row per path.
    List(String),
    /// `GET /metadata/{path}`: a block, then one row per version.
    Metadata,
    /// `GET /mounts`: one row per mount.
    Mounts,
    /// `GET /cluster`: a block, then one row per member.
    Cluster,
    /// `GET /tokens`: one row per token (accessors, never tokens).
    Tokens,
    /// Anything else: its fields as keys and values. With an empty body, this line.
    Plain(String),
}

/// The text to print on stdout for a successful answer, or `None` for nothing.
pub fn render(format: Format, view: &View, body: &Value) -> Option<String> {
    if format == Format::Json {
        return (!body.is_null()).then(|| pretty(body));
    }
    let text = match view {
        View::Secret(path) => {
            let mut s = section("Secret Path", path);
            s += &kv_section("Metadata", &body["metadata"]);
            s += &kv_section("Data", &body["data"]);
            s
        }
        View::Written(path) => {
            let mut s = section("Secret Path", path);
            s += &kv_section("Metadata", &body["metadata"]);
            s
        }
        View::Data => kv_table(&body["data"]),
        View::List(prefix) => list(prefix, body),
        View::Metadata => metadata(body),
        View::Mounts => resources(
            body,
            &[
                ("Path", "path"),
                ("Type", "type"),
                ("Latest", "latestVersion"),
                ("MinDecryption", "minDecryptionVersion"),
                ("MinEncryption", "minEncryptionVersion"),
                ("MinAvailable", "minAvailableVersion"),
                ("Updated", "updatedAt"),
            ],
            "no mounts",
        ),
        View::Cluster => cluster(body),
        View::Tokens => resources(
            body,
            &[
                ("Accessor", "accessor"),
                ("Name", "name"),
                ("Scopes", "scopes"),
                ("Paths", "paths"),
                ("Created", "createdAt"),
                ("Expires", "expiresAt"),
                ("Revoked", "revokedAt"),
            ],
            "no tokens",
        ),
        View::Plain(done) if body.is_null() => done.clone(),
        View::Plain(_) => generic(body),
    };
    Some(text.trim_end().to_string())
}

/// `--field KEY`: the value of KEY in the answer's `data`, else its `metadata`, else the top
/// level. Strings print as they are (no quotes) in table format, as JSON with `--format json`.
pub fn field(format: Format, body: &Value, key: &str) -> Option<String> {
    let v = [&body["data"], &body["metadata"], body]
        .into_iter()
        .find_map(|o| o.as_object().and_then(|o| o.get(key)))?;
    Some(match (format, v) {
        (Format::Table, Value::String(s)) => s.clone(),
        (Format::Table, other) => other.to_string(),
        (Format::Json, other) => pretty(other),
    })
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// One cell: strings as they are, null as `n/a`, a list of scalars comma-separated, anything
/// else as compact JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "n/a".into(),
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            a.iter().map(cell).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    }
}

/// Rows under a header, columns padded to their widest cell, four spaces apart (as Vault
/// prints them); the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s += c;
            } else {
                let pad = widths[i] - c.chars().count() + 4;
                s += c;
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let dashes: Vec<String> = header.iter().map(|h| "-".repeat(h.len())).collect();
    let mut out = line(&head) + &line(&dashes);
    for row in rows {
        out += &line(row);
    }
    out
}

fn section(title: &str, body: &str) -> String {
    format!("== {title} ==\n{body}\n\n")
}

fn kv_section(title: &str, obj: &Value) -> String {
    format!("=== {title} ===\n{}\n", kv_table(obj))
}

/// An object as `Key  Value` rows, in the API's key order.
fn kv_table(obj: &Value) -> String {
    let rows: Vec<Vec<String>> = match obj.as_object() {
        Some(o) => o.iter().map(|(k, v)| vec![k.clone(), cell(v)]).collect(),
        None => Vec::new(),
    };
    table(&["Key", "Value"], &rows)
}

fn list(prefix: &str, body: &Value) -> String {
    let items = body["Resources"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return if prefix.is_empty() {
            "no secrets".into()
        } else {
            format!("no secrets under '{prefix}'")
        };
    }
    let deleted = items.iter().any(|i| !i["metadata"]["deletedAt"].is_null());
    let mut header = vec!["Path", "Version", "Updated"];
    if deleted {
        header.push("Deleted");
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            let m = &i["metadata"];
            let mut row = vec![cell(&i["path"]), cell(&m["version"]), cell(&m["updatedAt"])];
            if deleted {
                row.push(cell(&m["deletedAt"]));
            }
            row
        })
        .collect();
    let mut out = table(&header, &rows);
    if let Some(total) = body["totalResults"].as_u64() {
        if total > items.len() as u64 {
            out += &format!("(the first {} of {total})\n", items.len());
        }
    }
    out
}

fn metadata(body: &Value) -> String {
    let data = &body["data"];
    let mut head = Map::new();
    if let Some(o) = data.as_object() {
        for (k, v) in o.iter().filter(|(k, _)| k.as_str() != "versions") {
            head.insert(k.clone(), v.clone());
        }
    }
    let mut out = kv_section("Metadata", &Value::Object(head));
    let rows: Vec<Vec<String>> = data["versions"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .map(|v| {
                    vec![
                        cell(&v["version"]),
                        cell(&v["createdAt"]),
                        cell(&v["deletedAt"]),
                        cell(&v["destroyed"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    out += &format!(
        "=== Versions ===\n{}",
        table(&["Version", "Created", "Deleted", "Destroyed"], &rows)
    );
    out
}

/// A SCIM list (`Resources`) as rows of the given (header, field) columns.
fn resources(body: &Value, columns: &[(&str, &str)], none: &str) -> String {
    let items = body["Resources"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return none.into();
    }
    let header: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| columns.iter().map(|(_, f)| cell(&i[*f])).collect())
        .collect();
    table(&header, &rows)
}

/// A follower's health as the leader reports it: "stable 5m, 12 ms", "healthy 1.2 s, 12 ms"
/// (not yet stable) or "unhealthy: lag 3000, 40 ms".
fn health(h: &Value) -> String {
    if h.is_null() {
        return "-".into();
    }
    let contact = h["lastContactMs"]
        .as_u64()
        .map_or("never".to_string(), |ms| format!("{ms} ms"));
    if h["healthy"] == true {
        let for_ms = h["stableMs"].as_u64().unwrap_or(0);
        let (word, since) = if for_ms >= 2_000 {
            (
                "stable",
                humantime::format_duration(Duration::from_secs(for_ms / 1000)),
            )
        } else {
            (
                "healthy",
                humantime::format_duration(Duration::from_millis(for_ms)),
            )
        };
        format!("{word} {since}, {contact}")
    } else {
        format!("unhealthy: lag {}, {contact}", cell(&h["lag"]))
    }
}

fn cluster(body: &Value) -> String {
    let mut head = Map::new();
    for k in ["nodeId", "leader", "term", "nospace", "membershipChange"] {
        if !body[k].is_null() {
            head.insert(k.into(), body[k].clone());
        }
    }
    let mut out = kv_table(&Value::Object(head)) + "\n";
    let rows: Vec<Vec<String>> = body["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    let s = &m["status"];
                    let state = match s["error"].as_str() {
                        Some(e) => format!("unreachable ({e})"),
                        None => cell(&s["state"]),
                    };
                    vec![
                        cell(&m["id"]),
                        cell(&m["voter"]),
                        state,
                        health(&m["health"]),
                        cell(&s["term"]),
                        cell(&s["lastLogIndex"]),
                        cell(&s["lastAppliedIndex"]),
                        disk(&m["disk"]),
                        cell(&m["apiAddr"]),
                        cell(&m["raftAddr"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    out += &table(
        &[
            "ID", "Voter", "State", "Health", "Term", "LastLog", "Applied", "Disk", "API", "Raft",
        ],
        &rows,
    );
    out
}

/// A member's disk in the cluster table: `64.0 GiB free`, or `NOSPACE 8.0 MiB < 64.0 MiB`.
fn disk(d: &Value) -> String {
    let (Some(free), Some(need)) = (d["freeBytes"].as_u64(), d["neededBytes"].as_u64()) else {
        return "-".into();
    };
    let human = crate::raft::disk::human;
    if d["alarm"].as_bool() == Some(true) {
        format!("NOSPACE {} < {}", human(free), human(need))
    } else {
        format!("{} free", human(free))
    }
}

/// Any other object: its scalar fields as `Key  Value` rows, then each nested object as its
/// own block and each list of objects as rows.
fn generic(body: &Value) -> String {
    let Some(o) = body.as_object() else {
        return cell(body);
    };
    let mut scalars = Map::new();
    let mut out_nested = String::new();
    for (k, v) in o {
        match v {
            Value::Object(_) => out_nested += &format!("\n{}", kv_section(k, v)),
            Value::Array(a) if a.iter().any(Value::is_object) => {
                let mut cols: Vec<String> = Vec::new();
                for item in a.iter().filter_map(Value::as_object) {
                    for key in item.keys() {
                        if !cols.contains(key) {
                            cols.push(key.clone());
                        }
                    }
                }
                let rows: Vec<Vec<String>> = a
                    .iter()
                    .map(|i| cols.iter().map(|c| cell(&i[c])).collect())
                    .collect();
                let header: Vec<&str> = cols.iter().map(String::as_str).collect();
                out_nested += &format!("\n=== {k} ===\n{}", table(&header, &rows));
            }
            other => {
                scalars.insert(k.clone(), other.clone());
            }
        }
    }
    let mut out = String::new();
    if !scalars.is_empty() {
        out += &kv_table(&Value::Object(scalars));
    }
    out + &out_nested
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_line_up_and_the_last_is_not_padded() {
        let t = table(
            &["Key", "Value"],
            &[
                vec!["a".into(), "1".into()],
                vec!["longer".into(), "2".into()],
            ],
        );
        assert_eq!(
            t,
            "Key       Value\n---       -----\na         1\nlonger    2\n"
        );
    }

    #[test]
    fn the_cluster_table_shows_each_disk_and_why_writes_are_refused() {
        let body = json!({
            "nodeId": 1, "leader": 1, "term": 2,
            "nospace": "node 2's disk is nearly full",
            "members": [
                {"id": 1, "voter": true, "status": {"state": "Leader"},
                 "disk": {"alarm": false, "freeBytes": 3u64 << 30, "neededBytes": 64u64 << 20}},
                {"id": 2, "voter": true, "status": {"state": "Follower"},
                 "disk": {"alarm": true, "freeBytes": 8u64 << 20, "neededBytes": 24u64 << 20}},
                {"id": 3, "voter": true, "status": {"error": "timed out"}},
            ],
        });
        let out = render(Format::Table, &View::Cluster, &body).unwrap();
        assert!(
            out.contains("nospace    node 2's disk is nearly full"),
            "{out}"
        );
        assert!(out.contains("Disk"), "{out}");
        assert!(out.contains("3.0 GiB free"), "{out}");
        assert!(out.contains("NOSPACE 8.0 MiB < 24.0 MiB"), "{out}");
        // Without an alarm the block has no nospace row; a member not heard of shows "-".
        let quiet =
            json!({"nodeId": 1, "leader": 1, "term": 2, "members": [{"id": 3, "status": {}}]});
        let out = render(Format::Table, &View::Cluster, &quiet).unwrap();
        assert!(!out.contains("nospace"), "{out}");
    }

    #[test]
    fn a_secret_shows_metadata_then_data() {
        let body = json!({"data": {"user": "root"}, "metadata": {"version": 3}});
        let out = render(Format::Table, &View::Secret("app/db".into()), &body).unwrap();
        let meta = out.find("=== Metadata ===").unwrap();
        let data = out.find("=== Data ===").unwrap();
        assert!(out.starts_with("== Secret Path ==\napp/db\n"), "{out}");
        assert!(meta < data, "{out}");
        assert!(out.contains("version    3"), "{out}");
        assert!(out.contains("user    root"), "{out}");
    }

    #[test]
    fn a_write_does_not_echo_the_data() {
        let body = json!({"data": {"password": "s3cret"}, "metadata": {"version": 1}});
        let out = render(Format::Table, &View::Written("a".into()), &body).unwrap();
        assert!(!out.contains("s3cret"), "{out}");
        // JSON is the API's answer, whole.
        let json = render(Format::Json, &View::Written("a".into()), &body).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), body);
    }

    #[test]
    fn field_looks_in_data_then_metadata_then_the_top() {
        let body = json!({"data": {"k": "v", "n": 2}, "metadata": {"version": 3}, "status": "OK"});
        assert_eq!(field(Format::Table, &body, "k").as_deref(), Some("v"));
        assert_eq!(field(Format::Json, &body, "k").as_deref(), Some("\"v\""));
        assert_eq!(field(Format::Table, &body, "n").as_deref(), Some("2"));
        assert_eq!(field(Format::Table, &body, "version").as_deref(), Some("3"));
        assert_eq!(field(Format::Table, &body, "status").as_deref(), Some("OK"));
        assert_eq!(field(Format::Table, &body, "missing"), None);
    }

    #[test]
    fn an_empty_answer_prints_the_done_line_or_nothing() {
        let v = View::Plain("deleted".into());
        assert_eq!(
            render(Format::Table, &v, &Value::Null).as_deref(),
            Some("deleted")
        );
        assert_eq!(render(Format::Json, &v, &Value::Null), None);
    }
}
