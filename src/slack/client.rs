//! The Slack Web API client: `POST {SLACK_API_URL}/{method}` with the bot
//! token as a bearer header and a JSON body, and Slack's answers turned into
//! typed results (`ok:false` errors, 429 with Retry-After, 5xx, no answer).

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::Secret;

/// Why a Web API call did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SlackError {
    /// Slack answered `{"ok": false, "error": ...}`.
    #[error("Slack {method} answered error `{error}`")]
    Api { method: String, error: String },
    #[error("Slack {method} is rate limited; retry after {retry_after:?}")]
    RateLimited {
        method: String,
        retry_after: Duration,
    },
    #[error("Slack {method} answered HTTP {status}")]
    Http { method: String, status: u16 },
    #[error("Slack {method} could not be reached: {reason}")]
    Transport { method: String, reason: String },
}

impl SlackError {
    /// Whether trying again later can succeed. Errors such as
    /// `channel_not_found` or `invalid_auth` never will.
    pub fn is_retryable(&self) -> bool {
        match self {
            SlackError::Api { error, .. } => matches!(
                error.as_str(),
                "internal_error"
                    | "fatal_error"
                    | "service_unavailable"
                    | "request_timeout"
                    | "ratelimited"
                    | "rate_limited"
                    | "team_added_to_org"
            ),
            SlackError::RateLimited { .. } => true,
            SlackError::Http { status, .. } => *status >= 500 || *status == 408,
            SlackError::Transport { .. } => true,
        }
    }

