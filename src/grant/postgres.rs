//! The `postgres` provider: access is membership of a PostgreSQL role
//! (`GRANT "finance_read" TO "alice"`), for people who query a reporting
//! database. It owns its `[grant]` keys: `url_env` (the environment variable
//! holding the target database's URL, a secret), `role`, `login` (how the
//! person's login is made from their identity: `email_local`, the default,
//! `email` or `mapped`) and `end_sessions` (end the login's open sessions
//! after a revoke).
//!
//! Identifiers are never spliced into SQL by accessbot: the server quotes
//! them (`SELECT format('GRANT %I TO %I', $1, $2)`, the role and the login
//! sent as bind parameters) and accessbot runs the statement it returns.
//! Names PostgreSQL would silently cut (over 63 bytes) or cannot hold (NUL)
//! are refused. Grant and revoke look at `pg_auth_members` first, so
//! granting a held role or revoking an absent one succeeds without a
//! statement; `verify` and `members` read `pg_auth_members` too. A pool per
//! database URL is made on first use. Errors name the step, the variable
//! and the database (password masked) and PostgreSQL's own message.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{
    Action, GrantContext, GrantError, GrantFuture, MembersFuture, Presence, Provider,
    ProviderError, Services, VerifyFuture,
};
use crate::runbook::{is_env_name, shorten, GrantTable};
use crate::store::url::{mask_url, scrub_password};

/// The longest identifier PostgreSQL keeps (NAMEDATALEN - 1 bytes); a
/// longer one would be cut to a name that may belong to someone else.
const MAX_IDENTIFIER: usize = 63;

/// How long a step waits for a connection to the target database.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Server-side limits on every statement, so a run stuck behind a lock
/// fails (and is retried) well within the run's lease instead of hanging.
const SESSION_LIMITS: [(&str, &str); 2] = [("statement_timeout", "20s"), ("lock_timeout", "10s")];

/// How the person's login in the database is made from their identity
/// ([`GrantContext::identity`]: the `[identities]` entry, else the email).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFrom {
    /// The part before `@`, lower-cased: `Alice.Smith@acme.com` → `alice.smith`.
    EmailLocal,
    /// The whole email, lower-cased.
    Email,
    /// The identity as it is: the `[identities]` entry names the login.
    Mapped,
}

/// A `postgres` runbook's `[grant]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresSpec {
    /// The environment variable holding the target database's URL.
    pub url_env: String,
    /// The role whose membership is the access.
    pub role: String,
    pub login: LoginFrom,
    /// Terminate the login's backends after a revoke.
    pub end_sessions: bool,
}

impl PostgresSpec {
    /// The person's login for this spec, or why there is none.
    pub fn login_of(&self, ctx: &GrantContext) -> Result<String, GrantError> {
        let Some(identity) = ctx.identity.as_deref().filter(|i| !i.trim().is_empty()) else {
            return Err(GrantError::Misconfigured {
                provider: PostgresProvider::NAME,
                problem: format!(
                    "accessbot does not know who <@{}> is in the database: Slack shares no email and the config's [identities] has no entry; add `{} = \"…\"` under [identities]",
                    ctx.user_id, ctx.user_id
                ),
            });
        };
        let login = match self.login {
            LoginFrom::EmailLocal => identity
                .split('@')
                .next()
                .unwrap_or_default()
                .to_lowercase(),
            LoginFrom::Email => identity.to_lowercase(),
            LoginFrom::Mapped => identity.to_string(),
        };
        if let Some(problem) = identifier_problem(&login) {
            return Err(GrantError::Misconfigured {
                provider: PostgresProvider::NAME,
                problem: format!(
                    "the login `{}` made for <@{}> {problem}; map the person to their real login under [identities]",
                    shorten(&login),
                    ctx.user_id
                ),
            });
        }
        Ok(login)
    }
}

/// Why `name` cannot be a PostgreSQL identifier accessbot uses, if it cannot.
fn identifier_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.contains('\0') {
        Some("holds a NUL character, which PostgreSQL names cannot hold")
    } else if name.len() > MAX_IDENTIFIER {
        Some("is longer than 63 bytes, which PostgreSQL would cut to another name")
    } else {
        None
    }
}

