//! An attached session on a taken-over connection (`run`, `start -a`, `exec`): the output to
//! stdout/stderr, stdin to the process when interactive, the local terminal in raw mode and
//! its size passed on when the process has a terminal.

use crate::CliError;
use std::io::{Read, Write};
use strata_api::client::Response;

/// Whether a descriptor is a terminal.
pub fn isatty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// The size (columns, rows) of the terminal on `fd`.
pub fn term_size(fd: i32) -> Option<(u16, u16)> {
    // SAFETY: a zeroed winsize is a valid out-buffer for TIOCGWINSZ.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize.
    if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } != 0 || ws.ws_col == 0 {
        return None;
    }
    Some((ws.ws_col, ws.ws_row))
}

/// The local terminal in raw mode until dropped.
struct RawMode {
    fd: i32,
    saved: libc::termios,
}

impl RawMode {
    fn enable(fd: i32) -> Option<RawMode> {
        // SAFETY: termios calls on a terminal descriptor with valid buffers.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(RawMode { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the settings read in `enable`.
        unsafe {
            libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved);
        }
    }
}

/// Copies Docker's multiplexed stream (8-byte frame headers) to stdout and stderr; a tty
/// stream goes to stdout as it is.
pub fn demux(r: &mut dyn Read, tty: bool) -> Result<(), CliError> {
    let io = |e| CliError::Io {
        context: "reading the container's output".into(),
        source: e,
    };
    if tty {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(e)),
            };
            let mut o = std::io::stdout().lock();
            o.write_all(&buf[..n]).map_err(CliError::Stdout)?;
            let _ = o.flush();
        }
    }
    let mut head = [0u8; 8];
    let mut buf = Vec::new();
    loop {
        match r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(io(e)),
        }
        let n = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        buf.resize(n, 0);
        r.read_exact(&mut buf).map_err(io)?;
        if head[0] == 2 {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(&buf);
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(&buf).map_err(CliError::Stdout)?;
            let _ = o.flush();
        }
    }
}

/// A function that passes a new terminal size (columns, rows) to the process.
pub type Resizer = Box<dyn Fn(u16, u16) + Send>;

/// A resizer that posts the size to `path` (`/containers/ID/resize`, `/exec/ID/resize`).
pub fn resizer(c: &strata_api::client::Client, path: String) -> Resizer {
    let c = c.clone();
    Box::new(move |w: u16, h: u16| {
        let _ = c.call(
            "POST",
            &path,
            &[("h", h.to_string()), ("w", w.to_string())],
            strata_api::client::Body::None,
        );
    })
}

/// Runs an attached session until the output ends.
/// Runs an attach session; `Ok(true)` when the user detached (the daemon saw the detach
/// keys, ctrl-p ctrl-q, in the input and ended the stream; the container keeps running).
pub fn session(
    resp: &mut Response,
    tty: bool,
    interactive: bool,
    resize: Option<Resizer>,
    detach_keys: bool,
) -> Result<bool, CliError> {
    let detached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _raw = if tty && interactive && isatty(0) {
        RawMode::enable(0)
    } else {
        None
    };
    if interactive {
        if let Some(mut input) = resp.take_input() {
            let detached = detached.clone();
            std::thread::spawn(move || {
                let mut stdin = std::io::stdin().lock();
                let mut buf = [0u8; 4096];
                // The daemon acts on the keys; this only notes that they went out.
                let keys = if detach_keys {
                    strata_api::attach::DEFAULT_DETACH_KEYS.to_vec()
                } else {
                    Vec::new()
                };
                let mut scan = strata_api::attach::DetachScan::new(keys);
                loop {
                    match stdin.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            // Noted before the keys go out: the daemon ends the stream as
                            // soon as it has them.
                            let hit = scan.feed(&buf[..n]).1;
                            if hit {
                                detached.store(true, std::sync::atomic::Ordering::SeqCst);
                            }
                            if input.write_all(&buf[..n]).is_err() || hit {
                                let _ = input.flush();
                                return;
                            }
                            let _ = input.flush();
                        }
                    }
                }
                input.close_write();
            });
        }
    }
    if let Some(resize) = resize.filter(|_| tty && isatty(1)) {
        // Polled rather than signalled: a changed size reaches the process within 300 ms.
        std::thread::spawn(move || {
            let mut last = None;
            loop {
                let now = term_size(1);
                if now != last {
                    if let Some((w, h)) = now {
                        resize(w, h);
                    }
                    last = now;
                }
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
        });
    }
    demux(resp.reader(), tty)?;
    Ok(detached.load(std::sync::atomic::Ordering::SeqCst))
}
