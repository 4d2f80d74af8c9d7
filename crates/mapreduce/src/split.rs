//! Input: checking the input files, cutting them into M map splits by size on line
//! boundaries, and reading a split back in bounded chunks of whole lines.
//!
//! Splits are cut over the concatenation of all inputs, so one large file is spread over every
//! map task and many small files share tasks. Each nominal cut at `k * total / M` moves forward
//! to the next line start, so no line (and so no word) is ever cut in two.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{MrError, Result};

/// An input file as the job knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// The name the user gave; what applications see.
    pub name: String,
    /// Absolute path, the same on every worker.
    pub path: PathBuf,
    pub size: u64,
}

/// A byte range `[start, end)` of one input file, starting at a line start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    pub file: u32,
    pub start: u64,
    pub end: u64,
    /// 1-based line number of the line at `start`, if the application wants line numbers.
    pub first_line: Option<u64>,
}

/// The input of one map task: pieces of one or more files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub pieces: Vec<Piece>,
}

/// Checks that every input is a readable regular file and records its size.
pub fn open_inputs(paths: &[PathBuf]) -> Result<Vec<InputFile>> {
    if paths.is_empty() {
        return Err(MrError::InvalidJob("no input files given".into()));
    }
    paths
        .iter()
        .map(|p| {
            let err = |source| MrError::Input {
                path: p.clone(),
                source,
            };
            let meta = std::fs::metadata(p).map_err(err)?;
            if !meta.is_file() {
                return Err(err(std::io::Error::other("not a regular file")));
            }
            File::open(p).map_err(err)?;
            Ok(InputFile {
                name: p.to_string_lossy().into_owned(),
                path: std::path::absolute(p).map_err(err)?,
                size: meta.len(),
            })
        })
        .collect()
}

/// The offset of the first line start at or after `at` in `path`.
fn next_line_start(path: &Path, at: u64, size: u64) -> Result<u64> {
    if at == 0 || at >= size {
        return Ok(at.min(size));
    }
    let mut f = File::open(path).map_err(MrError::io("cannot open", path))?;
    f.seek(SeekFrom::Start(at - 1))
        .map_err(MrError::io("cannot seek in", path))?;
    let mut pos = at - 1;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(MrError::io("cannot read", path))?;
        if n == 0 {
            return Ok(size);
        }
        if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
            return Ok((pos + i as u64 + 1).min(size));
        }
        pos += n as u64;
    }
}

/// Counts the newlines before each of the sorted `offsets` in one pass over `path`.
fn lines_before(path: &Path, offsets: &[u64]) -> Result<Vec<u64>> {
    let mut f = File::open(path).map_err(MrError::io("cannot open", path))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut pos, mut lines) = (0u64, 0u64);
    let mut out = Vec::with_capacity(offsets.len());
    for &off in offsets {
        while pos < off {
            let want = (off - pos).min(buf.len() as u64) as usize;
            let n = f
                .read(&mut buf[..want])
                .map_err(MrError::io("cannot read", path))?;
            if n == 0 {
                break;
            }
            lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
            pos += n as u64;
        }
        out.push(lines);
    }
    Ok(out)
}

