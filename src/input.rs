//! The source stage: finds the input files, recognises their format, and turns them into a stream of
//! decoded blocks in input order.
//!
//! Files are memory-mapped. A zstd file made of several frames (as `abacus generate` writes them) is
//! decoded a group of frames at a time in parallel; a single-frame file is decoded as a stream. Blocks
//! carry their file index and decoded offset so every later message can name the file, line and byte.

use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

use memmap2::Mmap;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Decoded bytes per block when decoding a stream or slicing a plain file.
pub const BLOCK_BYTES: usize = 4 << 20;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Plain,
    Zstd,
    Empty,
}

/// One input file.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: PathBuf,
    pub size: u64,
    pub format: Format,
}

/// A piece of one file's decoded bytes.
#[derive(Debug)]
pub struct Block {
    pub file: usize,
    /// Decoded offset of `data[0]` in its file.
    pub offset: u64,
    pub data: Vec<u8>,
    /// Input (on-disk) bytes of this file consumed once this block is done, for progress.
    pub consumed: u64,
    /// The file's last block (its final line may lack a newline).
    pub last: bool,
}

/// What the reader thread sends: blocks, and a file that could not be decoded to its end.
#[derive(Debug)]
pub enum SourceMsg {
    Block(Block),
    /// Decoding failed at `offset` (on-disk bytes) of `file`; blocks before it were sent.
    Corrupt {
        file: usize,
        offset: u64,
        reason: String,
    },
}

fn has_input_extension(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    [".ndjson", ".ndjson.zst", ".jsonl", ".jsonl.zst"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::input(dir, format!("cannot read the directory: {e}")))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| Error::input(dir, format!("cannot read the directory: {e}")))?;
        let path = entry.path();
        let ft = entry
            .file_type()
            .map_err(|e| Error::input(&path, e.to_string()))?;
        if ft.is_dir() {
            walk(&path, out)?;
        } else if has_input_extension(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Expands the command line's inputs: files as given, directories to their `*.ndjson[.zst]` and
/// `*.jsonl[.zst]` files (recursively, sorted by path), and glob patterns (sorted).
pub fn expand(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for arg in args {
        if arg.is_dir() {
            let mut found = Vec::new();
            walk(arg, &mut found)?;
            if found.is_empty() {
                return Err(Error::input(
                    arg,
                    "the directory holds no *.ndjson, *.ndjson.zst, *.jsonl or *.jsonl.zst file",
                ));
            }
            found.sort();
            files.extend(found);
        } else if arg.exists() {
            files.push(arg.clone());
        } else {
            let pattern = arg.to_string_lossy();
            if pattern.contains(['*', '?', '[']) {
                let paths = glob::glob(&pattern).map_err(|e| {
                    Error::Usage(format!("{pattern}: not a valid glob pattern: {e}"))
                })?;
                let mut found: Vec<PathBuf> = paths
                    .filter_map(|p| p.ok())
                    .filter(|p| p.is_file())
                    .collect();
                if found.is_empty() {
                    return Err(Error::input(arg, "the pattern matches no file"));
                }
                found.sort();
                files.extend(found);
            } else {
                return Err(Error::input(arg, "no such file or directory"));
            }
        }
    }
    if files.is_empty() {
        return Err(Error::Usage(
            "no input given: name files, directories or glob patterns to read".into(),
        ));
    }
    Ok(files)
}

/// Recognises the format from the first bytes. Formats that are certainly not NDJSON are refused by name.
pub fn sniff(path: &Path, head: &[u8]) -> Result<Format> {
    if head.is_empty() {
        return Ok(Format::Empty);
    }
    if head.starts_with(&ZSTD_MAGIC) {
        return Ok(Format::Zstd);
    }
    let known: &[(&[u8], &str)] = &[
        (&[0x1F, 0x8B], "gzip"),
        (b"PAR1", "Parquet"),
        (b"BZh", "bzip2"),
        (&[0xFD, b'7', b'z', b'X', b'Z', 0x00], "xz"),
        (&[0x04, 0x22, 0x4D, 0x18], "lz4"),
        (b"PK\x03\x04", "zip"),
        (b"ORC", "ORC"),
        (b"Obj\x01", "Avro"),
        (b"SQLite format 3", "SQLite"),
        (b"ARROW1", "Arrow IPC"),
    ];
    for (magic, name) in known {
        if head.starts_with(magic) {
            return Err(Error::input(
                path,
                format!(
                    "this is a {name} file, not NDJSON; abacus reads NDJSON, plain or zstd-compressed (decompress or convert it first)"
                ),
            ));
        }
    }
    let probe = &head[..head.len().min(4096)];
    if probe.contains(&0) {
        return Err(Error::input(
            path,
            "this looks like binary data (NUL bytes in the first 4 KiB), not NDJSON",
        ));
    }
    Ok(Format::Plain)
}

/// Opens every input to check it exists, is readable and looks like NDJSON, before any work starts.
pub fn open_all(paths: &[PathBuf]) -> Result<Vec<InputFile>> {
    paths
        .iter()
        .map(|path| {
            let file = std::fs::File::open(path)
                .map_err(|e| Error::input(path, format!("cannot open: {e}")))?;
            let size = file
                .metadata()
                .map_err(|e| Error::input(path, e.to_string()))?
                .len();
            let mut head = vec![0u8; 4096.min(size as usize)];
            use std::io::Read;
            (&file)
                .read_exact(&mut head)
                .map_err(|e| Error::input(path, format!("cannot read: {e}")))?;
            Ok(InputFile {
                path: path.clone(),
                size,
                format: sniff(path, &head)?,
            })
        })
        .collect()
}

fn map(path: &Path) -> Result<Mmap> {
    let file =
        std::fs::File::open(path).map_err(|e| Error::input(path, format!("cannot open: {e}")))?;
    // SAFETY: the file is only read. If another process truncates it while we run, reads can fault;
    // that is the documented caveat of memory-mapped input (README, "Input").
    unsafe { Mmap::map(&file) }.map_err(|e| Error::input(path, format!("cannot memory-map: {e}")))
}

/// Splits a zstd file into its frames. `None` if the file does not end on a frame boundary (it is
/// truncated or corrupt): then it is decoded as a stream, which finds the exact failing offset.
fn frames(data: &[u8]) -> Option<Vec<(usize, usize)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let len = zstd::zstd_safe::find_frame_compressed_size(&data[pos..]).ok()?;
        if len == 0 {
            return None;
        }
        out.push((pos, pos + len));
        pos += len;
    }
    Some(out)
}

