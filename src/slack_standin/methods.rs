//! The Web API methods the stand-in answers: for each, the checks Slack
//! makes (arguments, channel membership, Block Kit limits), the answer it
//! gives and how it changes the workspace state (messages with
//! `chat.update` applied, views, user-group members), plus the faults and
//! per-channel rate limits a test set up. [`super`] records the call and
//! puts the answer on the wire.

use super::*;

impl State {
    /// The Retry-After of a post to a rate-limited channel that comes too
    /// soon; a post in time is counted as the channel's last.
    pub(super) fn channel_limited(&mut self, method: &str, body: &Value) -> Option<u64> {
        if method != "chat.postMessage" {
            return None;
        }
        let channel = str_arg(body, "channel")?;
        let (every, secs, last) = self.channel_limits.get_mut(channel)?;
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < *every) {
            return Some(*secs);
        }
        *last = Some(now);
        None
    }

    pub(super) fn take_fault(&mut self, method: &str) -> Option<FaultKind> {
        let index = self
            .faults
            .iter()
            .position(|fault| fault.method == "*" || fault.method == method)?;
        let fault = &mut self.faults[index];
        fault.remaining -= 1;
        let kind = fault.kind.clone();
        if fault.remaining == 0 {
            self.faults.remove(index);
        }
        Some(kind)
    }

    pub(super) fn answer(
        &mut self,
        method: &str,
        request: &Incoming,
        body: Value,
        body_error: Option<&str>,
    ) -> Reply {
        if !request.path.starts_with("/api/") {
            return Reply::Page { status: 404 };
        }
        if request.http_method != "POST" {
            return Reply::Page { status: 405 };
        }
        let query: Vec<(String, String)> =
            serde_urlencoded::from_str(&request.query).unwrap_or_default();
        if query.iter().any(|(key, _)| key == "token") {
            return slack_reply(fail("invalid_auth"));
        }
        if method == "apps.connections.open" {
            return slack_reply(self.apps_connections_open(request.authorization.as_deref()));
        }
        match request.authorization.as_deref().map(str::trim) {
            None | Some("") => return slack_reply(fail("not_authed")),
            Some(given) if given != format!("Bearer {}", self.token) => {
                return slack_reply(fail("invalid_auth"))
            }
            Some(_) => {}
        }
        if let Some(error) = body_error {
            return slack_reply(fail(error));
        }
        // Slack reads JSON bodies only on (most) write methods; a read
        // method sent JSON sees none of its arguments.
        let is_json = request
            .content_type
            .as_deref()
            .is_some_and(|ct| ct.trim_start().starts_with("application/json"));
        if is_json && FORM_ONLY.contains(&method) {
            return slack_reply(fail("invalid_arguments"));
        }
        let answer = match method {
            "auth.test" => Ok(json!({
                "url": "https://fake.slack.com/", "team": "Fake", "user": "accessbot",
                "team_id": TEAM, "user_id": BOT_USER, "bot_id": "B0ACCESSBOT",
            })),
            "chat.postMessage" => self.chat_post_message(&body),
            "chat.update" => self.chat_update(&body),
            "chat.postEphemeral" => self.chat_post_ephemeral(&body),
            "conversations.open" => self.conversations_open(&body),
            "conversations.info" => self.conversations_info(&body),
            "views.open" => self.views_open(&body),
            "views.update" => self.views_update(&body),
            "views.publish" => self.views_publish(&body),
            "users.info" => self.users_info(&body),
            "users.profile.get" => self.users_profile_get(&body),
            "usergroups.users.list" => self.usergroups_users_list(&body),
            "usergroups.users.update" => self.usergroups_users_update(&body),
            _ => Err(fail("unknown_method")),
        };
        slack_reply(match answer {
            Ok(mut value) => {
                value["ok"] = Value::Bool(true);
                value
            }
            Err(value) => value,
        })
    }

    /// Only an app-level token opens a Socket Mode connection; a bot token
    /// is refused as Slack refuses it.
    fn apps_connections_open(&self, authorization: Option<&str>) -> Value {
        let given = authorization.map(str::trim).unwrap_or_default();
        let Some((app_token, endpoint)) = &self.socket_mode else {
            return fail("not_allowed_token_type");
        };
        if given.is_empty() {
            fail("not_authed")
        } else if given == format!("Bearer {}", self.token) {
            fail("not_allowed_token_type")
        } else if given != format!("Bearer {app_token}") {
            fail("invalid_auth")
        } else {
            json!({"ok": true, "url": endpoint.issue_url()})
        }
    }

    fn chat_post_message(&mut self, body: &Value) -> Answer {
        let channel = self.channel(body)?;
        let (text, blocks) = message_content(body)?;
        let text = text.unwrap_or_default();
        let blocks = blocks.unwrap_or_else(|| json!([]));
        if text.is_empty() && blocks.as_array().is_none_or(Vec::is_empty) {
            return Err(fail("no_text"));
        }
        let ts = self.next_ts();
        let mut stored = json!({"ts": ts, "text": text, "blocks": blocks});
        if let Some(thread_ts) = str_arg(body, "thread_ts") {
            stored["thread_ts"] = json!(thread_ts);
            if body["reply_broadcast"] == json!(true) {
                stored["reply_broadcast"] = json!(true);
            }
        }
        let mut message = stored.clone();
        message["type"] = json!("message");
        message["user"] = json!(BOT_USER);
        self.messages
            .entry(channel.clone())
            .or_default()
            .push(stored);
        Ok(json!({"channel": channel, "ts": ts, "message": message}))
    }

    /// Like Slack, a field left out of the update keeps its old value: text-only updates keep the buttons.
    fn chat_update(&mut self, body: &Value) -> Answer {
        let channel = self.channel(body)?;
        let ts = str_arg(body, "ts").ok_or_else(|| fail("message_not_found"))?;
        let (text, blocks) = message_content(body)?;
        let stored = self
            .messages
            .get_mut(&channel)
            .and_then(|messages| messages.iter_mut().find(|m| m["ts"] == ts))
            .ok_or_else(|| fail("message_not_found"))?;
        if text.is_none() && blocks.is_none() {
            return Err(fail("no_text"));
        }
        if let Some(text) = text {
            stored["text"] = json!(text);
        }
        if let Some(blocks) = blocks {
            stored["blocks"] = blocks;
        }
        let stored = stored.clone();
        Ok(json!({
            "channel": channel, "ts": ts, "text": stored["text"],
            "message": {"type": "message", "user": BOT_USER, "text": stored["text"], "blocks": stored["blocks"]},
        }))
    }

    fn chat_post_ephemeral(&mut self, body: &Value) -> Answer {
        self.channel(body)?;
        str_arg(body, "user").ok_or_else(|| fail("user_not_found"))?;
        let (text, blocks) = message_content(body)?;
        let has_blocks = blocks
            .as_ref()
            .is_some_and(|b| b.as_array().is_some_and(|b| !b.is_empty()));
        if text.as_deref().is_none_or(str::is_empty) && !has_blocks {
            return Err(fail("no_text"));
        }
        let ts = self.next_ts();
        self.ephemerals.push(json!({
            "channel": body["channel"], "user": body["user"], "ts": ts,
            "text": text.unwrap_or_default(), "blocks": blocks.unwrap_or_else(|| json!([])),
        }));
        Ok(json!({"message_ts": ts}))
    }

    fn conversations_open(&mut self, body: &Value) -> Answer {
        let users = id_list(body, "users");
        let first = users
            .first()
            .ok_or_else(|| fail("users_list_not_supplied"))?;
        if users.iter().any(|user| !self.users.contains_key(user)) {
            return Err(fail("user_not_found"));
        }
        Ok(json!({"channel": {"id": format!("D{first}")}}))
    }

    /// Like Slack: a channel the bot was not invited to is `is_member: false`
    /// when public, and `channel_not_found` when private (`G…`), since the
    /// bot cannot see it at all.
    fn conversations_info(&mut self, body: &Value) -> Answer {
        let id = str_arg(body, "channel").ok_or_else(|| fail("channel_not_found"))?;
        let private = id.starts_with('G');
        let outside = self.not_in_channels.contains(id);
        if self.missing_channels.contains(id)
            || !id.starts_with(['C', 'G', 'D'])
            || (private && outside)
        {
            return Err(fail("channel_not_found"));
        }
        Ok(json!({"channel": {
            "id": id,
            "name": channel_name(id),
            "is_channel": !private,
            "is_group": false,
            "is_im": id.starts_with('D'),
            "is_private": private,
            "is_archived": false,
            "is_member": !outside,
        }}))
    }

    fn views_open(&mut self, body: &Value) -> Answer {
        let trigger = str_arg(body, "trigger_id").ok_or_else(|| fail("invalid_trigger_id"))?;
        if self.used_triggers.contains(trigger) {
            return Err(fail("trigger_exchanged"));
        }
        let view = view_arg(body)?;
        self.used_triggers.insert(trigger.to_string());
        let stored = self.store_view(None, view, None);
        if let (Some(user), Some(id)) = (self.trigger_users.get(trigger), stored["id"].as_str()) {
            self.modal_of.insert(id.to_string(), user.clone());
        }
        Ok(json!({"view": stored}))
    }

    fn views_update(&mut self, body: &Value) -> Answer {
        let id = str_arg(body, "view_id").unwrap_or_default();
        let current = self
            .views
            .iter()
            .find(|stored| stored.id == id)
            .ok_or_else(|| fail("not_found"))?;
        if str_arg(body, "hash").is_some_and(|hash| hash != current.hash) {
            return Err(fail("hash_conflict"));
        }
        let home_of = current.home_of.clone();
        let view = view_arg(body)?;
        Ok(json!({"view": self.store_view(Some(id.to_string()), view, home_of)}))
    }

    fn views_publish(&mut self, body: &Value) -> Answer {
        let user = str_arg(body, "user_id")
            .ok_or_else(|| {
                invalid_arguments(vec!["[ERROR] missing required field: user_id".into()])
            })?
            .to_string();
        let view = view_arg(body)?;
        if view["type"] != "home" {
            return Err(invalid_arguments(vec![
                "[ERROR] views.publish only accepts views of type home [json-pointer:/view/type]"
                    .into(),
            ]));
        }
        let current = self
            .views
            .iter()
            .find(|stored| stored.home_of.as_deref() == Some(user.as_str()));
        if let (Some(current), Some(hash)) = (current, str_arg(body, "hash")) {
            if hash != current.hash {
                return Err(fail("hash_conflict"));
            }
        }
        let id = current.map(|stored| stored.id.clone());
        Ok(json!({"view": self.store_view(id, view, Some(user))}))
    }

    fn users_info(&mut self, body: &Value) -> Answer {
        let (id, user) = self.user(body)?;
        let name = user.email.split('@').next().unwrap_or_default();
        Ok(json!({"user": {
            "id": id, "team_id": TEAM, "name": name, "deleted": false, "is_bot": false,
            "real_name": user.real_name,
            "tz": user.tz.0, "tz_label": user.tz.0, "tz_offset": user.tz.1,
            "profile": {"email": user.email, "real_name": user.real_name, "display_name": user.real_name},
        }}))
    }

    fn users_profile_get(&mut self, body: &Value) -> Answer {
        let (id, user) = self.user(body)?;
        let fields: Map<String, Value> = self
            .profile_fields
            .get(&id)
            .into_iter()
            .flatten()
            .map(|(field, value)| (field.clone(), json!({"value": value, "alt": ""})))
            .collect();
        Ok(json!({"profile": {
            "real_name": user.real_name, "display_name": user.real_name,
            "email": user.email, "fields": fields,
        }}))
    }

    fn usergroups_users_list(&mut self, body: &Value) -> Answer {
        let id = str_arg(body, "usergroup").unwrap_or_default();
        let users = self
            .usergroups
            .get(id)
            .ok_or_else(|| fail("no_such_subteam"))?;
        Ok(json!({"users": users}))
    }

    fn usergroups_users_update(&mut self, body: &Value) -> Answer {
        let id = str_arg(body, "usergroup").unwrap_or_default().to_string();
        if !self.usergroups.contains_key(&id) {
            return Err(fail("no_such_subteam"));
        }
        let users = id_list(body, "users");
        let looks_like_user = |user: &String| user.starts_with('U') || user.starts_with('W');
        // Slack cannot leave a group empty and refuses anything that is not a user ID.
        if users.is_empty() || !users.iter().all(looks_like_user) {
            return Err(fail("invalid_users"));
        }
        self.usergroups.insert(id.clone(), users.clone());
        Ok(json!({"usergroup": {"id": id, "users": users, "user_count": users.len()}}))
    }

    pub(super) fn channel(&self, body: &Value) -> Result<String, Value> {
        let channel = str_arg(body, "channel").ok_or_else(|| fail("channel_not_found"))?;
        if self.not_in_channels.contains(channel) {
            return Err(fail("not_in_channel"));
        }
        if self.missing_channels.contains(channel) || !channel.starts_with(['C', 'G', 'D']) {
            return Err(fail("channel_not_found"));
        }
        Ok(channel.to_string())
    }

    pub(super) fn user(&self, body: &Value) -> Result<(String, &User), Value> {
        let id = str_arg(body, "user").unwrap_or_default();
        let user = self.users.get(id).ok_or_else(|| fail("user_not_found"))?;
        Ok((id.to_string(), user))
    }

    /// Stores a view under `id` (a new ID when `None`) with a fresh hash and returns it as Slack shows it.
    pub(super) fn store_view(
        &mut self,
        id: Option<String>,
        mut view: Value,
        home_of: Option<String>,
    ) -> Value {
        self.last_view += 1;
        let hash = format!("1700000000.{:08x}", self.last_view);
        let id = id.unwrap_or_else(|| format!("V{:010}", self.last_view));
        view["id"] = json!(id);
        view["hash"] = json!(hash);
        let stored = StoredView {
            id: id.clone(),
            hash,
            home_of,
            view: view.clone(),
        };
        match self.views.iter_mut().find(|old| old.id == id) {
            Some(old) => *old = stored,
            None => self.views.push(stored),
        }
        view
    }

    /// Slack-style timestamps: unique, increasing, six decimals.
    pub(super) fn next_ts(&mut self) -> String {
        self.last_ts += 1;
        let micros = 1_700_000_000_000_000 + self.last_ts * 100;
        format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
    }
}
