//! Grant providers: the one trait every way of granting and revoking access
//! implements, the context a provider is given, the errors it can report
//! (`error.rs`), the opaque spec a runbook's `[grant]` table becomes
//! (`spec.rs`), and the registry that knows every provider by the name a
//! runbook's `grant.provider` uses (`registry.rs`).
//!
//! A provider lives in one file: `command` runs a program, `webhook` POSTs
//! signed JSON, `slack_usergroup` changes a Slack user group's members,
//! `postgres` grants a database role to the person's login, `okta`,
//! `google_workspace` and `entra_id` change a directory group's members
//! (what the three share is in `directory`). Each
//! implements [`Provider`]: its `[grant]` keys and their checks, its spec
//! type, its start and its run; its errors are [`GrantError`] variants or,
//! for a new provider, its own [`ProviderError`] type. Adding a provider is
//! that file plus one line in the registry's `BUILTIN` list; the runbook
//! loader and the workflow only ever talk to [`Registry`] and [`Providers`].

mod command;
mod directory;
mod entra_id;
mod error;
mod google_workspace;
mod okta;
mod postgres;
mod process;
mod registry;
mod slack_usergroup;
mod spec;
mod webhook;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::runbook::GrantTable;

pub use command::{CommandProvider, CommandSpec};
pub use directory::DirectoryError;
pub use entra_id::{EntraIdProvider, EntraIdSpec};
pub(crate) use error::printable;
pub use error::{ExitReason, GrantError, ProviderError, EXIT_WILL_NOT_SUCCEED};
pub use google_workspace::{GoogleWorkspaceProvider, GoogleWorkspaceSpec};
pub use okta::{OktaProvider, OktaSpec};
pub use postgres::{LoginFrom, PostgresProvider, PostgresSpec};
pub use process::Leftovers;
pub use registry::{Providers, Registry, Services};
pub use slack_usergroup::{SlackUsergroupProvider, SlackUsergroupSpec};
pub use spec::{GrantSpec, ProviderSpec};

pub use webhook::{sign_webhook, WebhookProvider, WebhookSpec};

/// How long a provider run may take when the runbook's `timeout` does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a provider is asked to give access or take it away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Grant,
    Revoke,
}

impl Action {
    /// The lowercase name scripts and webhooks see: `grant` or `revoke`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Grant => "grant",
            Action::Revoke => "revoke",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a provider may need to know about the request it acts on.
#[derive(Debug, Clone)]
pub struct GrantContext {
    pub request_id: String,
    pub runbook_id: String,
    /// Slack user ID of the person who gets (or loses) access.
    pub user_id: String,
    /// From the Slack profile; `None` when Slack did not share it.
    pub user_email: Option<String>,
    /// Who the person is in the target system: the config's `[identities]`
    /// entry for `user_id` when there is one, else `user_email`. Providers
    /// that act on a directory account (Okta, Google, Entra ID, PostgreSQL)
    /// use this, never `user_email` directly.
    pub identity: Option<String>,
    /// When the grant ends; on revoke, when it was due to end.
    pub expires_at: DateTime<Utc>,
    pub reason: String,
    /// The directory holding the runbook file; relative command paths
    /// resolve against it and commands run in it.
    pub runbook_dir: PathBuf,
    /// The runbook's `[[inputs]]` as the requester gave them: `(id, value)`,
    /// checked against their definitions, in the runbook's order.
    pub inputs: Vec<(String, String)>,
}

impl GrantContext {
    /// `expires_at` as scripts and webhooks see it: RFC 3339, whole seconds, `Z`.
    pub fn expires_at_rfc3339(&self) -> String {
        self.expires_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    }
}

/// The future every provider returns: boxed so the trait stays object safe.
pub type GrantFuture<'a> = Pin<Box<dyn Future<Output = Result<(), GrantError>> + Send + 'a>>;

/// What reading the target back found about the person's access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The access is there (a member of the group, the role held).
    Present,
    /// The access is gone, or was never there.
    Absent,
}

/// The future [`Provider::verify`] returns.
pub type VerifyFuture<'a> = Pin<Box<dyn Future<Output = Result<Presence, GrantError>> + Send + 'a>>;

/// The future [`Provider::members`] returns: identities in the target.
pub type MembersFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<String>, GrantError>> + Send + 'a>>;

