//! The `app.json` manifest a repository serves for every app version (DESIGN 4), and the
//! naming rules shared by manifests, IDFs and the store.
//!
//! Everything a manifest says is validated here, once, so that the rest of the agent can trust
//! names and paths: an app name or a file path from a repository becomes part of a local path,
//! so a bad one must never get past this module.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod order;
pub use order::compare_versions;

/// Largest `app.json` the agent accepts.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;
/// Largest single file an app may declare (64 GiB).
pub const MAX_FILE_SIZE: u64 = 64 * 1024 * 1024 * 1024;
const MAX_PATH_DEPTH: usize = 4;
const MAX_FILES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("app.json is {0} bytes; the limit is {MAX_MANIFEST_BYTES}")]
    TooLarge(usize),
    #[error("app.json is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("field `{field}`: {reason}")]
    Field { field: String, reason: String },
}

fn field_error(field: impl Into<String>, reason: impl Into<String>) -> ManifestError {
    ManifestError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

/// One file of an app version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    /// The file's chunk index (`crate::chunks`), when the repository publishes one: what lets
    /// a device fetch only the chunks it lacks. Without it the file is downloaded whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<ChunkIndexRef>,
}

/// Where a file's chunk index is, beside the file, and what it must be. Its small-chunk lists
/// are at the same path with `.fine` added (hints, checked otherwise: see `crate::chunks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkIndexRef {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

impl ChunkIndexRef {
    /// The path of the small-chunk lists that go with this index.
    pub fn fine_path(&self) -> String {
        format!("{}.fine", self.path)
    }
}

/// A validated `app.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub files: Vec<FileSpec>,
    #[serde(default)]
    pub reboot: bool,
}

impl Manifest {
    /// Parses and validates the raw bytes of an `app.json`.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        let manifest: Manifest = serde_json::from_slice(bytes)?;
        manifest.validate()?;
        Ok(manifest)
    }

    pub fn validate(&self) -> Result<(), ManifestError> {
        check_app_name(&self.name).map_err(|r| field_error("name", r))?;
        check_version(&self.version).map_err(|r| field_error("version", r))?;
        if self.files.len() > MAX_FILES {
            return Err(field_error("files", format!("more than {MAX_FILES} files")));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, file) in self.files.iter().enumerate() {
            check_file_path(&file.path).map_err(|r| field_error(format!("files[{i}].path"), r))?;
            if file.path == "app.json" {
                return Err(field_error(
                    format!("files[{i}].path"),
                    "`app.json` is the manifest itself and cannot be listed",
                ));
            }
            if !seen.insert(file.path.as_str()) {
                return Err(field_error(
                    format!("files[{i}].path"),
                    format!("`{}` is listed twice", file.path),
                ));
            }
            if file.size > MAX_FILE_SIZE {
                return Err(field_error(
                    format!("files[{i}].size"),
                    format!("{} bytes is over the limit of 64 GiB", file.size),
                ));
            }
            check_sha256(&file.sha256).map_err(|r| field_error(format!("files[{i}].sha256"), r))?;
        }
        let mut indexes = std::collections::HashSet::new();
        for (i, file) in self.files.iter().enumerate() {
            if let Some(index) = &file.chunks {
                self.check_chunk_index(i, index, &seen)?;
                if !indexes.insert(index.path.as_str()) {
                    return Err(field_error(
                        format!("files[{i}].chunks.path"),
                        format!("`{}` is the chunk index of another file too", index.path),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A chunk index is a file of its own beside the app's files: a valid path that is
    /// neither the manifest nor one of the listed files, of a bounded size.
    fn check_chunk_index(
        &self,
        i: usize,
        index: &ChunkIndexRef,
        files: &std::collections::HashSet<&str>,
    ) -> Result<(), ManifestError> {
        let field = |name: &str| format!("files[{i}].chunks.{name}");
        for path in [index.path.clone(), index.fine_path()] {
            check_file_path(&path).map_err(|r| field_error(field("path"), r))?;
            if path == "app.json" || files.contains(path.as_str()) {
                return Err(field_error(
                    field("path"),
                    format!("`{path}` is a file of the app (or the manifest), not its chunk index"),
                ));
            }
        }
        if index.size > crate::chunks::MAX_INDEX_BYTES {
            return Err(field_error(
                field("size"),
                format!(
                    "{} bytes is over the limit of {} for a chunk index",
                    index.size,
                    crate::chunks::MAX_INDEX_BYTES
                ),
            ));
        }
        check_sha256(&index.sha256).map_err(|r| field_error(field("sha256"), r))
    }

    /// Whether two manifests describe the same bytes (the order of the files and the JSON's
    /// formatting aside): what makes a version on disk the one a plan wants.
    pub fn same_content(&self, other: &Manifest) -> bool {
        let files = |m: &Manifest| {
            let mut f: Vec<(String, u64, String)> = m
                .files
                .iter()
                .map(|f| (f.path.clone(), f.size, f.sha256.to_ascii_lowercase()))
                .collect();
            f.sort();
            f
        };
        self.name == other.name
            && self.version == other.version
            && self.reboot == other.reboot
            && files(self) == files(other)
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// SHA-256 of bytes as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `^[a-z0-9][a-z0-9._+-]{0,63}$`
pub fn check_app_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not an app name (1-64 of a-z 0-9 . _ + -, starting with a letter or digit)"
        ))
    }
}

/// Version names that are never versions: `current` is the active-version link in the store,
/// `latest` asks for the newest version (DESIGN 4).
pub const RESERVED_VERSIONS: &[&str] = &["current", "latest"];
/// The suffix of a partial download; no file of an app may end with it.
pub const PART_SUFFIX: &str = ".part";

/// `^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$`, and not one of [`RESERVED_VERSIONS`].
pub fn check_version(version: &str) -> Result<(), String> {
    if RESERVED_VERSIONS.contains(&version) {
        return Err(format!(
            "{version:?} is reserved and never a version (`current` is the active-version \
             link, `latest` asks for the newest version)"
        ));
    }
    let ok = version.len() <= 64
        && version
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{version:?} is not a version (1-64 of A-Z a-z 0-9 . _ + -, starting with a letter or digit)"
        ))
    }
}

