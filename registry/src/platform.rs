//! Platforms (`linux/amd64`, `linux/arm64/v8`): `--platform` values, this host's, and which
//! entry of a manifest list or OCI index an engine picks for them, as containerd's matcher
//! does (architecture aliases normalized; an ARM host also runs older ARM variants).

use serde::{Deserialize, Serialize};

/// Errors of platform parsing.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlatformError {
    #[error("\"{0}\": unknown operating system or architecture: invalid argument")]
    Unknown(String),
    #[error("\"{0}\": invalid platform (want os[/arch[/variant]])")]
    Invalid(String),
}

/// A platform as OCI descriptors carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(rename = "os")]
    pub os: String,
    #[serde(rename = "architecture")]
    pub architecture: String,
    #[serde(rename = "variant", default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

const OSES: &[&str] = &[
    "linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos", "aix",
    "android", "ios", "plan9", "js", "wasip1",
];

/// An architecture's canonical name and default variant (`aarch64` → `arm64`, `v8`).
fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.map(|v| v.to_ascii_lowercase());
    match arch.as_str() {
        "x86_64" | "x86-64" | "amd64" => {
            // v1 is the baseline: the same as none.
            let v = variant.filter(|v| v != "v1");
            ("amd64".into(), v)
        }
        "i386" | "i686" | "386" => ("386".into(), None),
        "aarch64" | "arm64" => {
            let v = match variant.as_deref() {
                None | Some("8") | Some("v8") => Some("v8".to_string()),
                Some(other) => Some(other.to_string()),
            };
            ("arm64".into(), v)
        }
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "arm" => {
            let v = match variant.as_deref() {
                None | Some("7") | Some("v7") => "v7".to_string(),
                Some("5") | Some("v5") => "v5".to_string(),
                Some("6") | Some("v6") => "v6".to_string(),
                Some("8") | Some("v8") => "v8".to_string(),
                Some(other) => other.to_string(),
            };
            ("arm".into(), Some(v))
        }
        _ => (arch, variant),
    }
}

fn known_arch(a: &str) -> bool {
    matches!(
        a,
        "amd64"
            | "386"
            | "arm64"
            | "arm"
            | "ppc64le"
            | "ppc64"
            | "s390x"
            | "riscv64"
            | "mips64"
            | "mips64le"
            | "mips"
            | "mipsle"
            | "loong64"
            | "wasm"
    )
}

impl Platform {
    /// The same platform with canonical names (`x86_64` → `amd64`, arm64's `v8`, ...).
    pub fn normalized(&self) -> Platform {
        let (architecture, variant) = normalize_arch(&self.architecture, self.variant.as_deref());
        Platform {
            os: self.os.to_ascii_lowercase(),
            architecture,
            variant,
        }
    }

