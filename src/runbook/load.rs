//! Reads a directory of runbook TOML files, checks them against the format
//! described in `runbooks/README.md`, and turns them into the model types.
//!
//! Runbooks are written by operators, often not engineers, and a broken one
//! keeps the bot from starting. So the loader reports every problem in every
//! file in one go, each with file, line and dotted field, and says how to fix
//! it. That is why it walks a `toml_edit` document, which keeps the position
//! of every key and value, instead of deriving serde: serde stops at the
//! first error and forgets where values were written.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{ImDocument, Item, TableLike, Value};

use super::model::{
    ApprovalPolicy, ApprovalStage, Approver, AutoApproveRule, GrantSpec, Principal, RequestPolicy,
    Runbook,
};
use crate::duration::{format_duration, parse_duration};

/// Break-glass access skips approval, so it must end soon.
const BREAK_GLASS_MAX_DURATION: Duration = Duration::from_secs(4 * 3600);
const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);
/// Slack cuts option texts in menus at 75 characters.
const TITLE_MAX_CHARS: usize = 75;
const ID_MAX_CHARS: usize = 64;
const PROVIDERS: [&str; 3] = ["command", "webhook", "slack_usergroup"];

const ROOT_FIELDS: &[&str] = &[
    "id",
    "title",
    "description",
    "system",
    "owner",
    "instructions",
    "break_glass",
    "request",
    "approval",
    "grant",
];
const REQUEST_FIELDS: &[&str] = &[
    "allowed",
    "default_duration",
    "max_duration",
    "max_total",
    "require_reason",
];
const APPROVAL_FIELDS: &[&str] = &[
    "approvers",
    "required",
    "approval_timeout",
    "allow_self_approval",
    "remind_after",
    "escalate_after",
    "fallback_approvers",
    "auto_approve",
    "stages",
];
const STAGE_FIELDS: &[&str] = &["name", "approvers", "required"];
const AUTO_APPROVE_FIELDS: &[&str] = &["name", "users", "groups", "max_duration"];
const GRANT_FIELDS: &[&str] = &[
    "provider",
    "grant",
    "revoke",
    "timeout",
    "env",
    "url",
    "secret_env",
    "usergroup",
];

/// Every valid runbook of a directory, sorted by id.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub runbooks: Vec<Runbook>,
}

impl Catalog {
    pub fn get(&self, id: &str) -> Option<&Runbook> {
        self.runbooks.iter().find(|r| r.id == id)
    }
}

/// One problem in one runbook file (or with the runbook directory itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based; `None` when the problem is about something missing or the
    /// whole file.
    pub line: Option<usize>,
    /// Dotted path such as `approval.required` or `approval.stages[2].approvers`
    /// (stages and auto-approve rules are counted from 1); empty when the
    /// problem is not about one field, e.g. a TOML syntax error.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for Problem {}

/// Loads every `*.toml` file directly in `dir` (sorted by file name; other
/// files and dot-files are ignored) and returns all runbooks sorted by id, or
/// every problem found in every file.
pub fn load_dir(dir: &Path) -> Result<Catalog, Vec<Problem>> {
    let files = runbook_files(dir).map_err(|p| vec![p])?;
    if files.is_empty() {
        return Err(vec![Problem {
            file: dir.to_path_buf(),
            line: None,
            field: String::new(),
            message: format!(
                "no runbooks found in {}; add a runbook file (see runbooks/README.md)",
                dir.display()
            ),
        }]);
    }

    let mut runbooks = Vec::new();
    let mut problems = Vec::new();
    // Where each id was first seen, to name both files of a duplicate.
    let mut ids: BTreeMap<String, (PathBuf, Option<usize>)> = BTreeMap::new();
    for path in files {
        let checked = check_file(&path);
        if let Some(id) = checked.id {
            if let Some((first, first_line)) = ids.get(&id.value) {
                let at = match first_line {
                    Some(line) => format!("{}:{line}", first.display()),
                    None => first.display().to_string(),
                };
                problems.push(Problem {
                    file: path.clone(),
                    line: id.line,
                    field: "id".into(),
                    message: format!(
                        "id `{}` is already used by {at}; ids must be unique, so rename one of them",
                        id.value
                    ),
                });
            } else {
                ids.insert(id.value, (path.clone(), id.line));
            }
        }
        match checked.result {
            Ok(runbook) => runbooks.push(runbook),
            Err(found) => problems.extend(found),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    runbooks.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Catalog { runbooks })
}

/// Loads one runbook file. Besides the checks of [`parse_runbook`], this
/// checks that programs given by a relative path exist next to the file and
/// are executable.
// Not yet re-exported by `runbook` (mod.rs); drop the allow once it is.
pub fn load_file(path: &Path) -> Result<Runbook, Vec<Problem>> {
    check_file(path).result
}

/// Checks and converts the text of one runbook; `file` is only used in
/// problems and as the runbook's `source`. Touches no files.
// Not yet re-exported by `runbook` (mod.rs); drop the allow once it is.
pub fn parse_runbook(text: &str, file: &Path) -> Result<Runbook, Vec<Problem>> {
    check_source(text, file, None).result
}

/// The outcome for one file. The id is kept even when the file has other
/// problems so duplicate ids are reported in the same run.
struct Checked {
    id: Option<Located<String>>,
    result: Result<Runbook, Vec<Problem>>,
}

fn runbook_files(dir: &Path) -> Result<Vec<PathBuf>, Problem> {
    let unreadable = |err: std::io::Error| {
        let why = match err.kind() {
            std::io::ErrorKind::NotFound => "no such directory".to_string(),
            std::io::ErrorKind::NotADirectory => "not a directory".to_string(),
            _ => format!("cannot read this directory ({err})"),
        };
        Problem {
            file: dir.to_path_buf(),
            line: None,
            field: String::new(),
            message: format!(
                "{why}; set ACCESSBOT_RUNBOOKS or --runbooks to the directory that holds the runbook .toml files"
            ),
        }
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        // Dot-files are editor backups and lock files, not runbooks.
        if name.starts_with('.') || !name.ends_with(".toml") || !path.is_file() {
            continue;
        }
        files.push(path);
    }
    files.sort();
    Ok(files)
}

fn check_file(path: &Path) -> Checked {
    let whole_file = |message: String| Checked {
        id: None,
        result: Err(vec![Problem {
            file: path.to_path_buf(),
            line: None,
            field: String::new(),
            message,
        }]),
    };
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) => {
            return whole_file(format!(
                "cannot read this file ({err}); check its permissions"
            ))
        }
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return whole_file("this file is not UTF-8 text; save it as UTF-8".into());
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    check_source(&text, path, Some(dir))
}

/// `program_dir` is where relative program paths are looked up; `None` skips
/// that check.
fn check_source(text: &str, file: &Path, program_dir: Option<&Path>) -> Checked {
    let mut checker = Checker {
        file,
        text,
        program_dir,
        problems: Vec::new(),
    };
    let doc = match ImDocument::parse(text) {
        Ok(doc) => doc,
        Err(err) => {
            let what = err.message().trim().replace('\n', "; ");
            let line = checker.line(err.span());
            checker.report(
                line,
                "",
                format!("this is not valid TOML ({what}); check the quotes, brackets and commas on this line"),
            );
            return Checked {
                id: None,
                result: Err(checker.problems),
            };
        }
    };
    let root = Section {
        path: String::new(),
        heading: "the top level".into(),
        table: doc.as_table(),
        line: None,
    };
    let (id, runbook) = checker.runbook(&root);
    let mut problems = checker.problems;
    let result = match runbook {
        Some(runbook) if problems.is_empty() => Ok(runbook),
        _ => {
            // Every refusal reports why; if one ever does not, the file must
            // still not load silently.
            debug_assert!(
                !problems.is_empty(),
                "{} refused without a problem",
                file.display()
            );
            if problems.is_empty() {
                problems.push(Problem {
                    file: file.to_path_buf(),
                    line: None,
                    field: String::new(),
                    message: "could not be loaded, for a reason accessbot failed to name; please report this".into(),
                });
            }
            problems.sort_by_key(|p| p.line.unwrap_or(0));
            Err(problems)
        }
    };
    Checked { id, result }
}

/// A value with the line it was written on.
#[derive(Debug, Clone)]
struct Located<T> {
    value: T,
    line: Option<usize>,
}

/// One table of the file being checked.
struct Section<'d> {
    /// Dotted path for `Problem::field`: "" at the top level, "request",
    /// "approval.stages[2]".
    path: String,
    /// How people see the table in the file: "[request]", "[[approval.stages]]".
    heading: String,
    table: &'d dyn TableLike,
    /// Line of the table's header or key; `None` for the top level.
    line: Option<usize>,
}

