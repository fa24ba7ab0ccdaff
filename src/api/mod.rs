//! Plain cores of the node's HTTP API (SPEC §5), free of actix-web so they are unit-tested
//! without a server: RFC 9457 problem details ([`problem`]) and the stream spec as the API
//! receives it, with its validation, resolution against node defaults and redacted view
//! ([`spec`]). The handlers ([`routes`]) only move bytes between these, the node's stream
//! registry and the HTTP layer; [`listen`] streams a stream's live audio as WAV; [`forward`]
//! answers for streams another node of the cluster runs.

pub mod forward;
pub mod listen;
pub mod metrics;
pub mod problem;
pub mod routes;
pub mod spec;
