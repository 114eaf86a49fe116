//! Selenium Grid 4: what a hub offers and which node holds a session, read from its `/status`.
//!
//! Inputs: a hub URL (`http://host:4444`). Outputs: [`GridStatus`] (nodes, the browsers their
//! slots offer, the sessions they hold). The request is one plain HTTP/1.0 GET over a
//! `std::net::TcpStream` with bounds on connect and read, so it can be called while a run is
//! resolved (no async runtime needed) and from `spawn_blocking`. Sessions themselves are
//! W3C WebDriver sessions created through the hub by `webdriver/launch.rs`. Must not import
//! `report`, `cli` or terminal crates.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

use super::BrowserKind;

/// Bound on connecting to the hub and on reading its answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest `/status` answer read (a hub with hundreds of slots stays far below it).
const STATUS_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// A hub that cannot be asked, or an answer that is not a Grid's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GridError {
    /// The URL is not `http://host[:port][/path]`.
    #[error("'{url}' is not a hub URL: {why} (expected e.g. http://127.0.0.1:4444)")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// No connection, or no answer within the bound.
    #[error("cannot reach the Selenium Grid hub at {url}: {source}")]
    Unreachable {
        /// The hub URL.
        url: String,
        /// The connect or read error.
        source: std::io::Error,
    },
    /// The answer is not a Grid 4 `/status` document.
    #[error("{url}/status did not answer as a Selenium Grid 4 hub: {why}")]
    NotAGrid {
        /// The hub URL.
        url: String,
        /// What was wrong with the answer.
        why: NotAGrid,
    },
}

/// What was wrong with an answer to `/status` (the message after the hub's URL).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotAGrid {
    /// No blank line ends the HTTP head.
    #[error("no HTTP answer")]
    NoHttpAnswer,
    /// A status other than 200.
    #[error("HTTP {status_line}")]
    Status {
        /// The answer's first line, e.g. `HTTP/1.1 404 Not Found`.
        status_line: String,
    },
    /// The body is not JSON (in the message, not its `source()`: printed once).
    #[error("not JSON: {error}")]
    NotJson {
        /// The parser's error.
        error: serde_json::Error,
    },
    /// No `value` object.
    #[error("no 'value'")]
    NoValue,
    /// No `value.nodes` list: a standalone server, or Grid 3.
    #[error("no 'value.nodes' (a standalone server or Grid 3?)")]
    NoNodes,
}

/// A hub URL split into what a plain HTTP request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubUrl {
    /// `host:port`.
    pub authority: String,
    /// Path prefix without a trailing slash (`""` for the root).
    pub prefix: String,
}

impl HubUrl {
    /// Parses `http://host[:port][/prefix]`; the port defaults to 4444, Selenium's.
    ///
    /// # Errors
    /// [`GridError::Url`] for another scheme, an empty host or a bad port.
    pub fn parse(url: &str) -> Result<Self, GridError> {
        let bad = |why: &str| GridError::Url {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            if url.starts_with("https://") {
                bad(
                    "an https hub is not supported; reach the hub over http (the pages it \
                     opens can still be served over https with --tls)",
                )
            } else {
                bad("it does not start with http://")
            }
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("no host"));
        }
        let authority = match authority.rsplit_once(':') {
            // `[::1]` has colons but no port: a port never holds `]`.
            Some((host, port)) if !port.contains(']') => {
                if host.is_empty() {
                    return Err(bad("no host"));
                }
                port.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| bad(&format!("bad port '{port}'")))?;
                authority.to_owned()
            }
            _ => format!("{authority}:4444"),
        };
        Ok(Self {
            authority,
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The URL WebDriver clients post sessions to.
    pub fn webdriver_url(&self) -> String {
        format!("http://{}{}", self.authority, self.prefix)
    }
}

/// The name a Grid stereotype gives `kind` (`browserName`), if the Grid can serve it.
/// chromium-shell is driven over CDP only, so no Grid node serves it.
pub fn browser_name(kind: BrowserKind) -> Option<&'static str> {
    match kind {
        BrowserKind::Chromium | BrowserKind::Chrome => Some("chrome"),
        BrowserKind::Firefox => Some("firefox"),
        BrowserKind::Edge => Some("MicrosoftEdge"),
        BrowserKind::ChromiumShell => None,
    }
}

