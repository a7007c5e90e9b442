//! The source stage: finds the input files, recognises their format, and turns them into a stream of
//! decoded blocks in input order.
//!
//! Files are read with ordinary `read()` calls, never memory-mapped: a mapped file that another
//! process truncates kills the reader with SIGBUS, while a read just comes up short, which is
//! reported as an error naming the file. A regular file is read up to its size when it was opened;
//! ending earlier means it was truncated or replaced, and the run stops without a summary. Pipes,
//! FIFOs, character devices and `-` (standard input) are read as streams: their format is
//! recognised from the first bytes read, and they cannot be re-read (so no checkpoints on them).
//!
//! Memory in flight is bounded whatever the zstd layout: compressed bytes are read incrementally
//! through a window, and decoded bytes leave in blocks of at most [`BLOCK_BYTES`] (a frame decoded
//! whole is at most [`ONE_SHOT_MAX`]). Frames whose header gives a small content size (the layout
//! `abacus generate` writes) are decoded a group at a time in parallel, each in one shot, which is
//! ~25% faster than streaming; any other frame (no content size, as streaming compressors and
//! `cat a.zst b.zst` give, or a huge one) is stream-decoded. Skippable frames (every `pzstd` file
//! has them) are skipped wherever they are.
//!
//! Damage keeps what decoded before it. A frame of a multi-frame file that decodes as a unit is all
//! or nothing: if it fails, it is reported at its first byte and none of it counts. A stream-decoded
//! frame hands on everything that decodes before the damage, byte-exactly (for a regular file the
//! frame is decoded once more from its start to recover the failing step's output; on a pipe that
//! is impossible, so there up to one decode step before the damage may be lost).
//!
//! Blocks carry their file index and decoded offset so every later message can name the file, line
//! and byte.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

use rayon::prelude::*;
use xxhash_rust::xxh3::Xxh3;

use crate::prefix_hash::PrefixHash;
use zstd::zstd_safe::{self, DCtx, InBuffer, OutBuffer};

use crate::error::{Error, Result};

/// Decoded bytes per block when decoding a stream or reading a plain file.
pub const BLOCK_BYTES: usize = 4 << 20;

/// Largest frame decoded whole (in one shot, or as a unit in a parallel group). Larger frames, and
/// frames without content size that turn out larger, are stream-decoded in blocks.
pub const ONE_SHOT_MAX: usize = 2 * BLOCK_BYTES;

/// Compressed bytes read at a time into the window.
const READ_BYTES: usize = 1 << 20;

/// How far ahead of a frame's start the window may grow to find where the frame ends: enough for
/// any frame of up to [`ONE_SHOT_MAX`] decoded bytes.
const LOCATE_MAX: usize = ONE_SHOT_MAX + READ_BYTES;

/// Compressed bytes fed to the stream decoder per call: a failure is reported at the start of the
/// failing call's input, so this is the precision of the offset in a damaged frame.
const STEP_IN: usize = 16 << 10;

/// Largest zstd frame header.
const HEADER_MAX: usize = 18;

/// The one name that means standard input.
pub const STDIN: &str = "-";

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Plain,
    Zstd,
    Empty,
    /// A stream: its format is recognised from its first bytes when it is read.
    Unknown,
}

/// One input file.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: PathBuf,
    /// Size at open time (0 for a stream, whose size is not known).
    pub size: u64,
    pub format: Format,
    /// A pipe, FIFO, character device or standard input: read once, front to back, never re-read.
    pub stream: bool,
}

