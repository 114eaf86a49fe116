//! `--save-outputs`: each cell's full first-run output, the native oracle's, and the model's
//! inputs as NumPy `.npy` files (format version 1.0) in the run folder's `outputs/`, so anyone can
//! check the numbers with their own tools:
//!
//! ```text
//! outputs/<model>.input.<name>.npy        the input fed to every cell and to the oracle
//! outputs/<model>.native.npy              native onnxruntime's output
//! outputs/<model>.<browser>.<backend>.npy a cell's first-run output
//! ```

use std::path::{Path, PathBuf};

use crate::models::{DType, PreparedModel};
use crate::oracle::NativeResult;
use crate::pool::CellTensor;

/// Writes the `.npy` files of a run into `dir/outputs/`; returns the folder.
///
/// # Errors
/// A file cannot be read or written (the error names it).
pub fn write_outputs(
    dir: &Path,
    models: &[(&PreparedModel, Option<&NativeResult>)],
    cells: &[CellTensor],
) -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    let out = dir.join("outputs");
    std::fs::create_dir_all(&out).with_context(|| format!("creating '{}'", out.display()))?;
    let write = |name: String, bytes: Vec<u8>| {
        let path = out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing '{}'", path.display()))
    };
    for (model, native) in models {
        for input in &model.inputs {
            let raw = std::fs::read(&input.file)
                .with_context(|| format!("reading '{}'", input.file.display()))?;
            let descr = match input.dtype {
                DType::Int64 => "<i8",
                DType::Float32 => "<f4",
            };
            write(
                format!("{}.input.{}.npy", model.name, input.name),
                npy(descr, &input.dims, &raw),
            )?;
        }
        if let Some(n) = native {
            write(
                format!("{}.native.npy", model.name),
                f32_npy(&n.dims, &n.output),
            )?;
        }
    }
    for c in cells {
        write(
            format!("{}.{}.{}.npy", c.model, c.browser, c.backend),
            f32_npy(&c.dims, &c.values),
        )?;
    }
    Ok(out)
}

fn f32_npy(dims: &[i64], values: &[f32]) -> Vec<u8> {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    npy("<f4", dims, &raw)
}

/// An `.npy` file (version 1.0): magic, header length, a Python-literal header padded with
/// spaces to a multiple of 64 bytes, then the raw little-endian data in C order.
pub fn npy(descr: &str, dims: &[i64], raw: &[u8]) -> Vec<u8> {
    let shape = match dims {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            dims.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + raw.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(raw);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_padded_to_64_bytes_and_names_dtype_and_shape() {
        let f = f32_npy(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(&f[..8], b"\x93NUMPY\x01\x00");
        let len = u16::from_le_bytes([f[8], f[9]]) as usize;
        assert_eq!((10 + len) % 64, 0);
        let header = std::str::from_utf8(&f[10..10 + len]).unwrap();
        assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
        assert!(header.ends_with('\n'));
        assert_eq!(f.len(), 10 + len + 24);
        assert_eq!(&f[10 + len..10 + len + 4], &1.0f32.to_le_bytes());
        let one = npy("<i8", &[5], &[0; 40]);
        assert!(String::from_utf8_lossy(&one).contains("'shape': (5,)"));
    }
}