/// Cuts the inputs into exactly `maps` splits (some may be empty when lines are long).
pub fn plan_splits(inputs: &[InputFile], maps: u32, line_numbers: bool) -> Result<Vec<Split>> {
    if maps == 0 {
        return Err(MrError::InvalidJob(
            "the number of map tasks must be at least 1".into(),
        ));
    }
    let total: u64 = inputs.iter().map(|f| f.size).sum();
    // Global file start offsets in the concatenation of all inputs.
    let starts: Vec<u64> = inputs
        .iter()
        .scan(0u64, |acc, f| {
            let s = *acc;
            *acc += f.size;
            Some(s)
        })
        .collect();
    let mut cuts = vec![0u64];
    for k in 1..u64::from(maps) {
        let nominal = (u128::from(total) * u128::from(k) / u128::from(maps)) as u64;
        let prev = *cuts.last().unwrap_or(&0);
        let at = nominal.max(prev);
        // The file holding global offset `at` (the last file starting at or before it).
        let fi = starts.partition_point(|&s| s <= at).saturating_sub(1);
        let cut = match inputs.get(fi) {
            Some(f) => starts[fi] + next_line_start(&f.path, at - starts[fi], f.size)?,
            None => total,
        };
        cuts.push(cut);
    }
    cuts.push(total);
    let mut splits = Vec::with_capacity(maps as usize);
    for w in cuts.windows(2) {
        let (lo, hi) = (w[0], w[1]);
        let mut split = Split::default();
        for (fi, f) in inputs.iter().enumerate() {
            let (fs, fe) = (starts[fi], starts[fi] + f.size);
            let (s, e) = (lo.max(fs), hi.min(fe));
            if s < e {
                split.pieces.push(Piece {
                    file: fi as u32,
                    start: s - fs,
                    end: e - fs,
                    first_line: None,
                });
            }
        }
        splits.push(split);
    }
    if line_numbers {
        for (fi, f) in inputs.iter().enumerate() {
            let mut offs: Vec<u64> = splits
                .iter()
                .flat_map(|s| s.pieces.iter())
                .filter(|p| p.file == fi as u32)
                .map(|p| p.start)
                .collect();
            offs.sort_unstable();
            offs.dedup();
            let counts = lines_before(&f.path, &offs)?;
            for p in splits.iter_mut().flat_map(|s| s.pieces.iter_mut()) {
                if p.file == fi as u32 {
                    let i = offs.partition_point(|&o| o < p.start);
                    p.first_line = Some(counts[i] + 1);
                }
            }
        }
    }
    Ok(splits)
}

/// Reads `piece` in chunks of whole lines of at most `chunk` bytes, calling
/// `f(contents, first_line)` for each.
///
/// The buffer never holds more than `chunk` bytes, so a task's input costs a fixed part of its
/// memory budget whatever the input looks like. A line longer than `chunk` cannot be handed
/// to the application whole within that, so it is refused with [`MrError::LineTooLong`]
/// naming the file, the line's offset and the limit, rather than buffered at any size.
pub fn for_each_chunk(
    file: &InputFile,
    piece: &Piece,
    chunk: usize,
    mut f: impl FnMut(&[u8], Option<u64>) -> Result<()>,
) -> Result<()> {
    let err = |source| MrError::Input {
        path: file.path.clone(),
        source,
    };
    let mut input = File::open(&file.path).map_err(err)?;
    input.seek(SeekFrom::Start(piece.start)).map_err(err)?;
    let expected = piece.end.saturating_sub(piece.start);
    let mut input = input.take(expected);
    let mut line = piece.first_line;
    let mut got = 0u64;
    let chunk = chunk.max(1);
    // Never allocate more than is left to read: splits are often small.
    let mut buf: Vec<u8> = Vec::with_capacity((chunk as u64).min(expected) as usize);
    loop {
        let old = buf.len();
        // The unfinished line carried over plus what is read stays within `chunk`; a carried
        // line that fills it alone was refused below, so there is always room.
        assert!(
            old < chunk,
            "a line of {old} bytes was carried over a {chunk}-byte chunk"
        );
        let want = ((chunk - old) as u64).min(expected - got) as usize;
        buf.resize(old + want, 0);
        let n = read_full(&mut input, &mut buf[old..]).map_err(err)?;
        buf.truncate(old + n);
        got += n as u64;
        let at_end = got == expected || n == 0;
        let cut = if at_end {
            Some(buf.len())
        } else {
            memchr::memrchr(b'\n', &buf).map(|i| i + 1)
        };
        if cut.is_none() && buf.len() == chunk {
            return Err(MrError::LineTooLong {
                path: file.path.clone(),
                offset: piece.start + got - buf.len() as u64,
                limit: chunk,
            });
        }
        if let Some(cut) = cut.filter(|&c| c > 0) {
            f(&buf[..cut], line)?;
            if let Some(l) = line.as_mut() {
                *l += memchr::memchr_iter(b'\n', &buf[..cut]).count() as u64;
            }
            buf.drain(..cut);
        }
        if at_end {
            if got < expected {
                let e = std::io::Error::other("input file became shorter while the job ran");
                return Err(err(e));
            }
            return Ok(());
        }
    }
}

