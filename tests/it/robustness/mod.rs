//! Robustness (issue 10, `docs/ROBUSTNESS.md`): bad input, hostile repositories, crashes at
//! any moment, the fuzzer's regressions, and persisted items set aside when they no longer
//! validate.

mod bad_input;
mod crash;
mod fuzz_regressions;
mod hostile;
mod set_aside;
