//! Cluster coordination (SPEC §6): which streams exist and which node runs each.
//!
//! - [`coordinator`]: the `Coordinator` trait the node's registry talks to.
//! - [`fence`]: `FenceClock`, when to hold delivery (self-fencing) and when to claim orphans.
//! - [`handover`]: when a failing stream goes to another node, and the cooldowns after.
//! - [`claim`]: `plan_claims`, which unowned streams a node takes (least-loaded wins).
//! - [`lease`]: `LeaseTable`, the lease/epoch rules as a plain state machine.
//! - [`jobs`]: jobs submitted through Redis — parsing, validation (the API's), results.
//! - [`embedded`]: `EmbeddedCoordinator`, the in-memory single-node implementation.
//! - [`redis`]: `RedisCoordinator`, the cluster implementation (keys, Lua scripts).

pub mod claim;
pub mod coordinator;
pub mod embedded;
pub mod fence;
pub mod handover;
pub mod jobs;
pub mod lease;
pub mod redis;

pub use coordinator::{CoordError, Coordinator, NodeInfo, Put};
pub use embedded::EmbeddedCoordinator;
pub use lease::Lease;