impl InputFile {
    /// A stream cannot be re-read, so a run over it cannot be resumed.
    pub fn is_stream(&self) -> bool {
        self.stream
    }
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

// ───────────────────────────── finding the inputs ─────────────────────────────

fn has_input_extension(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    [".ndjson", ".ndjson.zst", ".jsonl", ".jsonl.zst"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// The directories whose contents are never inputs (abacus's own outputs), canonical. One that does
/// not exist yet holds nothing.
struct Excluded(Vec<(PathBuf, PathBuf)>);

impl Excluded {
    fn new(dirs: &[PathBuf]) -> Excluded {
        Excluded(
            dirs.iter()
                .filter_map(|d| std::fs::canonicalize(d).ok().map(|c| (d.clone(), c)))
                .collect(),
        )
    }

    /// The excluded directory (as the user named it) that `path` lies in, if any.
    fn holding(&self, path: &Path) -> Option<&Path> {
        let canon = std::fs::canonicalize(path).ok()?;
        self.0
            .iter()
            .find(|(_, c)| canon.starts_with(c))
            .map(|(d, _)| d.as_path())
    }

    fn refuse(&self, path: &Path) -> Result<()> {
        match self.holding(path) {
            Some(dir) => Err(Error::Usage(format!(
                "{} lies inside --out/--checkpoint-dir {}: abacus's own output is never read back as input; move it or name another --out",
                path.display(),
                dir.display()
            ))),
            None => Ok(()),
        }
    }
}

fn walk(dir: &Path, exclude: &Excluded, out: &mut Vec<PathBuf>) -> Result<()> {
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
            if exclude.holding(&path).is_none() {
                walk(&path, exclude, out)?;
            }
        } else if has_input_extension(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// Expands the command line's inputs: files as given, directories to their `*.ndjson[.zst]` and
/// `*.jsonl[.zst]` files (recursively, sorted by path), and glob patterns (sorted). `-` is standard
/// input (at most once; no file named `-` is looked up).
///
/// Nothing inside the `exclude` directories (`--out`, `--checkpoint-dir`) is ever an input: a
/// directory walk skips them, and a file or glob match inside one is refused, so a run whose output
/// lies inside its input directory never reads its own side files back.
pub fn expand(args: &[PathBuf], exclude: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let exclude = Excluded::new(exclude);
    let mut files = Vec::new();
    let mut stdin = false;
    for arg in args {
        if arg.as_os_str() == STDIN {
            if stdin {
                return Err(Error::Usage(
                    "standard input (-) is named twice: it can be read only once".into(),
                ));
            }
            stdin = true;
            files.push(arg.clone());
        } else if arg.is_dir() {
            exclude.refuse(arg)?;
            let mut found = Vec::new();
            walk(arg, &exclude, &mut found)?;
            if found.is_empty() {
                return Err(Error::input(
                    arg,
                    "the directory holds no *.ndjson, *.ndjson.zst, *.jsonl or *.jsonl.zst file",
                ));
            }
            found.sort();
            files.extend(found);
        } else if arg.exists() {
            exclude.refuse(arg)?;
            files.push(arg.clone());
        } else {
            files.extend(expand_glob(arg, &exclude)?);
        }
    }
    if files.is_empty() {
        return Err(Error::Usage(
            "no input given: name files, directories or glob patterns to read".into(),
        ));
    }
    Ok(files)
}

fn expand_glob(arg: &Path, exclude: &Excluded) -> Result<Vec<PathBuf>> {
    let pattern = arg.to_string_lossy();
    if !pattern.contains(['*', '?', '[']) {
        return Err(Error::input(arg, "no such file or directory"));
    }
    let paths = glob::glob(&pattern)
        .map_err(|e| Error::Usage(format!("{pattern}: not a valid glob pattern: {e}")))?;
    let mut found: Vec<PathBuf> = paths
        .filter_map(|p| p.ok())
        .filter(|p| p.is_file())
        .collect();
    if found.is_empty() {
        return Err(Error::input(arg, "the pattern matches no file"));
    }
    for p in &found {
        exclude.refuse(p)?;
    }
    found.sort();
    Ok(found)
}

// ───────────────────────────── recognising the format ─────────────────────────────

/// The size of the skippable frame starting `head`, if it starts one (magic 0x184D2A5?, then a
/// 4-byte little-endian size).
fn skippable_size(head: &[u8]) -> Option<u32> {
    match head {
        [m, 0x2A, 0x4D, 0x18, a, b, c, d, ..] if m & 0xF0 == 0x50 => {
            Some(u32::from_le_bytes([*a, *b, *c, *d]))
        }
        _ => None,
    }
}

fn is_skippable_magic(head: &[u8]) -> bool {
    matches!(head, [m, 0x2A, 0x4D, 0x18, ..] if m & 0xF0 == 0x50)
}

/// Recognises the format from the first bytes. Formats that are certainly not NDJSON are refused by name.
pub fn sniff(path: &Path, head: &[u8]) -> Result<Format> {
    if head.is_empty() {
        return Ok(Format::Empty);
    }
    // A file may start with a skippable frame (every `pzstd` file does): that is zstd too.
    if head.starts_with(&ZSTD_MAGIC) || is_skippable_magic(head) {
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
/// Streams are only checked to exist: opening a FIFO waits for its writer, and what is read from a
/// stream cannot be put back, so their format is recognised when they are read.
pub fn open_all(paths: &[PathBuf]) -> Result<Vec<InputFile>> {
    paths.iter().map(|path| open_one(path)).collect()
}

fn open_one(path: &Path) -> Result<InputFile> {
    let stream = |path: &Path| InputFile {
        path: path.to_path_buf(),
        size: 0,
        format: Format::Unknown,
        stream: true,
    };
    if path.as_os_str() == STDIN {
        return Ok(stream(path));
    }
    let meta =
        std::fs::metadata(path).map_err(|e| Error::input(path, format!("cannot open: {e}")))?;
    let ft = meta.file_type();
    if ft.is_fifo() || ft.is_char_device() || ft.is_socket() || !ft.is_file() {
        // Pipes (`<(...)`, `/dev/stdin` of a pipeline), FIFOs, devices: read as a stream.
        if ft.is_dir() {
            return Err(Error::input(path, "is a directory"));
        }
        return Ok(stream(path));
    }
    let file = File::open(path).map_err(|e| Error::input(path, format!("cannot open: {e}")))?;
    let size = file
        .metadata()
        .map_err(|e| Error::input(path, e.to_string()))?
        .len();
    let mut head = vec![0u8; 4096.min(size as usize)];
    (&file)
        .read_exact(&mut head)
        .map_err(|e| Error::input(path, format!("cannot read: {e}")))?;
    Ok(InputFile {
        path: path.to_path_buf(),
        size,
        format: sniff(path, &head)?,
        stream: false,
    })
}

// ───────────────────────────── identity, for checkpoints ─────────────────────────────

/// What identifies a regular file's contents cheaply, for checking on `--resume` that an input is
/// the one the interrupted run read. `sample` is the xxh3-64 of 16 evenly spaced 4 KiB blocks (the
/// first and the last included; the whole file if it is smaller than that).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    pub inode: u64,
    pub device: u64,
    pub sample: u64,
}

/// The identity of the regular file at `path`. A stream has none (it cannot be read twice): that
/// is an error.
pub fn identity(path: &Path) -> Result<FileIdentity> {
    const SAMPLES: u64 = 16;
    const SAMPLE_BYTES: u64 = 4096;
    let not_regular = || {
        Error::input(
            path,
            "not a regular file (a pipe or device): it has no identity to check on --resume",
        )
    };
    // Checked before opening: opening a FIFO would wait for a writer.
    let meta = std::fs::metadata(path).map_err(|e| Error::input(path, e.to_string()))?;
    if !meta.file_type().is_file() {
        return Err(not_regular());
    }
    let file = File::open(path).map_err(|e| Error::input(path, format!("cannot open: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::input(path, e.to_string()))?;
    if !meta.file_type().is_file() {
        return Err(not_regular());
    }
    let size = meta.len();
    let mut hasher = Xxh3::new();
    let mut buf = vec![0u8; SAMPLE_BYTES as usize];
    let read = |at: u64, buf: &mut [u8]| -> Result<()> {
        file.read_exact_at(buf, at)
            .map_err(|e| Error::input(path, format!("cannot read at byte {at}: {e}")))
    };
    if size <= SAMPLES * SAMPLE_BYTES {
        let mut all = vec![0u8; size as usize];
        read(0, &mut all)?;
        hasher.update(&all);
    } else {
        for i in 0..SAMPLES {
            read((size - SAMPLE_BYTES) * i / (SAMPLES - 1), &mut buf)?;
            hasher.update(&buf);
        }
    }
    Ok(FileIdentity {
        size,
        mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        inode: meta.ino(),
        device: meta.dev(),
        sample: hasher.digest(),
    })
}

// ───────────────────────────── reading bytes ─────────────────────────────

enum Handle {
    File(File),
    Stdin(std::io::Stdin),
}

/// Where one input's bytes come from. A regular file is read up to its size at open time, and
/// ending earlier is an error; a stream is read to its end. Bytes read to recognise a stream's
/// format are handed out again first.
struct Source {
    path: PathBuf,
    handle: Handle,
    /// The size at open time, for a regular file.
    size: Option<u64>,
    /// Bytes read from `handle` so far.
    got: u64,
    head: Vec<u8>,
}

impl Source {
    fn open(f: &InputFile) -> Result<Source> {
        let path = f.path.clone();
        if f.stream && path.as_os_str() == STDIN {
            return Ok(Source {
                path,
                handle: Handle::Stdin(std::io::stdin()),
                size: None,
                got: 0,
                head: Vec::new(),
            });
        }
        let file =
            File::open(&path).map_err(|e| Error::input(&path, format!("cannot open: {e}")))?;
        let src = Source {
            path,
            handle: Handle::File(file),
            size: (!f.stream).then_some(f.size),
            got: 0,
            head: Vec::new(),
        };
        if let Some(now) = src.current_size()
            && now < f.size
        {
            return Err(src.shrank(now));
        }
        Ok(src)
    }

    fn file(&self) -> Option<&File> {
        match (&self.handle, self.size) {
            (Handle::File(f), Some(_)) => Some(f),
            _ => None,
        }
    }

    fn current_size(&self) -> Option<u64> {
        self.file().and_then(|f| f.metadata().ok()).map(|m| m.len())
    }

    fn shrank(&self, now: u64) -> Error {
        Error::input(
            &self.path,
            format!(
                "the file shrank from {} to {now} bytes while abacus read it: it was truncated or replaced; \
nothing was written as a complete result — rerun once the file is stable",
                self.size.unwrap_or(0)
            ),
        )
    }

    fn read_error(&self, e: std::io::Error) -> Error {
        Error::input(&self.path, format!("cannot read: {e}"))
    }

    /// Bytes still to read from `handle`, at most `want`.
    fn limit(&self, want: usize) -> usize {
        match self.size {
            Some(size) => (size.saturating_sub(self.got)).min(want as u64) as usize,
            None => want,
        }
    }

    /// Called when `handle` gave fewer bytes than asked: fine for a stream, an error for a regular
    /// file that has not been read to its size at open time.
    fn check_end(&self) -> Result<()> {
        match self.size {
            Some(size) if self.got < size => {
                Err(self.shrank(self.current_size().unwrap_or(self.got)))
            }
            _ => Ok(()),
        }
    }

    /// Reads some bytes into `buf`; 0 at the end.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        if !self.head.is_empty() {
            let n = self.head.len().min(buf.len());
            buf[..n].copy_from_slice(&self.head[..n]);
            self.head.drain(..n);
            return Ok(n);
        }
        let want = self.limit(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let r = loop {
            let r = match &mut self.handle {
                Handle::File(f) => f.read(&mut buf[..want]),
                Handle::Stdin(s) => s.read(&mut buf[..want]),
            };
            match r {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        let n = r.map_err(|e| self.read_error(e))?;
        self.got += n as u64;
        if n == 0 {
            self.check_end()?;
        }
        Ok(n)
    }

    /// Reads up to `max` bytes into a new buffer, fewer only at the end. One copy, straight from
    /// the kernel into the buffer that is handed on.
    fn read_block(&mut self, max: usize) -> Result<Vec<u8>> {
        let head = self.head.len().min(max);
        let want = self.limit(max - head);
        // Sized to what is left of a regular file, so that small files cost small buffers.
        let mut block = Vec::with_capacity(head + want);
        block.extend(self.head.drain(..head));
        let want = want as u64;
        let r = match &mut self.handle {
            Handle::File(f) => f.take(want).read_to_end(&mut block),
            Handle::Stdin(s) => s.take(want).read_to_end(&mut block),
        };
        let n = r.map_err(|e| self.read_error(e))?;
        self.got += n as u64;
        if (n as u64) < want {
            self.check_end()?;
        }
        Ok(block)
    }

    /// Skips the first `n` bytes of a plain input without reading them where it can; returns how
    /// many were skipped (fewer if the input is shorter).
    fn skip(&mut self, n: u64) -> Result<u64> {
        if let (Handle::File(f), Some(size)) = (&mut self.handle, self.size) {
            let to = n.min(size);
            f.seek(SeekFrom::Start(to))
                .map_err(|e| Error::input(&self.path, format!("cannot seek: {e}")))?;
            self.got = to;
            return Ok(to);
        }
        let mut skipped = 0;
        while skipped < n {
            let block = self.read_block((n - skipped).min(BLOCK_BYTES as u64) as usize)?;
            if block.is_empty() {
                break;
            }
            skipped += block.len() as u64;
        }
        Ok(skipped)
    }

    /// Reads the first bytes of a stream to recognise its format; they are read again later.
    fn sniff(&mut self) -> Result<Format> {
        let mut head = vec![0u8; 4096];
        let mut n = 0;
        while n < head.len() {
            let got = self.read(&mut head[n..])?;
            if got == 0 {
                break;
            }
            n += got;
        }
        head.truncate(n);
        let format = sniff(&self.path, &head)?;
        self.head = head;
        Ok(format)
    }
}

// ───────────────────────────── handing blocks on ─────────────────────────────

/// The resume point inside one file: decoded bytes below `skip` are not handed on. With an expected
/// hash, they are hashed and must match it.
struct Prefix {
    skip: u64,
    check: Option<(PrefixHash, PrefixHash)>,
    path: PathBuf,
}

impl Prefix {
    /// A refused resume (exit 2): found before any batch of the resumed run is counted, so the
    /// out dir is still as the checkpoint left it.
    fn changed(&self) -> Error {
        Error::Resume(format!(
            "{}: changed since the checkpoint: its first {} decoded bytes differ from what the interrupted run read; \
resume refused — run without --resume to start over",
            self.path.display(),
            self.skip
        ))
    }

    /// Whether the decoded bytes up to `to` may be skipped without being decoded (nothing to check,
    /// and all before the resume point).
    fn skippable(&self, to: u64) -> bool {
        self.check.is_none() && to <= self.skip
    }

    /// Takes the decoded bytes `data` at offset `start`; returns how many of them lie before the
    /// resume point (they are not handed on).
    fn take(&mut self, start: u64, data: &[u8]) -> Result<usize> {
        let cut = self.skip.saturating_sub(start).min(data.len() as u64) as usize;
        if let Some((hasher, want)) = &mut self.check {
            hasher.update(&data[..cut]);
            if start + data.len() as u64 >= self.skip {
                if hasher != want {
                    return Err(self.changed());
                }
                self.check = None;
            }
        }
        Ok(cut)
    }

    /// The file decoded to `total` bytes and ended (or broke off): a prefix still unchecked is not there.
    fn finish(&mut self, total: u64) -> Result<()> {
        if self.check.is_some() && total >= self.skip {
            self.take(total, &[])?;
        }
        if self.check.is_some() {
            return Err(self.changed());
        }
        Ok(())
    }
}

/// Hands one file's decoded bytes on, in order. One block is held back, so that the file's last
/// block can be marked as such.
struct Output<'a> {
    fi: usize,
    tx: &'a SyncSender<SourceMsg>,
    /// Decoded bytes of the file so far.
    decoded: u64,
    prefix: Prefix,
    held: Option<Block>,
}

impl Output<'_> {
    fn send(&self, msg: SourceMsg) -> bool {
        self.tx.send(msg).is_ok()
    }

    /// Hands on the next decoded bytes; `consumed` is the on-disk position once they are done.
    /// False if the receiver hung up.
    fn emit(&mut self, mut data: Vec<u8>, consumed: u64) -> Result<bool> {
        let start = self.decoded;
        self.decoded += data.len() as u64;
        let cut = self.prefix.take(start, &data)?;
        if cut == data.len() {
            return Ok(true);
        }
        if cut > 0 {
            data.drain(..cut);
        }
        let block = Block {
            file: self.fi,
            offset: start + cut as u64,
            data,
            consumed,
            last: false,
        };
        Ok(match self.held.replace(block) {
            Some(prev) => self.send(SourceMsg::Block(prev)),
            None => true,
        })
    }

    /// Accounts for `n` decoded bytes skipped without decoding (they lie before the resume point).
    fn skipped(&mut self, n: u64) {
        self.decoded += n;
    }

    fn send_last(&mut self, consumed: u64) -> bool {
        let block = match self.held.take() {
            Some(mut b) => {
                b.last = true;
                b.consumed = consumed;
                b
            }
            None => Block {
                file: self.fi,
                offset: self.decoded,
                data: Vec::new(),
                consumed,
                last: true,
            },
        };
        self.send(SourceMsg::Block(block))
    }

    /// The file ended cleanly.
    fn finish(&mut self, consumed: u64) -> Result<bool> {
        self.prefix.finish(self.decoded)?;
        Ok(self.send_last(consumed))
    }

    /// The file does not decode past `offset` (on-disk); what decoded before was handed on.
    fn corrupt(&mut self, offset: u64, reason: String) -> Result<bool> {
        // The interrupted run cannot have read past damage: damage before the resume point means
        // the file changed.
        self.prefix.finish(self.decoded)?;
        if let Some(mut b) = self.held.take() {
            b.last = true;
            if !self.send(SourceMsg::Block(b)) {
                return Ok(false);
            }
        }
        Ok(self.send(SourceMsg::Corrupt {
            file: self.fi,
            offset,
            reason,
        }))
    }
}

/// Reads `files` in order and sends their decoded blocks. Returns when done, on a send failure (the
/// receiver stopped), or with the first error that makes a file unreadable (it could not be opened,
/// it shrank while read, or it changed since the checkpoint); the caller must then not treat the
/// input as complete.
///
/// `skip_to` resumes inside the input: the file index and decoded offset of the first byte wanted.
/// With `prefix_hash`, the decoded bytes `[0, offset)` of that file are decoded (not skipped by
/// frame size) and their [`PrefixHash`] must equal it, else the reader fails with "changed since
/// the checkpoint".
pub fn read_all(
    files: &[InputFile],
    parallel_frames: usize,
    skip_to: (usize, u64),
    prefix_hash: Option<&PrefixHash>,
    tx: &SyncSender<SourceMsg>,
) -> Result<()> {
    for (fi, f) in files.iter().enumerate().skip(skip_to.0) {
        let resume = fi == skip_to.0;
        let prefix = Prefix {
            skip: if resume { skip_to.1 } else { 0 },
            check: prefix_hash
                .filter(|_| resume)
                .map(|want| (PrefixHash::default(), want.clone())),
            path: f.path.clone(),
        };
        let mut out = Output {
            fi,
            tx,
            decoded: 0,
            prefix,
            held: None,
        };
        if !read_file(f, parallel_frames, &mut out)? {
            return Ok(());
        }
    }
    Ok(())
}

/// Reads one file. False if the receiver hung up.
fn read_file(f: &InputFile, parallel_frames: usize, out: &mut Output) -> Result<bool> {
    if f.format == Format::Empty {
        return out.finish(0);
    }
    let mut src = Source::open(f)?;
    let format = if f.stream { src.sniff()? } else { f.format };
    match format {
        Format::Plain => read_plain(src, out),
        Format::Zstd => ZstdReader::new(src, out, parallel_frames).run(),
        Format::Empty | Format::Unknown => out.finish(0),
    }
}

/// Reads a plain file in blocks of [`BLOCK_BYTES`], each read straight into the block handed on.
fn read_plain(mut src: Source, out: &mut Output) -> Result<bool> {
    if out.prefix.skippable(out.prefix.skip) && out.prefix.skip > 0 {
        let n = src.skip(out.prefix.skip)?;
        out.skipped(n);
    }
    loop {
        let block = src.read_block(BLOCK_BYTES)?;
        let end = src.size.is_some_and(|s| src.got >= s) || block.len() < BLOCK_BYTES;
        if !block.is_empty() && !out.emit(block, src.got)? {
            return Ok(false);
        }
        if end {
            return out.finish(src.got);
        }
    }
}

// ───────────────────────────── zstd ─────────────────────────────

/// The compressed bytes of one file, read incrementally: `buf[start..end]` are read and not yet
/// consumed. The buffer is reused; it grows only to hold a group of frames decoded together.
struct Window {
    src: Source,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// On-disk offset of `buf[0]`.
    base: u64,
    eof: bool,
}

impl Window {
    fn new(src: Source) -> Window {
        Window {
            src,
            buf: vec![0u8; 2 * READ_BYTES],
            start: 0,
            end: 0,
            base: 0,
            eof: false,
        }
    }

    /// On-disk offset of the next unconsumed byte.
    fn pos(&self) -> u64 {
        self.base + self.start as u64
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n.min(self.end - self.start);
    }

    /// Makes at least `want` bytes available unless the input ends first; true if they are.
    fn fill(&mut self, want: usize) -> Result<bool> {
        while self.end - self.start < want && !self.eof {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.base += self.start as u64;
                self.end -= self.start;
                self.start = 0;
            }
            let need = want.max(self.end + READ_BYTES);
            if self.buf.len() < need {
                self.buf.resize(need, 0);
            }
            let n = self.src.read(&mut self.buf[self.end..])?;
            if n == 0 {
                self.eof = true;
            }
            self.end += n;
        }
        Ok(self.end - self.start >= want)
    }

    /// Consumes `n` bytes, reading past those not read yet; false if the input ends first.
    fn skip(&mut self, mut n: u64) -> Result<bool> {
        loop {
            let here = (self.end - self.start).min(n as usize);
            self.consume(here);
            n -= here as u64;
            if n == 0 {
                return Ok(true);
            }
            if !self.fill(1)? {
                return Ok(false);
            }
        }
    }
}

/// One frame of a group decoded together; `len` compressed bytes.
#[derive(Clone, Copy)]
struct Unit {
    len: usize,
    kind: UnitKind,
}

#[derive(Clone, Copy)]
enum UnitKind {
    /// A skippable frame, or a frame wholly before the resume point: `n` decoded bytes not decoded.
    Skip(u64),
    /// A frame whose header gives its content size.
    Sized(u64),
    /// A frame without content size: decoded whole unless it turns out larger than [`ONE_SHOT_MAX`].
    Unsized,
}

enum Decoded {
    Nothing,
    Bytes(Vec<u8>),
    TooBig,
    Failed(String),
}

/// Control flow after one step of a zstd file.
#[derive(PartialEq, Eq)]
enum Flow {
    Next,
    /// The file ended (cleanly or at damage, reported); go on with the next file.
    Done,
    /// The receiver hung up.
    Stop,
}

fn flow(sent: bool) -> Flow {
    if sent { Flow::Next } else { Flow::Stop }
}

fn ended(sent: bool) -> Flow {
    if sent { Flow::Done } else { Flow::Stop }
}

/// Decodes one zstd file, frame by frame.
struct ZstdReader<'o, 'a> {
    input: Window,
    out: &'o mut Output<'a>,
    parallel: usize,
    dctx: DCtx<'static>,
    /// Frames (of any kind) consumed so far.
    frames: u64,
}

impl<'o, 'a> ZstdReader<'o, 'a> {
    fn new(src: Source, out: &'o mut Output<'a>, parallel: usize) -> Self {
        ZstdReader {
            input: Window::new(src),
            out,
            parallel: parallel.max(1),
            dctx: DCtx::create(),
            frames: 0,
        }
    }

    /// False if the receiver hung up.
    fn run(mut self) -> Result<bool> {
        loop {
            self.input.fill(HEADER_MAX)?;
            let head = self.input.avail();
            let step = if head.is_empty() {
                let end = self.input.pos();
                ended(self.out.finish(end)?)
            } else if is_skippable_magic(head) {
                self.skip_skippable()?
            } else if head.starts_with(&ZSTD_MAGIC) {
                let group = self.collect_group()?;
                if group.is_empty() {
                    self.stream_frame()?
                } else {
                    self.decode_group(&group)?
                }
            } else {
                let at = self.input.pos();
                ended(self.out.corrupt(
                    at,
                    format!("no zstd frame starts at byte {at} (trailing garbage, or a damaged frame before it)"),
                )?)
            };
            match step {
                Flow::Next => {}
                Flow::Done => return Ok(true),
                Flow::Stop => return Ok(false),
            }
        }
    }

    fn skip_skippable(&mut self) -> Result<Flow> {
        let at = self.input.pos();
        self.frames += 1;
        let whole = self.input.fill(8)?
            && match skippable_size(self.input.avail()) {
                Some(size) => self.input.skip(8 + u64::from(size))?,
                None => false,
            };
        if whole {
            return Ok(Flow::Next);
        }
        let rest = self.input.avail().len();
        self.input.consume(rest);
        Ok(ended(self.out.corrupt(
            self.input.pos(),
            format!("the skippable frame at byte {at} is cut short (truncated file?)"),
        )?))
    }

    /// Where the frame `r` bytes into the window ends: its compressed length, if it is complete
    /// within [`LOCATE_MAX`] bytes (block headers intact).
    fn locate(&mut self, r: usize) -> Result<Option<usize>> {
        loop {
            if let Ok(len) = zstd_safe::find_frame_compressed_size(&self.input.avail()[r..])
                && len > 0
            {
                return Ok(Some(len));
            }
            let have = self.input.avail().len();
            if have - r >= LOCATE_MAX {
                return Ok(None);
            }
            self.input.fill(have + READ_BYTES)?;
            if self.input.avail().len() == have {
                return Ok(None);
            }
        }
    }

    /// The frames from the window's start that are decoded together: up to `parallel` frames that
    /// each decode to at most [`ONE_SHOT_MAX`] bytes, complete in the window, and not the file's
    /// only frame (that one is stream-decoded, so damage in it costs only what follows the damage).
    /// Empty if the first frame must be stream-decoded.
    fn collect_group(&mut self) -> Result<Vec<Unit>> {
        let budget = (self.parallel * BLOCK_BYTES).max(LOCATE_MAX);
        let mut units = Vec::new();
        let mut decodes = 0;
        let mut r = 0;
        // Decoded offset at `r`, while known without decoding.
        let mut known = Some(self.out.decoded);
        while decodes < self.parallel && r < budget {
            self.input.fill(r + HEADER_MAX)?;
            let rest = &self.input.avail()[r..];
            if rest.is_empty() {
                break;
            }
            if let Some(size) = skippable_size(rest) {
                let len = 8 + size as usize;
                if len > LOCATE_MAX || !self.input.fill(r + len)? {
                    break;
                }
                units.push(Unit {
                    len,
                    kind: UnitKind::Skip(0),
                });
                r += len;
                continue;
            }
            if !rest.starts_with(&ZSTD_MAGIC) {
                break;
            }
            let size = match zstd_safe::get_frame_content_size(rest) {
                Ok(Some(n)) if n > ONE_SHOT_MAX as u64 => break,
                Ok(size) => size,
                Err(_) => break,
            };
            let Some(len) = self.locate(r)? else { break };
            if self.frames == 0 && r == 0 && !self.input.fill(len + 1)? {
                break;
            }
            let kind = match (size, known) {
                (Some(n), Some(at)) if self.out.prefix.skippable(at + n) => UnitKind::Skip(n),
                (Some(n), _) => UnitKind::Sized(n),
                (None, _) => UnitKind::Unsized,
            };
            known = match (kind, known, size) {
                (_, Some(at), Some(n)) => Some(at + n),
                _ => None,
            };
            if !matches!(kind, UnitKind::Skip(_)) {
                decodes += 1;
            }
            units.push(Unit { len, kind });
            r += len;
        }
        Ok(units)
    }

    /// Decodes a group of frames in parallel and hands them on in order.
    fn decode_group(&mut self, units: &[Unit]) -> Result<Flow> {
        let results: Vec<Decoded> = {
            let window = self.input.avail();
            let mut at = 0;
            let frames: Vec<(Unit, &[u8])> = units
                .iter()
                .map(|u| {
                    at += u.len;
                    (*u, &window[at - u.len..at])
                })
                .collect();
            frames
                .par_iter()
                .map(|(u, frame)| decode_unit(u.kind, frame))
                .collect()
        };
        for (u, result) in units.iter().zip(results) {
            let at = self.input.pos();
            if !matches!(result, Decoded::TooBig) {
                self.frames += 1;
            }
            let step = match result {
                Decoded::Nothing => {
                    if let UnitKind::Skip(n) = u.kind {
                        self.out.skipped(n);
                    }
                    self.input.consume(u.len);
                    Flow::Next
                }
                Decoded::Bytes(data) => {
                    self.input.consume(u.len);
                    flow(self.out.emit(data, at + u.len as u64)?)
                }
                // Larger than a frame decoded whole may be: streamed, as its own frame.
                Decoded::TooBig => self.stream_frame()?,
                Decoded::Failed(e) => ended(
                    self.out
                        .corrupt(at, format!("zstd frame at byte {at} does not decode: {e}"))?,
                ),
            };
            if step != Flow::Next {
                return Ok(step);
            }
        }
        Ok(Flow::Next)
    }

    /// Stream-decodes the frame at the window's start in blocks of at most [`BLOCK_BYTES`], handing
    /// on everything that decodes before damage or the end of the input.
    fn stream_frame(&mut self) -> Result<Flow> {
        let frame_at = self.input.pos();
        self.frames += 1;
        if self
            .dctx
            .reset(zstd_safe::ResetDirective::SessionOnly)
            .is_err()
        {
            self.dctx = DCtx::create();
        }
        let mut block: Vec<u8> = Vec::with_capacity(BLOCK_BYTES);
        // Decoded bytes of this frame handed on or in `block`.
        let mut produced: u64 = 0;
        loop {
            // At the end of the input the decoder is still called, with no input, until it has
            // flushed everything it decoded.
            let eof = self.input.avail().is_empty() && !self.input.fill(1)?;
            let at = self.input.pos();
            let avail = self.input.avail();
            let mut input = InBuffer::around(&avail[..avail.len().min(STEP_IN)]);
            let before = block.len();
            // Straight into the block's spare capacity: no copy, no zero-filling.
            let r = self
                .dctx
                .decompress_stream(&mut OutBuffer::around_pos(&mut block, before), &mut input);
            let used = input.pos();
            let hint = match r {
                Ok(hint) => hint,
                Err(code) => {
                    let reason = format!("zstd data corrupt: {}", zstd_safe::get_error_name(code));
                    return self.damaged(frame_at, at, produced, block, reason);
                }
            };
            let made = block.len() - before;
            produced += made as u64;
            self.input.consume(used);
            let end = self.input.pos();
            if hint == 0 {
                return Ok(flow(self.out.emit(block, end)?));
            }
            if block.len() == block.capacity() {
                let full = std::mem::replace(&mut block, Vec::with_capacity(BLOCK_BYTES));
                if !self.out.emit(full, end)? {
                    return Ok(Flow::Stop);
                }
            } else if made == 0 && eof {
                if !self.out.emit(block, end)? {
                    return Ok(Flow::Stop);
                }
                return Ok(ended(self.out.corrupt(
                    end,
                    "the zstd data ends in the middle of a frame (truncated file?)".into(),
                )?));
            } else if made == 0 && used == 0 {
                // Input and room to spare, and no progress: the decoder is stuck.
                let reason = "the zstd decoder makes no progress".to_string();
                return self.damaged(frame_at, at, produced, block, reason);
            }
        }
    }

    /// A stream-decoded frame failed in the call whose input started at `at`. That call's output is
    /// lost with it; for a regular file, the frame is decoded once more from its start to recover
    /// it exactly (on a pipe it cannot be re-read, so up to one decode step before the damage is lost).
    fn damaged(
        &mut self,
        frame_at: u64,
        at: u64,
        produced: u64,
        mut block: Vec<u8>,
        reason: String,
    ) -> Result<Flow> {
        let mut offset = at;
        if let Some(file) = self.input.src.file() {
            let limit = self.input.src.size.unwrap_or(0);
            let (tail, failed_at) = recover_tail(file, frame_at, limit, produced);
            block.extend_from_slice(&tail);
            offset = failed_at.unwrap_or(at);
        }
        if !self.out.emit(block, offset)? {
            return Ok(Flow::Stop);
        }
        Ok(ended(self.out.corrupt(offset, reason)?))
    }
}

/// Decodes one frame of a group.
fn decode_unit(kind: UnitKind, frame: &[u8]) -> Decoded {
    match kind {
        UnitKind::Skip(_) => Decoded::Nothing,
        UnitKind::Sized(n) => match decode_frame(frame) {
            Ok(data) if data.len() as u64 == n => Decoded::Bytes(data),
            Ok(data) => Decoded::Failed(format!(
                "it decodes to {} bytes, its header says {n}",
                data.len()
            )),
            Err(e) => Decoded::Failed(e.to_string()),
        },
        UnitKind::Unsized => decode_capped(frame, ONE_SHOT_MAX),
    }
}

/// Decodes a frame without content size whole, unless it is larger than `cap`. Writes straight
/// into the returned buffer, whose untouched capacity costs no memory.
fn decode_capped(frame: &[u8], cap: usize) -> Decoded {
    let mut dctx = DCtx::create();
    let mut out: Vec<u8> = Vec::with_capacity(cap + 1);
    let mut input = InBuffer::around(frame);
    loop {
        let (before, used) = (out.len(), input.pos());
        let r = dctx.decompress_stream(&mut OutBuffer::around_pos(&mut out, before), &mut input);
        match r {
            Err(code) => return Decoded::Failed(zstd_safe::get_error_name(code).to_string()),
            Ok(0) => {
                // Give back the capacity it did not need (a realloc that shrinks, usually in place).
                out.shrink_to_fit();
                return Decoded::Bytes(out);
            }
            Ok(_) if out.len() > cap => return Decoded::TooBig,
            Ok(_) if out.len() == before && input.pos() == used => {
                return Decoded::Failed("the frame ends early".into());
            }
            Ok(_) => {}
        }
    }
}

/// Error path only: decodes the frame at `frame_at` of `file` (up to `limit`) from its start again,
/// skips its first `from` decoded bytes, and returns the bytes after them that decode before the
/// first error, one output byte per call so that nothing decodable is lost with the failing call;
/// also the on-disk offset where the failing call's input started.
fn recover_tail(file: &File, frame_at: u64, limit: u64, from: u64) -> (Vec<u8>, Option<u64>) {
    const CHUNK: usize = 4096;
    // What the failing call can have decoded: zstd blocks are at most 128 KiB; more means
    // something else is wrong, stop there.
    const MAX_TAIL: usize = 8 << 20;
    let mut dctx = DCtx::create();
    let mut produced: u64 = 0;
    let mut tail = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    let (mut next, mut len, mut pos) = (frame_at, 0usize, 0usize);
    let mut window = vec![0u8; 64 << 10];
    loop {
        if pos == len {
            let want = (limit.saturating_sub(next)).min(CHUNK as u64) as usize;
            len = match file.read_at(&mut chunk[..want], next) {
                Ok(n) if n > 0 => n,
                _ => return (tail, None),
            };
            next += len as u64;
            pos = 0;
        }
        let call_at = next - (len - pos) as u64;
        let want = if produced < from {
            ((from - produced) as usize).min(window.len())
        } else {
            1
        };
        let mut input = InBuffer::around(&chunk[pos..len]);
        let mut output = OutBuffer::around(&mut window[..want]);
        match dctx.decompress_stream(&mut output, &mut input) {
            Ok(hint) => {
                let n = output.pos();
                if produced >= from {
                    tail.extend_from_slice(&window[..n]);
                }
                produced += n as u64;
                pos += input.pos();
                if hint == 0 || (n == 0 && input.pos() == 0) || tail.len() > MAX_TAIL {
                    return (tail, None);
                }
            }
            Err(_) => return (tail, Some(call_at)),
        }
    }
}

/// Splits an in-memory zstd file into its frames. `None` if it does not end on a frame boundary.
/// (The benchmark's decode stage; the reader walks frames through its window instead.)
pub(crate) fn frames(data: &[u8]) -> Option<Vec<(usize, usize)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let len = zstd_safe::find_frame_compressed_size(&data[pos..]).ok()?;
        if len == 0 {
            return None;
        }
        out.push((pos, pos + len));
        pos += len;
    }
    Some(out)
}

/// Decodes one whole frame. In one shot into an exact buffer when the header gives the size (as
/// `abacus generate` and most tools write it), which skips the stream's window copies, ~25% faster.
pub(crate) fn decode_frame(frame: &[u8]) -> std::io::Result<Vec<u8>> {
    if let Ok(Some(n)) = zstd_safe::get_frame_content_size(frame)
        && n <= (1 << 30)
    {
        return zstd::bulk::decompress(frame, n as usize);
    }
    let mut out = Vec::with_capacity(frame.len() * 4);
    let mut dec = zstd::stream::read::Decoder::with_buffer(frame)?;
    std::io::copy(&mut dec, &mut out)?;
    Ok(out)
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
        read_all(files, 3, skip, None, &tx).unwrap();
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
                stream: false,
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
            stream: false,
        };
        let (bytes, msgs) = collect(&[f], (0, 0));
        assert!(text.starts_with(&bytes));
        assert!(msgs.iter().any(|m| matches!(m, SourceMsg::Corrupt { .. })));
    }

    fn lines(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| format!("{{\"n\":{i}}}\n").into_bytes())
            .collect()
    }

    fn file(dir: &Path, name: &str, bytes: &[u8], format: Format) -> InputFile {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        InputFile {
            path: p,
            size: bytes.len() as u64,
            format,
            stream: false,
        }
    }

    fn unsized_frame(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        enc.include_contentsize(false).unwrap();
        enc.write_all(data).unwrap();
        let z = enc.finish().unwrap();
        assert_eq!(zstd_safe::get_frame_content_size(&z).unwrap(), None);
        z
    }

    fn skippable(payload: &[u8], variant: u8) -> Vec<u8> {
        let mut v = vec![0x50 | variant, 0x2A, 0x4D, 0x18];
        v.extend((payload.len() as u32).to_le_bytes());
        v.extend(payload);
        v
    }

    fn try_collect(
        files: &[InputFile],
        skip: (usize, u64),
        hash: Option<PrefixHash>,
    ) -> Result<Vec<SourceMsg>> {
        let (tx, rx) = std::sync::mpsc::sync_channel(10_000);
        let r = read_all(files, 3, skip, hash.as_ref(), &tx);
        drop(tx);
        let msgs = rx.into_iter().collect();
        r.map(|()| msgs)
    }

    fn bytes_of(msgs: &[SourceMsg]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            if let SourceMsg::Block(b) = m {
                assert_eq!(b.offset, out.len() as u64, "blocks are contiguous");
                assert!(b.data.len() <= ONE_SHOT_MAX);
                out.extend_from_slice(&b.data);
            }
        }
        out
    }

