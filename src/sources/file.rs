//! The `file` source: expected attachments from a YAML file, for sites whose
//! inventory is neither OpenStack nor Kubernetes.
//!
//! ```yaml
//! # expected attachments for sites with their own inventory
//! images:
//!   - image: volume-1234        # required
//!     pool: volumes             # optional, matches any pool when absent
//!     namespace: ""             # optional
//!     hosts: [compute-1]        # [] = attached nowhere; absent = no opinion
//!     multi_attach: false       # optional
//!     owner: "CMDB asset 42"    # optional
//! ```
//!
//! The file is read on every fetch, so an inventory job can rewrite it
//! without restarting the exporter. A file that is empty, unreadable or has
//! an unknown field fails the fetch: a half-read inventory would make every
//! image it no longer lists look unexpected.

use super::{AttachmentReport, AttachmentSource, BoxFuture, Expectation, ImageRef, SourceError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const NAME: &str = "file";

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with an `images:` list")]
struct Document {
    /// The expected attachments; required, so a truncated file fails.
    images: Vec<Entry>,
}

/// One `images:` entry.
#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an entry with `image:` and optionally `pool`, `namespace`, `hosts`, `multi_attach`, `owner`"
)]
struct Entry {
    /// Image name.
    image: String,
    /// Pool; any pool when absent.
    pool: Option<String>,
    /// RBD namespace; any when absent.
    namespace: Option<String>,
    /// Hosts it belongs on; `[]` nowhere, absent no opinion.
    hosts: Option<Vec<String>>,
    /// Several attachments at once are fine.
    #[serde(default)]
    multi_attach: bool,
    /// Owner shown by `explain`.
    owner: Option<String>,
}

/// Expected attachments read from a YAML file.
#[derive(Debug, Clone)]
pub struct FileSource {
    /// The YAML file, read on every fetch.
    path: PathBuf,
}

impl FileSource {
    /// A source reading `path` on every fetch. The file is not read here, so
    /// a missing file shows up as a failed fetch (counted and retried), not
    /// as a start-up failure.
    pub fn new(path: impl Into<PathBuf>) -> FileSource {
        FileSource { path: path.into() }
    }