/// One node as the hub sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridNode {
    /// Where the hub reaches it, e.g. `http://10.0.0.7:5555`.
    pub uri: String,
    /// `UP`, `DOWN` or `DRAINING`.
    pub availability: String,
    /// `browserName` of each slot's stereotype.
    pub browsers: Vec<String>,
    /// The sessions it holds.
    pub sessions: Vec<GridSession>,
}

/// One session a node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridSession {
    /// Its id.
    pub id: String,
    /// `browserVersion` of its capabilities: the version the driver read from the browser
    /// (geckodriver: `153.8.0` for the Firefox ESR whose `--version` says `153.8.0esr` and whose
    /// user agent says only `153.0`).
    pub browser_version: Option<String>,
}

/// The hub's `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridStatus {
    /// `value.ready`.
    pub ready: bool,
    /// Every node registered.
    pub nodes: Vec<GridNode>,
}

impl GridStatus {
    /// Parses a `/status` body.
    ///
    /// # Errors
    /// [`NotAGrid::NoValue`] or [`NotAGrid::NoNodes`] for what is missing.
    pub fn parse(body: &Value) -> Result<Self, NotAGrid> {
        let value = body.get("value").ok_or(NotAGrid::NoValue)?;
        let ready = value.get("ready").and_then(Value::as_bool).unwrap_or(false);
        let nodes = value
            .get("nodes")
            .and_then(Value::as_array)
            .ok_or(NotAGrid::NoNodes)?;
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        let nodes = nodes
            .iter()
            .map(|n| {
                let slots = n.get("slots").and_then(Value::as_array);
                let slots = slots.map(Vec::as_slice).unwrap_or_default();
                let mut browsers: Vec<String> = slots
                    .iter()
                    .filter_map(|s| s.get("stereotype").and_then(|st| text(st, "browserName")))
                    .collect();
                browsers.dedup();
                GridNode {
                    uri: text(n, "uri").unwrap_or_default(),
                    availability: text(n, "availability").unwrap_or_default(),
                    browsers,
                    sessions: slots
                        .iter()
                        .filter_map(|s| s.get("session"))
                        .filter_map(|x| {
                            Some(GridSession {
                                id: text(x, "sessionId")?,
                                browser_version: x
                                    .get("capabilities")
                                    .and_then(|c| text(c, "browserVersion"))
                                    .filter(|v| !v.is_empty()),
                            })
                        })
                        .collect(),
                }
            })
            .collect();
        Ok(Self { ready, nodes })
    }

    /// Whether a node that is up offers `kind`.
    pub fn offers(&self, kind: BrowserKind) -> bool {
        browser_name(kind).is_some_and(|name| {
            self.nodes
                .iter()
                .any(|n| n.availability == "UP" && n.browsers.iter().any(|b| b == name))
        })
    }

    /// Every browser name the nodes that are up offer, sorted, once each.
    pub fn offered(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.availability == "UP")
            .flat_map(|n| n.browsers.iter().cloned())
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// The URI of the node holding `session`.
    pub fn node_of(&self, session: &str) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.sessions.iter().any(|s| s.id == session))
            .map(|n| n.uri.as_str())
    }

    /// The browser version `session`'s capabilities report, when the hub lists it.
    pub fn version_of(&self, session: &str) -> Option<&str> {
        self.nodes
            .iter()
            .flat_map(|n| &n.sessions)
            .find(|s| s.id == session)
            .and_then(|s| s.browser_version.as_deref())
    }
}

