//! Grafana's template variables as the dashboard tests emulate them: the
//! options (text and value) a query variable offers, computed from a real
//! Prometheus the way Grafana's Prometheus data source computes them.

use super::http::encode;
use super::prometheus::{prom_api, prom_query};
use super::promql::{parse_label_values, parse_query_result, substitute};
use serde_json::Value;
use std::collections::BTreeMap;

/// The regex of the RBD namespace variables: each `query_result()` line
/// gives the text (the namespace, `(default)` for the default one) and the
/// value (a regular expression matching exactly that namespace).
pub const NS_REGEX: &str = r#"/namespace="(?<text>[^"]*)".*value="(?<value>[^"]*)"/"#;

/// How Grafana prints one series of a `query_result()` variable query:
/// `name{k="v",...} value timestamp_ms`, label values unescaped.
pub fn query_result_line(series: &Value) -> String {
    let metric = series["metric"].as_object().cloned().unwrap_or_default();
    let mut text = metric
        .get("__name__")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let labels: Vec<String> = metric
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or("")))
        .collect();
    text.push_str(&format!("{{{}}}", labels.join(",")));
    let ts = series["value"][0].as_f64().unwrap_or(0.0) * 1000.0;
    let value = series["value"][1].as_str().unwrap_or("");
    format!("{text} {value} {ts}")
}

/// [`NS_REGEX`] applied to one line, as Grafana applies a variable regex
/// with the named groups `text` and `value` (an empty group does not count).
pub fn apply_ns_regex(line: &str) -> Option<(String, String)> {
    let group = |s: &str, key: &str| -> Option<(String, usize)> {
        let start = s.find(key)? + key.len();
        let len = s[start..].find('"')?;
        Some((s[start..start + len].to_string(), start + len))
    };
    let (text, end) = group(line, "namespace=\"")?;
    // `.*` is greedy: the last `value="` after the namespace.
    let rest = &line[end..];
    let at = rest.rfind("value=\"")?;
    let (value, _) = group(&rest[at..], "value=\"")?;
    match (text.is_empty(), value.is_empty()) {
        (false, false) => Some((text, value)),
        (true, false) => Some((value.clone(), value)),
        (false, true) => Some((text.clone(), text)),
        (true, true) => None,
    }
}

/// The options of a query variable, (text, value), with `vars` substituted
/// in its query: `label_values()` through the label values API (text and
/// value alike), `query_result()` through an instant query and the
/// variable's regex (only [`NS_REGEX`] is emulated).
pub fn variable_options(
    prom: &str,
    var: &Value,
    query: &str,
    vars: &BTreeMap<&str, String>,
) -> Result<Vec<(String, String)>, String> {
    if let Some(expr) = parse_query_result(query) {
        assert_eq!(
            var["regex"], NS_REGEX,
            "${}: only the namespace regex is emulated",
            var["name"]
        );
        let series = prom_query(prom, &substitute(&expr, vars))?;
        return Ok(series
            .iter()
            .filter_map(|s| apply_ns_regex(&query_result_line(s)))
            .collect());
    }
    let (selector, label) = parse_label_values(query);
    let mut url = format!("/api/v1/label/{label}/values");
    if let Some(sel) = &selector {
        url.push_str(&format!("?match[]={}", encode(&substitute(sel, vars))));
    }
    match prom_api(prom, &url)? {
        Value::Array(a) => Ok(a
            .iter()
            .map(|x| {
                let x = x.as_str().unwrap().to_string();
                (x.clone(), x)
            })
            .collect()),
        other => Err(format!("{url}: {other}")),
    }
}

/// Grafana's `percentencode` format: `encodeURIComponent`, then `!'()*`
/// too, so that only `A-Z a-z 0-9 - _ . ~` stay as they are; every other
/// character is its UTF-8 bytes as `%XX`.
pub fn percentencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A link URL as Grafana interpolates it for one table row: `${name:fmt}`
/// is the dashboard variable `name` (from `vars`), `${__data.fields.X:fmt}`
/// the row's field X (from `fields`; a field the frame lacks, as a label no
/// series of the table has, is empty since Grafana 10), `${__url_time_range}`
/// the time range. Formats: `raw` (as is) and `percentencode`; a value
/// without a format panics here, so that every link states how it escapes.
pub fn interpolate_link(
    url: &str,
    vars: &BTreeMap<&str, String>,
    fields: &BTreeMap<&str, String>,
) -> String {
    let mut out = String::new();
    let mut rest = url;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .unwrap_or_else(|| panic!("unclosed ${{ in {url}"));
        let inner = &rest[start + 2..start + end];
        rest = &rest[start + end + 1..];
        if inner == "__url_time_range" {
            out.push_str("from=now-6h&to=now");
            continue;
        }
        let (name, format) = inner
            .split_once(':')
            .unwrap_or_else(|| panic!("${{{inner}}} without a format in {url}"));
        let value = match name.strip_prefix("__data.fields.") {
            Some(field) => fields.get(field).cloned().unwrap_or_default(),
            None => vars
                .get(name)
                .cloned()
                .unwrap_or_else(|| panic!("no variable {name} for {url}")),
        };
        match format {
            "raw" => out.push_str(&value),
            "percentencode" => out.push_str(&percentencode(&value)),
            other => panic!("format {other} is not emulated ({url})"),
        }
    }
    out.push_str(rest);
    out
}

/// The query of a URL as the exporter's `/images?...` reads it (as any
/// query string): `&`-separated `key=value` pairs, `+` a space, then
/// percent-decoded as UTF-8.
pub fn query_pairs(url: &str) -> Vec<(String, String)> {
    let decode = |s: &str| -> String {
        let s = s.replace('+', " ");
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}
