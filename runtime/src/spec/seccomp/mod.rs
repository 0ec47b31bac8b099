//! Seccomp: profiles in Docker's format (the default one in [`default`], or one given with
//! `--security-opt seccomp=<profile JSON>`), turned into the OCI spec's `linux.seccomp` for
//! this host's architecture, the container's capabilities and the running kernel; and the
//! parsing of `--security-opt` as dockerd does it.

pub mod default;

use serde::Deserialize;
use serde_json::{json, Value};

/// Errors of `--security-opt` and profiles; the user's (400).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SeccompError {
    /// Worded as dockerd's.
    #[error("invalid --security-opt {0}: {1:?}")]
    BadOption(u8, String),
    #[error("Decoding seccomp profile failed: {0}")]
    BadProfile(String),
}

/// Which seccomp profile a container gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Seccomp {
    /// Strata's default, with the effect of Docker's.
    Default,
    Unconfined,
    /// A profile in Docker's format.
    Custom(Profile),
}

/// What `--security-opt` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityOpts {
    pub no_new_privileges: bool,
    pub seccomp: Seccomp,
}

/// Parses `SecurityOpt` as dockerd does: `no-new-privileges[=bool]`, `seccomp=...`,
/// `apparmor=...` and `label=...` (kept, with no effect on this host: no AppArmor or SELinux
/// in use), `disable`; `KEY:VALUE` is the old spelling of `KEY=VALUE`.
pub fn security_opts(hc: &Value) -> Result<SecurityOpts, SeccompError> {
    let mut o = SecurityOpts {
        no_new_privileges: false,
        seccomp: if hc["Privileged"].as_bool() == Some(true) {
            Seccomp::Unconfined
        } else {
            Seccomp::Default
        },
    };
    for opt in hc["SecurityOpt"].as_array().into_iter().flatten() {
        let opt = opt.as_str().unwrap_or_default();
        if opt == "no-new-privileges" {
            o.no_new_privileges = true;
            continue;
        }
        if opt == "disable" {
            continue;
        }
        let kv = opt.split_once('=').or_else(|| opt.split_once(':'));
        let Some((k, v)) = kv else {
            return Err(SeccompError::BadOption(1, opt.to_string()));
        };
        match k {
            "label" | "apparmor" => {}
            "seccomp" => {
                o.seccomp = match v {
                    "unconfined" => Seccomp::Unconfined,
                    "builtin" | "" => Seccomp::Default,
                    json => Seccomp::Custom(
                        serde_json::from_str(json)
                            .map_err(|e| SeccompError::BadProfile(e.to_string()))?,
                    ),
                }
            }
            "no-new-privileges" => {
                o.no_new_privileges = match v {
                    "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                    "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                    _ => return Err(SeccompError::BadOption(2, opt.to_string())),
                }
            }
            _ => return Err(SeccompError::BadOption(2, opt.to_string())),
        }
    }
    Ok(o)
}

/// A seccomp profile in Docker's format.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: String,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    /// Explicit architectures (older profiles).
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub arch_map: Vec<ArchMap>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub syscalls: Vec<Syscall>,
}

/// A native architecture and the ones it also runs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Option<Vec<String>>,
}

/// A rule.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Syscall {
    #[serde(default)]
    pub names: Vec<String>,
    /// The older single-name form.
    #[serde(default)]
    pub name: String,
    pub action: String,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Vec<Value>,
    #[serde(default)]
    pub includes: Filter,
    #[serde(default)]
    pub excludes: Filter,
}

/// When a rule applies (`includes`: all must hold) or not (`excludes`: any).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default)]
    pub caps: Vec<String>,
    /// Go's architecture names (`amd64`, `arm64`, `x86`, ...).
    #[serde(default)]
    pub arches: Vec<String>,
    #[serde(default)]
    pub min_kernel: Option<String>,
}

