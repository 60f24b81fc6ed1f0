//! The `[[inputs]]` tables: details a runbook asks every requester for (a
//! ticket number, a customer ID), each with an `id`, a `label`, a `type`
//! (`text`, `number`, `select` with `options`, `user`, `date`), whether it is
//! `required`, a `pattern` a text must match and a `help` line. This file
//! owns their definitions, the checks `accessbot check` runs on them, and
//! the check of the values a person gives ([`check_values`]), the same for
//! the modal and the text form.

use std::collections::BTreeMap;

use regex::Regex;

use super::fields::{shorten, Checker, Section};
use crate::request::{clean_typed, InputValue};

/// The keys of one `[[inputs]]` table.
pub(super) const FIELDS: &[&str] = &[
    "id", "label", "type", "options", "required", "pattern", "help",
];
/// The types an input may have.
pub const TYPES: &[&str] = &["text", "number", "select", "user", "date"];
/// At most this many inputs per runbook, so the modal stays usable (and
/// within Block Kit's 100 blocks).
pub const MAX_INPUTS: usize = 10;
/// The longest value a person may give.
pub const MAX_VALUE_CHARS: usize = 200;
const ID_MAX_CHARS: usize = 40;
/// Slack shows at most 100 options in a menu, each at most 75 characters.
const MAX_OPTIONS: usize = 100;
const OPTION_MAX_CHARS: usize = 75;
/// Slack cuts input labels at 2,000 characters; a label is a few words.
const LABEL_MAX_CHARS: usize = 100;

/// One detail a runbook asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct InputDef {
    /// Lowercase letters, digits and underscores; the `key` of `key=value`
    /// and, upper-cased, of `ACCESSBOT_INPUT_<ID>`.
    pub id: String,
    pub label: String,
    pub kind: InputKind,
    pub required: bool,
    /// For `text`: the whole value must match.
    pub pattern: Option<Pattern>,
    /// Shown under the modal field and in refusals.
    pub help: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum InputKind {
    Text,
    /// A whole or decimal number.
    Number,
    /// One of `options`.
    Select(Vec<String>),
    /// A Slack user, stored as their user ID.
    User,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
}

impl InputKind {
    pub fn name(&self) -> &'static str {
        match self {
            InputKind::Text => "text",
            InputKind::Number => "number",
            InputKind::Select(_) => "select",
            InputKind::User => "user",
            InputKind::Date => "date",
        }
    }
}

/// A `pattern` as written, and compiled to match the whole value.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    regex: Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Pattern {
    pub fn new(source: &str) -> Result<Pattern, regex::Error> {
        Ok(Pattern {
            source: source.to_string(),
            regex: Regex::new(&format!("^(?:{source})$"))?,
        })
    }

    pub fn matches(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

/// A value that was refused: which input (by its place in the runbook's
/// list; `None` for a key the runbook does not have) and why, in words
/// that say what to give instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputProblem {
    pub index: Option<usize>,
    pub message: String,
}

impl InputDef {
    /// The value as stored, or why `raw` is not one. `raw` is not empty.
    pub fn check(&self, raw: &str) -> Result<String, String> {
        let value = clean_typed(raw);
        let len = value.chars().count();
        if len > MAX_VALUE_CHARS {
            return Err(format!(
                "{} is too long ({len} characters); keep it under {MAX_VALUE_CHARS}",
                self.label
            ));
        }
        let help = self
            .help
            .as_ref()
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        match &self.kind {
            InputKind::Text => match &self.pattern {
                Some(p) if !p.matches(&value) => Err(format!(
                    "`{}` is not a valid {}{help}; it must match `{}`",
                    shorten(&value),
                    self.label,
                    p.source
                )),
                _ => Ok(value),
            },
            InputKind::Number => {
                let digits = value.strip_prefix('-').unwrap_or(&value);
                let (whole, frac) = digits.split_once('.').unwrap_or((digits, "0"));
                let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
                if numeric(whole) && numeric(frac) {
                    Ok(value)
                } else {
                    Err(format!(
                        "{} must be a number, like 42 or 2.5, not `{}`",
                        self.label,
                        shorten(&value)
                    ))
                }
            }
            InputKind::Select(options) => options
                .iter()
                .find(|o| o.eq_ignore_ascii_case(&value))
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "`{}` is not one of the choices for {}: {}",
                        shorten(&value),
                        self.label,
                        options.join(", ")
                    )
                }),
            InputKind::User => user_id(&value).ok_or_else(|| {
                format!(
                    "{} must be a person: write @name (Slack turns it into a mention), not `{}`",
                    self.label,
                    shorten(&value)
                )
            }),
            InputKind::Date => chrono::NaiveDate::parse_from_str(&value, "%Y-%m-%d")
                .map(|d| d.format("%Y-%m-%d").to_string())
                .map_err(|_| {
                    format!(
                        "{} must be a date written YYYY-MM-DD, like 2026-03-31, not `{}`",
                        self.label,
                        shorten(&value)
                    )
                }),
        }
    }

    /// How to write it in the text form: `ticket=…`.
    pub fn example(&self) -> String {
        let sample = match &self.kind {
            InputKind::Select(options) => options.first().cloned().unwrap_or_default(),
            InputKind::Number => "42".into(),
            InputKind::User => "@name".into(),
            InputKind::Date => "2026-03-31".into(),
            InputKind::Text => "…".into(),
        };
        format!("{}={sample}", self.id)
    }
}