    #[test]
    fn skippable_frames_are_zstd_and_skipped_anywhere() {
        let p = Path::new("x");
        assert_eq!(sniff(p, &skippable(b"abcd", 0)).unwrap(), Format::Zstd);
        assert_eq!(sniff(p, &skippable(&[0; 8], 0xF)).unwrap(), Format::Zstd);
        let dir = tempfile::tempdir().unwrap();
        let text = lines(30_000);
        let (a, b) = text.split_at(100_001);
        for (name, frame) in [
            (
                "sized",
                zstd::bulk::compress as fn(&[u8], i32) -> std::io::Result<Vec<u8>>,
            ),
            ("unsized", |d: &[u8], _| Ok(unsized_frame(d))),
        ] {
            let mut z = skippable(&[0; 4], 0);
            z.extend(frame(a, 1).unwrap());
            z.extend(skippable(&[7; 1000], 5));
            z.extend(frame(b, 1).unwrap());
            z.extend(skippable(b"", 0xF));
            let f = file(dir.path(), name, &z, Format::Zstd);
            let msgs = try_collect(std::slice::from_ref(&f), (0, 0), None).unwrap();
            assert_eq!(bytes_of(&msgs), text, "{name}");
            assert!(!msgs.iter().any(|m| matches!(m, SourceMsg::Corrupt { .. })));
            assert!(matches!(msgs.last(), Some(SourceMsg::Block(b)) if b.last));
            // a skippable frame cut short is reported, after everything before it
            let cut = &z[..z.len() - 2];
            let f = file(dir.path(), name, cut, Format::Zstd);
            let msgs = try_collect(&[f], (0, 0), None).unwrap();
            assert_eq!(bytes_of(&msgs), text);
            assert!(
                matches!(msgs.last(), Some(SourceMsg::Corrupt { offset, .. }) if *offset == cut.len() as u64)
            );
        }
    }

