//! The HTML pages in a real browser: headless chromium driven over WebDriver
//! (chromedriver, Debian's chromium-driver) against the exporter on the
//! seeded test cluster, after `scripts/seed.py ... web` (scripts/test.sh runs
//! the seed, then this test, after the other integration tests). The seed's
//! record, STATE/web.json, names what it made.
//!
//! Pages: the landing page (pools, orphans, the most-cloned snapshots; an
//! orphan's link followed by a click), the orphan's image page (the watcher
//! is ORPHAN, each fix's commands in a `pre` with a copy button holding the
//! same text, the button really copies), the Glance image with 500 clones
//! (the clone tree draws and marks every image that needs action, the rest
//! summarised per pool with counts adding up), images whose names hold
//! markup, quotes and unicode (shown literally, no script of theirs runs),
//! /orphans and a 404. Every page: no CSP violation, no console error, each
//! image link answers 200. A full-page PNG of each goes to
//! target/browser-screenshots/ (printed).
//!
//! Without chromium/chromedriver the test fails under CI (`CI=true`) and
//! otherwise says how to install them and passes vacuously.

mod common;

use common::http::{encode, http_get, raw_request};
use common::webdriver::{Chromedriver, Session, free_port};
use common::{BIN, EXPORTER_USER, Exporter, exporter_conf, repo, state_dir};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The Content-Security-Policy every page sends (issue 16 contract).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What one run needs: the browser, the exporter's URL, the seed's record.
struct Run<'a> {
    /// The chromium session.
    s: Session<'a>,
    /// The exporter's external URL (`--web.external-url`), no trailing slash.
    base: String,
    /// The exporter's `host:port`.
    addr: String,
    /// Where the screenshots go.
    shots: PathBuf,
    /// STATE/web.json.
    web: Value,
}

#[test]
fn pages_in_headless_chromium() {
    let web = web_seed();
    let driver = match Chromedriver::start() {
        Ok(d) => d,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("the browser test needs chromium and chromedriver under CI: {why}")
        }
        Err(why) => {
            eprintln!(
                "SKIPPED the browser test: {why}. Install chromium and chromium-driver \
                 (scripts/install-deps.sh) to run it."
            );
            return;
        }
    };
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let exporter = start_exporter(port, &base);
    let shots = repo().join("target/browser-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    println!("screenshots: {}", shots.display());
    let t = Instant::now();
    let r = Run {
        s: driver.session(1280),
        base,
        addr: exporter.addr.clone(),
        shots,
        web,
    };
    r.s.cdp(
        "Browser.grantPermissions",
        json!({"origin": r.base, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]}),
    );
    content_security_policy(&r);
    landing(&r);
    orphan_image(&r);
    glance_tree(&r);
    odd_names(&r);
    orphans(&r);
    url_forms(&r);
    not_found(&r);
    println!(
        "browser test: 12 pages in {:.1} s; screenshots in {}",
        t.elapsed().as_secs_f64(),
        r.shots.display()
    );
    drop(exporter);
}

/// STATE/web.json, or a panic saying how to make it.
fn web_seed() -> Value {
    let path = state_dir().join("web.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): seed the cluster with `scripts/seed.py --conf CONF \
             --state-dir STATE web` after `test` (scripts/test.sh does)",
            path.display()
        )
    });
    serde_json::from_str(&text).expect("web.json is JSON")
}

/// The exporter as the read-only user on `port`, once it has sampled.
fn start_exporter(port: u16, base: &str) -> Exporter {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--ceph.config",
        &exporter_conf(),
        "--ceph.user",
        EXPORTER_USER,
    ])
    .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
    .args(["--web.external-url", base])
    .args(["--sample.interval", "10s"]);
    let exporter = Exporter::start_command(cmd);
    let body = exporter.wait_metrics(Duration::from_secs(60), |b| {
        b.lines().any(|l| l == "ceph_rbd_exporter_up 1")
    });
    let info = format!("ceph_rbd_exporter_web_info{{external_url=\"{base}\"}} 1");
    assert!(body.lines().any(|l| l == info), "no `{info}` in /metrics");
    exporter
}

