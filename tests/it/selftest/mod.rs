//! Proves the test harness in `support/` works without the agent: the private servers and
//! the UMS stand-in, the systemd machine.

mod machine;
mod servers;
mod ums_standin;