/// This host's architecture as Go names it, and as seccomp does.
pub fn native_arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
        "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
        "x86" => ("386", "SCMP_ARCH_X86"),
        "arm" => ("arm", "SCMP_ARCH_ARM"),
        "s390x" => ("s390x", "SCMP_ARCH_S390X"),
        "powerpc64" => ("ppc64le", "SCMP_ARCH_PPC64LE"),
        "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
        other => (other, "SCMP_ARCH_NATIVE"),
    }
}

/// Whether the running kernel executes x32 system calls (Debian's kernels are built without
/// or with them off): probed once with an x32 `getpid`, which answers ENOSYS without them.
pub fn kernel_has_x32() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
            // SAFETY: getpid has no arguments and no effect.
            let r = unsafe { libc::syscall(X32_SYSCALL_BIT | libc::SYS_getpid) };
            r != -1 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// The running kernel's (major, minor).
pub fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    parse_version(release.trim()).unwrap_or((0, 0))
}

fn parse_version(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Where the profile is applied.
pub struct Target<'a> {
    /// The container's capabilities (`CAP_...`).
    pub caps: &'a [String],
    /// Go's name of the architecture (see [`native_arch`]).
    pub arch: &'a str,
    /// seccomp's name of it.
    pub scmp_arch: &'a str,
    pub kernel: (u32, u32),
    /// Whether x32 calls can happen at all (else the x32 part of a filter is left out: it
    /// could never match, and compiling it makes every start and exec ~8 ms slower).
    pub x32: bool,
}

fn applies(s: &Syscall, t: &Target<'_>) -> bool {
    let has = |c: &String| t.caps.iter().any(|x| x == c);
    if s.excludes.caps.iter().any(has) || s.excludes.arches.iter().any(|a| a == t.arch) {
        return false;
    }
    if !s.includes.caps.iter().all(has) {
        return false;
    }
    if !s.includes.arches.is_empty() && !s.includes.arches.iter().any(|a| a == t.arch) {
        return false;
    }
    if let Some(min) = s.includes.min_kernel.as_deref().and_then(parse_version) {
        if t.kernel < min {
            return false;
        }
    }
    true
}

/// The OCI `linux.seccomp` of a profile for `t`.
pub fn to_oci(p: &Profile, t: &Target<'_>) -> Value {
    let arches: Vec<String> = if !p.architectures.is_empty() {
        p.architectures.clone()
    } else {
        p.arch_map
            .iter()
            .filter(|m| m.architecture == t.scmp_arch)
            .flat_map(|m| {
                std::iter::once(m.architecture.clone())
                    .chain(m.sub_architectures.clone().unwrap_or_default())
            })
            .collect()
    };
    let arches: Vec<String> = arches
        .into_iter()
        .filter(|a| t.x32 || a != "SCMP_ARCH_X32")
        .collect();
    let mut rules = Vec::new();
    for s in p.syscalls.iter().filter(|s| applies(s, t)) {
        let mut names = s.names.clone();
        if !s.name.is_empty() {
            names.push(s.name.clone());
        }
        if names.is_empty() {
            continue;
        }
        let mut r = json!({ "names": names, "action": s.action });
        if let Some(e) = s.errno_ret {
            r["errnoRet"] = json!(e);
        }
        if !s.args.is_empty() {
            r["args"] = json!(s.args);
        }
        rules.push(r);
    }
    let mut out = json!({ "defaultAction": p.default_action, "syscalls": rules });
    if !arches.is_empty() {
        out["architectures"] = json!(arches);
    }
    if let Some(e) = p.default_errno_ret {
        out["defaultErrnoRet"] = json!(e);
    }
    if !p.flags.is_empty() {
        out["flags"] = json!(p.flags);
    }
    out
}

