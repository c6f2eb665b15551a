//! App registrations the authority knows, and the provider's rules for them: Entra's
//! redirect URI matching (MicrosoftDocs/entra-docs `docs/identity-platform/reply-url.md`:
//! the port of a loopback URI is ignored, host and path match exactly, a URI without a
//! path is `/`, `[::1]` is not supported), single-tenant apps at their tenant's endpoints
//! only (`AADSTS50194`), no secret from a public client (`AADSTS700025`); Google's Desktop
//! app clients, which accept a loopback IP redirect (or `localhost`) on any port without
//! registration ("OAuth 2.0 for iOS & Desktop Apps",
//! https://developers.google.com/identity/protocols/oauth2/native-app#redirect-uri_loopback)
//! and need their client secret.
//!
//! A client id nobody registered is served as before (any redirect to a loopback
//! address, any tenant, any secret), so tests that do not care about registrations need
//! none; a registered client is held to every rule.

use std::collections::HashMap;

use super::{
    Authority, AuthorizeOutcome, JsonReply, Style, client_secret, google_error_body,
    microsoft_error_body,
};

/// Who may sign in to a Microsoft-style app ("Supported account types" in the portal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// "Accounts in this organizational directory only" (the portal's default): only the
    /// tenant's own endpoints (its id or a verified domain) serve it.
    SingleTenant,
    /// "Accounts in any organizational directory": `organizations` and `common` too.
    MultiTenant,
}

/// An app registered with the sandbox, as a person registers it with the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRegistration {
    /// Which provider's rules apply.
    pub style: Style,
    /// The application (client) id.
    pub client_id: String,
    /// The redirect URIs as registered. Microsoft style: matched with Entra's rules.
    /// Google style: exact matches, besides the loopback IP URIs a Desktop app client
    /// accepts on its own.
    pub redirect_uris: Vec<String>,
    /// Microsoft style: who may sign in.
    pub audience: Audience,
    /// The client secret: Microsoft style `None` is a public client (a secret presented
    /// is refused); Google style, the secret the token endpoint requires.
    pub client_secret: Option<String>,
    /// Google style: a Desktop app client.
    pub desktop: bool,
}

impl ClientRegistration {
    /// A Microsoft-style public client ("Mobile and desktop applications" platform,
    /// "Allow public client flows" on) with these redirect URIs.
    pub fn microsoft_public(client_id: &str, redirect_uris: &[&str], audience: Audience) -> Self {
        Self {
            style: Style::Microsoft,
            client_id: client_id.to_owned(),
            redirect_uris: redirect_uris.iter().map(|uri| (*uri).to_owned()).collect(),
            audience,
            client_secret: None,
            desktop: false,
        }
    }

    /// A Google-style Desktop app client with its secret.
    pub fn google_desktop(client_id: &str, client_secret: &str) -> Self {
        Self {
            style: Style::Google,
            client_id: client_id.to_owned(),
            redirect_uris: Vec::new(),
            audience: Audience::MultiTenant,
            client_secret: Some(client_secret.to_owned()),
            desktop: true,
        }
    }
}

/// The tenants that are not one directory.
const MULTI_TENANT_NAMES: &[&str] = &["organizations", "common", "consumers"];

/// Entra's redirect URI match: scheme, host and path exactly (an empty path is `/`), the
/// port too unless the registered URI is a loopback one (`localhost` or `127.0.0.1`;
/// `[::1]` is not supported at all).
pub(crate) fn entra_redirect_matches(registered: &str, requested: &str) -> bool {
    let (Ok(registered), Ok(requested)) = (url::Url::parse(registered), url::Url::parse(requested))
    else {
        return false;
    };
    let host = |url: &url::Url| url.host_str().map(str::to_ascii_lowercase);
    if registered.scheme() != requested.scheme() || host(&registered) != host(&requested) {
        return false;
    }
    let loopback = match registered.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(_)) | None => return false,
    };
    if !loopback && registered.port_or_known_default() != requested.port_or_known_default() {
        return false;
    }
    // `url` already turns an empty path into `/`; paths are case-sensitive.
    registered.path() == requested.path() && registered.query() == requested.query()
}

