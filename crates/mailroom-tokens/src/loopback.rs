//! The loopback redirect listener of a browser sign-in (RFC 8252): 127.0.0.1 and ::1 on
//! one random port (RFC 8252 section 7.3 recommends trying both; a browser may resolve
//! `localhost` to either), the app registration's redirect path, one redirect accepted,
//! then closed.

use std::convert::Infallible;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// How long the browser's page waits for mailroom to finish the sign-in (exchange the
/// code, check who signed in) before it says it cannot tell.
const VERDICT_WAIT: Duration = Duration::from_secs(120);

/// How a redirect ended the sign-in. A redirect whose `state` is not this sign-in's (a
/// forged or stale one) is answered 400 and ignored: the sign-in goes on waiting.
#[derive(Debug)]
pub(crate) enum CallbackOutcome {
    /// The authorization code, and where to send the verdict the browser's page shows.
    Code(String, VerdictSender),
    /// The provider redirected with `error=` (e.g. `access_denied`).
    Denied {
        error: String,
        description: Option<String>,
    },
    /// Neither a code nor an error.
    Incomplete,
}

/// What the browser's page says once mailroom has finished with the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Signed in as this address.
    SignedIn(String),
    /// Refused: why, and what to do.
    Refused(String),
}

/// Sends the verdict to the browser's waiting page.
#[derive(Debug)]
pub(crate) struct VerdictSender(oneshot::Sender<Verdict>);

impl VerdictSender {
    /// Shows `verdict` in the browser (nothing happens if the browser went away).
    pub(crate) fn send(self, verdict: Verdict) {
        let _ = self.0.send(verdict);
    }
}

/// A bound listener waiting for the browser's redirect.
#[derive(Debug)]
pub(crate) struct LoopbackListener {
    ipv4: TcpListener,
    /// `None` where this machine has no IPv6 loopback (or the port is taken there).
    ipv6: Option<TcpListener>,
    port: u16,
    path: Arc<str>,
}

/// How often a sign-in tries for a port free on both 127.0.0.1 and ::1.
const BIND_ATTEMPTS: usize = 8;

impl LoopbackListener {
    /// Binds 127.0.0.1 on a port the system chooses and ::1 on the same port (if no
    /// attempt finds one free on both, 127.0.0.1 alone); redirects are served at `path`.
    pub(crate) async fn bind(path: &str) -> std::io::Result<Self> {
        Self::bind_with(path, |port| {
            TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port)))
        })
        .await
    }

    /// [`LoopbackListener::bind`], binding ::1 on a port with `bind_ipv6` (which a test
    /// replaces to stand for a machine without IPv6 loopback, or with the port taken).
    async fn bind_with<B, F>(path: &str, bind_ipv6: B) -> std::io::Result<Self>
    where
        B: Fn(u16) -> F,
        F: std::future::Future<Output = std::io::Result<TcpListener>>,
    {
        let path: Arc<str> = Arc::from(if path.is_empty() { "/" } else { path });
        let mut fallback = None;
        for _ in 0..BIND_ATTEMPTS {
            let ipv4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
            let port = ipv4.local_addr()?.port();
            match bind_ipv6(port).await {
                Ok(ipv6) => {
                    return Ok(Self {
                        ipv4,
                        ipv6: Some(ipv6),
                        port,
                        path,
                    });
                }
                // No IPv6 loopback on this machine: 127.0.0.1 is all there is.
                Err(error) if error.kind() == std::io::ErrorKind::AddrNotAvailable => {
                    return Ok(Self {
                        ipv4,
                        ipv6: None,
                        port,
                        path,
                    });
                }
                // The port is taken on ::1: try another.
                Err(_) => fallback = Some((ipv4, port)),
            }
        }
        let (ipv4, port) = fallback.expect("at least one attempt was made");
        tracing::debug!(
            port,
            "no port was free on both 127.0.0.1 and ::1; listening on 127.0.0.1 only"
        );
        Ok(Self {
            ipv4,
            ipv6: None,
            port,
            path,
        })
    }

    /// The port both addresses listen on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// True when ::1 listens too.
    #[cfg(test)]
    pub(crate) fn listens_on_ipv6(&self) -> bool {
        self.ipv6.is_some()
    }

    /// Serves until one redirect to the path arrives (other paths get 404), or the time
    /// runs out (`None`). The listeners close when this returns.
    pub(crate) async fn wait(
        self,
        expected_state: &str,
        timeout: Duration,
    ) -> Option<CallbackOutcome> {
        let (sender, mut outcomes) = mpsc::channel::<CallbackOutcome>(4);
        let expected_state: Arc<str> = Arc::from(expected_state);
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            let accepted = tokio::select! {
                outcome = outcomes.recv() => return outcome,
                () = &mut deadline => return None,
                accepted = self.ipv4.accept() => accepted,
                accepted = accept_ipv6(&self.ipv6) => accepted,
            };
            let Ok((stream, _)) = accepted else { continue };
            let sender = sender.clone();
            let expected_state = expected_state.clone();
            let path = self.path.clone();
            // Each connection is served on its own task, so a browser's idle speculative
            // connection cannot hold up the real redirect.
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    handle(
                        request,
                        path.clone(),
                        expected_state.clone(),
                        sender.clone(),
                    )
                });
                let _ = http1::Builder::new()
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

