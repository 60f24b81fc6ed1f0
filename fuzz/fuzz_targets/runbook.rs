//! The runbook loader: any text gives a runbook that keeps the model's
//! promises, or problems that each say what is wrong, on a line of the file,
//! in line order. Seed the corpus with the shipped runbooks (see README.md).

#![no_main]

use std::path::Path;
use std::time::Duration;

use accessbot::duration::MAX_DURATION;
use accessbot::runbook::{parse_runbook, Approver, Principal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let file = Path::new("runbooks/fuzzed.toml");
    match parse_runbook(&text, file) {
        Ok(r) => {
            let ok = |d: Duration| d >= Duration::from_secs(1) && d <= MAX_DURATION;
            assert!(r.id.starts_with(|c: char| c.is_ascii_lowercase()) && r.id.len() <= 64);
            assert!(!r.title.is_empty() && r.title.chars().count() <= 75);
            let q = &r.request;
            assert!(!q.allowed.is_empty());
            assert!(q.allowed == [Principal::Anyone] || !q.allowed.contains(&Principal::Anyone));
            assert!(ok(q.default_duration) && ok(q.max_duration));
            assert!(q.default_duration <= q.max_duration);
            assert!(q.max_total.is_none_or(|t| ok(t) && t >= q.max_duration));
            if r.break_glass {
                assert!(q.max_duration <= Duration::from_secs(4 * 3600));
            }
            let a = &r.approval;
            assert!(!a.stages.is_empty());
            for stage in &a.stages {
                assert!(!stage.approvers.is_empty() && stage.required >= 1);
                if !stage
                    .approvers
                    .iter()
                    .any(|a| matches!(a, Approver::Group(_)))
                {
                    assert!(stage.required as usize <= stage.approvers.len());
                }
            }
            assert!(ok(a.approval_timeout));
            assert!(a
                .remind_after
                .is_none_or(|d| ok(d) && d < a.approval_timeout));
            assert!(a
                .escalate_after
                .is_none_or(|d| ok(d) && d < a.approval_timeout));
            assert_eq!(a.escalate_after.is_some(), !a.fallback_approvers.is_empty());
            for rule in &a.auto_approve {
                assert!(!rule.users.is_empty() || !rule.groups.is_empty());
                assert!(ok(rule.max_duration) && rule.max_duration <= q.max_duration);
            }
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            let lines = text.split('\n').count();
            for p in &problems {
                assert!(!p.message.trim().is_empty(), "{p:?}");
                assert!(!p.message.chars().any(char::is_control), "{p:?}");
                assert!(p.message.chars().count() <= 600, "{p:?}");
                assert_eq!(p.file, file);
                if let Some(line) = p.line {
                    assert!((1..=lines).contains(&line), "line {line} of {lines}: {p}");
                }
            }
            let order: Vec<usize> = problems.iter().map(|p| p.line.unwrap_or(0)).collect();
            assert!(order.windows(2).all(|w| w[0] <= w[1]), "{order:?}");
        }
    }
});
