//! The whole-process tests: one test binary (`cargo test --test it`), one module per area,
//! as Cargo's own test suite is laid out. Every test runs the real `igel-update-agent` binary
//! against real servers (Apache httpd, the fault mock, the UMS stand-in) from [`support`].
//!
//! Run one area with a filter on the module path, e.g. `cargo test --test it transfer::` or
//! `cargo test --test it robustness::crash::random_kills`.

mod cli;
mod daemon;
mod lifecycle;
mod package;
mod robustness;
mod selftest;
mod support;
mod systemd;
mod transfer;
mod ums;