/// One way of granting and revoking access, implemented once, in its own
/// file: the name runbooks give it, the `[grant]` keys it owns and how they
/// are checked, its typed settings, how it is started and how it runs. The
/// registry turns it into what the loader and the workflow use, so neither
/// names a provider.
pub trait Provider: Sized + Send + Sync + 'static {
    /// The `grant.provider` value that picks this provider.
    const NAME: &'static str;

    /// The `[grant]` keys it reads, besides `provider`. The loader refuses
    /// any other provider's key, and unknown keys, before calling [`parse`].
    ///
    /// [`parse`]: Provider::parse
    const KEYS: &'static [&'static str];

    /// Its settings, as `parse` builds them from the `[grant]` table.
    type Spec: ProviderSpec + PartialEq;

    /// Checks the `[grant]` table. Every problem is reported through `grant`
    /// (with its line and a fix); `None` when there was one.
    fn parse(grant: &mut GrantTable<'_>) -> Option<Self::Spec>;

    /// The environment variables it reads when it runs `spec` (secrets,
    /// usually). A runbook whose variables are not set loads, but cannot
    /// grant yet: `accessbot check` and `serve` name it. None by default.
    fn env_needed(spec: &Self::Spec) -> Vec<String> {
        let _ = spec;
        Vec::new()
    }

    /// The access in the target system that `spec` gives, as a key equal
    /// for two runbooks that give the same access (`okta:{org}/{group}`):
    /// overlapping grants are counted by it, so the first of two to end does
    /// not take away what the other still covers. `None` (the default):
    /// only requests of the same runbook overlap.
    fn target(spec: &Self::Spec) -> Option<String> {
        let _ = spec;
        None
    }

    /// Whether running `spec` needs [`GrantContext::identity`]. A person
    /// with neither a Slack email nor an `[identities]` entry is then refused
    /// when they ask, not after approval. `false` by default.
    fn needs_identity(spec: &Self::Spec) -> bool {
        let _ = spec;
        false
    }

    /// Reads the target back: is the person's access there? `None` (the
    /// default) for targets that cannot be read back (a program, a webhook).
    /// After a revoke the workflow calls this and keeps revoking while the
    /// access is still [`Presence::Present`].
    fn verify<'a>(
        &'a self,
        spec: &'a Self::Spec,
        ctx: &'a GrantContext,
    ) -> Option<VerifyFuture<'a>> {
        let _ = (spec, ctx);
        None
    }

    /// How the person `ctx` describes appears in [`members`]: by default
    /// [`GrantContext::identity`]. `accessbot reconcile` compares the two.
    ///
    /// [`members`]: Provider::members
    fn member_name(spec: &Self::Spec, ctx: &GrantContext) -> Option<String> {
        let _ = spec;
        ctx.identity.clone()
    }

    /// Everyone who holds the access `spec` gives (a group's members), by
    /// their identity in the target, for `accessbot reconcile` to find
    /// members accessbot never granted. `None` (the default) when the target
    /// cannot list them.
    fn members<'a>(&'a self, spec: &'a Self::Spec) -> Option<MembersFuture<'a>> {
        let _ = spec;
        None
    }

    /// The running provider, or `None` when `services` lacks something it
    /// needs (then runbooks using it fail with [`GrantError::Unsupported`]).
    fn start(services: &Services) -> Option<Self>;

    /// Grants or revokes; `Ok` only when the target system confirmed it.
    fn apply<'a>(
        &'a self,
        spec: &'a Self::Spec,
        action: Action,
        ctx: &'a GrantContext,
    ) -> GrantFuture<'a>;
}

/// A running provider as [`Providers`] holds it, whatever its spec type;
/// every [`Provider`] is one.
pub trait GrantProvider: Send + Sync {
    /// The name runbooks use, equal to [`GrantSpec::provider_name`].
    fn name(&self) -> &'static str;

    /// Grants or revokes; `Ok` only when the target system confirmed it. A
    /// spec of another provider is refused with [`GrantError::Misconfigured`].
    fn run<'a>(
        &'a self,
        spec: &'a GrantSpec,
        action: Action,
        ctx: &'a GrantContext,
    ) -> GrantFuture<'a>;

    /// Reads the target back; `None` when this provider cannot.
    fn verify<'a>(&'a self, spec: &'a GrantSpec, ctx: &'a GrantContext)
        -> Option<VerifyFuture<'a>>;

    /// Lists who holds the access; `None` when this provider cannot.
    fn members<'a>(&'a self, spec: &'a GrantSpec) -> Option<MembersFuture<'a>>;

    /// How the person `ctx` describes appears in `members`.
    fn member_name(&self, spec: &GrantSpec, ctx: &GrantContext) -> Option<String>;
}

impl<P: Provider> GrantProvider for P {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn run<'a>(
        &'a self,
        spec: &'a GrantSpec,
        action: Action,
        ctx: &'a GrantContext,
    ) -> GrantFuture<'a> {
        match spec.get::<P::Spec>() {
            Some(own) => self.apply(own, action, ctx),
            None => Box::pin(std::future::ready(Err(GrantError::wrong_provider(
                P::NAME,
                spec,
            )))),
        }
    }

    fn verify<'a>(
        &'a self,
        spec: &'a GrantSpec,
        ctx: &'a GrantContext,
    ) -> Option<VerifyFuture<'a>> {
        match spec.get::<P::Spec>() {
            Some(own) => Provider::verify(self, own, ctx),
            None => Some(Box::pin(std::future::ready(Err(
                GrantError::wrong_provider(P::NAME, spec),
            )))),
        }
    }

    fn members<'a>(&'a self, spec: &'a GrantSpec) -> Option<MembersFuture<'a>> {
        match spec.get::<P::Spec>() {
            Some(own) => Provider::members(self, own),
            None => Some(Box::pin(std::future::ready(Err(
                GrantError::wrong_provider(P::NAME, spec),
            )))),
        }
    }

    fn member_name(&self, spec: &GrantSpec, ctx: &GrantContext) -> Option<String> {
        P::member_name(spec.get::<P::Spec>()?, ctx)
    }
}
