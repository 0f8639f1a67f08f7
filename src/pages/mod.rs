//! The exporter's own web pages, from the last sample: nothing is ever
//! fetched from the cluster for a page. The landing page (`/`), one page
//! per image (`/images/POOL[/NAMESPACE]/IMAGE`, `/image-ids/POOL[/NAMESPACE]/ID`
//! for trashed images, or `/images?pool=P&namespace=N&image=I|id=ID`) and
//! `/orphans`, each image and orphan page with a JSON twin (`?format=json`
//! or `Accept: application/json`) that is `explain --output json`'s. Text
//! and JSON come from one explanation ([`crate::explain`], built on the
//! view `dump` shares). Pure: the server ([`crate::server`]) turns a
//! [`Reply`] into HTTP.

mod html;
mod image;
mod landing;
mod orphans;
mod tree;

pub use html::esc;

use crate::clock::now_unix;
use crate::cycle::{Analysed, Published};
use crate::explain;
use crate::model::ImageKey;

/// The pages' settings.
#[derive(Debug, Clone, Default)]
pub struct PageConfig {
    /// Path of `--web.external-url` without its trailing `/` (e.g.
    /// `/ceph-rbd` behind a reverse proxy; empty when served at the root):
    /// prefixes every link, and is stripped from requests that carry it.
    pub prefix: String,
    /// `--web.telemetry-path`, linked from every page.
    pub metrics_path: String,
}

/// The links' prefix for an external URL (`--web.external-url`): its path
/// without the trailing `/`; empty without one.
pub fn link_prefix(external_url: Option<&str>) -> String {
    external_url
        .and_then(|u| u.parse::<hyper::Uri>().ok())
        .map(|u| u.path().trim_end_matches('/').to_string())
        .unwrap_or_default()
}

/// What a page request gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// An HTML page.
    Html(String),
    /// A JSON document.
    Json(String),
    /// A file of the pages (stylesheet, script).
    Asset {
        /// Its content type.
        content_type: &'static str,
        /// Its content.
        body: &'static str,
    },
    /// 404, with what was not found.
    NotFound(String),
    /// 400, with what was wrong with the request.
    BadRequest(String),
    /// 503: no sample yet.
    NoSample,
    /// 503, with what could not be read (the image's pool has no good
    /// sample yet).
    Unavailable(String),
}

/// Which image a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// By name (an image outside the trash wins over a trashed one).
    Name {
        /// Pool.
        pool: String,
        /// RBD namespace.
        namespace: String,
        /// Image name.
        name: String,
    },
    /// By id.
    Id {
        /// Pool.
        pool: String,
        /// RBD namespace.
        namespace: String,
        /// Image id.
        id: String,
    },
}

/// The reply to a page request for `path` (with the raw `query`), or
/// `None` when `path` is not a page (the server answers it, or 404s).
/// `accept_json` is true when the request's `Accept` prefers JSON.
pub fn reply(
    path: &str,
    query: Option<&str>,
    accept_json: bool,
    published: &Published,
    config: &PageConfig,
) -> Option<Reply> {
    let path = strip_prefix(path, &config.prefix);
    let params = query.map(parse_query).unwrap_or_default();
    let format = params
        .iter()
        .find(|(k, _)| k == "format")
        .map(|(_, v)| v.as_str());
    let json = match format {
        Some("json") => true,
        Some("html") => false,
        Some(other) => {
            return Some(Reply::BadRequest(format!(
                "unknown format {other:?}: use format=json or format=html"
            )));
        }
        None => accept_json,
    };
    match path {
        "/assets/pages.css" => Some(Reply::Asset {
            content_type: "text/css; charset=utf-8",
            body: include_str!("assets/pages.css"),
        }),
        "/assets/pages.js" => Some(Reply::Asset {
            content_type: "text/javascript; charset=utf-8",
            body: include_str!("assets/pages.js"),
        }),
        "/" => Some(Reply::Html(html::page(
            config,
            "Overview",
            &data_age(published),
            &landing::body(published, config),
        ))),
        "/orphans" => Some(with_sample(published, |a| {
            orphans_reply(a, json, published, config)
        })),
        "/images" => Some(match target_from_query(&params) {
            Ok(t) => with_sample(published, |a| image_reply(a, &t, json, published, config)),
            Err(e) => Reply::BadRequest(e),
        }),
        _ => {
            let t = target_from_path(path)?;
            Some(match t {
                Ok(t) => with_sample(published, |a| image_reply(a, &t, json, published, config)),
                Err(e) => Reply::NotFound(e),
            })
        }
    }
}

