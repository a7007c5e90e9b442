//! The output directory is abacus's own: its layout, its lock, its manifest and its commit marker.
//!
//! Why: a backfill runs for days, and the directory it writes is read by pandas, polars, pyarrow,
//! DuckDB and Spark as one dataset. So
//! - **layout**: result rows are `part-NNNNN.parquet` at the top; everything else starts with `_`
//!   (`_late/`, `_rejected/`, `_summary.json`, `_manifest.json`, `_SUCCESS`) or `.` (temporary
//!   files, the lock), the names every Hive-style dataset reader skips;
//! - **lock**: a run holds an exclusive `flock` on `.abacus.lock` for its whole life, so two runs
//!   never write into one directory (the second exits 2 naming the first);
//! - **manifest**: `_manifest.json` lists every file the run may have created (before it creates it)
//!   and, once committed, its size and xxh3. `--overwrite` deletes exactly what a manifest lists and
//!   refuses a directory holding anything else; `--resume` checks the committed files are still
//!   there, byte for byte;
//! - **commit marker**: `_SUCCESS` (and `_summary.json` before it) is removed first and written
//!   last, so a directory holding `_SUCCESS` is always a complete result.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Late events' original lines (`late-NNNNN.ndjson.zst`).
pub const LATE_DIR: &str = "_late";
/// Rejected lines with their reasons (`rejected-NNNNN.ndjson.zst`).
pub const REJECTED_DIR: &str = "_rejected";
pub const SUMMARY: &str = "_summary.json";
/// Spark's empty completion marker, written last, only when the run exits 0.
pub const SUCCESS: &str = "_SUCCESS";
pub const MANIFEST: &str = "_manifest.json";
/// Held with `flock` while a run uses the directory (also in `--checkpoint-dir`).
pub const LOCK: &str = ".abacus.lock";

/// The temporary name a file is written under before it is renamed into place: hidden (a leading
/// `.`), so a reader that lists the directory mid-run or after a crash never picks it up.
pub fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "unnamed".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.tmp"))
}

/// Makes `path` durable: fsync the file, rename it into place, fsync the directory.
pub fn commit(tmp: &Path, path: &Path) -> Result<()> {
    File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::output(tmp, e))?;
    std::fs::rename(tmp, path).map_err(|e| Error::output(path, e))?;
    sync_dir(path.parent());
    Ok(())
}

fn sync_dir(dir: Option<&Path>) {
    if let Some(dir) = dir
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes).map_err(|e| Error::output(&tmp, e))?;
    commit(&tmp, path)
}

/// xxh3-64 of a file's bytes, read in 1 MiB pieces.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, u64)> {
    let mut f = File::open(path)?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, h.digest()))
}