impl Run<'_> {
    /// `/images/POOL/IMAGE` of a default-namespace spec `pool/image` (the
    /// image name may hold `/`).
    fn image_url(&self, spec: &str) -> String {
        let (pool, image) = spec.split_once('/').unwrap();
        format!("{}/images/{}/{}", self.base, encode(pool), encode(image))
    }

    /// Loads `url`, checks what every page must hold, and saves a screenshot.
    fn open(&self, url: &str, shot: &str) {
        self.s.goto(url);
        self.settle(shot);
    }

    /// The checks of [`Run::open`] on the page now shown.
    fn settle(&self, shot: &str) {
        self.s.screenshot(&self.shots.join(format!("{shot}.png")));
        let url = self.s.current_url();
        let v = self.s.csp_violations();
        assert!(v.is_empty(), "{url}: CSP violations: {v:?}");
        let pwned = self.s.js(
            "return [typeof window.__pwned, document.querySelectorAll('script:not([src])').length, \
             document.querySelectorAll('[onerror],[onload],img,iframe,object,embed').length, \
             Array.from(document.scripts).map(s => s.getAttribute('src'))];",
            json!([]),
        );
        assert_eq!(
            pwned[0], "undefined",
            "{url}: a script of an image name ran"
        );
        assert_eq!(pwned[1], 0, "{url}: an inline <script> is in the DOM");
        assert_eq!(
            pwned[2], 0,
            "{url}: an element from an image name is in the DOM"
        );
        let scripts: Vec<String> = serde_json::from_value(pwned[3].clone()).unwrap();
        assert!(
            scripts.iter().all(|s| s.ends_with("/assets/pages.js")),
            "{url}: scripts {scripts:?}"
        );
        let errors: Vec<Value> = self
            .s
            .console()
            .into_iter()
            .filter(|e| e["level"] == "SEVERE")
            .filter(|e| !e["message"].as_str().unwrap_or("").contains("favicon.ico"))
            .collect();
        assert!(
            errors.is_empty() || shot.contains("not-found"),
            "{url}: console errors: {errors:?}"
        );
    }

    /// The text of `selector` (textContent, exactly).
    fn text_of(&self, selector: &str) -> String {
        let v = self.s.js(
            "var e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            json!([selector]),
        );
        v.as_str()
            .unwrap_or_else(|| panic!("no {selector} on {}", self.s.current_url()))
            .to_string()
    }

    /// The `href`s (resolved) of every `a.image-link` inside `scope`; each
    /// must be under the external URL and answer 200.
    fn image_links(&self, scope: &str) -> Vec<(String, String)> {
        let v = self.s.js(
            "return Array.from(document.querySelectorAll(arguments[0] + ' a.image-link'))\
             .map(a => [a.textContent, a.href]);",
            json!([scope]),
        );
        let links: Vec<(String, String)> = serde_json::from_value(v).unwrap();
        let mut checked = BTreeSet::new();
        for (text, href) in &links {
            let path = href
                .strip_prefix(&self.base)
                .unwrap_or_else(|| panic!("link {href} ({text}) is not under {}", self.base));
            if checked.insert(path.to_string()) && checked.len() <= 60 {
                let (status, _) = http_get(&self.addr, path);
                assert_eq!(status, 200, "link {href} ({text:?}) answers {status}");
            }
        }
        links
    }

    /// The JSON twin of a page.
    fn json_of(&self, url: &str) -> Value {
        let path = url.strip_prefix(&self.base).unwrap();
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, body) = http_get(&self.addr, &format!("{path}{sep}format=json"));
        assert_eq!(status, 200, "{path}?format=json: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }
}

/// The header every page sends, and a plain-text 404's content type.
fn content_security_policy(r: &Run) {
    for path in ["/", "/orphans", "/images/volumes/no-such-image-web16"] {
        let head = raw_head(&r.addr, path);
        let csp = header(&head, "content-security-policy");
        assert_eq!(csp.as_deref(), Some(CSP), "{path}: {head}");
    }
    let head = raw_head(&r.addr, "/images/volumes/no-such-image-web16");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let ct = header(&head, "content-type").unwrap_or_default();
    assert!(ct.starts_with("text/plain"), "404 content type {ct:?}");
}

