//! Frames on an attach or exec connection from a shim to the daemon: Docker's
//! multiplexed-stream header (stream byte, three zero bytes, big-endian payload length), so a
//! non-tty stream passes to the client unchanged, plus one frame of our own, [`EXIT`], that
//! ends the stream with the process's exit code.

use std::io::Read;

/// The process's standard output (and a terminal's output).
pub const STDOUT: u8 = 1;
/// The process's standard error.
pub const STDERR: u8 = 2;
/// The last frame: the exit code, in decimal.
pub const EXIT: u8 = 0xFE;

/// The header's size.
pub const HEADER: usize = 8;

/// One frame.
pub fn encode(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + HEADER);
    v.extend_from_slice(&[stream, 0, 0, 0]);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// The stream and payload length of a header.
pub fn header(h: &[u8; HEADER]) -> (u8, usize) {
    (h[0], u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize)
}

/// Reads one frame; `None` at the end of the stream.
pub fn read(r: &mut impl Read) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut h = [0u8; HEADER];
    match r.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let (s, n) = header(&h);
    let mut p = vec![0u8; n];
    r.read_exact(&mut p)?;
    Ok(Some((s, p)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let mut buf = super::encode(super::STDERR, b"oops\n");
        buf.extend(super::encode(super::EXIT, b"3"));
        let mut r = &buf[..];
        assert_eq!(
            super::read(&mut r).unwrap(),
            Some((super::STDERR, b"oops\n".to_vec()))
        );
        assert_eq!(
            super::read(&mut r).unwrap(),
            Some((super::EXIT, b"3".to_vec()))
        );
        assert_eq!(super::read(&mut r).unwrap(), None);
        let mut cut = &buf[..6];
        assert!(super::read(&mut cut).unwrap().is_none());
    }
}
