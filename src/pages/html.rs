//! The pieces every page is made of: escaping, links, durations, the page
//! frame and the copyable command blocks.

use super::PageConfig;
use crate::explain::Fix;
use std::fmt::Write as _;

/// `s` safe inside HTML text and inside a double- or single-quoted
/// attribute: every cluster-provided string goes through here.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` as one percent-encoded URL path segment or query value: everything
/// but RFC 3986's unreserved characters is encoded (UTF-8 bytes).
pub fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The page URL of an image, under `prefix`: by name, or by id for a
/// trashed image (whose name another image may have taken).
pub fn image_url(
    prefix: &str,
    pool: &str,
    namespace: &str,
    name: &str,
    id: Option<&str>,
) -> String {
    // Browsers collapse `.` and `..` segments, even as `%2E`: the query
    // form reaches such names.
    let dots = |s: &str| s == "." || s == "..";
    if [pool, namespace, name, id.unwrap_or("")]
        .into_iter()
        .any(dots)
    {
        let (k, v) = match id {
            Some(id) => ("id", id),
            None => ("image", name),
        };
        return format!(
            "{prefix}/images?pool={}&namespace={}&{k}={}",
            pct(pool),
            pct(namespace),
            pct(v)
        );
    }
    let ns = if namespace.is_empty() {
        String::new()
    } else {
        format!("/{}", pct(namespace))
    };
    match id {
        Some(id) => format!("{prefix}/image-ids/{}{ns}/{}", pct(pool), pct(id)),
        None => format!("{prefix}/images/{}{ns}/{}", pct(pool), pct(name)),
    }
}

/// A link to an image's page showing `text`.
pub fn image_link(url: &str, text: &str) -> String {
    format!(
        "<a class=\"image-link\" href=\"{}\">{}</a>",
        esc(url),
        esc(text)
    )
}

/// A duration in seconds as people say it: `45 s`, `12 min`, `3 h 20 min`,
/// `4 d 6 h`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=3599 => format!("{} min", s / 60),
        3600..=172_799 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(unix: f64) -> String {
    let secs = unix.max(0.0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// One fix step: why, the commands exactly as `explain` prints them, and
/// a button that copies them. Nothing is ever run.
pub fn fix_item(f: &Fix) -> String {
    let text = f.commands.join("\n");
    format!(
        "<li class=\"fix\"><p class=\"why\">{}</p>{}</li>\n",
        esc(&f.why),
        commands_block(&text)
    )
}

/// Blocks longer than this many lines scroll inside a fixed height (a
/// snapshot with 500 clones has 500 `rbd flatten` lines).
const LONG_BLOCK: usize = 15;

/// Commands in a `pre` with a copy button holding the same text. A long
/// block scrolls (all its lines stay in the page and in the copy).
pub fn commands_block(text: &str) -> String {
    let lines = text.lines().count();
    let (class, note) = match lines > LONG_BLOCK {
        true => (
            "commands long",
            format!(
                "<p class=\"note\">{lines} lines: scroll the block, or Copy takes them all.</p>"
            ),
        ),
        false => ("commands", String::new()),
    };
    format!(
        "<div class=\"cmd\"><pre class=\"{class}\">{t}</pre><button type=\"button\" class=\"copy\" data-copy=\"{t}\">Copy</button></div>{note}",
        t = esc(text)
    )
}

/// A whole HTML page around `body`: the stylesheet and script from
/// `/assets/` (the Content-Security-Policy allows nothing else), the
/// navigation, and how old the data is.
pub fn page(config: &PageConfig, title: &str, data_age: &str, body: &str) -> String {
    let p = esc(&config.prefix);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · Ceph RBD exporter</title>\
<link rel=\"stylesheet\" href=\"{p}/assets/pages.css\"><script src=\"{p}/assets/pages.js\" defer></script></head>\n\
<body><nav><a href=\"{p}/\">Ceph RBD exporter</a> <a href=\"{p}/orphans\">Orphans</a> \
<a href=\"{p}{m}\">Metrics</a> <span class=\"age\">{age}</span></nav>\n<main>\n{body}</main>\n\
<footer>Read-only: this exporter never runs a command. Every command on this page is for you to check and run.</footer>\n\
</body></html>\n",
        title = esc(title),
        m = esc(&config.metrics_path),
        age = esc(data_age),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>a&b</script> \"x\" 'y' ünï"),
            "&lt;script&gt;a&amp;b&lt;/script&gt; &quot;x&quot; &#39;y&#39; ünï"
        );
    }

    #[test]
    fn percent_encodes_everything_but_unreserved() {
        assert_eq!(pct("a b/c&d?é"), "a%20b%2Fc%26d%3F%C3%A9");
        assert_eq!(pct("volume-1.deleted_x~"), "volume-1.deleted_x~");
        assert_eq!(
            image_url("/p", "rbd", "", "a/b", None),
            "/p/images/rbd/a%2Fb"
        );
        assert_eq!(
            image_url("", "rbd", "ns", "x", Some("10ab")),
            "/image-ids/rbd/ns/10ab"
        );
        assert_eq!(
            image_url("", "rbd", "", "..", None),
            "/images?pool=rbd&namespace=&image=.."
        );
    }

    #[test]
    fn durations_and_dates() {
        assert_eq!(duration(-3.0), "0 s");
        assert_eq!(duration(119.9), "119 s");
        assert_eq!(duration(3599.0), "59 min");
        assert_eq!(duration(3.0 * 3600.0 + 1260.0), "3 h 21 min");
        assert_eq!(duration(4.0 * 86_400.0 + 7200.0), "4 d 2 h");
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_040_000.0), "2026-11-30 12:00:00 UTC");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn long_blocks_scroll_with_every_line_kept() {
        let text: Vec<String> = (0..500)
            .map(|i| format!("rbd flatten volumes/v{i}"))
            .collect();
        let b = commands_block(&text.join("\n"));
        assert!(b.contains("<pre class=\"commands long\">rbd flatten volumes/v0\n"));
        assert!(b.contains("rbd flatten volumes/v499</pre>"));
        assert!(b.contains("500 lines: scroll the block"));
        assert!(!commands_block("rbd rm p/i").contains("long"));
    }

    #[test]
    fn copy_button_holds_the_commands_escaped() {
        let b = commands_block("rbd rm 'p/<x>'\nrbd ls");
        assert!(b.contains("data-copy=\"rbd rm &#39;p/&lt;x&gt;&#39;\nrbd ls\""));
        assert!(b.contains("<pre class=\"commands\">rbd rm &#39;p/&lt;x&gt;&#39;\nrbd ls</pre>"));
    }
}