impl Section<'_> {
    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn has(&self, key: &str) -> bool {
        self.table.get(key).is_some_and(|item| !item.is_none())
    }

    fn is_root(&self) -> bool {
        self.path.is_empty()
    }
}

/// Collects the problems of one file while walking it.
struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    program_dir: Option<&'a Path>,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn line(&self, span: Option<Range<usize>>) -> Option<usize> {
        let start = span?.start.min(self.text.len());
        Some(
            self.text.as_bytes()[..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1,
        )
    }

    fn report(
        &mut self,
        line: Option<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line,
            field: field.into(),
            message: message.into(),
        });
    }

    // ---- the runbook, section by section ----

    fn runbook(&mut self, root: &Section<'_>) -> (Option<Located<String>>, Option<Runbook>) {
        self.unknown_fields(root, ROOT_FIELDS);
        let id = self.id(root);
        let title = self.title(root);
        let description = self.text_field(
            root,
            "description",
            r#""Refunds and plan changes in the billing portal""#,
            "one sentence on what this access allows",
        );
        let system = self.text_field(
            root,
            "system",
            r#""Billing portal""#,
            "the name of the system, shown to approvers",
        );
        let owner = self.owner(root);
        let instructions = self.text_field(
            root,
            "instructions",
            r#""Sign in at https://billing.example.com; access ends by itself.""#,
            "what the requester should do once access is granted",
        );
        let break_glass = self.bool(root, "break_glass").unwrap_or(false);

        let owner_id = owner.as_ref().map(|o| o.value.as_str());
        let (request, request_max) = match self.section(
            root,
            "request",
            "request",
            "[request]",
            "allowed, default_duration and max_duration",
        ) {
            Some(s) => self.request(&s, break_glass),
            None => (None, None),
        };
        let approval = self
            .section(
                root,
                "approval",
                "approval",
                "[approval]",
                "approvers and required; every runbook needs someone to review its requests",
            )
            .and_then(|s| self.approval(&s, owner_id, request_max));
        let grant = self
            .section(
                root,
                "grant",
                "grant",
                "[grant]",
                "a provider (command, webhook or slack_usergroup) and its fields",
            )
            .and_then(|s| self.grant(&s));

        let runbook = (|| {
            Some(Runbook {
                id: id.clone()?.value,
                title: title?.value,
                description: description?.value,
                system: system?.value,
                owner: owner?.value,
                instructions: instructions?.value,
                break_glass,
                request: request?,
                approval: approval?,
                grant: grant?,
                source: self.file.to_path_buf(),
            })
        })();
        (id, runbook)
    }

    fn id(&mut self, root: &Section<'_>) -> Option<Located<String>> {
        let found = self.string(root, "id");
        let id = self.require(
            root,
            "id",
            found,
            r#"add id = "billing-admin", a short unique name of lowercase letters, digits and dashes"#,
        )?;
        let valid = id.value.len() <= ID_MAX_CHARS
            && id.value.starts_with(|c: char| c.is_ascii_lowercase())
            && id
                .value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid {
            return Some(id);
        }
        let mut message = format!(
            "`{}` is not a valid id; use only lowercase letters, digits and dashes, start with a letter, at most {ID_MAX_CHARS} characters",
            shorten(&id.value)
        );
        let fixed = slug(&id.value);
        if !fixed.is_empty() && fixed != id.value {
            message.push_str(&format!(", e.g. id = \"{fixed}\""));
        }
        self.report(id.line, "id", message);
        None
    }

    fn title(&mut self, root: &Section<'_>) -> Option<Located<String>> {
        let title = self.text_field(
            root,
            "title",
            r#""Billing portal admin""#,
            "the short name people pick from a list",
        )?;
        let chars = title.value.chars().count();
        if chars > TITLE_MAX_CHARS {
            self.report(
                title.line,
                "title",
                format!(
                    "is {chars} characters long; Slack shows at most {TITLE_MAX_CHARS} in a menu, so shorten it and put the details in description"
                ),
            );
            return None;
        }
        Some(title)
    }

    fn owner(&mut self, root: &Section<'_>) -> Option<Located<String>> {
        let found = self.string(root, "owner");
        let owner = self.require(
            root,
            "owner",
            found,
            r#"add owner = "U0123ABCD", the Slack user ID of the person responsible for this system"#,
        )?;
        match slack_id_kind(&owner.value) {
            Some(SlackIdKind::User) => Some(owner),
            Some(SlackIdKind::Group) => {
                self.report(
                    owner.line,
                    "owner",
                    format!(
                        "`{}` is a user group; the owner must be one person's Slack user ID (U… or W…)",
                        owner.value
                    ),
                );
                None
            }
            None => {
                let hint = slack_id_hint(&owner.value);
                self.report(
                    owner.line,
                    "owner",
                    format!(
                        "`{}` is not a Slack user ID; write the owner's member ID (U… or W…){hint}",
                        shorten(&owner.value)
                    ),
                );
                None
            }
        }
    }

    /// The policy, and its `max_duration` on its own so the auto-approve
    /// rules can be checked against it even when another request field is
    /// broken.
    fn request(
        &mut self,
        s: &Section<'_>,
        break_glass: bool,
    ) -> (Option<RequestPolicy>, Option<Duration>) {
        self.unknown_fields(s, REQUEST_FIELDS);
        let allowed = self.allowed(s);
        let found = self.duration(s, "default_duration");
        let default_duration = self.require(
            s,
            "default_duration",
            found,
            r#"add default_duration = "1h", the length offered when the requester does not choose"#,
        );
        let found = self.duration(s, "max_duration");
        let max_duration = self.require(
            s,
            "max_duration",
            found,
            r#"add max_duration = "4h", the longest access anyone may ask for"#,
        );
        let max_total = self.duration(s, "max_total");
        let require_reason = self.bool(s, "require_reason").unwrap_or(true);

        if let (Some(default), Some(max)) = (&default_duration, &max_duration) {
            if default.value > max.value {
                self.report(
                    default.line,
                    s.field("default_duration"),
                    format!(
                        "default_duration ({}) is longer than max_duration ({}); lower default_duration or raise max_duration",
                        format_duration(default.value),
                        format_duration(max.value)
                    ),
                );
            }
        }
        if let (Some(total), Some(max)) = (&max_total, &max_duration) {
            if total.value < max.value {
                self.report(
                    total.line,
                    s.field("max_total"),
                    format!(
                        "max_total ({}) is shorter than max_duration ({}); max_total counts the first grant plus all extensions, so raise it to at least max_duration or remove it",
                        format_duration(total.value),
                        format_duration(max.value)
                    ),
                );
            }
        }
        if let Some(max) = &max_duration {
            if break_glass && max.value > BREAK_GLASS_MAX_DURATION {
                self.report(
                    max.line,
                    s.field("max_duration"),
                    format!(
                        "break-glass access must be short: max_duration is {}, the limit is {}; lower max_duration",
                        format_duration(max.value),
                        format_duration(BREAK_GLASS_MAX_DURATION)
                    ),
                );
            }
        }
        let max = max_duration.as_ref().map(|m| m.value);
        let policy = (|| {
            Some(RequestPolicy {
                allowed: allowed?,
                default_duration: default_duration?.value,
                max_duration: max_duration?.value,
                max_total: optional(s, "max_total", max_total)?.map(|t| t.value),
                require_reason,
            })
        })();
        (policy, max)
    }

    fn allowed(&mut self, s: &Section<'_>) -> Option<Vec<Principal>> {
        let found = self.string_list(s, "allowed");
        let list = self.require(
            s,
            "allowed",
            found,
            r#"add allowed = ["*"] to let everyone request, or list Slack user IDs (U…) and user group IDs (S…)"#,
        )?;
        if list.value.is_empty() {
            self.report(
                list.line,
                s.field("allowed"),
                r#"is empty, so nobody could request this; write ["*"] for everyone, or list Slack user IDs (U…) and user group IDs (S…)"#,
            );
            return None;
        }
        let mut allowed = Vec::new();
        let mut ok = true;
        for entry in &list.value {
            let principal = if entry.value == "*" {
                Principal::Anyone
            } else {
                match slack_id_kind(&entry.value) {
                    Some(SlackIdKind::User) => Principal::User(entry.value.clone()),
                    Some(SlackIdKind::Group) => Principal::Group(entry.value.clone()),
                    None => {
                        let hint = slack_id_hint(&entry.value);
                        self.report(
                            entry.line,
                            s.field("allowed"),
                            format!(
                                "`{}` is not a Slack ID; write a user ID (U… or W…), a user group ID (S…) or \"*\" for everyone{hint}",
                                shorten(&entry.value)
                            ),
                        );
                        ok = false;
                        continue;
                    }
                }
            };
            if !allowed.contains(&principal) {
                allowed.push(principal);
            }
        }
        if !ok {
            return None;
        }
        if allowed.contains(&Principal::Anyone) {
            allowed = vec![Principal::Anyone];
        }
        Some(allowed)
    }

    fn approval(
        &mut self,
        s: &Section<'_>,
        owner: Option<&str>,
        request_max: Option<Duration>,
    ) -> Option<ApprovalPolicy> {
        self.unknown_fields(s, APPROVAL_FIELDS);
        let stages = self.stages(s, owner);

        let timeout = self.duration(s, "approval_timeout");
        let allow_self_approval = self.bool(s, "allow_self_approval").unwrap_or(false);
        let remind_after = self.duration(s, "remind_after");
        let escalate_after = self.duration(s, "escalate_after");
        let fallback = self.approver_list(s, "fallback_approvers", owner);
        let auto_approve = self.auto_approve(s, request_max);

        // A broken approval_timeout is reported already; comparing against
        // the default would only add a confusing second problem.
        let timeout_value = match &timeout {
            Some(t) => Some(t.value),
            None if s.has("approval_timeout") => None,
            None => Some(DEFAULT_APPROVAL_TIMEOUT),
        };
        for (key, after, what) in [
            (
                "remind_after",
                &remind_after,
                "reminder would never be sent",
            ),
            (
                "escalate_after",
                &escalate_after,
                "escalation would never happen",
            ),
        ] {
            if let (Some(after), Some(timeout)) = (after, timeout_value) {
                if after.value >= timeout {
                    self.report(
                        after.line,
                        s.field(key),
                        format!(
                            "{key} ({}) is not shorter than approval_timeout ({}), so the {what}: the request expires first; lower {key} or raise approval_timeout",
                            format_duration(after.value),
                            format_duration(timeout)
                        ),
                    );
                }
            }
        }
        let has_fallback = fallback.as_ref().is_some_and(|f| !f.value.is_empty());
        if let Some(escalate) = &escalate_after {
            if !has_fallback && !s.has("fallback_approvers") {
                self.report(
                    escalate.line,
                    s.field("escalate_after"),
                    r#"escalate_after is set but there are no fallback_approvers to escalate to; add fallback_approvers = ["U0…"] or remove escalate_after"#,
                );
            }
        }
        if let Some(list) = &fallback {
            if list.value.is_empty() && escalate_after.is_some() {
                self.report(
                    list.line,
                    s.field("fallback_approvers"),
                    "is empty, so escalate_after has nobody to escalate to; list at least one approver or remove escalate_after",
                );
            } else if !list.value.is_empty() && escalate_after.is_none() && !s.has("escalate_after")
            {
                self.report(
                    list.line,
                    s.field("fallback_approvers"),
                    r#"fallback approvers are only asked after escalate_after; add escalate_after = "4h" or remove fallback_approvers"#,
                );
            }
        }

        Some(ApprovalPolicy {
            stages: stages?,
            approval_timeout: timeout_value?,
            allow_self_approval,
            auto_approve: auto_approve?,
            remind_after: optional(s, "remind_after", remind_after)?.map(|d| d.value),
            escalate_after: optional(s, "escalate_after", escalate_after)?.map(|d| d.value),
            fallback_approvers: match fallback {
                Some(list) => list.value,
                None if s.has("fallback_approvers") => return None,
                None => Vec::new(),
            },
        })
    }

    /// The approval stages: either `approvers`/`required` directly under
    /// `[approval]` (one stage) or `[[approval.stages]]`.
    fn stages(&mut self, s: &Section<'_>, owner: Option<&str>) -> Option<Vec<ApprovalStage>> {
        let direct = s.has("approvers") || s.has("required");
        if s.has("stages") {
            let tables = self.table_list(s, "stages", "[[approval.stages]]", "approval.stages");
            if direct {
                // Check both anyway, so their own problems show up in this run too.
                self.stage(s, owner);
                for stage in tables.iter().flatten() {
                    self.unknown_fields(stage, STAGE_FIELDS);
                    self.stage(stage, owner);
                }
                let line = self.entry(s, "stages").and_then(|(_, line)| line);
                self.report(
                    line,
                    s.field("stages"),
                    "[approval] has both approvers/required and [[approval.stages]]; use one: approvers and required directly under [approval] for a single step, or one [[approval.stages]] per step",
                );
                return None;
            }
            let tables = tables?;
            if tables.is_empty() {
                self.no_approvers(s);
                return None;
            }
            let mut stages = Vec::new();
            let mut ok = true;
            for (i, stage) in tables.iter().enumerate() {
                self.unknown_fields(stage, STAGE_FIELDS);
                let name = match self.string(stage, "name") {
                    Some(name) if name.value.trim().is_empty() => {
                        self.report(
                            name.line,
                            stage.field("name"),
                            "is empty; name the stage for approvers (e.g. \"Manager\") or remove the line",
                        );
                        None
                    }
                    Some(name) => Some(name.value),
                    None if stage.has("name") => None,
                    None => Some(format!("Stage {}", i + 1)),
                };
                match (name, self.stage(stage, owner)) {
                    (Some(name), Some((approvers, required))) => stages.push(ApprovalStage {
                        name,
                        approvers,
                        required,
                    }),
                    _ => ok = false,
                }
            }
            return ok.then_some(stages);
        }
        if !direct {
            self.no_approvers(s);
            return None;
        }
        let (approvers, required) = self.stage(s, owner)?;
        Some(vec![ApprovalStage {
            name: "Approval".into(),
            approvers,
            required,
        }])
    }

    fn no_approvers(&mut self, s: &Section<'_>) {
        self.report(
            s.line,
            s.field("approvers"),
            r#"no approvers; add approvers = ["owner"] and required = 1 under [approval], or one [[approval.stages]] per step; every runbook needs someone to review its requests, break-glass ones too (they review after the fact)"#,
        );
    }

    /// The `approvers` and `required` of one stage (or of `[approval]` itself).
    fn stage(&mut self, s: &Section<'_>, owner: Option<&str>) -> Option<(Vec<Approver>, u32)> {
        let found = self.approver_list(s, "approvers", owner);
        let approvers = self.require(
            s,
            "approvers",
            found,
            r#"add approvers = ["owner"]; approvers are Slack user IDs (U…), user group IDs (S…), "owner" or "manager""#,
        );
        if let Some(list) = &approvers {
            if list.value.is_empty() {
                self.report(
                    list.line,
                    s.field("approvers"),
                    r#"is empty, so nobody could approve; list Slack user IDs (U…), user group IDs (S…), "owner" or "manager""#,
                );
                return None;
            }
        }
        let required = match self.integer(s, "required") {
            Some(required) if required.value < 1 => {
                self.report(
                    required.line,
                    s.field("required"),
                    format!(
                        "required = {} would approve requests without anyone looking; set required = 1 or more",
                        required.value
                    ),
                );
                None
            }
            Some(required) => Some(Located {
                value: u32::try_from(required.value).unwrap_or(u32::MAX),
                line: required.line,
            }),
            None if s.has("required") => None,
            None => Some(Located {
                value: 1,
                line: s.line,
            }),
        };
        let (approvers, required) = (approvers?.value, required?);
        if let Some(people) = possible_approvers(&approvers, owner) {
            if required.value as usize > people {
                let listed = if people == 1 {
                    "only 1 approver is listed".to_string()
                } else {
                    format!("only {people} approvers are listed")
                };
                self.report(
                    required.line,
                    s.field("required"),
                    format!(
                        "required = {} but {listed}; lower required or add approvers",
                        required.value
                    ),
                );
                return None;
            }
        }
        Some((approvers, required.value))
    }

    fn approver_list(
        &mut self,
        s: &Section<'_>,
        key: &str,
        owner: Option<&str>,
    ) -> Option<Located<Vec<Approver>>> {
        let list = self.string_list(s, key)?;
        let mut approvers = Vec::new();
        let mut ok = true;
        for entry in &list.value {
            let approver = match entry.value.as_str() {
                "owner" => Approver::Owner,
                "manager" => Approver::Manager,
                other => match slack_id_kind(other) {
                    Some(SlackIdKind::User) => Approver::User(other.to_string()),
                    Some(SlackIdKind::Group) => Approver::Group(other.to_string()),
                    None => {
                        let hint = if other == "*" {
                            "; \"*\" means everyone, who cannot all approve: name people or groups"
                                .to_string()
                        } else if other.eq_ignore_ascii_case("owner")
                            || other.eq_ignore_ascii_case("manager")
                        {
                            format!("; write `{}` in lowercase", other.to_ascii_lowercase())
                        } else {
                            slack_id_hint(other)
                        };
                        self.report(
                            entry.line,
                            s.field(key),
                            format!(
                                "`{}` is not an approver; write a Slack user ID (U… or W…), a user group ID (S…), \"owner\" or \"manager\"{hint}",
                                shorten(other)
                            ),
                        );
                        ok = false;
                        continue;
                    }
                },
            };
            let same_as_owner = |a: &Approver| match (a, owner) {
                (Approver::User(id), Some(owner)) => id == owner,
                _ => false,
            };
            if approvers.contains(&approver) {
                self.report(
                    entry.line,
                    s.field(key),
                    format!("`{}` is listed twice; remove one", entry.value),
                );
                ok = false;
            } else if (approver == Approver::Owner && approvers.iter().any(same_as_owner))
                || (same_as_owner(&approver) && approvers.contains(&Approver::Owner))
            {
                self.report(
                    entry.line,
                    s.field(key),
                    format!(
                        "`owner` and `{}` are the same person (the runbook owner); remove one",
                        owner.unwrap_or_default()
                    ),
                );
                ok = false;
            } else {
                approvers.push(approver);
            }
        }
        ok.then_some(Located {
            value: approvers,
            line: list.line,
        })
    }

    fn auto_approve(
        &mut self,
        s: &Section<'_>,
        request_max: Option<Duration>,
    ) -> Option<Vec<AutoApproveRule>> {
        let Some((item, line)) = self.entry(s, "auto_approve") else {
            return Some(Vec::new());
        };
        let rules: Vec<(Section<'_>, String)> = match item.as_table_like() {
            Some(table) => vec![(
                Section {
                    path: s.field("auto_approve"),
                    heading: "[approval.auto_approve]".into(),
                    table,
                    line,
                },
                "auto_approve".to_string(),
            )],
            None => self
                .table_list(
                    s,
                    "auto_approve",
                    "[[approval.auto_approve]]",
                    "approval.auto_approve",
                )?
                .into_iter()
                .enumerate()
                .map(|(i, rule)| (rule, format!("auto_approve[{}]", i + 1)))
                .collect(),
        };
        let mut out = Vec::new();
        let mut names: BTreeMap<String, Option<usize>> = BTreeMap::new();
        let mut ok = true;
        for (rule, default_name) in &rules {
            let name = self.string(rule, "name");
            if let Some(name) = &name {
                if let Some(first) = names.get(&name.value) {
                    let at = first.map(|l| format!(" on line {l}")).unwrap_or_default();
                    self.report(
                        name.line,
                        rule.field("name"),
                        format!(
                            "another auto-approve rule{at} is already named `{}`; give each rule its own name",
                            shorten(&name.value)
                        ),
                    );
                    ok = false;
                } else if name.value.starts_with("auto_approve[") {
                    self.report(
                        name.line,
                        rule.field("name"),
                        format!(
                            "`{}` looks like the name accessbot gives a rule without one (auto_approve[N]), so the audit log could not tell the two apart; pick another name",
                            shorten(&name.value)
                        ),
                    );
                    ok = false;
                } else {
                    names.insert(name.value.clone(), name.line);
                }
            }
            match self.auto_approve_rule(rule, request_max) {
                Some(mut parsed) => {
                    parsed.name = match name {
                        Some(name) => name.value,
                        None if rule.has("name") => {
                            ok = false;
                            continue;
                        }
                        None => default_name.clone(),
                    };
                    out.push(parsed);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// One auto-approve rule, with an empty name the caller fills in.
    fn auto_approve_rule(
        &mut self,
        s: &Section<'_>,
        request_max: Option<Duration>,
    ) -> Option<AutoApproveRule> {
        self.unknown_fields(s, AUTO_APPROVE_FIELDS);
        let users = self.id_list(s, "users", SlackIdKind::User);
        let groups = self.id_list(s, "groups", SlackIdKind::Group);
        let found = self.duration(s, "max_duration");
        let max_duration = self.require(
            s,
            "max_duration",
            found,
            r#"add max_duration = "30m": only requests up to that long are approved automatically"#,
        );
        // A list that is present but broken is reported already.
        let names_none = |list: &Option<Vec<String>>, key: &str| match list {
            Some(list) => list.is_empty(),
            None => !s.has(key),
        };
        if names_none(&users, "users") && names_none(&groups, "groups") {
            self.report(
                s.line,
                s.path.clone(),
                r#"this auto-approve rule names nobody; add users = ["U0…"] or groups = ["S0…"] (whose requests are approved automatically)"#,
            );
            return None;
        }
        if let (Some(max), Some(request_max)) = (&max_duration, request_max) {
            if max.value > request_max {
                self.report(
                    max.line,
                    s.field("max_duration"),
                    format!(
                        "auto-approve max_duration ({}) is longer than request.max_duration ({}); lower it to at most {}",
                        format_duration(max.value),
                        format_duration(request_max),
                        format_duration(request_max)
                    ),
                );
                return None;
            }
        }
        Some(AutoApproveRule {
            name: String::new(),
            users: optional(s, "users", users)?.unwrap_or_default(),
            groups: optional(s, "groups", groups)?.unwrap_or_default(),
            max_duration: max_duration?.value,
        })
    }

    /// A list of Slack IDs that must all be users or all be groups.
    fn id_list(&mut self, s: &Section<'_>, key: &str, kind: SlackIdKind) -> Option<Vec<String>> {
        let list = self.string_list(s, key)?;
        let mut ids = Vec::new();
        let mut ok = true;
        for entry in list.value {
            let message = match (slack_id_kind(&entry.value), kind) {
                (Some(found), wanted) if found == wanted => {
                    if !ids.contains(&entry.value) {
                        ids.push(entry.value);
                    }
                    continue;
                }
                (Some(SlackIdKind::Group), _) => {
                    format!("`{}` is a user group ID; put it in groups", entry.value)
                }
                (Some(SlackIdKind::User), _) => {
                    format!("`{}` is a user ID; put it in users", entry.value)
                }
                (None, SlackIdKind::User) => format!(
                    "`{}` is not a Slack user ID; write member IDs (U… or W…){}",
                    shorten(&entry.value),
                    slack_id_hint(&entry.value)
                ),
                (None, SlackIdKind::Group) => format!(
                    "`{}` is not a Slack user group ID; write group IDs (S…){}",
                    shorten(&entry.value),
                    slack_id_hint(&entry.value)
                ),
            };
            self.report(entry.line, s.field(key), message);
            ok = false;
        }
        ok.then_some(ids)
    }

    fn grant(&mut self, s: &Section<'_>) -> Option<GrantSpec> {
        self.unknown_fields(s, GRANT_FIELDS);
        let found = self.string(s, "provider");
        let provider = self.require(
            s,
            "provider",
            found,
            r#"add provider = "command", "webhook" or "slack_usergroup" (see runbooks/README.md)"#,
        )?;
        let own_fields = provider_fields(&provider.value);
        if !PROVIDERS.contains(&provider.value.as_str()) {
            let hint = PROVIDERS
                .iter()
                .find(|p| edit_distance(&provider.value, p) <= 2)
                .map(|p| format!(" (did you mean `{p}`?)"))
                .unwrap_or_default();
            self.report(
                provider.line,
                s.field("provider"),
                format!(
                    "unknown provider `{}`{hint}; use one of {}",
                    shorten(&provider.value),
                    PROVIDERS.join(", ")
                ),
            );
            return None;
        }
        let mut ok = true;
        for key in GRANT_FIELDS {
            if *key == "provider" || own_fields.contains(key) || !s.has(key) {
                continue;
            }
            let users: Vec<&str> = PROVIDERS
                .iter()
                .copied()
                .filter(|p| provider_fields(p).contains(key))
                .collect();
            let line = self.entry(s, key).and_then(|(_, line)| line);
            self.report(
                line,
                s.field(key),
                format!(
                    "the {} provider does not use {key} (only {} does); remove it",
                    provider.value,
                    users.join(" and ")
                ),
            );
            ok = false;
        }
        let grant = match provider.value.as_str() {
            "command" => self.command(s),
            "webhook" => self.webhook(s),
            _ => self.slack_usergroup(s),
        };
        if ok {
            grant
        } else {
            None
        }
    }

    fn command(&mut self, s: &Section<'_>) -> Option<GrantSpec> {
        let grant = self.argv(s, "grant", "grant");
        let revoke = self.argv(s, "revoke", "revoke");
        let timeout = self.duration(s, "timeout");
        let env = match self.string_list(s, "env") {
            Some(list) => {
                let mut names = Vec::new();
                let mut ok = true;
                for name in list.value {
                    if !is_env_name(&name.value) {
                        self.report(
                            name.line,
                            s.field("env"),
                            format!(
                                "`{}` is not an environment variable name; use letters, digits and underscores, e.g. BILLING_API_TOKEN",
                                shorten(&name.value)
                            ),
                        );
                        ok = false;
                    } else if !names.contains(&name.value) {
                        names.push(name.value);
                    }
                }
                ok.then_some(names)
            }
            None if s.has("env") => None,
            None => Some(Vec::new()),
        };
        Some(GrantSpec::Command {
            grant: grant?,
            revoke: revoke?,
            timeout: optional(s, "timeout", timeout)?.map_or(DEFAULT_PROVIDER_TIMEOUT, |t| t.value),
            env: env?,
        })
    }

    /// The program and arguments of a command provider.
    fn argv(&mut self, s: &Section<'_>, key: &str, action: &str) -> Option<Vec<String>> {
        let found = self.string_list(s, key);
        let list = self.require(
            s,
            key,
            found,
            &format!(
                r#"add {key} = ["./scripts/billing.sh", "{action}"], the program that does the {action} and its arguments"#
            ),
        )?;
        let Some(program) = list.value.first() else {
            self.report(
                list.line,
                s.field(key),
                format!(r#"is empty; give the program and its arguments, e.g. {key} = ["./scripts/billing.sh", "{action}"]"#),
            );
            return None;
        };
        if program.value.trim().is_empty() {
            self.report(
                program.line,
                s.field(key),
                "the program name is empty; write the path of the program first",
            );
            return None;
        }
        if let Some(dir) = self.program_dir {
            if !self.program_runs(program, dir, &s.field(key)) {
                return None;
            }
        }
        Some(list.value.into_iter().map(|a| a.value).collect())
    }

    /// Checks that a program given by a relative path exists next to the
    /// runbook and may be run. Bare names are looked up on PATH and absolute
    /// paths live on the production host, so both are left to run time.
    fn program_runs(&mut self, program: &Located<String>, dir: &Path, field: &str) -> bool {
        let path = Path::new(&program.value);
        if path.is_absolute() || !program.value.contains('/') {
            return true;
        }
        let full = dir.join(path.strip_prefix("./").unwrap_or(path));
        let shown = shorten(&program.value);
        let problem = match fs::metadata(&full) {
            Err(_) => format!(
                "`{shown}` does not exist ({} was not found); relative paths start at the runbook directory",
                shorten_path(&full)
            ),
            Ok(meta) if !meta.is_file() => format!("`{shown}` is not a file"),
            Ok(meta) if !is_executable(&meta) => format!(
                "`{shown}` is not executable; run chmod +x {}",
                shorten_path(&full)
            ),
            Ok(_) => return true,
        };
        self.report(program.line, field, problem);
        false
    }

    fn webhook(&mut self, s: &Section<'_>) -> Option<GrantSpec> {
        let found = self.string(s, "url");
        let url = self.require(
            s,
            "url",
            found,
            r#"add url = "https://…", the address accessbot POSTs grants and revokes to"#,
        );
        let url = url.and_then(|url| {
            match reqwest::Url::parse(url.value.trim()) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some() => {
                    return Some(url.value.trim().to_string());
                }
                _ => {}
            }
            self.report(
                url.line,
                s.field("url"),
                format!(
                    "`{}` is not an http or https URL; write the full address, e.g. https://automation.example.com/accessbot",
                    shorten(&url.value)
                ),
            );
            None
        });
        let found = self.string(s, "secret_env");
        let secret_env = self.require(
            s,
            "secret_env",
            found,
            r#"add secret_env = "MY_WEBHOOK_SECRET", the name of the environment variable holding the signing secret"#,
        );
        let secret_env = secret_env.and_then(|name| {
            if is_env_name(&name.value) {
                return Some(name.value);
            }
            self.report(
                name.line,
                s.field("secret_env"),
                format!(
                    "`{}` is not an environment variable name; write the variable's name (letters, digits, underscores), not the secret itself",
                    shorten(&name.value)
                ),
            );
            None
        });
        let timeout = self.duration(s, "timeout");
        Some(GrantSpec::Webhook {
            url: url?,
            secret_env: secret_env?,
            timeout: optional(s, "timeout", timeout)?.map_or(DEFAULT_PROVIDER_TIMEOUT, |t| t.value),
        })
    }

    fn slack_usergroup(&mut self, s: &Section<'_>) -> Option<GrantSpec> {
        let found = self.string(s, "usergroup");
        let group = self.require(
            s,
            "usergroup",
            found,
            r#"add usergroup = "S0123ABCD", the ID of the Slack user group that carries the access"#,
        )?;
        if slack_id_kind(&group.value) != Some(SlackIdKind::Group) {
            let hint = match slack_id_kind(&group.value) {
                Some(SlackIdKind::User) => "; this one is a user ID".to_string(),
                _ => slack_id_hint(&group.value),
            };
            self.report(
                group.line,
                s.field("usergroup"),
                format!(
                    "`{}` is not a Slack user group ID; write the group's ID (S…){hint}",
                    shorten(&group.value)
                ),
            );
            return None;
        }
        Some(GrantSpec::SlackUsergroup {
            usergroup: group.value,
        })
    }

    // ---- typed access to fields ----

    /// The item at `key` and the line to point at for it.
    fn entry<'d>(&self, s: &Section<'d>, key: &str) -> Option<(&'d Item, Option<usize>)> {
        let table: &'d dyn TableLike = s.table;
        let (k, item) = table.get_key_value(key)?;
        if item.is_none() {
            return None;
        }
        let line = self.line(k.span().or_else(|| item.span())).or(s.line);
        Some((item, line))
    }

    /// Reports a missing required field; passes `found` through.
    fn require<T>(&mut self, s: &Section<'_>, key: &str, found: Option<T>, how: &str) -> Option<T> {
        // A misspelt key is reported as unknown with a "did you mean"; saying
        // the real one is missing as well would only be noise.
        if found.is_none() && !s.has(key) && !has_misspelling_of(s, key) {
            let place = if s.is_root() {
                "; put it near the top of the file, before the first [section] line"
            } else {
                ""
            };
            self.report(s.line, s.field(key), format!("missing; {how}{place}"));
        }
        found
    }

    fn wrong_type(
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

    fn string(&mut self, s: &Section<'_>, key: &str) -> Option<Located<String>> {
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
    fn text_field(
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

    fn bool(&mut self, s: &Section<'_>, key: &str) -> Option<bool> {
        let (item, line) = self.entry(s, key)?;
        let value = item.as_bool();
        if value.is_none() {
            self.wrong_type(s, key, line, item, "true or false");
        }
        value
    }

    fn integer(&mut self, s: &Section<'_>, key: &str) -> Option<Located<i64>> {
        let (item, line) = self.entry(s, key)?;
        match item.as_integer() {
            Some(value) => Some(Located { value, line }),
            None => {
                self.wrong_type(s, key, line, item, "a whole number");
                None
            }
        }
    }

    fn duration(&mut self, s: &Section<'_>, key: &str) -> Option<Located<Duration>> {
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
    fn string_list(&mut self, s: &Section<'_>, key: &str) -> Option<Located<Vec<Located<String>>>> {
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
    fn section<'d>(
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
    fn table_list<'d>(
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
    fn unknown_fields(&mut self, s: &Section<'_>, known: &[&str]) {
        let keys: Vec<&str> = s.table.iter().map(|(k, _)| k).collect();
        for key in keys {
            if known.contains(&key) {
                continue;
            }
            let line = self.entry(s, key).and_then(|(_, line)| line).or(s.line);
            let hint = unknown_field_hint(key, known, s);
            self.report(line, s.field(key), format!("unknown field{hint}"));
        }
    }
}

/// For optional fields: `Some(None)` when absent, `None` when present but
/// broken (already reported), so callers can use `?`.
fn optional<T>(s: &Section<'_>, key: &str, found: Option<T>) -> Option<Option<T>> {
    match found {
        Some(value) => Some(Some(value)),
        None if s.has(key) => None,
        None => Some(None),
    }
}

fn unknown_field_hint(key: &str, known: &[&str], s: &Section<'_>) -> String {
    if let Some(close) = known
        .iter()
        .filter(|k| is_close(key, k))
        .min_by_key(|k| edit_distance(key, k))
    {
        return format!("; did you mean `{close}`?");
    }
    let homes: [(&str, &[&str]); 4] = [
        ("the top level", ROOT_FIELDS),
        ("[request]", REQUEST_FIELDS),
        ("[approval]", APPROVAL_FIELDS),
        ("[grant]", GRANT_FIELDS),
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
fn has_misspelling_of(s: &Section<'_>, key: &str) -> bool {
    let known = [
        ROOT_FIELDS,
        REQUEST_FIELDS,
        APPROVAL_FIELDS,
        STAGE_FIELDS,
        AUTO_APPROVE_FIELDS,
        GRANT_FIELDS,
    ];
    s.table.iter().any(|(other, _)| {
        !known.iter().any(|fields| fields.contains(&other)) && is_close(other, key)
    })
}

fn is_close(typed: &str, known: &str) -> bool {
    edit_distance(typed, known) <= (typed.len() / 3).max(1)
}

fn provider_fields(provider: &str) -> &'static [&'static str] {
    match provider {
        "command" => &["grant", "revoke", "timeout", "env"],
        "webhook" => &["url", "secret_env", "timeout"],
        "slack_usergroup" => &["usergroup"],
        _ => &[],
    }
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
enum SlackIdKind {
    User,
    Group,
}

/// Slack IDs are an uppercase prefix letter and uppercase letters or digits:
/// users `U…`/`W…`, user groups `S…`.
fn slack_id_kind(text: &str) -> Option<SlackIdKind> {
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
fn slack_id_hint(text: &str) -> String {
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

fn is_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// How many different people could approve a stage; `None` when a group is
/// listed, since a group's size is only known when a request comes in.
/// `owner` is one person (the owner's user ID if also listed), `manager` one.
fn possible_approvers(approvers: &[Approver], owner: Option<&str>) -> Option<usize> {
    let mut people = HashSet::new();
    let mut manager = false;
    for approver in approvers {
        match approver {
            Approver::Group(_) => return None,
            Approver::User(id) => {
                people.insert(id.as_str());
            }
            Approver::Owner => {
                people.insert(owner.unwrap_or("owner"));
            }
            Approver::Manager => manager = true,
        }
    }
    Some(people.len() + usize::from(manager))
}

/// A suggested id from an invalid one: "Billing Admin" → "billing-admin".
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    let out = out.trim_start_matches(|c: char| c.is_ascii_digit() || c == '-');
    out.chars()
        .take(ID_MAX_CHARS)
        .collect::<String>()
        .trim_end_matches('-')
        .to_string()
}

/// A path for a message: control characters removed, the end kept (it
/// names the file) when it is long.
fn shorten_path(path: &Path) -> String {
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
fn shorten(text: &str) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control()).take(40).collect();
    if text.chars().count() > 40 {
        format!("{clean}…")
    } else {
        clean
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
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

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &fs::Metadata) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small valid runbook the problem cases edit one line of.
    const VALID: &str = r#"id = "billing-admin"
title = "Billing portal admin"
description = "Refunds and plan changes"
system = "Billing portal"
owner = "U0OWNER"
instructions = "Sign in at https://billing.example.com."

[request]
allowed = ["*"]
default_duration = "1h"
max_duration = "4h"

[approval]
approvers = ["owner", "U0BOB"]
required = 1

[grant]
provider = "command"
grant = ["./scripts/billing.sh", "grant"]
revoke = ["./scripts/billing.sh", "revoke"]
"#;

    fn parse(text: &str) -> Result<Runbook, Vec<Problem>> {
        parse_runbook(text, Path::new("t.toml"))
    }

    /// `VALID` with the first `from` replaced by `to`.
    fn edit(from: &str, to: &str) -> String {
        assert!(VALID.contains(from), "VALID has no {from:?}");
        VALID.replacen(from, to, 1)
    }

    fn listed(problems: &[Problem]) -> String {
        problems.iter().map(|p| format!("  {p}\n")).collect()
    }

    /// Asserts `input` is refused with a problem on exactly `field` whose
    /// message contains `message`.
    fn check(input: &str, field: &str, message: &str) {
        let problems = match parse(input) {
            Ok(_) => {
                panic!("expected a problem on {field}, but the runbook was accepted:\n{input}")
            }
            Err(problems) => problems,
        };
        assert!(
            problems
                .iter()
                .any(|p| p.field == field && p.message.contains(message)),
            "expected a problem on {field} containing {message:?}; got:\n{}",
            listed(&problems)
        );
    }

    #[test]
    fn the_valid_example_is_valid() {
        if let Err(problems) = parse(VALID) {
            panic!("{}", listed(&problems));
        }
    }

    #[test]
    fn a_full_runbook_maps_into_the_model() {
        let text = r#"id = "billing-admin"
title = "Billing portal admin"
description = "Refunds and plan changes"
system = "Billing portal"
owner = "U0OWNER"
instructions = "Sign in at https://billing.example.com."
break_glass = false

[request]
allowed = ["U0ALICE", "S0FINANCE", "W0BOB", "U0ALICE"]
default_duration = "1h"
max_duration = "4h"
max_total = "8h"
require_reason = false

[approval]
approvers = ["U0BOB", "S0FINLEADS", "owner", "manager"]
required = 2
approval_timeout = "12h"
allow_self_approval = true
remind_after = "1h"
escalate_after = "4h"
fallback_approvers = ["U0CTO"]
auto_approve = { users = ["U0ONCALL"], groups = ["S0ONCALL"], max_duration = "30m" }

[grant]
provider = "command"
grant = ["./scripts/billing.sh", "grant"]
revoke = ["./scripts/billing.sh", "revoke"]
timeout = "45s"
env = ["BILLING_API_TOKEN"]
"#;
        let runbook = parse(text).unwrap_or_else(|p| panic!("{}", listed(&p)));
        let hours = |h: u64| Duration::from_secs(h * 3600);
        let expected = Runbook {
            id: "billing-admin".into(),
            title: "Billing portal admin".into(),
            description: "Refunds and plan changes".into(),
            system: "Billing portal".into(),
            owner: "U0OWNER".into(),
            instructions: "Sign in at https://billing.example.com.".into(),
            break_glass: false,
            request: RequestPolicy {
                allowed: vec![
                    Principal::User("U0ALICE".into()),
                    Principal::Group("S0FINANCE".into()),
                    Principal::User("W0BOB".into()),
                ],
                default_duration: hours(1),
                max_duration: hours(4),
                max_total: Some(hours(8)),
                require_reason: false,
            },
            approval: ApprovalPolicy {
                stages: vec![ApprovalStage {
                    name: "Approval".into(),
                    approvers: vec![
                        Approver::User("U0BOB".into()),
                        Approver::Group("S0FINLEADS".into()),
                        Approver::Owner,
                        Approver::Manager,
                    ],
                    required: 2,
                }],
                approval_timeout: hours(12),
                allow_self_approval: true,
                auto_approve: vec![AutoApproveRule {
                    name: "auto_approve".into(),
                    users: vec!["U0ONCALL".into()],
                    groups: vec!["S0ONCALL".into()],
                    max_duration: Duration::from_secs(30 * 60),
                }],
                remind_after: Some(hours(1)),
                escalate_after: Some(hours(4)),
                fallback_approvers: vec![Approver::User("U0CTO".into())],
            },
            grant: GrantSpec::Command {
                grant: vec!["./scripts/billing.sh".into(), "grant".into()],
                revoke: vec!["./scripts/billing.sh".into(), "revoke".into()],
                timeout: Duration::from_secs(45),
                env: vec!["BILLING_API_TOKEN".into()],
            },
            source: PathBuf::from("t.toml"),
        };
        assert_eq!(runbook, expected);
    }

    #[test]
    fn stages_rule_lists_and_defaults_map_into_the_model() {
        let text = r#"id = "idp-admin"
title = "IdP admin"
description = "Admin role"
system = "SSO"
owner = "U0OWNER"
instructions = "Sign in."
break_glass = true

[request]
allowed = ["*", "U0ALICE"]
default_duration = "1h"
max_duration = "2h"

[approval]

[[approval.stages]]
approvers = ["manager"]

[[approval.stages]]
name = "Security"
approvers = ["S0SECURITY", "owner"]
required = 2

[[approval.auto_approve]]
users = ["U0ALICE"]
max_duration = "1h"

[[approval.auto_approve]]
name = "on-call"
groups = ["S0ONCALL"]
max_duration = "30m"

[grant]
provider = "webhook"
url = "https://idp.example.com/hook"
secret_env = "IDP_SECRET"
"#;
        let runbook = parse(text).unwrap_or_else(|p| panic!("{}", listed(&p)));
        assert!(runbook.break_glass);
        assert_eq!(runbook.request.allowed, vec![Principal::Anyone]);
        assert!(
            runbook.request.require_reason,
            "require_reason defaults to true"
        );
        assert_eq!(runbook.request.max_total, None);
        let approval = &runbook.approval;
        assert_eq!(
            approval.stages,
            vec![
                ApprovalStage {
                    name: "Stage 1".into(),
                    approvers: vec![Approver::Manager],
                    required: 1,
                },
                ApprovalStage {
                    name: "Security".into(),
                    approvers: vec![Approver::Group("S0SECURITY".into()), Approver::Owner],
                    required: 2,
                },
            ]
        );
        assert_eq!(approval.approval_timeout, Duration::from_secs(24 * 3600));
        assert!(!approval.allow_self_approval);
        assert_eq!(
            (approval.remind_after, approval.escalate_after),
            (None, None)
        );
        let names: Vec<&str> = approval
            .auto_approve
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["auto_approve[1]", "on-call"]);
        assert_eq!(
            runbook.grant,
            GrantSpec::Webhook {
                url: "https://idp.example.com/hook".into(),
                secret_env: "IDP_SECRET".into(),
                timeout: Duration::from_secs(30),
            }
        );
    }

    #[test]
    fn slack_usergroup_maps_into_the_model() {
        let text = edit(
            r#"provider = "command"
grant = ["./scripts/billing.sh", "grant"]
revoke = ["./scripts/billing.sh", "revoke"]"#,
            r#"provider = "slack_usergroup"
usergroup = "S0BILLINGADM""#,
        );
        let runbook = parse(&text).unwrap_or_else(|p| panic!("{}", listed(&p)));
        assert_eq!(
            runbook.grant,
            GrantSpec::SlackUsergroup {
                usergroup: "S0BILLINGADM".into()
            }
        );
    }

    #[test]
    fn a_group_approver_counts_as_unbounded() {
        let text = edit(
            "approvers = [\"owner\", \"U0BOB\"]\nrequired = 1",
            "approvers = [\"S0TEAM\"]\nrequired = 5",
        );
        assert!(parse(&text).is_ok());
    }

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
    fn reports_missing_fields_and_sections() {
        check(
            &edit("owner = \"U0OWNER\"\n", ""),
            "owner",
            "missing; add owner = ",
        );
        check(
            &edit("title = \"Billing portal admin\"\n", ""),
            "title",
            "missing",
        );
        check(
            &edit(
                "instructions = \"Sign in at https://billing.example.com.\"\n",
                "",
            ),
            "instructions",
            "missing",
        );
        check(
            &edit("default_duration = \"1h\"\n", ""),
            "request.default_duration",
            "missing",
        );
        check(
            &edit("allowed = [\"*\"]\n", ""),
            "request.allowed",
            "missing",
        );
        check(
            &edit("revoke = [\"./scripts/billing.sh\", \"revoke\"]\n", ""),
            "grant.revoke",
            "missing",
        );
        check(
            &edit("provider = \"command\"\n", ""),
            "grant.provider",
            "missing",
        );
        let no_grant = VALID[..VALID.find("[grant]").unwrap()].to_string();
        check(&no_grant, "grant", "missing [grant] section");
        check(
            &edit("system = \"Billing portal\"", "system = \"  \""),
            "system",
            "is empty",
        );
        check(
            &edit("allowed = [\"*\"]", "allowed = []"),
            "request.allowed",
            "nobody could request",
        );
    }

    #[test]
    fn reports_bad_ids() {
        check(
            &edit("\"billing-admin\"", "\"Billing_Admin\""),
            "id",
            "e.g. id = \"billing-admin\"",
        );
        check(
            &edit("\"billing-admin\"", "\"1-billing\""),
            "id",
            "start with a letter",
        );
        check(
            &edit("\"billing-admin\"", &format!("\"{}\"", "a".repeat(65))),
            "id",
            "at most 64",
        );
        check(
            &edit(
                "\"Billing portal admin\"",
                &format!("\"{}\"", "x".repeat(76)),
            ),
            "title",
            "is 76 characters long",
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

    #[test]
    fn reports_bad_durations() {
        check(
            &edit("\"4h\"", "\"1.5h\""),
            "request.max_duration",
            "`1.5h` is not a duration; write a number and a unit",
        );
        check(
            &edit("required = 1", "required = 1\napproval_timeout = \"0m\""),
            "approval.approval_timeout",
            "is zero",
        );
        check(
            &edit("default_duration = \"1h\"", "default_duration = \"8h\""),
            "request.default_duration",
            "default_duration (8h) is longer than max_duration (4h)",
        );
        check(
            &edit(
                "max_duration = \"4h\"",
                "max_duration = \"4h\"\nmax_total = \"2h\"",
            ),
            "request.max_total",
            "max_total (2h) is shorter than max_duration (4h)",
        );
        check(
            &edit(
                "owner = \"U0OWNER\"",
                "owner = \"U0OWNER\"\nbreak_glass = true",
            )
            .replace("max_duration = \"4h\"", "max_duration = \"8h\""),
            "request.max_duration",
            "break-glass access must be short: max_duration is 8h, the limit is 4h",
        );
    }

    #[test]
    fn reports_impossible_approvals() {
        check(
            &edit("required = 1", "required = 0"),
            "approval.required",
            "set required = 1 or more",
        );
        check(
            &edit("required = 1", "required = 3"),
            "approval.required",
            "required = 3 but only 2 approvers are listed; lower required or add approvers",
        );
        // `owner` and `manager` are one person each, whoever they are.
        check(
            &edit(
                "[\"owner\", \"U0BOB\"]\nrequired = 1",
                "[\"owner\", \"manager\"]\nrequired = 3",
            ),
            "approval.required",
            "only 2 approvers",
        );
        check(
            &edit(
                "[\"owner\", \"U0BOB\"]",
                "[\"owner\", \"U0BOB\", \"U0BOB\"]",
            ),
            "approval.approvers",
            "`U0BOB` is listed twice",
        );
        check(
            &edit("[\"owner\", \"U0BOB\"]", "[\"owner\", \"U0OWNER\"]"),
            "approval.approvers",
            "are the same person",
        );
        check(
            &edit("[\"owner\", \"U0BOB\"]", "[]"),
            "approval.approvers",
            "nobody could approve",
        );
        check(
            &edit("approvers = [\"owner\", \"U0BOB\"]\nrequired = 1\n", ""),
            "approval.approvers",
            "no approvers",
        );
        check(
            &format!("{VALID}\n[[approval.stages]]\napprovers = [\"owner\"]\n"),
            "approval.stages",
            "has both approvers/required and [[approval.stages]]",
        );
    }

    #[test]
    fn reports_bad_stages() {
        let staged = edit(
            "approvers = [\"owner\", \"U0BOB\"]\nrequired = 1\n",
            "\n[[approval.stages]]\nname = \"Manager\"\napprovers = [\"manager\"]\n\n[[approval.stages]]\napprovers = [\"owner\"]\n",
        );
        assert!(parse(&staged).is_ok(), "{staged}");
        check(
            &staged.replace("approvers = [\"owner\"]\n", "name = \"Owner\"\n"),
            "approval.stages[2].approvers",
            "missing",
        );
        check(
            &staged.replace(
                "approvers = [\"owner\"]\n",
                "approvers = [\"owner\"]\nrequired = 2\n",
            ),
            "approval.stages[2].required",
            "required = 2 but only 1 approver is listed",
        );
        check(
            &edit(
                "approvers = [\"owner\", \"U0BOB\"]\nrequired = 1\n",
                "\n[approval.stages]\napprovers = [\"owner\"]\n",
            ),
            "approval.stages",
            "must be a list of tables, not a single table; write [[approval.stages]] with double brackets",
        );
    }

    #[test]
    fn reports_reminders_and_escalations_that_cannot_happen() {
        let approval = "required = 1";
        check(
            &edit(approval, "required = 1\nescalate_after = \"4h\""),
            "approval.escalate_after",
            "no fallback_approvers",
        );
        check(
            &edit(approval, "required = 1\nfallback_approvers = [\"U0CTO\"]"),
            "approval.fallback_approvers",
            "only asked after escalate_after",
        );
        check(
            &edit(approval, "required = 1\nremind_after = \"1d\""),
            "approval.remind_after",
            "remind_after (1d) is not shorter than approval_timeout (1d)",
        );
        check(
            &edit(
                approval,
                "required = 1\napproval_timeout = \"2h\"\nescalate_after = \"3h\"\nfallback_approvers = [\"U0CTO\"]",
            ),
            "approval.escalate_after",
            "escalation would never happen",
        );
    }

    #[test]
    fn reports_bad_auto_approve_rules() {
        let rule = |body: &str| {
            edit(
                "required = 1",
                &format!("required = 1\nauto_approve = {{ {body} }}"),
            )
        };
        check(
            &rule("users = [\"U0ONCALL\"], max_duration = \"8h\""),
            "approval.auto_approve.max_duration",
            "longer than request.max_duration (4h)",
        );
        check(
            &rule("max_duration = \"1h\""),
            "approval.auto_approve",
            "names nobody",
        );
        check(
            &rule("users = [], groups = [], max_duration = \"1h\""),
            "approval.auto_approve",
            "names nobody",
        );
        check(
            &rule("users = [\"U0ONCALL\"]"),
            "approval.auto_approve.max_duration",
            "missing",
        );
        check(
            &rule("users = [\"S0ONCALL\"], max_duration = \"1h\""),
            "approval.auto_approve.users",
            "is a user group ID; put it in groups",
        );
        check(
            &rule("groups = [\"U0ONCALL\"], max_duration = \"1h\""),
            "approval.auto_approve.groups",
            "is a user ID; put it in users",
        );
        let twice = format!(
            "{VALID}\n[[approval.auto_approve]]\nname = \"x\"\nusers = [\"U0A\"]\nmax_duration = \"1h\"\n\n[[approval.auto_approve]]\nname = \"x\"\nusers = [\"U0B\"]\nmax_duration = \"1h\"\n"
        );
        check(&twice, "approval.auto_approve[2].name", "already named `x`");
    }

    #[test]
    fn reports_bad_providers() {
        check(
            &edit("\"command\"", "\"comand\""),
            "grant.provider",
            "unknown provider `comand` (did you mean `command`?); use one of command, webhook, slack_usergroup",
        );
        check(
            &edit(
                "provider = \"command\"",
                "provider = \"command\"\nurl = \"https://x.example.com\"",
            ),
            "grant.url",
            "the command provider does not use url (only webhook does)",
        );
        check(
            &edit("[\"./scripts/billing.sh\", \"revoke\"]", "[]"),
            "grant.revoke",
            "is empty",
        );
        check(
            &edit(
                "provider = \"command\"",
                "provider = \"command\"\nenv = [\"NOT-A-NAME\"]",
            ),
            "grant.env",
            "is not an environment variable name",
        );
        let webhook = |body: &str| {
            let grant_start = VALID.find("[grant]").unwrap();
            format!(
                "{}[grant]\nprovider = \"webhook\"\n{body}\n",
                &VALID[..grant_start]
            )
        };
        check(
            &webhook("url = \"https://x.example.com\""),
            "grant.secret_env",
            "missing",
        );
        check(&webhook("secret_env = \"S\""), "grant.url", "missing");
        check(
            &webhook("url = \"ftp://x.example.com\"\nsecret_env = \"S\""),
            "grant.url",
            "is not an http or https URL",
        );
        check(
            &webhook("url = \"https://x.example.com\"\nsecret_env = \"hunter2 !\""),
            "grant.secret_env",
            "not the secret itself",
        );
        let usergroup = |body: &str| {
            let grant_start = VALID.find("[grant]").unwrap();
            format!(
                "{}[grant]\nprovider = \"slack_usergroup\"\n{body}\n",
                &VALID[..grant_start]
            )
        };
        check(&usergroup(""), "grant.usergroup", "missing");
        check(
            &usergroup("usergroup = \"U0BOB\""),
            "grant.usergroup",
            "this one is a user ID",
        );
    }

    #[test]
    fn reports_syntax_errors_with_their_line() {
        let problems = parse(&edit(
            "system = \"Billing portal\"",
            "system = \"Billing portal",
        ))
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{}", listed(&problems));
        assert_eq!(
            (problems[0].line, problems[0].field.as_str()),
            (Some(4), "")
        );
        assert!(
            problems[0].message.contains("not valid TOML"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn problems_name_file_line_and_field() {
        let problems = parse(&edit("required = 1", "required = 3")).unwrap_err();
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["t.toml:15: approval.required: required = 3 but only 2 approvers are listed; lower required or add approvers"]
        );
        let missing = Problem {
            file: "dir/x.toml".into(),
            line: None,
            field: "owner".into(),
            message: "missing".into(),
        };
        assert_eq!(missing.to_string(), "dir/x.toml: owner: missing");
    }

    #[test]
    fn reports_every_problem_of_a_file_in_line_order() {
        let text = edit("\"billing-admin\"", "\"Billing\"")
            .replace("\"4h\"", "\"4 hours\"")
            .replace("required = 1", "required = 0");
        let problems = parse(&text).unwrap_err();
        let found: Vec<(Option<usize>, &str)> = problems
            .iter()
            .map(|p| (p.line, p.field.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (Some(1), "id"),
                (Some(11), "request.max_duration"),
                (Some(15), "approval.required"),
            ]
        );
    }

    fn write(dir: &Path, name: &str, text: &str) {
        fs::write(dir.join(name), text).unwrap();
    }

    /// A directory whose runbooks use a `./grant.sh` that exists.
    fn runbook_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("grant.sh");
        fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    }

    fn with_local_script(text: &str) -> String {
        text.replace("./scripts/billing.sh", "./grant.sh")
    }

    #[test]
    fn load_dir_reads_toml_files_only_and_sorts_by_id() {
        let dir = runbook_dir();
        let valid = with_local_script(VALID);
        write(
            dir.path(),
            "a.toml",
            &valid.replace("billing-admin", "zeta"),
        );
        write(
            dir.path(),
            "b.toml",
            &valid.replace("billing-admin", "alpha"),
        );
        write(dir.path(), "README.md", "not a runbook");
        write(dir.path(), ".#a.toml", "not a runbook either");
        fs::create_dir(dir.path().join("old.toml")).unwrap();
        let catalog = load_dir(dir.path()).unwrap_or_else(|p| panic!("{}", listed(&p)));
        let ids: Vec<&str> = catalog.runbooks.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["alpha", "zeta"]);
        assert_eq!(
            catalog.get("zeta").unwrap().source,
            dir.path().join("a.toml")
        );
        assert!(catalog.get("billing-admin").is_none());
    }

    #[test]
    fn load_dir_reports_every_problem_in_every_file() {
        let dir = runbook_dir();
        let valid = with_local_script(VALID);
        write(dir.path(), "a.toml", &valid);
        write(
            dir.path(),
            "b.toml",
            &valid.replace("required = 1", "required = 0"),
        );
        write(
            dir.path(),
            "c.toml",
            &valid.replace("\"U0OWNER\"", "\"bob\""),
        );
        let problems = load_dir(dir.path()).unwrap_err();
        let found: Vec<(String, Option<usize>, &str)> = problems
            .iter()
            .map(|p| {
                let name = p.file.file_name().unwrap().to_string_lossy().into_owned();
                (name, p.line, p.field.as_str())
            })
            .collect();
        assert_eq!(
            found,
            [
                ("b.toml".into(), Some(1), "id"),
                ("b.toml".into(), Some(15), "approval.required"),
                ("c.toml".into(), Some(1), "id"),
                ("c.toml".into(), Some(5), "owner"),
            ]
        );
        assert!(
            problems[0].message.contains("already used by")
                && problems[0].message.contains("a.toml:1"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn load_dir_checks_that_relative_programs_exist_and_run() {
        let dir = runbook_dir();
        write(dir.path(), "a.toml", VALID);
        let problems = load_dir(dir.path()).unwrap_err();
        assert_eq!(problems.len(), 2, "{}", listed(&problems));
        assert_eq!(
            (problems[0].line, problems[0].field.as_str()),
            (Some(19), "grant.grant")
        );
        assert!(
            problems[0].message.contains("does not exist"),
            "{}",
            problems[0]
        );

        #[cfg(unix)]
        {
            let script = dir.path().join("grant.sh");
            fs::write(&script, "#!/bin/sh\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
            write(dir.path(), "a.toml", &with_local_script(VALID));
            let problems = load_dir(dir.path()).unwrap_err();
            assert!(
                problems[0].message.contains("run chmod +x"),
                "{}",
                listed(&problems)
            );
        }
    }

    #[test]
    fn load_dir_explains_a_missing_or_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let problems = load_dir(&missing).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].file, missing);
        assert!(
            problems[0]
                .message
                .contains("set ACCESSBOT_RUNBOOKS or --runbooks"),
            "{}",
            problems[0]
        );

        write(dir.path(), "README.md", "no runbooks here");
        let problems = load_dir(dir.path()).unwrap_err();
        assert_eq!(
            problems[0].message,
            format!(
                "no runbooks found in {}; add a runbook file (see runbooks/README.md)",
                dir.path().display()
            )
        );
    }

    #[test]
    fn the_shipped_runbooks_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
        let catalog = load_dir(&dir).unwrap_or_else(|p| panic!("{}", listed(&p)));
        let ids: Vec<&str> = catalog.runbooks.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "analytics-marketing",
                "billing-admin",
                "compliance-audit",
                "crm-support",
                "hr-onboarding",
                "idp-admin",
                "incident-break-glass",
                "payroll-view",
            ]
        );
        let break_glass = catalog.get("incident-break-glass").unwrap();
        assert!(break_glass.break_glass);
        assert!(break_glass.request.max_duration <= BREAK_GLASS_MAX_DURATION);
    }
}