    #[test]
    fn unsized_frames_decode_in_bounded_blocks() {
        let dir = tempfile::tempdir().unwrap();
        // Three frames without content size, each larger than a frame decoded whole may be.
        let one: Vec<u8> = lines(1_000_000);
        assert!(one.len() > ONE_SHOT_MAX);
        let mut z = Vec::new();
        for _ in 0..3 {
            z.extend(unsized_frame(&one));
        }
        let f = file(dir.path(), "cat.zst", &z, Format::Zstd);
        let msgs = try_collect(std::slice::from_ref(&f), (0, 0), None).unwrap();
        for m in &msgs {
            if let SourceMsg::Block(b) = m {
                assert!(b.data.len() <= BLOCK_BYTES);
            }
        }
        assert_eq!(bytes_of(&msgs), one.repeat(3));
        let at = one.len() as u64 + 12_345;
        let msgs = try_collect(&[f], (0, at), None).unwrap();
        assert_eq!(bytes_of_from(&msgs, at), one.repeat(3)[at as usize..]);
    }

    fn bytes_of_from(msgs: &[SourceMsg], from: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            if let SourceMsg::Block(b) = m {
                assert_eq!(b.offset, from + out.len() as u64);
                out.extend_from_slice(&b.data);
            }
        }
        out
    }

    #[test]
    fn resume_checks_the_decoded_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let text = lines(200_000);
        let mut multi = Vec::new();
        for chunk in text.chunks(100_000) {
            multi.extend(zstd::bulk::compress(chunk, 1).unwrap());
        }
        let mut unsized_multi = Vec::new();
        for chunk in text.chunks(300_000) {
            unsized_multi.extend(unsized_frame(chunk));
        }
        let files = [
            file(dir.path(), "p.ndjson", &text, Format::Plain),
            file(dir.path(), "m.ndjson.zst", &multi, Format::Zstd),
            file(dir.path(), "u.ndjson.zst", &unsized_multi, Format::Zstd),
            file(
                dir.path(),
                "s.ndjson.zst",
                &zstd::bulk::compress(&text, 1).unwrap(),
                Format::Zstd,
            ),
        ];
        for f in &files {
            let name = f.path.display();
            for at in [0u64, 1, 100_000, 123_457, text.len() as u64] {
                let mut good = PrefixHash::default();
                good.update(&text[..at as usize]);
                let msgs = try_collect(std::slice::from_ref(f), (0, at), Some(good.clone()))
                    .unwrap_or_else(|e| panic!("{name} at {at}: {e}"));
                assert_eq!(
                    bytes_of_from(&msgs, at),
                    &text[at as usize..],
                    "{name} at {at}"
                );
                let mut bad = good.clone();
                bad.chain ^= 1;
                let e = try_collect(std::slice::from_ref(f), (0, at), Some(bad)).unwrap_err();
                assert!(
                    e.to_string().contains("changed since the checkpoint"),
                    "{e}"
                );
                assert!(
                    e.to_string().contains(&format!("first {at} decoded bytes")),
                    "{e}"
                );
            }
            // a prefix longer than the file is not there
            let e = try_collect(
                std::slice::from_ref(f),
                (0, text.len() as u64 + 1),
                Some(PrefixHash::default()),
            )
            .unwrap_err();
            assert!(
                e.to_string().contains("changed since the checkpoint"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_file_shorter_than_at_open_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let text = lines(1000);
        for (name, bytes, format) in [
            ("p.ndjson", text.clone(), Format::Plain),
            (
                "z.ndjson.zst",
                zstd::bulk::compress(&text, 1).unwrap(),
                Format::Zstd,
            ),
        ] {
            let mut f = file(dir.path(), name, &bytes, format);
            f.size += 10;
            let e = try_collect(&[f], (0, 0), None).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(name) && msg.contains("shrank from"), "{msg}");
            assert!(msg.contains(&format!("to {} bytes", bytes.len())), "{msg}");
        }
    }

    #[test]
    fn identity_samples_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"hello").unwrap();
        let a = identity(&small).unwrap();
        assert_eq!(a, identity(&small).unwrap());
        assert_eq!(a.size, 5);
        assert_eq!(a.sample, xxhash_rust::xxh3::xxh3_64(b"hello"));
        std::fs::write(&small, b"hellO").unwrap();
        assert_ne!(identity(&small).unwrap().sample, a.sample);

        let big = dir.path().join("big");
        let mut data = vec![b'x'; 10 << 20];
        std::fs::write(&big, &data).unwrap();
        let b = identity(&big).unwrap();
        let last = data.len() - 1;
        data[last] = b'y';
        std::fs::write(&big, &data).unwrap();
        let c = identity(&big).unwrap();
        assert_ne!(b.sample, c.sample, "the last block is sampled");
        assert_eq!((b.size, b.inode, b.device), (c.size, c.inode, c.device));
        assert!(
            identity(Path::new("/dev/null")).is_err(),
            "a device has no identity"
        );
        let fifo = dir.path().join("fifo");
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(st.success());
        assert!(
            identity(&fifo).is_err(),
            "a FIFO has none, and asking does not block"
        );
    }

    #[test]
    fn expand_skips_and_refuses_output_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("out/late")).unwrap();
        std::fs::write(d.join("a.ndjson"), b"{}\n").unwrap();
        std::fs::write(d.join("out/late/part-0.ndjson.zst"), b"").unwrap();
        let out = d.join("out");
        let all = expand(&[d.to_path_buf()], &[]).unwrap();
        assert_eq!(all.len(), 2);
        let some = expand(&[d.to_path_buf()], &[out.clone(), d.join("nope")]).unwrap();
        assert_eq!(some, vec![d.join("a.ndjson")]);
        let inside = d.join("out/late/part-0.ndjson.zst");
        let e = expand(std::slice::from_ref(&inside), std::slice::from_ref(&out)).unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
        assert!(
            e.to_string().contains("lies inside --out/--checkpoint-dir"),
            "{e}"
        );
        let glob = PathBuf::from(format!("{}/out/*/*.zst", d.display()));
        assert!(expand(&[glob], std::slice::from_ref(&out)).is_err());
        assert!(expand(std::slice::from_ref(&out), std::slice::from_ref(&out)).is_err());
        assert_eq!(
            expand(&["-".into()], &[]).unwrap(),
            vec![PathBuf::from("-")]
        );
        assert!(expand(&["-".into(), "-".into()], &[]).is_err());
    }
}