    /// This host's platform (Linux, the architecture this binary was built for).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
        }
        .normalized()
    }

    /// Parses a `--platform` value: `os`, `arch`, `os/arch` or `os/arch/variant`. A lone
    /// OS takes this host's architecture; a lone architecture, Linux.
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
            return Err(PlatformError::Invalid(s.into()));
        }
        let p = match parts.as_slice() {
            [one] => {
                let one = one.to_ascii_lowercase();
                if OSES.contains(&one.as_str()) {
                    Platform {
                        os: one,
                        ..Platform::host()
                    }
                } else {
                    let (architecture, variant) = normalize_arch(&one, None);
                    if !known_arch(&architecture) {
                        return Err(PlatformError::Unknown(s.into()));
                    }
                    Platform {
                        os: "linux".into(),
                        architecture,
                        variant,
                    }
                }
            }
            [os, arch] | [os, arch, _] => Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: parts.get(2).map(|v| v.to_string()),
            }
            .normalized(),
            _ => return Err(PlatformError::Invalid(s.into())),
        };
        if !OSES.contains(&p.os.as_str()) {
            return Err(PlatformError::Unknown(s.into()));
        }
        Ok(p)
    }

    /// How well an image of platform `candidate` serves this wanted platform: `None` when
    /// it cannot run; lower is better (0: the same variant; an ARM host takes older ARM
    /// variants after its own, newest first).
    pub fn rank(&self, candidate: &Platform) -> Option<u32> {
        let (want, have) = (self.normalized(), candidate.normalized());
        if want.os != have.os || want.architecture != have.architecture {
            return None;
        }
        if want.variant == have.variant {
            return Some(0);
        }
        let num = |v: &Option<String>| {
            v.as_deref()
                .and_then(|v| v.strip_prefix('v'))
                .and_then(|n| n.parse::<u32>().ok())
        };
        match (
            want.architecture.as_str(),
            num(&want.variant),
            num(&have.variant),
        ) {
            ("arm", Some(w), Some(h)) if h < w => Some(w - h),
            // An image that names no variant runs on any.
            (_, _, None) if have.variant.is_none() => Some(10),
            _ => None,
        }
    }

    /// `os/arch[/variant]`.
    pub fn text(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// The best of `candidates` for `want` (its index), or `None` when none can run there.
pub fn select<'a>(
    want: &Platform,
    candidates: impl IntoIterator<Item = &'a Platform>,
) -> Option<usize> {
    candidates
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| want.rank(c).map(|r| (r, i)))
        .min()
        .map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).expect(s)
    }

    #[test]
    fn platform_values_parse_and_normalize() {
        assert_eq!(p("linux/amd64").text(), "linux/amd64");
        assert_eq!(p("linux/x86_64").text(), "linux/amd64");
        assert_eq!(p("linux/aarch64").text(), "linux/arm64/v8");
        assert_eq!(p("linux/arm64/8").text(), "linux/arm64/v8");
        assert_eq!(p("linux/arm").text(), "linux/arm/v7");
        assert_eq!(p("linux/armhf").text(), "linux/arm/v7");
        assert_eq!(p("arm64").text(), "linux/arm64/v8");
        assert_eq!(p("Linux/AMD64").text(), "linux/amd64");
        assert_eq!(p("linux").architecture, Platform::host().architecture);
        assert!(matches!(
            Platform::parse("plan10"),
            Err(PlatformError::Unknown(_))
        ));
        assert!(matches!(
            Platform::parse("linux//v7"),
            Err(PlatformError::Invalid(_))
        ));
        assert!(matches!(
            Platform::parse("a/b/c/d"),
            Err(PlatformError::Invalid(_))
        ));
        assert!(matches!(
            Platform::parse("beos/amd64"),
            Err(PlatformError::Unknown(_))
        ));
    }

    #[test]
    fn an_index_entry_is_chosen_as_containerd_chooses() {
        let list = [
            p("linux/arm/v6"),
            p("linux/arm64/v8"),
            p("linux/amd64"),
            p("linux/arm/v7"),
            p("windows/amd64"),
        ];
        assert_eq!(select(&p("linux/amd64"), &list), Some(2));
        assert_eq!(select(&p("linux/arm64"), &list), Some(1));
        assert_eq!(
            select(&p("linux/arm/v7"), &list),
            Some(3),
            "its own variant first"
        );
        assert_eq!(select(&p("linux/arm/v6"), &list), Some(0));
        assert_eq!(
            select(&p("linux/arm/v5"), &list),
            None,
            "no newer variant on an older CPU"
        );
        assert_eq!(select(&p("linux/s390x"), &list), None);
        assert_eq!(select(&p("windows/amd64"), &list), Some(4));
        // Only older ARM variants: the newest of them.
        let older = [p("linux/arm/v5"), p("linux/arm/v6")];
        assert_eq!(select(&p("linux/arm/v7"), &older), Some(1));
        // An image that names no variant runs on a host that has one.
        let bare = [Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: None,
        }];
        assert_eq!(select(&p("linux/arm64"), &bare), Some(0));
    }
}
