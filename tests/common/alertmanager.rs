//! A webhook receiver that records what Alertmanager sends.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Notification {
    path: String,
    at: Instant,
    body: Value,
}

/// A tiny HTTP server that records Alertmanager webhook POSTs.
pub struct Webhook {
    pub addr: String,
    received: Arc<Mutex<Vec<Notification>>>,
    stop: Arc<AtomicBool>,
}

impl Webhook {
    pub fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Some(n) = conn.ok().and_then(Self::serve) {
                    r.lock().unwrap().push(n);
                }
            }
        });
        Webhook {
            addr,
            received,
            stop,
        }
    }

    fn serve(mut conn: TcpStream) -> Option<Notification> {
        conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut reader = BufReader::new(conn.try_clone().ok()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line).ok()?;
        let path = request_line.split_whitespace().nth(1)?.to_string();
        let (mut length, mut chunked) = (0usize, false);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':')?;
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().ok()?,
                "transfer-encoding" => chunked = v.to_ascii_lowercase().contains("chunked"),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).ok()?;
                let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk).ok()?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            body.resize(length, 0);
            reader.read_exact(&mut body).ok()?;
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .ok()?;
        Some(Notification {
            path,
            at: Instant::now(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        })
    }

    pub fn all(&self) -> Vec<Notification> {
        self.received.lock().unwrap().clone()
    }

    /// Every alert received, with the path it came on and the time.
    pub fn alerts(&self) -> Vec<(String, Instant, Value)> {
        self.all()
            .into_iter()
            .flat_map(|n| {
                n.body["alerts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |a| (n.path.clone(), n.at, a))
            })
            .collect()
    }

    /// The first alert with these label values and this status.
    pub fn find(&self, status: &str, labels: &[(&str, &str)]) -> Option<(String, Instant, Value)> {
        self.alerts().into_iter().find(|(_, _, a)| {
            a["status"] == status && labels.iter().all(|(k, v)| a["labels"][*k] == *v)
        })
    }

    pub fn summary(&self) -> String {
        self.alerts()
            .iter()
            .map(|(p, _, a)| {
                format!(
                    "{p} {} {} {}/{}",
                    a["status"].as_str().unwrap_or("?"),
                    a["labels"]["alertname"].as_str().unwrap_or("?"),
                    a["labels"]["pool"].as_str().unwrap_or("-"),
                    a["labels"]["image"].as_str().unwrap_or("-")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
    }
}
