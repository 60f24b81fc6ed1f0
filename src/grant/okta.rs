//! The `okta` provider: access is membership of an Okta group, which Okta
//! maps to apps and their roles. It owns its `[grant]` keys (`org_url`,
//! `token_env`, `group_id`, `end_sessions`) and Okta's API as it uses it:
//! find the user by login (`GET /api/v1/users/{login}`), add
//! (`PUT /api/v1/groups/{group}/users/{user}`) and remove (`DELETE` on the
//! same path), read the user's groups back (`GET /api/v1/users/{user}/groups`),
//! list the group's members, and end the user's sessions after a revoke
//! (`DELETE /api/v1/users/{user}/sessions`).
//!
//! Every call carries `Authorization: SSWS <token>`, the API token read from
//! the variable `token_env` names on each run. Okta's answers are
//! idempotent where accessbot needs them to be: adding a member twice and
//! removing one who is gone both answer 204; a user Okta does not know has
//! nothing to revoke.

use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LINK};
use reqwest::Method;
use serde::Deserialize;

use super::directory::{
    end_sessions, env_key, identity, member_name, read_secret, segment, service_url_with, text_key,
    At, Http, Step, Why,
};
use super::{
    Action, GrantContext, GrantFuture, MembersFuture, Presence, Provider, Services, VerifyFuture,
};
use crate::config::Secret;
use crate::runbook::GrantTable;

/// An `okta` runbook's `[grant]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct OktaSpec {
    /// `https://acme.okta.com`, without a trailing slash.
    pub org_url: String,
    /// The environment variable holding the API token.
    pub token_env: String,
    /// The group's ID (`00g…`).
    pub group_id: String,
    /// End the person's Okta sessions after a revoke.
    pub end_sessions: bool,
}

/// Grants and revokes Okta group memberships.
#[derive(Debug, Clone)]
pub struct OktaProvider {
    http: Http,
}

impl Provider for OktaProvider {
    const NAME: &'static str = "okta";
    const KEYS: &'static [&'static str] = &["org_url", "token_env", "group_id", "end_sessions"];
    type Spec = OktaSpec;

    fn parse(t: &mut GrantTable<'_>) -> Option<OktaSpec> {
        let org_url = service_url_with(
            t,
            "org_url",
            None,
            r#"write your Okta org's address, e.g. org_url = "https://acme.okta.com""#,
            |url| {
                if url.path() != "/" {
                    return Err(
                        "has a path; write only the org's address, e.g. https://acme.okta.com"
                            .into(),
                    );
                }
                if url.host_str().is_some_and(|host| host.contains("-admin.")) {
                    return Err("is the Admin Console's address; the API lives at the org's own address, without -admin (e.g. https://acme.okta.com)".into());
                }
                Ok(())
            },
        );
        let token_env = env_key(
            t,
            "token_env",
            r#"add token_env = "OKTA_API_TOKEN", the environment variable holding an Okta API token"#,
        );
        let group_id = text_key(
            t,
            "group_id",
            r#"write the group's ID, e.g. group_id = "00g1abcdEFGH2ijk3l4" (Admin Console > Directory > Groups > the group: the ID is at the end of the address)"#,
            |id| {
                if id.starts_with("00g") && id.chars().all(|c| c.is_ascii_alphanumeric()) {
                    Ok(())
                } else {
                    Err("is not an Okta group ID (they start with 00g); use the ID, not the group's name".into())
                }
            },
        );
        let end_sessions = end_sessions(t);
        Some(OktaSpec {
            org_url: org_url?,
            token_env: token_env?,
            group_id: group_id?,
            end_sessions: end_sessions?,
        })
    }

    fn env_needed(spec: &OktaSpec) -> Vec<String> {
        vec![spec.token_env.clone()]
    }

    fn target(spec: &OktaSpec) -> Option<String> {
        Some(format!(
            "okta:{}/{}",
            spec.org_url.to_ascii_lowercase(),
            spec.group_id
        ))
    }

    fn needs_identity(_spec: &OktaSpec) -> bool {
        true
    }

    fn verify<'a>(&'a self, spec: &'a OktaSpec, ctx: &'a GrantContext) -> Option<VerifyFuture<'a>> {
        Some(Box::pin(async move { Ok(self.presence(spec, ctx).await?) }))
    }

    fn member_name(_spec: &OktaSpec, ctx: &GrantContext) -> Option<String> {
        member_name(ctx)
    }

    fn members<'a>(&'a self, spec: &'a OktaSpec) -> Option<MembersFuture<'a>> {
        Some(Box::pin(async move { Ok(self.list_members(spec).await?) }))
    }

    fn start(_services: &Services) -> Option<Self> {
        Some(OktaProvider { http: Http::new() })
    }

    fn apply<'a>(
        &'a self,
        spec: &'a OktaSpec,
        action: Action,
        ctx: &'a GrantContext,
    ) -> GrantFuture<'a> {
        Box::pin(async move { Ok(self.change(spec, action, ctx).await?) })
    }
}

