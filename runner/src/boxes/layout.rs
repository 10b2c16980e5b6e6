//! An OCI image layout given as a box's image (`oci-layout`, `index.json`,
//! `blobs/sha256/`, as `skopeo copy ... oci:DIR` or `podman save
//! --format oci-dir` write it): which manifest, and its layers in order,
//! each checked against its digest. Read here, as the user; the layers
//! are applied in the box's root by `layers`, inside a container.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// How a layer's tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Plain,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::Plain => "tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    pub fn from_name(name: &str) -> Option<Compression> {
        [Compression::Plain, Compression::Gzip, Compression::Zstd]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// One layer: the file name of its blob under `blobs/sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub hex: String,
    pub compression: Compression,
}

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
const REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Debug, Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    layers: Vec<Descriptor>,
}

/// Whether `dir` is an OCI image layout.
pub fn is_layout(dir: &Path) -> bool {
    dir.join("oci-layout").is_file()
}

/// `DIR:TAG` as given to --image, when DIR is a layout and the whole
/// is not a path that exists.
pub fn split_tag(image: &Path) -> Option<(PathBuf, String)> {
    if image.exists() {
        return None;
    }
    let text = image.to_str()?;
    let (dir, tag) = text.rsplit_once(':')?;
    (!tag.is_empty() && !tag.contains('/') && is_layout(Path::new(dir)))
        .then(|| (PathBuf::from(dir), tag.to_string()))
}

/// The layer media types kennel applies, by compression.
fn layer_compression(media_type: &str) -> Option<Compression> {
    let base = media_type.replace(".nondistributable", "");
    match base.as_str() {
        "application/vnd.oci.image.layer.v1.tar" => Some(Compression::Plain),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// The blob's hex digest; only sha256 (what `blobs/` holds), and only hex,
/// so that a digest cannot name a path outside `blobs/sha256`.
fn blob_hex(digest: &str) -> Result<String> {
    let hex = digest.strip_prefix("sha256:").filter(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    match hex {
        Some(h) => Ok(h.to_string()),
        None => bail!("the digest {digest:?} is not sha256:<64 hex digits>"),
    }
}

/// Checks the blob `d` names against its size and digest.
fn verify(dir: &Path, d: &Descriptor) -> Result<PathBuf> {
    let hex = blob_hex(&d.digest)?;
    let path = dir.join("blobs/sha256").join(&hex);
    let mut file =
        std::fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hash.update(&buf[..n]);
    }
    let got: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    if size != d.size || got != hex {
        bail!(
            "{} does not match its descriptor ({} bytes, sha256:{got}; the descriptor says {} bytes, {}): the layout is damaged, copy it again",
            path.display(),
            size,
            d.size,
            d.digest
        );
    }
    Ok(path)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("{} is not valid here", path.display()))
}

/// The architecture name OCI uses for this machine.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// The manifest to use: the one tagged `tag`, else the only one; several
/// untagged is a refusal naming their refs.
fn choose<'a>(image: &Path, index: &'a Index, tag: Option<&str>) -> Result<&'a Descriptor> {
    let refs: Vec<String> = index
        .manifests
        .iter()
        .map(|m| {
            m.annotations
                .get(REF_NAME)
                .cloned()
                .unwrap_or_else(|| m.digest.clone())
        })
        .collect();
    match tag {
        Some(tag) => index
            .manifests
            .iter()
            .find(|m| m.annotations.get(REF_NAME).map(String::as_str) == Some(tag))
            .with_context(|| {
                format!(
                    "no manifest of {} is tagged {tag:?}; its refs: {}",
                    image.display(),
                    refs.join(", ")
                )
            }),
        None => match index.manifests.as_slice() {
            [one] => Ok(one),
            [] => bail!("{}/index.json lists no manifest", image.display()),
            _ => bail!(
                "{} holds {} manifests ({}); name one as --image {}:REF",
                image.display(),
                refs.len(),
                refs.join(", "),
                image.display()
            ),
        },
    }
}

/// The layers of the image in layout `dir` (tagged `tag`), bottom first,
/// each blob checked.
pub fn layers(dir: &Path, tag: Option<&str>) -> Result<Vec<Layer>> {
    let version: serde_json::Value = read_json(&dir.join("oci-layout"))?;
    if version.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
        bail!(
            "{}/oci-layout does not say imageLayoutVersion 1.0.0, the only layout version there is",
            dir.display()
        );
    }
    let index: Index = read_json(&dir.join("index.json"))?;
    let mut desc = choose(dir, &index, tag)?;
    let nested: Index;
    if desc.media_type == INDEX {
        // A multi-platform image: the manifest for this machine.
        nested = read_json(&verify(dir, desc)?)?;
        let arch = oci_arch();
        desc = nested
            .manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == arch)
            })
            .with_context(|| {
                format!(
                    "{} has no manifest for linux/{arch} in its image index {}",
                    dir.display(),
                    desc.digest
                )
            })?;
    }
    if !MANIFEST.contains(&desc.media_type.as_str()) {
        bail!(
            "{}: the manifest {} has the media type {:?}, which kennel does not read (it reads {})",
            dir.display(),
            desc.digest,
            desc.media_type,
            MANIFEST.join(", ")
        );
    }
    let manifest: Manifest = read_json(&verify(dir, desc)?)?;
    if let Some(t) = &manifest.media_type {
        if !MANIFEST.contains(&t.as_str()) {
            bail!(
                "{}: the manifest {} says its media type is {t:?}, which kennel does not read",
                dir.display(),
                desc.digest
            );
        }
    }
    let mut out = Vec::new();
    for l in &manifest.layers {
        let Some(compression) = layer_compression(&l.media_type) else {
            bail!(
                "{}: the layer {} has the media type {:?}, which kennel cannot unpack (it unpacks tar layers, plain, gzip or zstd)",
                dir.display(),
                l.digest,
                l.media_type
            );
        };
        verify(dir, l)?;
        out.push(Layer {
            hex: blob_hex(&l.digest)?,
            compression,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sha256_hex_digests_name_a_blob() {
        let good = format!("sha256:{}", "a1".repeat(32));
        assert_eq!(blob_hex(&good).unwrap(), "a1".repeat(32));
        for bad in [
            "sha256:../../etc/passwd".to_string(),
            format!("sha512:{}", "a".repeat(64)),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}/x", "a".repeat(62)),
        ] {
            assert!(blob_hex(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn layer_media_types() {
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar+gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar"),
            Some(Compression::Plain)
        );
        assert_eq!(layer_compression("application/x-squashfs"), None);
    }
}
