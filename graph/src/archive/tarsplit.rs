//! Exact re-export of applied layers, in the spirit of tar-split.
//!
//! While a layer is applied, every byte of its uncompressed tar that is not file content
//! (headers, extension records, padding, end blocks, trailing bytes) is written to a
//! zstd-compressed record stream, and each file's content is replaced by a reference to the
//! file in the layer. Re-export replays the records, reading contents back from the layer, and
//! yields the original bytes, hence the original diffID.
//!
//! Content that the same tar later overwrote or deleted cannot be read back from the layer; it
//! is stashed into a side "shadow" file at the moment it is about to disappear, and the layer
//! record notes which file reference reads from the shadow instead ([`Override`]).

use crate::sys;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;

const RAW: u8 = b'R';
const FILE: u8 = b'F';
const SPARSE: u8 = b'S';
const INLINE: u8 = b'I';
const END: u8 = b'E';

/// Errors reading or writing the record stream.
#[derive(Debug, thiserror::Error)]
pub enum TarSplitError {
    #[error("tar-split I/O: {0}")]
    Io(#[from] io::Error),
    #[error("tar-split record stream is corrupt: {0}")]
    Corrupt(String),
    #[error("layer content changed since it was applied: {path}: {reason}")]
    ContentChanged { path: String, reason: String },
}

impl From<TarSplitError> for io::Error {
    fn from(e: TarSplitError) -> io::Error {
        match e {
            TarSplitError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        }
    }
}

/// A file reference whose content lives in the shadow file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Override {
    /// Index of the file reference among all file references of the stream.
    pub file_index: u64,
    pub offset: u64,
    pub len: u64,
}

fn put_varint(w: &mut impl Write, mut v: u64) -> io::Result<()> {
    let mut buf = [0u8; 10];
    let mut i = 0;
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf[i] = b;
            i += 1;
            break;
        }
        buf[i] = b | 0x80;
        i += 1;
    }
    w.write_all(&buf[..i])
}

fn get_varint(r: &mut impl Read) -> Result<u64, TarSplitError> {
    let mut v: u64 = 0;
    for shift in (0..70).step_by(7) {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)
            .map_err(|_| TarSplitError::Corrupt("truncated number".into()))?;
        if shift == 63 && b[0] > 1 {
            return Err(TarSplitError::Corrupt("number overflows".into()));
        }
        v |= ((b[0] & 0x7f) as u64) << shift;
        if b[0] & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(TarSplitError::Corrupt("number too long".into()))
}

fn get_bytes(r: &mut impl Read, max: u64) -> Result<Vec<u8>, TarSplitError> {
    let n = get_varint(r)?;
    if n > max {
        return Err(TarSplitError::Corrupt(format!("record of {n} bytes")));
    }
    let mut v = vec![0u8; n as usize];
    r.read_exact(&mut v)
        .map_err(|_| TarSplitError::Corrupt("truncated record".into()))?;
    Ok(v)
}

/// Writes the record stream while a layer is applied.
pub struct TarSplitWriter {
    enc: zstd::stream::write::Encoder<'static, io::BufWriter<File>>,
    files: u64,
}

impl TarSplitWriter {
    pub fn new(out: File) -> io::Result<Self> {
        let enc =
            zstd::stream::write::Encoder::new(io::BufWriter::with_capacity(256 * 1024, out), 3)?;
        Ok(TarSplitWriter { enc, files: 0 })
    }

    /// Non-content bytes.
    pub fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.enc.write_all(&[RAW])?;
        put_varint(&mut self.enc, bytes.len() as u64)?;
        self.enc.write_all(bytes)
    }

    /// Content kept in the stream itself (entries that do not become files).
    pub fn inline(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.enc.write_all(&[INLINE])?;
        put_varint(&mut self.enc, bytes.len() as u64)?;
        self.enc.write_all(bytes)
    }

    /// A reference to a file's content; returns its index for overrides.
    pub fn file(
        &mut self,
        path: &[u8],
        size: u64,
        sparse: Option<&[(u64, u64)]>,
    ) -> io::Result<u64> {
        match sparse {
            None => {
                self.enc.write_all(&[FILE])?;
                put_varint(&mut self.enc, path.len() as u64)?;
                self.enc.write_all(path)?;
                put_varint(&mut self.enc, size)?;
            }
            Some(map) => {
                self.enc.write_all(&[SPARSE])?;
                put_varint(&mut self.enc, path.len() as u64)?;
                self.enc.write_all(path)?;
                put_varint(&mut self.enc, map.len() as u64)?;
                for (o, l) in map {
                    put_varint(&mut self.enc, *o)?;
                    put_varint(&mut self.enc, *l)?;
                }
            }
        }
        self.files += 1;
        Ok(self.files - 1)
    }

    /// Ends the stream and makes it durable.
    pub fn finish(mut self) -> io::Result<()> {
        self.enc.write_all(&[END])?;
        let w = self.enc.finish()?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()
    }
}

enum Source {
    Bytes(Vec<u8>, usize),
    File {
        file: File,
        chunks: Vec<(u64, u64)>,
        idx: usize,
        pos: u64,
        path: String,
    },
    Shadow {
        off: u64,
        left: u64,
    },
}

/// Replays a record stream into the original tar bytes.
pub struct TarSplitReader {
    dec: BufReader<zstd::stream::read::Decoder<'static, BufReader<File>>>,
    root: OwnedFd,
    shadow: Option<File>,
    overrides: Vec<Override>,
    files: u64,
    cur: Option<Source>,
    done: bool,
}

