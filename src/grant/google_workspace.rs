//! The `google_workspace` provider: access is membership of a Google group
//! (which Google Workspace and the apps signing in with Google map to
//! roles). It owns its `[grant]` keys (`group`, `credentials_env`,
//! `admin_subject`, `role`, `token_url`, `directory_url`) and the part of
//! Google's Admin SDK Directory API it uses: add a member
//! (`POST …/groups/{group}/members`), remove one (`DELETE …/members/{email}`),
//! read one back (`GET …/members/{email}`) and list them.
//!
//! It signs in as a service account with domain-wide delegation: a JWT
//! signed RS256 with the account's private key (from the JSON key file in
//! the variable `credentials_env` names), acting as `admin_subject`, is
//! exchanged at `token_url` for an access token (RFC 7523), which is cached
//! until shortly before it expires. "Already a member" (409) on add and "not
//! found" (404) on remove are success.

use std::time::Duration;

use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{ACCEPT, AUTHORIZATION};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::directory::{
    env_key, identity, is_email, member_name, read_secret, segment, service_url, text_key, Answer,
    At, DirectoryError, Http, Step, TokenAnswer, TokenCache, Why,
};
use super::{
    Action, GrantContext, GrantFuture, MembersFuture, Presence, Provider, Services, VerifyFuture,
};
use crate::config::Secret;
use crate::runbook::{shorten, GrantTable};

/// Where Google issues access tokens, unless the runbook says otherwise.
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// Google's Admin SDK, unless the runbook says otherwise.
pub const DEFAULT_DIRECTORY_URL: &str = "https://admin.googleapis.com";
/// The one scope accessbot asks for: group memberships, nothing else.
pub const SCOPE: &str = "https://www.googleapis.com/auth/admin.directory.group.member";
/// The grant type of a JWT exchanged for an access token (RFC 7523).
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long a signed JWT is valid; Google accepts at most an hour.
const JWT_LIFETIME: i64 = 3600;
/// The roles a member of a Google group can have.
const ROLES: [&str; 3] = ["MEMBER", "MANAGER", "OWNER"];

/// A `google_workspace` runbook's `[grant]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct GoogleWorkspaceSpec {
    /// The group's email address, lower-cased.
    pub group: String,
    /// The environment variable holding the service account's JSON key.
    pub credentials_env: String,
    /// The admin the service account acts as.
    pub admin_subject: String,
    /// `MEMBER`, `MANAGER` or `OWNER`.
    pub role: String,
    pub token_url: String,
    pub directory_url: String,
}

/// Grants and revokes Google group memberships.
#[derive(Debug)]
pub struct GoogleWorkspaceProvider {
    http: Http,
    tokens: TokenCache,
}

