//! Building test layer tars, including hostile ones.

use crate::archive::tar::{Header, Kind, TarWriter, BLOCK};
use std::io::Write;

/// Builds a layer tar entry by entry.
pub struct TarBuilder {
    w: TarWriter<Vec<u8>>,
}

impl Default for TarBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn h(path: &str, kind: Kind) -> Header {
    Header {
        mtime: 1_600_000_000,
        ..Header::new(path, kind, 0)
    }
}

impl TarBuilder {
    pub fn new() -> Self {
        TarBuilder {
            w: TarWriter::new(Vec::new()),
        }
    }

    pub fn header(mut self, hdr: Header, data: &[u8]) -> Self {
        let mut d = data;
        self.w.append(&hdr, Some(&mut d)).expect("append");
        self
    }

    pub fn file(self, path: &str, data: &[u8]) -> Self {
        let mut hdr = h(path, Kind::Regular);
        hdr.size = data.len() as u64;
        self.header(hdr, data)
    }

    pub fn file_mode(self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        let mut hdr = h(path, Kind::Regular);
        hdr.size = data.len() as u64;
        hdr.mode = mode;
        hdr.uid = uid;
        hdr.gid = gid;
        self.header(hdr, data)
    }

    pub fn dir(self, path: &str) -> Self {
        self.header(h(path, Kind::Dir), b"")
    }

    pub fn symlink(self, path: &str, target: &str) -> Self {
        let mut hdr = h(path, Kind::Symlink);
        hdr.link = target.as_bytes().to_vec();
        self.header(hdr, b"")
    }

    pub fn hardlink(self, path: &str, target: &str) -> Self {
        let mut hdr = h(path, Kind::Hardlink);
        hdr.link = target.as_bytes().to_vec();
        self.header(hdr, b"")
    }

    /// A whiteout for `path` (`dir/.wh.name`).
    pub fn whiteout(self, path: &str) -> Self {
        let (dir, name) = path
            .rsplit_once('/')
            .map(|(d, n)| (format!("{d}/"), n))
            .unwrap_or((String::new(), path));
        self.file(&format!("{dir}.wh.{name}"), b"")
    }

    /// Marks `dir` opaque.
    pub fn opaque(self, dir: &str) -> Self {
        self.file(&format!("{dir}/.wh..wh..opq"), b"")
    }

    pub fn build(self) -> Vec<u8> {
        self.w.finish().expect("finish")
    }
}

