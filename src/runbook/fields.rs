//! The position-aware field toolkit the runbook checks are written with.
//!
//! A runbook is walked as a `toml_edit` document, which keeps where every key
//! and value was written, instead of being deserialised with serde, which
//! stops at the first error and forgets positions. [`Checker`] collects the
//! problems of one file; its typed reads (`string`, `duration`,
//! `string_list`, `table_list`, …) report a wrong type, a missing key or an
//! unknown one with file, line, dotted field and a fix, and return `None` so
//! a section check goes on to find the next problem. [`GrantTable`] is the
//! same toolkit as a provider sees its `[grant]` table. The small text checks
//! every section shares (Slack IDs, variable names, shortening hostile
//! values for messages) live here too.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{Item, TableLike, Value};

use super::catalog::Problem;
use super::{approval, auto_approve, request, top_level};
use crate::duration::parse_duration;
use crate::grant::Registry;

/// A value with the line it was written on.
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub value: T,
    /// 1-based; `None` when the value has no place in the file.
    pub line: Option<usize>,
}

/// One table of the file being checked.
pub(super) struct Section<'d> {
    /// Dotted path for `Problem::field`: "" at the top level, "request",
    /// "approval.stages[2]".
    pub(super) path: String,
    /// How people see the table in the file: "[request]", "[[approval.stages]]".
    pub(super) heading: String,
    pub(super) table: &'d dyn TableLike,
    /// Line of the table's header or key; `None` for the top level.
    pub(super) line: Option<usize>,
}

impl Section<'_> {
    pub(super) fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.table.get(key).is_some_and(|item| !item.is_none())
    }

    pub(super) fn is_root(&self) -> bool {
        self.path.is_empty()
    }
}

/// Collects the problems of one file while walking it.
pub(super) struct Checker {
    pub(super) file: PathBuf,
    text: String,
    /// Where relative program paths are looked up; `None` skips that check.
    pub(super) program_dir: Option<PathBuf>,
    /// The providers `grant.provider` may name.
    pub(super) providers: Registry,
    /// Every key a `[grant]` table may have: `providers.grant_keys()`.
    pub(super) grant_keys: Vec<&'static str>,
    pub(super) problems: Vec<Problem>,
}

impl Checker {
    pub(super) fn new(
        text: &str,
        file: &Path,
        program_dir: Option<&Path>,
        providers: &Registry,
    ) -> Self {
        Checker {
            file: file.to_path_buf(),
            text: text.to_string(),
            program_dir: program_dir.map(Path::to_path_buf),
            providers: providers.clone(),
            grant_keys: providers.grant_keys(),
            problems: Vec::new(),
        }
    }

