//! A release asset's bytes on their way to a forge, streamed from the file they were restored
//! into — raw (GitHub's `upload_url`) or as the one file part of a `multipart/form-data` body
//! (Gitea, GitLab) — so memory stays bounded whatever the asset's size. Each attempt of a request
//! opens the file again.

use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What a request sends: `prefix`, the file's bytes, `suffix`.
pub struct Upload {
    pub content_type: String,
    prefix: Vec<u8>,
    path: PathBuf,
    size: u64,
    suffix: Vec<u8>,
}

impl Upload {
    /// The file as the whole body.
    pub fn raw(path: &Path, content_type: &str) -> Result<Self> {
        Ok(Self {
            content_type: content_type.to_string(),
            prefix: Vec::new(),
            size: size_of(path)?,
            path: path.to_path_buf(),
            suffix: Vec::new(),
        })
    }

    /// The file as the part `field` (named `filename`) of a `multipart/form-data` body. The
    /// boundary is 128 random bits: that it occurs in the file is as likely as guessing it.
    pub fn multipart(field: &str, filename: &str, path: &Path) -> Result<Self> {
        let state = std::collections::hash_map::RandomState::new();
        let mut words = [0u64; 2];
        for (i, w) in words.iter_mut().enumerate() {
            let mut h = state.build_hasher();
            h.write_usize(i);
            h.write_u128(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
            );
            *w = h.finish();
        }
        let boundary = format!("gitvault-{:016x}{:016x}", words[0], words[1]);
        // Quotes and line breaks cannot stand in a quoted filename; browsers percent-encode them.
        let filename: String = filename
            .chars()
            .map(|c| match c {
                '"' => "%22".to_string(),
                '\r' => "%0D".to_string(),
                '\n' => "%0A".to_string(),
                c => c.to_string(),
            })
            .collect();
        let prefix = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        );
        Ok(Self {
            content_type: format!("multipart/form-data; boundary={boundary}"),
            prefix: prefix.into_bytes(),
            size: size_of(path)?,
            path: path.to_path_buf(),
            suffix: format!("\r\n--{boundary}--\r\n").into_bytes(),
        })
    }

    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        self.prefix.len() as u64 + self.size + self.suffix.len() as u64
    }

    /// The body, from its first byte.
    pub fn reader(&self) -> Result<impl Read + Send + 'static> {
        let file = File::open(&self.path).map_err(|source| Error::Io { path: self.path.clone(), source })?;
        Ok(Cursor::new(self.prefix.clone()).chain(file.take(self.size)).chain(Cursor::new(self.suffix.clone())))
    }
}

fn size_of(path: &Path) -> Result<u64> {
    std::fs::metadata(path).map(|m| m.len()).map_err(|source| Error::Io { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multipart_body_holds_the_file_between_boundaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("asset");
        std::fs::write(&file, b"\x00bytes\r\n").expect("write");
        let upload = Upload::multipart("attachment", "a \"b\".bin", &file).expect("upload");
        let boundary =
            upload.content_type.strip_prefix("multipart/form-data; boundary=").expect("boundary").to_string();
        assert_eq!(boundary.len(), "gitvault-".len() + 32);
        let mut body = Vec::new();
        upload.reader().expect("reader").read_to_end(&mut body).expect("read");
        assert_eq!(body.len() as u64, upload.len());
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"attachment\"; filename=\"a %22b%22.bin\""));
        assert!(text.contains("\r\n\r\n\u{0}bytes\r\n\r\n"));
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
        let other = Upload::multipart("attachment", "x", &file).expect("upload");
        assert_ne!(other.content_type, upload.content_type, "a new boundary each time");
        // Raw: the bytes alone.
        let raw = Upload::raw(&file, "application/x-tool").expect("raw");
        let mut body = Vec::new();
        raw.reader().expect("reader").read_to_end(&mut body).expect("read");
        assert_eq!((body.as_slice(), raw.len()), (&b"\x00bytes\r\n"[..], 8));
    }
}
