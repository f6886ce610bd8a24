#![no_main]
//! `igel_update_agent::fuzz::state_json`: see src/fuzz.rs.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| igel_update_agent::fuzz::state_json(data));