fn decode_frame(frame: &[u8]) -> std::io::Result<Vec<u8>> {
    let hint = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(n)) if n <= (1 << 30) => n as usize,
        _ => frame.len() * 4,
    };
    let mut out = Vec::with_capacity(hint);
    let mut dec = zstd::stream::read::Decoder::with_buffer(frame)?;
    std::io::copy(&mut dec, &mut out)?;
    Ok(out)
}

/// Reads `files` in order and sends their decoded blocks. Returns when done, on a send failure (the
/// receiver stopped), or with the first error that makes a file unreadable.
///
/// `skip_to` resumes inside the stream: the file index and decoded offset of the first byte wanted.
pub fn read_all(
    files: &[InputFile],
    parallel_frames: usize,
    skip_to: (usize, u64),
    tx: &SyncSender<SourceMsg>,
) -> Result<()> {
    for (fi, f) in files.iter().enumerate().skip(skip_to.0) {
        let skip = if fi == skip_to.0 { skip_to.1 } else { 0 };
        let send = |b: Block| tx.send(SourceMsg::Block(b)).is_ok();
        if f.format == Format::Empty {
            if !send(Block {
                file: fi,
                offset: 0,
                data: Vec::new(),
                consumed: 0,
                last: true,
            }) {
                return Ok(());
            }
            continue;
        }
        let mmap = map(&f.path)?;
        let data: &[u8] = &mmap;
        match f.format {
            Format::Plain | Format::Empty => {
                let mut pos = skip as usize;
                if pos >= data.len() {
                    if !send(Block {
                        file: fi,
                        offset: data.len() as u64,
                        data: Vec::new(),
                        consumed: data.len() as u64,
                        last: true,
                    }) {
                        return Ok(());
                    }
                }
                while pos < data.len() {
                    let end = (pos + BLOCK_BYTES).min(data.len());
                    let b = Block {
                        file: fi,
                        offset: pos as u64,
                        data: data[pos..end].to_vec(),
                        consumed: end as u64,
                        last: end == data.len(),
                    };
                    if !send(b) {
                        return Ok(());
                    }
                    pos = end;
                }
            }
            Format::Zstd => {
                if !read_zstd(fi, data, parallel_frames, skip, tx)? {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// Decodes one zstd file. Returns false if the receiver hung up.
fn read_zstd(
    fi: usize,
    data: &[u8],
    parallel_frames: usize,
    skip: u64,
    tx: &SyncSender<SourceMsg>,
) -> Result<bool> {
    let send = |b: Block| tx.send(SourceMsg::Block(b)).is_ok();
    let mut decoded: u64 = 0;
    if let Some(frames) = frames(data).filter(|f| f.len() > 1) {
        let mut i = 0;
        while i < frames.len() {
            // Frames wholly before the resume point are skipped without decoding when their size is known.
            if decoded < skip {
                if let Ok(Some(n)) =
                    zstd::zstd_safe::get_frame_content_size(&data[frames[i].0..frames[i].1])
                {
                    if decoded + n <= skip {
                        decoded += n;
                        i += 1;
                        continue;
                    }
                }
            }
            let group = &frames[i..(i + parallel_frames.max(1)).min(frames.len())];
            let outs: Vec<std::io::Result<Vec<u8>>> = group
                .par_iter()
                .map(|&(a, b)| decode_frame(&data[a..b]))
                .collect();
            for (&(a, b), out) in group.iter().zip(outs) {
                i += 1;
                let out = match out {
                    Ok(out) => out,
                    Err(e) => {
                        let _ = tx.send(SourceMsg::Corrupt {
                            file: fi,
                            offset: a as u64,
                            reason: format!("zstd frame at byte {a} does not decode: {e}"),
                        });
                        return Ok(true);
                    }
                };
                let start = decoded;
                decoded += out.len() as u64;
                let last = i == frames.len();
                if decoded <= skip && !last {
                    continue;
                }
                let cut = skip.saturating_sub(start).min(out.len() as u64) as usize;
                let data = if cut > 0 { out[cut..].to_vec() } else { out };
                if !send(Block {
                    file: fi,
                    offset: start + cut as u64,
                    data,
                    consumed: b as u64,
                    last,
                }) {
                    return Ok(false);
                }
            }
        }
        return Ok(true);
    }
    // One frame, or a file that does not split cleanly into frames: decode as a stream.
    let mut counter = CountingReader {
        inner: data,
        read: 0,
    };
    let mut dec = match zstd::stream::read::Decoder::with_buffer(&mut counter) {
        Ok(d) => d,
        Err(e) => {
            let _ = tx.send(SourceMsg::Corrupt {
                file: fi,
                offset: 0,
                reason: format!("cannot start zstd decoding: {e}"),
            });
            return Ok(true);
        }
    };
    use std::io::Read;
    loop {
        let mut buf = vec![0u8; BLOCK_BYTES];
        let mut filled = 0;
        let mut failure = None;
        while filled < buf.len() {
            match dec.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        buf.truncate(filled);
        let consumed = dec.get_ref().read as u64;
        let start = decoded;
        decoded += filled as u64;
        let done = filled == 0
            || failure.is_some()
            || consumed >= data.len() as u64 && filled < BLOCK_BYTES;
        if decoded > skip || done {
            let cut = skip.saturating_sub(start).min(filled as u64) as usize;
            if cut > 0 {
                buf.drain(..cut);
            }
            let block = Block {
                file: fi,
                offset: start + cut as u64,
                data: buf,
                consumed,
                last: done,
            };
            if !send(block) {
                return Ok(false);
            }
        }
        if let Some(e) = failure {
            let reason = if consumed >= data.len() as u64 {
                format!("the zstd data ends early (truncated file?): {e}")
            } else {
                format!("zstd data corrupt: {e}")
            };
            let _ = tx.send(SourceMsg::Corrupt {
                file: fi,
                offset: consumed,
                reason,
            });
            return Ok(true);
        }
        if done {
            return Ok(true);
        }
    }
}

struct CountingReader<'a> {
    inner: &'a [u8],
    read: usize,
}

impl std::io::Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.inner.len() - self.read);
        buf[..n].copy_from_slice(&self.inner[self.read..self.read + n]);
        self.read += n;
        Ok(n)
    }
}

impl std::io::BufRead for CountingReader<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        Ok(&self.inner[self.read..])
    }
    fn consume(&mut self, amt: usize) {
        self.read = (self.read + amt).min(self.inner.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_formats() {
        let p = Path::new("x");
        assert_eq!(sniff(p, b"").unwrap(), Format::Empty);
        assert_eq!(sniff(p, b"{\"a\":1}\n").unwrap(), Format::Plain);
        assert_eq!(
            sniff(p, &[0x28, 0xB5, 0x2F, 0xFD, 0]).unwrap(),
            Format::Zstd
        );
        assert!(
            sniff(p, &[0x1F, 0x8B, 8, 0])
                .unwrap_err()
                .to_string()
                .contains("gzip")
        );
        assert!(
            sniff(p, b"PAR1\x15\x04")
                .unwrap_err()
                .to_string()
                .contains("Parquet")
        );
        assert!(
            sniff(p, b"ab\0cd")
                .unwrap_err()
                .to_string()
                .contains("binary")
        );
    }

    fn collect(files: &[InputFile], skip: (usize, u64)) -> (Vec<u8>, Vec<SourceMsg>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1000);
        read_all(files, 3, skip, &tx).unwrap();
        drop(tx);
        let msgs: Vec<SourceMsg> = rx.into_iter().collect();
        let mut bytes = Vec::new();
        for m in &msgs {
            if let SourceMsg::Block(b) = m {
                bytes.extend_from_slice(&b.data);
            }
        }
        (bytes, msgs)
    }

    #[test]
    fn multi_frame_and_stream_decode_agree() {
        let dir = tempfile::tempdir().unwrap();
        let text: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("{{\"n\":{i}}}\n").into_bytes())
            .collect();
        let mut multi = Vec::new();
        for chunk in text.chunks(10_000) {
            multi.extend(zstd::bulk::compress(chunk, 1).unwrap());
        }
        let single = zstd::bulk::compress(&text, 1).unwrap();
        let mut files = Vec::new();
        for (name, bytes) in [("m.ndjson.zst", &multi), ("s.ndjson.zst", &single)] {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            files.push(InputFile {
                path: p,
                size: bytes.len() as u64,
                format: Format::Zstd,
            });
        }
        for f in &files {
            let (bytes, _) = collect(std::slice::from_ref(f), (0, 0));
            assert_eq!(bytes, text);
            let (tail, _) = collect(std::slice::from_ref(f), (0, 123_457));
            assert_eq!(tail, &text[123_457..]);
        }
    }

    #[test]
    fn truncated_zstd_reports_offset() {
        let dir = tempfile::tempdir().unwrap();
        let text: Vec<u8> = (0..50_000)
            .flat_map(|i| format!("{{\"n\":{i}}}\n").into_bytes())
            .collect();
        let z = zstd::bulk::compress(&text, 1).unwrap();
        let cut = &z[..z.len() / 2];
        let p = dir.path().join("t.ndjson.zst");
        std::fs::write(&p, cut).unwrap();
        let f = InputFile {
            path: p,
            size: cut.len() as u64,
            format: Format::Zstd,
        };
        let (bytes, msgs) = collect(&[f], (0, 0));
        assert!(text.starts_with(&bytes));
        assert!(msgs.iter().any(|m| matches!(m, SourceMsg::Corrupt { .. })));
    }
}
