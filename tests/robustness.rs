//! Parser robustness on the stable toolchain (the coverage-guided fuzzer is
//! `scripts/fuzz.sh`, on nightly): a checked-in corpus of malformed playbooks
//! through the binary, oversized inputs, and seeded random mutations of every
//! shipped playbook through the same entry point the fuzzer uses. Every input
//! must end in a clean error or a valid playbook: no panic, bounded time and
//! (for the binary, under `prlimit`) bounded memory.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use breakglass::playbook::parse_bytes;
use breakglass::tabletop::scenario;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Parses and binds like `validate --var`, catching a panic as a failure.
fn check(bytes: &[u8]) -> Result<Duration, String> {
    let started = Instant::now();
    catch_unwind(AssertUnwindSafe(|| {
        if let Ok(pb) = parse_bytes("input.yaml", bytes) {
            let _ = pb.bind(&[]);
            let _ = pb.bind(&[
                ("case_id".into(), "IR-1".into()),
                ("key_id".into(), "AKIAEXAMPLE".into()),
            ]);
        }
    }))
    .map(|()| started.elapsed())
    .map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into())
    })
}

/// Address space for `validate` under `prlimit`: far above what a playbook
/// needs, far below what an alias bomb or unbounded nesting would take.
const MEMORY_LIMIT: &str = "--as=1073741824";

/// What some inputs must be told, in the user's terms (not the parser's).
const EXPECTED: &[(&str, &str)] = &[
    (
        "billion-laughs.yaml",
        ":5:8: error: the document expands to too many nodes",
    ),
    ("deep-flow-nesting.yaml", "error: nested too deeply"),
    ("deep-block-nesting.yaml", "error: nested too deeply"),
    (
        "recursive-anchor.yaml",
        ":3:5: error: an alias refers to its own anchor",
    ),
    (
        "multiple-documents.yaml",
        ":4:1: error: more than one YAML document",
    ),
    ("non-utf8.yaml", ":3:17: error: the file is not UTF-8"),
    ("utf16.yaml", ":1:1: error: the file is not UTF-8"),
    (
        "bidi-override.yaml",
        ":1:8: error: bidirectional control character U+202E",
    ),
    (
        "duplicate-top-key.yaml",
        ":2:1: error: duplicate key `name`",
    ),
    ("empty.yaml", ":1:1: error: the file is empty"),
    (
        "undeclared-user.yaml",
        ":3:5: error: user `ghost` is not declared",
    ),
    ("var-names-no-key.yaml", ":5:11: error: vars.key_id"),
];

/// Every file in `dir` through `validate [flags]`: exit 2, a positioned
/// error, no panic, under the memory limit.
fn corpus_gets_clean_positioned_errors(dir: &str, flags: &[&str], at_least: usize) {
    let corpus = root().join(dir);
    let files = files_in(&corpus);
    assert!(files.len() >= at_least, "the corpus is checked in");
    let bin = assert_cmd::cargo::cargo_bin("breakglass");
    let mut slowest = Duration::ZERO;
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        let started = Instant::now();
        let out = Command::new("prlimit")
            .arg(MEMORY_LIMIT)
            .arg(&bin)
            .env("NO_COLOR", "1")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .current_dir(&corpus)
            .arg("validate")
            .args(flags)
            .arg(name)
            .timeout(Duration::from_secs(20))
            .output()
            .expect("validate runs");
        slowest = slowest.max(started.elapsed());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: exit 2\n{stderr}");
        assert!(!stderr.contains("panicked"), "{name}: panic\n{stderr}");
        assert!(
            stderr.contains("error:"),
            "{name}: says what is wrong\n{stderr}"
        );
        // `file:line:column:` on every problem, so the editor can jump there.
        let positioned = stderr.lines().any(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(':'))
                .is_some_and(|rest| {
                    let mut parts = rest.splitn(3, ':');
                    parts.next().is_some_and(|n| n.parse::<u64>().is_ok())
                        && parts.next().is_some_and(|n| n.parse::<u64>().is_ok())
                })
        });
        assert!(positioned, "{name}: names file:line:column\n{stderr}");
        if let Some((_, says)) = EXPECTED.iter().find(|(file, _)| *file == name) {
            assert!(stderr.contains(says), "{name}: says `{says}`\n{stderr}");
        }
    }
    eprintln!(
        "corpus {dir}: {} inputs, slowest validate {:?}",
        files.len(),
        slowest
    );
}

#[test]
fn every_corpus_input_gets_a_clean_positioned_error() {
    corpus_gets_clean_positioned_errors("tests/corpus/playbook", &[], 30);
}

#[test]
fn every_scenario_corpus_input_gets_a_clean_positioned_error() {
    corpus_gets_clean_positioned_errors("tests/corpus/scenario", &["--scenario"], 15);
}

