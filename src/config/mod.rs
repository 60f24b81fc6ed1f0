//! Settings: an optional TOML file (`--config`, default `./accessbot.toml`
//! when present) overlaid by environment variables, which win.
//!
//! Secrets are wrapped in [`Secret`] so no `{:?}` or log line can print them.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::duration::parse_duration;

/// The shortest `ACCESSBOT_AUDIT_TOKEN` accepted.
pub const MIN_AUDIT_TOKEN_CHARS: usize = 24;

/// A value that must never reach a log, an error message or a page.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The only way to read the value; grep for it to audit every use.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Everything `accessbot serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Checks requests Slack sends over HTTP; without it (Socket Mode only)
    /// the `/slack/*` routes are off.
    pub signing_secret: Option<Secret>,
    pub bot_token: Secret,
    /// Base URL of the Slack Web API, without a trailing slash.
    pub api_url: String,
    pub audit_channel: String,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub runbooks: PathBuf,
    /// Requester -> manager, for approver kind `manager`.
    pub directory: BTreeMap<String, String>,
    /// Slack custom profile field ID whose value is the manager's user ID.
    pub manager_field: Option<String>,
    /// How long before a grant ends the requester is warned (capped at a fifth of the grant).
    pub expiry_warning: Duration,
    /// First retry interval for failed revokes and Slack deliveries (a failed
    /// grant is not retried: it is cleaned up and reported).
    pub retry_base: Duration,
    /// Longest retry interval; backoff doubles up to this.
    pub retry_max: Duration,
    /// Bearer token for `GET /audit`; the export is off without one.
    pub audit_token: Option<Secret>,
    /// `postgres://…`: the PostgreSQL database every replica shares. A
    /// secret (it carries the password); without it the store is sled in
    /// `data_dir`.
    pub database_url: Option<Secret>,
    /// sled's page cache in bytes (`ACCESSBOT_SLED_CACHE`, e.g. `64MiB`).
    pub sled_cache: u64,
    /// How long a replica holds claimed due work, outbox entries and
    /// provider runs before another replica may take them over.
    pub lease: Duration,
    /// Slack user ID -> identity in the grant targets (`[identities]`);
    /// wins over the Slack profile email.
    pub identities: crate::identity::Identities,
    /// `SLACK_APP_TOKEN` (`xapp-…`, scope `connections:write`): when set,
    /// Slack reaches the bot over Socket Mode and no public URL is needed.
    pub slack_app_token: Option<Secret>,
    /// How often a Socket Mode connection is pinged; one that answers
    /// nothing for as long again is dropped and reopened.
    pub socket_ping: Duration,
    /// `ACCESSBOT_SECURITY_GROUP`: the Slack user group (`S…`) whose
    /// members see, in the Home tab, who holds access now and the
    /// break-glass grants not yet reviewed. Unset: nobody sees them.
    pub security_group: Option<String>,
    /// The audit channel's backlog past which notices are sent as digests
    /// (`ACCESSBOT_AUDIT_DIGEST_AFTER`, default 20).
    pub audit_digest_after: u64,
    /// At most one digest per this (`ACCESSBOT_AUDIT_DIGEST_EVERY`, default 10s).
    pub audit_digest_every: Duration,
    /// Bearer token for `GET /metrics`; open without one.
    pub metrics_token: Option<Secret>,
    /// Finished requests older than this are removed (`ACCESSBOT_RETENTION`); off when `None`.
    pub retention: Option<Duration>,
    /// Audit events older than this are replaced by a checkpoint
    /// (`ACCESSBOT_AUDIT_RETENTION`); off when `None`.
    pub audit_retention: Option<Duration>,
}

/// Where the store is, picked as `serve` picks it (PostgreSQL when a
/// database URL is set, else sled in the data directory), for commands that
/// need nothing else (`accessbot audit`).
#[derive(Debug, Clone)]
pub enum StoreLocation {
    Postgres(Secret),
    Sled(PathBuf),
}

impl StoreLocation {
    /// Reads `path` (or `./accessbot.toml` when it exists) and the process
    /// environment, like [`Config::load`], for the store settings only.
    pub fn load(path: Option<&Path>) -> Result<StoreLocation, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let default = Path::new("accessbot.toml");
        let file = match path {
            Some(p) => read_file(p)?,
            None if default.exists() => read_file(default)?,
            None => FileConfig::default(),
        };
        let url = env
            .get("ACCESSBOT_DATABASE_URL")
            .filter(|v| !v.trim().is_empty())
            .cloned()
            .or(file.database_url);
        Ok(match url {
            Some(url) => StoreLocation::Postgres(Secret::new(url)),
            None => StoreLocation::Sled(pick_path(
                &env,
                "ACCESSBOT_DATA_DIR",
                file.data_dir,
                "./data",
            )),
        })
    }
}

