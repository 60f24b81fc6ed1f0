//! Socket Mode with several replicas on one PostgreSQL database: each
//! replica keeps a connection of its own, and Slack may deliver the same
//! envelope on two of them; it is handled once.

use std::time::Duration;

use serde_json::Value;

use crate::support::fake_socket_mode::slash_payload;
use crate::support::*;

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_envelope_on_two_replicas_is_handled_once() {
    let mut app = TestApp::spawn_with(Setup::default().socket_mode_only()).await;
    app.socket.wait_connection(1, T).await;
    app.add_replica().await;
    app.socket.wait_connection(2, T).await;
    for base in [app.base_of(0).to_string(), app.base_of(1).to_string()] {
        let deadline = std::time::Instant::now() + T;
        loop {
            let h: Value = reqwest::get(format!("{base}/healthz"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if h["socket_mode"] == "connected" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{base}: {h}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    let payload = slash_payload(ALICE, "request billing-admin 3s refunds", 777);
    for conn in [1, 2] {
        app.socket.envelope_with_id(
            conn,
            "fake-envelope-twice",
            "slash_commands",
            payload.clone(),
            0,
        );
    }
    let acks = wait_until(T, || {
        let acks = app.socket.acks_of("fake-envelope-twice");
        (acks.len() == 2).then_some(acks)
    })
    .await
    .expect("both copies are acknowledged");
    assert_ne!(acks[0].connection, acks[1].connection);
    assert_eq!(acks[0].frame, acks[1].frame, "one answer for both copies");
    let answer = acks[0].frame["payload"]["text"]
        .as_str()
        .unwrap_or_default();
    let id = request_id_in(answer).expect(answer);
    app.wait_dm(BOB, &[&id, "Approve"], T).await;
    app.wait_outbox_empty(T).await;
    let asks = app
        .dms(BOB)
        .into_iter()
        .filter(|m| m.to_string().contains("Approve"))
        .count();
    assert_eq!(asks, 1, "one request, Bob asked once");
}