/// `path` without the external URL's path prefix, if it has it.
fn strip_prefix<'a>(path: &'a str, prefix: &str) -> &'a str {
    if prefix.is_empty() {
        return path;
    }
    match path.strip_prefix(prefix) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

fn with_sample(published: &Published, f: impl FnOnce(&Analysed) -> Reply) -> Reply {
    match &published.analysed {
        Some(a) => f(a),
        None => Reply::NoSample,
    }
}

/// "Data from the sample finished N ago", for the navigation bar.
fn data_age(published: &Published) -> String {
    match &published.analysed {
        Some(a) => format!(
            "data from the sample finished {} ago",
            html::duration(now_unix() - a.sample.finished_at)
        ),
        None => "no sample yet".into(),
    }
}

fn orphans_reply(a: &Analysed, json: bool, published: &Published, config: &PageConfig) -> Reply {
    let listing = explain::orphans(a);
    if json {
        return Reply::Json(to_json(&listing));
    }
    let body = format!(
        "<h1>Orphaned watchers and stale locks</h1>\n{}",
        orphans::body(&listing, config, None)
    );
    Reply::Html(html::page(config, "Orphans", &data_age(published), &body))
}

fn image_reply(
    a: &Analysed,
    t: &Target,
    json: bool,
    published: &Published,
    config: &PageConfig,
) -> Reply {
    let found = match t {
        Target::Name {
            pool,
            namespace,
            name,
        } => explain::find(a, pool, namespace, name),
        Target::Id {
            pool,
            namespace,
            id,
        } => explain::find_by_id(a, pool, namespace, id),
    };
    let key: ImageKey = match found {
        Ok(k) => k,
        Err(explain::NotFound::Missing(e)) => return Reply::NotFound(format!("{e}\n")),
        Err(explain::NotFound::Unread(e)) => return Reply::Unavailable(format!("{e}\n")),
    };
    let Some(e) = explain::explain_image(a, &key) else {
        return Reply::NotFound("the image vanished from the analysis\n".into());
    };
    if json {
        return Reply::Json(to_json(&e));
    }
    let title = crate::view::image_spec(&e.pool, &e.namespace, &e.image);
    let body = image::body(a, &key, &e, config, now_unix());
    Reply::Html(html::page(config, &title, &data_age(published), &body))
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("explanations serialise");
    s.push('\n');
    s
}

/// The image named by `/images/...` or `/image-ids/...`; `None` when the
/// path is neither, an error when it is one but malformed.
fn target_from_path(path: &str) -> Option<Result<Target, String>> {
    let (by_id, rest) = if let Some(r) = path.strip_prefix("/images/") {
        (false, r)
    } else if let Some(r) = path.strip_prefix("/image-ids/") {
        (true, r)
    } else {
        return None;
    };
    let segments: Option<Vec<String>> = rest.split('/').map(percent_decode).collect();
    let Some(segments) = segments else {
        return Some(Err("the path is not valid percent-encoded UTF-8\n".into()));
    };
    let (pool, namespace, last) = match segments.as_slice() {
        [pool, last] => (pool.clone(), String::new(), last.clone()),
        [pool, ns, last] => (pool.clone(), ns.clone(), last.clone()),
        _ => {
            return Some(Err(
                "use /images/POOL/IMAGE, /images/POOL/NAMESPACE/IMAGE or /image-ids/POOL[/NAMESPACE]/ID (percent-encode a / in a name as %2F)\n"
                    .into(),
            ));
        }
    };
    if pool.is_empty() || last.is_empty() {
        return Some(Err("the pool and the image must not be empty\n".into()));
    }
    Some(Ok(match by_id {
        true => Target::Id {
            pool,
            namespace,
            id: last,
        },
        false => Target::Name {
            pool,
            namespace,
            name: last,
        },
    }))
}

