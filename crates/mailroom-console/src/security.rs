//! Who may use the console: one-time login tokens, sessions with their CSRF tokens, and
//! the guard every request passes (the `Host` check, the session, the CSRF check on
//! `POST`, the security headers on every response).
//!
//! Tokens and session ids are 32 random bytes (hex). The maps are keyed by their SHA-256,
//! so looking one up reveals nothing through timing about a stored value, and the CSRF
//! comparison is constant-time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use mailroom::Clock;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::routes;
use crate::{ConsoleOptions, SESSION_COOKIE};

/// How long a login URL works (once).
pub const LOGIN_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Failed password logins allowed per minute (for every client together); past them the
/// login page refuses until the minute has passed.
pub const MAX_FAILED_LOGINS: usize = 5;

/// The largest form the console accepts (a test message's body is the largest field).
pub(crate) const MAX_FORM: usize = 256 * 1024;

/// The form field that carries the session's CSRF token.
pub(crate) const CSRF_FIELD: &str = "csrf";

/// The headers every response carries. No page runs a script; styles come from the
/// console's own stylesheet.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self' https: http://localhost:* http://127.0.0.1:*; frame-ancestors 'none'; base-uri 'none'";

/// 32 random bytes, hex.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The key a token is stored under.
fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal, in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    created: SystemTime,
    last_seen: SystemTime,
}

/// The session a request belongs to, for the handlers: the forms they render carry
/// `csrf`.
#[derive(Debug, Clone)]
pub(crate) struct SessionContext {
    /// The session's key (the SHA-256 of its id), to bind a sign-in to it.
    pub(crate) key: [u8; 32],
    /// The session's CSRF token.
    pub(crate) csrf: String,
}

/// The console's login tokens and sessions (in memory: a restart ends every session).
#[derive(Debug)]
pub(crate) struct Security {
    clock: Arc<dyn Clock>,
    lifetime: Duration,
    idle: Duration,
    secure_cookie: bool,
    hosts: Vec<String>,
    login_tokens: Mutex<HashMap<[u8; 32], SystemTime>>,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    failed_logins: Mutex<Vec<SystemTime>>,
}

impl Security {
    pub(crate) fn new(options: &ConsoleOptions) -> Self {
        let port = options.listen.port();
        let mut hosts = vec![match options.listen.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]:{port}"),
            ip => format!("{ip}:{port}"),
        }];
        if options.listen.ip().is_loopback() {
            // What a loopback redirect URI names (Entra's is `http://localhost`).
            hosts.push(format!("localhost:{port}"));
            hosts.push(format!("127.0.0.1:{port}"));
        }
        for name in &options.host_names {
            hosts.push(format!("{}:{port}", name.to_ascii_lowercase()));
        }
        Self {
            clock: Arc::clone(&options.clock),
            lifetime: options.session_lifetime,
            idle: options.idle_timeout,
            secure_cookie: options.tls.is_some(),
            hosts,
            login_tokens: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            failed_logins: Mutex::new(Vec::new()),
        }
    }

    /// Whether `host` (a `Host` header) names this console.
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.hosts.contains(&host)
    }

    /// A new one-time login token.
    pub(crate) fn issue_login_token(&self) -> String {
        let token = random_token();
        let now = self.clock.now();
        let mut tokens = self.login_tokens.lock().expect("login tokens");
        tokens.retain(|_, expires| *expires > now);
        tokens.insert(digest(&token), now + LOGIN_TOKEN_LIFETIME);
        token
    }

    /// Exchanges a login token (once) for a new session; returns the session id.
    pub(crate) fn redeem_login_token(&self, token: &str) -> Option<String> {
        let now = self.clock.now();
        let expires = self
            .login_tokens
            .lock()
            .expect("login tokens")
            .remove(&digest(token))?;
        if expires <= now {
            return None;
        }
        Some(self.start_session())
    }

    /// Whether a password may be tried now: fewer than [`MAX_FAILED_LOGINS`] failures in
    /// the last minute.
    pub(crate) fn may_try_password(&self) -> bool {
        let now = self.clock.now();
        let mut failed = self.failed_logins.lock().expect("failed logins");
        failed.retain(|at| *at + Duration::from_secs(60) > now);
        failed.len() < MAX_FAILED_LOGINS
    }

    /// Records a failed password.
    pub(crate) fn password_failed(&self) {
        let now = self.clock.now();
        self.failed_logins.lock().expect("failed logins").push(now);
    }

    /// A new session; returns its id (the cookie's value).
    pub(crate) fn start_session(&self) -> String {
        let id = random_token();
        let now = self.clock.now();
        let mut sessions = self.sessions.lock().expect("sessions");
        sessions.retain(|_, session| self.alive(session, now));
        sessions.insert(
            digest(&id),
            Session {
                csrf: random_token(),
                created: now,
                last_seen: now,
            },
        );
        id
    }

    fn alive(&self, session: &Session, now: SystemTime) -> bool {
        now < session.created + self.lifetime && now < session.last_seen + self.idle
    }

    /// The live session with this id, touched; an expired one is removed.
    fn session(&self, id: &str) -> Option<SessionContext> {
        let now = self.clock.now();
        let key = digest(id);
        let mut sessions = self.sessions.lock().expect("sessions");
        let session = sessions.get_mut(&key)?;
        if !self.alive(session, now) {
            sessions.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(SessionContext {
            key,
            csrf: session.csrf.clone(),
        })
    }

    /// Ends the session with this key.
    pub(crate) fn end_session(&self, key: &[u8; 32]) {
        self.sessions.lock().expect("sessions").remove(key);
    }

    /// Whether the session with this key is alive (a sign-in callback checks that the
    /// session that started it still is).
    pub(crate) fn session_alive(&self, key: &[u8; 32]) -> bool {
        let now = self.clock.now();
        self.sessions
            .lock()
            .expect("sessions")
            .get(key)
            .is_some_and(|session| self.alive(session, now))
    }

    /// The `Set-Cookie` value that gives a browser the session `id`.
    pub(crate) fn session_cookie(&self, id: &str) -> String {
        format!(
            "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{}",
            if self.secure_cookie { "; Secure" } else { "" }
        )
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub(crate) fn cleared_cookie(&self) -> String {
        format!(
            "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
            if self.secure_cookie { "; Secure" } else { "" }
        )
    }
}

/// The session cookie's value, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == SESSION_COOKIE).then_some(value)
        })
}

