//! A streaming tar reader and writer.
//!
//! The reader understands ustar, GNU (long names, old sparse) and PAX (long names, xattrs,
//! nanosecond times, sparse 0.1 and 1.0) archives. It verifies header checksums, refuses
//! truncation and keeps every byte that is not file content (headers, extension records,
//! padding, the end-of-archive blocks and anything after them) so that a layer can later be
//! rebuilt byte for byte from this "raw" stream plus the files on disk, as tar-split does.

use crate::sys::Timespec;
use std::io::{self, Read, Write};

/// Tar works in blocks of this many bytes.
pub const BLOCK: usize = 512;

/// Errors reading a tar stream.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("reading the archive: {0}")]
    Io(#[from] io::Error),
    #[error("archive is truncated: unexpected end of data in {entry}")]
    Truncated { entry: String },
    #[error("archive is corrupt: header checksum mismatch at byte offset {offset} (after entry {after})")]
    Checksum { offset: u64, after: String },
    #[error("archive is corrupt in entry {entry}: {reason}")]
    Corrupt { entry: String, reason: String },
    #[error("entry {entry}: {reason} is not supported")]
    Unsupported { entry: String, reason: String },
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Regular,
    Hardlink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

/// A data region of a sparse file: (offset in the file, length).
pub type SparseChunk = (u64, u64);

/// One parsed archive entry, with all extension records applied.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: Timespec,
    pub atime: Option<Timespec>,
    pub devmajor: u32,
    pub devminor: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The file's logical size (for sparse files, the size with holes).
    pub size: u64,
    /// Data regions, for sparse files.
    pub sparse: Option<Vec<SparseChunk>>,
    /// Content bytes that follow in the archive.
    pub payload: u64,
}

impl Entry {
    /// The path as text for messages.
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// Reads entries one by one from an uncompressed tar stream.
pub struct TarReader<R: Read> {
    r: R,
    /// Bytes consumed from `r`.
    offset: u64,
    /// Content bytes of the current entry not yet read.
    remaining: u64,
    /// Padding after the current entry's content.
    pad: u64,
    record: bool,
    raw: Vec<u8>,
    global: Vec<(String, Vec<u8>)>,
    last: String,
    done: bool,
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let s: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ' || *b == 0)
        .take_while(|b| *b != 0 && *b != b' ')
        .collect();
    if s.is_empty() {
        return Some(0);
    }
    let mut v: u64 = 0;
    for b in s {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add((b - b'0') as u64)?;
    }
    Some(v)
}

/// A numeric field: octal, or GNU base-256 when the high bit is set.
fn parse_num(field: &[u8]) -> Option<i64> {
    if field[0] & 0x80 != 0 {
        // Negative base-256 values (bit 0x40) have no use in a layer; refuse them.
        if field[0] & 0x40 != 0 {
            return None;
        }
        let mut v: i128 = (field[0] & 0x3f) as i128;
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(*b as i128)?;
        }
        i64::try_from(v).ok()
    } else {
        parse_octal(field).and_then(|v| i64::try_from(v).ok())
    }
}

fn checksum_ok(h: &[u8; BLOCK]) -> bool {
    let want = match parse_octal(&h[148..156]) {
        Some(v) => v as i64,
        None => return false,
    };
    let mut unsigned: i64 = 0;
    let mut signed: i64 = 0;
    for (i, b) in h.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { *b };
        unsigned += b as i64;
        signed += b as i8 as i64;
    }
    want == unsigned || want == signed
}

fn c_field(f: &[u8]) -> Vec<u8> {
    crate::sys::c_bytes(f).to_vec()
}

