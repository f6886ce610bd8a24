//! `tls::validity`: when an X.509 certificate is valid (`notBefore`/`notAfter`), for `check`
//! (DESIGN: "TLS chain and days until expiry") and for the configuration's check that a
//! `ca_certificate` holds certificates.
//!
//! A minimal DER reader that knows only the path from `Certificate` to `Validity` (RFC 5280,
//! 4.1). It must never decide trust (it reads dates, it verifies nothing), and it rejects
//! whatever it does not understand instead of guessing, and never indexes out of bounds: a
//! malformed certificate is an error, never a panic.
//!
//! Why not a maintained X.509 parser (measured 2026-11-30, static release binary
//! `cargo build --release --target x86_64-unknown-linux-musl`, stripped by the release profile,
//! with `store::replace`'s `nix::fcntl::renameat2`, which nix offers only on glibc, swapped for
//! the raw syscall; the budget is 6 MiB = 6,291,456 bytes):
//! - this reader: 6,191,016 bytes (5.90 MiB);
//! - `x509-parser` 0.18.1 (default features) instead: 6,293,480 bytes (+102,464), over the
//!   budget;
//! - `x509-cert` 0.3.0 (`default-features = false`, with `der` 0.8.3) instead: 6,236,072
//!   bytes (+45,056), within the budget but it cannot represent a time before 1970 (`der`'s
//!   `DateTime`), so a certificate valid from 1949 or a UTCTime of 1950-1969, which RFC 5280
//!   allows and the tests below read, would become an error.

use chrono::{DateTime, NaiveDate, Utc};

/// When a certificate is valid: from `not_before` to `not_after`, both inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

const INTEGER: u8 = 0x02;
const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
/// `[0] EXPLICIT Version` of `TBSCertificate`: context-specific, constructed, number 0.
const VERSION: u8 = 0xa0;

/// The validity period of the DER-encoded X.509 certificate `der` (RFC 5280, 4.1).
pub fn validity(der: &[u8]) -> Result<Validity, String> {
    let mut outer = Der::new(der, 0);
    let mut certificate = outer.expect(SEQUENCE, "Certificate")?;
    outer.end("the certificate")?;
    let mut tbs = certificate.expect(SEQUENCE, "tbsCertificate")?;
    if tbs.peek_tag() == Some(VERSION) {
        tbs.expect(VERSION, "version")?;
    }
    tbs.expect(INTEGER, "serialNumber")?;
    tbs.expect(SEQUENCE, "signature")?;
    tbs.expect(SEQUENCE, "issuer")?;
    let mut dates = tbs.expect(SEQUENCE, "validity")?;
    let not_before = dates.time("notBefore")?;
    let not_after = dates.time("notAfter")?;
    dates.end("validity")?;
    Ok(Validity {
        not_before,
        not_after,
    })
}