/// An exclusive lock on a directory, held until dropped (or the process dies: `flock` locks go
/// with the file descriptor, so a killed run never leaves a stale lock behind).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Locks `dir` (which must exist) or says who holds it. `what` names the flag (`--out`).
    pub fn acquire(dir: &Path, what: &str) -> Result<DirLock> {
        let path = dir.join(LOCK);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::output(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(Error::Usage(format!(
                    "{what} {} is in use by another abacus run ({}); wait for it to finish or choose another directory",
                    dir.display(),
                    holder.trim()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::output(&path, e)),
        }
        let started = crate::timefmt::format_rfc3339(now_ms());
        let holder = format!("pid {} since {started}", std::process::id());
        let _ = file
            .set_len(0)
            .and_then(|_| file.write_all(holder.as_bytes()));
        Ok(DirLock { _file: file })
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One file of the manifest, by its path relative to the output directory (`/`-separated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    /// `None` while the file may exist only as its temporary (created, not yet committed).
    pub bytes: Option<u64>,
    pub xxh3: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ManifestFile {
    abacus_manifest: u32,
    run_id: String,
    files: Vec<Entry>,
}

/// The manifest of the run writing the directory, shared by the threads that commit files.
#[derive(Debug)]
pub struct Manifest {
    dir: PathBuf,
    inner: Mutex<ManifestFile>,
}

pub type SharedManifest = Arc<Manifest>;

impl Manifest {
    fn new(dir: &Path, file: ManifestFile) -> SharedManifest {
        Arc::new(Manifest {
            dir: dir.to_path_buf(),
            inner: Mutex::new(file),
        })
    }

    pub fn run_id(&self) -> String {
        self.lock().run_id.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ManifestFile> {
        // A panic while holding the lock cannot leave the list half-updated: every change is one
        // push or one assignment, so the poisoned value is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, m: &ManifestFile) -> Result<()> {
        let text = serde_json::to_string_pretty(m)
            .map_err(|e| Error::output(self.dir.join(MANIFEST), std::io::Error::other(e)))?;
        write_atomic(&self.dir.join(MANIFEST), (text + "\n").as_bytes())
    }

    /// Records that `path` (absolute, inside the directory) is about to be created.
    pub fn intend(&self, path: &Path) -> Result<()> {
        let rel = self.relative(path);
        let mut m = self.lock();
        if m.files.iter().any(|e| e.path == rel) {
            return Ok(());
        }
        m.files.push(Entry {
            path: rel,
            bytes: None,
            xxh3: None,
        });
        self.save(&m)
    }

    /// Records that `path` was committed: its size and checksum.
    pub fn committed(&self, path: &Path) -> Result<()> {
        let rel = self.relative(path);
        let (bytes, hash) = hash_file(path).map_err(|e| Error::output(path, e))?;
        let mut m = self.lock();
        let entry = Entry {
            path: rel.clone(),
            bytes: Some(bytes),
            xxh3: Some(format!("{hash:016x}")),
        };
        match m.files.iter_mut().find(|e| e.path == rel) {
            Some(e) => *e = entry,
            None => m.files.push(entry),
        }
        self.save(&m)
    }

    /// The committed files, for a checkpoint.
    pub fn committed_files(&self) -> Vec<Entry> {
        self.lock()
            .files
            .iter()
            .filter(|e| e.bytes.is_some())
            .cloned()
            .collect()
    }

    fn relative(&self, path: &Path) -> String {
        let rel = path.strip_prefix(&self.dir).unwrap_or(path);
        rel.components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// An output directory checked and locked for a fresh run, not yet cleared.
#[derive(Debug)]
pub struct Fresh {
    path: PathBuf,
    /// The earlier run's files, deleted by `start`.
    old: Vec<Entry>,
    lock: DirLock,
}

impl Fresh {
    /// Deletes the earlier run's files (marker and summary first) and starts a new manifest.
    pub fn start(self) -> Result<OutDir> {
        delete_listed(&self.path, &self.old)?;
        let manifest = Manifest::new(
            &self.path,
            ManifestFile {
                abacus_manifest: 1,
                run_id: new_run_id(&self.path),
                files: Vec::new(),
            },
        );
        manifest.save(&manifest.lock())?;
        Ok(OutDir {
            path: self.path,
            manifest,
            _lock: self.lock,
        })
    }
}

/// An output directory opened for a run: locked, and with its manifest.
#[derive(Debug)]
pub struct OutDir {
    pub path: PathBuf,
    pub manifest: SharedManifest,
    _lock: DirLock,
}

/// What a directory holds besides its lock: every file and folder, relative, `/`-separated.
fn contents(dir: &Path) -> Result<Vec<(String, bool)>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, bool)>) -> Result<()> {
        let entries = std::fs::read_dir(dir).map_err(|e| Error::output(dir, e))?;
        for e in entries {
            let e = e.map_err(|e| Error::output(dir, e))?;
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            if rel == LOCK {
                continue;
            }
            let is_dir = e.file_type().map_err(|e| Error::output(&path, e))?.is_dir();
            out.push((rel, is_dir));
            if is_dir {
                walk(root, &path, out)?;
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

fn read_manifest(dir: &Path) -> Result<Option<ManifestFile>> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::output(&path, e)),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Error::Usage(format!(
            "{}: not an abacus manifest ({e}); abacus will not write into {} — move the directory away or choose another --out",
            path.display(),
            dir.display()
        ))
    })
}

/// The temporary name of a manifest entry, relative.
fn tmp_rel(rel: &str) -> String {
    match rel.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/.{name}.tmp"),
        None => format!(".{rel}.tmp"),
    }
}

/// Everything in `dir` that no manifest entry accounts for (the side folders themselves aside).
fn unknown(listing: &[(String, bool)], manifest: Option<&ManifestFile>) -> Vec<String> {
    let mut known: Vec<String> = vec![MANIFEST.to_string(), tmp_rel(MANIFEST)];
    if let Some(m) = manifest {
        for e in &m.files {
            known.push(e.path.clone());
            known.push(tmp_rel(&e.path));
        }
    }
    listing
        .iter()
        .filter(|(rel, is_dir)| {
            let side = *is_dir && (rel == LATE_DIR || rel == REJECTED_DIR);
            !side && !known.contains(rel)
        })
        .map(|(rel, is_dir)| {
            if *is_dir {
                format!("{rel}/")
            } else {
                rel.clone()
            }
        })
        .collect()
}

fn name_some(list: &[String]) -> String {
    let shown: Vec<&str> = list.iter().take(5).map(String::as_str).collect();
    let more = list.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::output(path, e)),
    }
}

/// Deletes the listed files (and their temporaries), the commit marker and summary first.
fn delete_listed(dir: &Path, files: &[Entry]) -> Result<()> {
    for first in [SUCCESS, SUMMARY] {
        remove(&dir.join(first))?;
    }
    sync_dir(Some(dir));
    for e in files {
        crate::failpoint::hit("overwrite-delete");
        remove(&dir.join(&e.path))?;
        remove(&dir.join(tmp_rel(&e.path)))?;
    }
    for side in [LATE_DIR, REJECTED_DIR] {
        let p = dir.join(side);
        if std::fs::read_dir(&p).is_ok_and(|mut d| d.next().is_none()) {
            let _ = std::fs::remove_dir(&p);
        }
    }
    Ok(())
}

fn new_run_id(dir: &Path) -> String {
    let seed = format!("{} {} {}", std::process::id(), now_nanos(), dir.display());
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()))
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn open_locked(dir: &Path) -> Result<DirLock> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::Usage(format!(
            "--out {}: exists and is not a directory",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::output(dir, e))?;
    DirLock::acquire(dir, "--out")
}

