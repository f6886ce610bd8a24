//! The daemon (`run`, DESIGN 7, 8): its commands on the control socket, and its life across
//! time, restarts and signals.

mod commands;
mod signals;
