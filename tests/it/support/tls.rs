//! Throw-away PKI for tests: a private root CA and the certificates it issues, as PEM files.
//!
//! Repositories are HTTPS servers with a private root CA that the device must trust (DESIGN 1),
//! and the UMS channel uses mutual TLS (DESIGN 10). This module makes those certificates with
//! rcgen (ECDSA P-256 keys) and writes them into a temporary directory owned by the [`TestCa`],
//! so the files live exactly as long as the CA value. It never starts a server.
//!
//! Validity is given in whole days relative to today (UTC), because that is all rcgen's
//! `date_time_ymd` offers without a direct dependency on the `time` crate.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// When a certificate is valid, in days relative to today (UTC midnight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// First valid day: `-1` is yesterday.
    pub not_before_days: i64,
    /// Last valid instant is midnight of this day: `-2` is the day before yesterday.
    pub not_after_days: i64,
}

impl Validity {
    /// Valid since yesterday, for ten years.
    pub const CURRENT: Validity = Validity {
        not_before_days: -1,
        not_after_days: 3650,
    };
    /// Expired two days ago (was valid for a year before that).
    pub const EXPIRED: Validity = Validity {
        not_before_days: -367,
        not_after_days: -2,
    };

    /// Valid since yesterday, expiring `days` from today (for "expires soon" warnings).
    pub const fn expiring_in(days: i64) -> Validity {
        Validity {
            not_before_days: -1,
            not_after_days: days,
        }
    }
}

/// A certificate and its private key, both as PEM text and as files.
#[derive(Clone, Debug)]
pub struct CertKey {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A private root CA whose certificate and issued certificates live in its own temp dir.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_path: PathBuf,
    dir: tempfile::TempDir,
    issued: AtomicUsize,
}

impl TestCa {
    /// A new root CA named `common_name`, valid from yesterday for ten years.
    pub fn new(common_name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .expect("a CA without subject alternative names is valid");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "igel-update-agent tests");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, Validity::CURRENT);
        let key = KeyPair::generate().expect("rcgen cannot generate a CA key pair");
        let cert = params
            .self_signed(&key)
            .expect("rcgen cannot self-sign the test CA");

        let dir = super::temp_dir("pki");
        // Apache's workers and an unprivileged agent may need to read these files.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("cannot chmod the PKI temp dir");
        let cert_pem = cert.pem();
        let cert_path = dir.path().join("ca.pem");
        write_pem(&cert_path, &cert_pem);
        TestCa {
            issuer: Issuer::new(params, key),
            cert_pem,
            cert_path,
            dir,
            issued: AtomicUsize::new(0),
        }
    }

    /// Path of the CA certificate (what a client puts into `ca_certificate`).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The CA certificate as PEM text.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for `names` (DNS names or IP addresses), signed by this CA.
    pub fn server_cert(&self, names: &[&str], validity: Validity) -> CertKey {
        let first = names.first().copied().unwrap_or("localhost");
        self.issue(names, first, ExtendedKeyUsagePurpose::ServerAuth, validity)
    }

    /// A client certificate with common name `common_name` (for mutual TLS), signed by this CA.
    pub fn client_cert(&self, common_name: &str) -> CertKey {
        self.issue(
            &[],
            common_name,
            ExtendedKeyUsagePurpose::ClientAuth,
            Validity::CURRENT,
        )
    }

    fn issue(
        &self,
        names: &[&str],
        common_name: &str,
        usage: ExtendedKeyUsagePurpose,
        validity: Validity,
    ) -> CertKey {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names.clone())
            .unwrap_or_else(|err| panic!("invalid certificate names {names:?}: {err}"));
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        set_validity(&mut params, validity);
        let key = KeyPair::generate().expect("rcgen cannot generate a key pair");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("rcgen cannot sign a certificate with the test CA");

        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let cert_path = self.dir.path().join(format!("cert-{n}.pem"));
        let key_path = self.dir.path().join(format!("key-{n}.pem"));
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        write_pem(&cert_path, &cert_pem);
        write_pem(&key_path, &key_pem);
        CertKey {
            cert_path,
            key_path,
            cert_pem,
            key_pem,
        }
    }
}

/// A CA plus one server certificate for `localhost` and `127.0.0.1`: what an HTTPS test
/// repository needs.
pub struct TlsFiles {
    pub ca: TestCa,
    pub server: CertKey,
}

impl TlsFiles {
    /// A valid certificate for `localhost` and `127.0.0.1`.
    pub fn localhost() -> TlsFiles {
        TlsFiles::localhost_with(Validity::CURRENT)
    }

    /// A certificate for `localhost` and `127.0.0.1` that expired two days ago.
    pub fn localhost_expired() -> TlsFiles {
        TlsFiles::localhost_with(Validity::EXPIRED)
    }

    /// A certificate for `localhost` and `127.0.0.1` with the given validity.
    pub fn localhost_with(validity: Validity) -> TlsFiles {
        let ca = TestCa::new("igel-update-agent test root CA");
        let server = ca.server_cert(&["localhost", "127.0.0.1"], validity);
        TlsFiles { ca, server }
    }

    /// Path of the CA certificate that clients must trust.
    pub fn ca_path(&self) -> &Path {
        self.ca.cert_path()
    }
}

fn set_validity(params: &mut CertificateParams, validity: Validity) {
    let (y, m, d) = civil_date_from_today(validity.not_before_days);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = civil_date_from_today(validity.not_after_days);
    params.not_after = rcgen::date_time_ymd(y, m, d);
}

fn write_pem(path: &Path, pem: &str) {
    fs::write(path, pem).unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|err| panic!("cannot chmod {}: {err}", path.display()));
}

/// The (year, month, day) of today (UTC) plus `offset_days`.
fn civil_date_from_today(offset_days: i64) -> (i32, u8, u8) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is before 1970");
    let today = (now.as_secs() / 86_400) as i64;
    civil_from_days(today + offset_days)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month as u8, day as u8)
}
