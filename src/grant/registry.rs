//! Every provider by name, twice: [`Registry`], the provider kinds the
//! runbook loader checks `[grant]` tables with, and [`Providers`], the
//! running providers the workflow hands a spec to. Both come from the one
//! list in [`Registry::builtin`], so a provider the loader accepts is one the
//! workflow can run, given the services it needs.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::{
    Action, CommandProvider, EntraIdProvider, GoogleWorkspaceProvider, GrantContext, GrantError,
    GrantProvider, GrantSpec, Leftovers, OktaProvider, PostgresProvider, Provider,
    SlackUsergroupProvider, WebhookProvider,
};
use crate::runbook::GrantTable;
use crate::slack::SlackClient;

/// Every provider this accessbot knows, in the order messages list them.
/// Adding a provider is one line here.
const BUILTIN: &[&dyn ProviderKind] = &[
    &Kind::<CommandProvider>::NEW,
    &Kind::<WebhookProvider>::NEW,
    &Kind::<SlackUsergroupProvider>::NEW,
    &Kind::<PostgresProvider>::NEW,
    &Kind::<OktaProvider>::NEW,
    &Kind::<GoogleWorkspaceProvider>::NEW,
    &Kind::<EntraIdProvider>::NEW,
];

/// A [`Provider`] without its spec type, so providers with different specs
/// fit in one list.
pub(crate) trait ProviderKind: Sync {
    fn name(&self) -> &'static str;
    fn keys(&self) -> &'static [&'static str];
    fn parse(&self, grant: &mut GrantTable<'_>) -> Option<GrantSpec>;
    fn start(&self, services: &Services) -> Option<Arc<dyn GrantProvider>>;
}

/// The [`ProviderKind`] of `P`.
struct Kind<P>(PhantomData<fn() -> P>);

impl<P> Kind<P> {
    const NEW: Self = Kind(PhantomData);
}

impl<P: Provider> ProviderKind for Kind<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn keys(&self) -> &'static [&'static str] {
        P::KEYS
    }

    fn parse(&self, grant: &mut GrantTable<'_>) -> Option<GrantSpec> {
        P::parse(grant).map(|spec| {
            let env = P::env_needed(&spec);
            let target = P::target(&spec);
            let needs_identity = P::needs_identity(&spec);
            GrantSpec::new(P::NAME, spec)
                .needing_env(env)
                .with_target(target, needs_identity)
        })
    }

    fn start(&self, services: &Services) -> Option<Arc<dyn GrantProvider>> {
        let provider: Arc<dyn GrantProvider> = Arc::new(P::start(services)?);
        Some(provider)
    }
}

/// The provider kinds runbooks may name, in the order messages list them.
#[derive(Clone)]
pub struct Registry {
    kinds: Vec<&'static dyn ProviderKind>,
}

impl Registry {
    /// Every provider built into accessbot.
    pub fn builtin() -> Self {
        Registry {
            kinds: BUILTIN.to_vec(),
        }
    }

    /// This registry and `P`, which replaces a provider of the same name.
    pub fn with<P: Provider>(mut self) -> Self {
        let kind: &'static dyn ProviderKind = &Kind::<P>::NEW;
        match self.kinds.iter_mut().find(|k| k.name() == kind.name()) {
            Some(known) => *known = kind,
            None => self.kinds.push(kind),
        }
        self
    }

    pub(crate) fn get(&self, name: &str) -> Option<&'static dyn ProviderKind> {
        self.kinds.iter().copied().find(|k| k.name() == name)
    }

    pub(crate) fn kinds(&self) -> impl Iterator<Item = &'static dyn ProviderKind> + '_ {
        self.kinds.iter().copied()
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.iter().map(|k| k.name())
    }

    /// Every key a `[grant]` table may have: `provider`, then each
    /// provider's keys in order, each once.
    pub fn grant_keys(&self) -> Vec<&'static str> {
        let mut keys = vec!["provider"];
        for key in self.kinds.iter().flat_map(|k| k.keys()) {
            if !keys.contains(key) {
                keys.push(key);
            }
        }
        keys
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// What running providers may need from the rest of the bot. A provider
/// whose service is missing is not started.
#[derive(Clone, Default)]
pub struct Services {
    /// For `slack_usergroup`.
    pub slack: Option<SlackClient>,
}

/// The running providers, by name.
#[derive(Clone, Default)]
pub struct Providers {
    by_name: BTreeMap<&'static str, Arc<dyn GrantProvider>>,
}

