//! IDF documents kept beside the journal: `<state>/idf/<sha256>.json`, one file per distinct
//! IDF, named by the SHA-256 of its bytes. The journal and the command queue refer to them,
//! so an IDF is stored once however many commands carry it, and `state.json` (rewritten at
//! every progress save) stays small.
//!
//! A document is written (atomically) before anything refers to it; one that nothing refers
//! to any more is removed after the journal that dropped it was written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{State, Store, StoreError, io_error};
use crate::idf::{Idf, MAX_IDF_BYTES};

pub const DIR: &str = "idf";

/// A stored IDF document: the SHA-256 (hex) of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdfRef(String);

impl IdfRef {
    /// The reference an IDF gets (without storing it).
    pub fn of(idf: &Idf) -> (IdfRef, Vec<u8>) {
        let bytes = serde_json::to_vec(idf).unwrap_or_default();
        (IdfRef(crate::manifest::sha256_hex(&bytes)), bytes)
    }

    /// A reference read from a file: 64 lower-case hex digits, nothing else.
    pub fn checked(self) -> Result<IdfRef, String> {
        if self.0.len() == 64
            && self
                .0
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(self)
        } else {
            Err(format!("{:?} is not a stored IDF's SHA-256", self.0))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub fn path(state_dir: &Path, r: &IdfRef) -> PathBuf {
    state_dir.join(DIR).join(format!("{}.json", r.0))
}

/// Reads a stored IDF and checks it is the document its name promises and a valid IDF.
pub fn read(state_dir: &Path, r: &IdfRef) -> Result<Idf, String> {
    let path = path(state_dir, r);
    let bytes =
        crate::durable::read_regular(&path, MAX_IDF_BYTES as u64).map_err(|e| e.to_string())?;
    if crate::manifest::sha256_hex(&bytes) != r.0 {
        return Err(format!(
            "{}: its content does not match its name (changed on disk)",
            path.display()
        ));
    }
    Idf::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Bytes a stored IDF takes (0 when it is missing).
pub fn size(state_dir: &Path, r: &IdfRef) -> u64 {
    std::fs::metadata(path(state_dir, r)).map_or(0, |m| m.len())
}

/// Every document the state refers to.
pub fn referenced(state: &State) -> BTreeSet<IdfRef> {
    state
        .idf
        .iter()
        .chain(state.commands.iter().filter_map(|c| c.command.idf()))
        .cloned()
        .collect()
}

impl Store {
    /// Stores `idf` (unless it is there already) and returns its reference. Call with the
    /// state lock held ([`Store::update_with_document`]).
    pub(super) fn write_document(&self, idf: &Idf) -> Result<IdfRef, StoreError> {
        let (r, bytes) = IdfRef::of(idf);
        if bytes.len() > MAX_IDF_BYTES {
            return Err(StoreError::Io {
                path: path(&self.state_dir, &r),
                source: std::io::Error::other(format!(
                    "an IDF of {} bytes is over the limit of {MAX_IDF_BYTES}",
                    bytes.len()
                )),
            });
        }
        let target = path(&self.state_dir, &r);
        // Reused only when it still holds these bytes (a file changed on disk is rewritten).
        if crate::durable::read_regular(&target, MAX_IDF_BYTES as u64).is_ok_and(|b| b == bytes) {
            return Ok(r);
        }
        let dir = self.state_dir.join(DIR);
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        super::write_atomic(&target, &bytes)?;
        Ok(r)
    }

    /// A stored IDF.
    pub fn idf(&self, r: &IdfRef) -> Result<Idf, String> {
        read(&self.state_dir, r)
    }

    /// The IDF last assigned, if any (a stored one that cannot be read is logged).
    pub fn assigned_idf(&self) -> Option<Idf> {
        let r = self.snapshot().idf?;
        self.idf(&r)
            .inspect_err(|e| tracing::warn!("the assigned IDF cannot be read: {e}"))
            .ok()
    }

    /// Removes stored documents that `state` does not refer to. Call with the state lock held.
    pub(super) fn collect_documents(&self, state: &State) {
        let dir = self.state_dir.join(DIR);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let keep: BTreeSet<String> = referenced(state)
            .into_iter()
            .map(|r| format!("{}.json", r.0))
            .collect();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
