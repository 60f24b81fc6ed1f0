//! The catalog: finding the runbook files of a directory, checking each one
//! and collecting the valid runbooks into a [`Catalog`], or every problem of
//! every file into one list of [`Problem`]s, each with file, line and field.
//!
//! Runbooks are written by operators, often not engineers, and a broken one
//! keeps the bot from starting. So nothing stops at the first problem: each
//! file is walked whole (see `fields.rs` for how) and a duplicate id is
//! reported in the same run as everything else. The checks of each section
//! live in their own file; this one only reads files and puts results
//! together.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use toml_edit::ImDocument;

use super::fields::{Checker, Located, Section};
use super::model::Runbook;
use crate::grant::Registry;

/// Every valid runbook of a directory, sorted by id.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub runbooks: Vec<Runbook>,
}

impl Catalog {
    /// Loads every `*.toml` file directly in `dir` (sorted by file name;
    /// other files and dot-files are ignored), checking `[grant]` tables with
    /// the providers of `registry`, and returns all runbooks sorted by id, or
    /// every problem found in every file.
    pub fn load(dir: &Path, registry: &Registry) -> Result<Catalog, Vec<Problem>> {
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
            let checked = check_file(&path, registry);
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

    pub fn get(&self, id: &str) -> Option<&Runbook> {
        self.runbooks.iter().find(|r| r.id == id)
    }

    /// The runbooks that load but cannot grant yet, because their provider
    /// needs environment variables that `is_set` says are missing.
    pub fn not_ready(&self, is_set: impl Fn(&str) -> bool) -> Vec<NotReady> {
        self.runbooks
            .iter()
            .filter_map(|r| {
                let missing: Vec<String> = r
                    .grant
                    .env_needed()
                    .iter()
                    .filter(|name| !is_set(name))
                    .cloned()
                    .collect();
                (!missing.is_empty()).then(|| NotReady {
                    file: r.source.clone(),
                    runbook: r.id.clone(),
                    provider: r.grant.provider_name(),
                    missing,
                })
            })
            .collect()
    }
}

/// A runbook that cannot grant yet: the environment variables its provider
/// needs are not set where accessbot runs. A warning, not a problem: the
/// runbook is valid, the host is not ready for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotReady {
    pub file: PathBuf,
    pub runbook: String,
    pub provider: &'static str,
    /// The variables that are not set (or empty), in the runbook's order.
    pub missing: Vec<String>,
}

impl NotReady {
    /// Whether the variable `name` is set, non-empty, in this process.
    pub fn is_set_here(name: &str) -> bool {
        std::env::var_os(name).is_some_and(|v| !v.is_empty())
    }
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (noun, them) = if self.missing.len() == 1 {
            ("variable", "it")
        } else {
            ("variables", "them")
        };
        write!(
            f,
            "{}: grant: runbook `{}` cannot grant yet: its `{}` provider needs the environment {noun} {}, not set here; set {them} where accessbot runs (its service file or environment) and restart it",
            self.file.display(),
            self.runbook,
            self.provider,
            self.missing.join(", "),
        )
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

/// [`Catalog::load`] with the providers built into accessbot.
pub fn load_dir(dir: &Path) -> Result<Catalog, Vec<Problem>> {
    Catalog::load(dir, &Registry::builtin())
}

/// Loads one runbook file. Besides the checks of [`parse_runbook`], this
/// checks that programs given by a relative path exist next to the file and
/// are executable.
pub fn load_file(path: &Path) -> Result<Runbook, Vec<Problem>> {
    check_file(path, &Registry::builtin()).result
}

/// Checks and converts the text of one runbook; `file` is only used in
/// problems and as the runbook's `source`. Touches no files.
pub fn parse_runbook(text: &str, file: &Path) -> Result<Runbook, Vec<Problem>> {
    parse_runbook_with(text, file, &Registry::builtin())
}

/// [`parse_runbook`] with the providers of `registry`.
pub fn parse_runbook_with(
    text: &str,
    file: &Path,
    registry: &Registry,
) -> Result<Runbook, Vec<Problem>> {
    check_source(text, file, None, registry).result
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

fn check_file(path: &Path, registry: &Registry) -> Checked {
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
    check_source(&text, path, Some(dir), registry)
}

/// `program_dir` is where relative program paths are looked up; `None` skips
/// that check.
fn check_source(
    text: &str,
    file: &Path,
    program_dir: Option<&Path>,
    registry: &Registry,
) -> Checked {
    let mut checker = Checker::new(text, file, program_dir, registry);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::fixture::{assert_first, edit, listed, parse, VALID};
    use crate::runbook::request::BREAK_GLASS_MAX_DURATION;

    #[test]
    fn reports_syntax_errors_with_their_line() {
        let problems = parse(&edit(
            "system = \"Billing portal\"",
            "system = \"Billing portal",
        ))
        .unwrap_err();
        assert_eq!(problems.len(), 1, "{}", listed(&problems));
        assert_first(&problems, 4, "", "not valid TOML");
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
            .replace("\"4h\"", "\"4 parsecs\"")
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
        let tmp = runbook_dir();
        let dir = tmp.path();
        let valid = with_local_script(VALID);
        write(dir, "a.toml", &valid.replace("billing-admin", "zeta"));
        write(dir, "b.toml", &valid.replace("billing-admin", "alpha"));
        write(dir, "README.md", "not a runbook");
        write(dir, ".#a.toml", "not a runbook either");
        fs::create_dir(dir.join("old.toml")).unwrap();
        let catalog = load_dir(dir).unwrap_or_else(|p| panic!("{}", listed(&p)));
        let ids: Vec<&str> = catalog.runbooks.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["alpha", "zeta"]);
        assert_eq!(catalog.get("zeta").unwrap().source, dir.join("a.toml"));
        assert!(catalog.get("billing-admin").is_none());
    }

    #[test]
    fn load_dir_reports_every_problem_in_every_file() {
        let tmp = runbook_dir();
        let dir = tmp.path();
        let valid = with_local_script(VALID);
        write(dir, "a.toml", &valid);
        write(
            dir,
            "b.toml",
            &valid.replace("required = 1", "required = 0"),
        );
        write(dir, "c.toml", &valid.replace("\"U0OWNER\"", "\"bob\""));
        let problems = load_dir(dir).unwrap_err();
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
        assert_first(&problems, 19, "grant.grant", "does not exist");

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
                "billing-portal-admin",
                "compliance-audit",
                "crm-support",
                "finance-reporting",
                "hr-onboarding",
                "hr-system-admin",
                "idp-admin",
                "incident-break-glass",
                "payroll-exports",
                "payroll-view",
            ]
        );
        let break_glass = catalog.get("incident-break-glass").unwrap();
        assert!(break_glass.break_glass);
        assert!(break_glass.request.max_duration <= BREAK_GLASS_MAX_DURATION);
    }
}
