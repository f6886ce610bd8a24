//! Unit tests of `repo index`: layouts, bad names, the hints for a directory at the wrong level.
use super::*;

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

fn read_manifest(path: &Path) -> Manifest {
    Manifest::parse(&fs::read(path).unwrap()).unwrap()
}

/// The problems of a [`RepoServerError::Layout`] error.
fn problems(err: RepoServerError) -> Vec<RepoServerError> {
    match err {
        RepoServerError::Layout { problems, .. } => problems,
        other => panic!("not a layout error: {other:?}"),
    }
}

/// The one problem of a [`RepoServerError::Layout`] error.
fn only_problem(err: RepoServerError) -> RepoServerError {
    let mut problems = problems(err);
    assert_eq!(problems.len(), 1, "{problems:?}");
    problems.remove(0)
}

#[test]
fn index_records_sizes_and_digests_sorted_by_path() {
    let repo = tempfile::tempdir().unwrap();
    let version = repo.path().join("chromium/120.0.1");
    write(&version.join("z.bin"), b"last");
    write(&version.join("lib/a/b/c.so"), b"");
    write(
        &version.join("chromium.ipkg"),
        &vec![7u8; 3 * HASH_BUFFER_BYTES + 5],
    );

    let written = index(repo.path()).unwrap();

    assert_eq!(written, vec![version.join("app.json")]);
    let m = read_manifest(&written[0]);
    assert_eq!(
        (m.name.as_str(), m.version.as_str()),
        ("chromium", "120.0.1")
    );
    let listed: Vec<(&str, u64)> = m.files.iter().map(|f| (f.path.as_str(), f.size)).collect();
    assert_eq!(
        listed,
        [
            ("chromium.ipkg", 3 * 1024 * 1024 + 5),
            ("lib/a/b/c.so", 0),
            ("z.bin", 4)
        ]
    );
    let big = vec![7u8; 3 * HASH_BUFFER_BYTES + 5];
    assert_eq!(m.files[0].sha256, manifest::sha256_hex(&big));
    assert_eq!(m.files[2].sha256, manifest::sha256_hex(b"last"));
    assert!(!m.reboot);
}