/// Asks the hub at `url` for its `/status` (blocking, bounded by 5 s per step).
///
/// # Errors
/// [`GridError`] naming the URL.
pub fn status(url: &str) -> Result<GridStatus, GridError> {
    let hub = HubUrl::parse(url)?;
    let unreachable = |source| GridError::Unreachable {
        url: url.to_owned(),
        source,
    };
    let not_grid = |why: NotAGrid| GridError::NotAGrid {
        url: url.to_owned(),
        why,
    };
    let addr = hub
        .authority
        .to_socket_addrs()
        .map_err(unreachable)?
        .next()
        .ok_or_else(|| {
            unreachable(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the host has no address",
            ))
        })?;
    let mut stream = TcpStream::connect_timeout(&addr, STATUS_TIMEOUT).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(STATUS_TIMEOUT))
        .map_err(unreachable)?;
    stream
        .set_write_timeout(Some(STATUS_TIMEOUT))
        .map_err(unreachable)?;
    // HTTP/1.0: the answer is never chunked and ends when the hub closes the connection.
    let request = format!(
        "GET {}/status HTTP/1.0\r\nHost: {}\r\nAccept: application/json\r\n\r\n",
        hub.prefix, hub.authority
    );
    stream.write_all(request.as_bytes()).map_err(unreachable)?;
    let mut raw = Vec::new();
    stream
        .take(STATUS_MAX_BYTES)
        .read_to_end(&mut raw)
        .map_err(unreachable)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| not_grid(NotAGrid::NoHttpAnswer))?;
    let code = head.split_whitespace().nth(1).unwrap_or("");
    if code != "200" {
        return Err(not_grid(NotAGrid::Status {
            status_line: head.lines().next().unwrap_or("").to_owned(),
        }));
    }
    let json: Value =
        serde_json::from_str(body).map_err(|error| not_grid(NotAGrid::NotJson { error }))?;
    GridStatus::parse(&json).map_err(not_grid)
}

/// The product version in a user agent: `Chrome/156.0.8078.73` (also `HeadlessChrome/`),
/// `Firefox/140.0`, `Edg/...`.
pub fn version_from_user_agent(kind: BrowserKind, ua: &str) -> Option<String> {
    let token = match kind {
        BrowserKind::Firefox => "Firefox/",
        BrowserKind::Edge => "Edg/",
        _ => "Chrome/",
    };
    let at = ua.find(token)? + token.len();
    let version: String = ua[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!version.is_empty()).then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hub_urls() {
        let h = HubUrl::parse("http://127.0.0.1:4444").unwrap();
        assert_eq!(h.authority, "127.0.0.1:4444");
        assert_eq!(h.webdriver_url(), "http://127.0.0.1:4444");
        let h = HubUrl::parse("http://grid.lan/wd/hub/").unwrap();
        assert_eq!(h.authority, "grid.lan:4444");
        assert_eq!(h.prefix, "/wd/hub");
        for bad in [
            "127.0.0.1:4444",
            "https://h:4444",
            "http://",
            "http://h:0",
            "http://h:x",
        ] {
            assert!(HubUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_parsing() {
        let body = json!({"value": {"ready": true, "nodes": [
            {"uri": "http://127.0.0.1:4447", "availability": "UP", "slots": [
                {"stereotype": {"browserName": "chrome"}, "session": {"sessionId": "abc",
                    "capabilities": {"browserName": "chrome", "browserVersion": "156.0.8078.114"}}},
                {"stereotype": {"browserName": "chrome"}, "session": null}]},
            {"uri": "http://127.0.0.1:4448", "availability": "DOWN", "slots": [
                {"stereotype": {"browserName": "firefox"}, "session": null}]}]}});
        let s = GridStatus::parse(&body).unwrap();
        assert!(s.ready);
        assert_eq!(s.nodes[0].browsers, ["chrome"]);
        assert!(s.offers(BrowserKind::Chromium));
        // A node that is down offers nothing.
        assert!(!s.offers(BrowserKind::Firefox));
        assert!(!s.offers(BrowserKind::ChromiumShell));
        assert_eq!(s.offered(), ["chrome"]);
        assert_eq!(s.node_of("abc"), Some("http://127.0.0.1:4447"));
        assert_eq!(s.node_of("zzz"), None);
        assert_eq!(s.version_of("abc"), Some("156.0.8078.114"));
        assert_eq!(s.version_of("zzz"), None);
        let bad = GridStatus::parse(&json!({"value": {"ready": true}})).unwrap_err();
        assert!(matches!(bad, NotAGrid::NoNodes), "{bad}");
        assert!(bad.to_string().contains("no 'value.nodes'"), "{bad}");
    }

    #[test]
    fn versions_from_user_agents() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                      HeadlessChrome/156.0.8078.73 Safari/537.36";
        assert_eq!(
            version_from_user_agent(BrowserKind::Chromium, chrome).as_deref(),
            Some("156.0.8078.73")
        );
        let ff = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.5";
        assert_eq!(
            version_from_user_agent(BrowserKind::Firefox, ff).as_deref(),
            Some("140.5")
        );
        assert_eq!(version_from_user_agent(BrowserKind::Firefox, chrome), None);
    }
}