/// A Google Desktop app client's own redirect URIs: the loopback IP address (or
/// `localhost`) over http, any port.
fn google_desktop_redirect(requested: &str) -> bool {
    let Ok(url) = url::Url::parse(requested) else {
        return false;
    };
    url.scheme() == "http"
        && match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            None => false,
        }
}

/// Why the authority refuses a registered client's request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    /// Shown in the browser (the authorize endpoint cannot redirect).
    Page { status: u16, message: String },
    /// A token endpoint's JSON error.
    Json(JsonReply),
}

impl Refusal {
    pub(crate) fn page(self) -> AuthorizeOutcome {
        match self {
            Refusal::Page { status, message } => AuthorizeOutcome::ErrorPage { status, message },
            Refusal::Json(reply) => AuthorizeOutcome::ErrorPage {
                status: reply.status,
                message: reply.body["error_description"]
                    .as_str()
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            },
        }
    }

    pub(crate) fn json(self) -> JsonReply {
        match self {
            Refusal::Json(reply) => reply,
            Refusal::Page { status, message } => JsonReply {
                status,
                body: google_error_body("invalid_request", &message),
            },
        }
    }
}

fn microsoft(status: u16, error: &str, code: u32, text: &str) -> Refusal {
    Refusal::Json(JsonReply {
        status,
        body: microsoft_error_body(error, code, text),
    })
}

/// What a request presents to be checked against a registration.
#[derive(Debug, Default)]
pub(crate) struct Presented<'a> {
    /// The tenant in the endpoint's path (Microsoft style).
    pub(crate) tenant: Option<&'a str>,
    /// The redirect URI, where the request carries one.
    pub(crate) redirect_uri: Option<&'a str>,
    /// The client secret, where the request carries one.
    pub(crate) client_secret: Option<String>,
    /// The request is the authorize endpoint's (no client authentication there).
    pub(crate) authorize: bool,
}

impl<'a> Presented<'a> {
    /// A token or device endpoint request's tenant, redirect URI and secret.
    pub(crate) fn token(
        tenant: Option<&'a str>,
        form: &'a HashMap<String, String>,
        basic: Option<&(String, String)>,
    ) -> Self {
        Self {
            tenant,
            redirect_uri: form.get("redirect_uri").map(String::as_str),
            client_secret: client_secret(form, basic),
            authorize: false,
        }
    }
}

impl Authority {
    /// Registers `client` (replacing a registration of the same style and id): from now
    /// on its requests are held to the provider's rules.
    pub fn register_client(&self, client: ClientRegistration) {
        self.lock()
            .clients
            .insert((client.style, client.client_id.clone()), client);
    }

    /// Checks a request of `client_id` against its registration, if it has one.
    pub(crate) fn check_registration(
        &self,
        style: Style,
        client_id: &str,
        presented: &Presented<'_>,
    ) -> Result<(), Refusal> {
        let (registration, tenant_id) = {
            let state = self.lock();
            match state.clients.get(&(style, client_id.to_owned())) {
                Some(registration) => (registration.clone(), state.tenant_id.clone()),
                None => return Ok(()),
            }
        };
        match style {
            Style::Microsoft => check_microsoft(&registration, &tenant_id, presented),
            Style::Google => check_google(&registration, presented),
        }
    }
}