/// One raw ustar header block with a correct checksum (for hostile cases the writer refuses to
/// make).
pub fn raw_header(name: &[u8], typeflag: u8, size: u64, link: &[u8]) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..name.len()].copy_from_slice(name);
    b[100..108].copy_from_slice(b"0000644\0");
    b[108..116].copy_from_slice(b"0000000\0");
    b[116..124].copy_from_slice(b"0000000\0");
    b[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    b[136..148].copy_from_slice(b"14000000000\0");
    b[156] = typeflag;
    b[157..157 + link.len()].copy_from_slice(link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[148..156].copy_from_slice(b"        ");
    let sum: u64 = b.iter().map(|x| *x as u64).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    b
}

/// A tar from raw header blocks and data (data padded to blocks), with the end marker.
pub fn raw_tar(entries: &[([u8; BLOCK], &[u8])]) -> Vec<u8> {
    let mut v = Vec::new();
    for (hd, data) in entries {
        v.extend_from_slice(hd);
        v.extend_from_slice(data);
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        v.extend(std::iter::repeat_n(0u8, pad));
    }
    v.extend_from_slice(&[0u8; 2 * BLOCK]);
    v
}

/// A hostile case: a name, the tar, and a piece of text the error must contain.
pub struct Hostile {
    pub name: &'static str,
    pub tar: Vec<u8>,
    pub expect: &'static str,
}

/// Every hostile case. `escape` is a file name that must never appear outside the layer.
pub fn hostile_cases(escape: &str) -> Vec<Hostile> {
    let mut out = vec![
        Hostile {
            name: "dotdot",
            tar: raw_tar(&[(
                raw_header(format!("../{escape}").as_bytes(), b'0', 1, b""),
                b"x",
            )]),
            expect: "'..'",
        },
        Hostile {
            name: "nested dotdot",
            tar: raw_tar(&[(
                raw_header(format!("a/../../{escape}").as_bytes(), b'0', 1, b""),
                b"x",
            )]),
            expect: "'..'",
        },
        Hostile {
            name: "absolute",
            tar: raw_tar(&[(
                raw_header(format!("/{escape}").as_bytes(), b'0', 1, b""),
                b"x",
            )]),
            expect: "absolute",
        },
        Hostile {
            name: "absolute symlink then write through it",
            tar: TarBuilder::new()
                .symlink("link", "/tmp")
                .file(&format!("link/{escape}"), b"x")
                .build(),
            expect: "symlink",
        },
        Hostile {
            name: "relative symlink escaping then write through it",
            tar: TarBuilder::new()
                .symlink("up", "../../..")
                .file(&format!("up/{escape}"), b"x")
                .build(),
            expect: "symlink",
        },
        Hostile {
            name: "symlink chain escaping",
            tar: TarBuilder::new()
                .dir("d")
                .symlink("d/a", "../b")
                .symlink("b", "../..")
                .file(&format!("d/a/{escape}"), b"x")
                .build(),
            expect: "symlink",
        },
        Hostile {
            name: "hard link outside",
            tar: raw_tar(&[(
                raw_header(escape.as_bytes(), b'1', 0, b"../../../../etc/passwd"),
                b"",
            )]),
            expect: "'..'",
        },
        Hostile {
            name: "hard link through escaping symlink",
            tar: TarBuilder::new()
                .symlink("etcdir", "/etc")
                .hardlink(escape, "etcdir/passwd")
                .build(),
            expect: "symlink",
        },
        Hostile {
            name: "hard link to absolute path",
            tar: raw_tar(&[(raw_header(escape.as_bytes(), b'1', 0, b"/etc/passwd"), b"")]),
            expect: "absolute",
        },
        Hostile {
            name: "whiteout of the parent",
            tar: raw_tar(&[(raw_header(b"a/.wh...", b'0', 0, b""), b"")]),
            expect: "whiteout",
        },
    ];
    // Truncated in the middle of a file's content.
    let big = TarBuilder::new().file("big", &vec![7u8; 100_000]).build();
    out.push(Hostile {
        name: "truncated content",
        tar: big[..50_000].to_vec(),
        expect: "truncated",
    });
    // No end-of-archive marker.
    let ok = TarBuilder::new().file("f", b"abc").build();
    out.push(Hostile {
        name: "missing end marker",
        tar: ok[..1024].to_vec(),
        expect: "truncated",
    });
    // A flipped bit in a header.
    let mut bad = TarBuilder::new()
        .file("f", b"abc")
        .file("g", b"def")
        .build();
    bad[1024 + 3] ^= 0x40;
    out.push(Hostile {
        name: "checksum",
        tar: bad,
        expect: "checksum",
    });
    // A header that declares more content than there is.
    let mut lie = Vec::new();
    lie.extend_from_slice(&raw_header(b"liar", b'0', 1_000_000, b""));
    lie.extend_from_slice(&[1u8; 512]);
    out.push(Hostile {
        name: "declared size larger than data",
        tar: lie,
        expect: "truncated",
    });
    // A gzip stream cut short.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&TarBuilder::new().file("f", &vec![1u8; 200_000]).build())
        .expect("gzip");
    let gz = gz.finish().expect("gzip");
    out.push(Hostile {
        name: "truncated gzip",
        tar: gz[..gz.len() / 2].to_vec(),
        expect: "",
    });
    out
}

/// The smallest image config: amd64 Linux, `Cmd [cmd]`, the given layer diff IDs.
pub fn image_config(cmd: &str, diff_ids: &[crate::Digest]) -> Vec<u8> {
    let ids: Vec<String> = diff_ids.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["{cmd}"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        ids.join(",")
    )
    .into_bytes()
}

/// A `docker save` archive of one image: its config's bytes (named by their digest), its
/// layer tars (bottom first, `l0/layer.tar`, ...) and a `manifest.json` giving it `tags`.
pub fn save_archive(config: &[u8], layers: &[&[u8]], tags: &[&str]) -> Vec<u8> {
    let cfg_name = format!("{}.json", crate::Digest::of(config).hex());
    let names: Vec<String> = (0..layers.len())
        .map(|i| format!("l{i}/layer.tar"))
        .collect();
    let manifest =
        serde_json::json!([{ "Config": cfg_name, "RepoTags": tags, "Layers": names }]).to_string();
    let mut w = TarWriter::new(Vec::new());
    let mut entries: Vec<(&str, &[u8])> = vec![(cfg_name.as_str(), config)];
    entries.extend(names.iter().map(String::as_str).zip(layers.iter().copied()));
    entries.push(("manifest.json", manifest.as_bytes()));
    for (p, data) in entries {
        let hdr = Header::new(p, Kind::Regular, data.len() as u64);
        w.append(&hdr, Some(&mut &data[..])).expect("append");
    }
    w.finish().expect("finish")
}

/// One image of [`save_archive_of`]: its config, its layer tars (bottom first) and its tags.
pub struct SavedImage<'a> {
    pub config: Vec<u8>,
    pub layers: Vec<&'a [u8]>,
    pub tags: Vec<String>,
}

