//! Slack's Block Kit and view limits, checked on every `chat.*` and
//! `views.*` call the way Slack checks them, answered with Slack's own
//! `[ERROR] … [json-pointer:…]` messages, so a message the bot builds too
//! big fails in the tests as it would in a workspace.

use std::collections::HashSet;

use serde_json::Value;

use super::{fail_with, invalid_arguments, json_arg};

/// The `text` (cut at 40,000 characters like Slack) and the checked `blocks` of a chat.* call.
pub(super) fn message_content(body: &Value) -> Result<(Option<String>, Option<Value>), Value> {
    let text = body
        .get("text")
        .and_then(Value::as_str)
        .map(|text| text.chars().take(40_000).collect());
    let blocks = json_arg(body, "blocks").map_err(|e| fail_with("invalid_blocks", vec![e]))?;
    if let Some(blocks) = &blocks {
        let errors = block_kit_errors(blocks, 50, "/blocks");
        if !errors.is_empty() {
            return Err(fail_with("invalid_blocks", errors));
        }
    }
    Ok((text, blocks))
}

/// The checked `view` of a views.* call.
pub(super) fn view_arg(body: &Value) -> Result<Value, Value> {
    let view = json_arg(body, "view")
        .map_err(|e| invalid_arguments(vec![e]))?
        .ok_or_else(|| invalid_arguments(vec!["[ERROR] missing required field: view".into()]))?;
    let mut errors = Vec::new();
    let kind = view.get("type").and_then(Value::as_str);
    if !matches!(kind, Some("modal" | "home")) {
        errors.push("[ERROR] must be modal or home [json-pointer:/view/type]".to_string());
    }
    if kind == Some("modal") && view.get("title").is_none() {
        errors.push("[ERROR] missing required field: title [json-pointer:/view]".to_string());
    }
    let has_input = view["blocks"]
        .as_array()
        .is_some_and(|blocks| blocks.iter().any(|block| block["type"] == "input"));
    if kind == Some("modal") && has_input && view.get("submit").is_none() {
        errors.push(
            "[ERROR] submit is required when an input block is present [json-pointer:/view/submit]"
                .to_string(),
        );
    }
    for (field, max) in [("title", 24), ("submit", 24), ("close", 24)] {
        check_len(
            &mut errors,
            &view[field]["text"],
            &format!("/view/{field}/text"),
            max,
        );
    }
    for (field, max) in [
        ("private_metadata", 3000),
        ("callback_id", 255),
        ("external_id", 255),
    ] {
        check_len(&mut errors, &view[field], &format!("/view/{field}"), max);
    }
    match view.get("blocks") {
        Some(blocks) => errors.extend(block_kit_errors(blocks, 100, "/view/blocks")),
        None => errors.push("[ERROR] missing required field: blocks [json-pointer:/view]".into()),
    }
    if errors.is_empty() {
        Ok(view)
    } else {
        Err(invalid_arguments(errors))
    }
}

/// Slack's Block Kit limits, as `[ERROR] … [json-pointer:…]` messages like Slack's own.
fn block_kit_errors(blocks: &Value, max_blocks: usize, at: &str) -> Vec<String> {
    fn walk(value: &Value, at: &str, errors: &mut Vec<String>) {
        match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, &format!("{at}/{i}"), errors);
                }
            }
            Value::Object(object) => {
                for key in ["action_id", "block_id"] {
                    check_len(errors, &value[key], &format!("{at}/{key}"), 255);
                }
                let text_at = format!("{at}/text/text");
                match value["type"].as_str() {
                    Some("section") => {
                        check_len(errors, &value["text"]["text"], &text_at, 3000);
                        let fields = value["fields"].as_array().map(Vec::as_slice);
                        if fields.is_some_and(|fields| fields.len() > 10) {
                            errors.push(format!(
                                "[ERROR] must be less than 11 items [json-pointer:{at}/fields]"
                            ));
                        }
                        for (i, field) in fields.unwrap_or_default().iter().enumerate() {
                            check_len(
                                errors,
                                &field["text"],
                                &format!("{at}/fields/{i}/text"),
                                2000,
                            );
                        }
                    }
                    Some("header") => check_len(errors, &value["text"]["text"], &text_at, 150),
                    Some("button") => {
                        check_len(errors, &value["text"]["text"], &text_at, 75);
                        check_len(errors, &value["value"], &format!("{at}/value"), 2000);
                    }
                    Some("actions") => {
                        let elements = value["elements"].as_array().map(Vec::as_slice);
                        let elements = elements.unwrap_or_default();
                        if elements.len() > 25 {
                            errors.push(format!(
                                "[ERROR] must be less than 26 items [json-pointer:{at}/elements]"
                            ));
                        }
                        let mut seen = HashSet::new();
                        for (i, element) in elements.iter().enumerate() {
                            if let Some(id) = element["action_id"].as_str() {
                                if !seen.insert(id) {
                                    errors.push(format!("[ERROR] action_id `{id}` is not unique in this block [json-pointer:{at}/elements/{i}/action_id]"));
                                }
                            }
                        }
                    }
                    _ => {}
                }
                for (key, child) in object {
                    let child_at = format!("{at}/{key}");
                    let options: &[Value] = match (key.as_str(), child) {
                        ("options" | "initial_options", Value::Array(options)) => options,
                        ("initial_option", option) => std::slice::from_ref(option),
                        _ => &[],
                    };
                    for (i, option) in options.iter().enumerate() {
                        let option_at = match key.as_str() {
                            "initial_option" => child_at.clone(),
                            _ => format!("{child_at}/{i}"),
                        };
                        check_len(
                            errors,
                            &option["text"]["text"],
                            &format!("{option_at}/text/text"),
                            75,
                        );
                        check_len(errors, &option["value"], &format!("{option_at}/value"), 150);
                    }
                    walk(child, &child_at, errors);
                }
            }
            _ => {}
        }
    }

    let Some(list) = blocks.as_array() else {
        return vec![format!("[ERROR] must be an array [json-pointer:{at}]")];
    };
    let mut errors = Vec::new();
    if list.len() > max_blocks {
        errors.push(format!(
            "[ERROR] must be less than {} items [json-pointer:{at}]",
            max_blocks + 1
        ));
    }
    let mut block_ids = HashSet::new();
    for (i, block) in list.iter().enumerate() {
        if !block.is_object() || !block["type"].is_string() {
            errors.push(format!(
                "[ERROR] each block must be an object with a string type [json-pointer:{at}/{i}]"
            ));
            continue;
        }
        if let Some(id) = block["block_id"].as_str() {
            if !block_ids.insert(id) {
                errors.push(format!(
                    "[ERROR] block_id `{id}` is used twice [json-pointer:{at}/{i}/block_id]"
                ));
            }
        }
        walk(block, &format!("{at}/{i}"), &mut errors);
    }
    errors
}

/// Adds an error when `value` is a string longer than `max` characters.
fn check_len(errors: &mut Vec<String>, value: &Value, at: &str, max: usize) {
    if value
        .as_str()
        .is_some_and(|text| text.chars().count() > max)
    {
        errors.push(format!(
            "[ERROR] must be less than {} characters [json-pointer:{at}]",
            max + 1
        ));
    }
}
