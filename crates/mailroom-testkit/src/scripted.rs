//! Scripted SMTP servers on 127.0.0.1 for the hostile cases aiosmtpd cannot play (an
//! endless reply line, bytes behind STARTTLS's `220`, a final reply later than the client
//! waits, a dropped connection, pipelined replies in one packet): each connection runs a
//! script — plain blocking code on its own thread — against a [`Conn`].
//!
//! ```
//! use mailroom_testkit::scripted::ScriptedServer;
//!
//! let server = ScriptedServer::start(|conn| {
//!     conn.send("220 scripted ESMTP\r\n");
//!     let _ehlo = conn.read_line();
//!     conn.send("250 scripted\r\n");
//! });
//! let mut client = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
//! # use std::io::{Read, Write};
//! let mut greeting = [0u8; 5];
//! client.read_exact(&mut greeting).unwrap();
//! assert_eq!(&greeting, b"220 s");
//! client.write_all(b"EHLO me\r\n").unwrap();
//! # drop(client);
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// What all connections of a server share.
#[derive(Debug, Default)]
struct Shared {
    connections: AtomicUsize,
    deliveries: AtomicUsize,
    commands: Mutex<Vec<String>>,
    stopping: AtomicBool,
}

/// A listening scripted server; stops accepting when dropped.
#[derive(Debug)]
pub struct ScriptedServer {
    /// The port on 127.0.0.1.
    pub port: u16,
    shared: Arc<Shared>,
}

/// One connection, as a script sees it.
#[derive(Debug)]
pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    shared: Arc<Shared>,
    /// Which connection of the server this is, from 1.
    pub number: usize,
}

impl ScriptedServer {
    /// Listens on 127.0.0.1 (a free port) and runs `script` for every connection, each on
    /// its own thread.
    pub fn start(script: impl Fn(&mut Conn) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("the bound address").port();
        let shared = Arc::new(Shared::default());
        let script = Arc::new(script);
        let accepting = Arc::clone(&shared);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.stopping.load(Ordering::Acquire) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let number = accepting.connections.fetch_add(1, Ordering::AcqRel) + 1;
                let shared = Arc::clone(&accepting);
                let script = Arc::clone(&script);
                thread::spawn(move || {
                    let _ = stream.set_nodelay(true);
                    let Ok(writer) = stream.try_clone() else {
                        return;
                    };
                    let mut conn = Conn {
                        reader: BufReader::new(stream),
                        writer,
                        shared,
                        number,
                    };
                    script(&mut conn);
                });
            }
        });
        Self { port, shared }
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Acquire)
    }

    /// How many messages the scripts counted as delivered ([`Conn::delivered`]).
    pub fn deliveries(&self) -> usize {
        self.shared.deliveries.load(Ordering::Acquire)
    }

    /// Every command line the scripts read, in order, without the line break.
    pub fn commands(&self) -> Vec<String> {
        self.shared
            .commands
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

impl Conn {
    /// Writes `text` in one write (so several replies go in one packet). False when the
    /// client is gone.
    pub fn send(&mut self, text: &str) -> bool {
        self.send_bytes(text.as_bytes())
    }

    /// Writes bytes in one write. False when the client is gone.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> bool {
        self.writer.write_all(bytes).is_ok() && self.writer.flush().is_ok()
    }

    /// Reads one command line (without CRLF) and records it; `None` at the end of the
    /// connection.
    pub fn read_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                let line = line.trim_end_matches(['\r', '\n']).to_owned();
                self.shared
                    .commands
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(line.clone());
                Some(line)
            }
        }
    }

    /// Reads message data up to and including the `CRLF . CRLF` that ends it; `None` when
    /// the connection ends first. The bytes are returned as sent (still dot-stuffed).
    pub fn read_data(&mut self) -> Option<Vec<u8>> {
        let mut data = Vec::new();
        loop {
            let mut line = Vec::new();
            match self.reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            if line == b".\r\n" {
                return Some(data);
            }
            data.extend_from_slice(&line);
        }
    }

    /// Everything the client sends until it closes the connection (at most `limit` bytes).
    pub fn read_to_end(&mut self, limit: u64) -> Vec<u8> {
        let mut rest = Vec::new();
        let _ = (&mut self.reader).take(limit).read_to_end(&mut rest);
        rest
    }

    /// The bytes received and not read yet (what arrived with the last read).
    pub fn buffered(&self) -> Vec<u8> {
        self.reader.buffer().to_vec()
    }

    /// Counts one delivered message.
    pub fn delivered(&self) {
        self.shared.deliveries.fetch_add(1, Ordering::AcqRel);
    }

    /// The plain SMTP opening of a server without TLS or AUTH: greeting, then the EHLO
    /// reply with `extensions` (e.g. `["PIPELINING", "8BITMIME"]`). False when the client
    /// went away.
    pub fn open_plain(&mut self, extensions: &[&str]) -> bool {
        if !self.send("220 scripted.test ESMTP\r\n") {
            return false;
        }
        if self.read_line().is_none() {
            return false;
        }
        let mut reply = String::new();
        let mut lines = vec!["scripted.test"];
        lines.extend_from_slice(extensions);
        for (index, line) in lines.iter().enumerate() {
            let separator = if index + 1 == lines.len() { ' ' } else { '-' };
            reply.push_str(&format!("250{separator}{line}\r\n"));
        }
        self.send(&reply)
    }
}
