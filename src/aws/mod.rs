//! Everything that talks to AWS about talking to AWS: the one configuration
//! factory and its clients, the credential chain, identity pinning, error
//! classes, and pacing.
//!
//! The break-glass credential is chosen explicitly: a named profile,
//! resolved hop by hop by breakglass, so that stray `AWS_ACCESS_KEY_ID`
//! variables never silently replace it. Region and endpoints are resolved
//! here too, each with its source, so the responder sees exactly where
//! calls will go.

pub mod config;
pub mod credentials;
pub mod errors;
pub mod identity;
mod loopback;
pub mod pacing;
pub mod percent;
pub mod probe;
pub mod session;

pub use config::{Clients, Endpoint, Endpoints, Factory};
pub use errors::{
    AwsError, ErrorKind, aws_error, goal_if, local, missing, over_quota, same_json, unchecked,
};
pub use identity::{Hop, Identity, Principal, PrincipalKind, partition};
pub use pacing::{CallCounts, Created, Lane, RetryPolicy, Telemetry, call, create_once};
pub use percent::percent_decode;
pub use session::{Connection, DEFAULT_PROFILE, DEFAULT_REGION, Session, connect};