/// A cursor over DER elements; `offset` is where `rest` starts in the whole certificate, so that
/// errors can say where the encoding went wrong.
struct Der<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> Der<'a> {
    fn new(rest: &'a [u8], offset: usize) -> Der<'a> {
        Der { rest, offset }
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The contents of the next element, which must have tag `tag`; `what` names it in errors.
    fn expect(&mut self, tag: u8, what: &str) -> Result<Der<'a>, String> {
        let at = self.offset;
        let (found, contents, start) = self.element(what)?;
        if found != tag {
            return Err(format!(
                "{what}: expected tag 0x{tag:02x}, found 0x{found:02x} at byte {at}"
            ));
        }
        Ok(Der::new(contents, start))
    }

    /// Reads one tag-length-value element: (tag, contents, offset of the contents).
    fn element(&mut self, what: &str) -> Result<(u8, &'a [u8], usize), String> {
        let at = self.offset;
        let truncated = || format!("{what}: truncated at byte {at}");
        let tag = *self.rest.first().ok_or_else(truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(format!("{what}: unsupported multi-byte tag at byte {at}"));
        }
        let first = *self.rest.get(1).ok_or_else(truncated)?;
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let count = usize::from(first & 0x7f);
            // 0x80 is BER's indefinite length, which DER forbids; more than four length bytes
            // would describe a certificate of 4 GiB or more.
            if count == 0 || count > 4 {
                return Err(format!("{what}: invalid length encoding at byte {at}"));
            }
            let bytes = self.rest.get(2..2 + count).ok_or_else(truncated)?;
            let len = bytes
                .iter()
                .fold(0usize, |len, &b| (len << 8) | usize::from(b));
            // DER wants the shortest form: no leading zero byte, no long form below 128.
            if bytes.first() == Some(&0) || len < 0x80 {
                return Err(format!("{what}: non-minimal length at byte {at}"));
            }
            (len, 2 + count)
        };
        let end = header
            .checked_add(len)
            .ok_or_else(|| format!("{what}: length overflows at byte {at}"))?;
        let contents = self.rest.get(header..end).ok_or_else(truncated)?;
        self.rest = self.rest.get(end..).unwrap_or_default();
        self.offset = at + end;
        Ok((tag, contents, at + header))
    }

    /// Nothing may follow the last element that was read.
    fn end(&self, what: &str) -> Result<(), String> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} unexpected bytes after {what} at byte {}",
                self.rest.len(),
                self.offset
            ))
        }
    }

    /// A `Time ::= CHOICE { utcTime UTCTime, generalTime GeneralizedTime }`.
    fn time(&mut self, what: &str) -> Result<DateTime<Utc>, String> {
        let at = self.offset;
        let (tag, contents, _) = self.element(what)?;
        let parsed = match tag {
            UTC_TIME => parse_utc_time(contents),
            GENERALIZED_TIME => parse_generalized_time(contents),
            other => {
                return Err(format!(
                    "{what}: expected UTCTime or GeneralizedTime, found tag 0x{other:02x} at byte {at}"
                ));
            }
        };
        parsed.ok_or_else(|| {
            format!(
                "{what}: invalid time {:?} at byte {at}",
                String::from_utf8_lossy(contents)
            )
        })
    }
}

/// `YYMMDDHHMMSSZ`; RFC 5280 (4.1.2.5.1) requires the seconds and the `Z`, and reads years from
/// 50 on as 19xx.
fn parse_utc_time(text: &[u8]) -> Option<DateTime<Utc>> {
    if text.len() != 13 {
        return None;
    }
    let yy = digits(text, 0)?;
    let year = if yy >= 50 { 1900 + yy } else { 2000 + yy };
    date_time(year, text.get(2..)?)
}

/// `YYYYMMDDHHMMSSZ`; RFC 5280 (4.1.2.5.2) forbids fractional seconds.
fn parse_generalized_time(text: &[u8]) -> Option<DateTime<Utc>> {
    if text.len() != 15 {
        return None;
    }
    let year = digits(text, 0)? * 100 + digits(text, 2)?;
    date_time(year, text.get(4..)?)
}