/// A Slack user ID from `U0123ABC`, `<@U0123ABC>` or `<@U0123ABC|name>`
/// (how Slack escapes a mention in a slash command's text).
fn user_id(value: &str) -> Option<String> {
    let inner = value
        .strip_prefix("<@")
        .and_then(|v| v.strip_suffix('>'))
        .map(|v| v.split('|').next().unwrap_or(v))
        .unwrap_or(value);
    let ok = inner.len() >= 3
        && inner.starts_with(['U', 'W'])
        && inner
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    ok.then(|| inner.to_string())
}

/// Checks the values a person gave (`key`, raw value) against the
/// runbook's inputs: every key known and given once, every required input
/// given, every value valid. All problems at once, so the modal can show
/// each next to its field.
pub fn check_values(
    defs: &[InputDef],
    given: &[(String, String)],
    runbook: &str,
) -> Result<Vec<InputValue>, Vec<InputProblem>> {
    let mut problems = Vec::new();
    let mut by_id: BTreeMap<&str, &str> = BTreeMap::new();
    for (key, value) in given {
        let key = key.as_str();
        let Some(index) = defs.iter().position(|d| d.id == key) else {
            let known: Vec<String> = defs.iter().map(|d| format!("`{}`", d.id)).collect();
            let these = if known.is_empty() {
                format!(
                    "`{runbook}` asks for no details; leave out `{}=…`",
                    shorten(key)
                )
            } else {
                format!(
                    "`{runbook}` has no detail `{}`; it asks for {}",
                    shorten(key),
                    known.join(", ")
                )
            };
            problems.push(InputProblem {
                index: None,
                message: these,
            });
            continue;
        };
        if by_id.insert(key, value).is_some() {
            problems.push(InputProblem {
                index: Some(index),
                message: format!("{} is given twice; give `{key}=…` once", defs[index].label),
            });
        }
    }
    let mut values = Vec::new();
    for (index, def) in defs.iter().enumerate() {
        let raw = by_id.get(def.id.as_str()).map(|v| v.trim()).unwrap_or("");
        if raw.is_empty() {
            if def.required {
                let help = def
                    .help
                    .as_ref()
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                problems.push(InputProblem {
                    index: Some(index),
                    message: format!(
                        "{} is required{help}; in the text form write `{}` after the duration",
                        def.label,
                        def.example()
                    ),
                });
            }
            continue;
        }
        match def.check(raw) {
            Ok(value) => values.push(InputValue {
                id: def.id.clone(),
                label: def.label.clone(),
                value,
                kind: def.kind.name().to_string(),
            }),
            Err(message) => problems.push(InputProblem {
                index: Some(index),
                message,
            }),
        }
    }
    if problems.is_empty() {
        Ok(values)
    } else {
        Err(problems)
    }
}

