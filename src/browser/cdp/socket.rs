//! A minimal async DevTools WebSocket client for one page target, used for page calls only.
//!
//! Inputs: the DevTools port and target id of a tab that `headless_chrome` opened. Output:
//! `Runtime.evaluate` results, or an I/O error the moment the socket closes (a dead browser).
//!
//! Why not `headless_chrome` for calls: its reader thread holds the socket's mutex during a
//! blocking read with a fixed 100 ms timeout, so every outgoing message waits for that read to
//! time out. Measured on this machine: a no-op page call took about 100 ms through it, against
//! about 2 ms over this socket. `headless_chrome` still launches, owns and closes the browser.
//! Rejected alternative: `tokio-tungstenite`, a new dependency for about 150 lines of RFC 6455
//! client framing on a loopback socket (no TLS, no extensions).
//! Must not import `report`, `cli` or terminal crates.

use std::io::{self, ErrorKind};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest message accepted from the browser (a `full` output of a big tensor is tens of MB).
const MAX_MESSAGE: u64 = 512 * 1024 * 1024;

/// One WebSocket connection to `ws://127.0.0.1:<port>/devtools/page/<target>`.
#[derive(Debug)]
pub(crate) struct CdpSocket {
    stream: BufReader<TcpStream>,
    next_id: u64,
    mask_seed: u32,
}

/// The answer to one CDP command.
#[derive(Debug)]
pub(crate) enum Reply {
    /// `result` of a successful command.
    Result(Value),
    /// `error.message` of a failed command (e.g. the target navigated or crashed).
    Error(String),
    /// `Inspector.targetCrashed` (or `Inspector.detached`) arrived before the answer: the
    /// renderer hosting the page is gone, and the answer will never come.
    TargetCrashed(String),
}

