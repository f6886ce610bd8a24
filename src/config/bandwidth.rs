//! The IGEL bandwidth string: `^[0-9]+(KB|MB|GB)?$`, no unit meaning MB, a value above zero.
//! Anything else is not an error but a warning and the default (`2MB`), as on IGEL OS.

/// The value used when the configured one is not valid.
pub const DEFAULT_LIMIT: &str = "2MB";
pub const DEFAULT_LIMIT_BYTES: u64 = 2 * 1024 * 1024;
/// The largest limit taken as written (10GB/s, beyond any link a thin client has); a larger
/// number is as incorrect as a typo.
pub const MAX_LIMIT_BYTES: u64 = 10 * 1024 * 1024 * 1024;

/// Parses a bandwidth string into bytes per second, or `None` if it is not valid.
pub fn parse_limit(text: &str) -> Option<u64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let unit: u64 = match &text[digits..] {
        "" | "MB" => 1024 * 1024,
        "KB" => 1024,
        "GB" => 1024 * 1024 * 1024,
        _ => return None,
    };
    let value: u64 = text[..digits].parse().ok()?;
    value
        .checked_mul(unit)
        .filter(|&bytes| bytes > 0 && bytes <= MAX_LIMIT_BYTES)
}

/// Parses like [`parse_limit`], falling back to the default with a warning that names the value.
pub fn parse_limit_or_default(text: &str, origin: &str) -> (u64, Option<String>) {
    match parse_limit(text) {
        Some(bytes) => (bytes, None),
        None => (
            DEFAULT_LIMIT_BYTES,
            Some(format!(
                "{origin}: bandwidth_limit {text:?} is not a valid limit (a whole number above 0 \
                 followed by nothing, KB, MB or GB, no space, at most 10GB); using {DEFAULT_LIMIT}"
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_limits_follow_igel_units() {
        assert_eq!(parse_limit("2MB"), Some(2 * 1024 * 1024));
        assert_eq!(parse_limit("512KB"), Some(512 * 1024));
        assert_eq!(parse_limit("1GB"), Some(1024 * 1024 * 1024));
        assert_eq!(parse_limit("3"), Some(3 * 1024 * 1024));
        assert_eq!(parse_limit("10GB"), Some(MAX_LIMIT_BYTES));
    }

    #[test]
    fn every_bad_limit_warns_and_falls_back_to_2mb() {
        for bad in [
            "2 MB",
            "2mb",
            "1.5MB",
            "0",
            "0KB",
            "2Mbit",
            "",
            "MB",
            " 2MB",
            "2MB ",
            "-2MB",
            "99999999999999999999",
            "11GB",
            "10241MB",
        ] {
            assert_eq!(parse_limit(bad), None, "{bad:?}");
            let (bytes, warning) = parse_limit_or_default(bad, "agent.toml:3");
            assert_eq!(bytes, DEFAULT_LIMIT_BYTES);
            let warning = warning.expect("a warning");
            assert!(warning.contains(&format!("{bad:?}")), "{warning}");
            assert!(warning.contains("agent.toml:3"), "{warning}");
        }
    }
}