impl Provider for GoogleWorkspaceProvider {
    const NAME: &'static str = "google_workspace";
    const KEYS: &'static [&'static str] = &[
        "group",
        "credentials_env",
        "admin_subject",
        "role",
        "token_url",
        "directory_url",
    ];
    type Spec = GoogleWorkspaceSpec;

    fn parse(t: &mut GrantTable<'_>) -> Option<GoogleWorkspaceSpec> {
        let email = |what: &'static str| {
            move |text: &str| {
                if is_email(text) {
                    Ok(())
                } else {
                    Err(format!("is not an email address; write the {what}"))
                }
            }
        };
        let group = text_key(
            t,
            "group",
            r#"write the group's email address, e.g. group = "payroll-exports@acme.com""#,
            email("group's email address"),
        );
        let credentials_env = env_key(
            t,
            "credentials_env",
            r#"add credentials_env = "GOOGLE_WORKSPACE_CREDENTIALS", the environment variable holding the service account's JSON key"#,
        );
        let admin_subject = text_key(
            t,
            "admin_subject",
            r#"write the admin the service account acts as, e.g. admin_subject = "accessbot-admin@acme.com""#,
            email("admin's email address"),
        );
        let found = t.string("role");
        let role = t.optional("role", found).and_then(|role| {
            let Some(role) = role else {
                return Some("MEMBER".to_string());
            };
            let upper = role.value.trim().to_ascii_uppercase();
            if ROLES.contains(&upper.as_str()) {
                return Some(upper);
            }
            t.report(
                role.line,
                "role",
                format!(
                    "`{}` is not a Google group role; use \"MEMBER\" (the default), \"MANAGER\" or \"OWNER\"",
                    shorten(&role.value)
                ),
            );
            None
        });
        let token_url = service_url(
            t,
            "token_url",
            Some(DEFAULT_TOKEN_URL),
            &format!("leave it out to use {DEFAULT_TOKEN_URL}"),
        );
        let directory_url = service_url(
            t,
            "directory_url",
            Some(DEFAULT_DIRECTORY_URL),
            &format!("leave it out to use {DEFAULT_DIRECTORY_URL}"),
        );
        Some(GoogleWorkspaceSpec {
            group: group?.to_ascii_lowercase(),
            credentials_env: credentials_env?,
            admin_subject: admin_subject?,
            role: role?,
            token_url: token_url?,
            directory_url: directory_url?,
        })
    }

    fn env_needed(spec: &GoogleWorkspaceSpec) -> Vec<String> {
        vec![spec.credentials_env.clone()]
    }

    fn target(spec: &GoogleWorkspaceSpec) -> Option<String> {
        Some(format!("google_workspace:{}", spec.group))
    }

    fn needs_identity(_spec: &GoogleWorkspaceSpec) -> bool {
        true
    }

    fn verify<'a>(
        &'a self,
        spec: &'a GoogleWorkspaceSpec,
        ctx: &'a GrantContext,
    ) -> Option<VerifyFuture<'a>> {
        Some(Box::pin(async move { Ok(self.presence(spec, ctx).await?) }))
    }

    fn member_name(_spec: &GoogleWorkspaceSpec, ctx: &GrantContext) -> Option<String> {
        member_name(ctx)
    }

    fn members<'a>(&'a self, spec: &'a GoogleWorkspaceSpec) -> Option<MembersFuture<'a>> {
        Some(Box::pin(async move { Ok(self.list_members(spec).await?) }))
    }

    fn start(_services: &Services) -> Option<Self> {
        Some(GoogleWorkspaceProvider {
            http: Http::new(),
            tokens: TokenCache::default(),
        })
    }

    fn apply<'a>(
        &'a self,
        spec: &'a GoogleWorkspaceSpec,
        action: Action,
        ctx: &'a GrantContext,
    ) -> GrantFuture<'a> {
        Box::pin(async move { Ok(self.change(spec, action, ctx).await?) })
    }
}

/// The fields of a service account's JSON key file accessbot reads.
#[derive(Deserialize)]
struct ServiceAccountKey {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
}

/// The claims of the JWT exchanged for an access token.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

type Result<T> = std::result::Result<T, DirectoryError>;

impl GoogleWorkspaceProvider {
    fn at(runbook: &str) -> At {
        At::new(Self::NAME, "Google Workspace", runbook)
    }

    /// The service account's key, from the variable `credentials_env` names.
    fn key(at: &At, spec: &GoogleWorkspaceSpec) -> Result<ServiceAccountKey> {
        let json = read_secret(at, &spec.credentials_env)?;
        // serde's message could quote the key; say what is wrong in our words.
        let key: ServiceAccountKey = serde_json::from_str(json.expose()).map_err(|_| {
            at.fail(Why::BadSecret {
                var: spec.credentials_env.clone(),
                problem: "does not hold a service account's JSON key (with client_email and private_key); put the whole contents of the key file downloaded from Google Cloud in it".into(),
            })
        })?;
        Ok(key)
    }

    /// An access token for `spec`'s admin, from the cache or a new one.
    async fn token(&self, at: &At, spec: &GoogleWorkspaceSpec) -> Result<(Secret, String)> {
        let at = at.step(Step::Token);
        let key = Self::key(&at, spec)?;
        let cache_key = format!(
            "{}|{}|{}",
            spec.token_url, key.client_email, spec.admin_subject
        );
        let token = self
            .tokens
            .get(&cache_key, || self.new_token(&at, spec, &key))
            .await?;
        Ok((token, cache_key))
    }