/// The part of Okta's user object accessbot reads.
#[derive(Deserialize)]
struct User {
    id: String,
    #[serde(default)]
    profile: Profile,
}

#[derive(Deserialize, Default)]
struct Profile {
    #[serde(default)]
    login: String,
}

#[derive(Deserialize)]
struct Group {
    id: String,
}

type Result<T> = std::result::Result<T, super::directory::DirectoryError>;

impl OktaProvider {
    fn at(ctx_runbook: &str) -> At {
        At::new(Self::NAME, "Okta", ctx_runbook)
    }

    /// One call to Okta's API with the API token.
    async fn call(
        &self,
        at: &At,
        method: Method,
        url: &str,
        token: &Secret,
    ) -> Result<super::directory::Answer> {
        let request = self
            .http
            .client()
            .request(method, url)
            .header(AUTHORIZATION, format!("SSWS {}", token.expose()))
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/json");
        self.http.send(at, request).await
    }

    /// An error answer, with what an operator can do about the usual ones.
    fn refused(
        at: &At,
        spec: &OktaSpec,
        answer: &super::directory::Answer,
    ) -> super::directory::DirectoryError {
        let error = answer.error(at);
        match answer.status {
            401 => error.with_hint(format!(
                "Okta refused the API token in `{}` (expired, revoked, or from another org); create one under Security > API > Tokens and set it",
                spec.token_env
            )),
            403 => error.with_hint(
                "the token's admin may not change this group; give that admin the Group Membership Admin role for the group (or Group Admin / Super Admin)",
            ),
            404 if at.step == Step::Add => error.with_hint(format!(
                "check grant.group_id `{}`: Okta has no such group in {}",
                spec.group_id, spec.org_url
            )),
            _ => error,
        }
    }

    /// The user's Okta ID, or `None` when Okta has no user with that login.
    async fn find_user(
        &self,
        at: &At,
        spec: &OktaSpec,
        token: &Secret,
        login: &str,
    ) -> Result<Option<String>> {
        let at = at.step(Step::FindUser);
        let url = format!("{}/api/v1/users/{}", spec.org_url, segment(login));
        let answer = self.call(&at, Method::GET, &url, token).await?;
        match answer.status {
            200 => Ok(Some(answer.parse::<User>(&at)?.id)),
            404 => Ok(None),
            _ => Err(Self::refused(&at, spec, &answer)),
        }
    }

