//! The order of versions, as an administrator reads them: what `latest` picks and what
//! recovery keeps.

/// Orders versions the way an administrator reads them (this is what `latest` picks):
/// - runs of digits compare as numbers (`1.10.0` > `1.9.0`, `120.0.1` > `99.5`, `01` = `1`);
/// - anything else compares byte by byte, so digits come before letters (`1.0.9` <
///   `1.0.a`) and upper case before lower case; a version that goes on where the other ends
///   is the greater (`1.0` < `1.0.1`, `1.0` < `1.0a`);
/// - a pre-release (`-` and what follows) comes before its release (`1.0-rc1` < `1.0-rc2`
///   < `1.0`), build metadata (`+` and what follows) does not count for the order, and two
///   versions that differ only there are ordered by their text, so the order is total.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (a_main, a_build) = a.split_once('+').unwrap_or((a, ""));
    let (b_main, b_build) = b.split_once('+').unwrap_or((b, ""));
    let (a_release, a_pre) = split_pre(a_main);
    let (b_release, b_pre) = split_pre(b_main);
    compare_runs(a_release, b_release)
        .then_with(|| match (a_pre, b_pre) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => compare_runs(x, y),
        })
        .then_with(|| compare_runs(a_build, b_build))
        .then_with(|| a.cmp(b))
}

/// `1.0-rc1` -> (`1.0`, `rc1`). A leading `-` is no pre-release (versions cannot start so).
fn split_pre(version: &str) -> (&str, Option<&str>) {
    match version.split_once('-') {
        Some((release, pre)) if !release.is_empty() => (release, Some(pre)),
        _ => (version, None),
    }
}

/// Numeric-aware comparison of two strings: digit runs as numbers, the rest byte-wise.
fn compare_runs(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let la = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let lb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (trim_zeros(&a[..la]), trim_zeros(&b[..lb]));
                let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[la..];
                b = &b[lb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let first = digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(digits.len());
    &digits[first..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("1.10", "1.9"), Greater);
        assert_eq!(compare_versions("120.0.1", "99.5"), Greater);
        assert_eq!(compare_versions("1.0", "1.0"), Equal);
        assert_eq!(compare_versions("1.0", "1.0.1"), Less);
        assert_eq!(compare_versions("1.10.0", "1.9.0"), Greater);
        assert_eq!(compare_versions("1.0.9", "1.0.a"), Less);
        assert_eq!(compare_versions("1.0", "1.0a"), Less);
        assert_eq!(compare_versions("1.0-rc1", "1.0"), Less);
        assert_eq!(compare_versions("1.0-rc2", "1.0-rc10"), Less);
        assert_eq!(compare_versions("1.0-rc2", "0.9"), Greater);
        assert_eq!(compare_versions("1.0+b2", "1.0+b10"), Less);
        // Total: different texts never compare equal.
        assert_ne!(compare_versions("01", "1"), Equal);
        assert_eq!(compare_versions("1.0", "1.0"), Equal);
    }
}
