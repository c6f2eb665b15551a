//! `Resource`: what an access token is for. One Microsoft sign-in (one refresh token)
//! serves several resources, but Entra issues each access token for one resource only:
//! the v2 token endpoint refuses a request whose `scope` names scopes of more than one
//! resource (`AADSTS28000`), and a refresh may ask for another resource's scopes than the
//! sign-in did (MicrosoftDocs/entra-docs `docs/identity-platform/v2-oauth2-auth-code-flow.md`,
//! "Refresh the access token"; `docs/identity-platform/scopes-oidc.md`).

use mailroom_model::Provider;

use crate::app::{AppRegistration, GOOGLE_SCOPES, MICROSOFT_SCOPES};

/// The OpenID Connect scopes (and `offline_access`, for a refresh token) a Microsoft
/// request adds to its one resource's scopes.
const MICROSOFT_OIDC_SCOPES: [&str; 4] = ["offline_access", "openid", "profile", "email"];

/// What an access token is for. Each code exchange and each refresh asks for one
/// resource's scopes only; the broker keeps an access token per resource of one sign-in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Resource {
    /// The provider's own mail resource, as before resources: Outlook SMTP
    /// (`https://outlook.office.com/SMTP.Send`) for Microsoft, the Gmail API
    /// (`gmail.send`) for Google.
    #[default]
    Mail,
    /// Microsoft Graph (Microsoft only), for sending through `sendMail` and drafts.
    /// Delegated permissions (microsoft-graph-docs `api-reference/v1.0/api/user-sendmail.md`,
    /// "Permissions"): `Mail.Send` sends as the signed-in person's own mailbox;
    /// `Mail.Send.Shared` as another mailbox they have rights on (a shared mailbox);
    /// `Mail.ReadWrite` (`.Shared`) creates drafts and upload sessions for messages
    /// larger than one request takes (`outlook-large-attachments`).
    Graph {
        /// The account sends as a mailbox other than the signed-in person's own.
        shared: bool,
        /// The account opts into large attachments (drafts + upload sessions).
        read_write: bool,
    },
}

impl Resource {
    /// The resource an account's token is for: `Mail` on the SMTP (or Gmail API) route;
    /// for a Microsoft account on the Graph route `Graph`, with `.Shared` permissions for a
    /// shared mailbox and `Mail.ReadWrite` only when the account opts into large
    /// attachments.
    pub fn of_server(server: &mailroom_model::ServerSettings) -> Self {
        if server.provider == Provider::Microsoft && server.route == mailroom_model::Route::Graph {
            Resource::Graph {
                shared: server.shared_mailbox,
                read_write: server.large_attachments,
            }
        } else {
            Resource::Mail
        }
    }