    #[tracing::instrument(skip_all, fields(provider = "okta", request_id = %ctx.request_id, runbook = %ctx.runbook_id, %action))]
    async fn change(&self, spec: &OktaSpec, action: Action, ctx: &GrantContext) -> Result<()> {
        let at = Self::at(&ctx.runbook_id);
        let login = identity(&at, ctx)?;
        let token = read_secret(&at, &spec.token_env)?;
        let user = self.find_user(&at, spec, &token, login).await?;
        let Some(user) = user else {
            return match action {
                Action::Grant => Err(at.fail(Why::UnknownUser {
                    identity: login.to_string(),
                })),
                Action::Revoke => {
                    tracing::info!("Okta has no such user; nothing to revoke");
                    Ok(())
                }
            };
        };
        let membership = format!(
            "{}/api/v1/groups/{}/users/{}",
            spec.org_url,
            segment(&spec.group_id),
            segment(&user)
        );
        match action {
            Action::Grant => {
                let at = at.step(Step::Add);
                let answer = self.call(&at, Method::PUT, &membership, &token).await?;
                if !answer.is_success() {
                    return Err(Self::refused(&at, spec, &answer));
                }
                tracing::info!(group = %spec.group_id, "added to the Okta group");
            }
            Action::Revoke => {
                let at = at.step(Step::Remove);
                let answer = self.call(&at, Method::DELETE, &membership, &token).await?;
                // 404: the membership (or the group) is gone already.
                if !answer.is_success() && answer.status != 404 {
                    return Err(Self::refused(&at, spec, &answer));
                }
                tracing::info!(group = %spec.group_id, "removed from the Okta group");
                if spec.end_sessions {
                    let at = at.step(Step::EndSessions);
                    let url = format!(
                        "{}/api/v1/users/{}/sessions?oauthTokens=true",
                        spec.org_url,
                        segment(&user)
                    );
                    let answer = self.call(&at, Method::DELETE, &url, &token).await?;
                    if !answer.is_success() && answer.status != 404 {
                        return Err(Self::refused(&at, spec, &answer));
                    }
                    tracing::info!("ended the user's Okta sessions");
                }
            }
        }
        Ok(())
    }

    /// Every page of a list Okta pages with `Link: <…>; rel="next"`,
    /// following only links to the org itself (the token goes with them).
    async fn pages<T: serde::de::DeserializeOwned>(
        &self,
        at: &At,
        spec: &OktaSpec,
        token: &Secret,
        first: String,
    ) -> Result<Vec<T>> {
        let mut items = Vec::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let answer = self.call(at, Method::GET, &url, token).await?;
            if !answer.is_success() {
                return Err(Self::refused(at, spec, &answer));
            }
            items.extend(answer.parse::<Vec<T>>(at)?);
            next = next_link(&answer.headers)
                .filter(|link| link.starts_with(&format!("{}/", spec.org_url)));
        }
        Ok(items)
    }

    #[tracing::instrument(skip_all, fields(provider = "okta", request_id = %ctx.request_id, runbook = %ctx.runbook_id))]
    async fn presence(&self, spec: &OktaSpec, ctx: &GrantContext) -> Result<Presence> {
        let at = Self::at(&ctx.runbook_id);
        let login = identity(&at, ctx)?;
        let token = read_secret(&at, &spec.token_env)?;
        let Some(user) = self.find_user(&at, spec, &token, login).await? else {
            return Ok(Presence::Absent);
        };
        let url = format!("{}/api/v1/users/{}/groups", spec.org_url, segment(&user));
        let groups: Vec<Group> = self
            .pages(&at.step(Step::Verify), spec, &token, url)
            .await?;
        Ok(if groups.iter().any(|g| g.id == spec.group_id) {
            Presence::Present
        } else {
            Presence::Absent
        })
    }

    async fn list_members(&self, spec: &OktaSpec) -> Result<Vec<String>> {
        let at = Self::at("").step(Step::ListMembers);
        let token = read_secret(&at, &spec.token_env)?;
        let url = format!(
            "{}/api/v1/groups/{}/users?limit=200",
            spec.org_url,
            segment(&spec.group_id)
        );
        let users: Vec<User> = self.pages(&at, spec, &token, url).await?;
        Ok(users
            .into_iter()
            .map(|u| u.profile.login.to_lowercase())
            .collect())
    }
}