/// Accepts on `listener`, or never when there is none.
async fn accept_ipv6(
    listener: &Option<TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

fn page(status: StatusCode, title: &str, text: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>mailroom: {title}</title></head>\
         <body style=\"font-family:sans-serif;margin:3em\"><h1>{title}</h1><p>{text}</p></body></html>",
        title = escape(title),
        text = escape(text)
    );
    Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("a static response builds")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn handle(
    request: Request<Incoming>,
    path: Arc<str>,
    expected_state: Arc<str>,
    outcomes: mpsc::Sender<CallbackOutcome>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != &*path {
        return Ok(page(
            StatusCode::NOT_FOUND,
            "Not found",
            "This address only receives the sign-in redirect.",
        ));
    }
    let mut code = None;
    let mut state = None;
    let mut error = None;
    let mut description = None;
    for (name, value) in
        url::form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
    {
        match name.as_ref() {
            "code" => code = Some(value.into_owned()),
            "state" => state = Some(value.into_owned()),
            "error" => error = Some(value.into_owned()),
            "error_description" => description = Some(value.into_owned()),
            _ => {}
        }
    }
    if state.as_deref() != Some(&*expected_state) {
        // Not this sign-in's redirect (forged, or from an older attempt): refused, and the
        // sign-in in progress goes on waiting for its own.
        tracing::warn!("a sign-in redirect with a wrong state was refused");
        return Ok(page(
            StatusCode::BAD_REQUEST,
            "Not this sign-in",
            "This response does not belong to the sign-in mailroom is waiting for, so it was ignored. If you started a new sign-in, finish that one.",
        ));
    }
    if let Some(code) = code.filter(|_| error.is_none()) {
        let (verdict_tx, verdict_rx) = oneshot::channel();
        if outcomes
            .send(CallbackOutcome::Code(code, VerdictSender(verdict_tx)))
            .await
            .is_err()
        {
            return Ok(page(
                StatusCode::GONE,
                "Sign-in not completed",
                "mailroom is no longer waiting for this sign-in. Start it again.",
            ));
        }
        let response = match tokio::time::timeout(VERDICT_WAIT, verdict_rx).await {
            Ok(Ok(Verdict::SignedIn(address))) => page(
                StatusCode::OK,
                "Signed in",
                &format!("Signed in as {address}. You may close this window."),
            ),
            Ok(Ok(Verdict::Refused(reason))) => page(
                StatusCode::FORBIDDEN,
                "Sign-in refused",
                &format!("mailroom refused this sign-in: {reason}"),
            ),
            _ => page(
                StatusCode::OK,
                "Sign-in not confirmed",
                "mailroom did not confirm the sign-in; see mailroom for the result.",
            ),
        };
        return Ok(response);
    }
    let (outcome, response) = if let Some(error) = error {
        let text = format!(
            "The provider answered {error}{}. You may close this window.",
            description
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
        (
            CallbackOutcome::Denied { error, description },
            page(StatusCode::OK, "Sign-in not completed", &text),
        )
    } else {
        (
            CallbackOutcome::Incomplete,
            page(
                StatusCode::BAD_REQUEST,
                "Sign-in incomplete",
                "The redirect carried neither a code nor an error.",
            ),
        )
    };
    let _ = outcomes.send(outcome).await;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binds with ::1 standing for a machine whose ::1 answers `ipv6(attempt)` (from 0):
    /// an error, or (`None`) a listener, stood for by one on 127.0.0.1. Returns the
    /// listener and how many times ::1 was tried.
    async fn bind_where_ipv6(
        ipv6: impl Fn(usize) -> Option<std::io::ErrorKind>,
    ) -> (LoopbackListener, usize) {
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let listener = LoopbackListener::bind_with("/", |_port| {
            let refusal = ipv6(attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
            async move {
                match refusal {
                    Some(kind) => Err(std::io::Error::from(kind)),
                    None => TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await,
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(listener.port(), listener.ipv4.local_addr().unwrap().port());
        (listener, attempts.into_inner())
    }

    #[tokio::test]
    async fn a_port_taken_on_ipv6_is_tried_again_and_no_ipv6_loopback_is_not() {
        use std::io::ErrorKind;
        // Taken on the first port and free on the next: both addresses, on the next.
        let (listener, attempts) =
            bind_where_ipv6(|attempt| (attempt == 0).then_some(ErrorKind::AddrInUse)).await;
        assert_eq!(attempts, 2);
        assert!(listener.listens_on_ipv6());
        // No IPv6 loopback on the machine: 127.0.0.1 alone, without trying other ports.
        let (listener, attempts) = bind_where_ipv6(|_| Some(ErrorKind::AddrNotAvailable)).await;
        assert_eq!(attempts, 1);
        assert!(!listener.listens_on_ipv6());
        // Taken on every port tried: 127.0.0.1 alone, after every attempt.
        let (listener, attempts) = bind_where_ipv6(|_| Some(ErrorKind::AddrInUse)).await;
        assert_eq!(attempts, BIND_ATTEMPTS);
        assert!(!listener.listens_on_ipv6());
    }

    /// A browser may resolve `localhost` to ::1: the listener answers there too, on the
    /// same port (RFC 8252 section 7.3), where the machine has an IPv6 loopback.
    #[tokio::test]
    async fn the_listener_answers_on_ipv6_loopback_too() {
        let ipv6_available = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).await.is_ok();
        let listener = LoopbackListener::bind("/").await.unwrap();
        assert_eq!(listener.listens_on_ipv6(), ipv6_available);
        let port = listener.port();
        let host = if ipv6_available { "[::1]" } else { "127.0.0.1" };
        let request = tokio::spawn(async move {
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap()
                .get(format!(
                    "http://{host}:{port}/?code=the-code&state=the-state"
                ))
                .send()
                .await
        });
        match listener.wait("the-state", Duration::from_secs(20)).await {
            Some(CallbackOutcome::Code(code, verdict)) => {
                assert_eq!(code, "the-code");
                verdict.send(Verdict::SignedIn("sa@contoso.example".to_owned()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }

    #[tokio::test]
    async fn only_the_registered_path_ends_the_wait() {
        let listener = LoopbackListener::bind("/mailroom").await.unwrap();
        let port = listener.port();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let requests = tokio::spawn(async move {
            let other = client
                .get(format!("http://127.0.0.1:{port}/?code=x&state=s"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            let denied = client
                .get(format!(
                    "http://127.0.0.1:{port}/mailroom?error=access_denied&state=s"
                ))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            (other, denied)
        });
        let outcome = listener.wait("s", Duration::from_secs(20)).await;
        assert!(
            matches!(outcome, Some(CallbackOutcome::Denied { .. })),
            "{outcome:?}"
        );
        assert_eq!(requests.await.unwrap(), (404, 200));
    }
}
