//! `cp`: files between a container and the local filesystem, with docker's rules for what the
//! destination means (an existing directory receives the source; a new name renames it; `-`
//! is a tar stream; `SRC/.` copies a directory's contents).

use crate::CliError;
use clap::Args;
use std::path::{Path, PathBuf};
use strata_api::client::{escape, Body, Client, ClientError};
use strata_runtime::copy::{archive_local, extract_local};

#[derive(Args, Debug)]
pub struct CpArgs {
    /// CONTAINER:SRC_PATH, a local path, or - (a tar stream on STDIN).
    pub src: String,
    /// CONTAINER:DEST_PATH, a local path, or - (a tar stream on STDOUT).
    pub dst: String,
    /// Archive mode (copy all uid/gid information).
    #[arg(short, long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH.
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// Suppress progress output.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `container:path`, or `None` for a local path (absolute, relative with `.`, or `-`).
fn split(arg: &str) -> Option<(String, String)> {
    if arg.starts_with('/') || arg.starts_with('.') || arg == "-" {
        return None;
    }
    let (c, p) = arg.split_once(':')?;
    if c.is_empty() || c.contains('/') {
        return None;
    }
    Some((c.to_string(), p.to_string()))
}

/// What `HEAD .../archive` says of a container path; `None` when it does not exist.
struct Stat {
    is_dir: bool,
    link_target: String,
}

fn stat_remote(c: &Client, container: &str, path: &str) -> Result<Option<Stat>, CliError> {
    let resp = match c.call(
        "HEAD",
        &format!("/containers/{}/archive", escape(container)),
        &[("path", path.to_string())],
        Body::None,
    ) {
        Ok(r) => r,
        Err(ClientError::Daemon { status: 404, .. }) => {
            // HEAD has no body: tell a missing container from a missing path.
            c.call(
                "GET",
                &format!("/containers/{}/json", escape(container)),
                &[],
                Body::None,
            )?;
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let Some(h) = resp.header("X-Docker-Container-Path-Stat") else {
        return Err(CliError::Copy("the daemon sent no path stat".into()));
    };
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(h)
        .map_err(|e| CliError::Copy(format!("bad path stat: {e}")))?;
    let v: serde_json::Value =
        serde_json::from_slice(&raw).map_err(|e| CliError::Copy(format!("bad path stat: {e}")))?;
    let mode = v["mode"].as_u64().unwrap_or(0);
    Ok(Some(Stat {
        is_dir: mode & (1 << 31) != 0,
        link_target: v["linkTarget"].as_str().unwrap_or("").to_string(),
    }))
}

fn base_name(p: &str) -> String {
    Path::new(p.trim_end_matches('/'))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into())
}

fn parent_of(p: &str) -> String {
    let t = p.trim_end_matches('/');
    match t.rsplit_once('/') {
        Some(("", _)) => "/".into(),
        Some((d, _)) => d.into(),
        None => ".".into(),
    }
}

pub fn cp(c: &Client, a: CpArgs) -> Result<(), CliError> {
    match (split(&a.src), split(&a.dst)) {
        (Some((ctr, path)), None) => from_container(c, &ctr, &path, &a.dst),
        (None, Some((ctr, path))) => to_container(c, &a.src, &ctr, &path, a.follow_link),
        (Some(_), Some(_)) => Err(CliError::Usage(
            "copying between containers is not supported".into(),
        )),
        (None, None) => Err(CliError::Usage(
            "must specify at least one container source".into(),
        )),
    }
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> CliError {
    move |source| CliError::Io { context, source }
}

fn from_container(c: &Client, ctr: &str, path: &str, dst: &str) -> Result<(), CliError> {
    let mut resp = c.call(
        "GET",
        &format!("/containers/{}/archive", escape(ctr)),
        &[("path", path.to_string())],
        Body::None,
    )?;
    if dst == "-" {
        let mut o = std::io::stdout().lock();
        std::io::copy(resp.reader(), &mut o).map_err(CliError::Stdout)?;
        return Ok(());
    }
    let contents_only = path.ends_with("/.");
    let dst_path = PathBuf::from(dst);
    let meta = std::fs::metadata(&dst_path).ok();
    if contents_only {
        if meta.is_none() {
            std::fs::create_dir(&dst_path).map_err(io_err(format!("creating {dst}")))?;
        } else if !meta.as_ref().is_some_and(|m| m.is_dir()) {
            return Err(CliError::Copy(format!(
                "cannot copy a directory's contents into the file {dst}"
            )));
        }
        return extract_local(&dst_path, resp.reader()).map_err(|e| CliError::Copy(e.to_string()));
    }
    if meta.as_ref().is_some_and(|m| m.is_dir()) {
        return extract_local(&dst_path, resp.reader()).map_err(|e| CliError::Copy(e.to_string()));
    }
    if meta.is_none() && dst.ends_with('/') {
        return Err(CliError::Copy(format!(
            "destination directory {dst} does not exist"
        )));
    }
    // A new name (or an existing file to replace): unpack beside it, then rename.
    let parent = dst_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(CliError::Copy(format!(
            "no such directory: {}",
            parent.display()
        )));
    }
    let tmp = tempfile::Builder::new()
        .prefix(".strata-cp-")
        .tempdir_in(parent)
        .map_err(io_err(format!(
            "creating a temporary directory in {}",
            parent.display()
        )))?;
    extract_local(tmp.path(), resp.reader()).map_err(|e| CliError::Copy(e.to_string()))?;
    let got = tmp.path().join(base_name(path));
    let got_meta = std::fs::symlink_metadata(&got).map_err(|_| {
        CliError::Copy(format!(
            "the archive of {path} did not hold {}",
            base_name(path)
        ))
    })?;
    if got_meta.is_dir() && meta.is_some() {
        return Err(CliError::Copy(format!(
            "cannot overwrite non-directory {dst} with directory {path}"
        )));
    }
    std::fs::rename(&got, &dst_path).map_err(io_err(format!("moving into {dst}")))?;
    Ok(())
}

fn to_container(
    c: &Client,
    src: &str,
    ctr: &str,
    path: &str,
    follow: bool,
) -> Result<(), CliError> {
    let put = |dir: &str, reader: &mut dyn std::io::Read| -> Result<(), CliError> {
        c.call(
            "PUT",
            &format!("/containers/{}/archive", escape(ctr)),
            &[
                ("path", dir.to_string()),
                ("noOverwriteDirNonDir", "true".into()),
            ],
            Body::Stream {
                content_type: "application/x-tar",
                reader,
            },
        )?;
        Ok(())
    };
    if src == "-" {
        let mut stdin = std::io::stdin().lock();
        return put(path, &mut stdin);
    }
    let contents_only = src.ends_with("/.");
    let mut src_path = PathBuf::from(src.trim_end_matches("/."));
    if follow {
        src_path = std::fs::canonicalize(&src_path).map_err(io_err(format!("resolving {src}")))?;
    }
    let smeta =
        std::fs::symlink_metadata(&src_path).map_err(io_err(format!("could not stat {src}")))?;
    let local_dir = src_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let local_name = src_path
        .file_name()
        .map(|n| n.as_encoded_bytes().to_vec())
        .unwrap_or_else(|| b".".to_vec());
    let mut dst = path.to_string();
    let mut st = stat_remote(c, ctr, &dst)?;
    if let Some(s) = &st {
        if !s.link_target.is_empty() {
            dst = s.link_target.clone();
            st = stat_remote(c, ctr, &dst)?;
        }
    }
    let (target_dir, name): (String, Vec<u8>) = match st {
        Some(s) if s.is_dir => {
            if contents_only {
                (dst.clone(), b".".to_vec())
            } else {
                (dst.clone(), local_name.clone())
            }
        }
        Some(_) => {
            if smeta.is_dir() {
                return Err(CliError::Copy(format!(
                    "cannot copy directory {src} onto the file {ctr}:{path}"
                )));
            }
            (parent_of(&dst), base_name(&dst).into_bytes())
        }
        None => {
            if dst.ends_with('/') {
                return Err(CliError::Copy(format!(
                    "destination directory {ctr}:{path} does not exist"
                )));
            }
            (parent_of(&dst), base_name(&dst).into_bytes())
        }
    };
    let (archive_dir, archive_name) = if contents_only {
        (src_path.clone(), b".".to_vec())
    } else {
        (local_dir, local_name)
    };
    // Stream the tar through a pipe: a thread archives while the request sends.
    let (mut rd, wr) = std::io::pipe().map_err(io_err("creating a pipe".into()))?;
    let writer = std::thread::spawn(move || {
        archive_local(
            &archive_dir,
            &archive_name,
            &name,
            std::io::BufWriter::with_capacity(1 << 20, wr),
        )
        .map(|_| ())
    });
    let sent = put(&target_dir, &mut rd);
    drop(rd);
    let archived = writer
        .join()
        .map_err(|_| CliError::Copy("the archiver panicked".into()))?;
    // The daemon's answer explains more than a broken pipe on our side.
    sent?;
    archived.map_err(|e| CliError::Copy(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments() {
        assert_eq!(split("web:/etc"), Some(("web".into(), "/etc".into())));
        assert_eq!(split("./a:b"), None);
        assert_eq!(split("/tmp/x"), None);
        assert_eq!(split("-"), None);
        assert_eq!(parent_of("/etc/hosts"), "/etc");
        assert_eq!(parent_of("/hosts"), "/");
        assert_eq!(base_name("/etc/"), "etc");
    }
}