impl Checker {
    /// The runbook's `[[inputs]]`; empty when it has none. `None` when any
    /// is broken (reported).
    pub(super) fn inputs(&mut self, root: &Section<'_>) -> Option<Vec<InputDef>> {
        if !root.has("inputs") {
            return Some(vec![]);
        }
        let tables = self.table_list(root, "inputs", "[[inputs]]", "inputs")?;
        if tables.len() > MAX_INPUTS {
            let line = tables.get(MAX_INPUTS).and_then(|t| t.line);
            self.report(
                line,
                "inputs",
                format!(
                    "{} inputs; a runbook may ask for at most {MAX_INPUTS}, so remove some (put the rest in the reason)",
                    tables.len()
                ),
            );
        }
        let mut ok = tables.len() <= MAX_INPUTS;
        let mut seen: BTreeMap<String, Option<usize>> = BTreeMap::new();
        let mut out = Vec::new();
        for t in &tables {
            match self.input(t, &mut seen) {
                Some(def) => out.push(def),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn input(
        &mut self,
        t: &Section<'_>,
        seen: &mut BTreeMap<String, Option<usize>>,
    ) -> Option<InputDef> {
        self.unknown_fields(t, FIELDS);
        let found = self.string(t, "id");
        let id = self.require(
            t,
            "id",
            found,
            r#"add id = "ticket", the key people write as ticket=… (lowercase letters, digits and underscores)"#,
        );
        let id = id.and_then(|id| {
            let value = id.value.trim();
            let valid = value.len() <= ID_MAX_CHARS
                && value.starts_with(|c: char| c.is_ascii_lowercase())
                && value
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                let fixed: String = value
                    .to_lowercase()
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                let fixed = fixed.trim_matches('_').to_string();
                let hint = if fixed.starts_with(|c: char| c.is_ascii_lowercase()) {
                    format!(", e.g. id = \"{fixed}\"")
                } else {
                    String::new()
                };
                self.report(
                    id.line,
                    t.field("id"),
                    format!(
                        "`{}` is not a valid input id; use lowercase letters, digits and underscores, starting with a letter, at most {ID_MAX_CHARS} characters{hint}",
                        shorten(value)
                    ),
                );
                return None;
            }
            if let Some(first) = seen.get(value) {
                let at = first.map(|l| format!(" on line {l}")).unwrap_or_default();
                self.report(
                    id.line,
                    t.field("id"),
                    format!("another input{at} already has id `{value}`; give each input its own id"),
                );
                return None;
            }
            seen.insert(value.to_string(), id.line);
            Some(value.to_string())
        });
        let label = self.text_field(
            t,
            "label",
            r#""Ticket number""#,
            "the name of the field people fill in",
        );
        let label = label.and_then(|l| {
            if l.value.chars().count() > LABEL_MAX_CHARS {
                self.report(
                    l.line,
                    t.field("label"),
                    format!("is longer than {LABEL_MAX_CHARS} characters; keep the label short and put the rest in help"),
                );
                return None;
            }
            Some(l.value)
        });
        let found = self.string(t, "type");
        let kind_name = self.require(
            t,
            "type",
            found,
            r#"add type = "text" (or number, select, user, date)"#,
        );
        let kind_name = kind_name.and_then(|k| {
            let name = k.value.trim().to_lowercase();
            if TYPES.contains(&name.as_str()) {
                return Some((name, k.line));
            }
            self.report(
                k.line,
                t.field("type"),
                format!(
                    "unknown type `{}`; use one of {}",
                    shorten(&k.value),
                    TYPES.join(", ")
                ),
            );
            None
        });
        let options = self.string_list(t, "options");
        let kind = match (kind_name, options) {
            (Some((name, _)), Some(options)) if name != "select" => {
                self.report(
                    options.line,
                    t.field("options"),
                    format!(r#"options only apply to type = "select", and this input is type = "{name}"; remove options or change the type"#),
                );
                None
            }
            (Some((name, line)), options) if name == "select" => {
                self.select_options(t, line, options)
            }
            (Some((name, _)), None) => Some(match name.as_str() {
                "text" => InputKind::Text,
                "number" => InputKind::Number,
                "user" => InputKind::User,
                _ => InputKind::Date,
            }),
            _ => None,
        };
        let required = self.bool(t, "required").unwrap_or(false);
        let pattern = self.string(t, "pattern");
        let pattern = match (&pattern, &kind) {
            (None, _) => Some(None),
            (Some(p), Some(k)) if *k != InputKind::Text => {
                self.report(
                    p.line,
                    t.field("pattern"),
                    format!(r#"pattern only applies to type = "text", and this input is type = "{}"; remove pattern"#, k.name()),
                );
                None
            }
            (Some(p), _) => match Pattern::new(&p.value) {
                Ok(compiled) => Some(Some(compiled)),
                Err(e) => {
                    let why = e.to_string();
                    let why = why.lines().last().unwrap_or("").trim().to_string();
                    self.report(
                        p.line,
                        t.field("pattern"),
                        format!(
                            "`{}` is not a valid regular expression ({why}); fix it, e.g. pattern = \"CS-[0-9]+\" (in TOML, write \\\\ for one backslash, or use single quotes)",
                            shorten(&p.value)
                        ),
                    );
                    None
                }
            },
        };
        let help = self.string(t, "help").map(|h| h.value.trim().to_string());
        Some(InputDef {
            id: id?,
            label: label?,
            kind: kind?,
            required,
            pattern: pattern?,
            help: help.filter(|h| !h.is_empty()),
        })
    }

    fn select_options(
        &mut self,
        t: &Section<'_>,
        type_line: Option<usize>,
        options: Option<super::Located<Vec<super::Located<String>>>>,
    ) -> Option<InputKind> {
        let Some(options) = options else {
            if !t.has("options") {
                self.report(
                    type_line,
                    t.field("options"),
                    r#"a select needs its choices; add options = ["first", "second"]"#,
                );
            }
            return None;
        };
        if options.value.is_empty() {
            self.report(
                options.line,
                t.field("options"),
                r#"is empty, so there would be nothing to choose; list the choices, e.g. options = ["refund", "dispute"]"#,
            );
            return None;
        }
        let mut ok = true;
        if options.value.len() > MAX_OPTIONS {
            self.report(
                options.line,
                t.field("options"),
                format!("Slack shows at most {MAX_OPTIONS} choices; remove some"),
            );
            ok = false;
        }
        let mut seen = Vec::<String>::new();
        for o in &options.value {
            let bad = if o.value.is_empty() {
                Some("an empty choice; remove it".to_string())
            } else if o.value.chars().count() > OPTION_MAX_CHARS {
                Some(format!(
                    "the choice `{}` is longer than {OPTION_MAX_CHARS} characters, which Slack cuts; shorten it",
                    shorten(&o.value)
                ))
            } else if o.value.chars().any(char::is_whitespace) {
                Some(format!(
                    "the choice `{}` has a space, so it cannot be written as key=value; use dashes or underscores",
                    shorten(&o.value)
                ))
            } else if seen.iter().any(|s| s.eq_ignore_ascii_case(&o.value)) {
                Some(format!(
                    "the choice `{}` is listed twice",
                    shorten(&o.value)
                ))
            } else {
                None
            };
            if let Some(message) = bad {
                self.report(o.line, t.field("options"), message);
                ok = false;
            }
            seen.push(o.value.clone());
        }
        ok.then_some(InputKind::Select(seen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::fixture::{parse, VALID};

    fn problems(text: &str) -> Vec<String> {
        match parse(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(problems) => problems.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn with_inputs(inputs: &str) -> String {
        format!("{VALID}\n{inputs}")
    }

    fn defs(inputs: &str) -> Vec<InputDef> {
        parse(&with_inputs(inputs))
            .unwrap_or_else(|p| panic!("{p:?}"))
            .inputs
    }

    const TICKET: &str = r#"
[[inputs]]
id = "ticket"
label = "Ticket number"
type = "text"
required = true
pattern = 'CS-[0-9]+'
help = "the support case, e.g. CS-1234"

[[inputs]]
id = "kind"
label = "Kind of case"
type = "select"
options = ["refund", "dispute"]

[[inputs]]
id = "amount"
label = "Amount"
type = "number"

[[inputs]]
id = "buddy"
label = "Second pair of eyes"
type = "user"

[[inputs]]
id = "until"
label = "Case due"
type = "date"
"#;

    #[test]
    fn definitions_are_read_in_order() {
        let d = defs(TICKET);
        let ids: Vec<&str> = d.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["ticket", "kind", "amount", "buddy", "until"]);
        assert!(d[0].required && !d[1].required);
        assert_eq!(
            d[1].kind,
            InputKind::Select(vec!["refund".into(), "dispute".into()])
        );
        assert_eq!(d[0].help.as_deref(), Some("the support case, e.g. CS-1234"));
    }

    #[test]
    fn bad_definitions_are_reported_with_line_and_fix() {
        let cases: &[(&str, &str)] = &[
            (
                "[[inputs]]\nid = \"t\"\nlabel = \"T\"\ntype = \"string\"\n",
                "inputs[1].type: unknown type `string`; use one of text, number, select, user, date",
            ),
            (
                "[[inputs]]\nid = \"t\"\nlabel = \"T\"\ntype = \"text\"\npattern = \"CS-[0-9\"\n",
                "inputs[1].pattern: `CS-[0-9` is not a valid regular expression",
            ),
            (
                "[[inputs]]\nid = \"t\"\nlabel = \"T\"\ntype = \"text\"\n[[inputs]]\nid = \"t\"\nlabel = \"U\"\ntype = \"text\"\n",
                "inputs[2].id: another input on line",
            ),
            (
                "[[inputs]]\nid = \"k\"\nlabel = \"K\"\ntype = \"select\"\n",
                "inputs[1].options: a select needs its choices; add options = [",
            ),
            (
                "[[inputs]]\nid = \"k\"\nlabel = \"K\"\ntype = \"select\"\noptions = []\n",
                "inputs[1].options: is empty",
            ),
            (
                "[[inputs]]\nid = \"Ticket-No\"\nlabel = \"T\"\ntype = \"text\"\n",
                "inputs[1].id: `Ticket-No` is not a valid input id; use lowercase letters, digits and underscores, starting with a letter, at most 40 characters, e.g. id = \"ticket_no\"",
            ),
            (
                "[[inputs]]\nid = \"t\"\nlabel = \"T\"\ntype = \"number\"\npattern = \"[0-9]+\"\n",
                "inputs[1].pattern: pattern only applies to type = \"text\"",
            ),
            (
                "[[inputs]]\nid = \"t\"\nlabel = \"T\"\ntype = \"text\"\noptions = [\"a\"]\n",
                "inputs[1].options: options only apply to type = \"select\"",
            ),
            (
                "[[inputs]]\nid = \"t\"\nlabel = \"T\"\ntype = \"text\"\ncolour = \"red\"\n",
                "inputs[1].colour: unknown field",
            ),
            (
                "[inputs]\nid = \"t\"\n",
                "inputs: must be a list of tables, not a single table; write [[inputs]] with double brackets",
            ),
        ];
        for (inputs, expected) in cases {
            let text = with_inputs(inputs);
            let found = problems(&text);
            assert!(
                found.iter().any(|p| p.contains(expected)),
                "{inputs}\nexpected {expected:?} in {found:#?}"
            );
            // Every problem names its line in the file.
            let base = VALID.lines().count();
            assert!(
                found.iter().all(|p| {
                    p.split(':')
                        .nth(1)
                        .and_then(|l| l.parse::<usize>().ok())
                        .is_some_and(|l| l > base)
                }),
                "{found:#?}"
            );
        }
    }

    #[test]
    fn values_are_checked_against_their_definitions() {
        let d = defs(TICKET);
        let given = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let ok = check_values(
            &d,
            &given(&[
                ("ticket", "CS-1234"),
                ("kind", "Refund"),
                ("amount", "12.50"),
                ("buddy", "<@U0BOB|bob>"),
                ("until", "2026-03-31"),
            ]),
            "crm",
        )
        .unwrap();
        let values: Vec<(&str, &str)> = ok
            .iter()
            .map(|v| (v.id.as_str(), v.value.as_str()))
            .collect();
        assert_eq!(
            values,
            [
                ("ticket", "CS-1234"),
                ("kind", "refund"),
                ("amount", "12.50"),
                ("buddy", "U0BOB"),
                ("until", "2026-03-31")
            ]
        );
        // Optional inputs may be left out; a required one may not.
        assert_eq!(
            check_values(&d, &given(&[("ticket", "CS-1")]), "crm").map(|v| v.len()),
            Ok(1)
        );
        let missing = check_values(&d, &[], "crm").unwrap_err();
        assert_eq!(missing[0].index, Some(0));
        assert!(missing[0].message.contains("Ticket number is required (the support case, e.g. CS-1234); in the text form write `ticket=…`"), "{missing:?}");
        let bad = check_values(
            &d,
            &given(&[
                ("ticket", "1234"),
                ("kind", "chargeback"),
                ("amount", "ten"),
                ("buddy", "bob"),
                ("until", "31/03/2026"),
                ("colour", "red"),
            ]),
            "crm",
        )
        .unwrap_err();
        let messages: Vec<(Option<usize>, &str)> =
            bad.iter().map(|p| (p.index, p.message.as_str())).collect();
        assert_eq!(messages.len(), 6, "{messages:#?}");
        assert!(messages.contains(&(None, "`crm` has no detail `colour`; it asks for `ticket`, `kind`, `amount`, `buddy`, `until`")));
        assert!(messages.contains(&(Some(0), "`1234` is not a valid Ticket number (the support case, e.g. CS-1234); it must match `CS-[0-9]+`")));
        assert!(messages.contains(&(
            Some(1),
            "`chargeback` is not one of the choices for Kind of case: refund, dispute"
        )));
        assert!(messages
            .iter()
            .any(|(i, m)| *i == Some(2) && m.contains("must be a number")));
        assert!(messages
            .iter()
            .any(|(i, m)| *i == Some(3) && m.contains("must be a person")));
        assert!(messages
            .iter()
            .any(|(i, m)| *i == Some(4) && m.contains("YYYY-MM-DD")));
        // The pattern matches the whole value, not a part of it.
        assert!(check_values(&d, &given(&[("ticket", "xCS-1")]), "crm").is_err());
        let twice = check_values(&d, &given(&[("ticket", "CS-1"), ("ticket", "CS-2")]), "crm");
        assert!(twice.unwrap_err()[0].message.contains("given twice"));
    }
}