impl Provider for PostgresProvider {
    const NAME: &'static str = "postgres";
    const KEYS: &'static [&'static str] = &["url_env", "role", "login", "end_sessions"];
    type Spec = PostgresSpec;

    fn parse(t: &mut GrantTable<'_>) -> Option<PostgresSpec> {
        let found = t.string("url_env");
        let url_env = t.require(
            "url_env",
            found,
            r#"add url_env = "FINANCE_DB_URL", the name of the environment variable holding the database's URL (postgres://user:password@host:5432/db)"#,
        );
        let url_env = url_env.and_then(|name| {
            if is_env_name(&name.value) {
                return Some(name.value);
            }
            let what = if name.value.contains("://") {
                "looks like the URL itself; put the URL in an environment variable and write that variable's name here"
            } else {
                "is not an environment variable name; write the variable's name (letters, digits, underscores)"
            };
            t.report(name.line, "url_env", format!("this value {what}"));
            None
        });
        let found = t.string("role");
        let role = t.require(
            "role",
            found,
            r#"add role = "finance_read", the database role that carries the access"#,
        );
        let role = role.and_then(|role| match identifier_problem(&role.value) {
            None => Some(role.value),
            Some(problem) => {
                t.report(
                    role.line,
                    "role",
                    format!(
                        "the role `{}` {problem}; write the role's name as in the database",
                        shorten(&role.value)
                    ),
                );
                None
            }
        });
        let found = t.string("login");
        let login = t.optional("login", found)?;
        let login = match login {
            None => Some(LoginFrom::EmailLocal),
            Some(l) => match l.value.as_str() {
                "email_local" => Some(LoginFrom::EmailLocal),
                "email" => Some(LoginFrom::Email),
                "mapped" => Some(LoginFrom::Mapped),
                other => {
                    t.report(
                        l.line,
                        "login",
                        format!(
                            "`{}` is not a way to make the login; use \"email_local\" (the part before @, the default), \"email\" or \"mapped\" (the [identities] entry in accessbot's config)",
                            shorten(other)
                        ),
                    );
                    None
                }
            },
        };
        let found = t.bool("end_sessions");
        let end_sessions = t.optional("end_sessions", found)?.unwrap_or(false);
        Some(PostgresSpec {
            url_env: url_env?,
            role: role?,
            login: login?,
            end_sessions,
        })
    }

    fn env_needed(spec: &PostgresSpec) -> Vec<String> {
        vec![spec.url_env.clone()]
    }

    fn target(spec: &PostgresSpec) -> Option<String> {
        Some(format!("postgres:{}/{}", spec.url_env, spec.role))
    }

    fn needs_identity(_spec: &PostgresSpec) -> bool {
        true
    }

    fn member_name(spec: &PostgresSpec, ctx: &GrantContext) -> Option<String> {
        spec.login_of(ctx).ok()
    }

    fn start(_services: &Services) -> Option<Self> {
        Some(Self::new())
    }

    fn apply<'a>(
        &'a self,
        spec: &'a PostgresSpec,
        action: Action,
        ctx: &'a GrantContext,
    ) -> GrantFuture<'a> {
        Box::pin(async move {
            let login = spec.login_of(ctx)?;
            let db = self.database(spec)?;
            match action {
                Action::Grant => db.grant(&spec.role, &login).await,
                Action::Revoke => {
                    db.revoke(&spec.role, &login).await?;
                    if spec.end_sessions {
                        let ended = db.end_sessions(&login).await?;
                        if ended > 0 {
                            tracing::info!(request_id = %ctx.request_id, ended, "ended the login's open database sessions");
                        }
                    }
                    Ok(())
                }
            }
        })
    }

    fn verify<'a>(
        &'a self,
        spec: &'a PostgresSpec,
        ctx: &'a GrantContext,
    ) -> Option<VerifyFuture<'a>> {
        Some(Box::pin(async move {
            let login = spec.login_of(ctx)?;
            let db = self.database(spec)?;
            Ok(if db.is_member(&spec.role, &login, "verify").await? {
                Presence::Present
            } else {
                Presence::Absent
            })
        }))
    }

    fn members<'a>(&'a self, spec: &'a PostgresSpec) -> Option<MembersFuture<'a>> {
        Some(Box::pin(async move {
            self.database(spec)?.members(&spec.role).await
        }))
    }
}

/// Grants and revokes PostgreSQL roles; one connection pool per database
/// URL, made when a runbook first uses it.
#[derive(Default)]
pub struct PostgresProvider {
    pools: Mutex<HashMap<String, PgPool>>,
}

impl PostgresProvider {
    pub fn new() -> Self {
        Self::default()
    }