fn read_full(r: &mut impl Read, mut buf: &mut [u8]) -> std::io::Result<usize> {
    let mut total = 0;
    while !buf.is_empty() {
        match r.read(buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n;
                buf = &mut buf[n..];
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(dir: &Path, name: &str, text: &str) -> InputFile {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        open_inputs(&[p]).unwrap().remove(0)
    }

    fn read_split(inputs: &[InputFile], s: &Split, chunk: usize) -> Vec<(String, Option<u64>)> {
        let mut out = Vec::new();
        for p in &s.pieces {
            for_each_chunk(&inputs[p.file as usize], p, chunk, |c, l| {
                out.push((String::from_utf8(c.to_vec()).unwrap(), l));
                Ok(())
            })
            .unwrap();
        }
        out
    }

    #[test]
    fn splits_cover_input_on_line_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let inputs = vec![
            input(dir.path(), "a", &text),
            input(dir.path(), "b", "x\ny"),
        ];
        let splits = plan_splits(&inputs, 7, true).unwrap();
        assert_eq!(splits.len(), 7);
        let mut all = String::new();
        for s in &splits {
            for (c, first) in read_split(&inputs, s, 10) {
                assert!(c.ends_with('\n') || c.ends_with("x\ny"), "{c:?}");
                let n = first.unwrap();
                // The first line number matches the line's position in its file.
                if c.starts_with("line ") {
                    let i: u64 = c[5..c.find('\n').unwrap()].parse().unwrap();
                    assert_eq!(n, i + 1);
                }
                all.push_str(&c);
            }
        }
        assert_eq!(all, text + "x\ny");
        // One big file is cut into roughly equal splits.
        let sizes: Vec<u64> = splits[..6]
            .iter()
            .map(|s| s.pieces.iter().map(|p| p.end - p.start).sum())
            .collect();
        assert!(sizes.iter().all(|&s| s > 1000 && s < 1400), "{sizes:?}");
    }

    #[test]
    fn more_maps_than_lines_gives_empty_splits_and_zero_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let inputs = vec![input(dir.path(), "a", "one long line without newline")];
        let splits = plan_splits(&inputs, 5, false).unwrap();
        assert_eq!(splits.iter().filter(|s| !s.pieces.is_empty()).count(), 1);
        assert!(matches!(
            plan_splits(&inputs, 0, false),
            Err(MrError::InvalidJob(_))
        ));
    }

    #[test]
    fn a_line_longer_than_the_chunk_is_refused_with_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let long = "x".repeat(100);
        let text = format!("short\n{long}\nend\n");
        let inputs = vec![input(dir.path(), "a", &text)];
        let piece = &plan_splits(&inputs, 1, false).unwrap()[0].pieces[0];
        // Lines up to the chunk size pass, in chunks that never exceed it.
        let mut seen = Vec::new();
        for_each_chunk(&inputs[0], piece, 101, |c, _| {
            assert!(c.len() <= 101);
            seen.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, text.as_bytes());
        let err = for_each_chunk(&inputs[0], piece, 100, |_, _| Ok(())).unwrap_err();
        assert!(
            matches!(
                err,
                MrError::LineTooLong {
                    offset: 6,
                    limit: 100,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("offset 6"), "{err}");
    }

    #[test]
    fn missing_input_is_a_clear_error() {
        let err = open_inputs(&[PathBuf::from("/nonexistent/file.txt")]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/file.txt"), "{err}");
    }
}