    pub(super) fn line(&self, span: Option<Range<usize>>) -> Option<usize> {
        let start = span?.start.min(self.text.len());
        Some(
            self.text.as_bytes()[..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1,
        )
    }

    pub(super) fn report(
        &mut self,
        line: Option<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            field: field.into(),
            message: message.into(),
        });
    }

    // ---- typed access to fields ----

    /// The item at `key` and the line to point at for it.
    pub(super) fn entry<'d>(
        &self,
        s: &Section<'d>,
        key: &str,
    ) -> Option<(&'d Item, Option<usize>)> {
        let table: &'d dyn TableLike = s.table;
        let (k, item) = table.get_key_value(key)?;
        if item.is_none() {
            return None;
        }
        let line = self.line(k.span().or_else(|| item.span())).or(s.line);
        Some((item, line))
    }

    /// Reports a missing required field; passes `found` through.
    pub(super) fn require<T>(
        &mut self,
        s: &Section<'_>,
        key: &str,
        found: Option<T>,
        how: &str,
    ) -> Option<T> {
        // A misspelt key is reported as unknown with a "did you mean"; saying
        // the real one is missing as well would only be noise.
        if found.is_none() && !s.has(key) && !self.has_misspelling_of(s, key) {
            let place = if s.is_root() {
                "; put it near the top of the file, before the first [section] line"
            } else {
                ""
            };
            self.report(s.line, s.field(key), format!("missing; {how}{place}"));
        }
        found
    }

    pub(super) fn wrong_type(
        &mut self,
        s: &Section<'_>,
        key: &str,
        line: Option<usize>,
        item: &Item,
        expected: &str,
    ) {
        let found = match item {
            Item::Value(value) => describe(value),
            Item::Table(_) => "a table",
            Item::ArrayOfTables(_) => "a list of tables",
            Item::None => "nothing",
        };
        let quoted = item.as_str().map(str::trim);
        let hint = match (expected, quoted) {
            ("true or false", Some("true" | "false")) => "; remove the quotes".to_string(),
            ("a whole number", Some(n)) if n.parse::<i64>().is_ok() => {
                "; remove the quotes".to_string()
            }
            ("a list", Some(one)) => {
                // Quoted by toml_edit, so the suggestion is valid TOML
                // whatever the value holds.
                format!(
                    "; put it in square brackets: {key} = [{}]",
                    toml_edit::Value::from(shorten(one))
                )
            }
            ("text", _) if item.is_integer() && is_duration_key(key) => {
                format!(r#"; durations are text with a unit in quotes, e.g. {key} = "4h""#)
            }
            ("text", _) if !item.is_table_like() && !item.is_array_of_tables() => {
                "; put the value in double quotes".to_string()
            }
            ("a table", _) => format!(
                "; write [{}] on its own line and the fields below it",
                s.field(key)
            ),
            _ => String::new(),
        };
        self.report(
            line,
            s.field(key),
            format!("must be {expected}, not {found}{hint}"),
        );
    }

    pub(super) fn string(&mut self, s: &Section<'_>, key: &str) -> Option<Located<String>> {
        let (item, line) = self.entry(s, key)?;
        match item.as_str() {
            Some(text) => Some(Located {
                value: text.to_string(),
                line,
            }),
            None => {
                self.wrong_type(s, key, line, item, "text");
                None
            }
        }
    }

    /// A required, non-empty string field of plain words.
    pub(super) fn text_field(
        &mut self,
        s: &Section<'_>,
        key: &str,
        example: &str,
        what: &str,
    ) -> Option<Located<String>> {
        let found = self.string(s, key);
        let text = self.require(s, key, found, &format!("add {key} = {example}, {what}"))?;
        if text.value.trim().is_empty() {
            self.report(text.line, s.field(key), format!("is empty; write {what}"));
            return None;
        }
        Some(Located {
            value: text.value.trim().to_string(),
            line: text.line,
        })
    }

    pub(super) fn bool(&mut self, s: &Section<'_>, key: &str) -> Option<bool> {
        let (item, line) = self.entry(s, key)?;
        let value = item.as_bool();
        if value.is_none() {
            self.wrong_type(s, key, line, item, "true or false");
        }
        value
    }

    pub(super) fn integer(&mut self, s: &Section<'_>, key: &str) -> Option<Located<i64>> {
        let (item, line) = self.entry(s, key)?;
        match item.as_integer() {
            Some(value) => Some(Located { value, line }),
            None => {
                self.wrong_type(s, key, line, item, "a whole number");
                None
            }
        }
    }

    pub(super) fn duration(&mut self, s: &Section<'_>, key: &str) -> Option<Located<Duration>> {
        let text = self.string(s, key)?;
        match parse_duration(&text.value) {
            Ok(value) => Some(Located {
                value,
                line: text.line,
            }),
            Err(err) => {
                self.report(text.line, s.field(key), err.to_string());
                None
            }
        }
    }

    /// A list of strings, each with its own line. `None` if absent or if
    /// any element is not a string (reported).
    pub(super) fn string_list(
        &mut self,
        s: &Section<'_>,
        key: &str,
    ) -> Option<Located<Vec<Located<String>>>> {
        let (item, line) = self.entry(s, key)?;
        let Some(array) = item.as_array() else {
            self.wrong_type(s, key, line, item, "a list");
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for value in array.iter() {
            let element_line = self.line(value.span()).or(line);
            match value.as_str() {
                Some(text) => out.push(Located {
                    value: text.trim().to_string(),
                    line: element_line,
                }),
                None => {
                    self.report(
                        element_line,
                        s.field(key),
                        format!(
                            "list entries must be text in double quotes, not {}",
                            describe(value)
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(Located { value: out, line })
    }

    /// A sub-table such as `[request]`; reports it when missing or not a table.
    pub(super) fn section<'d>(
        &mut self,
        parent: &Section<'d>,
        key: &str,
        path: &str,
        heading: &str,
        needs: &str,
    ) -> Option<Section<'d>> {
        let Some((item, line)) = self.entry(parent, key) else {
            self.report(
                None,
                path,
                format!("missing {heading} section; add {heading} with {needs} (see runbooks/README.md)"),
            );
            return None;
        };
        match item.as_table_like() {
            Some(table) => Some(Section {
                path: path.to_string(),
                heading: heading.to_string(),
                table,
                line,
            }),
            None => {
                self.wrong_type(parent, key, line, item, "a table");
                None
            }
        }
    }

    /// `[[parent.key]]` tables, or an inline list of `{ … }` tables.
    pub(super) fn table_list<'d>(
        &mut self,
        parent: &Section<'d>,
        key: &str,
        heading: &str,
        path: &str,
    ) -> Option<Vec<Section<'d>>> {
        let (item, line) = self.entry(parent, key)?;
        let section = |i: usize, table: &'d dyn TableLike, line: Option<usize>| Section {
            path: format!("{path}[{}]", i + 1),
            heading: heading.to_string(),
            table,
            line,
        };
        if let Some(tables) = item.as_array_of_tables() {
            let found = tables
                .iter()
                .enumerate()
                .map(|(i, t)| section(i, t as &dyn TableLike, self.line(t.span()).or(line)))
                .collect();
            return Some(found);
        }
        if let Some(array) = item.as_array() {
            let mut found = Vec::new();
            for (i, value) in array.iter().enumerate() {
                match value.as_inline_table() {
                    Some(t) => found.push(section(
                        i,
                        t as &dyn TableLike,
                        self.line(value.span()).or(line),
                    )),
                    None => {
                        self.report(
                            self.line(value.span()).or(line),
                            parent.field(key),
                            format!(
                                "list entries must be tables {{ … }}, not {}",
                                describe(value)
                            ),
                        );
                        return None;
                    }
                }
            }
            return Some(found);
        }
        let hint = if item.is_table() {
            format!("; write {heading} with double brackets, once per entry")
        } else {
            String::new()
        };
        let found = if item.is_table_like() {
            "a single table"
        } else {
            "a value"
        };
        self.report(
            line,
            parent.field(key),
            format!("must be a list of tables, not {found}{hint}"),
        );
        None
    }

    /// Reports every key of `s` that is not in `known`, with a hint.
    pub(super) fn unknown_fields(&mut self, s: &Section<'_>, known: &[&str]) {
        let keys: Vec<&str> = s.table.iter().map(|(k, _)| k).collect();
        for key in keys {
            if known.contains(&key) {
                continue;
            }
            let line = self.entry(s, key).and_then(|(_, line)| line).or(s.line);
            let hint = self.unknown_field_hint(key, known, s);
            self.report(line, s.field(key), format!("unknown field{hint}"));
        }
    }
}

/// For optional fields: `Some(None)` when absent, `None` when present but
/// broken (already reported), so callers can use `?`.
impl Checker {
    fn unknown_field_hint(&self, key: &str, known: &[&str], s: &Section<'_>) -> String {
        if let Some(close) = known
            .iter()
            .filter(|k| is_close(key, k))
            .min_by_key(|k| edit_distance(key, k))
        {
            return format!("; did you mean `{close}`?");
        }
        let homes: [(&str, &[&str]); 4] = [
            ("the top level", top_level::FIELDS),
            ("[request]", request::FIELDS),
            ("[approval]", approval::FIELDS),
            ("[grant]", &self.grant_keys),
        ];
        if let Some((home, _)) = homes.iter().find(|(_, fields)| fields.contains(&key)) {
            if *home == "the top level" {
                return format!(
                    "; `{key}` is a top-level field: move it above the first [section] line (a field below a [section] line belongs to that section)"
                );
            }
            return format!(
                "; `{key}` belongs in {home}: move it below the {home} line (a field belongs to the [section] line above it)"
            );
        }
        if s.is_root() {
            return format!("; the top-level fields are: {}", known.join(", "));
        }
        format!("; the fields of {} are: {}", s.heading, known.join(", "))
    }

    /// Whether `s` has an unknown key that looks like a typo of `key`.
    fn has_misspelling_of(&self, s: &Section<'_>, key: &str) -> bool {
        let known: [&[&str]; 6] = [
            top_level::FIELDS,
            request::FIELDS,
            approval::FIELDS,
            approval::STAGE_FIELDS,
            auto_approve::FIELDS,
            &self.grant_keys,
        ];
        s.table.iter().any(|(other, _)| {
            !known.iter().any(|fields| fields.contains(&other)) && is_close(other, key)
        })
    }
}

/// A provider's view of a runbook's `[grant]` table, handed to
/// [`ProviderKind::parse`](crate::grant::ProviderKind::parse): the same
/// typed reads the loader uses, reporting problems as `grant.<key>` with
/// file and line, so every provider's messages read alike.
pub struct GrantTable<'t> {
    checker: &'t mut Checker,
    section: &'t Section<'t>,
}

