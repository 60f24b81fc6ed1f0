//! What a runbook's `[grant]` table turns into: [`GrantSpec`], one value
//! that can hold any provider's own typed settings without the runbook model
//! naming them. Each provider file defines its spec type (`CommandSpec`,
//! `WebhookSpec`, …) and builds it when it checks the table; the registry
//! wraps it here and hands it back typed when the provider runs. Nothing else
//! looks inside. So a new
//! provider adds a type in its own file and no enum has to grow a variant.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// What a provider's settings must be to travel in a [`GrantSpec`]; every
/// plain data type is.
pub trait ProviderSpec: Any + fmt::Debug + Send + Sync {}

impl<T: Any + fmt::Debug + Send + Sync> ProviderSpec for T {}

/// A runbook's validated `[grant]` table: which provider runs it, and that
/// provider's settings. Cheap to clone; equal when the provider and every
/// setting are equal.
#[derive(Clone)]
pub struct GrantSpec {
    provider: &'static str,
    spec: Arc<dyn ProviderSpec>,
    /// Compares two specs of the concrete type `spec` was built from; kept
    /// here because `PartialEq` cannot be asked of a trait object.
    same: fn(&dyn Any, &dyn Any) -> bool,
    /// The environment variables the provider needs to run this spec, as
    /// the provider said when it checked the table (`Provider::env_needed`).
    env: Arc<[String]>,
    /// The provider's `target` key for this spec (`Provider::target`).
    target: Option<Arc<str>>,
    /// Whether the provider needs the person's identity in the target.
    needs_identity: bool,
}

impl GrantSpec {
    /// The settings `spec` for the provider runbooks call `provider`.
    pub fn new<S: ProviderSpec + PartialEq>(provider: &'static str, spec: S) -> Self {
        GrantSpec {
            provider,
            spec: Arc::new(spec),
            same: same_as::<S>,
            env: Arc::from(Vec::new()),
            target: None,
            needs_identity: false,
        }
    }

    /// This spec, giving the access `target` names (see `Provider::target`)
    /// and needing the person's identity in the target when `needs_identity`.
    pub fn with_target(mut self, target: Option<String>, needs_identity: bool) -> Self {
        self.target = target.map(Arc::from);
        self.needs_identity = needs_identity;
        self
    }

    /// The access in the target system this spec gives, when two runbooks
    /// can give the same one; `None`: only this runbook's requests overlap.
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    /// Whether running this spec needs the person's identity in the target.
    pub fn needs_identity(&self) -> bool {
        self.needs_identity
    }

    /// This spec, needing the environment variables `names` to run.
    pub fn needing_env(mut self, names: Vec<String>) -> Self {
        self.env = Arc::from(names);
        self
    }

    /// The environment variables the provider reads when it runs this spec
    /// (a program's secrets, a webhook's signing key); `accessbot check`
    /// and `serve` warn about those that are not set.
    pub fn env_needed(&self) -> &[String] {
        &self.env
    }

    /// The name runbooks give the provider, e.g. `command`.
    pub fn provider_name(&self) -> &'static str {
        self.provider
    }

    /// The provider's own settings, if this spec holds an `S`.
    pub fn get<S: ProviderSpec>(&self) -> Option<&S> {
        let any: &dyn Any = &*self.spec;
        any.downcast_ref()
    }
}

fn same_as<S: PartialEq + 'static>(a: &dyn Any, b: &dyn Any) -> bool {
    match (a.downcast_ref::<S>(), b.downcast_ref::<S>()) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

impl PartialEq for GrantSpec {
    fn eq(&self, other: &Self) -> bool {
        self.provider == other.provider && (self.same)(&*self.spec, &*other.spec)
    }
}

impl fmt::Debug for GrantSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.spec.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct One(u8);
    #[derive(Debug, PartialEq)]
    struct Other(u8);

    #[test]
    fn specs_are_equal_only_with_the_same_type_and_settings() {
        let one = GrantSpec::new("one", One(1));
        assert_eq!(one, one.clone());
        assert_eq!(one, GrantSpec::new("one", One(1)));
        assert_ne!(one, GrantSpec::new("one", One(2)));
        assert_ne!(one, GrantSpec::new("other", Other(1)));
        assert_ne!(one, GrantSpec::new("two", One(1)));
        assert_eq!(one.provider_name(), "one");
        assert_eq!(one.get::<One>(), Some(&One(1)));
        assert_eq!(one.get::<Other>(), None);
        assert_eq!(format!("{one:?}"), "One(1)");
    }
}
