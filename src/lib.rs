//! `igel-update-agent`: the on-device update agent for IGEL OS thin clients.
//!
//! The data flows one way: IDF ([`idf`]) -> plan ([`agent`]) -> transfer ([`transfer`], over
//! [`repository`] connections under one [`bandwidth`] limit) -> store ([`store`]) -> report
//! ([`report`]). [`config`] turns files into typed settings; [`cli`] is the command line.

pub(crate) mod agent;
pub(crate) mod bandwidth;
pub(crate) mod check;
pub mod chunks;
pub mod cli;
pub(crate) mod config;
pub(crate) mod control;
pub(crate) mod daemon;
pub(crate) mod durable;
pub mod failpoint;
pub mod fuzz;
pub(crate) mod idf;
pub(crate) mod manifest;
pub(crate) mod repo_server;
pub(crate) mod report;
pub(crate) mod repository;
pub(crate) mod shutdown;
pub(crate) mod store;
pub(crate) mod tls;
pub(crate) mod transfer;
pub(crate) mod ums;