    /// The target database of `spec`, its URL read from the environment now.
    fn database(&self, spec: &PostgresSpec) -> Result<Database, GrantError> {
        let fail = |message: String| PostgresError {
            database: format!("the database in `{}`", spec.url_env),
            step: "connect",
            message,
            retryable: false,
        };
        let url = std::env::var(&spec.url_env)
            .ok()
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| {
                fail(format!(
                    "the environment variable `{}` is not set or is empty; set it to the database's URL where accessbot runs",
                    spec.url_env
                ))
            })?;
        let described = format!("{} (`{}`)", mask_url(&url), spec.url_env);
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let pool = match pools.get(&url) {
            Some(pool) => pool.clone(),
            None => {
                let options = PgConnectOptions::from_str(&url).map_err(|e| PostgresError {
                    database: described.clone(),
                    step: "connect",
                    message: format!(
                        "the URL cannot be used ({}); write postgres://USER:PASSWORD@HOST:5432/DATABASE",
                        scrub_password(&e.to_string(), &url)
                    ),
                    retryable: false,
                })?;
                let pool = PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(CONNECT_TIMEOUT)
                    .connect_lazy_with(options.options(SESSION_LIMITS));
                pools.insert(url.clone(), pool.clone());
                pool
            }
        };
        Ok(Database {
            pool,
            url,
            described,
        })
    }
}

/// One target database, for one run.
struct Database {
    pool: PgPool,
    url: String,
    /// The URL with its password masked, and the variable it came from.
    described: String,
}

/// Whether `login` is a direct member of `role`.
const IS_MEMBER: &str = "SELECT EXISTS (SELECT 1 FROM pg_auth_members m \
     JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member \
     WHERE r.rolname = $1 AND u.rolname = $2)";

/// The direct members of `role`, but the bot's own login (which may hold
/// the role to administer it).
const MEMBERS: &str = "SELECT u.rolname::text FROM pg_auth_members m \
     JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member \
     WHERE r.rolname = $1 AND u.rolname <> current_user ORDER BY 1";

/// Whether a role of that name exists.
const ROLE_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)";

impl Database {
    fn error(&self, step: &'static str, e: sqlx::Error) -> GrantError {
        let (message, retryable) = match &e {
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.to_string()).unwrap_or_default();
                // Connection trouble, too many connections, the server
                // shutting down, serialisation failures: worth a retry.
                let retryable = ["08", "53", "57", "40"]
                    .iter()
                    .any(|class| code.starts_with(class));
                (format!("{} (SQLSTATE {code})", db.message()), retryable)
            }
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => (e.to_string(), true),
            _ => (e.to_string(), false),
        };
        PostgresError {
            database: self.described.clone(),
            step,
            message: scrub_password(&message, &self.url),
            retryable,
        }
        .into()
    }

    async fn is_member(
        &self,
        role: &str,
        login: &str,
        step: &'static str,
    ) -> Result<bool, GrantError> {
        sqlx::query_scalar(IS_MEMBER)
            .bind(role)
            .bind(login)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error(step, e))
    }

    async fn role_exists(&self, name: &str, step: &'static str) -> Result<bool, GrantError> {
        sqlx::query_scalar(ROLE_EXISTS)
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error(step, e))
    }

    /// Runs `template` (`GRANT %I TO %I`) with the two names quoted by the
    /// server's `format`, never by string splicing here.
    async fn run_quoted(
        &self,
        template: &str,
        role: &str,
        login: &str,
        step: &'static str,
    ) -> Result<(), GrantError> {
        let statement: String = sqlx::query_scalar("SELECT format($1, $2::text, $3::text)")
            .bind(template)
            .bind(role)
            .bind(login)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error(step, e))?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&self.pool)
            .await
            .map_err(|e| self.error(step, e))?;
        Ok(())
    }

    async fn grant(&self, role: &str, login: &str) -> Result<(), GrantError> {
        if self.is_member(role, login, "grant").await? {
            return Ok(());
        }
        if !self.role_exists(login, "grant").await? {
            return Err(PostgresError {
                database: self.described.clone(),
                step: "grant",
                message: format!(
                    "there is no login `{}` in the database; create it (CREATE ROLE … LOGIN) or map the person to their login under [identities] in accessbot's config",
                    shorten(login)
                ),
                retryable: false,
            }
            .into());
        }
        self.run_quoted("GRANT %I TO %I", role, login, "grant")
            .await
    }

    async fn revoke(&self, role: &str, login: &str) -> Result<(), GrantError> {
        if !self.is_member(role, login, "revoke").await? {
            return Ok(());
        }
        self.run_quoted("REVOKE %I FROM %I", role, login, "revoke")
            .await
    }

    /// Terminates `login`'s backends; returns how many were ended.
    async fn end_sessions(&self, login: &str) -> Result<i64, GrantError> {
        sqlx::query_scalar(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE usename = $1 AND pid <> pg_backend_pid()",
        )
        .bind(login)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.error("end sessions", e))
    }

    async fn members(&self, role: &str) -> Result<Vec<String>, GrantError> {
        sqlx::query_scalar(MEMBERS)
            .bind(role)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error("list members", e))
    }
}

