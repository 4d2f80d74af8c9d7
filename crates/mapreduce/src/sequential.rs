//! Part I: the whole job in one process, one task after another, with the same task code the
//! workers run. It is the reference that distributed runs are compared with.

use crate::app::App;
use crate::error::{MrError, Result};
use crate::job::JobPlan;
use crate::task::{run_map, run_reduce};

/// Runs `plan` to completion. Scratch data lives in a hidden directory inside the output
/// directory (so it is on a real disk, not a memory-backed /tmp) and is removed afterwards.
/// On failure the output directory is left without part files.
pub fn run_sequential(app: &dyn App, plan: &JobPlan) -> Result<()> {
    let job = &plan.spec;
    let result = (|| {
        let work = tempfile::Builder::new()
            .prefix(".synod-work-")
            .tempdir_in(&job.output)
            .map_err(MrError::io(
                "cannot create scratch directory in",
                &job.output,
            ))?;
        let mut outputs = Vec::with_capacity(plan.splits.len());
        for (i, split) in plan.splits.iter().enumerate() {
            let scratch = tempfile::tempdir_in(work.path())
                .map_err(MrError::io("cannot create scratch in", work.path()))?;
            let out = work.path().join(format!("map-{i}"));
            outputs.push(run_map(app, job, i as u32, split, scratch.path(), &out)?);
        }
        for r in 0..job.reduces {
            let runs = outputs.iter().filter_map(|o| o.run(r)).collect();
            let scratch = tempfile::tempdir_in(work.path())
                .map_err(MrError::io("cannot create scratch in", work.path()))?;
            run_reduce(app, job, r, runs, scratch.path(), "seq")?;
        }
        crate::output::finish(&job.output, job.reduces)
    })();
    if result.is_err() {
        // Best effort: the error being returned matters more than a failure to clean up.
        let _ = crate::output::discard(&job.output);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::app::AppSpec;
    use crate::apps::Registry;
    use crate::job::{plan, JobConfig};

    fn run(
        dir: &Path,
        app: AppSpec,
        inputs: &[(&str, &[u8])],
        maps: u32,
        reduces: u32,
    ) -> Vec<String> {
        let paths: Vec<PathBuf> = inputs
            .iter()
            .map(|(name, text)| {
                let p = dir.join(name);
                std::fs::write(&p, text).unwrap();
                p
            })
            .collect();
        let out = dir.join("out");
        let mut cfg = JobConfig::new(app, paths, out.clone());
        cfg.maps = Some(maps);
        cfg.reduces = reduces;
        let (plan, app) = plan(&cfg, &Registry::builtin()).unwrap();
        run_sequential(app.as_ref(), &plan).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let expect: Vec<String> = (0..reduces).map(crate::output::part_name).collect();
        assert_eq!(names, expect, "exactly the part files, nothing else");
        names
            .iter()
            .map(|n| String::from_utf8(std::fs::read(out.join(n)).unwrap()).unwrap())
            .collect()
    }

    /// All lines of all parts, checking each part is sorted and keys are unique.
    fn lines(parts: &[String]) -> Vec<String> {
        let mut all = Vec::new();
        let mut keys = std::collections::HashSet::new();
        for p in parts {
            let ls: Vec<&str> = p.lines().collect();
            assert!(ls
                .windows(2)
                .all(|w| w[0].split('\t').next() < w[1].split('\t').next()));
            for l in &ls {
                assert!(
                    keys.insert(l.split('\t').next().unwrap().to_string()),
                    "duplicate key in {l}"
                );
            }
            all.extend(ls.iter().map(|s| s.to_string()));
        }
        all.sort();
        all
    }

    #[test]
    fn word_count_exact_output() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            b"And the cat, and THE hat.\nthe end\xffend\n\xc3\xa9t\xc3\xa9 caf\xc3\xa9 2024 cat\n";
        let parts = run(dir.path(), AppSpec::new("wc"), &[("a.txt", text)], 3, 2);
        assert_eq!(
            lines(&parts),
            [
                "And\t1",
                "THE\t1",
                "and\t1",
                "caf\u{e9}\t1",
                "cat\t2",
                "end\t2",
                "hat\t1",
                "the\t2",
                "\u{e9}t\u{e9}\t1"
            ]
        );
    }

    #[test]
    fn word_count_over_numbers_is_split_and_partition_independent() {
        // The course's input: the numbers 0..99999, one per line. No letters, so no words;
        // spelled out as words they must each count once.
        let dir = tempfile::tempdir().unwrap();
        let numbers: String = (0..100_000).map(|i| format!("{i}\n")).collect();
        let parts = run(
            dir.path(),
            AppSpec::new("wc"),
            &[("n.txt", numbers.as_bytes())],
            100,
            50,
        );
        assert!(lines(&parts).is_empty());

        let dir = tempfile::tempdir().unwrap();
        let letters = |mut i: u32| {
            let mut s = String::new();
            loop {
                s.push((b'a' + (i % 26) as u8) as char);
                i /= 26;
                if i == 0 {
                    return s;
                }
            }
        };
        let words: String = (0..100_000)
            .map(|i| format!("{} x\n", letters(i)))
            .collect();
        let parts = run(
            dir.path(),
            AppSpec::new("wc"),
            &[("w.txt", words.as_bytes())],
            100,
            50,
        );
        let got = lines(&parts);
        assert_eq!(
            got.len(),
            100_000,
            "every word once, except x which is also a word"
        );
        assert!(got.contains(&"x\t100001".to_string()) || got.contains(&"x\t100000".to_string()));
        let other = tempfile::tempdir().unwrap();
        let again = run(
            other.path(),
            AppSpec::new("wc"),
            &[("w.txt", words.as_bytes())],
            7,
            50,
        );
        assert_eq!(
            parts, again,
            "the number of map tasks does not change the output"
        );
    }

    #[test]
    fn inverted_index_and_grep() {
        let dir = tempfile::tempdir().unwrap();
        let inputs: &[(&str, &[u8])] = &[
            ("a.txt", b"x y\nz\n"),
            ("b.txt", b"y\n"),
            ("c.txt", b"y x\n"),
        ];
        let parts = run(dir.path(), AppSpec::new("ii"), inputs, 4, 3);
        let a = dir.path().join("a.txt").to_string_lossy().into_owned();
        let b = dir.path().join("b.txt").to_string_lossy().into_owned();
        let c = dir.path().join("c.txt").to_string_lossy().into_owned();
        assert_eq!(
            lines(&parts),
            [
                format!("x\t2 {a},{c}"),
                format!("y\t3 {a},{b},{c}"),
                format!("z\t1 {a}")
            ]
        );

        let dir = tempfile::tempdir().unwrap();
        let text: String = (1..=300).map(|i| format!("row {i}\n")).collect();
        let spec = AppSpec {
            name: "grep".into(),
            pattern: Some("^row (7|17|250)$".into()),
        };
        let parts = run(dir.path(), spec, &[("g.txt", text.as_bytes())], 9, 2);
        let g = dir.path().join("g.txt").to_string_lossy().into_owned();
        assert_eq!(
            lines(&parts),
            [
                format!("{g}:17\trow 17"),
                format!("{g}:250\trow 250"),
                format!("{g}:7\trow 7")
            ]
        );
    }

    #[test]
    fn small_memory_budget_gives_the_same_output() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.txt");
        let text: String = (0..60_000u32)
            .map(|i| {
                format!("w{} common\n", i % 9000)
                    .replace(|c: char| c.is_ascii_digit(), "q")
                    .replace('q', &((b'a' + (i % 26) as u8) as char).to_string())
            })
            .collect();
        std::fs::write(&p, &text).unwrap();
        let mut outs = Vec::new();
        for budget in [1 << 20, 64 << 20] {
            let mut cfg = JobConfig::new(
                AppSpec::new("ii"),
                vec![p.clone()],
                dir.path().join(format!("out{budget}")),
            );
            // More map outputs than a 1 MiB budget merges at once: reducers merge in passes.
            cfg.maps = Some(20);
            cfg.reduces = 2;
            cfg.memory_budget = budget;
            let (plan, app) = plan(&cfg, &Registry::builtin()).unwrap();
            run_sequential(app.as_ref(), &plan).unwrap();
            outs.push(std::fs::read(cfg.output.join("part-00000")).unwrap());
        }
        assert!(outs[0].len() > 100);
        assert_eq!(outs[0], outs[1]);
    }

    struct Panics;
    impl crate::App for Panics {
        fn map(&self, input: &crate::MapInput<'_>, emit: &mut dyn FnMut(&[u8], &[u8])) {
            if input.contents.starts_with(b"boom") {
                panic!("bad record");
            }
            emit(b"k", b"v");
        }
        fn reduce(&self, _: &[u8], _: &mut dyn Iterator<Item = Vec<u8>>) -> Vec<u8> {
            Vec::new()
        }
    }

    #[test]
    fn a_panicking_app_fails_the_job_and_leaves_no_parts() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in");
        std::fs::write(&p, "fine\nboom\n").unwrap();
        let out = dir.path().join("out");
        let mut cfg = JobConfig::new(AppSpec::new("panics"), vec![p], out.clone());
        cfg.maps = Some(2);
        let reg = Registry::builtin().with("panics", |_| Ok(std::sync::Arc::new(Panics)));
        let (plan, app) = plan(&cfg, &reg).unwrap();
        let err = run_sequential(app.as_ref(), &plan).unwrap_err();
        assert!(err.to_string().contains("bad record"), "{err}");
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    }

    #[test]
    fn invalid_jobs_are_rejected_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in");
        std::fs::write(&p, "x\n").unwrap();
        let out = dir.path().join("out");
        let mut cfg = JobConfig::new(AppSpec::new("wc"), vec![p.clone()], out.clone());
        cfg.reduces = 0;
        assert!(plan(&cfg, &Registry::builtin()).is_err());
        cfg.reduces = 1;
        cfg.maps = Some(0);
        assert!(plan(&cfg, &Registry::builtin()).is_err());
        cfg.maps = None;
        cfg.inputs.push(dir.path().join("missing"));
        let err = plan(&cfg, &Registry::builtin()).err().unwrap();
        assert!(err.to_string().contains("missing"), "{err}");
        assert!(!out.exists());
    }
}