/// Parses PAX records (`"<len> <key>=<value>\n"`).
fn parse_pax(data: &[u8], entry: &str) -> Result<Vec<(String, Vec<u8>)>, TarError> {
    let bad = |r: &str| TarError::Corrupt {
        entry: entry.to_string(),
        reason: format!("bad PAX record: {r}"),
    };
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|b| *b == 0) {
            break;
        }
        let sp = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| bad("no length"))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("length"))?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad("length out of range"));
        }
        let rec = &rest[sp + 1..len - 1];
        let eq = rec
            .iter()
            .position(|b| *b == b'=')
            .ok_or_else(|| bad("no '='"))?;
        let key = String::from_utf8(rec[..eq].to_vec()).map_err(|_| bad("key is not UTF-8"))?;
        out.push((key, rec[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

fn parse_pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = sec.parse().ok()?;
    let mut ns: u32 = 0;
    if !frac.is_empty() {
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        ns = digits.parse().ok()?;
    }
    if neg {
        if ns > 0 {
            Some(Timespec {
                sec: -sec - 1,
                nsec: 1_000_000_000 - ns,
            })
        } else {
            Some(Timespec { sec: -sec, nsec: 0 })
        }
    } else {
        Some(Timespec { sec, nsec: ns })
    }
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

impl<R: Read> TarReader<R> {
    /// A reader over `r`; with `record`, non-content bytes are kept for [`TarReader::take_raw`].
    pub fn new(r: R, record: bool) -> Self {
        TarReader {
            r,
            offset: 0,
            remaining: 0,
            pad: 0,
            record,
            raw: Vec::new(),
            global: Vec::new(),
            last: "the archive header".into(),
            done: false,
        }
    }

    /// Non-content bytes read since the last call.
    pub fn take_raw(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.raw)
    }

    /// Bytes of the uncompressed stream consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn into_inner(self) -> R {
        self.r
    }

    fn read_exact_raw(&mut self, buf: &mut [u8]) -> Result<(), TarError> {
        match self.r.read_exact(buf) {
            Ok(()) => {
                self.offset += buf.len() as u64;
                if self.record {
                    self.raw.extend_from_slice(buf);
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(TarError::Truncated {
                entry: self.last.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads `n` bytes of an extension entry's data (plus its padding), recorded as raw.
    fn read_ext_data(&mut self, n: u64) -> Result<Vec<u8>, TarError> {
        if n > 64 << 20 {
            return Err(TarError::Corrupt {
                entry: self.last.clone(),
                reason: format!("extension header of {n} bytes"),
            });
        }
        let padded = (n as usize).div_ceil(BLOCK) * BLOCK;
        let mut buf = vec![0u8; padded];
        self.read_exact_raw(&mut buf)?;
        buf.truncate(n as usize);
        Ok(buf)
    }

    /// Reads content of the current entry; 0 at its end.
    pub fn read_payload(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.remaining) as usize;
        let n = match self.r.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(TarError::Truncated {
                    entry: self.last.clone(),
                })
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        self.offset += n as u64;
        self.remaining -= n as u64;
        Ok(n)
    }

    /// Reads all remaining content of the current entry into a vector (for small payloads).
    pub fn read_payload_to_vec(&mut self) -> Result<Vec<u8>, TarError> {
        let mut v = Vec::with_capacity(self.remaining.min(1 << 20) as usize);
        let mut buf = [0u8; 8192];
        loop {
            let n = self.read_payload(&mut buf)?;
            if n == 0 && self.remaining == 0 {
                return Ok(v);
            }
            v.extend_from_slice(&buf[..n]);
        }
    }

    /// Content bytes of the current entry not yet read.
    pub fn payload_remaining(&self) -> u64 {
        self.remaining
    }

    /// Skips what is left of the current entry (content is recorded as raw) and its padding.
    fn finish_entry(&mut self) -> Result<(), TarError> {
        let mut buf = [0u8; 8192];
        while self.remaining > 0 {
            let want = (buf.len() as u64).min(self.remaining) as usize;
            self.read_exact_raw(&mut buf[..want])?;
            self.remaining -= want as u64;
        }
        if self.pad > 0 {
            let p = self.pad as usize;
            self.read_exact_raw(&mut buf[..p])?;
            self.pad = 0;
        }
        Ok(())
    }

    /// After the end-of-archive marker: reads everything left in the stream (recorded as raw).
    fn drain(&mut self) -> Result<(), TarError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match self.r.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            self.offset += n as u64;
            if self.record {
                self.raw.extend_from_slice(&buf[..n]);
            }
        }
    }

    /// The next file entry, `None` after the end-of-archive marker (and anything after it,
    /// which is read to the end of the stream so that it counts in the digest).
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        if self.done {
            return Ok(None);
        }
        self.finish_entry()?;
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        loop {
            let start = self.offset;
            let mut h = [0u8; BLOCK];
            match self.r.read_exact(&mut h) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(TarError::Truncated {
                        entry: format!("{} (no end-of-archive marker)", self.last),
                    })
                }
                Err(e) => return Err(e.into()),
            }
            self.offset += BLOCK as u64;
            if self.record {
                self.raw.extend_from_slice(&h);
            }
            if h.iter().all(|b| *b == 0) {
                if !pax.is_empty() || long_name.is_some() || long_link.is_some() {
                    return Err(TarError::Corrupt {
                        entry: self.last.clone(),
                        reason: "extension header without an entry".into(),
                    });
                }
                self.done = true;
                self.drain()?;
                return Ok(None);
            }
            if !checksum_ok(&h) {
                return Err(TarError::Checksum {
                    offset: start,
                    after: self.last.clone(),
                });
            }
            let typeflag = h[156];
            let hdr_size =
                parse_num(&h[124..136])
                    .filter(|v| *v >= 0)
                    .ok_or_else(|| TarError::Corrupt {
                        entry: String::from_utf8_lossy(c_field(&h[0..100]).as_slice()).into_owned(),
                        reason: "bad size field".into(),
                    })? as u64;
            match typeflag {
                b'x' => {
                    let data = self.read_ext_data(hdr_size)?;
                    pax.extend(parse_pax(&data, &self.last)?);
                    continue;
                }
                b'g' => {
                    let data = self.read_ext_data(hdr_size)?;
                    for (k, v) in parse_pax(&data, &self.last)? {
                        self.global.retain(|(gk, _)| *gk != k);
                        self.global.push((k, v));
                    }
                    continue;
                }
                b'L' => {
                    let data = self.read_ext_data(hdr_size)?;
                    long_name = Some(c_field(&data));
                    continue;
                }
                b'K' => {
                    let data = self.read_ext_data(hdr_size)?;
                    long_link = Some(c_field(&data));
                    continue;
                }
                _ => {}
            }
            let entry = self.build_entry(&h, hdr_size, pax, long_name, long_link)?;
            return Ok(Some(entry));
        }
    }

    fn build_entry(
        &mut self,
        h: &[u8; BLOCK],
        hdr_size: u64,
        pax: Vec<(String, Vec<u8>)>,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
    ) -> Result<Entry, TarError> {
        let magic = &h[257..263];
        let is_gnu = magic == b"ustar " && &h[263..265] == b" \0";
        let is_ustar = magic == b"ustar\0";
        let mut path = c_field(&h[0..100]);
        if is_ustar {
            let prefix = c_field(&h[345..500]);
            if !prefix.is_empty() {
                let mut p = prefix;
                p.push(b'/');
                p.extend_from_slice(&path);
                path = p;
            }
        }
        if let Some(n) = long_name {
            path = n;
        }
        let mut link = long_link.unwrap_or_else(|| c_field(&h[157..257]));
        let display = String::from_utf8_lossy(&path).into_owned();
        self.last = display.clone();
        let corrupt = |field: &str| TarError::Corrupt {
            entry: display.clone(),
            reason: format!("bad {field} field"),
        };
        let mode = parse_num(&h[100..108]).ok_or_else(|| corrupt("mode"))? as u32;
        let mut uid = parse_num(&h[108..116]).ok_or_else(|| corrupt("uid"))? as u64;
        let mut gid = parse_num(&h[116..124]).ok_or_else(|| corrupt("gid"))? as u64;
        let mut mtime = Timespec {
            sec: parse_num(&h[136..148]).ok_or_else(|| corrupt("mtime"))?,
            nsec: 0,
        };
        let mut atime = None;
        let devmajor = parse_num(&h[329..337]).ok_or_else(|| corrupt("devmajor"))? as u32;
        let devminor = parse_num(&h[337..345]).ok_or_else(|| corrupt("devminor"))? as u32;
        let typeflag = h[156];
        let mut kind = match typeflag {
            b'0' | 0 | b'7' | b'S' => Kind::Regular,
            b'1' => Kind::Hardlink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' => Kind::Dir,
            b'6' => Kind::Fifo,
            other => {
                return Err(TarError::Unsupported {
                    entry: display,
                    reason: format!("entry type {:?}", other as char),
                })
            }
        };
        if kind == Kind::Regular && typeflag == 0 && path.ends_with(b"/") {
            kind = Kind::Dir;
        }
        let mut size = hdr_size;
        let mut xattrs = Vec::new();
        let mut sparse: Option<Vec<SparseChunk>> = None;
        let mut sparse_major: Option<u64> = None;
        let mut sparse_real: Option<u64> = None;
        let mut sparse_name: Option<Vec<u8>> = None;
        let records: Vec<(String, Vec<u8>)> = self.global.iter().cloned().chain(pax).collect();
        for (k, v) in records {
            match k.as_str() {
                "path" => path = v,
                "linkpath" => link = v,
                "size" => size = parse_decimal(&v).ok_or_else(|| corrupt("PAX size"))?,
                "uid" => uid = parse_decimal(&v).ok_or_else(|| corrupt("PAX uid"))?,
                "gid" => gid = parse_decimal(&v).ok_or_else(|| corrupt("PAX gid"))?,
                "mtime" => mtime = parse_pax_time(&v).ok_or_else(|| corrupt("PAX mtime"))?,
                "atime" => atime = Some(parse_pax_time(&v).ok_or_else(|| corrupt("PAX atime"))?),
                "GNU.sparse.major" => sparse_major = parse_decimal(&v),
                "GNU.sparse.name" => sparse_name = Some(v),
                "GNU.sparse.realsize" | "GNU.sparse.size" => sparse_real = parse_decimal(&v),
                "GNU.sparse.map" => {
                    let nums: Option<Vec<u64>> = std::str::from_utf8(&v).ok().and_then(|s| {
                        s.split(',')
                            .filter(|x| !x.is_empty())
                            .map(|x| x.parse().ok())
                            .collect::<Option<Vec<u64>>>()
                    });
                    let nums = nums
                        .filter(|n| n.len() % 2 == 0)
                        .ok_or_else(|| corrupt("GNU.sparse.map"))?;
                    sparse = Some(nums.chunks(2).map(|c| (c[0], c[1])).collect());
                }
                "GNU.sparse.offset" | "GNU.sparse.numbytes" => {
                    return Err(TarError::Unsupported {
                        entry: display,
                        reason: "GNU sparse format 0.0".into(),
                    })
                }
                _ => {
                    if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                        xattrs.push((name.as_bytes().to_vec(), v));
                    }
                }
            }
        }
        if let Some(n) = sparse_name {
            path = n;
            self.last = String::from_utf8_lossy(&path).into_owned();
        }
        let header_only = matches!(
            kind,
            Kind::Hardlink | Kind::Symlink | Kind::Char | Kind::Block | Kind::Dir | Kind::Fifo
        );
        let mut payload = if header_only { 0 } else { size };
        self.remaining = payload;
        self.pad = (BLOCK as u64 - payload % BLOCK as u64) % BLOCK as u64;
        if is_gnu && typeflag == b'S' {
            // Old GNU sparse: four map entries in the header, more in extension blocks.
            let mut map = Vec::new();
            let read_map = |block: &[u8], n: usize, map: &mut Vec<SparseChunk>| -> Option<()> {
                for i in 0..n {
                    let e = &block[i * 24..i * 24 + 24];
                    if e.iter().all(|b| *b == 0) {
                        continue;
                    }
                    map.push((parse_num(&e[0..12])? as u64, parse_num(&e[12..24])? as u64));
                }
                Some(())
            };
            read_map(&h[386..482], 4, &mut map).ok_or_else(|| corrupt("sparse map"))?;
            let mut extended = h[482] != 0;
            while extended {
                let mut b = [0u8; BLOCK];
                self.read_exact_raw(&mut b)?;
                read_map(&b[..504], 21, &mut map).ok_or_else(|| corrupt("sparse map"))?;
                extended = b[504] != 0;
            }
            size = parse_num(&h[483..495]).ok_or_else(|| corrupt("realsize"))? as u64;
            sparse = Some(map);
        } else if sparse_major == Some(1) {
            // PAX sparse 1.0: the map opens the content, in decimal lines, padded to a block.
            let mut text = Vec::new();
            let mut block = [0u8; BLOCK];
            let mut numbers: Vec<u64> = Vec::new();
            let mut want: Option<usize> = None;
            loop {
                if self.remaining < BLOCK as u64 {
                    return Err(corrupt("sparse map"));
                }
                self.read_exact_raw(&mut block)?;
                self.remaining -= BLOCK as u64;
                text.extend_from_slice(&block);
                numbers.clear();
                let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
                // The last piece is incomplete (no newline yet).
                for l in &lines[..lines.len() - 1] {
                    numbers.push(parse_decimal(l).ok_or_else(|| corrupt("sparse map"))?);
                }
                if want.is_none() && !numbers.is_empty() {
                    want = Some(1 + 2 * numbers[0] as usize);
                }
                if let Some(w) = want {
                    if numbers.len() >= w {
                        break;
                    }
                }
            }
            payload = self.remaining;
            let n = numbers[0] as usize;
            sparse = Some(
                (0..n)
                    .map(|i| (numbers[1 + 2 * i], numbers[2 + 2 * i]))
                    .collect(),
            );
            size = sparse_real.ok_or_else(|| corrupt("GNU.sparse.realsize"))?;
        } else if sparse.is_some() {
            size = sparse_real.ok_or_else(|| corrupt("GNU.sparse.size"))?;
        }
        if let Some(map) = &sparse {
            let total: u64 = map.iter().map(|c| c.1).sum();
            if total != payload {
                return Err(TarError::Corrupt {
                    entry: display,
                    reason: format!(
                        "sparse map covers {total} bytes but the entry holds {payload}"
                    ),
                });
            }
            if map
                .iter()
                .any(|(o, l)| o.checked_add(*l).is_none_or(|end| end > size))
            {
                return Err(TarError::Corrupt {
                    entry: display,
                    reason: "sparse map reaches past the file size".into(),
                });
            }
        }
        Ok(Entry {
            path,
            link,
            kind,
            mode: mode & 0o7777,
            uid,
            gid,
            mtime,
            atime,
            devmajor,
            devminor,
            xattrs,
            size: if header_only { 0 } else { size },
            sparse,
            payload,
        })
    }
}

