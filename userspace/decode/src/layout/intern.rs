//! Field names as `&'static str`, so that a decode error can name its field without
//! allocating or touching a reference count on the packet path.
//!
//! Each distinct name is leaked once for the life of the process: layouts are compiled at
//! start (the daemon does not reload them), names are at most 64 characters, and a name
//! compiled again (another stream, another worker's factory, a test) reuses its copy, so
//! the memory is bounded by the distinct names ever configured.

use std::{
    collections::HashSet,
    sync::{Mutex, OnceLock},
};

static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();

/// The process-wide copy of `name`.
pub(crate) fn intern(name: &str) -> &'static str {
    let names = NAMES.get_or_init(Mutex::default);
    // A poisoned lock only means another thread panicked while inserting: the set is
    // still a valid set of leaked names.
    let mut names = names
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(&interned) = names.get(name) {
        return interned;
    }
    let interned: &'static str = Box::leak(name.into());
    names.insert(interned);
    interned
}

#[cfg(test)]
mod tests {
    use super::intern;

    #[test]
    fn a_name_is_leaked_once() {
        let a = intern("interned_field");
        let b = intern(&String::from("interned_field"));
        assert_eq!(a, "interned_field");
        assert!(std::ptr::eq(a, b));
    }
}