/// A failed step against the target database.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL {database}: {step}: {message}")]
pub struct PostgresError {
    /// The masked URL and the variable it came from.
    database: String,
    step: &'static str,
    /// PostgreSQL's message (and SQLSTATE), password scrubbed.
    message: String,
    retryable: bool,
}

impl ProviderError for PostgresError {
    fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl From<PostgresError> for GrantError {
    fn from(error: PostgresError) -> Self {
        GrantError::Provider {
            provider: PostgresProvider::NAME,
            error: Box::new(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grant::GrantSpec;
    use crate::runbook::fixture::{check, listed, parse, VALID};

    fn with_grant(body: &str) -> String {
        let grant_start = VALID.find("[grant]").unwrap();
        format!(
            "{}[grant]\nprovider = \"postgres\"\n{body}\n",
            &VALID[..grant_start]
        )
    }

    #[test]
    fn postgres_maps_into_the_model() {
        let text = with_grant("url_env = \"FINANCE_DB_URL\"\nrole = \"finance_read\"");
        let runbook = parse(&text).unwrap_or_else(|p| panic!("{}", listed(&p)));
        let spec = PostgresSpec {
            url_env: "FINANCE_DB_URL".into(),
            role: "finance_read".into(),
            login: LoginFrom::EmailLocal,
            end_sessions: false,
        };
        assert_eq!(runbook.grant, GrantSpec::new("postgres", spec));
        assert_eq!(runbook.grant.env_needed(), ["FINANCE_DB_URL"]);
        assert_eq!(
            runbook.grant.target(),
            Some("postgres:FINANCE_DB_URL/finance_read")
        );
        assert!(runbook.grant.needs_identity());
        let text =
            with_grant("url_env = \"DB\"\nrole = \"r\"\nlogin = \"mapped\"\nend_sessions = true");
        let runbook = parse(&text).unwrap_or_else(|p| panic!("{}", listed(&p)));
        let spec = runbook.grant.get::<PostgresSpec>().unwrap();
        assert_eq!(spec.login, LoginFrom::Mapped);
        assert!(spec.end_sessions);
    }

    #[test]
    fn reports_bad_postgres_tables() {
        check(&with_grant("role = \"r\""), "grant.url_env", "missing");
        check(
            &with_grant("url_env = \"postgres://u:p@h/db\"\nrole = \"r\""),
            "grant.url_env",
            "looks like the URL itself",
        );
        check(&with_grant("url_env = \"DB\""), "grant.role", "missing");
        check(
            &with_grant(&format!("url_env = \"DB\"\nrole = \"{}\"", "r".repeat(64))),
            "grant.role",
            "longer than 63 bytes",
        );
        check(
            &with_grant("url_env = \"DB\"\nrole = \"r\"\nlogin = \"upn\""),
            "grant.login",
            "use \"email_local\"",
        );
        check(
            &with_grant("url_env = \"DB\"\nrole = \"r\"\nend_sessions = \"yes\""),
            "grant.end_sessions",
            "true or false",
        );
    }

    fn ctx(identity: Option<&str>) -> GrantContext {
        GrantContext {
            request_id: "ar-1".into(),
            runbook_id: "finance".into(),
            user_id: "U0ALICE".into(),
            user_email: identity.map(str::to_string),
            identity: identity.map(str::to_string),
            expires_at: chrono::Utc::now(),
            reason: String::new(),
            runbook_dir: "/".into(),
        }
    }

    #[test]
    fn the_login_is_made_from_the_identity() {
        let spec = |login| PostgresSpec {
            url_env: "DB".into(),
            role: "r".into(),
            login,
            end_sessions: false,
        };
        let alice = ctx(Some("Alice.Smith@Acme.com"));
        assert_eq!(
            spec(LoginFrom::EmailLocal).login_of(&alice).unwrap(),
            "alice.smith"
        );
        assert_eq!(
            spec(LoginFrom::Email).login_of(&alice).unwrap(),
            "alice.smith@acme.com"
        );
        assert_eq!(
            spec(LoginFrom::Mapped).login_of(&alice).unwrap(),
            "Alice.Smith@Acme.com"
        );
        let none = spec(LoginFrom::EmailLocal)
            .login_of(&ctx(None))
            .unwrap_err();
        assert!(none.to_string().contains("[identities]"), "{none}");
        assert!(!none.is_retryable());
        let long = format!("{}@acme.com", "a".repeat(64));
        let long = spec(LoginFrom::EmailLocal)
            .login_of(&ctx(Some(&long)))
            .unwrap_err();
        assert!(long.to_string().contains("63 bytes"), "{long}");
    }
}