    /// How long Slack asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SlackError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The `error` code of an `ok:false` answer.
    pub fn api_error(&self) -> Option<&str> {
        match self {
            SlackError::Api { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// What `users.info` tells us about a person.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserInfo {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub deleted: bool,
    pub is_bot: bool,
    /// Seconds east of UTC of the person's time zone now (`tz_offset`).
    pub tz_offset: Option<i32>,
}

/// Who the bot token belongs to, from `auth.test`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BotIdentity {
    pub user_id: String,
    /// The bot user's name, as people type it after `@`.
    pub name: String,
}

/// What `conversations.info` tells us about a channel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelInfo {
    /// Without the `#`; empty when Slack did not say.
    pub name: String,
    pub is_member: bool,
    pub is_archived: bool,
}

/// A cheap-to-clone Web API client.
#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

impl SlackClient {
    pub fn new(base: &str, token: Secret) -> SlackClient {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("accessbot/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("TLS backend initialises");
        SlackClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// Calls `method` with a JSON body; `Ok` holds the whole answer of an `ok:true` reply.
    #[tracing::instrument(skip_all, fields(method = method))]
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, SlackError> {
        let request = self
            .http
            .post(format!("{}/{}", self.base, method))
            .header("Content-Type", "application/json; charset=utf-8")
            .body(body.to_string());
        self.send(method, request).await
    }

    /// Calls `method` with form arguments. Slack reads JSON bodies only for
    /// most write methods; read methods such as `conversations.info` take
    /// their arguments as a form.
    #[tracing::instrument(skip_all, fields(method = method))]
    pub async fn call_form(
        &self,
        method: &str,
        args: &[(&str, &str)],
    ) -> Result<Value, SlackError> {
        let request = self
            .http
            .post(format!("{}/{}", self.base, method))
            .form(args);
        self.send(method, request).await
    }

    async fn send(
        &self,
        method: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, SlackError> {
        let result = self.send_once(method, request).await;
        if let Err(e) = &result {
            let code = match e {
                SlackError::Api { error, .. } => error.clone(),
                SlackError::RateLimited { .. } => "ratelimited".to_string(),
                SlackError::Http { status, .. } => format!("http_{status}"),
                SlackError::Transport { .. } => "unreachable".to_string(),
            };
            crate::metrics::slack_api_error(method, &code);
        }
        result
    }

    async fn send_once(
        &self,
        method: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, SlackError> {
        let transport = |e: reqwest::Error| SlackError::Transport {
            method: method.to_string(),
            // reqwest errors carry the URL, never the Authorization header.
            reason: e.without_url().to_string(),
        };
        let resp = request
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        if status.as_u16() == 429 {
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(1);
            return Err(SlackError::RateLimited {
                method: method.to_string(),
                retry_after: Duration::from_secs(retry_after.min(3600)),
            });
        }
        if !status.is_success() {
            return Err(SlackError::Http {
                method: method.to_string(),
                status: status.as_u16(),
            });
        }
        let answer: Value = resp.json().await.map_err(transport)?;
        if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            if let Some(w) = answer.get("warning").and_then(Value::as_str) {
                tracing::debug!(warning = w, "Slack answered with a warning");
            }
            Ok(answer)
        } else {
            Err(SlackError::Api {
                method: method.to_string(),
                error: answer
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown_error")
                    .to_string(),
            })
        }
    }

    /// `auth.test`: whether the token is valid, and the bot's name (for
    /// "/invite @name").
    pub async fn auth_test(&self) -> Result<BotIdentity, SlackError> {
        let v = self.call_form("auth.test", &[]).await?;
        Ok(BotIdentity {
            user_id: str_at(&v, &["user_id"]),
            name: str_at(&v, &["user"]),
        })
    }

    /// `conversations.info`: whether `channel` exists for the bot, and
    /// whether the bot is in it.
    pub async fn channel_info(&self, channel: &str) -> Result<ChannelInfo, SlackError> {
        let v = self
            .call_form("conversations.info", &[("channel", channel)])
            .await?;
        let c = &v["channel"];
        Ok(ChannelInfo {
            name: str_at(c, &["name"]),
            is_member: c["is_member"].as_bool().unwrap_or(false),
            is_archived: c["is_archived"].as_bool().unwrap_or(false),
        })
    }

    /// Opens (or finds) the DM channel with `user`.
    pub async fn open_dm(&self, user: &str) -> Result<String, SlackError> {
        let v = self
            .call("conversations.open", &json!({ "users": user }))
            .await?;
        Ok(str_at(&v, &["channel", "id"]))
    }

    /// Posts a message; returns (channel, ts).
    pub async fn post_message(
        &self,
        channel: &str,
        text: &str,
        blocks: &Value,
    ) -> Result<(String, String), SlackError> {
        let v = self
            .call(
                "chat.postMessage",
                &json!({ "channel": channel, "text": text, "blocks": blocks, "unfurl_links": false }),
            )
            .await?;
        Ok((str_at(&v, &["channel"]), str_at(&v, &["ts"])))
    }

    /// chat.postMessage as a reply in the thread of `thread_ts` when given;
    /// `broadcast` also shows the reply in the channel (`reply_broadcast`).
    /// Returns the channel and the new message's `ts`.
    pub async fn post_threaded(
        &self,
        channel: &str,
        text: &str,
        blocks: &Value,
        thread_ts: Option<&str>,
        broadcast: bool,
    ) -> Result<(String, String), SlackError> {
        let mut body =
            json!({ "channel": channel, "text": text, "blocks": blocks, "unfurl_links": false });
        if let Some(ts) = thread_ts {
            body["thread_ts"] = json!(ts);
            if broadcast {
                body["reply_broadcast"] = json!(true);
            }
        }
        let v = self.call("chat.postMessage", &body).await?;
        Ok((str_at(&v, &["channel"]), str_at(&v, &["ts"])))
    }

    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: &Value,
    ) -> Result<(), SlackError> {
        self.call(
            "chat.update",
            &json!({ "channel": channel, "ts": ts, "text": text, "blocks": blocks }),
        )
        .await
        .map(|_| ())
    }

    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        text: &str,
    ) -> Result<(), SlackError> {
        self.call(
            "chat.postEphemeral",
            &json!({ "channel": channel, "user": user, "text": text }),
        )
        .await
        .map(|_| ())
    }

    pub async fn views_open(&self, trigger_id: &str, view: &Value) -> Result<Value, SlackError> {
        self.call(
            "views.open",
            &json!({ "trigger_id": trigger_id, "view": view }),
        )
        .await
    }

    pub async fn views_update(
        &self,
        view_id: &str,
        hash: Option<&str>,
        view: &Value,
    ) -> Result<Value, SlackError> {
        let mut body = json!({ "view_id": view_id, "view": view });
        if let Some(h) = hash {
            body["hash"] = json!(h);
        }
        self.call("views.update", &body).await
    }

    pub async fn views_publish(&self, user: &str, view: &Value) -> Result<(), SlackError> {
        self.call("views.publish", &json!({ "user_id": user, "view": view }))
            .await
            .map(|_| ())
    }

    pub async fn user_info(&self, user: &str) -> Result<UserInfo, SlackError> {
        let v = self.call_form("users.info", &[("user", user)]).await?;
        let u = &v["user"];
        let profile = &u["profile"];
        let name = [
            &profile["real_name"],
            &u["real_name"],
            &profile["display_name"],
            &u["name"],
        ]
        .into_iter()
        .filter_map(Value::as_str)
        .find(|s| !s.is_empty())
        .unwrap_or(user)
        .to_string();
        Ok(UserInfo {
            id: user.to_string(),
            name,
            email: profile["email"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
            deleted: u["deleted"].as_bool().unwrap_or(false),
            is_bot: u["is_bot"].as_bool().unwrap_or(false),
            tz_offset: u["tz_offset"].as_i64().and_then(|o| i32::try_from(o).ok()),
        })
    }

    /// The value of a custom profile field (by field ID), if set.
    pub async fn profile_field(
        &self,
        user: &str,
        field: &str,
    ) -> Result<Option<String>, SlackError> {
        let v = self
            .call_form("users.profile.get", &[("user", user)])
            .await?;
        Ok(v["profile"]["fields"][field]["value"]
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string))
    }

    pub async fn usergroup_members(&self, group: &str) -> Result<Vec<String>, SlackError> {
        let v = self
            .call_form("usergroups.users.list", &[("usergroup", group)])
            .await?;
        Ok(v["users"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `apps.connections.open`: a fresh Socket Mode WebSocket URL. Only an
    /// app-level token (`xapp-…`, scope `connections:write`) may call it,
    /// so this client must be built with that token. The URL carries a
    /// single-use ticket: treat it as a secret and never log it.
    pub async fn connections_open(&self) -> Result<String, SlackError> {
        let v = self.call_form("apps.connections.open", &[]).await?;
        match v["url"].as_str() {
            Some(url) if !url.is_empty() => Ok(url.to_string()),
            _ => Err(SlackError::Api {
                method: "apps.connections.open".into(),
                error: "no_url_in_answer".into(),
            }),
        }
    }

    pub async fn usergroup_set(&self, group: &str, users: &[String]) -> Result<(), SlackError> {
        self.call(
            "usergroups.users.update",
            &json!({ "usergroup": group, "users": users.join(",") }),
        )
        .await
        .map(|_| ())
    }
}

fn str_at(v: &Value, path: &[&str]) -> String {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_str()
        .unwrap_or_default()
        .to_string()
}
