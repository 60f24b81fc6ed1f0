//! The playground's default runbooks, embedded in the binary so that
//! `accessbot playground` works from any directory: the shipped demo
//! `billing-admin` (with its demo script) and playground editions of
//! `payroll-view` (manager, then security review) and `incident-break-glass`,
//! whose grant program keeps who holds the access in a file instead of
//! calling a real system. The files are `playground/runbooks/` in the
//! repository (`billing-admin` is a link to the shipped one), which
//! `accessbot check` accepts.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Each file, by its path inside the runbook directory, and whether it is a program.
pub const FILES: &[(&str, &str, bool)] = &[
    (
        "billing-admin.toml",
        include_str!("../../playground/runbooks/billing-admin.toml"),
        false,
    ),
    (
        "payroll-view.toml",
        include_str!("../../playground/runbooks/payroll-view.toml"),
        false,
    ),
    (
        "incident-break-glass.toml",
        include_str!("../../playground/runbooks/incident-break-glass.toml"),
        false,
    ),
    (
        "scripts/billing.sh",
        include_str!("../../playground/runbooks/scripts/billing.sh"),
        true,
    ),
    (
        "scripts/target-system.sh",
        include_str!("../../playground/runbooks/scripts/target-system.sh"),
        true,
    ),
];

/// Writes the default runbooks into `dir`, replacing files of the same names.
pub fn write_default(dir: &Path) -> io::Result<()> {
    for (path, text, program) in FILES {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, text)?;
        if *program {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_runbooks_pass_the_check() {
        let dir = std::env::temp_dir().join(format!(
            "accessbot-playground-runbooks-{}",
            std::process::id()
        ));
        write_default(&dir).unwrap();
        let catalog = crate::runbook::load_dir(&dir).unwrap_or_else(|problems| {
            panic!("{problems:?}");
        });
        let mut ids: Vec<&str> = catalog.runbooks.iter().map(|r| r.id.as_str()).collect();
        ids.sort();
        assert_eq!(
            ids,
            ["billing-admin", "incident-break-glass", "payroll-view"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