#[test]
fn oversized_and_degenerate_inputs_are_refused_quickly() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("over the size limit", {
            let mut v = b"name: x\nsteps: []\ndescription: ".to_vec();
            v.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
            v
        }),
        ("huge scalar under the limit", {
            let mut v = b"name: ".to_vec();
            v.extend(std::iter::repeat_n(b'a', 1000 * 1024));
            v.extend(b"\nsteps: []\n");
            v
        }),
        ("many steps", {
            let mut v = b"name: x\nsteps:\n".to_vec();
            for _ in 0..5000 {
                v.extend(b"  - { action: iam.nope, targets: { users: { all: true } } }\n");
            }
            v
        }),
        ("many aliases", {
            let mut v = b"a: &a { users: { all: true } }\nname: x\nsteps:\n".to_vec();
            for _ in 0..20000 {
                v.extend(b"  - { action: iam.deactivate_access_keys, targets: *a }\n");
            }
            v
        }),
        ("deep nesting", {
            let mut v = b"name: x\nsteps: ".to_vec();
            v.extend(std::iter::repeat_n(b'{', 100_000));
            v
        }),
    ];
    for (case, bytes) in cases {
        let elapsed = check(&bytes).unwrap_or_else(|p| panic!("{case}: panicked: {p}"));
        assert!(elapsed < Duration::from_secs(5), "{case}: took {elapsed:?}");
        assert!(
            parse_bytes("input.yaml", &bytes).is_err(),
            "{case}: refused with problems"
        );
    }
}

/// A small deterministic generator, so a failure names a seed that replays it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Fragments that steer mutations into YAML's and the playbook's corners.
const TOKENS: &[&str] = &[
    "do: ",
    "at: ",
    "stop_logging",
    "@access_key:",
    "@instance:",
    "count: ",
    "region: ",
    "&a ",
    "*a",
    "<<: *a\n",
    "{",
    "}",
    "[",
    "]",
    "- ",
    ": ",
    "\t",
    "\0",
    "\"",
    "'",
    "|\n",
    ">-\n",
    "!!binary ",
    "!!python/object ",
    "---\n",
    "...\n",
    "? ",
    "#",
    "%YAML 1.1\n",
    "~",
    ".nan",
    "99999999999999999999999",
    "-1",
    "0x1F",
    "{{ ",
    " }}",
    "{{ case_id }}",
    "{{ nope }}",
    "action: ",
    "targets: ",
    "users: ",
    "all: true",
    "max_targets: ",
    "on_failure: ",
    "iam.deactivate_access_keys",
    "org.freeze",
    "ec2.isolate_instances",
    "\u{feff}",
    "\u{202e}",
    "\r\n",
    "\n  ",
    "\n    ",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let end = (at + 1 + rng.below(64)).min(v.len());
                v.drain(at.min(end)..end);
            }
            2 if !v.is_empty() => {
                let start = rng.below(v.len());
                let end = (start + 1 + rng.below(128)).min(v.len());
                let chunk = v[start..end].to_vec();
                v.splice(at..at, chunk);
            }
            3 => v.truncate(at),
            _ => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                v.splice(at..at, token.iter().copied());
            }
        }
    }
    v
}

#[test]
fn random_mutations_of_shipped_scenarios_never_panic() {
    let per_file: usize = std::env::var("BREAKGLASS_MUTATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1500);
    let mut tried = 0usize;
    for (i, path) in files_in(&root().join("scenarios")).iter().enumerate() {
        let seed = std::fs::read(path).expect("scenario");
        for n in 0..per_file {
            let case_seed = 0x51ED_2701_u64 ^ ((i as u64) << 32 | n as u64);
            let mut rng = Rng(case_seed | 1);
            let input = mutate(&mut rng, &seed);
            let started = Instant::now();
            let r = catch_unwind(AssertUnwindSafe(|| {
                let _ = scenario::parse_bytes("input.yaml", &input);
            }));
            assert!(
                r.is_ok(),
                "seed {case_seed:#x} panicked:\n{}",
                String::from_utf8_lossy(&input)
            );
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "seed {case_seed:#x}"
            );
            tried += 1;
        }
    }
    eprintln!("scenario mutations: {tried} inputs");
}

#[test]
fn random_mutations_of_shipped_playbooks_never_panic() {
    let per_file: usize = std::env::var("BREAKGLASS_MUTATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1500);
    let seeds: Vec<Vec<u8>> = files_in(&root().join("playbooks"))
        .iter()
        .map(|p| std::fs::read(p).expect("playbook"))
        .collect();
    assert!(!seeds.is_empty());
    let started = Instant::now();
    let (mut tried, mut valid) = (0usize, 0usize);
    let mut slowest = Duration::ZERO;
    for (i, seed) in seeds.iter().enumerate() {
        for n in 0..per_file {
            let case_seed = 0x9E37_79B9_7F4A_7C15 ^ ((i as u64) << 32 | n as u64);
            let mut rng = Rng(case_seed | 1);
            let input = mutate(&mut rng, seed);
            let elapsed = check(&input).unwrap_or_else(|p| {
                panic!(
                    "seed {case_seed:#x} (playbook {i}, mutation {n}) panicked: {p}\ninput:\n{}",
                    String::from_utf8_lossy(&input)
                )
            });
            slowest = slowest.max(elapsed);
            assert!(
                elapsed < Duration::from_secs(2),
                "seed {case_seed:#x}: {elapsed:?}"
            );
            tried += 1;
            valid += usize::from(parse_bytes("input.yaml", &input).is_ok());
        }
    }
    eprintln!(
        "mutations: {tried} inputs ({valid} still valid) in {:?}, slowest {slowest:?}",
        started.elapsed()
    );
}
