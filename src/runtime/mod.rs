//! Runtime plumbing shared by the controller and the scheduler.

pub mod events;