/// What to write for one entry.
#[derive(Debug, Clone)]
pub struct Header {
    /// Path without a trailing slash; directories get one added.
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub size: u64,
    pub devmajor: u32,
    pub devminor: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Header {
    /// An entry owned by root, mode 0644 (0755 for directories), time zero, no xattrs.
    pub fn new(path: impl Into<Vec<u8>>, kind: Kind, size: u64) -> Header {
        Header {
            path: path.into(),
            link: Vec::new(),
            kind,
            mode: if kind == Kind::Dir { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            mtime: 0,
            size,
            devmajor: 0,
            devminor: 0,
            xattrs: Vec::new(),
        }
    }
}

fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let base = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = base + 1;
    while len != base + len.to_string().len() {
        len = base + len.to_string().len();
    }
    let mut r = format!("{len} ").into_bytes();
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn put_octal(field: &mut [u8], v: u64) -> bool {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    if s.len() > digits {
        return false;
    }
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
    true
}

/// Writes a tar stream in the ustar format, adding PAX records where ustar cannot hold a value.
pub struct TarWriter<W: Write> {
    w: W,
}

impl<W: Write> TarWriter<W> {
    pub fn new(w: W) -> Self {
        TarWriter { w }
    }

    fn block(&mut self, b: &[u8; BLOCK]) -> io::Result<()> {
        self.w.write_all(b)
    }

    fn ustar_block(
        h: &Header,
        name: &[u8],
        prefix: &[u8],
        link: &[u8],
        typeflag: u8,
        size: u64,
    ) -> ([u8; BLOCK], bool) {
        let mut b = [0u8; BLOCK];
        b[..name.len()].copy_from_slice(name);
        b[345..345 + prefix.len()].copy_from_slice(prefix);
        b[157..157 + link.len()].copy_from_slice(link);
        let mut fits = put_octal(&mut b[100..108], h.mode as u64 & 0o7777);
        fits &= put_octal(&mut b[108..116], h.uid);
        fits &= put_octal(&mut b[116..124], h.gid);
        fits &= put_octal(&mut b[124..136], size);
        fits &= h.mtime >= 0 && put_octal(&mut b[136..148], h.mtime.max(0) as u64);
        b[156] = typeflag;
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        if matches!(h.kind, Kind::Char | Kind::Block) {
            fits &= put_octal(&mut b[329..337], h.devmajor as u64);
            fits &= put_octal(&mut b[337..345], h.devminor as u64);
        }
        (b, fits)
    }

    fn seal(b: &mut [u8; BLOCK]) {
        b[148..156].copy_from_slice(b"        ");
        let sum: u64 = b.iter().map(|x| *x as u64).sum();
        let s = format!("{sum:06o}\0 ");
        b[148..156].copy_from_slice(s.as_bytes());
    }

    /// Appends an entry; `data` must yield exactly `h.size` bytes for regular files.
    pub fn append(&mut self, h: &Header, data: Option<&mut dyn Read>) -> io::Result<()> {
        let mut path = h.path.clone();
        if h.kind == Kind::Dir && !path.ends_with(b"/") {
            path.push(b'/');
        }
        let typeflag = match h.kind {
            Kind::Regular => b'0',
            Kind::Hardlink => b'1',
            Kind::Symlink => b'2',
            Kind::Char => b'3',
            Kind::Block => b'4',
            Kind::Dir => b'5',
            Kind::Fifo => b'6',
        };
        let size = if h.kind == Kind::Regular { h.size } else { 0 };
        let mut pax = Vec::new();
        // Split a long name into prefix/name where ustar allows it.
        let (name, prefix): (Vec<u8>, Vec<u8>) = if path.len() <= 100 {
            (path.clone(), Vec::new())
        } else {
            let split = path[..path.len() - 1]
                .iter()
                .enumerate()
                .filter(|(i, c)| **c == b'/' && *i <= 155 && path.len() - i - 1 <= 100 && *i > 0)
                .map(|(i, _)| i)
                .next();
            match split {
                Some(i) => (path[i + 1..].to_vec(), path[..i].to_vec()),
                None => {
                    pax.extend(pax_record(b"path", &path));
                    (path[..100].to_vec(), Vec::new())
                }
            }
        };
        let link = if h.link.len() > 100 {
            pax.extend(pax_record(b"linkpath", &h.link));
            h.link[..100].to_vec()
        } else {
            h.link.clone()
        };
        for (k, v) in &h.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax.extend(pax_record(&key, v));
        }
        let (mut block, fits) = Self::ustar_block(h, &name, &prefix, &link, typeflag, size);
        if !fits {
            pax.extend(pax_record(b"uid", h.uid.to_string().as_bytes()));
            pax.extend(pax_record(b"gid", h.gid.to_string().as_bytes()));
            pax.extend(pax_record(b"size", size.to_string().as_bytes()));
            pax.extend(pax_record(b"mtime", h.mtime.to_string().as_bytes()));
            let mut clean = h.clone();
            clean.uid = clean.uid.min(0o7777777);
            clean.gid = clean.gid.min(0o7777777);
            clean.mtime = clean.mtime.clamp(0, 0o77777777777);
            let (b, _) = Self::ustar_block(
                &clean,
                &name,
                &prefix,
                &link,
                typeflag,
                size.min(0o77777777777),
            );
            block = b;
        }
        if !pax.is_empty() {
            let base = path
                .rsplit(|c| *c == b'/')
                .find(|s| !s.is_empty())
                .unwrap_or(b"entry");
            let mut pname = b"PaxHeaders.0/".to_vec();
            pname.extend_from_slice(base);
            pname.truncate(100);
            let ph = Header {
                path: pname.clone(),
                link: Vec::new(),
                kind: Kind::Regular,
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
                size: pax.len() as u64,
                devmajor: 0,
                devminor: 0,
                xattrs: Vec::new(),
            };
            let (mut pb, _) = Self::ustar_block(&ph, &pname, &[], &[], b'x', pax.len() as u64);
            Self::seal(&mut pb);
            self.block(&pb)?;
            self.w.write_all(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        Self::seal(&mut block);
        self.block(&block)?;
        if size > 0 {
            let data = data.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "regular file without data")
            })?;
            let n = io::copy(&mut data.take(size), &mut self.w)?;
            if n != size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{}: file shrank while it was archived",
                        String::from_utf8_lossy(&h.path)
                    ),
                ));
            }
            self.pad(size)?;
        }
        Ok(())
    }

    fn pad(&mut self, n: u64) -> io::Result<()> {
        let p = (BLOCK as u64 - n % BLOCK as u64) % BLOCK as u64;
        self.w.write_all(&[0u8; BLOCK][..p as usize])
    }

    /// Writes the end-of-archive marker (two zero blocks) and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.w.write_all(&[0u8; 2 * BLOCK])?;
        self.w.flush()?;
        Ok(self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(path: &str, kind: Kind, size: u64) -> Header {
        Header {
            path: path.as_bytes().to_vec(),
            link: Vec::new(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            size,
            devmajor: 0,
            devminor: 0,
            xattrs: Vec::new(),
        }
    }

    #[test]
    fn round_trip_with_long_names_and_xattrs() {
        let long = format!("{}/{}", "d".repeat(150), "f".repeat(120));
        let mut w = TarWriter::new(Vec::new());
        let mut h = hdr(&long, Kind::Regular, 5);
        h.xattrs.push((b"user.k".to_vec(), b"v\0bin".to_vec()));
        h.uid = 5_000_000;
        w.append(&h, Some(&mut &b"hello"[..])).unwrap();
        w.append(&hdr("dir", Kind::Dir, 0), None).unwrap();
        let bytes = w.finish().unwrap();
        let mut r = TarReader::new(&bytes[..], true);
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(e.path, long.as_bytes());
        assert_eq!(e.uid, 5_000_000);
        assert_eq!(e.xattrs, vec![(b"user.k".to_vec(), b"v\0bin".to_vec())]);
        assert_eq!(r.read_payload_to_vec().unwrap(), b"hello");
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!((e.kind, e.path.as_slice()), (Kind::Dir, &b"dir/"[..]));
        assert!(r.next_entry().unwrap().is_none());
    }

    #[test]
    fn truncation_and_checksum_are_errors() {
        let mut w = TarWriter::new(Vec::new());
        w.append(&hdr("f", Kind::Regular, 1000), Some(&mut &[7u8; 1000][..]))
            .unwrap();
        let bytes = w.finish().unwrap();
        let mut r = TarReader::new(&bytes[..700], false);
        r.next_entry().unwrap();
        assert!(matches!(
            r.read_payload_to_vec(),
            Err(TarError::Truncated { .. })
        ));
        let mut bad = bytes.clone();
        bad[10] ^= 1;
        assert!(matches!(
            TarReader::new(&bad[..], false).next_entry(),
            Err(TarError::Checksum { .. })
        ));
        // No end-of-archive marker.
        let cut = &bytes[..512 + 1024];
        let mut r = TarReader::new(cut, false);
        r.next_entry().unwrap();
        r.read_payload_to_vec().unwrap();
        assert!(matches!(r.next_entry(), Err(TarError::Truncated { .. })));
    }

    #[test]
    fn raw_plus_payload_is_the_stream() {
        let mut w = TarWriter::new(Vec::new());
        w.append(
            &hdr(&"x".repeat(300), Kind::Regular, 3),
            Some(&mut &b"abc"[..]),
        )
        .unwrap();
        let mut bytes = w.finish().unwrap();
        bytes.extend_from_slice(&[0u8; 4096]);
        let mut r = TarReader::new(&bytes[..], true);
        let mut rebuilt = Vec::new();
        while let Some(_e) = r.next_entry().unwrap() {
            rebuilt.extend(r.take_raw());
            rebuilt.extend(r.read_payload_to_vec().unwrap());
        }
        rebuilt.extend(r.take_raw());
        assert_eq!(rebuilt, bytes);
    }

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time(b"1.5"),
            Some(Timespec {
                sec: 1,
                nsec: 500_000_000
            })
        );
        assert_eq!(
            parse_pax_time(b"-1.25"),
            Some(Timespec {
                sec: -2,
                nsec: 750_000_000
            })
        );
        assert_eq!(parse_pax_time(b"12"), Some(Timespec { sec: 12, nsec: 0 }));
        assert!(parse_pax_record_len());
    }

    fn parse_pax_record_len() -> bool {
        let r = pax_record(b"path", b"abc");
        let n: usize = std::str::from_utf8(&r[..r.iter().position(|b| *b == b' ').unwrap()])
            .unwrap()
            .parse()
            .unwrap();
        n == r.len()
    }
}
