//! `accessbot reconcile` (written below).
