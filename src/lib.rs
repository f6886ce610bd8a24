//! `igel-update-agent`: the on-device update agent for IGEL OS thin clients.
//!
//! The data flows one way: IDF ([`idf`]) -> plan ([`agent`]) -> transfer ([`transfer`], over
//! [`repository`] connections under one [`bandwidth`] limit) -> store ([`store`]) -> report
//! ([`report`]). [`config`] turns files into typed settings; [`cli`] is the command line.

pub mod agent;
pub mod bandwidth;
pub mod check;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod durable;
pub mod failpoint;
pub mod fuzz;
pub mod idf;
pub mod manifest;
pub mod repo_server;
pub mod report;
pub mod repository;
pub mod shutdown;
pub mod store;
pub mod tls;
pub mod transfer;
pub mod ums;