impl OutDir {
    /// Opens `dir` for a fresh run: locks it, refuses anything abacus did not write, replaces an
    /// earlier run's files only with `overwrite`, and starts a new manifest.
    pub fn create(dir: &Path, overwrite: bool) -> Result<OutDir> {
        OutDir::prepare(dir, overwrite)?.start()
    }

    /// The checks of [`create`](Self::create), touching nothing: what `start` will replace.
    /// Between the two the caller removes the old checkpoints, so that a kill while the old files
    /// are deleted never leaves a checkpoint that `--resume` would take for a live run.
    pub fn prepare(dir: &Path, overwrite: bool) -> Result<Fresh> {
        let lock = open_locked(dir)?;
        let listing = contents(dir)?;
        let old = read_manifest(dir)?;
        let strangers = unknown(&listing, old.as_ref());
        if !strangers.is_empty() {
            return Err(Error::Usage(format!(
                "--out {} holds files no abacus run wrote ({}); abacus writes only into an empty directory or over its own earlier results, and never deletes what it did not write. Move them away or choose another --out",
                dir.display(),
                name_some(&strangers)
            )));
        }
        if let Some(old) = &old {
            let listed: Vec<String> = old.files.iter().map(|e| e.path.clone()).collect();
            if !overwrite {
                return Err(Error::Usage(format!(
                    "--out {} holds the results of an earlier abacus run ({}); pass --overwrite to replace them, or choose another directory",
                    dir.display(),
                    if listed.is_empty() {
                        "no files yet".to_string()
                    } else {
                        name_some(&listed)
                    }
                )));
            }
        }
        Ok(Fresh {
            path: dir.to_path_buf(),
            old: old.map(|m| m.files).unwrap_or_default(),
            lock,
        })
    }