/// Why the configuration cannot be used; each says which setting and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing setting {env}: {hint}")]
    Missing {
        env: &'static str,
        hint: &'static str,
    },
    #[error("invalid setting {env}: {reason}")]
    Invalid { env: &'static str, reason: String },
    #[error("cannot read config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    /// More than one setting is wrong: all are listed, one per line, so a
    /// newcomer fixes them in one go instead of one per start.
    #[error("{} settings need attention:{}", .0.len(), list(.0))]
    Several(Vec<ConfigError>),
}

fn list(problems: &[ConfigError]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

impl ConfigError {
    /// One problem as itself, several as [`ConfigError::Several`].
    fn from_all(mut problems: Vec<ConfigError>) -> Option<ConfigError> {
        match problems.len() {
            0 => None,
            1 => problems.pop(),
            _ => Some(ConfigError::Several(problems)),
        }
    }
}

/// The file's shape; every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    slack_signing_secret: Option<String>,
    slack_bot_token: Option<String>,
    slack_api_url: Option<String>,
    audit_channel: Option<String>,
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    runbooks: Option<PathBuf>,
    manager_field: Option<String>,
    expiry_warning: Option<String>,
    retry_base: Option<String>,
    retry_max: Option<String>,
    audit_token: Option<String>,
    database_url: Option<String>,
    sled_cache: Option<String>,
    lease: Option<String>,
    slack_app_token: Option<String>,
    socket_ping: Option<String>,
    security_group: Option<String>,
    audit_digest_after: Option<u64>,
    audit_digest_every: Option<String>,
    metrics_token: Option<String>,
    retention: Option<String>,
    audit_retention: Option<String>,
    #[serde(default)]
    directory: BTreeMap<String, String>,
    #[serde(default)]
    identities: BTreeMap<String, String>,
}

