//! Hostile-input tests: the parser never panics, and large inputs are handled in
//! linear time and memory (a quadratic step would make these tests hang).

use berth_dockerfile::{
    expand, expand_words, parse, IgnoreMatcher, Mount, ParseErrorKind, MAX_DOCKERFILE_SIZE,
    MAX_INSTRUCTIONS, MAX_LINE_SIZE, MAX_STAGES,
};

/// Small deterministic PRNG (xorshift64*), so failures are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "FROM ",
    "RUN ",
    "CMD ",
    "LABEL ",
    "MAINTAINER ",
    "EXPOSE ",
    "ENV ",
    "ADD ",
    "COPY ",
    "ENTRYPOINT ",
    "VOLUME ",
    "USER ",
    "WORKDIR ",
    "ARG ",
    "ONBUILD ",
    "STOPSIGNAL ",
    "HEALTHCHECK ",
    "SHELL ",
    "AS ",
    "NONE ",
    "CMD",
    "busybox",
    "--mount=",
    "type=cache",
    "type=secret",
    "type=bind",
    ",",
    "target=/x",
    "--from=",
    "--chown=",
    "--link",
    "--",
    "--platform=",
    "--interval=",
    "1s",
    "--retries=",
    "=",
    "\"",
    "'",
    "`",
    "\\",
    "\\\n",
    "\n",
    "\r\n",
    " ",
    "\t",
    "#",
    "# escape=`\n",
    "# syntax=x\n",
    "$",
    "${",
    "}",
    ":-",
    ":+",
    ":?",
    "#",
    "%",
    "/",
    "//",
    "*",
    "?",
    "[",
    "]",
    "{",
    "[\"a\", \"b\"]",
    "[1]",
    "<<",
    "<<-",
    "EOF",
    "\nEOF\n",
    "<<\"EOF\"",
    "3<<",
    "a",
    "b=c",
    "é",
    "🐳",
    "\u{0}",
    "\u{feff}",
    "!",
    "**",
];

fn random_text(rng: &mut Rng, max_tokens: usize) -> String {
    let n = rng.below(max_tokens) + 1;
    let mut s = String::new();
    for _ in 0..n {
        if rng.below(10) == 0 {
            // A random Unicode scalar value.
            let c = char::from_u32((rng.next() % 0x11_0000) as u32).unwrap_or('x');
            s.push(c);
        } else {
            s.push_str(TOKENS[rng.below(TOKENS.len())]);
        }
    }
    s
}

