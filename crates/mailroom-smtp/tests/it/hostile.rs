//! Scripted hostile and unusual servers (`mailroom_testkit::scripted`): an endless reply
//! line (in a child process, whose peak memory is measured), bytes behind STARTTLS's `220`,
//! a final reply later than its timeout, drops before and after the body, PIPELINING and
//! its absence, refused recipients.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailroom_model::{
    Credentials, OutgoingMessage, ServerSettings, TlsStartup, TransportErrorKind as Kind,
};
use mailroom_smtp::{SmtpTransport, SmtpTransportConfig};
use mailroom_testkit::scripted::{Conn, ScriptedServer};

use crate::support::{
    address, no_credentials, outgoing, relay_settings, scripted_relay, send, simple_message,
};

const FROM: &str = "relay@example.com";
/// The variable that turns the endless-line test into the child of the memory test.
const CHILD_PORT: &str = "MAILROOM_TEST_HOSTILE_CHILD_PORT";
/// The peak resident memory the child may reach.
const RSS_BOUND_KIB: u64 = 64 * 1024;

/// A password-less relay on 127.0.0.1 without TLS, sending as [`FROM`].
fn plain_settings(port: u16) -> ServerSettings {
    relay_settings(port, FROM)
}

fn transport_for(settings: ServerSettings, final_reply: Duration) -> SmtpTransport {
    SmtpTransport::new(SmtpTransportConfig::new(settings).with_final_reply_timeout(final_reply))
        .expect("a transport")
}

fn anonymous() -> Credentials {
    no_credentials(FROM, 1)
}

fn message_to(recipients: &[&str]) -> OutgoingMessage {
    let mut builder = lettre::Message::builder()
        .from(FROM.parse().expect("from"))
        .subject("hostile");
    for recipient in recipients {
        builder = builder.to(recipient.parse().expect("to"));
    }
    let message = builder
        .body(String::from("line one\r\n.a line with a leading dot\r\n"))
        .expect("a message");
    outgoing(&message, FROM, recipients)
}

/// Greets, answers EHLO, then streams one reply line without end (up to 512 MiB, or until
/// the client hangs up).
fn endless_line(conn: &mut Conn) {
    conn.send("220 hostile.test ESMTP\r\n");
    if conn.read_line().is_none() {
        return;
    }
    conn.send("250-");
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..(512 * 1024 * 1024 / chunk.len()) {
        if !conn.send_bytes(&chunk) {
            return;
        }
    }
}

/// The peak resident memory of this process (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmHWM line")
}

/// Also the child of [`an_endless_reply_line_keeps_the_client_process_under_64_mib`]: with
/// `CHILD_PORT` set it talks to the parent's server and prints its peak memory.
#[tokio::test]
async fn an_endless_reply_line_is_a_protocol_error_naming_the_server() {
    let child_port: Option<u16> = std::env::var(CHILD_PORT)
        .ok()
        .map(|port| port.parse().expect("a port"));
    let own_server = match child_port {
        Some(_) => None,
        None => Some(ScriptedServer::start(endless_line)),
    };
    let port = child_port.unwrap_or_else(|| own_server.as_ref().expect("a server").port);
    let transport = transport_for(plain_settings(port), Duration::from_secs(5));
    let error = send(&transport, &message_to(&["to@example.com"]), &anonymous())
        .await
        .expect_err("a protocol error");
    assert_eq!(error.kind(), Kind::Permanent, "{error}");
    let text = error.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("broke the protocol"), "{text}");
    assert!(text.contains("longer than"), "{text}");
    assert!(text.contains("did not send the message"), "{text}");
    match own_server {
        // Nothing after EHLO: no MAIL, no message.
        Some(server) => {
            let commands = server.commands();
            assert_eq!(commands.len(), 1, "{commands:?}");
            assert!(commands[0].starts_with("EHLO "), "{commands:?}");
        }
        None => {
            #[allow(clippy::print_stdout)]
            {
                println!("child-peak-rss-kib={}", peak_rss_kib());
            }
        }
    }
}