/// The `rel="next"` target of a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find(|link| link.contains("rel=\"next\""))
        .and_then(|link| {
            let start = link.find('<')? + 1;
            let end = link.find('>')?;
            (start < end).then(|| link[start..end].to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::GrantSpec;
    use crate::runbook::fixture::{check, listed, parse, VALID};
    use reqwest::header::HeaderValue;

    fn okta(body: &str) -> String {
        let grant_start = VALID.find("[grant]").unwrap();
        format!(
            "{}[grant]\nprovider = \"okta\"\n{body}\n",
            &VALID[..grant_start]
        )
    }

    #[test]
    fn okta_maps_into_the_model() {
        let runbook = parse(&okta(
            "org_url = \"https://acme.okta.com/\"\ntoken_env = \"OKTA_API_TOKEN\"\ngroup_id = \"00g1abcdEFGH2ijk3l4\"\nend_sessions = true",
        ))
        .unwrap_or_else(|p| panic!("{}", listed(&p)));
        let spec = OktaSpec {
            org_url: "https://acme.okta.com".into(),
            token_env: "OKTA_API_TOKEN".into(),
            group_id: "00g1abcdEFGH2ijk3l4".into(),
            end_sessions: true,
        };
        assert_eq!(runbook.grant, GrantSpec::new("okta", spec));
        assert_eq!(runbook.grant.env_needed(), ["OKTA_API_TOKEN"]);
        assert_eq!(
            runbook.grant.target(),
            Some("okta:https://acme.okta.com/00g1abcdEFGH2ijk3l4")
        );
        assert!(runbook.grant.needs_identity());
    }

    #[test]
    fn reports_bad_okta_keys() {
        let ok_token = "token_env = \"OKTA_API_TOKEN\"";
        let ok_group = "group_id = \"00g1abcdEFGH2ijk3l4\"";
        check(
            &okta(&format!("{ok_token}\n{ok_group}")),
            "grant.org_url",
            "missing",
        );
        check(
            &okta(&format!(
                "org_url = \"http://acme.okta.com\"\n{ok_token}\n{ok_group}"
            )),
            "grant.org_url",
            "https://",
        );
        check(
            &okta(&format!(
                "org_url = \"https://acme-admin.okta.com\"\n{ok_token}\n{ok_group}"
            )),
            "grant.org_url",
            "Admin Console",
        );
        check(
            &okta(&format!(
                "org_url = \"https://acme.okta.com/app/UserHome\"\n{ok_token}\n{ok_group}"
            )),
            "grant.org_url",
            "has a path",
        );
        check(
            &okta(&format!(
                "org_url = \"https://acme.okta.com\"\ntoken_env = \"00abc secret\"\n{ok_group}"
            )),
            "grant.token_env",
            "not the secret itself",
        );
        check(
            &okta(&format!(
                "org_url = \"https://acme.okta.com\"\n{ok_token}\ngroup_id = \"Billing Admins\""
            )),
            "grant.group_id",
            "not an Okta group ID",
        );
        check(
            &okta(&format!(
                "org_url = \"https://acme.okta.com\"\n{ok_token}\n{ok_group}\nend_sessions = \"yes\""
            )),
            "grant.end_sessions",
            "true or false",
        );
    }

    #[test]
    fn reads_the_next_page_from_the_link_header() {
        let mut headers = HeaderMap::new();
        headers.append(
            LINK,
            HeaderValue::from_static(
                "<https://acme.okta.com/api/v1/groups/g/users?limit=2>; rel=\"self\"",
            ),
        );
        headers.append(
            LINK,
            HeaderValue::from_static(
                "<https://acme.okta.com/api/v1/groups/g/users?after=00u2&limit=2>; rel=\"next\"",
            ),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("https://acme.okta.com/api/v1/groups/g/users?after=00u2&limit=2")
        );
        assert_eq!(next_link(&HeaderMap::new()), None);
    }
}