    /// The file this source reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, message: impl std::fmt::Display) -> SourceError {
        SourceError::Config {
            source_name: NAME,
            message: format!("{}: {message}", self.path.display()),
        }
    }

    /// Parses the file's text into a report; errors name the file and the
    /// entry.
    pub fn parse(&self, text: &str) -> Result<AttachmentReport, SourceError> {
        if text.trim().is_empty() {
            return Err(self.error("file is empty (expected an `images:` list)"));
        }
        // serde_norway errors carry the path, e.g. `images[2]: unknown field`.
        let doc: Document = serde_norway::from_str(text).map_err(|e| self.error(e))?;
        let mut images: BTreeMap<ImageRef, Expectation> = BTreeMap::new();
        let mut seen: BTreeMap<ImageRef, usize> = BTreeMap::new();
        for (index, entry) in doc.images.into_iter().enumerate() {
            if entry.image.trim().is_empty() {
                return Err(self.error(format!("images[{index}].image is empty")));
            }
            let blank = (entry.hosts.iter().flatten()).position(|h| h.trim().is_empty());
            if let Some(pos) = blank {
                return Err(self.error(format!("images[{index}].hosts[{pos}] is empty")));
            }
            let key = ImageRef {
                pool: entry.pool,
                namespace: entry.namespace,
                image: entry.image,
            };
            if let Some(first) = seen.insert(key.clone(), index) {
                return Err(self.error(format!(
                    "images[{index}] repeats images[{first}] (image {:?})",
                    key.image
                )));
            }
            let owner = entry
                .owner
                .unwrap_or_else(|| format!("file {} images[{index}]", self.path.display()));
            images.insert(
                key,
                Expectation {
                    hosts: entry.hosts.map(|h| h.into_iter().collect()),
                    multi_attach: entry.multi_attach,
                    owner,
                },
            );
        }
        Ok(AttachmentReport {
            images,
            host_addresses: BTreeMap::new(),
            instances: None,
        })
    }

    async fn fetch_now(&self) -> Result<AttachmentReport, SourceError> {
        let bytes = tokio::fs::read(&self.path)
            .await
            .map_err(|e| self.error(format!("cannot read: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|e| self.error(format!("not UTF-8: {e}")))?;
        self.parse(&text)
    }
}

impl AttachmentSource for FileSource {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fetch(&self) -> BoxFuture<'_, Result<AttachmentReport, SourceError>> {
        Box::pin(self.fetch_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn source() -> FileSource {
        FileSource::new("/etc/expected.yaml")
    }

    fn err(text: &str) -> String {
        source().parse(text).unwrap_err().to_string()
    }

    #[test]
    fn parses_every_field_and_defaults() {
        let report = source()
            .parse(
                "images:\n\
                 - image: volume-1234\n  pool: volumes\n  namespace: \"\"\n  hosts: [compute-1]\n  multi_attach: true\n  owner: CMDB asset 42\n\
                 - image: lonely\n  hosts: []\n\
                 - image: no-opinion\n",
            )
            .expect("parse");
        assert_eq!(report.images.len(), 3);
        let full = &report.images[&ImageRef {
            pool: Some("volumes".into()),
            namespace: Some(String::new()),
            image: "volume-1234".into(),
        }];
        assert_eq!(full.hosts, Some(BTreeSet::from(["compute-1".to_string()])));
        assert!(full.multi_attach);
        assert_eq!(full.owner, "CMDB asset 42");
        let lonely = &report.images[&ImageRef {
            pool: None,
            namespace: None,
            image: "lonely".into(),
        }];
        assert_eq!(lonely.hosts, Some(BTreeSet::new()));
        assert!(!lonely.multi_attach);
        assert_eq!(lonely.owner, "file /etc/expected.yaml images[1]");
        let none = &report.images[&ImageRef {
            pool: None,
            namespace: None,
            image: "no-opinion".into(),
        }];
        assert_eq!(none.hosts, None);
        assert!(report.instances.is_none());
        assert!(
            source()
                .parse("images: []\n")
                .expect("empty list")
                .images
                .is_empty()
        );
    }

    #[test]
    fn errors_name_the_file_the_entry_and_the_field() {
        let e = err("images:\n  - image: a\n  - image: b\n    hostz: [x]\n");
        assert!(e.contains("/etc/expected.yaml"), "{e}");
        assert!(e.contains("images[1]"), "{e}");
        assert!(e.contains("hostz"), "{e}");

        let e = err("images:\n  - pool: p\n");
        assert!(e.contains("images[0]") && e.contains("image"), "{e}");

        let e = err("images:\n  - image: a\n    hosts: compute-1\n");
        assert!(e.contains("images[0].hosts"), "{e}");

        let e = err("images:\n  - image: a\n    multi_attach: maybe\n");
        assert!(e.contains("images[0].multi_attach"), "{e}");

        let e = err("images:\n  - image: \"\"\n");
        assert!(e.contains("images[0].image is empty"), "{e}");

        let e = err("images:\n  - image: a\n  - image: a\n");
        assert!(e.contains("images[1] repeats images[0]"), "{e}");

        let e = err("imagez: []\n");
        assert!(e.contains("imagez"), "{e}");

        let e = err("  \n");
        assert!(e.contains("empty"), "{e}");
        assert!(
            e.starts_with("file: configuration: /etc/expected.yaml"),
            "{e}"
        );
    }

    #[test]
    fn table_of_bad_files_names_file_entry_and_field() {
        // Each bad file, and what its error must name after the file: the
        // entry, then the field.
        let cases: &[(&str, &[&str])] = &[
            (
                "images:\n  - image: a\n  - image: b\n    hostz: [x]\n",
                &["images[1]", "hostz"],
            ),
            ("images:\n  - pool: p\n", &["images[0]", "`image`"]),
            (
                "images:\n  - image: a\n    hosts: compute-1\n",
                &["images[0].hosts"],
            ),
            (
                "images:\n  - image: a\n    hosts: [x, \"\"]\n",
                &["images[0].hosts[1] is empty"],
            ),
            (
                "images:\n  - image: a\n    hosts: [[x]]\n",
                &["images[0].hosts[0]"],
            ),
            (
                "images:\n  - image: a\n    multi_attach: maybe\n",
                &["images[0].multi_attach"],
            ),
            (
                "images:\n  - image: a\n    pool: [p]\n",
                &["images[0].pool"],
            ),
            (
                "images:\n  - image: a\n    namespace: {n: 1}\n",
                &["images[0].namespace"],
            ),
            (
                "images:\n  - image: a\n    owner: [o]\n",
                &["images[0].owner"],
            ),
            ("images:\n  - image: [a]\n", &["images[0].image"]),
            ("images:\n  - image: \"\"\n", &["images[0].image is empty"]),
            (
                "images:\n  - image: a\n  - image: a\n",
                &["images[1] repeats images[0]", "image \"a\""],
            ),
            ("images:\n  - a\n", &["images[0]"]),
            ("images: {a: b}\n", &["images"]),
            ("imagez: []\n", &["imagez"]),
            ("- image: a\n", &["images"]),
            ("images: [\n", &["line"]),
            ("  \n", &["file is empty", "images:"]),
        ];
        for (text, want) in cases {
            let e = err(text);
            assert!(
                e.starts_with("file: configuration: /etc/expected.yaml: "),
                "{text:?}: {e}"
            );
            for w in *want {
                assert!(e.contains(w), "{text:?}: {e:?} lacks {w:?}");
            }
        }
    }

    #[tokio::test]
    async fn missing_file_fails_the_fetch() {
        let source = FileSource::new("/nonexistent/expected.yaml");
        let e = source.fetch().await.unwrap_err();
        assert!(matches!(e, SourceError::Config { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/expected.yaml"), "{e}");
        assert_eq!(source.name(), "file");
    }
}
