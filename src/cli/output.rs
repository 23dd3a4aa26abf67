//! Output files (`--out`, `--plot`, `--pcap`): checked before a run, written all or nothing
//! after it, and never clobbering what is not theirs.
//!
//! [`preflight`] runs before any work: two outputs on the same file, a missing or unwritable
//! directory, a directory or a block device as the path are errors naming the flag (exit 2),
//! not a surprise after a long run. [`write_all`] then writes by what is at the path:
//! - a regular file, or nothing yet: a temporary file beside it, renamed into place only when
//!   every output is complete (a failure removes the temporaries, so no half-written report is
//!   left behind). A symlink is followed and its target replaced, the link kept.
//! - an existing character device or FIFO (`/dev/null`, `/dev/stdout`, a named pipe, a shell's
//!   `>(…)`): written directly, never replaced by a file of the same name.

use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::UsageError;

/// A file a command wants written; `flag` names it in errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub flag: &'static str,
    pub path: PathBuf,
    pub contents: Vec<u8>,
}

/// Where an output's bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Destination {
    /// A regular file at this resolved path (symlinks followed), replaced atomically.
    Replace(PathBuf),
    /// A character device or FIFO, written where it is.
    Stream(PathBuf),
}

impl Destination {
    /// The file this destination is, for telling two outputs apart.
    fn identity(&self) -> PathBuf {
        match self {
            Self::Replace(path) => path.clone(),
            Self::Stream(path) => fs::canonicalize(path).unwrap_or_else(|_| path.clone()),
        }
    }
}

/// Most symlinks followed from one output path (as the kernel's ELOOP limit).
const MAX_LINKS: usize = 40;

/// Whether this process may do `mode` (`libc::W_OK`, …) on `path`.
fn may(path: &Path, mode: libc::c_int) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::faccessat(libc::AT_FDCWD, c_path.as_ptr(), mode, libc::AT_EACCESS) == 0 }
}

/// Follows symlinks from `path` until a path that is not one (it may not exist: a dangling
/// link names the file to create).
fn follow_links(path: &Path) -> Result<PathBuf, String> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&current).map_err(|e| format!("cannot write: {e}"))?;
                current = match current.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(format!("more than {MAX_LINKS} symbolic links"))
}

/// A new file at `path`: its directory must exist and be writable.
fn new_file(path: &Path) -> Result<Destination, String> {
    let name = path
        .file_name()
        .ok_or_else(|| "is not a file name".to_string())?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(format!("{} is not a directory", dir.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!("directory {} does not exist", dir.display()));
        }
        Err(e) => return Err(format!("directory {}: {e}", dir.display())),
    }
    if !may(dir, libc::W_OK | libc::X_OK) {
        return Err(format!("directory {} is not writable", dir.display()));
    }
    let dir = fs::canonicalize(dir).map_err(|e| format!("directory {}: {e}", dir.display()))?;
    Ok(Destination::Replace(dir.join(name)))
}

