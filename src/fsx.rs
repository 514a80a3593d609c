//! Atomic files: the one way tripletgen writes a file that someone reads later (outputs, the saved
//! HNSW graph, TREC run files).
//!
//! A file is written under a hidden temporary name in its own folder, `.<name>.<pid>.<random>.tmp`,
//! synced, made an ordinary 0644 file and renamed into place, so a file with its final name is always
//! whole. A kill skips the cleanup, so every [`AtomicFile::create`] first sweeps the folder for
//! temporaries of the same name whose writer process is gone (a live writer's file is left alone:
//! two runs may share a workspace). Temporaries named by earlier versions (`.<name>.<random>.tmp`
//! for outputs, `.hnsw-tmp-<pid>-<random>` for the graph) are swept by the same rule.
//!
//! Killpoints `<stage>-synced` (the temporary is whole) and `<stage>-renamed` are hit on commit, so
//! the kill sweep (tests/kill_sweep.rs) covers both sides of the rename.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Random characters in a temporary file's name.
const TEMP_RAND: usize = 6;

/// A file that appears under its name only when [`AtomicFile::commit`] is called; dropped without a
/// commit, its temporary file is removed.
pub(crate) struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
    checkpoints: (&'static str, &'static str),
}

impl AtomicFile {
    /// Start writing `path` (creating its folder); `stage` names the killpoints hit on commit
    /// (`<stage>-synced`, `<stage>-renamed`).
    pub(crate) fn create(path: &Path, checkpoints: (&'static str, &'static str)) -> std::io::Result<AtomicFile> {
        let dir = folder_of(path);
        std::fs::create_dir_all(dir)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        sweep_stale(dir, &name);
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}.{}.", std::process::id()))
            .rand_bytes(TEMP_RAND)
            .suffix(".tmp")
            .tempfile_in(dir)?;
        Ok(AtomicFile { tmp, path: path.to_path_buf(), checkpoints })
    }

    /// The file to write to.
    pub(crate) fn file(&mut self) -> &mut std::fs::File {
        self.tmp.as_file_mut()
    }

    /// Sync and rename into place.
    pub(crate) fn commit(self) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            // Temporary files are created 0600; a finished file is an ordinary file.
            use std::os::unix::fs::PermissionsExt;
            self.tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
        }
        self.tmp.as_file().sync_all()?;
        crate::killpoint::hit(self.checkpoints.0);
        self.tmp.persist(&self.path).map_err(|e| e.error)?;
        crate::killpoint::hit(self.checkpoints.1);
        Ok(())
    }
}

/// Write `bytes` to `path` atomically.
pub(crate) fn write(path: &Path, bytes: &[u8], checkpoints: (&'static str, &'static str)) -> std::io::Result<()> {
    let mut f = AtomicFile::create(path, checkpoints)?;
    f.file().write_all(bytes)?;
    f.commit()
}

fn folder_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Remove the temporaries of `name` in `dir` whose writer is gone.
fn sweep_stale(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let file = e.file_name();
        if stale_temp_of(&file.to_string_lossy(), name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Is `file` a temporary of `name` whose writer is gone?
fn stale_temp_of(file: &str, name: &str) -> bool {
    let alive =
        |pid: &str| pid.parse::<u32>().is_ok_and(|p| p == std::process::id() || Path::new("/proc").join(pid).exists());
    if let Some(rest) = file.strip_prefix(&format!(".{name}.")).and_then(|r| r.strip_suffix(".tmp")) {
        return match rest.split_once('.') {
            // `.<name>.<pid>.<random>.tmp`
            Some((pid, rand)) if rand.len() == TEMP_RAND => pid.parse::<u32>().is_ok() && !alive(pid),
            // `.<name>.<random>.tmp` (earlier versions; one writer per output folder)
            None => rest.len() == TEMP_RAND,
            _ => false,
        };
    }
    // `.hnsw-tmp-<pid>-<random>` (earlier versions' graph temporaries)
    if name == "hnsw.bin"
        && let Some(pid) = file.strip_prefix(".hnsw-tmp-").and_then(|r| r.split('-').next())
    {
        return pid.parse::<u32>().is_ok() && !alive(pid);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_file_is_whole_and_nothing_else_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.json");
        write(&path, b"{}", ("t-synced", "t-renamed")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        let names: Vec<_> =
            std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.json")]);
        let uncommitted = AtomicFile::create(&path, ("t-synced", "t-renamed")).unwrap();
        drop(uncommitted);
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "a dropped file leaves nothing");
    }

    #[test]
    fn temporaries_of_dead_writers_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let files = [
            (".out.json.4294967.abcdef.tmp".to_string(), true),
            (format!(".out.json.{me}.abcdef.tmp"), false),
            (".out.json.abcdef.tmp".to_string(), true),
            (".other.json.4294967.abcdef.tmp".to_string(), false),
            ("out.json.4294967.abcdef.tmp".to_string(), false),
        ];
        for (f, _) in &files {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        std::fs::write(dir.path().join(".hnsw-tmp-4294967-abc"), b"x").unwrap();
        std::fs::write(dir.path().join(format!(".hnsw-tmp-{me}-abc")), b"x").unwrap();
        write(&dir.path().join("out.json"), b"1", ("t-synced", "t-renamed")).unwrap();
        for (f, swept) in &files {
            assert_eq!(!dir.path().join(f).exists(), *swept, "{f}");
        }
        write(&dir.path().join("hnsw.bin"), b"1", ("t-synced", "t-renamed")).unwrap();
        assert!(!dir.path().join(".hnsw-tmp-4294967-abc").exists());
        assert!(dir.path().join(format!(".hnsw-tmp-{me}-abc")).exists());
    }
}
