//! Database URLs are secrets: they carry the password. Every message that
//! names the database goes through [`mask_url`].

/// The URL with its password (in the user-info part or a `password=` query
/// parameter) replaced by `***`; everything else, host and port included, is
/// kept so the message still says which database was meant.
pub fn mask_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = authority.split_at(at);
            match userinfo.find(':') {
                Some(colon) => format!("{}:***{host}", &userinfo[..colon]),
                None => authority.to_string(),
            }
        }
        None => authority.to_string(),
    };
    format!("{scheme}{authority}{}", mask_query_password(tail))
}

fn mask_query_password(tail: &str) -> String {
    let Some(q) = tail.find('?') else {
        return tail.to_string();
    };
    let (path, query) = tail.split_at(q + 1);
    let (query, fragment) = match query.find('#') {
        Some(h) => query.split_at(h),
        None => (query, ""),
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}{}{fragment}", masked.join("&"))
}

/// `text` with every occurrence of the URL's password replaced, for error
/// messages from a driver that might quote what it was given.
pub fn scrub_password(text: &str, url: &str) -> String {
    let masked = mask_url(url);
    let mut out = text.replace(url, &masked);
    if let Some(password) = password_of(url).filter(|p| p.len() >= 3) {
        out = out.replace(&password, "***");
    }
    out
}

fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    Some(userinfo.split_once(':')?.1.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(mask_url(input), expected, "mask_url({input:?})");
    }

    #[test]
    fn passwords_are_masked_and_the_host_is_kept() {
        check(
            "postgres://accessbot:s3cret@db:5432/accessbot",
            "postgres://accessbot:***@db:5432/accessbot",
        );
        check(
            "postgresql://u:p%40ss@db.example.com/x?sslmode=require",
            "postgresql://u:***@db.example.com/x?sslmode=require",
        );
        // An '@' inside the password: the last '@' ends the user info.
        check("postgres://u:a@b@db/x", "postgres://u:***@db/x");
        check(
            "postgres://db/x?user=u&password=hunter2&sslmode=disable",
            "postgres://db/x?user=u&password=***&sslmode=disable",
        );
        check("postgres://u@db:5432/x", "postgres://u@db:5432/x");
        check("postgres://db", "postgres://db");
        check("postgres://u:pw@db", "postgres://u:***@db");
        check("", "");
    }

    #[test]
    fn error_text_quoting_the_url_or_password_is_scrubbed() {
        let url = "postgres://u:hunter2@db:5432/x";
        let text = format!("bad url {url}; password hunter2 rejected");
        let out = scrub_password(&text, url);
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("db:5432"), "{out}");
    }
}
