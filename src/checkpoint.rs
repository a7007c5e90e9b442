//! Checkpoints: the whole run state at a batch boundary, so a replay of years survives a crash.
//!
//! A checkpoint file is a small fixed header (magic, format version, flags, the run's fingerprint,
//! payload length, xxh3 checksum of the payload) followed by a zstd-compressed payload in a compact
//! hand-written little-endian encoding — generic serialization of large state was the bottleneck in
//! production, and this format is a straight copy of the hash maps' contents. Files are written under
//! a temporary name, fsynced, renamed and the directory fsynced; the newest two are kept. A torn or
//! corrupt file fails its checksum, and the previous one is used.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"ABACUSCK";
pub const VERSION: u32 = 5;
const HEADER: usize = 8 + 4 + 4 + 8 + 8 + 8;
const KEEP: usize = 2;

/// Appends little-endian values to a buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    #[inline]
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    #[inline]
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    #[inline]
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    #[inline]
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
    }
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
}

/// Reads what [`Writer`] wrote; every read is bounds-checked so a damaged payload is an error.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

fn damaged() -> Error {
    Error::Checkpoint("the checkpoint payload is damaged".into())
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(damaged)?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| damaged())?,
        ))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| damaged())?,
        ))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| damaged())?,
        ))
    }
    /// A length prefix, checked against what is left so a damaged one cannot ask for huge memory.
    pub fn len(&mut self, item_bytes: usize) -> Result<usize> {
        let n = self.u64()? as usize;
        if n.saturating_mul(item_bytes.max(1)) > self.data.len() - self.pos {
            return Err(damaged());
        }
        Ok(n)
    }
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.len(1)?;
        self.take(n)
    }
    pub fn string(&mut self) -> Result<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| damaged())
    }
    pub fn is_empty(&self) -> bool {
        self.pos == self.data.len()
    }
}

/// A verified checkpoint read from disk.
pub struct Loaded {
    pub path: PathBuf,
    pub complete: bool,
    pub fingerprint: u64,
    pub payload: Vec<u8>,
}

fn file_name(seq: u64) -> String {
    format!("ckpt-{seq:08}.bin")
}

/// Checkpoint files in `dir`, newest first, with their sequence numbers.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(Error::Checkpoint(format!(
                "{}: cannot read the checkpoint directory: {e}",
                dir.display()
            )));
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(seq) = name
            .strip_prefix("ckpt-")
            .and_then(|s| s.strip_suffix(".bin"))
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((seq, entry.path()));
        }
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.0));
    Ok(out)
}

/// Writes a checkpoint atomically and durably, then prunes all but the newest [`KEEP`].
pub fn write(
    dir: &Path,
    seq: u64,
    fingerprint: u64,
    complete: bool,
    payload: &[u8],
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::output(dir, e))?;
    let compressed = zstd::bulk::compress(payload, 1).map_err(|e| Error::output(dir, e))?;
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&(complete as u32).to_le_bytes());
    header.extend_from_slice(&fingerprint.to_le_bytes());
    header.extend_from_slice(&(compressed.len() as u64).to_le_bytes());
    header.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&compressed).to_le_bytes());
    let path = dir.join(file_name(seq));
    let tmp = dir.join(format!("{}.tmp", file_name(seq)));
    let mut f = File::create(&tmp).map_err(|e| Error::output(&tmp, e))?;
    let half = compressed.len() / 2;
    f.write_all(&header)
        .and_then(|_| f.write_all(&compressed[..half]))
        .and_then(|_| {
            crate::failpoint::hit("checkpoint-write");
            f.write_all(&compressed[half..])
        })
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::output(&tmp, e))?;
    drop(f);
    crate::outdir::commit(&tmp, &path)?;
    for (_, old) in list(dir)?.into_iter().skip(KEEP) {
        let _ = std::fs::remove_file(old);
    }
    Ok(path)
}

/// Reads and verifies one checkpoint file.
pub fn read(path: &Path) -> Result<Loaded> {
    let bad = |why: &str| Error::Checkpoint(format!("{}: {why}", path.display()));
    let data = std::fs::read(path).map_err(|e| bad(&format!("cannot read: {e}")))?;
    if data.len() < HEADER || &data[..8] != MAGIC {
        return Err(bad("not an abacus checkpoint (bad magic or too short)"));
    }
    let u32_at = |i: usize| u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let version = u32_at(8);
    if version != VERSION {
        return Err(bad(&format!(
            "format version {version}; this abacus reads version {VERSION}"
        )));
    }
    let complete = u32_at(12) != 0;
    let fingerprint = u64_at(16);
    let len = u64_at(24) as usize;
    let checksum = u64_at(32);
    let body = &data[HEADER..];
    if body.len() != len {
        return Err(bad(&format!(
            "truncated: {} of {len} payload bytes",
            body.len()
        )));
    }
    if xxhash_rust::xxh3::xxh3_64(body) != checksum {
        return Err(bad("checksum mismatch (the file is damaged)"));
    }
    let payload =
        zstd::stream::decode_all(body).map_err(|e| bad(&format!("cannot decompress: {e}")))?;
    Ok(Loaded {
        path: path.to_path_buf(),
        complete,
        fingerprint,
        payload,
    })
}

/// The newest checkpoint that verifies, with a warning for each newer one that did not.
pub fn newest(dir: &Path) -> Result<(Option<Loaded>, Vec<String>)> {
    let mut warnings = Vec::new();
    for (_, path) in list(dir)? {
        match read(&path) {
            Ok(c) => return Ok((Some(c), warnings)),
            Err(e) => warnings.push(format!("{e}; falling back to the previous checkpoint")),
        }
    }
    Ok((None, warnings))
}

/// Removes leftover temporary files of an interrupted checkpoint write.
pub fn clean_tmp(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::default();
        w.u64(7);
        w.str("hello");
        w.i64(-3);
        write(dir.path(), 1, 99, false, &w.buf).unwrap();
        write(dir.path(), 2, 99, true, &w.buf).unwrap();
        write(dir.path(), 3, 99, true, &w.buf).unwrap();
        assert_eq!(list(dir.path()).unwrap().len(), 2, "keeps the newest two");
        let c = read(&dir.path().join(file_name(3))).unwrap();
        assert!(c.complete);
        assert_eq!(c.fingerprint, 99);
        let mut r = Reader::new(&c.payload);
        assert_eq!(r.u64().unwrap(), 7);
        assert_eq!(r.string().unwrap(), "hello");
        assert_eq!(r.i64().unwrap(), -3);
        assert!(r.is_empty());
        assert!(r.u8().is_err());

        // flip a byte in the newest: the previous one is used, with a warning
        let newest_path = dir.path().join(file_name(3));
        let mut bytes = std::fs::read(&newest_path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&newest_path, &bytes).unwrap();
        let (c, warnings) = newest(dir.path()).unwrap();
        assert_eq!(c.unwrap().path, dir.path().join(file_name(2)));
        assert_eq!(warnings.len(), 1);
        // truncate the other as well: nothing usable
        std::fs::write(dir.path().join(file_name(2)), &bytes[..20]).unwrap();
        let (c, warnings) = newest(dir.path()).unwrap();
        assert!(c.is_none());
        assert_eq!(warnings.len(), 2);
    }

    #[test]
    fn damaged_lengths_are_errors() {
        let mut w = Writer::default();
        w.u64(u64::MAX);
        let mut r = Reader::new(&w.buf);
        assert!(r.bytes().is_err());
    }
}
