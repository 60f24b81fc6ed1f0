//! The `[grant]` key checks the directory providers share: service URLs
//! (`https://`, or `http://` to this machine for a test server), names of
//! environment variables, plain text keys with their own rule (an ID, an
//! email, a GUID), and `end_sessions`. Each reports through the runbook
//! loader's [`GrantTable`], with the line and a fix.

use reqwest::Url;

use crate::runbook::{is_env_name, shorten, GrantTable};

/// Checks a service URL: `https://` (or `http://` to this machine, for a
/// local test server), a host, no query or fragment. Returns it without a
/// trailing slash.
pub(crate) fn check_service_url(text: &str) -> Result<String, String> {
    let trimmed = text.trim().trim_end_matches('/');
    let url = Url::parse(trimmed).map_err(|_| "is not a URL".to_string())?;
    let local = matches!(
        url.host_str(),
        Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
    );
    match url.scheme() {
        "https" => {}
        "http" if local => {}
        "http" => {
            return Err(
                "uses http://; credentials must travel over https:// (http is accepted only for a test server on this machine)"
                    .into(),
            )
        }
        _ => return Err("is not an https:// URL".into()),
    }
    if url.host().is_none() {
        return Err("has no host".into());
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err("must not have a query, a fragment or a user name".into());
    }
    Ok(trimmed.to_string())
}

/// A required or defaulted service URL key, checked (see
/// [`check_service_url`]). `default` is `None` for required keys, which then
/// report `how` when missing.
pub(crate) fn service_url(
    t: &mut GrantTable<'_>,
    key: &str,
    default: Option<&str>,
    how: &str,
) -> Option<String> {
    service_url_with(t, key, default, how, |_| Ok(()))
}

/// [`service_url`], with a check of the provider's own on the URL (without
/// its trailing slash) that says what is wrong and how to fix it.
pub(crate) fn service_url_with(
    t: &mut GrantTable<'_>,
    key: &str,
    default: Option<&str>,
    how: &str,
    own: impl Fn(&Url) -> Result<(), String>,
) -> Option<String> {
    let found = t.string(key);
    let url = match default {
        Some(default) => match t.optional(key, found)? {
            Some(url) => url,
            None => return Some(default.to_string()),
        },
        None => t.require(key, found, how)?,
    };
    let checked = check_service_url(&url.value)
        .map_err(|problem| format!("{problem}; {how}"))
        .and_then(|checked| {
            let parsed = Url::parse(&checked).map_err(|e| e.to_string())?;
            own(&parsed).map(|()| checked)
        });
    match checked {
        Ok(checked) => Some(checked),
        Err(problem) => {
            t.report(
                url.line,
                key,
                format!("`{}` {problem}", shorten(&url.value)),
            );
            None
        }
    }
}

/// A required key naming an environment variable that holds a secret.
pub(crate) fn env_key(t: &mut GrantTable<'_>, key: &str, how: &str) -> Option<String> {
    let found = t.string(key);
    let name = t.require(key, found, how)?;
    if is_env_name(&name.value) {
        return Some(name.value);
    }
    t.report(
        name.line,
        key,
        format!(
            "`{}` is not an environment variable name; write the variable's name (letters, digits, underscores), not the secret itself",
            shorten(&name.value)
        ),
    );
    None
}

/// A required key of plain text (an ID, an email), trimmed, not empty;
/// `valid` says what is wrong with a value, if anything.
pub(crate) fn text_key(
    t: &mut GrantTable<'_>,
    key: &str,
    how: &str,
    valid: impl Fn(&str) -> Result<(), String>,
) -> Option<String> {
    let found = t.string(key);
    let text = t.require(key, found, how)?;
    let value = text.value.trim();
    let problem = if value.is_empty() {
        Err("is empty".to_string())
    } else {
        valid(value)
    };
    match problem {
        Ok(()) => Some(value.to_string()),
        Err(problem) => {
            let shown = if value.is_empty() {
                String::new()
            } else {
                format!("`{}` ", shorten(value))
            };
            t.report(text.line, key, format!("{shown}{problem}; {how}"));
            None
        }
    }
}

/// The optional `end_sessions` key: `false` when absent.
pub(crate) fn end_sessions(t: &mut GrantTable<'_>) -> Option<bool> {
    let found = t.bool("end_sessions");
    t.optional("end_sessions", found)
        .map(|found| found.unwrap_or(false))
}

/// Whether `text` is a GUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
pub(crate) fn is_guid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(part, len)| part.len() == len && part.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Whether `text` looks like an email address (something@domain.tld).
pub(crate) fn is_email(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !text.chars().any(|c| c.is_whitespace() || c.is_control())
                && !domain.contains('@')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_must_be_https_except_to_this_machine() {
        assert_eq!(
            check_service_url("https://acme.okta.com/").as_deref(),
            Ok("https://acme.okta.com")
        );
        assert!(check_service_url("http://127.0.0.1:8080").is_ok());
        assert!(check_service_url("http://acme.okta.com")
            .unwrap_err()
            .contains("https://"));
        assert!(check_service_url("acme.okta.com").is_err());
        assert!(check_service_url("https://acme.okta.com?x=1").is_err());
        assert!(is_guid("8f3c2a10-1b2c-4d5e-9f60-718293a4b5c6"));
        assert!(!is_guid("HR System Admins"));
        assert!(is_email("payroll-exports@acme.com"));
        assert!(!is_email("payroll exports"));
    }
}
