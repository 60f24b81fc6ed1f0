//! The settings' unit tests: defaults, every check and its message.

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const BASE: &[(&str, &str)] = &[
    ("SLACK_SIGNING_SECRET", "sss"),
    ("SLACK_BOT_TOKEN", "xoxb-1"),
    ("ACCESSBOT_AUDIT_CHANNEL", "C0AUDIT"),
];

#[test]
fn environment_alone_is_enough_and_defaults_apply() {
    let c = Config::load_with(Some(Path::new("/dev/null")), &env(BASE)).unwrap();
    assert_eq!(c.api_url, "https://slack.com/api");
    assert_eq!(c.listen.to_string(), "0.0.0.0:3000");
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.expiry_warning, Duration::from_secs(600));
}

#[test]
fn security_group_and_digest_settings_are_read_and_checked() {
    let c = Config::load_with(Some(Path::new("/dev/null")), &env(BASE)).unwrap();
    assert_eq!(c.security_group, None);
    assert_eq!(c.audit_digest_after, 20);
    assert_eq!(c.audit_digest_every, Duration::from_secs(10));
    let mut pairs = BASE.to_vec();
    pairs.extend([
        ("ACCESSBOT_SECURITY_GROUP", "S0SECURITY"),
        ("ACCESSBOT_AUDIT_DIGEST_AFTER", "50"),
        ("ACCESSBOT_AUDIT_DIGEST_EVERY", "30s"),
    ]);
    let c = Config::load_with(Some(Path::new("/dev/null")), &env(&pairs)).unwrap();
    assert_eq!(c.security_group.as_deref(), Some("S0SECURITY"));
    assert_eq!(c.audit_digest_after, 50);
    assert_eq!(c.audit_digest_every, Duration::from_secs(30));
    let mut bad = BASE.to_vec();
    bad.extend([
        ("ACCESSBOT_SECURITY_GROUP", "@security"),
        ("ACCESSBOT_AUDIT_DIGEST_AFTER", "0"),
        ("ACCESSBOT_AUDIT_DIGEST_EVERY", "often"),
    ]);
    let e = Config::load_with(Some(Path::new("/dev/null")), &env(&bad))
        .unwrap_err()
        .to_string();
    for part in [
        "3 settings need attention",
        "ACCESSBOT_SECURITY_GROUP: `@security` is not a user group ID",
        "ACCESSBOT_AUDIT_DIGEST_AFTER",
        "ACCESSBOT_AUDIT_DIGEST_EVERY",
    ] {
        assert!(e.contains(part), "{part:?} not in:\n{e}");
    }
}

#[test]
fn a_short_audit_token_is_refused_without_echoing_it() {
    let mut pairs = BASE.to_vec();
    pairs.push(("ACCESSBOT_AUDIT_TOKEN", "hunter2-short"));
    let e = Config::load_with(Some(Path::new("/dev/null")), &env(&pairs))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ACCESSBOT_AUDIT_TOKEN") && e.contains("at least 24"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");
    let long = "x".repeat(MIN_AUDIT_TOKEN_CHARS);
    pairs.pop();
    pairs.push(("ACCESSBOT_AUDIT_TOKEN", &long));
    let c = Config::load_with(Some(Path::new("/dev/null")), &env(&pairs)).unwrap();
    assert_eq!(
        c.audit_token.map(|t| t.expose().to_string()),
        Some(long.clone())
    );
    assert!(Config::load_with(Some(Path::new("/dev/null")), &env(BASE))
        .unwrap()
        .audit_token
        .is_none());
}

#[test]
fn the_security_group_is_a_user_group_id() {
    let c = Config::load_with(Some(Path::new("/dev/null")), &env(BASE)).unwrap();
    assert_eq!(c.security_group, None);
    let mut pairs = BASE.to_vec();
    pairs.push(("ACCESSBOT_SECURITY_GROUP", "S0SECURITY"));
    let c = Config::load_with(Some(Path::new("/dev/null")), &env(&pairs)).unwrap();
    assert_eq!(c.security_group.as_deref(), Some("S0SECURITY"));
    pairs.pop();
    pairs.push(("ACCESSBOT_SECURITY_GROUP", "@security-team"));
    let e = Config::load_with(Some(Path::new("/dev/null")), &env(&pairs))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ACCESSBOT_SECURITY_GROUP") && e.contains("not a user group ID"),
        "{e}"
    );
}