/// Paths open without a session: the login page and the stylesheet.
fn is_public(request: &Request) -> bool {
    let path = request.uri().path();
    path == "/login" || path == routes::STYLESHEET || path == routes::SCRIPT
}

/// A provider's redirect back to the console: a GET with `state` (and a `code` or an
/// `error`), on the registered redirect URI's path, whatever it is. No console page uses
/// a `state` parameter. A `SameSite=Strict` cookie is not sent on this cross-site
/// navigation, so it is bound to its session through its `state` instead, and one that
/// names no sign-in under way is refused.
fn is_callback(request: &Request) -> bool {
    let query = request.uri().query().unwrap_or("");
    request.method() == Method::GET
        && url::form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == "state")
}

/// What the guard decided about a request.
enum Verdict {
    /// On to the route's handler (with the session, when the path needs one).
    Pass,
    /// This response instead: a refusal, a redirect to the login, or the sign-in
    /// callback's outcome.
    Answer(Response),
}

fn refuse(status: StatusCode, message: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

/// The guard around every route.
pub(crate) async fn guard(
    State(state): State<Arc<routes::State>>,
    mut request: Request,
    next: Next,
) -> Response {
    let mut response = match check(&state, &mut request).await {
        Verdict::Pass => next.run(request).await,
        Verdict::Answer(response) => response,
    };
    let headers = response.headers_mut();
    if state.options.tls.is_some() {
        // Browsers that reached the console over TLS keep to it.
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Checks a request before any handler sees it.
async fn check(state: &routes::State, request: &mut Request) -> Verdict {
    match checked(state, request).await {
        Ok(()) => Verdict::Pass,
        Err(answer) => Verdict::Answer(answer),
    }
}

/// `Err` is the answer instead of the route's handler.
async fn checked(state: &routes::State, request: &mut Request) -> Result<(), Response> {
    let security = &state.security;
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("");
    if !security.host_allowed(host) {
        // RFC 9110 15.5.20: the request was directed at a server that will not answer
        // for this authority (a DNS-rebinding page, a proxy's wrong name).
        return Err(refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "this console answers only to the address it listens on; open it by that address",
        ));
    }
    if is_public(request) {
        return Ok(());
    }
    if is_callback(request) {
        return Err(crate::signin::callback(state, request.uri()).await);
    }
    let session = session_cookie(request.headers()).and_then(|id| security.session(id));
    let Some(session) = session else {
        if request.method() == Method::GET || request.method() == Method::HEAD {
            return Err(Redirect::to("/login").into_response());
        }
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "no session: log in to the console again, then repeat what you did",
        ));
    };
    match *request.method() {
        Method::GET | Method::HEAD => {}
        Method::POST => {
            let body = std::mem::replace(request.body_mut(), Body::empty());
            let bytes = to_bytes(body, MAX_FORM).await.map_err(|_| {
                refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the form is larger than the console accepts (256 KiB)",
                )
            })?;
            let token = url::form_urlencoded::parse(&bytes)
                .find(|(name, _)| name == CSRF_FIELD)
                .map(|(_, value)| value.into_owned())
                .unwrap_or_default();
            if !constant_time_eq(token.as_bytes(), session.csrf.as_bytes()) {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    "the form did not come from this console's page (its CSRF token is missing or stale): reload the page and submit it again",
                ));
            }
            *request.body_mut() = Body::from(bytes);
        }
        _ => {
            return Err(refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "the console takes GET and POST only",
            ));
        }
    }
    request.extensions_mut().insert(session);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailroom::ManualClock;

    fn security(clock: Arc<ManualClock>) -> Security {
        Security::new(&ConsoleOptions {
            clock,
            session_lifetime: Duration::from_secs(100),
            idle_timeout: Duration::from_secs(30),
            ..ConsoleOptions::default()
        })
    }

    #[test]
    fn a_login_token_works_once_and_not_after_its_lifetime() {
        let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
        let security = security(Arc::clone(&clock));
        let token = security.issue_login_token();
        assert!(security.redeem_login_token("not-the-token").is_none());
        let id = security.redeem_login_token(&token).expect("first use");
        assert!(security.session(&id).is_some());
        assert!(security.redeem_login_token(&token).is_none(), "second use");

        let late = security.issue_login_token();
        clock.advance(LOGIN_TOKEN_LIFETIME);
        assert!(security.redeem_login_token(&late).is_none());
        let in_time = security.issue_login_token();
        clock.advance(LOGIN_TOKEN_LIFETIME - Duration::from_secs(1));
        assert!(security.redeem_login_token(&in_time).is_some());
    }

    #[test]
    fn a_session_ends_when_idle_and_at_its_lifetime() {
        let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
        let security = security(Arc::clone(&clock));
        let idle = security.start_session();
        clock.advance(Duration::from_secs(29));
        assert!(security.session(&idle).is_some(), "29 s idle");
        clock.advance(Duration::from_secs(30));
        assert!(security.session(&idle).is_none(), "30 s idle");

        let busy = security.start_session();
        let key = digest(&busy);
        for _ in 0..4 {
            clock.advance(Duration::from_secs(20));
            assert!(security.session(&busy).is_some());
        }
        assert!(security.session_alive(&key));
        clock.advance(Duration::from_secs(20));
        assert!(security.session(&busy).is_none(), "100 s after its login");
        assert!(!security.session_alive(&key));
    }

    #[test]
    fn hosts_are_the_listen_address_and_on_loopback_localhost() {
        let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
        let security = security(clock);
        assert!(security.host_allowed("127.0.0.1:8470"));
        assert!(security.host_allowed("LOCALHOST:8470"));
        assert!(!security.host_allowed("localhost:8471"));
        assert!(!security.host_allowed("attacker.example:8470"));
        assert!(!security.host_allowed("127.0.0.1"));
        assert!(!security.host_allowed(""));
    }

    #[test]
    fn the_csrf_comparison_needs_every_byte() {
        assert!(constant_time_eq(b"abcd", b"abcd"));
        assert!(!constant_time_eq(b"abcd", b"abce"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_with_tls() {
        let clock = Arc::new(ManualClock::new(SystemTime::UNIX_EPOCH));
        let plain = security(clock);
        let cookie = plain.session_cookie("abc");
        assert_eq!(
            cookie,
            "mailroom_console=abc; Path=/; HttpOnly; SameSite=Strict"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("other=1; mailroom_console=abc; x=2"),
        );
        assert_eq!(session_cookie(&headers), Some("abc"));
    }
}
