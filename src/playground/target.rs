//! What the target systems hold now: the playground's grant programs keep
//! who holds each access in `<state dir>/<name>.txt`, one Slack user ID a
//! line (`billing-admins.txt` from the demo `billing.sh`, the others from
//! `target-system.sh`). The page shows these files, so a grant and its
//! revoke are seen where they happen, not only in Slack.

use std::path::Path;

/// One target system's list.
#[derive(Debug, Clone, PartialEq)]
pub struct Holding {
    /// The file name without `.txt`, e.g. `billing-admins`.
    pub name: String,
    /// Slack user IDs, in the file's order.
    pub holders: Vec<String>,
}

/// Every `*.txt` list in `dir`, by name.
pub fn holdings(dir: &Path) -> Vec<Holding> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<Holding> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            let name = file.strip_suffix(".txt")?.to_string();
            let text = std::fs::read_to_string(entry.path()).ok()?;
            let holders = text
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_string)
                .collect();
            Some(Holding { name, holders })
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_only_txt_files_with_their_holders() {
        let dir = std::env::temp_dir().join(format!("accessbot-target-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("billing-admins.txt"), "U0A\n\nU0B\n").unwrap();
        std::fs::write(dir.join("billing-admins.txt.lock"), "").unwrap();
        std::fs::write(dir.join("billing-access.log"), "grant U0A\n").unwrap();
        std::fs::write(dir.join("payroll-viewers.txt"), "").unwrap();
        assert_eq!(
            holdings(&dir),
            vec![
                Holding {
                    name: "billing-admins".into(),
                    holders: vec!["U0A".into(), "U0B".into()]
                },
                Holding {
                    name: "payroll-viewers".into(),
                    holders: vec![]
                },
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
