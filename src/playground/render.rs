//! Block Kit as HTML, for the playground's page: the blocks accessbot sends
//! (header, section with text, fields and an accessory, context, divider,
//! actions with buttons and their styles and static selects, input blocks
//! with text inputs and selects, image by its alt text) and Slack's mrkdwn
//! (bold, italic, strike, code, quotes, links, mentions, dates, a few
//! emoji). Rendered on the server, in Rust, so the test that walks every
//! builder of [`crate::slack::blocks`] checks the very renderer the page
//! uses. A block or element it does not know is shown as a visible
//! "unsupported block" placeholder, never dropped. Every piece of text is
//! HTML-escaped; links are never followed by the page itself.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

use super::slack_app::block_id;

/// The CSS class of the placeholder for a block or element the renderer
/// does not know; tests look for it.
pub const UNSUPPORTED: &str = "unsupported-block";

/// How mentions are shown: a user or group ID to a name.
pub trait Names {
    fn name_of(&self, id: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Names for F {
    fn name_of(&self, id: &str) -> Option<String> {
        self(id)
    }
}

/// A list of blocks; `interactive` when its buttons and inputs may be used.
pub fn blocks(blocks: &Value, names: &dyn Names) -> String {
    let Some(list) = blocks.as_array() else {
        return String::new();
    };
    list.iter()
        .enumerate()
        .map(|(index, b)| block(b, index, names))
        .collect()
}

/// One block, in a `div` that carries its index and ID for presses.
pub fn block(block: &Value, index: usize, names: &dyn Names) -> String {
    let kind = block["type"].as_str().unwrap_or_default();
    let inner = match kind {
        "header" => format!("<h3>{}</h3>", text_object(&block["text"], names)),
        "section" => section(block, names),
        "context" => {
            let parts: String = block["elements"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|element| match element["type"].as_str() {
                    Some("mrkdwn" | "plain_text") => {
                        format!("<span>{}</span>", text_object(element, names))
                    }
                    Some("image") => image(element),
                    other => unsupported(other.unwrap_or("?")),
                })
                .collect();
            parts
        }
        "divider" => "<hr>".to_string(),
        "actions" => block["elements"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|element| interactive(element, names))
            .collect(),
        "input" => input(block, names),
        "image" => image(block),
        other => return unsupported(other),
    };
    format!(
        r#"<div class="block block-{kind}" data-block-index="{index}" data-block-id="{}">{inner}</div>"#,
        escape(&block_id(block, index))
    )
}

fn section(block: &Value, names: &dyn Names) -> String {
    let mut out = String::new();
    if block.get("text").is_some() {
        out += &format!(
            r#"<div class="section-text">{}</div>"#,
            text_object(&block["text"], names)
        );
    }
    if let Some(fields) = block["fields"].as_array() {
        out += r#"<div class="fields">"#;
        for field in fields {
            out += &format!(r#"<div class="field">{}</div>"#, text_object(field, names));
        }
        out += "</div>";
    }
    if block.get("accessory").is_some() {
        out += &format!(
            r#"<div class="accessory">{}</div>"#,
            interactive(&block["accessory"], names)
        );
    }
    out
}

fn input(block: &Value, names: &dyn Names) -> String {
    let element = &block["element"];
    let action_id = escape(element["action_id"].as_str().unwrap_or_default());
    let optional = if block["optional"] == true {
        r#" <span class="optional">(optional)</span>"#
    } else {
        ""
    };
    let dispatch = if block["dispatch_action"] == true {
        " data-dispatch"
    } else {
        ""
    };
    let field = match element["type"].as_str() {
        Some("plain_text_input") => {
            let value = escape(element["initial_value"].as_str().unwrap_or_default());
            let placeholder = escape(&plain(&element["placeholder"]));
            let max = element["max_length"]
                .as_u64()
                .map(|n| format!(r#" maxlength="{n}""#))
                .unwrap_or_default();
            if element["multiline"] == true {
                format!(
                    r#"<textarea class="input-text" data-action-id="{action_id}" data-kind="plain_text_input" placeholder="{placeholder}"{max}>{value}</textarea>"#
                )
            } else {
                format!(
                    r#"<input type="text" class="input-text" data-action-id="{action_id}" data-kind="plain_text_input" placeholder="{placeholder}" value="{value}"{max}>"#
                )
            }
        }
        Some("static_select") => select(element, dispatch),
        Some("number_input") => format!(
            r#"<input type="number" step="any" class="input-text" data-action-id="{action_id}" data-kind="number_input" value="{}">"#,
            escape(element["initial_value"].as_str().unwrap_or_default())
        ),
        Some("datepicker") => format!(
            r#"<input type="date" class="input-text" data-action-id="{action_id}" data-kind="datepicker" value="{}">"#,
            escape(element["initial_date"].as_str().unwrap_or_default())
        ),
        // In the browser's time zone, as Slack shows it in the person's.
        Some("datetimepicker") => format!(
            r#"<input type="datetime-local" class="input-text" data-action-id="{action_id}" data-kind="datetimepicker">"#
        ),
        Some("users_select") => users_select(&action_id, names),
        other => unsupported(other.unwrap_or("?")),
    };
    let hint = match block.get("hint") {
        Some(hint) => format!(r#"<div class="hint">{}</div>"#, text_object(hint, names)),
        None => String::new(),
    };
    format!(
        r#"<label class="input-label">{}{optional}</label>{field}{hint}<div class="input-error"></div>"#,
        text_object(&block["label"], names)
    )
}

/// A button, a static select, or the placeholder.
fn interactive(element: &Value, names: &dyn Names) -> String {
    match element["type"].as_str() {
        Some("button") => {
            let style = match element["style"].as_str() {
                Some("primary") => " primary",
                Some("danger") => " danger",
                _ => "",
            };
            format!(
                r#"<button type="button" class="btn{style}" data-action-id="{}">{}</button>"#,
                escape(element["action_id"].as_str().unwrap_or_default()),
                text_object(&element["text"], names)
            )
        }
        Some("static_select") => select(element, ""),
        Some("image") => image(element),
        other => unsupported(other.unwrap_or("?")),
    }
}

fn select(element: &Value, dispatch: &str) -> String {
    let chosen = element["initial_option"]["value"].as_str();
    let mut out = format!(
        r#"<select class="select" data-action-id="{}" data-kind="static_select"{dispatch}>"#,
        escape(element["action_id"].as_str().unwrap_or_default())
    );
    out += &format!(
        r#"<option value=""{}>{}</option>"#,
        if chosen.is_none() { " selected" } else { "" },
        escape(&plain(&element["placeholder"]))
    );
    for option in element["options"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let value = option["value"].as_str().unwrap_or_default();
        out += &format!(
            r#"<option value="{}"{}>{}</option>"#,
            escape(value),
            if chosen == Some(value) {
                " selected"
            } else {
                ""
            },
            escape(&plain(&option["text"]))
        );
    }
    out + "</select>"
}

/// A person picker: the playground's people, by name.
fn users_select(action_id: &str, names: &dyn Names) -> String {
    let mut out = format!(
        r#"<select class="select" data-action-id="{action_id}" data-kind="users_select"><option value="" selected>Choose a person</option>"#
    );
    for person in super::cast::PEOPLE {
        let name = names
            .name_of(person.id)
            .unwrap_or_else(|| person.id.to_string());
        out += &format!(
            r#"<option value="{}">{}</option>"#,
            escape(person.id),
            escape(&name)
        );
    }
    out + "</select>"
}

/// An image, by its alt text only: the page loads nothing from elsewhere.
fn image(element: &Value) -> String {
    format!(
        r#"<span class="image">[image: {}]</span>"#,
        escape(element["alt_text"].as_str().unwrap_or_default())
    )
}

fn unsupported(kind: &str) -> String {
    format!(
        r#"<div class="{UNSUPPORTED}">unsupported block: {}</div>"#,
        escape(kind)
    )
}

/// The text of a plain_text object, unrendered.
fn plain(object: &Value) -> String {
    object["text"].as_str().unwrap_or_default().to_string()
}

/// A text object: mrkdwn rendered, plain text escaped.
pub fn text_object(object: &Value, names: &dyn Names) -> String {
    let text = object["text"].as_str().unwrap_or_default();
    match object["type"].as_str() {
        Some("mrkdwn") => mrkdwn(text, names),
        _ => emoji(&escape(text)).replace('\n', "<br>"),
    }
}

/// Slack's mrkdwn as HTML. Slack text arrives with `&`, `<` and `>`
/// escaped as entities; `<…>` marks links, mentions and dates.
pub fn mrkdwn(text: &str, names: &dyn Names) -> String {
    let mut out = String::new();
    // Code blocks first: nothing inside them is formatted.
    for (i, part) in text.split("```").enumerate() {
        if i % 2 == 1 {
            out += &format!("<pre>{}</pre>", escape(&unentity(part)));
        } else {
            out += &inline(part, names);
        }
    }
    out
}

/// Text outside code blocks, line by line: a leading `>` quotes the line
/// (a `>` someone typed arrives as `&gt;` and stays text), `<…>` tokens are
/// links, mentions and dates, the rest is formatted.
fn inline(text: &str, names: &dyn Names) -> String {
    let mut lines_out = Vec::new();
    for line in text.split('\n') {
        let (quote, line) = match line.strip_prefix('>') {
            Some(rest) => (true, rest.strip_prefix(' ').unwrap_or(rest)),
            None => (false, line),
        };
        let mut html = String::new();
        let mut rest = line;
        while let Some(start) = rest.find('<') {
            html += &format_text(&rest[..start]);
            match rest[start..].find('>') {
                Some(end) => {
                    html += &token(&rest[start + 1..start + end], names);
                    rest = &rest[start + end + 1..];
                }
                None => {
                    html += &format_text(&rest[start..]);
                    rest = "";
                }
            }
        }
        html += &format_text(rest);
        lines_out.push(if quote {
            format!("<blockquote>{html}</blockquote>")
        } else {
            html
        });
    }
    // A quote line carries its own break.
    let mut out = String::new();
    for (i, line) in lines_out.iter().enumerate() {
        if i > 0 && !lines_out[i - 1].ends_with("</blockquote>") {
            out += "<br>";
        }
        out += line;
    }
    out
}

/// `<@U…>`, `<!subteam^S…>`, `<#C…>`, `<!date^…|fallback>`, `<!here>`, `<url|text>`.
fn token(inner: &str, names: &dyn Names) -> String {
    let (target, label) = match inner.split_once('|') {
        Some((target, label)) => (target, Some(label)),
        None => (inner, None),
    };
    if let Some(id) = target.strip_prefix('@') {
        let name = names.name_of(id).unwrap_or_else(|| id.to_string());
        return format!(r#"<span class="mention">@{}</span>"#, escape(&name));
    }
    if let Some(id) = target.strip_prefix("!subteam^") {
        let name = label
            .map(str::to_string)
            .or_else(|| names.name_of(id))
            .unwrap_or_else(|| id.to_string());
        return format!(
            r#"<span class="mention">@{}</span>"#,
            escape(name.trim_start_matches('@'))
        );
    }
    if let Some(id) = target.strip_prefix('#') {
        let name = label.map(str::to_string).unwrap_or_else(|| id.to_string());
        return format!(r#"<span class="mention">#{}</span>"#, escape(&name));
    }
    if target.starts_with("!date^") {
        return format!(
            r#"<span class="date">{}</span>"#,
            escape(&unentity(label.unwrap_or_default()))
        );
    }
    if let Some(special) = target.strip_prefix('!') {
        return format!(r#"<span class="mention">@{}</span>"#, escape(special));
    }
    let shown = label.unwrap_or(target);
    if target.starts_with("http://")
        || target.starts_with("https://")
        || target.starts_with("mailto:")
    {
        format!(
            r#"<a href="{}" rel="noopener noreferrer" target="_blank">{}</a>"#,
            escape(&unentity(target)),
            format_text(shown)
        )
    } else {
        format_text(&format!("<{inner}>"))
    }
}

/// Bold, italic, strike and inline code in text with Slack's entities.
fn format_text(text: &str) -> String {
    static RULES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    let rules = RULES.get_or_init(|| {
        [
            (r"`([^`]+)`", "<code>$1</code>"),
            (r"(^|[^\w*])\*([^*\n]+?)\*($|[^\w*])", "$1<b>$2</b>$3"),
            (r"(^|[^\w_])_([^_\n]+?)_($|[^\w_])", "$1<i>$2</i>$3"),
            (r"(^|[^\w~])~([^~\n]+?)~($|[^\w~])", "$1<s>$2</s>$3"),
        ]
        .into_iter()
        .map(|(pattern, with)| (Regex::new(pattern).expect("mrkdwn rules compile"), with))
        .collect()
    });
    let mut html = emoji(&escape(&unentity(text)));
    for (rule, with) in rules {
        html = rule.replace_all(&html, *with).into_owned();
    }
    html
}

/// Slack's three entities back to characters.
fn unentity(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The emoji accessbot uses, as characters; any other `:name:` stays as typed.
fn emoji(text: &str) -> String {
    const EMOJI: &[(&str, &str)] = &[
        (":white_check_mark:", "✅"),
        (":x:", "❌"),
        (":no_entry:", "⛔"),
        (":no_entry_sign:", "🚫"),
        (":hourglass:", "⌛"),
        (":hourglass_flowing_sand:", "⏳"),
        (":bell:", "🔔"),
        (":rotating_light:", "🚨"),
        (":warning:", "⚠️"),
        (":key:", "🔑"),
        (":ballot_box_with_check:", "☑️"),
        (":inbox_tray:", "📥"),
        (":zap:", "⚡"),
        (":memo:", "📝"),
        (":leftwards_arrow_with_hook:", "↩️"),
        (":lock:", "🔒"),
        (":unlock:", "🔓"),
        (":arrow_up:", "⬆️"),
        (":mag:", "🔍"),
        (":triangular_flag_on_post:", "🚩"),
        (":heavy_check_mark:", "✔️"),
        (":stopwatch:", "⏱️"),
        (":wave:", "👋"),
        (":raised_hand:", "✋"),
        (":information_source:", "ℹ️"),
    ];
    let mut out = text.to_string();
    for (name, character) in EMOJI {
        if out.contains(name) {
            out = out.replace(name, character);
        }
    }
    out
}

/// HTML-escapes text for element content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