/// The image named by `/images?pool=P&namespace=N&image=I` (or `id=`).
fn target_from_query(params: &[(String, String)]) -> Result<Target, String> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let usage =
        "use /images?pool=POOL&namespace=NAMESPACE&image=IMAGE (or id=ID); namespace may be empty";
    let Some(pool) = get("pool").filter(|p| !p.is_empty()) else {
        return Err(format!("missing pool: {usage}\n"));
    };
    let namespace = get("namespace").unwrap_or_default();
    match (
        get("image").filter(|v| !v.is_empty()),
        get("id").filter(|v| !v.is_empty()),
    ) {
        (Some(name), None) => Ok(Target::Name {
            pool,
            namespace,
            name,
        }),
        (None, Some(id)) => Ok(Target::Id {
            pool,
            namespace,
            id,
        }),
        _ => Err(format!("give exactly one of image and id: {usage}\n")),
    }
}

/// Query parameters, percent-decoded (`+` is a space); a pair that does
/// not decode is dropped.
fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let k = percent_decode(&k.replace('+', " "))?;
            let v = percent_decode(&v.replace('+', " "))?;
            Some((k, v))
        })
        .collect()
}

/// `%XX` decoded; `None` for a malformed escape or bytes that are not
/// UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::fixtures::*;
    use crate::analysis::{Settings, analyse};
    use crate::model::*;
    use std::sync::Arc;

    const NASTY: &str = "<script>window.__pwned=1</script> it's \"q\" ünï";

    /// Pool `images` (1): `NASTY` with a protected snapshot that has 30
    /// children in `volumes` (2); `volume-0.deleted` is watched (an
    /// orphan); `gone.deleted` has 3 children that must be flattened.
    fn published(prefix: &str) -> (Published, PageConfig) {
        let mut base = image("b1", NASTY);
        let mut snap = snapshot(4, "snap", true);
        let mut gone = image("g1", "gone.deleted");
        let mut gsnap = snapshot(5, "s", true);
        let mut volumes = Vec::new();
        for i in 0..30 {
            let id = format!("c{i:02}");
            let mut c = image(&id, &format!("volume-{i}"));
            c.parent = parent(1, "b1", 4);
            if i == 0 {
                c.name = "volume-0.deleted".into();
                c.watchers.push(watcher(4123, "10.0.0.5", 7));
            }
            snap.v2_children.push(ChildRef {
                pool_id: 2,
                namespace: String::new(),
                image_id: id,
            });
            volumes.push(c);
        }
        for i in 0..3 {
            let id = format!("d{i}");
            let mut c = image(&id, &format!("from-gone-{i}"));
            c.parent = parent(1, "g1", 5);
            gsnap.v2_children.push(ChildRef {
                pool_id: 2,
                namespace: String::new(),
                image_id: id,
            });
            volumes.push(c);
        }
        base.snapshots.push(snap);
        gone.snapshots.push(gsnap);
        let s = sample(vec![
            (1, "images", vec![namespace("", vec![base, gone])]),
            (
                2,
                "volumes",
                vec![
                    namespace("", volumes),
                    namespace("t", vec![image("t1", "x")]),
                ],
            ),
        ]);
        let analysis = analyse(&s, &Settings::default());
        let p = Published {
            analysed: Some(Arc::new(Analysed {
                sample: Arc::new(s),
                analysis: Arc::new(analysis),
                attribution: Default::default(),
            })),
            ..Default::default()
        };
        let config = PageConfig {
            prefix: prefix.into(),
            metrics_path: "/metrics".into(),
        };
        (p, config)
    }

    fn get(path: &str, query: Option<&str>, json: bool) -> Reply {
        let (p, c) = published("");
        reply(path, query, json, &p, &c).expect("a page")
    }

    fn html(r: Reply) -> String {
        match r {
            Reply::Html(h) => h,
            other => panic!("not HTML: {other:?}"),
        }
    }

    #[test]
    fn image_page_escapes_every_cluster_string() {
        let page = html(get(
            &format!("/images/images/{}", html::pct(NASTY)),
            None,
            false,
        ));
        assert!(!page.contains("<script>window"), "raw markup in the page");
        assert!(!page.contains("it's"), "raw quote");
        assert!(page.contains("<h1 id=\"image\">images/&lt;script&gt;window.__pwned=1&lt;/script&gt; it&#39;s &quot;q&quot; ünï</h1>"));
        // The only scripts are the exporter's own file.
        assert_eq!(page.matches("<script").count(), 1, "{page}");
        assert!(page.contains("<script src=\"/assets/pages.js\" defer></script>"));
        assert!(
            !page.contains(" style="),
            "inline styles would need 'unsafe-inline'"
        );
    }

    #[test]
    fn the_forms_of_an_image_url_find_the_same_page() {
        let name = html::pct(NASTY);
        let path = html(get(&format!("/images/images/{name}"), None, false));
        for (p, q) in [
            (format!("/images/images//{name}"), None),
            ("/image-ids/images/b1".to_string(), None),
            (
                "/images".to_string(),
                Some(format!("pool=images&image={name}")),
            ),
            (
                "/images".to_string(),
                Some(format!(
                    "pool=images&namespace=&image={}",
                    name.replace("%20", "+")
                )),
            ),
            ("/images".to_string(), Some("pool=images&id=b1".to_string())),
        ] {
            assert_eq!(html(get(&p, q.as_deref(), false)), path, "{p} {q:?}");
        }
    }

    #[test]
    fn json_twins_are_explains_json() {
        let (p, c) = published("");
        let a = p.analysed.clone().unwrap();
        let key = explain::find(&a, "images", "", NASTY).unwrap();
        let expected = to_json(&explain::explain_image(&a, &key).unwrap());
        let path = format!("/images/images/{}", html::pct(NASTY));
        assert_eq!(
            reply(&path, Some("format=json"), false, &p, &c),
            Some(Reply::Json(expected.clone()))
        );
        assert_eq!(
            reply(&path, None, true, &p, &c),
            Some(Reply::Json(expected))
        );
        let orphans = to_json(&explain::orphans(&a));
        assert_eq!(
            reply("/orphans", Some("format=json"), false, &p, &c),
            Some(Reply::Json(orphans))
        );
        // format=html wins over Accept.
        assert!(matches!(
            reply(&path, Some("format=html"), true, &p, &c),
            Some(Reply::Html(_))
        ));
    }

    #[test]
    fn unknown_images_and_bad_requests_are_plain_errors() {
        let not_found = |r: Reply| match r {
            Reply::NotFound(m) => m,
            other => panic!("not a 404: {other:?}"),
        };
        assert!(
            not_found(get("/images/images/nope", None, false))
                .contains("no image \"nope\" in pool \"images\"")
        );
        assert!(
            not_found(get("/images/nopool/x", None, false))
                .contains("pool \"nopool\" was not sampled")
        );
        assert!(not_found(get("/image-ids/volumes/t/zz", None, false)).contains("namespace \"t\""));
        assert!(not_found(get("/images/a/b/c/d", None, false)).contains("/images/POOL/IMAGE"));
        assert!(not_found(get("/images/images/%ZZ", None, false)).contains("percent-encoded"));
        assert!(not_found(get("/images/images/%FF", None, false)).contains("UTF-8"));
        assert!(
            matches!(get("/images", Some("image=x"), false), Reply::BadRequest(m) if m.contains("missing pool"))
        );
        assert!(
            matches!(get("/images", Some("pool=p&image=x&id=y"), false), Reply::BadRequest(m) if m.contains("exactly one"))
        );
        assert!(
            matches!(get("/orphans", Some("format=xml"), false), Reply::BadRequest(m) if m.contains("format=json"))
        );
        let (p, c) = published("");
        assert_eq!(reply("/nope", None, false, &p, &c), None);
        let empty = Published::default();
        assert_eq!(
            reply("/orphans", None, false, &empty, &c),
            Some(Reply::NoSample)
        );
        assert!(
            matches!(reply("/", None, false, &empty, &c), Some(Reply::Html(h)) if h.contains("No sample yet"))
        );
    }

    #[test]
    fn a_pool_that_could_not_be_read_is_unavailable_not_missing() {
        let (p, c) = published("");
        let good = p.analysed.as_ref().unwrap();
        let mut sample = (*good.sample).clone();
        sample.pools.get_mut(&2).unwrap().outcome = Err(SampleError {
            kind: "timeout".into(),
            message: "osd op timed out".into(),
        });
        let p = Published {
            analysed: Some(Arc::new(Analysed {
                sample: Arc::new(sample),
                analysis: good.analysis.clone(),
                attribution: good.attribution.clone(),
            })),
            ..Default::default()
        };
        for path in ["/images/volumes/volume-3", "/image-ids/volumes/c03"] {
            match reply(path, None, false, &p, &c) {
                Some(Reply::Unavailable(m)) => assert!(
                    m.contains("pool \"volumes\" has not been read successfully yet (timeout: osd op timed out)"),
                    "{m}"
                ),
                other => panic!("{path}: {other:?}"),
            }
        }
    }

    #[test]
    fn orphans_and_landing_link_the_images() {
        let page = html(get("/orphans", None, false));
        assert!(page.contains("<tr class=\"orphan\"><td><a class=\"image-link\" href=\"/images/volumes/volume-0.deleted\">volumes/volume-0.deleted</a>"), "{page}");
        assert!(page.contains("ORPHAN") || page.contains("image_deleted"));
        let landing = html(get("/", None, false));
        assert!(landing.contains("<table id=\"pools\">"));
        assert!(landing.contains("href=\"/images/volumes/volume-0.deleted\""));
        // The snapshot with the most children comes first.
        let pinned = &landing[landing.find("id=\"pinned\"").unwrap()..];
        let first = pinned
            .find("@snap</a></td><td class=\"num\">30</td>")
            .unwrap();
        let second = pinned
            .find("gone.deleted@s</a></td><td class=\"num\">3</td>")
            .unwrap();
        assert!(first < second, "{pinned}");
    }

    #[test]
    fn the_external_urls_path_prefixes_links_and_is_stripped() {
        let (p, c) = published("/ceph-rbd");
        let page = html(reply("/ceph-rbd/orphans", None, false, &p, &c).unwrap());
        assert!(page.contains("href=\"/ceph-rbd/images/volumes/volume-0.deleted\""));
        assert!(page.contains("href=\"/ceph-rbd/assets/pages.css\""));
        assert!(page.contains("href=\"/ceph-rbd/metrics\""));
        assert_eq!(
            reply("/ceph-rbd/orphans", None, false, &p, &c),
            reply("/orphans", None, false, &p, &c)
        );
        assert!(matches!(
            reply("/ceph-rbd", None, false, &p, &c),
            Some(Reply::Html(_))
        ));
        assert_eq!(reply("/ceph-rbdx", None, false, &p, &c), None);
        assert_eq!(link_prefix(Some("https://x:1/a/b/")), "/a/b");
        assert_eq!(link_prefix(Some("https://x:1")), "");
        assert_eq!(link_prefix(None), "");
    }

    #[test]
    fn the_tree_marks_action_and_summarises_per_pool() {
        let page = html(get(
            &format!("/images/images/{}", html::pct(NASTY)),
            None,
            false,
        ));
        let svg = &page[page.find("<svg id=\"clone-tree\"").expect("a tree")..];
        // 10 children drawn, the orphan's image first; 20 summarised.
        assert_eq!(svg.matches("<g class=\"node").count(), 1 + 10 + 1, "{svg}");
        let first_child = svg.find("data-spec=\"volumes/volume-0.deleted\"").unwrap();
        let plain_child = svg.find("data-spec=\"volumes/volume-1\"").unwrap();
        assert!(first_child < plain_child);
        assert!(svg.contains("<g class=\"node action\" data-spec=\"volumes/volume-0.deleted\" data-pool=\"volumes\" data-depth=\"1\" data-action=\"release\">"), "{svg}");
        assert!(svg.contains("data-count=\"20\" data-action-count=\"0\""));
        assert!(page.contains("30 descendant(s)"));
        // Children of a deleted parent must be flattened.
        let gone = html(get("/images/images/gone.deleted", None, false));
        assert_eq!(gone.matches("data-action=\"flatten\"").count(), 3, "{gone}");
        // No tree without children.
        assert!(!html(get("/images/volumes/volume-3", None, false)).contains("clone-tree"));
    }

    #[test]
    fn fixes_come_with_copy_buttons_holding_the_same_commands() {
        let (p, c) = published("");
        let a = p.analysed.clone().unwrap();
        let key = explain::find(&a, "images", "", NASTY).unwrap();
        let e = explain::explain_image(&a, &key).unwrap();
        let page = html(
            reply(
                &format!("/images/images/{}", html::pct(NASTY)),
                None,
                false,
                &p,
                &c,
            )
            .unwrap(),
        );
        assert_eq!(page.matches("<li class=\"fix\">").count(), e.fixes.len());
        for f in &e.fixes {
            let t = esc(&f.commands.join("\n"));
            assert!(
                page.contains(&format!(
                    ">{t}</pre><button type=\"button\" class=\"copy\" data-copy=\"{t}\">"
                )),
                "{t}"
            );
        }
    }
}