/// Relative path of at most four components of `[A-Za-z0-9._+-]`, none `.` or `..`.
pub fn check_file_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.starts_with('/') {
        return Err(format!("{path:?} is absolute; paths must be relative"));
    }
    let components: Vec<&str> = path.split('/').collect();
    if components.len() > MAX_PATH_DEPTH {
        return Err(format!(
            "{path:?} has more than {MAX_PATH_DEPTH} components"
        ));
    }
    for c in components {
        if c.is_empty() || c == "." || c == ".." {
            return Err(format!("{path:?} has an empty, `.` or `..` component"));
        }
        if !c
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
        {
            return Err(format!(
                "{path:?} has a character outside A-Z a-z 0-9 . _ + -"
            ));
        }
        if c.starts_with('.') {
            return Err(format!(
                "{path:?}: names beginning with `.` are reserved (the agent's own files)"
            ));
        }
        if c.ends_with(PART_SUFFIX) {
            return Err(format!(
                "{path:?}: names ending in `{PART_SUFFIX}` are reserved for partial downloads"
            ));
        }
    }
    Ok(())
}

/// 64 lower- or upper-case hex digits.
pub fn check_sha256(digest: &str) -> Result<(), String> {
    if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!(
            "{digest:?} is not a SHA-256 digest (64 hex digits)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_json(path: &str, size: u64, sha: &str) -> String {
        format!(
            r#"{{"name":"chromium","version":"120.0.1","files":[{{"path":"{path}","size":{size},"sha256":"{sha}"}}],"reboot":false}}"#
        )
    }

    const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn valid_manifest_parses() {
        let m = Manifest::parse(manifest_json("bin/chromium.ipkg", 10, SHA).as_bytes()).unwrap();
        assert_eq!(m.files[0].path, "bin/chromium.ipkg");
        assert_eq!(m.total_bytes(), 10);
    }

    #[test]
    fn path_traversal_is_rejected_naming_the_field() {
        for bad in [
            "../../etc/passwd",
            "/etc/passwd",
            "a/./b",
            "a//b",
            "a/b/c/d/e",
            "a b",
        ] {
            let err = Manifest::parse(manifest_json(bad, 1, SHA).as_bytes()).unwrap_err();
            assert!(err.to_string().contains("files[0].path"), "{bad}: {err}");
        }
    }

    #[test]
    fn oversized_file_and_bad_digest_are_rejected() {
        let err = Manifest::parse(manifest_json("a", MAX_FILE_SIZE + 1, SHA).as_bytes());
        assert!(err.unwrap_err().to_string().contains("files[0].size"));
        let err = Manifest::parse(manifest_json("a", 1, "abc").as_bytes());
        assert!(err.unwrap_err().to_string().contains("files[0].sha256"));
    }

    fn with_index(index: &str) -> String {
        format!(
            r#"{{"name":"a","version":"1","files":[{{"path":"f","size":1,"sha256":"{SHA}","chunks":{index}}},{{"path":"g","size":1,"sha256":"{SHA}"}}]}}"#
        )
    }

    #[test]
    fn a_chunk_index_is_optional_and_checked_naming_its_field() {
        let ok = with_index(&format!(
            r#"{{"path":"f.chunks","size":64,"sha256":"{SHA}"}}"#
        ));
        let m = Manifest::parse(ok.as_bytes()).unwrap();
        let index = m.files[0].chunks.as_ref().unwrap();
        assert_eq!(
            (index.path.as_str(), index.fine_path()),
            ("f.chunks", "f.chunks.fine".to_string())
        );
        assert!(m.files[1].chunks.is_none());
        for (index, field) in [
            (
                r#"{"path":"../x","size":1,"sha256":"SHA"}"#,
                "files[0].chunks.path",
            ),
            (
                r#"{"path":"g","size":1,"sha256":"SHA"}"#,
                "files[0].chunks.path",
            ),
            (
                r#"{"path":"app.json","size":1,"sha256":"SHA"}"#,
                "files[0].chunks.path",
            ),
            (
                r#"{"path":"f.chunks","size":999999999,"sha256":"SHA"}"#,
                "files[0].chunks.size",
            ),
            (
                r#"{"path":"f.chunks","size":1,"sha256":"x"}"#,
                "files[0].chunks.sha256",
            ),
            (
                r#"{"path":"f.chunks","size":1,"sha256":"SHA","x":1}"#,
                "unknown field",
            ),
        ] {
            let json = with_index(&index.replace("SHA", SHA));
            let err = Manifest::parse(json.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(field), "{index}: {err}");
        }
    }

    #[test]
    fn too_large_manifest_is_rejected_before_parsing() {
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        assert!(matches!(
            Manifest::parse(&big),
            Err(ManifestError::TooLarge(_))
        ));
    }

    #[test]
    fn names_and_versions_follow_the_design_patterns() {
        assert!(check_app_name("chromium").is_ok());
        assert!(check_app_name("a.b+c_d-e").is_ok());
        assert!(check_app_name("Chromium").is_err());
        assert!(check_app_name(".hidden").is_err());
        assert!(check_app_name(&"a".repeat(65)).is_err());
        assert!(check_version("120.0.1").is_ok());
        assert!(check_version("RC1").is_ok());
        assert!(check_version("-1").is_err());
        assert!(check_version("1/2").is_err());
    }

    #[test]
    fn reserved_names_are_never_versions_or_files() {
        for reserved in ["current", "latest"] {
            let err = check_version(reserved).unwrap_err();
            assert!(err.contains("reserved"), "{err}");
        }
        assert!(check_version("Current").is_ok());
        for bad in ["f.part", "dir.part/f", ".hidden", "a/.b"] {
            let err = check_file_path(bad).unwrap_err();
            assert!(err.contains("reserved"), "{bad}: {err}");
        }
        assert!(check_file_path("part/f.partial").is_ok());
    }
}
