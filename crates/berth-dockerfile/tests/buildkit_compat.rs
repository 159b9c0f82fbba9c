//! Differential test against BuildKit's own parser test files
//! (`frontend/dockerfile/parser/testfiles*` in moby/buildkit), which are not vendored
//! here. Point `BERTH_BUILDKIT_TESTFILES` at a checkout's
//! `frontend/dockerfile/parser` directory to run it; otherwise it skips.
//!
//! Every `testfiles/<case>/Dockerfile` must produce exactly BuildKit's AST dump
//! (`result`), and every `testfiles-negative/<case>/Dockerfile` must fail to parse.

use std::fs;
use std::path::PathBuf;

#[test]
fn buildkit_parser_testfiles() {
    let Some(root) = std::env::var_os("BERTH_BUILDKIT_TESTFILES").map(PathBuf::from) else {
        println!("skipping: BERTH_BUILDKIT_TESTFILES not set");
        return;
    };
    let mut failures = Vec::new();
    let mut checked = 0;
    for entry in fs::read_dir(root.join("testfiles")).expect("testfiles dir") {
        let dir = entry.expect("dir entry").path();
        let Ok(bytes) = fs::read(dir.join("Dockerfile")) else {
            continue;
        };
        let Ok(want) = fs::read_to_string(dir.join("result")) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        checked += 1;
        match berth_dockerfile::dump_ast(&text) {
            Ok(got) if format!("{got}\n") == want => {}
            Ok(got) => failures.push(format!(
                "{}:\n--- want\n{want}--- got\n{got}\n",
                dir.display()
            )),
            Err(e) => failures.push(format!("{}: error {e}", dir.display())),
        }
    }
    for entry in fs::read_dir(root.join("testfiles-negative")).expect("negative dir") {
        let dir = entry.expect("dir entry").path();
        let Ok(text) = fs::read_to_string(dir.join("Dockerfile")) else {
            continue;
        };
        checked += 1;
        if berth_dockerfile::parse(&text).is_ok() {
            failures.push(format!("{}: parsed but must fail", dir.display()));
        }
    }
    assert!(checked > 0, "no test files found under {}", root.display());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// BuildKit's shell lexer tables (`frontend/dockerfile/shell/envVarTest` and
/// `wordsTest`), found next to the parser directory.
#[test]
fn buildkit_shell_tables() {
    let Some(root) = std::env::var_os("BERTH_BUILDKIT_TESTFILES").map(PathBuf::from) else {
        println!("skipping: BERTH_BUILDKIT_TESTFILES not set");
        return;
    };
    let shell = root.join("../shell");
    let mut failures = Vec::new();
    let mut checked = 0;

    let env = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ];
    let lookup = |k: &str| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    let text = fs::read_to_string(shell.join("envVarTest")).expect("envVarTest");
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split('|').map(str::trim).collect();
        let [platform, source, expected] = parts[..] else {
            panic!("bad line {line:?}");
        };
        if platform == "W" {
            continue;
        }
        checked += 1;
        let got = berth_dockerfile::expand(source, &lookup, '\\');
        let ok = match (expected, &got) {
            ("error", Err(_)) => true,
            ("error", Ok(_)) => false,
            (want, Ok(g)) => want == g,
            (_, Err(_)) => false,
        };
        if !ok {
            failures.push(format!(
                "envVarTest {source:?}: want {expected:?}, got {got:?}"
            ));
        }
    }

    let text = fs::read_to_string(shell.join("wordsTest")).expect("wordsTest");
    let mut envs: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let rest = rest.trim_start_matches(' ');
            let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
            envs.push((k.to_string(), v.to_string()));
            continue;
        }
        let (test, expected) = line.split_once('|').expect("one | per line");
        let test = test.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        let lookup = |k: &str| {
            envs.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        checked += 1;
        let got = berth_dockerfile::expand_words(test, &lookup, '\\')
            .unwrap_or_else(|_| vec!["error".to_string()]);
        if got != expected {
            failures.push(format!(
                "wordsTest {test:?}: want {expected:?}, got {got:?}"
            ));
        }
    }
    assert!(checked > 100, "only {checked} shell cases found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