    /// Opens `dir` to resume run `run_id` from a checkpoint that had committed `committed`: every
    /// one must be there byte for byte, and nothing unknown; then what was written after the
    /// checkpoint is removed (marker and summary first) — except, when the checkpoint marks the run
    /// `finished`, its summary and marker. Refused (exit 2) with nothing touched otherwise.
    pub fn resume(dir: &Path, run_id: &str, committed: &[Entry], finished: bool) -> Result<OutDir> {
        let refuse = |why: String| {
            Error::Resume(format!(
                "cannot resume into --out {}: {why}. Resume with the --out the interrupted run wrote, or run without --resume (and with --overwrite) to start over",
                dir.display()
            ))
        };
        if !dir.is_dir() {
            return Err(refuse("it does not exist".into()));
        }
        let lock = DirLock::acquire(dir, "--out")?;
        let Some(m) = read_manifest(dir)? else {
            return Err(refuse(format!("it holds no {MANIFEST}")));
        };
        if m.run_id != run_id {
            return Err(refuse(format!(
                "it holds the output of another run (run id {} in {MANIFEST}, {run_id} in the checkpoint)",
                m.run_id
            )));
        }
        let strangers = unknown(&contents(dir)?, Some(&m));
        if !strangers.is_empty() {
            return Err(refuse(format!(
                "it holds files no abacus run wrote ({})",
                name_some(&strangers)
            )));
        }
        for e in committed {
            let path = dir.join(&e.path);
            let found = hash_file(&path)
                .ok()
                .map(|(n, h)| (Some(n), Some(format!("{h:016x}"))));
            match found {
                None => return Err(refuse(format!("{} is missing", e.path))),
                Some(f) if f != (e.bytes, e.xxh3.clone()) => {
                    return Err(refuse(format!(
                        "{} changed since the checkpoint (size or checksum differ)",
                        e.path
                    )));
                }
                Some(_) => {}
            }
        }
        let mut files = committed.to_vec();
        if finished {
            let marker = |e: &&Entry| e.path == SUMMARY || e.path == SUCCESS;
            files.extend(m.files.iter().filter(marker).cloned());
        } else {
            let later: Vec<Entry> = m
                .files
                .iter()
                .filter(|e| !committed.iter().any(|c| c.path == e.path))
                .cloned()
                .collect();
            delete_listed(dir, &later)?;
        }
        let unchanged = files == m.files;
        let manifest = Manifest::new(
            dir,
            ManifestFile {
                abacus_manifest: 1,
                run_id: run_id.to_string(),
                files,
            },
        );
        if !unchanged {
            manifest.save(&manifest.lock())?;
        }
        Ok(OutDir {
            path: dir.to_path_buf(),
            manifest,
            _lock: lock,
        })
    }

    /// The summary of a finished run, if `dir` holds one: used when resuming a run that had ended.
    pub fn finished_summary(&self) -> Option<crate::summary::Summary> {
        let text = std::fs::read_to_string(self.path.join(SUMMARY)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes the empty `_SUCCESS` marker (last of all).
    pub fn mark_success(&self) -> Result<()> {
        let path = self.path.join(SUCCESS);
        self.manifest.intend(&path)?;
        write_atomic(&path, b"")?;
        self.manifest.committed(&path)
    }
}

/// Per-entry checksums of the committed files, for the checkpoint payload.
pub fn encode_entries(entries: &[Entry], w: &mut crate::checkpoint::Writer) {
    w.u64(entries.len() as u64);
    for e in entries {
        w.str(&e.path);
        w.u64(e.bytes.unwrap_or(0));
        w.str(e.xxh3.as_deref().unwrap_or(""));
    }
}

pub fn decode_entries(r: &mut crate::checkpoint::Reader) -> Result<Vec<Entry>> {
    let n = r.len(24)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let path = r.string()?;
        let bytes = r.u64()?;
        let xxh3 = r.string()?;
        out.push(Entry {
            path,
            bytes: Some(bytes),
            xxh3: Some(xxh3),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_names_are_hidden() {
        assert_eq!(
            tmp_path(Path::new("/o/part-00001.parquet")),
            PathBuf::from("/o/.part-00001.parquet.tmp")
        );
        assert_eq!(
            tmp_rel("_late/late-00000.ndjson.zst"),
            "_late/.late-00000.ndjson.zst.tmp"
        );
    }

    #[test]
    fn a_second_lock_is_refused_and_names_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let a = DirLock::acquire(d.path(), "--out").unwrap();
        let e = DirLock::acquire(d.path(), "--out").unwrap_err().to_string();
        assert!(e.contains("in use by another abacus run"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(a);
        DirLock::acquire(d.path(), "--out").unwrap();
    }

    #[test]
    fn overwrite_removes_only_listed_files() {
        let d = tempfile::tempdir().unwrap();
        let o = OutDir::create(d.path(), false).unwrap();
        let part = d.path().join("part-00000.parquet");
        o.manifest.intend(&part).unwrap();
        std::fs::write(&part, b"x").unwrap();
        o.manifest.committed(&part).unwrap();
        drop(o);
        // a stranger makes both a plain run and --overwrite refuse, touching nothing
        std::fs::write(d.path().join("notes.txt"), b"mine").unwrap();
        let e = OutDir::create(d.path(), true).unwrap_err().to_string();
        assert!(
            e.contains("notes.txt") && e.contains("no abacus run wrote"),
            "{e}"
        );
        assert!(part.exists());
        std::fs::remove_file(d.path().join("notes.txt")).unwrap();
        let e = OutDir::create(d.path(), false).unwrap_err().to_string();
        assert!(
            e.contains("--overwrite") && e.contains("part-00000.parquet"),
            "{e}"
        );
        let o = OutDir::create(d.path(), true).unwrap();
        assert!(!part.exists());
        assert!(o.manifest.committed_files().is_empty());
    }
}
