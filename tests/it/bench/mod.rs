//! The parts of the UMS load bench (`tests/it/ums_load.rs`, `cargo bench --bench ums_load`,
//! `scripts/bench ums`): the fleet of agent daemons, the tally of what the stand-in received,
//! and the summary it prints.

pub mod fleet;
pub mod report;
pub mod tally;