impl<'t> GrantTable<'t> {
    pub(super) fn new(checker: &'t mut Checker, section: &'t Section<'t>) -> Self {
        GrantTable { checker, section }
    }

    /// Whether the table has `key`, even with a broken value.
    pub fn has(&self, key: &str) -> bool {
        self.section.has(key)
    }

    /// The directory relative program paths start at, when the loader may
    /// look at files (`load_dir`, `load_file`); `None` for `parse_runbook`.
    pub fn runbook_dir(&self) -> Option<&Path> {
        self.checker.program_dir.as_deref()
    }

    pub fn string(&mut self, key: &str) -> Option<Located<String>> {
        self.checker.string(self.section, key)
    }

    /// A list of strings, each with its own line; `None` if absent or if an
    /// entry is not a string (reported).
    pub fn string_list(&mut self, key: &str) -> Option<Located<Vec<Located<String>>>> {
        self.checker.string_list(self.section, key)
    }

    pub fn duration(&mut self, key: &str) -> Option<Located<Duration>> {
        self.checker.duration(self.section, key)
    }

    /// `true` or `false`; `None` if absent or of another type (reported).
    pub fn bool(&mut self, key: &str) -> Option<bool> {
        self.checker.bool(self.section, key)
    }

    /// An optional duration: `default` when absent, `None` when present but
    /// broken (reported).
    pub fn duration_or(&mut self, key: &str, default: Duration) -> Option<Duration> {
        let found = self.duration(key);
        self.optional(key, found)
            .map(|found| found.map_or(default, |d| d.value))
    }

