//! The `entra_id` provider: access is membership of a Microsoft Entra ID
//! (Azure AD) security group, which Entra maps to app roles. It owns its
//! `[grant]` keys (`tenant_id`, `client_id`, `client_secret_env`,
//! `group_id`, `login_url`, `graph_url`, `end_sessions`) and the part of
//! Microsoft Graph it uses: find the user (`GET /v1.0/users/{email}`), add
//! and remove a member reference (`…/groups/{group}/members/$ref`), read the
//! user's memberships back (`GET /v1.0/users/{id}/memberOf`), list the
//! group's members, and end the user's sessions after a revoke
//! (`POST /v1.0/users/{id}/revokeSignInSessions`).
//!
//! It signs in as an app registration with the client credentials grant;
//! the access token is cached until shortly before it expires. Graph's
//! 400 "already exist" on add and 404 on remove are success.

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::directory::{
    end_sessions, env_key, identity, is_guid, member_name, read_secret, segment, service_url,
    text_key, Answer, At, DirectoryError, Http, Step, TokenAnswer, TokenCache, Why,
};
use super::{
    Action, GrantContext, GrantFuture, MembersFuture, Presence, Provider, Services, VerifyFuture,
};
use crate::config::Secret;
use crate::runbook::GrantTable;

/// Where Entra ID issues tokens, unless the runbook says otherwise.
pub const DEFAULT_LOGIN_URL: &str = "https://login.microsoftonline.com";
/// Microsoft Graph, unless the runbook says otherwise.
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com";
/// The scope of a client credentials token for Graph: the application
/// permissions an admin consented to.
pub const SCOPE: &str = "https://graph.microsoft.com/.default";
/// What an operator must set up when Graph refuses the app.
const PERMISSIONS_HINT: &str = "give the app registration the Microsoft Graph application permissions GroupMember.ReadWrite.All and User.Read.All (and User.RevokeSessions.All for end_sessions), then Grant admin consent";

/// An `entra_id` runbook's `[grant]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct EntraIdSpec {
    /// The directory (tenant) ID, or its primary domain.
    pub tenant_id: String,
    /// The app registration's application (client) ID.
    pub client_id: String,
    /// The environment variable holding the client secret.
    pub client_secret_env: String,
    /// The group's object ID, lower-cased.
    pub group_id: String,
    pub login_url: String,
    pub graph_url: String,
    /// End the person's sign-in sessions after a revoke.
    pub end_sessions: bool,
}

/// Grants and revokes Entra ID group memberships.
#[derive(Debug)]
pub struct EntraIdProvider {
    http: Http,
    tokens: TokenCache,
}