fn check_microsoft(
    registration: &ClientRegistration,
    tenant_id: &str,
    presented: &Presented<'_>,
) -> Result<(), Refusal> {
    let client_id = &registration.client_id;
    if let Some(tenant) = presented.tenant {
        let multi = MULTI_TENANT_NAMES
            .iter()
            .any(|name| tenant.eq_ignore_ascii_case(name));
        if multi && registration.audience == Audience::SingleTenant {
            return Err(microsoft(
                400,
                "invalid_request",
                50194,
                &format!(
                    "Application '{client_id}'(mailroom) is not configured as a multi-tenant application. Usage of the /{tenant} endpoint is not supported for such applications created after '10/15/2018'. Use a tenant-specific endpoint or configure the application to be multi-tenant."
                ),
            ));
        }
        if !multi && !tenant.eq_ignore_ascii_case(tenant_id) {
            return Err(microsoft(
                400,
                "invalid_request",
                90002,
                &format!(
                    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
                ),
            ));
        }
    }
    if let Some(redirect_uri) = presented.redirect_uri {
        if !registration
            .redirect_uris
            .iter()
            .any(|registered| entra_redirect_matches(registered, redirect_uri))
        {
            let text = format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured for the application '{client_id}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix this."
            );
            return Err(if presented.authorize {
                Refusal::Page {
                    status: 400,
                    message: format!("AADSTS50011: {text}"),
                }
            } else {
                microsoft(400, "invalid_request", 50011, &text)
            });
        }
    }
    if !presented.authorize {
        match (&registration.client_secret, &presented.client_secret) {
            (None, Some(_)) => {
                return Err(microsoft(
                    401,
                    "invalid_client",
                    700025,
                    "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
                ));
            }
            (Some(expected), presented) if presented.as_ref() != Some(expected) => {
                return Err(microsoft(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_google(
    registration: &ClientRegistration,
    presented: &Presented<'_>,
) -> Result<(), Refusal> {
    if let Some(redirect_uri) = presented.redirect_uri {
        let allowed = (registration.desktop && google_desktop_redirect(redirect_uri))
            || registration.redirect_uris.iter().any(|r| r == redirect_uri);
        if !allowed {
            let message = format!(
                "Error 400: redirect_uri_mismatch. You can't sign in to this app because it doesn't comply with Google's OAuth 2.0 policy. If you're the app developer, register the redirect URI in the Google Cloud Console. Request details: redirect_uri={redirect_uri}"
            );
            return Err(if presented.authorize {
                Refusal::Page {
                    status: 400,
                    message,
                }
            } else {
                Refusal::Json(JsonReply {
                    status: 400,
                    body: google_error_body("redirect_uri_mismatch", "Bad Request"),
                })
            });
        }
    }
    if !presented.authorize
        && registration.client_secret.is_some()
        && presented.client_secret != registration.client_secret
    {
        return Err(Refusal::Json(JsonReply {
            status: 401,
            body: google_error_body("invalid_client", "Unauthorized"),
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of MicrosoftDocs/entra-docs `docs/identity-platform/reply-url.md`
    /// ("Localhost exceptions"): the port is ignored, the path is not.
    #[test]
    fn entra_matching_follows_the_reply_url_page() {
        for (registered, requested, expected) in [
            (
                "http://localhost/MyApp",
                "http://localhost:1234/MyApp",
                true,
            ),
            (
                "http://localhost/MyApp",
                "http://localhost:8080/MyApp",
                true,
            ),
            (
                "http://localhost/MyWebApp",
                "http://localhost:5000/MyNativeApp",
                false,
            ),
            ("http://localhost", "http://localhost:5000/", true),
            ("http://localhost", "http://localhost:5000", true),
            ("http://localhost", "http://127.0.0.1:5000/", false),
            ("http://localhost", "http://localhost:5000/callback", false),
            ("http://127.0.0.1", "http://127.0.0.1:5000/", true),
            ("http://127.0.0.1", "http://localhost:5000/", false),
            ("http://[::1]", "http://[::1]:5000/", false),
            ("http://localhost/abc", "http://localhost:1/ABC", false),
            ("https://contoso.com", "https://contoso.com:444/", false),
            ("https://contoso.com", "https://contoso.com/", true),
        ] {
            assert_eq!(
                entra_redirect_matches(registered, requested),
                expected,
                "{registered} vs {requested}"
            );
        }
    }
}
