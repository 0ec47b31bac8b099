//! Loop devices through their ioctls (`LOOP_CTL_GET_FREE`, `LOOP_CONFIGURE`), for loop-lvm's
//! data and metadata files. Devices are attached with autoclear: the kernel detaches one once
//! nothing holds it (the pool, when it is removed).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64`.
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// `struct loop_config`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// The loop device already attached to `file`, found through sysfs.
pub fn find(file: &Path) -> Option<PathBuf> {
    let want = std::fs::metadata(file).ok()?;
    for e in std::fs::read_dir("/sys/block").ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(backing) = std::fs::read_to_string(e.path().join("loop/backing_file")) else {
            continue;
        };
        let backing = backing.trim_end_matches('\n');
        let backing = backing.strip_suffix(" (deleted)").unwrap_or(backing);
        if let Ok(m) = std::fs::metadata(backing) {
            if m.dev() == want.dev() && m.ino() == want.ino() {
                return Some(PathBuf::from("/dev").join(name));
            }
        }
    }
    None
}

/// Attaches `file` to a free loop device (autoclear) and returns the device's path with an
/// open handle on it: autoclear detaches the device when its last holder closes it, so keep
/// the handle until something else (the pool) holds the device. The device already attached
/// to the file, if any.
pub fn attach(file: &Path) -> io::Result<(PathBuf, File)> {
    if let Some(dev) = find(file) {
        let f = OpenOptions::new().read(true).write(true).open(&dev)?;
        return Ok((dev, f));
    }
    let backing = OpenOptions::new().read(true).write(true).open(file)?;
    let ctl = File::open("/dev/loop-control")?;
    for _ in 0..8 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let dev = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                mknod_loop(&path, n as u32)?;
                OpenOptions::new().read(true).write(true).open(&path)?
            }
            Err(e) => return Err(e),
        };
        // SAFETY: plain integers and byte arrays; all zeroes is valid.
        let mut cfg: LoopConfig = unsafe { std::mem::zeroed() };
        cfg.fd = backing.as_raw_fd() as u32;
        cfg.info.flags = LO_FLAGS_AUTOCLEAR;
        let name = file.as_os_str().as_encoded_bytes();
        let len = name.len().min(63);
        cfg.info.file_name[..len].copy_from_slice(&name[..len]);
        // SAFETY: cfg is a valid loop_config that outlives the call.
        let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE as _, &cfg) };
        if r == 0 {
            return Ok((path, dev));
        }
        let e = io::Error::last_os_error();
        // Taken by someone else between GET_FREE and CONFIGURE: try another.
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(e);
        }
    }
    Err(io::Error::other("no free loop device after 8 attempts"))
}

fn mknod_loop(path: &Path, n: u32) -> io::Result<()> {
    let p = strata_graph::sys::cpath(path)?;
    // SAFETY: valid C string; loop devices are block major 7.
    let r = unsafe { libc::mknod(p.as_ptr(), libc::S_IFBLK | 0o660, libc::makedev(7, n)) };
    if r != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }
}
