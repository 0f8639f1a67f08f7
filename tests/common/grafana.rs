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