/// What writing `path` means, or why it cannot be written.
fn destination(path: &Path) -> Result<Destination, String> {
    match fs::metadata(path) {
        Ok(meta) => {
            let kind = meta.file_type();
            if kind.is_char_device() || kind.is_fifo() {
                if !may(path, libc::W_OK) {
                    return Err("is not writable".into());
                }
                // Opened by the name given: the kernel follows `/dev/stdout` and `/dev/fd/N`.
                return Ok(Destination::Stream(path.to_path_buf()));
            }
            if kind.is_dir() {
                return Err("is a directory".into());
            }
            if !kind.is_file() {
                return Err("is neither a regular file, a character device nor a FIFO".into());
            }
            let target = fs::canonicalize(path).map_err(|e| format!("cannot write: {e}"))?;
            if !may(&target, libc::W_OK) {
                return Err("is not writable".into());
            }
            // The replacement is created in the target's directory.
            new_file(&target)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => new_file(&follow_links(path)?),
        Err(e) => Err(format!("cannot write: {e}")),
    }
}

/// Checks every output before a run: each path can be written, and no two outputs are the
/// same file. `outputs` pairs each flag with its path, if given.
pub fn preflight(outputs: &[(&'static str, Option<&Path>)]) -> Result<(), UsageError> {
    let mut seen: Vec<(&str, &Path, PathBuf)> = Vec::new();
    for &(flag, path) in outputs {
        let Some(path) = path else { continue };
        let shown = path.display().to_string();
        let identity = destination(path)
            .map_err(|why| UsageError::flag(flag, &shown, why))?
            .identity();
        if let Some((other, other_path, _)) = seen.iter().find(|(_, _, id)| *id == identity) {
            return Err(UsageError::flag(
                flag,
                &shown,
                format!(
                    "is the same file as {other} {}: give each output its own",
                    other_path.display()
                ),
            ));
        }
        seen.push((flag, path, identity));
    }
    Ok(())
}

fn temporary_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// A temporary beside `target` holding `contents`, with the permissions of the file it will
/// replace, if any.
fn write_temporary(temporary: &Path, target: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = fs::File::create(temporary)?;
    file.write_all(contents)?;
    if let Ok(meta) = fs::metadata(target) {
        file.set_permissions(meta.permissions())?;
    }
    file.sync_all()
}

/// Writes every file: streams directly, regular files all or none. The error names the flag
/// and file at fault.
pub fn write_all(files: &[OutputFile]) -> Result<(), String> {
    let fail = |file: &OutputFile, why: &dyn std::fmt::Display| {
        format!("{} {}: {why}", file.flag, file.path.display())
    };
    let mut destinations = Vec::new();
    for file in files {
        destinations.push(destination(&file.path).map_err(|why| fail(file, &why))?);
    }
    let mut temporaries: Vec<PathBuf> = Vec::new();
    let cleanup = |temporaries: &[PathBuf]| {
        for temporary in temporaries {
            let _ = fs::remove_file(temporary);
        }
    };
    let mut renames = Vec::new();
    for (file, destination) in files.iter().zip(&destinations) {
        if let Destination::Replace(target) = destination {
            let temporary = temporary_for(target);
            let result = write_temporary(&temporary, target, &file.contents);
            temporaries.push(temporary.clone());
            if let Err(e) = result {
                cleanup(&temporaries);
                return Err(fail(file, &format_args!("cannot write: {e}")));
            }
            renames.push((file, temporary, target));
        }
    }
    for (file, destination) in files.iter().zip(&destinations) {
        if let Destination::Stream(path) = destination {
            let result = fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|mut f| f.write_all(&file.contents).and_then(|()| f.flush()));
            if let Err(e) = result {
                cleanup(&temporaries);
                return Err(fail(file, &format_args!("cannot write: {e}")));
            }
        }
    }
    for (file, temporary, target) in renames {
        if let Err(e) = fs::rename(&temporary, target) {
            cleanup(&temporaries);
            return Err(fail(file, &format_args!("cannot write: {e}")));
        }
    }
    Ok(())
}

impl crate::cli::args::ExportArgs {
    /// The export paths, for [`preflight`].
    pub fn paths(&self) -> [(&'static str, Option<&Path>); 2] {
        [
            ("--export-json", self.export_json.as_deref()),
            ("--export-csv", self.export_csv.as_deref()),
        ]
    }

    /// The files asked for, rendered from `report`.
    pub fn files(&self, report: &impl crate::report::Export) -> Vec<OutputFile> {
        let mut files = Vec::new();
        if let Some(path) = &self.export_json {
            files.push(OutputFile {
                flag: "--export-json",
                path: path.clone(),
                contents: report.json().into_bytes(),
            });
        }
        if let Some(path) = &self.export_csv {
            files.push(OutputFile {
                flag: "--export-csv",
                path: path.clone(),
                contents: report.csv().into_bytes(),
            });
        }
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("udprange-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn output(flag: &'static str, path: PathBuf, contents: &[u8]) -> OutputFile {
        OutputFile {
            flag,
            path,
            contents: contents.to_vec(),
        }
    }

    #[test]
    fn writes_all_or_nothing() {
        let dir = scratch("output");
        let good = output("--out", dir.join("a.json"), b"{}");
        let bad = output("--plot", dir.join("missing-dir").join("b.svg"), b"<svg/>");
        let error = write_all(&[good.clone(), bad]).unwrap_err();
        assert!(
            error.contains("--plot ") && error.contains("b.svg: directory"),
            "{error}"
        );
        let left: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        write_all(std::slice::from_ref(&good)).unwrap();
        assert_eq!(fs::read(&good.path).unwrap(), b"{}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_keeps_its_place_and_its_target_is_replaced() {
        let dir = scratch("output-link");
        fs::write(dir.join("target.json"), b"old").unwrap();
        std::os::unix::fs::symlink("target.json", dir.join("link.json")).unwrap();
        std::os::unix::fs::symlink("new.json", dir.join("dangling.json")).unwrap();
        write_all(&[
            output("--out", dir.join("link.json"), b"new"),
            output("--plot", dir.join("dangling.json"), b"created"),
        ])
        .unwrap();
        assert!(
            fs::symlink_metadata(dir.join("link.json"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(dir.join("target.json")).unwrap(), b"new");
        assert_eq!(fs::read(dir.join("new.json")).unwrap(), b"created");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn preflight_names_the_flag() {
        let dir = scratch("output-preflight");
        let a = dir.join("a.json");
        let same = dir.join(".").join("a.json");
        let error = preflight(&[("--out", Some(&a)), ("--plot", Some(&same))]).unwrap_err();
        assert!(
            error.0.starts_with("--plot ") && error.0.contains("is the same file as --out"),
            "{error}"
        );
        let missing = dir.join("no-such-dir").join("x.svg");
        let error = preflight(&[("--plot", Some(&missing)), ("--out", None)]).unwrap_err();
        assert!(error.0.ends_with("no-such-dir does not exist"), "{error}");
        let error = preflight(&[("--out", Some(&dir))]).unwrap_err();
        assert!(error.0.ends_with(": is a directory"), "{error}");
        assert!(preflight(&[("--out", Some(Path::new("/dev/null")))]).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }
}