#[test]
fn random_input_never_panics() {
    // BERTH_FUZZ_ITERS / BERTH_FUZZ_SEED allow longer local runs.
    let iters: usize = std::env::var("BERTH_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let seed: u64 = std::env::var("BERTH_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    let mut rng = Rng(seed | 1);
    let lookup = |k: &str| {
        k.starts_with(|c: char| c.is_ascii_uppercase())
            .then(|| format!("v-{k}"))
    };
    let mut parsed = 0;
    for i in 0..iters {
        let text = random_text(&mut rng, if i % 10 == 0 { 400 } else { 40 });
        if let Ok(df) = parse(&text) {
            parsed += 1;
            for stage in &df.stages {
                for inst in &stage.instructions {
                    let _ = inst.expanded(&lookup, df.escape);
                    let _ = inst.created_by(&[], &[]);
                }
            }
        }
        if let Ok(df) = parse(&format!("FROM a\n{text}")) {
            parsed += 1;
            for inst in &df.stages[0].instructions {
                let _ = inst.expanded(&lookup, df.escape);
                let _ = inst.created_by(&[], &[]);
            }
        }
        let _ = expand(&text, &lookup, '\\');
        let _ = expand_words(&text, &lookup, '`');
        let _ = Mount::parse(&text, None);
        let _ = berth_dockerfile::parse_onbuild_trigger(&text, 1);
        if let Ok(m) = IgnoreMatcher::new(&text) {
            let _ = m.matches(&text);
            let _ = m.dir_may_contain_exceptions(&text);
        }
    }
    // The generator must actually reach the instruction parser.
    assert!(parsed > 50, "only {parsed} random inputs parsed");
}

#[test]
fn ten_megabyte_dockerfile() {
    let mut text = String::from("FROM busybox\n");
    let line = format!(
        "RUN echo some reasonably long command line with --flags and words \\\n    && {} \\\n    && true\n",
        "x".repeat(120)
    );
    while text.len() < 10 << 20 {
        text.push_str(&line);
    }
    let df = parse(&text).expect("large but valid Dockerfile parses");
    assert!(df.stages[0].instructions.len() > 40_000);
}

#[test]
fn many_tiny_instructions_hit_the_limit() {
    let text = format!("FROM a\n{}", "RUN\n".repeat(MAX_INSTRUCTIONS));
    let e = parse(&text).unwrap_err();
    assert_eq!(e.kind(), ParseErrorKind::Limit);
    assert_eq!(e.line, MAX_INSTRUCTIONS + 1);
    let ok = format!("FROM a\n{}", "RUN\n".repeat(MAX_INSTRUCTIONS - 1));
    assert!(parse(&ok).is_ok());
}

#[test]
fn million_line_continuation() {
    let mut text = String::from("FROM busybox\nRUN echo \\\n");
    for _ in 0..1_000_000 {
        text.push_str(" a \\\n");
    }
    text.push_str(" end\n");
    let df = parse(&text).expect("long continuation parses");
    let inst = &df.stages[0].instructions[0];
    assert_eq!(inst.start_line, 2);
    assert_eq!(inst.end_line, 1_000_003);
    assert!(inst.original.ends_with(" a  end"));
}

#[test]
fn million_comment_lines_in_continuation() {
    let mut text = String::from("FROM busybox\nRUN echo \\\n");
    for _ in 0..1_000_000 {
        text.push_str("# c\n\n");
    }
    text.push_str(" end\n");
    let df = parse(&text).expect("parses");
    assert_eq!(df.stages[0].instructions[0].original, "RUN echo  end");
}

#[test]
fn size_limits() {
    let big = "#".repeat(MAX_DOCKERFILE_SIZE + 1);
    assert_eq!(parse(&big).unwrap_err().kind(), ParseErrorKind::Limit);
    let long_line = format!("FROM a\nRUN {}\n", "x".repeat(MAX_LINE_SIZE + 1));
    let e = parse(&long_line).unwrap_err();
    assert_eq!(e.kind(), ParseErrorKind::Limit);
    assert_eq!(e.line, 2);
    let ok_line = format!("FROM a\nRUN {}\n", "x".repeat(MAX_LINE_SIZE - 4));
    assert!(parse(&ok_line).is_ok());
}

#[test]
fn deep_nesting_is_bounded() {
    // JSON nesting: serde_json's recursion limit makes this "not JSON" → shell form.
    let json = format!("FROM a\nCMD {}{}\n", "[".repeat(30_000), "]".repeat(30_000));
    let df = parse(&json).expect("deep JSON falls back to shell form");
    match &df.stages[0].instructions[0].kind {
        berth_dockerfile::InstructionKind::Cmd(c) => assert!(c.prepend_shell),
        k => panic!("unexpected {k:?}"),
    }
    // ONBUILD chains are rejected without recursing through them.
    let chain = format!("FROM a\n{}RUN x\n", "ONBUILD ".repeat(8_000));
    let e = parse(&chain).unwrap_err();
    assert!(e.message.contains("Chaining ONBUILD"), "{e}");
    // Variable expansion nesting.
    let word = format!("{}x{}", "${A:-".repeat(100_000), "}".repeat(100_000));
    assert!(expand(&word, &|_| None, '\\').is_err());
    let quoted = format!("{}x", "${A:-\"".repeat(100_000));
    assert!(expand(&quoted, &|_| None, '\\').is_err());
}

#[test]
fn many_heredocs_and_flags() {
    let mut text = String::from("FROM a\nRUN");
    for i in 0..2_000 {
        text.push_str(&format!(" <<E{i}"));
    }
    text.push('\n');
    for i in 0..2_000 {
        text.push_str(&format!("body {i}\nE{i}\n"));
    }
    let df = parse(&text).expect("many heredocs parse");
    match &df.stages[0].instructions[0].kind {
        berth_dockerfile::InstructionKind::Run(r) => assert_eq!(r.command.heredocs.len(), 2_000),
        k => panic!("unexpected {k:?}"),
    }
    // Many heredoc sources on one (continued) COPY line.
    let mut copy = String::from("FROM a\nCOPY");
    for i in 0..50_000 {
        copy.push_str(&format!(" <<H{i} \\\n"));
    }
    copy.push_str(" /dest\n");
    for i in 0..50_000 {
        copy.push_str(&format!("H{i}\n"));
    }
    let df = parse(&copy).expect("many heredoc sources parse");
    match &df.stages[0].instructions[0].kind {
        berth_dockerfile::InstructionKind::Copy(c) => assert_eq!(c.files.inline.len(), 50_000),
        k => panic!("unexpected {k:?}"),
    }
    let flags = format!("FROM a\nCOPY {} a b\n", "--exclude=x ".repeat(5_000));
    assert!(parse(&flags).is_ok());
    let unknown = format!("FROM a\nCOPY --{} a b\n", "y".repeat(60_000));
    assert_eq!(
        parse(&unknown).unwrap_err().kind(),
        ParseErrorKind::InvalidFlag
    );
}

#[test]
fn many_chained_stages() {
    let mut text = String::from("FROM scratch AS s0\nSHELL [\"sh\"]\n");
    for i in 1..MAX_STAGES {
        text.push_str(&format!("FROM s{} AS s{i}\nCMD x\n", i - 1));
    }
    let df = parse(&text).expect("parses");
    assert_eq!(df.stages.len(), MAX_STAGES);
    // Every stage inherits the SHELL, so no JSONArgsRecommended warnings.
    assert!(df.warnings.is_empty(), "{:?}", &df.warnings[..1]);
    let last = MAX_STAGES - 1;
    let base = format!("s{}", last - 1);
    assert_eq!(df.stage_dependencies(last, &base).unwrap(), vec![last - 1]);
    text.push_str("FROM one-too-many\n");
    assert_eq!(parse(&text).unwrap_err().kind(), ParseErrorKind::Limit);
}

/// Mutation fuzzing: random edits of the golden Dockerfiles (which reach deep
/// into every instruction parser) must never panic.
#[test]
fn mutated_golden_files_never_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut seeds = Vec::new();
    for entry in std::fs::read_dir(&root).expect("testdata exists") {
        let path = entry.expect("entry").path().join("Dockerfile");
        if let Ok(t) = std::fs::read_to_string(&path) {
            seeds.push(t);
        }
    }
    let iters: usize = std::env::var("BERTH_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let lookup = |k: &str| (!k.is_empty()).then(|| format!("<{k}>"));
    for _ in 0..iters {
        let mut chars: Vec<char> = seeds[rng.below(seeds.len())].chars().collect();
        for _ in 0..=rng.below(4) {
            let len = chars.len().max(1);
            let at = rng.below(len).min(chars.len());
            match rng.below(4) {
                0 => {
                    let end = (at + rng.below(8)).min(chars.len());
                    chars.drain(at..end);
                }
                1 => {
                    let tok: Vec<char> = TOKENS[rng.below(TOKENS.len())].chars().collect();
                    chars.splice(at..at, tok);
                }
                2 if at < chars.len() => {
                    chars[at] = char::from_u32((rng.next() % 0x80) as u32).unwrap_or('x');
                }
                _ => {
                    let end = (at + rng.below(16)).min(chars.len());
                    let dup: Vec<char> = chars[at..end].to_vec();
                    chars.splice(at..at, dup);
                }
            }
        }
        let text: String = chars.into_iter().collect();
        if let Ok(df) = parse(&text) {
            let mut scope = berth_dockerfile::ScopeState::default();
            for d in df.meta_arg_decls() {
                let _ = scope.declare_meta_arg(&d.name, d.default.as_deref(), df.escape);
            }
            for (i, stage) in df.stages.iter().enumerate() {
                let base = scope
                    .expand_from(&stage.base, df.escape)
                    .unwrap_or_default();
                let _ = df.stage_dependencies(i, &base);
                let mut s = scope.stage(&[]);
                for inst in &stage.instructions {
                    if let Ok(e) = s.apply(inst, df.escape) {
                        let _ = e.created_by(&[], &s.history_args());
                    }
                    let _ = inst.expanded(&lookup, df.escape);
                    if let berth_dockerfile::InstructionKind::Onbuild(o) = &inst.kind {
                        let _ = berth_dockerfile::parse_onbuild_trigger(&o.expression, 1);
                    }
                    if let berth_dockerfile::InstructionKind::Run(r) = &inst.kind {
                        let _ = r.command.effective();
                    }
                }
            }
        }
    }
}