#[test]
fn an_endless_reply_line_keeps_the_client_process_under_64_mib() {
    let server = ScriptedServer::start(endless_line);
    let output = std::process::Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "hostile::an_endless_reply_line_is_a_protocol_error_naming_the_server",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_PORT, server.port.to_string())
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let peak: u64 = stdout
        .lines()
        .find_map(|line| line.split_once("child-peak-rss-kib=").map(|(_, peak)| peak))
        .unwrap_or_else(|| panic!("no peak in the child's output: {stdout}"))
        .trim()
        .parse()
        .expect("a number");
    #[allow(clippy::print_stdout)]
    {
        println!("the client's peak RSS against an endless reply line: {peak} KiB");
    }
    assert!(
        peak < RSS_BOUND_KIB,
        "the client reached {peak} KiB, over {RSS_BOUND_KIB} KiB"
    );
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn bytes_behind_the_starttls_220_abort_the_connection() {
    let (seen, after_220) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
    let server = ScriptedServer::start(move |conn| {
        conn.send("220 mitm.test ESMTP\r\n");
        conn.read_line();
        conn.send("250-mitm.test\r\n250-AUTH PLAIN\r\n250 STARTTLS\r\n");
        if conn.read_line().as_deref() != Some("STARTTLS") {
            return;
        }
        // The go-ahead and an injected reply in one write, as a man in the middle would.
        conn.send("220 2.0.0 go ahead\r\n250 injected-before-tls\r\n");
        let _ = seen.send(conn.read_to_end(1024 * 1024));
    });
    let mut settings = plain_settings(server.port);
    settings.tls = true;
    settings.tls_startup = TlsStartup::StartTls;
    let transport = transport_for(settings, Duration::from_secs(5));
    let error = send(&transport, &message_to(&["to@example.com"]), &anonymous())
        .await
        .expect_err("aborted");
    assert_eq!(error.kind(), Kind::Permanent, "{error}");
    let text = error.to_string();
    assert!(text.contains("behind its answer to STARTTLS"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", server.port)),
        "{text}"
    );
    drop(transport);
    // The client hung up without a TLS hello or any other byte (`read_to_end` returns
    // when the client closes).
    let rest = tokio::task::spawn_blocking(move || after_220.recv_timeout(Duration::from_secs(30)))
        .await
        .expect("the waiting task")
        .expect("the script saw the client close");
    assert!(rest.is_empty(), "the client sent {rest:?} after the 220");
    assert_eq!(server.commands().len(), 2, "{:?}", server.commands());
}

/// A pipelining server whose final reply comes after `delay`, counting deliveries.
fn late_final_reply(delay: Duration) -> impl Fn(&mut Conn) + Send + Sync + 'static {
    move |conn| {
        if !conn.open_plain(&["PIPELINING", "8BITMIME"]) {
            return;
        }
        for _ in 0..3 {
            conn.read_line();
        }
        conn.send("250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n");
        if conn.read_data().is_none() {
            return;
        }
        conn.delivered();
        std::thread::sleep(delay);
        conn.send("250 2.0.0 queued\r\n");
        conn.read_to_end(1024);
    }
}

