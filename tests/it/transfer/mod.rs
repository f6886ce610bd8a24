//! Transfers (DESIGN 4, 5, 9): choosing and failing over between repositories,
//! authentication and TLS, the bandwidth limit, and resuming partial downloads.

mod auth;
mod bandwidth;
mod delta;
mod failover;
mod resume;
