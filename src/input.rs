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

/// Drops the pages of `mmap` below `upto` from this process's resident set once they are decoded:
/// they stay in the page cache, but memory use is then bounded by the state, not the input size.
fn release(mmap: &Mmap, upto: usize) {
    let len = upto.min(mmap.len()) & !0xFFF;
    if len > 0 {
        // SAFETY: the mapping is read-only and private to this process; after MADV_DONTNEED a later
        // read of these pages (e.g. the recovery of a damaged zstd file) faults them in again from
        // the file, so no data is lost. The bytes already handed on were copied out.
        let _ = unsafe { mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, 0, len) };
    }
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
pub(crate) fn frames(data: &[u8]) -> Option<Vec<(usize, usize)>> {
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

pub(crate) fn decode_frame(frame: &[u8]) -> std::io::Result<Vec<u8>> {
    if let Ok(Some(n)) = zstd::zstd_safe::get_frame_content_size(frame)
        && n <= (1 << 30)
    {
        // The header gives the size (`abacus generate` and most tools write it): decoding in one
        // shot into an exact buffer skips the stream's window copies, ~25% faster.
        return zstd::bulk::decompress(frame, n as usize);
    }
    let mut out = Vec::with_capacity(frame.len() * 4);
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
                if pos >= data.len()
                    && !send(Block {
                        file: fi,
                        offset: data.len() as u64,
                        data: Vec::new(),
                        consumed: data.len() as u64,
                        last: true,
                    })
                {
                    return Ok(());
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
                    release(&mmap, end);
                    pos = end;
                }
            }
            Format::Zstd => {
                if !read_zstd(fi, &mmap, parallel_frames, skip, tx)? {
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
    mmap: &Mmap,
    parallel_frames: usize,
    skip: u64,
    tx: &SyncSender<SourceMsg>,
) -> Result<bool> {
    let data: &[u8] = mmap;
    let send = |b: Block| tx.send(SourceMsg::Block(b)).is_ok();
    let mut decoded: u64 = 0;
    let frames = frames(data);
    // Finding the frames touched every block header, paging the whole file in: let it go again.
    release(mmap, data.len());
    if let Some(frames) = frames.filter(|f| f.len() > 1) {
        let mut i = 0;
        while i < frames.len() {
            // Frames wholly before the resume point are skipped without decoding when their size is known.
            if decoded < skip
                && let Ok(Some(n)) =
                    zstd::zstd_safe::get_frame_content_size(&data[frames[i].0..frames[i].1])
                && decoded + n <= skip
            {
                decoded += n;
                i += 1;
                continue;
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
                release(mmap, b);
            }
        }
        return Ok(true);
    }
    // One frame, or a file that does not split cleanly into frames: decode as a stream. Input goes
    // in small pieces so that, when the data turns out corrupt or truncated, everything decoded
    // before the damaged block has already been handed on, and the failing offset is known.
    const STEP: usize = 16 << 10;
    let mut dctx = zstd::zstd_safe::DCtx::create();
    let mut pos = 0usize;
    let mut out: Vec<u8> = Vec::with_capacity(BLOCK_BYTES + (256 << 10));
    let mut in_frame = false;
    let mut failure: Option<(usize, String)> = None;
    let mut window = vec![0u8; 64 << 10];
    loop {
        let input_done = pos >= data.len();
        if out.len() >= BLOCK_BYTES || input_done {
            let start = decoded;
            decoded += out.len() as u64;
            let last = input_done;
            if decoded > skip || last {
                let cut = skip.saturating_sub(start).min(out.len() as u64) as usize;
                let mut block_data =
                    std::mem::replace(&mut out, Vec::with_capacity(BLOCK_BYTES + (256 << 10)));
                if cut > 0 {
                    block_data.drain(..cut);
                }
                if !send(Block {
                    file: fi,
                    offset: start + cut as u64,
                    data: block_data,
                    consumed: pos as u64,
                    last,
                }) {
                    return Ok(false);
                }
                release(mmap, pos.saturating_sub(STEP));
            } else {
                out.clear();
            }
            if last {
                break;
            }
        }
        let end = (pos + STEP).min(data.len());
        let mut input = zstd::zstd_safe::InBuffer::around(&data[pos..end]);
        let mut output = zstd::zstd_safe::OutBuffer::around(&mut window[..]);
        match dctx.decompress_stream(&mut output, &mut input) {
            Ok(hint) => {
                let n = output.pos();
                out.extend_from_slice(&window[..n]);
                pos += input.pos();
                in_frame = hint != 0;
                if n == 0 && input.pos() == 0 && in_frame && end == data.len() {
                    // No progress possible: the frame needs input that is not there.
                    pos = data.len();
                }
            }
            Err(code) => {
                let at = pos + input.pos();
                failure = Some((
                    at,
                    format!(
                        "zstd data corrupt: {}",
                        zstd::zstd_safe::get_error_name(code)
                    ),
                ));
                // The failing call's output is dropped; decode once more, byte by byte, to recover
                // everything that precedes the damage exactly.
                let delivered = decoded + out.len() as u64;
                out.extend_from_slice(&recover_tail(data, delivered));
                // Stop reading this file; the next turn hands on what decoded before the damage.
                pos = data.len();
            }
        }
        if failure.is_none() && pos >= data.len() && in_frame {
            failure = Some((
                pos,
                "the zstd data ends in the middle of a frame (truncated file?)".into(),
            ));
        }
    }
    if let Some((offset, reason)) = failure {
        let _ = tx.send(SourceMsg::Corrupt {
            file: fi,
            offset: offset as u64,
            reason,
        });
    }
    Ok(true)
}

/// Error path only: decodes `data` from the start again, skips the first `from` decoded bytes, and
/// returns the bytes after them that decode before the first error, one output byte per call so
/// that nothing decodable is lost with the failing call.
fn recover_tail(data: &[u8], from: u64) -> Vec<u8> {
    let mut dctx = zstd::zstd_safe::DCtx::create();
    let mut produced: u64 = 0;
    let mut tail = Vec::new();
    let mut pos = 0usize;
    let mut window = vec![0u8; 64 << 10];
    while pos < data.len() {
        let want = if produced < from {
            ((from - produced) as usize).min(window.len())
        } else {
            1
        };
        let mut input = zstd::zstd_safe::InBuffer::around(&data[pos..(pos + 4096).min(data.len())]);
        let mut output = zstd::zstd_safe::OutBuffer::around(&mut window[..want]);
        match dctx.decompress_stream(&mut output, &mut input) {
            Ok(_) => {
                let n = output.pos();
                if n == 0 && input.pos() == 0 {
                    break;
                }
                if produced >= from {
                    tail.extend_from_slice(&window[..n]);
                }
                produced += n as u64;
                pos += input.pos();
            }
            Err(_) => break,
        }
        if tail.len() > (8 << 20) {
            break; // zstd blocks are at most 128 KiB: something else is wrong, stop here
        }
    }
    tail
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
