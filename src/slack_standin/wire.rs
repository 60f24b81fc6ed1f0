//! HTTP/1.1 by hand for the stand-in's own listener: one request parsed off
//! the front of a connection's bytes (Content-Length or chunked), a body read
//! as Slack reads it (JSON or form), and answers written back, including the
//! HTML error pages a load balancer sends. By hand rather than through axum
//! so that a test can close a connection without answering.

use std::collections::HashMap;

use serde_json::{json, Value};

/// One HTTP request as read off a connection.
pub(super) struct Incoming {
    pub(super) http_method: String,
    pub(super) path: String,
    pub(super) query: String,
    pub(super) authorization: Option<String>,
    pub(super) content_type: Option<String>,
    pub(super) body: Vec<u8>,
    pub(super) keep_alive: bool,
}

/// Read methods that take their arguments form-encoded (or in the query),
/// never as a JSON body.
pub(super) const FORM_ONLY: &[&str] = &[
    "users.info",
    "users.profile.get",
    "usergroups.users.list",
    "conversations.info",
];

/// The body as recorded, and the Slack error to answer when it cannot be used.
pub(super) fn parse_body(content_type: Option<&str>, raw: &[u8]) -> (Value, Option<&'static str>) {
    let text = String::from_utf8_lossy(raw);
    let essence = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|ct| ct.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") if text.trim().is_empty() => (json!({}), None),
        Some("application/json") => match serde_json::from_str::<Value>(&text) {
            Ok(value @ Value::Object(_)) => (value, None),
            Ok(value) => (value, Some("invalid_arguments")),
            Err(_) => (Value::String(text.into_owned()), Some("invalid_json")),
        },
        Some("application/x-www-form-urlencoded") => {
            match serde_urlencoded::from_str::<Vec<(String, String)>>(&text) {
                Ok(pairs) => {
                    let object = pairs.into_iter().map(|(k, v)| (k, Value::String(v)));
                    (Value::Object(object.collect()), None)
                }
                Err(_) => (Value::String(text.into_owned()), Some("invalid_form_data")),
            }
        }
        _ => (Value::String(text.into_owned()), Some("invalid_form_data")),
    }
}

/// Parses one complete request from the front of `buf`, returning it and the bytes it used,
/// or `None` when more bytes are needed.
pub(super) fn parse_request(buf: &[u8]) -> Result<Option<(Incoming, usize)>, String> {
    const MAX_HEAD: usize = 64 * 1024;
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err("header section too large".into())
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "header is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(http_method), Some(target), Some(version)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("malformed request line `{request_line}`"));
    };
    let mut headers = HashMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed header `{line}`"))?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let header = |name: &str| headers.get(name).cloned();
    let connection = header("connection")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let keep_alive = match version {
        "HTTP/1.0" => connection.contains("keep-alive"),
        _ => !connection.contains("close"),
    };
    let mut pos = head_end + 4;
    let chunked =
        header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            let Some(line_end) = find(&buf[pos..], b"\r\n") else {
                return Ok(None);
            };
            let size_line = String::from_utf8_lossy(&buf[pos..pos + line_end]);
            let size_text = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| format!("bad chunk size `{size_text}`"))?;
            pos += line_end + 2;
            if size == 0 {
                // Skip trailers up to and including the empty line that ends the message.
                loop {
                    let Some(line_end) = find(&buf[pos..], b"\r\n") else {
                        return Ok(None);
                    };
                    pos += line_end + 2;
                    if line_end == 0 {
                        break;
                    }
                }
                break body;
            }
            if buf.len() < pos + size + 2 {
                return Ok(None);
            }
            body.extend_from_slice(&buf[pos..pos + size]);
            pos += size + 2;
        }
    } else {
        let length: usize = match header("content-length") {
            Some(text) => text
                .parse()
                .map_err(|_| format!("bad Content-Length `{text}`"))?,
            None => 0,
        };
        if buf.len() < pos + length {
            return Ok(None);
        }
        let body = buf[pos..pos + length].to_vec();
        pos += length;
        body
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let request = Incoming {
        http_method: http_method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body,
        keep_alive,
    };
    Ok(Some((request, pos)))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

pub(super) fn error_page(status: u16) -> String {
    let title = format!("{status} {}", reason(status));
    format!("<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>")
}

pub(super) fn http_bytes(
    status: u16,
    content_type: &str,
    body: &str,
    retry_after: Option<u64>,
    keep_alive: bool,
) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    );
    if let Some(secs) = retry_after {
        head += &format!("Retry-After: {secs}\r\n");
    }
    if !keep_alive {
        head += "Connection: close\r\n";
    }
    head += "\r\n";
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}
