//! The UMS channel (`[ums]`): connecting, `check`, failing over between UMS servers, the
//! protocol's frames and the channel's security, each against the UMS stand-in.

mod channel;
mod check;
mod conf;
mod failover;
mod protocol;
mod security;