impl CdpSocket {
    /// Connects and performs the WebSocket upgrade.
    ///
    /// # Errors
    /// I/O errors, or `InvalidData` when the server does not switch protocols.
    pub(crate) async fn connect(port: u16, target_id: &str) -> io::Result<Self> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        tcp.set_nodelay(true)?;
        let mut stream = BufReader::new(tcp);
        let seed = seed();
        let key = base64::engine::general_purpose::STANDARD.encode(seed.to_le_bytes().repeat(4));
        let req = format!(
            "GET /devtools/page/{target_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.get_mut().write_all(req.as_bytes()).await?;
        // Read the response head byte by byte: it is short, and nothing may be over-read.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 16 * 1024 {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    "oversized handshake response",
                ));
            }
            head.push(stream.read_u8().await?);
        }
        let status = String::from_utf8_lossy(&head);
        if !status.starts_with("HTTP/1.1 101") {
            let first = status.lines().next().unwrap_or("").to_owned();
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                format!("upgrade refused: {first}"),
            ));
        }
        Ok(Self {
            stream,
            next_id: 1,
            mask_seed: seed,
        })
    }

    /// `Runtime.evaluate` of `expression`, awaiting a promise and returning by value.
    ///
    /// # Errors
    /// I/O errors; `UnexpectedEof` / `ConnectionReset` mean the browser went away.
    pub(crate) async fn evaluate(&mut self, expression: &str) -> io::Result<Reply> {
        let params =
            json!({ "expression": expression, "awaitPromise": true, "returnByValue": true });
        self.command("Runtime.evaluate", params).await
    }

    /// Turns on the `Inspector` domain, whose `targetCrashed` event tells a crashed tab from a
    /// slow one.
    ///
    /// # Errors
    /// As [`CdpSocket::evaluate`].
    pub(crate) async fn watch_crashes(&mut self) -> io::Result<Reply> {
        self.command("Inspector.enable", json!({})).await
    }

    /// Sends one command and reads messages until its answer. Events are skipped, except the
    /// Inspector's crash notices, which end the wait.
    async fn command(&mut self, method: &str, params: Value) -> io::Result<Reply> {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.write_frame(0x1, msg.as_bytes()).await?;
        loop {
            let text = self.read_message().await?;
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                io::Error::new(ErrorKind::InvalidData, format!("bad CDP JSON: {e}"))
            })?;
            match v.get("method").and_then(Value::as_str) {
                Some("Inspector.targetCrashed") => {
                    return Ok(Reply::TargetCrashed("Inspector.targetCrashed".into()))
                }
                Some("Inspector.detached") => {
                    let reason = v
                        .pointer("/params/reason")
                        .and_then(Value::as_str)
                        .unwrap_or("detached");
                    return Ok(Reply::TargetCrashed(format!(
                        "Inspector.detached: {reason}"
                    )));
                }
                _ => {}
            }
            if v.get("id").and_then(Value::as_u64) != Some(id) {
                continue;
            }
            if let Some(err) = v.get("error") {
                let m = err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown CDP error");
                return Ok(Reply::Error(m.to_owned()));
            }
            return Ok(Reply::Result(
                v.get("result").cloned().unwrap_or(Value::Null),
            ));
        }
    }

    async fn write_frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        // Clients must mask; the key only has to be unpredictable to proxies, of which a
        // loopback socket has none.
        self.mask_seed = self
            .mask_seed
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        let mask = self.mask_seed.to_le_bytes();
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x80 | opcode);
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if let Ok(l16) = u16::try_from(len) {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&l16.to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let s = self.stream.get_mut();
        s.write_all(&frame).await?;
        s.flush().await
    }

    /// Reads one whole text message, answering pings and joining fragments.
    async fn read_message(&mut self) -> io::Result<String> {
        let mut message = Vec::new();
        loop {
            let b0 = self.stream.read_u8().await?;
            let b1 = self.stream.read_u8().await?;
            let (fin, opcode, masked) = (b0 & 0x80 != 0, b0 & 0x0f, b1 & 0x80 != 0);
            let len = match b1 & 0x7f {
                126 => u64::from(self.stream.read_u16().await?),
                127 => self.stream.read_u64().await?,
                n => u64::from(n),
            };
            if len > MAX_MESSAGE || message.len() as u64 + len > MAX_MESSAGE {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("CDP message over {MAX_MESSAGE} bytes"),
                ));
            }
            let mask = if masked {
                let mut m = [0u8; 4];
                self.stream.read_exact(&mut m).await?;
                Some(m)
            } else {
                None
            };
            let mut payload = vec![0u8; len as usize];
            self.stream.read_exact(&mut payload).await?;
            if let Some(m) = mask {
                payload
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b ^= m[i % 4]);
            }
            match opcode {
                0x8 => {
                    return Err(io::Error::new(
                        ErrorKind::ConnectionReset,
                        "DevTools closed the socket",
                    ))
                }
                0x9 => self.write_frame(0xA, &payload).await?,
                0xA => {}
                0x0..=0x2 => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message)
                            .map_err(|e| io::Error::new(ErrorKind::InvalidData, e.to_string()));
                    }
                }
                other => {
                    return Err(io::Error::new(
                        ErrorKind::InvalidData,
                        format!("unknown frame opcode {other}"),
                    ))
                }
            }
        }
    }
}

/// One plain HTTP/1.1 request to the DevTools HTTP endpoint (`/json/new`, `/json/close`),
/// returning the body. Loopback only; the answers are small.
///
/// # Errors
/// I/O errors, or `InvalidData` on a non-200 answer.
pub(crate) async fn http(port: u16, method: &str, path: &str) -> io::Result<String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut stream = BufReader::new(tcp);
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.get_mut().write_all(req.as_bytes()).await?;
    // Chromium keeps the connection open whatever we ask: read the head, then exactly the body.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                "oversized HTTP head",
            ));
        }
        head.push(stream.read_u8().await?);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if !head.starts_with("HTTP/1.1 200") {
        let first = head.lines().next().unwrap_or("").to_owned();
        return Err(io::Error::new(
            ErrorKind::InvalidData,
            format!("{method} {path}: {first}"),
        ));
    }
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0)
        .min(1024 * 1024);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Whether an I/O error means the other end is gone (as opposed to a protocol bug).
pub(crate) fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionRefused
            | ErrorKind::BrokenPipe
            | ErrorKind::NotConnected
    )
}

fn seed() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}
