//! Tasklane: a typed async client for the Tasklane task-manager API, and its wire types.
#![deny(missing_docs)]

pub mod types;
