//! Reads the few facts the memory planner needs from a GGUF file's header (layers, attention shape,
//! training context) without loading the model.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// What the planner needs to know about an LLM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufFacts {
    /// `general.architecture`, e.g. `llama`, `gemma3n`.
    pub architecture: String,
    /// Transformer layers.
    pub layers: u32,
    /// Width of the key/value projections per token (kv heads × head size).
    pub kv_width: u32,
    /// Context the model was trained with.
    pub context_length: Option<u32>,
    /// File size, bytes.
    pub file_bytes: u64,
}

impl GgufFacts {
    /// KV cache size at `context` tokens (f16 keys and values).
    pub fn kv_cache_bytes(&self, context: u32) -> u64 {
        2 * u64::from(self.layers) * u64::from(context) * u64::from(self.kv_width) * 2
    }
}

/// Why a GGUF header could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not a GGUF file, or a damaged one.
    #[error("{path} is not a valid GGUF file: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

const MAX_STRING: u64 = 1 << 20;
const MAX_KEYS: u64 = 1 << 16;

/// A metadata value we keep (numbers and strings; arrays are skipped except their first number).
#[derive(Debug, Clone)]
enum Value {
    Number(u64),
    Text(String),
    Numbers(Vec<u64>),
    Other,
}

/// Reads the facts from `path`.
pub fn read_facts(path: &Path) -> Result<GgufFacts, GgufError> {
    let shown = path.display().to_string();
    let io = |source| GgufError::Io {
        path: shown.clone(),
        source,
    };
    let invalid = |reason: String| GgufError::Invalid {
        path: shown.clone(),
        reason,
    };
    let file = File::open(path).map_err(io)?;
    let file_bytes = file.metadata().map_err(io)?.len();
    let mut r = BufReader::new(file);
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)
        .map_err(|e| invalid(format!("too short ({e})")))?;
    if &magic != b"GGUF" {
        return Err(invalid(
            "it does not start with the GGUF magic bytes".into(),
        ));
    }
    let version = read_u32(&mut r).map_err(|e| invalid(e.to_string()))?;
    if !(2..=3).contains(&version) {
        return Err(invalid(format!("unsupported GGUF version {version}")));
    }
    let _tensors = read_u64(&mut r).map_err(|e| invalid(e.to_string()))?;
    let keys = read_u64(&mut r).map_err(|e| invalid(e.to_string()))?;
    if keys > MAX_KEYS {
        return Err(invalid(format!("implausible metadata count {keys}")));
    }
    let mut meta = std::collections::HashMap::new();
    for _ in 0..keys {
        let key = read_string(&mut r).map_err(|e| invalid(e.to_string()))?;
        let kind = read_u32(&mut r).map_err(|e| invalid(e.to_string()))?;
        let value = read_value(&mut r, kind).map_err(|e| invalid(format!("{key}: {e}")))?;
        meta.insert(key, value);
    }
    let architecture = match meta.get("general.architecture") {
        Some(Value::Text(a)) => a.clone(),
        _ => return Err(invalid("no general.architecture".into())),
    };
    let number = |suffix: &str| -> Option<u64> {
        match meta.get(&format!("{architecture}.{suffix}")) {
            Some(Value::Number(n)) => Some(*n),
            Some(Value::Numbers(v)) => v.iter().copied().max(),
            _ => None,
        }
    };
    let layers =
        number("block_count").ok_or_else(|| invalid(format!("no {architecture}.block_count")))?;
    let embedding = number("embedding_length").unwrap_or(0);
    let heads = number("attention.head_count").unwrap_or(1).max(1);
    let kv_heads = number("attention.head_count_kv").unwrap_or(heads);
    let head_size = number("attention.key_length").unwrap_or(embedding / heads);
    let context_length = number("context_length").map(|c| c.min(u64::from(u32::MAX)) as u32);
    Ok(GgufFacts {
        architecture,
        layers: layers.min(u64::from(u32::MAX)) as u32,
        kv_width: (kv_heads * head_size).min(u64::from(u32::MAX)) as u32,
        context_length,
        file_bytes,
    })
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_string(r: &mut impl Read) -> std::io::Result<String> {
    let len = read_u64(r)?;
    if len > MAX_STRING {
        return Err(std::io::Error::other(format!("string of {len} bytes")));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Size in bytes of a fixed-size value type, `None` for strings and arrays.
fn fixed_size(kind: u32) -> Option<u64> {
    match kind {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

fn read_number(r: &mut impl Read, kind: u32) -> std::io::Result<Option<u64>> {
    let size = fixed_size(kind)
        .ok_or_else(|| std::io::Error::other(format!("unknown value type {kind}")))?;
    let mut b = [0u8; 8];
    r.read_exact(&mut b[..size as usize])?;
    let raw = u64::from_le_bytes(b);
    // Integers only; floats and bools are not sizes.
    Ok(matches!(kind, 0 | 2 | 4 | 10 | 1 | 3 | 5 | 11).then_some(raw))
}

fn read_value<R: Read + Seek>(r: &mut R, kind: u32) -> std::io::Result<Value> {
    match kind {
        8 => Ok(Value::Text(read_string(r)?)),
        9 => {
            let item = read_u32(r)?;
            let len = read_u64(r)?;
            match (item, fixed_size(item)) {
                (8, _) => {
                    for _ in 0..len {
                        let n = read_u64(r)?;
                        r.seek(SeekFrom::Current(
                            i64::try_from(n).map_err(std::io::Error::other)?,
                        ))?;
                    }
                    Ok(Value::Other)
                }
                (_, Some(_)) if len <= 4096 => {
                    let mut values = Vec::new();
                    for _ in 0..len {
                        if let Some(v) = read_number(r, item)? {
                            values.push(v);
                        }
                    }
                    Ok(Value::Numbers(values))
                }
                (_, Some(size)) => {
                    let skip = size
                        .checked_mul(len)
                        .ok_or_else(|| std::io::Error::other("array too large"))?;
                    r.seek(SeekFrom::Current(
                        i64::try_from(skip).map_err(std::io::Error::other)?,
                    ))?;
                    Ok(Value::Other)
                }
                (other, None) => Err(std::io::Error::other(format!(
                    "array of unknown type {other}"
                ))),
            }
        }
        _ => Ok(read_number(r, kind)?.map_or(Value::Other, Value::Number)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-songwriter.gguf")
    }

    #[test]
    fn the_tiny_model_header_gives_its_shape() {
        let facts = read_facts(&fixture()).expect("tiny GGUF");
        assert_eq!(facts.architecture, "llama");
        assert_eq!(facts.layers, 2);
        assert!(facts.kv_width > 0 && facts.kv_width <= 64, "{facts:?}");
        assert_eq!(
            facts.file_bytes,
            std::fs::metadata(fixture()).expect("size").len()
        );
        // K and V, f16, per layer and token.
        assert_eq!(
            facts.kv_cache_bytes(100),
            2 * 2 * 100 * u64::from(facts.kv_width) * 2
        );
    }

    #[test]
    fn files_that_are_not_gguf_are_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("gguf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let cases: [(&str, &[u8], &str); 3] = [
            ("empty.gguf", b"", "too short"),
            ("text.gguf", b"hello world, not a model", "magic"),
            ("future.gguf", b"GGUF\x09\x00\x00\x00", "version 9"),
        ];
        for (name, bytes, expected) in cases {
            let path = dir.join(name);
            std::fs::write(&path, bytes).expect("write");
            let err = read_facts(&path).expect_err(name).to_string();
            assert!(
                err.contains(expected) && err.contains(name),
                "{name}: {err}"
            );
        }
        let missing = read_facts(&dir.join("missing.gguf"))
            .expect_err("missing")
            .to_string();
        assert!(missing.contains("cannot read"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