/// The `linux.seccomp` of a container, `None` when unconfined.
pub fn for_container(opts: &SecurityOpts, caps: &[String]) -> Option<Value> {
    let profile = match &opts.seccomp {
        Seccomp::Unconfined => return None,
        Seccomp::Default => default::profile(),
        Seccomp::Custom(p) => p.clone(),
    };
    let (arch, scmp_arch) = native_arch();
    Some(to_oci(
        &profile,
        &Target {
            caps,
            arch,
            scmp_arch,
            kernel: kernel_version(),
            x32: kernel_has_x32(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(opts: &[&str]) -> Value {
        json!({ "SecurityOpt": opts })
    }

    #[test]
    fn options_as_dockerd_reads_them() {
        let o = security_opts(&hc(&["no-new-privileges"])).unwrap();
        assert!(o.no_new_privileges);
        assert_eq!(o.seccomp, Seccomp::Default);
        let o = security_opts(&hc(&["no-new-privileges=false", "seccomp=unconfined"])).unwrap();
        assert!(!o.no_new_privileges);
        assert_eq!(o.seccomp, Seccomp::Unconfined);
        assert_eq!(
            security_opts(&hc(&["foo=bar"])).unwrap_err().to_string(),
            "invalid --security-opt 2: \"foo=bar\""
        );
        assert_eq!(
            security_opts(&hc(&["bogus"])).unwrap_err().to_string(),
            "invalid --security-opt 1: \"bogus\""
        );
        assert!(security_opts(&hc(&["no-new-privileges=maybe"])).is_err());
        assert!(security_opts(&hc(&["seccomp={bad"]))
            .unwrap_err()
            .to_string()
            .starts_with("Decoding seccomp profile failed"));
        let p = security_opts(&json!({ "Privileged": true })).unwrap();
        assert_eq!(p.seccomp, Seccomp::Unconfined, "privileged is unconfined");
        assert!(security_opts(&hc(&["apparmor=unconfined", "label=disable"])).is_ok());
    }

    #[test]
    fn rules_follow_caps_arches_and_kernel() {
        let p: Profile = serde_json::from_value(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": null}],
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
            ],
        }))
        .unwrap();
        let names = |v: &Value| -> Vec<String> {
            v["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r["names"].as_array().unwrap().clone())
                .map(|n| n.as_str().unwrap().to_string())
                .collect()
        };
        let caps = vec!["CAP_CHOWN".to_string()];
        let t = Target {
            caps: &caps,
            arch: "amd64",
            scmp_arch: "SCMP_ARCH_X86_64",
            kernel: (6, 1),
            x32: true,
        };
        let v = to_oci(&p, &t);
        assert_eq!(names(&v), ["read", "clone3", "arch_prctl", "ptrace"]);
        assert_eq!(
            v["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
        );
        let mut p32 = p.clone();
        p32.arch_map[0].sub_architectures =
            Some(vec!["SCMP_ARCH_X86".into(), "SCMP_ARCH_X32".into()]);
        let all = json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
        assert_eq!(to_oci(&p32, &t)["architectures"], all);
        let no_x32 = Target { x32: false, ..t };
        assert_eq!(
            to_oci(&p32, &no_x32)["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]),
            "no x32 part for a kernel without x32"
        );
        let admin = vec!["CAP_SYS_ADMIN".to_string()];
        let t = Target {
            caps: &admin,
            arch: "arm64",
            scmp_arch: "SCMP_ARCH_AARCH64",
            kernel: (4, 4),
            x32: false,
        };
        let v = to_oci(&p, &t);
        assert_eq!(names(&v), ["read", "mount"]);
        assert_eq!(v["architectures"], json!(["SCMP_ARCH_AARCH64"]));
    }

    #[test]
    fn the_default_profile_is_valid_oci() {
        let caps: Vec<String> = crate::spec::defaults::CAPABILITIES
            .iter()
            .map(|s| s.to_string())
            .collect();
        let v = for_container(&security_opts(&json!({})).unwrap(), &caps).unwrap();
        let s: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(v["defaultErrnoRet"], 1);
        assert_eq!(
            v["architectures"].to_string().contains("X32"),
            kernel_has_x32(),
            "x32 only where the kernel runs it"
        );
        let _ = s;
        let all = v.to_string();
        assert!(
            all.contains("\"clone3\""),
            "clone3 answers ENOSYS without CAP_SYS_ADMIN"
        );
        assert!(!all.contains("\"mount\""), "no mount without CAP_SYS_ADMIN");
        assert!(!all.contains("\"keyctl\""), "keyctl is refused");
    }
}
