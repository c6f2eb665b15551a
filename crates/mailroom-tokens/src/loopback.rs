//! The loopback redirect listener of a browser sign-in (RFC 8252): 127.0.0.1 on a random
//! port, path `/callback`, one redirect accepted, then closed.

use std::convert::Infallible;
use std::net::SocketAddr;
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
    listener: TcpListener,
    address: SocketAddr,
}

impl LoopbackListener {
    /// Binds 127.0.0.1 on a port the system chooses.
    pub(crate) async fn bind() -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        Ok(Self { listener, address })
    }

    /// The redirect URI to register with the authorization request.
    pub(crate) fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.address.port())
    }

    /// Serves until one redirect to `/callback` arrives (other paths get 404), or the time
    /// runs out (`None`). The listener closes when this returns.
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
            tokio::select! {
                outcome = outcomes.recv() => return outcome,
                () = &mut deadline => return None,
                accepted = self.listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let sender = sender.clone();
                    let expected_state = expected_state.clone();
                    // Each connection is served on its own task, so a browser's idle
                    // speculative connection cannot hold up the real redirect.
                    tokio::spawn(async move {
                        let service = service_fn(move |request| {
                            handle(request, expected_state.clone(), sender.clone())
                        });
                        let _ = http1::Builder::new()
                            .keep_alive(false)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        }
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
    expected_state: Arc<str>,
    outcomes: mpsc::Sender<CallbackOutcome>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != "/callback" {
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
