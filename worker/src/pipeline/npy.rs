//! Just enough of NumPy's `.npy` format for little-endian f32 arrays in C order: the silence latent of a
//! model pack and the test fixtures use it, because `numpy.save` writes it and it carries its own shape.

use std::io::Write;
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";

/// Why an `.npy` file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not an `.npy` array this reader understands.
    #[error(
        "{path}: {reason} (expected a NumPy .npy file of little-endian float32 in C order, \
         as written by numpy.save(path, array.astype(numpy.float32)))"
    )]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// A float32 array with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Values in C (row-major) order.
    pub data: Vec<f32>,
}

/// Reads a little-endian float32 `.npy` file.
pub fn read_f32(path: &Path) -> Result<NpyArray, NpyError> {
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_f32(&bytes).map_err(|reason| NpyError::Format {
        path: path.display().to_string(),
        reason,
    })
}

/// Reads only the shape of a float32 `.npy` file (the header), without loading the data.
pub fn read_f32_shape(path: &Path) -> Result<Vec<usize>, NpyError> {
    use std::io::Read;
    let describe = |source| NpyError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(describe)?;
    let mut head = vec![0u8; 4096];
    let n = file.read(&mut head).map_err(describe)?;
    head.truncate(n);
    let (header, _) = split_header(&head).map_err(|reason| NpyError::Format {
        path: path.display().to_string(),
        reason,
    })?;
    parse_header(header).map_err(|reason| NpyError::Format {
        path: path.display().to_string(),
        reason,
    })
}

/// Writes a little-endian float32 `.npy` file (version 1.0).
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    let describe = |source| NpyError::Io {
        path: path.display().to_string(),
        source,
    };
    let dims = match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + header length (2) + header + newline, padded to a multiple of 64.
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let header_len = u16::try_from(header.len()).map_err(|_| NpyError::Format {
        path: path.display().to_string(),
        reason: "shape too long for a version 1.0 header".into(),
    })?;
    let mut out = Vec::with_capacity(unpadded + 64 + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for value in data {
        out.extend_from_slice(&value.to_le_bytes());
    }
    std::fs::File::create(path)
        .and_then(|mut file| file.write_all(&out))
        .map_err(describe)
}

fn split_header(bytes: &[u8]) -> Result<(&str, &[u8]), String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not an .npy file (bad magic)".into());
    }
    let (len_size, header_len) = match bytes[6] {
        1 => (2, usize::from(u16::from_le_bytes([bytes[8], bytes[9]]))),
        2 | 3 if bytes.len() >= 12 => (
            4,
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let start = 8 + len_size;
    let header = bytes
        .get(start..start + header_len)
        .ok_or_else(|| "header is cut short".to_string())?;
    let header = std::str::from_utf8(header).map_err(|_| "header is not text".to_string())?;
    Ok((header, &bytes[start + header_len..]))
}

fn parse_header(header: &str) -> Result<Vec<usize>, String> {
    let field = |key: &str| -> Result<&str, String> {
        let at = header
            .find(&format!("'{key}'"))
            .ok_or_else(|| format!("header has no {key:?}"))?;
        let rest = &header[at + key.len() + 2..];
        let colon = rest
            .find(':')
            .ok_or_else(|| format!("header field {key:?} has no value"))?;
        Ok(rest[colon + 1..].trim_start())
    };
    let descr = field("descr")?;
    if !(descr.starts_with("'<f4'") || descr.starts_with("'float32'")) {
        return Err(format!(
            "dtype {} is not little-endian float32",
            descr.split(',').next().unwrap_or(descr)
        ));
    }
    if field("fortran_order")?.starts_with("True") {
        return Err("array is in Fortran order".into());
    }
    let shape = field("shape")?;
    let open = shape
        .strip_prefix('(')
        .ok_or_else(|| "shape is not a tuple".to_string())?;
    let close = open
        .find(')')
        .ok_or_else(|| "shape tuple is not closed".to_string())?;
    open[..close]
        .split(',')
        .map(str::trim)
        .filter(|dim| !dim.is_empty())
        .map(|dim| {
            dim.parse::<usize>()
                .map_err(|_| format!("shape entry {dim:?} is not a number"))
        })
        .collect()
}

fn parse_f32(bytes: &[u8]) -> Result<NpyArray, String> {
    let (header, body) = split_header(bytes)?;
    let shape = parse_header(header)?;
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| "shape overflows".to_string())?;
    if body.len() != count * 4 {
        return Err(format!(
            "shape {shape:?} needs {} bytes of data, the file has {}",
            count * 4,
            body.len()
        ));
    }
    let data = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(NpyArray { shape, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_truncated_files() {
        let dir = std::env::temp_dir().join(format!("npy-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("a.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_f32(&path, &[2, 3, 4], &data).expect("write");
        let back = read_f32(&path).expect("read");
        assert_eq!(back.shape, vec![2, 3, 4]);
        assert_eq!(back.data, data);
        assert_eq!(read_f32_shape(&path).expect("shape"), vec![2, 3, 4]);

        let bytes = std::fs::read(&path).expect("bytes");
        std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("truncate");
        let err = read_f32(&path).expect_err("truncated");
        assert!(err.to_string().contains("needs 96 bytes"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
