//! Detects a layer's compression from its first bytes and decompresses it as a stream.

use std::io::{self, BufRead, BufReader, Read};

/// The compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
    Bzip2,
}

impl Compression {
    /// Recognises the magic bytes at the start of a stream.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Bzip2 => "bzip2",
        }
    }
}

/// Wraps `input` in the decompressor its magic bytes call for.
pub fn decompress<'a, R: Read + 'a>(input: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut buf = BufReader::with_capacity(1 << 20, input);
    let head = buf.fill_buf()?.to_vec();
    let head = if head.len() < 6 {
        // Short reads at the start: gather a few more bytes before deciding.
        let mut h = head;
        let mut b = buf;
        let mut more = Vec::new();
        more.extend_from_slice(&h);
        b.consume(h.len());
        while more.len() < 6 {
            let chunk = b.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len();
            more.extend_from_slice(chunk);
            b.consume(n);
        }
        h = more;
        let c = Compression::detect(&h);
        let chained = io::Cursor::new(h).chain(b);
        return Ok((c, wrap(c, BufReader::with_capacity(1 << 20, chained))));
    } else {
        head
    };
    let c = Compression::detect(&head);
    Ok((c, wrap(c, buf)))
}

fn wrap<'a, R: BufRead + 'a>(c: Compression, r: R) -> Box<dyn Read + 'a> {
    match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(r) {
            Ok(d) => Box::new(d),
            Err(e) => Box::new(FailingReader(Some(e))),
        },
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(r)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
    }
}

struct FailingReader(Option<io::Error>);

impl Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| io::Error::other("decompressor failed")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn detects_and_decompresses() {
        let data = b"hello tar".repeat(1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&data[..], 3).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&data).unwrap();
        let bz = bz.finish().unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&data).unwrap();
        let xz = xz.finish().unwrap();
        for (blob, want) in [
            (gz, Compression::Gzip),
            (zs, Compression::Zstd),
            (bz, Compression::Bzip2),
            (xz, Compression::Xz),
            (data.clone(), Compression::None),
        ] {
            let (c, mut r) = decompress(&blob[..]).unwrap();
            assert_eq!(c, want);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
        }
        let (c, mut r) = decompress(&b"ab"[..]).unwrap();
        assert_eq!(c, Compression::None);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ab");
    }
}