/// `MMDDHHMMSSZ` of `year`.
fn date_time(year: u32, text: &[u8]) -> Option<DateTime<Utc>> {
    if text.get(10) != Some(&b'Z') {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(
        i32::try_from(year).ok()?,
        digits(text, 0)?,
        digits(text, 2)?,
    )?;
    let time = date.and_hms_opt(digits(text, 4)?, digits(text, 6)?, digits(text, 8)?)?;
    Some(time.and_utc())
}

/// The two ASCII digits at `at`, as a number.
fn digits(text: &[u8], at: usize) -> Option<u32> {
    match text.get(at..at + 2)? {
        [tens @ b'0'..=b'9', ones @ b'0'..=b'9'] => {
            Some(u32::from(tens - b'0') * 10 + u32::from(ones - b'0'))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// A self-signed certificate valid from `from` to `until` (year, month, day; midnight UTC).
    fn certificate(from: (i32, u8, u8), until: (i32, u8, u8)) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["repo.example".to_string()])
            .expect("a DNS name is a valid subject alternative name");
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        let key = rcgen::KeyPair::generate().expect("rcgen generates a key pair");
        let cert = params.self_signed(&key).expect("rcgen self-signs");
        cert.der().to_vec()
    }

    fn midnight(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    #[test]
    fn utc_time_dates_are_read_exactly() {
        let v = validity(&certificate((2020, 1, 2), (2049, 12, 31))).unwrap();
        assert_eq!(v.not_before, midnight(2020, 1, 2));
        assert_eq!(v.not_after, midnight(2049, 12, 31));
    }

    #[test]
    fn generalized_time_dates_from_2050_and_before_1950_are_read_exactly() {
        let der = certificate((1949, 6, 30), (2050, 1, 1));
        let generalized = |text: &[u8]| der.windows(text.len()).any(|w| w == text);
        assert!(generalized(b"19490630000000Z") && generalized(b"20500101000000Z"));
        let v = validity(&der).unwrap();
        assert_eq!(v.not_before, midnight(1949, 6, 30));
        assert_eq!(v.not_after, midnight(2050, 1, 1));
        let v = validity(&certificate((2024, 2, 29), (2123, 7, 4))).unwrap();
        assert_eq!(v.not_before, midnight(2024, 2, 29));
        assert_eq!(v.not_after, midnight(2123, 7, 4));
    }

    #[test]
    fn utc_time_years_from_50_on_are_19xx() {
        assert_eq!(parse_utc_time(b"500101000000Z"), Some(midnight(1950, 1, 1)));
        assert_eq!(
            parse_utc_time(b"491231235959Z"),
            Some(midnight(2049, 12, 31) + chrono::Duration::seconds(86_399))
        );
    }

    #[test]
    fn malformed_times_are_rejected() {
        for text in [
            &b"200102000000"[..],
            b"2001020000Z",
            b"200102000000+0100",
            b"201302000000Z",
            b"200230000000Z",
            b"200102240000Z",
            b"2001020000-0Z",
            b"2\xff0102000000Z",
        ] {
            assert_eq!(
                parse_utc_time(text),
                None,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
        assert_eq!(parse_generalized_time(b"20500101000000.5Z"), None);
        assert_eq!(parse_generalized_time(b"2050010100000Z"), None);
        assert_eq!(
            parse_generalized_time(b"20500101000000Z"),
            Some(midnight(2050, 1, 1))
        );
    }

    #[test]
    fn every_truncation_of_a_certificate_is_an_error() {
        let der = certificate((2020, 1, 2), (2049, 12, 31));
        for len in 0..der.len() {
            assert!(
                validity(&der[..len]).is_err(),
                "a prefix of {len} bytes was accepted"
            );
        }
    }

    #[test]
    fn trailing_bytes_after_the_certificate_are_an_error() {
        let mut der = certificate((2020, 1, 2), (2049, 12, 31));
        der.push(0);
        let err = validity(&der).unwrap_err();
        assert!(err.contains("after the certificate"), "{err}");
    }

    #[test]
    fn a_certificate_with_any_single_byte_changed_never_panics() {
        let der = certificate((2020, 1, 2), (2049, 12, 31));
        for at in 0..der.len() {
            for value in [0x00, 0x7f, 0x80, 0x84, 0xff] {
                let mut bad = der.clone();
                bad[at] = value;
                let _ = validity(&bad);
            }
        }
    }

    #[test]
    fn random_garbage_is_an_error() {
        // xorshift64: deterministic, so a failure can be reproduced.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..2_000 {
            let len = (next() % 600) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Half the rounds start like a certificate, so the reader gets past the outer header.
            if round % 2 == 0 && len > 4 {
                let body = (len - 4) as u16;
                bytes[..4].copy_from_slice(&[SEQUENCE, 0x82, (body >> 8) as u8, body as u8]);
            }
            assert!(validity(&bytes).is_err(), "garbage accepted: {bytes:02x?}");
        }
    }

    #[test]
    fn indefinite_oversized_and_non_minimal_lengths_are_rejected() {
        for der in [
            &[0x30, 0x80, 0x00, 0x00][..],
            &[0x30, 0x85, 0x01, 0x00, 0x00, 0x00, 0x00],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x81, 0x05, 0, 0, 0, 0, 0],
            &[0x30, 0x82, 0x00, 0x80],
            &[0x1f, 0x01, 0x00],
        ] {
            assert!(validity(der).is_err(), "{der:02x?}");
        }
    }
}
