#![no_main]
//! `igel_update_agent::fuzz::range`: see src/fuzz.rs.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| igel_update_agent::fuzz::range(data));
