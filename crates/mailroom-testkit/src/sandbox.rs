//! App registrations pointing at a running sandbox (`mailroom-sandbox`), so tests sign in,
//! refresh and send against the offline look-alikes instead of the real providers.

use mailroom_model::Provider;
use mailroom_sandbox::Sandbox;
use mailroom_tokens::registration::EndpointOverrides;

/// Every endpoint of `provider`'s style of the sandbox: authorize, token, device,
/// revocation (where the style has one), issuer, for Google the Gmail API and for
/// Microsoft the Graph look-alike.
pub fn endpoint_overrides(sandbox: &Sandbox, provider: Provider) -> EndpointOverrides {
    let endpoints = sandbox.endpoints();
    let oauth = match provider {
        Provider::Google => &endpoints.google,
        _ => &endpoints.microsoft,
    };
    EndpointOverrides {
        authorize_url: Some(oauth.authorize.clone()),
        token_url: Some(oauth.token.clone()),
        device_url: Some(oauth.device.clone()),
        revoke_url: oauth.revoke.clone(),
        issuer: Some(oauth.issuer.clone()),
        gmail_api_url: (provider == Provider::Google).then(|| endpoints.gmail_api.clone()),
        graph_api_url: (provider == Provider::Microsoft).then(|| endpoints.graph_api.clone()),
        redirect_uri: None,
    }
}