    /// Reports `key` as missing, saying `how` to add it, when nothing was
    /// found and the table has no such key (nor a misspelling of it, which
    /// is reported already); passes `found` through.
    pub fn require<T>(&mut self, key: &str, found: Option<T>, how: &str) -> Option<T> {
        self.checker.require(self.section, key, found, how)
    }

    /// For optional keys: `Some(None)` when absent, `None` when present but
    /// broken (reported already), so callers can use `?`.
    pub fn optional<T>(&self, key: &str, found: Option<T>) -> Option<Option<T>> {
        optional(self.section, key, found)
    }

    /// Reports a problem with `key` on `line`.
    pub fn report(&mut self, line: Option<usize>, key: &str, message: impl Into<String>) {
        let field = self.section.field(key);
        self.checker.report(line, field, message);
    }
}

pub(super) fn optional<T>(s: &Section<'_>, key: &str, found: Option<T>) -> Option<Option<T>> {
    match found {
        Some(value) => Some(Some(value)),
        None if s.has(key) => None,
        None => Some(None),
    }
}

fn is_close(typed: &str, known: &str) -> bool {
    edit_distance(typed, known) <= (typed.len() / 3).max(1)
}

fn is_duration_key(key: &str) -> bool {
    key.ends_with("duration")
        || key.ends_with("_after")
        || matches!(key, "max_total" | "approval_timeout" | "timeout")
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "text",
        Value::Integer(_) => "a whole number",
        Value::Float(_) => "a decimal number",
        Value::Boolean(_) => "true or false",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "a list",
        Value::InlineTable(_) => "a table",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlackIdKind {
    User,
    Group,
}

/// Slack IDs are an uppercase prefix letter and uppercase letters or digits:
/// users `U…`/`W…`, user groups `S…`.
pub(crate) fn slack_id_kind(text: &str) -> Option<SlackIdKind> {
    let mut chars = text.chars();
    let kind = match chars.next()? {
        'U' | 'W' => SlackIdKind::User,
        'S' => SlackIdKind::Group,
        _ => return None,
    };
    let rest = chars.as_str();
    let valid = (2..=20).contains(&rest.len())
        && rest
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    valid.then_some(kind)
}

/// Why a string that should be a Slack ID probably is not one.
pub(crate) fn slack_id_hint(text: &str) -> String {
    if text.starts_with('@') || text.starts_with('#') {
        "; use the ID, not the name (in Slack: open the profile, ⋯, Copy member ID)".into()
    } else if text.contains('@') {
        "; use the Slack member ID, not the email address".into()
    } else if text != text.to_ascii_uppercase()
        && slack_id_kind(&text.to_ascii_uppercase()).is_some()
    {
        format!("; Slack IDs are uppercase: `{}`", text.to_ascii_uppercase())
    } else {
        String::new()
    }
}

pub(crate) fn is_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A path for a message: control characters removed, the end kept (it
/// names the file) when it is long.
pub(crate) fn shorten_path(path: &Path) -> String {
    let text: Vec<char> = path
        .display()
        .to_string()
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    if text.len() > 120 {
        format!("…{}", text[text.len() - 119..].iter().collect::<String>())
    } else {
        text.into_iter().collect()
    }
}

/// Keeps long or hostile values readable in messages.
pub(crate) fn shorten(text: &str) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control()).take(40).collect();
    if text.chars().count() > 40 {
        format!("{clean}…")
    } else {
        clean
    }
}

pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use crate::runbook::fixture::{check, edit, parse, VALID};

    #[test]
    fn reports_unknown_fields_with_a_hint() {
        check(
            &edit("system =", "sytem ="),
            "sytem",
            "did you mean `system`?",
        );
        // The typo explains the missing field; no second problem about it.
        assert_eq!(parse(&edit("system =", "sytem =")).unwrap_err().len(), 1);
        check(
            &edit("max_duration = \"4h\"", "max_duration = \"4h\"\ncolour = 1"),
            "request.colour",
            "the fields of [request] are: allowed, default_duration",
        );
        check(
            &edit("[grant]\n", "[grant]\nbreak_glass = true\n"),
            "grant.break_glass",
            "top-level field: move it above the first [section] line",
        );
        check(
            &edit("required = 1", "required = 1\nprovider = \"command\""),
            "approval.provider",
            "belongs in [grant]",
        );
        check(
            &format!("{VALID}\n[[approval.stages]]\napprovers = [\"owner\"]\nrequierd = 1\n"),
            "approval.stages[1].requierd",
            "did you mean `required`?",
        );
    }

    #[test]
    fn reports_wrong_types() {
        check(
            &edit("required = 1", "required = \"2\""),
            "approval.required",
            "remove the quotes",
        );
        check(
            &edit("allowed = [\"*\"]", "allowed = \"*\""),
            "request.allowed",
            "put it in square brackets: allowed = [\"*\"]",
        );
        check(
            &edit("max_duration = \"4h\"", "max_duration = 4"),
            "request.max_duration",
            "durations are text with a unit",
        );
        check(
            &edit("system = \"Billing portal\"", "system = 3"),
            "system",
            "must be text",
        );
        check(
            &edit(
                "owner = \"U0OWNER\"",
                "owner = \"U0OWNER\"\nbreak_glass = \"yes\"",
            ),
            "break_glass",
            "must be true or false",
        );
        check(
            &edit("allowed = [\"*\"]", "allowed = [\"*\", 3]"),
            "request.allowed",
            "list entries must be text",
        );
        check(
            &edit("[request]\nallowed", "request = 3\n[requests]\nallowed"),
            "request",
            "must be a table",
        );
    }

    #[test]
    fn reports_bad_slack_ids() {
        check(
            &edit("\"U0OWNER\"", "\"bob\""),
            "owner",
            "is not a Slack user ID",
        );
        check(
            &edit("\"U0OWNER\"", "\"S0OWNERS\""),
            "owner",
            "is a user group",
        );
        check(
            &edit("[\"*\"]", "[\"@alice\"]"),
            "request.allowed",
            "not the name",
        );
        check(
            &edit("[\"*\"]", "[\"alice@example.com\"]"),
            "request.allowed",
            "not the email address",
        );
        check(
            &edit("\"U0BOB\"]", "\"u0bob\"]"),
            "approval.approvers",
            "Slack IDs are uppercase: `U0BOB`",
        );
        check(
            &edit("\"U0BOB\"]", "\"Manager\"]"),
            "approval.approvers",
            "write `manager` in lowercase",
        );
        check(
            &edit("\"U0BOB\"]", "\"*\"]"),
            "approval.approvers",
            "is not an approver",
        );
    }
}