impl Provider for EntraIdProvider {
    const NAME: &'static str = "entra_id";
    const KEYS: &'static [&'static str] = &[
        "tenant_id",
        "client_id",
        "client_secret_env",
        "group_id",
        "login_url",
        "graph_url",
        "end_sessions",
    ];
    type Spec = EntraIdSpec;

    fn parse(t: &mut GrantTable<'_>) -> Option<EntraIdSpec> {
        let guid = |what: &'static str| {
            move |text: &str| {
                if is_guid(text) {
                    Ok(())
                } else {
                    Err(format!("is not a GUID; {what}"))
                }
            }
        };
        let tenant_id = text_key(
            t,
            "tenant_id",
            r#"write the Directory (tenant) ID from the app registration's Overview, e.g. tenant_id = "8f3c2a10-1b2c-4d5e-9f60-718293a4b5c6""#,
            |text| {
                let domain = text.contains('.')
                    && text
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
                if is_guid(text) || domain {
                    Ok(())
                } else {
                    Err(
                        "is neither a tenant ID (a GUID) nor a domain like acme.onmicrosoft.com"
                            .into(),
                    )
                }
            },
        );
        let client_id = text_key(
            t,
            "client_id",
            r#"write the Application (client) ID from the app registration's Overview, e.g. client_id = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9""#,
            guid("use the Application (client) ID, not the app's name or object ID"),
        );
        let client_secret_env = env_key(
            t,
            "client_secret_env",
            r#"add client_secret_env = "ENTRA_CLIENT_SECRET", the environment variable holding the app's client secret"#,
        );
        let group_id = text_key(
            t,
            "group_id",
            r#"write the group's Object ID (Entra admin center > Groups > the group > Overview), e.g. group_id = "5d2e6f70-8192-4a3b-bc4d-5e6f708192a3""#,
            guid("use the group's Object ID, not its name"),
        );
        let login_url = service_url(
            t,
            "login_url",
            Some(DEFAULT_LOGIN_URL),
            &format!("leave it out to use {DEFAULT_LOGIN_URL}"),
        );
        let graph_url = service_url(
            t,
            "graph_url",
            Some(DEFAULT_GRAPH_URL),
            &format!("leave it out to use {DEFAULT_GRAPH_URL}"),
        );
        let end_sessions = end_sessions(t);
        Some(EntraIdSpec {
            tenant_id: tenant_id?,
            client_id: client_id?,
            client_secret_env: client_secret_env?,
            group_id: group_id?.to_ascii_lowercase(),
            login_url: login_url?,
            graph_url: graph_url?,
            end_sessions: end_sessions?,
        })
    }

    fn env_needed(spec: &EntraIdSpec) -> Vec<String> {
        vec![spec.client_secret_env.clone()]
    }

    fn target(spec: &EntraIdSpec) -> Option<String> {
        // Object IDs are unique across tenants.
        Some(format!("entra_id:{}", spec.group_id))
    }

    fn needs_identity(_spec: &EntraIdSpec) -> bool {
        true
    }

    fn verify<'a>(
        &'a self,
        spec: &'a EntraIdSpec,
        ctx: &'a GrantContext,
    ) -> Option<VerifyFuture<'a>> {
        Some(Box::pin(async move { Ok(self.presence(spec, ctx).await?) }))
    }

    fn member_name(_spec: &EntraIdSpec, ctx: &GrantContext) -> Option<String> {
        member_name(ctx)
    }

    fn members<'a>(&'a self, spec: &'a EntraIdSpec) -> Option<MembersFuture<'a>> {
        Some(Box::pin(async move { Ok(self.list_members(spec).await?) }))
    }

    fn start(_services: &Services) -> Option<Self> {
        Some(EntraIdProvider {
            http: Http::new(),
            tokens: TokenCache::default(),
        })
    }

    fn apply<'a>(
        &'a self,
        spec: &'a EntraIdSpec,
        action: Action,
        ctx: &'a GrantContext,
    ) -> GrantFuture<'a> {
        Box::pin(async move { Ok(self.change(spec, action, ctx).await?) })
    }
}

/// A Graph directory object, as far as accessbot reads it.
#[derive(Deserialize)]
struct DirectoryObject {
    #[serde(default)]
    id: String,
    #[serde(default)]
    mail: Option<String>,
    #[serde(default, rename = "userPrincipalName")]
    user_principal_name: Option<String>,
}

/// One page of a Graph collection.
#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<DirectoryObject>,
    #[serde(default, rename = "@odata.nextLink")]
    next_link: Option<String>,
}

type Result<T> = std::result::Result<T, DirectoryError>;

impl EntraIdProvider {
    fn at(runbook: &str) -> At {
        At::new(Self::NAME, "Entra ID", runbook)
    }

    fn cache_key(spec: &EntraIdSpec) -> String {
        format!("{}|{}|{}", spec.login_url, spec.tenant_id, spec.client_id)
    }

    async fn token(&self, at: &At, spec: &EntraIdSpec) -> Result<Secret> {
        let at = at.step(Step::Token);
        self.tokens
            .get(&Self::cache_key(spec), || self.new_token(&at, spec))
            .await
    }

