//! The output directory: checking it before a job, naming part files, and making sure that
//! what a reader finds there is either the complete result or nothing.
//!
//! Reduce tasks write `.part-NNNNN.tmp-TAG` and rename it to `part-NNNNN`; a rename within a
//! directory is atomic, so a reader never sees a half-written part, and two attempts of the
//! same task (a backup, a re-execution) rename identical bytes over each other.

use std::path::{Path, PathBuf};

use crate::error::{MrError, Result};

/// `part-00042`.
pub fn part_name(partition: u32) -> String {
    format!("part-{partition:05}")
}

/// Where an attempt tagged `tag` writes partition `partition` before renaming it.
pub fn temp_part(dir: &Path, partition: u32, tag: &str) -> PathBuf {
    dir.join(format!(".{}.tmp-{tag}", part_name(partition)))
}

fn is_ours(name: &str) -> bool {
    let part = |s: &str| {
        s.len() == 10 && s.starts_with("part-") && s[5..].bytes().all(|b| b.is_ascii_digit())
    };
    part(name)
        || (name.starts_with(".part-")
            && name.len() > 11
            && part(&name[1..11])
            && name[11..].starts_with(".tmp-"))
}

/// Makes sure `dir` exists and is empty; with `force`, removes earlier part files (and only
/// those) from it. Returns the directory as an absolute path.
pub fn prepare(dir: &Path, force: bool) -> Result<PathBuf> {
    let abs = std::path::absolute(dir).map_err(MrError::io("bad output path", dir))?;
    match std::fs::read_dir(&abs) {
        Ok(entries) => {
            let mut others = false;
            for e in entries {
                let e = e.map_err(MrError::io("cannot list", &abs))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if force && is_ours(&name) {
                    std::fs::remove_file(e.path())
                        .map_err(MrError::io("cannot remove", e.path()))?;
                } else {
                    others = true;
                }
            }
            if others && !force {
                return Err(MrError::OutputNotEmpty(abs));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&abs)
                .map_err(MrError::io("cannot create output directory", &abs))?;
        }
        Err(e) => return Err(MrError::io("cannot open output directory", &abs)(e)),
    }
    Ok(abs)
}

/// Removes temporary files left by attempts that lost a race or died, and checks that every
/// part file is there.
pub fn finish(dir: &Path, reduces: u32) -> Result<()> {
    remove_temps(dir)?;
    for r in 0..reduces {
        let p = dir.join(part_name(r));
        if !p.is_file() {
            return Err(MrError::JobFailed(format!(
                "{} is missing after the job",
                p.display()
            )));
        }
    }
    Ok(())
}

/// After a failed job: removes every part and temporary file, so that a partial result is
/// never mistaken for a complete one.
pub fn discard(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(MrError::io("cannot list", dir))? {
        let e = e.map_err(MrError::io("cannot list", dir))?;
        if is_ours(&e.file_name().to_string_lossy()) {
            std::fs::remove_file(e.path()).map_err(MrError::io("cannot remove", e.path()))?;
        }
    }
    Ok(())
}

fn remove_temps(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(MrError::io("cannot list", dir))? {
        let e = e.map_err(MrError::io("cannot list", dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".part-") && is_ours(&name) {
            // A straggler may rename its temp file away concurrently; that is fine.
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_empty_output_needs_force_and_force_only_removes_parts() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        assert_eq!(prepare(&out, false).unwrap(), out);
        std::fs::write(out.join(part_name(3)), "x").unwrap();
        std::fs::write(temp_part(&out, 1, "w1-7"), "x").unwrap();
        assert!(matches!(
            prepare(&out, false),
            Err(MrError::OutputNotEmpty(_))
        ));
        prepare(&out, true).unwrap();
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
        std::fs::write(out.join("notes.txt"), "keep").unwrap();
        prepare(&out, true).unwrap();
        assert!(out.join("notes.txt").exists());
        assert!(!is_ours("part-1"));
        assert!(!is_ours("notes.txt"));
    }
}
