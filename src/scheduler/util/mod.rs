//! Small value types the plugins and the cache share: resource
//! [`quantity`] parsing, a pod's [`resource`] requests, and [`labels`] with
//! their selectors.

pub mod labels;
pub mod quantity;
pub mod resource;