impl Providers {
    /// No providers at all; every `run` fails with [`GrantError::Unsupported`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in providers that need nothing but the runbook (`command`,
    /// `webhook`, `postgres` and the directory providers).
    pub fn with_builtin() -> Self {
        Self::start(&Registry::builtin(), &Services::default())
    }

    /// Every built-in provider, `slack_usergroup` too.
    pub fn with_slack(slack: SlackClient) -> Self {
        Self::start(&Registry::builtin(), &Services { slack: Some(slack) })
    }

    /// Starts every kind of `registry` that `services` has what it needs for.
    pub fn start(registry: &Registry, services: &Services) -> Self {
        let mut providers = Self::new();
        for kind in registry.kinds() {
            if let Some(provider) = kind.start(services) {
                providers.register(provider);
            }
        }
        providers
    }

    /// Adds a provider under its `name()`, replacing one of the same name.
    pub fn register(&mut self, provider: Arc<dyn GrantProvider>) {
        self.by_name.insert(provider.name(), provider);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn GrantProvider>> {
        self.by_name.get(name).cloned()
    }

    /// Registered names in order, for startup checks against the runbooks.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }

    /// Runs `action` with the provider the spec names.
    pub async fn run(
        &self,
        spec: &GrantSpec,
        action: Action,
        ctx: &GrantContext,
    ) -> Result<(), GrantError> {
        let provider =
            self.by_name
                .get(spec.provider_name())
                .ok_or_else(|| GrantError::Unsupported {
                    provider: spec.provider_name().to_string(),
                })?;
        provider.run(spec, action, ctx).await
    }

    /// Reads the target back with the provider the spec names; `None` when
    /// it cannot be read back (or the provider is not running).
    pub async fn verify(
        &self,
        spec: &GrantSpec,
        ctx: &GrantContext,
    ) -> Option<Result<super::Presence, GrantError>> {
        let provider = self.by_name.get(spec.provider_name())?;
        Some(provider.verify(spec, ctx)?.await)
    }

    /// Lists who holds the access the spec gives; `None` when its provider
    /// cannot list (or is not running).
    pub async fn members(&self, spec: &GrantSpec) -> Option<Result<Vec<String>, GrantError>> {
        let provider = self.by_name.get(spec.provider_name())?;
        Some(provider.members(spec)?.await)
    }

    /// How the person `ctx` describes appears in [`Providers::members`].
    pub fn member_name(&self, spec: &GrantSpec, ctx: &GrantContext) -> Option<String> {
        self.by_name
            .get(spec.provider_name())?
            .member_name(spec, ctx)
    }

    /// Kills the programs an earlier bot started for `request_ids` (and
    /// everything they started), waiting up to `wait` for them to be gone,
    /// so that resuming those runs cannot run them twice at once. Only
    /// `command` starts programs; the other providers leave nothing behind.
    /// `spare_live_runs`: see [`super::process::stop_leftover_runs`].
    pub fn stop_leftover_runs(
        &self,
        request_ids: &HashSet<&str>,
        wait: Duration,
        spare_live_runs: bool,
    ) -> Leftovers {
        super::process::stop_leftover_runs(request_ids, wait, spare_live_runs)
    }
}

impl fmt::Debug for Providers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn the_builtin_list_feeds_the_loader_and_the_running_providers() {
        let registry = Registry::builtin();
        assert_eq!(
            registry.names().collect::<Vec<_>>(),
            [
                "command",
                "webhook",
                "slack_usergroup",
                "postgres",
                "okta",
                "google_workspace",
                "entra_id"
            ]
        );
        assert_eq!(
            registry.grant_keys(),
            [
                "provider",
                "grant",
                "revoke",
                "timeout",
                "env",
                "url",
                "secret_env",
                "usergroup",
                "url_env",
                "role",
                "login",
                "end_sessions",
                "org_url",
                "token_env",
                "group_id",
                "group",
                "credentials_env",
                "admin_subject",
                "token_url",
                "directory_url",
                "tenant_id",
                "client_id",
                "client_secret_env",
                "login_url",
                "graph_url"
            ]
        );
        assert_eq!(
            Providers::with_builtin().names().collect::<Vec<_>>(),
            [
                "command",
                "entra_id",
                "google_workspace",
                "okta",
                "postgres",
                "webhook"
            ]
        );
        let slack = SlackClient::new("http://127.0.0.1:9", Secret::new("xoxb-test"));
        assert_eq!(
            Providers::with_slack(slack).names().collect::<Vec<_>>(),
            [
                "command",
                "entra_id",
                "google_workspace",
                "okta",
                "postgres",
                "slack_usergroup",
                "webhook"
            ]
        );
    }
}