/// A `docker save` archive of several images; a layer they share is stored once
/// (`<diffID hex>/layer.tar`).
pub fn save_archive_of(images: &[SavedImage<'_>]) -> Vec<u8> {
    let mut w = TarWriter::new(Vec::new());
    let mut written = std::collections::HashSet::new();
    let mut manifest = Vec::new();
    let put = |w: &mut TarWriter<Vec<u8>>, p: &str, data: &[u8]| {
        let hdr = Header::new(p, Kind::Regular, data.len() as u64);
        w.append(&hdr, Some(&mut &data[..])).expect("append");
    };
    for img in images {
        let cfg_name = format!("{}.json", crate::Digest::of(&img.config).hex());
        if written.insert(cfg_name.clone()) {
            put(&mut w, &cfg_name, &img.config);
        }
        let mut names = Vec::new();
        for layer in &img.layers {
            let name = format!("{}/layer.tar", crate::Digest::of(layer).hex());
            if written.insert(name.clone()) {
                put(&mut w, &name, layer);
            }
            names.push(name);
        }
        manifest
            .push(serde_json::json!({ "Config": cfg_name, "RepoTags": img.tags, "Layers": names }));
    }
    put(
        &mut w,
        "manifest.json",
        serde_json::Value::Array(manifest).to_string().as_bytes(),
    );
    w.finish().expect("finish")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_of_several_images_stores_a_shared_layer_once() {
        let base = TarBuilder::new().file("base", b"b").build();
        let own: Vec<Vec<u8>> = (0..2)
            .map(|i| {
                TarBuilder::new()
                    .file("own", format!("{i}").as_bytes())
                    .build()
            })
            .collect();
        let images: Vec<SavedImage<'_>> = own
            .iter()
            .enumerate()
            .map(|(i, l)| SavedImage {
                config: image_config("sh", &[crate::Digest::of(&base), crate::Digest::of(l)]),
                layers: vec![&base[..], &l[..]],
                tags: vec![format!("t/img{i}:1")],
            })
            .collect();
        let archive = save_archive_of(&images);
        let mut names = Vec::new();
        let mut manifest = Vec::new();
        let mut r = crate::archive::tar::TarReader::new(&archive[..], false);
        while let Some(e) = r.next_entry().expect("entry") {
            let data = r.read_payload_to_vec().expect("data");
            let name = e.display();
            if name == "manifest.json" {
                manifest = data;
            }
            names.push(name);
        }
        let base_name = format!("{}/layer.tar", crate::Digest::of(&base).hex());
        assert_eq!(
            names.iter().filter(|n| **n == base_name).count(),
            1,
            "{names:?}"
        );
        assert_eq!(names.len(), 2 + 3 + 1, "{names:?}");
        let m: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest");
        assert_eq!(m.as_array().map(Vec::len), Some(2));
        assert_eq!(m[1]["Layers"][0], base_name.as_str());
        assert_eq!(m[1]["RepoTags"][0], "t/img1:1");
    }
}