    async fn new_token(&self, at: &At, spec: &EntraIdSpec) -> Result<(Secret, Duration)> {
        let secret = read_secret(at, &spec.client_secret_env)?;
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            spec.login_url,
            segment(&spec.tenant_id)
        );
        let request = self
            .http
            .client()
            .post(url)
            .header(ACCEPT, "application/json")
            .form(&[
                ("client_id", spec.client_id.as_str()),
                ("client_secret", secret.expose()),
                ("scope", SCOPE),
                ("grant_type", "client_credentials"),
            ]);
        let answer = self.http.send(at, request).await?;
        if !answer.is_success() {
            let error = answer.error(at);
            return Err(match answer.status {
                400 | 401 => error.with_hint(format!(
                    "check tenant_id and client_id, and that `{}` holds a client secret's Value (not its Secret ID) that has not expired",
                    spec.client_secret_env
                )),
                _ => error,
            });
        }
        tracing::debug!("got an Entra ID access token");
        TokenAnswer::read(&answer, at)
    }

    /// One call to Graph with the access token.
    async fn call(
        &self,
        at: &At,
        spec: &EntraIdSpec,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Answer> {
        // A cached token Graph refuses (revoked, or expired early) is
        // forgotten and the call made once more with a new one.
        for first in [true, false] {
            let token = self.token(at, spec).await?;
            let mut request = self
                .http
                .client()
                .request(method.clone(), url)
                .header(AUTHORIZATION, format!("Bearer {}", token.expose()))
                .header(ACCEPT, "application/json");
            if let Some(body) = &body {
                request = request.json(body);
            }
            let answer = self.http.send(at, request).await?;
            if answer.status != 401 {
                return Ok(answer);
            }
            self.tokens.forget(&Self::cache_key(spec)).await;
            if !first {
                return Ok(answer);
            }
        }
        unreachable!("the loop returns on its second pass")
    }

    fn refused(at: &At, answer: &Answer) -> DirectoryError {
        let error = answer.error(at);
        match answer.status {
            401 | 403 => error.with_hint(PERMISSIONS_HINT),
            _ => error,
        }
    }

    /// The user's object ID, or `None` when Entra ID has no such user.
    async fn find_user(&self, at: &At, spec: &EntraIdSpec, email: &str) -> Result<Option<String>> {
        let at = at.step(Step::FindUser);
        let url = format!(
            "{}/v1.0/users/{}?$select=id",
            spec.graph_url,
            segment(email)
        );
        let answer = self.call(&at, spec, Method::GET, &url, None).await?;
        match answer.status {
            200 => Ok(Some(answer.parse::<DirectoryObject>(&at)?.id)),
            404 => Ok(None),
            _ => Err(Self::refused(&at, &answer)),
        }
    }

    #[tracing::instrument(skip_all, fields(provider = "entra_id", request_id = %ctx.request_id, runbook = %ctx.runbook_id, %action))]
    async fn change(&self, spec: &EntraIdSpec, action: Action, ctx: &GrantContext) -> Result<()> {
        let at = Self::at(&ctx.runbook_id);
        let email = identity(&at, ctx)?;
        let Some(user) = self.find_user(&at, spec, email).await? else {
            return match action {
                Action::Grant => Err(at.fail(Why::UnknownUser {
                    identity: email.to_string(),
                })),
                Action::Revoke => {
                    tracing::info!("Entra ID has no such user; nothing to revoke");
                    Ok(())
                }
            };
        };
        let group = format!(
            "{}/v1.0/groups/{}/members",
            spec.graph_url,
            segment(&spec.group_id)
        );
        match action {
            Action::Grant => {
                let at = at.step(Step::Add);
                let body = json!({
                    "@odata.id": format!("{}/v1.0/directoryObjects/{}", spec.graph_url, user)
                });
                let url = format!("{group}/$ref");
                let answer = self.call(&at, spec, Method::POST, &url, Some(body)).await?;
                let already =
                    answer.status == 400 && answer.api_message().contains("already exist");
                if !answer.is_success() && !already {
                    return Err(Self::refused(&at, &answer));
                }
                tracing::info!(group = %spec.group_id, "added to the Entra ID group");
            }
            Action::Revoke => {
                let at = at.step(Step::Remove);
                let url = format!("{group}/{}/$ref", segment(&user));
                let answer = self.call(&at, spec, Method::DELETE, &url, None).await?;
                // 404: not a member (any more).
                if !answer.is_success() && answer.status != 404 {
                    return Err(Self::refused(&at, &answer));
                }
                tracing::info!(group = %spec.group_id, "removed from the Entra ID group");
                if spec.end_sessions {
                    let at = at.step(Step::EndSessions);
                    let url = format!(
                        "{}/v1.0/users/{}/revokeSignInSessions",
                        spec.graph_url,
                        segment(&user)
                    );
                    let answer = self.call(&at, spec, Method::POST, &url, None).await?;
                    if !answer.is_success() {
                        return Err(Self::refused(&at, &answer));
                    }
                    tracing::info!("ended the user's Entra ID sign-in sessions");
                }
            }
        }
        Ok(())
    }

    /// Every object of a Graph collection, following `@odata.nextLink`
    /// only to Graph itself (the token goes with it).
    async fn pages(
        &self,
        at: &At,
        spec: &EntraIdSpec,
        first: String,
    ) -> Result<Vec<DirectoryObject>> {
        let mut objects = Vec::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let answer = self.call(at, spec, Method::GET, &url, None).await?;
            if !answer.is_success() {
                return Err(Self::refused(at, &answer));
            }
            let page: Page = answer.parse(at)?;
            objects.extend(page.value);
            next = page
                .next_link
                .filter(|link| link.starts_with(&format!("{}/", spec.graph_url)));
        }
        Ok(objects)
    }

    #[tracing::instrument(skip_all, fields(provider = "entra_id", request_id = %ctx.request_id, runbook = %ctx.runbook_id))]
    async fn presence(&self, spec: &EntraIdSpec, ctx: &GrantContext) -> Result<Presence> {
        let at = Self::at(&ctx.runbook_id);
        let email = identity(&at, ctx)?;
        let Some(user) = self.find_user(&at, spec, email).await? else {
            return Ok(Presence::Absent);
        };
        let url = format!(
            "{}/v1.0/users/{}/memberOf?$select=id",
            spec.graph_url,
            segment(&user)
        );
        let groups = self.pages(&at.step(Step::Verify), spec, url).await?;
        Ok(
            if groups
                .iter()
                .any(|g| g.id.eq_ignore_ascii_case(&spec.group_id))
            {
                Presence::Present
            } else {
                Presence::Absent
            },
        )
    }

    async fn list_members(&self, spec: &EntraIdSpec) -> Result<Vec<String>> {
        let at = Self::at("").step(Step::ListMembers);
        let url = format!(
            "{}/v1.0/groups/{}/members?$select=id,mail,userPrincipalName",
            spec.graph_url,
            segment(&spec.group_id)
        );
        let members = self.pages(&at, spec, url).await?;
        Ok(members
            .into_iter()
            .filter_map(|m| m.mail.or(m.user_principal_name))
            .map(|name| name.to_lowercase())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::GrantSpec;
    use crate::runbook::fixture::{check, listed, parse, VALID};

    fn entra(body: &str) -> String {
        let grant_start = VALID.find("[grant]").unwrap();
        format!(
            "{}[grant]\nprovider = \"entra_id\"\n{body}\n",
            &VALID[..grant_start]
        )
    }

    const OK: &str = "tenant_id = \"8f3c2a10-1b2c-4d5e-9f60-718293a4b5c6\"\nclient_id = \"0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9\"\nclient_secret_env = \"ENTRA_CLIENT_SECRET\"\ngroup_id = \"5D2E6F70-8192-4A3B-BC4D-5E6F708192A3\"";

    #[test]
    fn entra_id_maps_into_the_model_with_defaults() {
        let runbook = parse(&entra(OK)).unwrap_or_else(|p| panic!("{}", listed(&p)));
        let spec = EntraIdSpec {
            tenant_id: "8f3c2a10-1b2c-4d5e-9f60-718293a4b5c6".into(),
            client_id: "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9".into(),
            client_secret_env: "ENTRA_CLIENT_SECRET".into(),
            group_id: "5d2e6f70-8192-4a3b-bc4d-5e6f708192a3".into(),
            login_url: DEFAULT_LOGIN_URL.into(),
            graph_url: DEFAULT_GRAPH_URL.into(),
            end_sessions: false,
        };
        assert_eq!(runbook.grant, GrantSpec::new("entra_id", spec));
        assert_eq!(
            runbook.grant.target(),
            Some("entra_id:5d2e6f70-8192-4a3b-bc4d-5e6f708192a3")
        );
        assert_eq!(runbook.grant.env_needed(), ["ENTRA_CLIENT_SECRET"]);
        assert!(parse(&entra(&OK.replace(
            "8f3c2a10-1b2c-4d5e-9f60-718293a4b5c6",
            "acme.onmicrosoft.com"
        )))
        .is_ok());
    }

    #[test]
    fn reports_bad_entra_id_keys() {
        check(
            &entra(&OK.replace("0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9", "accessbot")),
            "grant.client_id",
            "not a GUID",
        );
        check(
            &entra(&OK.replace("5D2E6F70-8192-4A3B-BC4D-5E6F708192A3", "HR System Admins")),
            "grant.group_id",
            "Object ID",
        );
        check(
            &entra(&OK.replace("8f3c2a10-1b2c-4d5e-9f60-718293a4b5c6", "acme corp")),
            "grant.tenant_id",
            "neither a tenant ID",
        );
        check(
            &entra(&format!("{OK}\ngraph_url = \"http://graph.example.com\"")),
            "grant.graph_url",
            "https://",
        );
        check(
            &entra(&OK.replace("client_secret_env = \"ENTRA_CLIENT_SECRET\"\n", "")),
            "grant.client_secret_env",
            "missing",
        );
    }
}
