//! Output files, written all or nothing: each goes to a temporary file beside its target,
//! and only when every one is complete are they renamed into place. A failure removes the
//! temporaries, so no half-written report is ever left behind.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file a command wants written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub path: PathBuf,
    pub contents: Vec<u8>,
}

fn temporary_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes every file or none; the error names the file at fault.
pub fn write_all(files: &[OutputFile]) -> Result<(), String> {
    let mut written: Vec<PathBuf> = Vec::new();
    let cleanup = |written: &[PathBuf]| {
        for temporary in written {
            let _ = fs::remove_file(temporary);
        }
    };
    for file in files {
        let temporary = temporary_for(&file.path);
        let result = fs::File::create(&temporary).and_then(|mut f| {
            f.write_all(&file.contents)?;
            f.sync_all()
        });
        written.push(temporary);
        if let Err(e) = result {
            cleanup(&written);
            return Err(format!("{}: cannot write: {e}", file.path.display()));
        }
    }
    for (file, temporary) in files.iter().zip(&written) {
        if let Err(e) = fs::rename(temporary, &file.path) {
            cleanup(&written);
            return Err(format!("{}: cannot write: {e}", file.path.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_all_or_nothing() {
        let dir = std::env::temp_dir().join(format!("udprange-output-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let good = OutputFile {
            path: dir.join("a.json"),
            contents: b"{}".to_vec(),
        };
        let bad = OutputFile {
            path: dir.join("missing-dir").join("b.svg"),
            contents: b"<svg/>".to_vec(),
        };
        let error = write_all(&[good.clone(), bad]).unwrap_err();
        assert!(error.contains("b.svg: cannot write"), "{error}");
        let left: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        write_all(std::slice::from_ref(&good)).unwrap();
        assert_eq!(fs::read(&good.path).unwrap(), b"{}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