#[test]
fn index_keeps_reboot_from_the_old_manifest_and_never_lists_itself() {
    let repo = tempfile::tempdir().unwrap();
    let version = repo.path().join("app/1.0");
    write(&version.join("data"), b"one");
    index(repo.path()).unwrap();
    let mut m = read_manifest(&version.join("app.json"));
    m.reboot = true;
    fs::write(version.join("app.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    write(&version.join("data"), b"two!");

    index(repo.path()).unwrap();

    let m = read_manifest(&version.join("app.json"));
    assert!(m.reboot);
    assert_eq!(m.files.len(), 1);
    assert_eq!(m.files[0].size, 4);
    let leftovers: Vec<_> = fs::read_dir(&version)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(TEMP_PREFIX))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_badly_named_app_directory_is_an_error_naming_it() {
    let repo = tempfile::tempdir().unwrap();
    write(&repo.path().join("Bad App/1.0/file"), b"x");

    let err = only_problem(index(repo.path()).unwrap_err());

    assert!(matches!(err, RepoServerError::BadName { .. }), "{err:?}");
    assert!(err.to_string().contains("Bad App"), "{err}");
}

#[test]
fn a_badly_named_version_or_file_is_an_error_naming_it() {
    let repo = tempfile::tempdir().unwrap();
    write(&repo.path().join("app/-1/file"), b"x");
    assert!(index(repo.path()).unwrap_err().to_string().contains("-1"));

    let repo = tempfile::tempdir().unwrap();
    write(&repo.path().join("app/1.0/has space"), b"x");
    assert!(
        index(repo.path())
            .unwrap_err()
            .to_string()
            .contains("has space")
    );
}

#[test]
fn a_file_deeper_than_four_levels_is_refused() {
    let repo = tempfile::tempdir().unwrap();
    write(&repo.path().join("app/1.0/a/b/c/d/e"), b"x");

    let err = only_problem(index(repo.path()).unwrap_err());

    assert!(matches!(err, RepoServerError::BadName { .. }), "{err:?}");
    assert!(err.to_string().contains("a/b/c/d/e"), "{err}");
    assert!(!repo.path().join("app/1.0/app.json").exists());
}

#[test]
fn a_symbolic_link_is_refused() {
    let repo = tempfile::tempdir().unwrap();
    write(&repo.path().join("app/1.0/real"), b"x");
    std::os::unix::fs::symlink("real", repo.path().join("app/1.0/link")).unwrap();

    let err = only_problem(index(repo.path()).unwrap_err());

    assert!(matches!(err, RepoServerError::Symlink { .. }), "{err:?}");
    assert!(err.to_string().contains("app/1.0/link"), "{err}");
}

#[test]
fn every_bad_name_is_reported_and_nothing_is_indexed() {
    let repo = tempfile::tempdir().unwrap();
    write(&repo.path().join("good/1.0/file"), b"x");
    write(&repo.path().join("Bad App/1.0/file"), b"x");
    write(&repo.path().join("app/-1/file"), b"x");
    write(&repo.path().join("app/2.0/has space"), b"x");
    std::os::unix::fs::symlink("good", repo.path().join("link")).unwrap();

    let err = index(repo.path()).unwrap_err();

    let text = err.to_string();
    let problems = problems(err);
    assert_eq!(problems.len(), 4, "{problems:?}");
    for name in ["Bad App", "app/-1", "has space", "link"] {
        assert!(text.contains(name), "{name}: {text}");
    }
    assert!(!repo.path().join("good/1.0/app.json").exists());
    assert!(!repo.path().join("app/2.0/app.json").exists());
}

#[test]
fn nothing_to_index_says_what_dir_looks_like() {
    let repo = tempfile::tempdir().unwrap();
    let hint = |dir: &Path| match index(dir).unwrap_err() {
        RepoServerError::NothingToIndex { hint, .. } => hint,
        other => panic!("{other:?}"),
    };
    assert!(hint(repo.path()).contains("empty"));
    write(&repo.path().join("app/1.0/file"), b"x");
    assert!(hint(&repo.path().join("app")).contains("app directory"));
    assert!(hint(&repo.path().join("app/1.0")).contains("version directory"));
    fs::create_dir_all(repo.path().join("other/empty")).unwrap();
    assert!(hint(&repo.path().join("other")).contains("subdirectories are empty"));
}

#[test]
fn a_missing_directory_is_an_error_naming_it() {
    let err = index(Path::new("/nonexistent/repo")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/repo"), "{err}");
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The committed fixtures are exactly what `repo index fixtures/repo` writes.
#[test]
fn fixtures_are_indexed() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/repo");
    let copy = tempfile::tempdir().unwrap();
    copy_tree(&fixtures, copy.path());

    let written = index(copy.path()).unwrap();

    assert!(written.len() >= 3, "{written:?}");
    for path in written {
        let rel = path.strip_prefix(copy.path()).unwrap();
        let committed = fs::read(fixtures.join(rel)).unwrap();
        assert!(
            fs::read(&path).unwrap() == committed,
            "fixtures/repo/{} is stale: run `igel-update-agent repo index fixtures/repo`",
            rel.display()
        );
    }
}

#[test]
fn large_files_get_a_chunk_index_beside_them_that_is_never_listed_as_a_file() {
    let repo = tempfile::tempdir().unwrap();
    let version = repo.path().join("app/1");
    let big: Vec<u8> = (0..600_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(&version.join("lib/big.bin"), &big);
    write(&version.join("small.bin"), b"small");
    // Left behind by a file that is gone: recognized by its first bytes, not listed.
    write(&version.join("gone.bin.chunks"), b"igelcidx and the rest");
    for _ in 0..2 {
        let written = index(repo.path()).unwrap();
        let manifest = read_manifest(&written[0]);
        let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["lib/big.bin", "small.bin"]);
        assert!(manifest.files[1].chunks.is_none());
        let chunks = manifest.files[0].chunks.as_ref().unwrap();
        assert_eq!(chunks.path, "lib/big.bin.chunks");
        let bytes = fs::read(version.join(&chunks.path)).unwrap();
        assert_eq!(
            (bytes.len() as u64, manifest::sha256_hex(&bytes)),
            (chunks.size, chunks.sha256.clone())
        );
        let parsed = crate::chunks::Index::parse(&bytes, big.len() as u64).unwrap();
        let fine = fs::read(version.join(chunks.fine_path())).unwrap();
        assert_eq!(fine.len() as u64, parsed.fine_bytes());
        // Readable by the web server, like app.json.
        let mode = fs::metadata(version.join(chunks.fine_path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }
}

#[test]
fn an_app_file_where_a_chunk_index_goes_is_never_overwritten() {
    let repo = tempfile::tempdir().unwrap();
    let version = repo.path().join("app/1");
    let big: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    write(&version.join("big.bin"), &big);
    write(&version.join("big.bin.chunks"), b"the app's own file");

    let err = index(repo.path()).unwrap_err().to_string();

    assert!(
        err.contains("big.bin.chunks") && err.contains("not one"),
        "{err}"
    );
    assert_eq!(
        fs::read(version.join("big.bin.chunks")).unwrap(),
        b"the app's own file"
    );
    assert!(!version.join("app.json").exists());
}