    /// The name its access token is stored under: `mail` or `graph`. Graph's permission
    /// variants share one: a new sign-in or refresh replaces the token.
    pub fn storage_key(self) -> &'static str {
        match self {
            Resource::Mail => "mail",
            Resource::Graph { .. } => "graph",
        }
    }

    /// True for Microsoft Graph.
    pub fn is_graph(self) -> bool {
        matches!(self, Resource::Graph { .. })
    }

    /// The delegated permissions a Graph token must carry, by their short names
    /// (`Mail.Send`, `Mail.Send.Shared`, `Mail.ReadWrite`, `Mail.ReadWrite.Shared`); none
    /// for `Mail` (Microsoft's consent is for the request as a whole, and Google's
    /// granular consent is checked at the sign-in).
    pub fn required_permissions(self) -> Vec<&'static str> {
        match self {
            Resource::Mail => Vec::new(),
            Resource::Graph { shared, read_write } => {
                let mut permissions = vec![if shared {
                    "Mail.Send.Shared"
                } else {
                    "Mail.Send"
                }];
                if read_write {
                    permissions.push(if shared {
                        "Mail.ReadWrite.Shared"
                    } else {
                        "Mail.ReadWrite"
                    });
                }
                permissions
            }
        }
    }

    /// The resource's own scopes for `app` (no OpenID scopes): Graph's are written with
    /// the cloud's Graph host (`https://graph.microsoft.us/Mail.Send`), whatever Graph
    /// base URL override the app has.
    pub fn resource_scopes(self, app: &AppRegistration) -> Vec<String> {
        match (self, app.provider) {
            (Resource::Mail, Provider::Google) => vec![GOOGLE_SCOPES[0].to_owned()],
            (Resource::Mail, _) => vec![MICROSOFT_SCOPES[0].to_owned()],
            (Resource::Graph { .. }, _) => {
                let host = app.cloud.graph_url();
                self.required_permissions()
                    .into_iter()
                    .map(|permission| format!("{host}/{permission}"))
                    .collect()
            }
        }
    }

    /// Every scope a sign-in's authorize request, its code exchange and a refresh ask for:
    /// for `Mail` exactly the app's scopes as before resources ([`AppRegistration::scopes`]);
    /// for Graph its scopes plus `offline_access openid profile email` — one resource.
    pub fn scopes(self, app: &AppRegistration) -> Vec<String> {
        match self {
            Resource::Mail => app.scopes().iter().map(|s| (*s).to_owned()).collect(),
            Resource::Graph { .. } => {
                let mut scopes = self.resource_scopes(app);
                scopes.extend(MICROSOFT_OIDC_SCOPES.iter().map(|s| (*s).to_owned()));
                scopes
            }
        }
    }

    /// The first required permission that `granted` (a token response's `scope`) lacks,
    /// by its short name. A response without `scope` granted what was asked (RFC 6749
    /// §5.1). Entra writes Graph's scopes with or without the resource URI, in any case.
    pub fn missing_permission(self, app: &AppRegistration, granted: &[String]) -> Option<String> {
        if granted.is_empty() {
            return None;
        }
        let host = app.cloud.graph_url();
        self.required_permissions()
            .into_iter()
            .find(|permission| {
                let full = format!("{host}/{permission}");
                !granted.iter().any(|scope| {
                    scope.eq_ignore_ascii_case(permission) || scope.eq_ignore_ascii_case(&full)
                })
            })
            .map(str::to_owned)
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.storage_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{EndpointOverrides, MicrosoftCloud};

    fn microsoft(cloud: MicrosoftCloud) -> AppRegistration {
        AppRegistration {
            provider: Provider::Microsoft,
            client_id: "client".to_owned(),
            client_secret: None,
            tenant: Some("contoso.onmicrosoft.com".to_owned()),
            cloud,
            overrides: EndpointOverrides::default(),
            app_credential: None,
        }
    }

    #[track_caller]
    fn check(resource: Resource, cloud: MicrosoftCloud, expected: &str) {
        assert_eq!(resource.scopes(&microsoft(cloud)).join(" "), expected);
    }

    /// One resource per request; the Graph host is the cloud's (microsoft-graph-docs
    /// `concepts/deployments.md`); the SMTP route asks exactly what it asked before.
    #[test]
    fn each_route_asks_one_resources_scopes() {
        use MicrosoftCloud::*;
        check(
            Resource::Mail,
            Global,
            "https://outlook.office.com/SMTP.Send offline_access openid profile email",
        );
        check(
            Resource::Graph {
                shared: false,
                read_write: false,
            },
            Global,
            "https://graph.microsoft.com/Mail.Send offline_access openid profile email",
        );
        check(
            Resource::Graph {
                shared: true,
                read_write: false,
            },
            UsGov,
            "https://graph.microsoft.us/Mail.Send.Shared offline_access openid profile email",
        );
        check(
            Resource::Graph {
                shared: false,
                read_write: true,
            },
            UsGovDod,
            "https://dod-graph.microsoft.us/Mail.Send https://dod-graph.microsoft.us/Mail.ReadWrite offline_access openid profile email",
        );
        check(
            Resource::Graph {
                shared: true,
                read_write: true,
            },
            China,
            "https://microsoftgraph.chinacloudapi.cn/Mail.Send.Shared https://microsoftgraph.chinacloudapi.cn/Mail.ReadWrite.Shared offline_access openid profile email",
        );
        // The account's settings choose: Graph only for a Microsoft account on its route.
        let mut server = mailroom_model::ServerSettings::preset(Provider::Microsoft);
        server.shared_mailbox = true;
        assert_eq!(Resource::of_server(&server), Resource::Mail);
        server.route = mailroom_model::Route::Graph;
        server.large_attachments = true;
        assert_eq!(
            Resource::of_server(&server),
            Resource::Graph {
                shared: true,
                read_write: true
            }
        );
        let mut google = microsoft(Global);
        google.provider = Provider::Google;
        assert_eq!(
            Resource::Mail.scopes(&google).join(" "),
            GOOGLE_SCOPES.join(" ")
        );
    }

    #[test]
    fn a_resource_reads_as_the_name_its_token_is_stored_under() {
        assert_eq!(Resource::Mail.to_string(), "mail");
        for (shared, read_write) in [(false, false), (true, true)] {
            assert_eq!(Resource::Graph { shared, read_write }.to_string(), "graph");
        }
    }

    #[test]
    fn a_grant_without_the_send_permission_names_it() {
        let app = microsoft(MicrosoftCloud::Global);
        let granted = |scopes: &[&str]| scopes.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let graph = Resource::Graph {
            shared: false,
            read_write: true,
        };
        assert_eq!(graph.missing_permission(&app, &[]), None);
        assert_eq!(
            graph.missing_permission(&app, &granted(&["https://graph.microsoft.com/User.Read"])),
            Some("Mail.Send".to_owned())
        );
        assert_eq!(
            graph.missing_permission(&app, &granted(&["mail.send", "Mail.ReadWrite"])),
            None
        );
        assert_eq!(
            graph.missing_permission(&app, &granted(&["https://graph.microsoft.com/Mail.Send"])),
            Some("Mail.ReadWrite".to_owned())
        );
        // Mail.Send does not stand in for Mail.Send.Shared.
        assert_eq!(
            Resource::Graph {
                shared: true,
                read_write: false
            }
            .missing_permission(&app, &granted(&["Mail.Send"])),
            Some("Mail.Send.Shared".to_owned())
        );
        assert_eq!(
            Resource::Mail.missing_permission(&app, &granted(&["openid"])),
            None
        );
    }
}
