//! [`CycleState`]: what one pod's cycle carries from extension point to
//! extension point (upstream framework/cycle_state.go).

use std::any::Any;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::fmt;

/// Per-pod scratch space shared by the extension points of one cycle:
/// PreFilter/PreScore write, Filter/Score read. Keys are the writing
/// plugin's own constants.
#[derive(Default)]
pub struct CycleState {
    data: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
    skip_filter_plugins: BTreeSet<&'static str>,
    skip_score_plugins: BTreeSet<&'static str>,
}

impl CycleState {
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        self.data.insert(key, Box::new(value));
    }

    pub fn read<T: Any>(&self, key: &'static str) -> Option<&T> {
        self.data.get(key).and_then(|v| v.downcast_ref())
    }

    /// What a PreFilter/PreScore step stored under `key` (the part `field`
    /// picks), or, when that step did not run (a caller using Filter or
    /// Score alone), the same value computed now.
    pub fn read_or_compute<'a, S: Any, T: Clone>(
        &'a self,
        key: &'static str,
        field: impl FnOnce(&'a S) -> &'a T,
        compute: impl FnOnce() -> T,
    ) -> Cow<'a, T> {
        match self.read::<S>(key) {
            Some(s) => Cow::Borrowed(field(s)),
            None => Cow::Owned(compute()),
        }
    }

    /// Marks a plugin whose PreFilter answered Skip: its Filter is not run.
    pub(crate) fn skip_filter(&mut self, plugin: &'static str) {
        self.skip_filter_plugins.insert(plugin);
    }

    /// Marks a plugin whose PreScore answered Skip: its Score is not run.
    pub(crate) fn skip_score(&mut self, plugin: &'static str) {
        self.skip_score_plugins.insert(plugin);
    }

    pub fn skips_filter(&self, plugin: &str) -> bool {
        self.skip_filter_plugins.contains(plugin)
    }

    pub fn skips_score(&self, plugin: &str) -> bool {
        self.skip_score_plugins.contains(plugin)
    }
}

impl fmt::Debug for CycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CycleState")
            .field("keys", &self.data.keys().collect::<BTreeSet<_>>())
            .field("skip_filter_plugins", &self.skip_filter_plugins)
            .field("skip_score_plugins", &self.skip_score_plugins)
            .finish()
    }
}
