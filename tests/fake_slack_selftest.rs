//! Checks the fake Slack Web API in `src/slack_standin/` on its own, with a
//! plain reqwest client, so that an end-to-end failure can be blamed on the
//! bot and not on the fake.

use accessbot::slack_standin as fake_slack;
use accessbot::slack_standin as fake_socket_mode;

use std::time::{Duration, Instant};

use fake_slack::FakeSlack;
use serde_json::{json, Value};

const TOKEN: &str = "xoxb-test-token";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

async fn post(slack: &FakeSlack, method: &str, body: Value) -> reqwest::Response {
    let request = client()
        .post(format!("{}/{method}", slack.url()))
        .bearer_auth(TOKEN);
    // Read methods take form-encoded arguments, as the bot sends them.
    let request = if READS.contains(&method) {
        let pairs: Vec<(String, String)> = body
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        request.form(&pairs)
    } else {
        request.json(&body)
    };
    request.send().await.unwrap()
}

const READS: &[&str] = &[
    "users.info",
    "users.profile.get",
    "usergroups.users.list",
    "conversations.info",
];

#[tokio::test]
async fn read_methods_refuse_json_bodies_like_slack() {
    let slack = FakeSlack::start(TOKEN).await;
    for method in READS {
        let answer: Value = client()
            .post(format!("{}/{method}", slack.url()))
            .bearer_auth(TOKEN)
            .json(&json!({"user": "U1", "usergroup": "S1", "channel": "C1"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            answer,
            json!({"ok": false, "error": "invalid_arguments"}),
            "{method}"
        );
    }
}

/// Calls `method` like the bot does and returns Slack's JSON answer, which must come with HTTP 200.
async fn call(slack: &FakeSlack, method: &str, body: Value) -> Value {
    let response = post(slack, method, body).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn refuses_missing_wrong_and_query_string_tokens() {
    let slack = FakeSlack::start(TOKEN).await;
    let url = format!("{}/chat.postMessage", slack.url());
    let body = json!({"channel": "C1", "text": "hi"});

    let missing: Value = client()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(missing, json!({"ok": false, "error": "not_authed"}));

    let wrong: Value = client()
        .post(&url)
        .bearer_auth("xoxb-wrong")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wrong["error"], "invalid_auth");

    let in_query: Value = client()
        .post(format!("{url}?token={TOKEN}"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(in_query["error"], "invalid_auth");

    let calls = slack.calls("chat.postMessage");
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0].authorization, None);
    assert_eq!(calls[1].authorization.as_deref(), Some("Bearer xoxb-wrong"));
    assert_eq!(calls[2].answered["error"], "invalid_auth");
    assert!(slack.messages_in("C1").is_empty());
}

#[tokio::test]
async fn post_message_then_update_round_trip() {
    let slack = FakeSlack::start(TOKEN).await;
    let blocks = json!([
        {"type": "section", "text": {"type": "mrkdwn", "text": "Request #1"}},
        {"type": "actions", "block_id": "decide", "elements": [
            {"type": "button", "action_id": "approve", "text": {"type": "plain_text", "text": "Approve"}, "value": "1"},
            {"type": "button", "action_id": "deny", "text": {"type": "plain_text", "text": "Deny"}, "value": "1"},
        ]},
    ]);
    let posted = call(
        &slack,
        "chat.postMessage",
        json!({"channel": "C1", "text": "Request #1", "blocks": blocks}),
    )
    .await;
    assert_eq!(posted["ok"], true);
    assert_eq!(posted["channel"], "C1");
    let ts = posted["ts"].as_str().unwrap().to_string();
    assert_eq!(ts, "1700000000.000100");
    assert_eq!(posted["message"]["ts"], ts.as_str());
    assert_eq!(posted["message"]["blocks"], blocks);

    let second = call(
        &slack,
        "chat.postMessage",
        json!({"channel": "C1", "text": "reply", "thread_ts": ts}),
    )
    .await;
    assert!(second["ts"].as_str().unwrap() > ts.as_str());

    let updated = call(
        &slack,
        "chat.update",
        json!({"channel": "C1", "ts": ts, "text": "Approved", "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "Approved by <@U2>"}},
        ]}),
    )
    .await;
    assert_eq!(updated["ok"], true);
    assert_eq!(updated["ts"], ts.as_str());
    assert_eq!(updated["text"], "Approved");

    let message = slack.message("C1", &ts).unwrap();
    assert_eq!(message["text"], "Approved");
    assert_eq!(message["blocks"].as_array().unwrap().len(), 1);
    let all = slack.messages_in("C1");
    assert_eq!(all.len(), 2);
    assert_eq!(all[1]["thread_ts"], ts.as_str());

    // Like Slack, leaving `blocks` out of an update keeps the old ones.
    call(
        &slack,
        "chat.update",
        json!({"channel": "C1", "ts": ts, "text": "text only"}),
    )
    .await;
    let message = slack.message("C1", &ts).unwrap();
    assert_eq!(message["text"], "text only");
    assert_eq!(message["blocks"].as_array().unwrap().len(), 1);

    let unknown = call(
        &slack,
        "chat.update",
        json!({"channel": "C1", "ts": "1.000000", "text": "x"}),
    )
    .await;
    assert_eq!(unknown["error"], "message_not_found");
}

#[tokio::test]
async fn post_message_checks_channel_and_text() {
    let slack = FakeSlack::start(TOKEN).await;
    slack.set_channel_missing("C404");
    slack.set_not_in_channel("C403");
    for (body, error) in [
        (json!({"text": "x"}), "channel_not_found"),
        (
            json!({"channel": "general", "text": "x"}),
            "channel_not_found",
        ),
        (json!({"channel": "C404", "text": "x"}), "channel_not_found"),
        (json!({"channel": "C403", "text": "x"}), "not_in_channel"),
        (json!({"channel": "C1"}), "no_text"),
        (
            json!({"channel": "C1", "text": "", "blocks": []}),
            "no_text",
        ),
    ] {
        let answer = call(&slack, "chat.postMessage", body.clone()).await;
        assert_eq!(answer["error"], error, "for {body}");
    }
    let ephemeral = call(
        &slack,
        "chat.postEphemeral",
        json!({"channel": "C1", "user": "U1", "text": "only you"}),
    )
    .await;
    assert_eq!(ephemeral["ok"], true);
    assert!(ephemeral["message_ts"].is_string());
    let no_user = call(
        &slack,
        "chat.postEphemeral",
        json!({"channel": "C1", "text": "x"}),
    )
    .await;
    assert_eq!(no_user["error"], "user_not_found");
    let unknown = call(&slack, "chat.meMessage", json!({"channel": "C1"})).await;
    assert_eq!(unknown["error"], "unknown_method");
}

#[tokio::test]
async fn conversations_open_and_users() {
    let slack = FakeSlack::start(TOKEN).await;
    slack.add_user("U1", "Ada Lovelace", "ada@example.com");
    slack.set_profile_field("U1", "Xf01MANAGER", "U9");

    let opened = call(&slack, "conversations.open", json!({"users": "U1"})).await;
    assert_eq!(opened, json!({"ok": true, "channel": {"id": "DU1"}}));
    let as_array = call(&slack, "conversations.open", json!({"users": ["U1"]})).await;
    assert_eq!(as_array["channel"]["id"], "DU1");
    let unknown = call(&slack, "conversations.open", json!({"users": "U2"})).await;
    assert_eq!(unknown["error"], "user_not_found");

    let info = call(&slack, "users.info", json!({"user": "U1"})).await;
    assert_eq!(info["user"]["id"], "U1");
    assert_eq!(info["user"]["deleted"], false);
    assert_eq!(info["user"]["profile"]["email"], "ada@example.com");
    assert_eq!(info["user"]["profile"]["real_name"], "Ada Lovelace");
    let missing = call(&slack, "users.info", json!({"user": "U2"})).await;
    assert_eq!(missing["error"], "user_not_found");

    let profile = call(&slack, "users.profile.get", json!({"user": "U1"})).await;
    assert_eq!(
        profile["profile"]["fields"]["Xf01MANAGER"],
        json!({"value": "U9", "alt": ""})
    );
}

/// `conversations.info` as the bot calls it (a form, as for Slack's read
/// methods): a member, a channel the bot was not invited to (public: not a
/// member; private: invisible), a missing one, and `auth.test`.
#[tokio::test]
async fn conversations_info_says_whether_the_bot_is_in_a_channel() {
    let slack = FakeSlack::start(TOKEN).await;
    let info = |channel: &'static str| {
        let url = format!("{}/conversations.info", slack.url());
        async move {
            client()
                .post(url)
                .bearer_auth(TOKEN)
                .form(&[("channel", channel)])
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let member = info("C0AUDIT").await;
    assert_eq!(member["ok"], true, "{member}");
    assert_eq!(member["channel"]["id"], "C0AUDIT");
    assert_eq!(member["channel"]["name"], "0audit");
    assert_eq!(member["channel"]["is_member"], true);

    slack.set_not_in_channel("C0AUDIT");
    slack.set_not_in_channel("G0SECRET");
    slack.set_channel_missing("C0GONE");
    let outside = info("C0AUDIT").await;
    assert_eq!(outside["ok"], true, "{outside}");
    assert_eq!(outside["channel"]["is_member"], false);
    for hidden in ["G0SECRET", "C0GONE", "nonsense"] {
        assert_eq!(
            info(hidden).await,
            json!({"ok": false, "error": "channel_not_found"}),
            "{hidden}"
        );
    }
    assert_eq!(slack.calls("conversations.info").len(), 5);

    let me = call(&slack, "auth.test", json!({})).await;
    assert_eq!(me["ok"], true);
    assert_eq!(me["user"], "accessbot");
}

#[tokio::test]
async fn form_bodies_are_accepted_and_other_types_refused() {
    let slack = FakeSlack::start(TOKEN).await;
    let url = format!("{}/chat.postMessage", slack.url());
    let blocks = r#"[{"type":"section","text":{"type":"mrkdwn","text":"hi"}}]"#;
    let form: Value = client()
        .post(&url)
        .bearer_auth(TOKEN)
        .form(&[("channel", "C1"), ("blocks", blocks)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(form["ok"], true, "{form}");
    let call = slack.calls("chat.postMessage").remove(0);
    assert_eq!(call.body, json!({"channel": "C1", "blocks": blocks}));
    assert_eq!(
        call.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );

    let plain: Value = client()
        .post(&url)
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body("channel=C1&text=hi")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plain["error"], "invalid_form_data");
}

#[tokio::test]
async fn views_open_once_per_trigger_and_update_by_hash() {
    let slack = FakeSlack::start(TOKEN).await;
    let view = json!({"type": "modal", "callback_id": "request", "title": {"type": "plain_text", "text": "Request access"},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Pick a runbook"}}]});
    let opened = call(
        &slack,
        "views.open",
        json!({"trigger_id": "123.456.abc", "view": view}),
    )
    .await;
    assert_eq!(opened["ok"], true, "{opened}");
    let id = opened["view"]["id"].as_str().unwrap().to_string();
    let hash = opened["view"]["hash"].as_str().unwrap().to_string();
    assert!(id.starts_with('V'));
    assert_eq!(opened["view"]["callback_id"], "request");

    let again = call(
        &slack,
        "views.open",
        json!({"trigger_id": "123.456.abc", "view": view}),
    )
    .await;
    assert_eq!(again["error"], "trigger_exchanged");
    let empty = call(
        &slack,
        "views.open",
        json!({"trigger_id": "", "view": view}),
    )
    .await;
    assert_eq!(empty["error"], "invalid_trigger_id");

    let updated = call(
        &slack,
        "views.update",
        json!({"view_id": id, "hash": hash, "view": view}),
    )
    .await;
    assert_eq!(updated["ok"], true);
    assert_ne!(updated["view"]["hash"], hash.as_str());
    let stale = call(
        &slack,
        "views.update",
        json!({"view_id": id, "hash": hash, "view": view}),
    )
    .await;
    assert_eq!(stale["error"], "hash_conflict");
    let unknown = call(
        &slack,
        "views.update",
        json!({"view_id": "V0", "view": view}),
    )
    .await;
    assert_eq!(unknown["error"], "not_found");
    assert_eq!(slack.views().len(), 1);
    assert_eq!(slack.views()[0]["id"], id.as_str());

    let modal_home = call(
        &slack,
        "views.publish",
        json!({"user_id": "U1", "view": view}),
    )
    .await;
    assert_eq!(modal_home["error"], "invalid_arguments");
    let home = json!({"type": "home", "blocks": []});
    let published = call(
        &slack,
        "views.publish",
        json!({"user_id": "U1", "view": home}),
    )
    .await;
    assert_eq!(published["ok"], true);
    assert_eq!(slack.home_view("U1").unwrap()["type"], "home");
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_then_succeeds() {
    let slack = FakeSlack::start(TOKEN).await;
    slack.rate_limit_next("chat.postMessage", 1, 2);
    let body = json!({"channel": "C1", "text": "hi"});
    let limited = post(&slack, "chat.postMessage", body.clone()).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "2");
    let limited: Value = limited.json().await.unwrap();
    assert_eq!(limited, json!({"ok": false, "error": "ratelimited"}));

    let ok = call(&slack, "chat.postMessage", body).await;
    assert_eq!(ok["ok"], true);
    let calls = slack.calls("chat.postMessage");
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].answered["error"], "ratelimited");
    assert_eq!(slack.messages_in("C1").len(), 1);
}

#[tokio::test]
async fn faults_are_consumed_in_registration_order() {
    let slack = FakeSlack::start(TOKEN).await;
    slack.fail_next("*", 1, "internal_error");
    slack.http_error_next("users.info", 1, 500);
    slack.add_user("U1", "Ada", "ada@example.com");

    let failed = call(&slack, "users.info", json!({"user": "U1"})).await;
    assert_eq!(failed, json!({"ok": false, "error": "internal_error"}));
    let server_error = post(&slack, "users.info", json!({"user": "U1"})).await;
    assert_eq!(server_error.status(), 500);
    assert!(server_error.text().await.unwrap().contains("500"));
    let ok = call(&slack, "users.info", json!({"user": "U1"})).await;
    assert_eq!(ok["ok"], true);
    assert_eq!(slack.calls("users.info").len(), 3);
}

#[tokio::test]
async fn dropped_and_down_connections_give_client_errors_and_are_recorded() {
    let slack = FakeSlack::start(TOKEN).await;
    let client = client();
    let send = || {
        client
            .post(format!("{}/chat.postMessage", slack.url()))
            .bearer_auth(TOKEN)
            .json(&json!({"channel": "C1", "text": "hi"}))
            .send()
    };
    // A first success puts a pooled keep-alive connection in the client.
    assert_eq!(send().await.unwrap().status(), 200);
    slack.drop_next("chat.postMessage", 1);
    assert!(send().await.is_err());
    assert_eq!(send().await.unwrap().status(), 200);

    slack.set_down(true);
    assert!(send().await.is_err());
    slack.set_down(false);
    assert_eq!(send().await.unwrap().status(), 200);

    let answered: Vec<bool> = slack
        .calls("chat.postMessage")
        .iter()
        .map(|call| !call.answered.is_null())
        .collect();
    assert_eq!(answered, [true, false, true, false, true]);
    assert_eq!(slack.messages_in("C1").len(), 3);
}

#[tokio::test]
async fn delay_holds_the_answer_but_records_at_once() {
    let slack = FakeSlack::start(TOKEN).await;
    slack.set_delay("chat.postMessage", Duration::from_millis(500));
    let started = Instant::now();
    let waiter = slack.clone();
    let seen = tokio::spawn(async move {
        let call = waiter
            .wait_for("chat.postMessage", Duration::from_secs(5), |_| true)
            .await;
        (
            Instant::now(),
            waiter.messages_in("C1").len(),
            call.answered,
        )
    });
    call(
        &slack,
        "chat.postMessage",
        json!({"channel": "C1", "text": "slow"}),
    )
    .await;
    let answered_at = Instant::now();
    assert!(answered_at - started >= Duration::from_millis(500));
    let (seen_at, messages, answered) = seen.await.unwrap();
    assert!(
        seen_at < answered_at,
        "the call was recorded only after it was answered"
    );
    assert_eq!(messages, 1, "the effect is visible as soon as the call is");
    assert_eq!(answered["ok"], true);
}

#[tokio::test]
async fn usergroup_update_replaces_members_and_cannot_empty() {
    let slack = FakeSlack::start(TOKEN).await;
    slack.set_usergroup("S1", &["U1"]);
    let listed = call(&slack, "usergroups.users.list", json!({"usergroup": "S1"})).await;
    assert_eq!(listed, json!({"ok": true, "users": ["U1"]}));

    let updated = call(
        &slack,
        "usergroups.users.update",
        json!({"usergroup": "S1", "users": "U1,U2"}),
    )
    .await;
    assert_eq!(updated["usergroup"]["users"], json!(["U1", "U2"]));
    assert_eq!(slack.usergroup_members("S1"), ["U1", "U2"]);

    let emptied = call(
        &slack,
        "usergroups.users.update",
        json!({"usergroup": "S1", "users": ""}),
    )
    .await;
    assert_eq!(emptied["error"], "invalid_users");
    assert_eq!(slack.usergroup_members("S1"), ["U1", "U2"]);
    let unknown = call(&slack, "usergroups.users.list", json!({"usergroup": "S9"})).await;
    assert_eq!(unknown["error"], "no_such_subteam");
}

#[tokio::test]
async fn block_kit_limits_are_enforced() {
    let slack = FakeSlack::start(TOKEN).await;
    let section = json!({"type": "section", "text": {"type": "mrkdwn", "text": "x"}});
    let too_many = call(
        &slack,
        "chat.postMessage",
        json!({"channel": "C1", "text": "x", "blocks": vec![section.clone(); 51]}),
    )
    .await;
    assert_eq!(too_many["error"], "invalid_blocks");
    let messages = too_many["response_metadata"]["messages"].to_string();
    assert!(messages.contains("/blocks"), "{messages}");
    let fifty = call(
        &slack,
        "chat.postMessage",
        json!({"channel": "C1", "text": "x", "blocks": vec![section.clone(); 50]}),
    )
    .await;
    assert_eq!(fifty["ok"], true);

    let button = |text: &str| {
        json!([{"type": "actions", "elements": [
            {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": text}},
        ]}])
    };
    let long = call(
        &slack,
        "chat.postMessage",
        json!({"channel": "C1", "text": "x", "blocks": button(&"b".repeat(76))}),
    )
    .await;
    assert_eq!(long["error"], "invalid_blocks");
    let messages = long["response_metadata"]["messages"].to_string();
    assert!(
        messages.contains("/blocks/0/elements/0/text/text"),
        "{messages}"
    );
    let fits = call(
        &slack,
        "chat.postMessage",
        json!({"channel": "C1", "text": "x", "blocks": button(&"b".repeat(75))}),
    )
    .await;
    assert_eq!(fits["ok"], true);

    let duplicate = json!([{"type": "actions", "elements": [
        {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "1"}},
        {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "2"}},
    ]}]);
    let answer = call(
        &slack,
        "chat.postMessage",
        json!({"channel": "C1", "text": "x", "blocks": duplicate}),
    )
    .await;
    assert_eq!(answer["error"], "invalid_blocks");

    let long_title = json!({"type": "modal", "title": {"type": "plain_text", "text": "t".repeat(25)}, "blocks": []});
    let answer = call(
        &slack,
        "views.open",
        json!({"trigger_id": "1.2.3", "view": long_title}),
    )
    .await;
    assert_eq!(answer["error"], "invalid_arguments");
    let option = json!({"text": {"type": "plain_text", "text": "o"}, "value": "v".repeat(151)});
    let select = json!({"type": "modal", "title": {"type": "plain_text", "text": "t"}, "submit": {"type": "plain_text", "text": "Go"},
        "blocks": [{"type": "input", "label": {"type": "plain_text", "text": "l"},
            "element": {"type": "static_select", "action_id": "s", "options": [option]}}]});
    let answer = call(
        &slack,
        "views.open",
        json!({"trigger_id": "1.2.4", "view": select}),
    )
    .await;
    assert_eq!(answer["error"], "invalid_arguments");
    let messages = answer["response_metadata"]["messages"].to_string();
    assert!(
        messages.contains("/view/blocks/0/element/options/0/value"),
        "{messages}"
    );
    assert!(slack.views().is_empty());
}

#[tokio::test]
async fn many_concurrent_clients_get_unique_timestamps() {
    let slack = FakeSlack::start(TOKEN).await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let slack = slack.clone();
            tokio::spawn(async move {
                call(
                    &slack,
                    "chat.postMessage",
                    json!({"channel": "C1", "text": format!("m{i}")}),
                )
                .await["ts"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
        })
        .collect();
    let mut stamps = Vec::new();
    for task in tasks {
        stamps.push(task.await.unwrap());
    }
    stamps.sort();
    stamps.dedup();
    assert_eq!(stamps.len(), 40);
    assert_eq!(
        slack
            .wait_for_count("chat.postMessage", 40, Duration::from_secs(1))
            .await
            .len(),
        40
    );
}

#[tokio::test]
#[should_panic(expected = "chat.update: no matching call")]
async fn wait_for_panics_with_a_dump() {
    let slack = FakeSlack::start(TOKEN).await;
    slack
        .wait_for("chat.update", Duration::from_millis(100), |_| true)
        .await;
}

#[tokio::test]
async fn one_connection_carries_several_requests_including_chunked_ones() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let slack = FakeSlack::start(TOKEN).await;
    let address = slack
        .url()
        .trim_start_matches("http://")
        .replace("/api", "");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let plain = r#"{"channel":"C1","text":"one"}"#;
    let chunked = r#"{"channel":"C1","text":"two"}"#;
    let requests = format!(
        "POST /api/chat.postMessage HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{plain}\
         POST /api/chat.postMessage HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        plain.len(),
        10,
        &chunked[..10],
        chunked.len() - 10,
        &chunked[10..],
    );
    stream.write_all(requests.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
    let texts: Vec<Value> = slack
        .messages_in("C1")
        .iter()
        .map(|message| message["text"].clone())
        .collect();
    assert_eq!(texts, [json!("one"), json!("two")]);
}

/// `apps.connections.open` takes only the app-level token, and each URL it
/// hands out opens one WebSocket connection, which starts with `hello` and
/// records what the client sends.
#[tokio::test]
async fn socket_mode_urls_need_the_app_token_and_open_once() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    const APP: &str = "xapp-1-A0-test";
    let slack = FakeSlack::start(TOKEN).await;
    let socket = fake_socket_mode::FakeSocketMode::start().await;
    slack.enable_socket_mode(APP, socket.clone());
    let open = |token: &'static str| {
        let url = format!("{}/apps.connections.open", slack.url());
        async move {
            client()
                .post(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        open(TOKEN).await,
        json!({"ok": false, "error": "not_allowed_token_type"})
    );
    assert_eq!(
        open("xapp-wrong").await,
        json!({"ok": false, "error": "invalid_auth"})
    );
    let answer = open(APP).await;
    assert_eq!(answer["ok"], true, "{answer}");
    let url = answer["url"].as_str().unwrap().to_string();
    assert!(url.starts_with("ws://") && url.contains("ticket="), "{url}");

    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let hello = match ws.next().await {
        Some(Ok(Message::Text(t))) => serde_json::from_str::<Value>(t.as_str()).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(hello["type"], "hello");
    let id = socket.envelope(1, "slash_commands", json!({"command": "/access"}));
    let envelope = match ws.next().await {
        Some(Ok(Message::Text(t))) => serde_json::from_str::<Value>(t.as_str()).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(envelope["envelope_id"], id.as_str());
    assert_eq!(envelope["accepts_response_payload"], true);
    ws.send(Message::Text(json!({"envelope_id": id}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(
        socket.wait_ack(&id, Duration::from_secs(5)).await.frame,
        json!({"envelope_id": id})
    );

    // The ticket was used: a second connection with it is refused.
    assert!(tokio_tungstenite::connect_async(&url).await.is_err());
    assert_eq!(socket.refused_handshakes(), 1);
    ws.close(None).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while socket.closed(1).is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        socket.closed(1),
        Some("bot"),
        "a close frame from the client"
    );
}
