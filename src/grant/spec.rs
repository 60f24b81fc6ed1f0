//! What a runbook's `[grant]` table turns into: [`GrantSpec`], one value
//! that can hold any provider's own typed settings without the runbook model
//! naming them. Each provider file defines its spec type (`CommandSpec`,
//! `WebhookSpec`, …), builds it when it checks the table, and reads it back
//! with [`GrantSpec::get`] when it runs; nothing else looks inside. So a new
//! provider adds a type in its own file and no enum has to grow a variant.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// The settings one provider reads from a runbook's `[grant]` table.
pub trait ProviderSpec: Any + fmt::Debug + Send + Sync {
    /// The provider that runs this spec, as runbooks name it.
    fn provider(&self) -> &'static str;
}

/// A runbook's validated `[grant]` table: which provider runs it, and that
/// provider's settings. Cheap to clone; equal when the provider and every
/// setting are equal.
#[derive(Clone)]
pub struct GrantSpec {
    spec: Arc<dyn ProviderSpec>,
    /// Compares two specs of the concrete type `spec` was built from; kept
    /// here because `PartialEq` cannot be asked of a trait object.
    same: fn(&dyn Any, &dyn Any) -> bool,
}

impl GrantSpec {
    pub fn new<S: ProviderSpec + PartialEq>(spec: S) -> Self {
        GrantSpec {
            spec: Arc::new(spec),
            same: same_as::<S>,
        }
    }

    /// The name runbooks give the provider, e.g. `command`.
    pub fn provider_name(&self) -> &'static str {
        self.spec.provider()
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
        (self.same)(&*self.spec, &*other.spec)
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

    impl ProviderSpec for One {
        fn provider(&self) -> &'static str {
            "one"
        }
    }

    impl ProviderSpec for Other {
        fn provider(&self) -> &'static str {
            "other"
        }
    }

    #[test]
    fn specs_are_equal_only_with_the_same_type_and_settings() {
        let one = GrantSpec::new(One(1));
        assert_eq!(one, one.clone());
        assert_eq!(one, GrantSpec::new(One(1)));
        assert_ne!(one, GrantSpec::new(One(2)));
        assert_ne!(one, GrantSpec::new(Other(1)));
        assert_eq!(one.provider_name(), "one");
        assert_eq!(one.get::<One>(), Some(&One(1)));
        assert_eq!(one.get::<Other>(), None);
        assert_eq!(format!("{one:?}"), "One(1)");
    }
}