impl Config {
    /// Loads `path` (or `./accessbot.toml` when it exists), then applies the
    /// process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::load_with(path, &env)
    }

    /// [`Config::load`] with an explicit environment, for tests.
    pub fn load_with(
        path: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let default = Path::new("accessbot.toml");
        let file = match path {
            Some(p) => read_file(p)?,
            None if default.exists() => read_file(default)?,
            None => FileConfig::default(),
        };
        let pick = |name: &str, from_file: Option<String>| -> Option<String> {
            env.get(name)
                .filter(|v| !v.trim().is_empty())
                .cloned()
                .or(from_file)
        };

        // Every setting is checked, and every problem reported at once.
        let mut problems = Vec::new();
        let mut required = |env: &'static str, value: Option<String>, hint: &'static str| {
            let value = pick(env, value);
            if value.is_none() {
                problems.push(ConfigError::Missing { env, hint });
            }
            value.unwrap_or_default()
        };
        let slack_app_token = pick("SLACK_APP_TOKEN", file.slack_app_token).map(Secret::new);
        let signing_secret =
            pick("SLACK_SIGNING_SECRET", file.slack_signing_secret).map(Secret::new);
        let [bot_token, audit_channel] = [
            ("SLACK_BOT_TOKEN", file.slack_bot_token,
             "copy the Bot User OAuth Token (xoxb-...) from your Slack app's OAuth & Permissions page"),
            ("ACCESSBOT_AUDIT_CHANNEL", file.audit_channel,
             "set it to the ID (C...) of the channel that receives audit notices, and invite the bot there"),
        ]
        .map(|(env, value, hint)| required(env, value, hint));
        if signing_secret.is_none() && slack_app_token.is_none() {
            problems.push(ConfigError::Missing {
                env: "SLACK_APP_TOKEN or SLACK_SIGNING_SECRET",
                hint: "Slack must be able to reach the bot: for Socket Mode (no public URL), generate an app-level token with the connections:write scope on your Slack app's Basic Information page and set SLACK_APP_TOKEN (xapp-...); for HTTP, copy the Signing Secret from the same page into SLACK_SIGNING_SECRET",
            });
        }
        if let Some(token) = &slack_app_token {
            if !token.expose().trim().starts_with("xapp-") {
                problems.push(ConfigError::Invalid {
                    env: "SLACK_APP_TOKEN",
                    reason: "not an app-level token: it must start with xapp- (Basic Information, App-Level Tokens, scope connections:write); the bot token (xoxb-) goes in SLACK_BOT_TOKEN".into(),
                });
            }
        }
        if !audit_channel.is_empty() && !looks_like_channel(&audit_channel) {
            problems.push(ConfigError::Invalid {
                env: "ACCESSBOT_AUDIT_CHANNEL",
                reason: format!(
                    "`{audit_channel}` is not a channel ID; use the ID (C... or G...), not the name"
                ),
            });
        }
        let api_url = pick("SLACK_API_URL", file.slack_api_url)
            .unwrap_or_else(|| "https://slack.com/api".to_string())
            .trim_end_matches('/')
            .to_string();
        if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
            problems.push(ConfigError::Invalid {
                env: "SLACK_API_URL",
                reason: format!("`{api_url}` is not an http(s) URL"),
            });
        }
        let listen_text =
            pick("ACCESSBOT_LISTEN", file.listen).unwrap_or_else(|| "0.0.0.0:3000".to_string());
        let listen = listen_text.parse().unwrap_or_else(|_| {
            problems.push(ConfigError::Invalid {
                env: "ACCESSBOT_LISTEN",
                reason: format!(
                    "`{listen_text}` is not an address; write host:port, e.g. 0.0.0.0:3000"
                ),
            });
            SocketAddr::from(([0, 0, 0, 0], 3000))
        });
        let data_dir = pick_path(env, "ACCESSBOT_DATA_DIR", file.data_dir, "./data");
        let runbooks = pick_path(env, "ACCESSBOT_RUNBOOKS", file.runbooks, "./runbooks");
        let manager_field = pick("ACCESSBOT_MANAGER_FIELD", file.manager_field);
        let [expiry_warning, retry_base, retry_max, lease, socket_ping] = [
            ("ACCESSBOT_EXPIRY_WARNING", file.expiry_warning, "10m"),
            ("ACCESSBOT_RETRY_BASE", file.retry_base, "1s"),
            ("ACCESSBOT_RETRY_MAX", file.retry_max, "5m"),
            ("ACCESSBOT_LEASE", file.lease, "60s"),
            ("ACCESSBOT_SOCKET_PING", file.socket_ping, "10s"),
        ]
        .map(|(name, value, default)| {
            pick_duration(name, pick(name, value), default).unwrap_or_else(|e| {
                problems.push(e);
                Duration::from_secs(1)
            })
        });
        let database_url = pick("ACCESSBOT_DATABASE_URL", file.database_url).map(Secret::new);
        if let Some(url) = &database_url {
            let url = url.expose();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                problems.push(ConfigError::Invalid {
                    env: "ACCESSBOT_DATABASE_URL",
                    reason: format!(
                        "`{}` is not a PostgreSQL URL; write postgres://USER:PASSWORD@HOST:5432/DATABASE",
                        crate::store::url::mask_url(url)
                    ),
                });
            }
        }
        let sled_cache = match pick("ACCESSBOT_SLED_CACHE", file.sled_cache) {
            None => crate::store::DEFAULT_CACHE_CAPACITY,
            Some(text) => parse_size(&text).unwrap_or_else(|reason| {
                problems.push(ConfigError::Invalid {
                    env: "ACCESSBOT_SLED_CACHE",
                    reason,
                });
                crate::store::DEFAULT_CACHE_CAPACITY
            }),
        };
        let audit_token = pick("ACCESSBOT_AUDIT_TOKEN", file.audit_token).map(Secret::new);
        if let Some(token) = &audit_token {
            if token.expose().trim().chars().count() < MIN_AUDIT_TOKEN_CHARS {
                problems.push(ConfigError::Invalid {
                    env: "ACCESSBOT_AUDIT_TOKEN",
                    reason: format!(
                        "too short to guard the audit log; use at least {MIN_AUDIT_TOKEN_CHARS} random characters, e.g. the output of `openssl rand -hex 24`"
                    ),
                });
            }
        }
        let identities = crate::identity::Identities::new(file.identities);
        for reason in identities.problems() {
            problems.push(ConfigError::Invalid {
                env: "identities",
                reason,
            });
        }
        let security_group =
            pick("ACCESSBOT_SECURITY_GROUP", file.security_group).map(|g| g.trim().to_string());
        if let Some(group) = &security_group {
            if !looks_like_usergroup(group) {
                problems.push(ConfigError::Invalid {
                    env: "ACCESSBOT_SECURITY_GROUP",
                    reason: format!(
                        "`{}` is not a user group ID; use the group's ID (S…, shown in the group's page URL or by usergroups.list), not its @handle",
                        crate::slack::blocks::truncate(group, 40)
                    ),
                });
            }
        }
        let metrics_token = pick("ACCESSBOT_METRICS_TOKEN", file.metrics_token).map(Secret::new);
        if let Some(token) = &metrics_token {
            if token.expose().trim().chars().count() < MIN_AUDIT_TOKEN_CHARS {
                problems.push(ConfigError::Invalid {
                    env: "ACCESSBOT_METRICS_TOKEN",
                    reason: format!(
                        "too short to guard /metrics; use at least {MIN_AUDIT_TOKEN_CHARS} random characters, e.g. the output of `openssl rand -hex 24`"
                    ),
                });
            }
        }
        let audit_digest_after = match pick(
            "ACCESSBOT_AUDIT_DIGEST_AFTER",
            file.audit_digest_after.map(|n| n.to_string()),
        ) {
            None => 20,
            Some(text) => text.trim().parse::<u64>().ok().filter(|n| *n >= 1).unwrap_or_else(|| {
                problems.push(ConfigError::Invalid {
                    env: "ACCESSBOT_AUDIT_DIGEST_AFTER",
                    reason: format!("`{text}` is not a number of notices; write a whole number of at least 1, e.g. 20"),
                });
                20
            }),
        };
        let audit_digest_every = pick_duration(
            "ACCESSBOT_AUDIT_DIGEST_EVERY",
            pick("ACCESSBOT_AUDIT_DIGEST_EVERY", file.audit_digest_every),
            "10s",
        )
        .unwrap_or_else(|e| {
            problems.push(e);
            Duration::from_secs(10)
        });
        let [retention, audit_retention] = [
            ("ACCESSBOT_RETENTION", file.retention),
            ("ACCESSBOT_AUDIT_RETENTION", file.audit_retention),
        ]
        .map(|(name, value)| match pick(name, value) {
            None => None,
            Some(text) => crate::retention::parse_retention(&text).unwrap_or_else(|reason| {
                problems.push(ConfigError::Invalid { env: name, reason });
                None
            }),
        });
        if let Some(e) = ConfigError::from_all(problems) {
            return Err(e);
        }
        Ok(Config {
            signing_secret,
            bot_token: Secret::new(bot_token),
            api_url,
            audit_channel,
            listen,
            data_dir,
            runbooks,
            directory: file.directory,
            manager_field,
            expiry_warning,
            retry_base,
            retry_max: retry_max.max(retry_base),
            audit_token,
            database_url,
            sled_cache,
            lease,
            identities,
            slack_app_token,
            socket_ping,
            security_group,
            audit_digest_after,
            audit_digest_every,
            metrics_token,
            retention,
            audit_retention,
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    // toml's message quotes the offending line, which could hold a secret;
    // keep only its first line (the position and the kind of error).
    toml::from_str(&text).map_err(|e: toml::de::Error| ConfigError::File {
        path: path.to_path_buf(),
        reason: e.message().to_string(),
    })
}

fn pick_path(
    env: &BTreeMap<String, String>,
    name: &str,
    from_file: Option<PathBuf>,
    default: &str,
) -> PathBuf {
    env.get(name)
        .filter(|v| !v.trim().is_empty())
        .map(PathBuf::from)
        .or(from_file)
        .unwrap_or_else(|| PathBuf::from(default))
}

fn pick_duration(
    env: &'static str,
    value: Option<String>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_string());
    parse_duration(&text).map_err(|e| ConfigError::Invalid {
        env,
        reason: e.to_string(),
    })
}

/// A size as people write it: `64MiB`, `512 KiB`, `1GiB`, `100MB`, or
/// bytes alone. At least 1 MiB, so sled has room to work.
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size; write e.g. 64MiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}`; use KiB, MiB or GiB (e.g. 64MiB)"
            ))
        }
    };
    let bytes = (number * factor as f64) as u64;
    if bytes < 1 << 20 {
        return Err(format!("`{text}` is too small; give sled at least 1MiB"));
    }
    Ok(bytes)
}

fn looks_like_channel(id: &str) -> bool {
    id.len() >= 2
        && matches!(id.as_bytes()[0], b'C' | b'G' | b'D')
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// A Slack user group ID: `S` and upper-case letters and digits.
fn looks_like_usergroup(id: &str) -> bool {
    id.len() >= 2
        && id.starts_with('S')
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests;