fn raw_head(addr: &str, path: &str) -> String {
    let buf = raw_request(addr, "GET", path, addr, Duration::from_secs(20));
    let text = String::from_utf8_lossy(&buf).to_string();
    text.split("\r\n\r\n").next().unwrap().to_string()
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// `/`: the pools table, the orphans (one of them followed by a click),
/// the most-cloned snapshot.
fn landing(r: &Run) {
    r.open(&format!("{}/", r.base), "01-landing");
    let pools: Vec<String> = serde_json::from_value(r.s.js(
        "return Array.from(document.querySelectorAll('table#pools tr'))\
         .filter(tr => tr.querySelector('td')).map(tr => tr.querySelector('td').textContent);",
        json!([]),
    ))
    .unwrap();
    for p in ["images", "volumes", "vms", "k8s", "k8s/tenant-a", "scratch"] {
        assert!(
            pools.iter().any(|x| x == p),
            "pool {p} not in table#pools: {pools:?}"
        );
    }
    let orphan = r.web["orphan"]["spec"].as_str().unwrap();
    let links = r.image_links("section#orphans tr.orphan");
    // The same orphans as `explain --orphans` (the JSON twin of /orphans),
    // the seed's among them.
    let listing = r.json_of(&format!("{}/orphans", r.base));
    let want: BTreeSet<&str> = listing["orphaned_watchers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["image"].as_str().unwrap())
        .collect();
    let got: BTreeSet<&str> = links.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(got, want, "the landing page's orphans");
    assert!(want.contains(orphan), "{orphan} is not among the orphans");
    let pinned = r.image_links("section#pinned");
    let glance = format!("{}@snap", r.web["glance"]["spec"].as_str().unwrap());
    assert_eq!(
        pinned.first().map(|p| p.0.as_str()),
        Some(glance.as_str()),
        "the Glance image with 500 clones is not first under section#pinned"
    );
    // Follow the orphan's link as a user would.
    let i = links.iter().position(|(t, _)| t == orphan).unwrap();
    let a = &r.s.find_all("section#orphans tr.orphan a.image-link")[i];
    r.s.click(a);
    assert_eq!(r.s.current_url(), links[i].1);
    assert_eq!(
        r.text_of("h1#image"),
        orphan,
        "the orphan's link led elsewhere"
    );
}

/// The orphan's page: its watcher is ORPHAN, its lock live, every fix's
/// commands in a `pre` with a copy button that copies exactly them.
fn orphan_image(r: &Run) {
    let spec = r.web["orphan"]["spec"].as_str().unwrap();
    let url = r.image_url(spec);
    r.open(&url, "02-orphan-image");
    assert_eq!(r.text_of("h1#image"), spec);
    let verdicts = cells(r, "table#watchers tr.watcher td.verdict");
    assert_eq!(verdicts.len(), 1, "watchers: {verdicts:?}");
    assert!(
        verdicts[0].starts_with("ORPHAN") && verdicts[0].contains("image_deleted"),
        "verdict {:?}",
        verdicts[0]
    );
    let held = cells(r, "table#watchers tr.watcher td.held");
    assert!(!held[0].trim().is_empty(), "no held time");
    assert_eq!(cells(r, "table#locks tr.lock td.stale"), ["live"]);
    let explained = r.json_of(&url);
    let want: Vec<String> = explained["fixes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let c: Vec<String> = serde_json::from_value(f["commands"].clone()).unwrap();
            c.join("\n")
        })
        .collect();
    let fixes = fix_blocks(r, "ol#fixes li.fix");
    assert_eq!(
        fixes.len(),
        want.len(),
        "li.fix count != the JSON twin's fixes"
    );
    for ((pre, copy), want) in fixes.iter().zip(&want) {
        assert_eq!(pre, want, "pre.commands differs from explain's commands");
        assert_eq!(
            copy, want,
            "button.copy data-copy differs from the commands"
        );
    }
    assert!(
        want.iter().any(|c| c.contains("ceph osd blocklist add")),
        "no blocklist step among the fixes: {want:?}"
    );
    copy_button(r, &want[0]);
}

/// The text of every element matching `selector`.
fn cells(r: &Run, selector: &str) -> Vec<String> {
    serde_json::from_value(r.s.js(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent);",
        json!([selector]),
    ))
    .unwrap()
}

/// (`pre.commands` text, `button.copy` data-copy) of each item of `selector`.
fn fix_blocks(r: &Run, selector: &str) -> Vec<(String, String)> {
    let v = r.s.js(
        "return Array.from(document.querySelectorAll(arguments[0])).map(li => {\
           var pre = li.querySelector('pre.commands'), b = li.querySelector('button.copy');\
           return [pre ? pre.textContent : null, b ? b.getAttribute('data-copy') : null]; });",
        json!([selector]),
    );
    let rows: Vec<(Option<String>, Option<String>)> = serde_json::from_value(v).unwrap();
    rows.into_iter()
        .map(|(p, c)| {
            (
                p.expect("an item without pre.commands"),
                c.expect("an item without button.copy[data-copy]"),
            )
        })
        .collect()
}