#[tokio::test]
async fn a_final_reply_later_than_its_timeout_is_delivery_unknown() {
    let server = ScriptedServer::start(late_final_reply(Duration::from_secs(3)));
    let transport = transport_for(plain_settings(server.port), Duration::from_secs(1));
    let error = send(&transport, &message_to(&["to@example.com"]), &anonymous())
        .await
        .expect_err("unknown");
    assert_eq!(error.kind(), Kind::DeliveryUnknown, "{error}");
    assert!(error.is_delivery_unknown() && !error.is_transient());
    let text = error.to_string();
    assert!(text.contains("no final reply within 1000 ms"), "{text}");
    assert!(text.contains("same Message-ID"), "{text}");
    assert_eq!(server.deliveries(), 1);
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn the_final_reply_has_its_own_timeout_beyond_the_command_timeout() {
    // The server takes 2.5 s for its final reply; commands time out after 1 s.
    let server = ScriptedServer::start(late_final_reply(Duration::from_millis(2500)));
    let mut settings = plain_settings(server.port);
    settings.timeout_ms = 1_000;
    let transport = transport_for(settings, Duration::from_secs(10));
    let delivery = send(&transport, &message_to(&["to@example.com"]), &anonymous())
        .await
        .expect("sent");
    assert_eq!(delivery.reply, "250 2.0.0 queued");
    assert_eq!(server.deliveries(), 1);
}

#[tokio::test]
async fn a_drop_after_the_whole_body_is_delivery_unknown() {
    let server = ScriptedServer::start(|conn| {
        if !conn.open_plain(&["PIPELINING"]) {
            return;
        }
        for _ in 0..3 {
            conn.read_line();
        }
        conn.send("250 ok\r\n250 ok\r\n354 go ahead\r\n");
        if conn.read_data().is_some() {
            conn.delivered();
        }
        // Hang up without a final reply.
    });
    let transport = transport_for(plain_settings(server.port), Duration::from_secs(5));
    let error = send(&transport, &message_to(&["to@example.com"]), &anonymous())
        .await
        .expect_err("unknown");
    assert_eq!(error.kind(), Kind::DeliveryUnknown, "{error}");
    assert!(
        error
            .to_string()
            .contains("closed the connection before its final reply"),
        "{error}"
    );
    assert_eq!(server.deliveries(), 1);
}

#[tokio::test]
async fn a_drop_before_the_body_is_written_is_transient() {
    let server = ScriptedServer::start(|conn| {
        if !conn.open_plain(&[]) {
            return;
        }
        conn.read_line();
        conn.send("250 ok\r\n");
        conn.read_line();
        conn.send("250 ok\r\n");
        conn.read_line();
        conn.send("354 go ahead\r\n");
        // Hang up at once: the body (far larger than the socket buffers) cannot be written.
    });
    let transport = transport_for(plain_settings(server.port), Duration::from_secs(5));
    let body = "0123456789abcdef".repeat(1024 * 1024 / 2) + "\r\n";
    let message = lettre::Message::builder()
        .from(FROM.parse().expect("from"))
        .to("to@example.com".parse().expect("to"))
        .subject("large")
        .body(body)
        .expect("a message");
    let message = outgoing(&message, FROM, &["to@example.com"]);
    let error = send(&transport, &message, &anonymous())
        .await
        .expect_err("dropped");
    assert_eq!(error.kind(), Kind::Transient, "{error}");
    assert!(error.to_string().contains("the message data"), "{error}");
}

/// What a pipelining test server saw: the bytes that had arrived with `MAIL FROM`.
fn pipelining_server(
    advertise: bool,
    arrived_with_mail: Arc<Mutex<Vec<Vec<u8>>>>,
    data: Arc<Mutex<Option<Vec<u8>>>>,
) -> ScriptedServer {
    ScriptedServer::start(move |conn| {
        let extensions: &[&str] = if advertise { &["PIPELINING"] } else { &[] };
        if !conn.open_plain(extensions) {
            return;
        }
        let mut replies = Vec::new();
        loop {
            let Some(line) = conn.read_line() else { return };
            arrived_with_mail.lock().unwrap().push(conn.buffered());
            let reply = if line.starts_with("DATA") {
                "354 go ahead\r\n"
            } else if line.starts_with("RCPT TO:<refused") {
                "550 5.1.1 User unknown\r\n"
            } else {
                "250 ok\r\n"
            };
            replies.push(reply);
            // Pipelined: answer everything at once after DATA, in one packet.
            if !advertise || line.starts_with("DATA") {
                if !conn.send(&replies.concat()) {
                    return;
                }
                replies.clear();
            }
            if line.starts_with("DATA") {
                break;
            }
        }
        let body = conn.read_data();
        let received = body.is_some();
        // Recorded before the reply: the test reads it as soon as the client has its 250.
        *data.lock().unwrap() = body;
        if received {
            conn.delivered();
            conn.send("250 2.0.0 queued\r\n");
        }
        conn.read_to_end(1024);
    })
}

#[tokio::test]
async fn pipelining_sends_mail_rcpt_and_data_in_one_write_and_reads_replies_in_one_packet() {
    let arrived: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let data: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let server = pipelining_server(true, Arc::clone(&arrived), Arc::clone(&data));
    let transport = transport_for(plain_settings(server.port), Duration::from_secs(5));
    let delivery = send(
        &transport,
        &message_to(&["a@example.com", "b@example.com"]),
        &anonymous(),
    )
    .await
    .expect("sent");
    assert_eq!(delivery.reply, "250 2.0.0 queued");
    let commands = server.commands();
    let transaction: Vec<&str> = commands[1..].iter().map(String::as_str).collect();
    assert_eq!(
        transaction,
        [
            "MAIL FROM:<relay@example.com>",
            "RCPT TO:<a@example.com>",
            "RCPT TO:<b@example.com>",
            "DATA"
        ]
    );
    // When MAIL FROM was read, both RCPTs and DATA had arrived with it.
    assert_eq!(
        arrived.lock().unwrap()[0],
        b"RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
    );
    let body = data.lock().unwrap().clone().expect("the body");
    // Dot-stuffed on the wire.
    assert!(
        String::from_utf8_lossy(&body).contains("\r\n..a line with a leading dot\r\n"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(server.deliveries(), 1);
}

#[tokio::test]
async fn without_pipelining_each_command_waits_for_its_reply() {
    let arrived: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let data: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let server = pipelining_server(false, Arc::clone(&arrived), Arc::clone(&data));
    let transport = transport_for(plain_settings(server.port), Duration::from_secs(5));
    send(
        &transport,
        &message_to(&["a@example.com", "b@example.com"]),
        &anonymous(),
    )
    .await
    .expect("sent");
    // Nothing arrived behind any command: the client waited for each reply.
    let arrived = arrived.lock().unwrap();
    assert_eq!(arrived.len(), 4);
    assert!(arrived.iter().all(Vec::is_empty), "{arrived:?}");
    assert_eq!(server.deliveries(), 1);
}

#[tokio::test]
async fn a_refused_recipient_refuses_the_whole_message_pipelined_or_not() {
    for advertise in [true, false] {
        let arrived: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let data: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        let server = pipelining_server(advertise, Arc::clone(&arrived), Arc::clone(&data));
        let transport = transport_for(plain_settings(server.port), Duration::from_secs(5));
        // Bounded: a refusal retried on new connections would never end.
        let error = tokio::time::timeout(
            Duration::from_secs(30),
            send(
                &transport,
                &message_to(&["a@example.com", "refused@example.com", "c@example.com"]),
                &anonymous(),
            ),
        )
        .await
        .expect("the send ends")
        .expect_err("refused");
        assert_eq!(error.kind(), Kind::MessageRejected, "{error}");
        assert_eq!(server.connections(), 1, "a refusal is not retried");
        let text = error.to_string();
        assert!(
            text.contains("refused 1 of the message's 3 recipients"),
            "{text}"
        );
        assert!(
            text.contains("<refused@example.com>: 550 5.1.1 User unknown"),
            "{text}"
        );
        assert!(text.contains("sent to nobody"), "{text}");
        assert_eq!(error.server_reply(), Some("550 5.1.1 User unknown"));
        assert_eq!(server.deliveries(), 0, "pipelining {advertise}");
        drop(transport);
        if !advertise {
            // Without pipelining, DATA is never sent.
            assert!(
                !server.commands().iter().any(|command| command == "DATA"),
                "{:?}",
                server.commands()
            );
        }
    }
}

#[tokio::test]
async fn a_message_without_a_final_crlf_gets_one() {
    let arrived: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let data: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let server = pipelining_server(true, arrived, Arc::clone(&data));
    let transport = transport_for(plain_settings(server.port), Duration::from_secs(5));
    let mut message = simple_message(FROM, "to@example.com");
    let bytes = message.bytes.to_vec();
    message.bytes = bytes::Bytes::from(bytes.strip_suffix(b"\r\n").unwrap_or(&bytes).to_vec());
    send(&transport, &message, &anonymous())
        .await
        .expect("sent");
    let body = data.lock().unwrap().clone().expect("the body");
    assert!(body.ends_with(b"a small test message\r\n"), "{body:?}");
}

/// Exchange Online's reply to a fourth connection of one mailbox ("Changes in message store
/// and throttling for concurrent connections", MicrosoftDocs/SupportArticles-docs
/// `Exchange/ExchangeOnline/send-emails/smtp-submission-improvements.md`, as Exchange words
/// it today with the aka.ms link and its host).
const TOO_MANY_CONNECTIONS: &str = "432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information. [Hostname=DM4PR18MB4126.namprd18.prod.outlook.com]\r\n";

/// A relay that answers `MAIL FROM` on the connections `refuse` picks with Exchange's
/// `432 4.3.2`, and delivers on the others.
fn refusing_connections(refuse: impl Fn(usize) -> bool + Send + Sync + 'static) -> ScriptedServer {
    ScriptedServer::start(move |conn| {
        if !conn.open_plain(&[]) {
            return;
        }
        let Some(_mail) = conn.read_line() else {
            return;
        };
        if refuse(conn.number) {
            conn.send(TOO_MANY_CONNECTIONS);
            conn.read_to_end(1024);
            return;
        }
        conn.send("250 ok\r\n");
        conn.read_line();
        conn.send("250 ok\r\n");
        conn.read_line();
        conn.send("354 go ahead\r\n");
        if conn.read_data().is_some() {
            conn.delivered();
            conn.send("250 2.0.0 queued\r\n");
        }
        conn.read_to_end(1024);
    })
}

#[tokio::test]
async fn a_connection_refused_as_one_too_many_is_dropped_and_the_message_goes_on_another() {
    let server = refusing_connections(|number| number == 1);
    let transport =
        SmtpTransport::new(SmtpTransportConfig::new(plain_settings(server.port)).with_pool_size(3))
            .expect("a transport");

    let delivery = send(&transport, &message_to(&["to@example.com"]), &anonymous())
        .await
        .expect("sent on a second connection, not failed");

    assert!(delivery.reply.starts_with("250"), "{}", delivery.reply);
    assert_eq!(server.deliveries(), 1);
    assert_eq!(
        server.connections(),
        2,
        "the refused connection is not reused"
    );
}

#[tokio::test]
async fn refusals_as_too_many_connections_shrink_the_pool_and_end() {
    let server = refusing_connections(|_| true);
    let transport =
        SmtpTransport::new(SmtpTransportConfig::new(plain_settings(server.port)).with_pool_size(3))
            .expect("a transport");

    // Bounded: a pool that kept shrinking (or never stopped) would wait for a permit or
    // open connections forever.
    let error = tokio::time::timeout(
        Duration::from_secs(30),
        send(&transport, &message_to(&["to@example.com"]), &anonymous()),
    )
    .await
    .expect("the send ends once one connection is left")
    .expect_err("every connection is refused");

    assert_eq!(error.kind(), Kind::TooManyConnections, "{error}");
    assert!(error.is_transient(), "worth retrying later: {error}");
    assert!(
        error
            .remediation()
            .unwrap_or_default()
            .contains("fewer connections"),
        "{error}"
    );
    // Three connections, then the pool was down to one and the refusal ended the send.
    assert_eq!(server.connections(), 3);
    // The pool stays shrunk: the next send tries once.
    tokio::time::timeout(
        Duration::from_secs(30),
        send(&transport, &message_to(&["to@example.com"]), &anonymous()),
    )
    .await
    .expect("the second send ends too")
    .expect_err("refused again");
    assert_eq!(server.connections(), 4);
    assert_eq!(server.deliveries(), 0);
}

/// An ASCII message whose envelope has one ASCII and one non-ASCII recipient.
fn to_a_non_ascii_recipient() -> OutgoingMessage {
    let message = lettre::Message::builder()
        .from(FROM.parse().expect("from"))
        .to("to@example.com".parse().expect("to"))
        .subject("utf8")
        .body(String::from("hello\r\n"))
        .expect("a message");
    let mut outgoing = outgoing(&message, FROM, &["to@example.com"]);
    outgoing.envelope = mailroom_model::Envelope::new(
        address(FROM),
        vec![address("to@example.com"), address("jöran@example.com")],
    )
    .expect("an envelope");
    outgoing
}

#[tokio::test]
async fn a_non_ascii_recipient_goes_only_to_a_server_offering_smtputf8() {
    let without = scripted_relay(&["PIPELINING"], |_| {});
    let transport = transport_for(plain_settings(without.port), Duration::from_secs(5));
    let error = send(&transport, &to_a_non_ascii_recipient(), &anonymous())
        .await
        .expect_err("refused before MAIL FROM");
    assert_eq!(error.kind(), Kind::MessageRejected, "{error}");
    assert!(error.to_string().contains("SMTPUTF8"), "{error}");
    assert!(
        !without
            .commands()
            .iter()
            .any(|command| command.starts_with("MAIL")),
        "{:?}",
        without.commands()
    );

    let with = scripted_relay(&["PIPELINING", "SMTPUTF8"], |_| {});
    let transport = transport_for(plain_settings(with.port), Duration::from_secs(5));
    send(&transport, &to_a_non_ascii_recipient(), &anonymous())
        .await
        .expect("sent");
    assert!(
        with.commands()
            .contains(&"MAIL FROM:<relay@example.com> SMTPUTF8".to_owned()),
        "{:?}",
        with.commands()
    );
    assert_eq!(with.deliveries(), 1);
}

/// A pipelining relay that reads MAIL, RCPT and DATA for one recipient, answers them with
/// `replies` (fewer than three), and hangs up.
fn hanging_up_after(replies: &'static [&'static str]) -> ScriptedServer {
    ScriptedServer::start(move |conn| {
        if !conn.open_plain(&["PIPELINING"]) {
            return;
        }
        for _ in 0..3 {
            if conn.read_line().is_none() {
                return;
            }
        }
        conn.send(&replies.concat());
    })
}

/// Pipelined, a refused sender explains the replies that never came (the server may hang
/// up after refusing it); an accepted one does not, and the hang-up is the error.
#[tokio::test]
async fn a_hang_up_after_a_pipelined_refusal_reports_the_refusal() {
    const REFUSED: &str = "550 5.7.1 Sender address rejected: not owned by user\r\n";
    const REFUSALS: [&[&str]; 2] = [
        &[REFUSED],
        &[REFUSED, "503 5.5.1 Error: need MAIL command\r\n"],
    ];
    for replies in REFUSALS {
        let server = hanging_up_after(replies);
        let transport = transport_for(plain_settings(server.port), Duration::from_secs(5));
        let error = send(&transport, &message_to(&["to@example.com"]), &anonymous())
            .await
            .expect_err("refused");
        assert_eq!(
            error.server_reply(),
            Some(REFUSED.trim_end()),
            "{} replies: {error}",
            replies.len()
        );
    }
    for (replies, stage) in [
        (&["250 2.1.0 Sender OK\r\n"][..], "RCPT TO"),
        (
            &["250 2.1.0 Sender OK\r\n", "250 2.1.5 Recipient OK\r\n"][..],
            "DATA",
        ),
    ] {
        let server = hanging_up_after(replies);
        let transport = transport_for(plain_settings(server.port), Duration::from_secs(5));
        let error = send(&transport, &message_to(&["to@example.com"]), &anonymous())
            .await
            .expect_err("the server hung up");
        assert_eq!(error.kind(), Kind::Transient, "{error}");
        let text = error.to_string();
        assert!(
            text.contains(&format!("during {stage}")) && text.contains("closed the connection"),
            "{text}"
        );
        assert_eq!(server.deliveries(), 0);
    }
}
