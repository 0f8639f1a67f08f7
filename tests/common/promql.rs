//! Just enough PromQL and Grafana templating for the tests: the metric names
//! an expression uses, `label_values()` variable queries, and substitution
//! of dashboard variables.

use std::collections::{BTreeMap, BTreeSet};

pub const PROMQL_WORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
];
pub const PROMQL_LIST_WORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Index just past the string literal that starts at `i`.
pub fn skip_string(c: &[char], mut i: usize) -> usize {
    let q = c[i];
    i += 1;
    while i < c.len() && c[i] != q {
        if c[i] == '\\' && q != '`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// Index of the bracket closing the one at `i` (strings skipped).
pub fn closing(c: &[char], i: usize) -> usize {
    let (open, close) = (
        c[i],
        match c[i] {
            '(' => ')',
            '{' => '}',
            _ => ']',
        },
    );
    let mut depth = 0;
    let mut j = i;
    while j < c.len() {
        match c[j] {
            '"' | '\'' | '`' => {
                j = skip_string(c, j);
                continue;
            }
            x if x == open => depth += 1,
            x if x == close => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
        j += 1;
    }
    panic!("unbalanced {open} in {}", c.iter().collect::<String>());
}

pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let c: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut list_follows = false;
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '#' => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '"' | '\'' | '`' => i = skip_string(&c, i),
            '{' => {
                let end = closing(&c, i);
                let body: String = c[i + 1..end].iter().collect();
                // {__name__=~"a|b"} selects metrics too.
                if let Some(rest) = body.trim_start().strip_prefix("__name__") {
                    let value = rest.split('"').nth(1).unwrap_or_default();
                    names.extend(value.split('|').map(str::to_string));
                }
                i = end + 1;
            }
            '[' => i = closing(&c, i) + 1,
            '(' if list_follows => {
                i = closing(&c, i) + 1;
                list_follows = false;
            }
            x if x.is_ascii_alphabetic() || x == '_' || x == ':' => {
                let start = i;
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == ':') {
                    i += 1;
                }
                let word: String = c[start..i].iter().collect();
                let next = c[i..].iter().find(|x| !x.is_whitespace());
                if PROMQL_LIST_WORDS.contains(&word.as_str()) {
                    list_follows = true;
                } else if next != Some(&'(') && !PROMQL_WORDS.contains(&word.as_str()) {
                    names.insert(word);
                }
            }
            x if x.is_ascii_digit() || x == '.' => {
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// `label_values(selector, label)` or `label_values(label)`.
pub fn parse_label_values(q: &str) -> (Option<String>, String) {
    let q = q.trim();
    let inner = q
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("only label_values() variable queries are supported: {q}"));
    let c: Vec<char> = inner.chars().collect();
    let mut split = None;
    let mut i = 0;
    while i < c.len() {
        match c[i] {
            '"' | '\'' | '`' => {
                i = skip_string(&c, i);
                continue;
            }
            '{' | '(' | '[' => {
                i = closing(&c, i) + 1;
                continue;
            }
            ',' => split = Some(i),
            _ => {}
        }
        i += 1;
    }
    match split {
        Some(s) => (
            Some(c[..s].iter().collect::<String>().trim().to_string()),
            c[s + 1..].iter().collect::<String>().trim().to_string(),
        ),
        None => (None, inner.trim().to_string()),
    }
}

/// `query_result(expr)`: the PromQL expression.
pub fn parse_query_result(q: &str) -> Option<String> {
    let inner = q.trim().strip_prefix("query_result(")?.strip_suffix(')')?;
    Some(inner.trim().to_string())
}

/// The PromQL of a query variable, for the metric names it uses: the
/// selector of `label_values(selector, label)`, the expression of
/// `query_result(expr)`.
pub fn variable_promql(q: &str) -> String {
    match parse_query_result(q) {
        Some(expr) => expr,
        None => parse_label_values(q).0.unwrap_or_default(),
    }
}

/// Substitutes Grafana variables (`$x`, `${x}`, `${x:fmt}`, `[[x]]`); panics on
/// a variable it does not know, so a typo in a dashboard fails the test.
/// `$1` and other names starting with a digit are left alone, as Grafana
/// leaves them (label_replace's capture references).
pub fn substitute(expr: &str, vars: &BTreeMap<&str, String>) -> String {
    let c: Vec<char> = expr.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let is_name = |x: char| x.is_ascii_alphanumeric() || x == '_';
    let lookup = |name: &str| -> String {
        vars.get(name)
            .cloned()
            .unwrap_or_else(|| panic!("unknown variable ${name} in {expr}"))
    };
    while i < c.len() {
        if c[i] == '$' && i + 1 < c.len() && c[i + 1] == '{' {
            let end = i + c[i..].iter().position(|&x| x == '}').expect("unclosed ${");
            let inner: String = c[i + 2..end].iter().collect();
            out.push_str(&lookup(inner.split(':').next().unwrap()));
            i = end + 1;
        } else if c[i] == '$' && i + 1 < c.len() && c[i + 1].is_ascii_digit() {
            out.push(c[i]);
            i += 1;
        } else if c[i] == '$' && i + 1 < c.len() && is_name(c[i + 1]) {
            let start = i + 1;
            i = start;
            while i < c.len() && is_name(c[i]) {
                i += 1;
            }
            out.push_str(&lookup(&c[start..i].iter().collect::<String>()));
        } else if c[i] == '[' && i + 1 < c.len() && c[i + 1] == '[' {
            let end = i + c[i..].iter().position(|&x| x == ']').expect("unclosed [[");
            out.push_str(&lookup(&c[i + 2..end].iter().collect::<String>()));
            i = end + 2;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}
