//! Mounting overlayfs: the new mount API with `lowerdir+` (Linux 6.8+), else classic mount(2).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use strata_graph::fsutil::{random_id, remove_tree};
use strata_graph::sys::{self, newmount::FsContext};

/// How overlay mounts are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountApi {
    /// `fsopen`/`fsconfig` with one `lowerdir+` per layer: no limit on chain length.
    New,
    /// `mount(2)` with a `lowerdir=` list in one page of options.
    Legacy,
}

/// Options every mount gets: no index (layers are shared between mounts), no redirects and no
/// metacopy (so the upper dir alone describes a layer's changes, which native diff relies on).
const FIXED: [(&str, &str); 3] = [
    ("index", "off"),
    ("redirect_dir", "off"),
    ("metacopy", "off"),
];

/// Mounts an overlay at `target` with `lowers` (nearest first) and, for a writable mount, an
/// (upper, work) pair; without one the mount is read-only.
pub fn mount_overlay(
    api: MountApi,
    home: &Path,
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    target: &Path,
) -> io::Result<()> {
    match api {
        MountApi::New => {
            let ctx = FsContext::open("overlay")?;
            ctx.set_string("source", b"overlay")?;
            for l in lowers {
                ctx.set_string("lowerdir+", l.as_os_str().as_bytes())?;
            }
            if let Some((upper, work)) = upper {
                ctx.set_string("upperdir", upper.as_os_str().as_bytes())?;
                ctx.set_string("workdir", work.as_os_str().as_bytes())?;
            }
            for (k, v) in FIXED {
                ctx.set_string(k, v.as_bytes())?;
            }
            const MOUNT_ATTR_RDONLY: u32 = 1;
            ctx.mount_at(
                target,
                if upper.is_some() {
                    0
                } else {
                    MOUNT_ATTR_RDONLY
                },
            )
        }
        MountApi::Legacy => {
            let fixed: String = FIXED.iter().map(|(k, v)| format!(",{k}={v}")).collect();
            let flags = if upper.is_some() { 0 } else { libc::MS_RDONLY };
            let options = |path: &dyn Fn(&Path) -> String| {
                let mut o = format!(
                    "lowerdir={}",
                    lowers.iter().map(|l| path(l)).collect::<Vec<_>>().join(":")
                );
                if let Some((u, w)) = upper {
                    o.push_str(&format!(",upperdir={},workdir={}", path(u), path(w)));
                }
                o.push_str(&fixed);
                o
            };
            let abs = options(&|p: &Path| p.display().to_string());
            if abs.len() < page_size() - 1 {
                return sys::mount(b"overlay", target, b"overlay", flags, Some(abs.as_bytes()));
            }
            // Too long for one page: relative paths from the home, mounted by a child process
            // that changes directory there (chdir would affect every thread of ours).
            let data = options(&|p: &Path| {
                p.strip_prefix(home)
                    .map(|r| r.display().to_string())
                    .unwrap_or_else(|_| p.display().to_string())
            });
            if data.len() >= page_size() - 1 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} layers do not fit in one page of mount options; this kernel lacks lowerdir+ (Linux 6.8+)", lowers.len()),
                ));
            }
            mount_from(home, &data, flags, target)
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// Mounts with relative option paths from a short-lived child whose working directory is `dir`.
fn mount_from(dir: &Path, data: &str, flags: libc::c_ulong, target: &Path) -> io::Result<()> {
    use std::os::unix::process::CommandExt;
    let cdir = sys::cpath(dir)?;
    let ctarget = sys::cpath(target)?;
    let cdata = CString::new(data)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in mount data"))?;
    let ov = CString::new("overlay").map_err(|_| io::Error::other("cstring"))?;
    let mut cmd = std::process::Command::new("/bin/true");
    // SAFETY: only async-signal-safe system calls run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::chdir(cdir.as_ptr()) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::mount(
                ov.as_ptr(),
                ctarget.as_ptr(),
                ov.as_ptr(),
                flags,
                cdata.as_ptr() as *const libc::c_void,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = cmd.status()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "mount helper exited with {status}"
        )));
    }
    Ok(())
}

/// Tries an overlay mount of two lower layers with `api` in a scratch directory under `home`.
pub fn probe_one(home: &Path, api: MountApi) -> io::Result<()> {
    let base = home.join(format!(".probe-{}", random_id(4)));
    let res = (|| {
        for d in ["l1", "l2", "upper", "work", "merged"] {
            std::fs::create_dir_all(base.join(d))?;
        }
        std::fs::write(base.join("l2/f"), b"probe")?;
        let merged = base.join("merged");
        mount_overlay(
            api,
            home,
            &[base.join("l1"), base.join("l2")],
            Some((&base.join("upper"), &base.join("work"))),
            &merged,
        )?;
        let ok = std::fs::read(merged.join("f")).map(|d| d == b"probe");
        sys::umount2(&merged, libc::MNT_DETACH)?;
        match ok {
            Ok(true) => Ok(()),
            _ => Err(io::Error::other(
                "overlay mount did not show the lower layer",
            )),
        }
    })();
    let _ = remove_tree(&base);
    res
}

/// The best mount API that works here.
pub fn probe(home: &Path) -> io::Result<MountApi> {
    match probe_one(home, MountApi::New) {
        Ok(()) => Ok(MountApi::New),
        Err(new_err) => {
            tracing::info!("overlay lowerdir+ unavailable ({new_err}); using mount(2)");
            probe_one(home, MountApi::Legacy).map(|_| MountApi::Legacy)
        }
    }
}

/// Whether the filesystem at `dir` fills in `d_type` in directory entries.
pub fn supports_dtype(dir: &Path) -> io::Result<bool> {
    let probe = dir.join(format!(".dtype-{}", random_id(4)));
    std::fs::write(&probe, b"")?;
    let c = sys::cpath(dir)?;
    // SAFETY: opendir/readdir/closedir on a valid path; entries read before closedir.
    let found = unsafe {
        let d = libc::opendir(c.as_ptr());
        if d.is_null() {
            let _ = std::fs::remove_file(&probe);
            return Err(io::Error::last_os_error());
        }
        let mut ok = true;
        loop {
            let e = libc::readdir(d);
            if e.is_null() {
                break;
            }
            if (*e).d_type == libc::DT_UNKNOWN {
                ok = false;
                break;
            }
        }
        libc::closedir(d);
        ok
    };
    std::fs::remove_file(&probe)?;
    Ok(found)
}
