//! The `[grant]` section: `provider` picks a provider from the registry
//! (`crate::grant::Registry`), and that provider checks the rest of the table
//! in its own file under `src/grant/`. This file knows only what every
//! provider shares: `provider` must name a known one, keys no provider uses
//! are unknown, and a key of another provider is refused with a word on whose
//! it is. It names no provider, so adding one changes nothing here.

use super::fields::{edit_distance, shorten, Checker, GrantTable, Section};
use crate::grant::GrantSpec;

impl Checker {
    pub(super) fn grant(&mut self, s: &Section<'_>) -> Option<GrantSpec> {
        let keys = self.grant_keys.clone();
        self.unknown_fields(s, &keys);
        let names: Vec<&'static str> = self.providers.names().collect();
        let found = self.string(s, "provider");
        let provider = self.require(
            s,
            "provider",
            found,
            &format!(
                "add provider = {} (see runbooks/README.md)",
                one_of(names.iter().map(|name| format!("\"{name}\"")))
            ),
        )?;
        let Some(kind) = self.providers.get(&provider.value) else {
            let hint = names
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
                    names.join(", ")
                ),
            );
            return None;
        };
        let mut ok = true;
        for key in &keys {
            if *key == "provider" || kind.keys().contains(key) || !s.has(key) {
                continue;
            }
            let users: Vec<&str> = self
                .providers
                .kinds()
                .filter(|k| k.keys().contains(key))
                .map(|k| k.name())
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
        let grant = kind.parse(&mut GrantTable::new(self, s));
        if ok {
            grant
        } else {
            None
        }
    }
}

