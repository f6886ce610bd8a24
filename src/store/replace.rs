//! What the store holds of a version, by content rather than by name: a version counts as
//! in place only if its stored `app.json` describes the files a plan wants (DESIGN 4: a pinned
//! `app.json` makes every repository a mirror). Other content under the name of the active
//! version is staged beside it, complete, and swapped in by the activation in one step
//! (`renameat2(RENAME_EXCHANGE)`), so `current` keeps pointing at the same name and finds
//! the new files; swapping again undoes it.

use std::path::Path;

use super::{Store, StoreError, apps, sync_dir};
use crate::manifest::Manifest;

impl Store {
    /// Whether `apps/<app>/<version>` is complete and holds what `manifest` describes (a
    /// version of the same name from another repository, or from before a pin, does not).
    pub fn holds(&self, manifest: &Manifest) -> bool {
        self.is_complete(&manifest.name, &manifest.version)
            && self
                .stored_manifest(&self.version_dir(&manifest.name, &manifest.version))
                .is_some_and(|m| m.same_content(manifest))
    }

    pub(crate) fn stored_manifest(&self, dir: &Path) -> Option<Manifest> {
        let bytes = crate::durable::read_regular(
            &dir.join("app.json"),
            crate::manifest::MAX_MANIFEST_BYTES as u64,
        )
        .ok()?;
        Manifest::parse(&bytes).ok()
    }

    /// A complete copy of `manifest`'s version staged to replace the active version of the
    /// same name (see [`Store::commit_version`]). A staged copy of a version that is not the
    /// active one is a commit a crash interrupted, not a replacement.
    pub fn staged_replacement(&self, manifest: &Manifest) -> bool {
        let (app, version) = (&manifest.name, &manifest.version);
        self.current_version(app).as_deref() == Some(version.as_str())
            && self.is_complete(app, version)
            && !self.holds(manifest)
            && self
                .stored_manifest(&self.staging_dir(app, version))
                .is_some_and(|m| m.same_content(manifest))
    }

    /// The staged replacement of the active `version` of `app` that the plan wants (its
    /// `app.json` has the digest `wanted`), if there is one: that digest.
    pub fn pending_replacement(
        &self,
        app: &str,
        version: &str,
        wanted: Option<&str>,
    ) -> Option<String> {
        let wanted = wanted?;
        if self.current_version(app).as_deref() != Some(version) || !self.is_complete(app, version)
        {
            return None;
        }
        let staged = self.staging_dir(app, version);
        let digest = self.app_json_sha256(&staged)?;
        if digest != wanted
            || self.app_json_sha256(&self.version_dir(app, version)) == Some(digest.clone())
        {
            return None;
        }
        self.stored_manifest(&staged).map(|_| digest)
    }

    /// SHA-256 of the `app.json` in `dir`.
    pub fn app_json_sha256(&self, dir: &Path) -> Option<String> {
        crate::durable::read_regular(
            &dir.join("app.json"),
            crate::manifest::MAX_MANIFEST_BYTES as u64,
        )
        .ok()
        .map(|b| crate::manifest::sha256_hex(&b))
    }

    /// Swaps the staged replacement of `app` `version` with the active directory of that
    /// name, in one step (`renameat2` with `RENAME_EXCHANGE`): `current` keeps pointing at
    /// `version` and finds the other content. Swapping again undoes it.
    pub fn exchange_replacement(&self, app: &str, version: &str) -> Result<(), StoreError> {
        let (staged, live) = (
            self.staging_dir(app, version),
            self.version_dir(app, version),
        );
        crate::failpoint::hit("replace.before_exchange");
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &staged,
            rustix::fs::CWD,
            &live,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| StoreError::Io {
            path: live.clone(),
            source: std::io::Error::other(format!(
                "cannot swap in the new content of the same version: {e}"
            )),
        })?;
        crate::failpoint::hit("replace.after_exchange");
        for dir in [staged.parent(), live.parent()].into_iter().flatten() {
            sync_dir(dir)?;
        }
        Ok(())
    }

    /// Removes `staging/<app>/<version>` (a replacement's old content after the swap, or a
    /// leftover of one).
    pub fn remove_staged_copy(&self, app: &str, version: &str) -> Result<(), StoreError> {
        apps::remove_dir_safely(&self.staging_dir(app, version))?;
        if let Some(parent) = self.staging_dir(app, version).parent() {
            let _ = std::fs::remove_dir(parent);
        }
        Ok(())
    }
}