/// Clicks the first copy button: it says so, and the clipboard holds `want`.
fn copy_button(r: &Run, want: &str) {
    let b = r.s.find("ol#fixes li.fix button.copy");
    r.s.click(&b);
    let deadline = Instant::now() + Duration::from_secs(5);
    while r
        .s
        .attr(&b, "class")
        .unwrap_or_default()
        .split(' ')
        .all(|c| c != "copied")
    {
        assert!(
            Instant::now() < deadline,
            "the copy button never said Copied (class {:?}, text {:?})",
            r.s.attr(&b, "class"),
            r.s.text(&b)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = r.s.js_async(
        "var done = arguments[arguments.length - 1];\
         navigator.clipboard.readText().then(done, e => done('ERROR ' + e));",
    );
    assert_eq!(got.as_str(), Some(want), "the clipboard after Copy");
}

/// The Glance image with 500 clones: the tree draws every image needing
/// action, marked; per pool, the drawn children and the summary add up.
fn glance_tree(r: &Run) {
    let g = &r.web["glance"];
    let spec = g["spec"].as_str().unwrap();
    r.open(&r.image_url(spec), "03-glance-500-clones");
    assert_eq!(r.text_of("h1#image"), spec);
    let nodes: Vec<BTreeMap<String, Value>> = serde_json::from_value(r.s.js(
        "var svg = document.querySelector('svg#clone-tree'); if (!svg) return null;\
         var box = svg.getBoundingClientRect(); if (box.width < 50 || box.height < 50) return [];\
         return Array.from(svg.querySelectorAll('g.node')).map(g => ({\
           spec: g.getAttribute('data-spec'), pool: g.getAttribute('data-pool'),\
           depth: g.getAttribute('data-depth'), action: g.getAttribute('data-action'),\
           marked: g.classList.contains('action'), summary: g.classList.contains('summary'),\
           count: g.getAttribute('data-count'), action_count: g.getAttribute('data-action-count'),\
           shown: g.getBoundingClientRect().height > 0 }));",
        json!([]),
    ))
    .expect("no svg#clone-tree on the Glance image's page");
    assert!(
        !nodes.is_empty(),
        "svg#clone-tree is empty or not displayed"
    );
    let spec_of = |n: &BTreeMap<String, Value>| n["spec"].as_str().unwrap_or("").to_string();
    for (want, reasons) in r.web["needs_action"].as_object().unwrap() {
        let n = nodes
            .iter()
            .find(|n| spec_of(n) == *want)
            .unwrap_or_else(|| {
                panic!("{want} ({reasons}) needs action but the tree does not draw it")
            });
        assert!(
            n["marked"] == true && n["action"] == "flatten" && n["shown"] == true,
            "{want} ({reasons}) is drawn but not marked: {n:?}"
        );
    }
    for n in nodes.iter().filter(|n| n["summary"] == false) {
        assert_eq!(
            n["marked"] == true,
            n["action"] != "none",
            "class action and data-action disagree: {n:?}"
        );
    }
    for (pool, children) in g["children"].as_object().unwrap() {
        let drawn = nodes
            .iter()
            .filter(|n| n["summary"] == false && n["depth"] == "1" && n["pool"] == **pool)
            .count();
        let summarised: u64 = nodes
            .iter()
            .filter(|n| n["summary"] == true && n["pool"] == **pool)
            .map(|n| n["count"].as_str().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(
            drawn as u64 + summarised,
            children.as_u64().unwrap(),
            "pool {pool}: {drawn} drawn + {summarised} summarised"
        );
        assert!(
            summarised > 0,
            "pool {pool}: nothing summarised of {children}"
        );
    }
    let hidden_action: u64 = nodes
        .iter()
        .filter(|n| n["summary"] == true)
        .map(|n| n["action_count"].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        hidden_action, 0,
        "images needing action were summarised, not drawn"
    );
}

/// The images whose names hold markup, quotes and unicode: shown literally,
/// by path (`/` as %2F) and by the query form (`+` for a space).
fn odd_names(r: &Run) {
    let names = &r.web["names"];
    let script = names["script"].as_str().unwrap();
    r.open(&r.image_url(script), "04-name-script");
    assert_eq!(r.text_of("h1#image"), script);
    let title: String =
        serde_json::from_value(r.s.js("return document.title;", json!([]))).unwrap();
    assert!(
        title.contains(script.split_once('/').unwrap().1),
        "title {title:?}"
    );

    let unicode = names["unicode"].as_str().unwrap();
    let quoted = names["quoted"].as_str().unwrap();
    r.open(&r.image_url(unicode), "05-name-unicode");
    assert_eq!(r.text_of("h1#image"), unicode);
    let snap = names["unicode_snapshot"].as_str().unwrap();
    assert!(
        r.text_of("section#snapshots").contains(snap),
        "snapshot {snap:?} not shown literally"
    );
    let specs: Vec<Option<String>> = serde_json::from_value(r.s.js(
        "return Array.from(document.querySelectorAll('svg#clone-tree g.node'))\
         .map(g => g.getAttribute('data-spec'));",
        json!([]),
    ))
    .unwrap();
    assert!(
        specs.iter().any(|s| s.as_deref() == Some(quoted)),
        "{quoted} not in the tree: {specs:?}"
    );

    let (pool, image) = quoted.split_once('/').unwrap();
    let query = format!(
        "{}/images?pool={pool}&image={}",
        r.base,
        encode(image).replace("%20", "+")
    );
    r.open(&query, "06-name-quoted");
    assert_eq!(r.text_of("h1#image"), quoted);
    let parents = r.text_of("ol#parents");
    assert!(
        parents.contains(&format!("{unicode}@{snap}")),
        "ol#parents {parents:?}"
    );
}

/// `/orphans`: as many rows as `explain --orphans` (its JSON twin), each
/// linked, each with its commands and a copy button holding them.
fn orphans(r: &Run) {
    let url = format!("{}/orphans", r.base);
    r.open(&url, "07-orphans");
    let listing = r.json_of(&url);
    let watchers = listing["orphaned_watchers"].as_array().unwrap();
    let locks = listing["stale_locks"].as_array().unwrap();
    let rows = fix_blocks(r, "table#orphaned-watchers tr.orphan");
    assert_eq!(
        rows.len(),
        watchers.len(),
        "tr.orphan rows != orphaned watchers"
    );
    let lrows = fix_blocks(r, "table#stale-locks tr.stale-lock");
    assert_eq!(
        lrows.len(),
        locks.len(),
        "tr.stale-lock rows != stale locks"
    );
    for (pre, copy) in rows.iter().chain(&lrows) {
        assert_eq!(pre, copy, "data-copy differs from pre.commands");
        assert!(!pre.is_empty());
    }
    let links = r.image_links("table#orphaned-watchers tr.orphan");
    assert_eq!(links.len(), watchers.len(), "a row without its image link");
    let orphan = r.web["orphan"]["spec"].as_str().unwrap();
    assert!(
        links.iter().any(|(t, _)| t == orphan),
        "{orphan} not on /orphans"
    );
    assert_eq!(
        r.image_links("table#stale-locks tr.stale-lock").len(),
        locks.len()
    );
}

/// The other URL forms of the contract: an empty namespace segment, an RBD
/// namespace, a trashed image by id.
fn url_forms(r: &Run) {
    let script = r.web["names"]["script"].as_str().unwrap();
    let (pool, image) = script.split_once('/').unwrap();
    r.open(
        &format!("{}/images/{pool}//{}", r.base, encode(image)),
        "08-empty-namespace",
    );
    assert_eq!(r.text_of("h1#image"), script);
    r.open(
        &format!("{}/images/k8s/tenant-a/csi-vol-0002", r.base),
        "09-namespace",
    );
    assert_eq!(r.text_of("h1#image"), "k8s/tenant-a/csi-vol-0002");
    let trashed = &r.web["trashed_child_parent"];
    let id = trashed["id"].as_str().unwrap();
    r.open(
        &format!("{}/image-ids/volumes/{id}", r.base),
        "10-trashed-by-id",
    );
    assert_eq!(r.text_of("h1#image"), trashed["spec"].as_str().unwrap());
    assert_eq!(r.text_of("#in-trash"), "IN TRASH");
    let tree = r.s.js(
        "return Array.from(document.querySelectorAll('svg#clone-tree g.node.action'))\
         .map(g => g.getAttribute('data-spec'));",
        json!([]),
    );
    assert_eq!(tree.as_array().map(Vec::len), Some(1), "its clone: {tree}");
}

/// An unknown image and an unknown pool: a plain-text 404 naming it.
fn not_found(r: &Run) {
    for (path, name, shot) in [
        (
            "/images/volumes/no-such-image-web16",
            "no-such-image-web16",
            "11-not-found-image",
        ),
        (
            "/images/no-such-pool-web16/x",
            "no-such-pool-web16",
            "12-not-found-pool",
        ),
    ] {
        r.open(&format!("{}{path}", r.base), shot);
        let v = r.s.js(
            "return [performance.getEntriesByType('navigation')[0].responseStatus, \
             document.body.innerText, document.contentType];",
            json!([]),
        );
        assert_eq!(v[0], 404, "{path}");
        assert!(v[1].as_str().unwrap().contains(name), "{path}: {v}");
        assert_eq!(v[2], "text/plain", "{path}");
    }
}