/// Names for a sentence: `a`, `a or b`, `a, b or c`.
pub(super) fn one_of(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let names: Vec<String> = names.into_iter().map(|n| n.as_ref().to_string()).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::grant::{Action, GrantContext, GrantFuture, Provider, Registry, Services};
    use crate::runbook::fixture::{check, edit, listed, VALID};
    use crate::runbook::{parse_runbook_with, Problem};

    #[test]
    fn reports_unknown_providers_and_keys_of_other_providers() {
        check(
            &edit("\"command\"", "\"comand\""),
            "grant.provider",
            "unknown provider `comand` (did you mean `command`?); use one of command, webhook, slack_usergroup, postgres, okta, google_workspace, entra_id",
        );
        check(
            &edit(
                "provider = \"command\"",
                "provider = \"command\"\nurl = \"https://x.example.com\"",
            ),
            "grant.url",
            "the command provider does not use url (only webhook does)",
        );
    }

    #[test]
    fn lists_names_for_a_sentence() {
        assert_eq!(one_of(Vec::<&str>::new()), "");
        assert_eq!(one_of(["a"]), "a");
        assert_eq!(one_of(["a", "b"]), "a or b");
        assert_eq!(one_of(["a", "b", "c"]), "a, b or c");
    }

    /// A fourth provider, known only to the registry the test builds.
    struct Ticket;

    #[derive(Debug, PartialEq)]
    struct TicketSpec {
        queue: String,
    }

    impl Provider for Ticket {
        const NAME: &'static str = "ticket";
        const KEYS: &'static [&'static str] = &["queue", "timeout"];
        type Spec = TicketSpec;

        fn parse(grant: &mut GrantTable<'_>) -> Option<TicketSpec> {
            let found = grant.string("queue");
            let queue = grant.require("queue", found, r#"add queue = "ACCESS""#)?;
            Some(TicketSpec { queue: queue.value })
        }

        fn start(_services: &Services) -> Option<Self> {
            Some(Ticket)
        }

        fn apply<'a>(
            &'a self,
            _spec: &'a TicketSpec,
            _action: Action,
            _ctx: &'a GrantContext,
        ) -> GrantFuture<'a> {
            Box::pin(async { Ok(()) })
        }
    }

    fn parse_with_ticket(grant: &str) -> Result<crate::runbook::Runbook, Vec<Problem>> {
        let text = format!(
            "{}[grant]\n{grant}\n",
            &VALID[..VALID.find("[grant]").unwrap()]
        );
        parse_runbook_with(
            &text,
            Path::new("t.toml"),
            &Registry::builtin().with::<Ticket>(),
        )
    }

    #[test]
    fn a_provider_added_to_the_registry_checks_its_own_keys() {
        let runbook = parse_with_ticket("provider = \"ticket\"\nqueue = \"ACCESS\"")
            .unwrap_or_else(|p| panic!("{}", listed(&p)));
        assert_eq!(runbook.grant.provider_name(), "ticket");
        assert_eq!(
            runbook.grant.get::<TicketSpec>(),
            Some(&TicketSpec {
                queue: "ACCESS".into()
            })
        );

        let shown = |problems: Vec<Problem>| -> Vec<String> {
            problems.iter().map(ToString::to_string).collect()
        };
        assert_eq!(
            shown(parse_with_ticket("provider = \"ticket\"").unwrap_err()),
            ["t.toml:17: grant.queue: missing; add queue = \"ACCESS\""]
        );
        assert_eq!(
            shown(
                parse_with_ticket("provider = \"ticket\"\nqueue = \"A\"\nusergroup = \"S0X\"")
                    .unwrap_err()
            ),
            ["t.toml:20: grant.usergroup: the ticket provider does not use usergroup (only slack_usergroup does); remove it"]
        );
        // The other providers now refuse its keys, and typos get its names.
        let problems = parse_with_ticket(
            "provider = \"slack_usergroup\"\nusergroup = \"S0X1\"\nqueue = \"A\"",
        )
        .unwrap_err();
        assert_eq!(
            shown(problems),
            ["t.toml:20: grant.queue: the slack_usergroup provider does not use queue (only ticket does); remove it"]
        );
        let problems = parse_with_ticket("provider = \"tiket\"").unwrap_err();
        assert_eq!(
            shown(problems),
            ["t.toml:18: grant.provider: unknown provider `tiket` (did you mean `ticket`?); use one of command, webhook, slack_usergroup, postgres, okta, google_workspace, entra_id, ticket"]
        );
    }

    #[tokio::test]
    async fn a_provider_added_to_the_registry_runs_through_providers() {
        let registry = Registry::builtin().with::<Ticket>();
        let runbook = parse_with_ticket("provider = \"ticket\"\nqueue = \"ACCESS\"")
            .unwrap_or_else(|p| panic!("{}", listed(&p)));
        let providers = crate::grant::Providers::start(&registry, &Services::default());
        assert_eq!(
            providers.names().collect::<Vec<_>>(),
            [
                "command",
                "entra_id",
                "google_workspace",
                "okta",
                "postgres",
                "ticket",
                "webhook"
            ]
        );
        let ctx = GrantContext {
            request_id: "ar-1".into(),
            runbook_id: runbook.id.clone(),
            user_id: "U0ALICE".into(),
            user_email: None,
            identity: None,
            expires_at: chrono::Utc::now(),
            reason: "test".into(),
            runbook_dir: ".".into(),
            inputs: vec![],
        };
        providers
            .run(&runbook.grant, Action::Grant, &ctx)
            .await
            .expect("the ticket provider runs its own spec");
        let error = crate::grant::Providers::with_builtin()
            .run(&runbook.grant, Action::Grant, &ctx)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "grant provider `ticket` is not available in this accessbot"
        );
    }

    #[test]
    fn a_provider_missing_from_the_registry_is_unknown() {
        let problems = parse_with_ticket("provider = \"ticket\"\nqueue = \"A\"");
        assert!(problems.is_ok());
        let text = format!(
            "{}[grant]\nprovider = \"ticket\"\nqueue = \"A\"\n",
            &VALID[..VALID.find("[grant]").unwrap()]
        );
        check(
            &text,
            "grant.provider",
            "unknown provider `ticket`; use one of command, webhook, slack_usergroup, postgres, okta, google_workspace, entra_id",
        );
        check(&text, "grant.queue", "unknown field");
    }
}