    async fn new_token(
        &self,
        at: &At,
        spec: &GoogleWorkspaceSpec,
        key: &ServiceAccountKey,
    ) -> Result<(Secret, Duration)> {
        let signing_key = EncodingKey::from_rsa_pem(key.private_key.as_bytes()).map_err(|_| {
            at.fail(Why::BadSecret {
                var: spec.credentials_env.clone(),
                problem: "holds a private_key that is not an RSA private key in PEM form; put the whole contents of the key file downloaded from Google Cloud in it".into(),
            })
        })?;
        let iat = Utc::now().timestamp();
        let claims = Claims {
            iss: &key.client_email,
            sub: &spec.admin_subject,
            scope: SCOPE,
            aud: &spec.token_url,
            iat,
            exp: iat + JWT_LIFETIME,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = key.private_key_id.clone();
        let assertion = jsonwebtoken::encode(&header, &claims, &signing_key).map_err(|e| {
            at.fail(Why::BadSecret {
                var: spec.credentials_env.clone(),
                problem: format!("holds a key that cannot sign: {e}"),
            })
        })?;
        let request = self
            .http
            .client()
            .post(&spec.token_url)
            .header(ACCEPT, "application/json")
            .form(&[("grant_type", JWT_BEARER), ("assertion", &assertion)]);
        let answer = self.http.send(at, request).await?;
        if !answer.is_success() {
            let error = answer.error(at);
            return Err(match answer.status {
                400 | 401 | 403 => error.with_hint(format!(
                    "check that domain-wide delegation lets the service account {} use the scope {SCOPE} (Admin console > Security > API controls > Domain-wide delegation), and that admin_subject {} is an admin who may manage groups",
                    key.client_email, spec.admin_subject
                )),
                _ => error,
            });
        }
        tracing::debug!("got a Google access token");
        TokenAnswer::read(&answer, at)
    }

    /// One call to the Directory API with the access token.
    async fn call(
        &self,
        at: &At,
        spec: &GoogleWorkspaceSpec,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Answer> {
        // A cached token Google refuses (revoked, or expired early) is
        // forgotten and the call made once more with a new one.
        for first in [true, false] {
            let (token, cache_key) = self.token(at, spec).await?;
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
            self.tokens.forget(&cache_key).await;
            if !first {
                return Ok(answer);
            }
        }
        unreachable!("the loop returns on its second pass")
    }

    /// An error answer of the Directory API, with what to do about it.
    fn refused(at: &At, spec: &GoogleWorkspaceSpec, answer: &Answer) -> DirectoryError {
        let error = answer.error(at);
        let reason = answer.json()["error"]["errors"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match answer.status {
            // Google says "slow down" with a 403 too.
            403 if matches!(
                reason.as_str(),
                "rateLimitExceeded" | "userRateLimitExceeded" | "quotaExceeded"
            ) =>
            {
                error.retryable()
            }
            401 | 403 => error.with_hint(format!(
                "admin_subject {} must be an admin who may manage the group's members, and domain-wide delegation must grant the scope {SCOPE}",
                spec.admin_subject
            )),
            _ => error,
        }
    }

    fn members_url(spec: &GoogleWorkspaceSpec) -> String {
        format!(
            "{}/admin/directory/v1/groups/{}/members",
            spec.directory_url,
            segment(&spec.group)
        )
    }

    #[tracing::instrument(skip_all, fields(provider = "google_workspace", request_id = %ctx.request_id, runbook = %ctx.runbook_id, %action))]
    async fn change(
        &self,
        spec: &GoogleWorkspaceSpec,
        action: Action,
        ctx: &GrantContext,
    ) -> Result<()> {
        let at = Self::at(&ctx.runbook_id);
        let email = identity(&at, ctx)?;
        match action {
            Action::Grant => {
                let at = at.step(Step::Add);
                let body = json!({ "email": email, "role": spec.role });
                let answer = self
                    .call(
                        &at,
                        spec,
                        Method::POST,
                        &Self::members_url(spec),
                        Some(body),
                    )
                    .await?;
                // 409 duplicate: a member already.
                if !answer.is_success() && answer.status != 409 {
                    return Err(Self::refused(&at, spec, &answer));
                }
                tracing::info!(group = %spec.group, "added to the Google group");
            }
            Action::Revoke => {
                let at = at.step(Step::Remove);
                let url = format!("{}/{}", Self::members_url(spec), segment(email));
                let answer = self.call(&at, spec, Method::DELETE, &url, None).await?;
                // 404: not a member (any more).
                if !answer.is_success() && answer.status != 404 {
                    return Err(Self::refused(&at, spec, &answer));
                }
                tracing::info!(group = %spec.group, "removed from the Google group");
            }
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(provider = "google_workspace", request_id = %ctx.request_id, runbook = %ctx.runbook_id))]
    async fn presence(&self, spec: &GoogleWorkspaceSpec, ctx: &GrantContext) -> Result<Presence> {
        let at = Self::at(&ctx.runbook_id).step(Step::Verify);
        let email = identity(&at, ctx)?;
        let url = format!("{}/{}", Self::members_url(spec), segment(email));
        let answer = self.call(&at, spec, Method::GET, &url, None).await?;
        match answer.status {
            200 => Ok(Presence::Present),
            404 => Ok(Presence::Absent),
            _ => Err(Self::refused(&at, spec, &answer)),
        }
    }

    async fn list_members(&self, spec: &GoogleWorkspaceSpec) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            members: Vec<Member>,
            #[serde(default, rename = "nextPageToken")]
            next_page_token: Option<String>,
        }
        #[derive(Deserialize)]
        struct Member {
            #[serde(default)]
            email: String,
        }
        let at = Self::at("").step(Step::ListMembers);
        let mut emails = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut url = format!("{}?maxResults=200", Self::members_url(spec));
            if let Some(page) = &page_token {
                url.push_str(&format!("&pageToken={}", segment(page)));
            }
            let answer = self.call(&at, spec, Method::GET, &url, None).await?;
            if !answer.is_success() {
                return Err(Self::refused(&at, spec, &answer));
            }
            let page: Page = answer.parse(&at)?;
            emails.extend(page.members.into_iter().map(|m| m.email.to_lowercase()));
            match page.next_page_token {
                Some(next) if !next.is_empty() => page_token = Some(next),
                _ => return Ok(emails),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::GrantSpec;
    use crate::runbook::fixture::{check, listed, parse, VALID};

    fn google(body: &str) -> String {
        let grant_start = VALID.find("[grant]").unwrap();
        format!(
            "{}[grant]\nprovider = \"google_workspace\"\n{body}\n",
            &VALID[..grant_start]
        )
    }

    const OK: &str = "group = \"Payroll-Exports@acme.com\"\ncredentials_env = \"GOOGLE_WORKSPACE_CREDENTIALS\"\nadmin_subject = \"accessbot-admin@acme.com\"";

    #[test]
    fn google_workspace_maps_into_the_model_with_defaults() {
        let runbook = parse(&google(OK)).unwrap_or_else(|p| panic!("{}", listed(&p)));
        let spec = GoogleWorkspaceSpec {
            group: "payroll-exports@acme.com".into(),
            credentials_env: "GOOGLE_WORKSPACE_CREDENTIALS".into(),
            admin_subject: "accessbot-admin@acme.com".into(),
            role: "MEMBER".into(),
            token_url: DEFAULT_TOKEN_URL.into(),
            directory_url: DEFAULT_DIRECTORY_URL.into(),
        };
        assert_eq!(runbook.grant, GrantSpec::new("google_workspace", spec));
        assert_eq!(
            runbook.grant.target(),
            Some("google_workspace:payroll-exports@acme.com")
        );
        assert_eq!(runbook.grant.env_needed(), ["GOOGLE_WORKSPACE_CREDENTIALS"]);
        let runbook = parse(&google(&format!("{OK}\nrole = \"manager\"")))
            .unwrap_or_else(|p| panic!("{}", listed(&p)));
        assert_eq!(
            runbook.grant.get::<GoogleWorkspaceSpec>().unwrap().role,
            "MANAGER"
        );
    }

    #[test]
    fn reports_bad_google_workspace_keys() {
        check(
            &google("credentials_env = \"G\"\nadmin_subject = \"a@acme.com\""),
            "grant.group",
            "missing",
        );
        check(
            &google(&OK.replace("Payroll-Exports@acme.com", "Payroll exports")),
            "grant.group",
            "not an email address",
        );
        check(
            &google(&format!("{OK}\nrole = \"ADMIN\"")),
            "grant.role",
            "MANAGER",
        );
        check(
            &google(&format!("{OK}\ntoken_url = \"ftp://x\"")),
            "grant.token_url",
            "https://",
        );
        check(
            &google(&OK.replace("accessbot-admin@acme.com", "")),
            "grant.admin_subject",
            "is empty",
        );
    }
}