#[test]
fn missing_secret_is_named_and_not_printed() {
    let e = Config::load_with(
        Some(Path::new("/dev/null")),
        &env(&[("SLACK_BOT_TOKEN", "xoxb-secret-value")]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("SLACK_SIGNING_SECRET"), "{e}");
    assert!(!e.contains("xoxb-secret-value"));
}

#[test]
fn identities_come_from_the_file_and_bad_entries_are_named() {
    let dir = std::env::temp_dir().join(format!("accessbot-ids-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("accessbot.toml");
    std::fs::write(&path, "[identities]\nU0ALICE = \"alice@acme.com\"\n").unwrap();
    let c = Config::load_with(Some(&path), &env(BASE)).unwrap();
    assert_eq!(c.identities.mapped("U0ALICE"), Some("alice@acme.com"));
    std::fs::write(&path, "[identities]\nalice = \"alice@acme.com\"\n").unwrap();
    let e = Config::load_with(Some(&path), &env(BASE))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("[identities]: `alice` is not a Slack user ID"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn file_values_are_overridden_by_environment() {
    let dir = std::env::temp_dir().join(format!("accessbot-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("accessbot.toml");
    std::fs::write(
        &path,
        "listen = \"127.0.0.1:9\"\naudit_channel = \"C0FILE\"\n[directory]\nU0A = \"U0B\"\n",
    )
    .unwrap();
    let mut e = env(BASE);
    e.remove("ACCESSBOT_AUDIT_CHANNEL");
    let c = Config::load_with(Some(&path), &e).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:9");
    assert_eq!(c.audit_channel, "C0FILE");
    assert_eq!(c.directory.get("U0A").map(String::as_str), Some("U0B"));
    e.insert("ACCESSBOT_AUDIT_CHANNEL".into(), "C0ENV".into());
    assert_eq!(
        Config::load_with(Some(&path), &e).unwrap().audit_channel,
        "C0ENV"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = Config::load_with(
        Some(Path::new("/dev/null")),
        &env(&[
            ("SLACK_BOT_TOKEN", "xoxb-secret-value"),
            ("ACCESSBOT_LISTEN", "nowhere"),
            ("ACCESSBOT_RETRY_BASE", "soon"),
        ]),
    )
    .unwrap_err()
    .to_string();
    for part in [
        "4 settings need attention",
        "missing setting SLACK_APP_TOKEN or SLACK_SIGNING_SECRET",
        "missing setting ACCESSBOT_AUDIT_CHANNEL",
        "invalid setting ACCESSBOT_LISTEN",
        "invalid setting ACCESSBOT_RETRY_BASE",
    ] {
        assert!(e.contains(part), "{part:?} not in:\n{e}");
    }
    assert!(!e.contains("xoxb-secret-value"), "{e}");
}

#[test]
fn sizes_read_as_people_write_them() {
    for (text, bytes) in [
        ("64MiB", 64 << 20),
        ("64 MiB", 64 << 20),
        ("1GiB", 1 << 30),
        ("100MB", 100_000_000),
        ("1.5GiB", 3 << 29),
        ("2097152", 2 << 20),
    ] {
        assert_eq!(parse_size(text), Ok(bytes), "{text}");
    }
    for bad in ["", "lots", "64XB", "1KiB"] {
        assert!(parse_size(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_database_url_selects_postgres_and_is_never_printed() {
    let c = Config::load_with(Some(Path::new("/dev/null")), &env(BASE)).unwrap();
    assert!(c.database_url.is_none());
    assert_eq!(c.sled_cache, 64 << 20);
    let mut pairs = BASE.to_vec();
    pairs.push((
        "ACCESSBOT_DATABASE_URL",
        "postgres://bot:s3cret@db:5432/accessbot",
    ));
    pairs.push(("ACCESSBOT_SLED_CACHE", "16MiB"));
    let c = Config::load_with(Some(Path::new("/dev/null")), &env(&pairs)).unwrap();
    assert_eq!(
        c.database_url.as_ref().map(Secret::expose),
        Some("postgres://bot:s3cret@db:5432/accessbot")
    );
    assert_eq!(c.sled_cache, 16 << 20);
    assert!(!format!("{c:?}").contains("s3cret"));
    pairs.pop();
    pairs.pop();
    pairs.push(("ACCESSBOT_DATABASE_URL", "mysql://bot:s3cret@db/accessbot"));
    let e = Config::load_with(Some(Path::new("/dev/null")), &env(&pairs))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ACCESSBOT_DATABASE_URL") && e.contains("db"),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");
}

#[test]
fn socket_mode_needs_no_signing_secret_but_one_of_the_two_is_required() {
    let socket_only = env(&[
        ("SLACK_APP_TOKEN", "xapp-1-A0-secret-app-token"),
        ("SLACK_BOT_TOKEN", "xoxb-1"),
        ("ACCESSBOT_AUDIT_CHANNEL", "C0AUDIT"),
    ]);
    let c = Config::load_with(Some(Path::new("/dev/null")), &socket_only).unwrap();
    assert!(c.signing_secret.is_none());
    assert_eq!(
        c.slack_app_token.as_ref().map(Secret::expose),
        Some("xapp-1-A0-secret-app-token")
    );
    assert!(!format!("{c:?}").contains("secret-app-token"));
    assert_eq!(c.socket_ping, Duration::from_secs(10));
    // HTTP alone still works, and Socket Mode is then off.
    let c = Config::load_with(Some(Path::new("/dev/null")), &env(BASE)).unwrap();
    assert!(c.slack_app_token.is_none() && c.signing_secret.is_some());

    let neither = env(&[
        ("SLACK_BOT_TOKEN", "xoxb-1"),
        ("ACCESSBOT_AUDIT_CHANNEL", "C0AUDIT"),
    ]);
    let e = Config::load_with(Some(Path::new("/dev/null")), &neither)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("SLACK_APP_TOKEN or SLACK_SIGNING_SECRET")
            && e.contains("connections:write")
            && e.contains("Signing Secret"),
        "{e}"
    );

    let mut wrong_kind = socket_only.clone();
    wrong_kind.insert("SLACK_APP_TOKEN".into(), "xoxb-secret-bot-token".into());
    let e = Config::load_with(Some(Path::new("/dev/null")), &wrong_kind)
        .unwrap_err()
        .to_string();
    assert!(e.contains("SLACK_APP_TOKEN") && e.contains("xapp-"), "{e}");
    assert!(!e.contains("secret-bot-token"), "{e}");
}

#[test]
fn secret_debug_is_redacted() {
    let s = Secret::new("xoxb-123");
    assert!(!format!("{s:?} {s}").contains("xoxb"));
}