impl TarSplitReader {
    /// `records`: the record stream; `root`: the layer's own files; `shadow` and `overrides`
    /// as written at apply time.
    pub fn new(
        records: File,
        root: OwnedFd,
        shadow: Option<File>,
        mut overrides: Vec<Override>,
    ) -> io::Result<Self> {
        overrides.sort_by_key(|o| o.file_index);
        Ok(TarSplitReader {
            dec: BufReader::with_capacity(64 * 1024, zstd::stream::read::Decoder::new(records)?),
            root,
            shadow,
            overrides,
            files: 0,
            cur: None,
            done: false,
        })
    }

    fn next_source(&mut self) -> Result<Option<Source>, TarSplitError> {
        let mut tag = [0u8; 1];
        if self.dec.read_exact(&mut tag).is_err() {
            return Err(TarSplitError::Corrupt(
                "stream ends without an end record".into(),
            ));
        }
        match tag[0] {
            RAW | INLINE => Ok(Some(Source::Bytes(get_bytes(&mut self.dec, 1 << 30)?, 0))),
            FILE | SPARSE => {
                let path = get_bytes(&mut self.dec, 1 << 16)?;
                let chunks = if tag[0] == FILE {
                    vec![(0, get_varint(&mut self.dec)?)]
                } else {
                    let n = get_varint(&mut self.dec)?;
                    if n > 1 << 24 {
                        return Err(TarSplitError::Corrupt("sparse map too large".into()));
                    }
                    (0..n)
                        .map(|_| Ok((get_varint(&mut self.dec)?, get_varint(&mut self.dec)?)))
                        .collect::<Result<_, TarSplitError>>()?
                };
                let index = self.files;
                self.files += 1;
                if let Ok(i) = self
                    .overrides
                    .binary_search_by_key(&index, |o| o.file_index)
                {
                    let o = self.overrides[i];
                    return Ok(Some(Source::Shadow {
                        off: o.offset,
                        left: o.len,
                    }));
                }
                let total: u64 = chunks.iter().map(|c| c.1).sum();
                let display = String::from_utf8_lossy(&path).into_owned();
                if total == 0 {
                    return Ok(Some(Source::Bytes(Vec::new(), 0)));
                }
                let fd = sys::openat2(
                    self.root.as_fd(),
                    &path,
                    libc::O_RDONLY | libc::O_NOFOLLOW,
                    0,
                    sys::resolve::BENEATH | sys::resolve::NO_SYMLINKS | sys::resolve::NO_MAGICLINKS,
                )
                .map_err(|e| TarSplitError::ContentChanged {
                    path: display.clone(),
                    reason: e.to_string(),
                })?;
                let mut file = File::from(fd);
                file.seek(SeekFrom::Start(chunks[0].0))?;
                Ok(Some(Source::File {
                    file,
                    pos: 0,
                    idx: 0,
                    chunks,
                    path: display,
                }))
            }
            END => Ok(None),
            t => Err(TarSplitError::Corrupt(format!("unknown record type {t}"))),
        }
    }

    fn read_inner(&mut self, buf: &mut [u8]) -> Result<usize, TarSplitError> {
        loop {
            if self.done {
                return Ok(0);
            }
            match &mut self.cur {
                None => match self.next_source()? {
                    None => {
                        self.done = true;
                        return Ok(0);
                    }
                    Some(s) => self.cur = Some(s),
                },
                Some(Source::Bytes(b, pos)) => {
                    let n = (b.len() - *pos).min(buf.len());
                    buf[..n].copy_from_slice(&b[*pos..*pos + n]);
                    *pos += n;
                    if *pos == b.len() {
                        self.cur = None;
                    }
                    if n > 0 {
                        return Ok(n);
                    }
                }
                Some(Source::Shadow { off, left }) => {
                    if *left == 0 {
                        self.cur = None;
                        continue;
                    }
                    let shadow = self
                        .shadow
                        .as_ref()
                        .ok_or_else(|| TarSplitError::Corrupt("shadow file missing".into()))?;
                    let want = (*left).min(buf.len() as u64) as usize;
                    let n = shadow.read_at(&mut buf[..want], *off)?;
                    if n == 0 {
                        return Err(TarSplitError::Corrupt("shadow file is short".into()));
                    }
                    *off += n as u64;
                    *left -= n as u64;
                    return Ok(n);
                }
                Some(Source::File {
                    file,
                    chunks,
                    idx,
                    pos,
                    path,
                }) => {
                    let (off, len) = chunks[*idx];
                    if *pos == len {
                        *idx += 1;
                        *pos = 0;
                        if *idx == chunks.len() {
                            self.cur = None;
                        } else {
                            file.seek(SeekFrom::Start(chunks[*idx].0))?;
                        }
                        continue;
                    }
                    let want = (len - *pos).min(buf.len() as u64) as usize;
                    let n = file.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(TarSplitError::ContentChanged {
                            path: path.clone(),
                            reason: format!(
                                "file is shorter than the {} bytes recorded at offset {off}",
                                len
                            ),
                        });
                    }
                    *pos += n as u64;
                    return Ok(n);
                }
            }
        }
    }
}

impl Read for TarSplitReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_inner(buf).map_err(io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v).unwrap();
            assert_eq!(get_varint(&mut &b[..]).unwrap(), v);
        }
    }
}
